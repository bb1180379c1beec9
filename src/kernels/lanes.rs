//! Reductions over a slice in sixteen f32 lanes. LLVM keeps a plain float sum serial (it may
//! not reorder the additions), so these accumulate lane by lane and combine the lanes at the
//! end. They are inlined, so that they take the vector code of the `simd_fn!` that calls
//! them: one AVX-512 register, two AVX2 ones (two independent chains hide the adds' latency),
//! four SSE ones, and the same order of additions, hence the same result, on each.

pub const LANES: usize = 16;

/// The sum of `f(v)` over `values`.
#[inline(always)]
pub fn sum_of(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The sum of `a[i]·b[i]`.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ac, bc) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] += ac[l] * bc[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The largest of `values` (`f32::max`: a NaN is passed over); -∞ when empty.
#[inline(always)]
pub fn max(values: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for c in chunks {
        for l in 0..LANES {
            acc[l] = acc[l].max(c[l]);
        }
    }
    acc.iter().fold(tail, |a, &b| a.max(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_reductions_match_serial_ones() {
        for n in [0, 1, 7, 8, 9, 100] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let serial: f32 = a.iter().map(|v| v * v).sum();
            assert!((sum_of(&a, |v| v * v) - serial).abs() < 1e-4);
            let serial: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - serial).abs() < 1e-4);
            assert_eq!(max(&a), a.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)));
        }
    }
}
