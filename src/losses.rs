//! Loss functions, pure: tensors in, a scalar tensor out.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor, TensorData};

/// Mean cross-entropy of `logits` `[n, classes]` against class indices `targets` `[n]`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let log_p = log_softmax(logits, 1);
    let picked = log_p.gather(1, targets.reshape([n, 1]));
    picked.mean().neg()
}

/// Rows scaled to unit length (a tiny floor keeps zero rows finite).
pub fn l2_normalise(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

/// SimCLR's NT-Xent loss (Chen et al. 2020) for projections `z1`, `z2` `[n, d]` of two views of
/// the same `n` images: each of the 2n projections must pick out its partner among the other
/// 2n - 1 by cosine similarity / `temperature`. Also returns the logits and targets, whose
/// argmax agreement is the contrastive accuracy.
pub fn nt_xent(
    z1: Tensor<2>,
    z2: Tensor<2>,
    temperature: f64,
) -> (Tensor<1>, Tensor<2>, Tensor<1, Int>) {
    let [n, _] = z1.dims();
    let device = z1.device();
    let z = l2_normalise(Tensor::cat(vec![z1, z2], 0));
    let similarity = z.clone().matmul(z.transpose()) / temperature;
    // A projection is never its own partner: its self-similarity is pushed out of the softmax.
    let mut diagonal = vec![0f32; 4 * n * n];
    for i in 0..2 * n {
        diagonal[i * 2 * n + i] = 1e9;
    }
    let logits =
        similarity - Tensor::<2>::from_data(TensorData::new(diagonal, [2 * n, 2 * n]), &device);
    let partners: Vec<i64> = (0..2 * n).map(|i| ((i + n) % (2 * n)) as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(partners, [2 * n]), &device);
    (
        cross_entropy(logits.clone(), targets.clone()),
        logits,
        targets,
    )
}

/// BYOL's regression loss (Grill et al. 2020): mean over rows of the squared distance between
/// the unit-length prediction `p` and target `z`, i.e. 2 - 2 cos(p, z).
pub fn byol_loss(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    cosine_similarity(p, z)
        .neg()
        .add_scalar(1.0)
        .mul_scalar(2.0)
        .mean()
}

/// SimSiam's loss (Chen & He 2021): the negative mean cosine similarity of `p` and `z`.
pub fn negative_cosine(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    cosine_similarity(p, z).mean().neg()
}

/// The weights of VICReg's three terms (Bardes, Ponce, LeCun 2022: 25, 25, 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VicregWeights {
    pub invariance: f64,
    pub variance: f64,
    pub covariance: f64,
}

/// VICReg's loss for projections `z1`, `z2` `[n, d]` of two views of the same `n` images, as the
/// authors' code computes it: `invariance` times the mean squared difference of the views, plus
/// `variance` times the mean over both views and all dimensions of relu(1 - std) (std with the
/// n - 1 divisor and 1e-4 inside the root: it keeps every dimension spread), plus `covariance`
/// times the sum over both views of the squared off-diagonal covariances divided by `d` (it
/// decorrelates the dimensions).
pub fn vicreg_loss(z1: Tensor<2>, z2: Tensor<2>, w: VicregWeights) -> Tensor<1> {
    let invariance = (z1.clone() - z2.clone()).powf_scalar(2.0).mean();
    let (var1, cov1) = variance_and_covariance(z1);
    let (var2, cov2) = variance_and_covariance(z2);
    invariance.mul_scalar(w.invariance)
        + (var1 + var2).mul_scalar(w.variance / 2.0)
        + (cov1 + cov2).mul_scalar(w.covariance)
}

/// VICReg's variance term (mean of relu(1 - std)) and covariance term (squared off-diagonal
/// covariances summed, divided by the dimension) of one view's projections.
fn variance_and_covariance(z: Tensor<2>) -> (Tensor<1>, Tensor<1>) {
    let [n, d] = z.dims();
    let device = z.device();
    let centred = z.clone() - z.mean_dim(0);
    let covariance = centred.clone().transpose().matmul(centred) / (n.max(2) - 1) as f64;
    let eye = Tensor::<2>::eye(d, &device);
    let variances = (covariance.clone() * eye.clone()).sum_dim(1).reshape([d]);
    let spread = variances
        .add_scalar(1e-4)
        .sqrt()
        .neg()
        .add_scalar(1.0)
        .clamp_min(0.0)
        .mean();
    let off_diagonal = (covariance * (eye.neg().add_scalar(1.0)))
        .powf_scalar(2.0)
        .sum();
    (spread, off_diagonal / d as f64)
}

