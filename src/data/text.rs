//! Text: an unlabelled corpus (one document per line) and a labelled table (`text`, `label`).
//!
//! A corpus is a `.txt` file, gzipped or not (told by its first bytes, not its name), or a folder
//! of such files taken in name order; hidden files and other names are ignored. Blank lines are
//! dropped. A line that is not UTF-8 is an error naming the file and line, unless
//! `lossy_utf8` is set, which replaces the bad bytes with U+FFFD and counts the lines it touched.
//!
//! A labelled table is tab-separated (`.tsv`) or comma-separated (`.csv`, with CSV quoting),
//! gzipped or not. With a header row, the text, label and optional split columns are picked by
//! name; without one, every row is `text<sep>label`. Rows whose split is `test` form the test
//! split; every other row is training data. Classes are the sorted training labels.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{DataError, Result};

/// How to read text.
#[derive(Clone, Debug, Default)]
pub struct TextOptions {
    /// Replace invalid UTF-8 with U+FFFD instead of failing.
    pub lossy_utf8: bool,
}

/// An unlabelled corpus.
#[derive(Clone, Debug)]
pub struct Corpus {
    pub source: String,
    pub documents: Vec<String>,
    pub files: usize,
    /// Lines whose invalid UTF-8 was replaced (only with `lossy_utf8`).
    pub repaired_lines: usize,
}

/// The columns of a labelled table with a header row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    pub text: String,
    pub label: String,
    /// Optional: rows whose value here is `test` are the test split.
    pub split: String,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            text: "text".into(),
            label: "label".into(),
            split: "split".into(),
        }
    }
}

/// Texts with labels indexing `class_names`.
#[derive(Clone, Debug, Default)]
pub struct LabelledSplit {
    pub texts: Vec<String>,
    pub labels: Vec<u32>,
}

/// A labelled table read into splits.
#[derive(Clone, Debug)]
pub struct LabelledText {
    pub source: String,
    pub class_names: Vec<String>,
    pub train: LabelledSplit,
    pub test: Option<LabelledSplit>,
}

impl LabelledSplit {
    pub fn len(&self) -> usize {
        self.texts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}

/// Whether `path` names a labelled table rather than a corpus (by its extension).
pub fn is_table(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase());
    let name = name.as_deref().unwrap_or("");
    let name = name.strip_suffix(".gz").unwrap_or(name);
    name.ends_with(".tsv") || name.ends_with(".csv")
}

/// Whether the folder `dir` holds text files and no images or subfolders, so it is a corpus.
pub fn is_corpus_dir(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let mut any_text = false;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if entry.path().is_dir() {
            return false;
        }
        any_text |= is_text_name(&name);
    }
    any_text
}

fn is_text_name(name: &str) -> bool {
    let lower = name.to_lowercase();
    lower.ends_with(".txt") || lower.ends_with(".txt.gz")
}

/// Opens `path`, decompressing it when it starts with the gzip magic bytes.
fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let mut file = BufReader::new(fs::File::open(path).map_err(|e| DataError::io(path, e))?);
    let gzipped = file
        .fill_buf()
        .map_err(|e| DataError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gzipped {
        // MultiGzDecoder also reads dictzip and concatenated members.
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    })
}

/// The files of a corpus at `path`: the file itself, or a folder's text files in name order.
fn corpus_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| DataError::io(path, e))? {
        let entry = entry.map_err(|e| DataError::io(path, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && is_text_name(&name) && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    if files.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            problem: "no text files (*.txt or *.txt.gz) in this folder".into(),
        });
    }
    files.sort();
    Ok(files)
}

/// Reads the corpus at `path` (a file or a folder of text files).
pub fn read_corpus(path: &Path, opts: &TextOptions) -> Result<Corpus> {
    let files = corpus_files(path)?;
    let mut documents = Vec::new();
    let mut repaired_lines = 0;
    for file in &files {
        let mut reader = open(file)?;
        let mut line = Vec::new();
        let mut number = 0usize;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| DataError::io(file, e))?;
            if n == 0 {
                break;
            }
            number += 1;
            let text = decode_line(&line, file, number, opts, &mut repaired_lines)?;
            let text = text.trim();
            if !text.is_empty() {
                documents.push(text.to_owned());
            }
        }
    }
    if documents.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            problem: "the corpus has no non-blank lines".into(),
        });
    }
    Ok(Corpus {
        source: path.display().to_string(),
        documents,
        files: files.len(),
        repaired_lines,
    })
}

