//! The library calls behind each command: pretrain → embed / transfer → report.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Error;
use crate::cluster::pseudo::{self, ClusteringSummary};
use crate::collection::{self, TrainingImages};
use crate::config::{
    ClusterConfig, DataConfig, ModelConfig, PretrainConfig, TransferConfig, read_toml,
};
use crate::data::embed_files::{EmbedDir, FilesCsv, NpyRows, SplitChoice, TEST_SPLIT, TRAIN_SPLIT};
use crate::data::loader::{Normalizer, PREFETCH_BATCHES, STREAM_NORMALIZER_IMAGES, eval_batch};
use crate::data::source::ImageSource;
use crate::data::{Dataset, ImageSet, split};
use crate::device::{DeviceSpec, ranks};
use crate::encoder::TrainedEncoder;
use crate::methods::{ImageMethod, MethodConfig, Modality};
use crate::models::{Encoder, EncoderSpec, FeatureLayer, StartWeights, VitLayout};
use crate::train::checkpoint::write_atomic;
use crate::train::monitor::EpochMonitor;
use crate::train::{Fit, Monitor, TrainConfig, fit_learner, train_device};
use crate::transfer::{self, TransferInputs, TransferResults};

pub mod curate;

pub use crate::collection::{load_data, read_as_is, with_test_split};
pub use crate::methods::PretrainSummary;
pub use crate::util::run_dir::{CONFIG_FILE, RESULTS_FILE, RunDir};

/// `pretext info` on an image folder: counts from its (cached) index and sizes from the files'
/// headers; `check` decodes every image too. The report, and the unreadable files.
pub fn describe_folder(
    path: &Path,
    check: bool,
    max_pixels: u64,
) -> Result<(String, Vec<String>), Error> {
    use crate::data::{index, survey};
    let (index, origin) = index::open(path, &index::default_cache_dir())?;
    let found = survey::survey(&index, check, max_pixels);
    Ok((survey::describe(&index, origin, &found), found.problems))
}

/// Replaces the labels of `data` with the teacher's clusters (train) and nearest clusters (test),
/// computing them or, when `reuse`, loading those this run saved before.
fn label_with_clusters(
    cfg: &ClusterConfig,
    run_dir: &Path,
    data: &mut Dataset,
    reuse: bool,
    quiet: bool,
) -> Result<ClusteringSummary, Error> {
    let run = RunDir(run_dir);
    let summary_path = run.clusters();
    let saved = if reuse && summary_path.exists() {
        let train = pseudo::load_saved(run_dir, data.train.len)?;
        let test = match &data.test {
            Some(t) => crate::npy::read_labels(&run.test_pseudo_labels())
                .ok()
                .filter(|l| l.len() == t.len),
            None => None,
        };
        let summary: Option<ClusteringSummary> = std::fs::read(&summary_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match (train, summary) {
            (Some(train), Some(summary)) if test.is_some() == data.test.is_some() => {
                Some((train, test, summary))
            }
            _ => None,
        }
    } else {
        None
    };
    let (train, test, summary) = match saved {
        Some(s) => s,
        None => {
            let (train, test, summary) =
                pseudo::pseudo_labels(cfg, &data.train, data.test.as_ref(), quiet)?;
            if ranks::is_leader() {
                save_pseudo_labels(&run, &train, test.as_deref(), &summary)?;
            }
            (train, test, summary)
        }
    };
    let names: Vec<String> = (0..cfg.k).map(|i| format!("cluster{i}")).collect();
    data.train.labels = Some(train);
    data.train.class_names = names.clone();
    if let (Some(set), Some(labels)) = (data.test.as_mut(), test) {
        set.labels = Some(labels);
        set.class_names = names;
    }
    Ok(summary)
}

/// The pseudo-labels of the `cluster` task and how they were made, for a later attempt.
fn save_pseudo_labels(
    run: &RunDir,
    train: &[u32],
    test: Option<&[u32]>,
    summary: &ClusteringSummary,
) -> Result<(), Error> {
    let as_i64 = |l: &[u32]| l.iter().map(|&x| x as i64).collect::<Vec<_>>();
    crate::npy::write(&run.pseudo_labels(), &as_i64(train), &[train.len() as u64])?;
    if let Some(test) = test {
        crate::npy::write(
            &run.test_pseudo_labels(),
            &as_i64(test),
            &[test.len() as u64],
        )?;
    }
    write_atomic(
        &run.clusters(),
        &serde_json::to_vec_pretty(summary).expect("summary serialises"),
    )?;
    Ok(())
}

fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let text = toml::to_string_pretty(value)
        .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
    Ok(write_atomic(path, text.as_bytes())?)
}

