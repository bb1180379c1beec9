//! MAE (He et al. 2022): masked autoencoding on a Vision Transformer. Three quarters of each
//! image's patches are hidden; the encoder sees only the visible ones, a light decoder (its own
//! transformer blocks, mask tokens in the hidden places) reconstructs the pixels, and the loss
//! is the mean squared error on the hidden patches' pixels, each patch normalised to mean 0 and
//! variance 1. Transfer uses the encoder alone.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{ImageMethod, MethodKind, PretrainLearner, Settings};
use crate::data::ImageSet;
use crate::data::augment::{Shape, hflip, random_resized_crop};
use crate::data::examples::{Examples, Task};
use crate::data::loader::{Normalizer, mix};
use crate::kernels::transformer::{layer_norm, linear};
use crate::losses::masked_patch_loss;
use crate::models::vit::{Block, LAYER_NORM_EPSILON, VitSize, norm, timm_linear};
use crate::models::{Encoder, EncoderSpec};
use crate::train::{ImageLearner, Learner, Optimisers, StepStats, TrainConfig, to_tensors};
use crate::util::config::{ConfigError, invalid};

/// MAE's decoder (`[task.decoder]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecoderConfig {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
}

impl Default for DecoderConfig {
    /// Lighter than the paper's (512 wide, 8 blocks) for small images and a CPU.
    fn default() -> Self {
        Self {
            dim: 128,
            depth: 2,
            heads: 4,
        }
    }
}

/// The keys of `mae`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaeSettings {
    /// Share of each image's patches hidden from the encoder.
    pub mask_ratio: f64,
    /// Random resized crop's share of the image area (then a horizontal flip half the time).
    pub crop_scale: [f32; 2],
    pub decoder: DecoderConfig,
}

impl Default for MaeSettings {
    fn default() -> Self {
        Self {
            mask_ratio: 0.75,
            crop_scale: [0.2, 1.0],
            decoder: DecoderConfig::default(),
        }
    }
}

impl Settings for MaeSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0) {
            return Err(invalid(
                "task.mask_ratio",
                format!("must be between 0 and 1, got {}", self.mask_ratio),
            ));
        }
        let [lo, hi] = self.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(invalid(
                "task.crop_scale",
                "must be [low, high] with 0 < low <= high <= 1",
            ));
        }
        let d = &self.decoder;
        if d.dim == 0 || d.depth == 0 || d.heads == 0 || !d.dim.is_multiple_of(d.heads) {
            return Err(invalid(
                "task.decoder",
                "dim, depth and heads must be at least 1, and heads must divide dim",
            ));
        }
        Ok(())
    }
    fn build(&self) -> Option<Box<dyn ImageMethod>> {
        Some(Box::new(Mae {
            views: MaskedViews {
                crop_scale: self.crop_scale,
            },
            settings: self.clone(),
        }))
    }
}

/// One randomly cropped and flipped view of every image; the masks are drawn by the learner.
pub struct MaskedViews {
    pub crop_scale: [f32; 2],
}

impl Task for MaskedViews {
    fn name(&self) -> &'static str {
        MethodKind::Mae.name()
    }
    fn num_classes(&self) -> usize {
        1
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
        let [_, h, w] = shape;
        let scale = (self.crop_scale[0], self.crop_scale[1]);
        let mut view = random_resized_crop(image, shape, scale, (0.75, 4.0 / 3.0), (h, w), rng);
        if rng.random::<bool>() {
            hflip(&mut view, shape);
        }
        out.views.extend(view);
        out.labels.push(0);
    }
}

struct Mae {
    views: MaskedViews,
    settings: MaeSettings,
}

impl ImageMethod for Mae {
    fn task(&self) -> &dyn Task {
        &self.views
    }
    fn learner(
        &self,
        spec: &EncoderSpec,
        recipe: &TrainConfig,
        device: &Device,
    ) -> Box<dyn PretrainLearner> {
        Box::new(MaeLearner::new(&self.settings, spec, recipe, device))
    }
}

