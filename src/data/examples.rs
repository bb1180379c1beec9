//! Examples: the views and self-labels a [`Task`] makes from one image, batched. The loader
//! calls a task; the methods (`crate::methods`) and supervised training provide them.

use burn::tensor::Device;
use rand_chacha::ChaCha8Rng;

use crate::data::augment::Shape;
use crate::models::ClassifierHead;

/// A batch of views with one label per example; `arity` consecutive views form one example
/// (their features are concatenated before the head). A task may also make views of other
/// shapes (DINO's small local crops): each such group holds `per_example` views of every example.
#[derive(Clone, Debug, Default)]
pub struct Examples {
    pub views: Vec<f32>,
    pub view_shape: Shape,
    pub labels: Vec<i64>,
    pub arity: usize,
    pub groups: Vec<ViewGroup>,
}

/// Views of another shape than the main ones, `per_example` of each example, in example order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewGroup {
    pub shape: Shape,
    pub per_example: usize,
    pub views: Vec<f32>,
}

impl ViewGroup {
    fn view_len(&self) -> usize {
        self.shape.iter().product()
    }
    /// The number of views the group holds.
    pub fn len(&self) -> usize {
        self.views.len() / self.view_len().max(1)
    }
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }
}

impl Examples {
    pub fn new(view_shape: Shape, arity: usize) -> Self {
        Self {
            views: Vec::new(),
            view_shape,
            labels: Vec::new(),
            arity,
            groups: Vec::new(),
        }
    }
    /// Empty examples of the shapes `task` makes from `input` images.
    pub fn for_task(task: &dyn Task, input: Shape) -> Self {
        let mut out = Self::new(task.view_shape(input), task.arity());
        out.groups = task
            .other_views(input)
            .into_iter()
            .map(|(shape, per_example)| ViewGroup {
                shape,
                per_example,
                views: Vec::new(),
            })
            .collect();
        out
    }
    pub fn num_views(&self) -> usize {
        self.labels.len() * self.arity
    }
    /// Examples `range` (with their `arity` views each), for one device's share of a batch.
    pub fn shard(&self, range: std::ops::Range<usize>) -> Examples {
        let per_example = self.arity * self.view_shape.iter().product::<usize>();
        let groups = self
            .groups
            .iter()
            .map(|g| {
                let per = g.per_example * g.view_len();
                ViewGroup {
                    views: g.views[range.start * per..range.end * per].to_vec(),
                    ..g.clone()
                }
            })
            .collect();
        Examples {
            views: self.views[range.start * per_example..range.end * per_example].to_vec(),
            view_shape: self.view_shape,
            labels: self.labels[range].to_vec(),
            arity: self.arity,
            groups,
        }
    }
    pub fn append(&mut self, other: Examples) {
        self.views.extend(other.views);
        self.labels.extend(other.labels);
        for (mine, theirs) in self.groups.iter_mut().zip(other.groups) {
            mine.views.extend(theirs.views);
        }
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
    /// Views of other shapes made from an input image of shape `input`, as (shape, views per
    /// example), in the order of [`Examples::groups`].
    fn other_views(&self, _input: Shape) -> Vec<(Shape, usize)> {
        Vec::new()
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
