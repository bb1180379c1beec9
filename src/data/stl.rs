//! STL-10 in its binary version (`stl10_binary.tar.gz` unpacked).
//!
//! `train_X.bin`, `test_X.bin` and `unlabeled_X.bin` are flat arrays of 3x96x96 images with no
//! header: each image is three planes (red, green, blue), each plane stored column-major, so
//! reading transposes every plane to the row-major `[c][h][w]` of [`ImageSet`]. `train_y.bin`
//! and `test_y.bin` hold one byte per image, the label 1-10 (stored here as 0-9), and
//! `class_names.txt` names the classes one per line.
//!
//! The training (5,000) and test (8,000) splits are read into memory. The unlabelled split
//! (100,000 images, 2.76 GB decoded) never is: [`StlUnlabelled`] reads image `i` with a
//! positional read at `i * 27,648` when the loader asks for it.

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::augment::Shape;
use super::decode::Pixels;
use super::source::{BadImages, Framing, ImageSource, materialise};
use super::stream::Framer;
use super::{DataError, Dataset, Format, ImageSet, Result, split};

const CHANNELS: usize = 3;
/// Side of every STL-10 image.
pub const SIDE: usize = 96;
const PLANE: usize = SIDE * SIDE;
/// Bytes of one image in the `*_X.bin` files.
pub const IMAGE_BYTES: usize = CHANNELS * PLANE;
const CLASSES: usize = 10;

/// The folder the official archive unpacks to; the files may also sit directly in the folder.
const SUBDIR: &str = "stl10_binary";
const TRAIN_X: &str = "train_X.bin";
const TRAIN_Y: &str = "train_y.bin";
const TEST_X: &str = "test_X.bin";
const TEST_Y: &str = "test_y.bin";
const UNLABELLED_X: &str = "unlabeled_X.bin";
const NAMES_FILE: &str = "class_names.txt";

/// The official class names, for a copy without `class_names.txt`.
const DEFAULT_NAMES: [&str; CLASSES] = [
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
];

/// The folder holding `train_X.bin`: `dir` itself or the archive's folder inside it.
fn root(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join(SUBDIR)]
        .into_iter()
        .find(|root| root.join(TRAIN_X).is_file())
}

/// Whether `dir` (or its `stl10_binary/` subfolder) holds STL-10's `train_X.bin`.
pub fn detect(dir: &Path) -> bool {
    root(dir).is_some()
}

fn root_or_error(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(match fs::metadata(dir) {
            Err(e) => DataError::io(dir, e),
            Ok(_) => DataError::format(dir, "is not a folder"),
        });
    }
    root(dir).ok_or_else(|| DataError::Empty {
        path: dir.to_path_buf(),
        problem: format!("no STL-10 {TRAIN_X} here or in {SUBDIR}/"),
    })
}

/// Loads STL-10's training split (`train_X.bin`, `train_y.bin`) and, when `test_X.bin` is there,
/// its test split, from `dir` or its `stl10_binary/` subfolder; never the unlabelled split.
/// Class names come from `class_names.txt` when present, otherwise the official names.
pub fn load_dir(dir: &Path) -> Result<Dataset> {
    let root = root_or_error(dir)?;
    let class_names = read_class_names(&root)?;
    let train = read_split(&root.join(TRAIN_X), &root.join(TRAIN_Y), &class_names)?;
    let test_x = root.join(TEST_X);
    let test = if test_x.is_file() {
        Some(read_split(&test_x, &root.join(TEST_Y), &class_names)?)
    } else {
        None
    };
    Ok(Dataset {
        format: Format::Stl10,
        source: dir.display().to_string(),
        train,
        test,
        skipped: 0,
    })
}

