//! GELU with the exact (erf) definition that burn and PyTorch use, vectorised.
//!
//! burn computes GELU through libm's scalar `erff`, one call per element (about 6 % of the
//! masked-language-model step); here `exp` and `erf` are branch-free polynomials that LLVM
//! turns into vector lanes (AVX2 or AVX-512).

use rayon::prelude::*;

use super::ELEMENTWISE_CHUNK as CHUNK;

/// `e^x` to about 2 ulp for x ≥ -87, and exactly 0 below (where f32 has only denormals).
/// Cody and Waite's reduction `x = n·ln2 + r` with |r| ≤ ln2/2, then Cephes' `expf`
/// polynomial for `e^r`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.0 { 0.0 } else { er * scale }
}

/// `Φ(x)`, the standard normal CDF, and `e^(-x²/2)`. Abramowitz and Stegun 7.1.26 gives
/// `erfc(z) = t·poly(t)·e^(-z²)` (t = 1/(1 + p·z), absolute error below 1.5e-7); the tail is
/// taken from erfc directly, so Φ of a negative x keeps its relative precision.
#[inline(always)]
fn normal_cdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let gauss = exp(-0.5 * x * x);
    let tail = 0.5 * poly * gauss;
    (if x >= 0.0 { 1.0 - tail } else { tail }, gauss)
}

/// 1/√(2π): the standard normal density at 0.
const DENSITY_AT_ZERO: f32 = 0.398_942_3;

crate::simd_fn! {
    fn gelu_chunk(x: &[f32], y: &mut [f32]) -> () {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x * normal_cdf(x).0;
        }
    }
}

crate::simd_fn! {
    fn gelu_backward_chunk(x: &[f32], dy: &[f32], dx: &mut [f32]) -> () {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            let (cdf, gauss) = normal_cdf(x);
            *dx = dy * (cdf + x * DENSITY_AT_ZERO * gauss);
        }
    }
}

/// `x·Φ(x)` for every element.
pub fn gelu(x: &[f32]) -> Vec<f32> {
    let mut y = super::zeros(x.len());
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| gelu_chunk(x, y));
    y
}

/// The gradient through GELU: `dy · (Φ(x) + x·φ(x))`.
pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = super::zeros(x.len());
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| gelu_backward_chunk(x, dy, dx));
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf to double precision (libm's `erf` through f64), the reference for Φ.
    fn cdf64(x: f64) -> f64 {
        0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
    }

    #[test]
    fn exp_matches_the_standard_library() {
        let mut worst = 0.0f64;
        for i in 0..=20_000 {
            let x = -87.0 + 175.0 * i as f32 / 20_000.0;
            let (ours, exact) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((ours - exact) / exact).abs());
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp(-1e4), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn gelu_and_its_gradient_match_the_definition() {
        let xs: Vec<f32> = (0..4001)
            .map(|i| -12.0 + 24.0 * i as f32 / 4000.0)
            .collect();
        let y = gelu(&xs);
        let dx = gelu_backward(&xs, &vec![1.0; xs.len()]);
        for ((&x, &y), &dx) in xs.iter().zip(&y).zip(&dx) {
            let x64 = x as f64;
            let exact = x64 * cdf64(x64);
            let slope =
                cdf64(x64) + x64 * (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!(
                (y as f64 - exact).abs() < 4e-7 * (1.0 + x64.abs()),
                "gelu({x}) = {y}"
            );
            assert!(
                (dx as f64 - slope).abs() < 1e-6 * (1.0 + x64 * x64),
                "gelu'({x}) = {dx}"
            );
        }
    }
}
