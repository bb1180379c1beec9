//! The end of a residual block, `relu(y + skip)`, as one operation that keeps its output for
//! the backward pass. burn's ReLU keeps its input, the sum, which nothing else holds: one
//! extra activation of the block's full size per block (about 0.7 GB of a ResNet-50 step at
//! 224 pixels, batch 32). The output is held anyway, as the next convolution's input, and it
//! carries the same mask (`out > 0` exactly where `y + skip > 0`).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::ELEMENTWISE_CHUNK as CHUNK;
use super::batchnorm::open_gradient;
use super::{f32s, flex_tensor, ours, owned_values};

/// The residual join pretext computes itself on the CPU.
#[backend_extension(Flex, Autodiff)]
pub trait ResidualKernels: Backend {
    /// `max(y + skip, 0)` of two tensors of one shape.
    fn add_relu(y: FloatTensor<Self>, skip: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The join at one element.
#[inline(always)]
fn joined(y: f32, skip: f32) -> f32 {
    (y + skip).max(0.0)
}

crate::simd_fn! {
    fn add_relu_chunk(y: &[f32], skip: &[f32], out: &mut [f32]) -> () {
        for ((o, &a), &b) in out.iter_mut().zip(y).zip(skip) {
            *o = joined(a, b);
        }
    }
}

crate::simd_fn! {
    fn add_relu_in_place_chunk(y: &mut [f32], skip: &[f32]) -> () {
        for (a, &b) in y.iter_mut().zip(skip) {
            *a = joined(*a, b);
        }
    }
}

crate::simd_fn! {
    fn relu_mask_chunk(out: &[f32], dout: &[f32], d: &mut [f32]) -> () {
        for ((d, &o), &g) in d.iter_mut().zip(out).zip(dout) {
            *d = open_gradient(o, true, g);
        }
    }
}

/// `max(y + skip, 0)` element by element.
pub fn add_relu(y: &[f32], skip: &[f32]) -> Vec<f32> {
    assert_eq!(y.len(), skip.len(), "residual operands differ in length");
    let mut out = super::zeros(y.len());
    out.par_chunks_mut(CHUNK)
        .zip(y.par_chunks(CHUNK).zip(skip.par_chunks(CHUNK)))
        .for_each(|(o, (y, s))| add_relu_chunk(y, s, o));
    out
}

/// `y ← max(y + skip, 0)`: the same values as [`add_relu`], without a new buffer.
pub fn add_relu_in_place(y: &mut [f32], skip: &[f32]) {
    assert_eq!(y.len(), skip.len(), "residual operands differ in length");
    y.par_chunks_mut(CHUNK)
        .zip(skip.par_chunks(CHUNK))
        .for_each(|(y, s)| add_relu_in_place_chunk(y, s));
}

/// The gradient reaching both operands: `dout` where the output is positive, else 0.
pub fn add_relu_backward(out: &[f32], dout: &[f32]) -> Vec<f32> {
    let mut d = super::zeros(out.len());
    d.par_chunks_mut(CHUNK)
        .zip(out.par_chunks(CHUNK).zip(dout.par_chunks(CHUNK)))
        .for_each(|(d, (o, g))| relu_mask_chunk(o, g, d));
    d
}

impl ResidualKernels for Flex {
    fn add_relu(mut y: FloatTensor<Self>, skip: FloatTensor<Self>) -> FloatTensor<Self> {
        let skip = skip.to_contiguous();
        if let Some(values) = owned_values(&mut y) {
            add_relu_in_place(values, f32s(&skip));
            return y;
        }
        let shape = y.layout().shape().clone();
        let y = y.to_contiguous();
        flex_tensor(add_relu(f32s(&y), f32s(&skip)), shape)
    }
}

#[derive(Debug)]
struct AddReluBackward;

impl Backward<Flex, 2> for AddReluBackward {
    /// The operation's output (shared with whatever reads it next, not a copy).
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_y, node_skip] = ops.parents;
        let dout = grads.consume::<Flex>(&ops.node).to_contiguous();
        let out = ops.state.to_contiguous();
        let d = flex_tensor(
            add_relu_backward(f32s(&out), f32s(&dout)),
            out.layout().shape().clone(),
        );
        if let Some(node) = node_skip {
            grads.register::<Flex>(node.id, d.clone());
        }
        if let Some(node) = node_y {
            grads.register::<Flex>(node.id, d);
        }
    }
}

impl<C: CheckpointStrategy> ResidualKernels for Autodiff<Flex, C> {
    fn add_relu(y: FloatTensor<Self>, skip: FloatTensor<Self>) -> FloatTensor<Self> {
        match AddReluBackward
            .prepare::<C>([y.node(), skip.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = Flex::add_relu(y.into_primitive(), skip.into_primitive());
                prep.finish(out.clone(), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::add_relu(y.into_primitive(), skip.into_primitive()))
            }
        }
    }
}

/// `relu(y + skip)`: pretext's kernel on the CPU, burn's operations elsewhere.
pub fn residual_relu(y: Tensor<4>, skip: Tensor<4>) -> Tensor<4> {
    if ours(&y) && skip.dtype() == y.dtype() && y.dims() == skip.dims() {
        Tensor::from_dispatch(<Dispatch as ResidualKernels>::add_relu(
            y.into_dispatch(),
            skip.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::relu(y + skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    /// Output and both gradients of `sum(join(y, skip) · r)` on the autodiff CPU.
    fn run(
        join: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
        [y, skip, r]: [&TensorData; 3],
    ) -> [TensorData; 3] {
        let device = Device::flex().autodiff();
        let y = Tensor::<4>::from_data(y.clone(), &device).require_grad();
        let skip = Tensor::<4>::from_data(skip.clone(), &device).require_grad();
        let out = join(y.clone(), skip.clone());
        let grads = (out.clone() * Tensor::from_data(r.clone(), &device))
            .sum()
            .backward();
        [
            out.into_data(),
            y.grad(&grads).expect("y has a gradient").into_data(),
            skip.grad(&grads).expect("skip has a gradient").into_data(),
        ]
    }

    #[test]
    fn matches_burns_add_and_relu_forward_and_backward() {
        let device = Device::flex();
        device.seed(11);
        // Odd lengths, and one longer than a parallel chunk.
        for shape in [[2, 3, 5, 7], [1, 4, 65, 70]] {
            let draw = || Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let (y, skip, r) = (draw().into_data(), draw().into_data(), draw().into_data());
            let ours = run(residual_relu, [&y, &skip, &r]);
            let burns = run(
                |y, s| burn::tensor::activation::relu(y + s),
                [&y, &skip, &r],
            );
            for (a, b) in ours.iter().zip(&burns) {
                a.assert_eq(b, true);
            }
        }
    }

    #[test]
    fn the_gradient_is_zero_where_the_sum_is_not_positive() {
        let (y, skip) = ([1.0, -2.0, 0.5, 0.0], [-0.5, 1.0, -0.5, 0.0]);
        let out = add_relu(&y, &skip);
        assert_eq!(out, [0.5, 0.0, 0.0, 0.0]);
        let mut in_place = y;
        add_relu_in_place(&mut in_place, &skip);
        assert_eq!(in_place, out[..]);
        assert_eq!(add_relu_backward(&out, &[3.0; 4]), [3.0, 0.0, 0.0, 0.0]);
    }
}