/// Pretrain an encoder with a pretext task into `cfg.run.out`. A run directory that already
/// holds a checkpoint is continued (that is what `resume` does); its saved config must match.
pub fn pretrain(cfg: &PretrainConfig, quiet: bool) -> Result<PretrainSummary, Error> {
    cfg.validate()?;
    join_ranks(cfg)?;
    let quiet = quiet || !ranks::is_leader();
    let run_dir = cfg.run.out.clone();
    let saved_config = RunDir(&run_dir).config();
    refuse_another_config(cfg, &run_dir)?;
    if cfg.task.kind().modality() == Modality::Text {
        std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
        if ranks::is_leader() {
            write_toml(&saved_config, cfg)?;
        }
        return crate::text::pretrain::pretrain_mlm(cfg, &run_dir, quiet);
    }
    let mut images = crate::collection::for_training(&cfg.data)?;
    // Pseudo-labels of an earlier attempt at this same run are reused rather than recomputed.
    let same_task_before = saved_config.exists()
        && read_toml::<PretrainConfig>(&saved_config)
            .is_ok_and(|saved| saved.data == cfg.data && saved.task == cfg.task);
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    if ranks::is_leader() {
        write_toml(&saved_config, cfg)?;
    }
    let clustering = cluster_labels(cfg, &mut images, &run_dir, same_task_before, quiet)?;

    let method = cfg.task.build().expect("an image method");
    let task = method.task();
    for (name, bytes) in task.artifacts().into_iter().filter(|_| ranks::is_leader()) {
        write_atomic(&run_dir.join(name), &bytes)?;
    }
    if let Some(about) = task.describe()
        && !quiet
    {
        eprintln!("{about}");
    }
    let data = PretrainImages::of(&images, &run_dir, cfg.data.workers)?;
    let normalizer = &data.normalizer;
    let spec = with_start(encoder_spec(cfg, &data)?, &cfg.model)?;
    train_device().seed(cfg.train.seed);
    if !quiet {
        data.announce(cfg, &spec, &run_dir);
    }
    let monitor = EpochMonitor::new(
        &data.sample,
        data.test.as_deref(),
        normalizer,
        cfg.run.monitor_memory,
        cfg.run.monitor_queries,
    );
    let measure = monitor
        .as_ref()
        .map(|m| move |encoder: &Encoder| m.measure(encoder));
    let fit_spec = Fit {
        set: data.train,
        normalizer,
        task,
        recipe: &cfg.train,
        encoder_lr_scale: 1.0,
        run_dir: Some(&run_dir),
        model_tag: format!(
            "{}/w{}/c{}/{}",
            spec.arch,
            spec.width,
            spec.in_channels,
            cfg.task.kind()
        ),
        label: format!("pretrain {}", cfg.task.kind()),
        quiet,
        checkpoint_every: cfg.run.checkpoint_every(),
        monitor: measure.as_ref().map(|f| f as &Monitor),
        decode_pool: data.decode_pool.as_ref(),
    };
    let (encoder, outcome, pretext_test_acc) = train_encoder(
        method.as_ref(),
        &cfg.train,
        &spec,
        &fit_spec,
        data.test.as_deref(),
    )?;
    let summary = PretrainSummary {
        task: cfg.task.kind().name().into(),
        arch: cfg.model.arch.to_string(),
        steps: outcome.steps,
        seconds: outcome.seconds,
        views_per_s: outcome.views_per_s,
        pretext_test_acc,
        heldout_perplexity: None,
        run_dir: run_dir.clone(),
        clustering,
    };
    if ranks::is_leader() {
        TrainedEncoder { spec, encoder }.save(&run_dir)?;
        let json = serde_json::to_vec_pretty(&summary).expect("summary serialises");
        write_atomic(&RunDir(&summary.run_dir).results(), &json)?;
    }
    Ok(summary)
}