/// Barlow Twins' loss (Zbontar et al. 2021) for projections `z1`, `z2` `[n, d]` of two views of
/// the same `n` images: each dimension is standardised over the batch (mean 0, variance 1 with
/// the n divisor and 1e-5 inside the root, as a BatchNorm without affine), `c` is the `d x d`
/// cross-correlation of the two views, and the loss is sum_i (1 - c_ii)^2 (the views agree)
/// plus `off_diagonal` times sum_{i != j} c_ij^2 (the dimensions carry no redundancy).
pub fn barlow_twins_loss(z1: Tensor<2>, z2: Tensor<2>, off_diagonal: f64) -> Tensor<1> {
    let [n, d] = z1.dims();
    let device = z1.device();
    let c = standardise_columns(z1)
        .transpose()
        .matmul(standardise_columns(z2))
        / n as f64;
    let eye = Tensor::<2>::eye(d, &device);
    let diagonal = (c.clone() * eye.clone()).sum_dim(1);
    let on = diagonal.neg().add_scalar(1.0).powf_scalar(2.0).sum();
    let off = (c * eye.neg().add_scalar(1.0)).powf_scalar(2.0).sum();
    on + off.mul_scalar(off_diagonal)
}

/// Every column of `z` moved to mean 0 and scaled to variance 1 over the rows.
fn standardise_columns(z: Tensor<2>) -> Tensor<2> {
    let centred = z.clone() - z.mean_dim(0);
    let std = centred
        .clone()
        .powf_scalar(2.0)
        .mean_dim(0)
        .add_scalar(1e-5)
        .sqrt();
    centred / std
}

/// DINO's loss (Caron et al. 2021). `teacher` holds the teacher's outputs `[n, K]` on each
/// global view, `student` the student's on every view, the global views first in the same
/// order; `center` `[1, K]` is the running mean of the teacher's outputs. For every image and
/// every pair of a teacher view and a different student view: the cross-entropy
/// -sum_k p_t(k) log p_s(k) between the teacher's centred, sharpened distribution
/// p_t = softmax((t - center) / teacher_temp) (no gradient) and the student's
/// p_s = softmax(s / student_temp); averaged over the images and the pairs.
pub fn dino_loss(
    teacher: &[Tensor<2>],
    student: &[Tensor<2>],
    center: Tensor<2>,
    teacher_temp: f64,
    student_temp: f64,
) -> Tensor<1> {
    let targets: Vec<Tensor<2>> = teacher
        .iter()
        .map(|t| softmax((t.clone() - center.clone()) / teacher_temp, 1).detach())
        .collect();
    let log_p: Vec<Tensor<2>> = student
        .iter()
        .map(|s| log_softmax(s.clone() / student_temp, 1))
        .collect();
    let mut total: Option<Tensor<1>> = None;
    let mut pairs = 0usize;
    for (a, target) in targets.iter().enumerate() {
        for (b, log_p) in log_p.iter().enumerate() {
            if a == b {
                continue;
            }
            let term = (target.clone() * log_p.clone()).sum_dim(1).mean().neg();
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
            pairs += 1;
        }
    }
    total.expect("at least two views") / pairs as f64
}

/// MAE's loss (He et al. 2022, with its normalised pixels): each target patch `[b, n, p]` is
/// moved to mean 0 and variance 1 (the p - 1 divisor, 1e-6 inside the root); the loss is the
/// mean, over the patches `hidden` marks with 1 `[b, n]`, of the mean squared error over the
/// patch's values.
pub fn masked_patch_loss(predicted: Tensor<3>, target: Tensor<3>, hidden: Tensor<2>) -> Tensor<1> {
    let [b, n, p] = target.dims();
    let mean = target.clone().mean_dim(2);
    let centred = target - mean;
    let var = centred.clone().powf_scalar(2.0).sum_dim(2) / (p.max(2) - 1) as f64;
    let normalised = centred / var.add_scalar(1e-6).sqrt();
    let per_patch = (predicted - normalised)
        .powf_scalar(2.0)
        .mean_dim(2)
        .reshape([b, n]);
    (per_patch * hidden.clone()).sum() / hidden.sum()
}

