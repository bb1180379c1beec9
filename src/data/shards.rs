//! WebDataset-style tar shards: a folder of `*.tar` files (with optional `train/` and `test/`
//! subfolders of them), a brace pattern such as `data/shard-{000000..000099}.tar`, or one
//! `.tar` file. For collections on network file systems, or with too many files to walk.
//!
//! A shard holds samples: consecutive members sharing a key (the member's path up to the first
//! dot of its file name). A sample's image is its `.jpg`, `.jpeg` or `.png` member; its label
//! the class index written as decimal text in its `.cls` member, with class names in the shard
//! folder's `classes.txt` (one per line). Other members are ignored.
//!
//! The index lists every shard's samples with the image member's byte offset and size, so an
//! image is one positional read. It is cached like the folder index (see [`super::index`]) and
//! checked against each shard's size and modification time; only changed shards are read again.
//!
//! The training order of an epoch ([`buffered_order`]) shuffles the shards, then streams their
//! samples through a seeded shuffle buffer (`data.shuffle_buffer`), so reads stay near each
//! other in a few shards at a time, yet the order is a function of (seed, epoch) alone and a
//! resumed run sees the same batches.
//!
//! Shards are untrusted input: a member with an absolute path or a `..` component, and link,
//! device and FIFO members are refused by name (the whole shard is), and nothing is ever
//! extracted from a shard to the file system.

pub mod write;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::augment::Shape;
use super::decode::{self, Header};
use super::index::{IndexOrigin, default_cache_dir, modified_ns};
use super::source::{Framing, ImageSource};
use super::stream::{Framer, OnDemand};
use super::{DataError, Result};

/// Bumped whenever the cached layout changes, so older caches are rebuilt rather than misread.
const CACHE_VERSION: u32 = 1;
/// The class names beside the shards, one per line, in label order.
pub const CLASSES_FILE: &str = "classes.txt";
/// The default for `data.shuffle_buffer`.
pub const DEFAULT_SHUFFLE_BUFFER: usize = 1000;
/// The label member's extension.
const LABEL_EXT: &str = "cls";
/// A `.cls` member longer than this is not a class index.
const MAX_LABEL_BYTES: u64 = 64;
/// Shard files kept open by a reader; more are closed, least recently used first.
const OPEN_SHARDS: usize = 64;
/// The item number of the epoch-order stream in [`super::loader::mix`] (images use their
/// index, the loader's uniform shuffle `u64::MAX`).
const ORDER_ITEM: u64 = u64::MAX - 0x5a4d;
/// Headers read to choose between grey and colour.
const CHANNEL_PROBE: usize = 32;
/// Paths a brace pattern may expand to.
const MAX_EXPANSION: usize = 1_000_000;

/// Whether `path` is written as a brace pattern of shards (`shard-{000..099}.tar`): braces, and
/// a name ending in `.tar`.
pub fn is_pattern(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s.contains('{') && s.contains('}') && is_tar_file(path)
}

/// Whether `name` is a shard's file name.
pub fn is_tar_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .rsplit_once('.')
            .is_some_and(|(stem, ext)| !stem.is_empty() && ext.eq_ignore_ascii_case("tar"))
}

/// Whether `path` names one shard file (`*.tar`).
pub fn is_tar_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| is_tar_name(&n.to_string_lossy()))
}

/// Whether `dir` holds shards (directly, or in a `train/` subfolder). The listing stops at the
/// first shard or image file, so a flat folder of a million images is not listed to say no.
pub fn holds_shards(dir: &Path) -> bool {
    let has_tar = |dir: &Path| -> bool {
        let Ok(entries) = fs::read_dir(dir) else {
            return false;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if is_tar_name(&name) {
                return entry.path().is_file();
            }
            if super::folder::is_image_name(&name) {
                return false;
            }
        }
        false
    };
    has_tar(dir) || has_tar(&dir.join(TRAIN_DIR))
}

const TRAIN_DIR: &str = "train";
const TEST_DIR: &str = "test";

