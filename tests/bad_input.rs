//! Bad input gets a one-line error naming the file or key, and exit code 1; never a panic.

mod common;
use common::*;
use std::path::Path;

fn write_idx_images(path: &Path, declared: u32, rows: u32, cols: u32, data: &[u8]) {
    let mut bytes = vec![0, 0, 8, 3];
    for v in [declared, rows, cols] {
        bytes.extend_from_slice(&v.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

fn write_idx_labels(path: &Path, labels: &[u8]) {
    let mut bytes = vec![0, 0, 8, 1];
    bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    bytes.extend_from_slice(labels);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn truncated_idx_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_images(
        &dir.path().join("train-images-idx3-ubyte"),
        100,
        28,
        28,
        &[0; 500],
    );
    write_idx_labels(&dir.path().join("train-labels-idx1-ubyte"), &[0; 100]);
    let o = pretext(&["info", dir.path().to_str().unwrap()]);
    assert_clean_failure(&o, "train-images-idx3-ubyte");
}

#[test]
fn idx_header_claiming_a_trillion_images_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_images(
        &dir.path().join("train-images-idx3-ubyte"),
        u32::MAX,
        1_000,
        1_000,
        &[0; 64],
    );
    write_idx_labels(&dir.path().join("train-labels-idx1-ubyte"), &[0; 4]);
    let o = pretext(&["info", dir.path().to_str().unwrap()]);
    assert_clean_failure(&o, "train-images-idx3-ubyte");
}

fn write_png(path: &Path, seed: u8) {
    let img = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, seed]));
    img.save(path).unwrap();
}

fn folder_with_one_corrupt_jpeg(root: &Path) {
    for class in ["cat", "dog"] {
        let d = root.join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..4 {
            write_png(&d.join(format!("{i}.png")), i);
        }
    }
    std::fs::write(
        root.join("dog/broken.jpg"),
        b"\xFF\xD8\xFF\xE0 this is not really a jpeg",
    )
    .unwrap();
}

#[test]
fn corrupt_jpeg_among_good_images_is_named_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    folder_with_one_corrupt_jpeg(dir.path());
    let o = pretext(&["info", dir.path().to_str().unwrap()]);
    assert_clean_failure(&o, "broken.jpg");

    let o = pretext(&["info", dir.path().to_str().unwrap(), "--skip-corrupt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("broken.jpg"),
        "a warning names the skipped file: {}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("skipped corrupt images: 1"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn empty_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing-here");
    std::fs::create_dir_all(&empty).unwrap();
    let o = pretext(&["info", empty.to_str().unwrap()]);
    assert_clean_failure(&o, "nothing-here");
}

#[test]
fn missing_path_is_named() {
    let o = pretext(&[
        "pretrain",
        "--data",
        "/no/such/dataset-dir",
        "--epochs",
        "1",
    ]);
    assert_clean_failure(&o, "/no/such/dataset-dir");
}

#[test]
fn bad_config_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let o = pretext(&["pretrain", "--config", cfg.to_str().unwrap(), "--lr", "-1"]);
    assert_clean_failure(&o, "train.lr");
    let o = pretext(&[
        "pretrain",
        "--config",
        cfg.to_str().unwrap(),
        "--batch-size",
        "0",
    ]);
    assert_clean_failure(&o, "train.batch_size");
    // ConvNet-4 has no stem to change.
    let o = pretext(&[
        "pretrain",
        "--config",
        cfg.to_str().unwrap(),
        "--model",
        "convnet4",
        "--stem",
        "imagenet",
    ]);
    assert_clean_failure(&o, "model.stem");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[train]\nlearning_rate = 0.1\n").unwrap();
    let o = pretext(&["pretrain", "--config", bad.to_str().unwrap()]);
    assert_clean_failure(&o, "learning_rate");

    std::fs::write(&bad, "[transfer]\nseeds = 0\n").unwrap();
    let o = pretext(&["pretrain", "--config", bad.to_str().unwrap()]);
    assert_clean_failure(&o, "transfer.seeds");

    std::fs::write(&bad, "[transfer]\nprobe_augmented_views = 1000\n").unwrap();
    let o = pretext(&["pretrain", "--config", bad.to_str().unwrap()]);
    assert_clean_failure(&o, "transfer.probe_augmented_views");

    std::fs::write(&bad, "[transfer]\nfeature_stage = 5\n").unwrap();
    let o = pretext(&["pretrain", "--config", bad.to_str().unwrap()]);
    assert_clean_failure(&o, "transfer.feature_stage");
    // LP-FT's head sits on the encoder's output, so it cannot start from another layer's probe.
    std::fs::write(
        &bad,
        "[transfer]\nfeature_stage = 3\nfinetune_head = \"probe\"\n",
    )
    .unwrap();
    let o = pretext(&["pretrain", "--config", bad.to_str().unwrap()]);
    assert_clean_failure(&o, "transfer.finetune_head");
}

