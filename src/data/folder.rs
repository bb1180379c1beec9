//! Folders of PNG/JPEG images, decoded in parallel.
//!
//! Three layouts, tried in this order:
//! * `dir/train/<class>/*` with optional `dir/test/<class>/*`: labelled, with a test split.
//!   Other entries of `dir` are ignored.
//! * `dir/<class>/*`: labelled, no test split.
//! * `dir/*` with no subfolders: unlabelled images.
//!
//! Classes are the sorted folder names and labels their indices. Only files named `*.png`,
//! `*.jpg` or `*.jpeg` (any case) are read; hidden entries and other files are ignored silently so
//! that `.DS_Store`, `Thumbs.db` or a README do not get in the way. Files are taken in name order so
//! the result does not depend on the file system.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, ImageReader};
use rayon::prelude::*;

use super::{DataError, Dataset, Format, ImageSet, Result};

/// How to treat problem files.
#[derive(Clone, Debug, Default)]
pub struct FolderOptions {
    /// Skip images that cannot be decoded, with a warning on stderr, instead of failing.
    pub skip_corrupt: bool,
}

/// Loads an image folder in any of the layouts above.
///
/// All images must share one size (the first image's). If every image is grayscale (8 or 16 bit,
/// with or without alpha) the set has one channel; if any has colour, all are converted to RGB.
/// Alpha is dropped, 16-bit samples are scaled to 8 bits.
pub fn load(dir: &Path, opts: &FolderOptions) -> Result<Dataset> {
    let meta = fs::metadata(dir).map_err(|e| DataError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(DataError::format(dir, "is not a folder"));
    }
    let top = list(dir)?;
    let plan = if top.dirs.iter().any(|(name, _)| name == "train") {
        plan_train_test(dir)?
    } else if !top.dirs.is_empty() {
        if let Some(loose) = top.images.first() {
            return Err(DataError::format(
                dir,
                format!(
                    "has class folders and also loose images such as {}: put every image in a class folder",
                    loose.display()
                ),
            ));
        }
        let (class_names, train) = labelled_split(dir, top.dirs)?;
        Plan {
            class_names,
            train,
            test: None,
        }
    } else if !top.images.is_empty() {
        let train = top
            .images
            .into_iter()
            .map(|path| Entry { path, label: None })
            .collect();
        Plan {
            class_names: Vec::new(),
            train,
            test: None,
        }
    } else {
        return Err(DataError::Empty {
            path: dir.to_path_buf(),
            problem: "no images (png, jpg, jpeg) and no class folders".into(),
        });
    };
    decode_plan(dir, plan, opts)
}

/// One image file to read and its label.
struct Entry {
    path: PathBuf,
    label: Option<u32>,
}

/// The files of each split, before decoding.
struct Plan {
    class_names: Vec<String>,
    train: Vec<Entry>,
    test: Option<(PathBuf, Vec<Entry>)>,
}

/// Visible subfolders (name, path) and image files of one folder, each sorted by name.
pub(crate) struct Listing {
    pub dirs: Vec<(String, PathBuf)>,
    pub images: Vec<PathBuf>,
}

pub(crate) fn list(dir: &Path) -> Result<Listing> {
    let mut listing = Listing {
        dirs: Vec::new(),
        images: Vec::new(),
    };
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // The entry's own type needs no extra system call per file, which matters with tens of
        // thousands of images; only symlinks are followed, so linked class folders still work.
        let file_type = entry.file_type().map_err(|e| DataError::io(&path, e))?;
        let is_dir = if file_type.is_symlink() {
            path.is_dir()
        } else {
            file_type.is_dir()
        };
        if is_dir {
            listing.dirs.push((name.into_owned(), path));
        } else if is_image_name(&name) {
            listing.images.push(path);
        }
    }
    listing.dirs.sort();
    listing
        .images
        .sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(listing)
}

pub(crate) fn is_image_name(name: &str) -> bool {
    let Some((_, ext)) = name.rsplit_once('.') else {
        return false;
    };
    ["png", "jpg", "jpeg"]
        .iter()
        .any(|e| ext.eq_ignore_ascii_case(e))
}