/// The `*.tar` files of `dir`, sorted by name; an empty list when `dir` is no folder.
fn tar_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        if is_tar_name(&name.to_string_lossy()) && entry.path().is_file() {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Brace expansion as WebDataset writes shard lists: `{a..b}` (decimal, zero-padded to the
/// width of `a`) and `{x,y,z}`, any number of them.
pub fn expand_braces(pattern: &str) -> std::result::Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find('}')
        .map(|c| open + c)
        .ok_or_else(|| format!("unclosed `{{` in the shard pattern {pattern}"))?;
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let choices: Vec<String> = if let Some((a, b)) = body.split_once("..") {
        let parse = |s: &str| {
            s.parse::<u64>().map_err(|_| {
                format!("`{{{body}}}` in the shard pattern {pattern} is not a range of numbers")
            })
        };
        let (from, to) = (parse(a)?, parse(b)?);
        if from > to {
            return Err(format!(
                "`{{{body}}}` in the shard pattern {pattern} counts down"
            ));
        }
        if to - from >= MAX_EXPANSION as u64 {
            return Err(format!(
                "the shard pattern {pattern} names over {MAX_EXPANSION} files"
            ));
        }
        let width = a.len();
        (from..=to).map(|n| format!("{n:0width$}")).collect()
    } else {
        body.split(',').map(str::to_string).collect()
    };
    let rest = expand_braces(tail)?;
    if choices.len().saturating_mul(rest.len()) > MAX_EXPANSION {
        return Err(format!(
            "the shard pattern {pattern} names over {MAX_EXPANSION} files"
        ));
    }
    Ok(choices
        .iter()
        .flat_map(|c| rest.iter().map(move |r| format!("{head}{c}{r}")))
        .collect())
}

/// The shard files a data path names, before they are read.
#[derive(Clone, Debug)]
struct ShardList {
    /// What the cache is keyed by: the canonical folder, file or pattern.
    key: String,
    train: Vec<PathBuf>,
    test: Option<Vec<PathBuf>>,
    /// Where `classes.txt` is looked for, first found wins.
    class_dirs: Vec<PathBuf>,
}

fn canonical(path: &Path) -> Result<PathBuf> {
    fs::canonicalize(path).map_err(|e| DataError::io(path, e))
}

fn list_shards(path: &Path) -> Result<ShardList> {
    if is_pattern(path) {
        let pattern = path.to_string_lossy();
        let names = expand_braces(&pattern).map_err(|p| DataError::format(path, p))?;
        let mut train = names
            .iter()
            .map(|n| canonical(Path::new(n)))
            .collect::<Result<Vec<_>>>()?;
        train.sort();
        train.dedup();
        let parent = train[0].parent().map(Path::to_path_buf).unwrap_or_default();
        // The pattern's own folder, made canonical, keys the cache.
        let folder = Path::new(pattern.as_ref())
            .parent()
            .filter(|p| !p.as_os_str().is_empty());
        let folder = canonical(folder.unwrap_or(Path::new(".")))?;
        let file = Path::new(pattern.as_ref()).file_name().unwrap_or_default();
        return Ok(ShardList {
            key: folder.join(file).to_string_lossy().into_owned(),
            train,
            test: None,
            class_dirs: vec![parent],
        });
    }
    let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let root = canonical(path)?;
    if meta.is_file() {
        let parent = root.parent().map(Path::to_path_buf).unwrap_or_default();
        return Ok(ShardList {
            key: root.to_string_lossy().into_owned(),
            train: vec![root],
            test: None,
            class_dirs: vec![parent],
        });
    }
    let split = tar_files(&root.join(TRAIN_DIR))?;
    let (train, test, class_dirs) = if !split.is_empty() {
        let test = tar_files(&root.join(TEST_DIR))?;
        let test = (!test.is_empty()).then_some(test);
        (split, test, vec![root.join(TRAIN_DIR), root.clone()])
    } else {
        (tar_files(&root)?, None, vec![root.clone()])
    };
    if train.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            problem: "no tar shards (*.tar) found".into(),
        });
    }
    let canon = |list: Vec<PathBuf>| {
        list.iter()
            .map(|p| canonical(p))
            .collect::<Result<Vec<_>>>()
    };
    Ok(ShardList {
        key: root.to_string_lossy().into_owned(),
        train: canon(train)?,
        test: test.map(canon).transpose()?,
        class_dirs,
    })
}

