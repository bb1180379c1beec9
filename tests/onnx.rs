//! `pretext export --to onnx` checked by a runtime pretext did not write: each architecture's
//! ONNX graph, run by tract, gives the features of the encoder's own forward pass on the
//! normalised images (what `pretext embed` computes) within 1e-4, at two batch sizes from one
//! file. BatchNorm's running statistics, its affine parameters and the biases are made
//! non-trivial first, and the specs normalise with a mean and std away from 0 and 1.
//!
//! Set `PRETEXT_ONNX_DIR` to keep the exported files there (for `onnx.checker` or
//! onnxruntime), each with its input images and pretext's features at each batch as raw
//! little-endian float32 (`{name}_b{batch}_images.f32`, `{name}_b{batch}_features.f32`).

use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use pretext::interop::names::Scheme;
use pretext::interop::onnx::{INPUT, OUTPUT, onnx_model};
use pretext::interop::torch::{TorchTensor, torch_state};
use pretext::models::vit::VitSize;
use pretext::models::{Arch, Encoder, EncoderSpec, Stem, VisionTransformer, VitLayout};
use tract_onnx::prelude::*;

/// The largest difference allowed between tract's features and pretext's.
const TOLERANCE: f32 = 1e-4;

fn spec(arch: Arch, width: usize, in_channels: usize, stem: Stem) -> EncoderSpec {
    let mean = [0.4, 0.45, 0.5];
    let std = [0.25, 0.3, 0.2];
    EncoderSpec {
        arch,
        width,
        in_channels,
        mean: mean[..in_channels].to_vec(),
        std: std[..in_channels].to_vec(),
        stem,
        vit: None,
        input_size: None,
        start: None,
    }
}

/// A deterministic value in `[lo, hi)` for index `i` of tensor number `t`.
fn wiggle(t: usize, i: usize, lo: f32, hi: f32) -> f32 {
    let h = (t as u64 * 0x9E37_79B9_7F4A_7C15) ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let h = (h ^ (h >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    lo + (hi - lo) * ((h >> 40) as f32 / (1u64 << 24) as f32)
}

/// `encoder` with BatchNorm running statistics, norm scales and shifts, and biases away from
/// their initial 0 and 1, written through PyTorch's names as `--init-from` would.
fn perturbed(encoder: Encoder) -> Encoder {
    let scheme = Scheme::of(&encoder);
    let state: Vec<TorchTensor> = torch_state(&encoder).unwrap();
    let packs = state
        .into_iter()
        .enumerate()
        .map(|(t, mut tensor)| {
            let range = match tensor.name.rsplit('.').next().unwrap() {
                "running_var" => Some((0.5, 2.0)),
                "running_mean" | "bias" => Some((-0.3, 0.3)),
                "weight" if tensor.shape.len() == 1 => Some((0.5, 1.5)),
                _ => None,
            };
            if let Some((lo, hi)) = range {
                for (i, v) in tensor.values.iter_mut().enumerate() {
                    *v = wiggle(t, i, lo, hi);
                }
            }
            tensor.into_pack()
        })
        .collect();
    let (packs, _) = scheme.from_torch().remap(packs);
    let mut encoder = encoder;
    let result = encoder.apply(packs, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert!(result.missing.is_empty(), "{:?}", result.missing);
    assert!(result.unused.is_empty(), "{:?}", result.unused);
    encoder
}

/// `batch` random images `[batch, c, size, size]` in `[0, 1)`, as values.
fn images(batch: usize, c: usize, size: usize, device: &Device) -> Vec<f32> {
    Tensor::<4>::random(
        [batch, c, size, size],
        Distribution::Uniform(0.0, 1.0),
        device,
    )
    .into_data()
    .try_to_vec::<f32>()
    .unwrap()
}

/// pretext's features of `pixels` `[batch, c, size, size]`, normalised with `spec`'s mean and std.
fn pretext_features(
    encoder: &Encoder,
    spec: &EncoderSpec,
    pixels: &[f32],
    shape: [usize; 4],
    device: &Device,
) -> (Vec<f32>, [usize; 2]) {
    let plane = shape[2] * shape[3];
    let normalised: Vec<f32> = pixels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let c = (i / plane) % shape[1];
            (p - spec.mean[c]) / spec.std[c]
        })
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(normalised, shape), device);
    let features = encoder.forward(x);
    let dims = features.dims();
    (features.into_data().try_to_vec::<f32>().unwrap(), dims)
}

/// tract's features of `pixels` through the ONNX graph `bytes`, typed for `shape`.
fn tract_features(bytes: &[u8], pixels: &[f32], shape: [usize; 4]) -> (Vec<f32>, Vec<usize>) {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &*bytes)
        .expect("tract reads the graph")
        .with_input_fact(0, f32::fact(shape).into())
        .unwrap()
        .into_optimized()
        .expect("tract optimises the graph")
        .into_runnable()
        .unwrap();
    let input = tract_ndarray::Array4::from_shape_vec(shape, pixels.to_vec()).unwrap();
    let out = model
        .run(tvec!(tract_onnx::prelude::Tensor::from(input).into()))
        .unwrap();
    let view = out[0].to_plain_array_view::<f32>().unwrap();
    (view.iter().copied().collect(), view.shape().to_vec())
}

