//! MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST, ...), raw or gzipped.
//!
//! An IDX file is a big-endian header — two zero bytes, a dtype byte, a dimension count, then one
//! u32 per dimension — followed by the data. pretext reads only unsigned-byte (dtype 0x08) files:
//! images with 3 dimensions (n, h, w) and labels with 1 (n).
//!
//! The header is not trusted: the data size it declares is checked against what the file can
//! actually hold before anything that size is allocated, so a corrupt header fails at once with
//! the file named instead of exhausting memory. Bytes after the declared data are an error too:
//! a correct IDX file has none, so they mean the header and the data disagree.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{DataError, Dataset, Format, ImageSet, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const DTYPE_U8: u8 = 0x08;
const IMAGE_DIMS: u8 = 3;
const LABEL_DIMS: u8 = 1;

/// Deflate cannot expand input more than about 1032:1 (a 258-byte match in two bits), so a gzip
/// file of `n` bytes decompresses to at most this many times `n` bytes: a header declaring more
/// is rejected without decompressing anything.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Upper bound on memory reserved up front for gzipped data, whose real size is only known once
/// it has been decompressed; the buffer grows past it if the data really is larger.
const GZIP_PREALLOC_LIMIT: usize = 64 << 20;

/// Reads an IDX image file (magic `0x00000803`): returns the pixels (`[n][h][w]`, u8), n, h, w.
pub fn read_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize)> {
    let (dims, pixels) = read_idx(path, IMAGE_DIMS)?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if n > 0 && (h == 0 || w == 0) {
        return Err(DataError::format(
            path,
            format!("header declares {n} images of size {h}x{w}"),
        ));
    }
    Ok((pixels, n, h, w))
}

/// Reads an IDX label file (magic `0x00000801`).
pub fn read_labels(path: &Path) -> Result<Vec<u32>> {
    let (_, labels) = read_idx(path, LABEL_DIMS)?;
    Ok(labels.into_iter().map(u32::from).collect())
}

/// True when `dir` holds an IDX training image file under one of the names [`load_dir`] accepts.
pub fn detect(dir: &Path) -> bool {
    find_file(dir, "train", Kind::Images).is_some()
}

/// Loads `train-*` and (optionally) `t10k-*` IDX image and label files from `dir`.
///
/// Accepts the official names (`train-images-idx3-ubyte`), the dotted spelling some mirrors use
/// (`train-images.idx3-ubyte`), each raw or with `.gz`. The training split must exist; the test
/// split is `None` when neither of its files exists. Each split needs its label file.
pub fn load_dir(dir: &Path) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(missing_dir(dir));
    }
    let train = load_split(dir, "train")?.ok_or_else(|| {
        DataError::io(
            dir.join(Kind::Images.official_name("train")),
            io::Error::new(
                io::ErrorKind::NotFound,
                "no IDX training images (looked for raw, .gz and dotted names)",
            ),
        )
    })?;
    if train.len == 0 {
        let path = find_file(dir, "train", Kind::Images).unwrap_or_else(|| dir.to_path_buf());
        return Err(DataError::Empty {
            path,
            problem: "IDX file holds no images".into(),
        });
    }
    let test = load_split(dir, "t10k")?;
    if let Some(test) = &test
        && (test.height, test.width) != (train.height, train.width)
    {
        let path = find_file(dir, "t10k", Kind::Images).unwrap_or_else(|| dir.to_path_buf());
        return Err(DataError::Mismatch {
            path,
            problem: format!(
                "test images are {}x{} but training images are {}x{}",
                test.height, test.width, train.height, train.width
            ),
        });
    }

    // Class names are the label values themselves; both splits count so that a label present
    // only in the test split still has a name.
    let max_label = [Some(&train), test.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|s| s.labels.as_ref()?.iter().copied().max())
        .max()
        .unwrap_or(0);
    let class_names: Vec<String> = (0..=max_label).map(|l| l.to_string()).collect();
    let with_names = |mut set: ImageSet| {
        set.class_names = class_names.clone();
        set
    };
    Ok(Dataset {
        format: Format::Idx,
        source: dir.display().to_string(),
        train: with_names(train),
        test: test.map(with_names),
        skipped: 0,
    })
}

