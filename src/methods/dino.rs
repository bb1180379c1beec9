//! DINO (Caron et al. 2021): self-distillation without labels. Every image gives two global
//! crops and several small local crops (multi-crop); a student (encoder and DINO head) sees all
//! of them, a teacher (an exponential moving average of the student, its momentum rising to 1
//! along a cosine) only the global ones, and the student learns to match the teacher's centred,
//! sharpened distribution over prototypes on every other view. The centre (a running mean of the
//! teacher's outputs) and the sharpening (a low teacher temperature, warmed up from lower still)
//! keep the teacher from collapsing to one prototype or to the uniform distribution.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::two_views::{TwoViews, ViewAugment, pair_retrieval, split_pairs, validate_weight};
use super::{ImageMethod, MethodKind, PretrainLearner, Settings, ema};
use crate::data::ImageSet;
use crate::data::augment::Shape;
use crate::data::examples::{Examples, Task, ViewGroup};
use crate::data::loader::Normalizer;
use crate::device::rank_grads::mean_rows_over_ranks;
use crate::losses::dino_loss;
use crate::models::{DinoHead, DinoHeadConfig, Encoder, EncoderSpec};
use crate::train::{
    ImageLearner, Learner, Optimisers, StepStats, TrainConfig, correct_predictions,
    group_to_tensor, to_tensors,
};
use crate::util::config::{ConfigError, invalid};

/// The smallest side of a local crop: ConvNet-4 halves its input four times.
const MIN_LOCAL_SIDE: usize = 16;

/// The keys of `dino`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinoSettings {
    /// Small local crops per image, besides the two global ones.
    pub local_crops: usize,
    /// Side of the local crops (0: 3/7 of the image side, at least 16, as 96 of 224).
    pub local_size: usize,
    /// Share of the image's area a local crop covers.
    pub local_scale: [f32; 2],
    /// The student's softmax temperature.
    pub student_temperature: f64,
    /// The teacher's temperature after warm-up, and where the warm-up starts.
    pub teacher_temperature: f64,
    pub warmup_teacher_temperature: f64,
    /// Share of training over which the teacher's temperature rises linearly.
    pub teacher_temperature_warmup: f64,
    /// The teacher's base momentum; it rises to 1 along a cosine. (The paper's 0.996 suits its
    /// hundreds of epochs; over a few hundred steps the teacher then hardly moves.)
    pub momentum: f64,
    /// Momentum of the centre, the running mean of the teacher's outputs.
    pub center_momentum: f64,
    /// The global crops (`[task.views]`); local crops take the same augmentations with
    /// the first view's blur and solarisation probabilities.
    pub views: ViewAugment,
    pub head: DinoHeadConfig,
}

impl Default for DinoSettings {
    fn default() -> Self {
        Self {
            local_crops: 6,
            local_size: 0,
            local_scale: [0.05, 0.4],
            student_temperature: 0.1,
            teacher_temperature: 0.07,
            warmup_teacher_temperature: 0.04,
            teacher_temperature_warmup: 0.3,
            momentum: 0.99,
            center_momentum: 0.9,
            views: ViewAugment {
                crop_scale: [0.4, 1.0],
                ..ViewAugment::default()
            },
            head: DinoHeadConfig::default(),
        }
    }
}

impl DinoSettings {
    /// The teacher's temperature `progress` (0 to 1) of the way through training.
    pub fn teacher_temperature_at(&self, progress: f64) -> f64 {
        let warm = self.teacher_temperature_warmup;
        if warm <= 0.0 || progress >= warm {
            return self.teacher_temperature;
        }
        let t = progress.max(0.0) / warm;
        self.warmup_teacher_temperature
            + t * (self.teacher_temperature - self.warmup_teacher_temperature)
    }
}

impl Settings for DinoSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, t) in [
            ("task.student_temperature", self.student_temperature),
            ("task.teacher_temperature", self.teacher_temperature),
            (
                "task.warmup_teacher_temperature",
                self.warmup_teacher_temperature,
            ),
        ] {
            if !(t.is_finite() && t > 0.0) {
                return Err(invalid(key, format!("must be > 0, got {t}")));
            }
        }
        validate_weight(
            "task.teacher_temperature_warmup",
            self.teacher_temperature_warmup,
        )?;
        for (key, m) in [
            ("task.momentum", self.momentum),
            ("task.center_momentum", self.center_momentum),
        ] {
            if !(0.0..1.0).contains(&m) {
                return Err(invalid(key, format!("must be in [0, 1), got {m}")));
            }
        }
        let [lo, hi] = self.local_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(invalid(
                "task.local_scale",
                "must be [low, high] with 0 < low <= high <= 1",
            ));
        }
        let h = &self.head;
        if h.hidden == 0 || h.bottleneck == 0 || h.prototypes == 0 || h.layers == 0 {
            return Err(invalid("task.head", "every size must be at least 1"));
        }
        self.views
            .validate("task.views")
            .map_err(|e| invalid("task.views", e))
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        Some(Box::new(Dino {
            crops: MultiCrop {
                globals: TwoViews {
                    name: MethodKind::Dino.name(),
                    augment: self.views.clone(),
                },
                locals: self.local_crops,
                local_size: self.local_size,
                local_scale: self.local_scale,
            },
            settings: self.clone(),
        }))
    }
}