/// On several ranks: check that every rank runs the same binary with the same config before
/// any work, and set how long collectives wait.
fn join_ranks(cfg: &PretrainConfig) -> Result<(), Error> {
    if ranks::ranks().is_none() {
        return Ok(());
    }
    ranks::set_timeout(cfg.run.collective_timeout());
    if cfg.train.sync_batchnorm {
        // The statistics are totalled inside pretext's CPU kernels, from the training thread.
        if crate::device::several_devices() || crate::device::selected() != DeviceSpec::Cpu {
            return Err(Error::msg(
                "train.sync_batchnorm runs on the CPU with one device per rank; drop --devices \
                 and --device, or set it to false",
            ));
        }
        ranks::set_sync_batchnorm(true);
    }
    let config = toml::to_string(cfg).map_err(|e| Error::msg(format!("config: {e}")))?;
    let binary = std::env::current_exe()
        .and_then(std::fs::read)
        .map_err(|e| {
            Error::msg(format!(
                "cannot read this pretext binary to compare it: {e}"
            ))
        })?;
    ranks::check_same(&[
        ("pretext binary", xxhash_rust::xxh3::xxh3_64(&binary)),
        ("config", xxhash_rust::xxh3::xxh3_64(config.as_bytes())),
    ])
    .map_err(Error::msg)
}

/// The encoder `cfg.model` describes, for the images and normalisation of `data`.
fn encoder_spec(cfg: &PretrainConfig, data: &PretrainImages) -> Result<EncoderSpec, Error> {
    let [channels, height, width] = data.train.shape();
    let side = height.min(width);
    Ok(EncoderSpec {
        arch: cfg.model.arch,
        width: cfg.model.width,
        in_channels: channels,
        mean: data.normalizer.mean.clone(),
        std: data.normalizer.std.clone(),
        stem: cfg.model.stem_for(side),
        vit: cfg.model.vit_layout(side)?,
        input_size: Some(side),
        start: None,
    })
}

/// `spec` starting from `model.init_from`'s weights, where set (checked against the spec now,
/// before any training).
fn with_start(mut spec: EncoderSpec, model: &ModelConfig) -> Result<EncoderSpec, Error> {
    if let Some(source) = &model.init_from {
        let encoder = crate::interop::init_from(source, &spec, &train_device())?;
        spec.start = Some(StartWeights(std::sync::Arc::new(encoder)));
    }
    Ok(spec)
}

/// A run directory that holds a checkpoint may only be continued with the config it ran.
fn refuse_another_config(cfg: &PretrainConfig, run_dir: &Path) -> Result<(), Error> {
    let run = RunDir(run_dir);
    let saved_config = run.config();
    if !(run.checkpoint().exists() && saved_config.exists()) {
        return Ok(());
    }
    let saved: PretrainConfig = read_toml(&saved_config)?;
    if saved.data != cfg.data
        || saved.model != cfg.model
        || saved.task != cfg.task
        || saved.train != cfg.train
        || saved.text != cfg.text
    {
        return Err(Error::msg(format!(
            "{}: holds a run with another config; resume it with `pretext resume {}` or choose another --out",
            run_dir.display(),
            run_dir.display()
        )));
    }
    Ok(())
}

/// The `cluster` task's pseudo-labels put on the images (in memory only).
fn cluster_labels(
    cfg: &PretrainConfig,
    images: &mut TrainingImages,
    run_dir: &Path,
    reuse: bool,
    quiet: bool,
) -> Result<Option<ClusteringSummary>, Error> {
    let MethodConfig::Cluster(settings) = &cfg.task else {
        return Ok(None);
    };
    let TrainingImages::Memory(data) = images else {
        return Err(Error::msg(format!(
            "{}: the cluster task decodes its images into memory, and this folder is streamed; set data.stream = \"never\" (or a smaller data.image_size)",
            cfg.data.path
        )));
    };
    label_with_clusters(&settings.cluster, run_dir, data, reuse, quiet).map(Some)
}

/// Trains the method's learner on `fit`'s images; the encoder, how the run went, and the
/// pretext task's accuracy on `test`.
fn train_encoder(
    method: &dyn ImageMethod,
    recipe: &TrainConfig,
    spec: &EncoderSpec,
    fit: &Fit,
    test: Option<&ImageSet>,
) -> Result<(Encoder, crate::train::RunStats, Option<f64>), Error> {
    let mut learner = method.learner(spec, recipe, &train_device());
    let outcome = fit_learner(fit, learner.as_mut())?;
    let acc = test.and_then(|test| learner.pretext_accuracy(test, fit.normalizer, fit.task));
    Ok((learner.encoder(), outcome, acc))
}

