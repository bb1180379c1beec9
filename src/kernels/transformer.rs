//! The transformer's operations as a second backend extension: LayerNorm, GELU, dropout and
//! the self-attention core, each with its forward pass on flex and a handwritten backward pass
//! for autodiff. `models::bert` builds burn's `TransformerEncoderLayer` from these entry points,
//! which fall back to burn's own modules off the CPU.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::attention::{MhaInput, MultiHeadAttention};
use burn::nn::{Dropout, LayerNorm, Linear};
use burn::tensor::{Bool, Device, Distribution, Tensor};

use super::attention::{self, AttentionMasking, AttentionShape};
use super::dropout::{self, DropMask};
use super::{activation, f32s, flex_tensor, layernorm, linear, ours};

/// The transformer operations pretext computes itself on the CPU.
#[backend_extension(Flex, Autodiff)]
pub trait TransformerKernels: Backend {
    /// `x·weight + bias` over the last axis of `x` (`weight` is `[in, out]`, as burn's).
    fn linear_rows(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// LayerNorm over the last axis, with a shift.
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;
    /// `x·Φ(x)`: GELU in its exact (erf) form.
    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Keeps each value with probability `keep`, scaled by `1/keep`, by a hash of `seed` and
    /// the value's index.
    fn hashed_dropout(x: FloatTensor<Self>, keep: f32, seed: u64) -> FloatTensor<Self>;
    /// The context `[batch, len, heads·head_dim]` of multi-head self-attention over projected
    /// queries, keys and values of that shape. `pad` (`[batch, len]`, not differentiated) is
    /// 1 at padding keys, whose scores become `masked_score`; the weights are dropped out as
    /// `hashed_dropout` would.
    #[allow(clippy::too_many_arguments)]
    fn self_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        pad: FloatTensor<Self>,
        heads: usize,
        masked_score: f32,
        keep: f32,
        seed: u64,
    ) -> FloatTensor<Self>;
}

fn drop_mask(keep: f32, seed: u64) -> Option<DropMask> {
    (keep < 1.0).then(|| DropMask::new(keep, seed))
}

fn attention_shape(q: &FlexTensor, heads: usize) -> AttentionShape {
    let d = q.layout().shape();
    AttentionShape {
        batch: d[0],
        len: d[1],
        heads,
        head_dim: d[2] / heads,
    }
}

fn padding(pad: &FlexTensor) -> Vec<bool> {
    f32s(&pad.to_contiguous())
        .iter()
        .map(|&p| p != 0.0)
        .collect()
}

fn layer_norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f32,
) -> (FlexTensor, layernorm::RowStats) {
    let (xc, gamma, beta) = (
        x.to_contiguous(),
        gamma.to_contiguous(),
        beta.to_contiguous(),
    );
    let (y, stats) = layernorm::forward(f32s(&xc), f32s(&gamma), f32s(&beta), epsilon);
    (flex_tensor(y, x.layout().shape().clone()), stats)
}

/// The attention's context and its weights before dropout.
fn attention_forward(
    [q, k, v]: [&FlexTensor; 3],
    pad: &[bool],
    heads: usize,
    masking: AttentionMasking,
) -> (FlexTensor, Vec<f32>) {
    let s = attention_shape(q, heads);
    let [q, k, v] = [q, k, v].map(|t| t.to_contiguous());
    let (context, weights) = attention::forward(s, (f32s(&q), f32s(&k), f32s(&v)), pad, masking);
    (
        flex_tensor(context, [s.batch, s.len, s.heads * s.head_dim]),
        weights,
    )
}

fn masking(masked_score: f32, keep: f32, seed: u64) -> AttentionMasking {
    AttentionMasking {
        masked_score,
        dropout: drop_mask(keep, seed),
    }
}

/// The shape of `x` with its last axis `width` wide.
fn with_last(x: &FlexTensor, width: usize) -> burn::tensor::Shape {
    let mut shape = x.layout().shape().clone();
    let last = shape.num_dims() - 1;
    shape[last] = width;
    shape
}

