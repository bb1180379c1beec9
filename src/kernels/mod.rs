//! pretext's own CPU kernels, plugged into burn through two backend extensions (this module's
//! `CpuKernels` for images, `transformer::TransformerKernels`): the forward pass runs on the
//! flex backend, and the autodiff backend records a handwritten backward pass. The models call
//! [`conv2d_forward`], [`batch_norm`], [`max_pool2d`] and `transformer`'s entry points, which use
//! the kernels on the CPU where they apply and burn's own operations elsewhere (the GPUs).

/// Elements per parallel task of the element-wise kernels (GELU, dropout).
pub const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// Buffers at least this long are zeroed on rayon's threads.
const PARALLEL_ZEROING_MIN: usize = 1 << 16;

/// A zeroed buffer of `len` values, cleared on rayon's threads when it is large. A new
/// activation-sized buffer is mostly recycled memory that must be cleared, and one thread
/// clearing it while the others waited cost 2 % of a ResNet-18 step at two threads.
pub fn zeros(len: usize) -> Vec<f32> {
    if len < PARALLEL_ZEROING_MIN {
        return vec![0.0; len];
    }
    let mut values = Vec::with_capacity(len);
    values
        .spare_capacity_mut()
        .par_chunks_mut(ELEMENTWISE_CHUNK)
        .for_each(|chunk| chunk.fill(std::mem::MaybeUninit::new(0.0)));
    // SAFETY: the loop above wrote all `len` values of the capacity.
    unsafe { values.set_len(len) };
    values
}

pub mod activation;
pub mod attention;
pub mod batchnorm;
pub mod conv;
pub mod dropout;
pub mod lanes;
pub mod layernorm;
#[cfg(feature = "tch")]
pub mod libtorch;
pub mod linear;
pub mod matmul;
pub mod pool;
pub mod residual;
pub mod simd;
pub mod transformer;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, backend_extension};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use crate::device::ranks;

use conv::ConvGeometry;

/// The operations pretext computes itself on the CPU.
#[backend_extension(Flex, Autodiff)]
pub trait CpuKernels: Backend {
    /// Convolution without bias, dilation or groups, with square stride and symmetric padding:
    /// the shape of every convolution in ConvNet-4 and ResNet-18.
    fn conv2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self>;
    /// Per-channel mean and biased variance of an NCHW activation, as `[2, channels]`; not
    /// differentiated.
    fn channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Training-mode BatchNorm of an NCHW activation, then a ReLU when `relu`. `stats` must be
    /// `channel_stats(x)`; it is differentiated as the function of `x` it is.
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f32,
        relu: bool,
    ) -> FloatTensor<Self>;
    /// Max pooling over 2×2 windows with stride 2, no padding.
    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

fn geometry(x: &FlexTensor, weight: &FlexTensor, stride: usize, pad: usize) -> ConvGeometry {
    let xs = x.layout().shape();
    let ws = weight.layout().shape();
    ConvGeometry {
        batch: xs[0],
        ci: xs[1],
        h: xs[2],
        w: xs[3],
        co: ws[0],
        kh: ws[2],
        kw: ws[3],
        stride,
        pad,
    }
}

/// The values of a contiguous f32 tensor (`to_contiguous` copies a strided one; the entry
/// points send only f32 here).
pub(crate) fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

pub(crate) fn flex_tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `t`'s values, writable where `t` owns its whole buffer in order (an activation that
/// nothing else holds), for kernels that can write their result over their input.
pub(crate) fn owned_values(t: &mut FlexTensor) -> Option<&mut [f32]> {
    let n = t.layout().num_elements();
    // `as_slice` is the contiguous range the layout covers; whole when it is all the storage.
    let whole = t.as_slice::<f32>().is_some_and(|v| v.len() == n) && t.storage::<f32>().len() == n;
    if !whole {
        return None;
    }
    t.try_storage_mut::<f32>()
}

