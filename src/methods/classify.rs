//! The classification methods (rotation, relpos, jigsaw, jigsaw++, cluster): a head on the
//! encoder predicts the task's self-labels, trained with cross-entropy.

use burn::tensor::Device;

use super::{ImageMethod, PretrainLearner};
use crate::data::ImageSet;
use crate::data::examples::Task;
use crate::data::loader::{Normalizer, eval_batch};
use crate::models::{Classifier, EncoderSpec};
use crate::train::{ClassifierLearner, TrainConfig, evaluate};

/// A task whose self-labels a classifier head learns; the task chooses the head.
pub struct Classify<T: Task>(pub T);

impl<T: Task + 'static> ImageMethod for Classify<T> {
    fn task(&self) -> &dyn Task {
        &self.0
    }
    fn learner(
        &self,
        spec: &EncoderSpec,
        recipe: &TrainConfig,
        device: &Device,
    ) -> Box<dyn PretrainLearner> {
        let model = Classifier {
            encoder: spec.init(device),
            head: self.0.head(spec.feature_dim(), device),
        };
        Box::new(ClassifierLearner::new(model, recipe, 1.0))
    }
}

impl PretrainLearner for ClassifierLearner {
    /// Share of held-out examples whose self-label the head predicts.
    fn pretext_accuracy(
        &self,
        test: &ImageSet,
        normalizer: &Normalizer,
        task: &dyn Task,
    ) -> Option<f64> {
        Some(evaluate(
            &self.model,
            test,
            normalizer,
            task,
            eval_batch(test.shape()),
        ))
    }
}
