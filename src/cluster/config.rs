//! The settings of cluster transfer (`[task.cluster]`): the teacher, its features, k-means.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::KMeansConfig;
use crate::models::FeatureLayer;
use crate::util::config::{ConfigError, invalid};

/// Cluster transfer: a teacher's features on the training images, clustered into pseudo-labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The teacher's run directory (its `encoder.safetensors` and `encoder.json`).
    pub teacher: PathBuf,
    /// Teacher stage whose pooled output is the feature (1 to 4; 4 is the last).
    pub teacher_stage: usize,
    /// The stage's map is average-pooled to `teacher_grid` x `teacher_grid` (1 to 8; 1: global
    /// pooling) and flattened.
    pub teacher_grid: usize,
    /// Clusters, which become the student's classes.
    pub k: usize,
    /// Principal components kept before clustering (0: no PCA).
    pub pca: usize,
    /// Scale the principal components to unit variance.
    pub whiten: bool,
    /// Scale each feature vector to unit length before clustering (after PCA).
    pub l2_normalize: bool,
    pub max_iter: usize,
    pub restarts: usize,
    pub tol: f64,
    pub seed: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            teacher: PathBuf::new(),
            teacher_stage: 4,
            teacher_grid: 1,
            k: 100,
            pca: 0,
            whiten: false,
            l2_normalize: true,
            max_iter: 100,
            restarts: 1,
            tol: 1e-4,
            seed: 0,
        }
    }
}

impl ClusterConfig {
    pub fn kmeans(&self) -> KMeansConfig {
        KMeansConfig {
            k: self.k,
            max_iter: self.max_iter,
            tol: self.tol,
            restarts: self.restarts,
            seed: self.seed,
        }
    }

    /// Where the clustered features are read from the teacher.
    pub fn teacher_layer(&self) -> FeatureLayer {
        FeatureLayer {
            stage: self.teacher_stage,
            grid: self.teacher_grid,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.teacher.as_os_str().is_empty() {
            return Err(invalid(
                "task.cluster.teacher",
                "must name the teacher's run directory",
            ));
        }
        FeatureLayer::new(self.teacher_stage, self.teacher_grid)
            .map_err(|e| invalid("task.cluster.teacher_stage / teacher_grid", e))?;
        if self.k < 2 {
            return Err(invalid("task.cluster.k", "must be at least 2"));
        }
        if self.whiten && self.pca == 0 {
            return Err(invalid("task.cluster.whiten", "needs task.cluster.pca > 0"));
        }
        self.kmeans()
            .validate(usize::MAX)
            .map_err(|e| invalid("task.cluster", e))
    }
}
