//! k-means on a CPU: greedy k-means++ seeding and Lloyd iterations, both with squared distances
//! computed as matrix products (`|x|² + |c|² − 2·x·cᵀ`) on row blocks in parallel.
//!
//! The algorithm follows scikit-learn's `KMeans(algorithm="lloyd", init="k-means++")` so that the
//! two can be compared like for like: the same seeding (2 + ln k local trials per centre), the
//! same tolerance (on the squared centre shift, relative to the mean per-feature variance), the
//! same relocation of empty clusters (to the points farthest from their centres), and a final
//! assignment so that labels match the returned centres.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Rows per block of the distance products: big enough for the GEMM to run at speed, small
/// enough that a block's `rows × k` distances stay in cache and blocks balance across threads.
const BLOCK: usize = 256;

/// k-means hyper-parameters, checked by [`KMeansConfig::validate`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KMeansConfig {
    pub k: usize,
    pub max_iter: usize,
    /// Stop when the summed squared centre shift is below `tol` × the mean feature variance.
    pub tol: f64,
    /// Independent seedings; the run with the lowest inertia is kept.
    pub restarts: usize,
    pub seed: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        KMeansConfig {
            k: 100,
            max_iter: 300,
            tol: 1e-4,
            restarts: 1,
            seed: 0,
        }
    }
}

impl KMeansConfig {
    /// Checks the values, and that `n` points are enough for `k` clusters.
    pub fn validate(&self, n: usize) -> Result<(), String> {
        if self.k == 0 {
            return Err("k must be at least 1".into());
        }
        if self.k > n {
            return Err(format!(
                "k = {} is more clusters than the {n} points",
                self.k
            ));
        }
        if self.max_iter == 0 {
            return Err("max_iter must be at least 1".into());
        }
        if self.restarts == 0 {
            return Err("restarts must be at least 1".into());
        }
        if !(self.tol >= 0.0 && self.tol.is_finite()) {
            return Err(format!(
                "tol must be a finite number >= 0, not {}",
                self.tol
            ));
        }
        Ok(())
    }
}

/// Row-major points: `n` rows of `dim` values.
#[derive(Clone, Copy)]
pub struct Points<'a> {
    pub values: &'a [f32],
    pub n: usize,
    pub dim: usize,
}

