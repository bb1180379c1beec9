//! Checkpoints: one file holding the model, both optimiser states and the loop position,
//! written atomically (temporary file, fsync, rename) so an interrupted write never leaves a
//! broken checkpoint behind.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"PRETEXT2";
const PARTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a pretext checkpoint or corrupt: {problem}")]
    Corrupt { path: PathBuf, problem: String },
}

/// Where the training loop stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// The next epoch to run.
    pub next_epoch: usize,
    /// Optimiser steps done.
    pub step: usize,
    pub finished: bool,
    /// Architecture and task the model was built for, checked on load.
    pub model_tag: String,
    /// Batches of `next_epoch` already done, for a checkpoint taken inside an epoch.
    #[serde(default)]
    pub batch: usize,
    /// That epoch's running metric sums, so its log record still covers the whole epoch.
    #[serde(default)]
    pub epoch_sums: EpochSums,
    /// Training time spent so far, in seconds, counted against `train.max_minutes`.
    #[serde(default)]
    pub elapsed_seconds: f64,
    /// How many ranks (processes) trained the run; it resumes only on as many.
    #[serde(default = "one_rank")]
    pub ranks: usize,
}

fn one_rank() -> usize {
    1
}

impl Default for LoopState {
    fn default() -> Self {
        Self {
            next_epoch: 0,
            step: 0,
            finished: false,
            model_tag: String::new(),
            batch: 0,
            epoch_sums: EpochSums::default(),
            elapsed_seconds: 0.0,
            ranks: one_rank(),
        }
    }
}

/// Running sums of one epoch's training metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochSums {
    pub loss: f64,
    pub correct: usize,
    pub seen: usize,
    pub batches: usize,
}

/// The parts of a checkpoint, as bytes.
pub struct Checkpoint {
    pub state: LoopState,
    /// The module record: parameters with the identities the optimiser state refers to, and
    /// BatchNorm's running statistics.
    pub model: Vec<u8>,
    pub encoder_optim: Vec<u8>,
    pub head_optim: Vec<u8>,
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    crate::util::fs::write_atomic(path, bytes).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Checkpoint {
    pub fn to_bytes(&self) -> Vec<u8> {
        let state = serde_json::to_vec(&self.state).expect("loop state serialises");
        let mut out = Vec::with_capacity(
            8 + 8 * PARTS
                + state.len()
                + self.model.len()
                + self.encoder_optim.len()
                + self.head_optim.len(),
        );
        out.extend_from_slice(MAGIC);
        for part in [
            &state[..],
            &self.model,
            &self.encoder_optim,
            &self.head_optim,
        ] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        write_atomic(path, &self.to_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|problem| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            problem,
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err("wrong magic bytes".into());
        }
        let mut rest = &bytes[8..];
        let mut parts = Vec::with_capacity(PARTS);
        for _ in 0..PARTS {
            if rest.len() < 8 {
                return Err("truncated".into());
            }
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap());
            rest = &rest[8..];
            if len > rest.len() as u64 {
                return Err(format!(
                    "truncated: a part claims {len} bytes, {} remain",
                    rest.len()
                ));
            }
            let (part, tail) = rest.split_at(len as usize);
            parts.push(part.to_vec());
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(format!("{} unexpected trailing bytes", rest.len()));
        }
        let state: LoopState =
            serde_json::from_slice(&parts[0]).map_err(|e| format!("bad loop state: {e}"))?;
        let head_optim = parts.pop().unwrap();
        let encoder_optim = parts.pop().unwrap();
        let model = parts.pop().unwrap();
        Ok(Self {
            state,
            model,
            encoder_optim,
            head_optim,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            state: LoopState {
                next_epoch: 3,
                step: 42,
                finished: false,
                model_tag: "convnet4/rotation".into(),
                batch: 5,
                epoch_sums: EpochSums {
                    loss: 0.1 + 0.2,
                    correct: 7,
                    seen: 9,
                    batches: 5,
                },
                elapsed_seconds: 61.5,
                ranks: 2,
            },
            model: vec![1, 2, 3],
            encoder_optim: vec![],
            head_optim: vec![9; 10],
        }
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt/latest.ckpt");
        sample().save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.state, sample().state);
        assert_eq!(back.model, vec![1, 2, 3]);
        assert_eq!(back.head_optim, vec![9; 10]);
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn truncated_or_foreign_files_are_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latest.ckpt");
        let bytes = sample().to_bytes();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = Checkpoint::load(&path).err().unwrap().to_string();
        assert!(
            err.contains("latest.ckpt") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(&path, b"hello world, not a checkpoint").unwrap();
        assert!(
            Checkpoint::load(&path)
                .err()
                .unwrap()
                .to_string()
                .contains("magic")
        );
    }
}