/// [`load_dir`], with both splits framed to `framer.image_size` with the evaluation crop when
/// that is not STL-10's 96 pixels (for the commands that hold their images in memory).
pub fn load_framed(dir: &Path, framer: &Framer) -> Result<Dataset> {
    let mut ds = load_dir(dir)?;
    if framer.image_size != SIDE {
        let frame = |set: ImageSet| {
            let all: Vec<usize> = (0..set.len).collect();
            materialise(
                &StlImages::new(set, None, framer.clone()),
                &all,
                BadImages::Fail,
            )
        };
        ds.train = frame(ds.train)?;
        ds.test = ds.test.map(frame).transpose()?;
    }
    Ok(ds)
}

/// The images pretraining reads: the training split (in memory) followed by the unlabelled
/// split (read on demand) as one source of 105,000 images, and the test split; both framed by
/// `framer`. `None` when there is no `unlabeled_X.bin`: the labelled splits then load into
/// memory like any other data set's. A copy without `test_X.bin` holds out the same share of
/// the training split that [`crate::pipeline::load_data`] holds out, so pretraining never sees
/// the images a transfer is scored on.
pub fn open_pretraining(
    dir: &Path,
    framer: &Framer,
) -> Result<Option<(StlImages, Option<StlImages>)>> {
    let root = root_or_error(dir)?;
    let unlabelled_path = root.join(UNLABELLED_X);
    if !unlabelled_path.is_file() {
        return Ok(None);
    }
    let unlabelled = StlUnlabelled::open(&unlabelled_path, framer.clone())?;
    let Dataset {
        mut train, test, ..
    } = load_dir(dir)?;
    let test = match test {
        Some(test) => test,
        None => {
            let (kept, held_out) = split::holdout(&train, 0.2, 0);
            train = kept;
            held_out
        }
    };
    Ok(Some((
        StlImages::new(train, Some(unlabelled), framer.clone()),
        Some(StlImages::new(test, None, framer.clone())),
    )))
}

/// What `pretext info` adds for the unlabelled split: its image count (checked to be a whole
/// number of images), or nothing when the folder has no `unlabeled_X.bin`.
pub fn describe_unlabelled(dir: &Path) -> Result<String> {
    let root = root_or_error(dir)?;
    let path = root.join(UNLABELLED_X);
    if !path.is_file() {
        return Ok(String::new());
    }
    let count = image_count(&path)?;
    Ok(format!(
        "unlabelled: {count} images, {CHANNELS}x{SIDE}x{SIDE} (channels x height x width), read on demand\n"
    ))
}

/// The number of images in an `*_X.bin` file, from its length: an empty file or one that is
/// not a whole number of images is an error naming it.
fn image_count(path: &Path) -> Result<usize> {
    let bytes = fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    if bytes == 0 {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            problem: "holds no images".into(),
        });
    }
    let image = IMAGE_BYTES as u64;
    if bytes % image != 0 {
        return Err(DataError::format(
            path,
            format!(
                "truncated: {bytes} bytes is not a whole number of {IMAGE_BYTES}-byte images (3x96x96; {} images and {} bytes over)",
                bytes / image,
                bytes % image
            ),
        ));
    }
    usize::try_from(bytes / image)
        .map_err(|_| DataError::format(path, format!("{bytes} bytes is too large to read here")))
}

/// One image of a file, planes column-major, appended to `out` with its planes row-major.
fn transpose_into(raw: &[u8], out: &mut Vec<u8>) {
    for plane in raw.chunks_exact(PLANE) {
        for row in 0..SIDE {
            out.extend((0..SIDE).map(|col| plane[col * SIDE + row]));
        }
    }
}

/// One image of a file, interleaved (`[h][w][c]`), as the framer takes it.
fn interleave(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(IMAGE_BYTES);
    for row in 0..SIDE {
        for col in 0..SIDE {
            for c in 0..CHANNELS {
                out.push(raw[c * PLANE + col * SIDE + row]);
            }
        }
    }
    out
}

/// Channel-major row-major `[c][h][w]` to interleaved `[h][w][c]`.
fn planes_to_interleaved(planes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(IMAGE_BYTES);
    for p in 0..PLANE {
        for c in 0..CHANNELS {
            out.push(planes[c * PLANE + p]);
        }
    }
    out
}