/// Unlabelled text at `path`: a corpus, or the training texts of a labelled table (never its
/// test split), so that a transfer task's own unlabelled texts can join the pretraining.
pub fn read_unlabelled(path: &Path, columns: &Columns, opts: &TextOptions) -> Result<Corpus> {
    if !is_table(path) {
        return read_corpus(path, opts);
    }
    let table = read_labelled(path, columns, opts)?;
    Ok(Corpus {
        source: format!("{} (training texts)", path.display()),
        documents: table.train.texts,
        files: 1,
        repaired_lines: 0,
    })
}

fn decode_line(
    bytes: &[u8],
    file: &Path,
    number: usize,
    opts: &TextOptions,
    repaired: &mut usize,
) -> Result<String> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) if opts.lossy_utf8 => {
            *repaired += 1;
            Ok(String::from_utf8_lossy(bytes).into_owned())
        }
        Err(e) => Err(DataError::format(
            file,
            format!(
                "line {number} is not valid UTF-8 (bad byte 0x{:02x} at column {}); \
                 convert the file to UTF-8 or pass --lossy-utf8 to replace bad bytes",
                bytes[e.valid_up_to()],
                e.valid_up_to() + 1
            ),
        )),
    }
}

/// Reads a labelled table (see the module notes). `columns` applies when the file has a header.
pub fn read_labelled(path: &Path, columns: &Columns, opts: &TextOptions) -> Result<LabelledText> {
    if fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .is_dir()
    {
        return Err(DataError::format(
            path,
            "is a folder, but a labelled text table is one .tsv or .csv file",
        ));
    }
    let name = path.to_string_lossy().to_lowercase();
    let delimiter = if name.trim_end_matches(".gz").ends_with(".csv") {
        b','
    } else {
        b'\t'
    };
    let mut bytes = Vec::new();
    open(path)?
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .quoting(delimiter == b',')
        .flexible(true)
        .from_reader(bytes.as_slice());

    let mut rows = reader.byte_records();
    let Some(first) = rows.next() else {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            problem: "the table has no rows".into(),
        });
    };
    let first = first.map_err(|e| DataError::format(path, e.to_string()))?;
    let header: Vec<String> = first
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_owned())
        .collect();
    let find = |name: &str| header.iter().position(|h| h == name);
    let (text_at, label_at, split_at, has_header) =
        match (find(&columns.text), find(&columns.label)) {
            (Some(t), Some(l)) => (t, l, find(&columns.split), true),
            _ if header.len() == 2 => (0, 1, None, false),
            _ => {
                return Err(DataError::format(
                    path,
                    format!(
                        "the header {header:?} has no `{}` and `{}` columns, and rows are not \
                     two-column text{sep}label",
                        columns.text,
                        columns.label,
                        sep = if delimiter == b'\t' { "<TAB>" } else { "," }
                    ),
                ));
            }
        };
    let width = if has_header { header.len() } else { 2 };

    // (text, label, is_test) per row, labels still as strings.
    let mut parsed: Vec<(String, String, bool)> = Vec::new();
    let first_row = if has_header { None } else { Some(Ok(first)) };
    for (i, row) in first_row.into_iter().chain(rows).enumerate() {
        let line = i + 1 + has_header as usize;
        let row = row.map_err(|e| DataError::format(path, format!("line {line}: {e}")))?;
        if row.len() != width {
            return Err(DataError::format(
                path,
                format!("line {line} has {} fields, expected {width}", row.len()),
            ));
        }
        let field = |at: usize, what: &str| -> Result<String> {
            let mut repaired = 0;
            let s = decode_line(&row[at], path, line, opts, &mut repaired).map_err(|_| {
                DataError::format(
                    path,
                    format!(
                        "line {line}: the {what} is not valid UTF-8; convert the file or pass \
                             --lossy-utf8"
                    ),
                )
            })?;
            Ok(s.trim().to_owned())
        };
        let text = field(text_at, "text")?;
        let label = field(label_at, "label")?;
        if label.is_empty() {
            return Err(DataError::format(
                path,
                format!("line {line} has an empty label"),
            ));
        }
        let is_test = match split_at {
            Some(at) => field(at, "split")?.eq_ignore_ascii_case("test"),
            None => false,
        };
        parsed.push((text, label, is_test));
    }

    let mut class_names: Vec<String> = parsed
        .iter()
        .filter(|(_, _, test)| !test)
        .map(|(_, l, _)| l.clone())
        .collect();
    class_names.sort();
    class_names.dedup();
    if class_names.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            problem: "no training rows".into(),
        });
    }
    let mut train = LabelledSplit::default();
    let mut test = LabelledSplit::default();
    let mut any_test = false;
    for (row, (text, label, is_test)) in parsed.into_iter().enumerate() {
        let line = row + 1 + has_header as usize;
        let Ok(index) = class_names.binary_search(&label) else {
            return Err(DataError::Mismatch {
                path: path.to_path_buf(),
                problem: format!(
                    "line {line}: test label {label:?} never occurs in the training rows"
                ),
            });
        };
        let split = if is_test {
            any_test = true;
            &mut test
        } else {
            &mut train
        };
        split.texts.push(text);
        split.labels.push(index as u32);
    }
    Ok(LabelledText {
        source: path.display().to_string(),
        class_names,
        train,
        test: any_test.then_some(test),
    })
}

