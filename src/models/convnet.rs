//! ConvNet-4: four conv3x3-BatchNorm-ReLU blocks, max-pool after the first three, global average pool.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::global_avg_pool;

/// conv (no bias: BatchNorm follows) → BatchNorm → ReLU; conv3x3 unless built by `square`.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl ConvBnRelu {
    pub fn new(in_ch: usize, out_ch: usize, stride: usize, device: &Device) -> Self {
        Self::square(in_ch, out_ch, 3, stride, device)
    }
    /// A `kernel x kernel` conv (odd) padded to keep the map's size at stride 1.
    pub fn square(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        device: &Device,
    ) -> Self {
        let pad = kernel / 2;
        Self {
            conv: Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(out_ch).init(device),
        }
    }
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        crate::kernels::batch_norm(
            &self.bn,
            crate::kernels::conv2d_forward(&self.conv, x),
            true,
        )
    }
}

#[derive(Module, Debug)]
pub struct ConvNet4 {
    pub blocks: Vec<ConvBnRelu>,
    pub pool: MaxPool2d,
}

impl ConvNet4 {
    pub fn new(in_channels: usize, width: usize, device: &Device) -> Self {
        let widths = [width, 2 * width, 4 * width, 8 * width];
        let mut blocks = Vec::with_capacity(4);
        let mut in_ch = in_channels;
        for out_ch in widths {
            blocks.push(ConvBnRelu::new(in_ch, out_ch, 1, device));
            in_ch = out_ch;
        }
        Self {
            blocks,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        global_avg_pool(self.stage_map(x, 4))
    }

    /// The feature map `[b, c, h, w]` after block `stage` (1 to 4).
    pub fn stage_map(&self, mut x: Tensor<4>, stage: usize) -> Tensor<4> {
        for (i, block) in self.blocks.iter().take(stage).enumerate() {
            x = block.forward(x);
            // Pool after the first three blocks, while the map is still big enough to halve.
            if i < 3 && i + 1 < stage && x.dims()[2] >= 2 && x.dims()[3] >= 2 {
                x = crate::kernels::max_pool2d(&self.pool, x);
            }
        }
        x
    }
}