/// The images of one class folder, all labelled `label`.
fn class_images(class_dir: &Path, label: u32) -> Result<Vec<Entry>> {
    let images = list(class_dir)?.images;
    if images.is_empty() {
        return Err(DataError::Empty {
            path: class_dir.to_path_buf(),
            problem: "class folder has no images (png, jpg, jpeg)".into(),
        });
    }
    Ok(images
        .into_iter()
        .map(|path| Entry {
            path,
            label: Some(label),
        })
        .collect())
}

/// A `<class>/*` split whose class folders are `dirs` (sorted): the class names and the files.
fn labelled_split(
    split_dir: &Path,
    dirs: Vec<(String, PathBuf)>,
) -> Result<(Vec<String>, Vec<Entry>)> {
    if dirs.is_empty() {
        return Err(DataError::Empty {
            path: split_dir.to_path_buf(),
            problem: "no class folders".into(),
        });
    }
    let mut entries = Vec::new();
    let mut names = Vec::with_capacity(dirs.len());
    for (label, (name, path)) in dirs.into_iter().enumerate() {
        entries.extend(class_images(&path, label as u32)?);
        names.push(name);
    }
    Ok((names, entries))
}

/// The `train/<class>` + `test/<class>` layout; the classes are those of `train`.
fn plan_train_test(dir: &Path) -> Result<Plan> {
    let train_dir = dir.join("train");
    let (class_names, train) = labelled_split(&train_dir, list(&train_dir)?.dirs)?;
    let test_dir = dir.join("test");
    if !test_dir.is_dir() {
        return Ok(Plan {
            class_names,
            train,
            test: None,
        });
    }
    let test_classes = list(&test_dir)?.dirs;
    if test_classes.is_empty() {
        return Err(DataError::Empty {
            path: test_dir,
            problem: "no class folders".into(),
        });
    }
    let mut test = Vec::new();
    for (name, path) in test_classes {
        // A class only in the test split could never be predicted, so it is a data error.
        let label = class_names
            .binary_search(&name)
            .map_err(|_| DataError::Mismatch {
                path: path.clone(),
                problem: format!(
                    "test class {name:?} has no folder in {}",
                    train_dir.display()
                ),
            })?;
        test.extend(class_images(&path, label as u32)?);
    }
    Ok(Plan {
        class_names,
        train,
        test: Some((test_dir, test)),
    })
}

/// One decoded image, channel-major, in its own channel count (1 for grayscale, else 3).
struct Decoded {
    width: u32,
    height: u32,
    gray: bool,
    planes: Vec<u8>,
}

/// The image that fixes the size of the whole set.
struct Reference<'a> {
    path: &'a Path,
    width: u32,
    height: u32,
}

impl Reference<'_> {
    fn plane(&self) -> usize {
        self.width as usize * self.height as usize
    }
}

/// What became of each image of a split in the parallel pass.
enum Outcome {
    Written,
    /// Undecodable and skipped (the warning is already printed).
    Skipped,
    /// A colour image met while the set is still grayscale: kept aside until the set is widened.
    Colour(Vec<u8>),
}

/// A split decoded into one buffer with a slot per entry, skipped slots included.
struct Filled {
    pixels: Vec<u8>,
    outcomes: Vec<Outcome>,
}

