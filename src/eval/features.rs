//! Frozen features: an encoder applied to every image of a set, without augmentation or with
//! random crops and flips.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::ImageSet;
use crate::data::loader::{Augment, Normalizer, eval_batch, mix};
use crate::device::infer_device;
use crate::models::{Encoder, FeatureLayer};

/// Features as a row-major `[n, d]` matrix.
#[derive(Clone, Debug)]
pub struct Features {
    pub rows: usize,
    pub dim: usize,
    pub values: Vec<f32>,
}

impl Features {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
    pub fn select(&self, indices: &[usize]) -> Features {
        let mut values = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            values.extend_from_slice(self.row(i));
        }
        Features {
            rows: indices.len(),
            dim: self.dim,
            values,
        }
    }
}

/// Encode every image of `set` in batches of `batch_size`.
pub fn extract(
    encoder: &Encoder,
    set: &ImageSet,
    normalizer: &Normalizer,
    batch_size: usize,
) -> Features {
    extract_layer(encoder, set, normalizer, batch_size, FeatureLayer::OUTPUT)
}

/// As [`extract`], with the features of `layer`.
pub fn extract_layer(
    encoder: &Encoder,
    set: &ImageSet,
    normalizer: &Normalizer,
    batch_size: usize,
    layer: FeatureLayer,
) -> Features {
    let c = set.channels;
    encode(encoder, set, set.len, batch_size, layer, |i| {
        normalizer.apply(set.image(i), c)
    })
}

/// Features of `layer` for `views` random crops and flips (`augment`) of every image of `set`,
/// view-major: row `v * set.len + i` is a view of image `i`. The views depend on `seed` only.
pub fn extract_augmented(
    encoder: &Encoder,
    set: &ImageSet,
    normalizer: &Normalizer,
    layer: FeatureLayer,
    augment: &Augment,
    views: usize,
    seed: u64,
) -> Features {
    let shape = [set.channels, set.height, set.width];
    encode(
        encoder,
        set,
        views * set.len,
        eval_batch(set.shape()),
        layer,
        |row| {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, 0, row as u64));
            let img = normalizer.apply(set.image(row % set.len.max(1)), set.channels);
            augment.apply(&img, shape, &mut rng)
        },
    )
}

/// Encode `rows` normalised images of `set`'s shape, made by `image(row)`, in batches.
fn encode(
    encoder: &Encoder,
    set: &ImageSet,
    rows: usize,
    batch_size: usize,
    layer: FeatureLayer,
    image: impl Fn(usize) -> Vec<f32> + Sync,
) -> Features {
    let encoder = encoder.valid();
    let device = infer_device();
    let [c, h, w] = [set.channels, set.height, set.width];
    let mut values = Vec::new();
    let mut dim = 0;
    let indices: Vec<usize> = (0..rows).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let pixels: Vec<f32> = chunk.par_iter().flat_map_iter(|&i| image(i)).collect();
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [chunk.len(), c, h, w]), &device);
        let f = encoder.features(x, layer);
        dim = f.dims()[1];
        values.extend(
            f.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("converted to f32"),
        );
    }
    Features { rows, dim, values }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{SyntheticConfig, generate};
    use crate::models::{Arch, EncoderSpec, Stem};

    #[test]
    fn augmented_views_are_seeded_crops_and_flips_of_each_image() {
        let set = generate(&SyntheticConfig {
            train: 6,
            test: 0,
            size: 12,
            seed: 3,
        })
        .train;
        let spec = EncoderSpec {
            arch: Arch::Convnet4,
            width: 2,
            in_channels: set.channels,
            mean: vec![0.5; set.channels],
            std: vec![0.25; set.channels],
            stem: Stem::Cifar,
            vit: None,
            input_size: None,
            start: None,
        };
        let encoder = spec.init(&infer_device());
        let normalizer = Normalizer {
            mean: spec.mean.clone(),
            std: spec.std.clone(),
        };
        let plain = extract(&encoder, &set, &normalizer, 4);
        let crops = Augment {
            crop_padding: 3,
            hflip: true,
        };
        let augmented = |augment: &Augment, views: usize, seed: u64| {
            let output = FeatureLayer::OUTPUT;
            extract_augmented(&encoder, &set, &normalizer, output, augment, views, seed)
        };
        let views = augmented(&crops, 3, 7);
        assert_eq!((views.rows, views.dim), (18, plain.dim));
        assert_eq!(views.values, augmented(&crops, 3, 7).values);
        let other_seed = augmented(&crops, 3, 8);
        assert_ne!(views.values, other_seed.values);
        assert_ne!(&views.values[..6 * plain.dim], &plain.values[..]);
        // Without augmentation every view is the image itself, in the documented row order.
        let unchanged = augmented(&Augment::NONE, 2, 7);
        for (a, b) in unchanged.values.iter().zip(plain.values.iter().cycle()) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
}
