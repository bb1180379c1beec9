//! Training-mode BatchNorm over NCHW f32 slices, optionally fused with the ReLU after it.
//!
//! burn's generic `batch_norm_train` swaps the batch and channel axes to reduce per channel,
//! which copies the activation twice forward and twice backward, and runs a dozen separate
//! element-wise passes. Here a channel's values are read where they lie (`batch` runs of
//! `plane` contiguous values), statistics accumulate in f64, and forward and backward are two
//! passes each.

use rayon::prelude::*;

use super::lanes::LANES;
#[cfg(target_arch = "x86_64")]
use super::simd::SimdLevel;
use crate::device::ranks;

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
    relu: bool,
}

/// `dy` where the ReLU is open at `z` (when `relu`: z > 0, as in burn; ±0 closes), else 0.
/// Integer masking: a float comparison here became a branch per lane in LLVM's output. For
/// non-NaN floats, z > 0 exactly when the bits `b` are positive as i32: then `-b` has its sign
/// bit set and `!b` too; for +0, -0 (`i32::MIN`) and negatives one of them does not.
#[inline(always)]
pub(crate) fn open_gradient(z: f32, relu: bool, dy: f32) -> f32 {
    if !relu {
        return dy;
    }
    let b = z.to_bits() as i32;
    let mask = ((b.wrapping_neg() & !b) >> 31) as u32;
    f32::from_bits(dy.to_bits() & mask)
}

/// How many values the f32 lanes accumulate before they are added into f64: few enough
/// for f32 to stay exact to about 1e-5, many enough to amortise the flush over small planes.
const FLUSH_EVERY: usize = 4096;

crate::simd_fn! {
    /// Over channel `c`: the sum of its values and the sum of their squared deviations from
    /// `centre`, in [`LANES`] f32 lanes flushed into f64 every [`FLUSH_EVERY`] values.
    fn channel_moments(s: NormShape, x: &[f32], c: usize, centre: f32) -> (f64, f64) {
        let mut sums = FlushedSums::new();
        for run in s.runs(x, c) {
            let chunks = run.chunks_exact(LANES);
            for &v in chunks.remainder() {
                sums.add_exact(v, (v - centre) * (v - centre));
            }
            let [s_acc, q_acc] = &mut sums.lanes;
            for v in chunks {
                for l in 0..LANES {
                    let d = v[l] - centre;
                    s_acc[l] += v[l];
                    q_acc[l] += d * d;
                }
            }
            sums.ran(run.len());
        }
        sums.finish()
    }
}

/// Two sums, each kept in [`LANES`] f32 lanes and flushed into f64 every [`FLUSH_EVERY`]
/// values, and values added to the f64 totals directly.
struct FlushedSums {
    lanes: [Lanes; 2],
    totals: [f64; 2],
    pending: usize,
}

impl FlushedSums {
    #[inline(always)]
    fn new() -> Self {
        Self {
            lanes: [[0.0; LANES]; 2],
            totals: [0.0; 2],
            pending: 0,
        }
    }

    #[inline(always)]
    fn add_exact(&mut self, a: f32, b: f32) {
        self.totals[0] += a as f64;
        self.totals[1] += b as f64;
    }

    /// Counts `values` more into the lanes, flushing them when enough have gathered.
    #[inline(always)]
    fn ran(&mut self, values: usize) {
        self.pending += values;
        if self.pending >= FLUSH_EVERY {
            self.flush();
        }
    }

    #[inline(always)]
    fn flush(&mut self) {
        for (total, lanes) in self.totals.iter_mut().zip(&mut self.lanes) {
            *total += lanes.iter().map(|&v| v as f64).sum::<f64>();
            *lanes = [0.0; LANES];
        }
        self.pending = 0;
    }

    #[inline(always)]
    fn finish(mut self) -> (f64, f64) {
        self.flush();
        (self.totals[0], self.totals[1])
    }
}

/// `x·scale + shift`, then max(·, 0) when `a.relu`, NaN passing through.
#[inline(always)]
fn normalised(x: f32, a: Affine) -> f32 {
    let v = x * a.scale + a.shift;
    if a.relu && v < 0.0 { 0.0 } else { v }
}

crate::simd_fn! {
    /// [`run_forward`] over `x` itself.
    fn run_forward_in_place(x: &mut [f32], a: Affine) -> () {
        for x in x.iter_mut() {
            *x = normalised(*x, a);
        }
    }
}

crate::simd_fn! {
    /// `y = normalised(x)` element by element.
    fn run_forward(y: &mut [f32], x: &[f32], a: Affine) -> () {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = normalised(x, a);
        }
    }
}

