//! The one training loop: a [`Task`] makes examples from images, the classifier (encoder +
//! head) is trained on them with cross-entropy. Used for pretraining, fine-tuning and scratch.

mod across_ranks;
pub mod checkpoint;
pub mod config;
pub mod monitor;
pub mod progress;
pub mod schedule;
mod training_loop;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor, TensorData};

use crate::data::examples::{Examples, Task, ViewGroup};
use crate::data::loader::{BatchPlan, ImageBatches, Normalizer};
use crate::data::source::ImageSource;
use crate::data::{DataError, ImageSet};
pub use crate::device::data_parallel::{self, DataParallel};
use crate::device::rank_grads::sum_over_ranks;
use crate::device::ranks;
use crate::losses::cross_entropy;
use crate::models::{Classifier, Encoder};
use checkpoint::CheckpointError;
pub use config::{OptimizerKind, TrainConfig};
pub use training_loop::{LearnerMonitor, LoopSettings, RunStats, run_loop};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: {problem}")]
    Incompatible { path: PathBuf, problem: String },
    #[error(
        "loss is {value} at step {step} (epoch {epoch}); stopped. The last good checkpoint is kept{where_}. Lower the learning rate and resume or restart."
    )]
    Diverged {
        value: f32,
        step: usize,
        epoch: usize,
        where_: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "interrupted at step {step}; checkpoint saved to {path}; continue with `pretext resume`"
    )]
    Interrupted { step: usize, path: PathBuf },
    #[error("interrupted at step {step}")]
    Stopped { step: usize },
    /// Training across ranks cannot go on (the message says why).
    #[error("{0}")]
    Ranks(String),
    #[error(
        "another rank could not make its share of batch {batch} of epoch {epoch} (its own error says why); stopped at step {step}{where_}"
    )]
    OtherRankFailed {
        batch: usize,
        epoch: usize,
        step: usize,
        where_: String,
    },
    #[error(
        "{source}; stopped at step {step}{where_} (with --skip-corrupt such files are skipped and listed in skipped.txt)"
    )]
    Data {
        source: DataError,
        step: usize,
        where_: String,
    },
}

/// What the all-reduce of a step's loss is called in a timeout message.
const LOSS_ALL_REDUCE: &str = "all-reduce of the loss";

static STOP: AtomicBool = AtomicBool::new(false);

/// Ask a running training loop to checkpoint and stop after its current step (Ctrl-C).
/// Returns whether a stop had already been asked for.
pub fn request_stop() -> bool {
    STOP.swap(true, Ordering::SeqCst)
}

/// Whether Ctrl-C asked the process to stop (for loops outside training, such as a study's).
pub fn stop_was_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// A stop was asked for, or the test hook `PRETEXT_INTERRUPT_AT_STEP=N` fires at step N.
fn stop_requested(step: usize) -> bool {
    static HOOK: OnceLock<Option<usize>> = OnceLock::new();
    STOP.load(Ordering::SeqCst)
        || *HOOK.get_or_init(|| env_number("PRETEXT_INTERRUPT_AT_STEP")) == Some(step)
}

/// A numeric test-hook variable, read once per process.
fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

pub use crate::device::{infer_device, train_device};

/// One training run's inputs.
pub struct Fit<'a> {
    pub set: &'a dyn ImageSource,
    pub normalizer: &'a Normalizer,
    pub task: &'a dyn Task,
    pub recipe: &'a TrainConfig,
    /// Encoder learning rate as a fraction of the head's (1 for pretraining and scratch).
    pub encoder_lr_scale: f64,
    /// Where checkpoints and `metrics.jsonl` go; `None` for short in-memory runs (transfer).
    pub run_dir: Option<&'a Path>,
    /// Checked against a checkpoint before resuming it.
    pub model_tag: String,
    pub label: String,
    pub quiet: bool,
    /// Also checkpoint inside an epoch when this much time has passed since the last save.
    pub checkpoint_every: Option<std::time::Duration>,
    /// Measures the encoder after every epoch (k-NN accuracy, collapse); its fields join the
    /// epoch's record in `metrics.jsonl` and the progress line.
    pub monitor: Option<&'a Monitor<'a>>,
    /// Where a streamed set's files are decoded (see [`BatchPlan::pool`]).
    pub decode_pool: Option<&'a rayon::ThreadPool>,
}

/// A function of the encoder giving named numbers, run after every epoch.
pub type Monitor<'a> = dyn Fn(&Encoder) -> serde_json::Map<String, serde_json::Value> + Sync + 'a;

