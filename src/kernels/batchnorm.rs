//! Training-mode BatchNorm over NCHW f32 slices, optionally fused with the ReLU after it.
//!
//! burn's generic `batch_norm_train` swaps the batch and channel axes to reduce per channel,
//! which copies the activation twice forward and twice backward, and runs a dozen separate
//! element-wise passes. Here a channel's values are read where they lie (`batch` runs of
//! `plane` contiguous values), statistics accumulate in f64, and forward and backward are two
//! passes each.

use rayon::prelude::*;

/// Shape of the activation: `[batch, channels, plane]` with `plane = h·w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormShape {
    pub batch: usize,
    pub channels: usize,
    pub plane: usize,
}

impl NormShape {
    fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }
    fn count(&self) -> f64 {
        (self.batch * self.plane) as f64
    }
    /// The `batch` runs of channel `c`.
    fn runs<'a>(&self, x: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + use<'a> {
        let (p, cs) = (self.plane, self.channels);
        (0..self.batch).map(move |b| &x[(b * cs + c) * p..][..p])
    }
}

/// Per-channel constants of the normalisation `z = x·scale + shift = gamma·xhat + beta`.
#[derive(Clone, Copy)]
struct Affine {
    mean: f32,
    inv_std: f32,
    scale: f32,
    shift: f32,
    /// Below or at this, the ReLU closes (0), or nothing does (-inf).
    floor: f32,
}

/// `dy` where the ReLU is open at `z` (above `floor`), else 0, as a product with 1 or 0
/// rather than a select: LLVM turned the select into a branch per lane. (An infinite `dy`
/// where the ReLU is closed gives NaN instead of 0; a step with an infinite gradient fails
/// either way.)
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)] // NaN at z counts as open, as in burn's ReLU
fn open_gradient(z: f32, floor: f32, dy: f32) -> f32 {
    dy * ((!(z <= floor)) as u32 as f32)
}

/// How many values eight f32 lanes accumulate before they are added into f64: few enough
/// for f32 to stay exact to about 1e-5, many enough to amortise the flush over small planes.
const FLUSH_EVERY: usize = 4096;

crate::simd_fn! {
    /// Over channel `c`: the sum of its values and the sum of their squared deviations from
    /// `centre`, in eight f32 lanes flushed into f64 every [`FLUSH_EVERY`] values.
    fn channel_moments(s: NormShape, x: &[f32], c: usize, centre: f32) -> (f64, f64) {
        const LANES: usize = 8;
        let (mut total_s, mut total_q) = (0.0f64, 0.0f64);
        let (mut s8, mut q8) = ([0.0f32; LANES], [0.0f32; LANES]);
        let mut pending = 0;
        for run in s.runs(x, c) {
            let chunks = run.chunks_exact(LANES);
            for &v in chunks.remainder() {
                total_s += v as f64;
                total_q += ((v - centre) * (v - centre)) as f64;
            }
            for v in chunks {
                for l in 0..LANES {
                    let d = v[l] - centre;
                    s8[l] += v[l];
                    q8[l] += d * d;
                }
            }
            pending += run.len();
            if pending >= FLUSH_EVERY {
                total_s += s8.iter().map(|&v| v as f64).sum::<f64>();
                total_q += q8.iter().map(|&v| v as f64).sum::<f64>();
                (s8, q8, pending) = ([0.0; LANES], [0.0; LANES], 0);
            }
        }
        (
            total_s + s8.iter().map(|&v| v as f64).sum::<f64>(),
            total_q + q8.iter().map(|&v| v as f64).sum::<f64>(),
        )
    }
}

crate::simd_fn! {
    /// `y = max(x·scale + shift, floor)`, NaN passing through.
    fn run_forward(y: &mut [f32], x: &[f32], a: Affine) -> () {
        for (y, &x) in y.iter_mut().zip(x) {
            let v = x * a.scale + a.shift;
            *y = if v < a.floor { a.floor } else { v };
        }
    }
}

