//! The `[transfer]` section: how an encoder is used with few labels.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::models::FeatureLayer;
use crate::train::TrainConfig;
use crate::util::config::{ConfigError, invalid};

/// `pretext transfer` and the transfer part of `pretext demo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    pub modes: Vec<TransferMode>,
    /// Labelled images per class (0: every labelled image).
    pub labels_per_class: usize,
    /// Label exactly the training images this list names (`pretext select`'s CSV), the same
    /// ones for every seed; overrides `labels_per_class`.
    pub labels_file: Option<PathBuf>,
    /// Label this many training images drawn at random for each seed (0: off), the baseline a
    /// selection is compared with; overrides `labels_per_class`.
    pub random_labels: usize,
    /// Whether `random_labels` are spread evenly over the classes (else drawn from all of the
    /// labelled images, so that classes get what chance gives them).
    pub stratified: bool,
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
            labels_file: None,
            random_labels: 0,
            stratified: true,
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
        self.validate_subset()?;
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

    /// The labelled-subset keys: at most one of `labels_file` and `random_labels`, and
    /// `stratified` only with `random_labels`.
    fn validate_subset(&self) -> Result<(), ConfigError> {
        if let Some(file) = &self.labels_file {
            if file.as_os_str().is_empty() {
                return Err(invalid(KEY_LABELS_FILE, "must name a file"));
            }
            if self.random_labels > 0 {
                return Err(invalid(
                    format!("{KEY_LABELS_FILE} / {KEY_RANDOM_LABELS}"),
                    "give one: a listed labelled set or a random one",
                ));
            }
        }
        if !self.stratified && self.random_labels == 0 {
            return Err(invalid(
                KEY_STRATIFIED,
                format!("false applies only to a random labelled set: set {KEY_RANDOM_LABELS} too"),
            ));
        }
        Ok(())
    }

    /// Which training images are labelled (the config validated).
    pub fn labelled_subset(&self) -> LabelledSubset {
        match (&self.labels_file, self.random_labels, self.labels_per_class) {
            (Some(file), _, _) => LabelledSubset::Listed(file.clone()),
            (None, count @ 1.., _) => LabelledSubset::Random {
                count,
                stratified: self.stratified,
            },
            (None, 0, 0) => LabelledSubset::All,
            (None, 0, n) => LabelledSubset::PerClass(n),
        }
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

/// The config keys of the labelled subset, as errors name them.
pub const KEY_LABELS_FILE: &str = "transfer.labels_file";
pub const KEY_RANDOM_LABELS: &str = "transfer.random_labels";
pub const KEY_STRATIFIED: &str = "transfer.stratified";

/// The training images a transfer labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelledSubset {
    /// Every labelled training image.
    All,
    /// This many images of every class, drawn per seed.
    PerClass(usize),
    /// Exactly the images a list names, for every seed.
    Listed(PathBuf),
    /// This many images drawn per seed: over the classes evenly (`stratified`), or from all.
    Random { count: usize, stratified: bool },
}

impl LabelledSubset {
    /// What was labelled, for `results.json` and the table: `images` is the number labelled.
    pub fn describe(&self, images: usize) -> String {
        match self {
            LabelledSubset::All => format!("all {images} labelled images"),
            LabelledSubset::PerClass(n) => format!("{n} labels per class"),
            LabelledSubset::Listed(file) => {
                format!("{images} images listed in {}", file_name(file))
            }
            LabelledSubset::Random { count, stratified } => format!(
                "{count} random images, {}",
                if *stratified {
                    "stratified"
                } else {
                    "unstratified"
                }
            ),
        }
    }

    /// Labelled images per class where the subset is made of them (`None`: every label).
    pub fn per_class(&self) -> Option<usize> {
        match self {
            LabelledSubset::PerClass(n) => Some(*n),
            _ => None,
        }
    }
}

/// The file's name without its folders (the whole path where it has none).
fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labelled_subset_follows_the_keys() {
        let mut cfg = TransferConfig::default();
        assert_eq!(cfg.labelled_subset(), LabelledSubset::PerClass(10));
        cfg.labels_per_class = 0;
        assert_eq!(cfg.labelled_subset(), LabelledSubset::All);
        cfg.random_labels = 50;
        cfg.stratified = false;
        cfg.validate().unwrap();
        assert_eq!(
            cfg.labelled_subset(),
            LabelledSubset::Random {
                count: 50,
                stratified: false
            }
        );
        cfg.random_labels = 0;
        cfg.labels_file = Some("sel.csv".into());
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains(KEY_STRATIFIED), "{e}");
        cfg.stratified = true;
        cfg.validate().unwrap();
        assert_eq!(
            cfg.labelled_subset(),
            LabelledSubset::Listed("sel.csv".into())
        );
    }

    #[test]
    fn a_list_and_a_random_count_together_name_both_keys() {
        let cfg = TransferConfig {
            labels_file: Some("sel.csv".into()),
            random_labels: 10,
            ..TransferConfig::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(
            e.contains(KEY_LABELS_FILE) && e.contains(KEY_RANDOM_LABELS),
            "{e}"
        );
        let empty = TransferConfig {
            labels_file: Some("".into()),
            ..TransferConfig::default()
        };
        assert!(
            empty
                .validate()
                .unwrap_err()
                .to_string()
                .contains(KEY_LABELS_FILE)
        );
    }
}
