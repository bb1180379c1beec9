//! Exact nearest neighbours by cosine similarity.
//!
//! Rows are L2-normalised, then similarities come from blocked `X_block · X_tileᵀ` products
//! (the `gemm` crate, one single-threaded product per task; rayon runs row blocks in parallel)
//! and a running top-k per row. Only one `ROW_BLOCK × COL_TILE` tile of similarities exists per
//! thread at a time, never the `n × n` matrix. Block boundaries do not depend on the thread
//! count and each row's columns are visited in index order, so the result is the same for any
//! number of threads, with ties going to the lower index.

use rayon::prelude::*;

/// Rows per parallel task: enough rows that the GEMM runs at speed and the blocks still
/// balance across threads.
const ROW_BLOCK: usize = 128;
/// Columns per product: a `ROW_BLOCK × COL_TILE` f32 tile (1 MiB) stays near the cache.
const COL_TILE: usize = 2048;

/// The k nearest neighbours of every row by cosine similarity (self excluded).
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    pub n: usize,
    pub k: usize,
    /// Row-major `n × k` neighbour indices, most similar first.
    pub index: Vec<u32>,
    /// Row-major `n × k` cosine similarities, descending along each row.
    pub similarity: Vec<f32>,
}

impl Neighbours {
    /// Row `i`'s neighbours and their similarities, most similar first.
    pub fn of(&self, i: usize) -> (&[u32], &[f32]) {
        let span = i * self.k..(i + 1) * self.k;
        (&self.index[span.clone()], &self.similarity[span])
    }
}

/// Unit-length copies of the rows, in f64 so that huge values cannot overflow the norm.
/// Non-finite values count as 0 and zero rows stay zero (similarity 0 to everything), so no
/// similarity is ever NaN; callers that must refuse such input check it before.
pub fn unit_rows(values: &[f32], dim: usize) -> Vec<f32> {
    let mut out: Vec<f32> = values
        .iter()
        .map(|&v| if v.is_finite() { v } else { 0.0 })
        .collect();
    out.par_chunks_mut(dim).for_each(|row| {
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
        }
    });
    out
}