#[test]
fn too_many_labels_per_class_names_the_class() {
    let dir = tempfile::tempdir().unwrap();
    let o = pretext(&[
        "transfer",
        "--data",
        "synthetic",
        "--mode",
        "scratch",
        "--labels-per-class",
        "100000",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "labels_per_class = 100000");
}

#[test]
fn checkpoints_of_another_model_or_corrupt_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let run = dir.path().join("run");
    let o = pretext(&[
        "pretrain",
        "--config",
        cfg.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Another model into the same run directory.
    let o = pretext(&[
        "pretrain",
        "--config",
        cfg.to_str().unwrap(),
        "--epochs",
        "1",
        "--width",
        "8",
    ]);
    assert_clean_failure(&o, "another config");

    // An encoder file that does not match its spec.
    let spec_path = run.join("encoder.json");
    let spec = std::fs::read_to_string(&spec_path)
        .unwrap()
        .replace("\"width\": 4", "\"width\": 8");
    std::fs::write(&spec_path, spec).unwrap();
    let o = pretext(&[
        "transfer",
        "--run",
        run.to_str().unwrap(),
        "--mode",
        "knn",
        "--out",
        dir.path().join("t").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "encoder.safetensors");

    // A corrupt checkpoint.
    let ckpt = run.join("checkpoint/latest.ckpt");
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    let o = pretext(&["resume", run.to_str().unwrap()]);
    assert_clean_failure(&o, "latest.ckpt");
}

#[test]
fn diverging_loss_stops_with_a_clear_error_and_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(dir.path(), "");
    let o = pretext(&[
        "pretrain",
        "--config",
        cfg.to_str().unwrap(),
        "--epochs",
        "3",
        "--lr",
        "1e30",
    ]);
    assert_clean_failure(&o, "loss is");
    assert!(
        stderr(&o).contains("Lower the learning rate"),
        "{}",
        stderr(&o)
    );
    assert!(
        !dir.path().join("run/encoder.safetensors").exists(),
        "a diverged run must not export an encoder"
    );
}

#[test]
fn non_utf8_text_line_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, b"a fine line\nna\xefve\n").unwrap();
    let o = pretext(&["info", corpus.to_str().unwrap()]);
    assert_clean_failure(&o, "corpus.txt: line 2 is not valid UTF-8");
    let o = pretext(&["info", corpus.to_str().unwrap(), "--lossy-utf8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("lines with invalid UTF-8 replaced: 1"));
}

#[test]
fn bf16_on_the_cpu_kernels_and_a_backend_left_out_are_one_line_errors() {
    let o = pretext(&["--precision", "bf16", "bench", "step", "--steps", "1"]);
    assert_clean_failure(&o, "compute in fp32");
    let o = pretext(&["--precision", "fp16", "bench", "step"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "clap refuses an unknown precision"
    );
    if !cfg!(feature = "tch") {
        let o = pretext(&["--device", "tch-cuda", "bench", "step", "--steps", "1"]);
        assert_clean_failure(&o, "--features tch");
    }
}