/// What `pretext info` prints for a corpus.
pub fn describe_corpus(c: &Corpus) -> String {
    let words: usize = c
        .documents
        .iter()
        .map(|d| d.split_whitespace().count())
        .sum();
    let bytes: usize = c.documents.iter().map(String::len).sum();
    let mut s = format!(
        "source: {}\nformat: text corpus ({} file{})\ndocuments: {}\nwords: {words}\nbytes: {bytes}\n",
        c.source,
        c.files,
        if c.files == 1 { "" } else { "s" },
        c.documents.len()
    );
    if c.repaired_lines > 0 {
        s += &format!("lines with invalid UTF-8 replaced: {}\n", c.repaired_lines);
    }
    s
}

/// What `pretext info` prints for a labelled table.
pub fn describe_labelled(t: &LabelledText) -> String {
    let mut s = format!(
        "source: {}\nformat: labelled text\nclasses: {}\n",
        t.source,
        t.class_names.len()
    );
    let splits = std::iter::once(("train", &t.train)).chain(t.test.as_ref().map(|x| ("test", x)));
    for (name, split) in splits {
        s += &format!("{name}: {} texts\n", split.len());
        for (class, count) in t
            .class_names
            .iter()
            .zip(split.class_counts(t.class_names.len()))
        {
            s += &format!("  {class}: {count}\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn corpus_reads_files_and_folders_gzipped_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let plain = write(dir.path(), "a.txt", b"one two\n\n  three  \r\n");
        let c = read_corpus(&plain, &TextOptions::default()).unwrap();
        assert_eq!(c.documents, ["one two", "three"]);
        write(dir.path(), "b.txt.gz", &gzip(b"four\nfive"));
        write(dir.path(), ".hidden.txt", b"never");
        write(dir.path(), "notes.md", b"never");
        let c = read_corpus(dir.path(), &TextOptions::default()).unwrap();
        assert_eq!(c.documents, ["one two", "three", "four", "five"]);
        assert_eq!(c.files, 2);
        assert!(is_corpus_dir(dir.path()));
    }

    #[test]
    fn non_utf8_line_is_an_error_naming_file_and_line_unless_lossy() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "bad.txt", b"fine\nna\xefve caf\xe9\nok\n");
        let err = read_corpus(&p, &TextOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.txt"), "{err}");
        assert!(err.contains("line 2 is not valid UTF-8"), "{err}");
        let c = read_corpus(&p, &TextOptions { lossy_utf8: true }).unwrap();
        assert_eq!(c.documents.len(), 3);
        assert_eq!(c.repaired_lines, 1);
        assert!(c.documents[1].contains('\u{fffd}'));
    }

    #[test]
    fn empty_corpus_and_folder_without_text_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_corpus(dir.path(), &TextOptions::default()).unwrap_err();
        assert!(err.to_string().contains("no text files"), "{err}");
        let p = write(dir.path(), "blank.txt", b"\n  \n");
        let err = read_corpus(&p, &TextOptions::default()).unwrap_err();
        assert!(err.to_string().contains("no non-blank lines"), "{err}");
    }

    #[test]
    fn labelled_table_with_header_split_and_named_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.tsv.gz",
            &gzip(b"split\tgloss\tlexname\ntrain\ta cat\tnoun.animal\ntest\ta dog\tnoun.animal\ntrain\tto run\tverb.motion\n"),
        );
        let cols = Columns {
            text: "gloss".into(),
            label: "lexname".into(),
            ..Columns::default()
        };
        let t = read_labelled(&p, &cols, &TextOptions::default()).unwrap();
        assert_eq!(t.class_names, ["noun.animal", "verb.motion"]);
        assert_eq!(t.train.texts, ["a cat", "to run"]);
        assert_eq!(t.train.labels, [0, 1]);
        let test = t.test.unwrap();
        assert_eq!((test.texts[0].as_str(), test.labels[0]), ("a dog", 0));
    }

    #[test]
    fn a_table_as_unlabelled_text_gives_its_training_texts_only() {
        let dir = tempfile::tempdir().unwrap();
        let table = write(
            dir.path(),
            "t.tsv",
            b"split\ttext\tlabel\ntrain\ta cat\tanimal\ntest\ta dog\tanimal\ndev\tto run\tmotion\n",
        );
        let c = read_unlabelled(&table, &Columns::default(), &TextOptions::default()).unwrap();
        assert_eq!(c.documents, ["a cat", "to run"]);
        assert!(c.source.contains("t.tsv"), "{}", c.source);
        let corpus = write(dir.path(), "c.txt", b"plain text\n");
        let c = read_unlabelled(&corpus, &Columns::default(), &TextOptions::default()).unwrap();
        assert_eq!(c.documents, ["plain text"]);
    }

    #[test]
    fn headerless_two_column_rows_and_quoted_csv() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.tsv", b"good film\tpos\nbad film\tneg\n");
        let t = read_labelled(&p, &Columns::default(), &TextOptions::default()).unwrap();
        assert_eq!(t.class_names, ["neg", "pos"]);
        assert_eq!(t.train.labels, [1, 0]);
        assert!(t.test.is_none());
        let p = write(dir.path(), "t.csv", b"text,label\n\"a, b\",x\n");
        let t = read_labelled(&p, &Columns::default(), &TextOptions::default()).unwrap();
        assert_eq!(t.train.texts, ["a, b"]);
    }

    #[test]
    fn bad_tables_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TextOptions::default();
        let cols = Columns::default();
        let cases: [(&str, &[u8], &str); 5] = [
            (
                "ragged.tsv",
                b"text\tlabel\na\tx\nb\n",
                "line 3 has 1 fields, expected 2",
            ),
            ("nolabel.tsv", b"a\tx\nb\t \n", "line 2 has an empty label"),
            (
                "unseen.tsv",
                b"text\tlabel\tsplit\na\tx\ttrain\nb\ty\ttest\n",
                "line 3: test label \"y\" never occurs",
            ),
            (
                "utf.tsv",
                b"a\tx\nb\xff\tx\n",
                "line 2: the text is not valid UTF-8",
            ),
            (
                "cols.tsv",
                b"a\tb\tc\n",
                "has no `text` and `label` columns",
            ),
        ];
        for (name, bytes, expected) in cases {
            let p = write(dir.path(), name, bytes);
            let err = read_labelled(&p, &cols, &opts).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains(expected),
                "{name}: {err}"
            );
        }
        let empty = write(dir.path(), "empty.tsv", b"");
        let err = read_labelled(&empty, &cols, &opts).unwrap_err().to_string();
        assert!(err.contains("no rows"), "{err}");
    }
}