/// One sample of a shard: where its image member's bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub key: String,
    /// The image member's path inside the shard.
    pub member: String,
    /// Byte offset of the member's data in the shard file.
    pub offset: u64,
    pub size: u64,
    /// The class index of the sample's `.cls` member.
    pub label: Option<u32>,
}

/// One shard file and its samples, in the order they are stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Canonical.
    pub path: PathBuf,
    pub bytes: u64,
    /// Modification time, nanoseconds since the epoch.
    pub modified: i64,
    pub samples: Vec<Sample>,
    /// Samples that cannot be used (no image member, an unreadable `.cls`): (key, problem).
    pub problems: Vec<(String, String)>,
}

/// A file's size and modification time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    path: PathBuf,
    bytes: u64,
    modified: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    meta.is_file().then(|| Stamp {
        path: path.to_path_buf(),
        bytes: meta.len(),
        modified: modified_ns(&meta),
    })
}

/// The index of a set of shards.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardIndex {
    version: u32,
    /// The canonical folder, file or pattern indexed.
    pub source: String,
    /// From `classes.txt`, or the label numbers when there is none; empty when unlabelled.
    pub class_names: Vec<String>,
    classes_file: Option<Stamp>,
    pub train: Vec<Shard>,
    /// The shards of a `test/` folder beside `train/`.
    pub test: Option<Vec<Shard>>,
}

impl ShardIndex {
    pub fn labelled(&self) -> bool {
        !self.class_names.is_empty()
    }
    pub fn samples(&self, shards: &[Shard]) -> usize {
        shards.iter().map(|s| s.samples.len()).sum()
    }
    fn all_shards(&self) -> impl Iterator<Item = &Shard> {
        self.train.iter().chain(self.test.iter().flatten())
    }
}

/// The index of the shards `path` names, from the cache in `cache_dir` where each shard is
/// unchanged; changed and new shards are read again. A cache that cannot be written costs only
/// a warning.
pub fn open(path: &Path, cache_dir: &Path) -> Result<(ShardIndex, IndexOrigin)> {
    let list = list_shards(path)?;
    let cache = cache_dir.join(format!(
        "shards-{:016x}.json",
        super::index::fnv1a(list.key.as_bytes())
    ));
    let cached = read_cache(&cache, &list.key);
    let known: HashMap<&Path, &Shard> = cached
        .iter()
        .flat_map(|c| c.all_shards())
        .map(|s| (s.path.as_path(), s))
        .collect();
    let read = |paths: &[PathBuf]| -> Result<(Vec<Shard>, bool)> {
        let shards: Vec<(Shard, bool)> = paths
            .par_iter()
            .map(|p| {
                let meta = fs::metadata(p).map_err(|e| DataError::io(p, e))?;
                let (bytes, modified) = (meta.len(), modified_ns(&meta));
                match known.get(p.as_path()) {
                    Some(s) if s.bytes == bytes && s.modified == modified => {
                        Ok(((*s).clone(), false))
                    }
                    _ => scan(p, bytes, modified).map(|s| (s, true)),
                }
            })
            .collect::<Result<_>>()?;
        let rescanned = shards.iter().any(|(_, r)| *r);
        Ok((shards.into_iter().map(|(s, _)| s).collect(), rescanned))
    };
    let (train, mut changed) = read(&list.train)?;
    let test = match &list.test {
        Some(paths) => {
            let (test, c) = read(paths)?;
            changed |= c;
            Some(test)
        }
        None => None,
    };
    let classes_file = list
        .class_dirs
        .iter()
        .find_map(|d| stamp(&d.join(CLASSES_FILE)));
    let paths = |shards: &[Shard]| shards.iter().map(|s| s.path.clone()).collect::<Vec<_>>();
    let same_list = cached.as_ref().is_some_and(|c| {
        c.classes_file == classes_file
            && paths(&c.train) == paths(&train)
            && c.test.as_deref().map(paths) == test.as_deref().map(paths)
    });
    if !changed
        && same_list
        && let Some(index) = cached
    {
        return Ok((index, IndexOrigin::Cached));
    }
    let mut index = ShardIndex {
        version: CACHE_VERSION,
        source: list.key,
        class_names: Vec::new(),
        classes_file,
        train,
        test,
    };
    index.class_names = class_names(&index)?;
    if let Err(e) = crate::util::fs::write_json_atomic(&cache, &index) {
        eprintln!(
            "warning: cannot cache the shard index at {}: {e}",
            cache.display()
        );
    }
    Ok((index, IndexOrigin::Walked))
}