impl TransformerKernels for Flex {
    fn linear_rows(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (xc, weight, bias) = (
            x.to_contiguous(),
            weight.to_contiguous(),
            bias.to_contiguous(),
        );
        let y = linear::forward(f32s(&xc), f32s(&weight), f32s(&bias));
        flex_tensor(y, with_last(&x, f32s(&bias).len()))
    }

    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        layer_norm_forward(&x, &gamma, &beta, epsilon).0
    }

    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let xc = x.to_contiguous();
        flex_tensor(activation::gelu(f32s(&xc)), x.layout().shape().clone())
    }

    fn hashed_dropout(x: FloatTensor<Self>, keep: f32, seed: u64) -> FloatTensor<Self> {
        match drop_mask(keep, seed) {
            Some(mask) => {
                let xc = x.to_contiguous();
                flex_tensor(dropout::apply(mask, f32s(&xc)), x.layout().shape().clone())
            }
            None => x,
        }
    }

    fn self_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        pad: FloatTensor<Self>,
        heads: usize,
        masked_score: f32,
        keep: f32,
        seed: u64,
    ) -> FloatTensor<Self> {
        let masking = masking(masked_score, keep, seed);
        attention_forward([&q, &k, &v], &padding(&pad), heads, masking).0
    }
}

fn retrieve(checkpointer: &mut Checkpointer, id: NodeId) -> FlexTensor {
    checkpointer
        .retrieve_node_output::<FlexTensor>(id)
        .to_contiguous()
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = [NodeId; 2];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ckp: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let [x, weight] = ops.state.map(|id| retrieve(ckp, id));
        let out = weight.layout().shape()[1];
        let wanted = ops.parents.each_ref().map(|p| p.is_some());
        let d = linear::backward(f32s(&x), f32s(&weight), out, f32s(&dy), wanted);
        let shapes = [
            x.layout().shape().clone(),
            weight.layout().shape().clone(),
            [out].into(),
        ];
        for ((node, d), shape) in ops.parents.into_iter().zip(d).zip(shapes) {
            if let (Some(node), Some(d)) = (node, d) {
                grads.register::<Flex>(node.id, flex_tensor(d, shape));
            }
        }
    }
}

#[derive(Clone, Debug)]
struct LayerNormState {
    x: NodeId,
    gamma: NodeId,
    stats: layernorm::RowStats,
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    type State = LayerNormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ckp: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let st = ops.state;
        let (x, gamma) = (retrieve(ckp, st.x), retrieve(ckp, st.gamma));
        let stats = (&st.stats.0[..], &st.stats.1[..]);
        let (dx, dgamma, dbeta) = layernorm::backward(f32s(&x), f32s(&gamma), stats, f32s(&dy));
        let width = dgamma.len();
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_tensor(dx, x.layout().shape().clone()));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, [width]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, [width]));
        }
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, ckp: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let x = retrieve(ckp, ops.state);
        if let Some(node) = node_x {
            let dx = activation::gelu_backward(f32s(&x), f32s(&dy));
            grads.register::<Flex>(node.id, flex_tensor(dx, x.layout().shape().clone()));
        }
    }
}

#[derive(Debug)]
struct DropoutBackward;

impl Backward<Flex, 1> for DropoutBackward {
    type State = DropMask;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        if let Some(node) = node_x {
            let dx = dropout::apply(ops.state, f32s(&dy));
            grads.register::<Flex>(node.id, flex_tensor(dx, dy.layout().shape().clone()));
        }
    }
}

#[derive(Clone, Debug)]
struct AttentionState {
    qkv: [NodeId; 3],
    weights: Vec<f32>,
    pad: Vec<bool>,
    heads: usize,
    masking: AttentionMasking,
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, ckp: &mut Checkpointer) {
        let dcontext = grads.consume::<Flex>(&ops.node).to_contiguous();
        let st = ops.state;
        let [q, k, v] = st.qkv.map(|id| retrieve(ckp, id));
        let s = attention_shape(&q, st.heads);
        let qkv = (f32s(&q), f32s(&k), f32s(&v));
        let d = attention::backward(s, qkv, &st.weights, &st.pad, st.masking, f32s(&dcontext));
        for (node, d) in ops.parents.into_iter().zip(d) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, flex_tensor(d, q.layout().shape().clone()));
            }
        }
    }
}

