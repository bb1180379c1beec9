//! Batch assembly: per-image normalisation, augmentation and example making run in parallel on
//! a producer thread ahead of the model. Every image's randomness comes from (seed, epoch,
//! index), so batches are the same whatever the thread count.

use std::sync::mpsc::sync_channel;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::ImageSet;
use super::augment::{Shape, hflip, random_crop_padded};
use crate::tasks::{Examples, Task};

/// Per-channel normalisation of pixel/255.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalizer {
    /// Mean and standard deviation per channel, estimated on up to 10,000 images.
    pub fn fit(set: &ImageSet) -> Self {
        let c = set.channels;
        let hw = set.height * set.width;
        let step = (set.len / 10_000).max(1);
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        let mut count = 0f64;
        for i in (0..set.len).step_by(step) {
            let img = set.image(i);
            for ch in 0..c {
                for &p in &img[ch * hw..(ch + 1) * hw] {
                    let v = p as f64 / 255.0;
                    sum[ch] += v;
                    sq[ch] += v * v;
                }
            }
            count += hw as f64;
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, &m)| ((s / count - (m as f64).powi(2)).max(1e-6).sqrt()) as f32)
            .collect();
        Self { mean, std }
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
/// so a resumed run sees the same batches.
pub trait BatchSource: Sync {
    type Batch: Send;
    fn batches(&self, epoch: u64) -> Vec<Vec<usize>>;
    fn make(&self, epoch: u64, indices: &[usize]) -> Self::Batch;
}

/// Run `consume` on every batch of `epoch`, starting at batch `skip`, while the next batches
/// are made on another thread. Stops early when `consume` returns `Ok(false)`.
pub fn prefetch<S: BatchSource, E>(
    source: &S,
    epoch: u64,
    skip: usize,
    mut consume: impl FnMut(usize, S::Batch) -> Result<bool, E>,
) -> Result<(), E> {
    let batches = source.batches(epoch);
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<(usize, S::Batch)>(2);
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
    fn make(&self, epoch: u64, indices: &[usize]) -> Examples {
        self.plan(epoch).make(indices)
    }
}

/// How one epoch's batches are made.
#[derive(Clone)]
pub struct BatchPlan<'a> {
    pub set: &'a ImageSet,
    pub normalizer: &'a Normalizer,
    pub task: &'a dyn Task,
    pub augment: Augment,
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    pub epoch: u64,
}

impl<'a> BatchPlan<'a> {
    /// Batches for evaluation: in order, without the loader's augmentation, seed 0.
    pub fn for_evaluation(
        set: &'a ImageSet,
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
        }
    }

    /// Image indices of each batch, in order. The last short batch is kept only when it is the
    /// only one; otherwise it is dropped so BatchNorm never sees a tiny batch.
    pub fn batches(&self) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.set.len).collect();
        if self.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
                self.seed,
                self.epoch,
                u64::MAX,
            )));
        }
        let bs = self.batch_size.max(1);
        let mut batches: Vec<Vec<usize>> = order.chunks(bs).map(|c| c.to_vec()).collect();
        if batches.len() > 1 && batches.last().is_some_and(|b| b.len() < bs) {
            batches.pop();
        }
        batches
    }

    /// Examples of one batch, made in parallel. A task that uses a donor gets the next image
    /// of the batch (the last gets the first).
    pub fn make(&self, indices: &[usize]) -> Examples {
        let set = self.set;
        let shape = [set.channels, set.height, set.width];
        let raw = self.task.augments_itself();
        let augmented = |i: usize| {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, self.epoch, i as u64));
            if raw {
                let img = set.image(i).iter().map(|&p| p as f32 / 255.0).collect();
                return (img, rng);
            }
            let img = self.normalizer.apply(set.image(i), set.channels);
            (self.augment.apply(&img, shape, &mut rng), rng)
        };
        let new_examples = || Examples::new(self.task.view_shape(shape), self.task.arity());
        let label = |i: usize| set.labels.as_ref().map(|l| l[i]);
        let parts: Vec<Examples> = if self.task.uses_donor() {
            let images: Vec<(Vec<f32>, ChaCha8Rng)> =
                indices.par_iter().map(|&i| augmented(i)).collect();
            images
                .par_iter()
                .enumerate()
                .map(|(pos, (img, rng))| {
                    let donor = (indices.len() > 1).then(|| &images[(pos + 1) % indices.len()].0);
                    let mut rng = rng.clone();
                    let mut out = new_examples();
                    self.task.examples_with_donor(
                        img,
                        donor.map(Vec::as_slice),
                        shape,
                        label(indices[pos]),
                        &mut rng,
                        &mut out,
                    );
                    out
                })
                .collect()
        } else {
            indices
                .par_iter()
                .map(|&i| {
                    let (img, mut rng) = augmented(i);
                    let mut out = new_examples();
                    self.task
                        .examples(&img, shape, label(i), &mut rng, &mut out);
                    out
                })
                .collect()
        };
        let mut all = new_examples();
        for p in parts {
            all.append(p);
        }
        if raw {
            let [c, h, w] = all.view_shape;
            self.normalizer.apply_to_unit(&mut all.views, c, h * w);
        }
        all
    }
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
