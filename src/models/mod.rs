//! Backbones (encoders mapping a batch of images to features) and the heads put on them.

pub mod bert;
pub mod convnet;
pub mod heads;
pub mod resnet;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use convnet::ConvNet4;
pub use heads::{ClassifierHead, ProjectionMlp};
pub use resnet::ResNet18;

/// Which backbone architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Convnet4,
    Resnet18,
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "convnet4" => Ok(Arch::Convnet4),
            "resnet18" => Ok(Arch::Resnet18),
            other => Err(format!(
                "unknown model `{other}` (expected convnet4 or resnet18)"
            )),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::Convnet4 => "convnet4",
            Arch::Resnet18 => "resnet18",
        })
    }
}

/// Everything needed to rebuild an encoder: saved as `encoder.json` beside `encoder.safetensors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderSpec {
    pub arch: Arch,
    /// Width of the first stage; later stages double it (64 gives the standard 64-128-256-512).
    pub width: usize,
    pub in_channels: usize,
    /// Per-channel mean and standard deviation (of pixel/255) the encoder's inputs are normalised with.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl EncoderSpec {
    pub fn feature_dim(&self) -> usize {
        8 * self.width
    }
    pub fn init(&self, device: &Device) -> Encoder {
        match self.arch {
            Arch::Convnet4 => {
                Encoder::ConvNet4(ConvNet4::new(self.in_channels, self.width, device))
            }
            Arch::Resnet18 => {
                Encoder::ResNet18(ResNet18::new(self.in_channels, self.width, device))
            }
        }
    }
}

/// A backbone: images `[batch, channels, height, width]` to features `[batch, feature_dim]`.
/// It never knows which task trains it.
#[derive(Module, Debug)]
pub enum Encoder {
    ConvNet4(ConvNet4),
    ResNet18(ResNet18),
}

impl Encoder {
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Encoder::ConvNet4(net) => net.forward(images),
            Encoder::ResNet18(net) => net.forward(images),
        }
    }

    /// The features of `layer`: its stage's map average-pooled to a `grid x grid` map and
    /// flattened.
    pub fn features(&self, images: Tensor<4>, layer: FeatureLayer) -> Tensor<2> {
        let map = match self {
            Encoder::ConvNet4(net) => net.stage_map(images, layer.stage),
            Encoder::ResNet18(net) => net.stage_map(images, layer.stage),
        };
        if layer.grid == 1 {
            return global_avg_pool(map);
        }
        let b = map.dims()[0];
        let pooled = burn::tensor::module::adaptive_avg_pool2d(map, [layer.grid, layer.grid]);
        pooled.reshape([b as i32, -1])
    }
}

/// Where frozen features are read from an encoder: the output of stage `stage` (1 to 4; stage
/// `s` has `width · 2^(s-1)` channels), average-pooled to a `grid x grid` map (1: global
/// pooling, the encoder's usual output). Earlier stages and finer grids keep more of what a
/// pretext task did not need: the usual linear evaluation of Noroozi et al. and of RotNet probes
/// every stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureLayer {
    pub stage: usize,
    pub grid: usize,
}

impl FeatureLayer {
    /// The encoder's own output.
    pub const OUTPUT: FeatureLayer = FeatureLayer { stage: 4, grid: 1 };

    /// A layer of stage 1 to 4 and a grid of 1 to 8.
    pub fn new(stage: usize, grid: usize) -> Result<Self, String> {
        if !(1..=4).contains(&stage) {
            return Err(format!("the stage must be 1, 2, 3 or 4, not {stage}"));
        }
        if !(1..=8).contains(&grid) {
            return Err(format!("the grid must be 1 to 8, not {grid}"));
        }
        Ok(FeatureLayer { stage, grid })
    }
}

/// Mean over the spatial dimensions: `[b, c, h, w]` to `[b, c]`.
pub(crate) fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
}

/// An encoder with a classification head. `arity` encoder outputs are concatenated per example
/// (1 for rotation or supervised training; 2 for patch pairs, 9 for jigsaw tiles).
#[derive(Module, Debug)]
pub struct Classifier {
    pub encoder: Encoder,
    pub head: ClassifierHead,
}

impl Classifier {
    pub fn forward(&self, views: Tensor<4>, arity: usize) -> Tensor<2> {
        let features = self.encoder.forward(views);
        let [n, d] = features.dims();
        self.head.forward(features.reshape([n / arity, arity * d]))
    }
}

