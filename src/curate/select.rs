//! Choosing images to label (`pretext select`) from an embedding, and the CSV list of the
//! choice that `pretext transfer --labels-file` reads back.
//!
//! Every strategy works on cosine geometry: the features are L2-normalised first, so an
//! encoder's feature scale (which varies by method and layer) does not decide what is far.
//! - `coreset`: k-centre greedy (Sener & Savarese 2018), the images that leave no region of the
//!   embedding far from a labelled one;
//! - `diverse`: k-means with one cluster per label, the image nearest each centre;
//! - `dedup`: groups of near-duplicates (one to keep, the rest to drop before labelling);
//! - `outliers`: the images least like their neighbours (mislabelled, broken or off-topic).

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::cluster::kmeans::{self, KMeansConfig, Points};
use crate::data::embed_files::{TEST_SPLIT, TRAIN_SPLIT};
use crate::eval::neighbours::Neighbours;

/// How images are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// k-centre greedy: cover the embedding.
    Coreset,
    /// One image per k-means cluster.
    Diverse,
    /// Groups of near-duplicates.
    Dedup,
    /// The images least like their nearest neighbours.
    Outliers,
}

impl Strategy {
    /// The name `--strategy` takes.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Coreset => "coreset",
            Strategy::Diverse => "diverse",
            Strategy::Dedup => "dedup",
            Strategy::Outliers => "outliers",
        }
    }
}

/// One chosen image: its row in the embedding, the strategy's score and why it was chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct Selected {
    pub index: usize,
    pub score: f32,
    pub reason: String,
}

/// The split of an embedding a row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => TRAIN_SPLIT,
            Split::Test => TEST_SPLIT,
        }
    }

    fn parse(s: &str) -> Option<Split> {
        [Split::Train, Split::Test]
            .into_iter()
            .find(|split| split.name() == s)
    }
}

// ---------------------------------------------------------------------------------------------
// The reasons' wording, in one place.

fn coreset_reason(distance: f32) -> String {
    format!("k-centre: {distance:.3} from the nearest chosen image")
}

fn coreset_start_reason(seed: u64, distance: f32) -> String {
    format!("k-centre start (seed {seed}): {distance:.3} from the nearest other chosen image")
}

fn diverse_reason(cluster: usize, size: usize) -> String {
    format!("nearest the centre of cluster {cluster} ({size} images)")
}

fn keep_reason(group: usize, size: usize) -> String {
    format!("keep: first of near-duplicate group {group} ({size} images)")
}

fn duplicate_reason(group: usize, keep: usize, cosine: f32, via: Option<usize>) -> String {
    match via {
        None => format!("near-duplicate of {keep} (cosine {cosine:.3}), group {group}"),
        Some(other) => {
            format!("near-duplicate of {keep} through {other} (cosine {cosine:.3}), group {group}")
        }
    }
}

