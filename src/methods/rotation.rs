//! Rotation prediction (Gidaris, Singh, Komodakis, ICLR 2018): every image in its four
//! rotations, a 4-way head predicts which.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::classify::Classify;
use super::{ImageMethod, Settings};
use crate::data::augment::{Shape, center_square, rotate90};
use crate::data::examples::{Examples, Task};
use crate::util::config::ConfigError;

pub struct Rotation;

impl Task for Rotation {
    fn name(&self) -> &'static str {
        "rotation"
    }
    fn num_classes(&self) -> usize {
        4
    }
    fn view_shape(&self, [c, h, w]: Shape) -> Shape {
        let s = h.min(w);
        [c, s, s]
    }
    /// All four rotations of each image, as the paper does: the batch then holds every image in
    /// every orientation, so the encoder cannot tell orientation from image statistics alone.
    fn examples(
        &self,
        image: &[f32],
        shape: Shape,
        _: Option<u32>,
        _: &mut ChaCha8Rng,
        out: &mut Examples,
    ) {
        let (square, sq_shape) = center_square(image, shape);
        for k in 0..4 {
            out.views.extend(rotate90(&square, sq_shape, k));
            out.labels.push(k as i64);
        }
    }
}

/// `rotation` has no settings of its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationSettings {}

impl Settings for RotationSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        Some(Box::new(Classify(Rotation)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn four_views_labelled_by_quarter_turn() {
        let shape = [1, 3, 3];
        let img: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let mut out = Examples::new(shape, 1);
        Rotation.examples(
            &img,
            shape,
            None,
            &mut ChaCha8Rng::seed_from_u64(0),
            &mut out,
        );
        assert_eq!(out.labels, vec![0, 1, 2, 3]);
        assert_eq!(out.views.len(), 36);
        assert_eq!(&out.views[..9], &img[..]);
        assert_eq!(&out.views[18..27], &rotate90(&img, shape, 2)[..]);
    }
}
