//! Working with the Python ecosystem: an encoder exported under torchvision's, timm's or
//! pretext's documented PyTorch names (safetensors) or as an ONNX graph, and an encoder's start
//! taken from such weights (`--init-from`).

pub mod import;
pub mod names;
pub mod onnx;
mod onnx_pb;
pub mod torch;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::encoder::TrainedEncoder;
use crate::models::{Arch, EncoderSpec, Stem};
use crate::train::checkpoint::write_atomic;
pub use import::init_from;

/// What `pretext export --to` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// safetensors that `torchvision.models.resnet18/50` (with `fc = Identity()`) loads with
    /// `strict=True`: a ResNet with the ImageNet stem, width 64 and 3 channels only.
    Torchvision,
    /// safetensors that timm's ViT (`num_classes=0`) loads with `strict=True`; also the
    /// torchvision-shaped ResNets, whose names timm's `resnet18`/`resnet50` share.
    Timm,
    /// safetensors under the documented names of any encoder (docs/interop.md's module).
    Pytorch,
    /// An ONNX graph with the input normalisation inside.
    Onnx,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 4] = [
        ExportFormat::Torchvision,
        ExportFormat::Timm,
        ExportFormat::Pytorch,
        ExportFormat::Onnx,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Torchvision => "torchvision",
            ExportFormat::Timm => "timm",
            ExportFormat::Pytorch => "pytorch",
            ExportFormat::Onnx => "onnx",
        }
    }

    /// Why `spec` cannot be written in this format, if it cannot.
    pub fn refusal(self, spec: &EncoderSpec) -> Option<String> {
        let torchvision_shaped = matches!(spec.arch, Arch::Resnet18 | Arch::Resnet50)
            && spec.stem == Stem::Imagenet
            && spec.width == TORCHVISION_WIDTH
            && spec.in_channels == RGB;
        match self {
            ExportFormat::Torchvision if !torchvision_shaped => Some(format!(
                "torchvision's resnet18 and resnet50 have the ImageNet stem, width {TORCHVISION_WIDTH} and {RGB} input channels; this encoder is a {} of width {} with the {} stem and {} channels: export it with --to pytorch (docs/interop.md has the module that loads it) or --to onnx",
                spec.arch, spec.width, spec.stem, spec.in_channels
            )),
            ExportFormat::Timm if !(torchvision_shaped || spec.vit.is_some()) => Some(format!(
                "timm takes the ViTs (and the torchvision-shaped ResNets); this encoder is a {} of width {}: export it with --to pytorch or --to onnx",
                spec.arch, spec.width
            )),
            _ => None,
        }
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ExportFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ExportFormat::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown export format `{s}` (expected {})",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// torchvision's ResNet width.
const TORCHVISION_WIDTH: usize = 64;
/// Channels of a colour image.
const RGB: usize = 3;

/// Metadata keys every export records.
pub mod meta {
    pub const FORMAT: &str = "format";
    pub const ARCH: &str = "arch";
    pub const WIDTH: &str = "width";
    pub const STEM: &str = "stem";
    pub const IN_CHANNELS: &str = "in_channels";
    /// The side of the square images the encoder was trained on.
    pub const INPUT_SIZE: &str = "input_size";
    /// `RGB` or `L` (one grey channel).
    pub const CHANNEL_ORDER: &str = "channel_order";
    /// JSON lists, per channel, over pixel / 255.
    pub const MEAN: &str = "mean";
    pub const STD: &str = "std";
    pub const VIT_PATCH: &str = "vit_patch";
    /// What the input is: pixel / 255, then `(x - mean) / std` (safetensors) or nothing more
    /// (ONNX, which normalises inside).
    pub const INPUT: &str = "input";
}

/// What an export of `spec` in `format` records about feeding the encoder.
pub fn metadata(spec: &EncoderSpec, format: ExportFormat) -> Vec<(String, String)> {
    let channel_order = if spec.in_channels == 1 { "L" } else { "RGB" };
    let input = match format {
        ExportFormat::Onnx => "float32 NCHW pixel/255; the graph normalises with mean and std",
        _ => "float32 NCHW (pixel/255 - mean) / std",
    };
    let list = |v: &[f32]| serde_json::to_string(v).expect("floats serialise");
    let mut pairs = vec![
        (meta::FORMAT, format.name().to_string()),
        (meta::ARCH, spec.arch.to_string()),
        (meta::WIDTH, spec.width.to_string()),
        (meta::STEM, spec.stem.to_string()),
        (meta::IN_CHANNELS, spec.in_channels.to_string()),
        (meta::CHANNEL_ORDER, channel_order.to_string()),
        (meta::MEAN, list(&spec.mean)),
        (meta::STD, list(&spec.std)),
        (meta::INPUT, input.to_string()),
    ];
    let input_size = spec.input_size.or(spec.vit.map(|v| v.image_size));
    if let Some(size) = input_size {
        pairs.push((meta::INPUT_SIZE, size.to_string()));
    }
    if let Some(vit) = spec.vit {
        pairs.push((meta::VIT_PATCH, vit.patch.to_string()));
    }
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// What `export` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportSummary {
    pub format: ExportFormat,
    pub out: std::path::PathBuf,
    pub tensors: usize,
    pub parameters: usize,
}

/// Writes the encoder of the run in `run_dir` to `out` in `format`.
pub fn export(run_dir: &Path, format: ExportFormat, out: &Path) -> Result<ExportSummary, Error> {
    let device = crate::device::infer_device();
    let trained = TrainedEncoder::load(run_dir, &device)?;
    if let Some(why) = format.refusal(&trained.spec) {
        return Err(Error::msg(format!("{}: {why}", run_dir.display())));
    }
    let state = torch::torch_state(&trained.encoder)?;
    let summary = ExportSummary {
        format,
        out: out.to_path_buf(),
        tensors: state.len(),
        parameters: state.iter().map(torch::TorchTensor::len).sum(),
    };
    let metadata = metadata(&trained.spec, format);
    match format {
        ExportFormat::Onnx => {
            let graph = onnx::onnx_model_of(&trained.encoder, &trained.spec, state, &metadata)?;
            write_atomic(out, &graph)?;
        }
        _ => torch::write_safetensors(out, &state, metadata.into_iter().collect())?,
    }
    Ok(summary)
}
