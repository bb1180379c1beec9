//! The patch-based pretext tasks learn on tiny data from the command line, and jigsaw runs save
//! their permutation set.

mod common;
use common::*;

/// Pretrains `task` on tiny synthetic data with `extra` config lines; returns the held-out
/// pretext accuracy and the run directory.
fn learn(task: &str, extra: &str, epochs: usize) -> (f64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("learn.toml");
    let text = format!(
        "[data]\nsynthetic_train = 1500\nsynthetic_test = 300\nsynthetic_size = 16\n\
         [model]\nwidth = 8\n[task]\nname = \"{task}\"\n{extra}\n\
         [train]\nepochs = {epochs}\nbatch_size = 32\nlr = 0.05\nwarmup_epochs = 0.5\n\
         [run]\nout = \"{}\"\n",
        dir.path().join("run").display()
    );
    std::fs::write(&cfg, text).unwrap();
    let o = pretext(&["pretrain", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{task}: {}", stderr(&o));
    let summary: serde_json::Value = json(&dir.path().join("run/results.json"));
    assert_eq!(summary["task"], task);
    (summary["pretext_test_acc"].as_f64().unwrap(), dir)
}

#[test]
fn relpos_learns_above_chance() {
    let (acc, _dir) = learn(
        "relpos",
        "[task.relpos]\npatch = 8\ngap = 2\njitter = 1\nhead_hidden = 64\nchroma = \"keep\"",
        8,
    );
    // Chance is 0.125; on 300 test images its spread is about 0.02.
    assert!(acc > 0.2, "relpos test accuracy {acc}: chance is 0.125");
}

#[test]
fn jigsaw_learns_above_chance_and_saves_its_permutations() {
    let (acc, dir) = learn(
        "jigsaw",
        "[task.jigsaw]\ngrid = 18\ntile = 5\npermutations = 8\nhead_hidden = 64",
        6,
    );
    assert!(acc > 0.3, "jigsaw test accuracy {acc}: chance is 0.125");
    let set: serde_json::Value = json(&dir.path().join("run/permutations.json"));
    assert_eq!(set["permutations"].as_array().unwrap().len(), 8);
    assert!(set["min_hamming"].as_u64().unwrap() >= 6);
}

#[test]
fn jigsaw_plus_plus_learns_above_chance() {
    let (acc, _dir) = learn(
        "jigsaw++",
        "[task.jigsaw]\ngrid = 18\ntile = 5\npermutations = 8\nhead_hidden = 64\nreplace_max = 2",
        6,
    );
    assert!(acc > 0.25, "jigsaw++ test accuracy {acc}: chance is 0.125");
}

#[test]
fn bad_patch_geometry_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[task]\nname = \"jigsaw\"\n[task.jigsaw]\ngrid = 30\ntile = 12\n",
    )
    .unwrap();
    let o = pretext(&["pretrain", "--config", cfg.to_str().unwrap()]);
    assert_clean_failure(&o, "task.jigsaw.tile");
}