/// One optimiser step's numbers: the loss, and how many of `counted` predictions were right
/// (classes for a classifier, partners for a siamese method).
pub struct StepStats {
    pub loss: f32,
    pub hits: usize,
    pub counted: usize,
}

/// What the training loop trains: a model with its two optimisers (encoder, heads), one step at
/// a time. The loop owns the schedule, checkpoints, resumption and logging.
pub trait Learner {
    /// What one step trains on.
    type Batch;
    /// One optimiser step on `batch` at learning rate `lr`, `progress` (0 to 1) of the way
    /// through training. A non-finite loss is returned before anything is updated.
    fn step(&mut self, batch: &Self::Batch, lr: f64, progress: f64) -> StepStats;
    /// How many inputs (views, sequences) the batch puts through the model, for throughput.
    fn inputs(&self, batch: &Self::Batch) -> usize;
    /// The model record (BatchNorm statistics folded in) and the two optimiser states.
    fn save_parts(&self) -> Result<[Vec<u8>; 3], String>;
    /// Restore what [`Learner::save_parts`] wrote; the error names the part.
    fn load_parts(&mut self, parts: [Vec<u8>; 3]) -> Result<(), (&'static str, String)>;
}

/// A learner of an image encoder.
pub trait ImageLearner: Learner<Batch = Examples> {
    /// The encoder as it stands.
    fn encoder(&self) -> Encoder;
}

impl StepStats {
    /// A non-finite loss: nothing was updated.
    pub fn diverged(loss: f32) -> Self {
        Self {
            loss,
            hits: 0,
            counted: 0,
        }
    }
}

/// How many rows of `logits` `[n, classes]` have their largest value at the target class.
pub fn correct_predictions(logits: Tensor<2>, targets: Tensor<1, Int>) -> usize {
    let n = targets.dims()[0];
    let correct: i64 = logits
        .argmax(1)
        .reshape([n])
        .equal(targets)
        .int()
        .sum()
        .into_scalar();
    correct as usize
}

/// A learner's two optimisers: the encoder's and the heads', so that the encoder can learn at a
/// fraction of the heads' rate (fine-tuning) and both states are checkpointed.
#[derive(Clone)]
pub struct Optimisers {
    encoder: ModuleOptimizer,
    heads: ModuleOptimizer,
    /// What this rank's gradients are multiplied by before they are summed over the ranks of a
    /// run, set each step by [`Optimisers::global_loss`] or [`Optimisers::gradients_are_global`];
    /// an equal share when neither was called.
    rank_scale: Option<f32>,
}

impl Optimisers {
    pub fn new(recipe: &TrainConfig) -> Self {
        Self {
            encoder: build_optimizer(recipe),
            heads: build_optimizer(recipe),
            rank_scale: None,
        }
    }

    /// The step's loss over the ranks of a run: the mean of the ranks' `local` losses weighted
    /// by their `terms` (the examples or tokens each loss averages), which is the loss of the
    /// global batch; it also makes this rank's gradients count by its share of the terms. A
    /// non-finite loss on any rank makes it non-finite on all, so that they stop together.
    /// Alone: `local`.
    pub fn global_loss(&mut self, local: f32, terms: usize) -> f32 {
        if ranks::ranks().is_none() {
            return local;
        }
        let mut sums = [local as f64 * terms as f64, terms as f64];
        ranks::sum_f64(LOSS_ALL_REDUCE, &mut sums);
        self.rank_scale = Some((terms as f64 / sums[1].max(1.0)) as f32);
        (sums[0] / sums[1].max(1.0)) as f32
    }

    /// This step's gradients are already those of the global batch's loss in parts (each rank
    /// backpropagated its rows of it): the ranks' parts add up.
    pub fn gradients_are_global(&mut self) {
        self.rank_scale = Some(1.0);
    }

    /// Backpropagate `loss` and step the encoder's and the heads' optimisers at their learning
    /// rates; returns the updated (encoder, heads).
    pub fn step<E: Module, H: Module>(
        &mut self,
        loss: Tensor<1>,
        (encoder, heads): (E, H),
        (encoder_lr, head_lr): (f64, f64),
    ) -> (E, H) {
        let grads = backward(loss, (&encoder, &heads));
        self.apply((encoder, heads), grads, (encoder_lr, head_lr))
    }

