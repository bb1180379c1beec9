//! Watching an encoder while it pretrains: k-NN accuracy on a labelled split, and two collapse
//! signals of its features (the spread of the unit-length features, and their effective rank).

use serde_json::{Map, Value, json};

use crate::data::ImageSet;
use crate::data::loader::{Normalizer, eval_batch};
use crate::data::split::few_labels;
use crate::eval::features::{Features, extract};
use crate::eval::knn;
use crate::eval::pca::Pca;
use crate::models::Encoder;

/// Query images whose features are measured after every epoch, and a labelled memory for their
/// k-NN accuracy when the images have labels.
pub struct EpochMonitor<'a> {
    /// The k-NN memory and the number of classes; `None` without labels.
    knn: Option<(ImageSet, usize)>,
    queries: ImageSet,
    normalizer: &'a Normalizer,
}

impl<'a> EpochMonitor<'a> {
    /// The first `queries` test images (training images without a test split) as queries and,
    /// with labels, up to `memory` training images (the same number per class) as the k-NN
    /// memory; `None` when `queries` is 0.
    pub fn new(
        train: &ImageSet,
        test: Option<&ImageSet>,
        normalizer: &'a Normalizer,
        memory: usize,
        queries: usize,
    ) -> Option<Self> {
        let source = test.unwrap_or(train);
        if queries == 0 || source.len == 0 {
            return None;
        }
        let first: Vec<usize> = (0..source.len.min(queries)).collect();
        let queries = source.subset(&first);
        let labelled = train.labels.is_some() && queries.labels.is_some() && test.is_some();
        let knn = (labelled && memory > 0)
            .then(|| {
                let classes = train.num_classes().max(queries.num_classes());
                let smallest = train.class_counts().into_iter().min().unwrap_or(0);
                let per_class = (memory / classes.max(1)).min(smallest).max(1);
                let chosen = few_labels(train, Some(per_class), 0).ok()?;
                Some((train.subset(&chosen), classes))
            })
            .flatten();
        Some(Self {
            knn,
            queries,
            normalizer,
        })
    }

    /// `feature_std` and `effective_rank` of the query features and, with labels, their
    /// `knn_acc` (k = 20, temperature 0.07).
    pub fn measure(&self, encoder: &Encoder) -> Map<String, Value> {
        let batch = eval_batch(self.queries.shape());
        let queries = extract(encoder, &self.queries, self.normalizer, batch);
        let mut out = Map::new();
        if let Some((memory, classes)) = &self.knn {
            let features = extract(encoder, memory, self.normalizer, batch);
            let labels = memory.labels.as_ref().expect("labelled memory");
            let predicted = knn::predict(&features, labels, &queries, *classes, 20, 0.07);
            let truth = self.queries.labels.as_ref().expect("labelled queries");
            let hits = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
            out.insert(
                "knn_acc".into(),
                json!(hits as f64 / truth.len().max(1) as f64),
            );
        }
        let (spread, rank) = collapse_signals(&queries);
        out.insert(SPREAD_KEY.into(), json!(spread));
        out.insert(RANK_KEY.into(), json!(rank));
        out
    }
}

const SPREAD_KEY: &str = "feature_std";
const RANK_KEY: &str = "effective_rank";
/// A spread below this: the features are gathering at a point (it is about 1 when they spread
/// over the sphere).
const COLLAPSING_SPREAD: f64 = 0.1;
/// An effective rank below this share of the highest the run has had: the features are losing
/// their dimensions.
const COLLAPSING_RANK_SHARE: f64 = 0.25;

/// Watches the epochs' collapse signals and says when they fall toward collapse.
#[derive(Default)]
pub struct CollapseWatch {
    highest_rank: f64,
}

impl CollapseWatch {
    /// A warning when an epoch's record (with the monitor's fields) shows the features
    /// collapsing: a spread under 0.1, an effective rank under 2, or an effective rank under a
    /// quarter of the highest so far.
    pub fn check(&mut self, record: &Map<String, Value>) -> Option<String> {
        let spread = record.get(SPREAD_KEY)?.as_f64()?;
        let rank = record.get(RANK_KEY)?.as_f64()?;
        self.highest_rank = self.highest_rank.max(rank);
        let falling = rank < 2.0
            || spread < COLLAPSING_SPREAD
            || rank < COLLAPSING_RANK_SHARE * self.highest_rank;
        falling.then(|| {
            format!(
                "warning: the features are collapsing (spread {spread:.3}, effective rank {rank:.1}, \
                 highest {:.1}); a collapsed encoder transfers nothing. Lower the learning rate, \
                 strengthen the augmentation, or check the method's settings",
                self.highest_rank
            )
        })
    }
}

