//! What `pretext embed` writes, row by row as the features are computed, so memory does not
//! grow with the number of images: each split's `.npy` arrays (the row count goes into the
//! header last) and `files.csv`, which names the image behind every row.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use super::{DataError, Result};

/// The list of embedded images: one row per feature row, the training split's rows first.
pub const EMBED_FILES: &str = "files.csv";
/// Its columns: the split, the row in that split's `.npy`, where the image was read from
/// ([`super::ImageSet::origins`]), and the class name (empty when unlabelled).
pub const EMBED_COLUMNS: [&str; 4] = ["split", "index", "path", "label"];
/// Where the split, the row and the path are among [`EMBED_COLUMNS`].
const SPLIT_COLUMN: usize = 0;
const INDEX_COLUMN: usize = 1;
const PATH_COLUMN: usize = 2;
/// `{split}_features.npy` (float32, rows x features) and `{split}_labels.npy` (int64).
pub const FEATURES_SUFFIX: &str = "features.npy";
pub const LABELS_SUFFIX: &str = "labels.npy";
/// The names of the two splits, in the order they are written.
pub const TRAIN_SPLIT: &str = "train";
pub const TEST_SPLIT: &str = "test";

/// Which splits an embedding covers.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SplitChoice {
    Train,
    Test,
    /// The training split, then the test split where there is one.
    All,
}

impl SplitChoice {
    /// The name `--split` takes.
    pub fn name(self) -> &'static str {
        match self {
            SplitChoice::Train => TRAIN_SPLIT,
            SplitChoice::Test => TEST_SPLIT,
            SplitChoice::All => "all",
        }
    }

    /// Whether the split named `split` ([`TRAIN_SPLIT`] or [`TEST_SPLIT`]) is covered.
    pub fn includes(self, split: &str) -> bool {
        match self {
            SplitChoice::Train => split == TRAIN_SPLIT,
            SplitChoice::Test => split == TEST_SPLIT,
            SplitChoice::All => true,
        }
    }
}

/// An embedding's output folder: the paths of what it holds.
#[derive(Clone, Copy, Debug)]
pub struct EmbedDir<'a>(pub &'a Path);

impl EmbedDir<'_> {
    pub fn files(&self) -> PathBuf {
        self.0.join(EMBED_FILES)
    }
    pub fn features(&self, split: &str) -> PathBuf {
        self.0.join(format!("{split}_{FEATURES_SUFFIX}"))
    }
    pub fn labels(&self, split: &str) -> PathBuf {
        self.0.join(format!("{split}_{LABELS_SUFFIX}"))
    }
}

/// `.npy` preamble bytes reserved before the data: magic, version, length and a header
/// dictionary for any shape of two 20-digit numbers, padded to a multiple of 64 as numpy pads.
const NPY_PREAMBLE: usize = 128;
const NPY_MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// A value type of a `.npy` array written row by row.
pub trait NpyValue: Copy {
    /// numpy's `descr` of the type, little-endian.
    const DESCR: &'static str;
    fn put(self, out: &mut Vec<u8>);
}

impl NpyValue for f32 {
    const DESCR: &'static str = "<f4";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyValue for i64 {
    const DESCR: &'static str = "<i8";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The preamble of a C-order array of `shape`, padded with spaces to `len` bytes.
fn npy_preamble(descr: &str, shape: &[u64], len: usize) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let mut out = NPY_MAGIC.to_vec();
    let header_len = len - NPY_MAGIC.len() - 2;
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(len - 1, b' ');
    out.push(b'\n');
    debug_assert_eq!(out.len(), len, "the header fits the reserved bytes");
    out
}

/// Writes one file atomically as it goes: into a temporary file beside `path`, renamed over it
/// by [`Staged::commit`]; dropped without it, the temporary file is removed.
struct Staged {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
}