/// The heads of a siamese method: a projector, and (BYOL, SimSiam) a predictor on top of it.
#[derive(Module, Debug)]
pub struct SiameseHeads {
    pub projector: ProjectionMlp,
    pub predictor: Option<ProjectionMlp>,
}

/// An encoder with the heads of SimCLR, BYOL or SimSiam. BYOL's target network is one of these
/// without a predictor.
#[derive(Module, Debug)]
pub struct Siamese {
    pub encoder: Encoder,
    pub heads: SiameseHeads,
}

impl Siamese {
    /// Projections `[n, d]` of `views`.
    pub fn project(&self, views: Tensor<4>) -> Tensor<2> {
        self.heads.projector.forward(self.encoder.forward(views))
    }
    /// Predictions of the projections (the projections themselves without a predictor).
    pub fn predict(&self, projections: Tensor<2>) -> Tensor<2> {
        match &self.heads.predictor {
            Some(p) => p.forward(projections),
            None => projections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn spec(arch: Arch, width: usize, in_channels: usize) -> EncoderSpec {
        EncoderSpec {
            arch,
            width,
            in_channels,
            mean: vec![0.0; in_channels],
            std: vec![1.0; in_channels],
        }
    }

    #[test]
    fn backbones_map_any_channels_and_size_to_8w_features() {
        let dev = Device::flex();
        for arch in [Arch::Convnet4, Arch::Resnet18] {
            for (channels, size) in [(1, 28), (3, 32), (3, 13)] {
                let encoder = spec(arch, 4, channels).init(&dev);
                let x = Tensor::<4>::random([2, channels, size, size], Distribution::Default, &dev);
                assert_eq!(
                    encoder.forward(x).dims(),
                    [2, 32],
                    "{arch} on {channels}x{size}x{size}"
                );
            }
        }
    }

    #[test]
    fn feature_layers_pool_a_stage_to_a_grid_whose_cells_average_to_the_global_pool() {
        let dev = Device::flex();
        for arch in [Arch::Convnet4, Arch::Resnet18] {
            let encoder = spec(arch, 2, 3).init(&dev);
            // 32 pixels: both stage-3 maps are 8x8, which a 2x2 grid splits evenly.
            let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &dev);
            let output = encoder.features(x.clone(), FeatureLayer::OUTPUT);
            let forward = encoder.forward(x.clone());
            assert_eq!(output.to_data(), forward.to_data(), "{arch}");
            let global = encoder
                .features(x.clone(), FeatureLayer { stage: 3, grid: 1 })
                .to_data();
            let grid = encoder
                .features(x, FeatureLayer { stage: 3, grid: 2 })
                .to_data()
                .try_to_vec::<f32>()
                .unwrap();
            // Stage 3 has 4 * width = 8 channels, each flattened as a 2x2 grid of cells.
            assert_eq!(grid.len(), 2 * 8 * 4, "{arch}");
            let cell_means: Vec<f32> = grid
                .chunks(4)
                .map(|c| c.iter().sum::<f32>() / 4.0)
                .collect();
            for (a, b) in cell_means.iter().zip(global.try_to_vec::<f32>().unwrap()) {
                assert!((a - b).abs() < 1e-5, "{arch}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn feature_layers_outside_the_encoder_are_refused() {
        assert!(FeatureLayer::new(4, 1).is_ok());
        assert!(FeatureLayer::new(0, 1).unwrap_err().contains("stage"));
        assert!(FeatureLayer::new(5, 1).unwrap_err().contains("stage"));
        assert!(FeatureLayer::new(3, 0).unwrap_err().contains("grid"));
        assert!(FeatureLayer::new(3, 9).unwrap_err().contains("grid"));
    }

    #[test]
    fn classifier_concatenates_arity_views_per_example() {
        let dev = Device::flex();
        let s = spec(Arch::Convnet4, 2, 3);
        let model = Classifier {
            encoder: s.init(&dev),
            head: ClassifierHead::linear(3 * s.feature_dim(), 5, &dev),
        };
        let x = Tensor::<4>::random([6, 3, 8, 8], Distribution::Default, &dev);
        assert_eq!(model.forward(x, 3).dims(), [2, 5]);
    }
}
