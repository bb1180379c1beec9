//! Fully connected layers, `y = x·W + b` over `[rows, in]` row-major inputs and `[in, out]`
//! weights (burn's layout), forward and backward.
//!
//! burn-flex's matmul zeroes every output buffer, then copies it into an aligned one, before
//! `gemm` writes it: three passes over a `[4096, 1024]` activation where one would do; and the
//! bias is a further broadcast pass. Here the output starts as the bias rows and `gemm`
//! accumulates onto them; the gradients are written once.

use rayon::prelude::*;

use super::matmul::{accumulate_product, product};

/// Rows per partial sum of the bias gradient: a fixed split, so the sum's order does not
/// depend on the thread count.
const ROWS_PER_TASK: usize = 256;

/// `x·W + b` for `x` `[rows, in]`, `weight` `[in, out]`, `bias` `[out]`.
pub fn forward(x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let out = bias.len();
    let inputs = weight.len() / out.max(1);
    let rows = x.len() / inputs.max(1);
    let mut y = Vec::with_capacity(rows * out);
    for _ in 0..rows {
        y.extend_from_slice(bias);
    }
    accumulate_product(
        (rows, out, inputs),
        &mut y,
        (x, inputs, 1),
        (weight, out, 1),
    );
    y
}

/// The gradients of [`forward`] with respect to x, the weight and the bias (whose width is
/// `out`), each computed only where `wanted`.
pub fn backward(
    x: &[f32],
    weight: &[f32],
    out: usize,
    dy: &[f32],
    wanted: [bool; 3],
) -> [Option<Vec<f32>>; 3] {
    let inputs = weight.len() / out.max(1);
    let rows = dy.len() / out.max(1);
    // dx = dy·Wᵀ and dW = xᵀ·dy, the transposes read through their strides.
    let dx = wanted[0].then(|| product((rows, inputs, out), (dy, out, 1), (weight, 1, out)));
    let dw = wanted[1].then(|| product((inputs, out, rows), (x, 1, inputs), (dy, out, 1)));
    let db = wanted[2].then(|| column_sums(dy, out));
    [dx, dw, db]
}

/// The sum of each column of a row-major matrix `width` wide.
fn column_sums(m: &[f32], width: usize) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = m
        .par_chunks(ROWS_PER_TASK * width.max(1))
        .map(|block| {
            let mut sums = vec![0.0f32; width];
            for row in block.chunks_exact(width) {
                sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            sums
        })
        .collect();
    let mut sums = vec![0.0f32; width];
    for p in &partials {
        sums.iter_mut().zip(p).for_each(|(s, v)| *s += v);
    }
    sums
}