fn read_cache(path: &Path, key: &str) -> Option<ShardIndex> {
    let index: ShardIndex = crate::util::fs::read_json(path)?;
    (index.version == CACHE_VERSION && index.source == key).then_some(index)
}

/// `classes.txt`'s names (every label must be one of them), or `0`, `1`, … up to the largest
/// label; none when the training shards have no labels.
fn class_names(index: &ShardIndex) -> Result<Vec<String>> {
    let labelled = index
        .train
        .iter()
        .flat_map(|s| &s.samples)
        .any(|s| s.label.is_some());
    if !labelled {
        return Ok(Vec::new());
    }
    match &index.classes_file {
        Some(file) => {
            let text = fs::read_to_string(&file.path).map_err(|e| DataError::io(&file.path, e))?;
            let names: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            if names.is_empty() {
                return Err(DataError::format(&file.path, "lists no class names"));
            }
            Ok(names)
        }
        None => {
            let max = index
                .all_shards()
                .flat_map(|s| &s.samples)
                .filter_map(|s| s.label)
                .max()
                .unwrap_or(0);
            Ok((0..=max).map(|l| l.to_string()).collect())
        }
    }
}

/// What a member is, by its tar entry type: `None` for a file or folder, else the reason it is
/// refused.
fn refused_kind(kind: tar::EntryType) -> Option<&'static str> {
    use tar::EntryType as T;
    match kind {
        T::Regular | T::Continuous | T::Directory | T::XGlobalHeader => None,
        T::Symlink => Some("a symbolic link"),
        T::Link => Some("a hard link"),
        T::Char => Some("a character device"),
        T::Block => Some("a block device"),
        T::Fifo => Some("a FIFO"),
        T::GNUSparse => Some("a sparse file, which is not supported"),
        _ => Some("an entry of an unsupported type"),
    }
}

/// Why a member path is refused: absolute, or climbing out with `..`.
fn refused_path(name: &str) -> Option<&'static str> {
    if name.starts_with('/') || name.starts_with('\\') {
        Some("has an absolute path")
    } else if name.split(['/', '\\']).any(|c| c == "..") {
        Some("has a `..` path component")
    } else {
        None
    }
}

fn refuse(shard: &Path, name: &str, why: &str) -> DataError {
    DataError::format(
        shard,
        format!(
            "member `{name}` {why}; refused (shard members must be files or folders with relative paths inside the archive)"
        ),
    )
}

/// WebDataset's (key, extension) of a member: the key is the path up to the first dot of the
/// file name.
fn split_key(name: &str) -> (&str, &str) {
    let base = name.rfind('/').map_or(0, |i| i + 1);
    match name[base..].find('.') {
        Some(dot) => (&name[..base + dot], &name[base + dot + 1..]),
        None => (name, ""),
    }
}

fn is_image_ext(ext: &str) -> bool {
    ["jpg", "jpeg", "png"]
        .iter()
        .any(|e| ext.eq_ignore_ascii_case(e))
}

/// A sample being gathered from consecutive members.
struct Pending {
    key: String,
    image: Option<(String, u64, u64)>,
    label: Option<std::result::Result<u32, String>>,
}

impl Pending {
    fn finish(self, shard: &mut Shard) {
        let label = match self.label {
            None => None,
            Some(Ok(l)) => Some(l),
            Some(Err(problem)) => {
                shard.problems.push((self.key, problem));
                return;
            }
        };
        match self.image {
            Some((member, offset, size)) => shard.samples.push(Sample {
                key: self.key,
                member,
                offset,
                size,
                label,
            }),
            None => shard.problems.push((
                self.key.clone(),
                format!(
                    "sample `{}` has no image member (.jpg, .jpeg or .png)",
                    self.key
                ),
            )),
        }
    }
}

