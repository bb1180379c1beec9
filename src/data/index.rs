//! The file index of an image folder: every image's path, label, size and modification time,
//! found by a parallel walk and cached on disk, so a folder of a million photos is listed once
//! and opened again in the time it takes to check its folders.
//!
//! The layouts are those of [`super::folder`]: `train/<class>` (with an optional `test/<class>`),
//! `<class>` folders, or loose images. Class folders are walked recursively. Symlinked folders
//! are followed, but each real folder (device and inode) is visited once, so a link loop ends.
//!
//! The cache is rebuilt when any folder's modification time differs from the recorded one,
//! which catches added, removed and renamed files. A file rewritten in place keeps its folder's
//! time; the streaming reader catches it by comparing size and time when it opens the file.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::folder::Listing;
use super::{DataError, Result};

/// Bumped whenever the cached layout changes, so older caches are rebuilt rather than misread.
const CACHE_VERSION: u32 = 1;
/// The environment variable that moves the index cache (default `$XDG_CACHE_HOME/pretext` or
/// `~/.cache/pretext`).
pub const CACHE_DIR_VAR: &str = "PRETEXT_CACHE";
const TRAIN_DIR: &str = "train";
const TEST_DIR: &str = "test";

/// One indexed image file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Relative to the indexed folder.
    pub path: String,
    pub label: Option<u32>,
    pub bytes: u64,
    /// Modification time, nanoseconds since the epoch.
    pub modified: i64,
}

/// A folder visited by the walk and its modification time, to tell whether the cache is stale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FolderStamp {
    path: String,
    modified: i64,
}

/// The images of a folder in a fixed order: by class, then by path.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileIndex {
    version: u32,
    pub root: PathBuf,
    pub class_names: Vec<String>,
    pub train: Vec<IndexEntry>,
    /// The `test/` split of a `train/` + `test/` layout.
    pub test: Option<Vec<IndexEntry>>,
    folders: Vec<FolderStamp>,
}

/// Whether [`open`] read the cache or walked the folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexOrigin {
    Cached,
    Walked,
}

impl FileIndex {
    pub fn labelled(&self) -> bool {
        !self.class_names.is_empty()
    }
    pub fn full_path(&self, entry: &IndexEntry) -> PathBuf {
        self.root.join(&entry.path)
    }
}

/// The folder where index caches live.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_DIR_VAR) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("pretext")
}

/// The index of `dir`, from the cache in `cache_dir` when it is still valid, otherwise walked
/// and cached again. A cache that cannot be written costs only a warning.
pub fn open(dir: &Path, cache_dir: &Path) -> Result<(FileIndex, IndexOrigin)> {
    let root = fs::canonicalize(dir).map_err(|e| DataError::io(dir, e))?;
    if !root.is_dir() {
        return Err(DataError::format(dir, "is not a folder"));
    }
    let cache = cache_dir.join(format!(
        "index-{:016x}.json",
        fnv1a(root.as_os_str().as_encoded_bytes())
    ));
    if let Some(index) = read_cache(&cache, &root)
        && is_fresh(&index)
    {
        return Ok((index, IndexOrigin::Cached));
    }
    let index = walk(&root)?;
    if let Err(e) = crate::util::fs::write_json_atomic(&cache, &index) {
        eprintln!(
            "warning: cannot cache the file index at {}: {e}",
            cache.display()
        );
    }
    Ok((index, IndexOrigin::Walked))
}

fn read_cache(path: &Path, root: &Path) -> Option<FileIndex> {
    let index: FileIndex = crate::util::fs::read_json(path)?;
    (index.version == CACHE_VERSION && index.root == root).then_some(index)
}

fn is_fresh(index: &FileIndex) -> bool {
    index.folders.par_iter().all(|stamp| {
        fs::metadata(index.root.join(&stamp.path)).is_ok_and(|m| modified_ns(&m) == stamp.modified)
    })
}

pub(crate) fn modified_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
}

