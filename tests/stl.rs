//! STL-10's binary files end to end: `info` reads them, `pretrain` streams the unlabelled split
//! beside the training split, `transfer` reads the labelled splits only.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output};

const SIDE: usize = 96;
const IMAGE_BYTES: usize = 3 * SIDE * SIDE;

/// `n` images in STL-10's layout (planes column-major), pixel values set by image, channel, row
/// and column.
fn images(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * IMAGE_BYTES);
    for i in 0..n {
        for c in 0..3 {
            for col in 0..SIDE {
                for row in 0..SIDE {
                    out.push(((i * 11 + c * 37 + row * 3 + col) % 256) as u8);
                }
            }
        }
    }
    out
}

/// An unpacked `stl10_binary.tar.gz` in `root/stl10_binary`: 20 training images (two per
/// class), 10 test images, `unlabelled` unlabelled ones.
fn write_stl(root: &Path, unlabelled: usize) -> std::path::PathBuf {
    let d = root.join("stl10_binary");
    std::fs::create_dir_all(&d).unwrap();
    let labels = |n: usize| (0..n).map(|i| (i % 10 + 1) as u8).collect::<Vec<u8>>();
    std::fs::write(d.join("train_X.bin"), images(20)).unwrap();
    std::fs::write(d.join("train_y.bin"), labels(20)).unwrap();
    std::fs::write(d.join("test_X.bin"), images(10)).unwrap();
    std::fs::write(d.join("test_y.bin"), labels(10)).unwrap();
    std::fs::write(d.join("unlabeled_X.bin"), images(unlabelled)).unwrap();
    d
}

#[test]
fn info_reads_the_labelled_splits_and_counts_the_unlabelled_one() {
    let dir = tempfile::tempdir().unwrap();
    write_stl(dir.path(), 30);
    let o = pretext(&["info", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "format: stl10",
        "train: 20 images, 3x96x96 (channels x height x width), 10 classes",
        "test: 10 images, 3x96x96",
        "  airplane: 2",
        "  truck: 2",
        "unlabelled: 30 images, 3x96x96",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    let o = pretext(&["info", "--format", "stl10", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_stl_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = write_stl(dir.path(), 3);
    let path = dir.path().to_str().unwrap();

    let mut short = images(3);
    short.truncate(2 * IMAGE_BYTES + 5);
    std::fs::write(d.join("unlabeled_X.bin"), short).unwrap();
    assert_clean_failure(&pretext(&["info", path]), "unlabeled_X.bin");

    std::fs::write(d.join("unlabeled_X.bin"), images(3)).unwrap();
    let mut labels = vec![1u8; 20];
    labels[7] = 11;
    std::fs::write(d.join("train_y.bin"), &labels).unwrap();
    assert_clean_failure(&pretext(&["info", path]), "train_y.bin");
    std::fs::write(d.join("train_y.bin"), &labels[..19]).unwrap();
    assert_clean_failure(&pretext(&["info", path]), "train_y.bin");
}

/// A tiny rotation pretraining of `max_steps` on `data` into `run`, with `extra` arguments;
/// not quiet, so that its stderr gives the count of images pretraining sees.
fn pretrain_loud(data: &str, max_steps: &str, extra: &[&str], run: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args([
            "pretrain", "--data", data, "--task", "rotation", "--model", "convnet4",
        ])
        .args(["--width", "8", "--batch-size", "8", "--threads", "2"])
        .args(["--max-steps", max_steps, "--out", run.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn pretrain_streams_train_and_unlabelled_then_transfer_reads_the_labelled_splits() {
    let dir = tempfile::tempdir().unwrap();
    write_stl(dir.path(), 30);
    let data = dir.path().to_str().unwrap();
    for (name, size) in [("run96", "96"), ("run48", "48")] {
        let run = dir.path().join(name);
        let o = pretrain_loud(data, "2", &["--image-size", size], &run);
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        let seen = format!("(50 images 3x{size}x{size})");
        assert!(
            err.contains(&seen),
            "20 training + 30 unlabelled images {seen}: {err}"
        );
        let summary = json(&run.join("results.json"));
        assert_eq!(summary["steps"], 2, "{summary}");
        assert!(summary["pretext_test_acc"].as_f64().is_some(), "{summary}");

        let out = dir.path().join(format!("{name}-transfer"));
        let o = pretext(&[
            "transfer",
            "--run",
            run.to_str().unwrap(),
            "--mode",
            "knn",
            "--labels-per-class",
            "1",
            "--seeds",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let results = json(&out.join("results.json"));
        assert_eq!(results["results"][0]["mode"], "knn", "{results}");
    }
    // With `stream = "never"`, pretraining keeps to the labelled training split in memory.
    let run = dir.path().join("never");
    let o = pretrain_loud(data, "1", &["--stream", "never"], &run);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("(20 images 3x96x96)"), "{err}");
}