fn decode_plan(dir: &Path, plan: Plan, opts: &FolderOptions) -> Result<Dataset> {
    let Plan {
        class_names,
        train,
        test,
    } = plan;
    let train_dir = if test.is_some() {
        dir.join("train")
    } else {
        dir.to_path_buf()
    };

    // The first decodable image fixes the size, and the channel count until a colour image turns
    // up. Knowing both up front lets every image decode straight into its slot of the final
    // buffer, so the set is never held twice in memory.
    let mut skipped = 0;
    let mut first = None;
    for (i, entry) in train.iter().enumerate() {
        match decode(&entry.path) {
            Ok(image) => {
                first = Some((i, image));
                break;
            }
            Err(e) => {
                skip_or_fail(e, opts)?;
                skipped += 1;
            }
        }
    }
    let Some((start, image)) = first else {
        return Err(DataError::Empty {
            path: train_dir,
            problem: format!("none of the {} images could be decoded", train.len()),
        });
    };
    let reference = Reference {
        path: &train[start].path,
        width: image.width,
        height: image.height,
    };
    let mut channels = if image.gray { 1 } else { 3 };

    // `fill` decodes the first image again: one extra decode keeps every slot on the same path.
    let train = &train[start..];
    let mut filled_train = fill(train, &reference, channels, opts)?;
    let mut filled_test = match &test {
        Some((_, entries)) => Some(fill(entries, &reference, channels, opts)?),
        None => None,
    };
    let outcomes = || {
        filled_train
            .outcomes
            .iter()
            .chain(filled_test.iter().flat_map(|f| &f.outcomes))
    };
    skipped += outcomes().filter(|o| matches!(o, Outcome::Skipped)).count();
    if outcomes().any(|o| matches!(o, Outcome::Colour(_))) {
        channels = 3;
        filled_train = widen(filled_train, reference.plane());
        filled_test = filled_test.map(|f| widen(f, reference.plane()));
    }

    let shape = Shape {
        channels,
        height: reference.height as usize,
        width: reference.width as usize,
    };
    let named = Named {
        dir,
        root: &fs::canonicalize(dir).map_err(|e| DataError::io(dir, e))?,
        class_names: &class_names,
    };
    let train = assemble(&train_dir, filled_train, train, shape, &named)?;
    let test = match (test, filled_test) {
        (Some((test_dir, entries)), Some(filled)) => {
            Some(assemble(&test_dir, filled, &entries, shape, &named)?)
        }
        _ => None,
    };
    Ok(Dataset {
        format: Format::Folder,
        source: dir.display().to_string(),
        train,
        test,
        skipped,
    })
}

/// With `skip_corrupt`, warns about an undecodable image and lets the caller skip it; any other
/// error (or without the option) is returned.
fn skip_or_fail(error: DataError, opts: &FolderOptions) -> Result<()> {
    match error {
        DataError::CorruptImage { path, problem } if opts.skip_corrupt => {
            eprintln!(
                "warning: skipping corrupt image {}: {problem}",
                path.display()
            );
            Ok(())
        }
        e => Err(e),
    }
}

/// Decodes `entries` in parallel into a buffer of `channels`-channel slots of the reference size.
fn fill(
    entries: &[Entry],
    reference: &Reference,
    channels: usize,
    opts: &FolderOptions,
) -> Result<Filled> {
    let image_len = channels * reference.plane();
    // Zeroed memory comes from the OS untouched, so its pages are first written by the decoders.
    let mut pixels = vec![0u8; entries.len() * image_len];
    let results: Vec<Result<Outcome>> = pixels
        .par_chunks_mut(image_len)
        .zip(entries)
        .map(|(slot, entry)| decode_into(&entry.path, slot, reference))
        .collect();
    // In file order, so the error reported and the warnings printed do not depend on scheduling.
    let mut outcomes = Vec::with_capacity(results.len());
    for result in results {
        outcomes.push(match result {
            Ok(outcome) => outcome,
            Err(e) => {
                skip_or_fail(e, opts)?;
                Outcome::Skipped
            }
        });
    }
    Ok(Filled { pixels, outcomes })
}

fn decode_into(path: &Path, slot: &mut [u8], reference: &Reference) -> Result<Outcome> {
    let image = decode(path)?;
    if (image.width, image.height) != (reference.width, reference.height) {
        return Err(DataError::Mismatch {
            path: path.to_path_buf(),
            problem: format!(
                "image is {}x{} but {} is {}x{}; all images must have one size",
                image.width,
                image.height,
                reference.path.display(),
                reference.width,
                reference.height
            ),
        });
    }
    let rgb_slot = slot.len() == 3 * reference.plane();
    match (image.gray, rgb_slot) {
        (true, true) => slot
            .chunks_exact_mut(image.planes.len())
            .for_each(|p| p.copy_from_slice(&image.planes)),
        (false, false) => return Ok(Outcome::Colour(image.planes)),
        _ => slot.copy_from_slice(&image.planes),
    }
    Ok(Outcome::Written)
}

