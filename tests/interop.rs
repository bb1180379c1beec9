//! Interop with PyTorch: pretext loads weights that torchvision, timm and PyTorch modules wrote
//! (fixtures made once by bench/interop_fixtures.py, with the features PyTorch computed) and
//! reproduces their features; its exports carry exactly torchvision's and timm's names and
//! shapes; `--init-from` refuses mismatches with a list; the CLI exports and starts from them.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use pretext::interop::import::{init_from, load_into};
use pretext::interop::names::NUM_BATCHES_TRACKED;
use pretext::interop::torch::{torch_state, write_safetensors};
use pretext::models::vit::{VitLayout, VitSize};
use pretext::models::{Arch, Encoder, EncoderSpec, Stem, VisionTransformer};

use common::{assert_clean_failure, pretext, stdout};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop")
}

fn spec(arch: Arch, width: usize, in_channels: usize, stem: Stem) -> EncoderSpec {
    EncoderSpec {
        arch,
        width,
        in_channels,
        mean: vec![0.0; in_channels],
        std: vec![1.0; in_channels],
        stem,
        vit: arch.vit_size().map(|_| VitLayout {
            patch: 16,
            image_size: 224,
        }),
        input_size: None,
        start: None,
    }
}

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let m = pretext::npy::read_matrix(path).unwrap();
    (vec![m.rows, m.cols], m.values)
}

/// The fixture's input `[n, c, h, w]`.
fn input(name: &str, shape: [usize; 4]) -> Tensor<4> {
    let bytes = std::fs::read(fixtures().join(format!("{name}_input.npy"))).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let values: Vec<f32> = npy.into_vec().unwrap();
    Tensor::from_data(TensorData::new(values, shape), &Device::flex())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// pretext's features of `encoder` on the fixture's input against PyTorch's.
fn assert_reproduces(name: &str, encoder: &Encoder, shape: [usize; 4]) {
    let got = encoder
        .forward(input(name, shape))
        .to_data()
        .try_to_vec::<f32>()
        .unwrap();
    let (_, want) = npy(&fixtures().join(format!("{name}_features.npy")));
    let diff = max_diff(&got, &want);
    assert!(diff < 1e-4, "{name}: max |pretext - PyTorch| = {diff}");
}

#[test]
fn torchvision_and_pytorch_named_weights_give_pytorchs_features() {
    let dev = Device::flex();
    for (name, arch, stem) in [
        ("resnet18_w4_imagenet", Arch::Resnet18, Stem::Imagenet),
        ("resnet18_w4_cifar", Arch::Resnet18, Stem::Cifar),
        ("resnet50_w4_imagenet", Arch::Resnet50, Stem::Imagenet),
        ("convnet4_w4", Arch::Convnet4, Stem::Cifar),
    ] {
        let file = fixtures().join(format!("{name}.safetensors"));
        let encoder = init_from(&file, &spec(arch, 4, 3, stem), &dev).unwrap();
        assert_reproduces(name, &encoder, [2, 3, 32, 32]);
    }
}

fn tiny_vit() -> Encoder {
    vit_for(16)
}

/// A ViT of dim 12, depth 2 and patch 4 for `image_size`-pixel images.
fn vit_for(image_size: usize) -> Encoder {
    let size = VitSize {
        dim: 12,
        depth: 2,
        heads: 2,
    };
    let layout = VitLayout {
        patch: 4,
        image_size,
    };
    Encoder::Vit(VisionTransformer::new(3, size, layout, &Device::flex()))
}

#[test]
fn a_vit_for_another_image_size_starts_with_its_positions_resampled() {
    // timm's weights for 16-pixel images into a ViT for 32: the position embedding's 4 x 4 grid
    // resized to 8 x 8, as the 16-pixel ViT itself resizes it when shown 32-pixel images.
    let file = fixtures().join("vit_d12_depth2.safetensors");
    let dev = Device::flex();
    let small = load_into(vit_for(16), 3, &file, &dev, "a ViT for 16 pixels").unwrap();
    let large = load_into(vit_for(32), 3, &file, &dev, "a ViT for 32 pixels").unwrap();
    let x = Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &dev);
    let want = small
        .forward(x.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let got = large.forward(x).into_data().try_to_vec::<f32>().unwrap();
    assert!(max_diff(&got, &want) < 1e-5, "{}", max_diff(&got, &want));
}

#[test]
fn timm_vit_weights_give_timms_features() {
    let file = fixtures().join("vit_d12_depth2.safetensors");
    let encoder = load_into(tiny_vit(), 3, &file, &Device::flex(), "a tiny ViT").unwrap();
    assert_reproduces("vit_d12_depth2", &encoder, [2, 3, 16, 16]);
}

#[test]
fn a_pth_checkpoint_with_wrappers_and_a_head_loads() {
    // `{"state_dict": {"module.backbone.blocks.0.conv.weight": ..., "module.head.weight": ...}}`
    let file = fixtures().join("convnet4_w4_wrapped.pth");
    let s = spec(Arch::Convnet4, 4, 3, Stem::Cifar);
    let encoder = init_from(&file, &s, &Device::flex()).unwrap();
    assert_reproduces("convnet4_w4", &encoder, [2, 3, 32, 32]);
}

/// `name → shape` of a safetensors file.
fn shapes(path: &Path) -> BTreeMap<String, Vec<usize>> {
    let (header, _) = common::safetensors_parts(path);
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let shape = v["shape"].as_array().unwrap();
            (
                k.clone(),
                shape.iter().map(|d| d.as_u64().unwrap() as usize).collect(),
            )
        })
        .collect()
}

