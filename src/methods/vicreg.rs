//! VICReg (Bardes, Ponce, LeCun 2022): the projections of two views are pulled together
//! (invariance) while each view's projections keep every dimension spread over the batch
//! (variance) and their dimensions decorrelated (covariance). No negatives, no predictor, no
//! momentum network.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::two_views::{
    ProjectionLoss, ProjectorConfig, TwoViewMethod, ViewAugment, retrieval_hits,
    validate_views_and_projector, validate_weight,
};
use super::{ImageMethod, MethodKind, Settings};
use crate::losses::{VicregWeights, vicreg_loss};
use crate::util::config::ConfigError;

/// The keys of `vicreg`: the loss weights, `[task.views]` and `[task.projector]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VicregSettings {
    /// Weights of the invariance, variance and covariance terms.
    pub invariance: f64,
    pub variance: f64,
    pub covariance: f64,
    pub views: ViewAugment,
    pub projector: ProjectorConfig,
}

impl Default for VicregSettings {
    fn default() -> Self {
        Self {
            invariance: 25.0,
            variance: 25.0,
            covariance: 1.0,
            views: ViewAugment::default(),
            projector: ProjectorConfig::default(),
        }
    }
}

struct Vicreg(VicregWeights);

impl ProjectionLoss for Vicreg {
    fn loss(&self, z1: Tensor<2>, z2: Tensor<2>) -> (Tensor<1>, usize) {
        let hits = retrieval_hits(&z1, &z2);
        (vicreg_loss(z1, z2, self.0), hits)
    }
}

impl Settings for VicregSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_weight("task.invariance", self.invariance)?;
        validate_weight("task.variance", self.variance)?;
        validate_weight("task.covariance", self.covariance)?;
        validate_views_and_projector(&self.views, &self.projector)
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        let weights = VicregWeights {
            invariance: self.invariance,
            variance: self.variance,
            covariance: self.covariance,
        };
        Some(Box::new(TwoViewMethod::projections(
            MethodKind::Vicreg,
            &self.views,
            &self.projector,
            Vicreg(weights),
        )))
    }
}
