//! What the two-view methods share (SimCLR, BYOL, SimSiam, ...): two augmented views of each
//! image, whose self-label is "these two views are the same image"; an encoder with a projector
//! (and a predictor); and one learner that trains them with the method's [`Objective`].
//!
//! The views are made from pixel values in [0, 1] (colour jitter and solarisation are defined
//! there), then normalised like any other input by the loader.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{ImageMethod, MethodKind, PretrainLearner, ema};
use crate::data::ImageSet;
use crate::data::augment::{Shape, hflip, random_resized_crop};
use crate::data::colour::{JitterStrength, colour_jitter, gaussian_blur, solarise, to_grayscale};
use crate::data::examples::{Examples, Task};
use crate::data::loader::{BatchPlan, Normalizer, eval_batch};
use crate::device::data_parallel::{DataParallel, gather_on};
use crate::device::rank_grads::gather_rows_over_ranks;
use crate::losses::l2_normalise;
use crate::models::{Encoder, EncoderSpec, ProjectionMlp, Siamese, SiameseHeads};
use crate::train::{
    IN_MEMORY, ImageLearner, Learner, Optimisers, StepStats, TrainConfig, backward, infer_device,
    to_tensors,
};
use crate::util::config::{ConfigError, invalid};

/// The augmentation pipeline of the two views (`[task.views]`). Blur and solarisation have one
/// probability per view, as BYOL's asymmetric pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewAugment {
    /// Random resized crop: range of the area share and of the aspect ratio.
    pub crop_scale: [f32; 2],
    pub crop_ratio: [f32; 2],
    /// Probability of a horizontal flip.
    pub hflip: f32,
    /// Colour jitter strengths: brightness, contrast, saturation, hue.
    pub jitter: [f32; 4],
    /// Probability that colour jitter is applied.
    pub jitter_prob: f32,
    /// Probability of turning a view to grayscale.
    pub grayscale: f32,
    /// Probability of a Gaussian blur, per view.
    pub blur: [f32; 2],
    /// Range of the blur's standard deviation, in pixels; the kernel covers about 10 % of the side.
    pub blur_sigma: [f32; 2],
    /// Probability of solarisation, per view.
    pub solarise: [f32; 2],
}

impl Default for ViewAugment {
    /// The CIFAR-scale recipe of solo-learn and the SimCLR paper's CIFAR appendix: no blur on
    /// 32-pixel images, solarisation on the second view only (BYOL).
    fn default() -> Self {
        Self {
            crop_scale: [0.2, 1.0],
            crop_ratio: [0.75, 4.0 / 3.0],
            hflip: 0.5,
            jitter: [0.4, 0.4, 0.2, 0.1],
            jitter_prob: 0.8,
            grayscale: 0.2,
            blur: [0.0, 0.0],
            blur_sigma: [0.1, 2.0],
            solarise: [0.0, 0.2],
        }
    }
}

fn probability(key: &str, p: f32) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!(
            "{key} must be a probability between 0 and 1, not {p}"
        ))
    }
}

impl ViewAugment {
    pub fn validate(&self, key: &str) -> Result<(), String> {
        let [lo, hi] = self.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(format!(
                "{key}.crop_scale must be [low, high] with 0 < low <= high <= 1"
            ));
        }
        let [lo, hi] = self.crop_ratio;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(format!(
                "{key}.crop_ratio must be [low, high] with 0 < low <= high"
            ));
        }
        let [b, c, s, h] = self.jitter;
        if [b, c, s].iter().any(|v| !(0.0..=1.0).contains(v)) || !(0.0..=0.5).contains(&h) {
            return Err(format!(
                "{key}.jitter must be [brightness, contrast, saturation, hue] with the first three in [0, 1] and hue in [0, 0.5]"
            ));
        }
        probability(&format!("{key}.hflip"), self.hflip)?;
        probability(&format!("{key}.jitter_prob"), self.jitter_prob)?;
        probability(&format!("{key}.grayscale"), self.grayscale)?;
        for p in self.blur.iter().chain(&self.solarise) {
            probability(&format!("{key}.blur and {key}.solarise"), *p)?;
        }
        let [lo, hi] = self.blur_sigma;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(format!(
                "{key}.blur_sigma must be [low, high] with 0 < low <= high"
            ));
        }
        Ok(())
    }

    /// One view of `image` (values in [0, 1]) at its own size; `which` is 0 or 1.
    pub fn view(&self, image: &[f32], shape: Shape, which: usize, rng: &mut impl Rng) -> Vec<f32> {
        let [_, h, w] = shape;
        self.view_at(image, shape, which, self.crop_scale, (h, w), rng)
    }

    /// One view of `image` cropped from a share `crop_scale` of its area and resized to `size`;
    /// `which` (0 or 1) picks the blur and solarisation probabilities.
    pub fn view_at(
        &self,
        image: &[f32],
        shape: Shape,
        which: usize,
        crop_scale: [f32; 2],
        (h, w): (usize, usize),
        rng: &mut impl Rng,
    ) -> Vec<f32> {
        let out = [shape[0], h, w];
        let scale = (crop_scale[0], crop_scale[1]);
        let ratio = (self.crop_ratio[0], self.crop_ratio[1]);
        let mut v = random_resized_crop(image, shape, scale, ratio, (h, w), rng);
        if rng.random::<f32>() < self.hflip {
            hflip(&mut v, out);
        }
        if rng.random::<f32>() < self.jitter_prob {
            let [brightness, contrast, saturation, hue] = self.jitter;
            let strength = JitterStrength {
                brightness,
                contrast,
                saturation,
                hue,
            };
            colour_jitter(&mut v, out, strength, rng);
        }
        if rng.random::<f32>() < self.grayscale {
            to_grayscale(&mut v, out);
        }
        if rng.random::<f32>() < self.blur[which] {
            let sigma = rng.random_range(self.blur_sigma[0]..=self.blur_sigma[1]);
            let kernel = (h.min(w) / 10) | 1;
            gaussian_blur(&mut v, out, kernel.max(3), sigma);
        }
        if rng.random::<f32>() < self.solarise[which] {
            solarise(&mut v, 0.5);
        }
        v
    }
}

