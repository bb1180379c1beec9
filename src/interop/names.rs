//! How an encoder's tensors are named in PyTorch: torchvision's ResNets (`conv1`, `bn1`,
//! `layer1.0.conv1`, ..., `layer4.1.downsample.0`), timm's Vision Transformer (the same names as
//! pretext's, which follows timm's layout) and ConvNet-4's documented module (`blocks.i.conv`,
//! `blocks.i.bn`). The renaming both ways is a burn-store [`KeyRemapper`] over the module's paths
//! with enum variants skipped; BatchNorm's and LayerNorm's `gamma`/`beta` against `weight`/`bias`
//! and the linear layers' transposition are burn-store's PyTorch adapters' job.

use burn::store::KeyRemapper;

use crate::Error;
use crate::models::Encoder;
use crate::models::resnet::{RESNET18_DEPTHS, RESNET50_DEPTHS};

/// Suffix of the BatchNorm buffer PyTorch keeps and burn does not.
pub const NUM_BATCHES_TRACKED: &str = "num_batches_tracked";
/// Suffix of a BatchNorm's running mean, which marks a BatchNorm.
pub const RUNNING_MEAN: &str = "running_mean";
/// Classifier heads that torchvision (`fc`) and timm (`head`) checkpoints carry and an encoder
/// does not: ignored on import.
pub const CLASSIFIER_PREFIXES: [&str; 2] = ["fc.", "head."];

/// The naming family of an encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    ConvNet4,
    /// torchvision's names over blocks in four stages of these depths.
    ResNet {
        depths: [usize; 4],
        bottleneck: bool,
    },
    /// timm's names, which are pretext's own.
    Vit,
}

impl Scheme {
    pub fn of(encoder: &Encoder) -> Self {
        match encoder {
            Encoder::ConvNet4(_) => Scheme::ConvNet4,
            Encoder::ResNet18(_) => Scheme::ResNet {
                depths: RESNET18_DEPTHS,
                bottleneck: false,
            },
            Encoder::ResNet50(_) => Scheme::ResNet {
                depths: RESNET50_DEPTHS,
                bottleneck: true,
            },
            Encoder::Vit(_) => Scheme::Vit,
        }
    }

    /// The PyTorch name of the first convolution's weight (the one that sees the image).
    pub fn input_conv(self) -> &'static str {
        match self {
            Scheme::ConvNet4 => "blocks.0.conv.weight",
            Scheme::ResNet { .. } => "conv1.weight",
            Scheme::Vit => "patch_embed.proj.weight",
        }
    }

    /// burn's paths (enum variants skipped) to PyTorch's names.
    pub fn to_torch(self) -> KeyRemapper {
        remapper(self.patterns(Direction::ToTorch))
    }

    /// PyTorch's names to burn's paths.
    pub fn from_torch(self) -> KeyRemapper {
        remapper(self.patterns(Direction::FromTorch))
    }

    /// The PyTorch name of burn's `path` (for messages: what a file was expected to hold).
    pub fn torch_name(self, path: &str) -> String {
        let mut name = path.to_string();
        for (pattern, replacement) in self.to_torch().to_regex_pairs() {
            name = pattern
                .replace_all(&name, replacement.as_str())
                .into_owned();
        }
        for (burn, torch) in [(".gamma", ".weight"), (".beta", ".bias")] {
            if let Some(stem) = name.strip_suffix(burn) {
                name = format!("{stem}{torch}");
            }
        }
        name
    }

    /// `(regex, replacement)` pairs, applied in order to each name.
    fn patterns(self, direction: Direction) -> Vec<(String, String)> {
        let Scheme::ResNet { depths, bottleneck } = self else {
            return Vec::new();
        };
        let mut pairs = vec![
            ("stem.conv.".to_string(), "conv1.".to_string()),
            ("stem.bn.".into(), "bn1.".into()),
        ];
        let mut block = 0;
        for (stage, depth) in depths.into_iter().enumerate() {
            for j in 0..depth {
                pairs.push((
                    format!("blocks.{block}."),
                    format!("layer{}.{j}.", stage + 1),
                ));
                block += 1;
            }
        }
        // Inside a block (these follow the block's renaming, so they see its new prefix).
        let mut inner = vec![
            (".first.conv.", ".conv1."),
            (".first.bn.", ".bn1."),
            (".downsample.conv.", ".downsample.0."),
            (".downsample.bn.", ".downsample.1."),
        ];
        if bottleneck {
            inner.extend([(".second.conv.", ".conv2."), (".second.bn.", ".bn2.")]);
        }
        let block_prefix = match direction {
            Direction::ToTorch => r"^(layer\d\.\d+)",
            Direction::FromTorch => r"^(blocks\.\d+)",
        };
        let mut out: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(burn, torch)| direction.anchored(&burn, &torch))
            .collect();
        for (burn, torch) in inner {
            let (from, to) = direction.order(burn, torch);
            out.push((
                format!("{block_prefix}{}", regex_escape(from)),
                format!("${{1}}{to}"),
            ));
        }
        out
    }
}

#[derive(Clone, Copy)]
enum Direction {
    ToTorch,
    FromTorch,
}

impl Direction {
    fn order<'a>(self, burn: &'a str, torch: &'a str) -> (&'a str, &'a str) {
        match self {
            Direction::ToTorch => (burn, torch),
            Direction::FromTorch => (torch, burn),
        }
    }

    /// A pattern matching `burn` or `torch` (by direction) at the start of a name.
    fn anchored(self, burn: &str, torch: &str) -> (String, String) {
        let (from, to) = self.order(burn, torch);
        (format!("^{}", regex_escape(from)), to.to_string())
    }
}

fn regex_escape(s: &str) -> String {
    s.replace('.', r"\.")
}

fn remapper(patterns: Vec<(String, String)>) -> KeyRemapper {
    KeyRemapper::from_patterns(patterns).expect("the naming patterns are valid regexes")
}

/// Whether an imported tensor is one an encoder has no use for: a classifier head, or
/// BatchNorm's batch counter.
pub fn ignored_on_import(name: &str) -> bool {
    CLASSIFIER_PREFIXES.iter().any(|p| name.starts_with(p)) || name.ends_with(NUM_BATCHES_TRACKED)
}

/// The part of `names` before `anchor` when a wrapper (`module.`, `backbone.`, a checkpoint's
/// `state_dict.`) puts every tensor under a prefix: the shortest prefix under which `anchor`
/// is found. `None` when `anchor` is not there at all.
pub fn wrapper_prefix<'a>(names: impl Iterator<Item = &'a str>, anchor: &str) -> Option<String> {
    names
        .filter_map(|n| n.strip_suffix(anchor))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .min_by_key(|p| p.len())
        .map(str::to_string)
}

/// An error listing `names` (the first 20) under `what`.
pub fn listed(what: &str, names: &[String]) -> Error {
    const SHOWN: usize = 20;
    let more = names.len().saturating_sub(SHOWN);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Error::msg(format!(
        "{what}: {}{tail}",
        names[..names.len().min(SHOWN)].join(", ")
    ))
}
