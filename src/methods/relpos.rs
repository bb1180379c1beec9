//! Context prediction (Doersch, Gupta, Efros, ICCV 2015): a 3 x 3 grid of patches with gaps
//! between them and a random jitter of each patch; the centre patch is paired with one of its 8
//! neighbours, both go through the same encoder, and a head over the two concatenated features
//! predicts which neighbour it is. The gaps and jitter stop the encoder from matching edges and
//! lines across patches; colour dropping or projection stops it from using chromatic aberration.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::classify::Classify;
use super::{ImageMethod, Settings};
use crate::data::augment::{Shape, center_square, crop, resize_bilinear, standardise_channels};
use crate::data::examples::{Examples, Task};
use crate::models::ClassifierHead;
use crate::util::config::{ConfigError, invalid};

/// What is done to colour patches against chromatic aberration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chroma {
    /// Nothing.
    Keep,
    /// Keep one random channel; the other two become low-amplitude noise (the paper's colour
    /// dropping).
    Drop,
    /// Remove the green-magenta component of every pixel (the paper's projection).
    Project,
}

/// Settings of `relpos` (`[task.relpos]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelPosConfig {
    /// Side of each patch.
    pub patch: usize,
    /// Gap between neighbouring patches.
    pub gap: usize,
    /// Each patch moves by up to this many pixels in each direction.
    pub jitter: usize,
    pub chroma: Chroma,
    /// Hidden units of the head over the two concatenated patch features.
    pub head_hidden: usize,
}

impl Default for RelPosConfig {
    fn default() -> Self {
        RelPosConfig {
            patch: 15,
            gap: 7,
            jitter: 3,
            chroma: Chroma::Drop,
            head_hidden: 512,
        }
    }
}

impl RelPosConfig {
    /// Side of the working image the centre square is resized to: 3 patches, 2 gaps and the
    /// jitter margin on both sides.
    pub fn working_size(&self) -> usize {
        3 * self.patch + 2 * self.gap + 2 * self.jitter
    }

    pub fn validate(&self, key: &str) -> Result<(), String> {
        if self.patch < 4 {
            return Err(format!(
                "{key}.patch must be at least 4, not {}",
                self.patch
            ));
        }
        if self.jitter > self.gap {
            return Err(format!(
                "{key}.jitter ({}) must not exceed {key}.gap ({}), or patches could touch",
                self.jitter, self.gap
            ));
        }
        if self.working_size() > 512 {
            return Err(format!(
                "{key}: the working size 3 x patch + 2 x gap + 2 x jitter is over 512"
            ));
        }
        Ok(())
    }
}

/// The 8 neighbours of the centre cell, as (row, column) offsets, in label order: top-left,
/// top, top-right, left, right, bottom-left, bottom, bottom-right.
pub const NEIGHBOURS: [(isize, isize); 8] = [
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
];

pub struct RelPos {
    pub cfg: RelPosConfig,
}

impl RelPos {
    pub fn new(cfg: RelPosConfig) -> Result<RelPos, String> {
        cfg.validate(RELPOS_KEY)?;
        Ok(RelPos { cfg })
    }

    /// Top-left corner of the patch of grid cell (`row`, `col`) (each in -1..=1), before jitter.
    pub fn origin(&self, row: isize, col: isize) -> (usize, usize) {
        let step = (self.cfg.patch + self.cfg.gap) as isize;
        let centre = (self.cfg.jitter + self.cfg.patch + self.cfg.gap) as isize;
        (
            (centre + row * step) as usize,
            (centre + col * step) as usize,
        )
    }

    fn jittered(&self, (y, x): (usize, usize), rng: &mut ChaCha8Rng) -> (usize, usize) {
        let j = self.cfg.jitter;
        let dy = rng.random_range(0..=2 * j);
        let dx = rng.random_range(0..=2 * j);
        (y + dy - j, x + dx - j)
    }

    /// The centre and neighbour patches for neighbour `label` of the working image.
    pub fn patches(
        &self,
        work: &[f32],
        work_shape: Shape,
        label: usize,
        rng: &mut ChaCha8Rng,
    ) -> [Vec<f32>; 2] {
        let (row, col) = NEIGHBOURS[label];
        let p = self.cfg.patch;
        let (cy, cx) = self.jittered(self.origin(0, 0), rng);
        let (ny, nx) = self.jittered(self.origin(row, col), rng);
        [
            crop(work, work_shape, cy, cx, p),
            crop(work, work_shape, ny, nx, p),
        ]
    }

    fn chroma(&self, patch: &mut [f32], c: usize, rng: &mut ChaCha8Rng) {
        if c != 3 {
            return;
        }
        let n = patch.len() / 3;
        match self.cfg.chroma {
            Chroma::Keep => {}
            Chroma::Drop => {
                let keep = rng.random_range(0..3);
                for ch in (0..3).filter(|&ch| ch != keep) {
                    for v in &mut patch[ch * n..(ch + 1) * n] {
                        // Noise at about 1/100 of the kept channel's (standardised) spread.
                        *v = (rng.random::<f32>() - 0.5) * 0.035;
                    }
                }
            }
            Chroma::Project => {
                // The green-magenta axis (-1, 2, -1) / sqrt(6), projected out of every pixel.
                let a = [-1.0 / 6f32.sqrt(), 2.0 / 6f32.sqrt(), -1.0 / 6f32.sqrt()];
                for i in 0..n {
                    let dot: f32 = (0..3).map(|ch| a[ch] * patch[ch * n + i]).sum();
                    (0..3).for_each(|ch| patch[ch * n + i] -= dot * a[ch]);
                }
            }
        }
    }
}