/// One split (`train` or `t10k`); `None` when neither of its files exists.
fn load_split(dir: &Path, split: &str) -> Result<Option<ImageSet>> {
    let images = find_file(dir, split, Kind::Images);
    let labels = find_file(dir, split, Kind::Labels);
    let (images, labels) = match (images, labels) {
        (None, None) => return Ok(None),
        (Some(i), Some(l)) => (i, l),
        (i, _) => {
            let missing = if i.is_none() {
                Kind::Images
            } else {
                Kind::Labels
            };
            return Err(DataError::io(
                dir.join(missing.official_name(split)),
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "the {split} split has its {} file but not this one (raw or .gz)",
                        missing.other()
                    ),
                ),
            ));
        }
    };
    let (pixels, n, h, w) = read_images(&images)?;
    let label_values = read_labels(&labels)?;
    if label_values.len() != n {
        return Err(DataError::Mismatch {
            path: labels,
            problem: format!(
                "{} labels but {} holds {n} images",
                label_values.len(),
                images.display()
            ),
        });
    }
    Ok(Some(ImageSet {
        pixels,
        labels: Some(label_values),
        len: n,
        channels: 1,
        height: h,
        width: w,
        class_names: Vec::new(),
        origins: Some(super::record_origins(&images, n)),
    }))
}

#[derive(Clone, Copy)]
enum Kind {
    Images,
    Labels,
}

impl Kind {
    fn stem(self) -> (&'static str, u8) {
        match self {
            Kind::Images => ("images", IMAGE_DIMS),
            Kind::Labels => ("labels", LABEL_DIMS),
        }
    }
    fn official_name(self, split: &str) -> String {
        let (what, dims) = self.stem();
        format!("{split}-{what}-idx{dims}-ubyte")
    }
    fn other(self) -> &'static str {
        match self {
            Kind::Images => "labels",
            Kind::Labels => "images",
        }
    }
}

/// The first existing file among the accepted spellings; uncompressed first since it loads faster.
fn find_file(dir: &Path, split: &str, kind: Kind) -> Option<PathBuf> {
    let (what, dims) = kind.stem();
    let stems = [
        format!("{split}-{what}-idx{dims}-ubyte"),
        format!("{split}-{what}.idx{dims}-ubyte"),
    ];
    stems
        .iter()
        .flat_map(|stem| [stem.clone(), format!("{stem}.gz")])
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

fn missing_dir(dir: &Path) -> DataError {
    match std::fs::metadata(dir) {
        Err(e) => DataError::io(dir, e),
        Ok(_) => DataError::format(dir, "is not a folder"),
    }
}

/// Reads and validates an unsigned-byte IDX file with `ndims` dimensions.
fn read_idx(path: &Path, ndims: u8) -> Result<(Vec<usize>, Vec<u8>)> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();

    // The content decides whether the file is gzipped: a renamed or mis-suffixed file still reads.
    let mut head = [0u8; 4];
    read_header_bytes(&mut file, &mut head, path)?;
    if head[..2] == GZIP_MAGIC {
        let mut gz = MultiGzDecoder::new(Cursor::new(head).chain(file));
        let mut magic = [0u8; 4];
        read_header_bytes(&mut gz, &mut magic, path)?;
        let dims = read_dims(&mut gz, magic, ndims, path)?;
        let declared = declared_len(&dims, path)?;
        let max_possible = file_len.saturating_mul(MAX_DEFLATE_RATIO);
        if declared > max_possible {
            return Err(DataError::format(
                path,
                format!(
                    "truncated or corrupt header: it declares {} but a {file_len}-byte gzip file cannot hold more than {max_possible} bytes",
                    describe(&dims, declared)
                ),
            ));
        }
        let data = read_gzip_data(&mut gz, declared, &dims, path)?;
        Ok((dims, data))
    } else {
        let dims = read_dims(&mut file, head, ndims, path)?;
        let declared = declared_len(&dims, path)?;
        let header_len = 4 + 4 * dims.len() as u64;
        let available = file_len.saturating_sub(header_len);
        if declared > available {
            return Err(DataError::format(
                path,
                format!(
                    "truncated: the header declares {} but the file holds only {available} bytes of data",
                    describe(&dims, declared)
                ),
            ));
        }
        if declared < available {
            return Err(DataError::format(
                path,
                format!(
                    "{} bytes of trailing data after the {} the header declares",
                    available - declared,
                    describe(&dims, declared)
                ),
            ));
        }
        // Checked against the file length above, so this allocation is the file's own size.
        let mut data = vec![0u8; declared as usize];
        file.read_exact(&mut data)
            .map_err(|e| DataError::io(path, e))?;
        Ok((dims, data))
    }
}