/// Heads and loss settings of the siamese methods (`[task.siamese]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiameseConfig {
    /// Hidden and output width of the projector MLP (and of BYOL's and SimSiam's predictor,
    /// whose hidden width is `predictor_hidden`).
    pub projector_hidden: usize,
    pub projection_dim: usize,
    /// Linear layers of the projector (2: linear, BatchNorm, ReLU, linear; each more adds a
    /// hidden linear, BatchNorm and ReLU).
    pub projector_layers: usize,
    pub predictor_hidden: usize,
    /// SimCLR's softmax temperature.
    pub temperature: f64,
    /// BYOL's base EMA momentum; it rises to 1 along a cosine over training.
    pub momentum: f64,
}

impl Default for SiameseConfig {
    fn default() -> Self {
        Self {
            projector_hidden: 512,
            projection_dim: 128,
            projector_layers: 2,
            predictor_hidden: 512,
            temperature: 0.2,
            momentum: 0.99,
        }
    }
}

impl SiameseConfig {
    /// The projector these settings describe.
    pub fn projector(&self) -> ProjectorConfig {
        ProjectorConfig {
            hidden: self.projector_hidden,
            dim: self.projection_dim,
            layers: self.projector_layers,
        }
    }

    pub fn validate(&self, key: &str) -> Result<(), String> {
        for (name, v) in [
            ("projector_hidden", self.projector_hidden),
            ("projection_dim", self.projection_dim),
            ("predictor_hidden", self.predictor_hidden),
            ("projector_layers", self.projector_layers.saturating_sub(1)),
        ] {
            if v == 0 {
                let least = if name == "projector_layers" { 2 } else { 1 };
                return Err(format!("{key}.{name} must be at least {least}"));
            }
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!("{key}.temperature must be > 0"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("{key}.momentum must be in [0, 1)"));
        }
        Ok(())
    }
}

/// Two views of every image.
pub struct TwoViews {
    pub name: &'static str,
    pub augment: ViewAugment,
}

impl Task for TwoViews {
    fn name(&self) -> &'static str {
        self.name
    }
    /// The "label" of a pair is unused: the positives are the pair itself.
    fn num_classes(&self) -> usize {
        1
    }
    fn arity(&self) -> usize {
        2
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
        for which in 0..2 {
            out.views
                .extend(self.augment.view(image, shape, which, rng));
        }
        out.labels.push(0);
    }
}

/// The shape of a projector MLP (`[task.projector]` of the methods that have one of their own).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorConfig {
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Width of the projection.
    pub dim: usize,
    /// Linear layers (at least 2), each but the last followed by BatchNorm and ReLU.
    pub layers: usize,
}

impl Default for ProjectorConfig {
    /// VICReg's and Barlow Twins' three-layer projector, at a width a CPU trains.
    fn default() -> Self {
        Self {
            hidden: 1024,
            dim: 1024,
            layers: 3,
        }
    }
}

impl ProjectorConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.hidden == 0 || self.dim == 0 {
            return Err(invalid(key, "hidden and dim must be at least 1"));
        }
        if self.layers < 2 {
            return Err(invalid(
                format!("{key}.layers"),
                format!("must be at least 2, got {}", self.layers),
            ));
        }
        Ok(())
    }
}

/// The keys of a two-view method that uses the shared heads: `[task.views]` and
/// `[task.siamese]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwoViewSettings {
    /// The two views.
    pub views: ViewAugment,
    /// Heads and loss settings.
    pub siamese: SiameseConfig,
}

