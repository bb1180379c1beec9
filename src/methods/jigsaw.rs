//! Jigsaw puzzles (Noroozi & Favaro, ECCV 2016) and Jigsaw++ (Noroozi et al., CVPR 2018).
//!
//! The image's centre square is resized to a `grid` x `grid` working size and cut into 3 x 3
//! cells; each tile is a `tile` x `tile` window at a random offset inside its cell, so that
//! neighbouring tiles never share an edge. The tiles are shown in the order of one permutation
//! of a fixed set, and the head predicts which (a `P`-way classification over the concatenated
//! features of the 9 tiles, each embedded by the same encoder). Each tile is standardised per
//! channel, and a share of images is turned to grayscale, so that brightness, contrast and
//! chromatic aberration cannot give the order away.
//!
//! Jigsaw++ replaces 0 to `replace_max` tiles by tiles of another image of the batch; the head
//! must still name the permutation from the remaining ones.

use rand::Rng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::classify::Classify;
use super::permutations::{Permutation, PermutationSet, TILES};
use super::{ImageMethod, Settings};
use crate::data::augment::{
    Shape, center_square, crop, grayscale, resize_bilinear, standardise_channels,
};
use crate::data::examples::{Examples, Task};
use crate::models::ClassifierHead;
use crate::util::config::{ConfigError, invalid};

/// Settings of `jigsaw` and `jigsaw++` (`[task.jigsaw]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JigsawConfig {
    /// Working size the centre square is resized to (3 cells of `grid / 3`).
    pub grid: usize,
    /// Side of each tile, at most `grid / 3`; the rest of the cell is the random offset range.
    pub tile: usize,
    /// Size P of the permutation set (the paper used 1000).
    pub permutations: usize,
    /// Seed of the permutation set.
    pub permutation_seed: u64,
    /// Share of images turned to grayscale before tiling.
    pub grayscale: f64,
    /// Jigsaw++ only: at most this many tiles come from another image (0 to this, uniformly).
    pub replace_max: usize,
    /// Hidden units of the head over the 9 concatenated tile features.
    pub head_hidden: usize,
}

impl Default for JigsawConfig {
    fn default() -> Self {
        JigsawConfig {
            grid: 63,
            tile: 18,
            permutations: 100,
            permutation_seed: 0,
            grayscale: 0.3,
            replace_max: 2,
            head_hidden: 512,
        }
    }
}

impl JigsawConfig {
    pub fn validate(&self, key: &str) -> Result<(), String> {
        if self.grid < 9 {
            return Err(format!("{key}.grid must be at least 9, not {}", self.grid));
        }
        if self.tile == 0 || self.tile > self.grid / 3 {
            return Err(format!(
                "{key}.tile must be between 1 and grid / 3 = {}, not {}",
                self.grid / 3,
                self.tile
            ));
        }
        if !(2..=1000).contains(&self.permutations) {
            return Err(format!(
                "{key}.permutations must be 2 to 1000, not {}",
                self.permutations
            ));
        }
        if !(0.0..=1.0).contains(&self.grayscale) {
            return Err(format!("{key}.grayscale must be a share between 0 and 1"));
        }
        if self.replace_max > 4 {
            return Err(format!(
                "{key}.replace_max must be at most 4 of the 9 tiles"
            ));
        }
        Ok(())
    }
}

/// Jigsaw++'s rule for its permutation set (Noroozi et al. 2018, section 4): any two
/// permutations must differ in more tiles than can be replaced, so that the tiles left visible
/// always decide the permutation (the paper: minimum Hamming distance 3 for up to 2 replaced
/// tiles, 701 permutations).
pub fn visible_tiles_decide(set: &PermutationSet, replace_max: usize) -> Result<(), String> {
    if set.min_hamming > replace_max {
        return Ok(());
    }
    Err(format!(
        "{JIGSAW_KEY}: with up to {replace_max} replaced tiles, jigsaw++ needs permutations that \
         differ in at least {} tiles, but this set of {} has two that differ in only {}; use \
         fewer permutations or a lower replace_max",
        replace_max + 1,
        set.len(),
        set.min_hamming
    ))
}

