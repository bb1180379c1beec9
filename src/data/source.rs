//! Where a batch's images come from: a set decoded in memory ([`ImageSet`]), or files decoded
//! on demand ([`super::stream::StreamingSet`]). The loader asks for image `i` framed for
//! training (with that image's random stream) or for evaluation, and gets bytes of one shape.

use std::borrow::Cow;
use std::path::Path;
use std::sync::mpsc::SyncSender;

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
    /// Where image `i` is read from, as `pretext embed`'s `files.csv` names it (see
    /// [`ImageSet::origins`]); `None` when unknown.
    fn origin(&self, _i: usize) -> Option<String> {
        None
    }
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
    let images: Vec<Option<(Vec<u8>, usize)>> = indices
        .par_iter()
        .map(|&i| {
            let image = match source.image(i, Framing::Eval) {
                Err(_) if bad == BadImages::LeaveOut => None,
                other => other?,
            };
            Ok(image.map(|img| (img.into_owned(), i)))
        })
        .collect::<Result<_>>()?;
    let kept: Vec<(Vec<u8>, usize)> = images.into_iter().flatten().collect();
    let labels: Option<Vec<u32>> = kept.iter().map(|&(_, i)| source.label(i)).collect();
    let labelled = !source.class_names().is_empty();
    let origins: Option<Vec<String>> = kept.iter().map(|&(_, i)| source.origin(i)).collect();
    let [channels, height, width] = source.shape();
    Ok(ImageSet {
        len: kept.len(),
        pixels: kept.into_iter().flat_map(|(p, _)| p).collect(),
        labels: labels.filter(|_| labelled),
        channels,
        height,
        width,
        class_names: source.class_names().to_vec(),
        origins,
    })
}

/// Decodes `set` in order (framed for evaluation, on `pool`) into sets of `chunk` images, the
/// last one smaller, and sends them until the set is done or the receiver is gone. Files the
/// source skips are left out and made up from the next ones, so every set but the last is
/// whole: a consumer that works in batches dividing `chunk` sees the batches it would see with
/// the whole set in memory. A file that fails is sent as the error, and nothing after it.
pub fn decode_in_chunks(
    set: &dyn ImageSource,
    chunk: usize,
    pool: &rayon::ThreadPool,
    sender: SyncSender<Result<ImageSet>>,
) {
    let chunk = chunk.max(1);
    let mut next = 0;
    let mut pending: Option<ImageSet> = None;
    while next < set.len() {
        let have = pending.as_ref().map_or(0, |p| p.len);
        let rows: Vec<usize> = (next..set.len().min(next + chunk - have)).collect();
        next += rows.len();
        let decoded = match pool.install(|| materialise(set, &rows, BadImages::Fail)) {
            Ok(decoded) => decoded,
            Err(e) => {
                let _ = sender.send(Err(e));
                return;
            }
        };
        match &mut pending {
            Some(p) => p.append(decoded),
            None => pending = Some(decoded),
        }
        if let Some(full) = pending.take_if(|p| p.len == chunk)
            && sender.send(Ok(full)).is_err()
        {
            return;
        }
    }
    if let Some(last) = pending.filter(|p| p.len > 0) {
        let _ = sender.send(Ok(last));
    }
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
    fn origin(&self, i: usize) -> Option<String> {
        self.origins.as_ref().map(|o| o[i].clone())
    }
    /// Images in memory are already at their size: no framing, and the random stream is left
    /// untouched, so in-memory runs are what they were before streaming existed.
    fn image(&self, i: usize, _framing: Framing) -> Result<Option<Cow<'_, [u8]>>> {
        Ok(Some(Cow::Borrowed(ImageSet::image(self, i))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DataError;

    /// Image `i` is one byte, `i`; some are skipped, one may fail.
    struct Numbered {
        len: usize,
        skipped: Vec<usize>,
        fails: Option<usize>,
        classes: Vec<String>,
    }

    impl ImageSource for Numbered {
        fn len(&self) -> usize {
            self.len
        }
        fn shape(&self) -> Shape {
            [1, 1, 1]
        }
        fn label(&self, i: usize) -> Option<u32> {
            Some(i as u32 % 2)
        }
        fn class_names(&self) -> &[String] {
            &self.classes
        }
        fn origin(&self, i: usize) -> Option<String> {
            Some(format!("f{i}"))
        }
        fn image(&self, i: usize, _framing: Framing) -> Result<Option<Cow<'_, [u8]>>> {
            if self.fails == Some(i) {
                return Err(DataError::Other(format!("f{i} is broken")));
            }
            Ok((!self.skipped.contains(&i)).then(|| Cow::Owned(vec![i as u8])))
        }
    }

    fn chunks(set: &Numbered, chunk: usize) -> Vec<Result<ImageSet>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        std::thread::scope(|s| {
            s.spawn(|| decode_in_chunks(set, chunk, &pool, sender));
            receiver.iter().collect()
        })
    }

    #[test]
    fn chunks_are_whole_in_order_and_skipped_files_are_made_up_from_the_next() {
        let set = Numbered {
            len: 11,
            skipped: vec![1, 4, 5],
            fails: None,
            classes: vec!["even".into(), "odd".into()],
        };
        let sets: Vec<ImageSet> = chunks(&set, 3).into_iter().map(|c| c.unwrap()).collect();
        let lens: Vec<usize> = sets.iter().map(|s| s.len).collect();
        assert_eq!(lens, [3, 3, 2]);
        let pixels: Vec<u8> = sets.iter().flat_map(|s| s.pixels.clone()).collect();
        assert_eq!(pixels, [0, 2, 3, 6, 7, 8, 9, 10]);
        let origins: Vec<String> = sets
            .iter()
            .flat_map(|s| s.origins.clone().unwrap())
            .collect();
        assert_eq!(origins, ["f0", "f2", "f3", "f6", "f7", "f8", "f9", "f10"]);
        assert_eq!(sets[1].labels.as_deref(), Some(&[0, 1, 0][..]));
    }

    #[test]
    fn a_failing_file_ends_the_chunks_with_its_error() {
        let set = Numbered {
            len: 10,
            skipped: Vec::new(),
            fails: Some(5),
            classes: Vec::new(),
        };
        let sent = chunks(&set, 2);
        assert_eq!(sent.len(), 3);
        assert!(sent[0].as_ref().unwrap().labels.is_none(), "no class names");
        let err = sent[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("f5"), "{err}");
    }
}
