//! UMAP: a 2-D map of the embeddings (McInnes, Healy & Melville 2018), following umap-learn:
//! an exact cosine k-NN graph (distances on the unit sphere, `sqrt(2 − 2·cos)`, equal to the
//! euclidean distance between L2-normalised features), its fuzzy simplicial set, the curve
//! parameters a and b fitted to `min_dist` and `spread`, and SGD on the layout.
//!
//! `neighbours` counts the point itself, as umap-learn's `n_neighbors` does: the graph uses
//! each point's `neighbours − 1` nearest others and calibrates σ to log2(`neighbours`).
//!
//! The layout starts from the features' first two principal components (umap-learn's
//! `init="pca"`), not the spectral embedding umap-learn uses by default: it is exact, fast and
//! deterministic, where a spectral start needs an iterative eigensolver whose convergence on
//! clustered k-NN graphs (many eigenvalues close to 1) is slow; the SGD decides local
//! structure either way. The result is a pure function of (data, config, seed), whatever the
//! thread count (see `layout`).

mod graph;
mod layout;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::neighbours::{Neighbours, cosine_knn};
use super::pca::Pca;

/// Output dimensions.
const COMPONENTS: usize = 2;
/// Epochs when the config leaves them at 0: umap-learn's 500 for small data, 200 above.
const SMALL_DATA: usize = 10_000;
const SMALL_EPOCHS: usize = 500;
const LARGE_EPOCHS: usize = 200;
/// umap-learn scales the start to ±10, adds this much gaussian noise, then maps it to [0, 10].
const INIT_EXTENT: f32 = 10.0;
const INIT_NOISE: f32 = 1e-4;
/// The a/b fit's sample points on [0, 3·spread] (umap-learn's `find_ab_params`).
const CURVE_POINTS: usize = 300;

/// UMAP's settings, checked by [`UmapConfig::validate`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UmapConfig {
    /// Neighbourhood size, counting the point itself (umap-learn's `n_neighbors`).
    pub neighbours: usize,
    /// How tightly points may pack in the map.
    pub min_dist: f32,
    /// The scale of the map's distances.
    pub spread: f32,
    /// SGD epochs; 0 picks 500 up to 10,000 points and 200 above.
    pub epochs: usize,
    /// Repulsions per attraction.
    pub negative_samples: usize,
    /// Initial SGD step, falling linearly to 0.
    pub learning_rate: f32,
    pub seed: u64,
}

impl Default for UmapConfig {
    fn default() -> Self {
        UmapConfig {
            neighbours: 15,
            min_dist: 0.1,
            spread: 1.0,
            epochs: 0,
            negative_samples: 5,
            learning_rate: 1.0,
            seed: 0,
        }
    }
}

