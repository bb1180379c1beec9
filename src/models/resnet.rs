//! ResNet-18, CIFAR variant: 3x3 stem with stride 1 and no max-pool, four stages of two basic blocks.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::convnet::ConvBnRelu;
use super::global_avg_pool;
use crate::kernels::{batch_norm, conv2d_forward};

/// 1x1 strided projection on the skip path where the shape changes.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

#[derive(Module, Debug)]
pub struct BasicBlock {
    pub first: ConvBnRelu,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(in_ch: usize, out_ch: usize, stride: usize, device: &Device) -> Self {
        let downsample = (stride != 1 || in_ch != out_ch).then(|| Downsample {
            conv: Conv2dConfig::new([in_ch, out_ch], [1, 1])
                .with_stride([stride, stride])
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(out_ch).init(device),
        });
        Self {
            first: ConvBnRelu::new(in_ch, out_ch, stride, device),
            conv2: Conv2dConfig::new([out_ch, out_ch], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            bn2: BatchNormConfig::new(out_ch).init(device),
            downsample,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let skip = match &self.downsample {
            Some(d) => batch_norm(&d.bn, conv2d_forward(&d.conv, x.clone()), false),
            None => x.clone(),
        };
        let y = batch_norm(
            &self.bn2,
            conv2d_forward(&self.conv2, self.first.forward(x)),
            false,
        );
        relu(y + skip)
    }
}

#[derive(Module, Debug)]
pub struct ResNet18 {
    pub stem: ConvBnRelu,
    pub blocks: Vec<BasicBlock>,
}

impl ResNet18 {
    pub fn new(in_channels: usize, width: usize, device: &Device) -> Self {
        let mut blocks = Vec::with_capacity(8);
        let mut in_ch = width;
        for (stage, mult) in [1, 2, 4, 8].into_iter().enumerate() {
            let out_ch = width * mult;
            let stride = if stage == 0 { 1 } else { 2 };
            blocks.push(BasicBlock::new(in_ch, out_ch, stride, device));
            blocks.push(BasicBlock::new(out_ch, out_ch, 1, device));
            in_ch = out_ch;
        }
        Self {
            stem: ConvBnRelu::new(in_channels, width, 1, device),
            blocks,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        global_avg_pool(self.stage_map(x, 4))
    }

    /// The feature map `[b, c, h, w]` after stage `stage` (1 to 4, two blocks each).
    pub fn stage_map(&self, x: Tensor<4>, stage: usize) -> Tensor<4> {
        let mut x = self.stem.forward(x);
        for block in self.blocks.iter().take(2 * stage) {
            x = block.forward(x);
        }
        x
    }
}
