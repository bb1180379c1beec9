//! Run configuration: TOML deserialised into typed structs, validated before any work starts.
//! Unknown keys are errors; every validation error names its key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::Format;
use crate::data::loader::Augment;
use crate::models::{Arch, FeatureLayer, Stem};
use crate::tasks::TaskKind;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// Where the data comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A folder, or `synthetic` for the built-in data set.
    pub path: String,
    /// Forces the format instead of detecting it from the path.
    pub format: Option<Format>,
    /// Skip undecodable images with a warning instead of failing.
    pub skip_corrupt: bool,
    /// Sizes of the generated synthetic splits, and its image side.
    pub synthetic_train: usize,
    pub synthetic_test: usize,
    pub synthetic_size: usize,
    /// Side of the square images the model sees (`--image-size`). Unset: the data's own size in
    /// memory; when streaming, the first image's shorter side, at most 224.
    pub image_size: Option<usize>,
    /// Share of the shorter side evaluation's centre crop keeps (1: all of it; torchvision's
    /// 224-pixel recipe: 0.875).
    pub eval_crop: f64,
    /// Smallest share of a streamed file's area pretraining's random resized crop keeps (1: the
    /// largest square, at a random place along the longer side).
    pub crop_min_scale: f64,
    /// Whether an image folder is read on demand or decoded into memory.
    pub stream: StreamMode,
    /// `stream = "auto"` streams when the decoded training images would exceed this many MB.
    pub memory_budget_mb: u64,
    /// Threads that decode streamed images ahead of the model (0: the `--threads` count).
    pub workers: usize,
    /// Images whose header declares more pixels are refused (decompression bombs).
    pub max_image_pixels: u64,
    /// Tar shards: samples held by the shuffle buffer that each epoch's shard order streams
    /// through (larger: closer to a uniform shuffle, reads spread over more shards).
    pub shuffle_buffer: usize,
}

/// How an image folder is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// Stream when the decoded images would exceed `data.memory_budget_mb`, when
    /// `data.image_size` differs from the images' size, or when the sizes are mixed.
    #[default]
    Auto,
    Always,
    Never,
}

impl std::str::FromStr for StreamMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(StreamMode::Auto),
            "always" => Ok(StreamMode::Always),
            "never" => Ok(StreamMode::Never),
            other => Err(format!(
                "unknown stream mode `{other}` (expected auto, always or never)"
            )),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: "synthetic".into(),
            format: None,
            skip_corrupt: false,
            synthetic_train: 10_000,
            synthetic_test: 2_000,
            synthetic_size: 32,
            image_size: None,
            eval_crop: 1.0,
            crop_min_scale: 1.0,
            stream: StreamMode::Auto,
            memory_budget_mb: 2048,
            workers: 0,
            max_image_pixels: crate::data::decode::DEFAULT_MAX_PIXELS,
            shuffle_buffer: crate::data::shards::DEFAULT_SHUFFLE_BUFFER,
        }
    }
}

impl DataConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.trim().is_empty() {
            return Err(invalid("data.path", "must name a folder or `synthetic`"));
        }
        if let Some(size) = self.image_size
            && !(8..=1024).contains(&size)
        {
            return Err(invalid(
                "data.image_size",
                format!("must be between 8 and 1024, got {size}"),
            ));
        }
        if !(self.eval_crop > 0.0 && self.eval_crop <= 1.0) {
            return Err(invalid(
                "data.eval_crop",
                format!("must be in (0, 1], got {}", self.eval_crop),
            ));
        }
        if !(self.crop_min_scale > 0.0 && self.crop_min_scale <= 1.0) {
            return Err(invalid(
                "data.crop_min_scale",
                format!("must be in (0, 1], got {}", self.crop_min_scale),
            ));
        }
        if self.max_image_pixels == 0 {
            return Err(invalid("data.max_image_pixels", "must be at least 1"));
        }
        if self.shuffle_buffer == 0 {
            return Err(invalid("data.shuffle_buffer", "must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Width of the first stage (64 is the standard network; smaller is faster).
    pub width: usize,
    /// The ResNets' stem; unset: chosen by the training image size ([`Stem::for_image_size`]).
    /// ConvNet-4 has no stem and refuses `imagenet`.
    pub stem: Option<Stem>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            arch: Arch::Convnet4,
            width: 64,
            stem: None,
        }
    }
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1024).contains(&self.width) {
            return Err(invalid(
                "model.width",
                format!("must be between 1 and 1024, got {}", self.width),
            ));
        }
        if !self.arch.has_stem() && self.stem == Some(Stem::Imagenet) {
            return Err(invalid(
                "model.stem",
                format!(
                    "{} has no stem to change; `{}` needs a ResNet",
                    self.arch,
                    Stem::Imagenet
                ),
            ));
        }
        Ok(())
    }

    /// The stem the encoder gets when trained on `image_size`-pixel images.
    pub fn stem_for(&self, image_size: usize) -> Stem {
        self.arch.resolve_stem(self.stem, image_size)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adamw,
}

