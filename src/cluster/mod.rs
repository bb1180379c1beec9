//! Clustering of features: k-means, PCA before it, and agreement with true labels.

pub mod config;
pub mod kmeans;
pub mod metrics;
pub mod pseudo;

pub use crate::eval::pca;

pub use kmeans::{KMeans, KMeansConfig, Points};
pub use metrics::ClusterQuality;

use std::path::Path;
use std::time::Instant;

use crate::Error;

/// What `pretext kmeans` prints: one JSON object.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KMeansReport {
    pub k: usize,
    pub rows: usize,
    pub dim: usize,
    pub inertia: f64,
    pub iterations: usize,
    pub converged: bool,
    pub restarts: usize,
    pub restart_inertias: Vec<f64>,
    pub threads: usize,
    pub init_seconds: f64,
    pub seconds: f64,
    /// Agreement with true labels, when they were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<ClusterQuality>,
}

/// Clusters the rows of a float32 `.npy` matrix and writes the labels (int64) to `out`;
/// with `truth`, also scores them against those labels.
pub fn kmeans_npy(
    features: &Path,
    cfg: &KMeansConfig,
    out: &Path,
    truth: Option<&Path>,
) -> Result<KMeansReport, Error> {
    let m = crate::npy::read_matrix(features)?;
    let truth = truth.map(crate::npy::read_labels).transpose()?;
    if let Some(t) = &truth
        && t.len() != m.rows
    {
        return Err(Error::msg(format!(
            "{} rows of features but {} labels",
            m.rows,
            t.len()
        )));
    }
    let points = Points::new(&m.values, m.rows, m.cols)
        .map_err(|e| Error::msg(format!("{}: {e}", features.display())))?;
    let t0 = Instant::now();
    // `fit` checks the config against the number of rows before any work.
    let km = kmeans::fit(points, cfg).map_err(|e| Error::msg(format!("kmeans: {e}")))?;
    let seconds = t0.elapsed().as_secs_f64();
    let labels: Vec<i64> = km.labels.iter().map(|&l| l as i64).collect();
    crate::npy::write(out, &labels, &[labels.len() as u64])?;
    Ok(KMeansReport {
        k: km.k,
        rows: m.rows,
        dim: m.cols,
        inertia: km.inertia,
        iterations: km.iterations,
        converged: km.converged,
        restarts: cfg.restarts,
        restart_inertias: km.restart_inertias.clone(),
        threads: rayon::current_num_threads(),
        init_seconds: km.init_seconds,
        seconds,
        quality: truth.map(|t| metrics::quality(&km.labels, &t)),
    })
}
