//! SimSiam (Chen & He 2021): BYOL without the momentum network; the target is the online
//! projection of the other view, its gradient stopped.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::two_views::{Objective, PredictionLoss, SiameseConfig, TwoViewMethod, TwoViewSettings};
use super::{ImageMethod, MethodKind, Settings};
use crate::losses::negative_cosine;
use crate::util::config::ConfigError;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SimsiamSettings(pub TwoViewSettings);

struct Simsiam;

impl PredictionLoss for Simsiam {
    fn loss(&self, p1: Tensor<2>, p2: Tensor<2>, z1: Tensor<2>, z2: Tensor<2>) -> Tensor<1> {
        (negative_cosine(p1, z2) + negative_cosine(p2, z1)).mul_scalar(0.5)
    }
    fn target_momentum(&self) -> Option<f64> {
        None
    }
}

pub fn objective(_: &SiameseConfig) -> Objective {
    Objective::Prediction(Box::new(Simsiam))
}

impl Settings for SimsiamSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.0.validate()
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        Some(Box::new(TwoViewMethod::new(
            MethodKind::Simsiam,
            &self.0,
            objective(&self.0.siamese),
        )))
    }
}
