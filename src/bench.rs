//! The timed training step compared with PyTorch by `bench/compare.sh`: ConvNet-4 with the
//! rotation head on random pre-rotated views, SGD with momentum.

use std::path::Path;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::losses::cross_entropy;
use crate::models::{Arch, Classifier, ClassifierHead, EncoderSpec, Stem};
use crate::train::train_device;
use crate::util::memory::ResidentMemory;

#[derive(Debug, Serialize)]
pub struct StepBench {
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    pub model: String,
    pub width: usize,
    /// The ResNets' stem (absent for the other networks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stem: Option<Stem>,
    /// Samples per step (images, or sequences).
    pub batch: usize,
    pub threads: usize,
    /// `cpu`, `wgpu`, `cuda:0`, ...: where the step ran.
    pub device: String,
    /// `fp32` or `bf16`: the float type it computed in.
    pub precision: &'static str,
    pub steps: usize,
    pub seconds: f64,
    pub samples_per_s: f64,
    /// Resident memory before the first step, its peak over the run, and their difference:
    /// what the steps themselves need (the PyTorch peers report the same three).
    #[serde(flatten)]
    pub memory: Option<StepMemory>,
    /// With `--profile N`: where a step's time goes (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<StepProfile>,
}

/// Mean milliseconds of a step until it returns, its work issued to the device, and until the
/// device has finished it. On a GPU, issuing that takes as long as finishing means the host's
/// launches bound the step; issuing much faster means the device's kernels do.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StepProfile {
    pub steps: usize,
    pub issue_ms: f64,
    pub synced_ms: f64,
}

/// How many steps a benchmark runs: `warmup` untimed, `steps` timed, then `profile` more, each
/// waited for on its own (see [`StepProfile`]).
#[derive(Clone, Copy, Debug)]
pub struct StepCounts {
    pub steps: usize,
    pub warmup: usize,
    pub profile: usize,
}

/// Resident memory of a timed run, in MiB.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct StepMemory {
    pub rss_before_mib: f64,
    pub peak_rss_mib: f64,
    pub step_mib: f64,
}

/// How long the timed steps took, the memory they needed, and the profile where asked for.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub seconds: f64,
    pub memory: Option<StepMemory>,
    pub profile: Option<StepProfile>,
}

/// The image network a benchmark times.
#[derive(Clone, Copy, Debug)]
pub struct Backbone {
    pub arch: Arch,
    /// Width of the first stage.
    pub width: usize,
    /// Ignored by ConvNet-4.
    pub stem: Stem,
}

impl Backbone {
    /// The stem to report: `None` for an architecture without one.
    fn reported_stem(&self) -> Option<Stem> {
        self.arch.has_stem().then_some(self.stem)
    }
}

/// The random input batch of the image benchmarks: `batch` images of `channels x size x size`.
#[derive(Clone, Copy, Debug)]
pub struct ImageBatch {
    pub channels: usize,
    pub size: usize,
    pub batch: usize,
}

impl ImageBatch {
    fn pixels(&self) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        (0..self.batch * self.channels * self.size * self.size)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect()
    }
    /// The encoder for these images; the random pixels need no normalisation.
    fn encoder_spec(&self, net: Backbone) -> EncoderSpec {
        EncoderSpec {
            arch: net.arch,
            width: net.width,
            in_channels: self.channels,
            mean: vec![0.0; self.channels],
            std: vec![1.0; self.channels],
            stem: net.stem,
            vit: net.arch.vit_size().map(|_| {
                crate::models::VitLayout::new(None, self.size).expect("the default patch")
            }),
            input_size: None,
            start: None,
        }
    }
    fn dims(&self) -> [usize; 4] {
        [self.batch, self.channels, self.size, self.size]
    }
}

/// Feature extraction: the encoder's forward pass in evaluation mode on the inference device
/// (no autodiff), as `pretext embed` and the frozen transfer modes run it.
pub fn feature_extraction(
    net: Backbone,
    shape: ImageBatch,
    counts: StepCounts,
    threads: usize,
) -> StepBench {
    let device = crate::train::infer_device();
    device.seed(0);
    let encoder = shape.encoder_spec(net).init(&device);
    materialise(&encoder);
    let pixels = shape.pixels();
    // Every step reads its features back, as `pretext embed` does.
    let step = |_wait: bool| {
        let x = Tensor::<4>::from_data(TensorData::new(pixels.clone(), shape.dims()), &device);
        encoder.forward(x).into_data();
    };
    let timing = time_steps(counts, &device, step);
    StepBench {
        stem: net.reported_stem(),
        ..StepBench::pretext(
            format!("{}-features", net.arch),
            net.width,
            shape.batch,
            threads,
            counts.steps,
            timing,
        )
    }
}

