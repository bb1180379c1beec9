//! A run directory and every file it holds: the one place their names are written.

use std::path::{Path, PathBuf};

/// The validated config the run ran, which `pretext resume` reads back.
pub const CONFIG_FILE: &str = "config.toml";
/// What the run measured (pretraining's summary, transfer's results).
pub const RESULTS_FILE: &str = "results.json";
/// One JSON record per training epoch.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The training loop's checkpoint, inside [`CHECKPOINT_DIR`].
pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const CHECKPOINT_FILE: &str = "latest.ckpt";
/// An image encoder's weights and its spec (architecture, channels, normalisation).
pub const WEIGHTS_FILE: &str = "encoder.safetensors";
pub const SPEC_FILE: &str = "encoder.json";
/// A text run's tokenizer, encoder weights and encoder spec.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TEXT_WEIGHTS_FILE: &str = "text_encoder.safetensors";
pub const TEXT_SPEC_FILE: &str = "text_encoder.json";
/// Cluster transfer: the training images' pseudo-labels, the test images', and the clustering's
/// summary.
pub const PSEUDO_LABELS_FILE: &str = "pseudo_labels.npy";
pub const TEST_PSEUDO_LABELS_FILE: &str = "pseudo_labels_test.npy";
pub const CLUSTERS_FILE: &str = "clusters.json";
/// The files `--skip-corrupt` skipped.
pub const SKIPPED_FILE: &str = "skipped.txt";
/// Where `pretext transfer --run RUN` writes by default.
pub const TRANSFER_DIR: &str = "transfer";

/// A run directory: the paths of what it holds.
#[derive(Clone, Copy, Debug)]
pub struct RunDir<'a>(pub &'a Path);

impl RunDir<'_> {
    pub fn config(&self) -> PathBuf {
        self.0.join(CONFIG_FILE)
    }
    pub fn results(&self) -> PathBuf {
        self.0.join(RESULTS_FILE)
    }
    pub fn metrics(&self) -> PathBuf {
        self.0.join(METRICS_FILE)
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.0.join(CHECKPOINT_DIR).join(CHECKPOINT_FILE)
    }
    pub fn encoder_weights(&self) -> PathBuf {
        self.0.join(WEIGHTS_FILE)
    }
    pub fn encoder_spec(&self) -> PathBuf {
        self.0.join(SPEC_FILE)
    }
    pub fn tokenizer(&self) -> PathBuf {
        self.0.join(TOKENIZER_FILE)
    }
    pub fn text_weights(&self) -> PathBuf {
        self.0.join(TEXT_WEIGHTS_FILE)
    }
    pub fn text_spec(&self) -> PathBuf {
        self.0.join(TEXT_SPEC_FILE)
    }
    pub fn pseudo_labels(&self) -> PathBuf {
        self.0.join(PSEUDO_LABELS_FILE)
    }
    pub fn test_pseudo_labels(&self) -> PathBuf {
        self.0.join(TEST_PSEUDO_LABELS_FILE)
    }
    pub fn clusters(&self) -> PathBuf {
        self.0.join(CLUSTERS_FILE)
    }
    pub fn skipped(&self) -> PathBuf {
        self.0.join(SKIPPED_FILE)
    }
    /// The files rank `rank` of a run on several skipped: rank 0's in `skipped.txt`, each
    /// other rank's beside it (`skipped-rank1.txt`), as each reads only its share.
    pub fn skipped_by(&self, rank: usize) -> PathBuf {
        match rank {
            0 => self.skipped(),
            r => self.0.join(format!("skipped-rank{r}.txt")),
        }
    }
    pub fn transfer(&self) -> PathBuf {
        self.0.join(TRANSFER_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_artifact_has_its_own_name() {
        let run = RunDir(Path::new("r"));
        let all = [
            run.config(),
            run.results(),
            run.metrics(),
            run.checkpoint(),
            run.encoder_weights(),
            run.encoder_spec(),
            run.tokenizer(),
            run.text_weights(),
            run.text_spec(),
            run.pseudo_labels(),
            run.test_pseudo_labels(),
            run.clusters(),
            run.skipped(),
            run.transfer(),
        ];
        let distinct: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
        assert!(all.iter().all(|p| p.starts_with("r")));
    }
}
