//! Where samples come from: one reader per on-disk format, all producing an [`ImageSet`].

pub mod augment;
pub mod cifar;
pub mod colour;
pub mod config;
pub mod decode;
pub mod embed_files;
pub mod examples;
pub mod folder;
pub mod idx;
pub mod index;
pub mod loader;
pub mod sequences;
pub mod shards;
pub mod source;
pub mod split;
pub mod stl;
pub mod stream;
pub mod survey;
pub mod synthetic;
pub mod text;
pub mod tokenizer;

use std::path::Path;
use std::path::PathBuf;

/// Errors of the data layer. Every variant names the file (or key) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Format { path: PathBuf, problem: String },
    #[error("{path}: {problem}")]
    Mismatch { path: PathBuf, problem: String },
    #[error("{path}: cannot decode image: {problem}")]
    CorruptImage { path: PathBuf, problem: String },
    #[error("{path}: {problem}")]
    Empty { path: PathBuf, problem: String },
    #[error("{0}")]
    Other(String),
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, DataError>;

/// A set of equally sized images held as bytes, channel-major per image (`[n][c][h][w]`).
#[derive(Clone, Debug)]
pub struct ImageSet {
    pub pixels: Vec<u8>,
    /// One label per image, or `None` for unlabelled data.
    pub labels: Option<Vec<u32>>,
    pub len: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Class names indexed by label; empty when unlabelled.
    pub class_names: Vec<String>,
    /// Where each image was read from, as `pretext embed`'s `files.csv` names it: a file's path,
    /// `SHARD.tar#MEMBER`, `FILE#RECORD` for a file of many images, `synthetic#i`; `None` when
    /// unknown.
    pub origins: Option<Vec<String>>,
}

impl ImageSet {
    /// Channels, height, width of every image.
    pub fn shape(&self) -> augment::Shape {
        [self.channels, self.height, self.width]
    }
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// Counts of each label, indexed by class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        if let Some(labels) = &self.labels {
            for &l in labels {
                counts[l as usize] += 1;
            }
        }
        counts
    }
    /// The images at `indices`, in that order, with their labels.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let n = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            pixels,
            labels: self
                .labels
                .as_ref()
                .map(|l| indices.iter().map(|&i| l[i]).collect()),
            len: indices.len(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
            origins: self
                .origins
                .as_ref()
                .map(|o| indices.iter().map(|&i| o[i].clone()).collect()),
        }
    }

    /// `other`'s images appended after these (both of one shape); labels and origins are kept
    /// where both sets have them.
    pub fn append(&mut self, other: ImageSet) {
        debug_assert_eq!(self.shape(), other.shape());
        self.pixels.extend(other.pixels);
        self.len += other.len;
        self.labels = concat(self.labels.take(), other.labels);
        self.origins = concat(self.origins.take(), other.origins);
    }
}

/// `a` then `b` where both are there.
fn concat<T>(a: Option<Vec<T>>, b: Option<Vec<T>>) -> Option<Vec<T>> {
    let (mut a, b) = (a?, b?);
    a.extend(b);
    Some(a)
}

/// What separates a file of many images from an image's record number in an origin
/// (`train-images-idx3-ubyte#7`, `shard-000.tar#0001_cat.jpg`).
pub const RECORD_SEPARATOR: char = '#';

/// The origin of a record (or member) `record` of `file`: `FILE#RECORD`.
pub fn record_origin(file: &str, record: impl std::fmt::Display) -> String {
    format!("{file}{RECORD_SEPARATOR}{record}")
}

/// The origins of the first `n` records of `file`, in order.
pub fn record_origins(file: &Path, n: usize) -> Vec<String> {
    let file = file.display().to_string();
    (0..n).map(|i| record_origin(&file, i)).collect()
}

/// On-disk formats pretext reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Synthetic,
    Idx,
    Cifar10,
    Cifar100,
    Stl10,
    Folder,
    /// WebDataset-style tar shards ([`shards`]).
    Shards,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Synthetic => "synthetic",
            Format::Idx => "idx",
            Format::Cifar10 => "cifar10",
            Format::Cifar100 => "cifar100",
            Format::Stl10 => "stl10",
            Format::Folder => "folder",
            Format::Shards => "shards",
        })
    }
}

/// A data set: a training split and, where the source has one, a test split.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub format: Format,
    pub source: String,
    pub train: ImageSet,
    pub test: Option<ImageSet>,
    /// Files skipped as corrupt (only with `skip_corrupt`).
    pub skipped: usize,
}

/// What `pretext info` prints: format, counts, image size and class counts per split.
pub fn describe(ds: &Dataset) -> String {
    let mut s = format!("source: {}\nformat: {}\n", ds.source, ds.format);
    let splits = std::iter::once(("train", &ds.train)).chain(ds.test.as_ref().map(|t| ("test", t)));
    for (name, set) in splits {
        s += &format!(
            "{name}: {} images, {}x{}x{} (channels x height x width)",
            set.len, set.channels, set.height, set.width
        );
        if set.labels.is_some() {
            s += &format!(", {} classes\n", set.num_classes());
            for (class, count) in set.class_names.iter().zip(set.class_counts()) {
                s += &format!("  {class}: {count}\n");
            }
        } else {
            s += ", unlabelled\n";
        }
    }
    if ds.skipped > 0 {
        s += &format!("skipped corrupt images: {}\n", ds.skipped);
    }
    s
}