impl<C: CheckpointStrategy> TransformerKernels for Autodiff<Flex, C> {
    fn linear_rows(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match LinearBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = [prep.checkpoint(&x), prep.checkpoint(&weight)];
                let y = Flex::linear_rows(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                );
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::linear_rows(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }

    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        match LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (xs, gs) = (prep.checkpoint(&x), prep.checkpoint(&gamma));
                let (out, stats) =
                    layer_norm_forward(x.primitive(), gamma.primitive(), beta.primitive(), epsilon);
                let state = LayerNormState {
                    x: xs,
                    gamma: gs,
                    stats,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::layer_norm_last(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
            )),
        }
    }

    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, Flex::gelu_erf(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::gelu_erf(x.into_primitive())),
        }
    }

    fn hashed_dropout(x: FloatTensor<Self>, keep: f32, seed: u64) -> FloatTensor<Self> {
        let Some(mask) = drop_mask(keep, seed) else {
            return x;
        };
        match DropoutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish(mask, Flex::hashed_dropout(x.into_primitive(), keep, seed))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::hashed_dropout(x.into_primitive(), keep, seed))
            }
        }
    }

    fn self_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        pad: FloatTensor<Self>,
        heads: usize,
        masked_score: f32,
        keep: f32,
        seed: u64,
    ) -> FloatTensor<Self> {
        let pad = padding(&pad.into_primitive());
        let masking = masking(masked_score, keep, seed);
        match AttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let qkv = [
                    prep.checkpoint(&q),
                    prep.checkpoint(&k),
                    prep.checkpoint(&v),
                ];
                let (context, weights) = attention_forward(
                    [q.primitive(), k.primitive(), v.primitive()],
                    &pad,
                    heads,
                    masking,
                );
                let state = AttentionState {
                    qkv,
                    weights,
                    pad,
                    heads,
                    masking,
                };
                prep.finish(state, context)
            }
            OpsKind::UnTracked(prep) => prep.finish(
                attention_forward(
                    [
                        &q.into_primitive(),
                        &k.into_primitive(),
                        &v.into_primitive(),
                    ],
                    &pad,
                    heads,
                    masking,
                )
                .0,
            ),
        }
    }
}

/// Whether `dropout` is active on `x`: in training, with autodiff, at a positive rate (burn's
/// own rule).
fn dropping(dropout: &Dropout, x_device: &Device) -> bool {
    dropout.training.is_enabled() && x_device.is_autodiff() && dropout.prob > 0.0
}

/// A dropout seed drawn from burn's generator, so that a seeded run draws the same masks.
fn draw_seed(device: &Device) -> u64 {
    let r: Vec<f32> = Tensor::<1>::random([2], Distribution::Default, device)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 draws");
    let word = |u: f32| (u as f64 * 4_294_967_296.0) as u64;
    (word(r[0]) << 32) | word(r[1])
}

/// `lin.forward(x)`.
pub fn linear<const D: usize>(lin: &Linear, x: Tensor<D>) -> Tensor<D> {
    match &lin.bias {
        Some(bias) if ours(&x) => Tensor::from_dispatch(Dispatch::linear_rows(
            x.into_dispatch(),
            lin.weight.val().into_dispatch(),
            bias.val().into_dispatch(),
        )),
        _ => lin.forward(x),
    }
}

/// `norm.forward(x)` with LayerNorm's `epsilon` (burn keeps it private; pretext builds every
/// LayerNorm with the one it passes here).
pub fn layer_norm<const D: usize>(norm: &LayerNorm, epsilon: f64, x: Tensor<D>) -> Tensor<D> {
    match &norm.beta {
        Some(beta) if ours(&x) => Tensor::from_dispatch(Dispatch::layer_norm_last(
            x.into_dispatch(),
            norm.gamma.val().into_dispatch(),
            beta.val().into_dispatch(),
            epsilon as f32,
        )),
        _ => norm.forward(x),
    }
}