crate::simd_fn! {
    /// Over channel `c`: the sum of dz and of dz·xhat, where dz is `dy` where the ReLU is
    /// open; lanes as in [`channel_moments`].
    fn channel_grad_sums(s: NormShape, x: &[f32], dy: &[f32], c: usize, a: Affine) -> (f64, f64) {
        const LANES: usize = 8;
        let (mut total_s, mut total_t) = (0.0f64, 0.0f64);
        let (mut s8, mut t8) = ([0.0f32; LANES], [0.0f32; LANES]);
        let mut pending = 0;
        let dz = |x: f32, dy: f32| {
            let xhat = (x - a.mean) * a.inv_std;
            let g = open_gradient(x * a.scale + a.shift, a.floor, dy);
            (g, g * xhat)
        };
        for (x, dy) in s.runs(x, c).zip(s.runs(dy, c)) {
            let (cx, cd) = (x.chunks_exact(LANES), dy.chunks_exact(LANES));
            for (&x, &dy) in cx.remainder().iter().zip(cd.remainder()) {
                let (g, gx) = dz(x, dy);
                total_s += g as f64;
                total_t += gx as f64;
            }
            for (x, dy) in cx.zip(cd) {
                for l in 0..LANES {
                    let (g, gx) = dz(x[l], dy[l]);
                    s8[l] += g;
                    t8[l] += gx;
                }
            }
            pending += x.len();
            if pending >= FLUSH_EVERY {
                total_s += s8.iter().map(|&v| v as f64).sum::<f64>();
                total_t += t8.iter().map(|&v| v as f64).sum::<f64>();
                (s8, t8, pending) = ([0.0; LANES], [0.0; LANES], 0);
            }
        }
        (
            total_s + s8.iter().map(|&v| v as f64).sum::<f64>(),
            total_t + t8.iter().map(|&v| v as f64).sum::<f64>(),
        )
    }
}

crate::simd_fn! {
    /// `dx = scale·(dz - mean(dz) - xhat·mean(dz·xhat))`.
    fn run_dx(dx: &mut [f32], x: &[f32], dy: &[f32], a: Affine, mean_dz: f32, mean_dz_xhat: f32) -> () {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            let xhat = (x - a.mean) * a.inv_std;
            let g = open_gradient(x * a.scale + a.shift, a.floor, dy);
            *dx = a.scale * (g - mean_dz - xhat * mean_dz_xhat);
        }
    }
}

/// Per-channel mean and biased variance: what normalises the batch and what the running
/// statistics are updated with. Two passes (the mean, then squared deviations from it).
pub fn channel_stats(s: NormShape, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.len(), "activation length");
    (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let mean = (channel_moments(s, x, c, 0.0).0 / s.count()) as f32;
            let sq = channel_moments(s, x, c, mean).1;
            (mean, (sq / s.count()) as f32)
        })
        .unzip()
}

fn affines(
    (gamma, beta): (&[f32], &[f32]),
    (mean, var): (&[f32], &[f32]),
    epsilon: f32,
    relu: bool,
) -> Vec<Affine> {
    (0..gamma.len())
        .map(|c| {
            let inv_std = 1.0 / (var[c] + epsilon).sqrt();
            let scale = gamma[c] * inv_std;
            Affine {
                mean: mean[c],
                inv_std,
                scale,
                shift: beta[c] - mean[c] * scale,
                floor: if relu { 0.0 } else { f32::NEG_INFINITY },
            }
        })
        .collect()
}

/// `y = gamma·(x - mean)/sqrt(var + eps) + beta`, then `max(y, 0)` when `relu`.
pub fn forward(
    s: NormShape,
    x: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    (mean, var): (&[f32], &[f32]),
    epsilon: f32,
    relu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), s.len(), "activation length");
    let affine = affines((gamma, beta), (mean, var), epsilon, relu);
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(s.plane.max(1))
        .zip(x.par_chunks(s.plane.max(1)))
        .enumerate()
        .for_each(|(i, (y, x))| run_forward(y, x, affine[i % s.channels]));
    y
}

/// Gradients of [`forward`] with respect to `x`, `gamma` and `beta`, with the batch
/// statistics differentiated as functions of `x`.
pub fn backward(
    s: NormShape,
    x: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    (mean, var): (&[f32], &[f32]),
    epsilon: f32,
    relu: bool,
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.len(), "activation length");
    assert_eq!(dy.len(), s.len(), "gradient length");
    let affine = affines((gamma, beta), (mean, var), epsilon, relu);
    // Per channel: sum(dz) is beta's gradient and sum(dz·xhat) gamma's.
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let (sum, sum_xhat) = channel_grad_sums(s, x, dy, c, affine[c]);
            (sum as f32, sum_xhat as f32)
        })
        .unzip();
    let n = s.count() as f32;
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(s.plane.max(1))
        .zip(
            x.par_chunks(s.plane.max(1))
                .zip(dy.par_chunks(s.plane.max(1))),
        )
        .enumerate()
        .for_each(|(i, (dx, (x, dy)))| {
            let c = i % s.channels;
            run_dx(dx, x, dy, affine[c], dbeta[c] / n, dgamma[c] / n);
        });
    (dx, dgamma, dbeta)
}