    /// Step the encoder's and the heads' optimisers with gradients already computed (by
    /// [`backward`], or all-reduced over devices), summed over the ranks of a run first;
    /// returns the updated (encoder, heads). Every rank then holds the same parameters.
    pub fn apply<E: Module, H: Module>(
        &mut self,
        (encoder, heads): (E, H),
        grads: (GradientsParams, GradientsParams),
        (encoder_lr, head_lr): (f64, f64),
    ) -> (E, H) {
        let scale = self
            .rank_scale
            .take()
            .unwrap_or(1.0 / ranks::world() as f32);
        let (encoder_grads, head_grads) = sum_over_ranks((&encoder, &heads), grads, scale);
        (
            self.encoder.step(encoder_lr, encoder, encoder_grads),
            self.heads.step(head_lr, heads, head_grads),
        )
    }

    /// `model`'s record and the two optimiser states as bytes, for a checkpoint. `valid()`
    /// folds BatchNorm's pending running-statistics update into the record; it keeps the
    /// parameter ids the optimiser state refers to.
    pub fn parts<M: Module>(&self, model: &M) -> Result<[Vec<u8>; 3], String> {
        let bytes = |r: Result<Bytes, burn::store::RecordError>| {
            r.map(|b| b.to_vec()).map_err(|e| e.to_string())
        };
        Ok([
            bytes(model.valid().into_record().into_bytes())?,
            bytes(self.encoder.into_bytes())?,
            bytes(self.heads.into_bytes())?,
        ])
    }

    /// Restore `model` and the two optimisers from what [`Optimisers::parts`] wrote; the error
    /// names the part.
    pub fn load<M: Module>(
        &mut self,
        model: &mut M,
        [m, enc, heads]: [Vec<u8>; 3],
    ) -> Result<(), (&'static str, String)> {
        *model = load_module(model.clone(), m)?;
        self.encoder = load_optimizer(&self.encoder, enc)?;
        self.heads = load_optimizer(&self.heads, heads)?;
        Ok(())
    }
}

/// Backpropagate `loss` and split the gradients into the encoder's and the heads'.
pub fn backward<E: Module, H: Module>(
    loss: Tensor<1>,
    (encoder, heads): (&E, &H),
) -> (GradientsParams, GradientsParams) {
    let mut grads = loss.backward();
    (
        GradientsParams::from_module(&mut grads, encoder),
        GradientsParams::from_module(&mut grads, heads),
    )
}

/// Encoder + classification head, trained with cross-entropy on the task's labels.
pub struct ClassifierLearner {
    pub model: Classifier,
    optim: Optimisers,
    encoder_lr_scale: f64,
    device: Device,
    parallel: Option<DataParallel>,
}

impl ClassifierLearner {
    pub fn new(model: Classifier, recipe: &TrainConfig, encoder_lr_scale: f64) -> Self {
        Self {
            model,
            optim: Optimisers::new(recipe),
            encoder_lr_scale,
            device: train_device(),
            parallel: crate::device::data_parallel(),
        }
    }

    /// Spread every batch over `parallel`'s devices (the model must be on its first device).
    pub fn with_data_parallel(mut self, parallel: DataParallel) -> Self {
        self.device = parallel.main().clone();
        self.parallel = Some(parallel);
        self
    }

