//! A config's images: decoded into memory when they fit and share one size (the fastest path,
//! and every earlier result), read on demand from an indexed folder otherwise.

use std::path::Path;

use crate::Error;
use crate::data::config::{DataConfig, StreamMode};
use crate::data::decode::{self, Header};
use crate::data::folder::FolderOptions;
use crate::data::index::{self, FileIndex, IndexEntry};
use crate::data::source::{BadImages, ImageSource, materialise};
use crate::data::stream::{Framer, StreamingSet, probe_channels};
use crate::data::synthetic::{SyntheticConfig, generate};
use crate::data::{DataError, Dataset, Format, ImageSet, split};

/// The largest side a streamed folder gets when `data.image_size` is unset.
pub const DEFAULT_STREAM_SIDE: usize = 224;
/// Images of a streamed split decoded into memory to monitor with and to score the pretext task
/// on: this many at 96 x 96 pixels or fewer, proportionally fewer above (down to
/// [`STREAM_SAMPLE_MIN`]), so the samples stay near 30 MB whatever the resolution.
pub const STREAM_SAMPLE: usize = 1000;
pub const STREAM_SAMPLE_MIN: usize = 250;
const STREAM_SAMPLE_SIDE: usize = 96;

/// How many images of `set` [`sample`] decodes for monitoring and evaluation.
pub fn sample_size(set: &dyn ImageSource) -> usize {
    let [_, h, w] = set.shape();
    (STREAM_SAMPLE * STREAM_SAMPLE_SIDE * STREAM_SAMPLE_SIDE / (h * w).max(1))
        .clamp(STREAM_SAMPLE_MIN, STREAM_SAMPLE)
}
/// Share of a labelled folder without a test split held out as its test split.
pub const HOLDOUT_FRACTION: f64 = 0.2;

/// The training images of a run (the data set boxed: it is much larger than a stream's handles).
pub enum TrainingImages {
    Memory(Box<Dataset>),
    Stream(Streamed),
}

impl TrainingImages {
    /// The training split, wherever it lives.
    pub fn train(&self) -> &dyn ImageSource {
        match self {
            TrainingImages::Memory(d) => &d.train,
            TrainingImages::Stream(s) => s.train.as_ref(),
        }
    }
}

/// Images read on demand: an image folder (or another source that decodes as it reads).
pub struct Streamed {
    pub source: String,
    pub train: Box<dyn ImageSource + Send>,
    pub test: Option<Box<dyn ImageSource + Send>>,
}

/// Whether the folder at `cfg.path` is streamed, with its index when it is.
enum Choice {
    Memory,
    Stream(FileIndex),
}

/// The images `cfg` names for training: streamed where [`choose`] says so, or where the folder
/// turns out to mix image sizes.
pub fn for_training(cfg: &DataConfig) -> Result<TrainingImages, Error> {
    let format = format_of(cfg)?;
    match format {
        Format::Stl10 => return stl_training(cfg),
        Format::Shards => return shards_training(cfg),
        _ => {}
    }
    if let Choice::Stream(index) = choose(cfg, format)? {
        return Ok(TrainingImages::Stream(streamed(cfg, index)?));
    }
    match read_as_is(cfg) {
        Err(Error::Data(DataError::Mismatch { path, problem }))
            if cfg.stream == StreamMode::Auto =>
        {
            eprintln!(
                "note: {}: {problem}; streaming the folder instead",
                path.display()
            );
            Ok(TrainingImages::Stream(streamed(cfg, open_index(cfg)?)?))
        }
        read => {
            let data = with_test_split(cfg, read?)?;
            Ok(TrainingImages::Memory(Box::new(data)))
        }
    }
}

/// The images `cfg` names for reading once in order (embed): streamed where training streams
/// them, with the same images as [`load_data`] gives, except that STL-10 gives its labelled
/// splits (in memory), not its unlabelled images.
pub fn for_reading(cfg: &DataConfig) -> Result<TrainingImages, Error> {
    if format_of(cfg)? == Format::Stl10 {
        return Ok(TrainingImages::Memory(Box::new(load_data(cfg)?)));
    }
    for_training(cfg)
}

/// For commands that hold their images in memory (transfer, embed, study): a folder that needs
/// framing (another size, `stream = "always"`) is decoded with the evaluation crop; `None` for
/// data the in-memory readers take as they are.
pub fn in_memory(cfg: &DataConfig) -> Result<Option<Dataset>, Error> {
    let format = format_of(cfg)?;
    match format {
        Format::Stl10 => {
            let path = Path::new(&cfg.path);
            return Ok(Some(crate::data::stl::load_framed(path, &stl_framer(cfg))?));
        }
        Format::Shards => {
            return materialised(cfg, streamed_shards(cfg)?, Format::Shards).map(Some);
        }
        _ => {}
    }
    match choose(cfg, format)? {
        Choice::Stream(index) => framed(cfg, index).map(Some),
        Choice::Memory => Ok(None),
    }
}