/// What pretraining reads: its training source, its normaliser, and the images in memory that
/// it monitors with and scores the pretext task on (samples, when streaming), with the threads
/// that decode a streamed source.
struct PretrainImages<'a> {
    source: &'a str,
    train: &'a dyn ImageSource,
    normalizer: Normalizer,
    sample: Cow<'a, ImageSet>,
    test: Option<Cow<'a, ImageSet>>,
    decode_pool: Option<rayon::ThreadPool>,
}

impl<'a> PretrainImages<'a> {
    /// The line a pretraining run starts with (and how a streamed source is read).
    fn announce(&self, cfg: &PretrainConfig, spec: &EncoderSpec, run_dir: &Path) {
        let [channels, height, width] = self.train.shape();
        eprintln!(
            "pretrain {} on {} ({} images {channels}x{height}x{width}), {} width {}, into {}",
            cfg.task.kind(),
            self.source,
            self.train.len(),
            spec.arch,
            spec.width,
            run_dir.display()
        );
        if let Some(pool) = &self.decode_pool {
            eprintln!(
                "streaming from disk: files decoded on {} threads, up to {PREFETCH_BATCHES} batches ahead",
                pool.current_num_threads()
            );
        }
    }

    fn of(images: &'a TrainingImages, run_dir: &Path, workers: usize) -> Result<Self, Error> {
        Ok(match images {
            TrainingImages::Memory(d) => Self {
                source: &d.source,
                train: &d.train,
                normalizer: Normalizer::fit(&d.train),
                sample: Cow::Borrowed(&d.train),
                test: d.test.as_ref().map(Cow::Borrowed),
                decode_pool: None,
            },
            TrainingImages::Stream(s) => {
                s.train
                    .log_skipped_to(&RunDir(run_dir).skipped_by(ranks::rank()));
                let test = s
                    .test
                    .as_deref()
                    .map(|t| collection::sample(t, collection::sample_size(t)));
                Self {
                    source: &s.source,
                    train: s.train.as_ref(),
                    normalizer: Normalizer::fit_source(s.train.as_ref(), STREAM_NORMALIZER_IMAGES)?,
                    decode_pool: Some(collection::decode_pool(workers)?),
                    sample: Cow::Owned(collection::sample(
                        s.train.as_ref(),
                        collection::sample_size(s.train.as_ref()),
                    )?),
                    test: test.transpose()?.map(Cow::Owned),
                }
            }
        })
    }
}

/// Continue an interrupted pretraining run from its directory.
pub fn resume(run_dir: &Path, quiet: bool) -> Result<PretrainSummary, Error> {
    let cfg_path = RunDir(run_dir).config();
    if !run_dir.is_dir() {
        return Err(Error::io(
            run_dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such run directory"),
        ));
    }
    let mut cfg: PretrainConfig = read_toml(&cfg_path)?;
    cfg.run.out = run_dir.to_path_buf();
    pretrain(&cfg, quiet)
}

/// Where a transfer's encoder comes from.
pub enum EncoderSource<'a> {
    /// The encoder a pretext run directory holds.
    Run(&'a Path),
    /// The backbone `spec` describes, with its input statistics taken from the data: with
    /// `init_from`'s weights (`--init-from`: an outside encoder, or another run) as the
    /// pretrained encoder, or without any for scratch and random alone.
    Spec {
        spec: EncoderSpec,
        init_from: Option<&'a Path>,
    },
}

/// Transfer a pretrained encoder (or, for scratch/random only, none) to the labelled data.
pub fn transfer(
    source: EncoderSource<'_>,
    data_cfg: &DataConfig,
    cfg: &TransferConfig,
    out: &Path,
    quiet: bool,
) -> Result<TransferResults, Error> {
    cfg.validate()?;
    let from_run = match source {
        EncoderSource::Run(dir) => Some(TrainedEncoder::load(dir, &train_device())?),
        EncoderSource::Spec { .. } => None,
    };
    let data = load_data(data_cfg)?;
    let test = data
        .test
        .as_ref()
        .ok_or_else(|| Error::msg(format!("{}: no test split to evaluate on", data_cfg.path)))?;
    let limited = split::scored_test_rows(test.len, cfg.test_limit).map(|rows| test.subset(&rows));
    let test = limited.as_ref().unwrap_or(test);
    let (pretrained, spec) = match (from_run, source) {
        (Some(run), _) => {
            let spec = run.spec.clone();
            (Some(run), spec)
        }
        (None, EncoderSource::Spec { spec, init_from }) => {
            let spec = spec_for_data(spec, &data.train, data_cfg)?;
            let pretrained = init_from
                .map(|source| {
                    let encoder = crate::interop::init_from(source, &spec, &train_device())?;
                    Ok::<_, Error>(TrainedEncoder {
                        spec: spec.clone(),
                        encoder,
                    })
                })
                .transpose()?;
            (pretrained, spec)
        }
        (None, EncoderSource::Run(_)) => unreachable!("a run's encoder was loaded above"),
    };
    if spec.in_channels != data.train.channels {
        return Err(Error::msg(format!(
            "{}: images have {} channels but the encoder expects {}",
            data_cfg.path, data.train.channels, spec.in_channels
        )));
    }
    let results = transfer::run(
        &TransferInputs {
            train: &data.train,
            test,
            pretrained: pretrained.as_ref(),
            spec,
            quiet,
        },
        cfg,
    )?;
    transfer::write_results(out, &results)?;
    // What reproduces these results, beside them: `pretext transfer --config` reads it back.
    write_toml(
        &RunDir(out).config(),
        &TransferRecord {
            data: data_cfg,
            transfer: cfg,
        },
    )?;
    Ok(results)
}