impl CpuKernels for Flex {
    fn conv2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        let g = geometry(&x, &weight, stride, padding);
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        let out = conv::conv2d_forward(&g, f32s(&x), f32s(&weight));
        flex_tensor(out, [g.batch, g.co, g.out_h(), g.out_w()])
    }

    fn channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let s = norm_shape(&x);
        let x = x.to_contiguous();
        let stats = batchnorm::channel_stats(s, f32s(&x));
        let (mean, var) = batchnorm::channel_stats_over_ranks(s, stats);
        flex_tensor([mean, var].concat(), [2, s.channels])
    }

    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f32,
        relu: bool,
    ) -> FloatTensor<Self> {
        let mut x = x;
        let s = norm_shape(&x);
        if let Some(values) = owned_values(&mut x) {
            // Untracked (no backward needs `x`): normalise over the input itself.
            let (gamma, beta, stats) = (
                gamma.to_contiguous(),
                beta.to_contiguous(),
                stats.to_contiguous(),
            );
            let (mean, var) = f32s(&stats).split_at(s.channels);
            batchnorm::forward_in_place(
                s,
                values,
                (f32s(&gamma), f32s(&beta)),
                (mean, var),
                epsilon,
                relu,
            );
            return x;
        }
        batch_norm_forward(&x, &gamma, &beta, &stats, epsilon, relu).0
    }

    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (s, [b, c, _, _]) = pool_shape(&x);
        let x = x.to_contiguous();
        flex_tensor(pool::forward(s, f32s(&x)), [b, c, s.out_h(), s.out_w()])
    }
}

fn pool_shape(x: &FlexTensor) -> (pool::PoolShape, [usize; 4]) {
    let d = x.layout().shape();
    let dims = [d[0], d[1], d[2], d[3]];
    let s = pool::PoolShape {
        planes: dims[0] * dims[1],
        h: dims[2],
        w: dims[3],
    };
    (s, dims)
}

fn norm_shape(x: &FlexTensor) -> batchnorm::NormShape {
    let dims = x.layout().shape();
    batchnorm::NormShape {
        batch: dims[0],
        channels: dims[1],
        plane: dims.iter().skip(2).product(),
    }
}

/// The BatchNorm output, and the batch statistics (`channel_stats` of `x`) it used.
fn batch_norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    stats: &FlexTensor,
    epsilon: f32,
    relu: bool,
) -> (FlexTensor, (Vec<f32>, Vec<f32>)) {
    let s = norm_shape(x);
    let (x, gamma, beta) = (
        x.to_contiguous(),
        gamma.to_contiguous(),
        beta.to_contiguous(),
    );
    let stats = stats.to_contiguous();
    let (mean, var) = f32s(&stats).split_at(s.channels);
    let stats = (mean.to_vec(), var.to_vec());
    let y = batchnorm::forward(
        s,
        f32s(&x),
        (f32s(&gamma), f32s(&beta)),
        (&stats.0, &stats.1),
        epsilon,
        relu,
    );
    (flex_tensor(y, x.layout().shape().clone()), stats)
}

fn options(stride: usize, padding: usize) -> burn::tensor::ops::ConvOptions<2> {
    burn::tensor::ops::ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1)
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (NodeId, NodeId, usize, usize);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, stride, padding) = ops.state;
        let [x, weight] = [x_state, weight_state].map(|id| {
            checkpointer
                .retrieve_node_output::<FlexTensor>(id)
                .to_contiguous()
        });
        let dout = dout.to_contiguous();
        let g = geometry(&x, &weight, stride, padding);
        let (dx, dweight) = conv::conv2d_backward(
            &g,
            f32s(&x),
            f32s(&weight),
            f32s(&dout),
            node_x.is_some(),
            node_weight.is_some(),
        );
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, flex_tensor(dx, [g.batch, g.ci, g.h, g.w]));
        }
        if let (Some(node), Some(dw)) = (node_weight, dweight) {
            grads.register::<Flex>(node.id, flex_tensor(dw, [g.co, g.ci, g.kh, g.kw]));
        }
    }
}