/// Over the whole [`LANES`]-value chunks of a run: per lane, the sums of dz and of dz·xhat.
/// The vector paths add in the same lanes and order, so AVX2 and AVX-512 agree to the bit;
/// the baseline path rounds differently (no fused multiply-add).
fn chunk_grad_sums(x: &[f32], dy: &[f32], a: Affine, s: &mut Lanes, t: &mut Lanes) {
    #[cfg(target_arch = "x86_64")]
    match super::simd::level() {
        // SAFETY: `level` never exceeds what the CPU reports.
        SimdLevel::Avx512 => return unsafe { chunk_grad_sums_avx512(x, dy, a, s, t) },
        // SAFETY: as above.
        SimdLevel::Avx2 => return unsafe { chunk_grad_sums_avx2(x, dy, a, s, t) },
        SimdLevel::Baseline => {}
    }
    for (x, dy) in x.chunks_exact(LANES).zip(dy.chunks_exact(LANES)) {
        for l in 0..LANES {
            let xhat = (x[l] - a.mean) * a.inv_std;
            let g = open_gradient(x[l] * a.scale + a.shift, a.relu, dy[l]);
            s[l] += g;
            t[l] += g * xhat;
        }
    }
}

type Lanes = [f32; LANES];

/// [`chunk_grad_sums`] in AVX2 intrinsics, the sixteen lanes as two registers: written out
/// because LLVM compiled the portable loop's ReLU mask into a branch per lane. A NaN
/// pre-activation closes the ReLU here.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_grad_sums_avx2(x: &[f32], dy: &[f32], a: Affine, s: &mut Lanes, t: &mut Lanes) {
    use std::arch::x86_64::*;
    const HALF: usize = LANES / 2;
    let n = x.len().min(dy.len()) / LANES * LANES;
    let (mean, inv) = (_mm256_set1_ps(a.mean), _mm256_set1_ps(a.inv_std));
    let (scale, shift) = (_mm256_set1_ps(a.scale), _mm256_set1_ps(a.shift));
    let zero = _mm256_setzero_ps();
    // SAFETY: s and t hold LANES floats; x and dy are read below n, a multiple of LANES
    // within both.
    unsafe {
        let mut acc = [0, HALF].map(|h| {
            (
                _mm256_loadu_ps(s.as_ptr().add(h)),
                _mm256_loadu_ps(t.as_ptr().add(h)),
            )
        });
        for k in (0..n).step_by(LANES) {
            for (h, (s, t)) in acc.iter_mut().enumerate() {
                let at = k + h * HALF;
                let xv = _mm256_loadu_ps(x.as_ptr().add(at));
                let mut g = _mm256_loadu_ps(dy.as_ptr().add(at));
                if a.relu {
                    let z = _mm256_fmadd_ps(xv, scale, shift);
                    g = _mm256_and_ps(g, _mm256_cmp_ps::<_CMP_GT_OQ>(z, zero));
                }
                let xhat = _mm256_mul_ps(_mm256_sub_ps(xv, mean), inv);
                *s = _mm256_add_ps(*s, g);
                *t = _mm256_fmadd_ps(g, xhat, *t);
            }
        }
        for (h, (sv, tv)) in acc.into_iter().enumerate() {
            _mm256_storeu_ps(s.as_mut_ptr().add(h * HALF), sv);
            _mm256_storeu_ps(t.as_mut_ptr().add(h * HALF), tv);
        }
    }
}

/// [`chunk_grad_sums_avx2`] with the sixteen lanes in one AVX-512 register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn chunk_grad_sums_avx512(x: &[f32], dy: &[f32], a: Affine, s: &mut Lanes, t: &mut Lanes) {
    use std::arch::x86_64::*;
    let n = x.len().min(dy.len()) / LANES * LANES;
    let (mean, inv) = (_mm512_set1_ps(a.mean), _mm512_set1_ps(a.inv_std));
    let (scale, shift) = (_mm512_set1_ps(a.scale), _mm512_set1_ps(a.shift));
    let zero = _mm512_setzero_ps();
    // SAFETY: as in the AVX2 version.
    unsafe {
        let (mut sv, mut tv) = (_mm512_loadu_ps(s.as_ptr()), _mm512_loadu_ps(t.as_ptr()));
        for k in (0..n).step_by(LANES) {
            let xv = _mm512_loadu_ps(x.as_ptr().add(k));
            let mut g = _mm512_loadu_ps(dy.as_ptr().add(k));
            if a.relu {
                let z = _mm512_fmadd_ps(xv, scale, shift);
                g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(z, zero), g);
            }
            let xhat = _mm512_mul_ps(_mm512_sub_ps(xv, mean), inv);
            sv = _mm512_add_ps(sv, g);
            tv = _mm512_fmadd_ps(g, xhat, tv);
        }
        _mm512_storeu_ps(s.as_mut_ptr(), sv);
        _mm512_storeu_ps(t.as_mut_ptr(), tv);
    }
}

