//! BYOL (Grill et al. 2020): the online network predicts an EMA target network's projection of
//! the other view.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::two_views::{Objective, PredictionLoss, SiameseConfig, TwoViewMethod, TwoViewSettings};
use super::{ImageMethod, MethodKind, Settings};
use crate::losses::byol_loss;
use crate::util::config::ConfigError;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ByolSettings(pub TwoViewSettings);

struct Byol {
    momentum: f64,
}

impl PredictionLoss for Byol {
    fn loss(&self, p1: Tensor<2>, p2: Tensor<2>, t1: Tensor<2>, t2: Tensor<2>) -> Tensor<1> {
        byol_loss(p1, t2) + byol_loss(p2, t1)
    }
    fn target_momentum(&self) -> Option<f64> {
        Some(self.momentum)
    }
}

pub fn objective(cfg: &SiameseConfig) -> Objective {
    Objective::Prediction(Box::new(Byol {
        momentum: cfg.momentum,
    }))
}

impl Settings for ByolSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.0.validate()
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        Some(Box::new(TwoViewMethod::new(
            MethodKind::Byol,
            &self.0,
            objective(&self.0.siamese),
        )))
    }
}