impl Staged {
    fn create(path: &Path) -> Result<Self> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            file: Some(BufWriter::new(file)),
        })
    }

    fn writer(&mut self) -> &mut BufWriter<File> {
        self.file.as_mut().expect("written before commit")
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let tmp = self.tmp.clone();
        self.writer()
            .write_all(bytes)
            .map_err(|e| DataError::io(tmp, e))
    }

    /// `preamble` written over the start of the file, then the file synced and renamed.
    fn commit(mut self, preamble: Option<&[u8]>) -> Result<PathBuf> {
        let io = |e| DataError::io(&self.tmp, e);
        let file = self.file.take().expect("committed once");
        let mut file = file.into_inner().map_err(|e| io(e.into_error()))?;
        if let Some(bytes) = preamble {
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(bytes).map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        std::fs::rename(&self.tmp, &self.path).map_err(io)?;
        Ok(self.path.clone())
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer().flush()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A `.npy` array of rows of `T` (a matrix, or a vector of one value per row) written as the
/// rows come; the header, which needs their number, is written when it is finished.
pub struct NpyRows<T: NpyValue> {
    staged: Staged,
    rows: u64,
    bytes: Vec<u8>,
    value: PhantomData<T>,
}

impl<T: NpyValue> NpyRows<T> {
    pub fn create(path: &Path) -> Result<Self> {
        let mut staged = Staged::create(path)?;
        staged.put(&[0u8; NPY_PREAMBLE])?;
        Ok(Self {
            staged,
            rows: 0,
            bytes: Vec::new(),
            value: PhantomData,
        })
    }

    /// Appends `rows` rows whose values, row-major, are `values`.
    pub fn push(&mut self, values: &[T], rows: usize) -> Result<()> {
        self.bytes.clear();
        values.iter().for_each(|v| v.put(&mut self.bytes));
        self.rows += rows as u64;
        let bytes = std::mem::take(&mut self.bytes);
        let written = self.staged.put(&bytes);
        self.bytes = bytes;
        written
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The array's header written, with `cols` values per row (`None`: a vector), and the
    /// file put in place; its path.
    pub fn finish(self, cols: Option<usize>) -> Result<PathBuf> {
        let shape: Vec<u64> = std::iter::once(self.rows)
            .chain(cols.map(|c| c as u64))
            .collect();
        let preamble = npy_preamble(T::DESCR, &shape, NPY_PREAMBLE);
        self.staged.commit(Some(&preamble))
    }
}

/// `files.csv`, written row by row ([`EMBED_COLUMNS`]).
pub struct FilesCsv {
    csv: csv::Writer<Staged>,
    /// The temporary file, for messages.
    tmp: PathBuf,
}

impl FilesCsv {
    pub fn create(path: &Path) -> Result<Self> {
        let staged = Staged::create(path)?;
        let mut files = Self {
            tmp: staged.tmp.clone(),
            csv: csv::Writer::from_writer(staged),
        };
        files.record(&EMBED_COLUMNS)?;
        Ok(files)
    }

    fn record(&mut self, fields: &[&str]) -> Result<()> {
        self.csv
            .write_record(fields)
            .map_err(|e| DataError::io(&self.tmp, std::io::Error::other(e)))
    }

    /// The row of image `index` of `split`, read from `path`, of class `label`.
    pub fn row(
        &mut self,
        split: &str,
        index: u64,
        path: Option<&str>,
        label: Option<&str>,
    ) -> Result<()> {
        let index = index.to_string();
        self.record(&[split, &index, path.unwrap_or(""), label.unwrap_or("")])
    }

    pub fn finish(self) -> Result<PathBuf> {
        let tmp = self.tmp;
        let staged = self
            .csv
            .into_inner()
            .map_err(|e| DataError::io(&tmp, e.into_error()))?;
        staged.commit(None)
    }
}

/// The `path` column of the `files.csv` at `files` for `rows` (split, row in that split), in
/// their order; empty for a row the file does not list.
pub fn read_paths(files: &Path, rows: &[(&str, usize)]) -> Result<Vec<String>> {
    let bad = |e: &dyn std::fmt::Display| DataError::Other(format!("{}: {e}", files.display()));
    let mut reader = csv::Reader::from_path(files).map_err(|e| bad(&e))?;
    let mut by_row = std::collections::HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(&e))?;
        let index: usize = record[INDEX_COLUMN].parse().map_err(|e| bad(&e))?;
        let key = (record[SPLIT_COLUMN].to_string(), index);
        by_row.insert(key, record[PATH_COLUMN].to_string());
    }
    Ok(rows
        .iter()
        .map(|&(split, r)| by_row.remove(&(split.to_string(), r)).unwrap_or_default())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_written_one_by_one_read_back_with_their_count() {
        let dir = tempfile::tempdir().unwrap();
        let out = EmbedDir(dir.path());
        let mut features = NpyRows::<f32>::create(&out.features(TRAIN_SPLIT)).unwrap();
        features.push(&[1.0, 2.0, 3.0], 1).unwrap();
        features.push(&[4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 2).unwrap();
        let path = features.finish(Some(3)).unwrap();
        let m = crate::npy::read_matrix(&path).unwrap();
        assert_eq!((m.rows, m.cols), (3, 3));
        assert_eq!(m.values[8], 9.0);
        let mut labels = NpyRows::<i64>::create(&out.labels(TEST_SPLIT)).unwrap();
        labels.push(&[2, 0], 2).unwrap();
        assert_eq!(labels.rows(), 2);
        let path = labels.finish(None).unwrap();
        assert_eq!(crate::npy::read_labels(&path).unwrap(), [2, 0]);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), NPY_PREAMBLE + 16);
        // The largest shape still fits the reserved preamble.
        let big = npy_preamble("<f4", &[u64::MAX, u64::MAX], NPY_PREAMBLE);
        assert_eq!(big.len(), NPY_PREAMBLE);
    }

    #[test]
    fn files_csv_quotes_what_needs_it_and_unfinished_files_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let out = EmbedDir(dir.path());
        let mut files = FilesCsv::create(&out.files()).unwrap();
        files
            .row(TRAIN_SPLIT, 0, Some("/a b/c,d.png"), Some("cat"))
            .unwrap();
        files.row(TEST_SPLIT, 0, None, None).unwrap();
        files.finish().unwrap();
        let text = std::fs::read_to_string(out.files()).unwrap();
        assert_eq!(
            text,
            "split,index,path,label\ntrain,0,\"/a b/c,d.png\",cat\ntest,0,,\n"
        );
        let paths = read_paths(
            &out.files(),
            &[(TEST_SPLIT, 0), (TRAIN_SPLIT, 0), (TRAIN_SPLIT, 9)],
        );
        assert_eq!(paths.unwrap(), ["", "/a b/c,d.png", ""]);
        let unfinished = NpyRows::<f32>::create(&out.features(TEST_SPLIT)).unwrap();
        drop(unfinished);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only files.csv: {left:?}");
    }
}
