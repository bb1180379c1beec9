//! ResNets in torchvision's layout: ResNet-18 (basic blocks, stages of [2, 2, 2, 2]) and
//! ResNet-50 (v1.5 bottleneck blocks, stages of [3, 4, 6, 3]), each with the CIFAR stem (3x3
//! conv with stride 1, no max-pool) or the ImageNet stem (7x7 conv with stride 2, 3x3 max-pool
//! with stride 2); see [`Stem`].

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::convnet::ConvBnRelu;
use super::{Stem, global_avg_pool};
use crate::kernels::residual::residual_relu;
use crate::kernels::{batch_norm, conv2d_forward, max_pool2d};

/// Blocks per stage.
pub const RESNET18_DEPTHS: [usize; 4] = [2, 2, 2, 2];
pub const RESNET50_DEPTHS: [usize; 4] = [3, 4, 6, 3];
/// Channels out of a bottleneck block per channel of its 3x3 convolution.
pub const BOTTLENECK_EXPANSION: usize = 4;

/// The layers before the residual stages: conv, BatchNorm, ReLU, and for the ImageNet stem a
/// max-pool. The parameters keep the names of the former CIFAR-only stem (`stem.conv`,
/// `stem.bn`), so that ResNet-18 encoders saved before the ImageNet stem still load; the pool
/// has none.
#[derive(Module, Debug)]
pub struct ResNetStem {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub pool: Option<MaxPool2d>,
}

impl ResNetStem {
    fn new(in_channels: usize, width: usize, stem: Stem, device: &Device) -> Self {
        let (kernel, stride) = match stem {
            Stem::Cifar => (3, 1),
            Stem::Imagenet => (7, 2),
        };
        let ConvBnRelu { conv, bn } =
            ConvBnRelu::square(in_channels, width, kernel, stride, device);
        let pool = (stem == Stem::Imagenet).then(|| {
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init()
        });
        Self { conv, bn, pool }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = batch_norm(&self.bn, conv2d_forward(&self.conv, x), true);
        match &self.pool {
            // A 3x3 window with stride 2 is not the kernels' 2x2 pool: this runs burn's.
            Some(pool) => max_pool2d(pool, x),
            None => x,
        }
    }
}

/// 1x1 strided projection on the skip path where the shape changes.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl Downsample {
    /// The projection when the block changes the shape, else `None` (the identity).
    fn when_needed(in_ch: usize, out_ch: usize, stride: usize, device: &Device) -> Option<Self> {
        (stride != 1 || in_ch != out_ch).then(|| Self {
            conv: Conv2dConfig::new([in_ch, out_ch], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(out_ch).init(device),
        })
    }
}

/// The skip path: `x`, or its projection.
fn skip(downsample: &Option<Downsample>, x: &Tensor<4>) -> Tensor<4> {
    match downsample {
        Some(d) => batch_norm(&d.bn, conv2d_forward(&d.conv, x.clone()), false),
        None => x.clone(),
    }
}

/// A residual block of some ResNet.
trait Residual: Sized {
    /// The block from `in_ch` channels to the stage of inner width `width`, with `stride`.
    fn new(in_ch: usize, width: usize, stride: usize, device: &Device) -> Self;
    /// Channels out of a block of inner width `width`.
    fn out_channels(width: usize) -> usize;
    fn forward(&self, x: Tensor<4>) -> Tensor<4>;
}