impl StepBench {
    /// pretext's result on the selected device: `steps` of `batch` samples in `seconds`.
    fn pretext(
        model: String,
        width: usize,
        batch: usize,
        threads: usize,
        steps: usize,
        timing: Timing,
    ) -> Self {
        Self {
            implementation: "pretext",
            model,
            width,
            stem: None,
            batch,
            threads,
            device: crate::device::selected().to_string(),
            precision: crate::device::precision().name(),
            steps,
            seconds: timing.seconds,
            samples_per_s: (steps * batch) as f64 / timing.seconds,
            memory: timing.memory,
            profile: timing.profile,
        }
    }
}

pub fn training_step(
    net: Backbone,
    shape: ImageBatch,
    counts: StepCounts,
    threads: usize,
) -> StepBench {
    let batch_size = shape.batch;
    let device = train_device();
    device.seed(0);
    let spec = shape.encoder_spec(net);
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
    materialise(&model);
    let pixels = shape.pixels();
    let labels: Vec<i64> = (0..batch_size).map(|i| (i % 4) as i64).collect();
    let step = |wait: bool| {
        let x = Tensor::<4>::from_data(TensorData::new(pixels.clone(), shape.dims()), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [batch_size]), &device);
        let loss = cross_entropy(model.forward(x, 1), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.05, model.clone(), grads);
        if wait {
            // Reading a parameter back waits for the queued work.
            model.head.out.weight.val().into_data();
        }
    };
    let timing = time_steps(counts, &device, step);
    StepBench {
        stem: net.reported_stem(),
        ..StepBench::pretext(
            net.arch.to_string(),
            net.width,
            batch_size,
            threads,
            counts.steps,
            timing,
        )
    }
}

/// Initialises every parameter of `module` (burn initialises them lazily, at first use), so
/// that they count in the resident memory before the first step, as PyTorch's do.
fn materialise<M: Module>(module: &M) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

/// Seconds that `counts.steps` steps take after `counts.warmup` untimed ones, the resident
/// memory that warm-up and steps add to what the process held before them, and the profile.
/// `step(wait)` runs one step; with `wait` it also reads a result back, which waits for the
/// device's queued work.
fn time_steps(counts: StepCounts, device: &Device, mut step: impl FnMut(bool)) -> Timing {
    let before = ResidentMemory::read();
    let mut run = |n: usize| {
        for i in 0..n {
            step(i + 1 == n);
        }
    };
    run(counts.warmup);
    let started = Instant::now();
    run(counts.steps);
    let seconds = started.elapsed().as_secs_f64();
    let memory = before.zip(ResidentMemory::read()).map(|(b, a)| StepMemory {
        rss_before_mib: b.current_mib,
        peak_rss_mib: a.peak_mib,
        step_mib: a.peak_mib - b.current_mib,
    });
    let profile = (counts.profile > 0).then(|| profile_steps(counts.profile, device, step));
    Timing {
        seconds,
        memory,
        profile,
    }
}