/// Whether `framer` gives a 96-pixel image back unchanged (and draws nothing): the output is
/// 96 pixels and the window the whole image, as [`Framer::frame`] chooses it.
fn is_identity(framer: &Framer, framing: &Framing) -> bool {
    framer.image_size == SIDE
        && match framing {
            Framing::Train(_) => framer.crop_min_scale >= 1.0,
            Framing::Eval => (SIDE as f64 * framer.eval_crop).round() as usize == SIDE,
        }
}

fn framed(framer: &Framer, interleaved: Vec<u8>, framing: Framing) -> Vec<u8> {
    let pixels = Pixels {
        width: SIDE as u32,
        height: SIDE as u32,
        channels: CHANNELS,
        data: interleaved,
    };
    framer.frame(&pixels, framing)
}

/// Reads one labelled split: its images, transposed, and its labels, checked.
fn read_split(x_path: &Path, y_path: &Path, class_names: &[String]) -> Result<ImageSet> {
    let n = image_count(x_path)?;
    let labels = read_labels(y_path, n, x_path)?;
    // Sized from the file's real length (checked above), so no header can make it huge.
    let mut pixels = Vec::with_capacity(n * IMAGE_BYTES);
    let mut file = File::open(x_path).map_err(|e| DataError::io(x_path, e))?;
    let mut raw = vec![0u8; IMAGE_BYTES];
    for _ in 0..n {
        file.read_exact(&mut raw)
            .map_err(|e| DataError::io(x_path, e))?;
        transpose_into(&raw, &mut pixels);
    }
    Ok(ImageSet {
        pixels,
        labels: Some(labels),
        len: n,
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
        class_names: class_names.to_vec(),
        origins: Some(super::record_origins(x_path, n)),
    })
}

/// `n` labels 1-10, one byte each, as 0-9.
fn read_labels(path: &Path, n: usize, x_path: &Path) -> Result<Vec<u32>> {
    let x_name = x_path.file_name().unwrap_or_default().to_string_lossy();
    let count_problem = |found: u64| {
        DataError::format(
            path,
            format!("holds {found} labels for the {n} images of {x_name} (one byte per image)"),
        )
    };
    let bytes = fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    if bytes != n as u64 {
        return Err(count_problem(bytes));
    }
    let mut data = Vec::with_capacity(n);
    File::open(path)
        .and_then(|f| f.take(n as u64 + 1).read_to_end(&mut data))
        .map_err(|e| DataError::io(path, e))?;
    if data.len() != n {
        return Err(count_problem(data.len() as u64));
    }
    data.iter()
        .enumerate()
        .map(|(i, &label)| {
            if (1..=CLASSES as u8).contains(&label) {
                Ok(u32::from(label) - 1)
            } else {
                Err(DataError::format(
                    path,
                    format!("image {i}: label {label} out of range (1..={CLASSES})"),
                ))
            }
        })
        .collect()
}

/// One name per non-blank line.
fn read_class_names(root: &Path) -> Result<Vec<String>> {
    let path = root.join(NAMES_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(DEFAULT_NAMES.iter().map(|s| s.to_string()).collect());
        }
        Err(e) => return Err(DataError::io(path, e)),
    };
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != CLASSES {
        return Err(DataError::format(
            path,
            format!(
                "expected {CLASSES} class names (one per line), found {}",
                names.len()
            ),
        ));
    }
    Ok(names)
}

/// STL-10's unlabelled split, read image by image from an open file and framed like a streamed
/// folder's images.
pub struct StlUnlabelled {
    path: PathBuf,
    file: File,
    len: usize,
    framer: Framer,
}

