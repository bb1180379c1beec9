//! The library calls behind `explore`, `neighbors` and `select`. Each embeds the data with a
//! run's encoder the way `embed` does (decoded in chunks, streamed where the data streams),
//! then works on the features: a 2-D map and a page, a grid of nearest neighbours, a list of
//! images worth labelling.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{EmbeddedChunk, embed_with, write_toml};
use crate::Error;
use crate::cluster::kmeans::{self, KMeansConfig, Points};
use crate::config::DataConfig;
use crate::curate::atlas::AtlasWriter;
use crate::curate::grid::{self, GridRow};
use crate::curate::page::{self, ClusterSummary, Layout, LayoutKind, PageData};
use crate::curate::select::{self, Selected, Split, Strategy};
use crate::data::ImageSet;
use crate::data::embed_files::{EmbedDir, SplitChoice, TEST_SPLIT, TRAIN_SPLIT};
use crate::data::source::{BadImages, materialise};
use crate::encoder::TrainedEncoder;
use crate::eval::neighbours::{self, Neighbours};
use crate::eval::pca::{Pca, l2_normalise};
use crate::eval::umap::{self, UmapConfig};
use crate::models::FeatureLayer;
use crate::train::train_device;
use crate::util::config::{ConfigError, invalid};
use crate::util::memory::ResidentMemory;

/// What every curation command reads: a run's encoder, the data, which of its splits, and the
/// layer whose features it works on.
pub struct CurateInputs<'a> {
    pub run: &'a Path,
    pub data: &'a DataConfig,
    pub split: SplitChoice,
    pub layer: FeatureLayer,
}

/// The data embedded and read back: L2-normalised features and, per row, where it came from.
pub struct Embedding {
    pub n: usize,
    pub dim: usize,
    /// Row-major `n × dim`, each row of unit length (cosine geometry).
    pub features: Vec<f32>,
    /// Each row's split and its row in that split.
    pub rows: Vec<(&'static str, usize)>,
    /// Where each image was read from (empty when unknown).
    pub paths: Vec<String>,
    pub labels: Option<Vec<u32>>,
    pub class_names: Vec<String>,
}

/// Embeds `inputs` into `dir` (kept: the features are useful to other tools), handing every
/// decoded chunk to `visit`, and reads the result back.
fn embed_into(
    inputs: &CurateInputs,
    dir: &Path,
    visit: &mut dyn FnMut(EmbeddedChunk<'_>) -> Result<(), Error>,
) -> Result<Embedding, Error> {
    let trained = TrainedEncoder::load(inputs.run, &train_device())?;
    let mut class_names = Vec::new();
    embed_with(
        &trained,
        inputs.data,
        inputs.layer,
        dir,
        inputs.split,
        &mut |chunk| {
            if class_names.is_empty() {
                class_names = chunk.images.class_names.clone();
            }
            visit(chunk)
        },
    )?;
    read_embedding(dir, inputs.split, class_names)
}

/// The features, labels and `files.csv` rows of the `split` chosen, as `embed` wrote them.
fn read_embedding(
    dir: &Path,
    split: SplitChoice,
    class_names: Vec<String>,
) -> Result<Embedding, Error> {
    let out = EmbedDir(dir);
    let (mut features, mut rows, mut labels) = (Vec::new(), Vec::new(), Some(Vec::new()));
    let mut dim = 0;
    for name in [TRAIN_SPLIT, TEST_SPLIT] {
        let path = out.features(name);
        if !split.includes(name) || !path.exists() {
            continue;
        }
        let m = crate::npy::read_matrix(&path)?;
        dim = m.cols;
        rows.extend((0..m.rows).map(|r| (name, r)));
        features.extend(m.values);
        let label_path = out.labels(name);
        labels = match (labels, label_path.exists()) {
            (Some(mut all), true) => {
                all.extend(crate::npy::read_labels(&label_path)?);
                Some(all)
            }
            _ => None,
        };
    }
    let paths = crate::data::embed_files::read_paths(&out.files(), &rows)?;
    l2_normalise(&mut features, dim.max(1));
    Ok(Embedding {
        n: rows.len(),
        dim,
        features,
        rows,
        paths,
        labels: labels.filter(|l| !l.is_empty() && !class_names.is_empty()),
        class_names,
    })
}

/// `pretext explore`'s settings, saved beside the page as `explore.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExploreConfig {
    /// k-means clusters the page colours by and lists.
    pub clusters: usize,
    /// Thumbnail side in pixels.
    pub thumb: u32,
    /// Nearest neighbours shown when an image is clicked.
    pub neighbours: usize,
    /// Images shown for each cluster.
    pub cluster_sample: usize,
    pub umap: UmapConfig,
    pub seed: u64,
}

impl Default for ExploreConfig {
    fn default() -> Self {
        ExploreConfig {
            clusters: 20,
            thumb: 32,
            neighbours: 16,
            cluster_sample: 12,
            umap: UmapConfig::default(),
            seed: 0,
        }
    }
}

/// Most neighbours a page lists per image (the page holds n × k of them).
const MAX_PAGE_NEIGHBOURS: usize = 64;

impl ExploreConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.clusters == 0 {
            return Err(invalid("explore.clusters", "must be at least 1"));
        }
        if !crate::curate::atlas::THUMB_RANGE.contains(&self.thumb) {
            return Err(invalid("explore.thumb", "must be 8 to 256 pixels"));
        }
        if !(1..=MAX_PAGE_NEIGHBOURS).contains(&self.neighbours) {
            return Err(invalid(
                "explore.neighbours",
                format!("must be 1 to {MAX_PAGE_NEIGHBOURS}"),
            ));
        }
        self.umap
            .validate(usize::MAX)
            .map_err(|e| invalid("explore.umap", e))
    }
}