impl<'a> Points<'a> {
    /// Checks the shape and that every value is finite.
    pub fn new(values: &'a [f32], n: usize, dim: usize) -> Result<Self, String> {
        crate::util::rows::check_finite_rows(values, n, dim, "k-means")?;
        Ok(Points { values, n, dim })
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

/// A fitted clustering.
#[derive(Clone, Debug)]
pub struct KMeans {
    pub k: usize,
    pub dim: usize,
    /// Row-major `k × dim`.
    pub centroids: Vec<f32>,
    pub labels: Vec<u32>,
    /// Sum of squared distances of points to their centres.
    pub inertia: f64,
    /// Lloyd iterations of the kept restart.
    pub iterations: usize,
    pub converged: bool,
    /// The final inertia of every restart, in order.
    pub restart_inertias: Vec<f64>,
    pub init_seconds: f64,
}

/// Clusters `points` into `cfg.k` groups; deterministic for a given seed and thread count.
pub fn fit(points: Points, cfg: &KMeansConfig) -> Result<KMeans, String> {
    cfg.validate(points.n)?;
    let sq_norms = row_sq_norms(points);
    let tol = cfg.tol * mean_variance(points);
    let mut best: Option<KMeans> = None;
    let mut inertias = Vec::with_capacity(cfg.restarts);
    for restart in 0..cfg.restarts {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(restart as u64));
        let t0 = std::time::Instant::now();
        let init = kmeans_plus_plus(points, &sq_norms, cfg.k, &mut rng);
        let init_seconds = t0.elapsed().as_secs_f64();
        let mut run = lloyd(points, &sq_norms, init, cfg.max_iter, tol);
        run.init_seconds = init_seconds;
        inertias.push(run.inertia);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    let mut best = best.expect("at least one restart");
    best.restart_inertias = inertias;
    Ok(best)
}

fn row_sq_norms(p: Points) -> Vec<f32> {
    p.values
        .par_chunks(p.dim)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect()
}

fn mean_variance(p: Points) -> f64 {
    let mut mean = vec![0f64; p.dim];
    let mut sq = vec![0f64; p.dim];
    for i in 0..p.n {
        for (j, &v) in p.row(i).iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += v as f64 * v as f64;
        }
    }
    let n = p.n as f64;
    (0..p.dim)
        .map(|j| (sq[j] / n - (mean[j] / n).powi(2)).max(0.0))
        .sum::<f64>()
        / p.dim as f64
}

/// `out[r, j] = −2 · a[r] · b[j]` for `rows` rows of `a` and `cols` rows of `b`, single-threaded
/// (parallelism is across blocks).
fn neg2_dot(a: &[f32], rows: usize, b: &[f32], cols: usize, dim: usize, out: &mut [f32]) {
    crate::eval::neighbours::scaled_dots(a, rows, b, cols, dim, -2.0, out);
}

/// Assigns every point to its nearest centre: labels and squared distances.
fn assign(
    p: Points,
    sq_norms: &[f32],
    centroids: &[f32],
    k: usize,
    labels: &mut [u32],
    dists: &mut [f32],
) {
    let c_sq: Vec<f32> = centroids
        .chunks(p.dim)
        .map(|c| c.iter().map(|v| v * v).sum())
        .collect();
    labels
        .par_chunks_mut(BLOCK)
        .zip(dists.par_chunks_mut(BLOCK))
        .enumerate()
        .for_each_init(Vec::new, |scratch, (b, (labels, dists))| {
            let start = b * BLOCK;
            let rows = labels.len();
            scratch.resize(rows * k, 0.0);
            neg2_dot(
                &p.values[start * p.dim..],
                rows,
                centroids,
                k,
                p.dim,
                scratch,
            );
            for r in 0..rows {
                let row = &scratch[r * k..(r + 1) * k];
                let (mut best, mut best_d) = (0, f32::INFINITY);
                for (j, (&dot, &c)) in row.iter().zip(&c_sq).enumerate() {
                    let d = dot + c;
                    if d < best_d {
                        best = j;
                        best_d = d;
                    }
                }
                labels[r] = best as u32;
                dists[r] = (best_d + sq_norms[start + r]).max(0.0);
            }
        });
}

/// Greedy k-means++ (Arthur & Vassilvitskii 2007, with scikit-learn's `2 + ln k` local trials):
/// each new centre is the best of several candidates drawn in proportion to squared distance.
fn kmeans_plus_plus(p: Points, sq_norms: &[f32], k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let trials = 2 + (k as f64).ln() as usize;
    let mut centroids = Vec::with_capacity(k * p.dim);
    let first = rng.random_range(0..p.n);
    centroids.extend_from_slice(p.row(first));
    let mut closest = distances_to(p, sq_norms, &[first], 1)
        .pop()
        .expect("one candidate");
    let mut potential: f64 = closest.iter().map(|&d| d as f64).sum();
    let mut cumulative = vec![0f64; p.n];
    for _ in 1..k {
        let mut acc = 0f64;
        for (c, &d) in cumulative.iter_mut().zip(&closest) {
            acc += d as f64;
            *c = acc;
        }
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                let target = rng.random::<f64>() * potential;
                cumulative.partition_point(|&c| c < target).min(p.n - 1)
            })
            .collect();
        let mut per_candidate = distances_to(p, sq_norms, &candidates, trials);
        let mut best = (0, f64::INFINITY);
        for (t, dists) in per_candidate.iter_mut().enumerate() {
            let mut pot = 0f64;
            for (d, &c) in dists.iter_mut().zip(&closest) {
                *d = d.min(c);
                pot += *d as f64;
            }
            if pot < best.1 {
                best = (t, pot);
            }
        }
        potential = best.1;
        closest = per_candidate.swap_remove(best.0);
        centroids.extend_from_slice(p.row(candidates[best.0]));
    }
    centroids
}