impl StlUnlabelled {
    /// Opens `unlabeled_X.bin`; a file that is empty or not a whole number of images is refused
    /// here, naming it, rather than mid-run.
    pub fn open(path: &Path, framer: Framer) -> Result<Self> {
        let len = image_count(path)?;
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            len,
            framer,
        })
    }

    /// The bytes of image `i` as they are in the file (planes column-major).
    fn read_raw(&self, i: usize) -> Result<Vec<u8>> {
        let offset = i as u64 * IMAGE_BYTES as u64;
        let mut raw = vec![0u8; IMAGE_BYTES];
        self.file.read_exact_at(&mut raw, offset).map_err(|e| {
            let problem =
                io::Error::new(e.kind(), format!("reading image {i} at byte {offset}: {e}"));
            DataError::io(&self.path, problem)
        })?;
        Ok(raw)
    }

    fn framed(&self, i: usize, framing: Framing) -> Result<Vec<u8>> {
        let raw = self.read_raw(i)?;
        Ok(if is_identity(&self.framer, &framing) {
            let mut planes = Vec::with_capacity(IMAGE_BYTES);
            transpose_into(&raw, &mut planes);
            planes
        } else {
            framed(&self.framer, interleave(&raw), framing)
        })
    }
}

impl ImageSource for StlUnlabelled {
    fn len(&self) -> usize {
        self.len
    }
    fn shape(&self) -> Shape {
        [CHANNELS, self.framer.image_size, self.framer.image_size]
    }
    fn label(&self, _i: usize) -> Option<u32> {
        None
    }
    fn class_names(&self) -> &[String] {
        &[]
    }
    fn origin(&self, i: usize) -> Option<String> {
        Some(super::record_origin(&self.path.display().to_string(), i))
    }
    fn image(&self, i: usize, framing: Framing) -> Result<Option<Cow<'_, [u8]>>> {
        self.framed(i, framing).map(|image| Some(Cow::Owned(image)))
    }
}

/// STL-10 images at the training resolution: labelled images held in memory, then, for
/// pretraining, the unlabelled split read on demand (indices from `labelled.len` on).
pub struct StlImages {
    labelled: ImageSet,
    unlabelled: Option<StlUnlabelled>,
    framer: Framer,
}

impl StlImages {
    /// `unlabelled`, when given, must frame with the same `framer`.
    pub fn new(labelled: ImageSet, unlabelled: Option<StlUnlabelled>, framer: Framer) -> Self {
        debug_assert!(unlabelled.as_ref().is_none_or(|u| u.framer == framer));
        Self {
            labelled,
            unlabelled,
            framer,
        }
    }

    /// How many of the images are labelled (they come first).
    pub fn labelled_len(&self) -> usize {
        self.labelled.len
    }
}

