//! The self-supervised methods, one file each: its settings (its own keys under `[task]`), the
//! views and self-labels it makes (a [`Task`]), its heads and learner, and its pretext metric.
//! The registry below is the only list of them: adding a method is one file, its loss in
//! `crate::losses`, and one line in [`registry!`]'s invocation.

pub mod barlow;
pub mod byol;
pub mod classify;
pub mod cluster;
pub mod dino;
pub mod ema;
pub mod jigsaw;
pub mod mae;
pub mod mlm;
pub mod permutations;
pub mod relpos;
pub mod rotation;
pub mod simclr;
pub mod simsiam;
pub mod two_views;
pub mod vicreg;

use std::path::PathBuf;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::cluster::pseudo::ClusteringSummary;
use crate::data::ImageSet;
use crate::data::examples::Task;
use crate::data::loader::Normalizer;
use crate::models::EncoderSpec;
use crate::train::{ImageLearner, TrainConfig};
use crate::util::config::ConfigError;

/// What a method trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modality {
    Images,
    /// A text corpus (`mlm`): pretrained by `crate::text::pretrain`, not through [`ImageMethod`].
    Text,
}

/// A method's settings: the keys of `[task]` besides `name`, with their defaults. They are
/// checked before any work starts and build the method.
pub trait Settings:
    Clone + std::fmt::Debug + Default + PartialEq + Serialize + serde::de::DeserializeOwned
{
    const MODALITY: Modality = Modality::Images;
    /// Checks every key; the error names it.
    fn validate(&self) -> Result<(), ConfigError>;
    /// The method, from validated settings. `None` for a text method.
    fn build(&self) -> Option<Box<dyn ImageMethod>>;
}

/// An image method, ready to pretrain: the views it makes and the learner that trains on them.
pub trait ImageMethod: Send + Sync {
    /// The views and self-labels of every image.
    fn task(&self) -> &dyn Task;
    /// The backbone `spec` with this method's heads and loss, initialised on `device`.
    fn learner(
        &self,
        spec: &EncoderSpec,
        recipe: &TrainConfig,
        device: &Device,
    ) -> Box<dyn PretrainLearner>;
}

/// A learner that pretrains an image encoder, and scores its pretext task.
pub trait PretrainLearner: ImageLearner {
    /// The pretext task's accuracy on held-out images (self-labels: no human labels); `None`
    /// for a method without one (MAE's pretext task is regression).
    fn pretext_accuracy(
        &self,
        test: &ImageSet,
        normalizer: &Normalizer,
        task: &dyn Task,
    ) -> Option<f64>;
}

/// What `pretext pretrain` writes to `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PretrainSummary {
    pub task: String,
    pub arch: String,
    pub steps: usize,
    pub seconds: f64,
    pub views_per_s: f64,
    /// Accuracy of the pretext task on the test split's images (self-labels, no human labels);
    /// for `mlm`, the masked-token accuracy on held-out documents.
    pub pretext_test_acc: Option<f64>,
    /// `mlm`: the perplexity of the masked tokens of held-out documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heldout_perplexity: Option<f64>,
    pub run_dir: PathBuf,
    /// For the `cluster` task: the teacher, the k-means run and the clusters' agreement with
    /// the true labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clustering: Option<ClusteringSummary>,
}

/// Declares every method once: `Variant = "name" => settings type`. It makes [`MethodKind`]
/// (names for `--task` and results) and [`MethodConfig`] (the `[task]` section, tagged by
/// `name`, each variant holding that method's settings).
macro_rules! registry {
    ($($variant:ident = $name:literal => $settings:ty,)*) => {
        /// Every method, by the name used in configs, `--task` and results.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum MethodKind {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl MethodKind {
            pub const ALL: &'static [MethodKind] = &[$(MethodKind::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(MethodKind::$variant => $name,)* }
            }

            pub fn modality(self) -> Modality {
                match self { $(MethodKind::$variant => <$settings as Settings>::MODALITY,)* }
            }
        }

        /// The `[task]` section: `name` picks the method, the other keys are its settings.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(tag = "name")]
        pub enum MethodConfig {
            $(#[serde(rename = $name)] $variant($settings),)*
        }

        /// [`MethodConfig`] as serde reads it, before old saved configs are mended.
        #[derive(Deserialize)]
        #[serde(tag = "name")]
        enum Tagged {
            $(#[serde(rename = $name)] $variant($settings),)*
        }

        impl From<Tagged> for MethodConfig {
            fn from(t: Tagged) -> Self {
                match t { $(Tagged::$variant(s) => MethodConfig::$variant(s),)* }
            }
        }

        impl MethodConfig {
            pub fn kind(&self) -> MethodKind {
                match self { $(MethodConfig::$variant(_) => MethodKind::$variant,)* }
            }

            /// The method `kind` with its default settings.
            pub fn default_for(kind: MethodKind) -> Self {
                match kind { $(MethodKind::$variant => MethodConfig::$variant(Default::default()),)* }
            }

            pub fn validate(&self) -> Result<(), ConfigError> {
                match self { $(MethodConfig::$variant(s) => s.validate(),)* }
            }

            /// The image method these settings describe (validated first); `None` for text.
            pub fn build(&self) -> Option<Box<dyn ImageMethod>> {
                match self { $(MethodConfig::$variant(s) => s.build(),)* }
            }
        }
    };
}

