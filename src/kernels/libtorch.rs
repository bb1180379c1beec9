//! Training-mode BatchNorm on libtorch (`--device tch-cuda`, `tch-cpu`) in libtorch's own fused
//! kernels: one forward pass, and on CUDA the two backward kernels of PyTorch's SyncBatchNorm.
//! burn's `BatchNorm` is a composition of about a dozen element-wise operations each way, each a
//! kernel launch and a pass over the activation.

// burn 0.22 marks burn-tch deprecated; it is still the only backend with cuDNN here (docs/gpu.md).
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, LibTorch, backend_extension};
use burn::nn::BatchNorm;
use burn::tensor::Tensor;

/// The dimensions a BatchNorm of an NCHW activation reduces over.
const REDUCED: [i64; 3] = [0, 2, 3];

/// The operations pretext hands to libtorch whole.
#[backend_extension(LibTorch, Autodiff)]
pub trait TorchKernels: Backend {
    /// Training-mode BatchNorm of an NCHW activation with its batch's statistics: the output,
    /// and each channel's mean and biased variance (for the running statistics; not
    /// differentiated).
    fn torch_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// What libtorch's training-mode batch norm gives: the output, the statistics the backward pass
/// needs, and those burn's `BatchNorm` keeps for its running statistics.
struct Normalised {
    y: TchTensor,
    mean: TchTensor,
    invstd: TchTensor,
    /// The mean and the biased variance in the parameters' float type.
    running: (TchTensor, TchTensor),
}

/// libtorch's training-mode batch norm of `x`. The running mean may be `mean` itself, so it
/// shares `mean`'s storage record: burn-tch writes over a tensor in place when it thinks no
/// other holds it, and the backward pass keeps `mean`.
fn normalise(x: &tch::Tensor, gamma: &tch::Tensor, beta: &tch::Tensor, epsilon: f32) -> Normalised {
    let (y, mean, invstd) = x.native_batch_norm(
        Some(gamma),
        Some(beta),
        None::<&tch::Tensor>,
        None::<&tch::Tensor>,
        true,
        0.0,
        epsilon as f64,
    );
    let var = invstd.pow_tensor_scalar(-2) - epsilon as f64;
    let kind = gamma.kind();
    let mean = TchTensor::new(mean);
    let running = (
        TchTensor::from_existing(mean.tensor.to_kind(kind), mean.storage.clone()),
        TchTensor::new(var.to_kind(kind)),
    );
    Normalised {
        y: TchTensor::new(y),
        mean,
        invstd: TchTensor::new(invstd),
        running,
    }
}

impl TorchKernels for LibTorch {
    fn torch_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let n = normalise(&x.tensor, &gamma.tensor, &beta.tensor, epsilon);
        (n.y, n.running.0, n.running.1)
    }
}

impl<C: CheckpointStrategy> TorchKernels for Autodiff<LibTorch, C> {
    fn torch_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (xt, gt) = (x.primitive().clone(), gamma.primitive().clone());
        let n = normalise(&xt.tensor, &gt.tensor, &beta.primitive().tensor, epsilon);
        let untracked = <Self as AutodiffBackend>::from_inner;
        let y = match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = BatchNormState {
                    x: xt,
                    gamma: gt,
                    mean: n.mean,
                    invstd: n.invstd,
                };
                prep.finish(state, n.y)
            }
            OpsKind::UnTracked(prep) => prep.finish(n.y),
        };
        (y, untracked(n.running.0), untracked(n.running.1))
    }
}

/// What the backward pass keeps: the input, the scale and the batch's statistics as
/// libtorch computed them.
#[derive(Clone, Debug)]
struct BatchNormState {
    x: TchTensor,
    gamma: TchTensor,
    mean: TchTensor,
    invstd: TchTensor,
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<LibTorch, 3> for BatchNormBackward {
    type State = BatchNormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<LibTorch>(&ops.node);
        let s = ops.state;
        let (dx, dgamma, dbeta) = gradients(
            &dy.tensor,
            &s.x.tensor,
            &s.gamma.tensor,
            &s.mean.tensor,
            &s.invstd.tensor,
        );
        for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<LibTorch>(node.id, TchTensor::new(grad));
            }
        }
    }
}

