//! Backbones (encoders mapping a batch of images to features) and the heads put on them.

pub mod bert;
pub mod convnet;
pub mod heads;
pub mod resnet;
pub mod vit;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use convnet::ConvNet4;
pub use heads::{ClassifierHead, DinoHead, DinoHeadConfig, ProjectionMlp, WeightNormLinear};
pub use resnet::{ResNet18, ResNet50};
pub use vit::{VisionTransformer, VitLayout};

/// Which backbone architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Convnet4,
    Resnet18,
    Resnet50,
    /// ViT-Tiny (192 wide, 12 blocks, 3 heads), timm's layout.
    #[serde(rename = "vit_tiny")]
    VitTiny,
    /// ViT-Small (384 wide, 12 blocks, 6 heads), timm's layout.
    #[serde(rename = "vit_small")]
    VitSmall,
}

impl Arch {
    pub const ALL: [Arch; 5] = [
        Arch::Convnet4,
        Arch::Resnet18,
        Arch::Resnet50,
        Arch::VitTiny,
        Arch::VitSmall,
    ];

    /// The name in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Convnet4 => "convnet4",
            Arch::Resnet18 => "resnet18",
            Arch::Resnet50 => "resnet50",
            Arch::VitTiny => "vit_tiny",
            Arch::VitSmall => "vit_small",
        }
    }

    /// A Vision Transformer's size; `None` for the convolutional networks.
    pub fn vit_size(self) -> Option<vit::VitSize> {
        match self {
            Arch::VitTiny => Some(vit::VIT_TINY),
            Arch::VitSmall => Some(vit::VIT_SMALL),
            Arch::Convnet4 | Arch::Resnet18 | Arch::Resnet50 => None,
        }
    }

    /// Channels out of stage `stage` (1 to 4) for a first-stage width `width`: the width doubles
    /// each stage, and ResNet-50's bottleneck blocks put out four times their inner width.
    /// A ViT's width at every stage.
    pub fn stage_channels(self, width: usize, stage: usize) -> usize {
        if let Some(size) = self.vit_size() {
            return size.dim;
        }
        let expansion = match self {
            Arch::Resnet50 => resnet::BOTTLENECK_EXPANSION,
            _ => 1,
        };
        (expansion * width) << (stage - 1)
    }

    /// Whether the architecture has a stem to choose: ConvNet-4 has none (its first block is a
    /// plain stride-1 conv3x3, the CIFAR layout).
    pub fn has_stem(self) -> bool {
        matches!(self, Arch::Resnet18 | Arch::Resnet50)
    }

    /// The stem an encoder of this architecture gets on `image_size`-pixel images: `explicit`
    /// when given, else [`Stem::for_image_size`]; always [`Stem::Cifar`] for ConvNet-4.
    pub fn resolve_stem(self, explicit: Option<Stem>, image_size: usize) -> Stem {
        if !self.has_stem() {
            return Stem::Cifar;
        }
        explicit.unwrap_or_else(|| Stem::for_image_size(image_size))
    }
}

/// Looks `name` up among `all` by `name_of`; the error lists the accepted names.
fn parse_named<T: Copy>(
    what: &str,
    name: &str,
    all: &[T],
    name_of: impl Fn(T) -> &'static str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|&v| name_of(v) == name)
        .ok_or_else(|| {
            let names: Vec<_> = all.iter().map(|&v| name_of(v)).collect();
            format!("unknown {what} `{name}` (expected {})", names.join(", "))
        })
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_named("model", s, &Arch::ALL, Arch::name)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The first layers of a ResNet, before the residual stages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// conv3x3 with stride 1 and no max-pool: small images keep their resolution (stage 4 of
    /// a 32-pixel image is 4x4).
    #[default]
    Cifar,
    /// torchvision's conv7x7 with stride 2 (padding 3), BatchNorm, ReLU and a 3x3 max-pool with
    /// stride 2 (padding 1): a 4x smaller map from the start, which real-resolution images
    /// (224 pixels: stage 4 is 7x7) need to be affordable.
    Imagenet,
}

impl Stem {
    pub const ALL: [Stem; 2] = [Stem::Cifar, Stem::Imagenet];

    /// Images at least this many pixels on a side get the ImageNet stem by default: STL-10's
    /// 96 pixels and up, while CIFAR's 32 and Tiny ImageNet's 64 keep the CIFAR stem (the
    /// ImageNet stem would leave a 2x2 stage-4 map at 64 pixels).
    pub const IMAGENET_FROM: usize = 96;