/// The recipe of one training run (pretraining, fine-tuning or scratch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Stop after this many optimiser steps in all (0: no limit).
    pub max_steps: usize,
    /// Wall-clock budget in minutes (0: none). The cosine decay then follows whichever of
    /// steps and time is further along, and training stops when either runs out, so runs of
    /// different methods can be given the same time.
    pub max_minutes: f64,
    /// Images per batch (a task may make several views of each).
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    /// Peak learning rate, reached after warm-up, then cosine decay to zero.
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub augment: Augment,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            max_steps: 0,
            max_minutes: 0.0,
            batch_size: 128,
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            warmup_epochs: 1.0,
            augment: Augment {
                crop_padding: 4,
                hflip: true,
            },
            seed: 0,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self, section: &'static str) -> Result<(), ConfigError> {
        let k = |name: &str| format!("{section}.{name}");
        if self.epochs == 0 {
            return Err(invalid(k("epochs"), "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(invalid(k("batch_size"), "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(invalid(
                k("lr"),
                format!("must be a positive number, got {}", self.lr),
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(invalid(
                k("momentum"),
                format!("must be in [0, 1), got {}", self.momentum),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(invalid(
                k("weight_decay"),
                format!("must be >= 0, got {}", self.weight_decay),
            ));
        }
        if !(self.max_minutes.is_finite() && self.max_minutes >= 0.0) {
            return Err(invalid(
                k("max_minutes"),
                format!("must be >= 0, got {}", self.max_minutes),
            ));
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return Err(invalid(
                k("warmup_epochs"),
                format!("must be >= 0, got {}", self.warmup_epochs),
            ));
        }
        Ok(())
    }
}

/// `pretext pretrain`: data, backbone, pretext task and training recipe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub task: TaskConfig,
    pub train: TrainConfig,
    pub run: RunConfig,
    /// How `pretext transfer` and `pretext demo` use the encoder afterwards.
    pub transfer: TransferConfig,
    /// The text encoder and MLM settings (`mlm` only).
    pub text: crate::text::TextConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    pub name: TaskKind,
    /// Settings of the `relpos` task.
    pub relpos: crate::tasks::relpos::RelPosConfig,
    /// Settings of the `jigsaw` and `jigsaw++` tasks (`replace_max` is Jigsaw++ only).
    pub jigsaw: crate::tasks::jigsaw::JigsawConfig,
    /// Settings of the `cluster` task (ignored by the others).
    pub cluster: ClusterConfig,
    /// The two views of `simclr`, `byol` and `simsiam`.
    pub views: crate::tasks::views::ViewAugment,
    /// Heads and loss of `simclr`, `byol` and `simsiam`.
    pub siamese: crate::tasks::views::SiameseConfig,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            name: TaskKind::Rotation,
            relpos: Default::default(),
            jigsaw: Default::default(),
            cluster: ClusterConfig::default(),
            views: Default::default(),
            siamese: Default::default(),
        }
    }
}

impl TaskConfig {
    /// The task to train, with `k` classes (pseudo-labels) for `cluster`. The config must have
    /// been validated.
    pub fn build(&self) -> Box<dyn crate::tasks::Task> {
        use crate::tasks::{jigsaw::Jigsaw, relpos::RelPos};
        let checked = "validated task settings";
        match self.name {
            TaskKind::Rotation => Box::new(crate::tasks::rotation::Rotation),
            TaskKind::Relpos => Box::new(RelPos::new(self.relpos.clone()).expect(checked)),
            TaskKind::Jigsaw => Box::new(Jigsaw::new(self.jigsaw.clone(), false).expect(checked)),
            TaskKind::JigsawPlus => {
                Box::new(Jigsaw::new(self.jigsaw.clone(), true).expect(checked))
            }
            TaskKind::Cluster => Box::new(crate::tasks::Supervised {
                classes: self.cluster.k,
            }),
            TaskKind::Mlm => unreachable!("mlm trains on text, not through an image task"),
            TaskKind::Simclr | TaskKind::Byol | TaskKind::Simsiam => {
                Box::new(crate::tasks::views::TwoViews {
                    kind: self.name,
                    augment: self.views.clone(),
                })
            }
        }
    }
}

/// Cluster transfer: a teacher's features on the training images, clustered into pseudo-labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The teacher's run directory (its `encoder.safetensors` and `encoder.json`).
    pub teacher: PathBuf,
    /// Teacher stage whose pooled output is the feature (1 to 4; 4 is the last).
    pub teacher_stage: usize,
    /// The stage's map is average-pooled to `teacher_grid` x `teacher_grid` (1 to 8; 1: global
    /// pooling) and flattened.
    pub teacher_grid: usize,
    /// Clusters, which become the student's classes.
    pub k: usize,
    /// Principal components kept before clustering (0: no PCA).
    pub pca: usize,
    /// Scale the principal components to unit variance.
    pub whiten: bool,
    /// Scale each feature vector to unit length before clustering (after PCA).
    pub l2_normalize: bool,
    pub max_iter: usize,
    pub restarts: usize,
    pub tol: f64,
    pub seed: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            teacher: PathBuf::new(),
            teacher_stage: 4,
            teacher_grid: 1,
            k: 100,
            pca: 0,
            whiten: false,
            l2_normalize: true,
            max_iter: 100,
            restarts: 1,
            tol: 1e-4,
            seed: 0,
        }
    }
}