/// What `explore` made, and what it cost.
#[derive(Debug, Serialize)]
pub struct ExploreSummary {
    pub page: PathBuf,
    pub points: usize,
    pub seconds_embed: f64,
    pub seconds_umap: f64,
    pub seconds_total: f64,
    pub peak_resident_mib: Option<f64>,
}

/// The folder `explore` writes the embedding into, inside its output.
pub const EXPLORE_EMBEDDING: &str = "embedding";
const EXPLORE_CONFIG: &str = "explore.toml";
const UMAP_FILE: &str = "umap.npy";
const PCA_FILE: &str = "pca.npy";
const CLUSTERS_FILE: &str = "clusters.npy";

/// `pretext explore`: embeds the data, maps it to 2-D (UMAP and PCA), clusters it, finds every
/// image's nearest neighbours, and writes `out/index.html` with its data and thumbnails.
pub fn explore(
    inputs: &CurateInputs,
    cfg: &ExploreConfig,
    out: &Path,
    title: &str,
) -> Result<ExploreSummary, Error> {
    cfg.validate()?;
    let started = Instant::now();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_toml(&out.join(EXPLORE_CONFIG), cfg)?;
    let mut atlas = AtlasWriter::new(out, cfg.thumb).map_err(Error::msg)?;
    let embedding = embed_into(inputs, &out.join(EXPLORE_EMBEDDING), &mut |chunk| {
        atlas.add(chunk.images).map_err(|e| Error::io(out, e))
    })?;
    let atlas = atlas.finish().map_err(|e| Error::io(out, e))?;
    let seconds_embed = started.elapsed().as_secs_f64();
    let e = &embedding;
    let umap_started = Instant::now();
    let k = cfg
        .neighbours
        .max(cfg.umap.neighbours)
        .min(e.n.saturating_sub(1));
    let graph = neighbours::cosine_knn(&e.features, e.n, e.dim, k);
    let umap_xy = umap::umap_with(&graph, &e.features, e.dim, &cfg.umap).map_err(Error::msg)?;
    let seconds_umap = umap_started.elapsed().as_secs_f64();
    let pca_xy = pca_2d(e)?;
    let clusters = cluster(e, cfg.clusters.min(e.n), cfg.seed)?;
    write_xy(&out.join(UMAP_FILE), &umap_xy)?;
    write_xy(&out.join(PCA_FILE), &pca_xy)?;
    let as_i64: Vec<i64> = clusters.iter().map(|&c| i64::from(c)).collect();
    crate::npy::write(&out.join(CLUSTERS_FILE), &as_i64, &[e.n as u64])?;
    let shown = cfg.neighbours.min(k);
    let data = PageData {
        title: title.to_string(),
        n: e.n,
        layouts: vec![
            Layout {
                kind: LayoutKind::Umap,
                xy: umap_xy,
            },
            Layout {
                kind: LayoutKind::Pca,
                xy: pca_xy,
            },
        ],
        labels: e.labels.clone(),
        class_names: e.class_names.clone(),
        cluster_summaries: summarise_clusters(e, &clusters, cfg),
        clusters,
        paths: e.paths.clone(),
        neighbours_k: shown,
        neighbour_index: first_columns(&graph.index, k, shown),
        neighbour_similarity: first_columns(&graph.similarity, k, shown),
        atlas,
    };
    let written = page::write(out, &data)?;
    Ok(ExploreSummary {
        page: written[0].clone(),
        points: e.n,
        seconds_embed,
        seconds_umap,
        seconds_total: started.elapsed().as_secs_f64(),
        peak_resident_mib: ResidentMemory::read().map(|m| m.peak_mib),
    })
}