impl<C: CheckpointStrategy> CpuKernels for Autodiff<Flex, C> {
    fn conv2d_plain(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        padding: usize,
    ) -> FloatTensor<Self> {
        match ConvBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = Flex::conv2d_plain(
                    x.into_primitive(),
                    weight.into_primitive(),
                    stride,
                    padding,
                );
                prep.finish((x_state, weight_state, stride, padding), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::conv2d_plain(
                x.into_primitive(),
                weight.into_primitive(),
                stride,
                padding,
            )),
        }
    }

    fn channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(Flex::channel_stats(x.into_primitive()))
    }

    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f32,
        relu: bool,
    ) -> FloatTensor<Self> {
        let stats = stats.into_primitive();
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = prep.checkpoint(&beta);
                let (out, stats) = batch_norm_forward(
                    x.primitive(),
                    gamma.primitive(),
                    beta.primitive(),
                    &stats,
                    epsilon,
                    relu,
                );
                let state = BatchNormState {
                    nodes: [x_state, gamma_state, beta_state],
                    mean: stats.0,
                    var: stats.1,
                    epsilon,
                    relu,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(
                batch_norm_forward(
                    x.primitive(),
                    gamma.primitive(),
                    beta.primitive(),
                    &stats,
                    epsilon,
                    relu,
                )
                .0,
            ),
        }
    }

    fn max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match MaxPoolBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive().to_contiguous();
                let (s, [b, c, _, _]) = pool_shape(&x);
                let (y, winners) = pool::forward_with_winners(s, f32s(&x));
                let out = flex_tensor(y, [b, c, s.out_h(), s.out_w()]);
                prep.finish(MaxPoolState { shape: s, winners }, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::max_pool2x2(x.into_primitive())),
        }
    }
}

#[derive(Debug)]
struct MaxPoolBackward;

/// What the pooling's backward pass keeps: the input's shape and each window's winner.
#[derive(Clone, Debug)]
struct MaxPoolState {
    shape: pool::PoolShape,
    winners: Vec<u8>,
}

impl Backward<Flex, 1> for MaxPoolBackward {
    type State = MaxPoolState;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        if let Some(node) = node_x {
            let s = ops.state.shape;
            let dx = pool::backward(s, &ops.state.winners, f32s(&dy));
            let dims = [dy.layout().shape()[0], dy.layout().shape()[1], s.h, s.w];
            grads.register::<Flex>(node.id, flex_tensor(dx, dims));
        }
    }
}

#[derive(Clone, Debug)]
struct BatchNormState {
    nodes: [NodeId; 3],
    mean: Vec<f32>,
    var: Vec<f32>,
    epsilon: f32,
    relu: bool,
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = BatchNormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let st = ops.state;
        let [x, gamma, beta] = st.nodes.map(|id| {
            checkpointer
                .retrieve_node_output::<FlexTensor>(id)
                .to_contiguous()
        });
        let s = norm_shape(&x);
        let params = (f32s(&gamma), f32s(&beta));
        let stats = (&st.mean[..], &st.var[..]);
        let mut dy = dy;
        let (dx, dgamma, dbeta) = match owned_values(&mut dy) {
            // The gradient is this node's alone: dx is written over it.
            Some(values) => {
                let (dgamma, dbeta) = batchnorm::backward_in_place(
                    s,
                    f32s(&x),
                    params,
                    stats,
                    st.epsilon,
                    st.relu,
                    values,
                );
                (dy, dgamma, dbeta)
            }
            None => {
                let dy = dy.to_contiguous();
                let (dx, dgamma, dbeta) =
                    batchnorm::backward(s, f32s(&x), params, stats, st.epsilon, st.relu, f32s(&dy));
                (flex_tensor(dx, x.layout().shape().clone()), dgamma, dbeta)
            }
        };
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, [s.channels]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, [s.channels]));
        }
    }
}