/// Reads exactly `declared` bytes of decompressed data and checks that nothing follows it.
fn read_gzip_data(
    gz: &mut impl Read,
    declared: u64,
    dims: &[usize],
    path: &Path,
) -> Result<Vec<u8>> {
    let corrupt =
        |e: io::Error| DataError::format(path, format!("corrupt or truncated gzip data: {e}"));
    let mut data = Vec::with_capacity((declared as usize).min(GZIP_PREALLOC_LIMIT));
    gz.take(declared).read_to_end(&mut data).map_err(corrupt)?;
    if (data.len() as u64) < declared {
        return Err(DataError::format(
            path,
            format!(
                "truncated: the header declares {} but the file decompresses to only {} bytes of data",
                describe(dims, declared),
                data.len()
            ),
        ));
    }
    // Reading on to the end of the stream also makes the decoder verify the gzip CRC.
    let trailing = io::copy(gz, &mut io::sink()).map_err(corrupt)?;
    if trailing > 0 {
        return Err(DataError::format(
            path,
            format!(
                "{trailing} bytes of trailing data after the {} the header declares",
                describe(dims, declared)
            ),
        ));
    }
    Ok(data)
}

fn read_header_bytes(r: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => DataError::format(path, "truncated header"),
        _ => DataError::format(path, format!("cannot read header: {e}")),
    })
}

/// Checks the magic number and reads the dimension sizes that follow it.
fn read_dims(r: &mut impl Read, magic: [u8; 4], ndims: u8, path: &Path) -> Result<Vec<usize>> {
    let expected = u32::from_be_bytes([0, 0, DTYPE_U8, ndims]);
    let found = u32::from_be_bytes(magic);
    let what = if ndims == IMAGE_DIMS {
        "image"
    } else {
        "label"
    };
    if magic[..2] != [0, 0] {
        return Err(DataError::format(
            path,
            format!(
                "not an IDX {what} file: magic number 0x{found:08x}, expected 0x{expected:08x}"
            ),
        ));
    }
    if magic[2] != DTYPE_U8 {
        return Err(DataError::format(
            path,
            format!(
                "IDX {what} data must be unsigned bytes (dtype 0x08), found dtype 0x{:02x} (magic 0x{found:08x})",
                magic[2]
            ),
        ));
    }
    if magic[3] != ndims {
        return Err(DataError::format(
            path,
            format!(
                "IDX {what} file must have {ndims} dimension(s), found {} (magic 0x{found:08x}, expected 0x{expected:08x})",
                magic[3]
            ),
        ));
    }
    let mut dims = Vec::with_capacity(ndims as usize);
    for _ in 0..ndims {
        let mut b = [0u8; 4];
        read_header_bytes(r, &mut b, path)?;
        dims.push(u32::from_be_bytes(b) as usize);
    }
    Ok(dims)
}

/// The data size the header declares; three u32s can overflow even 64 bits.
fn declared_len(dims: &[usize], path: &Path) -> Result<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| usize::try_from(n).is_ok())
        .ok_or_else(|| {
            DataError::format(path, format!("header declares an impossible size {dims:?}"))
        })
}

