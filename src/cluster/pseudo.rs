//! Pseudo-labels for cluster transfer (Noroozi et al. 2018): a teacher encoder's features of the
//! training images, optionally PCA-reduced and L2-normalised, clustered with k-means. Each image's
//! cluster becomes its label for training a student.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::config::ClusterConfig;
use super::metrics::{self, ClusterQuality};
use super::pca::{Pca, l2_normalise};
use super::{KMeans, Points, kmeans};
use crate::Error;
use crate::data::ImageSet;
use crate::data::loader::{Normalizer, eval_batch};
use crate::encoder::TrainedEncoder;
use crate::eval::features::extract_layer;
use crate::models::FeatureLayer;

use crate::util::run_dir::RunDir;

/// What the clustering did, saved in the student run's `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClusteringSummary {
    pub teacher: String,
    pub teacher_arch: String,
    pub teacher_stage: usize,
    #[serde(default = "global_pooling")]
    pub teacher_grid: usize,
    pub feature_dim: usize,
    /// Dimensions clustered (after PCA, if any).
    pub clustered_dim: usize,
    pub k: usize,
    pub inertia: f64,
    pub iterations: usize,
    pub converged: bool,
    pub smallest_cluster: usize,
    pub largest_cluster: usize,
    pub feature_seconds: f64,
    pub kmeans_seconds: f64,
    /// Agreement of the training images' clusters with their true labels, where they exist.
    pub train_quality: Option<ClusterQuality>,
    /// The same for the test images, each assigned to its nearest centre.
    pub test_quality: Option<ClusterQuality>,
}

/// Summaries written before `teacher_grid` existed pooled globally.
fn global_pooling() -> usize {
    1
}

/// The teacher's features of `set`, transformed as the clustering needs them.
struct FeatureMap {
    teacher: TrainedEncoder,
    layer: FeatureLayer,
    pca: Option<Pca>,
    l2: bool,
}

impl FeatureMap {
    fn features(&self, set: &ImageSet) -> (Vec<f32>, usize) {
        let normalizer = Normalizer {
            mean: self.teacher.spec.mean.clone(),
            std: self.teacher.spec.std.clone(),
        };
        let f = extract_layer(
            &self.teacher.encoder,
            set,
            &normalizer,
            eval_batch(set.shape()),
            self.layer,
        );
        (f.values, f.dim)
    }

    fn transform(&self, mut values: Vec<f32>, dim: usize) -> (Vec<f32>, usize) {
        let mut dim = dim;
        if let Some(pca) = &self.pca {
            values = pca.transform(&values);
            dim = pca.components;
        }
        if self.l2 {
            l2_normalise(&mut values, dim);
        }
        (values, dim)
    }
}

/// Pseudo-labels of `train` (one cluster per image) and of `test` (nearest centre), with a summary.
pub fn pseudo_labels(
    cfg: &ClusterConfig,
    train: &ImageSet,
    test: Option<&ImageSet>,
    quiet: bool,
) -> Result<(Vec<u32>, Option<Vec<u32>>, ClusteringSummary), Error> {
    let t0 = Instant::now();
    let (map, values, feature_dim) = teacher_features(cfg, train, quiet)?;
    let dim = map.pca.as_ref().map_or(feature_dim, |p| p.components);
    let feature_seconds = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let points = Points::new(&values, train.len, dim)
        .map_err(|e| Error::msg(format!("teacher features: {e}")))?;
    let km: KMeans =
        kmeans::fit(points, &cfg.kmeans()).map_err(|e| Error::msg(format!("task.cluster: {e}")))?;
    let kmeans_seconds = t1.elapsed().as_secs_f64();

    let test_labels = test.map(|set| {
        let (raw, d) = map.features(set);
        let (values, dim) = map.transform(raw, d);
        let points = Points::new(&values, set.len, dim).expect("finite teacher features");
        kmeans::nearest(points, &km.centroids)
    });
    let mut sizes = vec![0usize; km.k];
    km.labels.iter().for_each(|&l| sizes[l as usize] += 1);
    let quality = |clusters: &[u32], set: &ImageSet| {
        set.labels
            .as_ref()
            .map(|truth| metrics::quality(clusters, truth))
    };
    let summary = ClusteringSummary {
        teacher: cfg.teacher.display().to_string(),
        teacher_arch: map.teacher.spec.arch.to_string(),
        teacher_stage: cfg.teacher_stage,
        teacher_grid: cfg.teacher_grid,
        feature_dim,
        clustered_dim: dim,
        k: km.k,
        inertia: km.inertia,
        iterations: km.iterations,
        converged: km.converged,
        smallest_cluster: sizes.iter().copied().min().unwrap_or(0),
        largest_cluster: sizes.iter().copied().max().unwrap_or(0),
        feature_seconds,
        kmeans_seconds,
        train_quality: quality(&km.labels, train),
        test_quality: test
            .zip(test_labels.as_ref())
            .and_then(|(set, l)| quality(l, set)),
    };
    if !quiet {
        eprintln!("{}", kmeans_line(&summary));
    }
    Ok((km.labels, test_labels, summary))
}