/// Where the tiles of one example come from.
#[derive(Clone, Debug, PartialEq)]
pub struct TilePlan {
    /// Index of the permutation in the set: the label.
    pub label: usize,
    /// Top-left offset of each cell's tile inside its cell.
    pub offsets: [(usize, usize); TILES],
    /// Slots whose tile comes from the other image (Jigsaw++), and the donor cell for each.
    pub replaced: Vec<(usize, usize)>,
}

pub struct Jigsaw {
    pub cfg: JigsawConfig,
    pub set: PermutationSet,
    /// Jigsaw++: replace tiles with another image's.
    pub plus: bool,
}

impl Jigsaw {
    pub fn new(cfg: JigsawConfig, plus: bool) -> Result<Jigsaw, String> {
        cfg.validate(JIGSAW_KEY)?;
        let set = PermutationSet::generate(cfg.permutations, cfg.permutation_seed)?;
        if plus {
            visible_tiles_decide(&set, cfg.replace_max)?;
        }
        Ok(Jigsaw { cfg, set, plus })
    }

    fn cell(&self) -> usize {
        self.cfg.grid / 3
    }

    /// Draws the permutation, the tile offsets and (Jigsaw++) the replaced slots.
    pub fn plan(&self, rng: &mut ChaCha8Rng) -> TilePlan {
        let slack = self.cell() - self.cfg.tile;
        let mut offsets = [(0, 0); TILES];
        for o in &mut offsets {
            *o = (rng.random_range(0..=slack), rng.random_range(0..=slack));
        }
        let label = rng.random_range(0..self.set.len());
        let replaced = if self.plus {
            let n = rng.random_range(0..=self.cfg.replace_max);
            sample(rng, TILES, n)
                .into_iter()
                .map(|slot| (slot, rng.random_range(0..TILES)))
                .collect()
        } else {
            Vec::new()
        };
        TilePlan {
            label,
            offsets,
            replaced,
        }
    }

    /// The 9 tiles of an image in cell order (row-major over the 3 x 3 grid).
    pub fn tiles(&self, image: &[f32], shape: Shape, plan: &TilePlan, gray: bool) -> Vec<Vec<f32>> {
        let (square, sq) = center_square(image, shape);
        let g = self.cfg.grid;
        let mut work = resize_bilinear(&square, sq, g, g);
        let work_shape = [sq[0], g, g];
        if gray {
            grayscale(&mut work, work_shape);
        }
        let cell = self.cell();
        let t = self.cfg.tile;
        (0..TILES)
            .map(|i| {
                let (oy, ox) = plan.offsets[i];
                let mut tile = crop(
                    &work,
                    work_shape,
                    (i / 3) * cell + oy,
                    (i % 3) * cell + ox,
                    t,
                );
                standardise_channels(&mut tile, [sq[0], t, t]);
                tile
            })
            .collect()
    }

    /// Appends the views of one example: slot `i` shows the tile of cell `permutation[i]`, or for
    /// a replaced slot the donor's tile of the planned cell.
    pub fn arrange(
        &self,
        tiles: &[Vec<f32>],
        donor_tiles: Option<&[Vec<f32>]>,
        plan: &TilePlan,
        out: &mut Examples,
    ) {
        let perm: &Permutation = &self.set.permutations[plan.label];
        for (slot, &cell) in perm.iter().enumerate() {
            let from_donor = plan.replaced.iter().find(|(s, _)| *s == slot);
            match (from_donor, donor_tiles) {
                (Some(&(_, donor_cell)), Some(d)) => out.views.extend_from_slice(&d[donor_cell]),
                _ => out.views.extend_from_slice(&tiles[cell as usize]),
            }
        }
        out.labels.push(plan.label as i64);
    }
}