/// A folder of mixed image sizes, decoded into memory with the evaluation crop.
pub fn mixed_sizes(cfg: &DataConfig) -> Result<Dataset, Error> {
    framed(cfg, open_index(cfg)?)
}

/// Every image of the folder decoded with the evaluation crop; a folder over the memory budget
/// is refused with the reason.
fn framed(cfg: &DataConfig, index: FileIndex) -> Result<Dataset, Error> {
    materialised(cfg, streamed(cfg, index)?, Format::Folder)
}

/// Every image of a streamed source decoded with the evaluation crop, within the memory budget.
fn materialised(cfg: &DataConfig, streamed: Streamed, format: Format) -> Result<Dataset, Error> {
    let [c, side, _] = streamed.train.shape();
    let count = streamed.train.len() + streamed.test.as_ref().map_or(0, |t| t.len());
    let bytes = (count * c * side * side) as u64;
    if bytes > budget_bytes(cfg) {
        return Err(Error::msg(format!(
            "{}: {count} images at {side}x{side} take {} MB decoded, over data.memory_budget_mb = {}; this command holds its images in memory (pretrain streams them): lower --image-size, raise the budget, or use a smaller labelled folder",
            cfg.path,
            bytes >> 20,
            cfg.memory_budget_mb
        )));
    }
    let everything = |set: &dyn ImageSource| {
        let all: Vec<usize> = (0..set.len()).collect();
        materialise(set, &all, BadImages::Fail)
    };
    let train = everything(streamed.train.as_ref())?;
    let test = streamed
        .test
        .as_deref()
        .map(|t| everything(t))
        .transpose()?;
    let skipped = streamed.train.skipped() + streamed.test.as_ref().map_or(0, |t| t.skipped());
    Ok(Dataset {
        format,
        source: streamed.source,
        train,
        test,
        skipped,
    })
}

fn budget_bytes(cfg: &DataConfig) -> u64 {
    cfg.memory_budget_mb.saturating_mul(1 << 20)
}

/// The format of the data `cfg` names, detected once per call (the literal `synthetic` is
/// generated, never looked for on disk).
fn format_of(cfg: &DataConfig) -> Result<Format, Error> {
    if cfg.path == crate::data::SYNTHETIC {
        return Ok(Format::Synthetic);
    }
    Ok(match cfg.format {
        Some(f) => f,
        None => crate::data::detect_format(Path::new(&cfg.path))?,
    })
}

fn open_index(cfg: &DataConfig) -> Result<FileIndex, Error> {
    let (index, _) = index::open(Path::new(&cfg.path), &index::default_cache_dir())?;
    Ok(index)
}

/// Streams a folder when asked to, when `image_size` differs from its first image's size, or
/// when its decoded training images would exceed the memory budget.
fn choose(cfg: &DataConfig, format: Format) -> Result<Choice, Error> {
    if format != Format::Folder {
        if cfg.stream == StreamMode::Always {
            return Err(Error::msg(format!(
                "{}: data.stream = \"always\" reads image folders; this data set is not one",
                cfg.path
            )));
        }
        return Ok(Choice::Memory);
    }
    match cfg.stream {
        StreamMode::Never => return Ok(Choice::Memory),
        StreamMode::Always => {
            return Ok(Choice::Stream(open_index(cfg)?));
        }
        StreamMode::Auto => {}
    }
    let index = open_index(cfg)?;
    let Some(first) = first_header(&index, cfg.max_image_pixels) else {
        // Nothing readable to size: the in-memory reader reports the folder's problem.
        return Ok(Choice::Memory);
    };
    let resized = cfg
        .image_size
        .is_some_and(|s| (first.width as usize, first.height as usize) != (s, s));
    let channels = if first.colour { 3 } else { 1 };
    let count = index.train.len() + index.test.as_ref().map_or(0, Vec::len);
    let bytes = count as u64 * channels * first.width as u64 * first.height as u64;
    Ok(if resized || bytes > budget_bytes(cfg) {
        Choice::Stream(index)
    } else {
        Choice::Memory
    })
}

fn first_header(index: &FileIndex, max_pixels: u64) -> Option<Header> {
    index.train.iter().find_map(|e| {
        let path = index.full_path(e);
        let bytes = std::fs::read(&path).ok()?;
        decode::header(&path, &bytes, max_pixels).ok()
    })
}

