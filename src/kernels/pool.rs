//! 2×2 max pooling with stride 2 over NCHW f32 slices (ConvNet-4's pooling).
//!
//! burn-flex's general pooling computes window bounds and divisions per output and scatters
//! its backward pass through stored i64 indices; with the window fixed, the forward pass is
//! four loads per output, and training keeps one byte per output (which of the four won)
//! instead of the input for the backward pass.

use rayon::prelude::*;

/// Input `[batch·channels planes, h, w]`; the output is `[.., h/2, w/2]` (odd edges dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
}

impl PoolShape {
    pub fn out_h(&self) -> usize {
        self.h / 2
    }
    pub fn out_w(&self) -> usize {
        self.w / 2
    }
}

/// Whether `b` takes a window's maximum from `a`: greater, or NaN. Taken in row-major
/// order, the first of equal maxima wins, and NaN always does, as in burn and PyTorch.
#[inline(always)]
fn beats(b: f32, a: f32) -> bool {
    b > a || b.is_nan()
}

/// The winner of `a` and `b` by [`beats`].
#[inline(always)]
fn later_wins(a: f32, b: f32) -> f32 {
    if beats(b, a) { b } else { a }
}

crate::simd_fn! {
    fn plane_forward(s: PoolShape, x: &[f32], y: &mut [f32]) -> () {
        let wo = s.out_w();
        for (i, row) in y.chunks_exact_mut(wo.max(1)).enumerate().take(s.out_h()) {
            let top = &x[2 * i * s.w..][..2 * wo];
            let bottom = &x[(2 * i + 1) * s.w..][..2 * wo];
            for ((y, t), b) in row.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
                *y = later_wins(later_wins(later_wins(t[0], t[1]), b[0]), b[1]);
            }
        }
    }
}

crate::simd_fn! {
    /// The forward pass that also records each window's winner (0 to 3, row-major in the window) for
    /// the backward pass, so that the input need not be kept for it. Selects, not branches,
    /// so that the loop vectorises.
    fn plane_forward_winners(s: PoolShape, x: &[f32], y: &mut [f32], won: &mut [u8]) -> () {
        let wo = s.out_w();
        for i in 0..s.out_h() {
            let top = &x[2 * i * s.w..][..2 * wo];
            let bottom = &x[(2 * i + 1) * s.w..][..2 * wo];
            let (y, won) = (&mut y[i * wo..][..wo], &mut won[i * wo..][..wo]);
            for j in 0..wo {
                let (mut m, mut k) = (top[2 * j], 0u8);
                for (v, kv) in [(top[2 * j + 1], 1u8), (bottom[2 * j], 2), (bottom[2 * j + 1], 3)] {
                    let b = beats(v, m);
                    m = if b { v } else { m };
                    k = if b { kv } else { k };
                }
                y[j] = m;
                won[j] = k;
            }
        }
    }
}

crate::simd_fn! {
    /// Writes all four positions of each window (the winner's gradient, zeros elsewhere) as
    /// selects, which vectorise; a scatter to the winner alone does not.
    fn plane_backward(s: PoolShape, won: &[u8], dy: &[f32], dx: &mut [f32]) -> () {
        let wo = s.out_w();
        for i in 0..s.out_h() {
            let (won, dy) = (&won[i * wo..][..wo], &dy[i * wo..][..wo]);
            let (top, bottom) = dx[2 * i * s.w..][..2 * s.w].split_at_mut(s.w);
            for j in 0..wo {
                let (k, g) = (won[j], dy[j]);
                top[2 * j] = if k == 0 { g } else { 0.0 };
                top[2 * j + 1] = if k == 1 { g } else { 0.0 };
                bottom[2 * j] = if k == 2 { g } else { 0.0 };
                bottom[2 * j + 1] = if k == 3 { g } else { 0.0 };
            }
        }
    }
}

pub fn forward(s: PoolShape, x: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), s.planes * s.h * s.w, "input length");
    let out = s.out_h() * s.out_w();
    let mut y = super::zeros(s.planes * out);
    if out == 0 {
        return y;
    }
    y.par_chunks_mut(out)
        .zip(x.par_chunks(s.h * s.w))
        .for_each(|(y, x)| plane_forward(s, x, y));
    y
}

/// The output and each window's winner (one byte per output), which is all the backward
/// pass needs: a quarter of the input's size in bytes instead of four times it.
pub fn forward_with_winners(s: PoolShape, x: &[f32]) -> (Vec<f32>, Vec<u8>) {
    assert_eq!(x.len(), s.planes * s.h * s.w, "input length");
    let out = s.out_h() * s.out_w();
    let mut y = super::zeros(s.planes * out);
    let mut won = vec![0u8; s.planes * out];
    if out == 0 {
        return (y, won);
    }
    y.par_chunks_mut(out)
        .zip(won.par_chunks_mut(out))
        .zip(x.par_chunks(s.h * s.w))
        .for_each(|((y, won), x)| plane_forward_winners(s, x, y, won));
    (y, won)
}

/// The input gradient: each output's gradient goes to its window's winner, zero elsewhere.
pub fn backward(s: PoolShape, won: &[u8], dy: &[f32]) -> Vec<f32> {
    let out = s.out_h() * s.out_w();
    assert_eq!(won.len(), s.planes * out, "winners length");
    assert_eq!(dy.len(), s.planes * out, "output-gradient length");
    // Zeroed: odd edges, outside every window, keep zero gradients.
    let mut dx = super::zeros(s.planes * s.h * s.w);
    if out == 0 {
        return dx;
    }
    dx.par_chunks_mut(s.h * s.w)
        .zip(won.par_chunks(out).zip(dy.par_chunks(out)))
        .for_each(|(dx, (won, dy))| plane_backward(s, won, dy, dx));
    dx
}