impl ClusterConfig {
    pub fn kmeans(&self) -> crate::cluster::KMeansConfig {
        crate::cluster::KMeansConfig {
            k: self.k,
            max_iter: self.max_iter,
            tol: self.tol,
            restarts: self.restarts,
            seed: self.seed,
        }
    }

    /// Where the clustered features are read from the teacher.
    pub fn teacher_layer(&self) -> FeatureLayer {
        FeatureLayer {
            stage: self.teacher_stage,
            grid: self.teacher_grid,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.teacher.as_os_str().is_empty() {
            return Err(invalid(
                "task.cluster.teacher",
                "must name the teacher's run directory",
            ));
        }
        FeatureLayer::new(self.teacher_stage, self.teacher_grid)
            .map_err(|e| invalid("task.cluster.teacher_stage / teacher_grid", e))?;
        if self.k < 2 {
            return Err(invalid("task.cluster.k", "must be at least 2"));
        }
        if self.whiten && self.pca == 0 {
            return Err(invalid("task.cluster.whiten", "needs task.cluster.pca > 0"));
        }
        self.kmeans()
            .validate(usize::MAX)
            .map_err(|e| invalid("task.cluster", e))
    }
}

/// Where and how a run executes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The run directory.
    pub out: PathBuf,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Checkpoint inside long epochs this often, in minutes (0: only at the end of each epoch).
    pub checkpoint_minutes: f64,
    /// Labelled training images kept as the memory of the k-NN accuracy measured after every
    /// epoch of pretraining (0: no monitoring).
    pub monitor_memory: usize,
    /// Test images classified by that k-NN.
    pub monitor_queries: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("runs/pretrain"),
            threads: 0,
            checkpoint_minutes: 5.0,
            monitor_memory: 5000,
            monitor_queries: 2000,
        }
    }
}

impl PretrainConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.data.validate()?;
        if self.data.path == "synthetic" {
            if self.data.synthetic_train < 10 {
                return Err(invalid("data.synthetic_train", "must be at least 10"));
            }
            if self.data.synthetic_test < 10 {
                return Err(invalid("data.synthetic_test", "must be at least 10"));
            }
            if !(8..=256).contains(&self.data.synthetic_size) {
                return Err(invalid("data.synthetic_size", "must be between 8 and 256"));
            }
        }
        if !(self.run.checkpoint_minutes.is_finite() && self.run.checkpoint_minutes >= 0.0) {
            return Err(invalid("run.checkpoint_minutes", "must be >= 0"));
        }
        self.model.validate()?;
        self.train.validate("train")?;
        match self.task.name {
            TaskKind::Relpos => self
                .task
                .relpos
                .validate("task.relpos")
                .map_err(|e| invalid("task.relpos", e))?,
            TaskKind::Jigsaw => self
                .task
                .jigsaw
                .validate("task.jigsaw")
                .map_err(|e| invalid("task.jigsaw", e))?,
            // Building the task also checks its permutation set against Jigsaw++'s rule.
            TaskKind::JigsawPlus => {
                crate::tasks::jigsaw::Jigsaw::new(self.task.jigsaw.clone(), true)
                    .map_err(|e| invalid("task.jigsaw", e))?;
            }
            TaskKind::Mlm => self.text.validate().map_err(|e| invalid("text", e))?,
            kind if kind.is_siamese() => {
                self.task
                    .views
                    .validate("task.views")
                    .map_err(|e| invalid("task.views", e))?;
                self.task
                    .siamese
                    .validate("task.siamese")
                    .map_err(|e| invalid("task.siamese", e))?;
            }
            _ => {}
        }
        if self.task.name == TaskKind::Cluster {
            self.task.cluster.validate()?;
            if self.run.out == self.task.cluster.teacher {
                return Err(invalid(
                    "run.out",
                    "is the teacher's run directory; the student needs its own",
                ));
            }
        }
        self.transfer.validate()
    }
}

