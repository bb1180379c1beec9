//! Text classification with few labels: a masked-language-model run's encoder transferred to a
//! labelled table (`text<TAB>label`), in the modes of image transfer: a linear probe and k-NN on
//! its mean-pooled features, fine-tuning with a linear head, and the same encoder trained from
//! scratch or frozen at random, over seeded labelled subsets; `results.json` as for images.
//!
//! Texts are cut to `[CLS] tokens [SEP]` of at most the encoder's `max_len`, and every batch is
//! padded only to its longest member; inference batches texts of similar length together.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::sequences::truncate;
use super::tokenizer::TextTokenizer;
use crate::Error;
use crate::config::{PretrainConfig, TrainConfig, TransferConfig};
use crate::data::DataError;
use crate::data::loader::{BatchSource, mix};
use crate::data::split::{few_of_labels, scored_test_rows};
use crate::data::text::{LabelledSplit, TextOptions, read_labelled};
use crate::encoder::{load_weights, read_spec};
use crate::losses::cross_entropy;
use crate::models::bert::{BertEncoder, BertSpec};
use crate::train::{
    Learner, LoopSettings, Optimisers, StepStats, correct_predictions, infer_device, run_loop,
    train_device,
};
use crate::transfer::cells::needs_pretrained;
use crate::transfer::config::{KEY_LABELS_FILE, KEY_RANDOM_LABELS, LabelledSubset};
use crate::transfer::features::Features;
use crate::transfer::{
    Backbone, ProbeHead, TRANSFER_LABEL, TransferResults, Transferer, score_modes, write_results,
};
use crate::util::run_dir::RunDir;

/// Token sequences of a batch, padded to the longest, with their labels.
#[derive(Clone, Debug, Default)]
pub struct TokenBatch {
    pub rows: usize,
    pub len: usize,
    pub ids: Vec<i64>,
    /// True at [PAD].
    pub padding: Vec<bool>,
    pub labels: Vec<i64>,
}

impl TokenBatch {
    /// The sequences `indices` of `sequences` (labels from `labels` where given).
    pub fn of(sequences: &[Vec<u32>], indices: &[usize], labels: Option<&[u32]>, pad: u32) -> Self {
        let len = indices
            .iter()
            .map(|&i| sequences[i].len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut batch = TokenBatch {
            rows: indices.len(),
            len,
            ..TokenBatch::default()
        };
        for &i in indices {
            let s = &sequences[i];
            batch.ids.extend(s.iter().map(|&t| t as i64));
            batch
                .ids
                .extend(std::iter::repeat_n(pad as i64, len - s.len()));
            batch.padding.extend(std::iter::repeat_n(false, s.len()));
            batch
                .padding
                .extend(std::iter::repeat_n(true, len - s.len()));
            if let Some(labels) = labels {
                batch.labels.push(labels[i] as i64);
            }
        }
        batch
    }

    fn tensors(&self, device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
        let shape = [self.rows, self.len];
        (
            Tensor::from_data(TensorData::new(self.ids.clone(), shape), device),
            Tensor::from_data(TensorData::new(self.padding.clone(), shape), device),
        )
    }
}

/// A text encoder with a linear head on its mean-pooled feature.
#[derive(Module, Debug)]
pub struct TextClassifier {
    pub encoder: BertEncoder,
    pub head: Linear,
}

impl TextClassifier {
    pub fn new(encoder: BertEncoder, hidden: usize, classes: usize, device: &Device) -> Self {
        Self {
            encoder,
            head: LinearConfig::new(hidden, classes).init(device),
        }
    }

    pub fn forward(&self, batch: &TokenBatch, device: &Device) -> Tensor<2> {
        let (ids, padding) = batch.tensors(device);
        self.head.forward(self.encoder.pooled(ids, padding))
    }
}

/// A labelled subset, reshuffled every epoch.
pub struct LabelledSequences<'a> {
    pub sequences: &'a [Vec<u32>],
    pub labels: &'a [u32],
    pub subset: &'a [usize],
    pub batch_size: usize,
    pub seed: u64,
    pub pad: u32,
}

