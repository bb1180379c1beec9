//! Masked language modelling as a [`Learner`]: BERT encoder + MLM head, the loss only on the
//! selected positions (their hidden states are gathered before the vocabulary head), with masks
//! drawn anew every time a sequence is seen.

use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use super::{ImageMethod, MethodKind, Modality, Settings};
use crate::data::DataError;
use crate::data::loader::{BatchSource, mix};
use crate::data::sequences::{Specials, mask_tokens};
use crate::data::text::Columns;
use crate::losses::cross_entropy;
use crate::models::bert::{BertEncoder, BertSpec, MlmHead, gather_positions};
use crate::train::{Learner, Optimisers, StepStats, TrainConfig, correct_predictions};
use crate::util::config::ConfigError;

/// A batch of masked sequences, flattened.
#[derive(Clone, Debug, Default)]
pub struct MlmBatch {
    pub sequences: usize,
    pub len: usize,
    /// Model inputs, `sequences x len`.
    pub input: Vec<i64>,
    /// True at [PAD].
    pub padding: Vec<bool>,
    /// Selected positions as `sequence * len + position`, and their original tokens.
    pub positions: Vec<i64>,
    pub targets: Vec<i64>,
}

/// Sequences of a corpus, shuffled each epoch and masked as they are batched.
pub struct TextBatches<'a> {
    pub sequences: &'a [Vec<u32>],
    pub batch_size: usize,
    pub shuffle: bool,
    /// Sequences per (virtual) epoch, walked through an endless series of shuffled passes over
    /// the corpus, so that a large corpus is measured and checkpointed more often than once per
    /// pass (0: one pass per epoch).
    pub epoch_sequences: usize,
    pub seed: u64,
    pub mask_rate: f64,
    pub vocab: u32,
    pub specials: Specials,
}

impl TextBatches<'_> {
    /// The batch of the sequences `indices`, masked by (seed, epoch, sequence).
    pub fn masked(&self, epoch: u64, indices: &[usize]) -> MlmBatch {
        let len = self.sequences.first().map_or(0, Vec::len);
        let parts: Vec<_> = indices
            .par_iter()
            .map(|&i| {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, epoch, i as u64));
                mask_tokens(
                    &self.sequences[i],
                    self.mask_rate,
                    self.vocab,
                    self.specials,
                    &mut rng,
                )
            })
            .collect();
        let mut batch = MlmBatch {
            sequences: indices.len(),
            len,
            ..MlmBatch::default()
        };
        for (row, m) in parts.into_iter().enumerate() {
            batch
                .padding
                .extend(m.input.iter().map(|&t| t == self.specials.pad));
            batch.input.extend(m.input.iter().map(|&t| t as i64));
            batch
                .positions
                .extend(m.positions.iter().map(|&p| (row * len + p) as i64));
            batch.targets.extend(m.targets.iter().map(|&t| t as i64));
        }
        batch
    }
}

impl TextBatches<'_> {
    /// The order of the sequences in pass `pass` over the corpus.
    fn pass_order(&self, pass: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.sequences.len()).collect();
        if self.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
                self.seed,
                pass,
                u64::MAX,
            )));
        }
        order
    }
}

impl BatchSource for TextBatches<'_> {
    type Batch = MlmBatch;
    fn batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let n = self.sequences.len();
        if n == 0 {
            return Vec::new();
        }
        let per_epoch = if self.epoch_sequences == 0 {
            n
        } else {
            self.epoch_sequences
        };
        let mut order = Vec::with_capacity(per_epoch);
        let mut at = epoch as usize * per_epoch;
        while order.len() < per_epoch {
            let (pass, offset) = (at / n, at % n);
            let take = (per_epoch - order.len()).min(n - offset);
            order.extend_from_slice(&self.pass_order(pass as u64)[offset..offset + take]);
            at += take;
        }
        let bs = self.batch_size.max(1);
        let mut batches: Vec<Vec<usize>> = order.chunks(bs).map(<[usize]>::to_vec).collect();
        if batches.len() > 1 && batches.last().is_some_and(|b| b.len() < bs) {
            batches.pop();
        }
        batches
    }
    fn make(&self, epoch: u64, indices: &[usize]) -> Result<MlmBatch, DataError> {
        Ok(self.masked(epoch, indices))
    }
}

/// What a checkpoint holds of an MLM run.
#[derive(Module, Debug)]
pub struct MlmModel {
    pub encoder: BertEncoder,
    pub head: MlmHead,
}

impl MlmModel {
    pub fn new(spec: &BertSpec, device: &Device) -> Self {
        Self {
            encoder: spec.init(device),
            head: MlmHead::new(spec.hidden, spec.vocab_size, device),
        }
    }

