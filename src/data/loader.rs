//! Batch assembly: per-image normalisation, augmentation and example making run in parallel on
//! a producer thread ahead of the model. Every image's randomness comes from (seed, epoch,
//! index), so batches are the same whatever the thread count.

use std::sync::mpsc::sync_channel;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::augment::{Shape, hflip, random_crop_padded};
use super::source::{Framing, ImageSource};
use super::{DataError, ImageSet};
use crate::data::examples::{Examples, Task};

/// Images an evaluation batch holds at 32 x 32 pixels (28 x 28 as well): 256 x 32 x 32 pixels
/// per batch, so larger images go in fewer at a time and activations stay bounded.
/// Why reading images already decoded into memory cannot fail.
pub const IN_MEMORY: &str = "images in memory are always readable";

const EVAL_BATCH: usize = 256;
const EVAL_BATCH_PIXELS: usize = EVAL_BATCH * 32 * 32;
const EVAL_BATCH_MIN: usize = 16;

/// How many images of `shape` an inference pass (features, predictions) takes at once.
pub fn eval_batch([_, h, w]: Shape) -> usize {
    (EVAL_BATCH_PIXELS / (h * w).max(1)).clamp(EVAL_BATCH_MIN, EVAL_BATCH)
}

/// Images in memory the normaliser's statistics are estimated on, at most.
pub const NORMALIZER_IMAGES: usize = 10_000;
/// The same for images decoded on demand, where each costs a decode before training starts.
pub const STREAM_NORMALIZER_IMAGES: usize = 2_000;
/// Images decoded at once while fitting the normaliser.
const NORMALIZER_CHUNK: usize = 256;

/// Per-channel normalisation of pixel/255.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalizer {
    /// Mean and standard deviation per channel, estimated on up to 10,000 images.
    pub fn fit(set: &ImageSet) -> Self {
        Self::fit_source(set, NORMALIZER_IMAGES).expect(IN_MEMORY)
    }

    /// As [`Normalizer::fit`], over any source and at most `limit` images (every
    /// `len / limit`-th, summed in order: with the same limit, a folder streamed at its own size
    /// gets the statistics it gets in memory). Images are decoded a chunk at a time, in
    /// parallel; unreadable ones are left out here and reported where training meets them.
    pub fn fit_source(set: &dyn ImageSource, limit: usize) -> Result<Self, DataError> {
        let [c, h, w] = set.shape();
        let hw = h * w;
        let step = (set.len() / limit.max(1)).max(1);
        let chosen: Vec<usize> = (0..set.len()).step_by(step).collect();
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        let mut count = 0f64;
        for chunk in chosen.chunks(NORMALIZER_CHUNK) {
            let images: Vec<Option<std::borrow::Cow<[u8]>>> = chunk
                .par_iter()
                .map(|&i| set.image(i, Framing::Eval).ok().flatten())
                .collect();
            for img in images.iter().flatten() {
                for ch in 0..c {
                    for &p in &img[ch * hw..(ch + 1) * hw] {
                        let v = p as f64 / 255.0;
                        sum[ch] += v;
                        sq[ch] += v * v;
                    }
                }
                count += hw as f64;
            }
        }
        if count == 0.0 {
            return Err(DataError::Other(
                "no image could be read to estimate the normalisation statistics".into(),
            ));
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, &m)| ((s / count - (m as f64).powi(2)).max(1e-6).sqrt()) as f32)
            .collect();
        Ok(Self { mean, std })
    }

    /// Normalise images of pixel values in [0, 1] (views made by a task that augments itself),
    /// in place; `views` holds whole images of `channels` x `plane` values.
    pub fn apply_to_unit(&self, views: &mut [f32], channels: usize, plane: usize) {
        for (k, values) in views.chunks_exact_mut(plane).enumerate() {
            let ch = k % channels;
            let (m, s) = (self.mean[ch], self.std[ch]);
            values.iter_mut().for_each(|v| *v = (*v - m) / s);
        }
    }

    pub fn apply(&self, pixels: &[u8], channels: usize) -> Vec<f32> {
        let hw = pixels.len() / channels;
        let mut out = Vec::with_capacity(pixels.len());
        for ch in 0..channels {
            let (m, s) = (self.mean[ch], self.std[ch]);
            out.extend(
                pixels[ch * hw..(ch + 1) * hw]
                    .iter()
                    .map(|&p| (p as f32 / 255.0 - m) / s),
            );
        }
        out
    }
}