    /// The default stem for training images of `size` pixels on a side: ImageNet at
    /// [`Stem::IMAGENET_FROM`] (96) pixels and above, CIFAR below.
    pub fn for_image_size(size: usize) -> Stem {
        if size >= Self::IMAGENET_FROM {
            Stem::Imagenet
        } else {
            Stem::Cifar
        }
    }

    /// The name in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Stem::Cifar => "cifar",
            Stem::Imagenet => "imagenet",
        }
    }
}

impl std::str::FromStr for Stem {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_named("stem", s, &Stem::ALL, Stem::name)
    }
}

impl std::fmt::Display for Stem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
    /// The ResNets' stem, resolved (ConvNet-4 ignores it and records `cifar`). Encoders saved
    /// before the ImageNet stem existed have no `stem` and had the CIFAR one.
    #[serde(default)]
    pub stem: Stem,
    /// A ViT's patch and the image size of its position embedding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vit: Option<VitLayout>,
    /// The side of the (square) images it was trained on; `None` in encoders saved before it was
    /// recorded. Exports write it down for the people who feed the encoder elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<usize>,
    /// Weights to start from instead of a random initialisation (`--init-from`); never saved.
    #[serde(skip)]
    pub start: Option<StartWeights>,
}

/// An encoder's starting weights (`--init-from`), shared by every network made from the spec
/// (BYOL's target starts as a copy of the online network).
#[derive(Clone, Debug)]
pub struct StartWeights(pub std::sync::Arc<Encoder>);

