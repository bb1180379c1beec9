//! The timed training step compared with PyTorch by `bench/compare.sh`: ConvNet-4 with the
//! rotation head on random pre-rotated views, SGD with momentum.

use std::time::Instant;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::losses::cross_entropy;
use crate::models::{Arch, Classifier, ClassifierHead, EncoderSpec};
use crate::train::train_device;

#[derive(Debug, Serialize)]
pub struct StepBench {
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    pub model: String,
    pub width: usize,
    pub batch_size: usize,
    pub threads: usize,
    pub steps: usize,
    pub seconds: f64,
    pub samples_per_s: f64,
}

pub fn training_step(
    arch: Arch,
    width: usize,
    channels: usize,
    size: usize,
    batch_size: usize,
    steps: usize,
    warmup: usize,
    threads: usize,
) -> StepBench {
    let device = train_device();
    device.seed(0);
    let spec = EncoderSpec {
        arch,
        width,
        in_channels: channels,
        mean: vec![0.0; channels],
        std: vec![1.0; channels],
    };
    let mut model = Classifier {
        encoder: spec.init(&device),
        head: ClassifierHead::linear(spec.feature_dim(), 4, &device),
    };
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(5e-4)))
        .init();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let pixels: Vec<f32> = (0..batch_size * channels * size * size)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let labels: Vec<i64> = (0..batch_size).map(|i| (i % 4) as i64).collect();
    let mut run = |n: usize| {
        for _ in 0..n {
            let x = Tensor::<4>::from_data(
                TensorData::new(pixels.clone(), [batch_size, channels, size, size]),
                &device,
            );
            let y =
                Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [batch_size]), &device);
            let loss = cross_entropy(model.forward(x, 1), y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.05, model.clone(), grads);
        }
        // Reading a parameter back waits for any queued work.
        let _: Vec<f32> = model
            .head
            .out
            .weight
            .val()
            .into_data()
            .try_into_vec()
            .unwrap_or_default();
    };
    run(warmup);
    let started = Instant::now();
    run(steps);
    let seconds = started.elapsed().as_secs_f64();
    StepBench {
        implementation: "pretext",
        model: arch.to_string(),
        width,
        batch_size,
        threads,
        steps,
        seconds,
        samples_per_s: (steps * batch_size) as f64 / seconds,
    }
}

#[derive(Debug, Serialize)]
pub struct PipelineBench {
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    pub task: &'static str,
    pub images: usize,
    pub views: usize,
    pub batch_size: usize,
    pub threads: usize,
    pub seconds: f64,
    pub images_per_s: f64,
}

/// Source images per second through `task`'s data pipeline (the loader's batch assembly:
/// augmentation, views, normalisation), timed over `images` images after one warm-up batch.
pub fn data_pipeline(
    set: &crate::data::ImageSet,
    task: &dyn crate::tasks::Task,
    images: usize,
    batch_size: usize,
) -> PipelineBench {
    use crate::data::loader::{Augment, BatchPlan, Normalizer};
    let normalizer = Normalizer::fit(set);
    let plan = BatchPlan {
        set,
        normalizer: &normalizer,
        task,
        augment: Augment {
            crop_padding: 4,
            hflip: true,
        },
        batch_size,
        shuffle: false,
        seed: 0,
        epoch: 0,
    };
    let order: Vec<usize> = (0..images.max(1)).map(|i| i % set.len).collect();
    let _ = plan.make(&order[..batch_size.min(order.len())]);
    let started = Instant::now();
    let mut views = 0;
    for chunk in order.chunks(batch_size.max(1)) {
        views += plan.make(chunk).num_views();
    }
    let seconds = started.elapsed().as_secs_f64();
    PipelineBench {
        implementation: "pretext",
        task: task.name(),
        images: order.len(),
        views,
        batch_size,
        threads: rayon::current_num_threads(),
        seconds,
        images_per_s: order.len() as f64 / seconds.max(1e-9),
    }
}
