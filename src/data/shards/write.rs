//! `pretext shard`: an image folder, or shards, written as WebDataset-style tar shards
//! (`shard-000000.tar`, …) of a given number of samples each, with `classes.txt` beside them.
//!
//! Each sample is `<key>.<ext>` (the image's bytes as they were, not re-encoded) and, when
//! labelled, `<key>.cls`. Keys are made here, never taken from the input: the sample's number,
//! zero-padded, and its file name's stem reduced to letters, digits, `-` and `_`, so no member
//! can name a path outside its shard. A shard is written under a temporary name and renamed
//! when complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{CLASSES_FILE, LABEL_EXT, Member, ShardReader, TEST_DIR, TRAIN_DIR, tar_files};
use crate::data::index::{self, default_cache_dir};
use crate::data::{DataError, Format, Result, detect_format};

/// Samples read ahead (in parallel) of the shard being written.
const READ_CHUNK: usize = 256;
/// The longest stem kept in a key.
const STEM_CHARS: usize = 48;

/// How `pretext shard` writes.
#[derive(Clone, Debug)]
pub struct ShardOptions {
    /// Samples per shard (the last shard of a split may hold fewer).
    pub shard_size: usize,
    /// Write the samples in an order shuffled by this seed (for class-sorted folders, so a
    /// shard mixes classes) rather than in the input's order.
    pub shuffle: Option<u64>,
}

/// One split written.
#[derive(Clone, Debug)]
pub struct WrittenSplit {
    pub dir: PathBuf,
    pub shards: usize,
    pub samples: usize,
}

/// What `pretext shard` wrote.
#[derive(Clone, Debug)]
pub struct ShardReport {
    pub splits: Vec<WrittenSplit>,
    pub classes: usize,
}

impl ShardReport {
    pub fn shards(&self) -> usize {
        self.splits.iter().map(|s| s.shards).sum()
    }
    pub fn samples(&self) -> usize {
        self.splits.iter().map(|s| s.samples).sum()
    }
}

/// An input sample.
struct Item {
    stem: String,
    ext: &'static str,
    label: Option<u32>,
    from: Origin,
}

enum Origin {
    File(PathBuf),
    Member(Member),
}

/// The input's samples per split (`None`: the output folder itself, else its subfolder).
struct Input {
    class_names: Vec<String>,
    splits: Vec<(Option<&'static str>, Vec<Item>)>,
    reader: Option<std::sync::Arc<ShardReader>>,
}

/// The key's stem: letters, digits, `-` and `_` of `name`'s file stem, others as `_`.
pub fn safe_stem(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let stem = base.split('.').next().unwrap_or(base);
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(STEM_CHARS)
        .collect()
}

/// The image extension a member gets, or `None` for a name that is no image.
fn image_ext(name: &str) -> Option<&'static str> {
    let (_, ext) = name.rsplit_once('.')?;
    if ext.eq_ignore_ascii_case("png") {
        Some("png")
    } else if ext.eq_ignore_ascii_case("jpg") || ext.eq_ignore_ascii_case("jpeg") {
        Some("jpg")
    } else {
        None
    }
}

fn from_folder(input: &Path) -> Result<Input> {
    let (index, _) = index::open(input, &default_cache_dir())?;
    let items = |entries: &[index::IndexEntry]| -> Vec<Item> {
        entries
            .iter()
            .filter_map(|e| {
                Some(Item {
                    stem: safe_stem(&e.path),
                    ext: image_ext(&e.path)?,
                    label: e.label,
                    from: Origin::File(index.full_path(e)),
                })
            })
            .collect()
    };
    let splits = match &index.test {
        Some(test) => vec![
            (Some(TRAIN_DIR), items(&index.train)),
            (Some(TEST_DIR), items(test)),
        ],
        None => vec![(None, items(&index.train))],
    };
    Ok(Input {
        class_names: index.class_names.clone(),
        splits,
        reader: None,
    })
}

fn from_shards(input: &Path) -> Result<Input> {
    let (index, _) = super::open(input, &default_cache_dir())?;
    let splits = super::splits(&index, false, None)?;
    let items = |members: &[Member]| -> Vec<Item> {
        members
            .iter()
            .filter_map(|m| {
                Some(Item {
                    stem: safe_stem(&m.name),
                    ext: image_ext(&m.name)?,
                    label: m.label,
                    from: Origin::Member(m.clone()),
                })
            })
            .collect()
    };
    let out = match &splits.test {
        Some(test) => vec![
            (Some(TRAIN_DIR), items(&splits.train)),
            (Some(TEST_DIR), items(test)),
        ],
        None => vec![(None, items(&splits.train))],
    };
    Ok(Input {
        class_names: splits.class_names.clone(),
        splits: out,
        reader: Some(splits.reader.clone()),
    })
}

/// `out` may not lie inside `input` (a later walk would take it for a class), nor hold shards
/// already: checked before anything is written.
fn check_output(input: &Path, out: &Path, input_data: &Input) -> Result<()> {
    // The output must not land in the input, where a later walk would take it for a class.
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| DataError::io(p, e));
    let inputs = [Some(absolute(input)?), std::fs::canonicalize(input).ok()];
    let dest = absolute(out)?;
    if inputs.iter().flatten().any(|i| dest.starts_with(i)) {
        return Err(DataError::format(
            out,
            format!(
                "is inside {}, the data being sharded; give --out a folder outside it",
                input.display()
            ),
        ));
    }
    // Nothing is written until every output folder is known to hold no shards already.
    for (sub, _) in &input_data.splits {
        let dir = sub.map_or(out.to_path_buf(), |s| out.join(s));
        if let Some(old) = tar_files(&dir)?.first() {
            return Err(DataError::format(
                &dir,
                format!(
                    "already holds shards such as {}; give an empty --out folder",
                    old.file_name().unwrap_or_default().to_string_lossy()
                ),
            ));
        }
    }
    Ok(())
}

