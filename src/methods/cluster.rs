//! Cluster transfer as a method (Noroozi et al. 2018): the student learns to predict the
//! k-means cluster of a teacher encoder's features. The pseudo-labels are computed before
//! training (`crate::cluster::pseudo`); the student is then a classifier on them.

use serde::{Deserialize, Serialize};

use super::classify::Classify;
use super::{ImageMethod, Settings};
use crate::cluster::config::ClusterConfig;
use crate::data::examples::Supervised;
use crate::util::config::ConfigError;

/// The keys of `cluster`: `[task.cluster]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    pub cluster: ClusterConfig,
}

impl Settings for ClusterSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.cluster.validate()
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        Some(Box::new(Classify(Supervised {
            classes: self.cluster.k,
        })))
    }
}