/// Reads one shard's members (their headers, and the `.cls` labels).
fn scan(path: &Path, bytes: u64, modified: i64) -> Result<Shard> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut archive = tar::Archive::new(file);
    let unreadable =
        |e: std::io::Error| DataError::format(path, format!("not a readable tar archive: {e}"));
    let mut shard = Shard {
        path: path.to_path_buf(),
        bytes,
        modified,
        samples: Vec::new(),
        problems: Vec::new(),
    };
    let mut pending: Option<Pending> = None;
    for entry in archive.entries_with_seek().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if let Some(why) = refused_path(&name) {
            return Err(refuse(path, &name, why));
        }
        let kind = entry.header().entry_type();
        if let Some(why) = refused_kind(kind) {
            return Err(refuse(path, &name, &format!("is {why}")));
        }
        if !(kind.is_file() || kind.is_contiguous()) {
            continue;
        }
        let name = name.trim_start_matches("./").to_string();
        let (offset, size) = (entry.raw_file_position(), entry.size());
        if offset.checked_add(size).is_none_or(|end| end > bytes) {
            return Err(DataError::format(
                path,
                format!("member `{name}` runs past the end of the file (a truncated shard)"),
            ));
        }
        let (key, ext) = split_key(&name);
        let base = key.rsplit('/').next().unwrap_or(key);
        if base.is_empty() || base.starts_with('.') {
            // Hidden members (`._x.jpg` of macOS archives) belong to no sample.
            continue;
        }
        if pending.as_ref().is_none_or(|p| p.key != key) {
            if let Some(done) = pending.take() {
                done.finish(&mut shard);
            }
            pending = Some(Pending {
                key: key.to_string(),
                image: None,
                label: None,
            });
        }
        let sample = pending.as_mut().expect("just set");
        if is_image_ext(ext) && sample.image.is_none() {
            sample.image = Some((name.clone(), offset, size));
        } else if ext.eq_ignore_ascii_case(LABEL_EXT) && sample.label.is_none() {
            sample.label = Some(if size > MAX_LABEL_BYTES {
                Err(format!(
                    "member `{name}` is {size} bytes, too long for a class index"
                ))
            } else {
                let mut text = String::new();
                match entry.read_to_string(&mut text) {
                    Ok(_) => text.trim().parse::<u32>().map_err(|_| {
                        format!("member `{name}` holds {:?}, not a class index", text.trim())
                    }),
                    Err(e) => Err(format!("member `{name}`: {e}")),
                }
            });
        }
    }
    if let Some(done) = pending.take() {
        done.finish(&mut shard);
    }
    Ok(shard)
}

/// A shard file as readers check it.
#[derive(Clone, Debug)]
pub struct ShardFile {
    pub path: PathBuf,
    bytes: u64,
    modified: i64,
}

/// One sample as a reader needs it.
#[derive(Clone, Debug)]
pub struct Member {
    /// The shard, in the reader's list.
    pub shard: u32,
    pub offset: u64,
    pub size: u64,
    pub label: Option<u32>,
    /// The image member's path, for messages.
    pub name: Box<str>,
}

/// Reads image members: one positional read each from shard files kept open.
pub struct ShardReader {
    files: Vec<ShardFile>,
    /// Open shards, least recently used first.
    open: Mutex<Vec<(u32, Arc<File>)>>,
}

impl ShardReader {
    fn new(files: Vec<ShardFile>) -> Self {
        Self {
            files,
            open: Mutex::new(Vec::new()),
        }
    }

    /// `shard.tar/member.jpg`: how messages name a member.
    pub fn path(&self, m: &Member) -> PathBuf {
        self.files[m.shard as usize].path.join(&*m.name)
    }

    /// `shard.tar#member.jpg`: how `pretext embed`'s `files.csv` names a member.
    pub fn origin(&self, m: &Member) -> String {
        let shard = self.files[m.shard as usize].path.to_string_lossy();
        super::record_origin(&shard, &m.name)
    }