/// `gelu(x)`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if ours(&x) {
        Tensor::from_dispatch(Dispatch::gelu_erf(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// `dropout.forward(x)`.
pub fn dropout<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !ours(&x) || !dropping(dropout, &device) {
        return dropout.forward(x);
    }
    let keep = (1.0 - dropout.prob) as f32;
    Tensor::from_dispatch(Dispatch::hashed_dropout(
        x.into_dispatch(),
        keep,
        draw_seed(&device),
    ))
}

/// `mha.forward(MhaInput::self_attn(x).mask_pad(pad)).context`.
pub fn self_attention(mha: &MultiHeadAttention, x: Tensor<3>, pad: Tensor<2, Bool>) -> Tensor<3> {
    if !ours(&x) || mha.quiet_softmax {
        return mha.forward(MhaInput::self_attn(x).mask_pad(pad)).context;
    }
    let device = x.device();
    let (q, k) = (linear(&mha.query, x.clone()), linear(&mha.key, x.clone()));
    let v = linear(&mha.value, x);
    let (keep, seed) = if dropping(&mha.dropout, &device) {
        ((1.0 - mha.dropout.prob) as f32, draw_seed(&device))
    } else {
        (1.0, 0)
    };
    let context = Tensor::from_dispatch(Dispatch::self_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        pad.float().into_dispatch(),
        mha.n_heads,
        mha.min_float as f32,
        keep,
        seed,
    ));
    linear(&mha.output, context)
}

/// Self-attention over every token (no padding, no dropout) with the query, key and value
/// projections fused in one linear layer, `qkv` (rows of its output: the query's `d` values, the
/// key's, the value's; timm's layout), and the output projection `proj`.
pub fn fused_self_attention(qkv: &Linear, proj: &Linear, heads: usize, x: Tensor<3>) -> Tensor<3> {
    let [b, n, d] = x.dims();
    let packed = linear(qkv, x);
    let part = |i: usize| packed.clone().narrow(2, i * d, d);
    let (q, k, v) = (part(0), part(1), part(2));
    let context = if ours(&q) {
        let none_padded = Tensor::<2>::zeros([b, n], &q.device());
        Tensor::from_dispatch(Dispatch::self_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            none_padded.into_dispatch(),
            heads,
            MASKED_SCORE,
            1.0,
            0,
        ))
    } else {
        attention_by_tensor_ops(q, k, v, heads)
    };
    linear(proj, context)
}

/// The score no token gets (nothing is masked here; the kernel asks for one).
const MASKED_SCORE: f32 = -1.0e4;