impl Task for Jigsaw {
    fn name(&self) -> &'static str {
        if self.plus { "jigsaw++" } else { "jigsaw" }
    }
    fn num_classes(&self) -> usize {
        self.set.len()
    }
    fn arity(&self) -> usize {
        TILES
    }
    fn view_shape(&self, [c, _, _]: Shape) -> Shape {
        [c, self.cfg.tile, self.cfg.tile]
    }
    fn head(&self, feature_dim: usize, device: &burn::tensor::Device) -> ClassifierHead {
        ClassifierHead::mlp(
            TILES * feature_dim,
            self.cfg.head_hidden,
            self.num_classes(),
            device,
        )
    }
    fn uses_donor(&self) -> bool {
        self.plus
    }
    fn describe(&self) -> Option<String> {
        Some(format!(
            "{} permutations: minimum Hamming distance {}, mean {:.2} (saved in permutations.json)",
            self.set.len(),
            self.set.min_hamming,
            self.set.mean_hamming
        ))
    }
    fn artifacts(&self) -> Vec<(&'static str, Vec<u8>)> {
        let json = serde_json::to_vec(&self.set).expect("permutations serialise");
        vec![("permutations.json", json)]
    }
    fn examples(
        &self,
        image: &[f32],
        shape: Shape,
        label: Option<u32>,
        rng: &mut ChaCha8Rng,
        out: &mut Examples,
    ) {
        self.examples_with_donor(image, None, shape, label, rng, out);
    }
    fn examples_with_donor(
        &self,
        image: &[f32],
        donor: Option<&[f32]>,
        shape: Shape,
        _: Option<u32>,
        rng: &mut ChaCha8Rng,
        out: &mut Examples,
    ) {
        let plan = self.plan(rng);
        let gray = shape[0] > 1 && rng.random_bool(self.cfg.grayscale);
        let tiles = self.tiles(image, shape, &plan, gray);
        let donor_tiles = donor.map(|d| {
            let donor_plan = self.plan(rng);
            self.tiles(d, shape, &donor_plan, gray)
        });
        self.arrange(&tiles, donor_tiles.as_deref(), &plan, out);
    }
}

const JIGSAW_KEY: &str = "task.jigsaw";

/// The keys of `jigsaw`: `[task.jigsaw]` (`replace_max` unused).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JigsawSettings {
    pub jigsaw: JigsawConfig,
}

/// The keys of `jigsaw++`: `[task.jigsaw]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JigsawPlusSettings {
    pub jigsaw: JigsawConfig,
}

fn jigsaw_method(cfg: &JigsawConfig, plus: bool) -> Result<Box<dyn ImageMethod>, ConfigError> {
    let task = Jigsaw::new(cfg.clone(), plus).map_err(|e| invalid(JIGSAW_KEY, e))?;
    Ok(Box::new(Classify(task)))
}

impl Settings for JigsawSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.jigsaw
            .validate(JIGSAW_KEY)
            .map_err(|e| invalid(JIGSAW_KEY, e))
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        Some(jigsaw_method(&self.jigsaw, false).expect("validated jigsaw settings"))
    }
}