impl TwoViewSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.views
            .validate(VIEWS_KEY)
            .map_err(|e| invalid(VIEWS_KEY, e))?;
        self.siamese
            .validate(SIAMESE_KEY)
            .map_err(|e| invalid(SIAMESE_KEY, e))
    }
}

/// Checks a method's own `[task.views]` and `[task.projector]`.
pub fn validate_views_and_projector(
    views: &ViewAugment,
    projector: &ProjectorConfig,
) -> Result<(), ConfigError> {
    views
        .validate(VIEWS_KEY)
        .map_err(|e| invalid(VIEWS_KEY, e))?;
    projector.validate(PROJECTOR_KEY)
}

/// Checks that a loss weight is finite and not negative.
pub fn validate_weight(key: &str, weight: f64) -> Result<(), ConfigError> {
    if weight.is_finite() && weight >= 0.0 {
        Ok(())
    } else {
        Err(invalid(key, format!("must be a weight >= 0, got {weight}")))
    }
}

const VIEWS_KEY: &str = "task.views";
const PROJECTOR_KEY: &str = "task.projector";
const SIAMESE_KEY: &str = "task.siamese";

/// A loss between the two views' projections over the whole batch (SimCLR, VICReg, Barlow
/// Twins). Such a method spreads over several devices by gathering the projections.
pub trait ProjectionLoss: Send + Sync {
    /// The loss of projections `z1`, `z2` `[n, d]` (row i of each: the two views of image i),
    /// and how many of the 2n views pick out their partner.
    fn loss(&self, z1: Tensor<2>, z2: Tensor<2>) -> (Tensor<1>, usize);
}

/// A loss between the online network's predictions of each view and a target's projections of
/// the other (BYOL, SimSiam).
pub trait PredictionLoss: Send + Sync {
    /// The loss of predictions `p1`, `p2` against target projections `t1`, `t2` (gradient
    /// stopped) of the same images: `p1` is compared with `t2` and `p2` with `t1`.
    fn loss(&self, p1: Tensor<2>, p2: Tensor<2>, t1: Tensor<2>, t2: Tensor<2>) -> Tensor<1>;
    /// The base momentum of an EMA target network (it rises to 1 along a cosine); `None`: the
    /// target is the online network's own projection.
    fn target_momentum(&self) -> Option<f64>;
}

/// How a two-view method compares the views.
pub enum Objective {
    Projections(Box<dyn ProjectionLoss>),
    Prediction(Box<dyn PredictionLoss>),
}

/// A two-view method: its views, its heads' sizes and its objective.
pub struct TwoViewMethod {
    pub views: TwoViews,
    pub projector: ProjectorConfig,
    /// The hidden width of the predictor, for a prediction loss.
    pub predictor_hidden: usize,
    pub objective: Arc<Objective>,
}

impl TwoViewMethod {
    /// A method with its own projector and no predictor, comparing projections with `loss`.
    pub fn projections(
        kind: MethodKind,
        views: &ViewAugment,
        projector: &ProjectorConfig,
        loss: impl ProjectionLoss + 'static,
    ) -> Self {
        Self {
            views: TwoViews {
                name: kind.name(),
                augment: views.clone(),
            },
            projector: projector.clone(),
            predictor_hidden: 0,
            objective: Arc::new(Objective::Projections(Box::new(loss))),
        }
    }

    /// A method with the shared heads' keys (`[task.siamese]`).
    pub fn new(kind: MethodKind, settings: &TwoViewSettings, objective: Objective) -> Self {
        Self {
            views: TwoViews {
                name: kind.name(),
                augment: settings.views.clone(),
            },
            projector: settings.siamese.projector(),
            predictor_hidden: settings.siamese.predictor_hidden,
            objective: Arc::new(objective),
        }
    }
}

impl ImageMethod for TwoViewMethod {
    fn task(&self) -> &dyn Task {
        &self.views
    }
    fn learner(
        &self,
        spec: &EncoderSpec,
        recipe: &TrainConfig,
        device: &Device,
    ) -> Box<dyn PretrainLearner> {
        Box::new(TwoViewLearner::new(
            self.objective.clone(),
            spec,
            &self.projector,
            self.predictor_hidden,
            recipe,
            device,
        ))
    }
}

/// What a checkpoint holds of a two-view run: the online network and the EMA target.
#[derive(Module, Debug)]
pub struct TwoViewState {
    pub online: Siamese,
    pub target: Option<Siamese>,
}

pub struct TwoViewLearner {
    /// Shared so that a step can hold it while it changes the networks.
    objective: Arc<Objective>,
    pub online: Siamese,
    /// The momentum network (encoder and projector), never touched by backprop.
    pub target: Option<Siamese>,
    optim: Optimisers,
    device: Device,
    /// Projection losses only: each batch spread over several devices.
    parallel: Option<DataParallel>,
}