/// Over channel `c`: the sum of dz and of dz·xhat, where dz is `dy` where the ReLU is open;
/// lanes as in [`channel_moments`].
fn channel_grad_sums(s: NormShape, x: &[f32], dy: &[f32], c: usize, a: Affine) -> (f64, f64) {
    let mut sums = FlushedSums::new();
    for (x, dy) in s.runs(x, c).zip(s.runs(dy, c)) {
        let full = x.len() / LANES * LANES;
        let [s_acc, t_acc] = &mut sums.lanes;
        chunk_grad_sums(&x[..full], &dy[..full], a, s_acc, t_acc);
        for (&x, &dy) in x[full..].iter().zip(&dy[full..]) {
            let xhat = (x - a.mean) * a.inv_std;
            let g = open_gradient(x * a.scale + a.shift, a.relu, dy);
            sums.add_exact(g, g * xhat);
        }
        sums.ran(x.len());
    }
    sums.finish()
}

/// `dx = scale·(dz - mean(dz) - xhat·mean(dz·xhat))` at one element.
#[inline(always)]
fn input_gradient(x: f32, dy: f32, a: Affine, mean_dz: f32, mean_dz_xhat: f32) -> f32 {
    let xhat = (x - a.mean) * a.inv_std;
    let g = open_gradient(x * a.scale + a.shift, a.relu, dy);
    a.scale * (g - mean_dz - xhat * mean_dz_xhat)
}

crate::simd_fn! {
    /// [`input_gradient`] element by element.
    fn run_dx(dx: &mut [f32], x: &[f32], dy: &[f32], a: Affine, mean_dz: f32, mean_dz_xhat: f32) -> () {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            *dx = input_gradient(x, dy, a, mean_dz, mean_dz_xhat);
        }
    }
}