impl BatchSource for LabelledSequences<'_> {
    type Batch = TokenBatch;
    fn batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order = self.subset.to_vec();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(self.seed, epoch, 0)));
        order
            .chunks(self.batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }
    fn make(&self, _epoch: u64, indices: &[usize]) -> Result<TokenBatch, DataError> {
        Ok(TokenBatch::of(
            self.sequences,
            indices,
            Some(self.labels),
            self.pad,
        ))
    }
}

/// Fine-tuning (or training from scratch): cross-entropy on the labels, the encoder's learning
/// rate a fraction of the head's.
pub struct TextClassifierLearner {
    pub model: TextClassifier,
    optim: Optimisers,
    encoder_lr_scale: f64,
    device: Device,
}

impl TextClassifierLearner {
    pub fn new(model: TextClassifier, recipe: &TrainConfig, encoder_lr_scale: f64) -> Self {
        Self {
            model,
            optim: Optimisers::new(recipe),
            encoder_lr_scale,
            device: train_device(),
        }
    }
}

impl Learner for TextClassifierLearner {
    type Batch = TokenBatch;
    fn inputs(&self, batch: &TokenBatch) -> usize {
        batch.rows
    }
    fn step(&mut self, batch: &TokenBatch, lr: f64, _progress: f64) -> StepStats {
        let labels = Tensor::<1, Int>::from_data(
            TensorData::new(batch.labels.clone(), [batch.rows]),
            &self.device,
        );
        let logits = self.model.forward(batch, &self.device);
        let loss = cross_entropy(logits.clone(), labels.clone());
        let loss_value: f32 = loss.clone().into_scalar();
        if !loss_value.is_finite() {
            return StepStats::diverged(loss_value);
        }
        let hits = correct_predictions(logits.detach(), labels);
        let TextClassifier { encoder, head } = self.model.clone();
        let (encoder, head) =
            self.optim
                .step(loss, (encoder, head), (lr * self.encoder_lr_scale, lr));
        self.model = TextClassifier { encoder, head };
        StepStats {
            loss: loss_value,
            hits,
            counted: batch.rows,
        }
    }
    fn save_parts(&self) -> Result<[Vec<u8>; 3], String> {
        self.optim.parts(&self.model)
    }
    fn load_parts(&mut self, parts: [Vec<u8>; 3]) -> Result<(), (&'static str, String)> {
        self.optim.load(&mut self.model, parts)
    }
}

/// Inference batches of `indices` (positions into the batch order), texts of similar length
/// together so that little is spent on padding.
fn by_length(sequences: &[Vec<u32>], indices: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..indices.len()).collect();
    order.sort_by_key(|&k| sequences[indices[k]].len());
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

const INFER_BATCH: usize = 128;

/// Mean-pooled features of the sequences `indices`, rows in the order of `indices`.
pub fn pooled_features(
    encoder: &BertEncoder,
    sequences: &[Vec<u32>],
    indices: &[usize],
    pad: u32,
) -> Features {
    let encoder = encoder.valid();
    let device = infer_device();
    let mut dim = 0;
    let mut values = Vec::new();
    for chunk in by_length(sequences, indices, INFER_BATCH) {
        let rows: Vec<usize> = chunk.iter().map(|&k| indices[k]).collect();
        let (ids, padding) = TokenBatch::of(sequences, &rows, None, pad).tensors(&device);
        let f = encoder
            .pooled(ids, padding)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("converted to f32");
        dim = f.len() / rows.len();
        if values.is_empty() {
            values = vec![0f32; indices.len() * dim];
        }
        for (r, &k) in chunk.iter().enumerate() {
            values[k * dim..(k + 1) * dim].copy_from_slice(&f[r * dim..(r + 1) * dim]);
        }
    }
    Features {
        rows: indices.len(),
        dim,
        values,
    }
}

