//! SimCLR (Chen et al. 2020): NT-Xent between the projections of two views, every other view
//! of the batch a negative.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::two_views::{Objective, ProjectionLoss, SiameseConfig, TwoViewMethod, TwoViewSettings};
use super::{ImageMethod, MethodKind, Settings};
use crate::losses::nt_xent;
use crate::train::correct_predictions;
use crate::util::config::ConfigError;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SimclrSettings(pub TwoViewSettings);

struct Simclr {
    temperature: f64,
}

impl ProjectionLoss for Simclr {
    fn loss(&self, z1: Tensor<2>, z2: Tensor<2>) -> (Tensor<1>, usize) {
        let (loss, logits, targets) = nt_xent(z1, z2, self.temperature);
        (loss, correct_predictions(logits.detach(), targets))
    }
}

pub fn objective(cfg: &SiameseConfig) -> Objective {
    Objective::Projections(Box::new(Simclr {
        temperature: cfg.temperature,
    }))
}

impl Settings for SimclrSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.0.validate()
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        Some(Box::new(TwoViewMethod::new(
            MethodKind::Simclr,
            &self.0,
            objective(&self.0.siamese),
        )))
    }
}