    /// Logits of the selected positions and their targets.
    pub fn logits(&self, batch: &MlmBatch, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let shape = [batch.sequences, batch.len];
        let ids = Tensor::<2, Int>::from_data(TensorData::new(batch.input.clone(), shape), device);
        let padding =
            Tensor::<2, Bool>::from_data(TensorData::new(batch.padding.clone(), shape), device);
        let n = batch.positions.len();
        let positions =
            Tensor::<1, Int>::from_data(TensorData::new(batch.positions.clone(), [n]), device);
        let targets =
            Tensor::<1, Int>::from_data(TensorData::new(batch.targets.clone(), [n]), device);
        let hidden = self.encoder.forward(ids, padding);
        (
            self.head.forward(gather_positions(hidden, positions)),
            targets,
        )
    }
}

pub struct MlmLearner {
    pub model: MlmModel,
    optim: Optimisers,
    device: Device,
}

impl MlmLearner {
    pub fn new(model: MlmModel, recipe: &TrainConfig, device: &Device) -> Self {
        if crate::device::several_devices() {
            crate::device::warn_first_device_only(MethodKind::Mlm.name());
        }
        Self {
            model,
            optim: Optimisers::new(recipe),
            device: device.clone(),
        }
    }
}

impl Learner for MlmLearner {
    type Batch = MlmBatch;
    fn inputs(&self, batch: &MlmBatch) -> usize {
        batch.sequences
    }
    fn step(&mut self, batch: &MlmBatch, lr: f64, _progress: f64) -> StepStats {
        let (logits, targets) = self.model.logits(batch, &self.device);
        let loss = cross_entropy(logits.clone(), targets.clone());
        let loss_value = self
            .optim
            .global_loss(loss.clone().into_scalar(), batch.targets.len());
        if !loss_value.is_finite() {
            return StepStats::diverged(loss_value);
        }
        let hits = correct_predictions(logits.detach(), targets);
        let MlmModel { encoder, head } = self.model.clone();
        let (encoder, head) = self.optim.step(loss, (encoder, head), (lr, lr));
        self.model = MlmModel { encoder, head };
        StepStats {
            loss: loss_value,
            hits,
            counted: batch.targets.len(),
        }
    }
    fn save_parts(&self) -> Result<[Vec<u8>; 3], String> {
        self.optim.parts(&self.model)
    }
    fn load_parts(&mut self, parts: [Vec<u8>; 3]) -> Result<(), (&'static str, String)> {
        self.optim.load(&mut self.model, parts)
    }
}

/// Masked-token accuracy and perplexity (exp of the mean cross-entropy over masked tokens) of
/// `model` on held-out sequences, with masks fixed by `source`'s seed.
pub fn heldout_metrics(model: &MlmModel, source: &TextBatches) -> (f64, f64) {
    let model = model.valid();
    let device = crate::train::infer_device();
    let (mut loss_sum, mut hit_sum, mut count) = (0.0f64, 0usize, 0usize);
    let indices: Vec<usize> = (0..source.sequences.len()).collect();
    for chunk in indices.chunks(source.batch_size.max(1)) {
        let batch = source.masked(0, chunk);
        if batch.targets.is_empty() {
            continue;
        }
        let (logits, targets) = model.logits(&batch, &device);
        let n = batch.targets.len();
        let loss: f32 = cross_entropy(logits.clone(), targets.clone()).into_scalar();
        loss_sum += loss as f64 * n as f64;
        hit_sum += correct_predictions(logits, targets);
        count += n;
    }
    let count = count.max(1) as f64;
    (hit_sum as f64 / count, (loss_sum / count).exp())
}

/// `mlm`'s settings are the `[text]` section, shared with text transfer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlmSettings {}

impl Settings for MlmSettings {
    const MODALITY: Modality = Modality::Text;
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
    /// Text is pretrained by `crate::text::pretrain`.
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        None
    }
}

/// Text settings (`[text]`): the encoder's shape and the MLM recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextConfig {
    /// The transformer encoder (`[text.model]`); `vocab_size` is also the tokenizer's size.
    pub model: BertSpec,
    /// A word piece must occur this often in the corpus to enter the vocabulary.
    pub min_frequency: u64,
    /// Share of word tokens selected for prediction (BERT: 0.15).
    pub mask_rate: f64,
    /// Share of documents held out to measure masked-token accuracy and perplexity.
    pub heldout: f64,
    /// Held-out sequences measured after every epoch.
    pub monitor_sequences: usize,
    /// Sequences per epoch (0: the whole corpus). A large corpus is then measured and
    /// checkpointed every this many sequences, drawn from successive shuffled passes.
    pub epoch_sequences: usize,
    /// More unlabelled text for MLM, after `data.path`: corpora, or labelled tables whose
    /// training texts (not their test split) join the corpus, such as the transfer task's own.
    pub extra_corpora: Vec<String>,
    /// The columns of a labelled table with a header (`[text.columns]`), for transfer.
    pub columns: Columns,
    /// Replace invalid UTF-8 in the corpus instead of failing.
    pub lossy_utf8: bool,
    /// Read at most this many documents (0: all).
    pub max_documents: usize,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            model: BertSpec::default(),
            min_frequency: 2,
            mask_rate: 0.15,
            heldout: 0.02,
            monitor_sequences: 512,
            epoch_sequences: 0,
            extra_corpora: Vec::new(),
            columns: Columns::default(),
            lossy_utf8: false,
            max_documents: 0,
        }
    }
}

