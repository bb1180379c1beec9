//! Transfer with few labels: each mode over several labelled subsets (seeds), scored on the
//! whole test split.

pub mod cells;
pub mod config;
pub mod probe;
pub mod subset;

pub use crate::eval::{features, knn};

use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::data::ImageSet;
use crate::data::examples::Supervised;
use crate::data::loader::{Normalizer, eval_batch};
use crate::encoder::TrainedEncoder;
use crate::models::{Classifier, ClassifierHead, Encoder, EncoderSpec, FeatureLayer};
use crate::train::{Fit, TrainConfig, fit, predict, train_device};
pub use cells::{Backbone, ProbeHead, Transferer};
use config::{TransferConfig, TransferMode};
use features::{Features, extract_augmented, extract_layer};

/// Accuracies of one mode over the seeds, as fractions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModeResult {
    pub mode: String,
    pub mean: f64,
    pub std: f64,
    pub per_seed: Vec<f64>,
}

impl ModeResult {
    pub fn from_runs(mode: &str, per_seed: Vec<f64>) -> Self {
        let n = per_seed.len().max(1) as f64;
        let mean = per_seed.iter().sum::<f64>() / n;
        // Sample standard deviation; zero for a single seed.
        let std = if per_seed.len() > 1 {
            (per_seed.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Self {
            mode: mode.to_string(),
            mean,
            std,
            per_seed,
        }
    }
}

/// The content of `results.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferResults {
    /// Labelled images per class; `null` when every label, or a listed or random subset, was
    /// used (`subset` says which).
    pub labels_per_class: Option<usize>,
    /// What was labelled: "10 labels per class", "100 images listed in sel.csv",
    /// "100 random images, unstratified".
    #[serde(default)]
    pub subset: String,
    /// Labelled images of each seed.
    #[serde(default)]
    pub labelled_images: usize,
    pub results: Vec<ModeResult>,
    pub test_images: usize,
    pub seeds: usize,
    pub seconds: f64,
}

impl TransferResults {
    pub fn get(&self, mode: &str) -> Option<&ModeResult> {
        self.results.iter().find(|r| r.mode == mode)
    }

    /// A small fixed-width table for the terminal.
    pub fn table(&self) -> String {
        let mut s = format!("test accuracy, {}, {} seeds\n", self.subset, self.seeds);
        s += &format!("{:<10} {:>8} {:>8}   per seed\n", "mode", "mean", "std");
        for r in &self.results {
            let per: Vec<String> = r.per_seed.iter().map(|a| format!("{:.3}", a)).collect();
            s += &format!(
                "{:<10} {:>8.3} {:>8.3}   {}\n",
                r.mode,
                r.mean,
                r.std,
                per.join(" ")
            );
        }
        s
    }
}

/// What transfer works with.
pub struct TransferInputs<'a> {
    pub train: &'a ImageSet,
    pub test: &'a ImageSet,
    /// The pretrained encoder; modes other than scratch and random need it.
    pub pretrained: Option<&'a TrainedEncoder>,
    /// The architecture used for scratch and random when there is no pretrained encoder.
    pub spec: EncoderSpec,
    pub quiet: bool,
}

pub fn accuracy(predicted: &[u32], truth: &[u32]) -> f64 {
    predicted.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / truth.len().max(1) as f64
}

/// Image transfer: an image encoder (ConvNet, ResNet, ViT) on labelled images.
pub struct ImageBackbone<'a> {
    pub inputs: &'a TransferInputs<'a>,
    pub spec: EncoderSpec,
    normalizer: Normalizer,
    /// Where the frozen features come from.
    layer: FeatureLayer,
}

impl<'a> ImageBackbone<'a> {
    pub fn new(inputs: &'a TransferInputs<'a>, layer: FeatureLayer) -> Result<Self, Error> {
        if inputs.test.labels.is_none() {
            return Err(Error::msg("the test split has no labels"));
        }
        let spec = inputs
            .pretrained
            .map(|p| p.spec.clone())
            .unwrap_or_else(|| inputs.spec.clone());
        let normalizer = Normalizer {
            mean: spec.mean.clone(),
            std: spec.std.clone(),
        };
        Ok(Self {
            inputs,
            spec,
            normalizer,
            layer,
        })
    }