    fn handle(&self, shard: u32) -> Result<Arc<File>> {
        {
            let mut open = self.open.lock().expect("not poisoned");
            if let Some(pos) = open.iter().position(|(s, _)| *s == shard) {
                let entry = open.remove(pos);
                let file = entry.1.clone();
                open.push(entry);
                return Ok(file);
            }
        }
        let info = &self.files[shard as usize];
        let path = &info.path;
        let bad = |problem: String| DataError::CorruptImage {
            path: path.clone(),
            problem,
        };
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                bad("the shard is gone (removed after it was indexed)".into())
            }
            _ => DataError::io(path, e),
        })?;
        let meta = file.metadata().map_err(|e| DataError::io(path, e))?;
        if meta.len() != info.bytes || modified_ns(&meta) != info.modified {
            return Err(bad(format!(
                "the shard changed after it was indexed ({} bytes, indexed at {})",
                meta.len(),
                info.bytes
            )));
        }
        let file = Arc::new(file);
        let mut open = self.open.lock().expect("not poisoned");
        if !open.iter().any(|(s, _)| *s == shard) {
            if open.len() >= OPEN_SHARDS {
                open.remove(0);
            }
            open.push((shard, file.clone()));
        }
        Ok(file)
    }

    /// The member's bytes.
    pub fn read(&self, m: &Member) -> Result<Vec<u8>> {
        let file = self.handle(m.shard)?;
        let mut bytes = vec![0u8; m.size as usize];
        file.read_exact_at(&mut bytes, m.offset)
            .map_err(|e| DataError::io(self.path(m), e))?;
        Ok(bytes)
    }

    fn header(&self, m: &Member, max_pixels: u64) -> Result<Header> {
        let bytes = self.read(m)?;
        decode::header(&self.path(m), &bytes, max_pixels)
    }
}

/// An index's samples ready to read: problems resolved, the test split chosen.
pub struct ShardSplits {
    pub reader: Arc<ShardReader>,
    pub class_names: Vec<String>,
    pub train: Vec<Member>,
    pub test: Option<Vec<Member>>,
    /// The samples left out (with `skip_corrupt`), each a message naming shard and sample.
    pub problems: Vec<String>,
}

/// The samples of `index` as training and test members: the `test/` shards, or (for labelled
/// shards without them, given `holdout`) that share of each class held out as
/// [`super::split::holdout_indices`] holds out a folder's. Unusable samples are errors naming
/// them, or, with `skip_corrupt`, left out and listed in [`ShardSplits::problems`].
/// Why a sample's label cannot be used: missing among labelled shards, or beyond the classes.
fn label_problem(index: &ShardIndex, sample: &Sample) -> Option<String> {
    let classes = index.class_names.len();
    match sample.label {
        None if index.labelled() => Some(format!(
            "sample `{}` has no .cls label, but the shards are labelled",
            sample.key
        )),
        Some(l) if index.labelled() && l as usize >= classes => Some(format!(
            "sample `{}` has label {l}, but {} names {classes} classes",
            sample.key,
            index
                .classes_file
                .as_ref()
                .map_or(CLASSES_FILE.into(), |f| f.path.display().to_string())
        )),
        _ => None,
    }
}