    /// One step with the batch cut into a shard per device and the gradients all-reduced.
    fn parallel_step(&mut self, parallel: &DataParallel, ex: &Examples, lr: f64) -> StepStats {
        let ranges = parallel.shard_ranges(ex.labels.len());
        let shards = parallel.map(&self.model, |i, replica: Classifier, device| {
            let shard = ex.shard(ranges[i].clone());
            let (views, labels) = to_tensors(&shard, device);
            let logits = replica.forward(views, shard.arity);
            let loss = cross_entropy(logits.clone(), labels.clone());
            let loss_value: f32 = loss.clone().into_scalar();
            let hits = correct_predictions(logits, labels);
            let grads = backward(loss, (&replica.encoder, &replica.head));
            (replica, loss_value, hits, grads)
        });
        let weights = data_parallel::shard_weights(&ranges);
        let loss: f32 = shards
            .iter()
            .zip(&weights)
            .map(|(s, w)| s.1 * *w as f32)
            .sum();
        let loss = self.optim.global_loss(loss, ex.labels.len());
        if !loss.is_finite() {
            return StepStats::diverged(loss);
        }
        let hits = shards.iter().map(|s| s.2).sum();
        let (replicas, grads): (Vec<Classifier>, Vec<_>) =
            shards.into_iter().map(|s| (s.0, s.3)).unzip();
        let first = replicas.into_iter().next().expect("one shard per device");
        let grads = parallel.all_reduce_parts((&first.encoder, &first.head), grads, &weights);
        let Classifier { encoder, head } = first;
        let (encoder, head) =
            self.optim
                .apply((encoder, head), grads, (lr * self.encoder_lr_scale, lr));
        self.model = Classifier { encoder, head };
        StepStats {
            loss,
            hits,
            counted: ex.labels.len(),
        }
    }
}

impl Learner for ClassifierLearner {
    type Batch = Examples;
    fn inputs(&self, ex: &Examples) -> usize {
        ex.num_views()
    }
    fn step(&mut self, ex: &Examples, lr: f64, _progress: f64) -> StepStats {
        // One device (a rank's own) needs no shards: the optimiser sums over the ranks.
        if let Some(parallel) = self.parallel.clone()
            && parallel.devices().len() > 1
            && ex.labels.len() >= parallel.devices().len()
        {
            return self.parallel_step(&parallel, ex, lr);
        }
        let (views, labels) = to_tensors(ex, &self.device);
        let logits = self.model.forward(views, ex.arity);
        let loss = cross_entropy(logits.clone(), labels.clone());
        let loss_value = self
            .optim
            .global_loss(loss.clone().into_scalar(), ex.labels.len());
        if !loss_value.is_finite() {
            return StepStats::diverged(loss_value);
        }
        let Classifier { encoder, head } = self.model.clone();
        let (encoder, head) =
            self.optim
                .step(loss, (encoder, head), (lr * self.encoder_lr_scale, lr));
        self.model = Classifier { encoder, head };
        StepStats {
            loss: loss_value,
            hits: correct_predictions(logits, labels),
            counted: ex.labels.len(),
        }
    }

    fn save_parts(&self) -> Result<[Vec<u8>; 3], String> {
        self.optim.parts(&self.model)
    }

    fn load_parts(&mut self, parts: [Vec<u8>; 3]) -> Result<(), (&'static str, String)> {
        self.optim.load(&mut self.model, parts)
    }
}

impl ImageLearner for ClassifierLearner {
    fn encoder(&self) -> Encoder {
        self.model.encoder.clone()
    }
}

pub fn load_module<M: Module>(model: M, bytes: Vec<u8>) -> Result<M, (&'static str, String)> {
    // A checkpoint of another precision (`--precision`) loads in this run's.
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| ("model", e.to_string()))?
        .cast_to_module_dtype();
    model
        .try_load_record(record)
        .map_err(|e| ("model", e.to_string()))
}

pub fn load_optimizer(
    like: &ModuleOptimizer,
    bytes: Vec<u8>,
) -> Result<ModuleOptimizer, (&'static str, String)> {
    like.clone()
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| ("optimiser state", e.to_string()))
}

pub struct FitOutcome {
    pub model: Classifier,
    pub steps: usize,
    pub final_loss: f32,
    pub seconds: f64,
    /// Views per second through the encoder, forward and backward.
    pub views_per_s: f64,
}

pub fn build_optimizer(recipe: &TrainConfig) -> ModuleOptimizer {
    match recipe.optimizer {
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum((recipe.momentum > 0.0).then(|| {
                // PyTorch's SGD has no dampening; burn's default is 0.1.
                MomentumConfig::new()
                    .with_momentum(recipe.momentum)
                    .with_dampening(0.0)
            }))
            .with_weight_decay(
                (recipe.weight_decay > 0.0)
                    .then(|| WeightDecayConfig::new(recipe.weight_decay as f32)),
            )
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_weight_decay(recipe.weight_decay as f32)
            .with_epsilon(1e-8)
            .init(),
    }
}

/// Move a batch of examples onto `device` as (views, labels).
pub fn to_tensors(ex: &Examples, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let [c, h, w] = ex.view_shape;
    let views = Tensor::<4>::from_data(
        TensorData::new(ex.views.clone(), [ex.num_views(), c, h, w]),
        device,
    );
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(ex.labels.clone(), [ex.labels.len()]),
        device,
    );
    (views, labels)
}

/// A group of views of another shape (`Examples::groups`) as one batch of images.
pub fn group_to_tensor(group: &ViewGroup, device: &Device) -> Tensor<4> {
    let [c, h, w] = group.shape;
    Tensor::<4>::from_data(
        TensorData::new(group.views.clone(), [group.len(), c, h, w]),
        device,
    )
}

