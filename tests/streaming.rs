//! Image folders read on demand: the same results as in memory, mixed sizes, exact resume, bad
//! files in the middle of a run, and the choice between the two paths.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{safetensors_tensors, stderr, stdout};
use pretext::collection::{self, TrainingImages};
use pretext::config::{DataConfig, StreamMode};
use pretext::data::source::Framing;

/// A JPEG of `w` x `h` whose content depends on `seed`.
fn write_jpeg(path: &Path, w: u32, h: u32, seed: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) % 256;
        image::Rgb([v as u8, ((x * seed) % 256) as u8, ((y + seed) % 256) as u8])
    });
    img.save(path).unwrap();
}

/// `train/<class>` and `test/<class>` folders of 16 x 16 JPEGs.
fn labelled_folder(root: &Path, per_class: u32) {
    for (c, class) in ["ant", "bee"].iter().enumerate() {
        for i in 0..per_class {
            let seed = c as u32 * 100 + i;
            write_jpeg(
                &root.join(format!("train/{class}/{i:03}.jpg")),
                16,
                16,
                seed,
            );
        }
        for i in 0..per_class / 4 {
            let seed = 500 + c as u32 * 100 + i;
            write_jpeg(&root.join(format!("test/{class}/{i:03}.jpg")), 16, 16, seed);
        }
    }
}

/// Unlabelled JPEGs of three sizes.
fn mixed_folder(root: &Path, n: u32) {
    let sizes = [(20, 30), (48, 40), (64, 64)];
    for i in 0..n {
        let (w, h) = sizes[i as usize % sizes.len()];
        write_jpeg(&root.join(format!("{i:03}.jpg")), w, h, i);
    }
}

/// `pretext ARGS` with the index cache kept in `cache` and an optional test-hook variable.
fn run(cache: &Path, args: &[&str], hook: Option<(&str, &str)>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pretext"));
    cmd.args(args)
        .args(["--quiet", "--threads", "2"])
        .env("PRETEXT_CACHE", cache);
    if let Some((k, v)) = hook {
        cmd.env(k, v);
    }
    cmd.output().expect("the pretext binary runs")
}

fn pretrain_args<'a>(
    data: &'a str,
    out: &'a str,
    task: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "pretrain",
        "--data",
        data,
        "--task",
        task,
        "--model",
        "convnet4",
        "--width",
        "4",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    args
}

fn tensors(run_dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    safetensors_tensors(&run_dir.join("encoder.safetensors"))
}

#[test]
fn streaming_a_folder_trains_exactly_as_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    labelled_folder(&data, 16);
    let data = data.to_str().unwrap();
    for task in ["rotation", "simclr"] {
        let out = |mode: &str| dir.path().join(format!("{task}-{mode}"));
        for mode in ["always", "never"] {
            let o = out(mode);
            let args = pretrain_args(data, o.to_str().unwrap(), task, &["--stream", mode]);
            let o = run(dir.path(), &args, None);
            assert!(o.status.success(), "{task} {mode}: {}", stderr(&o));
        }
        assert!(
            tensors(&out("always")) == tensors(&out("never")),
            "{task}: images at their own size must train the same streamed or in memory"
        );
    }
}

#[test]
fn mixed_sizes_stream_at_the_image_size_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mixed");
    mixed_folder(&data, 40);
    let data = data.to_str().unwrap();
    let cfg = dir.path().join("crop.toml");
    std::fs::write(&cfg, "[data]\ncrop_min_scale = 0.3\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let reference = dir.path().join("reference");
    let stopped = dir.path().join("stopped");
    let extra = ["--config", cfg, "--image-size", "16"];
    let o = run(
        dir.path(),
        &pretrain_args(data, reference.to_str().unwrap(), "rotation", &extra),
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // 40 images in batches of 8: 5 steps an epoch; step 7 is inside the second.
    let o = run(
        dir.path(),
        &pretrain_args(data, stopped.to_str().unwrap(), "rotation", &extra),
        Some(("PRETEXT_INTERRUPT_AT_STEP", "7")),
    );
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let o = run(dir.path(), &["resume", stopped.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        tensors(&reference) == tensors(&stopped),
        "a streamed run resumed inside an epoch must match the uninterrupted one"
    );
    let spec = std::fs::read_to_string(reference.join("encoder.json")).unwrap();
    assert!(spec.contains("\"in_channels\": 3"), "{spec}");

    let o = run(dir.path(), &["info", data], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("3 distinct"), "{}", stdout(&o));
    assert!(stdout(&o).contains("48x40: 13"), "{}", stdout(&o));
}

/// A folder of good JPEGs and one whose scan is cut short (its header still reads).
fn folder_with_truncated_jpeg(root: &Path) -> PathBuf {
    for i in 0..23 {
        write_jpeg(&root.join(format!("{i:03}.jpg")), 16, 16, i);
    }
    let broken = root.join("017b.jpg");
    write_jpeg(&broken, 64, 64, 99);
    let bytes = std::fs::read(&broken).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() * 2 / 3]).unwrap();
    broken
}

