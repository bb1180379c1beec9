//! The libtorch path (`--features tch`) end to end on `tch-cpu`, the device it has without a GPU:
//! a tiny model learns on it in fp32 and bf16, and a bf16 run's encoder transfers on the CPU.
#![cfg(feature = "tch")]

mod common;
use common::*;

/// Trains rotation on `tch-cpu` at `precision` and returns the held-out pretext accuracy and
/// the run directory.
fn learn(dir: &std::path::Path, precision: &str) -> (f64, std::path::PathBuf) {
    let run = dir.join(format!("run-{precision}"));
    let cfg = dir.join(format!("{precision}.toml"));
    rotation_learning_config(&cfg, &run);
    let o = pretext(&[
        "--device",
        "tch-cpu",
        "--precision",
        precision,
        "pretrain",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{precision}: {}", stderr(&o));
    let acc = json(&run.join("results.json"))["pretext_test_acc"]
        .as_f64()
        .unwrap();
    (acc, run)
}

#[test]
fn a_tiny_convnet_learns_rotation_on_libtorch_in_fp32_and_bf16() {
    let dir = tempfile::tempdir().unwrap();
    for precision in ["fp32", "bf16"] {
        let (acc, _) = learn(dir.path(), precision);
        assert!(
            acc > 0.5,
            "{precision}: rotation test accuracy {acc} is not well above chance (0.25)"
        );
    }
}

#[test]
fn a_bf16_runs_encoder_is_saved_in_fp32_and_transfers_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = learn(dir.path(), "bf16");
    let (header, _) = safetensors_parts(&run.join("encoder.safetensors"));
    for (name, tensor) in header.as_object().unwrap() {
        if name != "__metadata__" {
            assert_eq!(tensor["dtype"], "F32", "{name}");
        }
    }
    let out = dir.path().join("transfer");
    let o = pretext(&[
        "transfer",
        "--run",
        run.to_str().unwrap(),
        "--mode",
        "probe",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("results.json").exists());
}