/// Training-time augmentation of each image before the task sees it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Random crop after zero padding by this many pixels (0: off).
    pub crop_padding: usize,
    /// Random horizontal flip.
    pub hflip: bool,
}

impl Augment {
    pub const NONE: Augment = Augment {
        crop_padding: 0,
        hflip: false,
    };

    /// One random crop and flip of a normalised image.
    pub fn apply(&self, img: &[f32], shape: Shape, rng: &mut impl rand::Rng) -> Vec<f32> {
        let mut out = random_crop_padded(img, shape, self.crop_padding, rng);
        if self.hflip && rng.random_bool(0.5) {
            hflip(&mut out, shape);
        }
        out
    }
}

/// Where a training loop's batches come from: the order of the items of each epoch, cut into
/// batches, and the batch made from some of them. Every batch depends only on (epoch, indices),
/// so a resumed run sees the same batches. Making a batch fails only when a file read on demand
/// turns out bad (and is not skipped).
pub trait BatchSource: Sync {
    type Batch: Send;
    fn batches(&self, epoch: u64) -> Vec<Vec<usize>>;
    fn make(&self, epoch: u64, indices: &[usize]) -> Result<Self::Batch, DataError>;
}

/// Batches made ahead of the one the model trains on: the bound on the loader's memory.
pub const PREFETCH_BATCHES: usize = 2;

/// Run `consume` on every batch of `epoch`, starting at batch `skip`, while the next batches
/// are made on another thread. Stops early when `consume` returns `Ok(false)`.
pub fn prefetch<S: BatchSource, E>(
    source: &S,
    epoch: u64,
    skip: usize,
    mut consume: impl FnMut(usize, Result<S::Batch, DataError>) -> Result<bool, E>,
) -> Result<(), E> {
    let batches = source.batches(epoch);
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<(usize, Result<S::Batch, DataError>)>(PREFETCH_BATCHES);
        let batches = &batches;
        scope.spawn(move || {
            for (b, idx) in batches.iter().enumerate().skip(skip) {
                if tx.send((b, source.make(epoch, idx))).is_err() {
                    break;
                }
            }
        });
        for (b, batch) in rx {
            if !consume(b, batch)? {
                break;
            }
        }
        Ok(())
    })
}

/// The image batches of a training run: `plan` with each epoch's number put in.
pub struct ImageBatches<'a> {
    pub plan: BatchPlan<'a>,
}

impl ImageBatches<'_> {
    fn plan(&self, epoch: u64) -> BatchPlan<'_> {
        BatchPlan {
            epoch,
            ..self.plan.clone()
        }
    }
}

impl BatchSource for ImageBatches<'_> {
    type Batch = Examples;
    fn batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        self.plan(epoch).batches()
    }
    fn make(&self, epoch: u64, indices: &[usize]) -> Result<Examples, DataError> {
        self.plan(epoch).make(indices)
    }
}

/// How one epoch's batches are made.
#[derive(Clone)]
pub struct BatchPlan<'a> {
    pub set: &'a dyn ImageSource,
    pub normalizer: &'a Normalizer,
    pub task: &'a dyn Task,
    pub augment: Augment,
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    pub epoch: u64,
    /// Training framing (a random crop from each file read on demand) rather than evaluation's.
    pub training: bool,
    /// The threads that make the batch (files read on demand decode there, apart from the
    /// model's threads); `None`: the global pool.
    pub pool: Option<&'a rayon::ThreadPool>,
}

impl<'a> BatchPlan<'a> {
    /// Batches for evaluation: in order, without the loader's augmentation, seed 0.
    pub fn for_evaluation(
        set: &'a dyn ImageSource,
        normalizer: &'a Normalizer,
        task: &'a dyn Task,
        batch_size: usize,
    ) -> Self {
        BatchPlan {
            set,
            normalizer,
            task,
            augment: Augment::NONE,
            batch_size,
            shuffle: false,
            seed: 0,
            epoch: 0,
            training: false,
            pool: None,
        }
    }

