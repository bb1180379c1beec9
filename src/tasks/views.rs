//! Two augmented views of each image, for the siamese methods: SimCLR (Chen et al. 2020), BYOL
//! (Grill et al. 2020) and SimSiam (Chen & He 2021). The self-label is "these two views are the
//! same image"; the heads and losses that use it are in `crate::train::siamese`.
//!
//! The views are made from pixel values in [0, 1] (colour jitter and solarisation are defined
//! there), then normalised like any other input by the loader.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Examples, Task, TaskKind};
use crate::data::augment::{Shape, hflip, random_resized_crop};
use crate::data::colour::{JitterStrength, colour_jitter, gaussian_blur, solarise, to_grayscale};

/// The augmentation pipeline of the two views (`[task.views]`). Blur and solarisation have one
/// probability per view, as BYOL's asymmetric pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewAugment {
    /// Random resized crop: range of the area share and of the aspect ratio.
    pub crop_scale: [f32; 2],
    pub crop_ratio: [f32; 2],
    /// Probability of a horizontal flip.
    pub hflip: f32,
    /// Colour jitter strengths: brightness, contrast, saturation, hue.
    pub jitter: [f32; 4],
    /// Probability that colour jitter is applied.
    pub jitter_prob: f32,
    /// Probability of turning a view to grayscale.
    pub grayscale: f32,
    /// Probability of a Gaussian blur, per view.
    pub blur: [f32; 2],
    /// Range of the blur's standard deviation, in pixels; the kernel covers about 10 % of the side.
    pub blur_sigma: [f32; 2],
    /// Probability of solarisation, per view.
    pub solarise: [f32; 2],
}

impl Default for ViewAugment {
    /// The CIFAR-scale recipe of solo-learn and the SimCLR paper's CIFAR appendix: no blur on
    /// 32-pixel images, solarisation on the second view only (BYOL).
    fn default() -> Self {
        Self {
            crop_scale: [0.2, 1.0],
            crop_ratio: [0.75, 4.0 / 3.0],
            hflip: 0.5,
            jitter: [0.4, 0.4, 0.2, 0.1],
            jitter_prob: 0.8,
            grayscale: 0.2,
            blur: [0.0, 0.0],
            blur_sigma: [0.1, 2.0],
            solarise: [0.0, 0.2],
        }
    }
}

fn probability(key: &str, p: f32) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!(
            "{key} must be a probability between 0 and 1, not {p}"
        ))
    }
}

impl ViewAugment {
    pub fn validate(&self, key: &str) -> Result<(), String> {
        let [lo, hi] = self.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(format!(
                "{key}.crop_scale must be [low, high] with 0 < low <= high <= 1"
            ));
        }
        let [lo, hi] = self.crop_ratio;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(format!(
                "{key}.crop_ratio must be [low, high] with 0 < low <= high"
            ));
        }
        let [b, c, s, h] = self.jitter;
        if [b, c, s].iter().any(|v| !(0.0..=1.0).contains(v)) || !(0.0..=0.5).contains(&h) {
            return Err(format!(
                "{key}.jitter must be [brightness, contrast, saturation, hue] with the first three in [0, 1] and hue in [0, 0.5]"
            ));
        }
        probability(&format!("{key}.hflip"), self.hflip)?;
        probability(&format!("{key}.jitter_prob"), self.jitter_prob)?;
        probability(&format!("{key}.grayscale"), self.grayscale)?;
        for p in self.blur.iter().chain(&self.solarise) {
            probability(&format!("{key}.blur and {key}.solarise"), *p)?;
        }
        let [lo, hi] = self.blur_sigma;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(format!(
                "{key}.blur_sigma must be [low, high] with 0 < low <= high"
            ));
        }
        Ok(())
    }

    /// One view of `image` (values in [0, 1]); `which` is 0 or 1.
    pub fn view(&self, image: &[f32], shape: Shape, which: usize, rng: &mut impl Rng) -> Vec<f32> {
        let [_, h, w] = shape;
        let scale = (self.crop_scale[0], self.crop_scale[1]);
        let ratio = (self.crop_ratio[0], self.crop_ratio[1]);
        let mut v = random_resized_crop(image, shape, scale, ratio, (h, w), rng);
        if rng.random::<f32>() < self.hflip {
            hflip(&mut v, shape);
        }
        if rng.random::<f32>() < self.jitter_prob {
            let [brightness, contrast, saturation, hue] = self.jitter;
            let strength = JitterStrength {
                brightness,
                contrast,
                saturation,
                hue,
            };
            colour_jitter(&mut v, shape, strength, rng);
        }
        if rng.random::<f32>() < self.grayscale {
            to_grayscale(&mut v, shape);
        }
        if rng.random::<f32>() < self.blur[which] {
            let sigma = rng.random_range(self.blur_sigma[0]..=self.blur_sigma[1]);
            let kernel = (h.min(w) / 10) | 1;
            gaussian_blur(&mut v, shape, kernel.max(3), sigma);
        }
        if rng.random::<f32>() < self.solarise[which] {
            solarise(&mut v, 0.5);
        }
        v
    }
}