/// `out[r, c] = scale · a[r] · b[c]` for `rows` rows of `a` and `cols` rows of `b`,
/// single-threaded (callers run blocks in parallel). k-means uses it too.
#[allow(clippy::too_many_arguments)]
pub fn scaled_dots(
    a: &[f32],
    rows: usize,
    b: &[f32],
    cols: usize,
    dim: usize,
    scale: f32,
    out: &mut [f32],
) {
    assert!(a.len() >= rows * dim && b.len() >= cols * dim && out.len() >= rows * cols);
    // SAFETY: the assert above bounds every index the strides below can reach.
    unsafe {
        gemm::gemm(
            rows,
            cols,
            dim,
            out.as_mut_ptr(),
            1,
            cols as isize,
            false,
            a.as_ptr(),
            1,
            dim as isize,
            b.as_ptr(),
            dim as isize,
            1,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// One row's best `k` so far, sorted by descending similarity then ascending index.
struct TopK<'a> {
    index: &'a mut [u32],
    similarity: &'a mut [f32],
    len: usize,
}

impl TopK<'_> {
    /// The similarity a new column must beat to enter.
    fn threshold(&self) -> f32 {
        if self.len < self.index.len() {
            f32::NEG_INFINITY
        } else {
            self.similarity[self.len - 1]
        }
    }

    /// Inserts column `j`; columns arrive in increasing order, so an equal similarity already
    /// held has the lower index and stays ahead.
    fn insert(&mut self, j: u32, s: f32) {
        let k = self.index.len();
        let at = self.similarity[..self.len].partition_point(|&x| x >= s);
        let end = (self.len + 1).min(k);
        self.similarity.copy_within(at..end - 1, at + 1);
        self.index.copy_within(at..end - 1, at + 1);
        self.similarity[at] = s;
        self.index[at] = j;
        self.len = end;
    }
}

/// Empty top-`k` lists over the rows of `index` and `similarity`.
fn top_lists<'a>(index: &'a mut [u32], similarity: &'a mut [f32], k: usize) -> Vec<TopK<'a>> {
    index
        .chunks_exact_mut(k)
        .zip(similarity.chunks_exact_mut(k))
        .map(|(index, similarity)| TopK {
            index,
            similarity,
            len: 0,
        })
        .collect()
}

/// Offers the tile's columns `col0..col0 + cols` to each of the block's rows, whose own row
/// numbers (never their own neighbours) are `own`.
fn select_tile(tile: &[f32], own: &[usize], col0: usize, cols: usize, best: &mut [TopK]) {
    for (r, top) in best.iter_mut().enumerate() {
        let sims = &tile[r * cols..(r + 1) * cols];
        let me = own[r];
        let mut threshold = top.threshold();
        for (c, &s) in sims.iter().enumerate() {
            if s > threshold && col0 + c != me {
                top.insert((col0 + c) as u32, s);
                threshold = top.threshold();
            }
        }
    }
}

/// The `k` most cosine-similar other rows of each of the `n` row-major rows of `dim` values.
/// `k` is clipped to `n − 1`. Exact, and the same for any thread count.
pub fn cosine_knn(values: &[f32], n: usize, dim: usize, k: usize) -> Neighbours {
    assert_eq!(
        values.len(),
        n * dim,
        "cosine_knn: values are not {n} rows of {dim}"
    );
    let k = k.min(n.saturating_sub(1));
    let mut index = vec![0u32; n * k];
    let mut similarity = vec![0f32; n * k];
    if k == 0 || dim == 0 {
        return Neighbours {
            n,
            k,
            index,
            similarity,
        };
    }
    let unit = unit_rows(values, dim);
    index
        .par_chunks_mut(ROW_BLOCK * k)
        .zip(similarity.par_chunks_mut(ROW_BLOCK * k))
        .enumerate()
        .for_each_init(Vec::new, |tile, (b, (index, similarity))| {
            let row0 = b * ROW_BLOCK;
            let rows = index.len() / k;
            let mut best = top_lists(index, similarity, k);
            let own: Vec<usize> = (row0..row0 + rows).collect();
            let block = &unit[row0 * dim..(row0 + rows) * dim];
            offer_all(block, &own, &unit, n, dim, tile, &mut best);
        });
    Neighbours {
        n,
        k,
        index,
        similarity,
    }
}

/// Offers every one of the `n` rows of `unit` to the top-k lists of the block's rows.
fn offer_all(
    block: &[f32],
    own: &[usize],
    unit: &[f32],
    n: usize,
    dim: usize,
    tile: &mut Vec<f32>,
    best: &mut [TopK],
) {
    let rows = own.len();
    for col0 in (0..n).step_by(COL_TILE) {
        let cols = COL_TILE.min(n - col0);
        tile.resize(rows * cols, 0.0);
        scaled_dots(block, rows, &unit[col0 * dim..], cols, dim, 1.0, tile);
        select_tile(tile, own, col0, cols, best);
    }
}

/// [`cosine_knn`] for the rows `queries` alone: row `q` of the result holds the neighbours of
/// row `queries[q]` among all `n` rows. Costs `queries.len() × n` products, not `n²`.
pub fn cosine_knn_of(
    values: &[f32],
    n: usize,
    dim: usize,
    queries: &[usize],
    k: usize,
) -> Neighbours {
    assert_eq!(
        values.len(),
        n * dim,
        "cosine_knn_of: values are not {n} rows of {dim}"
    );
    let k = k.min(n.saturating_sub(1));
    let q = queries.len();
    let (mut index, mut similarity) = (vec![0u32; q * k], vec![0f32; q * k]);
    if k > 0 && dim > 0 {
        let unit = unit_rows(values, dim);
        index
            .par_chunks_mut(ROW_BLOCK * k)
            .zip(similarity.par_chunks_mut(ROW_BLOCK * k))
            .zip(queries.par_chunks(ROW_BLOCK))
            .for_each_init(Vec::new, |tile, ((index, similarity), own)| {
                let mut best = top_lists(index, similarity, k);
                let block: Vec<f32> = own
                    .iter()
                    .flat_map(|&i| unit[i * dim..(i + 1) * dim].iter().copied())
                    .collect();
                offer_all(&block, own, &unit, n, dim, tile, &mut best);
            });
    }
    Neighbours {
        n: q,
        k,
        index,
        similarity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.random::<f32>() - 0.5).collect()
    }

    /// Every other row by descending f64 cosine similarity, ties to the lower index.
    fn brute_force(values: &[f32], n: usize, dim: usize) -> Vec<Vec<(u32, f64)>> {
        let row = |i: usize| &values[i * dim..(i + 1) * dim];
        let norm = |i: usize| {
            row(i)
                .iter()
                .map(|&v| v as f64 * v as f64)
                .sum::<f64>()
                .sqrt()
        };
        (0..n)
            .map(|i| {
                let mut all: Vec<(u32, f64)> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| {
                        let dot: f64 = row(i)
                            .iter()
                            .zip(row(j))
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum();
                        (j as u32, dot / (norm(i) * norm(j)))
                    })
                    .collect();
                all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                all
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_and_excludes_self() {
        // More rows than a row block and columns than a tile, so both boundaries are crossed.
        let (n, dim, k) = (2500, 9, 7);
        let values = random(n, dim, 1);
        let nb = cosine_knn(&values, n, dim, k);
        assert_eq!((nb.n, nb.k), (n, k));
        let reference = brute_force(&values, n, dim);
        for (i, truth) in reference.iter().enumerate() {
            let (index, sims) = nb.of(i);
            assert!(!index.contains(&(i as u32)), "row {i} lists itself");
            assert!(sims.windows(2).all(|w| w[0] >= w[1]), "row {i}: {sims:?}");
            for (j, (&got, &s)) in index.iter().zip(sims).enumerate() {
                assert!((s as f64 - truth[j].1).abs() < 1e-5, "row {i} rank {j}");
                // Ranks may swap only between similarities equal to f32 rounding.
                let gap = (truth[j].1 - truth[j + 1].1).min(if j > 0 {
                    truth[j - 1].1 - truth[j].1
                } else {
                    1.0
                });
                if gap > 1e-5 {
                    assert_eq!(got, truth[j].0, "row {i} rank {j}");
                }
            }
        }
    }

    #[test]
    fn the_neighbours_of_some_queries_are_their_rows_of_the_whole() {
        let (n, dim, k) = (700, 5, 6);
        let values = random(n, dim, 4);
        let all = cosine_knn(&values, n, dim, k);
        let queries = [699, 0, 350, 350, 17];
        let some = cosine_knn_of(&values, n, dim, &queries, k);
        assert_eq!((some.n, some.k), (queries.len(), k));
        for (q, &row) in queries.iter().enumerate() {
            assert_eq!(some.of(q), all.of(row), "query {q} (row {row})");
        }
    }

    #[test]
    fn planted_near_duplicates_find_each_other_first() {
        let (n, dim) = (600, 16);
        let mut values = random(n, dim, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Row 2m + 1 becomes a slightly perturbed, rescaled copy of row 2m.
        for m in 0..n / 2 {
            for d in 0..dim {
                let v = values[2 * m * dim + d];
                values[(2 * m + 1) * dim + d] = 3.0 * (v + 0.001 * (rng.random::<f32>() - 0.5));
            }
        }
        let nb = cosine_knn(&values, n, dim, 5);
        for i in 0..n {
            assert_eq!(nb.of(i).0[0] as usize, i ^ 1, "row {i}");
            assert!(nb.of(i).1[0] > 0.999);
        }
    }

    #[test]
    fn zero_rows_ties_and_small_n() {
        // Rows 0 and 3 are zero; rows 1 and 2 are the same direction.
        let values = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0, 1.0, -1.0];
        let nb = cosine_knn(&values, 5, 2, 10);
        assert_eq!(nb.k, 4);
        assert!(nb.similarity.iter().all(|s| s.is_finite()));
        // Row 0 is equally (0) similar to 1, 2, 3 and 4: ties go to the lower index.
        assert_eq!(nb.of(0).0, [1, 2, 3, 4]);
        assert_eq!(nb.of(1).0[0], 2);
        assert_eq!(cosine_knn(&[1.0, 2.0], 1, 2, 3).k, 0);
    }

    #[test]
    fn same_result_for_any_thread_count() {
        let (n, dim) = (700, 12);
        let values = random(n, dim, 4);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| cosine_knn(&values, n, dim, 10))
        };
        assert_eq!(run(1), run(3));
    }

    /// `cargo test --release --lib eval::neighbours -- --ignored --nocapture` times the size the
    /// explorer meets: CIFAR-10's 60,000 embeddings of 128 values.
    #[test]
    #[ignore]
    fn timing_60k_by_128() {
        let (n, dim) = (60_000, 128);
        let values = random(n, dim, 5);
        let t = std::time::Instant::now();
        let nb = cosine_knn(&values, n, dim, 15);
        eprintln!(
            "cosine_knn {n} x {dim}, k 15, {} threads: {:.2} s",
            rayon::current_num_threads(),
            t.elapsed().as_secs_f64()
        );
        assert_eq!(nb.index.len(), n * 15);
    }
}
