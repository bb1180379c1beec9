//! Dropout masks drawn from a counter-based hash of (seed, element index).
//!
//! burn's `Dropout` draws one Bernoulli sample per element from a serial ChaCha generator:
//! about 16 % of the masked-language-model step, on one thread. A hash of the index is
//! parallel, vectorises, and lets the backward pass regenerate the mask from the seed instead
//! of storing it.

use rayon::prelude::*;

use super::ELEMENTWISE_CHUNK as CHUNK;

/// Which elements a dropout keeps, and the scale `1/keep` of the kept ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropMask {
    seed: [u32; 2],
    /// An element is kept when its hash is at most this: `keep · 2^32 - 1`.
    last_kept: u32,
    scale: f32,
}

/// A 32-bit finaliser with full avalanche (Chris Wellons' "lowbias32").
#[inline(always)]
fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

impl DropMask {
    /// Keep each element with probability `keep` (in (0, 1]), under `seed`.
    pub fn new(keep: f32, seed: u64) -> Self {
        assert!(keep > 0.0 && keep <= 1.0, "keep probability {keep}");
        Self {
            seed: [seed as u32, (seed >> 32) as u32],
            last_kept: ((keep as f64 * 4_294_967_296.0).round() - 1.0) as u32,
            scale: 1.0 / keep,
        }
    }

    /// The factor of element `index`: `1/keep` if kept, else 0.
    #[inline(always)]
    pub fn factor(&self, index: usize) -> f32 {
        let h = mix(mix(index as u32 ^ self.seed[0]).wrapping_add(self.seed[1]));
        if h <= self.last_kept { self.scale } else { 0.0 }
    }
}

crate::simd_fn! {
    /// `y[i] = x[i] · factor(offset + i)`.
    pub(crate) fn apply_chunk(mask: DropMask, offset: usize, x: &[f32], y: &mut [f32]) -> () {
        for (i, (y, &x)) in y.iter_mut().zip(x).enumerate() {
            *y = x * mask.factor(offset + i);
        }
    }
}

/// `x` with the mask applied; the same call on the output gradient is the backward pass.
pub fn apply(mask: DropMask, x: &[f32]) -> Vec<f32> {
    assert!(
        x.len() <= u32::MAX as usize,
        "dropout over more than 2^32 values"
    );
    let mut y = super::zeros(x.len());
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(c, (y, x))| apply_chunk(mask, c * CHUNK, x, y));
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_asked_share_independently_of_the_seed_and_the_split() {
        let n = 1 << 20;
        let x = vec![1.0f32; n];
        let a = apply(DropMask::new(0.9, 7), &x);
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        // The standard error of the share is 3e-4 at a million draws.
        assert!((kept - 0.9).abs() < 2e-3, "kept {kept}");
        assert!(a.iter().all(|&v| v == 0.0 || v == 1.0 / 0.9f32));
        // Neighbours are independent: P(both kept) = keep².
        let pairs = a.windows(2).filter(|w| w[0] != 0.0 && w[1] != 0.0).count() as f64;
        assert!((pairs / (n - 1) as f64 - 0.81).abs() < 3e-3);
        // A mask depends on the seed, and on nothing but the seed and the index.
        let b = apply(DropMask::new(0.9, 8), &x);
        let same = a.iter().zip(&b).filter(|(p, q)| p == q).count() as f64 / n as f64;
        assert!((same - 0.82).abs() < 3e-3, "agreement {same}");
        let tail = apply(DropMask::new(0.9, 7), &x[..1000]);
        assert_eq!(tail, a[..1000]);
        assert!(apply(DropMask::new(1.0, 3), &x).iter().all(|&v| v == 1.0));
    }
}