/// Squared distances from each of the `count` points at `ids` to every point.
fn distances_to(p: Points, sq_norms: &[f32], ids: &[usize], count: usize) -> Vec<Vec<f32>> {
    let cand: Vec<f32> = ids.iter().flat_map(|&i| p.row(i).iter().copied()).collect();
    // Block-major `[block][rows × count]` products, then transposed to one row per candidate.
    let blocks: Vec<Vec<f32>> = (0..p.n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let start = b * BLOCK;
            let rows = BLOCK.min(p.n - start);
            let mut out = vec![0f32; rows * count];
            neg2_dot(
                &p.values[start * p.dim..],
                rows,
                &cand,
                count,
                p.dim,
                &mut out,
            );
            for r in 0..rows {
                for (t, &id) in ids.iter().enumerate() {
                    let d = &mut out[r * count + t];
                    *d = (*d + sq_norms[start + r] + sq_norms[id]).max(0.0);
                }
            }
            out
        })
        .collect();
    let mut result = vec![Vec::with_capacity(p.n); count];
    for (b, block) in blocks.iter().enumerate() {
        let rows = BLOCK.min(p.n - b * BLOCK);
        for r in 0..rows {
            for (t, col) in result.iter_mut().enumerate() {
                col.push(block[r * count + t]);
            }
        }
    }
    result
}

/// Lloyd iterations from `centroids` (see the module notes for the stopping rule).
fn lloyd(
    p: Points,
    sq_norms: &[f32],
    mut centroids: Vec<f32>,
    max_iter: usize,
    tol: f64,
) -> KMeans {
    let k = centroids.len() / p.dim;
    let mut labels = vec![0u32; p.n];
    let mut previous = vec![u32::MAX; p.n];
    let mut dists = vec![0f32; p.n];
    let mut iterations = 0;
    let mut strict = false;
    let mut converged = false;
    for _ in 0..max_iter {
        iterations += 1;
        assign(p, sq_norms, &centroids, k, &mut labels, &mut dists);
        let updated = update_centroids(p, &labels, &dists, &centroids, k);
        let shift: f64 = updated
            .iter()
            .zip(&centroids)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        centroids = updated;
        if labels == previous {
            strict = true;
            converged = true;
            break;
        }
        if shift <= tol {
            converged = true;
            break;
        }
        std::mem::swap(&mut labels, &mut previous);
    }
    if !strict {
        // The labels above belong to the centres before the last update.
        assign(p, sq_norms, &centroids, k, &mut labels, &mut dists);
    }
    let inertia = inertia(p, &centroids, &labels);
    KMeans {
        k,
        dim: p.dim,
        centroids,
        labels,
        inertia,
        iterations,
        converged,
        restart_inertias: Vec::new(),
        init_seconds: 0.0,
    }
}

/// The mean of each cluster's points; an empty cluster takes the point farthest from its own
/// centre (farthest first, one point per empty cluster), which leaves its old cluster.
fn update_centroids(p: Points, labels: &[u32], dists: &[f32], old: &[f32], k: usize) -> Vec<f32> {
    let dim = p.dim;
    // Points grouped by cluster in index order (a counting sort), then each cluster summed on
    // its own: parallel across clusters, and the same additions in the same order whatever the
    // thread count or scheduling, so results are reproducible.
    let mut counts = vec![0usize; k];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    let mut starts = vec![0usize; k + 1];
    for j in 0..k {
        starts[j + 1] = starts[j] + counts[j];
    }
    let mut members = vec![0usize; p.n];
    let mut next = starts.clone();
    for (i, &l) in labels.iter().enumerate() {
        members[next[l as usize]] = i;
        next[l as usize] += 1;
    }
    let mut sums = vec![0f64; k * dim];
    sums.par_chunks_mut(dim).enumerate().for_each(|(j, sum)| {
        for &i in &members[starts[j]..starts[j + 1]] {
            for (s, &v) in sum.iter_mut().zip(p.row(i)) {
                *s += v as f64;
            }
        }
    });

    let empty: Vec<usize> = (0..k).filter(|&j| counts[j] == 0).collect();
    let mut relocated: Vec<Option<usize>> = vec![None; k];
    if !empty.is_empty() {
        let mut far: Vec<usize> = (0..p.n).collect();
        far.sort_by(|&a, &b| dists[b].total_cmp(&dists[a]).then(a.cmp(&b)));
        for (&cluster, &point) in empty.iter().zip(&far) {
            let from = labels[point] as usize;
            if counts[from] <= 1 {
                continue;
            }
            counts[from] -= 1;
            for (s, &v) in sums[from * dim..(from + 1) * dim]
                .iter_mut()
                .zip(p.row(point))
            {
                *s -= v as f64;
            }
            relocated[cluster] = Some(point);
        }
    }
    let mut out = vec![0f32; k * dim];
    for j in 0..k {
        let dst = &mut out[j * dim..(j + 1) * dim];
        if let Some(point) = relocated[j] {
            dst.copy_from_slice(p.row(point));
        } else if counts[j] == 0 {
            dst.copy_from_slice(&old[j * dim..(j + 1) * dim]);
        } else {
            let inv = 1.0 / counts[j] as f64;
            for (d, &s) in dst.iter_mut().zip(&sums[j * dim..(j + 1) * dim]) {
                *d = (s * inv) as f32;
            }
        }
    }
    out
}

