//! UMAP's fuzzy simplicial set (umap-learn's `smooth_knn_dist`, `compute_membership_strengths`
//! and the fuzzy union in `fuzzy_simplicial_set`): each point's k-NN distances become
//! memberships `exp(−(d − ρ) / σ)`, with ρ the distance to the nearest other point and σ chosen
//! so the memberships sum to log2(k); the directed graph is then symmetrised by `a + b − a·b`.

use rayon::prelude::*;

use crate::eval::neighbours::Neighbours;

/// Bisection steps for σ and the tolerance on the membership sum (umap-learn's values).
const SIGMA_STEPS: usize = 64;
const SIGMA_TOLERANCE: f64 = 1e-5;
/// σ never falls below this share of the mean neighbour distance (umap-learn's
/// `MIN_K_DIST_SCALE`), so duplicates cannot make it zero.
const MIN_SIGMA_SCALE: f64 = 1e-3;

/// A symmetric weighted graph as edge lists sorted by (head, tail); both directions present.
pub struct Graph {
    pub head: Vec<u32>,
    pub tail: Vec<u32>,
    pub weight: Vec<f32>,
}

/// Euclidean distance between unit vectors of cosine similarity `s`.
fn sphere_distance(s: f32) -> f64 {
    (2.0 - 2.0 * s as f64).max(0.0).sqrt()
}

/// ρ and σ of one point from its distances to the `m` nearest others (ascending). The row's
/// mean counts the point itself at distance 0, as umap-learn's self-inclusive k-NN does.
fn rho_sigma(dists: &[f64], target: f64, mean_all: f64) -> (f64, f64) {
    let rho = dists.iter().copied().find(|&d| d > 0.0).unwrap_or(0.0);
    let (mut lo, mut hi, mut mid) = (0.0, f64::INFINITY, 1.0);
    for _ in 0..SIGMA_STEPS {
        let sum: f64 = dists
            .iter()
            .map(|&d| {
                if d > rho {
                    (-(d - rho) / mid).exp()
                } else {
                    1.0
                }
            })
            .sum();
        if (sum - target).abs() < SIGMA_TOLERANCE {
            break;
        }
        if sum > target {
            hi = mid;
            mid = (lo + hi) / 2.0;
        } else {
            lo = mid;
            mid = if hi.is_infinite() {
                mid * 2.0
            } else {
                (lo + hi) / 2.0
            };
        }
    }
    let mean = if rho > 0.0 {
        dists.iter().sum::<f64>() / (dists.len() + 1) as f64
    } else {
        mean_all
    };
    (rho, mid.max(MIN_SIGMA_SCALE * mean))
}

/// Directed memberships of each point's first `m` neighbours, row-major `n × m`.
fn memberships(nb: &Neighbours, m: usize) -> Vec<f32> {
    let dist = |i: usize| -> Vec<f64> {
        nb.of(i).1[..m]
            .iter()
            .map(|&s| sphere_distance(s))
            .collect()
    };
    let total: f64 = (0..nb.n)
        .into_par_iter()
        .map(|i| dist(i).iter().sum::<f64>())
        .sum();
    let mean_all = total / (nb.n * (m + 1)) as f64;
    // umap-learn's k counts the point itself.
    let target = ((m + 1) as f64).log2();
    (0..nb.n)
        .into_par_iter()
        .flat_map_iter(|i| {
            let d = dist(i);
            let (rho, sigma) = rho_sigma(&d, target, mean_all);
            d.into_iter().map(move |d| {
                if d <= rho {
                    1.0
                } else {
                    (-(d - rho) / sigma).exp() as f32
                }
            })
        })
        .collect()
}

/// The fuzzy union of the first `m` columns of the k-NN graph, without zero weights.
pub fn fuzzy_graph(nb: &Neighbours, m: usize) -> Graph {
    let w = memberships(nb, m);
    // Every directed edge once as itself and once reversed; the pair's key sorts them together.
    let mut entries: Vec<(u64, f32)> = Vec::with_capacity(2 * nb.n * m);
    for i in 0..nb.n {
        for (c, &j) in nb.of(i).0[..m].iter().enumerate() {
            let wij = w[i * m + c];
            entries.push(((i as u64) << 32 | j as u64, wij));
            entries.push(((j as u64) << 32 | i as u64, wij));
        }
    }
    entries.par_sort_unstable_by_key(|e| e.0);
    let mut g = Graph {
        head: Vec::new(),
        tail: Vec::new(),
        weight: Vec::new(),
    };
    let mut at = 0;
    while at < entries.len() {
        let key = entries[at].0;
        let mut run = at + 1;
        while run < entries.len() && entries[run].0 == key {
            run += 1;
        }
        // Up to two memberships per pair: w(i→j) and w(j→i), each possibly absent (zero).
        let (a, b) = match entries[at..run] {
            [(_, a)] => (a, 0.0),
            [(_, a), (_, b)] => (a, b),
            _ => unreachable!("a pair has at most two directed memberships"),
        };
        let union = a + b - a * b;
        if union > 0.0 {
            g.head.push((key >> 32) as u32);
            g.tail.push(key as u32);
            g.weight.push(union);
        }
        at = run;
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_makes_memberships_sum_to_log2_k() {
        let dists = [0.5, 0.7, 0.8, 1.1, 1.6, 2.0];
        let target = 7f64.log2();
        let (rho, sigma) = rho_sigma(&dists, target, 1.0);
        assert_eq!(rho, 0.5);
        let sum: f64 = dists
            .iter()
            .map(|&d| (-(d - rho).max(0.0) / sigma).exp())
            .sum();
        assert!((sum - target).abs() < 1e-4, "{sum} vs {target}");
    }

    #[test]
    fn union_is_symmetric_and_combines_both_directions() {
        // Four points on a line; each lists its two nearest others.
        let nb = Neighbours {
            n: 4,
            k: 2,
            index: vec![1, 2, 0, 2, 1, 3, 2, 1],
            similarity: vec![0.9, 0.5, 0.9, 0.8, 0.8, 0.7, 0.7, 0.5],
        };
        let w = memberships(&nb, 2);
        let g = fuzzy_graph(&nb, 2);
        let weight = |i: u32, j: u32| {
            (0..g.head.len())
                .find(|&e| g.head[e] == i && g.tail[e] == j)
                .map(|e| g.weight[e])
        };
        for e in 0..g.head.len() {
            assert_eq!(weight(g.tail[e], g.head[e]), Some(g.weight[e]));
        }
        // 0 → 1 and 1 → 0 both exist: a + b − ab.
        let expected = w[0] + w[2] - w[0] * w[2];
        assert!((weight(0, 1).unwrap() - expected).abs() < 1e-6);
        // 0 → 2 only one way.
        assert_eq!(weight(0, 2), Some(w[1]));
        assert_eq!(weight(0, 3), None);
    }
}