/// Whether pretext's kernels take `x`: f32 on the CPU, unless `PRETEXT_KERNELS=burn` asks for
/// burn's own operations everywhere (to compare the two on one binary).
pub(crate) fn ours<const D: usize>(x: &Tensor<D>) -> bool {
    !burn_only() && x.dtype() == DType::F32 && crate::device::is_flex(&x.device())
}

/// `PRETEXT_KERNELS=burn`: burn's own operations everywhere, pretext's kernels and libtorch's
/// fused BatchNorm left out.
pub(crate) fn burn_only() -> bool {
    static BURN_ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *BURN_ONLY.get_or_init(|| std::env::var("PRETEXT_KERNELS").is_ok_and(|v| v == "burn"))
}

/// `conv.forward(x)`, through pretext's kernel where it applies: on the CPU, for a convolution
/// without bias, dilation or groups, with square stride and symmetric explicit (or no) padding.
pub fn conv2d_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => Some(0),
        PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => Some(t),
        _ => None,
    };
    let plain = conv.bias.is_none()
        && conv.groups == 1
        && conv.dilation == [1, 1]
        && conv.stride[0] == conv.stride[1];
    match padding {
        Some(padding) if plain => conv2d(x, conv.weight.val(), conv.stride[0], padding),
        _ => conv.forward(x),
    }
}

/// `bn.forward(x)`, then a ReLU when `relu`. Training on the CPU runs pretext's fused kernel,
/// on libtorch libtorch's, and both update the running statistics as burn's `BatchNorm` does;
/// everything else is burn's.
pub fn batch_norm(bn: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let device = x.device();
    if ours(&x) && !device.is_autodiff() {
        return batch_norm_inference(bn, x, relu);
    }
    let training = device.is_autodiff() && bn.training.is_enabled();
    #[cfg(feature = "tch")]
    if training && libtorch::takes(&x) {
        return relu_if(libtorch::batch_norm_train(bn, x), relu);
    }
    if !(ours(&x) && training) {
        return relu_if(bn.forward(x), relu);
    }
    use burn::backend::Dispatch;
    let channels = x.dims()[1];
    let stats = Tensor::<2>::from_dispatch(<Dispatch as CpuKernels>::channel_stats(
        x.clone().detach().into_dispatch(),
    ));
    let mean = stats.clone().narrow(0, 0, 1).reshape([channels]);
    let var = stats.clone().narrow(0, 1, 1).reshape([channels]);
    update_running_statistics(bn, mean, var, &device);
    normalise(bn, x, stats, relu)
}

fn relu_if(y: Tensor<4>, relu: bool) -> Tensor<4> {
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

/// Moves `bn`'s running statistics toward a batch's `mean` and biased `var`, as burn's
/// `BatchNorm` does.
pub(crate) fn update_running_statistics(
    bn: &BatchNorm,
    mean: Tensor<1>,
    var: Tensor<1>,
    device: &burn::tensor::Device,
) {
    let m = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(device);
    let running_var = bn.running_var.value_sync().to_device(device);
    bn.running_mean
        .update((running_mean.mul_scalar(1.0 - m) + mean.mul_scalar(m)).detach());
    bn.running_var
        .update((running_var.mul_scalar(1.0 - m) + var.mul_scalar(m)).detach());
}

/// `bn.forward(x)` on rows `[n, d]` (the BatchNorm of an MLP head). Synchronised over ranks it
/// runs pretext's kernel, which totals the statistics over the ranks; otherwise burn's.
pub fn batch_norm_rows(bn: &BatchNorm, x: Tensor<2>) -> Tensor<2> {
    if !(ranks::sync_batchnorm() && ours(&x)) {
        return bn.forward(x);
    }
    let [n, d] = x.dims();
    batch_norm(bn, x.reshape([n, d, 1, 1]), false).reshape([n, d])
}

/// BatchNorm with the running statistics, as burn's `forward` on a device without autodiff,
/// in one pass with the ReLU (feature extraction: burn's takes five element-wise passes).
fn batch_norm_inference(bn: &BatchNorm, x: Tensor<4>, relu: bool) -> Tensor<4> {
    let device = x.device();
    let stats = Tensor::stack::<2>(
        vec![
            bn.running_mean.value().to_device(&device),
            bn.running_var.value().to_device(&device),
        ],
        0,
    );
    normalise(bn, x, stats, relu)
}

/// `bn`'s affine normalisation of `x` by `stats` (`[mean; var]`, `[2, channels]`), then a
/// ReLU when `relu`: pretext's kernel, differentiated where `x` is tracked.
fn normalise(bn: &BatchNorm, x: Tensor<4>, stats: Tensor<2>, relu: bool) -> Tensor<4> {
    use burn::backend::Dispatch;
    Tensor::from_dispatch(<Dispatch as CpuKernels>::batch_norm_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        stats.into_dispatch(),
        bn.epsilon as f32,
        relu,
    ))
}

