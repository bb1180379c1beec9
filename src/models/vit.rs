//! The Vision Transformer (Dosovitskiy et al. 2021), laid out as timm's `VisionTransformer` so
//! that its weights map one to one: a patch embedding (a convolution with the patch as kernel and
//! stride), a class token, a position embedding that includes the class token's, pre-norm blocks
//! (LayerNorm, attention with the query, key and value in one `qkv` linear layer with bias, an
//! output projection; LayerNorm, an MLP with GELU), LayerNorm epsilon 1e-6, and a final LayerNorm.
//! The encoder's output is the class token. Built on pretext's transformer kernels.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::kernels::transformer::{fused_self_attention, gelu, layer_norm, linear};

/// timm's LayerNorm epsilon.
pub const LAYER_NORM_EPSILON: f64 = 1e-6;
/// The MLP's hidden width over the model width.
const MLP_RATIO: usize = 4;
/// timm's initialisation of the linear layers and the position embedding.
const INIT_STD: f64 = 0.02;
/// timm's initialisation of the class token.
const CLS_INIT_STD: f64 = 1e-6;

/// The width, depth and heads of a ViT size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VitSize {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
}

/// ViT-Tiny (timm's `vit_tiny_patch16_224`: 192 wide, 12 blocks, 3 heads).
pub const VIT_TINY: VitSize = VitSize {
    dim: 192,
    depth: 12,
    heads: 3,
};
/// ViT-Small (timm's `vit_small_patch16_224`: 384 wide, 12 blocks, 6 heads).
pub const VIT_SMALL: VitSize = VitSize {
    dim: 384,
    depth: 12,
    heads: 6,
};

/// The patch side a ViT gets on `image_size`-pixel images by default: 4 on images of 32
/// pixels or less (a 7 x 7 or 8 x 8 grid on MNIST and CIFAR), 16 above (14 x 14 at 224).
pub fn default_patch(image_size: usize) -> usize {
    if image_size <= 32 { 4 } else { 16 }
}

impl VitLayout {
    /// `patch` (or the default) for `image_size`-pixel images; an error when it does not
    /// divide the side.
    pub fn new(patch: Option<usize>, image_size: usize) -> Result<Self, String> {
        let patch = patch.unwrap_or_else(|| default_patch(image_size));
        if patch == 0 || !image_size.is_multiple_of(patch) || image_size < patch {
            return Err(format!(
                "a ViT's patch ({patch}) must divide the image side ({image_size})"
            ));
        }
        Ok(Self { patch, image_size })
    }
}

/// What a saved ViT encoder needs besides its size: the patch side and the image side its
/// position embedding was made for (other sizes are interpolated).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VitLayout {
    pub patch: usize,
    pub image_size: usize,
}

#[derive(Module, Debug)]
pub struct PatchEmbed {
    pub proj: Conv2d,
}

#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    pub heads: usize,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
}

/// A linear layer initialised as timm's: normal weights (std 0.02), zero bias.
pub fn timm_linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: INIT_STD,
        })
        .init(device);
    layer.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    layer
}

pub fn norm(dim: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(dim)
        .with_epsilon(LAYER_NORM_EPSILON)
        .init(device)
}