#[test]
fn exports_have_exactly_torchvisions_and_timms_names_and_shapes() {
    let names: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("names.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (key, arch, stem) in [
        ("torchvision_resnet18", Arch::Resnet18, Stem::Imagenet),
        ("torchvision_resnet50", Arch::Resnet50, Stem::Imagenet),
        ("timm_vit_tiny_patch16_224", Arch::VitTiny, Stem::Cifar),
        ("timm_vit_small_patch16_224", Arch::VitSmall, Stem::Cifar),
    ] {
        let encoder = spec(arch, 64, 3, stem).init(&Device::flex());
        let path = dir.path().join(format!("{key}.safetensors"));
        write_safetensors(&path, &torch_state(&encoder).unwrap(), Default::default()).unwrap();
        let want: BTreeMap<String, Vec<usize>> = names[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                let shape = pair[1].as_array().unwrap();
                let shape = shape.iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (pair[0].as_str().unwrap().to_string(), shape)
            })
            .collect();
        assert_eq!(shapes(&path), want, "{key}");
    }
}

#[test]
fn an_export_loads_back_to_the_same_features_and_one_channel_spreads_over_three() {
    let dev = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for (arch, stem) in [
        (Arch::Convnet4, Stem::Cifar),
        (Arch::Resnet18, Stem::Imagenet),
        (Arch::Resnet50, Stem::Cifar),
    ] {
        let grey = spec(arch, 4, 1, stem).init(&dev);
        let path = dir.path().join(format!("{arch}.safetensors"));
        write_safetensors(&path, &torch_state(&grey).unwrap(), Default::default()).unwrap();
        let x = Tensor::<4>::random([2, 1, 20, 20], burn::tensor::Distribution::Default, &dev);
        let want = grey
            .forward(x.clone())
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();

        let same = init_from(&path, &spec(arch, 4, 1, stem), &dev).unwrap();
        let got = same
            .forward(x.clone())
            .to_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(got, want, "{arch}: export and import are exact");

        // A grey image as three equal channels gives the one-channel encoder's features.
        let colour = init_from(&path, &spec(arch, 4, 3, stem), &dev).unwrap();
        let rgb = Tensor::cat(vec![x.clone(), x.clone(), x], 1);
        let got = colour.forward(rgb).to_data().try_to_vec::<f32>().unwrap();
        assert!(
            max_diff(&got, &want) < 1e-5,
            "{arch}: {}",
            max_diff(&got, &want)
        );
    }
}

#[test]
fn mismatched_weights_are_refused_with_what_did_not_match() {
    let dev = Device::flex();
    let r18 = fixtures().join("resnet18_w4_imagenet.safetensors");
    let err = init_from(&r18, &spec(Arch::Resnet50, 4, 3, Stem::Imagenet), &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("resnet18_w4_imagenet.safetensors"), "{err}");
    assert!(err.contains("resnet50"), "{err}");
    assert!(
        err.contains("layer1.0.conv3.weight"),
        "names the missing tensors: {err}"
    );

    let err = init_from(&r18, &spec(Arch::Resnet18, 8, 3, Stem::Imagenet), &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("wrong shapes"), "{err}");

    // A ResNet's weights have no ConvNet-4 first convolution anywhere.
    let err = init_from(&r18, &spec(Arch::Convnet4, 4, 3, Stem::Cifar), &dev)
        .unwrap_err()
        .to_string();
    assert!(err.contains("blocks.0.conv.weight"), "{err}");
    assert!(
        err.contains("conv1.weight"),
        "lists what the file holds: {err}"
    );

    // A file with a tensor the encoder does not have (not a classifier head) is refused.
    let mut state = torch_state(&spec(Arch::Convnet4, 4, 3, Stem::Cifar).init(&dev)).unwrap();
    let mut extra = state[0].clone();
    extra.name = "blocks.4.conv.weight".into();
    state.push(extra);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.safetensors");
    write_safetensors(&path, &state, Default::default()).unwrap();
    let err = init_from(&path, &spec(Arch::Convnet4, 4, 3, Stem::Cifar), &dev)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not in the encoder") && err.contains("blocks.4.conv.weight"),
        "{err}"
    );
}

