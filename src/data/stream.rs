//! Image files decoded on demand at the training resolution, so memory does not grow with the
//! number of images. The loader's worker threads call [`StreamingSet`] for each image of a
//! batch ahead of the model; the crop is drawn from the image's own random stream, so order and
//! augmentation stay a function of (seed, epoch, index) and a killed run resumes exactly.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::Rng;

use super::augment::{Shape, resized_crop_window};
use super::decode::{self, Pixels};
use super::index::{FileIndex, IndexEntry};
use super::source::{Framing, ImageSource};
use super::{DataError, Result};

/// Headers read to choose between grey and colour when no channel count is given.
const CHANNEL_PROBE: usize = 32;
/// torchvision's aspect-ratio range for random resized crops.
const CROP_RATIO: (f32, f32) = (3.0 / 4.0, 4.0 / 3.0);

/// How files become images of the training resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct Framer {
    /// Side of the square images given to the model.
    pub image_size: usize,
    /// Evaluation: the share of the shorter side kept by the centre crop (torchvision's 224-pixel
    /// recipe: 0.875, resize to 256 then crop 224); 1 keeps the whole shorter side.
    pub eval_crop: f64,
    /// Training: the smallest share of the image's area a random resized crop keeps; at 1 the
    /// crop is the largest square at a random place along the longer side.
    pub crop_min_scale: f64,
    /// Images whose header declares more pixels are refused.
    pub max_pixels: u64,
}

impl Framer {
    /// The shorter side a decode needs so the crop is not enlarged.
    fn need(&self, framing: &Framing) -> u32 {
        let share = match framing {
            Framing::Train(_) => self.crop_min_scale.sqrt(),
            Framing::Eval => self.eval_crop,
        };
        (self.image_size as f64 / share).ceil() as u32
    }

    /// The window (top, left, height, width) of a `w` x `h` image to resize to the output.
    fn window(&self, h: usize, w: usize, framing: Framing) -> (usize, usize, usize, usize) {
        match framing {
            Framing::Eval => {
                let side = ((h.min(w) as f64 * self.eval_crop).round() as usize).max(1);
                ((h - side) / 2, (w - side) / 2, side, side)
            }
            Framing::Train(rng) if self.crop_min_scale >= 1.0 => {
                let side = h.min(w);
                // A square image has one such window: draw nothing, so the image's stream is
                // left as the in-memory loader leaves it.
                let (top, left) = if h > w {
                    (rng.random_range(0..=h - side), 0)
                } else if w > h {
                    (0, rng.random_range(0..=w - side))
                } else {
                    (0, 0)
                };
                (top, left, side, side)
            }
            Framing::Train(rng) => {
                let scale = (self.crop_min_scale as f32, 1.0);
                resized_crop_window([1, h, w], scale, CROP_RATIO, rng)
            }
        }
    }

    /// `pixels` cut and resized to the output square, channel-major.
    pub fn frame(&self, pixels: &Pixels, framing: Framing) -> Vec<u8> {
        let (h, w, c) = (
            pixels.height as usize,
            pixels.width as usize,
            pixels.channels,
        );
        let (top, left, ch, cw) = self.window(h, w, framing);
        let s = self.image_size;
        let square = if (ch, cw) == (s, s) {
            crop_interleaved(&pixels.data, w, c, top, left, s, s)
        } else {
            resize(pixels, (top, left, ch, cw), s)
        };
        to_planes(&square, c)
    }
}

fn crop_interleaved(
    data: &[u8],
    w: usize,
    c: usize,
    top: usize,
    left: usize,
    ch: usize,
    cw: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(ch * cw * c);
    for row in top..top + ch {
        let start = (row * w + left) * c;
        out.extend_from_slice(&data[start..start + cw * c]);
    }
    out
}

/// The window resized to `s` x `s` with a bilinear filter widened when shrinking (antialiased,
/// as PIL's bilinear resize).
fn resize(pixels: &Pixels, (top, left, ch, cw): (usize, usize, usize, usize), s: usize) -> Vec<u8> {
    let kind = if pixels.channels == 1 {
        PixelType::U8
    } else {
        PixelType::U8x3
    };
    let src = ImageRef::new(pixels.width, pixels.height, &pixels.data, kind)
        .expect("decoded buffer matches its size");
    let mut dst = Image::new(s as u32, s as u32, kind);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop(left as f64, top as f64, cw as f64, ch as f64);
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .expect("same pixel type on both sides");
    dst.into_vec()
}