/// The teacher's feature map (with its PCA fitted on `train`), `train`'s features through it,
/// and the teacher's own feature width.
fn teacher_features(
    cfg: &ClusterConfig,
    train: &ImageSet,
    quiet: bool,
) -> Result<(FeatureMap, Vec<f32>, usize), Error> {
    let device = crate::train::infer_device();
    let teacher = TrainedEncoder::load(&cfg.teacher, &device)?;
    if teacher.spec.in_channels != train.channels {
        return Err(Error::msg(format!(
            "{}: the teacher takes {}-channel images but the data has {} channels",
            cfg.teacher.display(),
            teacher.spec.in_channels,
            train.channels
        )));
    }
    let t0 = Instant::now();
    let mut map = FeatureMap {
        teacher,
        layer: cfg.teacher_layer(),
        pca: None,
        l2: cfg.l2_normalize,
    };
    let (raw, feature_dim) = map.features(train);
    if !quiet {
        eprintln!(
            "teacher features: {} x {feature_dim} in {:.0} s",
            train.len,
            t0.elapsed().as_secs_f64()
        );
    }
    if cfg.pca > 0 {
        if cfg.pca > feature_dim {
            return Err(Error::msg(format!(
                "task.cluster.pca = {} is more than the teacher's {feature_dim} feature dimensions",
                cfg.pca
            )));
        }
        map.pca =
            Some(Pca::fit(&raw, train.len, feature_dim, cfg.pca, cfg.whiten).map_err(Error::msg)?);
    }
    let (values, _) = map.transform(raw, feature_dim);
    Ok((map, values, feature_dim))
}

/// The progress line of a finished clustering.
fn kmeans_line(s: &ClusteringSummary) -> String {
    let quality = s
        .train_quality
        .as_ref()
        .map(|q| {
            format!(
                "; NMI {:.3}, ARI {:.3}, purity {:.3} against the true labels",
                q.nmi, q.ari, q.purity
            )
        })
        .unwrap_or_default();
    format!(
        "k-means: k = {}, inertia {:.4e}, {} iterations in {:.1} s; cluster sizes {}..{}{quality}",
        s.k, s.inertia, s.iterations, s.kmeans_seconds, s.smallest_cluster, s.largest_cluster
    )
}

/// Pseudo-labels saved by an earlier attempt of the same run, if their count fits.
pub fn load_saved(run_dir: &Path, expected: usize) -> Result<Option<Vec<u32>>, Error> {
    let path = RunDir(run_dir).pseudo_labels();
    if !path.exists() {
        return Ok(None);
    }
    let labels = crate::npy::read_labels(&path)?;
    if labels.len() != expected {
        return Err(Error::msg(format!(
            "{}: {} pseudo-labels for {expected} training images; delete it to recompute",
            path.display(),
            labels.len()
        )));
    }
    Ok(Some(labels))
}