impl Task for RelPos {
    fn name(&self) -> &'static str {
        "relpos"
    }
    fn num_classes(&self) -> usize {
        8
    }
    fn arity(&self) -> usize {
        2
    }
    fn view_shape(&self, [c, _, _]: Shape) -> Shape {
        [c, self.cfg.patch, self.cfg.patch]
    }
    fn head(&self, feature_dim: usize, device: &burn::tensor::Device) -> ClassifierHead {
        ClassifierHead::mlp(2 * feature_dim, self.cfg.head_hidden, 8, device)
    }
    fn examples(
        &self,
        image: &[f32],
        shape: Shape,
        _: Option<u32>,
        rng: &mut ChaCha8Rng,
        out: &mut Examples,
    ) {
        let (square, sq) = center_square(image, shape);
        let s = self.cfg.working_size();
        let work = resize_bilinear(&square, sq, s, s);
        let label = rng.random_range(0..8);
        let p = self.cfg.patch;
        for mut patch in self.patches(&work, [sq[0], s, s], label, rng) {
            standardise_channels(&mut patch, [sq[0], p, p]);
            self.chroma(&mut patch, sq[0], rng);
            out.views.extend(patch);
        }
        out.labels.push(label as i64);
    }
}

const RELPOS_KEY: &str = "task.relpos";

/// The keys of `relpos`: `[task.relpos]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelPosSettings {
    pub relpos: RelPosConfig,
}

impl Settings for RelPosSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.relpos
            .validate(RELPOS_KEY)
            .map_err(|e| invalid(RELPOS_KEY, e))
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        let task = RelPos::new(self.relpos.clone()).expect("validated relpos settings");
        Some(Box::new(Classify(task)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn relpos(jitter: usize) -> RelPos {
        RelPos::new(RelPosConfig {
            patch: 4,
            gap: 2,
            jitter,
            chroma: Chroma::Keep,
            head_hidden: 8,
        })
        .unwrap()
    }

    #[test]
    fn the_neighbour_index_matches_the_patch_position() {
        let rp = relpos(1);
        let s = rp.cfg.working_size();
        // Pixel value encodes its own coordinates: y * 1000 + x.
        let work: Vec<f32> = (0..s * s)
            .map(|i| ((i / s) * 1000 + i % s) as f32)
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..100 {
            let label = rng.random_range(0..8);
            let [centre, neighbour] = rp.patches(&work, [1, s, s], label, &mut rng);
            let at = |p: &[f32]| {
                (
                    (p[0] as usize / 1000) as isize,
                    (p[0] as usize % 1000) as isize,
                )
            };
            let ((cy, cx), (ny, nx)) = (at(&centre), at(&neighbour));
            let step = (rp.cfg.patch + rp.cfg.gap) as isize;
            let (row, col) = NEIGHBOURS[label];
            // The displacement is one grid step in the labelled direction, up to twice the jitter.
            assert!(
                (ny - cy - row * step).abs() <= 2,
                "label {label}: dy {}",
                ny - cy
            );
            assert!(
                (nx - cx - col * step).abs() <= 2,
                "label {label}: dx {}",
                nx - cx
            );
            // And the patches never overlap, nor touch (the gap exceeds twice the jitter here).
            let apart_y = (ny - cy).abs() >= rp.cfg.patch as isize;
            let apart_x = (nx - cx).abs() >= rp.cfg.patch as isize;
            assert!(apart_y || apart_x);
        }
    }

    #[test]
    fn all_patches_stay_inside_the_working_image() {
        let rp = relpos(2);
        let s = rp.cfg.working_size();
        for row in -1..=1 {
            for col in -1..=1 {
                let (y, x) = rp.origin(row, col);
                assert!(y >= 2 && x >= 2 && y + 4 + 2 <= s && x + 4 + 2 <= s);
            }
        }
    }

    #[test]
    fn examples_are_pairs_labelled_by_neighbour_and_colour_is_handled() {
        let rp = RelPos::new(RelPosConfig {
            chroma: Chroma::Project,
            ..RelPosConfig::default()
        })
        .unwrap();
        let img: Vec<f32> = (0..3 * 32 * 32).map(|i| ((i * 7919) % 13) as f32).collect();
        let mut out = Examples::new(rp.view_shape([3, 32, 32]), 2);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut labels = std::collections::BTreeSet::new();
        for _ in 0..64 {
            rp.examples(&img, [3, 32, 32], None, &mut rng, &mut out);
        }
        labels.extend(out.labels.iter().copied());
        assert_eq!(labels.len(), 8, "every neighbour is drawn");
        assert_eq!(out.views.len(), 64 * 2 * 3 * 15 * 15);
        // Projection leaves no green-magenta component in any pixel.
        let n = 15 * 15;
        for patch in out.views.chunks(3 * n) {
            for i in 0..n {
                let gm = 2.0 * patch[n + i] - patch[i] - patch[2 * n + i];
                assert!(gm.abs() < 1e-4, "{gm}");
            }
        }
    }

    #[test]
    fn jitter_larger_than_gap_is_refused() {
        let err = RelPos::new(RelPosConfig {
            jitter: 9,
            ..RelPosConfig::default()
        })
        .err()
        .unwrap();
        assert!(err.contains("task.relpos.jitter"), "{err}");
    }
}