/// Writes the image folder (or shards) at `input` as shards in `out`: `out/train/` and
/// `out/test/` for a folder with a test split, `out/` otherwise.
pub fn shard(input: &Path, out: &Path, opts: &ShardOptions) -> Result<ShardReport> {
    if opts.shard_size == 0 {
        return Err(DataError::Other("--shard-size must be at least 1".into()));
    }
    let input_data = match detect_format(input)? {
        Format::Folder => from_folder(input)?,
        Format::Shards => from_shards(input)?,
        other => {
            return Err(DataError::format(
                input,
                format!("is {other} data; `pretext shard` reads an image folder or tar shards"),
            ));
        }
    };
    if let Some(bad) = input_data
        .class_names
        .iter()
        .find(|n| n.contains(['\n', '\r']))
    {
        return Err(DataError::format(
            input,
            format!("class name {bad:?} has a line break, which classes.txt cannot hold"),
        ));
    }
    check_output(input, out, &input_data)?;
    let mut written = Vec::new();
    for (sub, mut items) in input_data.splits {
        let dir = sub.map_or(out.to_path_buf(), |s| out.join(s));
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        if let Some(seed) = opts.shuffle {
            items.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        }
        let read = |item: &Item| -> Result<Vec<u8>> {
            match &item.from {
                Origin::File(path) => std::fs::read(path).map_err(|e| DataError::io(path, e)),
                Origin::Member(m) => input_data
                    .reader
                    .as_ref()
                    .expect("shard input has a reader")
                    .read(m),
            }
        };
        let mut writer = Writer::new(&dir, opts.shard_size);
        let mut n = 0usize;
        for chunk in items.chunks(READ_CHUNK) {
            let bytes: Vec<Vec<u8>> = chunk.par_iter().map(read).collect::<Result<_>>()?;
            for (item, data) in chunk.iter().zip(bytes) {
                let key = format!("{n:09}_{}", item.stem);
                writer.add(&key, item.ext, &data, item.label)?;
                n += 1;
            }
        }
        let shards = writer.finish()?;
        if !input_data.class_names.is_empty() {
            let mut text = input_data.class_names.join("\n");
            text.push('\n');
            let path = dir.join(CLASSES_FILE);
            crate::util::fs::write_atomic(&path, text.as_bytes())
                .map_err(|e| DataError::io(&path, e))?;
        }
        written.push(WrittenSplit {
            dir,
            shards,
            samples: n,
        });
    }
    Ok(ShardReport {
        splits: written,
        classes: input_data.class_names.len(),
    })
}

/// A shard being written.
struct Open {
    tmp: PathBuf,
    path: PathBuf,
    builder: tar::Builder<BufWriter<File>>,
    samples: usize,
}

/// Writes samples into consecutive shards of `shard_size` samples.
struct Writer {
    dir: PathBuf,
    shard_size: usize,
    done: usize,
    open: Option<Open>,
}

impl Writer {
    fn new(dir: &Path, shard_size: usize) -> Self {
        Self {
            dir: dir.to_path_buf(),
            shard_size,
            done: 0,
            open: None,
        }
    }

    fn add(&mut self, key: &str, ext: &str, image: &[u8], label: Option<u32>) -> Result<()> {
        if self.open.is_none() {
            let name = format!("shard-{:06}.tar", self.done);
            let path = self.dir.join(&name);
            let tmp = self.dir.join(format!(".{name}.tmp"));
            let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
            self.open = Some(Open {
                tmp,
                path,
                builder: tar::Builder::new(BufWriter::new(file)),
                samples: 0,
            });
        }
        let open = self.open.as_mut().expect("just opened");
        let io = |e| DataError::io(&open.tmp, e);
        append(&mut open.builder, &format!("{key}.{ext}"), image).map_err(io)?;
        if let Some(label) = label {
            append(
                &mut open.builder,
                &format!("{key}.{LABEL_EXT}"),
                label.to_string().as_bytes(),
            )
            .map_err(|e| DataError::io(&open.tmp, e))?;
        }
        open.samples += 1;
        if open.samples == self.shard_size {
            self.close()?;
        }
        Ok(())
    }

    /// Completes the open shard: the archive's end, synced, renamed to its name.
    fn close(&mut self) -> Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let io = |e| DataError::io(&open.tmp, e);
        let file = open
            .builder
            .into_inner()
            .map_err(io)?
            .into_inner()
            .map_err(|e| DataError::io(&open.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::io(&open.tmp, e))?;
        drop(file);
        std::fs::rename(&open.tmp, &open.path).map_err(|e| DataError::io(&open.path, e))?;
        self.done += 1;
        Ok(())
    }

    /// The number of shards written.
    fn finish(mut self) -> Result<usize> {
        self.close()?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(self.done)
    }
}

impl Drop for Writer {
    /// A shard left incomplete by an error is removed.
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            let tmp = open.tmp.clone();
            drop(open);
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// One regular member: mode 644, owner 0, time 0, so the same input gives the same bytes.
fn append<W: Write>(builder: &mut tar::Builder<W>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    builder.append_data(&mut header, name, data)
}
