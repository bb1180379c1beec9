//! CIFAR-10 and CIFAR-100 in their binary versions (`cifar-10-binary.tar.gz`,
//! `cifar-100-binary.tar.gz` unpacked).
//!
//! Both are flat arrays of fixed-size records: label byte(s) then 3072 pixel bytes that are
//! already channel-major (1024 red, 1024 green, 1024 blue, each row-major 32x32), which is the
//! layout of [`ImageSet`], so pixels are copied through unchanged.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Format, ImageSet, Result};

const CHANNELS: usize = 3;
const SIDE: usize = 32;
const IMAGE_BYTES: usize = CHANNELS * SIDE * SIDE;

const CIFAR10_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The official fine label names, so that a copy without `fine_label_names.txt` is still named.
const CIFAR100_NAMES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

const CIFAR100_COARSE_CLASSES: u8 = 20;

/// Where each variant keeps its files and how its records look.
struct Layout {
    format: Format,
    /// The folder the official archive unpacks to; the files may also sit directly in `dir`.
    subdir: &'static str,
    train_files: &'static [&'static str],
    test_file: &'static str,
    names_file: &'static str,
    default_names: &'static [&'static str],
    /// CIFAR-100 records start with a coarse label before the fine one that pretext uses.
    label_bytes: usize,
}

impl Layout {
    fn of(format: Format) -> Option<&'static Layout> {
        match format {
            Format::Cifar10 => Some(&CIFAR10),
            Format::Cifar100 => Some(&CIFAR100),
            _ => None,
        }
    }
    fn record_len(&self) -> usize {
        self.label_bytes + IMAGE_BYTES
    }
    fn num_classes(&self) -> usize {
        self.default_names.len()
    }
    /// The folder holding the training files: `dir` itself or the archive's folder inside it.
    fn root(&self, dir: &Path) -> Option<PathBuf> {
        [dir.to_path_buf(), dir.join(self.subdir)]
            .into_iter()
            .find(|root| self.train_files.iter().any(|f| root.join(f).is_file()))
    }
}

static CIFAR10: Layout = Layout {
    format: Format::Cifar10,
    subdir: "cifar-10-batches-bin",
    train_files: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ],
    test_file: "test_batch.bin",
    names_file: "batches.meta.txt",
    default_names: &CIFAR10_NAMES,
    label_bytes: 1,
};

static CIFAR100: Layout = Layout {
    format: Format::Cifar100,
    subdir: "cifar-100-binary",
    train_files: &["train.bin"],
    test_file: "test.bin",
    names_file: "fine_label_names.txt",
    default_names: &CIFAR100_NAMES,
    label_bytes: 2,
};

/// The CIFAR variant whose training files are in `dir` (or its archive subfolder), if any.
pub fn detect(dir: &Path) -> Option<Format> {
    [&CIFAR10, &CIFAR100]
        .into_iter()
        .find(|l| l.root(dir).is_some())
        .map(|l| l.format)
}

/// Loads CIFAR-10 (`data_batch_{1..5}.bin`, `test_batch.bin`) or CIFAR-100 (`train.bin`,
/// `test.bin`, fine labels) from `dir` or from its `cifar-10-batches-bin` / `cifar-100-binary`
/// subfolder. Training batches that exist are used in order; the test split is `None` when its
/// file is absent. Class names come from `batches.meta.txt` / `fine_label_names.txt` when present,
/// otherwise the official names.
pub fn load_dir(dir: &Path, format: Format) -> Result<Dataset> {
    let layout = Layout::of(format).ok_or_else(|| {
        DataError::Other(format!(
            "cifar::load_dir reads CIFAR-10 or CIFAR-100, not {format:?}"
        ))
    })?;
    if !dir.is_dir() {
        return Err(match fs::metadata(dir) {
            Err(e) => DataError::io(dir, e),
            Ok(_) => DataError::format(dir, "is not a folder"),
        });
    }
    let root = layout.root(dir).ok_or_else(|| DataError::Empty {
        path: dir.to_path_buf(),
        problem: format!(
            "no {format:?} batch files ({}) here or in {}/",
            layout.train_files.join(", "),
            layout.subdir
        ),
    })?;

    let class_names = read_class_names(&root, layout)?;
    let train_paths: Vec<PathBuf> = layout
        .train_files
        .iter()
        .map(|f| root.join(f))
        .filter(|p| p.is_file())
        .collect();
    let train = read_batches(&train_paths, layout, &class_names)?;
    let test_path = root.join(layout.test_file);
    let test = if test_path.is_file() {
        Some(read_batches(&[test_path], layout, &class_names)?)
    } else {
        None
    };
    Ok(Dataset {
        format,
        source: dir.display().to_string(),
        train,
        test,
        skipped: 0,
    })
}