/// MAE's decoder: the encoder's tokens projected to its width, mask tokens in the hidden
/// places, its own position embedding and blocks, and a linear layer to each patch's pixels.
#[derive(Module, Debug)]
pub struct MaeDecoder {
    pub embed: Linear,
    /// `[1, 1, dim]`.
    pub mask_token: Param<Tensor<3>>,
    /// `[1, 1 + patches, dim]`.
    pub pos_embed: Param<Tensor<3>>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    pub pred: Linear,
}

impl MaeDecoder {
    fn new(
        encoder_dim: usize,
        patches: usize,
        pixels: usize,
        cfg: &DecoderConfig,
        device: &Device,
    ) -> Self {
        let size = VitSize {
            dim: cfg.dim,
            depth: cfg.depth,
            heads: cfg.heads,
        };
        let normal = |shape: [usize; 3]| {
            Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, 0.02),
                device,
            ))
        };
        Self {
            embed: timm_linear(encoder_dim, cfg.dim, device),
            mask_token: normal([1, 1, cfg.dim]),
            pos_embed: normal([1, 1 + patches, cfg.dim]),
            blocks: (0..cfg.depth).map(|_| Block::new(size, device)).collect(),
            norm: norm(cfg.dim, device),
            pred: timm_linear(cfg.dim, pixels, device),
        }
    }

    /// The predicted pixels of every patch `[b, patches, pixels]` from the encoder's tokens
    /// `[b, 1 + k, dim]`; `restore` `[b, patches, dim]` puts position j's token (visible first,
    /// then the mask tokens) back in patch order.
    fn forward(&self, latent: Tensor<3>, restore: Tensor<3, Int>) -> Tensor<3> {
        let x = linear(&self.embed, latent);
        let [b, tokens, _] = x.dims();
        let [_, patches, _] = restore.dims();
        let visible = x.clone().narrow(1, 1, tokens - 1);
        let masks = self
            .mask_token
            .val()
            .repeat_dim(0, b)
            .repeat_dim(1, patches + 1 - tokens);
        let ordered = Tensor::cat(vec![visible, masks], 1).gather(1, restore);
        let x = Tensor::cat(vec![x.narrow(1, 0, 1), ordered], 1) + self.pos_embed.val();
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        let x = layer_norm(&self.norm, LAYER_NORM_EPSILON, x);
        linear(&self.pred, x.narrow(1, 1, patches))
    }
}

/// What a checkpoint holds of an MAE run.
#[derive(Module, Debug)]
pub struct MaeModel {
    pub encoder: Encoder,
    pub decoder: MaeDecoder,
}

/// Which patches each image shows, drawn from the image itself so that a resumed run, or a
/// run over several ranks, draws the same masks.
struct Masks {
    /// `[b, k, dim]`: the visible patches' indices, repeated along the last axis.
    keep: Tensor<3, Int>,
    /// `[b, patches, dec_dim]`: for each patch, its place among (visible, then hidden) tokens.
    restore: Tensor<3, Int>,
    /// `[b, patches]`: 1 where the patch is hidden.
    hidden: Tensor<2>,
}

pub struct MaeLearner {
    pub model: MaeModel,
    mask_ratio: f64,
    patch: usize,
    seed: u64,
    optim: Optimisers,
    device: Device,
}

impl MaeLearner {
    pub fn new(
        settings: &MaeSettings,
        spec: &EncoderSpec,
        recipe: &TrainConfig,
        device: &Device,
    ) -> Self {
        let layout = spec.vit.expect("mae's settings are checked against a ViT");
        let grid = layout.image_size / layout.patch;
        let pixels = layout.patch * layout.patch * spec.in_channels;
        let encoder = spec.init(device);
        let decoder = MaeDecoder::new(
            spec.feature_dim(),
            grid * grid,
            pixels,
            &settings.decoder,
            device,
        );
        Self {
            model: MaeModel { encoder, decoder },
            mask_ratio: settings.mask_ratio,
            patch: layout.patch,
            seed: recipe.seed,
            optim: Optimisers::new(recipe),
            device: device.clone(),
        }
    }