/// softmax(q k^T / sqrt(head_dim)) v per head, with burn's tensor operations (other devices,
/// and the reference the kernel is tested against).
pub(crate) fn attention_by_tensor_ops(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
) -> Tensor<3> {
    let [b, n, d] = q.dims();
    let hd = d / heads;
    let split = |t: Tensor<3>| t.reshape([b, n, heads, hd]).swap_dims(1, 2);
    let scores = split(q).matmul(split(k).swap_dims(2, 3)) / (hd as f64).sqrt();
    let weights = burn::tensor::activation::softmax(scores, 3);
    weights.matmul(split(v)).swap_dims(1, 2).reshape([b, n, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::LayerNormConfig;
    use burn::nn::attention::MultiHeadAttentionConfig;
    use burn::tensor::{TensorData, Tolerance};

    fn normal<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    /// `f(x)`, x's gradient of `sum(f(x)·r)`, then the parameters' gradients `params` reads.
    fn output_and_gradients<const D: usize>(
        f: &dyn Fn(Tensor<D>) -> Tensor<D>,
        x: &Tensor<D>,
        r: &Tensor<D>,
        params: impl Fn(&burn::tensor::Gradients) -> [TensorData; 2],
    ) -> Vec<TensorData> {
        let x = x.clone().detach().require_grad();
        let y = f(x.clone());
        let g = (y.clone() * r.clone()).sum().backward();
        let mut out = vec![y.into_data(), x.grad(&g).unwrap().into_data()];
        out.extend(params(&g));
        out
    }

    fn assert_all_close(ours: &[TensorData], burns: &[TensorData], tolerance: f32) {
        for (a, b) in ours.iter().zip(burns) {
            a.assert_approx_eq::<f32>(b, Tolerance::absolute(tolerance));
        }
    }

    fn tol() -> Tolerance<f32> {
        Tolerance::absolute(2e-5)
    }

    #[test]
    fn linear_matches_burns_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(2);
        // Rows several partial sums long, and a product large enough for gemm's threads.
        for (batch, len, inputs, outputs) in [(2, 3, 5, 4), (3, 200, 64, 96)] {
            let lin = burn::nn::LinearConfig::new(inputs, outputs).init(&device);
            let x = normal([batch, len, inputs], &device);
            let r = normal([batch, len, outputs], &device);
            let run = |f: &dyn Fn(Tensor<3>) -> Tensor<3>| {
                output_and_gradients(f, &x, &r, |g| {
                    let bias = lin.bias.as_ref().unwrap().val();
                    let weight = lin.weight.val().grad(g).unwrap().into_data();
                    [weight, bias.grad(g).unwrap().into_data()]
                })
            };
            let ours = run(&|x| linear(&lin, x));
            let burns = run(&|x| lin.forward(x));
            assert_all_close(&ours, &burns, 1e-3);
        }
    }

    #[test]
    fn layer_norm_matches_burns_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(3);
        for (rows, width) in [(7, 5), (130, 24), (3, 256)] {
            let mut norm = LayerNormConfig::new(width).init(&device);
            norm.gamma = Param::from_tensor(normal([width], &device).add_scalar(1.0));
            norm.beta = Some(Param::from_tensor(normal([width], &device)));
            let x = normal([rows, width], &device)
                .mul_scalar(3.0)
                .add_scalar(0.5);
            let r = normal([rows, width], &device);
            let run = |f: &dyn Fn(Tensor<2>) -> Tensor<2>| {
                output_and_gradients(f, &x, &r, |g| {
                    let beta = norm.beta.as_ref().unwrap().val();
                    [norm.gamma.val().grad(g), beta.grad(g)].map(|d| d.unwrap().into_data())
                })
            };
            let ours = run(&|x| layer_norm(&norm, 1e-5, x));
            let burns = run(&|x| norm.forward(x));
            assert_all_close(&ours, &burns, 1e-4);
        }
    }

    #[test]
    fn gelu_matches_burns_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let x = normal([1000, 3], &device).mul_scalar(4.0);
        let run = |f: &dyn Fn(Tensor<2>) -> Tensor<2>| {
            let x = x.clone().detach().require_grad();
            let y = f(x.clone());
            let g = (y.clone() * y.clone()).sum().backward();
            [y.into_data(), x.grad(&g).unwrap().into_data()]
        };
        let ours = run(&|x| gelu(x));
        let burns = run(&|x| burn::tensor::activation::gelu(x));
        ours[0].assert_approx_eq::<f32>(&burns[0], tol());
        ours[1].assert_approx_eq::<f32>(&burns[1], Tolerance::absolute(1e-4));
    }

    #[test]
    fn dropout_scales_what_it_keeps_and_routes_the_gradient_the_same_way() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let drop = burn::nn::DropoutConfig::new(0.25).init();
        let x = normal([64, 100], &device).detach().require_grad();
        let y = dropout(&drop, x.clone());
        let g = y.clone().sum().backward();
        let dx = x.grad(&g).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let (x, y) = (
            x.into_data().try_to_vec::<f32>().unwrap(),
            y.into_data().try_to_vec::<f32>().unwrap(),
        );
        let mut kept = 0;
        for ((x, y), dx) in x.iter().zip(&y).zip(&dx) {
            if *dx == 0.0 {
                assert_eq!(*y, 0.0);
            } else {
                assert!((dx - 1.0 / 0.75).abs() < 1e-6 && (y - x / 0.75).abs() < 1e-5);
                kept += 1;
            }
        }
        // 6400 draws at 0.75: the standard deviation of the count is 35.
        assert!((kept as f64 - 4800.0).abs() < 175.0, "kept {kept}");
        // Outside autodiff (inference) nothing is dropped.
        let plain = normal([4, 4], &Device::flex());
        dropout(&drop, plain.clone())
            .into_data()
            .assert_eq(&plain.into_data(), true);
    }

    /// Attention of `[batch, len, heads·dk]` q, k, v through burn's operations, with the
    /// dropout mask `DropMask` draws for `seed` as a constant factor on the weights.
    fn attention_by_burn(
        [q, k, v]: [Tensor<3>; 3],
        pad: &Tensor<2, Bool>,
        heads: usize,
        mask: Option<DropMask>,
    ) -> Tensor<3> {
        let [b, l, d] = q.dims();
        let split = |t: Tensor<3>| t.reshape([b, l, heads, d / heads]).swap_dims(1, 2);
        let scores = split(q)
            .matmul(split(k).swap_dims(2, 3))
            .div_scalar(((d / heads) as f32).sqrt())
            .mask_fill(pad.clone().reshape([b, 1, 1, l]), -1.0e4);
        let mut weights = burn::tensor::activation::softmax(scores, 3);
        if let Some(mask) = mask {
            let factors: Vec<f32> = (0..b * heads * l * l).map(|i| mask.factor(i)).collect();
            let factors = TensorData::new(factors, [b, heads, l, l]);
            weights = weights * Tensor::from_data(factors, &pad.device());
        }
        weights.matmul(split(v)).swap_dims(1, 2).reshape([b, l, d])
    }

    #[test]
    fn self_attention_matches_burns_operations_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(6);
        let (b, l, heads, dk) = (3, 11, 2, 5);
        let d = heads * dk;
        let pad = Tensor::<2, Bool>::from_data(
            TensorData::new(
                (0..b * l)
                    .map(|i| i % l >= l - i / l * 3)
                    .collect::<Vec<_>>(),
                [b, l],
            ),
            &device,
        );
        let qkv: [Tensor<3>; 3] = std::array::from_fn(|_| normal([b, l, d], &device));
        let r = normal([b, l, d], &device);
        for (keep, seed) in [(1.0f32, 0u64), (0.8, 42)] {
            let run = |f: &dyn Fn([Tensor<3>; 3]) -> Tensor<3>| {
                let inputs = qkv.clone().map(|t| t.detach().require_grad());
                let y = f(inputs.clone());
                let g = (y.clone() * r.clone()).sum().backward();
                let mut out = vec![y.into_data()];
                out.extend(inputs.map(|t| t.grad(&g).unwrap().into_data()));
                out
            };
            let ours = run(&|[q, k, v]| {
                Tensor::from_dispatch(Dispatch::self_attention(
                    q.into_dispatch(),
                    k.into_dispatch(),
                    v.into_dispatch(),
                    pad.clone().float().into_dispatch(),
                    heads,
                    -1.0e4,
                    keep,
                    seed,
                ))
            });
            let burns = run(&|t| attention_by_burn(t, &pad, heads, drop_mask(keep, seed)));
            assert_all_close(&ours, &burns, 1e-4);
        }
    }

    #[test]
    fn the_attention_module_path_matches_burns_module() {
        let device = Device::flex().autodiff();
        device.seed(8);
        let mha = MultiHeadAttentionConfig::new(12, 3)
            .with_dropout(0.0)
            .init(&device);
        let x = normal([2, 7, 12], &device);
        let pad = Tensor::<2, Bool>::from_data(
            TensorData::new(
                (0..14).map(|i| i == 6 || i > 10).collect::<Vec<_>>(),
                [2, 7],
            ),
            &device,
        );
        let run = |f: &dyn Fn(Tensor<3>) -> Tensor<3>| {
            let x = x.clone().detach().require_grad();
            let y = f(x.clone());
            let g = (y.clone() * y.clone()).sum().backward();
            [
                y.into_data(),
                x.grad(&g).unwrap().into_data(),
                mha.query.weight.val().grad(&g).unwrap().into_data(),
            ]
        };
        let ours = run(&|x| self_attention(&mha, x, pad.clone()));
        let burns = run(&|x| {
            mha.forward(MhaInput::self_attn(x).mask_pad(pad.clone()))
                .context
        });
        assert_all_close(&ours, &burns, 1e-4);
    }
}