crate::simd_fn! {
    /// [`run_dx`] with the gradient `d` read as dy and overwritten with dx.
    fn run_dx_in_place(d: &mut [f32], x: &[f32], a: Affine, mean_dz: f32, mean_dz_xhat: f32) -> () {
        for (d, &x) in d.iter_mut().zip(x) {
            *d = input_gradient(x, *d, a, mean_dz, mean_dz_xhat);
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
                relu,
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
    let mut y = super::zeros(x.len());
    y.par_chunks_mut(s.plane.max(1))
        .zip(x.par_chunks(s.plane.max(1)))
        .enumerate()
        .for_each(|(i, (y, x))| run_forward(y, x, affine[i % s.channels]));
    y
}

/// [`forward`] written over `x` itself.
pub fn forward_in_place(
    s: NormShape,
    x: &mut [f32],
    (gamma, beta): (&[f32], &[f32]),
    (mean, var): (&[f32], &[f32]),
    epsilon: f32,
    relu: bool,
) {
    assert_eq!(x.len(), s.len(), "activation length");
    let affine = affines((gamma, beta), (mean, var), epsilon, relu);
    x.par_chunks_mut(s.plane.max(1))
        .enumerate()
        .for_each(|(i, x)| run_forward_in_place(x, affine[i % s.channels]));
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
    let affine = affines((gamma, beta), (mean, var), epsilon, relu);
    let (dgamma, dbeta) = gradient_sums(s, x, dy, &affine);
    let (mean_dz_xhat, mean_dz) = batch_means(s, &dgamma, &dbeta);
    let mut dx = super::zeros(x.len());
    dx.par_chunks_mut(s.plane.max(1))
        .zip(
            x.par_chunks(s.plane.max(1))
                .zip(dy.par_chunks(s.plane.max(1))),
        )
        .enumerate()
        .for_each(|(i, (dx, (x, dy)))| {
            let c = i % s.channels;
            run_dx(dx, x, dy, affine[c], mean_dz[c], mean_dz_xhat[c]);
        });
    (dx, dgamma, dbeta)
}

/// [`backward`] with `dx` written over `dy` (the same values: each element reads only its
/// own `dy`); returns `(dgamma, dbeta)`. Saves an activation-sized buffer per BatchNorm.
pub fn backward_in_place(
    s: NormShape,
    x: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    (mean, var): (&[f32], &[f32]),
    epsilon: f32,
    relu: bool,
    dy: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let affine = affines((gamma, beta), (mean, var), epsilon, relu);
    let (dgamma, dbeta) = gradient_sums(s, x, dy, &affine);
    let (mean_dz_xhat, mean_dz) = batch_means(s, &dgamma, &dbeta);
    dy.par_chunks_mut(s.plane.max(1))
        .zip(x.par_chunks(s.plane.max(1)))
        .enumerate()
        .for_each(|(i, (d, x))| {
            let c = i % s.channels;
            run_dx_in_place(d, x, affine[c], mean_dz[c], mean_dz_xhat[c]);
        });
    (dgamma, dbeta)
}

/// Per channel, the means of dz·xhat and of dz over the batch that the statistics came from,
/// which the input gradient needs: this activation's, or with synchronised BatchNorm every
/// rank's (its own sums still are gamma's and beta's gradients, summed over the ranks later
/// with the other parameters').
fn batch_means(s: NormShape, dgamma: &[f32], dbeta: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut sums: Vec<f64> = dgamma
        .iter()
        .chain(dbeta)
        .map(|&v| v as f64)
        .chain([s.count()])
        .collect();
    if ranks::sync_batchnorm() {
        ranks::sum_f64("all-reduce of BatchNorm's gradient sums", &mut sums);
    }
    let n = sums.pop().unwrap_or(1.0).max(1.0);
    let means: Vec<f32> = sums.iter().map(|v| (v / n) as f32).collect();
    let (dz_xhat, dz) = means.split_at(s.channels);
    (dz_xhat.to_vec(), dz.to_vec())
}

/// [`channel_stats`] over the global batch when BatchNorm is synchronised over ranks: each
/// rank's count, sums and sums of squares (from its mean and variance) are totalled.
pub fn channel_stats_over_ranks(
    s: NormShape,
    (mean, var): (Vec<f32>, Vec<f32>),
) -> (Vec<f32>, Vec<f32>) {
    if !ranks::sync_batchnorm() {
        return (mean, var);
    }
    let n = s.count();
    let mut sums: Vec<f64> = mean
        .iter()
        .map(|&m| n * m as f64)
        .chain(
            mean.iter()
                .zip(&var)
                .map(|(&m, &v)| n * (v as f64 + m as f64 * m as f64)),
        )
        .chain([n])
        .collect();
    ranks::sum_f64("all-reduce of BatchNorm's statistics", &mut sums);
    let total = sums.pop().unwrap_or(1.0).max(1.0);
    let (sum, sq) = sums.split_at(s.channels);
    sum.iter()
        .zip(sq)
        .map(|(&sum, &sq)| {
            let mean = sum / total;
            (mean as f32, (sq / total - mean * mean).max(0.0) as f32)
        })
        .unzip()
}

/// Per channel: sum(dz·xhat), gamma's gradient, and sum(dz), beta's.
fn gradient_sums(s: NormShape, x: &[f32], dy: &[f32], affine: &[Affine]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.len(), "activation length");
    assert_eq!(dy.len(), s.len(), "gradient length");
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let (sum, sum_xhat) = channel_grad_sums(s, x, dy, c, affine[c]);
            (sum as f32, sum_xhat as f32)
        })
        .unzip();
    (dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_place_passes_give_the_same_bits() {
        let s = NormShape {
            batch: 3,
            channels: 4,
            plane: 37,
        };
        let wave =
            |k: f32| -> Vec<f32> { (0..s.len()).map(|i| (i as f32 * k).sin() * 2.0).collect() };
        let (x, dy) = (wave(0.37), wave(0.91));
        let (gamma, beta) = ([0.5, -1.0, 2.0, 1.5], [0.1, 0.0, -0.3, 0.7]);
        let (mean, var) = channel_stats(s, &x);
        for relu in [false, true] {
            let params = (&gamma[..], &beta[..]);
            let stats = (&mean[..], &var[..]);
            let y = forward(s, &x, params, stats, 1e-5, relu);
            let mut y_in_place = x.clone();
            forward_in_place(s, &mut y_in_place, params, stats, 1e-5, relu);
            assert_eq!(y, y_in_place);
            let (dx, dg, db) = backward(s, &x, params, stats, 1e-5, relu, &dy);
            let mut d = dy.clone();
            let (dg2, db2) = backward_in_place(s, &x, params, stats, 1e-5, relu, &mut d);
            assert_eq!((dx, dg, db), (d, dg2, db2));
        }
    }

    #[test]
    fn the_relu_mask_opens_exactly_above_zero() {
        for (z, open) in [
            (1e-30f32, true),
            (3.0, true),
            (f32::INFINITY, true),
            (0.0, false),
            (-0.0, false),
            (-1e-30, false),
            (-2.0, false),
            (f32::NEG_INFINITY, false),
        ] {
            assert_eq!(
                open_gradient(z, true, 1.5),
                if open { 1.5 } else { 0.0 },
                "z = {z}"
            );
            assert_eq!(open_gradient(z, false, 1.5), 1.5, "z = {z}");
        }
    }
}