    fn masks(&self, ex: &Examples, patches: usize, enc_dim: usize, dec_dim: usize) -> Masks {
        let b = ex.labels.len();
        let visible = ((patches as f64) * (1.0 - self.mask_ratio))
            .round()
            .max(1.0) as usize;
        // Each image's own values pick its mask: the same image after a resume, or in another
        // rank's share of the batch, gets the same mask.
        let per_image = ex.views.len() / b.max(1);
        let stride = (per_image / 64).max(1);
        let (mut keep, mut restore, mut hidden) = (Vec::new(), Vec::new(), Vec::new());
        for image in ex.views.chunks(per_image.max(1)).take(b) {
            let fingerprint = image
                .iter()
                .step_by(stride)
                .fold(0u64, |h, v| mix(h, v.to_bits() as u64, 0));
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, fingerprint, 1));
            let mut order: Vec<usize> = (0..patches).collect();
            order.shuffle(&mut rng);
            let mut place = vec![0usize; patches];
            for (position, &p) in order.iter().enumerate() {
                place[p] = position;
            }
            for &p in &order[..visible] {
                keep.extend(std::iter::repeat_n(p as i64, enc_dim));
            }
            for &position in &place {
                restore.extend(std::iter::repeat_n(position as i64, dec_dim));
                hidden.push(if position < visible { 0.0f32 } else { 1.0 });
            }
        }
        let int = |values: Vec<i64>, shape: [usize; 3]| {
            Tensor::<3, Int>::from_data(TensorData::new(values, shape), &self.device)
        };
        Masks {
            keep: int(keep, [b, visible, enc_dim]),
            restore: int(restore, [b, patches, dec_dim]),
            hidden: Tensor::from_data(TensorData::new(hidden, [b, patches]), &self.device),
        }
    }

    fn loss(&self, ex: &Examples) -> Tensor<1> {
        let Encoder::Vit(vit) = &self.model.encoder else {
            unreachable!("mae trains a ViT")
        };
        let (views, _) = to_tensors(ex, &self.device);
        let [_, _, h, w] = views.dims();
        let patches = (h / self.patch) * (w / self.patch);
        let dec_dim = self.model.decoder.mask_token.val().dims()[2];
        let masks = self.masks(ex, patches, vit.dim(), dec_dim);
        let latent = vit.encode_visible(views.clone(), masks.keep);
        let predicted = self.model.decoder.forward(latent, masks.restore);
        let target = patchify(views, self.patch);
        masked_patch_loss(predicted, target, masks.hidden)
    }
}

/// Images `[b, c, h, w]` as patches `[b, (h/p)(w/p), p·p·c]`, each patch's pixels in
/// (row, column, channel) order, as MAE's `patchify`.
pub fn patchify(images: Tensor<4>, p: usize) -> Tensor<3> {
    let [b, c, h, w] = images.dims();
    let (gh, gw) = (h / p, w / p);
    images
        .reshape([b, c, gh, p, gw, p])
        .permute([0, 2, 4, 3, 5, 1])
        .reshape([b, gh * gw, p * p * c])
}

impl Learner for MaeLearner {
    type Batch = Examples;
    fn inputs(&self, ex: &Examples) -> usize {
        ex.num_views()
    }
    fn step(&mut self, ex: &Examples, lr: f64, _progress: f64) -> StepStats {
        let loss = self.loss(ex);
        let loss_value = self
            .optim
            .global_loss(loss.clone().into_scalar(), ex.labels.len());
        if !loss_value.is_finite() {
            return StepStats::diverged(loss_value);
        }
        let MaeModel { encoder, decoder } = self.model.clone();
        let (encoder, decoder) = self.optim.step(loss, (encoder, decoder), (lr, lr));
        self.model = MaeModel { encoder, decoder };
        StepStats {
            loss: loss_value,
            hits: 0,
            counted: 0,
        }
    }
    fn save_parts(&self) -> Result<[Vec<u8>; 3], String> {
        self.optim.parts(&self.model)
    }
    fn load_parts(&mut self, parts: [Vec<u8>; 3]) -> Result<(), (&'static str, String)> {
        let mut model = self.model.clone();
        self.optim.load(&mut model, parts)?;
        self.model = model;
        Ok(())
    }
}

