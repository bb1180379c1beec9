//! The `[data]` section: where the images come from and how they are read.

use serde::{Deserialize, Serialize};

use super::Format;
use crate::util::config::{ConfigError, invalid};

/// Where the data comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A folder, or `synthetic` for the built-in data set.
    pub path: String,
    /// Forces the format instead of detecting it from the path.
    pub format: Option<Format>,
    /// Skip undecodable images with a warning instead of failing.
    pub skip_corrupt: bool,
    /// Sizes of the generated synthetic splits, and its image side.
    pub synthetic_train: usize,
    pub synthetic_test: usize,
    pub synthetic_size: usize,
    /// Side of the square images the model sees (`--image-size`). Unset: the data's own size in
    /// memory; when streaming, the first image's shorter side, at most 224.
    pub image_size: Option<usize>,
    /// Share of the shorter side evaluation's centre crop keeps (1: all of it; torchvision's
    /// 224-pixel recipe: 0.875).
    pub eval_crop: f64,
    /// Smallest share of a streamed file's area pretraining's random resized crop keeps (1: the
    /// largest square, at a random place along the longer side).
    pub crop_min_scale: f64,
    /// Whether an image folder is read on demand or decoded into memory.
    pub stream: StreamMode,
    /// `stream = "auto"` streams when the decoded training images would exceed this many MB.
    pub memory_budget_mb: u64,
    /// Threads that decode streamed images ahead of the model (0: the `--threads` count).
    pub workers: usize,
    /// Images whose header declares more pixels are refused (decompression bombs).
    pub max_image_pixels: u64,
    /// Tar shards: samples held by the shuffle buffer that each epoch's shard order streams
    /// through (larger: closer to a uniform shuffle, reads spread over more shards).
    pub shuffle_buffer: usize,
}

/// How an image folder is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// Stream when the decoded images would exceed `data.memory_budget_mb`, when
    /// `data.image_size` differs from the images' size, or when the sizes are mixed.
    #[default]
    Auto,
    Always,
    Never,
}

impl std::str::FromStr for StreamMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(StreamMode::Auto),
            "always" => Ok(StreamMode::Always),
            "never" => Ok(StreamMode::Never),
            other => Err(format!(
                "unknown stream mode `{other}` (expected auto, always or never)"
            )),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: "synthetic".into(),
            format: None,
            skip_corrupt: false,
            synthetic_train: 10_000,
            synthetic_test: 2_000,
            synthetic_size: 32,
            image_size: None,
            eval_crop: 1.0,
            crop_min_scale: 1.0,
            stream: StreamMode::Auto,
            memory_budget_mb: 2048,
            workers: 0,
            max_image_pixels: crate::data::decode::DEFAULT_MAX_PIXELS,
            shuffle_buffer: crate::data::shards::DEFAULT_SHUFFLE_BUFFER,
        }
    }
}

impl DataConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path.trim().is_empty() {
            return Err(invalid("data.path", "must name a folder or `synthetic`"));
        }
        if let Some(size) = self.image_size
            && !(8..=1024).contains(&size)
        {
            return Err(invalid(
                "data.image_size",
                format!("must be between 8 and 1024, got {size}"),
            ));
        }
        if !(self.eval_crop > 0.0 && self.eval_crop <= 1.0) {
            return Err(invalid(
                "data.eval_crop",
                format!("must be in (0, 1], got {}", self.eval_crop),
            ));
        }
        if !(self.crop_min_scale > 0.0 && self.crop_min_scale <= 1.0) {
            return Err(invalid(
                "data.crop_min_scale",
                format!("must be in (0, 1], got {}", self.crop_min_scale),
            ));
        }
        if self.max_image_pixels == 0 {
            return Err(invalid("data.max_image_pixels", "must be at least 1"));
        }
        if self.shuffle_buffer == 0 {
            return Err(invalid("data.shuffle_buffer", "must be at least 1"));
        }
        Ok(())
    }
}
