//! Loss functions, pure: tensors in, a scalar tensor out.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy of `logits` `[n, classes]` against class indices `targets` `[n]`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let log_p = log_softmax(logits, 1);
    let picked = log_p.gather(1, targets.reshape([n, 1]));
    picked.mean().neg()
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
}