/// Interleaved `[h][w][c]` to channel-major `[c][h][w]`.
fn to_planes(data: &[u8], c: usize) -> Vec<u8> {
    if c == 1 {
        return data.to_vec();
    }
    let plane = data.len() / c;
    let mut out = vec![0u8; data.len()];
    for (p, px) in data.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            out[ch * plane + p] = v;
        }
    }
    out
}

/// An image file's `bytes` (named `path` in errors) to the training resolution: the header
/// checked against the pixel limit, a decode at the smallest scale the framing needs, then the
/// crop. Shared by the readers of folders and of tar shards.
fn decode_framed(
    path: &Path,
    bytes: &[u8],
    framer: &Framer,
    channels: usize,
    framing: Framing,
) -> Result<Vec<u8>> {
    let header = decode::header(path, bytes, framer.max_pixels)?;
    let need = framer.need(&framing);
    let pixels = decode::decode(path, bytes, &header, channels, need)?;
    Ok(framer.frame(&pixels, framing))
}

/// What a source that reads on demand does with an image that fails mid-run: an error, or with
/// `skip_corrupt`, a skip, reported once on stderr and appended to the run directory's
/// `skipped.txt`.
struct Skipper {
    skip_corrupt: bool,
    log: Mutex<SkipLog>,
}

#[derive(Default)]
struct SkipLog {
    seen: HashSet<usize>,
    file: Option<PathBuf>,
}

impl Skipper {
    fn new(skip_corrupt: bool) -> Self {
        Self {
            skip_corrupt,
            log: Mutex::new(SkipLog::default()),
        }
    }

    /// Image `i` failed with `error`: `Ok` when it is to be skipped (and is recorded).
    fn skip(&self, i: usize, error: DataError) -> Result<()> {
        let skippable = matches!(
            error,
            DataError::CorruptImage { .. } | DataError::Format { .. }
        );
        if !(self.skip_corrupt && skippable) {
            return Err(error);
        }
        let mut log = self.log.lock().expect("not poisoned");
        if log.seen.insert(i) {
            eprintln!("warning: skipping {error}");
            if let Some(file) = &log.file {
                let line = format!("{error}\n");
                let written = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                if let Err(e) = written {
                    eprintln!(
                        "warning: cannot record the skipped image in {}: {e}",
                        file.display()
                    );
                }
            }
        }
        Ok(())
    }

    fn log_to(&self, path: &Path) {
        self.log.lock().expect("not poisoned").file = Some(path.to_path_buf());
    }

    fn count(&self) -> usize {
        self.log.lock().expect("not poisoned").seen.len()
    }
}

/// What every source that decodes its files as training asks for them shares (folders, tar
/// shards): its classes, the channels and framing of its images, and what becomes of a file that
/// fails.
pub(crate) struct OnDemand {
    pub class_names: Vec<String>,
    channels: usize,
    framer: Framer,
    skipped: Skipper,
}

impl OnDemand {
    pub(crate) fn new(
        class_names: Vec<String>,
        channels: usize,
        framer: Framer,
        skip_corrupt: bool,
    ) -> Self {
        Self {
            class_names,
            channels,
            framer,
            skipped: Skipper::new(skip_corrupt),
        }
    }

    pub(crate) fn shape(&self) -> Shape {
        let side = self.framer.image_size;
        [self.channels, side, side]
    }

    /// Image `i` from `bytes` (read from `path`, which names it in errors), decoded and
    /// framed; `None` when it failed and is skipped.
    pub(crate) fn image(
        &self,
        i: usize,
        path: &Path,
        bytes: Result<Vec<u8>>,
        framing: Framing,
    ) -> Result<Option<Cow<'static, [u8]>>> {
        let framed =
            bytes.and_then(|b| decode_framed(path, &b, &self.framer, self.channels, framing));
        match framed {
            Ok(image) => Ok(Some(Cow::Owned(image))),
            Err(e) => self.skipped.skip(i, e).map(|()| None),
        }
    }

    pub(crate) fn log_skipped_to(&self, path: &Path) {
        self.skipped.log_to(path);
    }

    pub(crate) fn skipped(&self) -> usize {
        self.skipped.count()
    }
}

/// The images of one split of an indexed folder, read on demand.
pub struct StreamingSet {
    root: PathBuf,
    entries: Vec<IndexEntry>,
    on_demand: OnDemand,
}

impl StreamingSet {
    /// The training split of `index` (`test: false`) or its test split.
    pub fn new(
        index: &FileIndex,
        entries: Vec<IndexEntry>,
        channels: usize,
        framer: Framer,
        skip_corrupt: bool,
    ) -> Self {
        Self {
            root: index.root.clone(),
            entries,
            on_demand: OnDemand::new(index.class_names.clone(), channels, framer, skip_corrupt),
        }
    }