impl Settings for JigsawPlusSettings {
    /// Building the task also checks its permutation set against Jigsaw++'s rule.
    fn validate(&self) -> Result<(), ConfigError> {
        jigsaw_method(&self.jigsaw, true).map(|_| ())
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        Some(jigsaw_method(&self.jigsaw, true).expect("validated jigsaw++ settings"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn task(plus: bool, tile: usize) -> Jigsaw {
        Jigsaw::new(
            JigsawConfig {
                grid: 12,
                tile,
                permutations: 30,
                ..JigsawConfig::default()
            },
            plus,
        )
        .unwrap()
    }

    #[test]
    fn jigsaw_plus_plus_set_keeps_permutations_apart_by_more_than_the_replaced_tiles() {
        let set = PermutationSet::generate(30, 0).unwrap();
        let m = set.min_hamming;
        assert!(visible_tiles_decide(&set, m - 1).is_ok());
        let err = visible_tiles_decide(&set, m).unwrap_err();
        assert!(err.contains(&format!("differ in only {m}")), "{err}");
        // The rule holds for the defaults, as Jigsaw::new checks.
        let defaults = JigsawConfig::default();
        assert!(Jigsaw::new(defaults, true).is_ok());
    }

    /// A 12x12 image whose cell r has every pixel equal to r, so tiles name their cell.
    fn cell_image() -> Vec<f32> {
        (0..144)
            .map(|i| ((i / 12) / 4 * 3 + (i % 12) / 4) as f32)
            .collect()
    }

    #[test]
    fn undoing_the_permutation_restores_the_tile_order() {
        let jig = task(false, 4);
        let img = cell_image();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..20 {
            let plan = jig.plan(&mut rng);
            // Standardising a constant tile zeroes it, so build the tiles unstandardised here.
            let tiles: Vec<Vec<f32>> = (0..TILES).map(|c| vec![c as f32; 16]).collect();
            let mut out = Examples::new([1, 4, 4], TILES);
            jig.arrange(&tiles, None, &plan, &mut out);
            let shown: Vec<u8> = out.views.chunks(16).map(|t| t[0] as u8).collect();
            let perm = jig.set.permutations[out.labels[0] as usize];
            assert_eq!(shown, perm);
            // Putting slot i back at cell perm[i] gives cells 0..9 in order.
            let mut restored = [0u8; TILES];
            for (slot, &cell) in perm.iter().enumerate() {
                restored[cell as usize] = shown[slot];
            }
            assert_eq!(restored, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
        }
        // The cut tiles come from their own cells: with a tile as big as the cell there is no
        // offset, and each tile of the cell image is constant (standardised to 0) while a tile of
        // a ramp keeps its cell's pixels.
        let plan = jig.plan(&mut rng);
        let ramp: Vec<f32> = (0..144).map(|i| i as f32).collect();
        let tiles = jig.tiles(&ramp, [1, 12, 12], &plan, false);
        let expected = crop(&ramp, [1, 12, 12], 4, 8, 4);
        let mut expected_std = expected.clone();
        standardise_channels(&mut expected_std, [1, 4, 4]);
        assert_eq!(tiles[5], expected_std);
        assert!(
            jig.tiles(&img, [1, 12, 12], &plan, false)
                .iter()
                .all(|t| t.iter().all(|&v| v == 0.0))
        );
    }

    #[test]
    fn tiles_sit_inside_their_cells_at_random_offsets() {
        let jig = task(false, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let plan = jig.plan(&mut rng);
            for &(y, x) in &plan.offsets {
                assert!(
                    y <= 1 && x <= 1,
                    "offset ({y}, {x}) leaves the 4-pixel cell"
                );
                seen.insert((y, x));
            }
        }
        assert_eq!(seen.len(), 4, "every offset in the cell's slack is used");
    }

    #[test]
    fn jigsaw_plus_plus_takes_replaced_tiles_from_the_other_image() {
        let jig = task(true, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let own: Vec<Vec<f32>> = (0..TILES).map(|c| vec![c as f32; 16]).collect();
        let donor: Vec<Vec<f32>> = (0..TILES).map(|c| vec![100.0 + c as f32; 16]).collect();
        let mut counts = [0usize; 3];
        for _ in 0..200 {
            let plan = jig.plan(&mut rng);
            assert!(plan.replaced.len() <= 2);
            counts[plan.replaced.len()] += 1;
            let mut out = Examples::new([1, 4, 4], TILES);
            jig.arrange(&own, Some(&donor), &plan, &mut out);
            let perm = jig.set.permutations[plan.label];
            for (slot, t) in out.views.chunks(16).enumerate() {
                match plan.replaced.iter().find(|(s, _)| *s == slot) {
                    Some(&(_, cell)) => assert_eq!(t[0], 100.0 + cell as f32),
                    None => assert_eq!(t[0], perm[slot] as f32),
                }
            }
        }
        assert!(
            counts.iter().all(|&c| c > 30),
            "0, 1 and 2 replaced tiles all occur: {counts:?}"
        );
    }

    #[test]
    fn examples_have_nine_views_of_the_tile_shape() {
        let jig = task(true, 4);
        let img: Vec<f32> = (0..3 * 10 * 10).map(|i| (i % 7) as f32).collect();
        let donor = vec![0.5; 300];
        let mut out = Examples::new(jig.view_shape([3, 10, 10]), TILES);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        jig.examples_with_donor(&img, Some(&donor), [3, 10, 10], None, &mut rng, &mut out);
        assert_eq!(out.views.len(), TILES * 3 * 16);
        assert_eq!(out.labels.len(), 1);
        assert!((out.labels[0] as usize) < jig.num_classes());
    }

    #[test]
    fn bad_geometry_is_refused() {
        let bad = JigsawConfig {
            tile: 30,
            ..JigsawConfig::default()
        };
        assert!(
            bad.validate("task.jigsaw")
                .unwrap_err()
                .contains("task.jigsaw.tile")
        );
    }
}