/// `pretext transfer` and the transfer part of `pretext demo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    pub modes: Vec<TransferMode>,
    /// Labelled images per class (0: every labelled image).
    pub labels_per_class: usize,
    /// Number of labelled subsets (seeds 0..seeds) each mode is run on.
    pub seeds: usize,
    /// Recipe of fine-tuning and scratch training (epochs over the labelled subset).
    pub finetune: TrainConfig,
    /// Encoder learning rate as a fraction of the head's when fine-tuning.
    pub encoder_lr_scale: f64,
    /// How fine-tuning's new head starts: `random`, or `probe` (LP-FT, Kumar et al. 2022: the
    /// linear probe fitted on the frozen features, so that a random head's first gradients do
    /// not distort the pretrained features).
    pub finetune_head: HeadStart,
    /// Linear probe: full-batch epochs, learning rate and L2 penalty.
    pub probe_epochs: usize,
    pub probe_lr: f64,
    pub probe_weight_decay: f64,
    /// The probe (and the random encoder's) also trains on this many randomly cropped and
    /// flipped views of each labelled image (`transfer.finetune.augment`), as SimCLR's linear
    /// evaluation does; 0: the labelled images alone.
    pub probe_augmented_views: usize,
    /// L2 penalties on the probe's weights (`l2 / 2 * |W|^2` added to the mean cross-entropy):
    /// empty for none, one value, or several for 5-fold cross-validation on the labelled
    /// images to choose from.
    pub probe_l2: Vec<f64>,
    /// Image encoders: the frozen features of the probe, k-NN and the random encoder are the
    /// output of stage `feature_stage` (1 to 4), average-pooled to a `feature_grid` x
    /// `feature_grid` map (1 to 8; 1: global pooling) and flattened. 4 and 1: the encoder's
    /// output.
    pub feature_stage: usize,
    pub feature_grid: usize,
    /// k-NN: neighbours and the temperature of the exp(similarity / T) weights.
    pub knn_k: usize,
    pub knn_temperature: f64,
    /// Score on a fixed random sample of this many test examples (0: the whole test split),
    /// for encoders too slow to run on all of it many times.
    pub test_limit: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            modes: vec![
                TransferMode::Scratch,
                TransferMode::Random,
                TransferMode::Probe,
                TransferMode::Knn,
                TransferMode::Finetune,
            ],
            labels_per_class: 10,
            seeds: 3,
            finetune: TrainConfig {
                epochs: 60,
                batch_size: 32,
                lr: 0.05,
                warmup_epochs: 3.0,
                weight_decay: 5e-4,
                ..TrainConfig::default()
            },
            encoder_lr_scale: 0.1,
            finetune_head: HeadStart::Random,
            probe_epochs: 300,
            probe_lr: 0.01,
            probe_weight_decay: 1e-4,
            probe_augmented_views: 0,
            probe_l2: Vec::new(),
            feature_stage: 4,
            feature_grid: 1,
            knn_k: 20,
            knn_temperature: 0.07,
            test_limit: 0,
        }
    }
}