    pub fn path(&self, i: usize) -> PathBuf {
        self.root.join(&self.entries[i].path)
    }

    /// Reads file `i`, checking it is the file the index saw.
    fn read(&self, i: usize) -> Result<Vec<u8>> {
        let entry = &self.entries[i];
        let path = self.root.join(&entry.path);
        let bad = |problem: String| DataError::CorruptImage {
            path: path.clone(),
            problem,
        };
        let meta = fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                bad("the file is gone (removed after the folder was indexed)".into())
            }
            _ => DataError::io(&path, e),
        })?;
        let modified = super::index::modified_ns(&meta);
        if meta.len() != entry.bytes || modified != entry.modified {
            return Err(bad(format!(
                "the file changed after the folder was indexed ({} bytes, indexed at {})",
                meta.len(),
                entry.bytes
            )));
        }
        fs::read(&path).map_err(|e| DataError::io(&path, e))
    }
}

impl ImageSource for StreamingSet {
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn shape(&self) -> Shape {
        self.on_demand.shape()
    }
    fn label(&self, i: usize) -> Option<u32> {
        self.entries[i].label
    }
    fn class_names(&self) -> &[String] {
        &self.on_demand.class_names
    }
    fn origin(&self, i: usize) -> Option<String> {
        Some(self.path(i).to_string_lossy().into_owned())
    }
    fn image(&self, i: usize, framing: Framing) -> Result<Option<Cow<'_, [u8]>>> {
        self.on_demand
            .image(i, &self.path(i), self.read(i), framing)
    }
    fn log_skipped_to(&self, path: &Path) {
        self.on_demand.log_skipped_to(path);
    }
    fn skipped(&self) -> usize {
        self.on_demand.skipped()
    }
}

/// 1 when the first images' headers are all grey, otherwise 3 (colour wins, as in the
/// in-memory reader); unreadable headers are passed over here and reported when decoded.
pub fn probe_channels(index: &FileIndex, max_pixels: u64) -> usize {
    let grey = index
        .train
        .iter()
        .take(CHANNEL_PROBE)
        .filter_map(|e| {
            let path = index.full_path(e);
            let bytes = fs::read(&path).ok()?;
            decode::header(&path, &bytes, max_pixels).ok()
        })
        .all(|h| !h.colour);
    if grey { 1 } else { 3 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn framer(size: usize) -> Framer {
        Framer {
            image_size: size,
            eval_crop: 1.0,
            crop_min_scale: 1.0,
            max_pixels: decode::DEFAULT_MAX_PIXELS,
        }
    }

    fn gradient(w: u32, h: u32) -> Pixels {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[x as u8, y as u8, 7]);
            }
        }
        Pixels {
            width: w,
            height: h,
            channels: 3,
            data,
        }
    }

    #[test]
    fn an_image_at_the_size_is_passed_through_without_drawing() {
        let px = gradient(8, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let before = rng.clone();
        let out = framer(8).frame(&px, Framing::Train(&mut rng));
        assert_eq!(rng, before, "the random stream must be untouched");
        assert_eq!(&out[..8], &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(out[64 + 8], 1, "green plane, row 1");
        assert!(out[128..].iter().all(|&v| v == 7));
    }

    #[test]
    fn eval_centre_crop_and_train_square_crop() {
        let px = gradient(12, 8);
        let f = Framer {
            eval_crop: 0.5,
            ..framer(4)
        };
        // Shorter side 8, half kept: the centre 4 x 4 window, columns 4-7 and rows 2-5.
        let out = f.frame(&px, Framing::Eval);
        assert_eq!(&out[..4], &[4, 5, 6, 7]);
        assert_eq!(out[16], 2, "green plane starts at row 2");
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let out = framer(8).frame(&px, Framing::Train(&mut rng));
        // An 8 x 8 square somewhere along the 12 columns.
        let left = out[0] as usize;
        assert!(left <= 4);
        assert_eq!(
            &out[..8],
            &(left as u8..left as u8 + 8).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn random_resized_crop_gives_the_output_size() {
        let px = gradient(64, 48);
        let f = Framer {
            crop_min_scale: 0.08,
            ..framer(16)
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let a = f.frame(&px, Framing::Train(&mut rng));
        let b = f.frame(&px, Framing::Train(&mut rng));
        assert_eq!(a.len(), 3 * 16 * 16);
        assert_ne!(a, b, "two draws give two crops");
    }
}