/// Turns a grayscale split into RGB, putting in the colour images kept aside.
fn widen(filled: Filled, plane: usize) -> Filled {
    let Filled { pixels, outcomes } = filled;
    let mut wide = vec![0u8; outcomes.len() * 3 * plane];
    let outcomes = wide
        .par_chunks_mut(3 * plane)
        .zip(pixels.par_chunks(plane))
        .zip(outcomes)
        .map(|((out, gray), outcome)| match outcome {
            Outcome::Colour(planes) => {
                out.copy_from_slice(&planes);
                Outcome::Written
            }
            Outcome::Written => {
                out.chunks_exact_mut(plane)
                    .for_each(|p| p.copy_from_slice(gray));
                Outcome::Written
            }
            Outcome::Skipped => Outcome::Skipped,
        })
        .collect();
    Filled {
        pixels: wide,
        outcomes,
    }
}

#[derive(Clone, Copy)]
struct Shape {
    channels: usize,
    height: usize,
    width: usize,
}

/// What names a folder's images: its classes, and the folder as given (`dir`) and as the
/// index names it (`root`, canonical), so an image's origin is the path a streamed read of the
/// same folder gives it.
struct Named<'a> {
    dir: &'a Path,
    root: &'a Path,
    class_names: &'a [String],
}

impl Named<'_> {
    fn origin(&self, path: &Path) -> String {
        let relative = path.strip_prefix(self.dir).unwrap_or(path);
        self.root.join(relative).to_string_lossy().into_owned()
    }
}

/// Drops the skipped slots of a split and attaches the labels and origins.
fn assemble(
    split_dir: &Path,
    filled: Filled,
    entries: &[Entry],
    shape: Shape,
    named: &Named,
) -> Result<ImageSet> {
    let Filled {
        mut pixels,
        outcomes,
    } = filled;
    let image_len = shape.channels * shape.height * shape.width;
    let mut len = 0;
    let mut labels = Vec::with_capacity(entries.len());
    let mut origins = Vec::with_capacity(entries.len());
    for (i, (outcome, entry)) in outcomes.iter().zip(entries).enumerate() {
        match outcome {
            Outcome::Skipped => continue,
            Outcome::Written => {}
            Outcome::Colour(_) => {
                unreachable!("colour images are put in place when the set is widened")
            }
        }
        if i != len {
            pixels.copy_within(i * image_len..(i + 1) * image_len, len * image_len);
        }
        labels.push(entry.label);
        origins.push(named.origin(&entry.path));
        len += 1;
    }
    if len == 0 {
        return Err(DataError::Empty {
            path: split_dir.to_path_buf(),
            problem: "no decodable images left after skipping corrupt ones".into(),
        });
    }
    pixels.truncate(len * image_len);
    let labelled = labels.iter().all(Option::is_some);
    Ok(ImageSet {
        len,
        pixels,
        labels: labelled.then(|| labels.into_iter().flatten().collect()),
        channels: shape.channels,
        height: shape.height,
        width: shape.width,
        class_names: named.class_names.to_vec(),
        origins: Some(origins),
    })
}

fn decode(path: &Path) -> Result<Decoded> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let corrupt = |problem: String| DataError::CorruptImage {
        path: path.to_path_buf(),
        problem,
    };

    // The content decides the format; the extension is the fallback for an unrecognised header.
    let mut reader = ImageReader::new(Cursor::new(bytes.as_slice()));
    if let Ok(format) = ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    let reader = reader
        .with_guessed_format()
        .map_err(|e| corrupt(e.to_string()))?;
    if reader.format() == Some(ImageFormat::Jpeg) {
        check_jpeg_complete(&bytes).map_err(|p| corrupt(p.into()))?;
    }
    let image = reader.decode().map_err(|e| corrupt(e.to_string()))?;
    if image.width() == 0 || image.height() == 0 {
        return Err(corrupt("image has no pixels".into()));
    }

    let (width, height) = (image.width(), image.height());
    let (gray, planes) = if image.color().has_color() {
        let rgb = match image {
            DynamicImage::ImageRgb8(buf) => buf.into_raw(),
            other => other.to_rgb8().into_raw(),
        };
        (false, to_planes(&rgb))
    } else {
        let luma = match image {
            DynamicImage::ImageLuma8(buf) => buf.into_raw(),
            other => other.to_luma8().into_raw(),
        };
        (true, luma)
    };
    Ok(Decoded {
        width,
        height,
        gray,
        planes,
    })
}