fn outlier_reason(mean: f32, k: usize) -> String {
    format!("mean cosine {mean:.3} to its {k} nearest")
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the strategies.

/// `count` must be a number of images there is: at least 1 and at most `n`.
fn check_count(count: usize, n: usize) -> Result<(), String> {
    if count == 0 {
        return Err("count must be at least 1".into());
    }
    if count > n {
        return Err(format!("count = {count} is more than the {n} images"));
    }
    Ok(())
}

/// `x` as `n` unit rows of `dim` (a zero row stays zero: cosine 0 to everything).
fn normalised(x: &[f32], dim: usize) -> Result<Vec<f32>, String> {
    let n = if dim == 0 { 0 } else { x.len() / dim };
    crate::util::rows::check_finite_rows(x, n, dim, "selection")?;
    Ok(crate::eval::neighbours::unit_rows(x, dim))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---------------------------------------------------------------------------------------------
// Coreset: k-centre greedy.

/// `count` images by k-centre greedy (Sener & Savarese 2018) on cosine distance: a seeded first
/// image, then again and again the image farthest from everything chosen so far. The score is
/// that distance (for the first image, its distance to the nearest other chosen one).
/// O(n · count · dim), parallel over the images.
pub fn coreset(x: &[f32], dim: usize, count: usize, seed: u64) -> Result<Vec<Selected>, String> {
    let x = normalised(x, dim)?;
    let n = x.len() / dim;
    check_count(count, n)?;
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    let first = ChaCha8Rng::seed_from_u64(seed).random_range(0..n);
    // Distance of every image to its nearest chosen one; chosen images are -inf so that they
    // are never picked again, even when all that is left are exact copies (distance 0).
    let mut nearest = vec![f32::INFINITY; n];
    let mut chosen = vec![(first, 0.0f32)];
    loop {
        let (last, _) = *chosen.last().expect("one chosen");
        let centre = row(last);
        nearest.par_iter_mut().enumerate().for_each(|(i, d)| {
            *d = d.min(1.0 - dot(row(i), centre));
        });
        nearest[last] = f32::NEG_INFINITY;
        if chosen.len() == count {
            break;
        }
        chosen.push(farthest(&nearest));
    }
    let start = chosen[1..]
        .iter()
        .map(|&(i, _)| 1.0 - dot(row(i), row(first)))
        .fold(f32::INFINITY, f32::min);
    let start = if start.is_finite() { start } else { 0.0 };
    Ok(chosen
        .into_iter()
        .enumerate()
        .map(|(k, (index, distance))| match k {
            0 => Selected {
                index,
                score: start,
                reason: coreset_start_reason(seed, start),
            },
            _ => Selected {
                index,
                score: distance,
                reason: coreset_reason(distance),
            },
        })
        .collect())
}

/// The image with the largest distance (the lowest index among equals), and that distance.
fn farthest(nearest: &[f32]) -> (usize, f32) {
    nearest.par_iter().enumerate().map(|(i, &d)| (i, d)).reduce(
        || (usize::MAX, f32::NEG_INFINITY),
        |a, b| {
            if b.1 > a.1 || (b.1 == a.1 && b.0 < a.0) {
                b
            } else {
                a
            }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Diverse: one image per k-means cluster.

/// `count` images: k-means with k = `count` on the unit features, then the image nearest each
/// centre (score: its cosine to the centre), the largest clusters first. A cluster left empty
/// by k-means gives no image, so fewer than `count` may come back.
pub fn diverse(x: &[f32], dim: usize, count: usize, seed: u64) -> Result<Vec<Selected>, String> {
    let x = normalised(x, dim)?;
    let n = x.len() / dim;
    check_count(count, n)?;
    let cfg = KMeansConfig {
        k: count,
        seed,
        ..KMeansConfig::default()
    };
    let fitted = kmeans::fit(Points::new(&x, n, dim)?, &cfg)?;
    let centres = normalised(&fitted.centroids, dim)?;
    // Per cluster: its size and its best member (cosine to the centre, index).
    let mut best: Vec<(usize, f32, usize)> = vec![(0, f32::NEG_INFINITY, 0); count];
    for (i, &c) in fitted.labels.iter().enumerate() {
        let c = c as usize;
        let cosine = dot(&x[i * dim..(i + 1) * dim], &centres[c * dim..(c + 1) * dim]);
        let entry = &mut best[c];
        entry.0 += 1;
        if cosine > entry.1 {
            (entry.1, entry.2) = (cosine, i);
        }
    }
    let mut clusters: Vec<usize> = (0..count).filter(|&c| best[c].0 > 0).collect();
    clusters.sort_by_key(|&c| (std::cmp::Reverse(best[c].0), c));
    Ok(clusters
        .into_iter()
        .map(|c| {
            let (size, cosine, index) = best[c];
            Selected {
                index,
                score: cosine,
                reason: diverse_reason(c, size),
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Dedup: groups of near-duplicates.

/// Every group of images joined by neighbour pairs whose cosine is at least `threshold`
/// (union-find: a chain of near-duplicates is one group), in the order of their lowest index.
/// Each group lists all its members by index: the first is marked to keep (score: its highest
/// cosine in the group), the others are near-duplicates of it (score: the cosine to it when the
/// neighbour lists hold it, else the strongest link that joined the member to the group).
pub fn duplicates(nb: &Neighbours, threshold: f32) -> Result<Vec<Selected>, String> {
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(format!(
            "the duplicate threshold must be in (0, 1], got {threshold}"
        ));
    }
    let mut sets = UnionFind::new(nb.n);
    // Each image's strongest link inside its group: (cosine, the other image).
    let mut link = vec![(f32::NEG_INFINITY, usize::MAX); nb.n];
    for i in 0..nb.n {
        let (index, similarity) = nb.of(i);
        for (&j, &s) in index.iter().zip(similarity) {
            let j = j as usize;
            if s >= threshold && j != i {
                sets.union(i, j);
                for (a, b) in [(i, j), (j, i)] {
                    if s > link[a].0 {
                        link[a] = (s, b);
                    }
                }
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_root = std::collections::HashMap::new();
    for i in 0..nb.n {
        if link[i].1 == usize::MAX {
            continue;
        }
        let g = *group_of_root.entry(sets.find(i)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    Ok(groups
        .iter()
        .enumerate()
        .flat_map(|(g, members)| group_rows(nb, g, members, &link))
        .collect())
}

/// The rows of group `g` (members in increasing order): keep the first, the rest are its
/// near-duplicates.
fn group_rows(
    nb: &Neighbours,
    g: usize,
    members: &[usize],
    link: &[(f32, usize)],
) -> Vec<Selected> {
    let keep = members[0];
    let mut rows = vec![Selected {
        index: keep,
        score: link[keep].0,
        reason: keep_reason(g, members.len()),
    }];
    for &m in &members[1..] {
        let (cosine, via) = match similarity_between(nb, m, keep) {
            Some(s) => (s, None),
            None => (link[m].0, Some(link[m].1)),
        };
        rows.push(Selected {
            index: m,
            score: cosine,
            reason: duplicate_reason(g, keep, cosine, via),
        });
    }
    rows
}

/// The cosine of `a` and `b` where one is in the other's neighbour list.
fn similarity_between(nb: &Neighbours, a: usize, b: usize) -> Option<f32> {
    let find = |from: usize, to: usize| {
        let (index, similarity) = nb.of(from);
        index
            .iter()
            .position(|&j| j as usize == to)
            .map(|p| similarity[p])
    };
    find(a, b).or_else(|| find(b, a))
}

/// Disjoint sets over `0..n` with path halving.
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }
    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        // The lower root wins, so a group's root is stable whatever the pair order.
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent[hi] = lo;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outliers.

/// The `count` images with the lowest mean cosine to their nearest neighbours, least alike
/// first (the lowest index among equals); the score is that mean.
pub fn outliers(nb: &Neighbours, count: usize) -> Result<Vec<Selected>, String> {
    check_count(count, nb.n)?;
    if nb.k == 0 {
        return Err("outliers need at least one neighbour per image".into());
    }
    let mut means: Vec<(usize, f32)> = (0..nb.n)
        .map(|i| {
            let (_, similarity) = nb.of(i);
            (i, similarity.iter().sum::<f32>() / similarity.len() as f32)
        })
        .collect();
    means.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    Ok(means
        .into_iter()
        .take(count)
        .map(|(index, mean)| Selected {
            index,
            score: mean,
            reason: outlier_reason(mean, nb.k),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// The CSV list.

/// The list's columns, in the order they are written; the reader looks columns up by name and
/// needs `path`, `split` and `index` (a list made by hand may leave out the rest).
pub const COLUMNS: [&str; 6] = ["path", "split", "index", "label", "reason", "score"];
const PATH: usize = 0;
const SPLIT: usize = 1;
const INDEX: usize = 2;
/// The columns a list must have: which image each row names, and where it came from.
const REQUIRED_COLUMNS: [usize; 3] = [PATH, SPLIT, INDEX];

/// Write `rows` of split `split` to `path` as CSV ([`COLUMNS`]), atomically. `origins` names
/// where each row's image came from (empty: unknown, written as an empty path); `labels` gives
/// each row's label and the class names, written as the class name.
pub fn write_csv(
    path: &Path,
    rows: &[Selected],
    split: Split,
    origins: &[String],
    labels: Option<(&[u32], &[String])>,
) -> Result<(), Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| Error::msg(format!("{}: {e}", path.display()));
    w.write_record(COLUMNS).map_err(csv_error)?;
    for row in rows {
        let origin = origins.get(row.index).map(String::as_str).unwrap_or("");
        let label = match labels {
            Some((labels, names)) => labels
                .get(row.index)
                .and_then(|&l| names.get(l as usize))
                .map(String::as_str)
                .unwrap_or(""),
            None => "",
        };
        w.write_record([
            origin,
            split.name(),
            row.index.to_string().as_str(),
            label,
            row.reason.as_str(),
            row.score.to_string().as_str(),
        ])
        .map_err(csv_error)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
    crate::util::fs::write_atomic(path, &bytes).map_err(|e| Error::io(path, e))
}

/// One row of a list: the line it is on (1 is the header), its split, its row in that split
/// and the path it names (empty when the list does not know it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedImage {
    pub line: u64,
    pub split: Split,
    pub index: usize,
    pub path: String,
}

/// The rows of the list at `path`, in order. A missing file, a header without the `path`,
/// `split` and `index` columns, an unknown split or an index that is not a number is an error naming
/// the file and the line.
pub fn read_listed(path: &Path) -> Result<Vec<ListedImage>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let at =
        |line: u64, problem: String| Error::msg(format!("{}:{line}: {problem}", path.display()));
    let header = r.headers().map_err(|e| at(1, e.to_string()))?.clone();
    let column = |c: usize| header.iter().position(|h| h.trim() == COLUMNS[c]);
    let mut found = [0usize; 3];
    for (slot, &c) in found.iter_mut().zip(&REQUIRED_COLUMNS) {
        *slot = column(c).ok_or_else(|| {
            at(
                1,
                format!(
                    "the header has no `{}` column (expected {})",
                    COLUMNS[c],
                    COLUMNS.join(",")
                ),
            )
        })?;
    }
    let [path_at, split_at, index_at] = found;
    let mut rows = Vec::new();
    for record in r.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            at(line, e.to_string())
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let field = |i: usize| record.get(i).map(str::trim).unwrap_or("");
        let split = Split::parse(field(split_at)).ok_or_else(|| {
            at(
                line,
                format!(
                    "split `{}` is neither `{TRAIN_SPLIT}` nor `{TEST_SPLIT}`",
                    field(split_at)
                ),
            )
        })?;
        let index = field(index_at).parse::<usize>().map_err(|_| {
            at(
                line,
                format!("index `{}` is not a row number", field(index_at)),
            )
        })?;
        rows.push(ListedImage {
            line,
            split,
            index,
            path: field(path_at).to_string(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests;