/// Specs compare by what they describe; two starts are the same only if they are one.
impl PartialEq for StartWeights {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl EncoderSpec {
    pub fn feature_dim(&self) -> usize {
        self.arch.stage_channels(self.width, 4)
    }
    /// The encoder on `device`: its start weights where the spec has them, random otherwise.
    pub fn init(&self, device: &Device) -> Encoder {
        if let Some(start) = &self.start {
            // `fork`: the copy gets its own autodiff graph (BYOL makes two from one start).
            return start.0.as_ref().clone().fork(device);
        }
        let (c, w, stem) = (self.in_channels, self.width, self.stem);
        match self.arch {
            Arch::Convnet4 => Encoder::ConvNet4(ConvNet4::new(c, w, device)),
            Arch::Resnet18 => Encoder::ResNet18(ResNet18::new(c, w, stem, device)),
            Arch::Resnet50 => Encoder::ResNet50(ResNet50::new(c, w, stem, device)),
            Arch::VitTiny | Arch::VitSmall => {
                let size = self.arch.vit_size().expect("a ViT");
                let layout = self.vit.expect("a ViT's spec has its layout");
                Encoder::Vit(VisionTransformer::new(c, size, layout, device))
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
    ResNet50(ResNet50),
    Vit(VisionTransformer),
}

impl Encoder {
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Encoder::ConvNet4(net) => net.forward(images),
            Encoder::ResNet18(net) => net.forward(images),
            Encoder::ResNet50(net) => net.forward(images),
            Encoder::Vit(net) => net.forward(images),
        }
    }

    /// The features of `layer`: its stage's map average-pooled to a `grid x grid` map and
    /// flattened.
    /// On a ViT, stage `s` is the patch tokens after block `s · depth / 4` (after stage 4's,
    /// the final LayerNorm too), as a map of the patch grid; stage 4 with grid 1 is the class
    /// token, the encoder's output.
    pub fn features(&self, images: Tensor<4>, layer: FeatureLayer) -> Tensor<2> {
        if matches!(self, Encoder::Vit(_)) && layer == FeatureLayer::OUTPUT {
            return self.forward(images);
        }
        let map = match self {
            Encoder::ConvNet4(net) => net.stage_map(images, layer.stage),
            Encoder::ResNet18(net) => net.stage_map(images, layer.stage),
            Encoder::ResNet50(net) => net.stage_map(images, layer.stage),
            Encoder::Vit(net) => net.stage_map(images, layer.stage),
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
/// `s` has [`Arch::stage_channels`]: `width · 2^(s-1)`, four times that for ResNet-50), average-pooled to a `grid x grid` map (1: global
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
            stem: Stem::Cifar,
            vit: arch.vit_size().map(|_| VitLayout {
                patch: 4,
                image_size: 32,
            }),
            input_size: None,
            start: None,
        }
    }

    /// Every architecture with every stem it takes.
    fn backbones() -> Vec<(Arch, Stem)> {
        let mut all = vec![(Arch::Convnet4, Stem::Cifar)];
        for arch in [Arch::Resnet18, Arch::Resnet50] {
            all.extend(Stem::ALL.map(|stem| (arch, stem)));
        }
        all
    }

    #[test]
    fn backbones_map_any_channels_and_size_to_their_feature_dim() {
        let dev = Device::flex();
        for (arch, stem) in backbones() {
            let expected = if arch == Arch::Resnet50 {
                32 * 4
            } else {
                8 * 4
            };
            // 7 pixels: the ImageNet stem and the strided stages go down to 1x1 and stay there.
            for (channels, size) in [(1, 28), (3, 32), (3, 13), (3, 7)] {
                let s = EncoderSpec {
                    stem,
                    ..spec(arch, 4, channels)
                };
                assert_eq!(s.feature_dim(), expected, "{arch}");
                let x = Tensor::<4>::random([2, channels, size, size], Distribution::Default, &dev);
                assert_eq!(
                    s.init(&dev).forward(x).dims(),
                    [2, expected],
                    "{arch} ({stem} stem) on {channels}x{size}x{size}"
                );
            }
        }
    }

    #[test]
    fn feature_layers_pool_a_stage_to_a_grid_whose_cells_average_to_the_global_pool() {
        let dev = Device::flex();
        for arch in Arch::ALL {
            let encoder = spec(arch, 2, 3).init(&dev);
            // 32 pixels: every stage-3 map is 8x8, which a 2x2 grid splits evenly.
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
            // Each of stage 3's channels is flattened as a 2x2 grid of cells.
            let channels = arch.stage_channels(2, 3);
            assert_eq!(grid.len(), 2 * channels * 4, "{arch}");
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

    /// `[h, w]` of the map after each stage.
    fn stage_sizes(encoder: &Encoder, x: &Tensor<4>) -> Vec<[usize; 2]> {
        (1..=4)
            .map(|stage| {
                let map = match encoder {
                    Encoder::ConvNet4(net) => net.stage_map(x.clone(), stage),
                    Encoder::ResNet18(net) => net.stage_map(x.clone(), stage),
                    Encoder::ResNet50(net) => net.stage_map(x.clone(), stage),
                    Encoder::Vit(net) => net.stage_map(x.clone(), stage),
                };
                let [_, _, h, w] = map.dims();
                [h, w]
            })
            .collect()
    }

    #[test]
    fn imagenet_stem_resnets_have_torchvision_shapes_at_64_and_224_pixels() {
        let dev = Device::flex();
        for arch in [Arch::Resnet18, Arch::Resnet50] {
            let imagenet = |width| EncoderSpec {
                stem: Stem::Imagenet,
                ..spec(arch, width, 3)
            };
            // The standard width at 64 pixels: 512 and 2048 features.
            let standard = imagenet(64);
            let features = if arch == Arch::Resnet50 { 2048 } else { 512 };
            assert_eq!(standard.feature_dim(), features);
            let x = Tensor::<4>::random([2, 3, 64, 64], Distribution::Default, &dev);
            let encoder = standard.init(&dev);
            assert_eq!(encoder.forward(x.clone()).dims(), [2, features], "{arch}");
            let x224 = Tensor::<4>::random([2, 3, 224, 224], Distribution::Default, &dev);
            assert_eq!(encoder.forward(x224).dims(), [2, features], "{arch}");
            assert_eq!(
                stage_sizes(&encoder, &x),
                [[16, 16], [8, 8], [4, 4], [2, 2]],
                "{arch}"
            );
            // 224 pixels at width 8 (the maps' sizes do not depend on the width): a 4x smaller
            // map after the stem, then 56, 28, 14 and 7 as in torchvision.
            let small = imagenet(8);
            let x = Tensor::<4>::random([2, 3, 224, 224], Distribution::Default, &dev);
            let encoder = small.init(&dev);
            assert_eq!(
                stage_sizes(&encoder, &x),
                [[56, 56], [28, 28], [14, 14], [7, 7]],
                "{arch}"
            );
            assert_eq!(
                encoder.forward(x).dims(),
                [2, small.feature_dim()],
                "{arch}"
            );
        }
    }

    #[test]
    fn cifar_stem_keeps_the_resolution_until_stage_2() {
        let dev = Device::flex();
        for arch in [Arch::Resnet18, Arch::Resnet50] {
            let encoder = spec(arch, 2, 3).init(&dev);
            let x = Tensor::<4>::random([1, 3, 32, 32], Distribution::Default, &dev);
            assert_eq!(
                stage_sizes(&encoder, &x),
                [[32, 32], [16, 16], [8, 8], [4, 4]],
                "{arch}"
            );
        }
    }

    /// Learned values: `num_params` also counts BatchNorm's running statistics, which
    /// torchvision (and the optimiser) do not.
    fn parameters(encoder: &Encoder) -> usize {
        use burn::store::ModuleSnapshot;
        encoder
            .collect(None, None, false)
            .iter()
            .filter(|t| !t.name.ends_with("running_mean") && !t.name.ends_with("running_var"))
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }

    #[test]
    fn parameter_counts_match_torchvision_without_the_classifier() {
        let dev = Device::flex();
        // torchvision's resnet18 (11,689,512) and resnet50 (25,557,032) less their fc layers
        // (512·1000 + 1000 and 2048·1000 + 1000); BatchNorm's running statistics are buffers.
        for (arch, expected) in [(Arch::Resnet18, 11_176_512), (Arch::Resnet50, 23_508_032)] {
            let s = EncoderSpec {
                stem: Stem::Imagenet,
                ..spec(arch, 64, 3)
            };
            assert_eq!(parameters(&s.init(&dev)), expected, "{arch}");
            // The CIFAR stem's 3x3 conv has 3·64·(49 - 9) fewer weights than the 7x7 one.
            let cifar = parameters(&spec(arch, 64, 3).init(&dev));
            assert_eq!(cifar, expected - 3 * 64 * 40, "{arch}");
        }
    }

    #[test]
    fn cifar_resnet18_weights_keep_their_names() {
        use burn::store::ModuleSnapshot;
        let dev = Device::flex();
        let net = ResNet18::new(3, 2, Stem::Cifar, &dev);
        let paths: Vec<String> = net
            .collect(None, None, false)
            .into_iter()
            .map(|t| t.name)
            .collect();
        // The names of the encoders saved before the ImageNet stem, which must still load.
        for name in [
            "stem.conv.weight",
            "stem.bn.gamma",
            "blocks.0.first.conv.weight",
        ] {
            assert!(paths.iter().any(|p| p == name), "{name} not in {paths:?}");
        }
    }

    #[test]
    fn the_stem_defaults_to_imagenet_from_96_pixels_and_records_in_the_spec() {
        assert_eq!(Stem::for_image_size(32), Stem::Cifar);
        assert_eq!(Stem::for_image_size(95), Stem::Cifar);
        assert_eq!(Stem::for_image_size(96), Stem::Imagenet);
        assert_eq!(Stem::for_image_size(224), Stem::Imagenet);
        assert_eq!(Arch::Resnet50.resolve_stem(None, 224), Stem::Imagenet);
        assert_eq!(
            Arch::Resnet18.resolve_stem(Some(Stem::Cifar), 224),
            Stem::Cifar
        );
        assert_eq!(Arch::Convnet4.resolve_stem(None, 224), Stem::Cifar);
        assert_eq!("imagenet".parse::<Stem>(), Ok(Stem::Imagenet));
        assert_eq!("resnet50".parse::<Arch>(), Ok(Arch::Resnet50));
        assert!("vgg".parse::<Arch>().unwrap_err().contains("resnet50"));

        // encoder.json from before the stem existed: the CIFAR stem it was trained with.
        let old = r#"{"arch": "resnet18", "width": 64, "in_channels": 3,
                      "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}"#;
        let spec: EncoderSpec = serde_json::from_str(old).unwrap();
        assert_eq!(spec.stem, Stem::Cifar);
        let new = EncoderSpec {
            stem: Stem::Imagenet,
            ..spec
        };
        let text = serde_json::to_string(&new).unwrap();
        assert!(text.contains(r#""stem":"imagenet""#), "{text}");
        assert_eq!(serde_json::from_str::<EncoderSpec>(&text).unwrap(), new);
    }
}
