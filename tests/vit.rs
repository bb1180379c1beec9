//! The Vision Transformer from the command line: a method pretrains it, every transfer mode,
//! `embed` at an inner block on a grid, DINO's smaller local crops (interpolated position
//! embeddings) and cluster transfer from a ViT teacher all run on it, and a patch that does not
//! divide the image is refused by name.

mod common;
use std::path::Path;

use common::*;

/// `model` and `task` are more keys of those sections (the task's may end with its tables).
fn synthetic_config(dir: &Path, name: &str, model: &str, task: &str) -> std::path::PathBuf {
    let cfg = dir.join(format!("{name}.toml"));
    let text = format!(
        "[data]\nsynthetic_train = 300\nsynthetic_test = 100\nsynthetic_size = 16\n\
         [model]\narch = \"vit_tiny\"\n{model}\n[task]\n{task}\n\
         [train]\nepochs = 1\nmax_steps = 4\nbatch_size = 16\nlr = 0.01\nwarmup_epochs = 0.1\n\
         [run]\nout = \"{}\"\nmonitor_memory = 100\nmonitor_queries = 50\n",
        dir.join(name).display()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn a_vit_pretrains_transfers_embeds_and_teaches() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = synthetic_config(dir.path(), "rotation", "", "name = \"rotation\"");
    let o = pretext(&["pretrain", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = dir.path().join("rotation");
    let spec = json(&run.join("encoder.json"));
    assert_eq!(spec["arch"], "vit_tiny");
    // 16-pixel images get patches of 4: a 4 x 4 grid.
    assert_eq!(spec["vit"]["patch"], 4, "{spec}");
    assert_eq!(spec["vit"]["image_size"], 16, "{spec}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("effective_rank"), "{metrics}");

    let out = dir.path().join("transfer");
    let o = pretext(&[
        "transfer",
        "--run",
        run.to_str().unwrap(),
        "--mode",
        "probe,knn,finetune,scratch,random",
        "--labels-per-class",
        "3",
        "--seeds",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let results = json(&out.join("results.json"));
    let modes: Vec<&str> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    for mode in ["probe", "knn", "finetune", "scratch", "random"] {
        assert!(modes.contains(&mode), "{mode} in {results}");
    }

    // Block 6 of 12 (stage 2), its 4 x 4 patch tokens pooled to 2 x 2: 4 x 192 features.
    let embedded = dir.path().join("embedded");
    let o = pretext(&[
        "embed",
        "--run",
        run.to_str().unwrap(),
        "--data",
        "synthetic",
        "--stage",
        "2",
        "--grid",
        "2",
        "--out",
        embedded.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let header = std::fs::read(embedded.join("test_features.npy")).unwrap();
    let header = String::from_utf8_lossy(&header[..128]).to_string();
    assert!(header.contains("(100, 768"), "{header}");

    // A ConvNet-4 student learns the k-means clusters of the ViT teacher's features.
    let o = pretext(&[
        "cluster-transfer",
        "--data",
        "synthetic",
        "--teacher",
        run.to_str().unwrap(),
        "--k",
        "5",
        "--max-steps",
        "3",
        "--epochs",
        "1",
        "--out",
        dir.path().join("student").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn dino_and_mae_train_a_vit_and_bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // 16-pixel global crops and 8-pixel local ones: the 2 x 2 grid interpolates the positions.
    let cfg = synthetic_config(
        dir.path(),
        "dino",
        "",
        "name = \"dino\"\nlocal_crops = 2\nlocal_size = 8\n\
         [task.head]\nhidden = 32\nbottleneck = 8\nprototypes = 16",
    );
    let o = pretext(&["pretrain", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = json(&dir.path().join("dino/results.json"));
    assert_eq!(summary["steps"], 4, "{summary}");

    let bad = synthetic_config(dir.path(), "bad", "patch = 5", "name = \"rotation\"");
    let o = pretext(&["pretrain", "--config", bad.to_str().unwrap()]);
    assert_clean_failure(&o, "model.patch");

    // MAE pretrains the ViT, and refuses a convolutional backbone by name.
    let cfg = synthetic_config(dir.path(), "mae", "", "name = \"mae\"");
    let o = pretext(&["pretrain", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(dir.path().join("mae/metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"loss\""), "{metrics}");
    let o = pretext(&[
        "pretrain",
        "--config",
        cfg.to_str().unwrap(),
        "--model",
        "convnet4",
        "--out",
        dir.path().join("mae-convnet").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "model.arch");
}

#[test]
fn a_killed_mae_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let two_epochs = |name: &str| {
        let cfg = synthetic_config(dir.path(), name, "", "name = \"mae\"");
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "epochs = 1\nmax_steps = 4\nbatch_size = 16",
            "epochs = 2\nmax_steps = 0\nbatch_size = 64",
        );
        std::fs::write(&cfg, text).unwrap();
        cfg
    };
    let (reference, cfg) = (two_epochs("reference"), two_epochs("resumed"));
    assert_resumes_to_the_same_weights(&reference, &cfg, &dir.path().join("resumed"));
}