/// Reads and concatenates batch files into one split.
fn read_batches(paths: &[PathBuf], layout: &Layout, class_names: &[String]) -> Result<ImageSet> {
    let record_len = layout.record_len();
    // Sized from the files' real lengths, so a bad file cannot make this reservation huge.
    let total_bytes: u64 = paths
        .iter()
        .map(|p| {
            fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| DataError::io(p, e))
        })
        .sum::<Result<u64>>()?;
    let capacity = (total_bytes / record_len as u64) as usize;
    let mut pixels = Vec::with_capacity(capacity * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(capacity);
    let mut origins = Vec::with_capacity(capacity);

    for path in paths {
        let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
        if bytes.is_empty() {
            return Err(DataError::Empty {
                path: path.clone(),
                problem: "batch file is empty".into(),
            });
        }
        if bytes.len() % record_len != 0 {
            return Err(DataError::format(
                path,
                format!(
                    "truncated: {} bytes is not a whole number of {record_len}-byte records ({} records and {} bytes over)",
                    bytes.len(),
                    bytes.len() / record_len,
                    bytes.len() % record_len
                ),
            ));
        }
        for (i, record) in bytes.chunks_exact(record_len).enumerate() {
            let label = record[layout.label_bytes - 1];
            if usize::from(label) >= layout.num_classes() {
                return Err(DataError::format(
                    path,
                    format!(
                        "record {i}: label {label} out of range (0..{})",
                        layout.num_classes()
                    ),
                ));
            }
            // The coarse label is unused, but a bad one says the file is not CIFAR-100.
            if layout.label_bytes == 2 && record[0] >= CIFAR100_COARSE_CLASSES {
                return Err(DataError::format(
                    path,
                    format!(
                        "record {i}: coarse label {} out of range (0..{CIFAR100_COARSE_CLASSES})",
                        record[0]
                    ),
                ));
            }
            labels.push(u32::from(label));
            pixels.extend_from_slice(&record[layout.label_bytes..]);
        }
        origins.extend(super::record_origins(path, bytes.len() / record_len));
    }
    Ok(ImageSet {
        len: labels.len(),
        pixels,
        labels: Some(labels),
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
        class_names: class_names.to_vec(),
        origins: Some(origins),
    })
}

