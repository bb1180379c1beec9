//! Run configuration: TOML deserialised into typed structs, validated before any work starts.
//! Unknown keys are errors; every validation error names its key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::cluster::config::ClusterConfig;
pub use crate::data::config::{DataConfig, StreamMode};
use crate::methods::{MethodConfig, MethodKind};
use crate::models::{Arch, Stem, VitLayout};
pub use crate::train::config::{OptimizerKind, TrainConfig};
pub use crate::transfer::config::{HeadStart, TransferConfig, TransferMode};
use crate::util::config::invalid;
pub use crate::util::config::{ConfigError, read_toml};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Width of the first stage (64 is the standard network; smaller is faster).
    pub width: usize,
    /// The ResNets' stem; unset: chosen by the training image size ([`Stem::for_image_size`]).
    /// ConvNet-4 has no stem and refuses `imagenet`.
    pub stem: Option<Stem>,
    /// A ViT's patch side; unset: 4 on images of 32 pixels or less, 16 above. The ViT's
    /// position embedding is made for the training image size.
    pub patch: Option<usize>,
    /// Weights the encoder starts from (`--init-from`): a torchvision, timm or pretext-named
    /// `.safetensors`, a PyTorch `.pth`/`.pt` state dict, or a pretext run directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            arch: Arch::Convnet4,
            width: 64,
            stem: None,
            patch: None,
            init_from: None,
        }
    }
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1024).contains(&self.width) {
            return Err(invalid(
                "model.width",
                format!("must be between 1 and 1024, got {}", self.width),
            ));
        }
        if let Some(path) = &self.init_from
            && !path.exists()
        {
            return Err(invalid(
                "model.init_from",
                format!("{}: no such file or run directory", path.display()),
            ));
        }
        if !self.arch.has_stem() && self.stem == Some(Stem::Imagenet) {
            return Err(invalid(
                "model.stem",
                format!(
                    "{} has no stem to change; `{}` needs a ResNet",
                    self.arch,
                    Stem::Imagenet
                ),
            ));
        }
        Ok(())
    }

    /// A ViT's layout on `image_size`-pixel images (`None` for the other backbones).
    pub fn vit_layout(&self, image_size: usize) -> Result<Option<VitLayout>, ConfigError> {
        self.arch
            .vit_size()
            .map(|_| VitLayout::new(self.patch, image_size))
            .transpose()
            .map_err(|e| invalid("model.patch", e))
    }

    /// The stem the encoder gets when trained on `image_size`-pixel images.
    pub fn stem_for(&self, image_size: usize) -> Stem {
        self.arch.resolve_stem(self.stem, image_size)
    }
}

/// `pretext pretrain`: data, backbone, pretext task and training recipe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub task: MethodConfig,
    pub train: TrainConfig,
    pub run: RunConfig,
    /// How `pretext transfer` and `pretext demo` use the encoder afterwards.
    pub transfer: TransferConfig,
    /// The text encoder and MLM settings (`mlm` only).
    pub text: crate::methods::mlm::TextConfig,
}

/// Where and how a run executes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The run directory.
    pub out: PathBuf,
    /// Worker threads (0: all cores).
    pub threads: usize,
    /// Checkpoint inside long epochs this often, in minutes (0: only at the end of each epoch).
    pub checkpoint_minutes: f64,
    /// Labelled training images kept as the memory of the k-NN accuracy measured after every
    /// epoch of pretraining (0: no monitoring).
    pub monitor_memory: usize,
    /// Test images classified by that k-NN.
    pub monitor_queries: usize,
    /// On several ranks: how long, in seconds, a rank waits in one collective (for the other
    /// ranks' step, or for rank 0's end of epoch) before it decides a rank died or hangs and
    /// stops the run.
    pub collective_timeout_s: f64,
}

impl RunConfig {
    /// How often to checkpoint inside an epoch, if at all.
    pub fn checkpoint_every(&self) -> Option<std::time::Duration> {
        (self.checkpoint_minutes > 0.0)
            .then(|| std::time::Duration::from_secs_f64(self.checkpoint_minutes * 60.0))
    }

    pub fn collective_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.collective_timeout_s)
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("runs/pretrain"),
            threads: 0,
            checkpoint_minutes: 5.0,
            monitor_memory: 5000,
            monitor_queries: 2000,
            collective_timeout_s: crate::device::ranks::DEFAULT_TIMEOUT.as_secs_f64(),
        }
    }
}

impl PretrainConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.data.validate()?;
        if self.data.path == "synthetic" {
            if self.data.synthetic_train < 10 {
                return Err(invalid("data.synthetic_train", "must be at least 10"));
            }
            if self.data.synthetic_test < 10 {
                return Err(invalid("data.synthetic_test", "must be at least 10"));
            }
            if !(8..=256).contains(&self.data.synthetic_size) {
                return Err(invalid("data.synthetic_size", "must be between 8 and 256"));
            }
        }
        if !(self.run.checkpoint_minutes.is_finite() && self.run.checkpoint_minutes >= 0.0) {
            return Err(invalid("run.checkpoint_minutes", "must be >= 0"));
        }
        if !(self.run.collective_timeout_s.is_finite() && self.run.collective_timeout_s >= 1.0) {
            return Err(invalid(
                "run.collective_timeout_s",
                "must be at least 1 second",
            ));
        }
        self.model.validate()?;
        self.train.validate("train")?;
        self.task.validate()?;
        if self.task.kind() == MethodKind::Mlm {
            self.text.validate().map_err(|e| invalid("text", e))?;
        }
        if self.task.kind() == MethodKind::Mae && self.model.arch.vit_size().is_none() {
            return Err(invalid(
                "model.arch",
                format!(
                    "mae masks the patches of a Vision Transformer: use vit_tiny or vit_small, not {}",
                    self.model.arch
                ),
            ));
        }
        if let MethodConfig::Cluster(c) = &self.task
            && self.run.out == c.cluster.teacher
        {
            return Err(invalid(
                "run.out",
                "is the teacher's run directory; the student needs its own",
            ));
        }
        self.transfer.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let cfg = PretrainConfig::default();
        cfg.validate().unwrap();
        let text = toml::to_string(&cfg).unwrap();
        let back: PretrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        TransferConfig::default().validate().unwrap();
    }

    #[test]
    fn model_stem_is_read_and_refused_for_convnet4() {
        let cfg: PretrainConfig =
            toml::from_str("[model]\narch = \"resnet50\"\nstem = \"imagenet\"\n").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.model.stem_for(32), Stem::Imagenet);
        let auto = ModelConfig {
            arch: Arch::Resnet18,
            ..Default::default()
        };
        assert_eq!(auto.stem_for(32), Stem::Cifar);
        assert_eq!(auto.stem_for(224), Stem::Imagenet);
        let convnet = ModelConfig {
            stem: Some(Stem::Imagenet),
            ..Default::default()
        };
        let err = convnet.validate().unwrap_err().to_string();
        assert!(err.contains("model.stem"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = toml::from_str::<PretrainConfig>("[train]\nlearning_rate = 0.1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("learning_rate"), "{err}");
    }

    #[test]
    fn negative_lr_and_zero_batch_are_named() {
        let mut cfg = PretrainConfig::default();
        cfg.train.lr = -1.0;
        assert!(cfg.validate().unwrap_err().to_string().contains("train.lr"));
        cfg.train.lr = 0.1;
        cfg.train.batch_size = 0;
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("train.batch_size")
        );
        let mut t = TransferConfig::default();
        t.finetune.lr = 0.0;
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("transfer.finetune.lr")
        );
    }
}
