//! Linear probe: a softmax classifier on frozen, standardised features, trained full-batch
//! with AdamW, with an L2 penalty on its weights that cross-validation on the labelled images
//! can pick.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Int, Tensor, TensorData};

use super::features::Features;
use crate::losses::cross_entropy;
use crate::train::{infer_device, train_device};

pub struct ProbeRecipe {
    pub epochs: usize,
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Candidate L2 penalties (`l2 / 2 * |W|^2` added to the mean cross-entropy): none, one, or
    /// several to choose from by cross-validation.
    pub l2: Vec<f64>,
    /// The training rows are this many view-major copies of the labelled images (the image
    /// itself, then augmented views); cross-validation keeps an image's views in one fold.
    pub views_per_image: usize,
    pub seed: u64,
}

/// Folds of the cross-validation that picks the L2 penalty.
const FOLDS: usize = 5;

/// Per-dimension mean and standard deviation of the training features.
fn standardiser(f: &Features) -> (Vec<f32>, Vec<f32>) {
    let n = f.rows.max(1) as f32;
    let mut mean = vec![0f32; f.dim];
    for row in f.values.chunks_exact(f.dim) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v / n);
    }
    let mut var = vec![0f32; f.dim];
    for row in f.values.chunks_exact(f.dim) {
        var.iter_mut()
            .zip(row)
            .zip(&mean)
            .for_each(|((s, v), m)| *s += (v - m).powi(2) / n);
    }
    (mean, var.into_iter().map(|v| v.sqrt().max(1e-6)).collect())
}

fn standardise(f: &Features, mean: &[f32], std: &[f32]) -> Vec<f32> {
    let mut out = f.values.clone();
    for row in out.chunks_exact_mut(f.dim) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
            *v = (*v - m) / s;
        }
    }
    out
}

/// Train on (`train`, `labels`) and predict the class of every row of `test`.
pub fn fit_predict(
    train: &Features,
    labels: &[u32],
    test: &Features,
    classes: usize,
    recipe: &ProbeRecipe,
) -> Vec<u32> {
    predict(&fit(train, labels, classes, recipe), test)
}

/// The class `linear` gives every row of `features`.
fn predict(linear: &Linear, features: &Features) -> Vec<u32> {
    let device = infer_device();
    let x = Tensor::<2>::from_data(
        TensorData::new(features.values.clone(), [features.rows, features.dim]),
        &device,
    );
    let predicted = linear
        .clone()
        .fork(&device)
        .forward(x)
        .argmax(1)
        .reshape([features.rows]);
    predicted
        .into_data()
        .iter::<i64>()
        .map(|c| c as u32)
        .collect()
}

/// The probe trained on (`train`, `labels`): a linear layer on the raw features, the
/// standardisation folded into its weights so that it can also start a fine-tuning head.
pub fn fit(train: &Features, labels: &[u32], classes: usize, recipe: &ProbeRecipe) -> Linear {
    let l2 = match recipe.l2.as_slice() {
        [] => 0.0,
        [only] => *only,
        grid => cross_validated_l2(train, labels, classes, recipe, grid),
    };
    fit_penalised(train, labels, classes, recipe, l2)
}

/// The penalty of `grid` whose probes, each trained without one of `FOLDS` folds of the
/// images, classify the held-out images (their un-augmented rows) best; the first wins ties.
fn cross_validated_l2(
    train: &Features,
    labels: &[u32],
    classes: usize,
    recipe: &ProbeRecipe,
    grid: &[f64],
) -> f64 {
    let images = train.rows / recipe.views_per_image.max(1);
    let fold_of = |row: usize| (row % images.max(1)) % FOLDS;
    let mut correct = vec![0usize; grid.len()];
    for fold in 0..FOLDS.min(images) {
        let (kept, held): (Vec<usize>, Vec<usize>) =
            (0..train.rows).partition(|&r| fold_of(r) != fold);
        let held: Vec<usize> = held.into_iter().filter(|&r| r < images).collect();
        let kept_labels: Vec<u32> = kept.iter().map(|&r| labels[r]).collect();
        let (kept_features, held_features) = (train.select(&kept), train.select(&held));
        for (hits, &l2) in correct.iter_mut().zip(grid) {
            let probe = fit_penalised(&kept_features, &kept_labels, classes, recipe, l2);
            *hits += predict(&probe, &held_features)
                .iter()
                .zip(&held)
                .filter(|&(p, &r)| *p == labels[r])
                .count();
        }
    }
    let best = (0..grid.len())
        .max_by_key(|&i| (correct[i], std::cmp::Reverse(i)))
        .expect("a grid of at least two");
    grid[best]
}

