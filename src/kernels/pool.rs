//! 2×2 max pooling with stride 2 over NCHW f32 slices (ConvNet-4's pooling).
//!
//! burn-flex's general pooling computes window bounds and divisions per output and scatters
//! its backward pass through stored i64 indices; with the window fixed, the forward pass is
//! four loads per output and the backward pass recomputes the winner from the input.

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

/// Index (0 to 3, row-major in the window) of the window's maximum: the first of equal
/// maxima, and NaN always wins, as in burn and PyTorch.
#[inline(always)]
fn winner(v: [f32; 4]) -> usize {
    let mut best = 0;
    for k in 1..4 {
        if beats(v[k], v[best]) {
            best = k;
        }
    }
    best
}

#[inline(always)]
fn window(plane: &[f32], w: usize, i: usize, j: usize) -> [f32; 4] {
    let (r0, r1) = (2 * i * w + 2 * j, (2 * i + 1) * w + 2 * j);
    [plane[r0], plane[r0 + 1], plane[r1], plane[r1 + 1]]
}

/// Whether `b` takes a window's maximum from `a`: greater, or NaN.
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
    fn plane_backward(s: PoolShape, x: &[f32], dy: &[f32], dx: &mut [f32]) -> () {
        let wo = s.out_w();
        for i in 0..s.out_h() {
            for j in 0..wo {
                let k = winner(window(x, s.w, i, j));
                dx[(2 * i + k / 2) * s.w + 2 * j + k % 2] = dy[i * wo + j];
            }
        }
    }
}

pub fn forward(s: PoolShape, x: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), s.planes * s.h * s.w, "input length");
    let out = s.out_h() * s.out_w();
    let mut y = vec![0.0f32; s.planes * out];
    if out == 0 {
        return y;
    }
    y.par_chunks_mut(out)
        .zip(x.par_chunks(s.h * s.w))
        .for_each(|(y, x)| plane_forward(s, x, y));
    y
}

/// The input gradient: each output's gradient goes to its window's winner, zero elsewhere.
pub fn backward(s: PoolShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let out = s.out_h() * s.out_w();
    assert_eq!(x.len(), s.planes * s.h * s.w, "input length");
    assert_eq!(dy.len(), s.planes * out, "output-gradient length");
    let mut dx = vec![0.0f32; x.len()];
    if out == 0 {
        return dx;
    }
    dx.par_chunks_mut(s.h * s.w)
        .zip(x.par_chunks(s.h * s.w).zip(dy.par_chunks(out)))
        .for_each(|(dx, (x, dy))| plane_backward(s, x, dy, dx));
    dx
}