/// Row-wise cosine similarity `[n, d] x [n, d] -> [n]`.
fn cosine_similarity(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let [n, _] = a.dims();
    (l2_normalise(a) * l2_normalise(b)).sum_dim(1).reshape([n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn matches_hand_computed_value() {
        let dev = Device::flex();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![2.0f32, 0.0, 0.0, 0.0, 1.0, 3.0], [2, 3]),
            &dev,
        );
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &dev);
        let got: f32 = cross_entropy(logits, targets).into_scalar();
        // -log softmax([2,0,0])[0] = log(e^2+2) - 2; -log softmax([0,1,3])[2] = log(1+e+e^3) - 3
        let a = ((2f32).exp() + 2.0).ln() - 2.0;
        let b = (1.0 + 1f32.exp() + 3f32.exp()).ln() - 3.0;
        assert!((got - (a + b) / 2.0).abs() < 1e-5, "{got}");
    }

    #[test]
    fn confident_right_answer_has_near_zero_loss() {
        let dev = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![20.0f32, 0.0], [1, 2]), &dev);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64], [1]), &dev);
        let got: f32 = cross_entropy(logits, targets).into_scalar();
        assert!(got < 1e-6);
    }

    fn tensor(values: &[f32], shape: [usize; 2]) -> Tensor<2> {
        Tensor::<2>::from_data(TensorData::new(values.to_vec(), shape), &Device::flex())
    }

    #[test]
    fn nt_xent_matches_a_hand_computed_batch_of_two() {
        // Unit vectors at angles 0 and 90 degrees (view 1) and 0 and 60 degrees (view 2).
        let (c, s) = (0.5f32, 3f32.sqrt() / 2.0);
        let z1 = tensor(&[2.0, 0.0, 0.0, 3.0], [2, 2]); // lengths do not matter
        let z2 = tensor(&[1.0, 0.0, c, s], [2, 2]);
        let t = 0.5;
        let (loss, _, targets) = nt_xent(z1, z2, t);
        let got: f32 = loss.into_scalar();
        // The 4x4 cosine similarities of [z1; z2]; row i's partner is i + 2 mod 4.
        let sim = [
            [1.0, 0.0, 1.0, c],
            [0.0, 1.0, 0.0, s],
            [1.0, 0.0, 1.0, c],
            [c, s, c, 1.0],
        ];
        let partner = [2, 3, 0, 1];
        let mut total = 0.0f32;
        for i in 0..4 {
            let denom: f32 = (0..4)
                .filter(|&j| j != i)
                .map(|j| (sim[i][j] / t as f32).exp())
                .sum();
            total -= ((sim[i][partner[i]] / t as f32).exp() / denom).ln();
        }
        let want = total / 4.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let targets: Vec<i64> = targets
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert_eq!(targets, vec![2, 3, 0, 1]);
    }

    #[test]
    fn nt_xent_is_low_when_views_agree_and_high_when_they_do_not() {
        let agree = tensor(&[1.0, 0.0, 0.0, 1.0], [2, 2]);
        let (low, _, _) = nt_xent(agree.clone(), agree.clone(), 0.1);
        let swapped = tensor(&[0.0, 1.0, 1.0, 0.0], [2, 2]);
        let (high, _, _) = nt_xent(agree, swapped, 0.1);
        let (low, high): (f32, f32) = (low.into_scalar(), high.into_scalar());
        assert!(low < 0.01 && high > 5.0, "{low} {high}");
    }

    #[test]
    fn byol_and_simsiam_losses_match_hand_computed_values() {
        // cos = 1 for the first row, cos(60 degrees) = 0.5 for the second; lengths do not matter.
        let p = tensor(&[3.0, 0.0, 1.0, 0.0], [2, 2]);
        let z = tensor(&[1.0, 0.0, 0.5, 3f32.sqrt() / 2.0], [2, 2]);
        let byol: f32 = byol_loss(p.clone(), z.clone()).into_scalar();
        assert!((byol - (0.0 + 1.0) / 2.0).abs() < 1e-6, "{byol}"); // (2-2*1 + 2-2*0.5)/2
        let simsiam: f32 = negative_cosine(p, z).into_scalar();
        assert!((simsiam + 0.75).abs() < 1e-6, "{simsiam}");
    }

    /// VICReg's loss written out element by element, as the authors' PyTorch code computes it.
    fn vicreg_reference(z1: &[Vec<f64>], z2: &[Vec<f64>], w: VicregWeights) -> f64 {
        let (n, d) = (z1.len(), z1[0].len());
        let mut invariance = 0.0;
        for i in 0..n {
            for j in 0..d {
                invariance += (z1[i][j] - z2[i][j]).powi(2);
            }
        }
        invariance /= (n * d) as f64;
        let terms = |z: &[Vec<f64>]| {
            let mean: Vec<f64> = (0..d)
                .map(|j| z.iter().map(|r| r[j]).sum::<f64>() / n as f64)
                .collect();
            let cov = |a: usize, b: usize| {
                z.iter()
                    .map(|r| (r[a] - mean[a]) * (r[b] - mean[b]))
                    .sum::<f64>()
                    / (n - 1) as f64
            };
            let std_loss = (0..d)
                .map(|j| (1.0 - (cov(j, j) + 1e-4).sqrt()).max(0.0))
                .sum::<f64>()
                / d as f64;
            let mut off = 0.0;
            for a in 0..d {
                for b in 0..d {
                    if a != b {
                        off += cov(a, b).powi(2);
                    }
                }
            }
            (std_loss, off / d as f64)
        };
        let ((s1, c1), (s2, c2)) = (terms(z1), terms(z2));
        w.invariance * invariance + w.variance * (s1 / 2.0 + s2 / 2.0) + w.covariance * (c1 + c2)
    }

    fn rows(t: &[Vec<f64>]) -> Tensor<2> {
        let (n, d) = (t.len(), t[0].len());
        let flat: Vec<f32> = t.iter().flatten().map(|&v| v as f32).collect();
        tensor(&flat, [n, d])
    }

    #[test]
    fn vicreg_matches_its_reference_formula() {
        let w = VicregWeights {
            invariance: 25.0,
            variance: 25.0,
            covariance: 1.0,
        };
        // Small spread (the variance term is active) and correlated columns (covariance).
        let z1: Vec<Vec<f64>> = (0..5)
            .map(|i| {
                let x = i as f64 * 0.3 - 0.6;
                vec![
                    x,
                    0.5 * x + 0.1 * (i % 2) as f64,
                    (i as f64).sin(),
                    2.0 * x * x,
                ]
            })
            .collect();
        let z2: Vec<Vec<f64>> = z1
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.iter()
                    .map(|v| v + 0.05 * ((i * 7 % 3) as f64 - 1.0))
                    .collect()
            })
            .collect();
        let want = vicreg_reference(&z1, &z2, w);
        let got: f32 = vicreg_loss(rows(&z1), rows(&z2), w).into_scalar();
        assert!(
            (got as f64 - want).abs() < 1e-4 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        // Identical, spread-out, decorrelated views cost nothing: +-2 on orthogonal patterns.
        let spread: Vec<Vec<f64>> = [[2.0, 2.0], [2.0, -2.0], [-2.0, 2.0], [-2.0, -2.0]]
            .iter()
            .map(|r| r.to_vec())
            .collect();
        let zero: f32 = vicreg_loss(rows(&spread), rows(&spread), w).into_scalar();
        assert!(zero.abs() < 1e-6, "{zero}");
        // A collapsed projection pays the variance term in full: 25 * (1 - sqrt(1e-4)).
        let collapsed = vec![vec![0.3, -0.2]; 4];
        let full: f32 = vicreg_loss(rows(&collapsed), rows(&collapsed), w).into_scalar();
        assert!((full as f64 - 25.0 * (1.0 - 0.01)).abs() < 1e-4, "{full}");
    }

    /// Barlow Twins' loss written out element by element.
    fn barlow_reference(z1: &[Vec<f64>], z2: &[Vec<f64>], off_diagonal: f64) -> f64 {
        let (n, d) = (z1.len(), z1[0].len());
        let standardise = |z: &[Vec<f64>]| -> Vec<Vec<f64>> {
            let mut out = vec![vec![0.0; d]; n];
            for j in 0..d {
                let mean = z.iter().map(|r| r[j]).sum::<f64>() / n as f64;
                let var = z.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n as f64;
                for i in 0..n {
                    out[i][j] = (z[i][j] - mean) / (var + 1e-5).sqrt();
                }
            }
            out
        };
        let (a, b) = (standardise(z1), standardise(z2));
        let mut loss = 0.0;
        for p in 0..d {
            for q in 0..d {
                let c = a.iter().zip(&b).map(|(x, y)| x[p] * y[q]).sum::<f64>() / n as f64;
                loss += if p == q {
                    (1.0 - c).powi(2)
                } else {
                    off_diagonal * c * c
                };
            }
        }
        loss
    }

    #[test]
    fn barlow_twins_matches_its_reference_formula() {
        let z1: Vec<Vec<f64>> = (0..6)
            .map(|i| {
                let x = i as f64 * 0.4 - 1.0;
                vec![x, x * x, (2.0 * x).cos(), 0.3 * x + 0.1]
            })
            .collect();
        let z2: Vec<Vec<f64>> = z1
            .iter()
            .enumerate()
            .map(|(i, r)| r.iter().rev().map(|v| v * 0.9 + 0.02 * i as f64).collect())
            .collect();
        for lambda in [0.0051, 1.0] {
            let want = barlow_reference(&z1, &z2, lambda);
            let got: f32 = barlow_twins_loss(rows(&z1), rows(&z2), lambda).into_scalar();
            assert!(
                (got as f64 - want).abs() < 1e-4 * want.max(1.0),
                "{got} vs {want}"
            );
        }
        // Identical views whose dimensions are uncorrelated: c is the identity, the loss ~0.
        let spread: Vec<Vec<f64>> = [[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]
            .iter()
            .map(|r| r.to_vec())
            .collect();
        let zero: f32 = barlow_twins_loss(rows(&spread), rows(&spread), 0.0051).into_scalar();
        assert!(zero.abs() < 1e-4, "{zero}");
    }

    #[test]
    fn dino_matches_the_cross_entropy_over_pairs_of_different_views() {
        let (tt, ts) = (0.04, 0.1);
        // Two images, K = 3; two global views and one local view.
        let t = [
            vec![[0.2, 0.1, -0.3], [0.0, 0.5, 0.1]],
            vec![[0.3, -0.1, 0.0], [0.1, 0.4, -0.2]],
        ];
        let s = [
            vec![[0.5, 0.0, -0.5], [0.2, 0.2, 0.1]],
            vec![[0.1, 0.3, 0.0], [-0.4, 0.6, 0.2]],
            vec![[0.0, 0.0, 1.0], [0.3, -0.3, 0.0]],
        ];
        let center = [0.05, 0.1, -0.05];
        let softmax_row = |x: [f64; 3], temp: f64| -> Vec<f64> {
            let m = x.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = x.iter().map(|v| ((v - m) / temp).exp()).collect();
            let z: f64 = e.iter().sum();
            e.iter().map(|v| v / z).collect()
        };
        let mut want = 0.0;
        let mut pairs = 0;
        for (a, ta) in t.iter().enumerate() {
            for (b, sb) in s.iter().enumerate() {
                if a == b {
                    continue;
                }
                let mut term = 0.0;
                for i in 0..2 {
                    let centred = [0, 1, 2].map(|k| ta[i][k] - center[k]);
                    let p = softmax_row(centred, tt);
                    let q = softmax_row(sb[i], ts);
                    term -= (0..3).map(|k| p[k] * q[k].ln()).sum::<f64>();
                }
                want += term / 2.0;
                pairs += 1;
            }
        }
        want /= pairs as f64;
        let as_tensor = |rows: &Vec<[f64; 3]>| {
            let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
            tensor(&flat, [2, 3])
        };
        let teacher: Vec<Tensor<2>> = t.iter().map(as_tensor).collect();
        let student: Vec<Tensor<2>> = s.iter().map(as_tensor).collect();
        let c = tensor(&center.map(|v| v as f32), [1, 3]);
        let got: f32 = dino_loss(&teacher, &student, c, tt, ts).into_scalar();
        assert_eq!(pairs, 4);
        assert!(
            (got as f64 - want).abs() < 1e-4 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }

    #[test]
    fn masked_patch_loss_counts_the_hidden_patches_of_normalised_targets() {
        let dev = Device::flex();
        // One image, two patches of three values; only the second is hidden.
        let target = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 0.0, 4.0, 8.0], [1, 2, 3]),
            &dev,
        );
        let predicted = Tensor::<3>::from_data(
            TensorData::new(vec![9.0f32, 9.0, 9.0, 0.0, 0.5, 1.0], [1, 2, 3]),
            &dev,
        );
        let hidden = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 2]), &dev);
        let got: f32 = masked_patch_loss(predicted, target, hidden).into_scalar();
        // Patch 2: mean 4, sample variance (16 + 0 + 16) / 2 = 16, so (-1, 0, 1) / sqrt(16 + 1e-6).
        let s = (16.0f64 + 1e-6).sqrt();
        let want = ((4.0 / s).powi(2) + 0.5f64.powi(2) + (1.0 - 4.0 / s).powi(2)) / 3.0;
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
    }
}
