//! Command-line parsing: flags map onto config keys; everything else is a library call.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use pretext::config::{DataConfig, PretrainConfig, StreamMode, TransferMode, read_toml};
use pretext::curate::select::Strategy;
use pretext::data::Format;
use pretext::data::embed_files::SplitChoice;
use pretext::methods::MethodKind;
use pretext::models::{Arch, Stem};

#[derive(Parser)]
#[command(
    name = "pretext",
    version,
    about = "Self-supervised pretraining and few-label transfer",
    allow_negative_numbers = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Plain log lines only, no progress bar.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Compute device: cpu, wgpu[:N], vulkan[:N], cuda[:N], tch-cuda[:N] or tch-cpu (GPU and
    /// libtorch backends need a build with `--features wgpu`, `vulkan`, `cuda` or `tch`).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: pretext::device::DeviceSpec,
    /// The float type the device computes in: fp32, or bf16 for the whole model (weights
    /// included; GPU and libtorch devices only).
    #[arg(long, global = true, value_enum, default_value_t)]
    pub precision: pretext::device::Precision,
    /// Data-parallel training over several devices of one kind, as in cuda:0,cuda:1: each
    /// batch is split across them and the gradients all-reduced. Overrides --device.
    #[arg(long, global = true)]
    pub devices: Option<pretext::device::DeviceList>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Pretrain an encoder with a pretext task on unlabelled images.
    Pretrain(PretrainArgs),
    /// Continue an interrupted pretraining run from its directory.
    Resume { run_dir: PathBuf },
    /// Transfer a pretrained encoder to N labelled images per class; compare with scratch.
    Transfer(TransferArgs),
    /// Write frozen features of every image as .npy (float32 N x D) with labels (int64).
    Embed(EmbedArgs),
    /// A page to look at the embeddings in a browser: a 2-D map (UMAP, PCA), colours by label or
    /// cluster, thumbnails on hover, nearest neighbours on click, clusters with samples.
    Explore(ExploreArgs),
    /// A PNG grid of random query images and their nearest neighbours.
    Neighbors(NeighborsArgs),
    /// Choose images to label (coreset, diverse), or find near-duplicates (dedup) and outliers;
    /// writes a CSV of paths with the reason for each (`transfer --labels-file` reads it).
    Select(SelectArgs),
    /// Write a run's encoder for PyTorch (torchvision, timm, or pretext's documented names, as
    /// safetensors) or as an ONNX graph.
    Export(ExportArgs),
    /// Print a data set's format, counts, image size and class counts. Also reads text: a corpus
    /// (.txt, .txt.gz, or a folder of them) or a labelled table (.tsv, .csv, gzipped or not).
    Info(InfoArgs),
    /// The whole pipeline on the built-in synthetic data, with a results table.
    Demo {
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
    },
    /// Train a student to predict the k-means clusters of a teacher's features (Noroozi et al.
    /// 2018); the student transfers like any pretrained encoder.
    ClusterTransfer(ClusterTransferArgs),
    /// k-means on a float32 N x D .npy matrix; writes int64 labels and prints one JSON object.
    Kmeans(KmeansArgs),
    /// The few-label study: every method x transfer mode x labels per class x seed against
    /// scratch, resumable, with `results.csv` and `report.md` (tables and plots).
    Study {
        /// The study config (`[data]`, `[study]`, `[transfer]`).
        #[arg(long)]
        config: PathBuf,
        /// The study directory (overrides `study.out`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Benchmarks that print one JSON object each: `bench step`, `bench augment`.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Write an image folder (or tar shards) as WebDataset-style tar shards: `shard-000000.tar`,
    /// … with `<key>.jpg`/`.png` (the original bytes) and `<key>.cls` members, `classes.txt`
    /// beside them, and `train/` and `test/` subfolders for a folder with a test split.
    Shard(ShardArgs),
}

#[derive(Args)]
pub struct InfoArgs {
    pub path: String,
    #[arg(long)]
    pub format: Option<FormatArg>,
    #[arg(long)]
    pub skip_corrupt: bool,
    /// Image folders: also decode every image and list the broken ones (by default only
    /// headers are read).
    #[arg(long)]
    pub check: bool,
    /// Image folders: refuse images declaring more pixels (data.max_image_pixels).
    #[arg(long, default_value_t = pretext::data::decode::DEFAULT_MAX_PIXELS)]
    pub max_image_pixels: u64,
    /// Text: replace invalid UTF-8 instead of failing.
    #[arg(long)]
    pub lossy_utf8: bool,
    /// Labelled text with a header: the column holding the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Labelled text with a header: the column holding the label.
    #[arg(long, default_value = "label")]
    pub label_column: String,
}

#[derive(Args)]
pub struct ShardArgs {
    /// The image folder (any folder layout), or shards to write again in other sizes.
    pub folder: PathBuf,
    /// The folder the shards go to (it must hold no shards yet).
    #[arg(long)]
    pub out: PathBuf,
    /// Samples per shard.
    #[arg(long, default_value_t = 10_000)]
    pub shard_size: usize,
    /// Write the samples in an order shuffled by this seed (recommended for class folders, so
    /// every shard mixes classes) instead of the folder's order.
    #[arg(long)]
    pub shuffle: Option<u64>,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time one training step (ConvNet-4, ResNet-18, ResNet-50 or the MLM transformer) on random
    /// data after warm-up; prints one JSON object (for bench/compare.sh and bench/gpu-check.sh).
    Step(BenchArgs),
    /// Time a task's data pipeline alone (augmentation, views, normalisation, batch assembly)
    /// on real images; prints one JSON object (for bench/augment-compare.sh).
    Augment(BenchAugmentArgs),
    /// Time decoding an image folder's files to the evaluation crop at `--image-size`, with the
    /// full-size decoder and with JPEG DCT scaling; prints one JSON object.
    Decode(BenchDecodeArgs),
    /// Map float32 N x D features to 2-D with UMAP; prints one JSON object with the k-NN and
    /// layout times, peak memory and trustworthiness (for bench/umap-check.sh).
    Umap(BenchUmapArgs),
}

#[derive(Args)]
pub struct BenchUmapArgs {
    /// A float32 N x D `.npy` of features.
    #[arg(long)]
    pub features: PathBuf,
    /// Scale every row to unit length first.
    #[arg(long)]
    pub normalise: bool,
    /// Where the N x 2 coordinates go (float32 `.npy`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Trustworthiness (k = 15) on this many random rows (a fixed sample); 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub trust_sample: usize,
    /// UMAP's seed (umap.seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
pub struct BenchDecodeArgs {
    /// An image folder (large photos show the difference).
    #[arg(long)]
    pub data: String,
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
    /// Files decoded by each decoder (the folder's first, in index order).
    #[arg(long, default_value_t = 200)]
    pub images: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Synthetic,
    Idx,
    Cifar10,
    Cifar100,
    Stl10,
    Folder,
    Shards,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Synthetic => Format::Synthetic,
            FormatArg::Idx => Format::Idx,
            FormatArg::Cifar10 => Format::Cifar10,
            FormatArg::Cifar100 => Format::Cifar100,
            FormatArg::Stl10 => Format::Stl10,
            FormatArg::Folder => Format::Folder,
            FormatArg::Shards => Format::Shards,
        }
    }
}