impl ImageSource for StlImages {
    fn len(&self) -> usize {
        self.labelled.len + self.unlabelled.as_ref().map_or(0, |u| u.len)
    }
    fn shape(&self) -> Shape {
        [CHANNELS, self.framer.image_size, self.framer.image_size]
    }
    fn label(&self, i: usize) -> Option<u32> {
        match &self.labelled.labels {
            Some(labels) if i < self.labelled.len => Some(labels[i]),
            _ => None,
        }
    }
    fn class_names(&self) -> &[String] {
        &self.labelled.class_names
    }
    fn origin(&self, i: usize) -> Option<String> {
        let n = self.labelled.len;
        match &self.unlabelled {
            Some(unlabelled) if i >= n => unlabelled.origin(i - n),
            _ => self.labelled.origin(i),
        }
    }
    fn image(&self, i: usize, framing: Framing) -> Result<Option<Cow<'_, [u8]>>> {
        let n = self.labelled.len;
        if i >= n {
            let unlabelled = self
                .unlabelled
                .as_ref()
                .expect("index within the source's length");
            return unlabelled.image(i - n, framing);
        }
        let planes = self.labelled.image(i);
        Ok(Some(if is_identity(&self.framer, &framing) {
            Cow::Borrowed(planes)
        } else {
            Cow::Owned(framed(&self.framer, planes_to_interleaved(planes), framing))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// The value of pixel (channel, row, column) of image `i`: every coordinate changes it.
    fn value(i: usize, c: usize, row: usize, col: usize) -> u8 {
        ((i * 11 + c * 37 + row * 3 + col) % 256) as u8
    }

    /// `n` images in the file layout: planes column-major.
    fn images_file(n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n * IMAGE_BYTES);
        for i in 0..n {
            for c in 0..CHANNELS {
                for col in 0..SIDE {
                    for row in 0..SIDE {
                        out.push(value(i, c, row, col));
                    }
                }
            }
        }
        out
    }

    /// Image `i` as [`ImageSet`] holds it: `[c][h][w]`.
    fn expected(i: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(IMAGE_BYTES);
        for c in 0..CHANNELS {
            for row in 0..SIDE {
                for col in 0..SIDE {
                    out.push(value(i, c, row, col));
                }
            }
        }
        out
    }

    fn framer(size: usize) -> Framer {
        Framer {
            image_size: size,
            eval_crop: 1.0,
            crop_min_scale: 1.0,
            max_pixels: super::super::decode::DEFAULT_MAX_PIXELS,
        }
    }

    /// An STL-10 folder: `train` and `test` labels (1-10), `unlabelled` images.
    fn write_stl(dir: &Path, train: &[u8], test: &[u8], unlabelled: usize) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(TRAIN_X), images_file(train.len())).unwrap();
        fs::write(dir.join(TRAIN_Y), train).unwrap();
        fs::write(dir.join(TEST_X), images_file(test.len())).unwrap();
        fs::write(dir.join(TEST_Y), test).unwrap();
        if unlabelled > 0 {
            fs::write(dir.join(UNLABELLED_X), images_file(unlabelled)).unwrap();
        }
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
    fn reads_pixels_in_place_with_labels_shifted_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_stl(d, &[1, 10, 4], &[7, 2], 0);
        assert!(detect(d));
        let ds = load_dir(d).unwrap();
        assert_eq!(ds.format, Format::Stl10);
        let t = &ds.train;
        assert_eq!((t.len, t.channels, t.height, t.width), (3, 3, 96, 96));
        assert_eq!(t.labels.as_deref(), Some(&[0, 9, 3][..]));
        for i in 0..3 {
            assert_eq!(t.image(i), &expected(i)[..], "train image {i}");
        }
        // Spot checks of single pixels: (c, row, col) lands at c*96*96 + row*96 + col.
        assert_eq!(t.image(0)[PLANE + 5 * SIDE + 2], value(0, 1, 5, 2));
        assert_eq!(t.image(2)[2 * PLANE + 95 * SIDE], value(2, 2, 95, 0));
        assert_eq!(t.class_names, DEFAULT_NAMES);
        let test = ds.test.unwrap();
        assert_eq!(test.labels.as_deref(), Some(&[6, 1][..]));
        assert_eq!(test.image(1), &expected(1)[..]);
    }

    #[test]
    fn archive_subfolder_and_class_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join(SUBDIR);
        write_stl(&sub, &[3], &[], 0);
        fs::remove_file(sub.join(TEST_X)).unwrap();
        let names: String = (0..10).map(|i| format!("kind{i}\n")).collect::<String>() + "\n";
        fs::write(sub.join(NAMES_FILE), names).unwrap();
        assert!(detect(dir.path()));
        let ds = load_dir(dir.path()).unwrap();
        assert!(ds.test.is_none());
        assert_eq!(ds.train.class_names[2], "kind2");
        assert_eq!(ds.train.labels.as_deref(), Some(&[2][..]));
        assert_eq!(describe_unlabelled(dir.path()).unwrap(), "");

