//! `pretext bench step` prints one JSON object per run, for every model, that scripts can compare.

mod common;
use common::*;

#[test]
fn bench_step_prints_one_json_object_for_each_model() {
    for (model, extra) in [
        ("convnet4", vec!["--width", "4", "--size", "16"]),
        ("resnet18", vec!["--width", "4", "--size", "16"]),
        (
            "transformer",
            vec![
                "--hidden",
                "64",
                "--layers",
                "1",
                "--seq-len",
                "16",
                "--vocab",
                "50",
            ],
        ),
    ] {
        // The test helper runs with --threads 2.
        let mut args = vec![
            "bench", "step", "--model", model, "--batch", "4", "--steps", "2", "--warmup", "1",
        ];
        args.extend(extra);
        let o = pretext(&args);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        let out = String::from_utf8(o.stdout).unwrap();
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert!(
            v["model"]
                .as_str()
                .unwrap()
                .starts_with(model.trim_end_matches("4")),
            "{v}"
        );
        assert_eq!(
            (
                v["batch"].as_u64(),
                v["threads"].as_u64(),
                v["steps"].as_u64()
            ),
            (Some(4), Some(2), Some(2))
        );
        assert!(v["samples_per_s"].as_f64().unwrap() > 0.0, "{v}");
    }
    // Feature extraction: the encoder alone, named apart from the training step.
    let o = pretext(&[
        "bench",
        "step",
        "--model",
        "resnet18",
        "--inference",
        "--width",
        "4",
        "--size",
        "16",
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--warmup",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8(o.stdout).unwrap().trim()).unwrap();
    assert_eq!(v["model"], "resnet18-features", "{v}");
    assert!(v["samples_per_s"].as_f64().unwrap() > 0.0, "{v}");
    // ResNet-50: the stem follows --image-size (alias --size) unless --stem names it, and the
    // JSON says which ran.
    for (size_flag, size, stem, expected) in [
        ("--image-size", "96", None, "imagenet"),
        ("--size", "16", None, "cifar"),
        ("--image-size", "16", Some("imagenet"), "imagenet"),
    ] {
        let mut args = vec![
            "bench", "step", "--model", "resnet50", "--width", "4", size_flag, size, "--batch",
            "2", "--steps", "1", "--warmup", "0",
        ];
        args.extend(stem.map(|s| ["--stem", s]).into_iter().flatten());
        let o = pretext(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let v: serde_json::Value =
            serde_json::from_str(String::from_utf8(o.stdout).unwrap().trim()).unwrap();
        assert_eq!(
            (v["model"].as_str(), v["stem"].as_str()),
            (Some("resnet50"), Some(expected)),
            "{v}"
        );
    }
    let o = pretext(&["bench", "step", "--model", "convnet4", "--stem", "imagenet"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("model.stem"), "{}", stderr(&o));
    let o = pretext(&["bench", "step", "--model", "transformer", "--inference"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--inference"), "{}", stderr(&o));
    let o = pretext(&["bench", "step", "--model", "transformer", "--layers", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("layers"), "{}", stderr(&o));
}
