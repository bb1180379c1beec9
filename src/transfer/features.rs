//! Frozen features: an encoder applied to every image of a set, without augmentation.

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::data::ImageSet;
use crate::data::loader::Normalizer;
use crate::models::Encoder;
use crate::train::infer_device;

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
    extract_stage(encoder, set, normalizer, batch_size, 4)
}

/// As [`extract`], with the globally pooled output of stage `stage` (1 to 4) as the feature.
pub fn extract_stage(
    encoder: &Encoder,
    set: &ImageSet,
    normalizer: &Normalizer,
    batch_size: usize,
    stage: usize,
) -> Features {
    let encoder = encoder.valid();
    let device = infer_device();
    let [c, h, w] = [set.channels, set.height, set.width];
    let mut values = Vec::new();
    let mut dim = 0;
    let indices: Vec<usize> = (0..set.len).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let pixels: Vec<f32> = chunk
            .par_iter()
            .flat_map_iter(|&i| normalizer.apply(set.image(i), c))
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [chunk.len(), c, h, w]), &device);
        let f = encoder.forward_to_stage(x, stage);
        dim = f.dims()[1];
        values.extend(
            f.into_data()
                .try_into_vec::<f32>()
                .expect("encoder outputs f32"),
        );
    }
    Features {
        rows: set.len,
        dim,
        values,
    }
}