        fs::write(sub.join(NAMES_FILE), "cat\ndog\n").unwrap();
        assert_err_names(
            load_dir(dir.path()).unwrap_err(),
            NAMES_FILE,
            "expected 10 class names",
        );
    }

    #[test]
    fn bad_sizes_counts_and_labels_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_stl(d, &[1, 2], &[3], 0);

        let mut short = images_file(2);
        short.truncate(IMAGE_BYTES + 100);
        fs::write(d.join(TRAIN_X), &short).unwrap();
        let err = load_dir(d).unwrap_err();
        assert!(matches!(err, DataError::Format { .. }), "{err:?}");
        assert_err_names(err, TRAIN_X, "not a whole number of 27648-byte images");

        fs::write(d.join(TRAIN_X), []).unwrap();
        assert_err_names(load_dir(d).unwrap_err(), TRAIN_X, "no images");

        fs::write(d.join(TRAIN_X), images_file(2)).unwrap();
        fs::write(d.join(TRAIN_Y), [1, 2, 3]).unwrap();
        assert_err_names(
            load_dir(d).unwrap_err(),
            TRAIN_Y,
            "holds 3 labels for the 2 images of train_X.bin",
        );
        fs::write(d.join(TRAIN_Y), [1, 0]).unwrap();
        assert_err_names(
            load_dir(d).unwrap_err(),
            TRAIN_Y,
            "image 1: label 0 out of range",
        );
        fs::write(d.join(TRAIN_Y), [1, 2]).unwrap();
        fs::write(d.join(TEST_Y), [11]).unwrap();
        assert_err_names(
            load_dir(d).unwrap_err(),
            TEST_Y,
            "image 0: label 11 out of range",
        );
        fs::remove_file(d.join(TEST_Y)).unwrap();
        let err = load_dir(d).unwrap_err();
        assert!(
            matches!(&err, DataError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert_err_names(err, TEST_Y, "");
        fs::write(d.join(TEST_Y), [10]).unwrap();
        assert!(load_dir(d).is_ok());

        let mut short = images_file(3);
        short.pop();
        fs::write(d.join(UNLABELLED_X), &short).unwrap();
        let path = d.join(UNLABELLED_X);
        assert_err_names(
            StlUnlabelled::open(&path, framer(96)).err().unwrap(),
            UNLABELLED_X,
            "truncated",
        );
        assert_err_names(
            describe_unlabelled(d).unwrap_err(),
            UNLABELLED_X,
            "truncated",
        );
        assert_err_names(
            open_pretraining(d, &framer(96)).err().unwrap(),
            UNLABELLED_X,
            "truncated",
        );
    }

    #[test]
    fn no_train_file_is_an_error_naming_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(UNLABELLED_X), images_file(1)).unwrap();
        assert!(!detect(dir.path()));
        let err = load_dir(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
        assert_err_names(err, &dir.path().display().to_string(), "train_X.bin");
        let err = load_dir(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    }

    #[test]
    fn unlabelled_images_are_read_on_demand_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(UNLABELLED_X);
        fs::write(&path, images_file(4)).unwrap();
        let set = StlUnlabelled::open(&path, framer(96)).unwrap();
        assert_eq!((set.len(), set.shape()), (4, [3, 96, 96]));
        assert_eq!(set.label(0), None);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let before = rng.clone();
        for i in [3, 0, 2] {
            let image = set.image(i, Framing::Train(&mut rng)).unwrap().unwrap();
            assert_eq!(&image[..], &expected(i)[..], "unlabelled image {i}");
        }
        assert_eq!(rng, before, "the identity framing draws nothing");
        assert_eq!(
            &set.image(1, Framing::Eval).unwrap().unwrap()[..],
            &expected(1)[..]
        );

        // The file shrinking after it was opened is an error naming it, not a panic.
        fs::write(&path, images_file(2)).unwrap();
        let err = set.image(3, Framing::Eval).unwrap_err();
        assert_err_names(err, UNLABELLED_X, "reading image 3");
    }

    #[test]
    fn the_identity_shortcut_is_what_the_framer_gives() {
        let raw = &images_file(1);
        let f = framer(96);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        assert!(is_identity(&f, &Framing::Train(&mut rng)));
        assert_eq!(
            framed(&f, interleave(raw), Framing::Train(&mut rng)),
            expected(0)
        );
        assert_eq!(planes_to_interleaved(&expected(0)), interleave(raw));
        let cropped = Framer {
            eval_crop: 0.875,
            ..framer(96)
        };
        assert!(!is_identity(&cropped, &Framing::Eval));
        let scaled = Framer {
            crop_min_scale: 0.5,
            ..framer(96)
        };
        assert!(is_identity(&scaled, &Framing::Eval));
        assert!(!is_identity(&scaled, &Framing::Train(&mut rng)));
    }

    #[test]
    fn other_sizes_are_framed_like_streamed_folders() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_stl(d, &[1, 2], &[5], 3);
        let f = framer(48);
        let reference =
            |i: usize, framing: Framing| framed(&f, planes_to_interleaved(&expected(i)), framing);

        let (train, test) = open_pretraining(d, &f).unwrap().unwrap();
        assert_eq!(
            (train.len(), train.labelled_len(), train.shape()),
            (5, 2, [3, 48, 48])
        );
        assert_eq!((train.label(1), train.label(2)), (Some(1), None));
        // Index 3 is the second unlabelled image, whose pixels are those of file image 1.
        let image = train.image(3, Framing::Eval).unwrap().unwrap();
        assert_eq!(image.len(), 3 * 48 * 48);
        assert_eq!(&image[..], &reference(1, Framing::Eval)[..]);
        assert_eq!(
            &train.image(0, Framing::Eval).unwrap().unwrap()[..],
            &reference(0, Framing::Eval)[..]
        );
        let test = test.unwrap();
        assert_eq!((test.len(), test.label(0)), (1, Some(4)));

        // A random crop: the same draw from the same stream as the framer's own.
        let f = Framer {
            crop_min_scale: 0.3,
            ..f
        };
        let (train, _) = open_pretraining(d, &f).unwrap().unwrap();
        let mut a = ChaCha8Rng::seed_from_u64(4);
        let mut b = a.clone();
        let got = train.image(4, Framing::Train(&mut a)).unwrap().unwrap();
        let want = framed(
            &f,
            planes_to_interleaved(&expected(2)),
            Framing::Train(&mut b),
        );
        assert_eq!(&got[..], &want[..]);
        assert_eq!(a, b);

        // The in-memory commands get the labelled splits framed for evaluation.
        let ds = load_framed(d, &framer(48)).unwrap();
        assert_eq!((ds.train.len, ds.train.height, ds.train.width), (2, 48, 48));
        assert_eq!(ds.train.labels.as_deref(), Some(&[0, 1][..]));
        assert_eq!(
            ds.test.as_ref().unwrap().image(0),
            &framed(
                &framer(48),
                planes_to_interleaved(&expected(0)),
                Framing::Eval
            )[..]
        );
        assert_eq!(
            load_framed(d, &framer(96)).unwrap().train.image(1),
            &expected(1)[..]
        );
    }

    #[test]
    fn pretraining_reads_train_then_unlabelled_and_holds_out_without_a_test_split() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Three images of each class, so the held-out share below is one of each.
        let labels: Vec<u8> = (0..30).map(|i| i % 10 + 1).collect();
        write_stl(d, &labels, &[1], 2);
        let (train, test) = open_pretraining(d, &framer(96)).unwrap().unwrap();
        assert_eq!(train.len(), 32);
        assert_eq!(train.class_names().len(), 10);
        let image = train.image(31, Framing::Eval).unwrap().unwrap();
        assert_eq!(
            &image[..],
            &expected(1)[..],
            "the last image is unlabelled image 1"
        );
        assert!(matches!(
            train.image(4, Framing::Eval).unwrap().unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(test.unwrap().len(), 1);
        let sample = materialise(&train, &[0, 31], BadImages::Fail).unwrap();
        assert!(
            sample.labels.is_none(),
            "a sample mixing in unlabelled images is unlabelled"
        );

        fs::remove_file(d.join(TEST_X)).unwrap();
        let (train, test) = open_pretraining(d, &framer(96)).unwrap().unwrap();
        let test = test.unwrap();
        assert_eq!((train.labelled_len(), test.len()), (20, 10));
        assert_eq!(train.len(), 22);
        assert!(
            describe_unlabelled(d)
                .unwrap()
                .starts_with("unlabelled: 2 images, 3x96x96")
        );

        fs::remove_file(d.join(UNLABELLED_X)).unwrap();
        assert!(open_pretraining(d, &framer(96)).unwrap().is_none());
    }
}