/// `n` steps, each timed until it returns and until the device has finished it.
fn profile_steps(n: usize, device: &Device, mut step: impl FnMut(bool)) -> StepProfile {
    let (mut issue, mut synced) = (0.0, 0.0);
    for _ in 0..n {
        let started = Instant::now();
        step(false);
        issue += started.elapsed().as_secs_f64();
        // A device that cannot synchronise has no queue to wait for.
        let _ = device.sync();
        synced += started.elapsed().as_secs_f64();
    }
    StepProfile {
        steps: n,
        issue_ms: 1e3 * issue / n as f64,
        synced_ms: 1e3 * synced / n as f64,
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
    /// Side of the images the task gets (after decoding and framing, for a streamed folder).
    pub image_size: usize,
}

/// Source images per second through `task`'s data pipeline (the loader's batch assembly:
/// augmentation, views, normalisation), timed over `images` images after one warm-up batch.
pub fn data_pipeline(
    set: &dyn crate::data::source::ImageSource,
    task: &dyn crate::data::examples::Task,
    images: usize,
    batch_size: usize,
) -> Result<PipelineBench, crate::data::DataError> {
    use crate::data::loader::{Augment, BatchPlan, Normalizer, STREAM_NORMALIZER_IMAGES};
    let normalizer = Normalizer::fit_source(set, STREAM_NORMALIZER_IMAGES)?;
    let plan = BatchPlan {
        set,
        normalizer: &normalizer,
        task,
        augment: Augment {
            crop_padding: 4,
            hflip: true,
        },
        batch_size,
        shuffle: true,
        seed: 0,
        epoch: 0,
        training: true,
        pool: None,
    };
    // The training order (a shuffle, as a DataLoader's), repeated if the set is smaller.
    let shuffled = plan.batches().concat();
    let order: Vec<usize> = (0..images.max(1))
        .map(|i| shuffled[i % shuffled.len()])
        .collect();
    plan.make(&order[..batch_size.min(order.len())])?;
    let started = Instant::now();
    let mut views = 0;
    for chunk in order.chunks(batch_size.max(1)) {
        views += plan.make(chunk)?.num_views();
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(PipelineBench {
        implementation: "pretext",
        task: task.name(),
        images: order.len(),
        views,
        batch_size,
        threads: rayon::current_num_threads(),
        seconds,
        images_per_s: order.len() as f64 / seconds.max(1e-9),
        image_size: set.shape()[1],
    })
}

/// The masked-language-model training step of `MODEL=transformer bench/compare.sh`: the BERT encoder of
/// `spec` on `batch_size` random sequences of `spec.max_len` tokens, 15 % of positions selected
/// (their hidden states gathered before the vocabulary head), cross-entropy, AdamW.
pub fn mlm_step(
    spec: &crate::models::bert::BertSpec,
    batch_size: usize,
    counts: StepCounts,
    threads: usize,
) -> StepBench {
    use crate::config::{OptimizerKind, TrainConfig};
    use crate::methods::mlm::{MlmBatch, MlmLearner, MlmModel};
    use crate::train::Learner;
    let device = train_device();
    device.seed(0);
    let recipe = TrainConfig {
        optimizer: OptimizerKind::Adamw,
        lr: 1e-4,
        weight_decay: 0.01,
        ..TrainConfig::default()
    };
    let mut learner = MlmLearner::new(MlmModel::new(spec, &device), &recipe, &device);
    materialise(&learner.model);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let len = spec.max_len;
    let vocab = spec.vocab_size as i64;
    let selected = ((len as f64 * 0.15).round() as usize).max(1);
    let mut batch = MlmBatch {
        sequences: batch_size,
        len,
        input: (0..batch_size * len)
            .map(|_| rng.random_range(5..vocab))
            .collect(),
        padding: vec![false; batch_size * len],
        ..MlmBatch::default()
    };
    for row in 0..batch_size {
        // Evenly spread selected positions after [CLS], as the peer script does.
        for k in 0..selected {
            batch
                .positions
                .push((row * len + 1 + k * (len - 1) / selected) as i64);
            batch.targets.push(rng.random_range(5..vocab));
        }
    }
    // Every step reads its loss back, which waits for the queued work.
    let step = |_wait: bool| {
        learner.step(&batch, 1e-4, 0.0);
    };
    let timing = time_steps(counts, &device, step);
    let model = format!(
        "transformer-mlm/l{}/h{}/len{}",
        spec.layers, spec.hidden, spec.max_len
    );
    StepBench::pretext(
        model,
        spec.hidden,
        batch_size,
        threads,
        counts.steps,
        timing,
    )
}

/// What `pretext bench decode` prints.
#[derive(Serialize)]
pub struct DecodeBench {
    pub images: usize,
    pub image_size: usize,
    pub threads: usize,
    /// Mean megapixels of the files decoded.
    pub mean_megapixels: f64,
    /// Files read, decoded at full size (the `image` crate's decoder) and cropped and resized.
    pub full_images_per_s: f64,
    /// The same with JPEG DCT scaling (jpeg-decoder's scaled IDCT) where the file allows it.
    pub scaled_images_per_s: f64,
    pub speedup: f64,
}

/// Decoding speed of an image folder's first `images` files to `image_size`-pixel evaluation
/// crops, with and without DCT scaling, on the global pool's threads.
pub fn decode_speed(
    folder: &Path,
    image_size: usize,
    images: usize,
) -> Result<DecodeBench, crate::Error> {
    use crate::data::decode;
    use crate::data::index;
    use crate::data::stream::Framer;
    use rayon::prelude::*;
    let (index, _) = index::open(folder, &index::default_cache_dir())?;
    let files: Vec<std::path::PathBuf> = index
        .train
        .iter()
        .take(images.max(1))
        .map(|e| index.full_path(e))
        .collect();
    let framer = Framer {
        image_size,
        eval_crop: 1.0,
        crop_min_scale: 1.0,
        max_pixels: decode::DEFAULT_MAX_PIXELS,
    };
    let pass = |need: u32| -> Result<(f64, f64), crate::data::DataError> {
        let started = Instant::now();
        let pixels: Vec<u64> = files
            .par_iter()
            .map(|path| {
                let bytes = std::fs::read(path).map_err(|e| crate::data::DataError::io(path, e))?;
                let header = decode::header(path, &bytes, framer.max_pixels)?;
                let decoded = decode::decode(path, &bytes, &header, 3, need)?;
                let framed = framer.frame(&decoded, crate::data::source::Framing::Eval);
                std::hint::black_box(framed);
                Ok(header.width as u64 * header.height as u64)
            })
            .collect::<Result<_, _>>()?;
        let rate = files.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let mean = pixels.iter().sum::<u64>() as f64 / pixels.len().max(1) as f64 / 1e6;
        Ok((rate, mean))
    };
    let (full, mean_megapixels) = pass(u32::MAX)?;
    let (scaled, _) = pass(image_size as u32)?;
    Ok(DecodeBench {
        images: files.len(),
        image_size,
        threads: rayon::current_num_threads(),
        mean_megapixels,
        full_images_per_s: full,
        scaled_images_per_s: scaled,
        speedup: scaled / full.max(1e-9),
    })
}