/// Collapse signals of features: the per-dimension standard deviation of the unit-length
/// features times sqrt(d) (about 1 when they spread over the sphere, 0 when they collapse to a
/// point; Chen & He 2021), and the effective rank (Roy & Vetterli 2007: exp of the entropy of
/// the normalised singular values; from 1 for a line up to d).
pub fn collapse_signals(features: &Features) -> (f64, f64) {
    let (n, d) = (features.rows, features.dim);
    if n < 2 || d == 0 {
        return (0.0, 0.0);
    }
    let mut unit = features.values.clone();
    for row in unit.chunks_exact_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let mut std_sum = 0.0f64;
    for j in 0..d {
        let column = unit.chunks_exact(d).map(|row| row[j] as f64);
        let mean = column.clone().sum::<f64>() / n as f64;
        let var = column.map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        std_sum += var.sqrt();
    }
    let spread = std_sum / d as f64 * (d as f64).sqrt();
    let rank = match Pca::fit(&unit, n, d, d, false) {
        Ok(pca) => {
            let singular: Vec<f64> = pca.variances.iter().map(|v| v.max(0.0).sqrt()).collect();
            let total: f64 = singular.iter().sum();
            if total <= 0.0 {
                0.0
            } else {
                let entropy: f64 = singular
                    .iter()
                    .map(|s| s / total)
                    .filter(|&p| p > 0.0)
                    .map(|p| -p * p.ln())
                    .sum();
                entropy.exp()
            }
        }
        Err(_) => 0.0,
    };
    (spread, rank)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn features(rows: usize, dim: usize, values: Vec<f32>) -> Features {
        Features { rows, dim, values }
    }

    #[test]
    fn collapsed_features_score_zero_and_spread_ones_score_high() {
        let collapsed = features(
            100,
            8,
            [1.0f32, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0].repeat(100),
        );
        let (spread, rank) = collapse_signals(&collapsed);
        assert!(spread < 1e-6, "{spread}");
        assert!(rank <= 1.0 + 1e-6, "{rank}");

        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let gaussian: Vec<f32> = (0..2000 * 8)
            .map(|_| {
                // Box-Muller: isotropic features spread evenly over the sphere.
                let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-9), rng.random());
                (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
            })
            .collect();
        let (spread, rank) = collapse_signals(&features(2000, 8, gaussian));
        assert!((spread - 1.0).abs() < 0.05, "{spread}");
        assert!(rank > 7.5 && rank <= 8.0 + 1e-9, "{rank}");

        // Features on a line through the origin (two opposite points): rank 1.
        let line: Vec<f32> = (0..200)
            .flat_map(|i| {
                if i % 2 == 0 {
                    [1.0, 1.0, 0.0]
                } else {
                    [-1.0, -1.0, 0.0]
                }
            })
            .collect();
        let (_, rank) = collapse_signals(&features(200, 3, line));
        assert!((rank - 1.0).abs() < 1e-6, "{rank}");
    }

    #[test]
    fn the_watch_warns_when_spread_or_rank_fall_toward_collapse() {
        let record = |spread: f64, rank: f64| {
            let mut m = Map::new();
            m.insert(SPREAD_KEY.into(), json!(spread));
            m.insert(RANK_KEY.into(), json!(rank));
            m
        };
        let mut watch = CollapseWatch::default();
        assert!(watch.check(&record(0.8, 40.0)).is_none());
        assert!(watch.check(&record(0.7, 30.0)).is_none());
        let warning = watch
            .check(&record(0.6, 8.0))
            .expect("rank fell to a fifth");
        assert!(warning.contains("collapsing"), "{warning}");
        assert!(watch.check(&record(0.05, 30.0)).is_some(), "a point");
        assert!(
            CollapseWatch::default().check(&record(0.9, 1.5)).is_some(),
            "a line"
        );
        assert!(
            CollapseWatch::default().check(&Map::new()).is_none(),
            "nothing measured"
        );
    }

    #[test]
    fn unlabelled_images_are_watched_for_collapse_without_a_knn_accuracy() {
        use crate::data::synthetic::{SyntheticConfig, generate};
        use crate::device::infer_device;
        use crate::models::{Arch, EncoderSpec, Stem};
        let mut set = generate(&SyntheticConfig {
            train: 40,
            test: 0,
            size: 12,
            seed: 1,
        })
        .train;
        set.labels = None;
        let normalizer = Normalizer {
            mean: vec![0.5; set.channels],
            std: vec![0.25; set.channels],
        };
        let spec = EncoderSpec {
            arch: Arch::Convnet4,
            width: 2,
            in_channels: set.channels,
            mean: normalizer.mean.clone(),
            std: normalizer.std.clone(),
            stem: Stem::Cifar,
            vit: None,
            input_size: None,
            start: None,
        };
        let monitor = EpochMonitor::new(&set, None, &normalizer, 100, 30).expect("queries");
        let measured = monitor.measure(&spec.init(&infer_device()));
        assert!(measured.get("knn_acc").is_none(), "{measured:?}");
        assert!(measured[RANK_KEY].as_f64().unwrap() >= 1.0, "{measured:?}");
        assert!(measured[SPREAD_KEY].as_f64().unwrap() > 0.0, "{measured:?}");
    }
}