/// How image files become the model's input: the flags over `[data]`'s framing keys.
#[derive(Args, Default, Clone)]
pub struct FramingArgs {
    /// Side of the square images the model sees (data.image_size).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Image folders: read on demand or decoded into memory (data.stream).
    #[arg(long)]
    pub stream: Option<StreamMode>,
    /// Share of the shorter side evaluation's centre crop keeps (data.eval_crop).
    #[arg(long)]
    pub eval_crop: Option<f64>,
    /// Threads decoding streamed images (data.workers; 0: --threads).
    #[arg(long)]
    pub workers: Option<usize>,
}

impl FramingArgs {
    pub fn apply(&self, data: &mut DataConfig) {
        if let Some(s) = self.image_size {
            data.image_size = Some(s);
        }
        if let Some(m) = self.stream {
            data.stream = m;
        }
        if let Some(c) = self.eval_crop {
            data.eval_crop = c;
        }
        if let Some(w) = self.workers {
            data.workers = w;
        }
    }
}

/// Data and training flags shared by the commands that train.
#[derive(Args, Default)]
pub struct CommonArgs {
    /// TOML config; flags override its keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data folder, or `synthetic`.
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long)]
    pub format: Option<FormatArg>,
    /// Skip undecodable images with a warning instead of failing.
    #[arg(long)]
    pub skip_corrupt: bool,
    #[command(flatten)]
    pub framing: FramingArgs,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Wall-clock budget of the training run, in minutes.
    #[arg(long)]
    pub max_minutes: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[arg(long)]
    pub task: Option<MethodKind>,
    #[arg(long)]
    pub model: Option<Arch>,
    /// Width of the first stage (64: the standard network).
    #[arg(long)]
    pub width: Option<usize>,
    /// ResNet stem: cifar or imagenet (default: imagenet for images of 96 pixels and more).
    #[arg(long)]
    pub stem: Option<Stem>,
    /// Start the encoder from these weights: a torchvision, timm or pretext-named .safetensors,
    /// a PyTorch .pth/.pt state dict, or a pretext run directory (docs/interop.md).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
}