registry! {
    Rotation = "rotation" => rotation::RotationSettings,
    Relpos = "relpos" => relpos::RelPosSettings,
    Jigsaw = "jigsaw" => jigsaw::JigsawSettings,
    JigsawPlus = "jigsaw++" => jigsaw::JigsawPlusSettings,
    Cluster = "cluster" => cluster::ClusterSettings,
    Simclr = "simclr" => simclr::SimclrSettings,
    Byol = "byol" => byol::ByolSettings,
    Simsiam = "simsiam" => simsiam::SimsiamSettings,
    Vicreg = "vicreg" => vicreg::VicregSettings,
    Barlow = "barlow" => barlow::BarlowSettings,
    Dino = "dino" => dino::DinoSettings,
    Mae = "mae" => mae::MaeSettings,
    Mlm = "mlm" => mlm::MlmSettings,
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig::default_for(MethodKind::Rotation)
    }
}

impl MethodKind {
    /// Every method's name, for error messages.
    pub fn names() -> String {
        MethodKind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for MethodKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MethodKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        MethodKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown task `{s}` (available: {})", MethodKind::names()))
    }
}

/// The sections every method's settings had in the configs pretext saved before the methods had
/// their own keys: such a saved config holds all of them, whatever its method.
const SHARED_SECTIONS_BEFORE: [&str; 5] = ["relpos", "jigsaw", "cluster", "views", "siamese"];

impl<'de> Deserialize<'de> for MethodConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(d)?;
        MethodConfig::try_from(table).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<toml::Table> for MethodConfig {
    type Error = String;
    fn try_from(mut table: toml::Table) -> Result<Self, String> {
        if SHARED_SECTIONS_BEFORE
            .iter()
            .all(|s| table.contains_key(*s))
            && let Some(kind) = table
                .get("name")
                .and_then(|n| n.as_str())
                .and_then(|n| n.parse::<MethodKind>().ok())
        {
            // An older run's saved config: keep the sections this method reads.
            let own = toml::Value::try_from(MethodConfig::default_for(kind))
                .map_err(|e| e.to_string())?;
            let own = own.as_table().cloned().unwrap_or_default();
            table.retain(|key, _| {
                key == "name" || own.contains_key(key) || !SHARED_SECTIONS_BEFORE.contains(&key)
            });
        }
        toml::Value::Table(table)
            .try_into::<Tagged>()
            .map(MethodConfig::from)
            .map_err(|e| e.message().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_parses_by_name_and_round_trips_through_toml() {
        for &kind in MethodKind::ALL {
            let text = format!("name = \"{}\"\n", kind.name());
            let cfg: MethodConfig = toml::from_str(&text).unwrap();
            assert_eq!(cfg.kind(), kind);
            assert_eq!(cfg, MethodConfig::default_for(kind));
            cfg.validate().unwrap_or_else(|e| {
                // The cluster method needs its teacher named; everything else has valid defaults.
                assert_eq!(kind, MethodKind::Cluster, "{e}");
            });
            let back: MethodConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
            assert_eq!(back, cfg);
            assert_eq!(kind.name().parse::<MethodKind>().unwrap(), kind);
        }
    }

    #[test]
    fn another_methods_keys_are_refused_and_named() {
        let err =
            toml::from_str::<MethodConfig>("name = \"rotation\"\n[siamese]\ntemperature = 0.1\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("siamese"), "{err}");
        let err = toml::from_str::<MethodConfig>("name = \"dino2\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("dino2"), "{err}");
    }

    /// A config saved by an older pretext holds every method's sections; it still reads, as
    /// its own method with its own settings.
    #[test]
    fn an_older_saved_config_with_every_section_still_reads() {
        let text = "name = \"simclr\"\n[relpos]\n[jigsaw]\n[cluster]\n[views]\nhflip = 0.25\n\
                    [siamese]\ntemperature = 0.5\n";
        let cfg: MethodConfig = toml::from_str(text).unwrap();
        let MethodConfig::Simclr(s) = cfg else {
            panic!("{cfg:?}")
        };
        assert_eq!(s.0.views.hflip, 0.25);
        assert_eq!(s.0.siamese.temperature, 0.5);
    }
}