/// One name per non-blank line; the official files end with blank lines.
fn read_class_names(root: &Path, layout: &Layout) -> Result<Vec<String>> {
    let path = root.join(layout.names_file);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(layout.default_names.iter().map(|s| s.to_string()).collect());
        }
        Err(e) => return Err(DataError::io(path, e)),
    };
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != layout.num_classes() {
        return Err(DataError::format(
            path,
            format!(
                "expected {} class names (one per line), found {}",
                layout.num_classes(),
                names.len()
            ),
        ));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `labels.len()` records; the pixels of record `i` are all `i as u8`.
    fn records(labels: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, label) in labels.iter().enumerate() {
            out.extend_from_slice(label);
            out.extend(std::iter::repeat_n(i as u8, IMAGE_BYTES));
        }
        out
    }

    fn assert_err_names(err: DataError, file: &str, needle: &str) {
        let msg = err.to_string();
        assert!(msg.contains(file), "message {msg:?} does not name {file}");
        assert!(
            msg.contains(needle),
            "message {msg:?} does not contain {needle:?}"
        );
    }

    #[test]
    fn loads_cifar10_batches_in_order_with_meta_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("data_batch_1.bin"), records(&[&[3], &[9]])).unwrap();
        fs::write(d.join("data_batch_2.bin"), records(&[&[0]])).unwrap();
        fs::write(d.join("test_batch.bin"), records(&[&[5]])).unwrap();
        let names: String = (0..10).map(|i| format!("class{i}\n")).collect::<String>() + "\n\n";
        fs::write(d.join("batches.meta.txt"), names).unwrap();

        assert_eq!(detect(d), Some(Format::Cifar10));
        let ds = load_dir(d, Format::Cifar10).unwrap();
        assert_eq!(ds.format, Format::Cifar10);
        let t = &ds.train;
        assert_eq!((t.len, t.channels, t.height, t.width), (3, 3, 32, 32));
        assert_eq!(t.labels.as_deref(), Some(&[3, 9, 0][..]));
        assert_eq!(t.image(1), &[1u8; IMAGE_BYTES][..]);
        assert_eq!(t.image(2), &[0u8; IMAGE_BYTES][..]);
        assert_eq!(t.class_names[9], "class9");
        // Each image is named by its batch file and its record there.
        let origin = |i: usize| t.origins.as_ref().unwrap()[i].clone();
        assert!(origin(1).ends_with("data_batch_1.bin#1"), "{}", origin(1));
        assert!(origin(2).ends_with("data_batch_2.bin#0"), "{}", origin(2));
        let test = ds.test.unwrap();
        assert_eq!(test.labels.as_deref(), Some(&[5][..]));
        assert_eq!(test.class_names.len(), 10);
    }

    #[test]
    fn loads_cifar10_from_archive_subfolder_with_default_names() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-10-batches-bin");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("data_batch_3.bin"), records(&[&[1]])).unwrap();
        assert_eq!(detect(dir.path()), Some(Format::Cifar10));
        let ds = load_dir(dir.path(), Format::Cifar10).unwrap();
        assert!(ds.test.is_none());
        assert_eq!(ds.train.class_names, CIFAR10_NAMES);
    }

    #[test]
    fn loads_cifar100_fine_labels() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("cifar-100-binary");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("train.bin"), records(&[&[19, 99], &[0, 42]])).unwrap();
        fs::write(sub.join("test.bin"), records(&[&[4, 7]])).unwrap();
        assert_eq!(detect(dir.path()), Some(Format::Cifar100));
        let ds = load_dir(dir.path(), Format::Cifar100).unwrap();
        assert_eq!(ds.train.labels.as_deref(), Some(&[99, 42][..]));
        assert_eq!(ds.train.image(1), &[1u8; IMAGE_BYTES][..]);
        assert_eq!(ds.test.unwrap().labels.as_deref(), Some(&[7][..]));
        assert_eq!(ds.train.num_classes(), 100);
        assert_eq!(ds.train.class_names[99], "worm");
        assert!(CIFAR100_NAMES.is_sorted());
    }

    #[test]
    fn truncated_batch_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = records(&[&[1], &[2]]);
        bytes.truncate(bytes.len() - 100);
        fs::write(dir.path().join("data_batch_1.bin"), bytes).unwrap();
        let err = load_dir(dir.path(), Format::Cifar10).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        assert_err_names(err, "data_batch_1.bin", "truncated");
    }

    #[test]
    fn cifar10_file_read_as_cifar100_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        // 3073-byte records are not a multiple of 3074 unless there are thousands of them.
        fs::write(dir.path().join("train.bin"), records(&[&[1], &[2], &[3]])).unwrap();
        let err = load_dir(dir.path(), Format::Cifar100).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        assert_err_names(err, "train.bin", "3074-byte records");
    }

    #[test]
    fn label_out_of_range_names_file_and_record() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("data_batch_1.bin"), records(&[&[1]])).unwrap();
        fs::write(dir.path().join("test_batch.bin"), records(&[&[2], &[10]])).unwrap();
        let err = load_dir(dir.path(), Format::Cifar10).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        assert_err_names(err, "test_batch.bin", "record 1: label 10 out of range");

        fs::write(dir.path().join("train.bin"), records(&[&[0, 100]])).unwrap();
        let err = load_dir(dir.path(), Format::Cifar100).unwrap_err();
        assert_err_names(err, "train.bin", "label 100 out of range");
        fs::write(dir.path().join("train.bin"), records(&[&[20, 5]])).unwrap();
        let err = load_dir(dir.path(), Format::Cifar100).unwrap_err();
        assert_err_names(err, "train.bin", "coarse label 20");
    }

    #[test]
    fn no_batch_files_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("test_batch.bin"), records(&[&[1]])).unwrap();
        let err = load_dir(dir.path(), Format::Cifar10).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
        assert_err_names(err, &dir.path().display().to_string(), "data_batch_1.bin");
        assert_eq!(detect(dir.path()), None);

        let missing = dir.path().join("absent");
        let err = load_dir(&missing, Format::Cifar100).unwrap_err();
        assert!(
            matches!(&err, DataError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert_err_names(err, "absent", "");
    }

    #[test]
    fn empty_batch_and_bad_names_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("data_batch_1.bin"), []).unwrap();
        let err = load_dir(dir.path(), Format::Cifar10).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
        assert_err_names(err, "data_batch_1.bin", "empty");

        fs::write(dir.path().join("data_batch_1.bin"), records(&[&[1]])).unwrap();
        fs::write(dir.path().join("batches.meta.txt"), "cat\ndog\n").unwrap();
        let err = load_dir(dir.path(), Format::Cifar10).unwrap_err();
        assert_err_names(err, "batches.meta.txt", "expected 10 class names");
    }

    #[test]
    fn other_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_dir(dir.path(), Format::Idx),
            Err(DataError::Other(_))
        ));
    }
}
