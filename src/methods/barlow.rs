//! Barlow Twins (Zbontar, Jing, Misra, LeCun, Deny 2021): the cross-correlation of the two
//! views' standardised projections is pushed toward the identity, so the views agree dimension by
//! dimension and the dimensions carry no redundancy. No negatives, no predictor, no momentum.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::two_views::{
    ProjectionLoss, ProjectorConfig, TwoViewMethod, ViewAugment, retrieval_hits,
    validate_views_and_projector, validate_weight,
};
use super::{ImageMethod, MethodKind, Settings};
use crate::losses::barlow_twins_loss;
use crate::util::config::ConfigError;

/// The keys of `barlow`: the off-diagonal weight, `[task.views]` and `[task.projector]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BarlowSettings {
    /// Weight of the off-diagonal (redundancy) term; the paper's lambda.
    pub off_diagonal: f64,
    pub views: ViewAugment,
    pub projector: ProjectorConfig,
}

impl Default for BarlowSettings {
    fn default() -> Self {
        Self {
            off_diagonal: 0.0051,
            views: ViewAugment::default(),
            projector: ProjectorConfig::default(),
        }
    }
}

struct Barlow {
    off_diagonal: f64,
}

impl ProjectionLoss for Barlow {
    fn loss(&self, z1: Tensor<2>, z2: Tensor<2>) -> (Tensor<1>, usize) {
        let hits = retrieval_hits(&z1, &z2);
        (barlow_twins_loss(z1, z2, self.off_diagonal), hits)
    }
}

impl Settings for BarlowSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_weight("task.off_diagonal", self.off_diagonal)?;
        validate_views_and_projector(&self.views, &self.projector)
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        Some(Box::new(TwoViewMethod::projections(
            MethodKind::Barlow,
            &self.views,
            &self.projector,
            Barlow {
                off_diagonal: self.off_diagonal,
            },
        )))
    }
}
