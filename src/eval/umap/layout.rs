//! UMAP's layout optimisation (umap-learn's `optimize_layout_euclidean`): stochastic gradient
//! descent on the fuzzy cross-entropy, each edge sampled in proportion to its weight, with
//! `negative_samples` repulsions per attraction, gradients clipped at ±4 and a learning rate
//! falling linearly to zero.
//!
//! Deterministic for any thread count: each epoch first applies the attractions one edge after
//! another in edge order, moving both ends (cheap: one sixth of the work), then the repulsions,
//! the bulk of the work, in parallel over points: each point takes its own repulsions in turn,
//! from its own random stream (seeded by seed, epoch and point), against the positions every
//! other point had after the attractions. umap-learn instead interleaves the two and lets
//! threads race on shared positions; here a repelling point is at most half an epoch stale.

use rayon::prelude::*;

use super::graph::Graph;

/// umap-learn clips every gradient coordinate to ±4.
const CLIP: f32 = 4.0;
/// Keeps the repulsion finite for coincident points (umap-learn's 0.001).
const REPULSION_EPS: f32 = 0.001;
/// Points per parallel task in the repulsion phase.
const CHUNK: usize = 1024;

/// The curve `1 / (1 + a·d^(2b))` and the SGD settings.
pub struct Schedule {
    pub a: f32,
    pub b: f32,
    pub epochs: usize,
    pub negative_samples: usize,
    pub learning_rate: f32,
    pub seed: u64,
}

/// Per-edge sampling clocks, in epochs (umap-learn's `epochs_per_sample` and friends).
struct Clocks {
    per_sample: Vec<f64>,
    next_sample: Vec<f64>,
    per_negative: Vec<f64>,
    next_negative: Vec<f64>,
}

impl Clocks {
    /// The heaviest edge is sampled every epoch, the others in proportion to their weight.
    fn new(weight: &[f32], negative_samples: usize) -> Clocks {
        let max = weight.iter().copied().fold(0.0f32, f32::max) as f64;
        let per_sample: Vec<f64> = weight.iter().map(|&w| max / w as f64).collect();
        let rate = negative_samples.max(1) as f64;
        let per_negative: Vec<f64> = per_sample.iter().map(|p| p / rate).collect();
        Clocks {
            next_sample: per_sample.clone(),
            next_negative: per_negative.clone(),
            per_sample,
            per_negative,
        }
    }
}

/// SplitMix64: a small, fast generator whose streams are cheap to seed per (epoch, point).
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64, epoch: usize, point: usize) -> SplitMix {
        let mut s = SplitMix(seed ^ 0x9E37_79B9_7F4A_7C15);
        s.0 ^= s.next().wrapping_add(epoch as u64);
        s.0 ^= s.next().wrapping_add(point as u64);
        s
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` by multiply-shift (no modulo bias worth the name for n < 2³²).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

fn clip(v: f32) -> f32 {
    v.clamp(-CLIP, CLIP)
}

/// Attraction coefficient at squared distance `d2`: −2ab·d2^(b−1) / (1 + a·d2^b).
fn attraction(d2: f32, a: f32, b: f32) -> f32 {
    if d2 <= 0.0 {
        return 0.0;
    }
    // One log and one exp give both powers.
    let pow_b1 = ((b - 1.0) * d2.ln()).exp();
    -2.0 * a * b * pow_b1 / (a * d2 * pow_b1 + 1.0)
}

/// Repulsion coefficient at squared distance `d2`: 2b / ((ε + d2)(1 + a·d2^b)).
fn repulsion(d2: f32, a: f32, b: f32) -> f32 {
    let pow_b = (b * d2.ln()).exp();
    2.0 * b / ((REPULSION_EPS + d2) * (a * pow_b + 1.0))
}

/// One epoch's attractions, in edge order; returns how many repulsions each point owes.
fn attract(
    pos: &mut [f32],
    g: &Graph,
    clocks: &mut Clocks,
    s: &Schedule,
    epoch: usize,
    alpha: f32,
    owed: &mut [u32],
) {
    let now = epoch as f64;
    for e in 0..g.head.len() {
        if clocks.next_sample[e] > now {
            continue;
        }
        let (j, k) = (g.head[e] as usize, g.tail[e] as usize);
        let (dx, dy) = (pos[2 * j] - pos[2 * k], pos[2 * j + 1] - pos[2 * k + 1]);
        let coeff = attraction(dx * dx + dy * dy, s.a, s.b);
        let (gx, gy) = (clip(coeff * dx) * alpha, clip(coeff * dy) * alpha);
        pos[2 * j] += gx;
        pos[2 * j + 1] += gy;
        pos[2 * k] -= gx;
        pos[2 * k + 1] -= gy;
        clocks.next_sample[e] += clocks.per_sample[e];
        if s.negative_samples > 0 {
            let due = ((now - clocks.next_negative[e]) / clocks.per_negative[e]).max(0.0) as u32;
            owed[j] += due;
            clocks.next_negative[e] += due as f64 * clocks.per_negative[e];
        }
    }
}

/// One epoch's repulsions: every point pushed from `owed` random others, in parallel.
fn repel(pos: &mut [f32], owed: &[u32], s: &Schedule, epoch: usize, alpha: f32) {
    let before = pos.to_vec();
    let n = owed.len();
    pos.par_chunks_mut(2 * CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (r, p) in chunk.chunks_exact_mut(2).enumerate() {
                let j = c * CHUNK + r;
                let mut rng = SplitMix::new(s.seed, epoch, j);
                for _ in 0..owed[j] {
                    let k = rng.below(n);
                    if k == j {
                        continue;
                    }
                    let (dx, dy) = (p[0] - before[2 * k], p[1] - before[2 * k + 1]);
                    let d2 = dx * dx + dy * dy;
                    if d2 > 0.0 {
                        let coeff = repulsion(d2, s.a, s.b);
                        p[0] += clip(coeff * dx) * alpha;
                        p[1] += clip(coeff * dy) * alpha;
                    }
                }
            }
        });
}

/// Optimises the row-major `n × 2` positions in place.
pub fn optimise(pos: &mut [f32], g: &Graph, s: &Schedule) {
    let n = pos.len() / 2;
    let mut clocks = Clocks::new(&g.weight, s.negative_samples);
    let mut owed = vec![0u32; n];
    for epoch in 0..s.epochs {
        let alpha = s.learning_rate * (1.0 - epoch as f32 / s.epochs as f32);
        owed.iter_mut().for_each(|o| *o = 0);
        attract(pos, g, &mut clocks, s, epoch, alpha, &mut owed);
        repel(pos, &owed, s, epoch, alpha);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_match_their_formulas() {
        let (a, b) = (1.577f32, 0.895f32);
        for d2 in [0.01f32, 0.5, 1.0, 7.0] {
            let att = -2.0 * a * b * d2.powf(b - 1.0) / (a * d2.powf(b) + 1.0);
            assert!((attraction(d2, a, b) - att).abs() < 1e-4 * att.abs());
            let rep = 2.0 * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0));
            assert!((repulsion(d2, a, b) - rep).abs() < 1e-4 * rep);
        }
        assert_eq!(attraction(0.0, a, b), 0.0);
    }

    #[test]
    fn random_points_are_uniform_enough() {
        let mut rng = SplitMix::new(3, 1, 2);
        let mut counts = [0usize; 10];
        (0..100_000).for_each(|_| counts[rng.below(10)] += 1);
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }
}