impl TwoViewLearner {
    pub fn new(
        objective: Arc<Objective>,
        spec: &EncoderSpec,
        projector: &ProjectorConfig,
        predictor_hidden: usize,
        recipe: &TrainConfig,
        device: &Device,
    ) -> Self {
        let heads = |predictor: bool| SiameseHeads {
            projector: ProjectionMlp::new(
                spec.feature_dim(),
                projector.hidden,
                projector.dim,
                projector.layers,
                device,
            ),
            predictor: predictor.then(|| {
                ProjectionMlp::new(projector.dim, predictor_hidden, projector.dim, 2, device)
            }),
        };
        let predicts = matches!(*objective, Objective::Prediction(_));
        let online = Siamese {
            encoder: spec.init(device),
            heads: heads(predicts),
        };
        // The target starts as a copy of the online encoder and projector (its own parameter ids).
        let target = match objective.as_ref() {
            Objective::Prediction(p) if p.target_momentum().is_some() => {
                let fresh = Siamese {
                    encoder: spec.init(device),
                    heads: heads(false),
                };
                Some(ema_target(fresh, &online, 0.0))
            }
            _ => None,
        };
        Self {
            objective,
            online,
            target,
            optim: Optimisers::new(recipe),
            device: device.clone(),
            parallel: None,
        }
        .with_data_parallel(crate::device::data_parallel())
    }

    /// Spread the batches of a projection loss over `parallel`'s devices (the model must be on
    /// the first). Prediction losses train on the first device alone, with a warning.
    pub fn with_data_parallel(mut self, parallel: Option<DataParallel>) -> Self {
        if parallel.is_some() && matches!(*self.objective, Objective::Prediction(_)) {
            // Across ranks alone, the per-pair loss needs no gathering: the optimiser's
            // all-reduce of the gradients is exact.
            if crate::device::several_devices() {
                crate::device::warn_first_device_only("a method with a predictor");
            }
            return self;
        }
        if let Some(p) = &parallel {
            self.device = p.main().clone();
        }
        self.parallel = parallel;
        self
    }

    /// A projection loss over several devices, with the gradient of the global batch. Every
    /// device projects its shard; the projections are all-gathered on the first device, where
    /// the loss over the whole batch (every device's negatives) gives the gradient of each
    /// projection; each device backpropagates its rows of it, and the parameter gradients are
    /// all-reduced.
    fn parallel_step(
        &mut self,
        parallel: &DataParallel,
        loss_fn: &dyn ProjectionLoss,
        ex: &Examples,
        lr: f64,
    ) -> StepStats {
        let n = ex.labels.len();
        let ranges = parallel.shard_ranges(n);
        let projected = parallel.map(&self.online, |i, replica: Siamese, device| {
            let (views, _) = to_tensors(&ex.shard(ranges[i].clone()), device);
            let projections = replica.project(views);
            (replica, projections)
        });
        let parts: Vec<Tensor<2>> = projected.iter().map(|(_, p)| p.clone()).collect();
        // Every rank's projections too: each rank computes the loss over the global batch.
        let (gathered, own_rows) = gather_rows_over_ranks(gather_on(&parts, parallel.main()));
        let gathered = gathered.require_grad();
        let (z1, z2) = split_pairs(gathered.clone());
        let (loss, hits) = loss_fn.loss(z1, z2);
        let loss_value: f32 = loss.clone().into_scalar();
        if !loss_value.is_finite() {
            return StepStats::diverged(loss_value);
        }
        let upstream = gathered
            .grad(&loss.backward())
            .expect("the gathered projections take part in the loss")
            .narrow(0, own_rows.start, own_rows.len());
        let rows: Vec<usize> = ranges.iter().map(|r| 2 * r.len()).collect();
        let upstream = parallel.scatter_rows(upstream, &rows);
        let shards: Vec<_> = projected.into_iter().zip(upstream).collect();
        let grads = parallel.run(shards, |_, ((replica, projections), upstream), _| {
            // d(sum(p * g))/dp = g: backpropagates this device's rows of the loss gradient.
            let surrogate = (projections * upstream).sum();
            let grads = backward(surrogate, (&replica.encoder, &replica.heads));
            (replica, grads)
        });
        let (replicas, grads): (Vec<Siamese>, Vec<_>) = grads.into_iter().unzip();
        let first = replicas.into_iter().next().expect("one shard per device");
        // The upstream gradient is already that of the global mean: the shards add up.
        let ones = vec![1.0; grads.len()];
        let grads = parallel.all_reduce_parts((&first.encoder, &first.heads), grads, &ones);
        self.optim.gradients_are_global();
        let Siamese { encoder, heads } = first;
        let (encoder, heads) = self.optim.apply((encoder, heads), grads, (lr, lr));
        self.online = Siamese { encoder, heads };
        StepStats {
            loss: loss_value,
            hits,
            counted: 2 * n,
        }
    }