/// The gradients of the input, the scale and the shift: PyTorch's two fused SyncBatchNorm
/// kernels for fp32 on CUDA (they have no CPU version, and their dtype rules for bf16 statistics
/// are untested here), the same formula in libtorch's element-wise operations otherwise.
fn gradients(
    dy: &tch::Tensor,
    x: &tch::Tensor,
    gamma: &tch::Tensor,
    mean: &tch::Tensor,
    invstd: &tch::Tensor,
) -> (tch::Tensor, tch::Tensor, tch::Tensor) {
    let values_per_channel = (x.numel() / x.size()[1] as usize) as i64;
    if x.device().is_cuda() && x.kind() == tch::Kind::Float {
        let (sum_dy, sum_dy_xmu, dgamma, dbeta) =
            dy.batch_norm_backward_reduce(x, mean, invstd, Some(gamma), true, true, true);
        let count = tch::Tensor::full([1], values_per_channel, (tch::Kind::Int, x.device()));
        let dx = dy.batch_norm_backward_elemt(
            x,
            mean,
            invstd,
            Some(gamma),
            &sum_dy,
            &sum_dy_xmu,
            &count,
        );
        return (dx, dgamma, dbeta);
    }
    let per_channel = |t: &tch::Tensor| t.view([1, -1, 1, 1]);
    let x_hat = (x - per_channel(mean)) * per_channel(invstd);
    let dbeta = dy.sum_dim_intlist(REDUCED.as_slice(), false, dy.kind());
    let dgamma = (dy * &x_hat).sum_dim_intlist(REDUCED.as_slice(), false, dy.kind());
    let m = values_per_channel as f64;
    let dx = per_channel(&(gamma * invstd / m))
        * (dy * m - per_channel(&dbeta) - x_hat * per_channel(&dgamma));
    (dx, dgamma, dbeta)
}

/// Whether `x` is on libtorch, where [`batch_norm_train`] takes BatchNorm whole (unless
/// `PRETEXT_KERNELS=burn`).
pub fn takes<const D: usize>(x: &Tensor<D>) -> bool {
    !super::burn_only()
        && matches!(
            x.device().inner().as_dispatch(),
            burn::backend::DispatchDevice::LibTorch(_)
        )
}

/// `bn.forward(x)` in training mode on libtorch, with burn's update of the running statistics.
pub fn batch_norm_train(bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    use burn::backend::Dispatch;
    let device = x.device();
    let (y, mean, var) = <Dispatch as TorchKernels>::torch_batch_norm(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon as f32,
    );
    let (mean, var) = (
        Tensor::<1>::from_dispatch(mean),
        Tensor::<1>::from_dispatch(var),
    );
    super::update_running_statistics(bn, mean, var, &device);
    Tensor::from_dispatch(y)
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::tensor::{Device, Distribution};

    use super::*;

    /// libtorch's CUDA device where there is one (the test binary run on the GPU machine), its
    /// CPU elsewhere.
    fn device() -> Device {
        if tch::Cuda::is_available() {
            Device::libtorch_cuda(0)
        } else {
            Device::libtorch()
        }
        .autodiff()
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().into_vec().unwrap()
    }

    fn assert_close(what: &str, a: Vec<f32>, b: Vec<f32>) {
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "{what}: differs by {worst}");
    }

    #[test]
    fn libtorch_batch_norm_matches_burns_values_gradients_and_running_statistics() {
        let device = device();
        let random = |dims: [usize; 1]| Tensor::<1>::random(dims, Distribution::Default, &device);
        let mut ours = BatchNormConfig::new(3).init(&device);
        ours.gamma = Param::from_tensor(random([3]).add_scalar(0.5));
        ours.beta = Param::from_tensor(random([3]));
        let burns = ours.clone();
        let x = Tensor::<4>::random([4, 3, 5, 6], Distribution::Normal(0.5, 2.0), &device);
        let weights = Tensor::<4>::random([4, 3, 5, 6], Distribution::Default, &device);
        let run = |y: Tensor<4>, x: &Tensor<4>, bn: &BatchNorm| {
            let grads = (y.clone() * weights.clone()).sum().backward();
            let grad = |t: &Tensor<1>| values(t.grad(&grads).unwrap());
            (
                values(y),
                values(x.grad(&grads).unwrap()),
                grad(&bn.gamma.val()),
                grad(&bn.beta.val()),
            )
        };
        let (x1, x2) = (x.clone().require_grad(), x.require_grad());
        let a = run(batch_norm_train(&ours, x1.clone()), &x1, &ours);
        let b = run(burns.forward(x2.clone()), &x2, &burns);
        assert_close("output", a.0, b.0);
        assert_close("input gradient", a.1, b.1);
        assert_close("scale gradient", a.2, b.2);
        assert_close("shift gradient", a.3, b.3);
        for (name, ours, burns) in [
            ("running mean", &ours.running_mean, &burns.running_mean),
            ("running variance", &ours.running_var, &burns.running_var),
        ] {
            assert_close(name, values(ours.value_sync()), values(burns.value_sync()));
        }
    }
}