#[derive(Module, Debug)]
pub struct BasicBlock {
    pub first: ConvBnRelu,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

impl Residual for BasicBlock {
    fn new(in_ch: usize, out_ch: usize, stride: usize, device: &Device) -> Self {
        Self {
            first: ConvBnRelu::new(in_ch, out_ch, stride, device),
            conv2: Conv2dConfig::new([out_ch, out_ch], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            bn2: BatchNormConfig::new(out_ch).init(device),
            downsample: Downsample::when_needed(in_ch, out_ch, stride, device),
        }
    }

    fn out_channels(width: usize) -> usize {
        width
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = skip(&self.downsample, &x);
        let y = conv2d_forward(&self.conv2, self.first.forward(x));
        residual_relu(batch_norm(&self.bn2, y, false), skip)
    }
}

/// 1x1 reduction, 3x3 (carrying the stride, as torchvision's v1.5), 1x1 expansion to
/// [`BOTTLENECK_EXPANSION`] times the inner width.
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub first: ConvBnRelu,
    pub second: ConvBnRelu,
    pub conv3: Conv2d,
    pub bn3: BatchNorm,
    pub downsample: Option<Downsample>,
}

impl Residual for Bottleneck {
    fn new(in_ch: usize, width: usize, stride: usize, device: &Device) -> Self {
        let out_ch = Self::out_channels(width);
        Self {
            first: ConvBnRelu::square(in_ch, width, 1, 1, device),
            second: ConvBnRelu::square(width, width, 3, stride, device),
            conv3: Conv2dConfig::new([width, out_ch], [1, 1])
                .with_bias(false)
                .init(device),
            bn3: BatchNormConfig::new(out_ch).init(device),
            downsample: Downsample::when_needed(in_ch, out_ch, stride, device),
        }
    }

    fn out_channels(width: usize) -> usize {
        BOTTLENECK_EXPANSION * width
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = skip(&self.downsample, &x);
        let y = conv2d_forward(&self.conv3, self.second.forward(self.first.forward(x)));
        residual_relu(batch_norm(&self.bn3, y, false), skip)
    }
}

/// The blocks of four stages of `depths` blocks after a stem of `width` channels: the inner
/// width doubles each stage, and the first block of stages 2 to 4 halves the map.
fn stages<B: Residual>(width: usize, depths: [usize; 4], device: &Device) -> Vec<B> {
    let mut blocks = Vec::with_capacity(depths.iter().sum());
    let mut in_ch = width;
    for (stage, depth) in depths.into_iter().enumerate() {
        let stage_width = width << stage;
        for i in 0..depth {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            blocks.push(B::new(in_ch, stage_width, stride, device));
            in_ch = B::out_channels(stage_width);
        }
    }
    blocks
}

/// The map after stage `stage` (1 to 4) of a ResNet with these stem, blocks and depths.
fn stage_map<B: Residual>(
    stem: &ResNetStem,
    blocks: &[B],
    depths: [usize; 4],
    x: Tensor<4>,
    stage: usize,
) -> Tensor<4> {
    let mut x = stem.forward(x);
    for block in blocks.iter().take(depths[..stage].iter().sum()) {
        x = block.forward(x);
    }
    x
}

#[derive(Module, Debug)]
pub struct ResNet18 {
    pub stem: ResNetStem,
    pub blocks: Vec<BasicBlock>,
}

impl ResNet18 {
    pub fn new(in_channels: usize, width: usize, stem: Stem, device: &Device) -> Self {
        Self {
            stem: ResNetStem::new(in_channels, width, stem, device),
            blocks: stages(width, RESNET18_DEPTHS, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        global_avg_pool(self.stage_map(x, 4))
    }

    /// The feature map `[b, c, h, w]` after stage `stage` (1 to 4).
    pub fn stage_map(&self, x: Tensor<4>, stage: usize) -> Tensor<4> {
        stage_map(&self.stem, &self.blocks, RESNET18_DEPTHS, x, stage)
    }
}

#[derive(Module, Debug)]
pub struct ResNet50 {
    pub stem: ResNetStem,
    pub blocks: Vec<Bottleneck>,
}

impl ResNet50 {
    pub fn new(in_channels: usize, width: usize, stem: Stem, device: &Device) -> Self {
        Self {
            stem: ResNetStem::new(in_channels, width, stem, device),
            blocks: stages(width, RESNET50_DEPTHS, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        global_avg_pool(self.stage_map(x, 4))
    }

    /// The feature map `[b, c, h, w]` after stage `stage` (1 to 4).
    pub fn stage_map(&self, x: Tensor<4>, stage: usize) -> Tensor<4> {
        stage_map(&self.stem, &self.blocks, RESNET50_DEPTHS, x, stage)
    }
}