#[test]
fn bn_buffers_are_written_as_pytorch_keeps_them() {
    let encoder = spec(Arch::Convnet4, 4, 3, Stem::Cifar).init(&Device::flex());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    write_safetensors(&path, &torch_state(&encoder).unwrap(), Default::default()).unwrap();
    let shapes = shapes(&path);
    for i in 0..4 {
        for buffer in ["running_mean", "running_var", "weight", "bias"] {
            assert_eq!(shapes[&format!("blocks.{i}.bn.{buffer}")], vec![4 << i]);
        }
        assert_eq!(
            shapes[&format!("blocks.{i}.bn.{NUM_BATCHES_TRACKED}")],
            Vec::<usize>::new()
        );
    }
}

/// The CLI: a tiny run is exported (torchvision refused for ConvNet-4, with why), and a
/// transfer and a pretraining start from the export and from the run directory.
#[test]
fn the_cli_exports_and_starts_from_exports() {
    let root = tempfile::tempdir().unwrap();
    let (out, run) = common::pretrain_tiny(root.path(), "a", None);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let file = exports_as_pytorch_only(&run, root.path());
    let cfg = common::tiny_config(root.path(), "");
    transfers_the_export_as_the_run(&cfg, &run, &file, root.path());
    pretrains_from_the_run(&cfg, &run, root.path());
}

/// `--to torchvision` refused for a ConvNet-4 (pointing at `--to pytorch`), which writes the
/// weights with what feeding them needs; the file.
fn exports_as_pytorch_only(run: &Path, root: &Path) -> PathBuf {
    let run_s = run.to_str().unwrap();
    let refused = pretext(&[
        "export",
        "--run",
        run_s,
        "--to",
        "torchvision",
        "--out",
        "x",
    ]);
    assert_clean_failure(&refused, "--to pytorch");

    let file = root.join("encoder.safetensors");
    let o = pretext(&[
        "export",
        "--run",
        run_s,
        "--to",
        "pytorch",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(stdout(&o).contains("wrote"), "{}", stdout(&o));
    let meta = metadata(&file);
    assert_eq!(meta["arch"], "convnet4");
    assert_eq!(meta["input_size"], "16");
    assert_eq!(meta["channel_order"], "RGB");
    assert!(meta["mean"].starts_with('['), "{meta:?}");
    file
}

/// `--run` with `--init-from` refused; an outside encoder transferred probes as the run's own.
fn transfers_the_export_as_the_run(cfg: &Path, run: &Path, file: &Path, root: &Path) {
    let (cfg_s, run_s, file_s) = (
        cfg.to_str().unwrap(),
        run.to_str().unwrap(),
        file.to_str().unwrap(),
    );
    let both = pretext(&[
        "transfer",
        "--config",
        cfg_s,
        "--run",
        run_s,
        "--init-from",
        file_s,
    ]);
    assert_clean_failure(&both, "--init-from");

    let probe = |flag: &str, source: &str, out: &str| {
        let out = root.join(out);
        let o = pretext(&[
            "transfer",
            "--config",
            cfg_s,
            flag,
            source,
            "--mode",
            "probe",
            "--labels-per-class",
            "5",
            "--seeds",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        out
    };
    let from_file = probe("--init-from", file_s, "t-file");
    let from_run = probe("--run", run_s, "t-run");
    let acc =
        |dir: &Path| common::json(&dir.join("results.json"))["results"][0]["per_seed"].clone();
    assert_eq!(
        acc(&from_file),
        acc(&from_run),
        "the same encoder transfers the same"
    );
}

/// Pretraining from the run directory, and a missing file refused before any work. With a
/// learning rate of almost nothing, the new run's convolutions are the start's.
fn pretrains_from_the_run(cfg: &Path, run: &Path, root: &Path) {
    let cfg_s = cfg.to_str().unwrap();
    let next = root.join("next");
    let o = pretext(&[
        "pretrain",
        "--config",
        cfg_s,
        "--init-from",
        run.to_str().unwrap(),
        "--max-steps",
        "2",
        "--lr",
        "1e-9",
        "--out",
        next.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let conv = |dir: &Path| -> Vec<f32> {
        let tensors = common::safetensors_tensors(&dir.join("encoder.safetensors"));
        let bytes = &tensors["ConvNet4.blocks.2.conv.weight"];
        bytes
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let (start, started) = (conv(run), conv(&next));
    assert!(
        max_diff(&start, &started) < 1e-6,
        "{}",
        max_diff(&start, &started)
    );
    let missing = pretext(&["pretrain", "--config", cfg_s, "--init-from", "nowhere.pth"]);
    assert_clean_failure(&missing, "nowhere.pth");
}

fn metadata(path: &Path) -> BTreeMap<String, String> {
    let (header, _) = common::safetensors_parts(path);
    serde_json::from_value(header["__metadata__"].clone()).unwrap()
}
