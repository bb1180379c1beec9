//! Pretext tasks: views and self-labels made from data. A task never knows which backbone it
//! trains; the trainer runs encoder → head → cross-entropy on what the task makes.

pub mod jigsaw;
pub mod permutations;
pub mod relpos;
pub mod rotation;
pub mod views;

use burn::tensor::Device;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::augment::Shape;
use crate::models::ClassifierHead;

pub use rotation::Rotation;

/// A batch of views with one label per example; `arity` consecutive views form one example
/// (their features are concatenated before the head).
#[derive(Clone, Debug, Default)]
pub struct Examples {
    pub views: Vec<f32>,
    pub view_shape: Shape,
    pub labels: Vec<i64>,
    pub arity: usize,
}

impl Examples {
    pub fn new(view_shape: Shape, arity: usize) -> Self {
        Self {
            views: Vec::new(),
            view_shape,
            labels: Vec::new(),
            arity,
        }
    }
    pub fn num_views(&self) -> usize {
        self.labels.len() * self.arity
    }
    /// Examples `range` (with their `arity` views each), for one device's share of a batch.
    pub fn shard(&self, range: std::ops::Range<usize>) -> Examples {
        let per_example = self.arity * self.view_shape.iter().product::<usize>();
        Examples {
            views: self.views[range.start * per_example..range.end * per_example].to_vec(),
            view_shape: self.view_shape,
            labels: self.labels[range].to_vec(),
            arity: self.arity,
        }
    }
    pub fn append(&mut self, other: Examples) {
        self.views.extend(other.views);
        self.labels.extend(other.labels);
    }
}

/// Something that turns one image into training examples: a pretext task (labels from the
/// image itself), or [`Supervised`] (labels from annotation) for fine-tuning and scratch.
pub trait Task: Send + Sync {
    fn name(&self) -> &'static str;
    /// Number of classes the head predicts.
    fn num_classes(&self) -> usize;
    /// Views per example whose features the head sees concatenated.
    fn arity(&self) -> usize {
        1
    }
    /// Shape of each view made from an input image of shape `input`.
    fn view_shape(&self, input: Shape) -> Shape {
        input
    }
    /// The head this task puts on an encoder with `feature_dim` features.
    fn head(&self, feature_dim: usize, device: &Device) -> ClassifierHead {
        ClassifierHead::linear(self.arity() * feature_dim, self.num_classes(), device)
    }
    /// Append the examples made from one (augmented, normalised) image.
    fn examples(
        &self,
        image: &[f32],
        shape: Shape,
        label: Option<u32>,
        rng: &mut ChaCha8Rng,
        out: &mut Examples,
    );
    /// Files the task saves in the run directory so the run can be reproduced and read (the
    /// jigsaw permutation set), as (file name, contents).
    fn artifacts(&self) -> Vec<(&'static str, Vec<u8>)> {
        Vec::new()
    }
    /// A line about the task's own settings for the start of a run (the jigsaw permutation set's
    /// distances), if it has one.
    fn describe(&self) -> Option<String> {
        None
    }
    /// Whether the task makes its views from pixel values in [0, 1] with its own augmentation
    /// (the siamese methods); the loader then skips its crop and flip and normalises the views
    /// afterwards.
    fn augments_itself(&self) -> bool {
        false
    }
    /// Whether the task takes content from a second image of the batch (Jigsaw++); the loader
    /// then calls [`Task::examples_with_donor`].
    fn uses_donor(&self) -> bool {
        false
    }
    /// As [`Task::examples`], with `donor`: another (augmented, normalised) image of the batch.
    fn examples_with_donor(
        &self,
        image: &[f32],
        _donor: Option<&[f32]>,
        shape: Shape,
        label: Option<u32>,
        rng: &mut ChaCha8Rng,
        out: &mut Examples,
    ) {
        self.examples(image, shape, label, rng, out)
    }
}

/// Pretext tasks by name, as used in configs and `--task`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Rotation,
    /// Context prediction: which of the 8 neighbours a patch is.
    Relpos,
    /// Which permutation of the 9 tiles is shown.
    Jigsaw,
    /// Jigsaw with 0 to 2 tiles from another image.
    #[serde(rename = "jigsaw++")]
    JigsawPlus,
    /// Predict the k-means cluster of a teacher encoder's features (Noroozi et al. 2018): the
    /// pseudo-labels are computed first (`crate::cluster::transfer`), then this is
    /// [`Supervised`] on them.
    Cluster,
    /// SimCLR: contrast two views of each image against the rest of the batch.
    Simclr,
    /// BYOL: predict a momentum (EMA) target network's projection of the other view.
    Byol,
    /// SimSiam: BYOL without the momentum network.
    Simsiam,
    /// Masked language modelling on a text corpus (BERT).
    Mlm,
}

impl TaskKind {
    /// The name used in configs, `--task` and results.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Rotation => "rotation",
            TaskKind::Relpos => "relpos",
            TaskKind::Jigsaw => "jigsaw",
            TaskKind::JigsawPlus => "jigsaw++",
            TaskKind::Cluster => "cluster",
            TaskKind::Simclr => "simclr",
            TaskKind::Byol => "byol",
            TaskKind::Simsiam => "simsiam",
            TaskKind::Mlm => "mlm",
        }
    }

    /// SimCLR, BYOL and SimSiam: two views, a projector, and a loss between the views.
    pub fn is_siamese(self) -> bool {
        matches!(self, TaskKind::Simclr | TaskKind::Byol | TaskKind::Simsiam)
    }
}

impl std::str::FromStr for TaskKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rotation" => Ok(TaskKind::Rotation),
            "relpos" => Ok(TaskKind::Relpos),
            "jigsaw" => Ok(TaskKind::Jigsaw),
            "jigsaw++" => Ok(TaskKind::JigsawPlus),
            "cluster" => Ok(TaskKind::Cluster),
            "simclr" => Ok(TaskKind::Simclr),
            "byol" => Ok(TaskKind::Byol),
            "simsiam" => Ok(TaskKind::Simsiam),
            "mlm" => Ok(TaskKind::Mlm),
            other => Err(format!(
                "unknown task `{other}` (available: rotation, relpos, jigsaw, jigsaw++, cluster, simclr, byol, simsiam, mlm)"
            )),
        }
    }
}

/// Classification with the data set's own labels.
pub struct Supervised {
    pub classes: usize,
}

impl Task for Supervised {
    fn name(&self) -> &'static str {
        "supervised"
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn examples(
        &self,
        image: &[f32],
        _: Shape,
        label: Option<u32>,
        _: &mut ChaCha8Rng,
        out: &mut Examples,
    ) {
        let label = label.expect("supervised examples need labelled images");
        out.views.extend_from_slice(image);
        out.labels.push(label as i64);
    }
}
