//! `pretext study`: every cell once, resumable after a kill, with a report and its plots.

mod common;
use common::*;

fn study_config(dir: &std::path::Path) -> std::path::PathBuf {
    let pretrain = dir.join("rotation.toml");
    std::fs::write(
        &pretrain,
        "[model]\nwidth = 4\n[train]\nepochs = 1\nbatch_size = 64\n",
    )
    .unwrap();
    let cfg = dir.join("study.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\npath = \"synthetic\"\nsynthetic_train = 600\nsynthetic_test = 200\nsynthetic_size = 16\n\
             [study]\nout = \"{}\"\nbudgets = [2, 10]\nseeds = 2\nfinetune_steps = 20\n\
             [[study.methods]]\nname = \"rotation\"\npretrain = \"{}\"\n",
            dir.join("study").display(),
            pretrain.display()
        ),
    )
    .unwrap();
    cfg
}

fn rows(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("study/results.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(String::from)
        .collect()
}

#[test]
fn a_killed_study_finishes_without_redoing_its_cells() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = study_config(dir.path());
    let killed = std::process::Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args([
            "--quiet",
            "--threads",
            "2",
            "study",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .env("PRETEXT_ABORT_AFTER_CELLS", "5")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    let before = rows(dir.path());
    assert_eq!(before.len(), 5, "{before:?}");

    let o = pretext(&["study", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // scratch and random, and rotation's three modes: 5 series x 2 budgets x 2 seeds.
    let after = rows(dir.path());
    assert_eq!(after.len(), 20, "{after:?}");
    assert_eq!(
        after[..5],
        before[..],
        "finished cells are kept as they were"
    );
    let keys: std::collections::BTreeSet<String> = after
        .iter()
        .map(|r| r.split(',').take(4).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(keys.len(), 20, "every cell exactly once");
    assert!(
        stdout(&o).contains("(15 new, 5 kept from before)"),
        "{}",
        stdout(&o)
    );

    let report = std::fs::read_to_string(dir.path().join("study/report.md")).unwrap();
    for needle in [
        "## Test accuracy",
        "## Gain over scratch",
        "accuracy.png",
        "training.png",
        "confusion.png",
        "embedding.png",
    ] {
        assert!(report.contains(needle), "report lacks {needle}:\n{report}");
    }
    for plot in ["accuracy", "training", "confusion", "embedding"] {
        let png = std::fs::read(dir.path().join(format!("study/{plot}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{plot}.png");
        let svg = std::fs::read_to_string(dir.path().join(format!("study/{plot}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{plot}.svg");
    }

    // A third run has nothing left to do.
    let o = pretext(&["study", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("(0 new, 20 kept from before)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_study_of_a_missing_run_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("study.toml");
    std::fs::write(
        &cfg,
        "[data]\npath = \"synthetic\"\n[study]\nbudgets = [5]\n[[study.methods]]\nname = \"x\"\nrun = \"/no/such/run\"\n",
    )
    .unwrap();
    let o = pretext(&[
        "study",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        dir.path().join("s").to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "/no/such/run");
}