    /// Image indices of each batch, in order. The last short batch is kept only when it is the
    /// only one; otherwise it is dropped so BatchNorm never sees a tiny batch.
    pub fn batches(&self) -> Vec<Vec<usize>> {
        let order: Vec<usize> = if !self.shuffle {
            (0..self.set.len()).collect()
        } else if let Some(own) = self.set.epoch_order(self.seed, self.epoch) {
            own
        } else {
            let mut order: Vec<usize> = (0..self.set.len()).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
                self.seed,
                self.epoch,
                u64::MAX,
            )));
            order
        };
        let bs = self.batch_size.max(1);
        let mut batches: Vec<Vec<usize>> = order.chunks(bs).map(|c| c.to_vec()).collect();
        if batches.len() > 1 && batches.last().is_some_and(|b| b.len() < bs) {
            batches.pop();
        }
        batches
    }

    /// Examples of one batch, made in parallel. A task that uses a donor gets the next image
    /// of the batch (the last gets the first). Images a streaming source skipped are left out.
    pub fn make(&self, indices: &[usize]) -> Result<Examples, DataError> {
        match self.pool {
            Some(pool) => pool.install(|| self.make_here(indices)),
            None => self.make_here(indices),
        }
    }

    fn make_here(&self, indices: &[usize]) -> Result<Examples, DataError> {
        let images: Vec<Option<Prepared>> = indices
            .par_iter()
            .map(|&i| self.prepare(i))
            .collect::<Result<_, _>>()?;
        let images: Vec<Prepared> = images.into_iter().flatten().collect();
        let shape = self.set.shape();
        let new_examples = || Examples::for_task(self.task, shape);
        let parts: Vec<Examples> = images
            .par_iter()
            .enumerate()
            .map(|(pos, image)| {
                let mut rng = image.rng.clone();
                let mut out = new_examples();
                let label = self.set.label(image.index);
                if self.task.uses_donor() {
                    let donor =
                        (images.len() > 1).then(|| &images[(pos + 1) % images.len()].pixels);
                    let donor = donor.map(Vec::as_slice);
                    self.task.examples_with_donor(
                        &image.pixels,
                        donor,
                        shape,
                        label,
                        &mut rng,
                        &mut out,
                    );
                } else {
                    self.task
                        .examples(&image.pixels, shape, label, &mut rng, &mut out);
                }
                if self.task.augments_itself() {
                    let [c, h, w] = out.view_shape;
                    self.normalizer.apply_to_unit(&mut out.views, c, h * w);
                    for group in &mut out.groups {
                        let [c, h, w] = group.shape;
                        self.normalizer.apply_to_unit(&mut group.views, c, h * w);
                    }
                }
                out
            })
            .collect();
        let mut all = new_examples();
        all.views
            .reserve_exact(parts.iter().map(|p| p.views.len()).sum());
        for p in parts {
            all.append(p);
        }
        Ok(all)
    }

    /// Image `i` read, framed, normalised and augmented, with its random stream where the
    /// augmentation left it; `None` when the source skipped it.
    fn prepare(&self, i: usize) -> Result<Option<Prepared>, DataError> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, self.epoch, i as u64));
        let framing = if self.training {
            Framing::Train(&mut rng)
        } else {
            Framing::Eval
        };
        let Some(bytes) = self.set.image(i, framing)? else {
            return Ok(None);
        };
        let shape = self.set.shape();
        let pixels = if self.task.augments_itself() {
            bytes.iter().map(|&p| p as f32 / 255.0).collect()
        } else {
            let img = self.normalizer.apply(&bytes, shape[0]);
            self.augment.apply(&img, shape, &mut rng)
        };
        Ok(Some(Prepared {
            index: i,
            pixels,
            rng,
        }))
    }
}

/// One image of a batch ready for its task.
struct Prepared {
    index: usize,
    pixels: Vec<f32>,
    rng: ChaCha8Rng,
}

/// A per-(seed, epoch, item) stream seed (SplitMix64 finaliser over the combination).
pub fn mix(seed: u64, epoch: u64, item: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(item.wrapping_mul(0x94D0_49BB_1331_11EB));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
