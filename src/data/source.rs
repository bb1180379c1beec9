//! Where a batch's images come from: a set decoded in memory ([`ImageSet`]), or files decoded
//! on demand ([`super::stream::StreamingSet`]). The loader asks for image `i` framed for
//! training (with that image's random stream) or for evaluation, and gets bytes of one shape.

use std::borrow::Cow;
use std::path::Path;

use rand_chacha::ChaCha8Rng;

use super::augment::Shape;
use super::{ImageSet, Result};

/// How an image is brought to the training resolution.
pub enum Framing<'r> {
    /// A random crop drawn from the image's own random stream (the stream then goes on to the
    /// loader's augmentation and the task).
    Train(&'r mut ChaCha8Rng),
    /// The deterministic evaluation crop.
    Eval,
}

/// A random-access set of images of one shape, channel-major (`[c][h][w]`) bytes each.
pub trait ImageSource: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The shape of every image this source gives.
    fn shape(&self) -> Shape;
    fn label(&self, i: usize) -> Option<u32>;
    fn class_names(&self) -> &[String];
    /// Image `i`, or `None` when it could not be read and the source skips such files (the
    /// source has recorded it).
    fn image(&self, i: usize, framing: Framing) -> Result<Option<Cow<'_, [u8]>>>;
    /// The training order of `epoch`, for a source that must be read in an order of its own
    /// (tar shards: shards shuffled, then a seeded shuffle buffer); `None`: a uniform shuffle
    /// by the loader. It must be a function of (seed, epoch) alone, so a resumed run sees the
    /// same batches.
    fn epoch_order(&self, _seed: u64, _epoch: u64) -> Option<Vec<usize>> {
        None
    }
    /// Sources that read files on demand and skip bad ones also list them in `path` (a run
    /// directory's `skipped.txt`).
    fn log_skipped_to(&self, _path: &Path) {}
    /// How many files were skipped so far.
    fn skipped(&self) -> usize {
        0
    }
}

/// How [`materialise`] treats an image that cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadImages {
    /// An error (unless the source itself skips such files).
    Fail,
    /// Left out: for samples (statistics, monitoring), so that a broken file is reported where
    /// training meets it, with a checkpoint, rather than before any work.
    LeaveOut,
}

/// The images at `indices` framed for evaluation, decoded into memory (skipped files left out):
/// the few labelled images of a transfer, samples for monitoring.
pub fn materialise(
    source: &dyn ImageSource,
    indices: &[usize],
    bad: BadImages,
) -> Result<ImageSet> {
    use rayon::prelude::*;
    let images: Vec<Option<(Vec<u8>, Option<u32>)>> = indices
        .par_iter()
        .map(|&i| {
            let image = match source.image(i, Framing::Eval) {
                Err(_) if bad == BadImages::LeaveOut => None,
                other => other?,
            };
            Ok(image.map(|img| (img.into_owned(), source.label(i))))
        })
        .collect::<Result<_>>()?;
    let kept: Vec<(Vec<u8>, Option<u32>)> = images.into_iter().flatten().collect();
    let labelled = kept.iter().all(|(_, l)| l.is_some()) && !source.class_names().is_empty();
    let labels: Vec<u32> = kept.iter().filter_map(|(_, l)| *l).collect();
    let [channels, height, width] = source.shape();
    Ok(ImageSet {
        len: kept.len(),
        pixels: kept.into_iter().flat_map(|(p, _)| p).collect(),
        labels: labelled.then_some(labels),
        channels,
        height,
        width,
        class_names: source.class_names().to_vec(),
    })
}

impl ImageSource for ImageSet {
    fn len(&self) -> usize {
        self.len
    }
    fn shape(&self) -> Shape {
        ImageSet::shape(self)
    }
    fn label(&self, i: usize) -> Option<u32> {
        self.labels.as_ref().map(|l| l[i])
    }
    fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// Images in memory are already at their size: no framing, and the random stream is left
    /// untouched, so in-memory runs are what they were before streaming existed.
    fn image(&self, i: usize, _framing: Framing) -> Result<Option<Cow<'_, [u8]>>> {
        Ok(Some(Cow::Borrowed(ImageSet::image(self, i))))
    }
}