impl TransferConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.modes.is_empty() {
            return Err(invalid("transfer.modes", "must name at least one mode"));
        }
        if self.seeds == 0 {
            return Err(invalid("transfer.seeds", "must be at least 1"));
        }
        if !(self.encoder_lr_scale.is_finite() && self.encoder_lr_scale >= 0.0) {
            return Err(invalid("transfer.encoder_lr_scale", "must be >= 0"));
        }
        if self.probe_epochs == 0 {
            return Err(invalid("transfer.probe_epochs", "must be at least 1"));
        }
        if !(self.probe_lr.is_finite() && self.probe_lr > 0.0) {
            return Err(invalid(
                "transfer.probe_lr",
                format!("must be a positive number, got {}", self.probe_lr),
            ));
        }
        if self.probe_augmented_views > 100 {
            return Err(invalid(
                "transfer.probe_augmented_views",
                format!("must be at most 100, got {}", self.probe_augmented_views),
            ));
        }
        if let Some(bad) = self
            .probe_l2
            .iter()
            .find(|l| !(l.is_finite() && **l >= 0.0))
        {
            return Err(invalid(
                "transfer.probe_l2",
                format!("every penalty must be >= 0, got {bad}"),
            ));
        }
        let layer = FeatureLayer::new(self.feature_stage, self.feature_grid)
            .map_err(|e| invalid("transfer.feature_stage / feature_grid", e))?;
        if self.finetune_head == HeadStart::Probe && layer != FeatureLayer::OUTPUT {
            return Err(invalid(
                "transfer.finetune_head",
                "\"probe\" puts the probe on the encoder's output, so it needs feature_stage = 4 and feature_grid = 1",
            ));
        }
        if self.knn_k == 0 {
            return Err(invalid("transfer.knn_k", "must be at least 1"));
        }
        if !(self.knn_temperature.is_finite() && self.knn_temperature > 0.0) {
            return Err(invalid(
                "transfer.knn_temperature",
                "must be a positive number",
            ));
        }
        self.finetune.validate("transfer.finetune")
    }

    /// Where the frozen features are read from the encoder.
    pub fn feature_layer(&self) -> FeatureLayer {
        FeatureLayer {
            stage: self.feature_stage,
            grid: self.feature_grid,
        }
    }

    /// Whether `mode` is fine-tuning that starts its head from the linear probe (LP-FT).
    pub fn head_from_probe(&self, mode: TransferMode) -> bool {
        mode == TransferMode::Finetune && self.finetune_head == HeadStart::Probe
    }
}

/// The start of fine-tuning's classification head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadStart {
    #[default]
    Random,
    /// The linear probe trained on the pretrained encoder's frozen features.
    Probe,
}

/// Ways of using an encoder with few labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    /// Linear classifier on frozen features.
    Probe,
    /// k nearest labelled neighbours on frozen features.
    Knn,
    /// The whole encoder trained with a new head.
    Finetune,
    /// The same backbone trained from random initialisation with the fine-tuning recipe.
    Scratch,
    /// A linear probe on a frozen, randomly initialised encoder: the floor.
    Random,
}

impl TransferMode {
    /// Whether the mode uses the pretrained encoder (probe, k-NN, fine-tune); scratch and
    /// random need only its architecture.
    pub fn needs_pretrained(self) -> bool {
        matches!(
            self,
            TransferMode::Probe | TransferMode::Knn | TransferMode::Finetune
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            TransferMode::Probe => "probe",
            TransferMode::Knn => "knn",
            TransferMode::Finetune => "finetune",
            TransferMode::Scratch => "scratch",
            TransferMode::Random => "random",
        }
    }
}

impl std::str::FromStr for TransferMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "probe" => TransferMode::Probe,
            "knn" => TransferMode::Knn,
            "finetune" => TransferMode::Finetune,
            "scratch" => TransferMode::Scratch,
            "random" => TransferMode::Random,
            other => {
                return Err(format!(
                    "unknown transfer mode `{other}` (expected probe, knn, finetune, scratch or random)"
                ));
            }
        })
    }
}

/// Read a TOML file into `T`, naming the file in any error.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: one_line(&e.to_string()),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let cfg = PretrainConfig::default();
        cfg.validate().unwrap();
        let text = toml::to_string(&cfg).unwrap();
        let back: PretrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        TransferConfig::default().validate().unwrap();
    }

    #[test]
    fn model_stem_is_read_and_refused_for_convnet4() {
        let cfg: PretrainConfig =
            toml::from_str("[model]\narch = \"resnet50\"\nstem = \"imagenet\"\n").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.model.stem_for(32), Stem::Imagenet);
        let auto = ModelConfig {
            arch: Arch::Resnet18,
            ..Default::default()
        };
        assert_eq!(auto.stem_for(32), Stem::Cifar);
        assert_eq!(auto.stem_for(224), Stem::Imagenet);
        let convnet = ModelConfig {
            stem: Some(Stem::Imagenet),
            ..Default::default()
        };
        let err = convnet.validate().unwrap_err().to_string();
        assert!(err.contains("model.stem"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = toml::from_str::<PretrainConfig>("[train]\nlearning_rate = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("learning_rate"), "{err}");
    }

    #[test]
    fn negative_lr_and_zero_batch_are_named() {
        let mut cfg = PretrainConfig::default();
        cfg.train.lr = -1.0;
        assert!(cfg.validate().unwrap_err().to_string().contains("train.lr"));
        cfg.train.lr = 0.1;
        cfg.train.batch_size = 0;
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("train.batch_size")
        );
        let mut t = TransferConfig::default();
        t.finetune.lr = 0.0;
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("transfer.finetune.lr")
        );
    }
}