/// The first `keep` of every row's `k` values.
fn first_columns<T: Copy>(values: &[T], k: usize, keep: usize) -> Vec<T> {
    values
        .chunks(k.max(1))
        .flat_map(|row| row[..keep.min(row.len())].iter().copied())
        .collect()
}

fn write_xy(path: &Path, xy: &[f32]) -> Result<(), Error> {
    crate::npy::write(path, xy, &[(xy.len() / 2) as u64, 2])
}

/// The features projected on their two principal axes.
fn pca_2d(e: &Embedding) -> Result<Vec<f32>, Error> {
    let pca = Pca::fit(&e.features, e.n, e.dim, 2.min(e.dim), false)
        .map_err(|err| Error::msg(format!("PCA of the embedding: {err}")))?;
    let mut xy = pca.transform(&e.features);
    if pca.components == 1 {
        xy = xy.iter().flat_map(|&x| [x, 0.0]).collect();
    }
    Ok(xy)
}

/// k-means cluster of every row.
fn cluster(e: &Embedding, k: usize, seed: u64) -> Result<Vec<u32>, Error> {
    let points = Points::new(&e.features, e.n, e.dim).map_err(Error::msg)?;
    let cfg = KMeansConfig {
        k,
        seed,
        ..KMeansConfig::default()
    };
    Ok(kmeans::fit(points, &cfg).map_err(Error::msg)?.labels)
}

/// Each cluster's size, majority label and a seeded sample of its members.
fn summarise_clusters(e: &Embedding, clusters: &[u32], cfg: &ExploreConfig) -> Vec<ClusterSummary> {
    let k = clusters.iter().max().map_or(0, |&c| c as usize + 1);
    let mut members = vec![Vec::new(); k];
    for (i, &c) in clusters.iter().enumerate() {
        members[c as usize].push(i as u32);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    members
        .into_iter()
        .map(|mut m| {
            let majority = e.labels.as_ref().and_then(|l| majority(&m, l));
            let size = m.len();
            m.shuffle(&mut rng);
            m.truncate(cfg.cluster_sample);
            ClusterSummary {
                size,
                majority,
                sample: m,
            }
        })
        .collect()
}

/// The most common label among `members`, and its share.
fn majority(members: &[u32], labels: &[u32]) -> Option<(u32, f32)> {
    let mut counts = std::collections::BTreeMap::new();
    for &i in members {
        *counts.entry(labels[i as usize]).or_insert(0usize) += 1;
    }
    let (&label, &count) = counts
        .iter()
        .max_by_key(|&(l, c)| (*c, std::cmp::Reverse(*l)))?;
    Some((label, count as f32 / members.len() as f32))
}

/// `pretext neighbors`' settings.
#[derive(Clone, Debug)]
pub struct NeighborsConfig {
    /// Query images, drawn at random by `seed`.
    pub queries: usize,
    pub k: usize,
    pub seed: u64,
}

/// Most queries and neighbours a grid shows.
const MAX_GRID: usize = 100;

/// `pretext neighbors`: a PNG grid of `cfg.queries` random images and their nearest
/// neighbours among the embedded images.
pub fn neighbors(
    inputs: &CurateInputs,
    cfg: &NeighborsConfig,
    out: &Path,
) -> Result<PathBuf, Error> {
    for (key, value) in [("--queries", cfg.queries), ("--k", cfg.k)] {
        if !(1..=MAX_GRID).contains(&value) {
            return Err(Error::msg(format!(
                "{key} must be 1 to {MAX_GRID}, got {value}"
            )));
        }
    }
    let scratch = ScratchDir::next_to(out)?;
    let e = embed_into(inputs, &scratch.0, &mut |_| Ok(()))?;
    let mut queries: Vec<usize> = (0..e.n).collect();
    queries.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed));
    queries.truncate(cfg.queries);
    let found = neighbours::cosine_knn_of(&e.features, e.n, e.dim, &queries, cfg.k);
    // The images shown, decoded again (only these), in the order the grid indexes them.
    let mut shown: Vec<usize> = queries.clone();
    for q in 0..queries.len() {
        shown.extend(found.of(q).0.iter().map(|&i| i as usize));
    }
    let images = decode_rows(inputs, &e, &shown)?;
    let mut next = queries.len();
    let rows: Vec<GridRow> = (0..queries.len())
        .map(|q| GridRow {
            query: q,
            neighbours: found
                .of(q)
                .1
                .iter()
                .map(|&s| {
                    next += 1;
                    (next - 1, s)
                })
                .collect(),
        })
        .collect();
    grid::draw(&images, &rows, out).map_err(|err| Error::io(out, err))?;
    Ok(out.to_path_buf())
}