impl UmapConfig {
    /// Checks the values, and that `n` points are enough for the neighbourhood.
    pub fn validate(&self, n: usize) -> Result<(), String> {
        if self.neighbours < 2 {
            return Err(format!(
                "umap.neighbours must be at least 2, not {}",
                self.neighbours
            ));
        }
        if self.neighbours > n {
            return Err(format!(
                "umap.neighbours = {} needs at least that many points, not {n}",
                self.neighbours
            ));
        }
        if !(self.spread > 0.0 && self.spread.is_finite()) {
            return Err(format!(
                "umap.spread must be a finite number > 0, not {}",
                self.spread
            ));
        }
        if !(self.min_dist >= 0.0 && self.min_dist <= self.spread) {
            return Err(format!(
                "umap.min_dist must be in 0..=spread ({}), not {}",
                self.spread, self.min_dist
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(format!(
                "umap.learning_rate must be a finite number > 0, not {}",
                self.learning_rate
            ));
        }
        Ok(())
    }

    /// The epochs to run for `n` points.
    pub fn epochs_for(&self, n: usize) -> usize {
        match self.epochs {
            0 if n <= SMALL_DATA => SMALL_EPOCHS,
            0 => LARGE_EPOCHS,
            e => e,
        }
    }
}

/// Checks that `values` holds `n` rows of `dim` finite numbers.
fn check_values(values: &[f32], n: usize, dim: usize) -> Result<(), String> {
    crate::util::rows::check_finite_rows(values, n, dim, "UMAP")
}

/// Row-major `n × 2` map coordinates of the `n` rows of `dim` values.
pub fn umap(values: &[f32], n: usize, dim: usize, cfg: &UmapConfig) -> Result<Vec<f32>, String> {
    check_values(values, n, dim)?;
    cfg.validate(n)?;
    let nb = cosine_knn(values, n, dim, cfg.neighbours - 1);
    umap_with(&nb, values, dim, cfg)
}

/// [`umap`] on a k-NN graph the caller already has (from [`cosine_knn`] on the same rows, with
/// at least `cfg.neighbours − 1` columns, of which the first `cfg.neighbours − 1` are used).
pub fn umap_with(
    neighbours: &Neighbours,
    values: &[f32],
    dim: usize,
    cfg: &UmapConfig,
) -> Result<Vec<f32>, String> {
    let n = neighbours.n;
    check_values(values, n, dim)?;
    cfg.validate(n)?;
    let m = cfg.neighbours - 1;
    if neighbours.k < m {
        return Err(format!(
            "the k-NN graph has {} neighbours per point, fewer than umap.neighbours − 1 = {m}",
            neighbours.k
        ));
    }
    let mut g = graph::fuzzy_graph(neighbours, m);
    let epochs = cfg.epochs_for(n);
    prune(&mut g, epochs);
    let (a, b) = fit_ab(cfg.spread as f64, cfg.min_dist as f64);
    let mut pos = initial_layout(values, n, dim, cfg.seed)?;
    let schedule = layout::Schedule {
        a: a as f32,
        b: b as f32,
        epochs,
        negative_samples: cfg.negative_samples,
        learning_rate: cfg.learning_rate,
        seed: cfg.seed,
    };
    layout::optimise(&mut pos, &g, &schedule);
    Ok(pos)
}

/// Drops edges too light to be sampled even once in `epochs` (umap-learn does the same).
fn prune(g: &mut graph::Graph, epochs: usize) {
    let max = g.weight.iter().copied().fold(0.0f32, f32::max);
    let floor = max / epochs as f32;
    let keep: Vec<usize> = (0..g.weight.len())
        .filter(|&e| g.weight[e] >= floor)
        .collect();
    g.head = keep.iter().map(|&e| g.head[e]).collect();
    g.tail = keep.iter().map(|&e| g.tail[e]).collect();
    g.weight = keep.iter().map(|&e| g.weight[e]).collect();
}

/// Least-squares fit of `1 / (1 + a·x^(2b))` to the target curve (1 below `min_dist`, then
/// `exp(−(x − min_dist) / spread)`), by Levenberg–Marquardt from (1, 1) as scipy's
/// `curve_fit` does in umap-learn's `find_ab_params`.
pub fn fit_ab(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..CURVE_POINTS)
        .map(|i| 3.0 * spread * i as f64 / (CURVE_POINTS - 1) as f64)
        .collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let cost = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| (1.0 / (1.0 + a * x.powf(2.0 * b)) - y).powi(2))
            .sum()
    };
    let (mut a, mut b, mut lambda) = (1.0f64, 1.0f64, 1e-3f64);
    let mut current = cost(a, b);
    for _ in 0..200 {
        // Normal equations JᵀJ δ = −Jᵀr for the residuals r = f − y.
        let (mut jtj, mut jtr) = ([[0.0f64; 2]; 2], [0.0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            let u = if x > 0.0 { x.powf(2.0 * b) } else { 0.0 };
            let f = 1.0 / (1.0 + a * u);
            let ja = -u * f * f;
            let jb = if x > 0.0 {
                -a * u * 2.0 * x.ln() * f * f
            } else {
                0.0
            };
            let r = f - y;
            jtj[0][0] += ja * ja;
            jtj[0][1] += ja * jb;
            jtj[1][1] += jb * jb;
            jtr[0] += ja * r;
            jtr[1] += jb * r;
        }
        let (d00, d11) = (jtj[0][0] * (1.0 + lambda), jtj[1][1] * (1.0 + lambda));
        let det = d00 * d11 - jtj[0][1] * jtj[0][1];
        if det.abs() < 1e-300 {
            break;
        }
        let da = -(d11 * jtr[0] - jtj[0][1] * jtr[1]) / det;
        let db = -(d00 * jtr[1] - jtj[0][1] * jtr[0]) / det;
        let trial = cost(a + da, b + db);
        if trial.is_finite() && trial < current {
            let improvement = current - trial;
            (a, b, current, lambda) = (a + da, b + db, trial, lambda / 10.0);
            if improvement < 1e-15 * current.max(1e-300) {
                break;
            }
        } else {
            lambda *= 10.0;
        }
    }
    (a, b)
}

