//! Transfer with few labels: each mode over several labelled subsets (seeds), scored on the
//! whole test split.

pub mod features;
pub mod knn;
pub mod probe;

use std::time::Instant;

use burn::module::Module;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::config::{TransferConfig, TransferMode};
use crate::data::ImageSet;
use crate::data::loader::Normalizer;
use crate::data::split::few_labels;
use crate::encoder::TrainedEncoder;
use crate::models::{Classifier, ClassifierHead, EncoderSpec};
use crate::tasks::Supervised;
use crate::train::{Fit, evaluate, fit, train_device};
use features::{Features, extract};

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
    /// Labelled images per class; `null` when every label was used.
    pub labels_per_class: Option<usize>,
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
        let budget = self
            .labels_per_class
            .map(|n| n.to_string())
            .unwrap_or_else(|| "all".into());
        let mut s = format!(
            "test accuracy, {budget} labels per class, {} seeds\n",
            self.seeds
        );
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

fn accuracy(predicted: &[u32], truth: &[u32]) -> f64 {
    predicted.iter().zip(truth).filter(|(p, t)| p == t).count() as f64 / truth.len().max(1) as f64
}

/// Run every configured mode over `cfg.seeds` labelled subsets.
pub fn run(inputs: &TransferInputs, cfg: &TransferConfig) -> Result<TransferResults, Error> {
    let started = Instant::now();
    let test_labels = inputs
        .test
        .labels
        .as_ref()
        .ok_or_else(|| Error::msg("the test split has no labels"))?;
    let classes = inputs.train.num_classes();
    let per_class = (cfg.labels_per_class > 0).then_some(cfg.labels_per_class);
    let subsets: Vec<Vec<usize>> = (0..cfg.seeds as u64)
        .map(|s| few_labels(inputs.train, per_class, s))
        .collect::<Result<_, _>>()?;
    let train_labels = inputs
        .train
        .labels
        .as_ref()
        .expect("few_labels checked labels");
    let needs_pretrained = |m: &TransferMode| {
        matches!(
            m,
            TransferMode::Probe | TransferMode::Knn | TransferMode::Finetune
        )
    };
    if inputs.pretrained.is_none() && cfg.modes.iter().any(needs_pretrained) {
        return Err(Error::msg(
            "modes probe, knn and finetune need a pretrained encoder (--run RUN_DIR)",
        ));
    }
    let spec = inputs
        .pretrained
        .map(|p| p.spec.clone())
        .unwrap_or_else(|| inputs.spec.clone());
    let normalizer = Normalizer {
        mean: spec.mean.clone(),
        std: spec.std.clone(),
    };

    // Frozen features are computed once per encoder and shared by probe and k-NN across seeds.
    let pretrained_features: Option<(Features, Features)> = match inputs.pretrained {
        Some(p)
            if cfg
                .modes
                .iter()
                .any(|m| matches!(m, TransferMode::Probe | TransferMode::Knn)) =>
        {
            Some((
                extract(&p.encoder, inputs.train, &normalizer, 256),
                extract(&p.encoder, inputs.test, &normalizer, 256),
            ))
        }
        _ => None,
    };

    let mut results = Vec::new();
    for &mode in &cfg.modes {
        let mut per_seed = Vec::with_capacity(cfg.seeds);
        for (seed, subset) in subsets.iter().enumerate() {
            let seed = seed as u64;
            let subset_labels: Vec<u32> = subset.iter().map(|&i| train_labels[i]).collect();
            let acc = match mode {
                TransferMode::Probe | TransferMode::Knn => {
                    let (train_f, test_f) = pretrained_features
                        .as_ref()
                        .expect("features computed for probe and k-NN");
                    let memory = train_f.select(subset);
                    let predicted = if mode == TransferMode::Probe {
                        probe::fit_predict(
                            &memory,
                            &subset_labels,
                            test_f,
                            classes,
                            &probe_recipe(cfg, seed),
                        )
                    } else {
                        knn::predict(
                            &memory,
                            &subset_labels,
                            test_f,
                            classes,
                            cfg.knn_k,
                            cfg.knn_temperature,
                        )
                    };
                    accuracy(&predicted, test_labels)
                }
                TransferMode::Random => {
                    let device = train_device();
                    device.seed(seed.wrapping_add(1_000));
                    let encoder = spec.init(&device);
                    let train_f = extract(&encoder, &inputs.train.subset(subset), &normalizer, 256);
                    let test_f = extract(&encoder, inputs.test, &normalizer, 256);
                    accuracy(
                        &probe::fit_predict(
                            &train_f,
                            &subset_labels,
                            &test_f,
                            classes,
                            &probe_recipe(cfg, seed),
                        ),
                        test_labels,
                    )
                }
                TransferMode::Finetune | TransferMode::Scratch => {
                    let device = train_device();
                    device.seed(seed.wrapping_add(2_000));
                    let (encoder, lr_scale) = match mode {
                        TransferMode::Finetune => (
                            inputs
                                .pretrained
                                .expect("checked above")
                                .encoder
                                .clone()
                                .fork(&device),
                            cfg.encoder_lr_scale,
                        ),
                        _ => (spec.init(&device), 1.0),
                    };
                    let model = Classifier {
                        encoder,
                        head: ClassifierHead::linear(spec.feature_dim(), classes, &device),
                    };
                    let labelled = inputs.train.subset(subset);
                    let task = Supervised { classes };
                    let recipe = crate::config::TrainConfig {
                        seed: cfg.finetune.seed.wrapping_add(seed),
                        ..cfg.finetune.clone()
                    };
                    let outcome = fit(
                        &Fit {
                            set: &labelled,
                            normalizer: &normalizer,
                            task: &task,
                            recipe: &recipe,
                            encoder_lr_scale: lr_scale,
                            run_dir: None,
                            model_tag: String::new(),
                            label: format!("{} seed {seed}", mode.name()),
                            quiet: true,
                            checkpoint_every: None,
                            monitor: None,
                        },
                        model,
                    )?;
                    evaluate(&outcome.model, inputs.test, &normalizer, &task, 256)
                }
            };
            if !inputs.quiet {
                eprintln!(
                    "transfer {:<8} seed {seed}: test accuracy {acc:.4}",
                    mode.name()
                );
            }
            per_seed.push(acc);
        }
        results.push(ModeResult::from_runs(mode.name(), per_seed));
    }
    Ok(TransferResults {
        labels_per_class: per_class,
        results,
        test_images: inputs.test.len,
        seeds: cfg.seeds,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn probe_recipe(cfg: &TransferConfig, seed: u64) -> probe::ProbeRecipe {
    probe::ProbeRecipe {
        epochs: cfg.probe_epochs,
        lr: cfg.probe_lr,
        weight_decay: cfg.probe_weight_decay,
        seed,
    }
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
            results: vec![ModeResult::from_runs("knn", vec![0.4, 0.6])],
            test_images: 5,
            seeds: 2,
            seconds: 1.0,
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["labels_per_class"], 10);
        assert_eq!(v["results"][0]["mode"], "knn");
        assert_eq!(v["results"][0]["per_seed"].as_array().unwrap().len(), 2);
        assert!(v["results"][0]["mean"].is_f64() && v["results"][0]["std"].is_f64());
    }
}
