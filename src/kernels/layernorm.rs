//! LayerNorm over the last axis of a row-major `[rows, width]` f32 slice, forward and backward
//! in one pass each.
//!
//! burn 0.22 differentiates LayerNorm through its generic decomposition (mean, subtract,
//! square, mean, add, square root, divide, scale, shift): nine tensors and as many passes
//! forward, more backward. Rows here are short (the hidden width) and stay in cache.

use rayon::prelude::*;

use super::lanes::{self, LANES};

/// Rows per parallel task. Fixed, not derived from the thread count, so that the parameter
/// gradients are summed in the same order on any number of threads.
const ROWS_PER_TASK: usize = 64;

/// Mean and `1/√(var + ε)` (biased variance) of each row.
pub type RowStats = (Vec<f32>, Vec<f32>);

crate::simd_fn! {
    fn forward_rows(
        x: &[f32],
        y: &mut [f32],
        mean: &mut [f32],
        inv_std: &mut [f32],
        gamma: &[f32],
        beta: &[f32],
        epsilon: f32,
    ) -> () {
        let width = gamma.len();
        for (r, (xr, yr)) in x.chunks_exact(width).zip(y.chunks_exact_mut(width)).enumerate() {
            let m = lanes::sum_of(xr, |v| v) / width as f32;
            let var = lanes::sum_of(xr, |v| (v - m) * (v - m)) / width as f32;
            let s = 1.0 / (var + epsilon).sqrt();
            for (((y, &x), &g), &b) in yr.iter_mut().zip(xr).zip(gamma).zip(beta) {
                *y = (x - m) * s * g + b;
            }
            mean[r] = m;
            inv_std[r] = s;
        }
    }
}

/// `gamma · (x - mean)/√(var + ε) + beta` per row, and the row statistics for the backward
/// pass.
pub fn forward(x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f32) -> (Vec<f32>, RowStats) {
    let width = gamma.len();
    let rows = x.len() / width;
    let (mut y, mut mean, mut inv_std) = (super::zeros(x.len()), vec![0.0; rows], vec![0.0; rows]);
    let block = ROWS_PER_TASK * width;
    y.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(
            mean.par_chunks_mut(ROWS_PER_TASK)
                .zip(inv_std.par_chunks_mut(ROWS_PER_TASK)),
        )
        .for_each(|((y, x), (m, s))| forward_rows(x, y, m, s, gamma, beta, epsilon));
    (y, (mean, inv_std))
}

crate::simd_fn! {
    /// dx of a block of rows; its partial sums of dgamma (`dy·xhat`) and dbeta (`dy`).
    fn backward_rows(
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        mean: &[f32],
        inv_std: &[f32],
        gamma: &[f32],
        partial: &mut [f32],
    ) -> () {
        let width = gamma.len();
        let (dgamma, dbeta) = partial.split_at_mut(width);
        let rows = x.chunks_exact(width).zip(dy.chunks_exact(width));
        for (r, ((xr, dyr), dxr)) in rows.zip(dx.chunks_exact_mut(width)).enumerate() {
            let (m, s) = (mean[r], inv_std[r]);
            // g = dy·gamma; dx = s·(g - mean(g) - xhat·mean(g·xhat)).
            let (mut g_acc, mut gx_acc) = ([0.0f32; LANES], [0.0f32; LANES]);
            let (mut g_tail, mut gx_tail) = (0.0, 0.0);
            let (xc, dyc, gc) = (
                xr.chunks_exact(LANES),
                dyr.chunks_exact(LANES),
                gamma.chunks_exact(LANES),
            );
            let tails = xc.remainder().iter().zip(dyc.remainder()).zip(gc.remainder());
            for ((&x, &dy), &gm) in tails {
                g_tail += dy * gm;
                gx_tail += dy * gm * (x - m) * s;
            }
            for ((x, dy), gm) in xc.zip(dyc).zip(gc) {
                for l in 0..LANES {
                    let g = dy[l] * gm[l];
                    g_acc[l] += g;
                    gx_acc[l] += g * (x[l] - m) * s;
                }
            }
            let g_mean = (g_acc.iter().sum::<f32>() + g_tail) / width as f32;
            let gx_mean = (gx_acc.iter().sum::<f32>() + gx_tail) / width as f32;
            let cols = xr.iter().zip(dyr).zip(gamma).zip(dxr.iter_mut());
            for ((((&x, &dy), &gm), dx), (dg, db)) in cols.zip(dgamma.iter_mut().zip(dbeta.iter_mut())) {
                let xhat = (x - m) * s;
                *dx = s * (dy * gm - g_mean - xhat * gx_mean);
                *dg += dy * xhat;
                *db += dy;
            }
        }
    }
}

/// The gradients of [`forward`]: dx, dgamma and dbeta.
pub fn backward(
    x: &[f32],
    gamma: &[f32],
    (mean, inv_std): (&[f32], &[f32]),
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    let rows = x.len() / width;
    let block = ROWS_PER_TASK * width;
    let mut dx = super::zeros(x.len());
    let mut partials = vec![0.0; rows.div_ceil(ROWS_PER_TASK) * 2 * width];
    dx.par_chunks_mut(block)
        .zip(x.par_chunks(block).zip(dy.par_chunks(block)))
        .zip(
            mean.par_chunks(ROWS_PER_TASK)
                .zip(inv_std.par_chunks(ROWS_PER_TASK)),
        )
        .zip(partials.par_chunks_mut(2 * width))
        .for_each(|(((dx, (x, dy)), (m, s)), p)| backward_rows(x, dy, dx, m, s, gamma, p));
    let (mut dgamma, mut dbeta) = (vec![0.0f32; width], vec![0.0f32; width]);
    for p in partials.chunks_exact(2 * width) {
        let (pg, pb) = p.split_at(width);
        dgamma.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
        dbeta.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dx, dgamma, dbeta)
}
