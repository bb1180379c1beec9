//! What `pretext info` says of an image folder without decoding it: counts per split and class
//! from the file index, and image sizes and colour from each file's header, read in parallel
//! with memory independent of the number of files. `check` also decodes every image to find the
//! broken ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::index::{FileIndex, IndexEntry, IndexOrigin};
use super::{DataError, decode};

/// Broken files listed by name (the rest are counted).
const LISTED_PROBLEMS: usize = 20;
/// Image sizes listed, most common first.
const LISTED_SIZES: usize = 10;

/// The headers (and, checked, the pixels) of a folder's images.
#[derive(Default)]
pub struct Survey {
    /// (width, height) → images of that size.
    pub sizes: BTreeMap<(u32, u32), usize>,
    pub colour: usize,
    pub grey: usize,
    /// Unreadable files (header, or pixels when checked), each a message naming the file.
    pub problems: Vec<String>,
    pub checked: bool,
}

impl Survey {
    fn merge(mut self, other: Survey) -> Survey {
        for (size, n) in other.sizes {
            *self.sizes.entry(size).or_default() += n;
        }
        self.colour += other.colour;
        self.grey += other.grey;
        self.problems.extend(other.problems);
        self
    }
}

/// Reads every indexed file's header (and decodes it, with `check`).
pub fn survey(index: &FileIndex, check: bool, max_pixels: u64) -> Survey {
    let entries: Vec<&IndexEntry> = index
        .train
        .iter()
        .chain(index.test.iter().flatten())
        .collect();
    survey_items(&entries, check, max_pixels, |entry| {
        let path = index.full_path(entry);
        let bytes = if check {
            std::fs::read(&path).map_err(|e| DataError::io(&path, e))?
        } else {
            head(&path, max_pixels)?
        };
        Ok((path, bytes))
    })
}

/// Bytes read for a header alone: enough for nearly every file (a JPEG's frame header follows its
/// EXIF block, at most 64 KB), the whole file for the few whose header lies further in.
const HEAD_BYTES: u64 = 256 << 10;

/// The start of the file at `path`, or all of it when its header is not within the start.
fn head(path: &Path, max_pixels: u64) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let io = |e| DataError::io(path, e);
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(HEAD_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 == HEAD_BYTES && decode::header(path, &bytes, max_pixels).is_err() {
        return std::fs::read(path).map_err(io);
    }
    Ok(bytes)
}

/// As [`survey`], over any images: `read` gives an item's bytes and the path that names it
/// (a file, or a member of a tar shard).
pub fn survey_items<T: Sync>(
    items: &[T],
    check: bool,
    max_pixels: u64,
    read: impl Fn(&T) -> Result<(PathBuf, Vec<u8>), DataError> + Sync,
) -> Survey {
    let mut survey = items
        .par_iter()
        .fold(Survey::default, |mut acc, item| {
            match read(item).and_then(|(path, bytes)| look(&path, &bytes, check, max_pixels)) {
                Ok(h) => {
                    *acc.sizes.entry((h.width, h.height)).or_default() += 1;
                    if h.colour {
                        acc.colour += 1;
                    } else {
                        acc.grey += 1;
                    }
                }
                Err(problem) => acc.problems.push(problem.to_string()),
            }
            acc
        })
        .reduce(Survey::default, Survey::merge);
    survey.problems.sort();
    survey.checked = check;
    survey
}

fn look(
    path: &Path,
    bytes: &[u8],
    check: bool,
    max_pixels: u64,
) -> Result<decode::Header, DataError> {
    let header = decode::header(path, bytes, max_pixels)?;
    if check {
        // The smallest DCT scale keeps the check fast; every byte of the scan is still read.
        decode::decode(path, bytes, &header, 1, 1)?;
    }
    Ok(header)
}

/// The report `pretext info` prints for an indexed folder.
pub fn describe(index: &FileIndex, origin: IndexOrigin, survey: &Survey) -> String {
    let how = match origin {
        IndexOrigin::Cached => "index read from cache",
        IndexOrigin::Walked => "index built",
    };
    let mut s = format!("source: {}\nformat: folder ({how})\n", index.root.display());
    let splits =
        std::iter::once(("train", &index.train)).chain(index.test.as_ref().map(|t| ("test", t)));
    for (name, entries) in splits {
        s += &format!("{name}: {} images", entries.len());
        if index.labelled() {
            s += &format!(", {} classes\n", index.class_names.len());
            let mut counts = vec![0usize; index.class_names.len()];
            entries
                .iter()
                .filter_map(|e| e.label)
                .for_each(|l| counts[l as usize] += 1);
            for (class, count) in index.class_names.iter().zip(counts) {
                s += &format!("  {class}: {count}\n");
            }
        } else {
            s += ", unlabelled\n";
        }
    }
    s + &describe_images(survey)
}

/// The part of the report the headers give: sizes, colour, unreadable files.
pub fn describe_images(survey: &Survey) -> String {
    let mut s = String::new();
    let mut sizes: Vec<(&(u32, u32), &usize)> = survey.sizes.iter().collect();
    sizes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    s += &format!("image sizes (width x height), {} distinct:\n", sizes.len());
    for ((w, h), n) in sizes.iter().take(LISTED_SIZES) {
        s += &format!("  {w}x{h}: {n}\n");
    }
    if sizes.len() > LISTED_SIZES {
        s += &format!("  ... and {} more sizes\n", sizes.len() - LISTED_SIZES);
    }
    s += &format!("colour: {} colour, {} grey\n", survey.colour, survey.grey);
    let what = if survey.checked {
        "broken files (decoded)"
    } else {
        "unreadable headers"
    };
    s += &format!("{what}: {}\n", survey.problems.len());
    for problem in survey.problems.iter().take(LISTED_PROBLEMS) {
        s += &format!("  {problem}\n");
    }
    if survey.problems.len() > LISTED_PROBLEMS {
        s += &format!(
            "  ... and {} more\n",
            survey.problems.len() - LISTED_PROBLEMS
        );
    }
    s
}