impl TextConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.model.validate("text.model")?;
        if !(self.mask_rate > 0.0 && self.mask_rate < 1.0) {
            return Err("text.mask_rate must be between 0 and 1".into());
        }
        if !(self.heldout > 0.0 && self.heldout < 0.5) {
            return Err("text.heldout must be between 0 and 0.5".into());
        }
        if self.monitor_sequences == 0 {
            return Err("text.monitor_sequences must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::sequences::TEST_SPECIALS as S;
    use crate::train::train_device;

    #[test]
    fn batches_hold_flat_positions_of_their_own_rows_and_change_masks_each_epoch() {
        let sequences: Vec<Vec<u32>> = (0..6).map(|i| vec![2, 5 + i, 6 + i, 7 + i, 3, 0]).collect();
        let source = TextBatches {
            sequences: &sequences,
            batch_size: 3,
            shuffle: true,
            epoch_sequences: 0,
            seed: 1,
            mask_rate: 0.3,
            vocab: 20,
            specials: S,
        };
        let b = source.masked(0, &[4, 1]);
        assert_eq!((b.sequences, b.len, b.input.len()), (2, 6, 12));
        assert_eq!(b.padding.iter().filter(|p| **p).count(), 2);
        for (&p, &t) in b.positions.iter().zip(&b.targets) {
            let (row, col) = (p as usize / 6, p as usize % 6);
            assert_eq!(t as u32, sequences[[4, 1][row]][col]);
        }
        let epochs: Vec<Vec<i64>> = (0..5)
            .map(|e| source.masked(e, &[4, 1]).positions)
            .collect();
        assert!(
            epochs.windows(2).any(|w| w[0] != w[1]),
            "masks are drawn anew each epoch"
        );
        assert_eq!(source.batches(0).len(), 2);

        // Virtual epochs of 4 sequences walk through the shuffled passes: 3 epochs cover two
        // passes of 6, each sequence twice.
        let virtual_epochs = TextBatches {
            epoch_sequences: 4,
            batch_size: 2,
            ..source
        };
        let mut seen: Vec<usize> = (0..3)
            .flat_map(|e| virtual_epochs.batches(e).concat())
            .collect();
        assert_eq!(seen.len(), 12);
        assert_eq!(
            seen[..6]
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            6
        );
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    }

    #[test]
    fn a_tiny_bert_learns_to_fill_in_a_deterministic_language() {
        // Sequences of a cyclic language: token t is always followed by t + 1, so a masked token
        // is given away by its neighbours. Held-out accuracy must rise far above chance (1/20).
        let sequences: Vec<Vec<u32>> = (0..256)
            .map(|i| {
                std::iter::once(2)
                    .chain((0..10).map(|j| 5 + ((i + j) % 20) as u32))
                    .chain(std::iter::once(3))
                    .collect()
            })
            .collect();
        let spec = BertSpec {
            vocab_size: 25,
            max_len: 12,
            hidden: 32,
            layers: 1,
            heads: 2,
            feed_forward: 64,
            dropout: 0.0,
        };
        let device = train_device();
        device.seed(0);
        let recipe = TrainConfig {
            optimizer: crate::train::OptimizerKind::Adamw,
            lr: 3e-3,
            weight_decay: 0.0,
            ..TrainConfig::default()
        };
        let mut learner = MlmLearner::new(MlmModel::new(&spec, &device), &recipe, &device);
        let source = TextBatches {
            sequences: &sequences,
            batch_size: 32,
            shuffle: true,
            epoch_sequences: 0,
            seed: 0,
            mask_rate: 0.15,
            vocab: 25,
            specials: S,
        };
        let (before, _) = heldout_metrics(&learner.model, &source);
        for epoch in 0..60 {
            for idx in source.batches(epoch) {
                let stats = learner.step(&source.masked(epoch, &idx), 3e-3, 0.0);
                assert!(stats.loss.is_finite());
            }
        }
        let (after, perplexity) = heldout_metrics(&learner.model, &source);
        assert!(
            after > 0.5 && after > before + 0.3,
            "accuracy {before} -> {after}"
        );
        assert!(perplexity < 5.0, "perplexity {perplexity}");
    }
}