/// 64-bit FNV-1a: a stable name for a folder's cache file (std's hasher may change between
/// Rust versions).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Walks `root` (already canonical) in one of the folder layouts.
pub fn walk(root: &Path) -> Result<FileIndex> {
    let visited = Mutex::new(HashMap::new());
    let walker = Walker {
        root,
        visited: &visited,
    };
    let top = walker.list(root)?;
    let has_train = top.dirs.iter().any(|(name, _)| name == TRAIN_DIR);
    let (class_names, train, test) = if has_train {
        let train_dir = root.join(TRAIN_DIR);
        let train_top = walker.list(&train_dir)?;
        let class_names = class_names_of(&train_dir, &train_top)?;
        let train = walker.classes(&train_top.dirs, &class_names)?;
        let test = match top.dirs.iter().find(|(name, _)| name == TEST_DIR) {
            Some((_, test_dir)) => {
                let test_top = walker.list(test_dir)?;
                Some(walker.classes(&test_top.dirs, &class_names)?)
            }
            None => None,
        };
        (class_names, train, test)
    } else if !top.dirs.is_empty() {
        let class_names = class_names_of(root, &top)?;
        (
            class_names.clone(),
            walker.classes(&top.dirs, &class_names)?,
            None,
        )
    } else {
        let train = walker.files(&top.images, None)?;
        (Vec::new(), train, None)
    };
    if train.is_empty() {
        return Err(DataError::Empty {
            path: root.to_path_buf(),
            problem: "no images (png, jpg, jpeg) found".into(),
        });
    }
    let mut folders: Vec<FolderStamp> = visited
        .into_inner()
        .expect("walk finished")
        .into_values()
        .collect();
    folders.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(FileIndex {
        version: CACHE_VERSION,
        root: root.to_path_buf(),
        class_names,
        train,
        test,
        folders,
    })
}

/// Class folders' names; loose images beside them are an error, as in the in-memory reader.
fn class_names_of(dir: &Path, listing: &Listing) -> Result<Vec<String>> {
    if let Some(loose) = listing.images.first() {
        return Err(DataError::format(
            dir,
            format!(
                "has class folders and also loose images such as {}: put every image in a class folder",
                loose.display()
            ),
        ));
    }
    if listing.dirs.is_empty() {
        return Err(DataError::Empty {
            path: dir.to_path_buf(),
            problem: "no class folders".into(),
        });
    }
    Ok(listing.dirs.iter().map(|(name, _)| name.clone()).collect())
}

struct Walker<'a> {
    root: &'a Path,
    /// (device, inode) of each folder listed, with its stamp.
    visited: &'a Mutex<HashMap<(u64, u64), FolderStamp>>,
}