/// The predicted class of every sequence.
pub fn predict_classes(model: &TextClassifier, sequences: &[Vec<u32>], pad: u32) -> Vec<u32> {
    let model = model.valid();
    let device = infer_device();
    let all: Vec<usize> = (0..sequences.len()).collect();
    let mut out = vec![0u32; sequences.len()];
    for chunk in by_length(sequences, &all, INFER_BATCH) {
        let batch = TokenBatch::of(sequences, &chunk, None, pad);
        let predicted = model
            .forward(&batch, &device)
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("argmax gives integers");
        for (&i, p) in chunk.iter().zip(predicted) {
            out[i] = p as u32;
        }
    }
    out
}

/// A labelled text task, tokenized: sequences and labels of both splits.
pub struct TextTask {
    pub class_names: Vec<String>,
    pub train: Vec<Vec<u32>>,
    pub train_labels: Vec<u32>,
    pub test: Vec<Vec<u32>>,
    pub test_labels: Vec<u32>,
    pub pad: u32,
}

impl TextTask {
    /// Tokenize both splits, each text cut to `[CLS] ... [SEP]` of at most `max_len` tokens.
    pub fn tokenize(
        tokenizer: &TextTokenizer,
        class_names: Vec<String>,
        train: &LabelledSplit,
        test: &LabelledSplit,
        max_len: usize,
    ) -> Result<Self, Error> {
        let specials = tokenizer.specials();
        let cut = |split: &LabelledSplit| -> Result<Vec<Vec<u32>>, Error> {
            let texts: Vec<&str> = split.texts.iter().map(String::as_str).collect();
            Ok(tokenizer
                .encode(&texts)?
                .iter()
                .map(|t| truncate(t, max_len, specials))
                .collect())
        };
        Ok(Self {
            class_names,
            train: cut(train)?,
            train_labels: train.labels.clone(),
            test: cut(test)?,
            test_labels: test.labels.clone(),
            pad: specials.pad,
        })
    }
}

/// What text transfer works with.
pub struct TextTransferInputs<'a> {
    pub task: &'a TextTask,
    /// The pretrained encoder; probe, k-NN and fine-tuning need it.
    pub pretrained: Option<&'a BertEncoder>,
    pub spec: &'a BertSpec,
    pub quiet: bool,
}