impl ImageLearner for MaeLearner {
    fn encoder(&self) -> Encoder {
        self.model.encoder.clone()
    }
}

impl PretrainLearner for MaeLearner {
    /// MAE has no pretext accuracy: its pretext task is regression.
    fn pretext_accuracy(&self, _: &ImageSet, _: &Normalizer, _: &dyn Task) -> Option<f64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patchify_orders_pixels_by_row_column_and_channel() {
        let device = Device::flex();
        // One 2-channel 4x4 image: channel 0 holds 0..16, channel 1 holds 100..116.
        let values: Vec<f32> = (0..16)
            .map(|v| v as f32)
            .chain((0..16).map(|v| 100.0 + v as f32))
            .collect();
        let image = Tensor::<4>::from_data(TensorData::new(values, [1, 2, 4, 4]), &device);
        let patches = patchify(image, 2);
        assert_eq!(patches.dims(), [1, 4, 8]);
        let got: Vec<f32> = patches.into_data().try_to_vec().unwrap();
        // The top-left patch: pixels (0,0), (0,1), (1,0), (1,1), each channel 0 then 1.
        assert_eq!(got[..8], [0.0, 100.0, 1.0, 101.0, 4.0, 104.0, 5.0, 105.0]);
        // The top-right patch starts at pixel (0, 2).
        assert_eq!(got[8..10], [2.0, 102.0]);
    }

    /// On a batch seen again and again (the same masks: they come from the images) the
    /// reconstruction loss falls; three of every four patches are hidden.
    #[test]
    fn a_tiny_mae_learns_to_fill_in_the_hidden_patches() {
        use crate::models::{Arch, Stem, VitLayout};
        let device = crate::train::train_device();
        let spec = EncoderSpec {
            arch: Arch::VitTiny,
            width: 0,
            in_channels: 1,
            mean: vec![0.0],
            std: vec![1.0],
            stem: Stem::Cifar,
            vit: Some(VitLayout {
                patch: 4,
                image_size: 8,
            }),
            input_size: None,
            start: None,
        };
        let settings = MaeSettings {
            decoder: DecoderConfig {
                dim: 16,
                depth: 1,
                heads: 2,
            },
            ..MaeSettings::default()
        };
        let recipe = TrainConfig {
            optimizer: crate::train::OptimizerKind::Adamw,
            weight_decay: 0.0,
            ..TrainConfig::default()
        };
        let mut learner = MaeLearner::new(&settings, &spec, &recipe, &device);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        // Smooth images: a hidden patch is predictable from the visible ones.
        let views: Vec<f32> = (0..6)
            .flat_map(|_| {
                let (a, b) = (rng.random::<f32>(), rng.random::<f32>());
                (0..64).map(move |i| a * (i % 8) as f32 + b * (i / 8) as f32)
            })
            .collect();
        let ex = Examples {
            views,
            view_shape: [1, 8, 8],
            labels: vec![0; 6],
            arity: 1,
            groups: Vec::new(),
        };
        // 4 patches per image, 3 hidden.
        let masks = learner.masks(&ex, 4, 192, 16);
        let hidden: f32 = masks.hidden.clone().sum().into_scalar();
        assert_eq!(hidden, 18.0);
        // An image's mask is its own, whatever else the batch holds (a rank's share of it).
        let share = learner.masks(&ex.shard(3..6), 4, 192, 16).hidden;
        assert_eq!(
            share.into_data().try_to_vec::<f32>().unwrap(),
            masks
                .hidden
                .narrow(0, 3, 3)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        );
        let first = learner.step(&ex, 1e-3, 0.0).loss;
        let mut last = first;
        for _ in 0..30 {
            last = learner.step(&ex, 1e-3, 0.0).loss;
        }
        assert!(last < 0.5 * first, "{first} -> {last}");
    }
}