/// The probe trained with the L2 penalty `l2`.
fn fit_penalised(
    train: &Features,
    labels: &[u32],
    classes: usize,
    recipe: &ProbeRecipe,
    l2: f64,
) -> Linear {
    let device = train_device();
    device.seed(recipe.seed);
    let (mean, std) = standardiser(train);
    let x = Tensor::<2>::from_data(
        TensorData::new(standardise(train, &mean, &std), [train.rows, train.dim]),
        &device,
    );
    let y = Tensor::<1, Int>::from_data(
        TensorData::new(
            labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
            [labels.len()],
        ),
        &device,
    );
    let mut linear: Linear = LinearConfig::new(train.dim, classes).init(&device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(recipe.weight_decay as f32)
        .with_epsilon(1e-8)
        .init();
    for _ in 0..recipe.epochs {
        let mut loss = cross_entropy(linear.forward(x.clone()), y.clone());
        if l2 > 0.0 {
            loss = loss
                + linear
                    .weight
                    .val()
                    .powi_scalar(2)
                    .sum()
                    .mul_scalar(l2 / 2.0);
        }
        let grads = GradientsParams::from_grads(loss.backward(), &linear);
        linear = optim.step(recipe.lr, linear, grads);
    }
    fold_standardisation(linear.valid(), &mean, &std)
}

/// `x -> W((x - mean) / std) + b` as one linear layer on `x`: rows of W divided by std, and
/// b reduced by (mean / std) W.
fn fold_standardisation(linear: Linear, mean: &[f32], std: &[f32]) -> Linear {
    let device = linear.weight.device();
    let d = mean.len();
    let inv_std = Tensor::<1>::from_data(
        TensorData::new(std.iter().map(|s| 1.0 / s).collect::<Vec<_>>(), [d]),
        &device,
    );
    let shift = Tensor::<1>::from_data(
        TensorData::new(
            mean.iter().zip(std).map(|(m, s)| m / s).collect::<Vec<_>>(),
            [d],
        ),
        &device,
    );
    let weight = linear.weight.val();
    let bias = linear.bias.as_ref().expect("LinearConfig has a bias").val();
    let scaled = weight.clone() * inv_std.unsqueeze_dim::<2>(1);
    let folded_bias = bias
        - shift
            .unsqueeze_dim::<2>(0)
            .matmul(weight)
            .squeeze_dim::<1>(0);
    // Fresh parameters, trainable when the layer starts a fine-tuning head.
    Linear {
        weight: Param::from_data(scaled.into_data(), &device),
        bias: Some(Param::from_data(folded_bias.into_data(), &device)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_linearly_separable_classes() {
        // Two Gaussian-free clusters along different axes, plus a noise dimension.
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let c = i % 2;
            let t = i as f32 * 0.37;
            values.extend([
                if c == 0 { 2.0 } else { -2.0 } + t.sin() * 0.5,
                t.cos(),
                (t * 3.1).sin(),
            ]);
            labels.push(c as u32);
        }
        let train = Features {
            rows: 40,
            dim: 3,
            values,
        };
        let pred = fit_predict(
            &train,
            &labels,
            &train,
            2,
            &ProbeRecipe {
                epochs: 200,
                lr: 0.05,
                weight_decay: 0.0,
                l2: vec![],
                views_per_image: 1,
                seed: 0,
            },
        );
        let acc = pred.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / 40.0;
        assert!(acc > 0.95, "probe accuracy {acc}");
    }

    #[test]
    fn cross_validation_rejects_a_penalty_that_crushes_the_weights() {
        // Two classes apart along the first axis, one twice as common; a penalty of 1e3 leaves
        // the weights near 0 and the bias predicting the common class (2/3 right), so 5-fold
        // cross-validation must pick 0.
        let (values, labels): (Vec<Vec<f32>>, Vec<u32>) = (0..60)
            .map(|i| {
                let c = u32::from(i % 3 == 0);
                let t = i as f32 * 0.61;
                (
                    vec![if c == 0 { 1.0 } else { -1.0 } + 0.3 * t.sin(), t.cos()],
                    c,
                )
            })
            .unzip();
        let train = Features {
            rows: 60,
            dim: 2,
            values: values.concat(),
        };
        let recipe = |l2: Vec<f64>| ProbeRecipe {
            epochs: 100,
            lr: 0.05,
            weight_decay: 0.0,
            l2,
            views_per_image: 2,
            seed: 0,
        };
        let accuracy = |l2: Vec<f64>| {
            crate::transfer::accuracy(
                &fit_predict(&train, &labels, &train, 2, &recipe(l2)),
                &labels,
            )
        };
        assert!(accuracy(vec![1e3]) < 0.7, "the penalty is applied");
        assert_eq!(
            cross_validated_l2(&train, &labels, 2, &recipe(vec![]), &[1e3, 0.0]),
            0.0
        );
        assert!(accuracy(vec![1e3, 0.0]) > 0.95);
    }

    #[test]
    fn folding_the_standardisation_keeps_the_logits() {
        let device = train_device();
        let (mean, std) = (vec![0.5f32, -2.0, 3.0], vec![2.0f32, 0.25, 1.5]);
        let linear: Linear = LinearConfig::new(3, 4).init(&device);
        let x = [1.0f32, 2.0, -1.0, 0.3, -0.7, 4.0];
        let raw = Features {
            rows: 2,
            dim: 3,
            values: x.to_vec(),
        };
        let standardised = standardise(&raw, &mean, &std);
        let expected = linear
            .forward(Tensor::<2>::from_data(
                TensorData::new(standardised, [2, 3]),
                &device,
            ))
            .into_data();
        let folded = fold_standardisation(linear, &mean, &std)
            .forward(Tensor::<2>::from_data(
                TensorData::new(x.to_vec(), [2, 3]),
                &device,
            ))
            .into_data();
        expected.assert_approx_eq::<f32>(&folded, burn::tensor::Tolerance::absolute(1e-5));
    }
}