    /// The loss of one batch on one device, and how many views found their partner.
    fn loss(&self, views: Tensor<4>) -> (Tensor<1>, usize) {
        let projections = self.online.project(views.clone());
        match self.objective.as_ref() {
            Objective::Projections(loss) => {
                let (z1, z2) = split_pairs(projections);
                loss.loss(z1, z2)
            }
            Objective::Prediction(loss) => {
                // The target branch: an EMA network's projections, or the online ones.
                let (predictions, targets) = match &self.target {
                    Some(target) => (self.online.predict(projections), target.project(views)),
                    None => (self.online.predict(projections.clone()), projections),
                };
                let (p1, p2) = split_pairs(predictions);
                let (t1, t2) = split_pairs(targets.detach());
                let hits = partner_hits(p1.clone().detach(), t2.clone())
                    + partner_hits(p2.clone().detach(), t1.clone());
                (loss.loss(p1, p2, t1, t2), hits)
            }
        }
    }
}

/// The target's EMA update: its encoder and projector move to `momentum` times themselves plus
/// `1 - momentum` times the online network's (0 copies the online network). The result takes
/// no gradients.
pub fn ema_target(target: Siamese, online: &Siamese, momentum: f64) -> Siamese {
    // Both online parts are read before the target is touched: burn initialises parameters
    // lazily, on first read, so this order fixes which random numbers each part gets.
    let encoder = ema::snapshot(&online.encoder);
    let projector = ema::snapshot(&online.heads.projector);
    let Siamese { encoder: te, heads } = target;
    Siamese {
        encoder: ema::blend(te, encoder, momentum),
        heads: SiameseHeads {
            projector: ema::blend(heads.projector, projector, momentum),
            predictor: None,
        },
    }
}

/// The first and second view of every pair, from rows stored pairwise (`[2n, d]`).
pub fn split_pairs(x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let [rows, d] = x.dims();
    let n = rows / 2;
    let pairs = x.reshape([n, 2, d]);
    (
        pairs.clone().narrow(1, 0, 1).reshape([n, d]),
        pairs.narrow(1, 1, 1).reshape([n, d]),
    )
}

/// How many of the 2n views of `z1`, `z2` (row i of each: two views of image i) have their
/// partner as their nearest (cosine) among the other view's rows.
pub fn retrieval_hits(z1: &Tensor<2>, z2: &Tensor<2>) -> usize {
    let (a, b) = (z1.clone().detach(), z2.clone().detach());
    partner_hits(a.clone(), b.clone()) + partner_hits(b, a)
}

/// How many rows of `a` have their own row of `b` as the most similar (cosine) row of `b`.
pub fn partner_hits(a: Tensor<2>, b: Tensor<2>) -> usize {
    let [n, _] = a.dims();
    let device = a.device();
    let similarity = l2_normalise(a).matmul(l2_normalise(b).transpose());
    let own = Tensor::<1, Int>::from_data(
        TensorData::new((0..n as i64).collect::<Vec<_>>(), [n]),
        &device,
    );
    let hits: i64 = similarity
        .argmax(1)
        .reshape([n])
        .equal(own)
        .int()
        .sum()
        .into_scalar();
    hits as usize
}

impl Learner for TwoViewLearner {
    type Batch = Examples;
    fn inputs(&self, ex: &Examples) -> usize {
        ex.num_views()
    }
    fn step(&mut self, ex: &Examples, lr: f64, progress: f64) -> StepStats {
        let n = ex.labels.len();
        let objective = self.objective.clone();
        if let (Some(parallel), Objective::Projections(loss)) =
            (self.parallel.clone(), objective.as_ref())
            && n >= parallel.devices().len()
        {
            return self.parallel_step(&parallel, loss.as_ref(), ex, lr);
        }
        let (views, _) = to_tensors(ex, &self.device);
        let (loss, hits) = self.loss(views);
        let loss_value = self.optim.global_loss(loss.clone().into_scalar(), n);
        if !loss_value.is_finite() {
            return StepStats::diverged(loss_value);
        }
        let Siamese { encoder, heads } = self.online.clone();
        let (encoder, heads) = self.optim.step(loss, (encoder, heads), (lr, lr));
        self.online = Siamese { encoder, heads };
        if let (Some(target), Objective::Prediction(loss)) =
            (self.target.take(), objective.as_ref())
        {
            let base = loss.target_momentum().expect("a target has a momentum");
            let momentum = ema::cosine_momentum(base, progress);
            self.target = Some(ema_target(target, &self.online, momentum));
        }
        StepStats {
            loss: loss_value,
            hits,
            counted: 2 * n,
        }
    }

    fn save_parts(&self) -> Result<[Vec<u8>; 3], String> {
        let state = TwoViewState {
            online: self.online.clone(),
            target: self.target.clone(),
        };
        self.optim.parts(&state)
    }

    fn load_parts(&mut self, parts: [Vec<u8>; 3]) -> Result<(), (&'static str, String)> {
        let mut state = TwoViewState {
            online: self.online.clone(),
            target: self.target.clone(),
        };
        self.optim.load(&mut state, parts)?;
        self.online = state.online;
        self.target = state.target.map(|t| t.no_grad());
        Ok(())
    }
}