pub fn splits(index: &ShardIndex, skip_corrupt: bool, holdout: Option<f64>) -> Result<ShardSplits> {
    let mut files = Vec::new();
    let labelled = index.labelled();
    let classes = index.class_names.len();
    let mut skipped = Vec::new();
    let mut members = |shards: &[Shard]| -> Result<Vec<Member>> {
        let mut out = Vec::new();
        for shard in shards {
            let id = files.len() as u32;
            files.push(ShardFile {
                path: shard.path.clone(),
                bytes: shard.bytes,
                modified: shard.modified,
            });
            let mut problems: Vec<String> = shard.problems.iter().map(|(_, p)| p.clone()).collect();
            for s in &shard.samples {
                match label_problem(index, s) {
                    Some(p) => problems.push(p),
                    None => out.push(Member {
                        shard: id,
                        offset: s.offset,
                        size: s.size,
                        label: if labelled { s.label } else { None },
                        name: s.member.clone().into_boxed_str(),
                    }),
                }
            }
            if let Some(first) = problems.first() {
                if !skip_corrupt {
                    return Err(DataError::format(
                        &shard.path,
                        format!("{first} (data.skip_corrupt / --skip-corrupt skips such samples)"),
                    ));
                }
                skipped.extend(
                    problems
                        .iter()
                        .map(|p| format!("{}: {p}", shard.path.display())),
                );
            }
        }
        Ok(out)
    };
    let mut train = members(&index.train)?;
    let mut test = index.test.as_deref().map(&mut members).transpose()?;
    if train.is_empty() {
        return Err(DataError::Empty {
            path: index.source.clone().into(),
            problem: "the shards hold no usable samples".into(),
        });
    }
    if let Some(holdout) = holdout
        && test.is_none()
        && labelled
    {
        let labels: Vec<u32> = train.iter().map(|m| m.label.unwrap_or(0)).collect();
        let (keep, held) = super::split::holdout_indices(&labels, classes, holdout, 0);
        eprintln!(
            "note: {} has no test shards; holding out {} of its {} labelled samples as the test split",
            index.source,
            held.len(),
            train.len()
        );
        let pick = |rows: Vec<usize>| {
            rows.into_iter()
                .map(|i| train[i].clone())
                .collect::<Vec<_>>()
        };
        test = Some(pick(held));
        train = pick(keep);
    }
    Ok(ShardSplits {
        reader: Arc::new(ShardReader::new(files)),
        class_names: if labelled {
            index.class_names.clone()
        } else {
            Vec::new()
        },
        train,
        test,
        problems: skipped,
    })
}

impl ShardSplits {
    /// Warns of the samples left out.
    pub fn warn_skipped(&self, source: &str) {
        for p in &self.problems {
            eprintln!("warning: skipping {p}");
        }
        if !self.problems.is_empty() {
            eprintln!(
                "warning: skipped {} sample(s) of the shards of {source}",
                self.problems.len()
            );
        }
    }

    /// The first readable training image's header.
    pub fn first_header(&self, max_pixels: u64) -> Option<Header> {
        self.train
            .iter()
            .find_map(|m| self.reader.header(m, max_pixels).ok())
    }

    /// 1 when the first images' headers are all grey, otherwise 3.
    pub fn probe_channels(&self, max_pixels: u64) -> usize {
        let grey = self
            .train
            .iter()
            .take(CHANNEL_PROBE)
            .filter_map(|m| self.reader.header(m, max_pixels).ok())
            .all(|h| !h.colour);
        if grey { 1 } else { 3 }
    }
}

/// The order of `epoch`: shards (runs of consecutive indices) shuffled, then their samples
/// streamed through a shuffle buffer of `buffer` samples: once it is full, each next sample
/// takes the place of a random one, which is emitted; what is left is emitted shuffled.
pub fn buffered_order(runs: &[Range<usize>], buffer: usize, seed: u64) -> Vec<usize> {
    let buffer = buffer.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut shards: Vec<usize> = (0..runs.len()).collect();
    shards.shuffle(&mut rng);
    let n: usize = runs.iter().map(|r| r.len()).sum();
    let mut out = Vec::with_capacity(n);
    let mut held = Vec::with_capacity(buffer.min(n));
    for s in shards {
        for i in runs[s].clone() {
            if held.len() < buffer {
                held.push(i);
            } else {
                let slot = rng.random_range(0..buffer);
                out.push(std::mem::replace(&mut held[slot], i));
            }
        }
    }
    held.shuffle(&mut rng);
    out.extend(held);
    out
}

/// The images of one split of a set of shards, read on demand.
pub struct ShardSet {
    reader: Arc<ShardReader>,
    members: Vec<Member>,
    /// Consecutive members of one shard.
    runs: Vec<Range<usize>>,
    buffer: usize,
    on_demand: OnDemand,
}