/// Heads and loss settings of the siamese methods (`[task.siamese]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiameseConfig {
    /// Hidden and output width of the projector MLP (and of BYOL's and SimSiam's predictor,
    /// whose hidden width is `predictor_hidden`).
    pub projector_hidden: usize,
    pub projection_dim: usize,
    pub predictor_hidden: usize,
    /// SimCLR's softmax temperature.
    pub temperature: f64,
    /// BYOL's base EMA momentum; it rises to 1 along a cosine over training.
    pub momentum: f64,
}

impl Default for SiameseConfig {
    fn default() -> Self {
        Self {
            projector_hidden: 512,
            projection_dim: 128,
            predictor_hidden: 512,
            temperature: 0.2,
            momentum: 0.99,
        }
    }
}

impl SiameseConfig {
    pub fn validate(&self, key: &str) -> Result<(), String> {
        for (name, v) in [
            ("projector_hidden", self.projector_hidden),
            ("projection_dim", self.projection_dim),
            ("predictor_hidden", self.predictor_hidden),
        ] {
            if v == 0 {
                return Err(format!("{key}.{name} must be at least 1"));
            }
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!("{key}.temperature must be > 0"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("{key}.momentum must be in [0, 1)"));
        }
        Ok(())
    }
}

/// Two views of every image, for `simclr`, `byol` and `simsiam`.
pub struct TwoViews {
    pub kind: TaskKind,
    pub augment: ViewAugment,
}

impl Task for TwoViews {
    fn name(&self) -> &'static str {
        self.kind.name()
    }
    /// The "label" of a pair is unused: the positives are the pair itself.
    fn num_classes(&self) -> usize {
        1
    }
    fn arity(&self) -> usize {
        2
    }
    fn augments_itself(&self) -> bool {
        true
    }
    fn examples(
        &self,
        image: &[f32],
        shape: Shape,
        _: Option<u32>,
        rng: &mut ChaCha8Rng,
        out: &mut Examples,
    ) {
        for which in 0..2 {
            out.views
                .extend(self.augment.view(image, shape, which, rng));
        }
        out.labels.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn views_differ_keep_the_shape_and_stay_in_range() {
        let shape = [3, 16, 16];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let image: Vec<f32> = (0..3 * 256).map(|_| rng.random::<f32>()).collect();
        let task = TwoViews {
            kind: TaskKind::Simclr,
            augment: ViewAugment::default(),
        };
        let mut out = Examples::new(shape, 2);
        task.examples(&image, shape, None, &mut rng, &mut out);
        assert_eq!(out.views.len(), 2 * 3 * 256);
        assert_eq!(out.labels, vec![0]);
        let (a, b) = out.views.split_at(3 * 256);
        assert_ne!(a, b);
        assert!(out.views.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn with_every_augmentation_off_a_view_is_the_image() {
        let shape = [3, 8, 8];
        let image: Vec<f32> = (0..3 * 64).map(|i| (i % 7) as f32 / 7.0).collect();
        let off = ViewAugment {
            crop_scale: [1.0, 1.0],
            crop_ratio: [1.0, 1.0],
            hflip: 0.0,
            jitter_prob: 0.0,
            grayscale: 0.0,
            blur: [0.0, 0.0],
            solarise: [0.0, 0.0],
            ..ViewAugment::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(off.view(&image, shape, 0, &mut rng), image);
        let always = ViewAugment {
            solarise: [0.0, 1.0],
            ..off.clone()
        };
        let second = always.view(&image, shape, 1, &mut rng);
        assert!(second.iter().zip(&image).all(|(s, i)| if *i >= 0.5 {
            (s - (1.0 - i)).abs() < 1e-6
        } else {
            s == i
        }));
        assert_eq!(always.view(&image, shape, 0, &mut rng), image);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let bad = ViewAugment {
            crop_scale: [0.5, 0.2],
            ..ViewAugment::default()
        };
        assert!(
            bad.validate("task.views")
                .unwrap_err()
                .contains("task.views.crop_scale")
        );
        let bad = SiameseConfig {
            momentum: 1.0,
            ..SiameseConfig::default()
        };
        assert!(
            bad.validate("task.siamese")
                .unwrap_err()
                .contains("task.siamese.momentum")
        );
    }
}