/// The folder's splits as streaming sets: its own test split, or a held-out share of a labelled
/// training split (the same images [`split::holdout`] holds out in memory).
fn streamed(cfg: &DataConfig, index: FileIndex) -> Result<Streamed, Error> {
    let framer = streamed_framer(cfg, first_header(&index, cfg.max_image_pixels))?;
    let channels = probe_channels(&index, cfg.max_image_pixels);
    let (train, test) = split_entries(cfg, &index);
    let set = |entries| -> Box<dyn ImageSource + Send> {
        Box::new(StreamingSet::new(
            &index,
            entries,
            channels,
            framer.clone(),
            cfg.skip_corrupt,
        ))
    };
    Ok(Streamed {
        source: cfg.path.clone(),
        train: set(train),
        test: test.map(set),
    })
}

/// The framing of a streamed source: `data.image_size`, or the shorter side of its `first`
/// readable image up to [`DEFAULT_STREAM_SIDE`].
fn streamed_framer(cfg: &DataConfig, first: Option<Header>) -> Result<Framer, Error> {
    let side = match (cfg.image_size, first) {
        (Some(side), _) => side,
        (None, Some(h)) => (h.width.min(h.height) as usize).min(DEFAULT_STREAM_SIDE),
        (None, None) => {
            return Err(Error::msg(format!(
                "{}: no readable image to size the set by; give --image-size",
                cfg.path
            )));
        }
    };
    Ok(framer_at(cfg, side))
}

fn framer_at(cfg: &DataConfig, image_size: usize) -> Framer {
    Framer {
        image_size,
        eval_crop: cfg.eval_crop,
        crop_min_scale: cfg.crop_min_scale,
        max_pixels: cfg.max_image_pixels,
    }
}

fn split_entries(
    cfg: &DataConfig,
    index: &FileIndex,
) -> (Vec<IndexEntry>, Option<Vec<IndexEntry>>) {
    if let Some(test) = &index.test {
        return (index.train.clone(), Some(test.clone()));
    }
    if !index.labelled() {
        return (index.train.clone(), None);
    }
    let labels: Vec<u32> = index.train.iter().map(|e| e.label.unwrap_or(0)).collect();
    let (train, test) =
        split::holdout_indices(&labels, index.class_names.len(), HOLDOUT_FRACTION, 0);
    let pick = |rows: Vec<usize>| {
        rows.into_iter()
            .map(|i| index.train[i].clone())
            .collect::<Vec<_>>()
    };
    eprintln!(
        "note: {} has no test split; holding out {} of its {} labelled images as the test split",
        cfg.path,
        test.len(),
        index.train.len()
    );
    (pick(train), Some(pick(test)))
}

/// The pool that decodes streamed files: `workers` threads, or as many as the global pool's
/// (`--threads`), beside the model's threads.
pub fn decode_pool(workers: usize) -> Result<rayon::ThreadPool, Error> {
    let threads = if workers == 0 {
        rayon::current_num_threads()
    } else {
        workers
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("pretext-decode-{i}"))
        .build()
        .map_err(|e| Error::msg(format!("cannot start {threads} decode threads: {e}")))
}

/// A sample of up to `limit` images of `set` decoded for evaluation (seeded, in index order),
/// drawn from its labelled images where it has some (STL-10's training images among the
/// unlabelled ones); unreadable ones are left out.
pub fn sample(set: &dyn ImageSource, limit: usize) -> Result<ImageSet, Error> {
    let labelled: Vec<usize> = (0..set.len()).filter(|&i| set.label(i).is_some()).collect();
    let pool: Vec<usize> = if labelled.is_empty() {
        (0..set.len()).collect()
    } else {
        labelled
    };
    let rows: Vec<usize> = split::sample(pool.len(), limit, 0)
        .into_iter()
        .map(|r| pool[r])
        .collect();
    Ok(materialise(set, &rows, BadImages::LeaveOut)?)
}

/// STL-10's 96-pixel images framed to `data.image_size` as a streamed folder's are.
fn stl_framer(cfg: &DataConfig) -> Framer {
    framer_at(cfg, cfg.image_size.unwrap_or(crate::data::stl::SIDE))
}

/// STL-10 pretrains on its training and unlabelled splits together (105,000 images, the SSL
/// convention), the unlabelled images read on demand; with `data.stream = "never"`, or without
/// `unlabeled_X.bin`, on its labelled splits in memory.
fn stl_training(cfg: &DataConfig) -> Result<TrainingImages, Error> {
    if cfg.stream != StreamMode::Never
        && let Some((train, test)) =
            crate::data::stl::open_pretraining(Path::new(&cfg.path), &stl_framer(cfg))?
    {
        return Ok(TrainingImages::Stream(Streamed {
            source: cfg.path.clone(),
            train: Box::new(train),
            test: test.map(|t| Box::new(t) as Box<dyn ImageSource + Send>),
        }));
    }
    Ok(TrainingImages::Memory(Box::new(load_data(cfg)?)))
}