impl ImageLearner for TwoViewLearner {
    fn encoder(&self) -> Encoder {
        self.online.encoder.clone()
    }
}

/// The pretext accuracy finds each view's partner among a batch of this many images at least
/// (256 at 32 pixels, as before larger images were read).
const PAIRS_BATCH_MIN: usize = 64;

impl PretrainLearner for TwoViewLearner {
    fn pretext_accuracy(
        &self,
        test: &ImageSet,
        normalizer: &Normalizer,
        task: &dyn Task,
    ) -> Option<f64> {
        Some(pair_retrieval(&self.online.encoder, test, normalizer, task))
    }
}

/// [`evaluate_pairs`] among batches of at least [`PAIRS_BATCH_MIN`] held-out images: the
/// pretext accuracy of every method that makes two views of each image.
pub fn pair_retrieval(
    encoder: &Encoder,
    test: &ImageSet,
    normalizer: &Normalizer,
    task: &dyn Task,
) -> f64 {
    let batch = eval_batch(test.shape()).max(PAIRS_BATCH_MIN);
    evaluate_pairs(encoder, test, normalizer, task, batch)
}

/// Share of held-out images whose second view's encoder feature is the nearest (cosine) to the
/// first view's among `batch_size` images: the pretext accuracy of a two-view method.
pub fn evaluate_pairs(
    encoder: &Encoder,
    set: &ImageSet,
    normalizer: &Normalizer,
    task: &dyn Task,
    batch_size: usize,
) -> f64 {
    let encoder = encoder.valid();
    let device = infer_device();
    let plan = BatchPlan::for_evaluation(set, normalizer, task, batch_size);
    let (mut hits, mut seen) = (0usize, 0usize);
    let indices: Vec<usize> = (0..set.len).collect();
    for chunk in indices.chunks(batch_size.max(2)) {
        if chunk.len() < 2 {
            continue;
        }
        let ex = plan.make(chunk).expect(IN_MEMORY);
        let (views, _) = to_tensors(&ex, &device);
        let (f1, f2) = split_pairs(encoder.forward(views));
        hits += partner_hits(f1, f2);
        seen += chunk.len();
    }
    hits as f64 / seen.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::Distribution;

    use crate::device::data_parallel::largest_difference;
    use crate::losses::{byol_loss, negative_cosine, nt_xent};
    use crate::methods::{byol, simclr, simsiam};
    use crate::models::{Arch, Stem};
    use crate::train::train_device;

    fn new_learner(kind: MethodKind, device: &Device) -> TwoViewLearner {
        let objective = match kind {
            MethodKind::Simclr => simclr::objective(&small()),
            MethodKind::Byol => byol::objective(&small()),
            MethodKind::Simsiam => simsiam::objective(&small()),
            other => panic!("{other} is not a two-view method"),
        };
        let (projector, predictor) = (small().projector(), small().predictor_hidden);
        TwoViewLearner::new(
            Arc::new(objective),
            &spec(),
            &projector,
            predictor,
            &TrainConfig::default(),
            device,
        )
    }

    fn spec() -> EncoderSpec {
        EncoderSpec {
            arch: Arch::Convnet4,
            width: 2,
            in_channels: 1,
            mean: vec![0.0],
            std: vec![1.0],
            stem: Stem::Cifar,
            vit: None,
            input_size: None,
            start: None,
        }
    }

    fn small() -> SiameseConfig {
        SiameseConfig {
            projector_hidden: 8,
            projection_dim: 4,
            predictor_hidden: 8,
            ..SiameseConfig::default()
        }
    }

    fn values(m: &impl Module) -> Vec<f32> {
        struct Values(Vec<f32>);
        impl ModuleVisitor for Values {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let v = param.val().into_data().convert::<f32>();
                self.0.extend(v.try_to_vec::<f32>().unwrap());
            }
        }
        let mut flat = Values(Vec::new());
        m.visit(&mut flat);
        flat.0
    }

    /// For every value of `m`'s float tensors: whether it is a trained parameter (not a
    /// BatchNorm statistic).
    fn trainable(m: &impl Module) -> Vec<bool> {
        struct Mask(Vec<bool>);
        impl ModuleVisitor for Mask {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let value = param.val();
                let n = value.shape().num_elements();
                self.0
                    .extend(std::iter::repeat_n(value.is_require_grad(), n));
            }
        }
        let mut mask = Mask(Vec::new());
        m.visit(&mut mask);
        mask.0
    }

    fn batch(n: usize) -> Examples {
        let tensor = Tensor::<1>::random([2 * n * 64], Distribution::Default, &Device::flex());
        Examples {
            views: tensor.into_data().try_to_vec::<f32>().unwrap(),
            view_shape: [1, 8, 8],
            labels: vec![0; n],
            arity: 2,
            groups: Vec::new(),
        }
    }

    /// SimCLR over two devices (here the CPU twice) with its all-gathered negatives trains like
    /// one device with the same global batch: the reference projects each half on its own (as
    /// each device's BatchNorm does), takes NT-Xent over all of it and steps once.
    #[test]
    fn simclr_on_two_devices_matches_one_device_with_the_global_batch() {
        let device = train_device();
        device.seed(3);
        let mut single = new_learner(MethodKind::Simclr, &device);
        let mut parallel = new_learner(MethodKind::Simclr, &device).with_data_parallel(Some(
            DataParallel::new(vec![device.clone(), device.clone()]),
        ));
        parallel.online = single.online.clone();
        let start = values(&single.online);
        for step in 0..3 {
            let ex = batch(6);
            parallel.step(&ex, 0.1, 0.0);
            let halves: Vec<Tensor<2>> = [0..3, 3..6]
                .into_iter()
                .map(|r| single.online.project(to_tensors(&ex.shard(r), &device).0))
                .collect();
            let (z1, z2) = split_pairs(Tensor::cat(halves, 0));
            let (loss, _, _) = nt_xent(z1, z2, small().temperature);
            let Siamese { encoder, heads } = single.online.clone();
            let (encoder, heads) = single.optim.step(loss, (encoder, heads), (0.1, 0.1));
            single.online = Siamese { encoder, heads };
            let mask = trainable(&single.online);
            let trained = |m: &Siamese| -> Vec<f32> {
                values(m)
                    .into_iter()
                    .zip(&mask)
                    .filter_map(|(v, t)| t.then_some(v))
                    .collect()
            };
            let worst = largest_difference(&trained(&parallel.online), &trained(&single.online));
            assert!(worst < 1e-5, "step {step}: parameters differ by {worst}");
        }
        let moved = largest_difference(&values(&parallel.online), &start);
        assert!(moved > 1e-3, "training moved nothing ({moved})");
    }

    #[test]
    fn ema_update_blends_every_tensor() {
        let device = train_device();
        let learner = new_learner(MethodKind::Byol, &device);
        let target = learner.target.clone().unwrap();
        // The target starts as an exact copy of the online encoder and projector.
        let online_part = |s: &Siamese| [values(&s.encoder), values(&s.heads.projector)].concat();
        assert_eq!(online_part(&target), online_part(&learner.online));
        // Against a different network, m = 0.75 lands a quarter of the way there.
        let other = new_learner(MethodKind::Byol, &device);
        let before = online_part(&target);
        let toward = online_part(&other.online);
        let blended = online_part(&ema_target(target, &other.online, 0.75));
        assert_eq!(blended.len(), before.len());
        let mut moved = 0;
        for ((b, t), got) in before.iter().zip(&toward).zip(&blended) {
            assert!(
                (got - (0.75 * b + 0.25 * t)).abs() < 1e-5,
                "{got} vs {b} {t}"
            );
            moved += (b != t) as usize;
        }
        assert!(moved > 0);
    }

    #[test]
    fn backprop_never_reaches_the_target_which_moves_only_by_ema() {
        let device = train_device();
        let mut learner = new_learner(MethodKind::Byol, &device);
        let ex = batch(6);
        // No gradient for any target parameter.
        let (views, _) = to_tensors(&ex, &device);
        let target = learner.target.clone().unwrap();
        let (p1, p2) = split_pairs(
            learner
                .online
                .predict(learner.online.project(views.clone())),
        );
        let (t1, t2) = split_pairs(target.project(views).detach());
        let mut grads = (byol_loss(p1, t2) + byol_loss(p2, t1)).backward();
        assert!(GradientsParams::from_module(&mut grads, &target).is_empty());
        assert!(!GradientsParams::from_module(&mut grads, &learner.online.encoder).is_empty());
        // After a step every parameter of the target is exactly m * old target + (1 - m) * new
        // online. (BatchNorm's running statistics also follow the target's own forward passes.)
        let trainable = [
            trainable(&learner.online.encoder),
            trainable(&learner.online.heads.projector),
        ]
        .concat();
        let before = [values(&target.encoder), values(&target.heads.projector)].concat();
        learner.step(&ex, 0.1, 0.0);
        let online = [
            values(&learner.online.encoder),
            values(&learner.online.heads.projector),
        ]
        .concat();
        let t = learner.target.as_ref().unwrap();
        let after = [values(&t.encoder), values(&t.heads.projector)].concat();
        let m = 0.99f32;
        let mut changed = 0;
        assert_eq!(trainable.len(), before.len());
        for (((b, o), a), _) in before
            .iter()
            .zip(&online)
            .zip(&after)
            .zip(&trainable)
            .filter(|(_, t)| **t)
        {
            assert!((a - (m * b + (1.0 - m) * o)).abs() < 1e-5, "{a} vs {b} {o}");
            changed += ((a - b).abs() > 1e-9) as usize;
        }
        assert!(changed > 0, "the EMA moved the target");
    }

    /// Gradient values of every parameter of `m` that has one, in visiting order.
    struct GradValues<'a>(&'a GradientsParams, Vec<f32>);
    impl ModuleVisitor for GradValues<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1
                    .extend(g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
            }
        }
    }

    #[test]
    fn simsiam_stops_the_gradient_through_the_target_branch() {
        let device = train_device();
        let learner = new_learner(MethodKind::Simsiam, &device);
        let (views, _) = to_tensors(&batch(4), &device);
        let gradient = |stop: bool| {
            let z = learner.online.project(views.clone());
            let (_, z2) = split_pairs(z.clone());
            let (p1, _) = split_pairs(learner.online.predict(z));
            let z2 = if stop { z2.detach() } else { z2 };
            let mut grads = negative_cosine(p1, z2).backward();
            let grads = GradientsParams::from_module(&mut grads, &learner.online.encoder);
            let mut values = GradValues(&grads, Vec::new());
            learner.online.encoder.visit(&mut values);
            values.1
        };
        // With the target branch detached, the gradient is that of the prediction side alone,
        // so it differs from the gradient through both branches.
        let (stopped, both) = (gradient(true), gradient(false));
        assert_eq!(stopped.len(), both.len());
        assert!(!stopped.is_empty());
        let differ = stopped
            .iter()
            .zip(&both)
            .filter(|(a, b)| (*a - *b).abs() > 1e-7)
            .count();
        assert!(differ > stopped.len() / 10, "{differ} of {}", stopped.len());
        // And it is the same as against a constant copy of the target: nothing flows through it.
        let z = learner.online.project(views.clone());
        let (_, z2) = split_pairs(z.clone());
        let constant = Tensor::<2>::from_data(z2.into_data(), &device);
        let (p1, _) = split_pairs(learner.online.predict(z));
        let mut grads = negative_cosine(p1, constant).backward();
        let grads = GradientsParams::from_module(&mut grads, &learner.online.encoder);
        let mut values = GradValues(&grads, Vec::new());
        learner.online.encoder.visit(&mut values);
        for (a, b) in stopped.iter().zip(&values.1) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn each_method_steps_with_a_finite_loss_and_counts_pairs() {
        let device = train_device();
        for kind in [MethodKind::Simclr, MethodKind::Byol, MethodKind::Simsiam] {
            let mut learner = new_learner(kind, &device);
            let stats = learner.step(&batch(5), 0.05, 0.3);
            assert!(stats.loss.is_finite(), "{kind:?}");
            assert_eq!(stats.counted, 10);
            assert!(stats.hits <= 10);
            let parts = learner.save_parts().unwrap();
            learner.load_parts(parts).unwrap();
        }
    }
    use rand::SeedableRng;

    #[test]
    fn views_differ_keep_the_shape_and_stay_in_range() {
        let shape = [3, 16, 16];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let image: Vec<f32> = (0..3 * 256).map(|_| rng.random::<f32>()).collect();
        let task = TwoViews {
            name: "simclr",
            augment: ViewAugment::default(),
        };
        let mut out = Examples::new(shape, 2);
        task.examples(&image, shape, None, &mut rng, &mut out);
        assert_eq!(out.views.len(), 2 * 3 * 256);
        assert_eq!(out.labels, vec![0]);
        let (a, b) = out.views.split_at(3 * 256);
        assert_ne!(a, b);
        assert!(out.views.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn with_every_augmentation_off_a_view_is_the_image() {
        let shape = [3, 8, 8];
        let image: Vec<f32> = (0..3 * 64).map(|i| (i % 7) as f32 / 7.0).collect();
        let off = ViewAugment {
            crop_scale: [1.0, 1.0],
            crop_ratio: [1.0, 1.0],
            hflip: 0.0,
            jitter_prob: 0.0,
            grayscale: 0.0,
            blur: [0.0, 0.0],
            solarise: [0.0, 0.0],
            ..ViewAugment::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(off.view(&image, shape, 0, &mut rng), image);
        let always = ViewAugment {
            solarise: [0.0, 1.0],
            ..off.clone()
        };
        let second = always.view(&image, shape, 1, &mut rng);
        assert!(second.iter().zip(&image).all(|(s, i)| if *i >= 0.5 {
            (s - (1.0 - i)).abs() < 1e-6
        } else {
            s == i
        }));
        assert_eq!(always.view(&image, shape, 0, &mut rng), image);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let bad = ViewAugment {
            crop_scale: [0.5, 0.2],
            ..ViewAugment::default()
        };
        assert!(
            bad.validate("task.views")
                .unwrap_err()
                .contains("task.views.crop_scale")
        );
        let bad = SiameseConfig {
            momentum: 1.0,
            ..SiameseConfig::default()
        };
        assert!(
            bad.validate("task.siamese")
                .unwrap_err()
                .contains("task.siamese.momentum")
        );
    }
}