/// `pool.forward(x)`, through pretext's kernel for 2×2 windows with stride 2 on the CPU.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let two_by_two = pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && !pool.ceil_mode
        && matches!(
            pool.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        );
    if two_by_two && ours(&x) {
        use burn::backend::Dispatch;
        Tensor::from_dispatch(<Dispatch as CpuKernels>::max_pool2x2(x.into_dispatch()))
    } else {
        pool.forward(x)
    }
}

/// `x ⋆ weight` (no bias) with square `stride` and symmetric `padding`: pretext's kernel on
/// the CPU, burn's convolution elsewhere.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, stride: usize, padding: usize) -> Tensor<4> {
    if ours(&x) && weight.dtype() == DType::F32 {
        use burn::backend::Dispatch;
        Tensor::from_dispatch(<Dispatch as CpuKernels>::conv2d_plain(
            x.into_dispatch(),
            weight.into_dispatch(),
            stride,
            padding,
        ))
    } else {
        burn::tensor::module::conv2d(x, weight, None, options(stride, padding))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Output and both gradients of `sum(conv(x, w) · r)` through `conv`, on the autodiff CPU.
    fn run(
        conv: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
        x: &TensorData,
        w: &TensorData,
        r: &TensorData,
    ) -> (TensorData, TensorData, TensorData) {
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(x.clone(), &device).require_grad();
        let w = Tensor::<4>::from_data(w.clone(), &device).require_grad();
        let r = Tensor::<4>::from_data(r.clone(), &device);
        let out = conv(x.clone(), w.clone());
        let grads = (out.clone() * r).sum().backward();
        (
            out.into_data(),
            x.grad(&grads).expect("x has a gradient").into_data(),
            w.grad(&grads).expect("w has a gradient").into_data(),
        )
    }

    use burn::tensor::Device;

    #[test]
    fn matches_burns_convolution_forward_and_backward() {
        assert!(crate::device::is_flex(&Device::flex().autodiff()));
        let device = Device::flex();
        device.seed(7);
        // (batch, ci, h, w, co, k, stride, padding): ConvNet-4's and the ResNets' shapes (the
        // ImageNet stem's 7x7 with stride 2), odd sizes.
        for (b, ci, h, w, co, k, stride, pad) in [
            (4, 3, 12, 12, 8, 3, 1, 1),
            (2, 3, 17, 14, 4, 7, 2, 3),
            (3, 5, 9, 7, 6, 3, 2, 1),
            (2, 8, 8, 8, 4, 1, 2, 0),
            (2, 4, 5, 6, 3, 3, 1, 0),
        ] {
            let normal = Distribution::Normal(0.0, 1.0);
            let x = Tensor::<4>::random([b, ci, h, w], normal, &device).into_data();
            let wt = Tensor::<4>::random([co, ci, k, k], normal, &device).into_data();
            let ho = (h + 2 * pad - k) / stride + 1;
            let wo = (w + 2 * pad - k) / stride + 1;
            let r = Tensor::<4>::random([b, co, ho, wo], normal, &device).into_data();
            let ours = run(|x, w| conv2d(x, w, stride, pad), &x, &wt, &r);
            let burns = run(
                |x, w| burn::tensor::module::conv2d(x, w, None, options(stride, pad)),
                &x,
                &wt,
                &r,
            );
            let tolerance = burn::tensor::Tolerance::<f32>::absolute(1e-4);
            ours.0.assert_approx_eq::<f32>(&burns.0, tolerance);
            ours.1.assert_approx_eq::<f32>(&burns.1, tolerance);
            ours.2.assert_approx_eq::<f32>(&burns.2, tolerance);
        }
    }

    #[test]
    fn the_model_path_uses_the_kernel_only_where_it_applies() {
        use burn::nn::conv::Conv2dConfig;
        let device = Device::flex();
        let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Default, &device);
        for conv in [
            Conv2dConfig::new([3, 4], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            // Bias and asymmetric padding go to burn's convolution; the result is the same.
            Conv2dConfig::new([3, 4], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 0, 1, 0)),
            Conv2dConfig::new([3, 4], [3, 3])
                .with_bias(false)
                .with_stride([2, 2]),
        ] {
            let conv = conv.init(&device);
            let ours = conv2d_forward(&conv, x.clone()).into_data();
            let burns = conv.forward(x.clone()).into_data();
            ours.assert_approx_eq::<f32>(&burns, burn::tensor::Tolerance::absolute(1e-5));
        }
    }

    /// Output, gradients (x, gamma, beta) and running statistics after one training step of
    /// `sum(norm(x) · r)`.
    fn batch_norm_step(
        norm: impl Fn(&BatchNorm, Tensor<4>) -> Tensor<4>,
        x: &TensorData,
        r: &TensorData,
    ) -> [TensorData; 6] {
        use burn::nn::BatchNormConfig;
        let device = Device::flex().autodiff();
        let channels = x.shape()[1];
        let mut bn = BatchNormConfig::new(channels).init(&device);
        // Non-trivial affine parameters, so that the ReLU cuts both ways.
        bn.gamma = burn::module::Param::from_tensor(Tensor::from_floats(
            &(0..channels)
                .map(|c| 0.5 + c as f32 * 0.3)
                .collect::<Vec<_>>()[..],
            &device,
        ));
        bn.beta = burn::module::Param::from_tensor(Tensor::from_floats(
            &(0..channels)
                .map(|c| c as f32 * 0.2 - 0.3)
                .collect::<Vec<_>>()[..],
            &device,
        ));
        let x = Tensor::<4>::from_data(x.clone(), &device).require_grad();
        let r = Tensor::<4>::from_data(r.clone(), &device);
        let out = norm(&bn, x.clone());
        let grads = (out.clone() * r).sum().backward();
        [
            out.into_data(),
            x.grad(&grads).expect("x has a gradient").into_data(),
            bn.gamma
                .val()
                .grad(&grads)
                .expect("gamma has a gradient")
                .into_data(),
            bn.beta
                .val()
                .grad(&grads)
                .expect("beta has a gradient")
                .into_data(),
            bn.running_mean.value().into_data(),
            bn.running_var.value().into_data(),
        ]
    }

    #[test]
    fn fused_batch_norm_matches_burns_batch_norm_and_relu() {
        let device = Device::flex();
        device.seed(3);
        for (relu, shape) in [
            (true, [4, 3, 5, 6]),
            (false, [3, 5, 4, 4]),
            (true, [2, 4, 1, 1]),
        ] {
            let normal = Distribution::Normal(0.5, 2.0);
            let x = Tensor::<4>::random(shape, normal, &device).into_data();
            let r = Tensor::<4>::random(shape, normal, &device).into_data();
            let ours = batch_norm_step(|bn, x| batch_norm(bn, x, relu), &x, &r);
            let burns = batch_norm_step(
                |bn, x| {
                    let y = bn.forward(x);
                    if relu {
                        burn::tensor::activation::relu(y)
                    } else {
                        y
                    }
                },
                &x,
                &r,
            );
            let tolerance = burn::tensor::Tolerance::<f32>::absolute(1e-4);
            for (i, (a, b)) in ours.iter().zip(&burns).enumerate() {
                assert!(
                    a.shape() == b.shape(),
                    "{shape:?} relu {relu}: result {i} has shape {:?}, burn's {:?}",
                    a.shape(),
                    b.shape()
                );
                a.assert_approx_eq::<f32>(b, tolerance);
            }
        }
    }

    #[test]
    fn batch_norm_outside_training_matches_burns() {
        use burn::module::Param;
        use burn::nn::BatchNormConfig;
        let device = Device::flex();
        device.seed(9);
        let mut bn = BatchNormConfig::new(3).init(&device);
        // Running statistics and affine parameters away from their initial 0 and 1.
        let normal = Distribution::Normal(0.0, 1.0);
        bn.gamma = Param::from_tensor(Tensor::random([3], normal, &device));
        bn.beta = Param::from_tensor(Tensor::random([3], normal, &device));
        bn.running_mean = burn::module::RunningState::new(Tensor::random([3], normal, &device));
        bn.running_var = burn::module::RunningState::new(Tensor::random(
            [3],
            Distribution::Uniform(0.5, 2.0),
            &device,
        ));
        let x = Tensor::<4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 2.0), &device);
        for relu in [true, false] {
            let burns = bn.forward(x.clone());
            let burns = if relu {
                burn::tensor::activation::relu(burns)
            } else {
                burns
            };
            batch_norm(&bn, x.clone(), relu)
                .into_data()
                .assert_approx_eq::<f32>(
                    &burns.into_data(),
                    burn::tensor::Tolerance::absolute(1e-5),
                );
        }
    }

    #[test]
    fn max_pool_matches_burns_forward_and_backward() {
        use burn::nn::pool::MaxPool2dConfig;
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        let device = Device::flex();
        device.seed(5);
        // Odd sizes drop the last row and column; rounded values make ties, which go to the
        // first maximum in both; a NaN wins its window in both.
        for shape in [[2, 3, 6, 8], [1, 2, 5, 7], [3, 1, 1, 4]] {
            let mut x: Vec<f32> =
                Tensor::<4>::random(shape, Distribution::Normal(0.0, 2.0), &device)
                    .round()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
            x[1] = f32::NAN;
            let x = TensorData::new(x, shape);
            let out = [shape[0], shape[1], shape[2] / 2, shape[3] / 2];
            let r = Tensor::<4>::random(out, Distribution::Default, &device).into_data();
            let run = |ours: bool| {
                let device = Device::flex().autodiff();
                let x = Tensor::<4>::from_data(x.clone(), &device).require_grad();
                let y = if ours {
                    max_pool2d(&pool, x.clone())
                } else {
                    pool.forward(x.clone())
                };
                let grads = (y.clone() * Tensor::from_data(r.clone(), &device))
                    .sum()
                    .backward();
                (y.into_data(), x.grad(&grads).unwrap().into_data())
            };
            let (ours, burns) = (run(true), run(false));
            // Bitwise: NaN in the same places, the same winners.
            assert_eq!(
                format!("{:?}", ours.0.try_to_vec::<f32>().unwrap()),
                format!("{:?}", burns.0.try_to_vec::<f32>().unwrap()),
                "{shape:?}"
            );
            assert_eq!(
                format!("{:?}", ours.1.try_to_vec::<f32>().unwrap()),
                format!("{:?}", burns.1.try_to_vec::<f32>().unwrap()),
                "{shape:?}"
            );
        }
    }
}
