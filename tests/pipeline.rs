//! End to end through the CLI on tiny synthetic data: pretrain, resume, transfer, embed.

mod common;
use common::*;

#[test]
fn pretrain_transfer_embed_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    // Fine-tuning with AdamW here; pretraining uses the default SGD.
    let cfg = tiny_config(dir.path(), "optimizer = \"adamw\"\nlr = 0.001");
    let run = dir.path().join("run");
    let o = pretext(&["pretrain", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "config.toml",
        "metrics.jsonl",
        "checkpoint/latest.ckpt",
        "encoder.safetensors",
        "encoder.json",
        "results.json",
    ] {
        assert!(run.join(f).exists(), "missing {f}");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "one line per epoch: {metrics}");
    let summary: serde_json::Value = json(&run.join("results.json"));
    let acc = summary["pretext_test_acc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));

    let out = dir.path().join("transfer");
    let o = pretext(&[
        "transfer",
        "--run",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let results: serde_json::Value = json(&out.join("results.json"));
    assert_eq!(results["labels_per_class"], 3);
    let modes: Vec<&str> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["scratch", "random", "probe", "knn", "finetune"]);
    for r in results["results"].as_array().unwrap() {
        let per_seed = r["per_seed"].as_array().unwrap();
        assert_eq!(per_seed.len(), 2);
        assert!(
            per_seed
                .iter()
                .all(|a| (0.0..=1.0).contains(&a.as_f64().unwrap()))
        );
    }

    // LP-FT: fine-tuning's head starts as the probe, so after one step at a negligible rate
    // its predictions are the probe's (up to BatchNorm's one-step drift of running statistics).
    // Both train on the same augmented views of the labelled images.
    let lpft = dir.path().join("lpft.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .replace(
            "probe_epochs = 50",
            "probe_epochs = 50\nfinetune_head = \"probe\"\nencoder_lr_scale = 1.0\nprobe_augmented_views = 2",
        )
        .replace("lr = 0.001", "lr = 1e-9\nmax_steps = 1");
    std::fs::write(&lpft, text).unwrap();
    let out = dir.path().join("transfer-lpft");
    let o = pretext(&[
        "transfer",
        "--config",
        lpft.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
        "--mode",
        "probe,finetune",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let results: serde_json::Value = json(&out.join("results.json"));
    let per_seed = |i: usize| -> Vec<f64> {
        results["results"][i]["per_seed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_f64().unwrap())
            .collect()
    };
    for (p, f) in per_seed(0).iter().zip(per_seed(1)) {
        assert!((p - f).abs() <= 0.05, "probe vs finetune: {results}");
    }

    let emb = dir.path().join("emb");
    let o = pretext(&[
        "embed",
        "--run",
        run.to_str().unwrap(),
        "--out",
        emb.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(emb.join("test_features.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[200, 32]);
    assert_eq!(npy.dtype(), npyz::DType::Plain("<f4".parse().unwrap()));
    let labels = std::fs::read(emb.join("test_labels.npy")).unwrap();
    let npy = npyz::NpyFile::new(&labels[..]).unwrap();
    assert_eq!(npy.dtype(), npyz::DType::Plain("<i8".parse().unwrap()));
    let labels: Vec<i64> = npy.into_vec().unwrap();
    assert_eq!(labels.len(), 200);

    // Stage 3 (16 channels of the width-4 network) pooled to a 2x2 grid: 64 features.
    let emb = dir.path().join("emb-stage3");
    let args = |grid: &str| {
        let mut a = vec!["embed", "--run", run.to_str().unwrap(), "--stage", "3"];
        a.extend(["--grid", grid, "--out", emb.to_str().unwrap()]);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let o = pretext(&args("2").iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(emb.join("test_features.npy")).unwrap();
    assert_eq!(npyz::NpyFile::new(&bytes[..]).unwrap().shape(), &[200, 64]);
    let o = pretext(&args("9").iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_clean_failure(&o, "--stage/--grid");

    // The frozen modes read the same layer when transfer.feature_stage/feature_grid say so.
    let layered = dir.path().join("layered.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "probe_epochs = 50",
        "probe_epochs = 50\nfeature_stage = 3\nfeature_grid = 2",
    );
    std::fs::write(&layered, text).unwrap();
    let out = dir.path().join("transfer-layered");
    let o = pretext(&[
        "transfer",
        "--config",
        layered.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
        "--mode",
        "random,probe,knn",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let results: serde_json::Value = json(&out.join("results.json"));
    assert_eq!(results["results"].as_array().unwrap().len(), 3);
    let saved = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(saved.contains("feature_grid = 2"), "{saved}");
}

#[test]
fn interrupted_run_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    // The reference: three epochs in one go.
    let (o, reference) = pretrain_tiny(dir.path(), "reference", None);
    assert!(o.status.success(), "{}", stderr(&o));

    // The same run killed right after its first checkpoint (the test hook aborts the process
    // there, as a kill would), then resumed.
    let (killed, run) = pretrain_tiny(
        dir.path(),
        "resumed",
        Some(("PRETEXT_ABORT_AFTER_EPOCH", "1")),
    );
    assert!(!killed.status.success());
    assert!(run.join("checkpoint/latest.ckpt").exists());
    assert!(!run.join("encoder.safetensors").exists());
    let o = pretext(&["resume", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    let epochs: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(epochs.last(), Some(&3));
    assert!(
        epochs.windows(2).all(|w| w[1] == w[0] + 1),
        "epochs logged once each, in order: {epochs:?}"
    );
    let a = safetensors_tensors(&reference.join("encoder.safetensors"));
    let b = safetensors_tensors(&run.join("encoder.safetensors"));
    assert!(!a.is_empty());
    assert!(
        a == b,
        "a resumed run must end with the same weights as an uninterrupted one"
    );
}

#[test]
fn rotation_pretraining_learns_on_tiny_data() {
    // A tiny ConvNet-4 must learn the rotation task well above chance (0.25) on held-out images.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("learn.toml");
    rotation_learning_config(&cfg, &dir.path().join("run"));
    let o = pretext(&["pretrain", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = json(&dir.path().join("run/results.json"));
    let acc = summary["pretext_test_acc"].as_f64().unwrap();
    assert!(
        acc > 0.5,
        "rotation test accuracy {acc} is not well above chance (0.25)"
    );
}

#[test]
fn a_spent_time_budget_records_no_empty_epoch() {
    // A budget spent before the first step (or at an epoch's boundary) ends the run; every
    // epoch in metrics.jsonl must have trained, so none may repeat the step count before it.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = pretext(&[
        "pretrain",
        "--data",
        "synthetic",
        "--width",
        "4",
        "--epochs",
        "3",
        "--max-minutes",
        "0.000000001",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    let mut last_step = 0;
    for line in metrics.lines() {
        let step = serde_json::from_str::<serde_json::Value>(line).unwrap()["step"]
            .as_u64()
            .unwrap();
        assert!(step > last_step, "an epoch without steps: {line}");
        last_step = step;
    }
    assert!(run.join("results.json").exists());
}

/// The metrics of a run without the wall-clock fields.
fn metrics_without_timing(run: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("epoch_seconds");
            o.remove("views_per_s");
            o.remove("warmup_seconds");
            v
        })
        .collect()
}

#[test]
fn stop_inside_an_epoch_saves_and_resume_gives_identical_metrics_and_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (o, reference) = pretrain_tiny(dir.path(), "reference", None);
    assert!(o.status.success(), "{}", stderr(&o));

    // A stop request (what Ctrl-C sends) at step 17: inside epoch 2 of 12 steps each.
    let (o, run) = pretrain_tiny(
        dir.path(),
        "stopped",
        Some(("PRETEXT_INTERRUPT_AT_STEP", "17")),
    );
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("interrupted at step 17"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        metrics_without_timing(&run).len(),
        1,
        "only epoch 1 was complete"
    );

    let o = pretext(&["resume", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        metrics_without_timing(&run),
        metrics_without_timing(&reference)
    );
    let a = safetensors_tensors(&reference.join("encoder.safetensors"));
    let b = safetensors_tensors(&run.join("encoder.safetensors"));
    assert!(
        a == b,
        "resumed from inside an epoch, the weights must match the uninterrupted run"
    );
}