/// What the data argument names when no files are read but samples are generated.
pub const SYNTHETIC: &str = "synthetic";

/// Works out the format of the data at `path` from what it contains.
///
/// The literal `synthetic` means generated data even if a folder of that name exists. A folder
/// is IDX if it holds IDX training images, STL-10 if it holds its `train_X.bin` and CIFAR-10/100
/// if it holds their binary batches (each directly or in the archive's subfolder), and an image
/// folder otherwise. Tar shards are a brace pattern (`shard-{000..099}.tar`), one `.tar` file, or
/// a folder of `*.tar` files (directly or in `train/`).
pub fn detect_format(path: &Path) -> Result<Format> {
    if path.as_os_str() == SYNTHETIC {
        return Ok(Format::Synthetic);
    }
    if shards::is_pattern(path) {
        return Ok(Format::Shards);
    }
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_dir() {
        if shards::is_tar_file(path) {
            return Ok(Format::Shards);
        }
        return Err(DataError::format(
            path,
            "is a file, but pretext reads a data set from a folder: give the folder that holds it",
        ));
    }
    if idx::detect(path) {
        return Ok(Format::Idx);
    }
    if stl::detect(path) {
        return Ok(Format::Stl10);
    }
    if let Some(format) = cifar::detect(path) {
        return Ok(format);
    }
    if shards::holds_shards(path) {
        return Ok(Format::Shards);
    }
    Ok(Format::Folder)
}

/// Loads the data set at `path`, in `format` or the detected one.
///
/// Synthetic data is not read from anywhere, so asking this function for it is an error.
pub fn load(path: &Path, format: Option<Format>, opts: &folder::FolderOptions) -> Result<Dataset> {
    let format = match format {
        Some(format) => format,
        None => detect_format(path)?,
    };
    match format {
        Format::Synthetic => Err(DataError::Other(
            "synthetic data is generated, not read".into(),
        )),
        Format::Idx => idx::load_dir(path),
        Format::Cifar10 | Format::Cifar100 => cifar::load_dir(path, format),
        Format::Stl10 => stl::load_dir(path),
        Format::Folder => folder::load(path, opts),
        Format::Shards => Err(DataError::format(
            path,
            "tar shards are read on demand at the training resolution (collection::in_memory), not by the in-memory loader",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            detect_format(Path::new("synthetic")).unwrap(),
            Format::Synthetic
        );
        assert_eq!(detect_format(d).unwrap(), Format::Folder);

        let cifar100 = d.join("c100/cifar-100-binary");
        std::fs::create_dir_all(&cifar100).unwrap();
        std::fs::write(cifar100.join("train.bin"), []).unwrap();
        assert_eq!(detect_format(&d.join("c100")).unwrap(), Format::Cifar100);

        let cifar10 = d.join("c10");
        std::fs::create_dir(&cifar10).unwrap();
        std::fs::write(cifar10.join("data_batch_1.bin"), []).unwrap();
        assert_eq!(detect_format(&cifar10).unwrap(), Format::Cifar10);

        let stl = d.join("stl/stl10_binary");
        std::fs::create_dir_all(&stl).unwrap();
        std::fs::write(stl.join("train_X.bin"), []).unwrap();
        assert_eq!(detect_format(&d.join("stl")).unwrap(), Format::Stl10);
        assert_eq!(detect_format(&stl).unwrap(), Format::Stl10);

        let idx = d.join("idx");
        std::fs::create_dir(&idx).unwrap();
        std::fs::write(idx.join("train-images.idx3-ubyte.gz"), []).unwrap();
        assert_eq!(detect_format(&idx).unwrap(), Format::Idx);
    }

    #[test]
    fn missing_path_and_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let err = detect_format(&missing).unwrap_err();
        assert!(
            matches!(&err, DataError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        assert!(err.to_string().contains("gone"), "{err}");

        let file = dir.path().join("train-images-idx3-ubyte");
        std::fs::write(&file, []).unwrap();
        let err = detect_format(&file).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        assert!(
            err.to_string().contains("train-images-idx3-ubyte")
                && err.to_string().contains("folder")
        );
    }

    #[test]
    fn load_dispatches_and_refuses_synthetic() {
        let dir = tempfile::tempdir().unwrap();
        let opts = folder::FolderOptions::default();
        let err = load(Path::new("synthetic"), None, &opts).unwrap_err();
        assert!(matches!(err, DataError::Other(_)), "{err:?}");
        // An empty folder read as a folder, then as IDX: each reader's own error.
        assert!(matches!(
            load(dir.path(), None, &opts),
            Err(DataError::Empty { .. })
        ));
        assert!(matches!(
            load(dir.path(), Some(Format::Idx), &opts),
            Err(DataError::Io { .. })
        ));
        assert!(matches!(
            load(dir.path(), Some(Format::Cifar10), &opts),
            Err(DataError::Empty { .. })
        ));
    }
}
