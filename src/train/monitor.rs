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

/// Labelled memory and query images for a k-NN accuracy after every epoch.
pub struct EpochMonitor<'a> {
    memory: ImageSet,
    queries: ImageSet,
    normalizer: &'a Normalizer,
    classes: usize,
}

impl<'a> EpochMonitor<'a> {
    /// Up to `memory` training images (the same number per class) as the k-NN memory and the
    /// first `queries` test images as queries; `None` without labels or a test split.
    pub fn new(
        train: &ImageSet,
        test: Option<&ImageSet>,
        normalizer: &'a Normalizer,
        memory: usize,
        queries: usize,
    ) -> Option<Self> {
        let test = test?;
        let (Some(_), Some(_)) = (&train.labels, &test.labels) else {
            return None;
        };
        if memory == 0 || queries == 0 {
            return None;
        }
        let classes = train.num_classes().max(test.num_classes());
        let smallest = train.class_counts().into_iter().min().unwrap_or(0);
        let per_class = (memory / classes.max(1)).min(smallest).max(1);
        let chosen = few_labels(train, Some(per_class), 0).ok()?;
        let first: Vec<usize> = (0..test.len.min(queries)).collect();
        Some(Self {
            memory: train.subset(&chosen),
            queries: test.subset(&first),
            normalizer,
            classes,
        })
    }

    /// `knn_acc` (k = 20, temperature 0.07), `feature_std` and `effective_rank` of the query
    /// features.
    pub fn measure(&self, encoder: &Encoder) -> Map<String, Value> {
        let batch = eval_batch(self.memory.shape());
        let memory = extract(encoder, &self.memory, self.normalizer, batch);
        let queries = extract(encoder, &self.queries, self.normalizer, batch);
        let labels = self.memory.labels.as_ref().expect("labelled memory");
        let predicted = knn::predict(&memory, labels, &queries, self.classes, 20, 0.07);
        let truth = self.queries.labels.as_ref().expect("labelled queries");
        let hits = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
        let mut out = Map::new();
        out.insert(
            "knn_acc".into(),
            json!(hits as f64 / truth.len().max(1) as f64),
        );
        let (spread, rank) = collapse_signals(&queries);
        out.insert("feature_std".into(), json!(spread));
        out.insert("effective_rank".into(), json!(rank));
        out
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
}