impl Walker<'_> {
    /// Lists `dir` once; a folder already listed (reached again through a link) lists as empty.
    fn list(&self, dir: &Path) -> Result<Listing> {
        let meta = fs::metadata(dir).map_err(|e| DataError::io(dir, e))?;
        let rel = dir.strip_prefix(self.root).unwrap_or(dir);
        let stamp = FolderStamp {
            path: rel.to_string_lossy().into_owned(),
            modified: modified_ns(&meta),
        };
        {
            let mut visited = self.visited.lock().expect("no panics while held");
            let id = (meta.dev(), meta.ino());
            if visited.contains_key(&id) {
                return Ok(Listing {
                    dirs: Vec::new(),
                    images: Vec::new(),
                });
            }
            visited.insert(id, stamp);
        }
        super::folder::list(dir)
    }

    /// Every image under each class folder, labelled by the class's position in `names`.
    fn classes(&self, dirs: &[(String, PathBuf)], names: &[String]) -> Result<Vec<IndexEntry>> {
        let per_class: Vec<Vec<IndexEntry>> = dirs
            .par_iter()
            .map(|(name, dir)| {
                let label = names.iter().position(|n| n == name).ok_or_else(|| {
                    DataError::format(
                        dir,
                        "is a class folder that the training split does not have",
                    )
                })?;
                self.tree(dir, Some(label as u32))
            })
            .collect::<Result<_>>()?;
        Ok(per_class.into_iter().flatten().collect())
    }

    /// Every image under `dir`, its subfolders in parallel, in path order.
    fn tree(&self, dir: &Path, label: Option<u32>) -> Result<Vec<IndexEntry>> {
        let listing = self.list(dir)?;
        let mut entries = self.files(&listing.images, label)?;
        let nested: Vec<Vec<IndexEntry>> = listing
            .dirs
            .par_iter()
            .map(|(_, sub)| self.tree(sub, label))
            .collect::<Result<_>>()?;
        entries.extend(nested.into_iter().flatten());
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    fn files(&self, paths: &[PathBuf], label: Option<u32>) -> Result<Vec<IndexEntry>> {
        paths
            .par_iter()
            .map(|path| {
                let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
                let rel = path.strip_prefix(self.root).unwrap_or(path);
                Ok(IndexEntry {
                    path: rel.to_string_lossy().into_owned(),
                    label,
                    bytes: meta.len(),
                    modified: modified_ns(&meta),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    #[test]
    fn class_folders_are_walked_recursively_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("cat/b.jpg"));
        touch(&d.join("cat/a.png"));
        touch(&d.join("cat/nested/c.JPEG"));
        touch(&d.join("dog/z.jpg"));
        touch(&d.join("dog/notes.txt"));
        touch(&d.join("dog/.hidden.jpg"));
        let index = walk(&fs::canonicalize(d).unwrap()).unwrap();
        assert_eq!(index.class_names, ["cat", "dog"]);
        let paths: Vec<(&str, Option<u32>)> = index
            .train
            .iter()
            .map(|e| (e.path.as_str(), e.label))
            .collect();
        assert_eq!(
            paths,
            [
                ("cat/a.png", Some(0)),
                ("cat/b.jpg", Some(0)),
                ("cat/nested/c.JPEG", Some(0)),
                ("dog/z.jpg", Some(1))
            ]
        );
        assert!(index.test.is_none());
        assert_eq!(index.train[0].bytes, 1);
    }

    #[test]
    fn symlink_loop_is_visited_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("a/one.jpg"));
        touch(&d.join("a/sub/two.jpg"));
        std::os::unix::fs::symlink(d.join("a"), d.join("a/sub/back")).unwrap();
        std::os::unix::fs::symlink(d.join("a/sub"), d.join("b")).unwrap();
        let index = walk(&fs::canonicalize(d).unwrap()).unwrap();
        // `b` is the real folder `a/sub`, reached twice (once through `a`); its image counts once.
        let count = index
            .train
            .iter()
            .filter(|e| e.path.ends_with("two.jpg"))
            .count();
        assert_eq!(count, 1, "{:?}", index.train);
        assert_eq!(
            index
                .train
                .iter()
                .filter(|e| e.path.ends_with("one.jpg"))
                .count(),
            1
        );
    }

    #[test]
    fn cache_is_reused_and_invalidated_when_a_folder_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        touch(&d.join("x/1.jpg"));
        touch(&d.join("y/2.jpg"));
        let (first, origin) = open(&d, cache.path()).unwrap();
        assert_eq!(origin, IndexOrigin::Walked);
        let (again, origin) = open(&d, cache.path()).unwrap();
        assert_eq!(origin, IndexOrigin::Cached);
        assert_eq!(again.train, first.train);
        // Folder times have nanosecond resolution here, but a coarse file system could give two
        // writes in one tick the same time: wait a little so the change is visible either way.
        std::thread::sleep(std::time::Duration::from_millis(20));
        touch(&d.join("y/3.jpg"));
        let (changed, origin) = open(&d, cache.path()).unwrap();
        assert_eq!(origin, IndexOrigin::Walked);
        assert_eq!(changed.train.len(), 3);
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::remove_file(d.join("x/1.jpg")).unwrap();
        let (removed, origin) = open(&d, cache.path()).unwrap();
        assert_eq!(origin, IndexOrigin::Walked);
        assert_eq!(removed.train.len(), 2);
        // A corrupt cache file is ignored, not trusted.
        for f in fs::read_dir(cache.path()).unwrap() {
            fs::write(f.unwrap().path(), b"{not json").unwrap();
        }
        assert_eq!(open(&d, cache.path()).unwrap().1, IndexOrigin::Walked);
    }

    #[test]
    fn train_test_layout_and_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("train/a/1.jpg"));
        touch(&d.join("train/b/2.jpg"));
        touch(&d.join("test/b/3.jpg"));
        let index = walk(&fs::canonicalize(d).unwrap()).unwrap();
        assert_eq!(index.train.len(), 2);
        let test = index.test.unwrap();
        assert_eq!(
            (test[0].path.as_str(), test[0].label),
            ("test/b/3.jpg", Some(1))
        );

        let empty = tempfile::tempdir().unwrap();
        let err = walk(&fs::canonicalize(empty.path()).unwrap()).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err}");
    }
}