fn describe(dims: &[usize], bytes: u64) -> String {
    let shape: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("{} ({bytes} bytes)", shape.join("x"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn idx_images(n: u32, h: u32, w: u32, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 3];
        for d in [n, h, w] {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 1];
        v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        v.extend_from_slice(labels);
        v
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Asserts a `Format` error whose message names the file and contains `needle`.
    fn assert_format_err<T: std::fmt::Debug>(r: Result<T>, file: &str, needle: &str) {
        let err = r.unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, DataError::Format { .. }),
            "expected Format, got {err:?}"
        );
        assert!(msg.contains(file), "message {msg:?} does not name {file}");
        assert!(
            msg.contains(needle),
            "message {msg:?} does not contain {needle:?}"
        );
    }

    /// Two 2x3 images, labels 1 and 7.
    fn write_tiny_split(dir: &Path, split: &str, gz: bool) {
        let images = idx_images(2, 2, 3, &[0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15]);
        let labels = idx_labels(&[1, 7]);
        let (images, labels, ext) = if gz {
            (gzip(&images), gzip(&labels), ".gz")
        } else {
            (images, labels, "")
        };
        write(dir, &format!("{split}-images-idx3-ubyte{ext}"), &images);
        write(dir, &format!("{split}-labels-idx1-ubyte{ext}"), &labels);
    }

    #[test]
    fn reads_raw_and_gzipped_images() {
        let dir = tempfile::tempdir().unwrap();
        let raw = idx_images(2, 2, 3, &[1; 12]);
        for (name, bytes) in [
            ("raw", raw.clone()),
            ("zipped.gz", gzip(&raw)),
            ("zipped-no-suffix", gzip(&raw)),
        ] {
            let path = write(dir.path(), name, &bytes);
            let (pixels, n, h, w) = read_images(&path).unwrap();
            assert_eq!((pixels.len(), n, h, w), (12, 2, 2, 3), "{name}");
        }
    }

    #[test]
    fn reads_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "labels.gz", &gzip(&idx_labels(&[3, 0, 255])));
        assert_eq!(read_labels(&path).unwrap(), vec![3, 0, 255]);
    }

    #[test]
    fn loads_raw_dir_without_test_split() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_split(dir.path(), "train", false);
        let ds = load_dir(dir.path()).unwrap();
        assert_eq!(ds.format, Format::Idx);
        assert!(ds.test.is_none());
        let t = &ds.train;
        assert_eq!((t.len, t.channels, t.height, t.width), (2, 1, 2, 3));
        assert_eq!(t.image(1), &[10, 11, 12, 13, 14, 15]);
        assert_eq!(t.labels.as_deref(), Some(&[1, 7][..]));
        assert_eq!(t.class_names, ["0", "1", "2", "3", "4", "5", "6", "7"]);
        let file = dir.path().join("train-images-idx3-ubyte");
        let file = file.display();
        assert_eq!(
            t.origins.as_deref(),
            Some(&[format!("{file}#0"), format!("{file}#1")][..])
        );
    }

    #[test]
    fn loads_gzipped_dir_with_test_split_and_dotted_names() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_split(dir.path(), "train", true);
        write(
            dir.path(),
            "t10k-images.idx3-ubyte",
            &idx_images(1, 2, 3, &[9; 6]),
        );
        write(dir.path(), "t10k-labels.idx1-ubyte", &idx_labels(&[9]));
        let ds = load_dir(dir.path()).unwrap();
        let test = ds.test.unwrap();
        assert_eq!(test.len, 1);
        // The test split's label 9 widens the class list of both splits.
        assert_eq!(test.class_names.len(), 10);
        assert_eq!(ds.train.class_names.len(), 10);
        assert!(detect(dir.path()));
    }

    #[test]
    fn wrong_magic_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = idx_images(1, 1, 1, &[0]);
        bytes[3] = 1;
        let path = write(dir.path(), "bad-images", &bytes);
        assert_format_err(read_images(&path), "bad-images", "dimension");
        // An image file where labels are expected is rejected by its magic too.
        let path = write(dir.path(), "swapped", &idx_images(1, 1, 1, &[0]));
        assert_format_err(read_labels(&path), "swapped", "0x00000801");
        let path = write(
            dir.path(),
            "not-idx.gz",
            &gzip(b"PK\x03\x04 not an idx file"),
        );
        assert_format_err(read_images(&path), "not-idx.gz", "not an IDX image file");
    }

    #[test]
    fn label_dtype_must_be_unsigned_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = idx_labels(&[0, 0, 0, 0]);
        bytes[2] = 0x0c; // int32
        let path = write(dir.path(), "int-labels", &bytes);
        assert_format_err(read_labels(&path), "int-labels", "dtype 0x0c");
    }

    #[test]
    fn truncated_header_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let full = idx_images(1, 2, 2, &[0; 4]);
        for (name, bytes) in [
            ("short", full[..2].to_vec()),
            ("mid", full[..9].to_vec()),
            ("short.gz", gzip(&full[..9])),
        ] {
            let path = write(dir.path(), name, &bytes);
            assert_format_err(read_images(&path), name, "truncated header");
        }
    }

    #[test]
    fn truncated_data_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let full = idx_images(2, 2, 2, &[7; 8]);
        let short = &full[..full.len() - 3];
        let path = write(dir.path(), "short-raw", short);
        assert_format_err(read_images(&path), "short-raw", "truncated");
        let path = write(dir.path(), "short-data.gz", &gzip(short));
        assert_format_err(read_images(&path), "short-data.gz", "truncated");
        // A .gz file cut short loses its deflate end and CRC, not only data.
        let zipped = gzip(&full);
        let path = write(dir.path(), "cut.gz", &zipped[..zipped.len() - 6]);
        assert_format_err(read_images(&path), "cut.gz", "gzip");
    }

    #[test]
    fn huge_declared_size_fails_without_allocating() {
        let dir = tempfile::tempdir().unwrap();
        // Counts are u32, so "10^12 images" is spelt as 10^9 images of 1000x28 (2.8e13 bytes);
        // also u32::MAX images of 28x28 (3.4e12 bytes). No allocation could satisfy either, so
        // these only pass quickly if the size is checked before anything is reserved.
        let header = |n: u32, h: u32, w: u32| {
            let mut v = idx_images(n, h, w, &[]);
            v.extend_from_slice(&[0; 100]);
            v
        };
        let huge = header(1_000_000_000, 1000, 28);
        let max = header(u32::MAX, 28, 28);
        for (name, data) in [
            ("huge-raw", huge.clone()),
            ("huge.gz", gzip(&huge)),
            ("max-raw", max.clone()),
            ("max.gz", gzip(&max)),
        ] {
            let path = write(dir.path(), name, &data);
            let start = std::time::Instant::now();
            assert_format_err(read_images(&path), name, "truncated");
            assert!(
                start.elapsed().as_secs_f64() < 1.0,
                "{name} took {:?}",
                start.elapsed()
            );
        }
        // Same for labels: u32::MAX labels claimed by a tiny file.
        let mut labels = idx_labels(&[1, 2]);
        labels[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let path = write(dir.path(), "huge-labels.gz", &gzip(&labels));
        assert_format_err(read_labels(&path), "huge-labels.gz", "truncated");
    }

    #[test]
    fn trailing_data_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = idx_labels(&[1, 2]);
        bytes.extend_from_slice(b"junk");
        let path = write(dir.path(), "trailing", &bytes);
        assert_format_err(read_labels(&path), "trailing", "4 bytes of trailing data");
        let path = write(dir.path(), "trailing.gz", &gzip(&bytes));
        assert_format_err(
            read_labels(&path),
            "trailing.gz",
            "4 bytes of trailing data",
        );
    }

    #[test]
    fn label_count_must_match_image_count() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "train-images-idx3-ubyte",
            &idx_images(2, 1, 1, &[0, 1]),
        );
        write(
            dir.path(),
            "train-labels-idx1-ubyte.gz",
            &gzip(&idx_labels(&[0, 1, 2])),
        );
        let err = load_dir(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::Mismatch { .. }), "{err:?}");
        assert!(
            msg.contains("train-labels-idx1-ubyte.gz") && msg.contains("3 labels"),
            "{msg}"
        );
    }

    #[test]
    fn missing_label_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_split(dir.path(), "train", false);
        write(
            dir.path(),
            "t10k-images-idx3-ubyte",
            &idx_images(1, 2, 3, &[0; 6]),
        );
        let err = load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&err, DataError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(err.to_string().contains("t10k-labels-idx1-ubyte"), "{err}");
    }

    #[test]
    fn missing_dir_and_missing_train_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(matches!(&err, DataError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
        let missing = dir.path().join("nowhere");
        let err = load_dir(&missing).unwrap_err();
        assert!(
            matches!(&err, DataError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(err.to_string().contains("nowhere"), "{err}");
    }

    #[test]
    fn test_split_must_match_train_size() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_split(dir.path(), "train", false);
        write(
            dir.path(),
            "t10k-images-idx3-ubyte",
            &idx_images(1, 3, 2, &[0; 6]),
        );
        write(dir.path(), "t10k-labels-idx1-ubyte", &idx_labels(&[0]));
        let err = load_dir(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Mismatch { .. }), "{err:?}");
        assert!(err.to_string().contains("t10k-images-idx3-ubyte"), "{err}");
    }

    /// Loads the real data sets in `/work/shared/data` when this machine has them.
    #[test]
    fn real_mnist_and_fashion_mnist() {
        let shared = shared_data();
        for (name, first) in [
            ("fashion-mnist", [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]),
            ("mnist", [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]),
        ] {
            let dir = shared.join(name);
            if !dir.is_dir() {
                println!("skipping {name}: {} not found", dir.display());
                continue;
            }
            assert!(detect(&dir));
            let start = std::time::Instant::now();
            let ds = load_dir(&dir).unwrap();
            println!("loaded {name} in {:.2?}", start.elapsed());
            let test = ds.test.as_ref().unwrap();
            assert_eq!((ds.train.len, test.len), (60_000, 10_000));
            assert_eq!(
                (ds.train.channels, ds.train.height, ds.train.width),
                (1, 28, 28)
            );
            assert_eq!(ds.train.pixels.len(), 60_000 * 784);
            assert_eq!(&ds.train.labels.as_ref().unwrap()[..10], &first);
            assert_eq!(ds.train.num_classes(), 10);
            assert!(ds.train.class_counts().iter().all(|&c| c > 5000), "{name}");
        }
    }

    /// `shared/data` beside the repository (where CI puts it), else the workspace copy.
    fn shared_data() -> PathBuf {
        let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
        if beside.is_dir() {
            beside
        } else {
            PathBuf::from("/work/shared/data")
        }
    }
}