/// `spec` for the images of `train`: their channels, their statistics, their size (and a ViT's
/// layout on it).
fn spec_for_data(
    spec: EncoderSpec,
    train: &ImageSet,
    data_cfg: &DataConfig,
) -> Result<EncoderSpec, Error> {
    let n = Normalizer::fit(train);
    let side = train.height.min(train.width);
    let vit = spec
        .arch
        .vit_size()
        .map(|_| VitLayout::new(spec.vit.map(|v| v.patch), side))
        .transpose()
        .map_err(|e| Error::msg(format!("{}: {e}", data_cfg.path)))?;
    Ok(EncoderSpec {
        in_channels: train.channels,
        mean: n.mean,
        std: n.std,
        vit,
        input_size: Some(side),
        ..spec
    })
}

/// A transfer run's settings, as a config file with the `[data]` and `[transfer]` sections.
#[derive(Serialize)]
struct TransferRecord<'a> {
    data: &'a DataConfig,
    transfer: &'a TransferConfig,
}

/// Write the frozen features of both splits as `.npy` (float32 N x D) with labels (int64 N),
/// and `files.csv` naming the image behind every row. The images are read in order, decoded
/// ahead of the encoder in chunks of evaluation batches, and every file is written as it goes,
/// so a source that streams (a large folder, tar shards) is embedded in memory that does not
/// grow with the number of images.
pub fn embed(
    run_dir: &Path,
    data_cfg: &DataConfig,
    layer: FeatureLayer,
    out: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let trained = TrainedEncoder::load(run_dir, &train_device())?;
    embed_with(
        &trained,
        data_cfg,
        layer,
        out,
        SplitChoice::All,
        &mut |_| Ok(()),
    )
}

/// One chunk of decoded images as embedding passes it on: its split, the row of its first
/// image in that split's `.npy`, and the images (framed for evaluation, as the encoder saw
/// them).
pub struct EmbeddedChunk<'a> {
    pub split: &'a str,
    pub first_row: u64,
    pub images: &'a ImageSet,
}

