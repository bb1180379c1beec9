//! `--init-from`: an encoder's starting weights from a torchvision, timm or pretext-named
//! `.safetensors`, a PyTorch `.pth`/`.pt` state dict, or another pretext run directory.

use std::path::Path;

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    ApplyError, ApplyResult, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore, bridge,
};
use burn::tensor::{Device, TensorData};

use super::names::{Scheme, ignored_on_import, listed, wrapper_prefix};
use super::torch::{TorchTensor, float_data, torch_state};
use crate::Error;
use crate::encoder::TrainedEncoder;
use crate::models::vit::resize_positions;
use crate::models::{Encoder, EncoderSpec};

/// A ViT's position embedding, under timm's name and pretext's.
const POS_EMBED: &str = "pos_embed";

/// The file kinds `--init-from` reads, by extension.
const SAFETENSORS_EXTENSION: &str = "safetensors";
const PYTORCH_EXTENSIONS: [&str; 3] = ["pth", "pt", "bin"];

/// `spec`'s encoder on `device` with the weights of `source`: every tensor of the encoder must
/// be there with its shape (a first convolution over another channel count is spread over the
/// channels, as timm's `adapt_input_conv`); classifier heads and BatchNorm's batch counters are
/// ignored, and anything else left over is refused.
pub fn init_from(source: &Path, spec: &EncoderSpec, device: &Device) -> Result<Encoder, Error> {
    let target = EncoderSpec {
        start: None,
        ..spec.clone()
    }
    .init(device);
    let what = format!(
        "a {} of width {} with {} input channels ({} stem)",
        spec.arch, spec.width, spec.in_channels, spec.stem
    );
    load_into(target, spec.in_channels, source, device, &what)
}

/// `target` (an encoder taking `channels` input channels, described by `what` in errors) with
/// the weights of `source`, as [`init_from`].
pub fn load_into(
    mut target: Encoder,
    channels: usize,
    source: &Path,
    device: &Device,
    what: &str,
) -> Result<Encoder, Error> {
    let scheme = Scheme::of(&target);
    let tensors = read_tensors(source, device)?;
    let tensors = unwrap_prefix(tensors, scheme.input_conv(), source)?;
    let tensors: Vec<PackTensor> = tensors
        .into_iter()
        .filter(|t| !ignored_on_import(&t.name))
        .map(|t| spread_input_channels(t, scheme.input_conv(), channels))
        .map(|t| t.and_then(|t| resample_positions(t, &target, device)))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::msg(format!("{}: {e}", source.display())))?;
    let (tensors, _) = scheme.from_torch().remap(tensors);
    let result = target.apply(tensors, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    let problems = mismatches(&result, scheme);
    if !problems.is_empty() {
        return Err(Error::msg(format!(
            "{}: does not hold the weights of {what}: {}",
            source.display(),
            problems.join("; ")
        )));
    }
    Ok(target)
}

/// What did not match, by kind (each a list under PyTorch's names); empty when all did.
fn mismatches(result: &ApplyResult, scheme: Scheme) -> Vec<String> {
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(path, _)| scheme.torch_name(path))
        .collect();
    let shapes: Vec<String> = result
        .errors
        .iter()
        .map(|e| match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => format!(
                "{} is {:?} in the file, {:?} in the encoder",
                scheme.torch_name(path),
                found.as_slice(),
                expected.as_slice()
            ),
            other => other.to_string(),
        })
        .collect();
    [
        ("missing", missing),
        ("wrong shapes", shapes),
        ("not in the encoder", result.unused.clone()),
    ]
    .into_iter()
    .filter(|(_, names)| !names.is_empty())
    .map(|(what, names)| listed(what, &names).to_string())
    .collect()
}

/// Every tensor of `source` under its PyTorch name.
fn read_tensors(source: &Path, device: &Device) -> Result<Vec<PackTensor>, Error> {
    if source.is_dir() {
        let run = TrainedEncoder::load(source, device)?;
        return Ok(torch_state(&run.encoder)?
            .into_iter()
            .map(TorchTensor::into_pack)
            .collect());
    }
    if !source.exists() {
        return Err(Error::msg(format!("{}: no such file", source.display())));
    }
    let extension = source
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let fail = |e: String| {
        Error::msg(format!(
            "{}: cannot read the weights: {e}",
            source.display()
        ))
    };
    let tensors = if extension == SAFETENSORS_EXTENSION {
        let mut store = SafetensorsStore::from_file(source);
        store
            .get_all_tensors()
            .map_err(|e| fail(e.to_string()))?
            .clone()
    } else if PYTORCH_EXTENSIONS.contains(&extension.as_str()) {
        let mut store = PytorchStore::from_file(source);
        store
            .get_all_tensors()
            .map_err(|e| fail(e.to_string()))?
            .clone()
    } else {
        return Err(Error::msg(format!(
            "{}: not a weights file pretext reads (a .{SAFETENSORS_EXTENSION}, .{} file, or a pretext run directory)",
            source.display(),
            PYTORCH_EXTENSIONS.join(", .")
        )));
    };
    Ok(tensors.into_values().collect())
}