#[test]
fn a_bad_file_mid_run_stops_with_a_checkpoint_or_is_skipped_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    folder_with_truncated_jpeg(&data);
    let data = data.to_str().unwrap();
    let stopped = dir.path().join("stopped");
    let extra = ["--stream", "always"];
    let o = run(
        dir.path(),
        &pretrain_args(data, stopped.to_str().unwrap(), "rotation", &extra),
        None,
    );
    common::assert_clean_failure(&o, "017b.jpg");
    assert!(stderr(&o).contains("checkpoint saved"), "{}", stderr(&o));
    assert!(stopped.join("checkpoint").exists());

    let skipped = dir.path().join("skipped");
    let extra = ["--stream", "always", "--skip-corrupt"];
    let o = run(
        dir.path(),
        &pretrain_args(data, skipped.to_str().unwrap(), "rotation", &extra),
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = std::fs::read_to_string(skipped.join("skipped.txt")).unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.contains("017b.jpg") && listed.contains("truncated"),
        "{listed}"
    );

    // `info` reads headers only; `--check` decodes and names the broken file.
    let o = run(dir.path(), &["info", data], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(dir.path(), &["info", data, "--check"], None);
    common::assert_clean_failure(&o, "017b.jpg");
}

fn data_config(path: &Path) -> DataConfig {
    DataConfig {
        path: path.to_str().unwrap().into(),
        ..Default::default()
    }
}

fn streamed(cfg: &DataConfig) -> collection::Streamed {
    match collection::for_training(cfg).unwrap() {
        TrainingImages::Stream(s) => s,
        TrainingImages::Memory(_) => panic!("expected the folder to stream"),
    }
}

#[test]
fn vanished_and_changed_files_are_named_and_skippable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for i in 0..6 {
        write_jpeg(&data.join(format!("{i}.jpg")), 16, 16, i);
    }
    let cfg = DataConfig {
        stream: StreamMode::Always,
        ..data_config(&data)
    };
    let set = streamed(&cfg).train;
    std::fs::remove_file(data.join("2.jpg")).unwrap();
    write_jpeg(&data.join("4.jpg"), 32, 32, 7);
    let err = set
        .image(2, Framing::Eval)
        .expect_err("a vanished file fails");
    assert!(
        err.to_string().contains("2.jpg") && err.to_string().contains("gone"),
        "{err}"
    );
    let err = set
        .image(4, Framing::Eval)
        .expect_err("a changed file fails");
    assert!(
        err.to_string().contains("4.jpg") && err.to_string().contains("changed"),
        "{err}"
    );
    assert!(set.image(3, Framing::Eval).unwrap().is_some());

    let skipping = DataConfig {
        skip_corrupt: true,
        ..cfg.clone()
    };
    // The folder changed, so the index is rebuilt: break a file after that.
    let set = streamed(&skipping).train;
    std::fs::remove_file(data.join("5.jpg")).unwrap();
    let index_of_5 = set.len() - 1;
    assert!(set.image(index_of_5, Framing::Eval).unwrap().is_none());
    assert_eq!(set.skipped(), 1);
}

#[test]
fn the_memory_budget_and_the_image_size_choose_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    labelled_folder(&data, 8);
    let small = data_config(&data);
    assert!(matches!(
        collection::for_training(&small).unwrap(),
        TrainingImages::Memory(_)
    ));
    let tight = DataConfig {
        memory_budget_mb: 0,
        ..small.clone()
    };
    assert!(matches!(
        collection::for_training(&tight).unwrap(),
        TrainingImages::Stream(_)
    ));
    let resized = DataConfig {
        image_size: Some(12),
        ..small.clone()
    };
    let s = streamed(&resized);
    assert_eq!(s.train.shape(), [3, 12, 12]);
    assert_eq!(s.test.as_ref().unwrap().len(), 4);

    // A folder whose sizes turn out to differ streams for training (random crops from each
    // file), and in-memory commands decode it with the evaluation crop.
    let mixed = dir.path().join("mixed");
    mixed_folder(&mixed, 6);
    let s = streamed(&data_config(&mixed));
    assert_eq!(
        s.train.shape(),
        [3, 20, 20],
        "the first image's shorter side"
    );
    let ds = pretext::pipeline::load_data(&data_config(&mixed)).unwrap();
    assert_eq!((ds.train.height, ds.train.len), (20, 6));

    // Commands that hold images in memory get the folder framed at the image size.
    let ds = pretext::pipeline::load_data(&resized).unwrap();
    assert_eq!(
        (ds.train.height, ds.train.width, ds.train.len),
        (12, 12, 16)
    );
    // Data read as it is cannot be resized.
    let synthetic = DataConfig {
        image_size: Some(12),
        synthetic_size: 16,
        ..DataConfig::default()
    };
    let err = pretext::pipeline::load_data(&synthetic).err().unwrap();
    assert!(err.to_string().contains("data.image_size"), "{err}");
}