/// Two global crops of every image at its own size (the main views), and `locals` local crops
/// at `local_size` (one view group).
pub struct MultiCrop {
    /// The two global crops.
    pub globals: TwoViews,
    pub locals: usize,
    pub local_size: usize,
    pub local_scale: [f32; 2],
}

impl MultiCrop {
    fn local_side(&self, [_, h, w]: Shape) -> usize {
        match self.local_size {
            0 => ((h.min(w) * 3 + 3) / 7).max(MIN_LOCAL_SIDE),
            side => side,
        }
    }
}

impl Task for MultiCrop {
    fn name(&self) -> &'static str {
        MethodKind::Dino.name()
    }
    /// The "label" is unused: the targets come from the teacher.
    fn num_classes(&self) -> usize {
        1
    }
    fn arity(&self) -> usize {
        2
    }
    fn other_views(&self, input: Shape) -> Vec<(Shape, usize)> {
        let side = self.local_side(input);
        vec![([input[0], side, side], self.locals)]
    }
    fn augments_itself(&self) -> bool {
        true
    }
    fn examples(
        &self,
        image: &[f32],
        shape: Shape,
        _: Option<u32>,
        rng: &mut ChaCha8Rng,
        out: &mut Examples,
    ) {
        self.globals.examples(image, shape, None, rng, out);
        let side = self.local_side(shape);
        let augment = &self.globals.augment;
        let locals = &mut out.groups[0].views;
        for _ in 0..self.locals {
            locals.extend(augment.view_at(image, shape, 0, self.local_scale, (side, side), rng));
        }
    }
}

struct Dino {
    crops: MultiCrop,
    settings: DinoSettings,
}

impl ImageMethod for Dino {
    fn task(&self) -> &dyn Task {
        &self.crops
    }
    fn learner(
        &self,
        spec: &EncoderSpec,
        recipe: &TrainConfig,
        device: &Device,
    ) -> Box<dyn PretrainLearner> {
        Box::new(DinoLearner::new(&self.settings, spec, recipe, device))
    }
}

/// An encoder with DINO's head.
#[derive(Module, Debug)]
pub struct DinoNet {
    pub encoder: Encoder,
    pub head: DinoHead,
}

impl DinoNet {
    fn new(spec: &EncoderSpec, head: &DinoHeadConfig, device: &Device) -> Self {
        Self {
            encoder: spec.init(device),
            head: DinoHead::new(spec.feature_dim(), head, device),
        }
    }
    fn forward(&self, views: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.encoder.forward(views))
    }
}

/// What a checkpoint holds of a DINO run.
#[derive(Module, Debug)]
pub struct DinoState {
    pub student: DinoNet,
    pub teacher: DinoNet,
    pub center: Param<Tensor<2>>,
}

pub struct DinoLearner {
    pub student: DinoNet,
    /// Never touched by backprop: it follows the student by EMA.
    pub teacher: DinoNet,
    /// `[1, prototypes]`: the running mean of the teacher's outputs.
    pub center: Tensor<2>,
    settings: DinoSettings,
    optim: Optimisers,
    device: Device,
}

impl DinoLearner {
    pub fn new(
        settings: &DinoSettings,
        spec: &EncoderSpec,
        recipe: &TrainConfig,
        device: &Device,
    ) -> Self {
        if crate::device::several_devices() {
            crate::device::warn_first_device_only(MethodKind::Dino.name());
        }
        let student = DinoNet::new(spec, &settings.head, device);
        let teacher = DinoNet::new(spec, &settings.head, device);
        let teacher = follow(teacher, &student, 0.0);
        Self {
            student,
            teacher,
            center: Tensor::zeros([1, settings.head.prototypes], device),
            settings: settings.clone(),
            optim: Optimisers::new(recipe),
            device: device.clone(),
        }
    }