/// The tensors under the prefix that holds `anchor` (the input convolution), with that prefix
/// taken off: `module.`, `backbone.`, `state_dict.` and the like.
fn unwrap_prefix(
    tensors: Vec<PackTensor>,
    anchor: &str,
    source: &Path,
) -> Result<Vec<PackTensor>, Error> {
    let Some(prefix) = wrapper_prefix(tensors.iter().map(|t| t.name.as_str()), anchor) else {
        let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
        return Err(listed(
            &format!(
                "{}: has no `{anchor}` (the encoder's first convolution) under any prefix; it holds",
                source.display()
            ),
            &names,
        ));
    };
    Ok(tensors
        .into_iter()
        .filter_map(|mut t| {
            let rest = t.name.strip_prefix(prefix.as_str())?.to_string();
            t.name = rest;
            Some(t)
        })
        .collect())
}

/// The input convolution `[out, in, k, k]` made to take `channels` input channels: summed over
/// its channels for one, else its channels repeated in turn and scaled by `in / channels`, so
/// that an image whose channels are all equal gives the same output as before.
fn spread_input_channels(
    tensor: PackTensor,
    input_conv: &str,
    channels: usize,
) -> Result<PackTensor, String> {
    if tensor.name != input_conv || tensor.shape.len() != 4 || tensor.shape[1] == channels {
        return Ok(tensor);
    }
    let (name, data) = float_data(tensor)?;
    let shape = data.shape().to_vec();
    let [out, from, kh, kw] = [shape[0], shape[1], shape[2], shape[3]];
    let values = data
        .try_into_vec::<f32>()
        .map_err(|e| format!("{name}: {e:?}"))?;
    let spread = spread(&values, [out, from, kh * kw], channels);
    let data = TensorData::new(spread, [out, channels, kh, kw]);
    Ok(bridge::from_data(data, name, None))
}

/// A ViT's position embedding made for another patch grid (a timm checkpoint at 224 pixels into
/// a ViT at 96, say), resized to `target`'s grid as timm's `resample_abs_pos_embed` does.
fn resample_positions(
    tensor: PackTensor,
    target: &Encoder,
    device: &Device,
) -> Result<PackTensor, String> {
    let Encoder::Vit(vit) = target else {
        return Ok(tensor);
    };
    let want = vit.pos_embed.val().dims();
    let shape = tensor.shape.to_vec();
    if tensor.name != POS_EMBED || shape.len() != 3 || shape == want || shape[2] != want[2] {
        return Ok(tensor);
    }
    // The class token's position and a square grid's; anything else is left to the shape check.
    let grid = shape[1].saturating_sub(1).isqrt();
    if grid * grid + 1 != shape[1] {
        return Ok(tensor);
    }
    let (name, data) = float_data(tensor)?;
    let pos = burn::tensor::Tensor::<3>::from_data(data, device);
    let resized = resize_positions(pos, grid, [vit.grid, vit.grid]);
    Ok(bridge::from_data(resized.into_data(), name, None))
}

/// `weights` `[out, from, k]` over `to` input channels (see [`spread_input_channels`]).
pub fn spread(weights: &[f32], [out, from, k]: [usize; 3], to: usize) -> Vec<f32> {
    let mut spread = vec![0.0; out * to * k];
    for o in 0..out {
        for c in 0..to {
            let dst = &mut spread[(o * to + c) * k..][..k];
            if to == 1 {
                for f in 0..from {
                    let src = &weights[(o * from + f) * k..][..k];
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                }
            } else {
                let src = &weights[(o * from + c % from) * k..][..k];
                let scale = from as f32 / to as f32;
                dst.iter_mut().zip(src).for_each(|(d, s)| *d = s * scale);
            }
        }
    }
    spread
}