/// The nearest of the row-major `centroids` for every point.
pub fn nearest(p: Points, centroids: &[f32]) -> Vec<u32> {
    let k = centroids.len() / p.dim;
    let sq_norms = row_sq_norms(p);
    let mut labels = vec![0u32; p.n];
    let mut dists = vec![0f32; p.n];
    assign(p, &sq_norms, centroids, k, &mut labels, &mut dists);
    labels
}

/// Σ |x − c(x)|², computed directly (not from the expanded form) so it is exact to f64 rounding.
pub fn inertia(p: Points, centroids: &[f32], labels: &[u32]) -> f64 {
    let point = |i: usize| -> f64 {
        let c = &centroids[labels[i] as usize * p.dim..][..p.dim];
        p.row(i)
            .iter()
            .zip(c)
            .map(|(&x, &c)| ((x - c) as f64).powi(2))
            .sum()
    };
    // Fixed blocks summed in order: the same total whatever the scheduling.
    let blocks: Vec<f64> = (0..p.n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| (b * BLOCK..((b + 1) * BLOCK).min(p.n)).map(point).sum())
        .collect();
    blocks.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per` points around each of `centres`, with deterministic jitter of scale `noise`.
    fn blobs(centres: &[[f32; 2]], per: usize, noise: f32) -> (Vec<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut values = Vec::new();
        let mut truth = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for _ in 0..per {
                values.push(centre[0] + noise * (rng.random::<f32>() - 0.5));
                values.push(centre[1] + noise * (rng.random::<f32>() - 0.5));
                truth.push(c as u32);
            }
        }
        (values, truth)
    }

    fn brute_force_labels(p: Points, centroids: &[f32]) -> Vec<u32> {
        (0..p.n)
            .map(|i| {
                let d = |j: usize| -> f32 {
                    p.row(i)
                        .iter()
                        .zip(&centroids[j * p.dim..(j + 1) * p.dim])
                        .map(|(a, b)| (a - b).powi(2))
                        .sum()
                };
                (0..centroids.len() / p.dim)
                    .min_by(|&a, &b| d(a).total_cmp(&d(b)))
                    .unwrap() as u32
            })
            .collect()
    }

    #[test]
    fn finds_well_separated_blobs() {
        let centres = [
            [0.0, 0.0],
            [10.0, 0.0],
            [0.0, 10.0],
            [10.0, 10.0],
            [5.0, 20.0],
        ];
        let (values, truth) = blobs(&centres, 300, 1.0);
        let p = Points::new(&values, truth.len(), 2).unwrap();
        let cfg = KMeansConfig {
            k: 5,
            ..Default::default()
        };
        let km = fit(p, &cfg).unwrap();
        assert!(km.converged);
        // Every true blob maps to exactly one cluster and back.
        for c in 0..5u32 {
            let ids: Vec<u32> = truth
                .iter()
                .zip(&km.labels)
                .filter(|(t, _)| **t == c)
                .map(|(_, l)| *l)
                .collect();
            assert!(ids.iter().all(|&l| l == ids[0]), "blob {c} split: {ids:?}");
        }
        let mut used: Vec<u32> = km.labels.clone();
        used.sort();
        used.dedup();
        assert_eq!(used.len(), 5);
        // Uniform noise of width 1 has variance 1/12 per coordinate.
        let expected = truth.len() as f64 * 2.0 / 12.0;
        assert!(
            (km.inertia - expected).abs() < 0.1 * expected,
            "{}",
            km.inertia
        );
    }

    #[test]
    fn labels_are_the_nearest_centres_and_inertia_matches_them() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, dim) = (1000, 17);
        let values: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>()).collect();
        let p = Points::new(&values, n, dim).unwrap();
        let km = fit(
            p,
            &KMeansConfig {
                k: 40,
                max_iter: 5,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(km.iterations, 5);
        assert_eq!(km.labels, brute_force_labels(p, &km.centroids));
        assert_eq!(nearest(p, &km.centroids), km.labels);
        let direct = inertia(p, &km.centroids, &km.labels);
        assert!((km.inertia - direct).abs() < 1e-9 * direct);
    }

    #[test]
    fn more_iterations_and_restarts_never_raise_inertia() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (n, dim) = (600, 8);
        let values: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>()).collect();
        let p = Points::new(&values, n, dim).unwrap();
        let run = |max_iter, restarts| {
            fit(
                p,
                &KMeansConfig {
                    k: 12,
                    max_iter,
                    restarts,
                    tol: 0.0,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let (one, many) = (run(1, 1), run(50, 1));
        assert!(many.inertia <= one.inertia);
        let restarted = run(50, 4);
        assert_eq!(restarted.restart_inertias.len(), 4);
        assert_eq!(restarted.restart_inertias[0], many.inertia);
        let min = restarted
            .restart_inertias
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        assert_eq!(restarted.inertia, min);
    }

    #[test]
    fn same_seed_same_result() {
        let (values, truth) = blobs(&[[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]], 200, 4.0);
        let p = Points::new(&values, truth.len(), 2).unwrap();
        let cfg = KMeansConfig {
            k: 7,
            seed: 11,
            ..Default::default()
        };
        let (a, b) = (fit(p, &cfg).unwrap(), fit(p, &cfg).unwrap());
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.centroids, b.centroids);
    }

    #[test]
    fn results_do_not_depend_on_scheduling_or_thread_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let (n, dim) = (3000, 16);
        let values: Vec<f32> = (0..n * dim).map(|_| rng.random::<f32>()).collect();
        let p = Points::new(&values, n, dim).unwrap();
        let cfg = KMeansConfig {
            k: 30,
            max_iter: 20,
            ..Default::default()
        };
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| fit(p, &cfg).unwrap())
        };
        let one = run(1);
        for threads in [2, 3, 2] {
            let other = run(threads);
            assert_eq!(other.labels, one.labels);
            assert_eq!(other.inertia, one.inertia);
            assert_eq!(other.centroids, one.centroids);
        }
    }

    #[test]
    fn duplicate_points_leave_no_cluster_empty() {
        // 3 distinct values among 50 points, k = 5: seeding must still give 5 non-empty clusters
        // or relocate the empty ones.
        let values: Vec<f32> = (0..50)
            .map(|i| (i % 3) as f32)
            .chain((0..5).map(|i| 10.0 + i as f32))
            .collect();
        let p = Points::new(&values, 55, 1).unwrap();
        let km = fit(
            p,
            &KMeansConfig {
                k: 5,
                ..Default::default()
            },
        )
        .unwrap();
        let mut counts = [0; 5];
        km.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(Points::new(&[1.0, 2.0, 3.0], 2, 2).is_err());
        let err = Points::new(&[1.0, f32::NAN], 1, 2).err().unwrap();
        assert!(err.contains("row 0 column 1"), "{err}");
        let p = Points::new(&[1.0, 2.0], 2, 1).unwrap();
        let cfg = KMeansConfig {
            k: 3,
            ..Default::default()
        };
        assert!(
            fit(p, &cfg)
                .unwrap_err()
                .contains("more clusters than the 2 points")
        );
    }
}
