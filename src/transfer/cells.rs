//! One transfer cell, a mode on one labelled subset with one seed, the same for every kind of
//! backbone: frozen features for the linear probe and k-NN (computed once per item and kept), a
//! random encoder's for the random baseline, and fine-tuning or training from scratch with a
//! linear head (started from the probe's where `transfer.finetune_head` asks). A [`Backbone`]
//! says only how its encoder makes features and how it trains.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};

use burn::nn::Linear;
use burn::tensor::Device;

use super::config::{TransferConfig, TransferMode};
use super::features::Features;
use super::{frozen_predict, probe, probe_recipe};
use crate::Error;
use crate::train::{TrainConfig, train_device};

/// Offsets of the seeds of the random encoder and of fine-tuning from the subset's seed, so that
/// the random baseline, fine-tuning and scratch draw different numbers.
const RANDOM_SEED_OFFSET: u64 = 1_000;
const TRAIN_SEED_OFFSET: u64 = 2_000;

/// The linear head a linear probe fitted on an encoder's features (fine-tuning starts there).
pub type ProbeHead<'a, E> = &'a dyn Fn(&E) -> Linear;

/// What transfer needs of an encoder family (images, text) and its labelled data.
pub trait Backbone {
    type Encoder;
    fn classes(&self) -> usize;
    /// The labels of every training item; an error where the data has none.
    fn train_labels(&self) -> Result<&[u32], Error>;
    fn test_labels(&self) -> &[u32];
    fn pretrained(&self) -> Option<&Self::Encoder>;
    /// A new, randomly initialised encoder of the transferred architecture on `device`.
    fn init(&self, device: &Device) -> Self::Encoder;
    /// A trainable copy of `encoder` on `device`.
    fn fork(&self, encoder: &Self::Encoder, device: &Device) -> Self::Encoder;
    /// Frozen features of the training items `rows`, in that order.
    fn train_features(&self, encoder: &Self::Encoder, rows: &[usize]) -> Features;
    /// Frozen features of every test item.
    fn test_features(&self, encoder: &Self::Encoder) -> Features;
    /// Features of `transfer.probe_augmented_views` augmented copies of each training item of
    /// `subset`, one view of every item after another; `None` where there are none.
    fn augmented_features(
        &self,
        encoder: &Self::Encoder,
        subset: &[usize],
        cfg: &TransferConfig,
        seed: u64,
    ) -> Option<Features>;
    /// Trains `encoder` and a new linear head (whose weights `probe_head` replaces, where
    /// given, once the head is built) on the training items `subset` with `recipe`, the
    /// encoder at `encoder_lr_scale` of the head's rate; returns the test predictions.
    fn train_classifier(
        &self,
        encoder: Self::Encoder,
        probe_head: Option<ProbeHead<Self::Encoder>>,
        encoder_lr_scale: f64,
        subset: &[usize],
        recipe: &TrainConfig,
    ) -> Result<Vec<u32>, Error>;
}

/// The error of a mode that needs a pretrained encoder when there is none.
pub fn needs_pretrained() -> Error {
    Error::msg("modes probe, knn and finetune need a pretrained encoder (--run RUN_DIR)")
}

/// Runs transfer cells on one backbone, keeping the features every cell can share.
pub struct Transferer<B: Backbone> {
    pub backbone: B,
    /// The pretrained encoder's features of the training items used so far, by item.
    pretrained_train: Mutex<BTreeMap<usize, Vec<f32>>>,
    pretrained_test: OnceLock<Features>,
    /// Test features of the random encoder of each seed.
    random_test: Mutex<BTreeMap<u64, Features>>,
}

impl<B: Backbone> Transferer<B> {
    pub fn new(backbone: B) -> Self {
        Self {
            backbone,
            pretrained_train: Mutex::default(),
            pretrained_test: OnceLock::new(),
            random_test: Mutex::default(),
        }
    }

    pub fn test_labels(&self) -> &[u32] {
        self.backbone.test_labels()
    }

    /// Test-set predictions of `mode` trained on the training items `subset`; `seed` picks the
    /// random initialisations and the training order.
    pub fn predict(
        &self,
        mode: TransferMode,
        subset: &[usize],
        seed: u64,
        cfg: &TransferConfig,
    ) -> Result<Vec<u32>, Error> {
        let train_labels = self.backbone.train_labels()?;
        let labels: Vec<u32> = subset.iter().map(|&i| train_labels[i]).collect();
        let classes = self.backbone.classes();
        match mode {
            TransferMode::Probe | TransferMode::Knn => {
                let encoder = self.backbone.pretrained().ok_or_else(needs_pretrained)?;
                let plain = self.pretrained_train_features(encoder, subset);
                let (rows, labels) = match mode {
                    TransferMode::Probe => {
                        self.probe_rows(encoder, subset, plain, &labels, cfg, seed)
                    }
                    _ => (plain, labels),
                };
                let test = self.pretrained_test_features(encoder);
                Ok(frozen_predict(
                    mode, &rows, &labels, test, classes, cfg, seed,
                ))
            }
            TransferMode::Random => Ok(self.random_probe(subset, &labels, seed, cfg)),
            TransferMode::Finetune | TransferMode::Scratch => {
                self.train(mode, subset, &labels, seed, cfg)
            }
        }
    }