/// Run every configured mode over `cfg.seeds` labelled subsets of at most
/// `cfg.labels_per_class` texts per class (all of a class that has fewer).
pub fn run(inputs: &TextTransferInputs, cfg: &TransferConfig) -> Result<TransferResults, Error> {
    cfg.validate()?;
    // Texts have no crops or flips: the probe trains on the labelled texts alone.
    let cfg = &TransferConfig {
        probe_augmented_views: 0,
        ..cfg.clone()
    };
    let chosen = cfg.labelled_subset();
    if chosen.per_class().is_none() && chosen != LabelledSubset::All {
        return Err(Error::msg(format!(
            "{KEY_LABELS_FILE} and {KEY_RANDOM_LABELS} choose labelled images; text transfer labels transfer.labels_per_class texts per class"
        )));
    }
    let started = Instant::now();
    let task = inputs.task;
    let subsets: Vec<Vec<usize>> = (0..cfg.seeds as u64)
        .map(|seed| labelled_subset(task, cfg, seed))
        .collect();
    if inputs.pretrained.is_none() && cfg.modes.iter().any(|m| m.needs_pretrained()) {
        return Err(needs_pretrained());
    }
    let cells = Transferer::new(TextBackbone { inputs });
    let results = score_modes(
        cfg,
        &subsets,
        cells.test_labels(),
        inputs.quiet,
        |mode, subset, seed| cells.predict(mode, subset, seed, cfg),
    )?;
    Ok(TransferResults {
        labels_per_class: chosen.per_class(),
        subset: chosen.describe(subsets.first().map_or(0, Vec::len)),
        labelled_images: subsets.first().map_or(0, Vec::len),
        results,
        test_images: task.test.len(),
        seeds: cfg.seeds,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Seed `seed`'s labelled texts; the first seed notes the classes that have too few.
fn labelled_subset(task: &TextTask, cfg: &TransferConfig, seed: u64) -> Vec<usize> {
    let classes = task.class_names.len();
    let per_class = (cfg.labels_per_class > 0).then_some(cfg.labels_per_class);
    let (subset, short) = few_of_labels(&task.train_labels, classes, per_class, seed);
    if seed == 0 && !short.is_empty() {
        let named: Vec<String> = short
            .iter()
            .map(|&(c, n)| format!("{} ({n})", task.class_names[c]))
            .collect();
        eprintln!(
            "note: {} of {classes} classes have fewer than {} training texts and give all they have: {}",
            short.len(),
            cfg.labels_per_class,
            named.join(", ")
        );
    }
    subset
}

/// Text transfer: a BERT encoder on a tokenized labelled table.
pub struct TextBackbone<'a> {
    pub inputs: &'a TextTransferInputs<'a>,
}

impl Backbone for TextBackbone<'_> {
    type Encoder = BertEncoder;

    fn classes(&self) -> usize {
        self.inputs.task.class_names.len()
    }
    fn train_labels(&self) -> Result<&[u32], Error> {
        Ok(&self.inputs.task.train_labels)
    }
    fn test_labels(&self) -> &[u32] {
        &self.inputs.task.test_labels
    }
    fn pretrained(&self) -> Option<&BertEncoder> {
        self.inputs.pretrained
    }
    fn init(&self, device: &Device) -> BertEncoder {
        self.inputs.spec.init(device)
    }
    fn fork(&self, encoder: &BertEncoder, device: &Device) -> BertEncoder {
        encoder.clone().fork(device)
    }
    fn train_features(&self, encoder: &BertEncoder, rows: &[usize]) -> Features {
        let task = self.inputs.task;
        pooled_features(encoder, &task.train, rows, task.pad)
    }
    fn test_features(&self, encoder: &BertEncoder) -> Features {
        let task = self.inputs.task;
        let all: Vec<usize> = (0..task.test.len()).collect();
        pooled_features(encoder, &task.test, &all, task.pad)
    }
    fn augmented_features(
        &self,
        _encoder: &BertEncoder,
        _subset: &[usize],
        _cfg: &TransferConfig,
        _seed: u64,
    ) -> Option<Features> {
        None
    }
    fn train_classifier(
        &self,
        encoder: BertEncoder,
        probe_head: Option<ProbeHead<BertEncoder>>,
        encoder_lr_scale: f64,
        subset: &[usize],
        recipe: &TrainConfig,
    ) -> Result<Vec<u32>, Error> {
        let task = self.inputs.task;
        let device = train_device();
        let hidden = self.inputs.spec.hidden;
        let mut model = TextClassifier::new(encoder, hidden, self.classes(), &device);
        if let Some(probe_head) = probe_head {
            model.head = probe_head(&model.encoder);
        }
        let mut learner = TextClassifierLearner::new(model, recipe, encoder_lr_scale);
        let source = LabelledSequences {
            sequences: &task.train,
            labels: &task.train_labels,
            subset,
            batch_size: recipe.batch_size,
            seed: recipe.seed,
            pad: task.pad,
        };
        let settings = LoopSettings {
            recipe,
            run_dir: None,
            model_tag: String::new(),
            label: TRANSFER_LABEL.into(),
            quiet: true,
            checkpoint_every: None,
        };
        run_loop(&settings, &source, &mut learner, None)?;
        Ok(predict_classes(&learner.model, &task.test, task.pad))
    }
}

/// `pretext transfer --run MLM_RUN --data TABLE`: the run's tokenizer and encoder transferred
/// to the labelled table `cfg.data.path` (columns from `[text.columns]`), results written to
/// `out/results.json`.
pub fn transfer_text(
    run_dir: &Path,
    cfg: &PretrainConfig,
    out: &Path,
    quiet: bool,
) -> Result<TransferResults, Error> {
    cfg.transfer.validate()?;
    let table_path = Path::new(&cfg.data.path);
    if !crate::data::text::is_table(table_path) {
        return Err(Error::msg(format!(
            "{}: text transfer needs a labelled table (.tsv or .csv, gzipped or not) as --data",
            table_path.display()
        )));
    }
    let run_files = RunDir(run_dir);
    let tokenizer = TextTokenizer::load(&run_files.tokenizer())?;
    let spec: &BertSpec = &read_spec(&run_files.text_spec())?;
    let device = train_device();
    let encoder = load_weights(
        spec.init(&device),
        &run_files.text_weights(),
        "the text encoder of text_encoder.json",
    )?;
    let table = read_labelled(
        table_path,
        &cfg.text.columns,
        &TextOptions {
            lossy_utf8: cfg.text.lossy_utf8,
        },
    )?;
    let Some(test) = &table.test else {
        return Err(Error::msg(format!(
            "{}: no test rows to score on (a `{}` column with `test` in it)",
            table.source, cfg.text.columns.split
        )));
    };
    let limited = scored_test_rows(test.len(), cfg.transfer.test_limit).map(|rows| LabelledSplit {
        texts: rows.iter().map(|&i| test.texts[i].clone()).collect(),
        labels: rows.iter().map(|&i| test.labels[i]).collect(),
    });
    let test = limited.as_ref().unwrap_or(test);
    let task = TextTask::tokenize(
        &tokenizer,
        table.class_names.clone(),
        &table.train,
        test,
        spec.max_len,
    )?;
    if !quiet {
        eprintln!(
            "transfer text encoder of {} to {}: {} classes, {} training and {} test texts",
            run_dir.display(),
            table.source,
            task.class_names.len(),
            task.train.len(),
            task.test.len()
        );
    }
    let results = run(
        &TextTransferInputs {
            task: &task,
            pretrained: Some(&encoder),
            spec,
            quiet,
        },
        &cfg.transfer,
    )?;
    write_results(out, &results)?;
    Ok(results)
}

/// Whether `run_dir` holds a text (masked language model) run.
pub fn is_text_run(run_dir: &Path) -> bool {
    let run = RunDir(run_dir);
    run.text_weights().exists() || run.tokenizer().exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeadStart, TransferMode};
    use crate::text::sequences::TEST_SPECIALS as S;

    #[test]
    fn batches_pad_to_their_longest_member_and_inference_keeps_row_order() {
        let seqs = vec![vec![2, 5, 3], vec![2, 5, 6, 7, 3], vec![2, 3]];
        let b = TokenBatch::of(&seqs, &[0, 1], Some(&[1, 0, 1]), S.pad);
        assert_eq!((b.rows, b.len), (2, 5));
        assert_eq!(b.ids, vec![2, 5, 3, 0, 0, 2, 5, 6, 7, 3]);
        assert_eq!(b.padding.iter().filter(|p| **p).count(), 2);
        assert_eq!(b.labels, vec![1, 0]);

        let spec = BertSpec {
            vocab_size: 20,
            max_len: 8,
            hidden: 8,
            layers: 1,
            heads: 2,
            feed_forward: 16,
            dropout: 0.0,
        };
        let encoder = spec.init(&train_device());
        let all = pooled_features(&encoder, &seqs, &[1, 2, 0], S.pad);
        let alone = pooled_features(&encoder, &seqs, &[2], S.pad);
        assert_eq!((all.rows, all.dim), (3, 8));
        for (a, b) in all.row(1).iter().zip(alone.row(0)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// An encoder just big enough for the keyword task.
    fn keyword_spec() -> BertSpec {
        BertSpec {
            vocab_size: 20,
            max_len: 8,
            hidden: 16,
            layers: 1,
            heads: 2,
            feed_forward: 32,
            dropout: 0.0,
        }
    }

    /// Texts whose class is told by one keyword among noise words.
    fn keyword_task(per_class: usize, seed: u64) -> TextTask {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut make = |n: usize| {
            let (mut seqs, mut labels) = (Vec::new(), Vec::new());
            for i in 0..n {
                let class = (i % 3) as u32;
                let mut s = vec![S.cls];
                for _ in 0..4 {
                    s.push(8 + rand::Rng::random_range(&mut rng, 0..10));
                }
                s.insert(1 + rand::Rng::random_range(&mut rng, 0..4), 5 + class);
                s.push(S.sep);
                seqs.push(s);
                labels.push(class);
            }
            (seqs, labels)
        };
        let (train, train_labels) = make(per_class * 3);
        let (test, test_labels) = make(150);
        TextTask {
            class_names: vec!["a".into(), "b".into(), "c".into()],
            train,
            train_labels,
            test,
            test_labels,
            pad: S.pad,
        }
    }

    #[test]
    fn a_tiny_text_classifier_learns_from_scratch_and_the_modes_report_per_seed() {
        let spec = keyword_spec();
        let task = keyword_task(40, 0);
        let cfg = TransferConfig {
            modes: vec![TransferMode::Scratch, TransferMode::Random],
            labels_per_class: 20,
            seeds: 2,
            finetune: TrainConfig {
                epochs: 40,
                batch_size: 16,
                optimizer: crate::config::OptimizerKind::Adamw,
                lr: 3e-3,
                weight_decay: 0.0,
                warmup_epochs: 1.0,
                ..TrainConfig::default()
            },
            ..TransferConfig::default()
        };
        let r = run(
            &TextTransferInputs {
                task: &task,
                pretrained: None,
                spec: &spec,
                quiet: true,
            },
            &cfg,
        )
        .unwrap();
        let scratch = r.get("scratch").unwrap();
        assert_eq!(scratch.per_seed.len(), 2);
        assert!(
            scratch.mean > 0.9,
            "scratch learns the keywords: {scratch:?}"
        );
        assert_eq!(r.test_images, 150);
        assert!(r.get("random").unwrap().mean > 0.0);

        let needs = TransferConfig {
            modes: vec![TransferMode::Probe],
            ..cfg
        };
        let err = run(
            &TextTransferInputs {
                task: &task,
                pretrained: None,
                spec: &spec,
                quiet: true,
            },
            &needs,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("pretrained"), "{err}");
    }

    #[test]
    fn fine_tuning_from_the_probe_head_starts_where_the_probe_ends() {
        let spec = keyword_spec();
        let task = keyword_task(20, 1);
        let pretrained = spec.init(&train_device());
        // One step at a negligible rate: fine-tuning's predictions are its starting head's.
        let cfg = TransferConfig {
            modes: vec![TransferMode::Probe, TransferMode::Finetune],
            labels_per_class: 10,
            seeds: 2,
            finetune_head: HeadStart::Probe,
            encoder_lr_scale: 1.0,
            finetune: TrainConfig {
                epochs: 1,
                max_steps: 1,
                batch_size: 16,
                optimizer: crate::config::OptimizerKind::Adamw,
                lr: 1e-9,
                weight_decay: 0.0,
                warmup_epochs: 0.0,
                ..TrainConfig::default()
            },
            ..TransferConfig::default()
        };
        let r = run(
            &TextTransferInputs {
                task: &task,
                pretrained: Some(&pretrained),
                spec: &spec,
                quiet: true,
            },
            &cfg,
        )
        .unwrap();
        let (probe, finetune) = (r.get("probe").unwrap(), r.get("finetune").unwrap());
        assert!(probe.mean > 0.5, "the probe reads the keyword: {probe:?}");
        for (p, f) in probe.per_seed.iter().zip(&finetune.per_seed) {
            assert!(
                (p - f).abs() < 0.01,
                "probe {probe:?} vs finetune {finetune:?}"
            );
        }
    }
}