/// The images behind embedding rows `rows`, decoded for evaluation, in that order.
fn decode_rows(inputs: &CurateInputs, e: &Embedding, rows: &[usize]) -> Result<ImageSet, Error> {
    let images = crate::collection::for_reading(inputs.data)?;
    let sources = super::embedded_splits(&images);
    let mut out: Option<ImageSet> = None;
    for &r in rows {
        let (split, index) = e.rows[r];
        let (_, source) = sources
            .iter()
            .find(|(name, _)| *name == split)
            .expect("an embedded row's split is among the data's");
        let one = materialise(*source, &[index], BadImages::Fail)?;
        match &mut out {
            Some(set) => set.append(one),
            None => out = Some(one),
        }
    }
    let mut set = out.ok_or_else(|| Error::msg("no images to draw"))?;
    set.labels = e
        .labels
        .as_ref()
        .map(|l| rows.iter().map(|&r| l[r]).collect());
    set.class_names = e.class_names.clone();
    Ok(set)
}

/// `pretext select`'s settings.
#[derive(Clone, Debug)]
pub struct SelectConfig {
    pub strategy: Strategy,
    /// Images chosen (coreset, diverse, outliers).
    pub count: usize,
    /// Cosine above which images are near-duplicates (dedup).
    pub threshold: f32,
    /// Neighbours an outlier's score averages over, and dedup looks among.
    pub k: usize,
    pub seed: u64,
}

impl SelectConfig {
    /// Checks what can be checked before the images are embedded (`count` against the number
    /// of images is checked after).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::msg(format!("select: {what}")));
        if self.count == 0 {
            return bad("--n (count) must be at least 1".into());
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return bad(format!(
                "--threshold must be in (0, 1], got {}",
                self.threshold
            ));
        }
        if self.k == 0 {
            return bad("--k must be at least 1".into());
        }
        Ok(())
    }
}

/// `pretext select`: the images the strategy chooses among one split's, as a CSV of paths with
/// the reason for each. Returns the CSV's path and the number of rows.
pub fn select(
    inputs: &CurateInputs,
    cfg: &SelectConfig,
    out: &Path,
) -> Result<(PathBuf, usize), Error> {
    let split = match inputs.split {
        SplitChoice::Train => Split::Train,
        SplitChoice::Test => Split::Test,
        SplitChoice::All => {
            return Err(Error::msg(
                "select chooses among one split's images: give --split train or --split test",
            ));
        }
    };
    cfg.validate()?;
    let scratch = ScratchDir::next_to(out)?;
    let e = embed_into(inputs, &scratch.0, &mut |_| Ok(()))?;
    let chosen = choose(&e, cfg)
        .map_err(|err| Error::msg(format!("select --strategy {}: {err}", cfg.strategy.name())))?;
    let labels = e.labels.as_deref().map(|l| (l, &e.class_names[..]));
    select::write_csv(out, &chosen, split, &e.paths, labels)?;
    Ok((out.to_path_buf(), chosen.len()))
}

/// The rows `cfg.strategy` picks from the embedding.
fn choose(e: &Embedding, cfg: &SelectConfig) -> Result<Vec<Selected>, String> {
    let (x, dim, seed) = (&e.features, e.dim, cfg.seed);
    match cfg.strategy {
        Strategy::Coreset => select::coreset(x, dim, cfg.count, seed),
        Strategy::Diverse => select::diverse(x, dim, cfg.count, seed),
        Strategy::Dedup => select::duplicates(&knn(e, cfg.k), cfg.threshold),
        Strategy::Outliers => select::outliers(&knn(e, cfg.k), cfg.count),
    }
}

fn knn(e: &Embedding, k: usize) -> Neighbours {
    neighbours::cosine_knn(&e.features, e.n, e.dim, k)
}

/// A folder for an embedding that only this command needs, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn next_to(out: &Path) -> Result<Self, Error> {
        let name = format!(
            ".{}.embedding-{}",
            out.file_name()
                .map_or_else(|| "out".into(), |n| n.to_string_lossy()),
            std::process::id()
        );
        let dir = out.parent().unwrap_or(Path::new(".")).join(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