    /// The loss of one batch and how often the student's prototype on one global view is the
    /// teacher's on the other; the teacher's outputs on the global views.
    fn loss(&self, ex: &Examples, progress: f64) -> (Tensor<1>, usize, Tensor<2>) {
        let n = ex.labels.len();
        let (globals, _) = to_tensors(ex, &self.device);
        let (s0, s1) = split_pairs(self.student.forward(globals.clone()));
        let teacher_out = self.teacher.forward(globals).detach();
        let (t0, t1) = split_pairs(teacher_out.clone());
        let mut student = vec![s0.clone(), s1.clone()];
        if let Some(group) = ex.groups.first().filter(|g| !g.is_empty()) {
            let local = self.student.forward(group_to_tensor(group, &self.device));
            let [_, k] = local.dims();
            let local = local.reshape([n, group.per_example, k]);
            student.extend(
                (0..group.per_example).map(|j| local.clone().narrow(1, j, 1).reshape([n, k])),
            );
        }
        let temperature = self.settings.teacher_temperature_at(progress);
        let teacher = [t0.clone(), t1.clone()];
        let loss = dino_loss(
            &teacher,
            &student,
            self.center.clone(),
            temperature,
            self.settings.student_temperature,
        );
        // How often the student's top prototype on one global crop is the teacher's on the other.
        let top = |t: Tensor<2>| t.argmax(1).reshape([n]);
        let hits =
            correct_predictions(s0.detach(), top(t1)) + correct_predictions(s1.detach(), top(t0));
        (loss, hits, teacher_out)
    }
}

/// The teacher moved toward the student: both parts are read before the teacher is touched
/// (burn initialises parameters on first read, so the order fixes their random numbers).
fn follow(teacher: DinoNet, student: &DinoNet, momentum: f64) -> DinoNet {
    let encoder = ema::snapshot(&student.encoder);
    let head = ema::snapshot(&student.head);
    DinoNet {
        encoder: ema::blend(teacher.encoder, encoder, momentum),
        head: ema::blend(teacher.head, head, momentum),
    }
}

impl Learner for DinoLearner {
    type Batch = Examples;
    fn inputs(&self, ex: &Examples) -> usize {
        ex.num_views() + ex.groups.iter().map(ViewGroup::len).sum::<usize>()
    }
    fn step(&mut self, ex: &Examples, lr: f64, progress: f64) -> StepStats {
        let n = ex.labels.len();
        let (loss, hits, teacher_out) = self.loss(ex, progress);
        let loss_value = self.optim.global_loss(loss.clone().into_scalar(), n);
        if !loss_value.is_finite() {
            return StepStats::diverged(loss_value);
        }
        let DinoNet { encoder, head } = self.student.clone();
        let (encoder, head) = self.optim.step(loss, (encoder, head), (lr, lr));
        self.student = DinoNet { encoder, head };
        let momentum = ema::cosine_momentum(self.settings.momentum, progress);
        self.teacher = follow(self.teacher.clone(), &self.student, momentum);
        let m = self.settings.center_momentum;
        let batch_mean = mean_rows_over_ranks(teacher_out);
        self.center = (self.center.clone().mul_scalar(m) + batch_mean.mul_scalar(1.0 - m)).detach();
        StepStats {
            loss: loss_value,
            hits,
            counted: 2 * n,
        }
    }

    fn save_parts(&self) -> Result<[Vec<u8>; 3], String> {
        let state = DinoState {
            student: self.student.clone(),
            teacher: self.teacher.clone(),
            center: Param::from_tensor(self.center.clone()),
        };
        self.optim.parts(&state)
    }

    fn load_parts(&mut self, parts: [Vec<u8>; 3]) -> Result<(), (&'static str, String)> {
        let mut state = DinoState {
            student: self.student.clone(),
            teacher: self.teacher.clone(),
            center: Param::from_tensor(self.center.clone()),
        };
        self.optim.load(&mut state, parts)?;
        self.student = state.student;
        self.teacher = state.teacher.no_grad();
        self.center = state.center.val().detach();
        Ok(())
    }
}

impl ImageLearner for DinoLearner {
    fn encoder(&self) -> Encoder {
        self.student.encoder.clone()
    }
}