/// Exports `encoder` (perturbed first), checks the graph's interface, and compares tract's
/// features with pretext's at batches 3 and 5 of `size`-pixel images: the largest difference.
fn check(name: &str, encoder: Encoder, spec: &EncoderSpec, size: usize) -> f32 {
    let device = Device::flex();
    let encoder = perturbed(encoder);
    let metadata = vec![("arch".to_string(), name.to_string())];
    let bytes = onnx_model(&encoder, spec, &metadata).unwrap();
    keep(&format!("{name}.onnx"), &bytes);
    let mut worst = 0.0f32;
    for batch in [3, 5] {
        let shape = [batch, spec.in_channels, size, size];
        let pixels = images(batch, spec.in_channels, size, &device);
        let (want, dims) = pretext_features(&encoder, spec, &pixels, shape, &device);
        keep(&format!("{name}_b{batch}_images.f32"), &le_bytes(&pixels));
        keep(&format!("{name}_b{batch}_features.f32"), &le_bytes(&want));
        let (got, got_dims) = tract_features(&bytes, &pixels, shape);
        assert_eq!(got_dims, dims.to_vec(), "{name}: batch {batch}");
        let diff = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff <= TOLERANCE,
            "{name}, batch {batch}: max |diff| {diff}"
        );
        worst = worst.max(diff);
    }
    eprintln!("{name}: max |onnx - pretext| = {worst:.2e}");
    worst
}

/// Writes `bytes` to `file` under `PRETEXT_ONNX_DIR` when it is set.
fn keep(file: &str, bytes: &[u8]) {
    if let Ok(dir) = std::env::var("PRETEXT_ONNX_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(file), bytes).unwrap();
    }
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The graph's declared interface: `images` `[batch, c, h, w]` (a symbolic batch) and
/// `features`, the metadata, opset 17, read back by tract.
#[test]
fn the_graph_declares_a_dynamic_batch_and_its_metadata() {
    let device = Device::flex();
    let s = spec(Arch::Convnet4, 4, 3, Stem::Cifar);
    let encoder = s.init(&device);
    let metadata = vec![("mean".to_string(), "[0.4,0.45,0.5]".to_string())];
    let bytes = onnx_model(&encoder, &s, &metadata).unwrap();
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &*bytes)
        .unwrap();
    assert_eq!(proto.ir_version, 8);
    assert_eq!(proto.producer_name, "pretext");
    assert!(
        proto
            .opset_import
            .iter()
            .any(|o| o.domain.is_empty() && o.version == 17)
    );
    let meta: Vec<(&str, &str)> = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(meta, [("mean", "[0.4,0.45,0.5]")]);
    let graph = proto.graph.as_ref().unwrap();
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name, INPUT);
    assert_eq!(graph.output[0].name, OUTPUT);
    // Every weight is an initializer under its PyTorch name.
    let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    for t in torch_state(&encoder).unwrap() {
        assert!(names.contains(&t.name.as_str()), "{} is missing", t.name);
    }
    let model = tract_onnx::onnx().model_for_read(&mut &*bytes).unwrap();
    let fact = format!("{:?}", model.input_fact(0).unwrap());
    assert!(fact.contains("batch") && fact.contains("height"), "{fact}");
    // ConvNet-4's graph always pools: encoders of images under 8 pixels are refused.
    let tiny = EncoderSpec {
        input_size: Some(6),
        ..s.clone()
    };
    let err = onnx_model(&encoder, &tiny, &[]).unwrap_err().to_string();
    assert!(err.contains("8 pixels"), "{err}");
}

#[test]
fn convnet4_graphs_match_pretext_at_32_and_28_pixels() {
    let device = Device::flex();
    let rgb = spec(Arch::Convnet4, 4, 3, Stem::Cifar);
    check("convnet4_rgb32", rgb.init(&device), &rgb, 32);
    let grey = spec(Arch::Convnet4, 4, 1, Stem::Cifar);
    check("convnet4_grey28", grey.init(&device), &grey, 28);
}

#[test]
fn resnet18_graphs_match_pretext_with_either_stem() {
    let device = Device::flex();
    let cifar = spec(Arch::Resnet18, 4, 3, Stem::Cifar);
    check("resnet18_cifar", cifar.init(&device), &cifar, 32);
    let imagenet = spec(Arch::Resnet18, 4, 3, Stem::Imagenet);
    check("resnet18_imagenet", imagenet.init(&device), &imagenet, 64);
}

#[test]
fn resnet50_graph_matches_pretext() {
    let device = Device::flex();
    let s = spec(Arch::Resnet50, 4, 3, Stem::Imagenet);
    check("resnet50_imagenet", s.init(&device), &s, 64);
}

#[test]
fn vit_graph_matches_pretext() {
    let device = Device::flex();
    let layout = VitLayout {
        patch: 4,
        image_size: 16,
    };
    let size = VitSize {
        dim: 12,
        depth: 2,
        heads: 2,
    };
    let encoder = Encoder::Vit(VisionTransformer::new(3, size, layout, &device));
    let s = EncoderSpec {
        vit: Some(layout),
        ..spec(Arch::VitTiny, 12, 3, Stem::Cifar)
    };
    check("vit_tiny_16", encoder, &s, 16);
}