/// [`embed`] with `trained`'s encoder over the `splits` chosen, handing every decoded chunk
/// to `visit` after its features are written (thumbnails are made from the same decoding).
pub fn embed_with(
    trained: &TrainedEncoder,
    data_cfg: &DataConfig,
    layer: FeatureLayer,
    out: &Path,
    splits: SplitChoice,
    visit: &mut dyn FnMut(EmbeddedChunk<'_>) -> Result<(), Error>,
) -> Result<Vec<PathBuf>, Error> {
    let images = collection::for_reading(data_cfg)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let embedder = Embedder {
        encoder: &trained.encoder,
        normalizer: Normalizer {
            mean: trained.spec.mean.clone(),
            std: trained.spec.std.clone(),
        },
        layer,
        dir: EmbedDir(out),
        pool: collection::decode_pool(data_cfg.workers)?,
        source: &data_cfg.path,
    };
    let mut files = FilesCsv::create(&embedder.dir.files())?;
    let mut written = Vec::new();
    let chosen = embedded_splits(&images)
        .into_iter()
        .filter(|(split, _)| splits.includes(split));
    for (split, set) in chosen {
        written.extend(embedder.split(split, set, &mut files, visit)?);
    }
    if written.is_empty() {
        return Err(Error::msg(format!(
            "{}: the data has no {} split to embed",
            data_cfg.path,
            splits.name()
        )));
    }
    written.push(files.finish()?);
    Ok(written)
}

/// Evaluation batches decoded at a time ahead of the encoder when embedding.
const EMBED_CHUNK_BATCHES: usize = 4;

/// The splits `embed` writes, training first, wherever their images live.
fn embedded_splits(images: &TrainingImages) -> Vec<(&'static str, &dyn ImageSource)> {
    let test: Option<&dyn ImageSource> = match images {
        TrainingImages::Memory(d) => d.test.as_ref().map(|t| t as &dyn ImageSource),
        TrainingImages::Stream(s) => s.test.as_deref().map(|t| t as &dyn ImageSource),
    };
    std::iter::once((TRAIN_SPLIT, images.train()))
        .chain(test.map(|t| (TEST_SPLIT, t)))
        .collect()
}

/// What embedding every split shares: the encoder and its input statistics, the layer whose
/// features are written, where they go, and the threads that decode the images.
struct Embedder<'a> {
    encoder: &'a Encoder,
    normalizer: Normalizer,
    layer: FeatureLayer,
    dir: EmbedDir<'a>,
    pool: rayon::ThreadPool,
    /// The data's path, for messages.
    source: &'a str,
}

/// One split's `.npy` files as they are written.
struct SplitFiles {
    features: NpyRows<f32>,
    labels: Option<NpyRows<i64>>,
    dim: usize,
}

impl Embedder<'_> {
    /// Embeds `set` as `split`: its `.npy` files, written, and its rows of `files`.
    fn split(
        &self,
        split: &str,
        set: &dyn ImageSource,
        files: &mut FilesCsv,
        visit: &mut dyn FnMut(EmbeddedChunk<'_>) -> Result<(), Error>,
    ) -> Result<Vec<PathBuf>, Error> {
        use crate::data::source::decode_in_chunks;
        // As `materialise` decides it for every chunk.
        let labelled =
            !set.class_names().is_empty() && (0..set.len()).all(|i| set.label(i).is_some());
        let mut out = SplitFiles {
            features: NpyRows::create(&self.dir.features(split))?,
            labels: labelled
                .then(|| NpyRows::create(&self.dir.labels(split)))
                .transpose()?,
            dim: 0,
        };
        let batch = eval_batch(set.shape());
        std::thread::scope(|scope| -> Result<(), Error> {
            let (sender, chunks) = std::sync::mpsc::sync_channel(1);
            let pool = &self.pool;
            let chunk = batch * EMBED_CHUNK_BATCHES;
            scope.spawn(move || decode_in_chunks(set, chunk, pool, sender));
            for chunk in chunks {
                let images = chunk?;
                let first_row = out.features.rows();
                self.write_chunk(split, &images, batch, &mut out, files)?;
                visit(EmbeddedChunk {
                    split,
                    first_row,
                    images: &images,
                })?;
            }
            Ok(())
        })?;
        if out.features.rows() == 0 {
            return Err(Error::msg(format!(
                "{}: none of the {} {split} images could be read",
                self.source,
                set.len()
            )));
        }
        let mut written = vec![out.features.finish(Some(out.dim))?];
        if let Some(labels) = out.labels {
            written.push(labels.finish(None)?);
        }
        Ok(written)
    }

    /// The features of `chunk` (the next images of `split`) appended to `out`, its labels
    /// too, and a row of `files` for each image.
    fn write_chunk(
        &self,
        split: &str,
        chunk: &ImageSet,
        batch: usize,
        out: &mut SplitFiles,
        files: &mut FilesCsv,
    ) -> Result<(), Error> {
        let f = transfer::features::extract_layer(
            self.encoder,
            chunk,
            &self.normalizer,
            batch,
            self.layer,
        );
        let first = out.features.rows();
        out.features.push(&f.values, f.rows)?;
        out.dim = f.dim;
        let labels = chunk.labels.as_deref();
        if let Some(npy) = &mut out.labels {
            let labels = labels.expect("a labelled source gives labelled chunks");
            let values: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
            npy.push(&values, values.len())?;
        }
        for i in 0..chunk.len {
            let origin = chunk.origins.as_ref().map(|o| o[i].as_str());
            let class = labels.map(|l| chunk.class_names[l[i] as usize].as_str());
            files.row(split, first + i as u64, origin, class)?;
        }
        Ok(())
    }
}