impl PretrainLearner for DinoLearner {
    /// Two-view retrieval of the student's encoder on the global crops.
    fn pretext_accuracy(
        &self,
        test: &ImageSet,
        normalizer: &Normalizer,
        task: &dyn Task,
    ) -> Option<f64> {
        Some(pair_retrieval(
            &self.student.encoder,
            test,
            normalizer,
            task,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, Stem};
    use crate::train::train_device;
    use rand::{Rng, SeedableRng};

    fn spec() -> EncoderSpec {
        EncoderSpec {
            arch: Arch::Convnet4,
            width: 2,
            in_channels: 3,
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
            stem: Stem::Cifar,
            vit: None,
            input_size: None,
            start: None,
        }
    }

    fn small() -> DinoSettings {
        DinoSettings {
            local_crops: 3,
            head: DinoHeadConfig {
                hidden: 16,
                bottleneck: 8,
                prototypes: 32,
                ..DinoHeadConfig::default()
            },
            ..DinoSettings::default()
        }
    }

    fn batch(settings: &DinoSettings, n: usize) -> Examples {
        let crops = MultiCrop {
            globals: TwoViews {
                name: MethodKind::Dino.name(),
                augment: settings.views.clone(),
            },
            locals: settings.local_crops,
            local_size: settings.local_size,
            local_scale: settings.local_scale,
        };
        let shape = [3, 32, 32];
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut out = Examples::for_task(&crops, shape);
        for _ in 0..n {
            let image: Vec<f32> = (0..3 * 32 * 32).map(|_| rng.random::<f32>()).collect();
            crops.examples(&image, shape, None, &mut rng, &mut out);
        }
        out
    }

    #[test]
    fn multi_crop_makes_two_global_and_several_local_views_of_every_image() {
        let settings = small();
        let ex = batch(&settings, 5);
        assert_eq!(ex.view_shape, [3, 32, 32]);
        assert_eq!(ex.views.len(), 5 * 2 * 3 * 32 * 32);
        let local = &ex.groups[0];
        // 3/7 of 32 is under the smallest local side.
        assert_eq!(local.shape, [3, 16, 16]);
        assert_eq!(local.per_example, 3);
        assert_eq!(local.len(), 15);
        let shard = ex.shard(1..3);
        assert_eq!(shard.groups[0].len(), 6);
        assert_eq!(shard.groups[0].views[..], local.views[3 * 768..9 * 768]);
    }

    #[test]
    fn teacher_temperature_warms_up_linearly_then_holds() {
        let s = DinoSettings::default();
        assert!((s.teacher_temperature_at(0.0) - 0.04).abs() < 1e-12);
        assert!((s.teacher_temperature_at(0.15) - 0.055).abs() < 1e-12);
        assert!((s.teacher_temperature_at(0.3) - 0.07).abs() < 1e-12);
        assert!((s.teacher_temperature_at(0.9) - 0.07).abs() < 1e-12);
    }

    /// The teacher starts as the student, takes no gradient, and afterwards moves only by
    /// the EMA; the centre moves toward the teacher's mean output; and against a fixed teacher
    /// and centre the student's loss falls (its gradient points toward the teacher).
    #[test]
    fn a_step_trains_the_student_and_moves_teacher_and_centre_by_their_averages() {
        let device = train_device();
        let settings = small();
        let mut learner = DinoLearner::new(&settings, &spec(), &TrainConfig::default(), &device);
        let values = |m: &DinoNet| {
            ema::snapshot(m)
                .into_iter()
                .flat_map(|t| t.into_data().try_to_vec::<f32>().unwrap())
                .collect::<Vec<f32>>()
        };
        assert_eq!(values(&learner.teacher), values(&learner.student));
        let ex = batch(&settings, 8);
        let first = learner.step(&ex, 0.05, 0.0);
        assert!(first.loss.is_finite());
        assert_eq!(first.counted, 16);
        let centre: Vec<f32> = learner.center.clone().into_data().try_to_vec().unwrap();
        assert!(centre.iter().any(|c| *c != 0.0), "the centre moved");
        let (student, teacher) = (values(&learner.student), values(&learner.teacher));
        let moved = student.iter().zip(&teacher).filter(|(s, t)| s != t).count();
        assert!(moved > 0, "the teacher trails the student");
        let (teacher, center) = (learner.teacher.clone(), learner.center.clone());
        let loss_now = |l: &DinoLearner| -> f32 { l.loss(&ex, 0.5).0.into_scalar() };
        let before = loss_now(&learner);
        for _ in 0..10 {
            learner.step(&ex, 0.05, 0.5);
            learner.teacher = teacher.clone();
            learner.center = center.clone();
        }
        let after = loss_now(&learner);
        assert!(after < before, "{before} -> {after}");
        let parts = learner.save_parts().unwrap();
        learner.load_parts(parts).unwrap();
    }
}