    fn extract(&self, encoder: &Encoder, set: &ImageSet) -> Features {
        extract_layer(
            encoder,
            set,
            &self.normalizer,
            eval_batch(set.shape()),
            self.layer,
        )
    }
}

/// The progress label of a transfer's training (never shown: transfer trains quietly).
pub const TRANSFER_LABEL: &str = "transfer";

/// Transfer cells of an image encoder.
pub type ImageTransferer<'a> = Transferer<ImageBackbone<'a>>;

impl<'a> ImageTransferer<'a> {
    pub fn for_images(inputs: &'a TransferInputs<'a>, layer: FeatureLayer) -> Result<Self, Error> {
        Ok(Transferer::new(ImageBackbone::new(inputs, layer)?))
    }
}

impl Backbone for ImageBackbone<'_> {
    type Encoder = Encoder;

    fn classes(&self) -> usize {
        self.inputs.train.num_classes()
    }
    fn train_labels(&self) -> Result<&[u32], Error> {
        self.inputs.train.labels.as_deref().ok_or_else(|| {
            Error::msg("transfer needs labelled training images; this data set has no labels")
        })
    }
    fn test_labels(&self) -> &[u32] {
        self.inputs.test.labels.as_ref().expect("checked in new")
    }
    fn pretrained(&self) -> Option<&Encoder> {
        self.inputs.pretrained.map(|p| &p.encoder)
    }
    fn init(&self, device: &Device) -> Encoder {
        self.spec.init(device)
    }
    fn fork(&self, encoder: &Encoder, device: &Device) -> Encoder {
        encoder.clone().fork(device)
    }
    fn train_features(&self, encoder: &Encoder, rows: &[usize]) -> Features {
        self.extract(encoder, &self.inputs.train.subset(rows))
    }
    fn test_features(&self, encoder: &Encoder) -> Features {
        self.extract(encoder, self.inputs.test)
    }
    fn augmented_features(
        &self,
        encoder: &Encoder,
        subset: &[usize],
        cfg: &TransferConfig,
        seed: u64,
    ) -> Option<Features> {
        Some(extract_augmented(
            encoder,
            &self.inputs.train.subset(subset),
            &self.normalizer,
            self.layer,
            &cfg.finetune.augment,
            cfg.probe_augmented_views,
            seed,
        ))
    }
    fn train_classifier(
        &self,
        encoder: Encoder,
        probe_head: Option<ProbeHead<Encoder>>,
        encoder_lr_scale: f64,
        subset: &[usize],
        recipe: &TrainConfig,
    ) -> Result<Vec<u32>, Error> {
        let device = train_device();
        let classes = self.classes();
        let mut head = ClassifierHead::linear(self.spec.feature_dim(), classes, &device);
        if let Some(probe_head) = probe_head {
            head.out = probe_head(&encoder);
        }
        let labelled = self.inputs.train.subset(subset);
        let fitted = fit(
            &Fit {
                set: &labelled,
                normalizer: &self.normalizer,
                task: &Supervised { classes },
                recipe,
                encoder_lr_scale,
                run_dir: None,
                model_tag: String::new(),
                label: TRANSFER_LABEL.into(),
                quiet: true,
                checkpoint_every: None,
                monitor: None,
                decode_pool: None,
            },
            Classifier { encoder, head },
        )?;
        let test = self.inputs.test;
        Ok(predict(
            &fitted.model,
            test,
            &self.normalizer,
            eval_batch(test.shape()),
        ))
    }
}