#[derive(Args)]
pub struct TransferArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The pretraining run whose encoder is transferred (its config supplies the defaults).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Modes to run, comma-separated: probe, knn, finetune, scratch, random.
    #[arg(long, value_delimiter = ',')]
    pub mode: Vec<TransferMode>,
    /// Labelled images per class (0: all).
    #[arg(long)]
    pub labels_per_class: Option<usize>,
    /// Label exactly the training images this list names (`pretext select`'s CSV:
    /// path,split,index,...), the same for every seed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["labels_per_class", "random"])]
    pub labels_file: Option<PathBuf>,
    /// Label N training images drawn at random for each seed, spread evenly over the classes
    /// (the baseline a selection is compared with).
    #[arg(long, value_name = "N", conflicts_with = "labels_per_class")]
    pub random: Option<usize>,
    /// With --random: draw from all labelled images alike, not evenly per class.
    #[arg(long, requires = "random")]
    pub unstratified: bool,
    /// Number of labelled subsets to average over.
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Score on a fixed random sample of this many test examples (0: all).
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// Backbone for scratch and random when no --run is given.
    #[arg(long)]
    pub model: Option<Arch>,
    #[arg(long)]
    pub width: Option<usize>,
    /// ResNet stem for scratch and random when no --run is given (default: cifar).
    #[arg(long)]
    pub stem: Option<Stem>,
    /// Transfer an outside encoder instead of a run's (--model, --width and --stem describe
    /// it): a torchvision, timm or pretext-named .safetensors, a .pth/.pt state dict, or a
    /// pretext run directory.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The run whose encoder is exported.
    #[arg(long)]
    pub run: PathBuf,
    /// torchvision, timm, pytorch or onnx.
    #[arg(long)]
    pub to: pretext::interop::ExportFormat,
    /// The file to write (.safetensors, or .onnx).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct EmbedArgs {
    #[arg(long)]
    pub run: PathBuf,
    /// Data to embed (default: the run's data).
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long)]
    pub format: Option<FormatArg>,
    #[command(flatten)]
    pub framing: FramingArgs,
    #[arg(long)]
    pub out: PathBuf,
    /// Encoder stage (1-4) whose output is written.
    #[arg(long, default_value_t = 4)]
    pub stage: usize,
    /// Average-pool the stage's map to GRID x GRID (1: global pooling).
    #[arg(long, default_value_t = 1)]
    pub grid: usize,
}

/// What every curation command (explore, neighbors, select) reads.
#[derive(Args)]
pub struct CurateArgs {
    /// The run whose encoder embeds the images.
    #[arg(long)]
    pub run: PathBuf,
    /// Data to embed (default: the run's data).
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long)]
    pub format: Option<FormatArg>,
    #[command(flatten)]
    pub framing: FramingArgs,
    /// Which split's images: train, test or all.
    #[arg(long, value_enum, default_value_t = SplitChoice::Train)]
    pub split: SplitChoice,
    /// Seed of every random choice (queries, samples, k-means, UMAP).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
pub struct ExploreArgs {
    #[command(flatten)]
    pub curate: CurateArgs,
    /// The folder the page goes to (index.html, data.js, atlas-*.jpg, umap.npy, ...).
    #[arg(long)]
    pub out: PathBuf,
    /// k-means clusters to colour by and list (explore.clusters).
    #[arg(long)]
    pub clusters: Option<usize>,
    /// Thumbnail side in pixels (explore.thumb).
    #[arg(long)]
    pub thumb: Option<u32>,
    /// Nearest neighbours shown for a clicked image (explore.neighbours).
    #[arg(long)]
    pub neighbours: Option<usize>,
}

#[derive(Args)]
pub struct NeighborsArgs {
    #[command(flatten)]
    pub curate: CurateArgs,
    /// Query images, drawn at random.
    #[arg(long, default_value_t = 8)]
    pub queries: usize,
    /// Neighbours shown per query.
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// The PNG written.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct SelectArgs {
    #[command(flatten)]
    pub curate: CurateArgs,
    #[arg(long, value_enum)]
    pub strategy: Strategy,
    /// Images to choose (coreset, diverse, outliers).
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Cosine similarity above which images are near-duplicates (dedup).
    #[arg(long, default_value_t = 0.98)]
    pub threshold: f32,
    /// Neighbours an outlier's score averages over, and among which dedup looks.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// The CSV written (path, split, index, label, reason).
    #[arg(long)]
    pub out: PathBuf,
}