    /// A linear probe on a random encoder (seeded by `seed`).
    fn random_probe(
        &self,
        subset: &[usize],
        labels: &[u32],
        seed: u64,
        cfg: &TransferConfig,
    ) -> Vec<u32> {
        let device = train_device();
        device.seed(seed.wrapping_add(RANDOM_SEED_OFFSET));
        let encoder = self.backbone.init(&device);
        let plain = self.backbone.train_features(&encoder, subset);
        let (rows, labels) = self.probe_rows(&encoder, subset, plain, labels, cfg, seed);
        let mut cache = self.random_test.lock().expect("not poisoned");
        let test = cache
            .entry(seed)
            .or_insert_with(|| self.backbone.test_features(&encoder));
        let classes = self.backbone.classes();
        frozen_predict(
            TransferMode::Probe,
            &rows,
            &labels,
            test,
            classes,
            cfg,
            seed,
        )
    }

    /// Fine-tuning the pretrained encoder, or training a new one from scratch.
    fn train(
        &self,
        mode: TransferMode,
        subset: &[usize],
        labels: &[u32],
        seed: u64,
        cfg: &TransferConfig,
    ) -> Result<Vec<u32>, Error> {
        let device = train_device();
        device.seed(seed.wrapping_add(TRAIN_SEED_OFFSET));
        let (encoder, lr_scale) = match mode {
            TransferMode::Finetune => {
                let pretrained = self.backbone.pretrained().ok_or_else(needs_pretrained)?;
                (
                    self.backbone.fork(pretrained, &device),
                    cfg.encoder_lr_scale,
                )
            }
            _ => (self.backbone.init(&device), 1.0),
        };
        let probe_head = |encoder: &B::Encoder| {
            let pretrained = self.backbone.pretrained().expect("fine-tuning has one");
            let plain = self.pretrained_train_features(pretrained, subset);
            let (rows, labels) = self.probe_rows(encoder, subset, plain, labels, cfg, seed);
            let classes = self.backbone.classes();
            probe::fit(&rows, &labels, classes, &probe_recipe(cfg, seed))
        };
        let probe_head: Option<ProbeHead<B::Encoder>> =
            cfg.head_from_probe(mode).then_some(&probe_head);
        let recipe = TrainConfig {
            seed: cfg.finetune.seed.wrapping_add(seed),
            ..cfg.finetune.clone()
        };
        self.backbone
            .train_classifier(encoder, probe_head, lr_scale, subset, &recipe)
    }

    /// The linear probe's training rows: `plain`, the features of the items `subset`, then
    /// those of their augmented views, with the labels repeated to match.
    fn probe_rows(
        &self,
        encoder: &B::Encoder,
        subset: &[usize],
        plain: Features,
        labels: &[u32],
        cfg: &TransferConfig,
        seed: u64,
    ) -> (Features, Vec<u32>) {
        let augmented = match cfg.probe_augmented_views {
            0 => None,
            _ => self.backbone.augmented_features(encoder, subset, cfg, seed),
        };
        let Some(augmented) = augmented else {
            return (plain, labels.to_vec());
        };
        let mut rows = plain;
        rows.values.extend(augmented.values);
        rows.rows += augmented.rows;
        let labels = labels.iter().cycle().take(rows.rows).copied().collect();
        (rows, labels)
    }

    /// The pretrained encoder's features of the training items `subset`, each computed once.
    fn pretrained_train_features(&self, encoder: &B::Encoder, subset: &[usize]) -> Features {
        let mut known = self.pretrained_train.lock().expect("not poisoned");
        let missing: Vec<usize> = subset
            .iter()
            .filter(|i| !known.contains_key(i))
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            let computed = self.backbone.train_features(encoder, &missing);
            for (r, &i) in missing.iter().enumerate() {
                known.insert(i, computed.row(r).to_vec());
            }
        }
        let dim = subset.first().map_or(0, |i| known[i].len());
        Features {
            rows: subset.len(),
            dim,
            values: subset
                .iter()
                .flat_map(|i| known[i].iter().copied())
                .collect(),
        }
    }

    fn pretrained_test_features(&self, encoder: &B::Encoder) -> &Features {
        self.pretrained_test
            .get_or_init(|| self.backbone.test_features(encoder))
    }
}
