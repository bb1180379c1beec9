//! The recipe of one training run.

use serde::{Deserialize, Serialize};

use crate::data::loader::Augment;
use crate::util::config::{ConfigError, invalid};

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
    /// Images per batch (a task may make several views of each): the global batch, shared by
    /// all the devices and ranks of a run.
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    /// Peak learning rate, reached after warm-up, then cosine decay to zero.
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub augment: Augment,
    pub seed: u64,
    /// On several ranks: BatchNorm normalises with the statistics of the global batch (every
    /// rank's share), as PyTorch's `SyncBatchNorm`, instead of each rank's own (DDP's default).
    pub sync_batchnorm: bool,
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
            sync_batchnorm: false,
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