impl ShardSet {
    pub fn new(
        splits: &ShardSplits,
        members: Vec<Member>,
        channels: usize,
        framer: Framer,
        skip_corrupt: bool,
        buffer: usize,
    ) -> Self {
        let mut runs: Vec<Range<usize>> = Vec::new();
        for (i, m) in members.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if members[run.start].shard == m.shard => run.end = i + 1,
                _ => runs.push(i..i + 1),
            }
        }
        Self {
            reader: splits.reader.clone(),
            members,
            runs,
            buffer,
            on_demand: OnDemand::new(splits.class_names.clone(), channels, framer, skip_corrupt),
        }
    }

    /// `shard.tar/member.jpg` of sample `i`.
    pub fn path(&self, i: usize) -> PathBuf {
        self.reader.path(&self.members[i])
    }

    /// The shard (in the reader's list) sample `i` is in.
    pub fn shard_of(&self, i: usize) -> usize {
        self.members[i].shard as usize
    }

    /// Sample `i`'s image member as stored.
    pub fn raw(&self, i: usize) -> Result<Vec<u8>> {
        self.reader.read(&self.members[i])
    }
}

impl ImageSource for ShardSet {
    fn len(&self) -> usize {
        self.members.len()
    }
    fn shape(&self) -> Shape {
        self.on_demand.shape()
    }
    fn label(&self, i: usize) -> Option<u32> {
        self.members[i].label
    }
    fn class_names(&self) -> &[String] {
        &self.on_demand.class_names
    }
    fn origin(&self, i: usize) -> Option<String> {
        Some(self.reader.origin(&self.members[i]))
    }
    fn image(&self, i: usize, framing: Framing) -> Result<Option<Cow<'_, [u8]>>> {
        self.on_demand.image(i, &self.path(i), self.raw(i), framing)
    }
    fn epoch_order(&self, seed: u64, epoch: u64) -> Option<Vec<usize>> {
        let seed = super::loader::mix(seed, epoch, ORDER_ITEM);
        Some(buffered_order(&self.runs, self.buffer, seed))
    }
    fn log_skipped_to(&self, path: &Path) {
        self.on_demand.log_skipped_to(path);
    }
    fn skipped(&self) -> usize {
        self.on_demand.skipped()
    }
}

/// What `pretext info` prints for shards: counts per split and class from the index, and image
/// sizes and colour from each image member's header (`check`: decoded too). The report, and the
/// unusable samples.
pub fn describe(path: &Path, check: bool, max_pixels: u64) -> Result<(String, Vec<String>)> {
    let (index, origin) = open(path, &default_cache_dir())?;
    let splits = splits(&index, true, None)?;
    let how = match origin {
        IndexOrigin::Cached => "index read from cache",
        IndexOrigin::Walked => "index built",
    };
    let test_shards = index.test.as_ref().map_or(0, Vec::len);
    let mut s = format!(
        "source: {}\nformat: shards ({} shards, {how})\n",
        index.source,
        index.train.len() + test_shards
    );
    let named = |shards: &[Shard]| {
        let mut counts = vec![0usize; index.class_names.len()];
        shards
            .iter()
            .flat_map(|s| &s.samples)
            .filter_map(|s| s.label)
            .for_each(|l| {
                if let Some(c) = counts.get_mut(l as usize) {
                    *c += 1;
                }
            });
        counts
    };
    let all =
        std::iter::once(("train", &index.train)).chain(index.test.as_ref().map(|t| ("test", t)));
    for (name, shards) in all {
        s += &format!(
            "{name}: {} images in {} shards",
            index.samples(shards),
            shards.len()
        );
        if index.labelled() {
            s += &format!(", {} classes\n", index.class_names.len());
            for (class, count) in index.class_names.iter().zip(named(shards)) {
                s += &format!("  {class}: {count}\n");
            }
        } else {
            s += ", unlabelled\n";
        }
    }
    let members: Vec<&Member> = splits
        .train
        .iter()
        .chain(splits.test.iter().flatten())
        .collect();
    let reader = &splits.reader;
    let mut found = super::survey::survey_items(&members, check, max_pixels, |m| {
        Ok((reader.path(m), reader.read(m)?))
    });
    found.problems.extend(splits.problems.iter().cloned());
    found.problems.sort();
    s += &super::survey::describe_images(&found);
    Ok((s, found.problems))
}

#[cfg(test)]
mod tests;