/// Run every configured mode over `cfg.seeds` labelled subsets.
pub fn run(inputs: &TransferInputs, cfg: &TransferConfig) -> Result<TransferResults, Error> {
    let started = Instant::now();
    let cells = ImageTransferer::for_images(inputs, cfg.feature_layer())?;
    let chosen = cfg.labelled_subset();
    let (subsets, described) = subset::labelled_subsets(inputs.train, &chosen, cfg.seeds)?;
    if inputs.pretrained.is_none() && cfg.modes.iter().any(|m| m.needs_pretrained()) {
        return Err(cells::needs_pretrained());
    }
    let results = score_modes(
        cfg,
        &subsets,
        cells.test_labels(),
        inputs.quiet,
        |mode, subset, seed| cells.predict(mode, subset, seed, cfg),
    )?;
    Ok(TransferResults {
        labels_per_class: chosen.per_class(),
        subset: described,
        labelled_images: subsets.first().map_or(0, Vec::len),
        results,
        test_images: inputs.test.len,
        seeds: cfg.seeds,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Test predictions of a frozen-feature mode: the linear probe (`Probe`) or k-NN (`Knn`) on
/// `memory`, the labelled subset's features, with their `labels`.
pub fn frozen_predict(
    mode: TransferMode,
    memory: &Features,
    labels: &[u32],
    test: &Features,
    classes: usize,
    cfg: &TransferConfig,
    seed: u64,
) -> Vec<u32> {
    if mode == TransferMode::Knn {
        return knn::predict(
            memory,
            labels,
            test,
            classes,
            cfg.knn_k,
            cfg.knn_temperature,
        );
    }
    probe::fit_predict(memory, labels, test, classes, &probe_recipe(cfg, seed))
}

/// The linear probe's recipe of `cfg`, seeded, for the rows of a labelled subset (and their
/// augmented views).
pub fn probe_recipe(cfg: &TransferConfig, seed: u64) -> probe::ProbeRecipe {
    probe::ProbeRecipe {
        epochs: cfg.probe_epochs,
        lr: cfg.probe_lr,
        weight_decay: cfg.probe_weight_decay,
        l2: cfg.probe_l2.clone(),
        views_per_image: 1 + cfg.probe_augmented_views,
        seed,
    }
}

/// Every mode of `cfg` on every labelled subset (the seed is the subset's index):
/// `predict(mode, subset, seed)` gives the test predictions, scored against `test_labels`.
pub fn score_modes(
    cfg: &TransferConfig,
    subsets: &[Vec<usize>],
    test_labels: &[u32],
    quiet: bool,
    mut predict: impl FnMut(TransferMode, &[usize], u64) -> Result<Vec<u32>, Error>,
) -> Result<Vec<ModeResult>, Error> {
    let mut results = Vec::new();
    for &mode in &cfg.modes {
        let mut per_seed = Vec::with_capacity(subsets.len());
        for (seed, subset) in subsets.iter().enumerate() {
            let seed = seed as u64;
            let acc = accuracy(&predict(mode, subset, seed)?, test_labels);
            if !quiet {
                eprintln!(
                    "transfer {:<8} seed {seed}: test accuracy {acc:.4}",
                    mode.name()
                );
            }
            per_seed.push(acc);
        }
        results.push(ModeResult::from_runs(mode.name(), per_seed));
    }
    Ok(results)
}

/// Write `results` as `out/results.json`.
pub fn write_results(out: &std::path::Path, results: &TransferResults) -> Result<(), Error> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    crate::train::checkpoint::write_atomic(
        &out.join(crate::util::run_dir::RESULTS_FILE),
        &serde_json::to_vec_pretty(results).expect("results serialise"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let r = ModeResult::from_runs("probe", vec![0.5, 0.7, 0.6]);
        assert!((r.mean - 0.6).abs() < 1e-12);
        assert!((r.std - 0.1).abs() < 1e-12);
        assert_eq!(ModeResult::from_runs("knn", vec![0.4]).std, 0.0);
    }

    #[test]
    fn results_json_has_the_documented_shape() {
        let r = TransferResults {
            labels_per_class: Some(10),
            subset: "10 labels per class".into(),
            labelled_images: 100,
            results: vec![ModeResult::from_runs("knn", vec![0.4, 0.6])],
            test_images: 5,
            seeds: 2,
            seconds: 1.0,
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["labels_per_class"], 10);
        assert_eq!(v["subset"], "10 labels per class");
        assert!(
            r.table()
                .starts_with("test accuracy, 10 labels per class, 2 seeds")
        );
        assert_eq!(v["results"][0]["mode"], "knn");
        assert_eq!(v["results"][0]["per_seed"].as_array().unwrap().len(), 2);
        assert!(v["results"][0]["mean"].is_f64() && v["results"][0]["std"].is_f64());
    }
}