impl Block {
    pub fn new(size: VitSize, device: &Device) -> Self {
        let d = size.dim;
        Self {
            norm1: norm(d, device),
            attn: Attention {
                qkv: timm_linear(d, 3 * d, device),
                proj: timm_linear(d, d, device),
                heads: size.heads,
            },
            norm2: norm(d, device),
            mlp: Mlp {
                fc1: timm_linear(d, MLP_RATIO * d, device),
                fc2: timm_linear(MLP_RATIO * d, d, device),
            },
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let normed = layer_norm(&self.norm1, LAYER_NORM_EPSILON, x.clone());
        let x = x + fused_self_attention(&self.attn.qkv, &self.attn.proj, self.attn.heads, normed);
        let normed = layer_norm(&self.norm2, LAYER_NORM_EPSILON, x.clone());
        x + linear(&self.mlp.fc2, gelu(linear(&self.mlp.fc1, normed)))
    }
}

/// A position embedding `[1, 1 + grid², d]` (the class token's first) with its patch part
/// resized from a `grid x grid` grid to `[gh, gw]` (bicubic, as timm); the class token's kept.
pub fn resize_positions(pos: Tensor<3>, grid: usize, [gh, gw]: [usize; 2]) -> Tensor<3> {
    let [_, _, d] = pos.dims();
    let cls = pos.clone().narrow(1, 0, 1);
    let patches = pos
        .narrow(1, 1, grid * grid)
        .reshape([1, grid, grid, d])
        .permute([0, 3, 1, 2]);
    let resized = interpolate(
        patches,
        InterpolateOptions::new(InterpolateMode::Bicubic).with_output_size([gh, gw]),
    );
    let resized = resized.permute([0, 2, 3, 1]).reshape([1, gh * gw, d]);
    Tensor::cat(vec![cls, resized], 1)
}

#[derive(Module, Debug)]
pub struct VisionTransformer {
    pub patch_embed: PatchEmbed,
    /// `[1, 1, dim]`.
    pub cls_token: Param<Tensor<3>>,
    /// `[1, 1 + grid^2, dim]`: the class token's position first, then the patches' row by row.
    pub pos_embed: Param<Tensor<3>>,
    pub blocks: Vec<Block>,
    pub norm: LayerNorm,
    /// The side of the patch grid the position embedding was made for.
    pub grid: usize,
}

impl VisionTransformer {
    pub fn new(in_channels: usize, size: VitSize, layout: VitLayout, device: &Device) -> Self {
        let (d, p) = (size.dim, layout.patch);
        let grid = layout.image_size / p;
        let normal = |shape: [usize; 3], std: f64| {
            Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, std),
                device,
            ))
        };
        Self {
            patch_embed: PatchEmbed {
                proj: Conv2dConfig::new([in_channels, d], [p, p])
                    .with_stride([p, p])
                    .init(device),
            },
            cls_token: normal([1, 1, d], CLS_INIT_STD),
            pos_embed: normal([1, 1 + grid * grid, d], INIT_STD),
            blocks: (0..size.depth).map(|_| Block::new(size, device)).collect(),
            norm: norm(d, device),
            grid,
        }
    }

    pub fn dim(&self) -> usize {
        self.cls_token.val().dims()[2]
    }

    /// The class token and the patch tokens with their positions, `[b, 1 + gh * gw, dim]`, and
    /// the patch grid `(gh, gw)`.
    fn embed(&self, images: Tensor<4>) -> (Tensor<3>, (usize, usize)) {
        let patches = self.patch_embed.proj.forward(images);
        let [b, d, gh, gw] = patches.dims();
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);
        let cls = self.cls_token.val().repeat_dim(0, b);
        let tokens = Tensor::cat(vec![cls, patches], 1);
        (tokens + self.positions(gh, gw), (gh, gw))
    }

    /// The position embedding for a `gh x gw` patch grid: as made for the training size, or its
    /// patch part resized (bicubic, as timm) for another (DINO's local crops, other resolutions).
    fn positions(&self, gh: usize, gw: usize) -> Tensor<3> {
        let pos = self.pos_embed.val();
        if (gh, gw) == (self.grid, self.grid) {
            return pos;
        }
        resize_positions(pos, self.grid, [gh, gw])
    }

    /// MAE's encoder pass: only the patches `keep` `[b, k, dim]` (patch indices, repeated along
    /// the last axis) of each image, with their positions, after the class token; every block
    /// and the final LayerNorm: `[b, 1 + k, dim]`.
    pub fn encode_visible(&self, images: Tensor<4>, keep: Tensor<3, Int>) -> Tensor<3> {
        let patches = self.patch_embed.proj.forward(images);
        let [b, d, gh, gw] = patches.dims();
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);
        let pos = self.positions(gh, gw);
        let visible = (patches + pos.clone().narrow(1, 1, gh * gw)).gather(1, keep);
        let cls = (self.cls_token.val() + pos.narrow(1, 0, 1)).repeat_dim(0, b);
        let x = Tensor::cat(vec![cls, visible], 1);
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        layer_norm(&self.norm, LAYER_NORM_EPSILON, x)
    }

    /// The class token after every block and the final LayerNorm: `[b, dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let (tokens, _) = self.embed(images);
        let x = self.blocks.iter().fold(tokens, |x, block| block.forward(x));
        let x = layer_norm(&self.norm, LAYER_NORM_EPSILON, x);
        let [b, _, d] = x.dims();
        x.narrow(1, 0, 1).reshape([b, d])
    }

    /// The patch tokens after block `stage · depth / 4` (stage 1 to 4; after stage 4's, the
    /// final LayerNorm too) as a map `[b, dim, gh, gw]`.
    pub fn stage_map(&self, images: Tensor<4>, stage: usize) -> Tensor<4> {
        let (tokens, (gh, gw)) = self.embed(images);
        let depth = self.blocks.len();
        let last = (stage * depth / 4).clamp(1, depth);
        let mut x = self.blocks[..last]
            .iter()
            .fold(tokens, |x, block| block.forward(x));
        if last == depth {
            x = layer_norm(&self.norm, LAYER_NORM_EPSILON, x);
        }
        let [b, n, d] = x.dims();
        x.narrow(1, 1, n - 1)
            .swap_dims(1, 2)
            .reshape([b, d, gh, gw])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::transformer::attention_by_tensor_ops;

    fn tiny(layout: VitLayout) -> VisionTransformer {
        let size = VitSize {
            dim: 8,
            depth: 4,
            heads: 2,
        };
        VisionTransformer::new(3, size, layout, &Device::flex())
    }

    #[test]
    fn the_class_token_is_the_output_and_other_sizes_interpolate_positions() {
        let vit = tiny(VitLayout {
            patch: 4,
            image_size: 16,
        });
        let device = Device::flex();
        let images = Tensor::<4>::random([2, 3, 16, 16], Distribution::Default, &device);
        assert_eq!(vit.forward(images.clone()).dims(), [2, 8]);
        assert_eq!(vit.stage_map(images, 2).dims(), [2, 8, 4, 4]);
        // A 24-pixel image has a 6 x 6 grid: the position embedding is resized to it.
        let larger = Tensor::<4>::random([1, 3, 24, 24], Distribution::Default, &device);
        assert_eq!(vit.stage_map(larger.clone(), 4).dims(), [1, 8, 6, 6]);
        assert_eq!(vit.forward(larger).dims(), [1, 8]);
        assert_eq!(vit.positions(4, 4).dims(), [1, 17, 8]);
        assert_eq!(vit.positions(2, 3).dims(), [1, 7, 8]);
    }

    /// The fused attention on pretext's kernels is the textbook softmax(q k^T / sqrt(d)) v,
    /// written with burn's tensor operations.
    #[test]
    fn the_blocks_attention_is_scaled_dot_product_attention() {
        let vit = tiny(VitLayout {
            patch: 4,
            image_size: 8,
        });
        let device = Device::flex();
        let attn = &vit.blocks[0].attn;
        let x = Tensor::<3>::random([2, 5, 8], Distribution::Default, &device);
        let got = fused_self_attention(&attn.qkv, &attn.proj, attn.heads, x.clone());
        let packed = attn.qkv.forward(x);
        let part = |i: usize| packed.clone().narrow(2, i * 8, 8);
        let want = attn
            .proj
            .forward(attention_by_tensor_ops(part(0), part(1), part(2), 2));
        let diff: f32 = (got - want).abs().max().into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }
}
