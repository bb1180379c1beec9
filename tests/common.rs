//! Helpers shared by the integration tests: run the `pretext` binary and inspect its output.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn pretext(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args(args)
        .args(["--quiet", "--threads", "2"])
        .output()
        .expect("the pretext binary runs")
}

/// A JSON file the binary wrote (`results.json`, `tokenizer.json`, ...).
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The run failed with exit code 1 and a one-line `error:` message containing `needle`.
pub fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, stderr: {err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        error_lines.len(),
        1,
        "expected one error line, stderr: {err}"
    );
    assert!(
        error_lines[0].contains(needle),
        "error line {:?} should mention {needle:?}",
        error_lines[0]
    );
    assert!(!err.contains("panicked"), "must not panic: {err}");
}

/// A tiny pretraining config: synthetic 16x16 images, a narrow ConvNet-4.
pub fn tiny_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("tiny.toml");
    let text = format!(
        r#"
[data]
path = "synthetic"
synthetic_train = 400
synthetic_test = 200
synthetic_size = 16

[model]
arch = "convnet4"
width = 4

[train]
epochs = 2
batch_size = 32
lr = 0.05

[run]
out = "{out}"

[transfer]
labels_per_class = 3
seeds = 2
probe_epochs = 50

[transfer.finetune]
epochs = 2
batch_size = 10
{extra}
"#,
        out = dir.join("run").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes to `path` a config from which a tiny ConvNet-4 learns rotation well above chance
/// (0.25) in seconds: 1,500 synthetic 16x16 images, width 8, six epochs; the run goes to `run`.
pub fn rotation_learning_config(path: &Path, run: &Path) {
    let text = format!(
        "[data]\nsynthetic_train = 1500\nsynthetic_test = 300\nsynthetic_size = 16\n\
         [model]\nwidth = 8\n[train]\nepochs = 6\nbatch_size = 32\nlr = 0.05\naugment = {{ crop_padding = 2, hflip = true }}\n\
         [run]\nout = \"{}\"\n",
        run.display()
    );
    std::fs::write(path, text).unwrap();
}

/// Pretrain the tiny config for three epochs in `root/name`, with an optional test-hook
/// environment variable; returns the process output and the run directory.
pub fn pretrain_tiny(
    root: &Path,
    name: &str,
    hook: Option<(&str, &str)>,
) -> (Output, std::path::PathBuf) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = tiny_config(&dir, "");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pretext"));
    cmd.args([
        "pretrain",
        "--config",
        cfg.to_str().unwrap(),
        "--epochs",
        "3",
        "--quiet",
        "--threads",
        "2",
    ]);
    if let Some((key, value)) = hook {
        cmd.env(key, value);
    }
    (
        cmd.output().expect("the pretext binary runs"),
        dir.join("run"),
    )
}

pub fn shared_data() -> Option<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if root.is_dir() { Some(root) } else { None }
}

/// A safetensors file's JSON header (tensor name → dtype, shape, offsets; `__metadata__`) and
/// its data section.
pub fn safetensors_parts(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

/// Tensor name → raw bytes of a safetensors file (its metadata order is not stable).
pub fn safetensors_tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let (header, data) = safetensors_parts(path);
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(name, info)| {
            let offsets = &info["data_offsets"];
            let (a, b) = (
                offsets[0].as_u64().unwrap() as usize,
                offsets[1].as_u64().unwrap() as usize,
            );
            (name.clone(), data[a..b].to_vec())
        })
        .collect()
}

/// A run of `config` killed after its first epoch and resumed ends with the weights of an
/// uninterrupted run of `reference` (the same config but for its run directory); `resumed`
/// is `config`'s run directory.
#[allow(dead_code)]
pub fn assert_resumes_to_the_same_weights(reference: &Path, config: &Path, resumed: &Path) {
    let o = pretext(&["pretrain", "--config", reference.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let killed = Command::new(env!("CARGO_BIN_EXE_pretext"))
        .args(["--quiet", "--threads", "2", "pretrain", "--config"])
        .arg(config)
        .env("PRETEXT_ABORT_AFTER_EPOCH", "1")
        .output()
        .unwrap();
    assert!(
        !killed.status.success(),
        "the run was stopped after its first epoch"
    );
    let o = pretext(&["resume", resumed.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reference_dir = reference.with_extension("");
    let a = safetensors_tensors(&reference_dir.join("encoder.safetensors"));
    let b = safetensors_tensors(&resumed.join("encoder.safetensors"));
    assert!(!a.is_empty());
    assert!(
        a == b,
        "a resumed run ends with the same weights as an uninterrupted one ({})",
        config.display()
    );
}