/// The networks `bench step` times.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchModel {
    Convnet4,
    Resnet18,
    Resnet50,
    /// ViT-Tiny and ViT-Small (patch 16 from 64 pixels, 4 below).
    #[value(name = "vit_tiny")]
    VitTiny,
    #[value(name = "vit_small")]
    VitSmall,
    /// The BERT-style encoder's masked-language-model step.
    Transformer,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "convnet4")]
    pub model: BenchModel,
    /// Image networks: width of the first stage.
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    #[arg(long, default_value_t = 3)]
    pub channels: usize,
    /// Image networks: side of the random square images, in pixels.
    #[arg(long, visible_alias = "size", default_value_t = 32)]
    pub image_size: usize,
    /// ResNets: the stem (default: imagenet at 96 pixels and more, cifar below).
    #[arg(long)]
    pub stem: Option<Stem>,
    /// Image networks: time feature extraction instead (the encoder's forward pass in
    /// evaluation mode, without gradients).
    #[arg(long)]
    pub inference: bool,
    /// Default: 128 images (convnet4), 64 (resnet18), 32 (resnet50), 32 sequences
    /// (transformer).
    #[arg(long = "batch", visible_alias = "batch-size")]
    pub batch_size: Option<usize>,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// After the timed steps, time N more one by one: until each returns (its work issued)
    /// and until the device has finished it (`profile` in the output).
    #[arg(long, default_value_t = 0)]
    pub profile: usize,
    /// Transformer: hidden size, layers (heads: hidden / 64, feed-forward: 4 x hidden), sequence
    /// length and vocabulary.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 8000)]
    pub vocab: usize,
}

#[derive(Args)]
pub struct BenchAugmentArgs {
    /// Data folder: decoded into memory before timing, or, when it streams (`--stream always`,
    /// `--image-size` other than its images' size, or over the memory budget), decoded inside
    /// the timing as training does.
    #[arg(long)]
    pub data: String,
    #[command(flatten)]
    pub framing: FramingArgs,
    /// The task whose views are made (simclr: two views with colour jitter and crops).
    #[arg(long, default_value = "simclr")]
    pub task: MethodKind,
    /// Source images to push through the pipeline (after one warm-up batch).
    #[arg(long, default_value_t = 10000)]
    pub images: usize,
    #[arg(long = "batch", visible_alias = "batch-size", default_value_t = 256)]
    pub batch_size: usize,
}

impl CommonArgs {
    /// The config file (or defaults) with these flags applied on top.
    pub fn resolve(&self, base: Option<PretrainConfig>) -> anyhow::Result<PretrainConfig> {
        let mut cfg = match (&self.config, base) {
            (Some(path), _) => read_toml::<PretrainConfig>(path)?,
            (None, Some(base)) => base,
            (None, None) => PretrainConfig::default(),
        };
        if let Some(d) = &self.data {
            cfg.data.path = d.clone();
        }
        if let Some(f) = self.format {
            cfg.data.format = Some(f.into());
        }
        cfg.data.skip_corrupt |= self.skip_corrupt;
        self.framing.apply(&mut cfg.data);
        cfg.data.validate()?;
        Ok(cfg)
    }
}

#[derive(clap::Args)]
pub struct KmeansArgs {
    /// Features: float32 (or float64) N x D .npy, e.g. from `pretext embed`.
    pub features: PathBuf,
    #[arg(long)]
    pub k: usize,
    /// Where the int64 labels go.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 300)]
    pub max_iter: usize,
    /// Independent k-means++ seedings; the lowest inertia wins.
    #[arg(long, default_value_t = 1)]
    pub restarts: usize,
    /// Convergence: summed squared centre shift relative to the mean feature variance.
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f64,
    /// True labels (.npy, integers) to score the clusters with NMI, ARI and purity.
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ClusterTransferArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The teacher's run directory; its config supplies the defaults (data, recipe, width).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// The student's architecture (default: the teacher's).
    #[arg(long)]
    pub student: Option<Arch>,
    /// The student's width (default: the teacher's).
    #[arg(long)]
    pub width: Option<usize>,
    /// The student's ResNet stem (default: the teacher's config, else by image size).
    #[arg(long)]
    pub stem: Option<Stem>,
    /// Start the student from these weights (as `pretrain --init-from`).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Clusters, i.e. the student's classes.
    #[arg(long)]
    pub k: Option<usize>,
    /// Teacher stage (1-4) whose pooled output is clustered.
    #[arg(long)]
    pub teacher_stage: Option<usize>,
    /// Average-pool the teacher stage's map to GRID x GRID (1: global pooling).
    #[arg(long)]
    pub teacher_grid: Option<usize>,
    /// Principal components kept before clustering (0: none).
    #[arg(long)]
    pub pca: Option<usize>,
    /// Scale the principal components to unit variance (needs --pca).
    #[arg(long)]
    pub whiten: bool,
    /// Do not L2-normalise the features before clustering.
    #[arg(long)]
    pub no_l2: bool,
    /// k-means restarts (lowest inertia kept).
    #[arg(long)]
    pub restarts: Option<usize>,
}