/// Train `model` (on the training device) with cross-entropy on the task's labels and return
/// it. With a run directory, a checkpoint is written after every epoch and an existing one is
/// resumed.
pub fn fit(spec: &Fit, model: Classifier) -> Result<FitOutcome, TrainError> {
    let mut learner = ClassifierLearner::new(model, spec.recipe, spec.encoder_lr_scale);
    let run = fit_learner(spec, &mut learner)?;
    Ok(FitOutcome {
        model: learner.model,
        steps: run.steps,
        final_loss: run.final_loss,
        seconds: run.seconds,
        views_per_s: run.views_per_s,
    })
}

/// Train an image learner on `spec`'s images and task: [`run_loop`] over [`ImageBatches`], with
/// the monitor (if any) measuring its encoder.
pub fn fit_learner<L: ImageLearner + ?Sized>(
    spec: &Fit,
    learner: &mut L,
) -> Result<RunStats, TrainError> {
    let source = ImageBatches {
        plan: BatchPlan {
            set: spec.set,
            normalizer: spec.normalizer,
            task: spec.task,
            augment: spec.recipe.augment,
            batch_size: spec.recipe.batch_size,
            shuffle: true,
            seed: spec.recipe.seed,
            epoch: 0,
            training: true,
            pool: spec.decode_pool,
        },
    };
    let monitor = spec.monitor.map(|m| move |l: &L| m(&l.encoder()));
    let settings = LoopSettings {
        recipe: spec.recipe,
        run_dir: spec.run_dir,
        model_tag: spec.model_tag.clone(),
        label: spec.label.clone(),
        quiet: spec.quiet,
        checkpoint_every: spec.checkpoint_every,
    };
    run_loop(
        &settings,
        &source,
        learner,
        monitor
            .as_ref()
            .map(|m| m as &dyn Fn(&L) -> serde_json::Map<String, serde_json::Value>),
    )
}

/// Why evaluation over an [`ImageSet`] cannot fail: its images are decoded already.
pub(crate) use crate::data::loader::IN_MEMORY;

/// Accuracy of `model` on the examples `task` makes from `set` (no augmentation).
pub fn evaluate(
    model: &Classifier,
    set: &ImageSet,
    normalizer: &Normalizer,
    task: &dyn Task,
    batch_size: usize,
) -> f64 {
    let model = model.valid();
    let plan = BatchPlan::for_evaluation(set, normalizer, task, batch_size);
    let indices: Vec<usize> = (0..set.len).collect();
    let (mut labels, mut predicted) = (Vec::new(), Vec::new());
    for chunk in indices.chunks(batch_size.max(1)) {
        let ex = plan.make(chunk).expect(IN_MEMORY);
        predicted.extend(predict_examples(&model, &ex));
        labels.extend(ex.labels);
    }
    let correct = predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| **p as i64 == **l)
        .count();
    correct as f64 / labels.len().max(1) as f64
}

/// The class `model` predicts for every image of `set` (no augmentation; for classifiers of
/// whole images).
pub fn predict(
    model: &Classifier,
    set: &ImageSet,
    normalizer: &Normalizer,
    batch_size: usize,
) -> Vec<u32> {
    let model = model.valid();
    let plan = BatchPlan::for_evaluation(set, normalizer, &WholeImages, batch_size);
    let indices: Vec<usize> = (0..set.len).collect();
    indices
        .chunks(batch_size.max(1))
        .flat_map(|chunk| predict_examples(&model, &plan.make(chunk).expect(IN_MEMORY)))
        .collect()
}

/// Each image as it is, labelled or not: the input of [`predict`].
struct WholeImages;

impl Task for WholeImages {
    fn name(&self) -> &'static str {
        "whole images"
    }
    fn num_classes(&self) -> usize {
        0
    }
    fn examples(
        &self,
        image: &[f32],
        _: crate::data::augment::Shape,
        _: Option<u32>,
        _: &mut rand_chacha::ChaCha8Rng,
        out: &mut Examples,
    ) {
        out.views.extend_from_slice(image);
        out.labels.push(0);
    }
}

/// `model` must already be on the inference device (`valid()`).
fn predict_examples(model: &Classifier, ex: &Examples) -> Vec<u32> {
    let (views, _) = to_tensors(ex, &infer_device());
    let predicted = model
        .forward(views, ex.arity)
        .argmax(1)
        .reshape([ex.labels.len()]);
    predicted
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("class indices")
        .into_iter()
        .map(|c| c as u32)
        .collect()
}
