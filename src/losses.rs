//! Loss functions, pure: tensors in, a scalar tensor out.

use burn::tensor::activation::log_softmax;
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
}