/// The JPEG decoder fills a truncated scan with grey instead of failing, so a cut-off file
/// would load as a damaged image. A complete file has an end-of-image marker (FF D9) after its
/// last start-of-scan (FF DA); within scan data 0xFF is always escaped, so neither marker can
/// occur there by accident, and an EXIF thumbnail's own markers come before the main scans.
pub(crate) fn check_jpeg_complete(bytes: &[u8]) -> std::result::Result<(), &'static str> {
    let last_scan = bytes
        .windows(2)
        .rposition(|w| w == [0xFF, 0xDA])
        .ok_or("JPEG has no image data (no start-of-scan marker)")?;
    if bytes[last_scan..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err("JPEG is truncated (no end-of-image marker after the last scan)")
    }
}

/// Interleaved RGB to three planes, the [`ImageSet`] layout.
fn to_planes(rgb: &[u8]) -> Vec<u8> {
    let plane = rgb.len() / 3;
    let mut out = vec![0u8; rgb.len()];
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (((px, r), g), b) in rgb.chunks_exact(3).zip(r).zip(g).zip(b) {
        *r = px[0];
        *g = px[1];
        *b = px[2];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, ImageBuffer, Rgb, RgbImage, Rgba, RgbaImage};

    fn rgb(w: u32, h: u32, seed: u8) -> RgbImage {
        ImageBuffer::from_fn(w, h, |x, y| Rgb([seed, x as u8, y as u8]))
    }

    fn gray(w: u32, h: u32, value: u8) -> GrayImage {
        ImageBuffer::from_pixel(w, h, image::Luma([value]))
    }

    fn mkdir(path: &Path) -> PathBuf {
        fs::create_dir_all(path).unwrap();
        path.to_path_buf()
    }

    fn save_png(dir: &Path, name: &str, w: u32, h: u32, seed: u8) -> PathBuf {
        let path = dir.join(name);
        rgb(w, h, seed)
            .save_with_format(&path, ImageFormat::Png)
            .unwrap();
        path
    }

    fn save_jpeg(dir: &Path, name: &str, w: u32, h: u32, seed: u8) -> PathBuf {
        let path = dir.join(name);
        rgb(w, h, seed)
            .save_with_format(&path, ImageFormat::Jpeg)
            .unwrap();
        path
    }

    fn opts(skip_corrupt: bool) -> FolderOptions {
        FolderOptions { skip_corrupt }
    }

    fn assert_err<T: std::fmt::Debug>(r: Result<T>, name: &str) -> DataError {
        let err = r.unwrap_err();
        assert!(err.to_string().contains(name), "{err} does not name {name}");
        err
    }

    #[test]
    fn class_folders_without_test_split() {
        let dir = tempfile::tempdir().unwrap();
        let cats = mkdir(&dir.path().join("cat"));
        let dogs = mkdir(&dir.path().join("dog"));
        save_png(&dogs, "b.png", 4, 3, 20);
        save_png(&dogs, "a.PNG", 4, 3, 10);
        save_jpeg(&cats, "z.JPEG", 4, 3, 30);
        let ds = load(dir.path(), &opts(false)).unwrap();
        assert_eq!(ds.format, Format::Folder);
        assert!(ds.test.is_none());
        let t = &ds.train;
        assert_eq!((t.len, t.channels, t.height, t.width), (3, 3, 3, 4));
        assert_eq!(t.class_names, ["cat", "dog"]);
        assert_eq!(t.labels.as_deref(), Some(&[0, 1, 1][..]));
        // PNG is lossless: a.PNG (seed 10) sorts before b.png; planes are R, G (= x), B (= y).
        let a = t.image(1);
        assert!(a[..12].iter().all(|&v| v == 10));
        assert_eq!(&a[12..16], &[0, 1, 2, 3]);
        assert_eq!(&a[24..28], &[0, 0, 0, 0]);
        assert_eq!(&a[32..36], &[2, 2, 2, 2]);
        // Origins are the files' paths under the canonical folder, in the images' order.
        let root = fs::canonicalize(dir.path()).unwrap();
        let expected: Vec<String> = ["cat/z.JPEG", "dog/a.PNG", "dog/b.png"]
            .iter()
            .map(|p| root.join(p).display().to_string())
            .collect();
        assert_eq!(t.origins.as_ref(), Some(&expected));
    }

    #[test]
    fn train_and_test_class_folders() {
        let dir = tempfile::tempdir().unwrap();
        for class in ["b", "a", "c"] {
            save_png(
                &mkdir(&dir.path().join("train").join(class)),
                "0.png",
                2,
                2,
                1,
            );
        }
        save_png(&mkdir(&dir.path().join("test/c")), "0.png", 2, 2, 1);
        save_png(&mkdir(&dir.path().join("test/a")), "0.png", 2, 2, 1);
        fs::write(dir.path().join("README.md"), "ignored").unwrap();
        let ds = load(dir.path(), &opts(false)).unwrap();
        assert_eq!(ds.train.class_names, ["a", "b", "c"]);
        assert_eq!(ds.train.labels.as_deref(), Some(&[0, 1, 2][..]));
        let test = ds.test.unwrap();
        assert_eq!(test.labels.as_deref(), Some(&[0, 2][..]));
        assert_eq!(test.class_names, ["a", "b", "c"]);
    }

    #[test]
    fn test_class_missing_from_train_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        save_png(&mkdir(&dir.path().join("train/a")), "0.png", 2, 2, 1);
        save_png(&mkdir(&dir.path().join("test/zebra")), "0.png", 2, 2, 1);
        let err = assert_err(load(dir.path(), &opts(false)), "zebra");
        assert!(matches!(err, DataError::Mismatch { .. }), "{err:?}");
    }

    #[test]
    fn flat_folder_is_unlabelled_and_ignores_hidden_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        save_png(dir.path(), "2.png", 3, 3, 2);
        save_png(dir.path(), "1.jpg.png", 3, 3, 1);
        // Would fail to decode or mismatch in size if they were read.
        fs::write(dir.path().join(".hidden.png"), b"not an image").unwrap();
        save_png(dir.path(), ".big.png", 9, 9, 0);
        fs::write(dir.path().join("notes.txt"), b"text").unwrap();
        fs::write(dir.path().join("Thumbs.db"), b"junk").unwrap();
        fs::write(dir.path().join("png"), b"no extension").unwrap();
        mkdir(&dir.path().join(".cache"));
        let ds = load(dir.path(), &opts(false)).unwrap();
        assert_eq!(ds.train.len, 2);
        assert!(ds.train.labels.is_none());
        assert!(ds.train.class_names.is_empty());
        assert_eq!(ds.train.image(0)[0], 1);
        assert_eq!(ds.skipped, 0);
    }

    #[test]
    fn all_grayscale_gives_one_channel() {
        let dir = tempfile::tempdir().unwrap();
        gray(5, 4, 7).save(dir.path().join("a.png")).unwrap();
        image::DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(5, 4, image::LumaA([9, 100])))
            .save(dir.path().join("b.png"))
            .unwrap();
        let ds = load(dir.path(), &opts(false)).unwrap();
        assert_eq!((ds.train.channels, ds.train.len), (1, 2));
        assert_eq!(ds.train.image(1), &[9u8; 20][..]);
    }

    #[test]
    fn mixed_gray_and_colour_become_rgb() {
        let dir = tempfile::tempdir().unwrap();
        gray(2, 2, 50).save(dir.path().join("a.png")).unwrap();
        RgbaImage::from_pixel(2, 2, Rgba([1, 2, 3, 0]))
            .save(dir.path().join("b.png"))
            .unwrap();
        let ds = load(dir.path(), &opts(false)).unwrap();
        assert_eq!(ds.train.channels, 3);
        assert_eq!(ds.train.image(0), &[50u8; 12][..]);
        assert_eq!(ds.train.image(1), &[1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
    }

    #[test]
    fn colour_first_then_gray_becomes_rgb() {
        let dir = tempfile::tempdir().unwrap();
        RgbImage::from_pixel(2, 1, Rgb([1, 2, 3]))
            .save(dir.path().join("a.png"))
            .unwrap();
        gray(2, 1, 9).save(dir.path().join("b.png")).unwrap();
        let ds = load(dir.path(), &opts(false)).unwrap();
        assert_eq!(ds.train.channels, 3);
        assert_eq!(ds.train.pixels, [1, 1, 2, 2, 3, 3, 9, 9, 9, 9, 9, 9]);
    }

    #[test]
    fn colour_in_test_split_widens_gray_train_split() {
        let dir = tempfile::tempdir().unwrap();
        gray(1, 1, 5)
            .save(mkdir(&dir.path().join("train/a")).join("0.png"))
            .unwrap();
        let test = mkdir(&dir.path().join("test/a"));
        gray(1, 1, 6).save(test.join("0.png")).unwrap();
        RgbImage::from_pixel(1, 1, Rgb([7, 8, 9]))
            .save(test.join("1.png"))
            .unwrap();
        let ds = load(dir.path(), &opts(false)).unwrap();
        assert_eq!(
            (ds.train.channels, ds.train.pixels.as_slice()),
            (3, &[5, 5, 5][..])
        );
        let test = ds.test.unwrap();
        assert_eq!(
            (test.channels, test.pixels.as_slice()),
            (3, &[6, 6, 6, 7, 8, 9][..])
        );
    }

    #[test]
    fn mixed_sizes_name_file_and_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        save_png(dir.path(), "a.png", 4, 4, 0);
        save_png(dir.path(), "b.png", 4, 4, 0);
        save_png(dir.path(), "c.png", 5, 4, 0);
        let err = assert_err(load(dir.path(), &opts(true)), "c.png");
        assert!(matches!(err, DataError::Mismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("5x4") && msg.contains("4x4") && msg.contains("a.png"),
            "{msg}"
        );
    }

    /// A good set with three kinds of broken file among them.
    fn folder_with_corrupt_images() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let class = mkdir(&dir.path().join("class"));
        save_jpeg(&class, "a.jpg", 8, 8, 1);
        let good = save_jpeg(&class, "c.jpg", 8, 8, 2);
        let bytes = fs::read(&good).unwrap();
        fs::write(class.join("b-truncated.jpg"), &bytes[..bytes.len() * 2 / 3]).unwrap();
        fs::write(
            class.join("d-garbage.jpeg"),
            b"\xff\xd8\xff\xe0 this is not a jpeg",
        )
        .unwrap();
        let png = fs::read(save_png(&class, "e.png", 8, 8, 3)).unwrap();
        fs::write(class.join("f-truncated.png"), &png[..png.len() / 2]).unwrap();
        dir
    }

    #[test]
    fn corrupt_image_is_an_error_naming_it() {
        let dir = folder_with_corrupt_images();
        let err = assert_err(load(dir.path(), &opts(false)), "b-truncated.jpg");
        assert!(matches!(err, DataError::CorruptImage { .. }), "{err:?}");
        // Each kind of damage is caught on its own too.
        for name in ["d-garbage.jpeg", "f-truncated.png"] {
            let err = assert_err(
                decode(&dir.path().join("class").join(name)).map(|_| ()),
                name,
            );
            assert!(matches!(err, DataError::CorruptImage { .. }), "{err:?}");
        }
    }

    #[test]
    fn truncated_jpeg_the_decoder_accepts_is_still_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let noisy: RgbImage = ImageBuffer::from_fn(32, 32, |x, y| {
            Rgb([
                ((x * 37) ^ (y * 11)) as u8,
                (x * y) as u8,
                (x + y * 7) as u8,
            ])
        });
        let path = dir.path().join("full.jpg");
        noisy.save(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        // The decoder pads many cut-off scans with grey instead of failing: find such a cut.
        let cut = (bytes.len() / 2..bytes.len() - 2)
            .find(|&cut| {
                image::load_from_memory_with_format(&bytes[..cut], ImageFormat::Jpeg).is_ok()
            })
            .expect("some truncation decodes silently");
        let truncated = dir.path().join("cut.jpg");
        fs::write(&truncated, &bytes[..cut]).unwrap();
        let err = assert_err(decode(&truncated).map(|_| ()), "cut.jpg");
        assert!(
            matches!(err, DataError::CorruptImage { .. }) && err.to_string().contains("truncated"),
            "{err:?}"
        );
        assert!(decode(&path).is_ok());
    }

    #[test]
    fn skip_corrupt_skips_and_counts() {
        let dir = folder_with_corrupt_images();
        let ds = load(dir.path(), &opts(true)).unwrap();
        assert_eq!(ds.skipped, 3);
        assert_eq!(ds.train.len, 3);
        assert_eq!(ds.train.labels.as_deref(), Some(&[0, 0, 0][..]));
        assert_eq!(ds.train.pixels.len(), 3 * 3 * 64);
    }

    #[test]
    fn skip_corrupt_first_images_and_test_split() {
        let dir = tempfile::tempdir().unwrap();
        let train = mkdir(&dir.path().join("train/x"));
        fs::write(train.join("0.png"), b"broken").unwrap();
        fs::write(train.join("1.jpg"), b"broken").unwrap();
        save_png(&train, "2.png", 3, 2, 42);
        save_png(&train, "3.png", 3, 2, 43);
        let test = mkdir(&dir.path().join("test/x"));
        save_png(&test, "0.png", 3, 2, 44);
        fs::write(test.join("1.png"), b"broken").unwrap();
        save_png(&test, "2.png", 3, 2, 45);

        let err = assert_err(load(dir.path(), &opts(false)), "0.png");
        assert!(matches!(err, DataError::CorruptImage { .. }), "{err:?}");
        let ds = load(dir.path(), &opts(true)).unwrap();
        assert_eq!(ds.skipped, 3);
        assert_eq!(ds.train.len, 2);
        assert_eq!((ds.train.image(0)[0], ds.train.image(1)[0]), (42, 43));
        let test = ds.test.unwrap();
        assert_eq!(test.len, 2);
        assert_eq!(test.pixels.len(), 2 * 18);
        assert_eq!((test.image(0)[0], test.image(1)[0]), (44, 45));
        // The skipped files' origins go with them.
        let names = |set: &ImageSet| -> Vec<String> {
            let origins = set.origins.as_ref().unwrap();
            origins
                .iter()
                .map(|o| o.rsplit('/').take(3).collect::<Vec<_>>().join("<"))
                .collect()
        };
        assert_eq!(names(&ds.train), ["2.png<x<train", "3.png<x<train"]);
        assert_eq!(names(&test), ["0.png<x<test", "2.png<x<test"]);
    }

    #[test]
    fn all_corrupt_is_empty_even_when_skipping() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x.png"), b"nope").unwrap();
        let err = assert_err(
            load(dir.path(), &opts(true)),
            &dir.path().display().to_string(),
        );
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
    }

    #[test]
    fn empty_folder_and_empty_class_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), b"not an image").unwrap();
        let err = assert_err(
            load(dir.path(), &opts(false)),
            &dir.path().display().to_string(),
        );
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");

        save_png(&mkdir(&dir.path().join("full")), "0.png", 2, 2, 0);
        let empty = mkdir(&dir.path().join("hollow"));
        fs::write(empty.join(".keep"), b"").unwrap();
        let err = assert_err(load(dir.path(), &opts(false)), "hollow");
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
    }

    #[test]
    fn missing_path_and_file_path_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = assert_err(load(&dir.path().join("absent"), &opts(false)), "absent");
        assert!(
            matches!(&err, DataError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        let file = save_png(dir.path(), "one.png", 2, 2, 0);
        let err = assert_err(load(&file, &opts(false)), "one.png");
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    }

    #[test]
    fn loose_images_beside_class_folders_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        save_png(&mkdir(&dir.path().join("a")), "0.png", 2, 2, 0);
        save_png(dir.path(), "stray.png", 2, 2, 0);
        let err = assert_err(load(dir.path(), &opts(false)), "stray.png");
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
    }

    /// Loads the JPEG copy of CIFAR-10 in `/work/shared/data` when this machine has it.
    #[test]
    fn real_cifar10_jpeg() {
        let shared = shared_data();
        let dir = shared.join("cifar10-jpeg");
        if !dir.is_dir() {
            println!("skipping real_cifar10_jpeg: {} not found", dir.display());
            return;
        }
        let start = std::time::Instant::now();
        let ds = load(&dir, &FolderOptions::default()).unwrap();
        println!(
            "loaded cifar10-jpeg (60000 JPEGs) in {:.2?}",
            start.elapsed()
        );
        let names = [
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
        assert_eq!(ds.train.class_names, names);
        assert_eq!(
            (
                ds.train.len,
                ds.train.channels,
                ds.train.height,
                ds.train.width
            ),
            (50_000, 3, 32, 32)
        );
        assert_eq!(ds.train.class_counts(), vec![5000; 10]);
        let test = ds.test.as_ref().unwrap();
        assert_eq!(test.len, 10_000);
        assert_eq!(test.class_counts(), vec![1000; 10]);
        assert_eq!(ds.skipped, 0);
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