/// Tar shards are read on demand in their own order (shards shuffled, then a shuffle buffer);
/// with `data.stream = "never"`, decoded into memory with the evaluation crop instead.
fn shards_training(cfg: &DataConfig) -> Result<TrainingImages, Error> {
    let streamed = streamed_shards(cfg)?;
    Ok(if cfg.stream == StreamMode::Never {
        TrainingImages::Memory(Box::new(materialised(cfg, streamed, Format::Shards)?))
    } else {
        TrainingImages::Stream(streamed)
    })
}

/// The shards' splits as streaming sets: their `test/` shards, or a held-out share of labelled
/// training shards (as [`split_entries`] holds out a folder's).
fn streamed_shards(cfg: &DataConfig) -> Result<Streamed, Error> {
    use crate::data::shards::{self, ShardSet};
    let (index, _) = shards::open(Path::new(&cfg.path), &index::default_cache_dir())?;
    let splits = shards::splits(&index, cfg.skip_corrupt, Some(HOLDOUT_FRACTION))?;
    splits.warn_skipped(&cfg.path);
    let framer = streamed_framer(cfg, splits.first_header(cfg.max_image_pixels))?;
    let channels = splits.probe_channels(cfg.max_image_pixels);
    let set = |members| -> Box<dyn ImageSource + Send> {
        Box::new(ShardSet::new(
            &splits,
            members,
            channels,
            framer.clone(),
            cfg.skip_corrupt,
            cfg.shuffle_buffer,
        ))
    };
    Ok(Streamed {
        source: cfg.path.clone(),
        train: set(splits.train.clone()),
        test: splits.test.clone().map(set),
    })
}
/// Load the data a config names, with a test split (held out of the training images when the
/// source has none).
pub fn load_data(cfg: &DataConfig) -> Result<Dataset, Error> {
    let ds = match in_memory(cfg)? {
        Some(framed) => framed,
        None => match read_as_is(cfg) {
            Err(Error::Data(DataError::Mismatch { path, problem }))
                if cfg.stream == StreamMode::Auto =>
            {
                eprintln!(
                    "note: {}: {problem}; decoding the folder with the evaluation crop instead",
                    path.display()
                );
                mixed_sizes(cfg)?
            }
            other => other?,
        },
    };
    with_test_split(cfg, ds)
}

/// The data as its format's in-memory reader gives it (synthetic data generated), before any
/// test split is held out.
pub fn read_as_is(cfg: &DataConfig) -> Result<Dataset, Error> {
    if cfg.path == crate::data::SYNTHETIC {
        return Ok(generate(&SyntheticConfig {
            train: cfg.synthetic_train,
            test: cfg.synthetic_test,
            size: cfg.synthetic_size,
            seed: 0,
        }));
    }
    Ok(crate::data::load(
        Path::new(&cfg.path),
        cfg.format,
        &FolderOptions {
            skip_corrupt: cfg.skip_corrupt,
        },
    )?)
}

/// `ds` checked against `data.image_size`, with a test split held out of its labelled training
/// images when it has none.
pub fn with_test_split(cfg: &DataConfig, mut ds: Dataset) -> Result<Dataset, Error> {
    check_native_size(cfg, &ds)?;
    if ds.train.len == 0 {
        return Err(Error::msg(format!("{}: no training images", cfg.path)));
    }
    if ds.test.is_none() && ds.train.labels.is_some() {
        let (train, test) = split::holdout(&ds.train, HOLDOUT_FRACTION, 0);
        eprintln!(
            "note: {} has no test split; holding out {} of its {} labelled images as the test split",
            cfg.path, test.len, ds.train.len
        );
        ds.train = train;
        ds.test = Some(test);
    }
    if ds.skipped > 0 {
        eprintln!(
            "warning: skipped {} corrupt image(s) in {}",
            ds.skipped, cfg.path
        );
    }
    Ok(ds)
}

/// `data.image_size` on data read as it is (IDX, CIFAR, synthetic) must be its size: only image
/// folders are resized.
fn check_native_size(cfg: &DataConfig, ds: &Dataset) -> Result<(), Error> {
    match cfg.image_size {
        Some(side) if (ds.train.height, ds.train.width) != (side, side) => {
            Err(Error::msg(format!(
                "config key `data.image_size`: {} holds {}x{} images; only image folders are resized, so give {} or leave it unset",
                cfg.path, ds.train.height, ds.train.width, ds.train.height
            )))
        }
        _ => Ok(()),
    }
}