/// The start of the layout: the first two principal components scaled to ±10, with a little
/// gaussian noise so that duplicates separate, then each axis mapped to [0, 10].
fn initial_layout(values: &[f32], n: usize, dim: usize, seed: u64) -> Result<Vec<f32>, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pos = if dim >= COMPONENTS {
        Pca::fit(values, n, dim, COMPONENTS, false)?.transform(values)
    } else {
        // One feature: it becomes the first axis, the second starts random.
        values.iter().flat_map(|&v| [v, 0.0]).collect()
    };
    let extent = pos.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let expansion = if extent > 0.0 {
        INIT_EXTENT / extent
    } else {
        1.0
    };
    for p in pos.iter_mut() {
        *p = *p * expansion + INIT_NOISE * gaussian(&mut rng);
    }
    if dim < COMPONENTS {
        pos.chunks_exact_mut(COMPONENTS)
            .for_each(|p| p[1] = rng.random::<f32>() * INIT_EXTENT);
    }
    for axis in 0..COMPONENTS {
        let col = pos.iter().skip(axis).step_by(COMPONENTS);
        let (lo, hi) = col.fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
        let scale = INIT_EXTENT / (hi - lo).max(f32::MIN_POSITIVE);
        pos.iter_mut()
            .skip(axis)
            .step_by(COMPONENTS)
            .for_each(|v| *v = (*v - lo) * scale);
    }
    Ok(pos)
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random::<f64>();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// Squared euclidean distances from row `i` to every row.
fn sq_dists(values: &[f32], dim: usize, i: usize) -> Vec<f64> {
    let row = &values[i * dim..(i + 1) * dim];
    values
        .chunks_exact(dim)
        .map(|r| {
            r.iter()
                .zip(row)
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum()
        })
        .collect()
}

/// scikit-learn's `trustworthiness` (euclidean): 1 − 2/(n·k·(2n − 3k − 1)) · Σᵢ Σ_{j ∈ Nₖ(i) in
/// the map} max(0, r(i, j) − k), with r(i, j) j's rank among i's neighbours in the original
/// space. 1 when the map's neighbourhoods are all true ones. O(n²·dim).
pub fn trustworthiness(
    high: &[f32],
    high_dim: usize,
    low: &[f32],
    low_dim: usize,
    n: usize,
    k: usize,
) -> f64 {
    let penalty: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            let d_high = sq_dists(high, high_dim, i);
            let d_low = sq_dists(low, low_dim, i);
            // Ties go to the lower index, as a stable argsort gives them.
            let before = |d: &[f64], j: usize, l: usize| d[l] < d[j] || (d[l] == d[j] && l < j);
            let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            order.sort_by(|&x, &y| d_low[x].total_cmp(&d_low[y]).then(x.cmp(&y)));
            order
                .iter()
                .take(k)
                .map(|&j| {
                    let rank = 1 + (0..n).filter(|&l| l != i && before(&d_high, j, l)).count();
                    rank.saturating_sub(k) as f64
                })
                .sum::<f64>()
        })
        .sum();
    let (n, k) = (n as f64, k as f64);
    1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))
}

#[cfg(test)]
mod tests;
