//! Heads: what a task (or a transfer) puts on top of the encoder's features.

use super::vit::timm_linear;
use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::kernels::batch_norm_rows;

/// A linear classifier, or an MLP with one hidden ReLU layer.
#[derive(Module, Debug)]
pub struct ClassifierHead {
    pub hidden: Option<Linear>,
    pub out: Linear,
}

impl ClassifierHead {
    pub fn linear(d_in: usize, classes: usize, device: &Device) -> Self {
        Self {
            hidden: None,
            out: LinearConfig::new(d_in, classes).init(device),
        }
    }
    pub fn mlp(d_in: usize, d_hidden: usize, classes: usize, device: &Device) -> Self {
        Self {
            hidden: Some(LinearConfig::new(d_in, d_hidden).init(device)),
            out: LinearConfig::new(d_hidden, classes).init(device),
        }
    }
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match &self.hidden {
            Some(h) => self.out.forward(relu(h.forward(x))),
            None => self.out.forward(x),
        }
    }
}

/// The projector and predictor MLP of the two-view methods: `layers` linear layers, each but the
/// last followed by BatchNorm and ReLU (2: linear, BatchNorm, ReLU, linear).
#[derive(Module, Debug)]
pub struct ProjectionMlp {
    pub hidden: Vec<Linear>,
    pub norms: Vec<BatchNorm>,
    pub out: Linear,
}

impl ProjectionMlp {
    /// `layers` must be at least 2.
    pub fn new(d_in: usize, d_hidden: usize, d_out: usize, layers: usize, device: &Device) -> Self {
        let (mut hidden, mut norms) = (Vec::new(), Vec::new());
        for i in 0..layers.max(2) - 1 {
            let d = if i == 0 { d_in } else { d_hidden };
            hidden.push(LinearConfig::new(d, d_hidden).init(device));
            norms.push(BatchNormConfig::new(d_hidden).init(device));
        }
        Self {
            hidden,
            norms,
            out: LinearConfig::new(d_hidden, d_out).init(device),
        }
    }
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self
            .hidden
            .iter()
            .zip(&self.norms)
            .fold(x, |x, (linear, norm)| {
                relu(batch_norm_rows(norm, linear.forward(x)))
            });
        self.out.forward(x)
    }
}

/// A linear layer without bias whose weight is normalised per output unit, W = g V / |V| (weight
/// normalisation, Salimans & Kingma 2016). With the gain g fixed at 1 (DINO's
/// `norm_last_layer`) the outputs are cosine similarities of the input with `d_out` learnt
/// directions; otherwise each unit learns its gain.
#[derive(Module, Debug)]
pub struct WeightNormLinear {
    /// `[d_in, d_out]`: one direction per output unit, any length.
    pub direction: Param<Tensor<2>>,
    /// `[d_out]`: each unit's gain, when it is learnt.
    pub gain: Option<Param<Tensor<1>>>,
}

impl WeightNormLinear {
    pub fn new(d_in: usize, d_out: usize, learn_gain: bool, device: &Device) -> Self {
        let linear: Linear = LinearConfig::new(d_in, d_out).with_bias(false).init(device);
        Self {
            direction: linear.weight,
            gain: learn_gain.then(|| Param::from_tensor(Tensor::ones([d_out], device))),
        }
    }
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let v = self.direction.val();
        let norm = v
            .clone()
            .powf_scalar(2.0)
            .sum_dim(0)
            .sqrt()
            .clamp_min(1e-12);
        let out = x.matmul(v / norm);
        match &self.gain {
            Some(g) => {
                let [d] = g.val().dims();
                out * g.val().reshape([1, d])
            }
            None => out,
        }
    }
}

/// DINO's head (`[task.head]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinoHeadConfig {
    /// Width of the MLP's hidden layers.
    pub hidden: usize,
    /// Width of the MLP's output, scaled to unit length before the last layer.
    pub bottleneck: usize,
    /// Prototypes: the outputs of the weight-normalised last layer.
    pub prototypes: usize,
    /// Linear layers of the MLP (GELU between them).
    pub layers: usize,
    /// Standardise each hidden layer over the batch (DINO's `use_bn`): it keeps the head's
    /// outputs apart from the start when the encoder's features share a large common part
    /// (post-ReLU averages of a small network), which else flattens the centred teacher.
    pub batch_norm: bool,
    /// Keep the last layer's weights at unit length per prototype (DINO's `norm_last_layer`:
    /// steadier, but the logits stay within [-1, 1]); `false` learns a gain per prototype.
    pub norm_last_layer: bool,
}

impl Default for DinoHeadConfig {
    /// DINO's 3-layer head (2048, 256, 65536 prototypes) at a width a CPU trains.
    fn default() -> Self {
        Self {
            hidden: 1024,
            bottleneck: 128,
            prototypes: 4096,
            layers: 3,
            batch_norm: true,
            norm_last_layer: true,
        }
    }
}

/// DINO's projection head (Caron et al. 2021): an MLP with GELU (`layers` linear layers, the
/// last to a `bottleneck`), the bottleneck scaled to unit length, and a weight-normalised layer
/// to `d_out` prototypes.
#[derive(Module, Debug)]
pub struct DinoHead {
    pub mlp: Vec<Linear>,
    /// One per hidden layer, with `batch_norm`.
    pub norms: Vec<BatchNorm>,
    pub last: WeightNormLinear,
}

impl DinoHead {
    pub fn new(d_in: usize, cfg: &DinoHeadConfig, device: &Device) -> Self {
        let layers = cfg.layers.max(1);
        // DINO's initialisation, timm's: small weights (normal, std 0.02) and zero biases, so
        // that the first outputs follow the images rather than the biases.
        let mlp = (0..layers)
            .map(|i| {
                let from = if i == 0 { d_in } else { cfg.hidden };
                let to = if i + 1 == layers {
                    cfg.bottleneck
                } else {
                    cfg.hidden
                };
                timm_linear(from, to, device)
            })
            .collect();
        let hidden_layers = if cfg.batch_norm { layers - 1 } else { 0 };
        Self {
            mlp,
            norms: (0..hidden_layers)
                .map(|_| BatchNormConfig::new(cfg.hidden).init(device))
                .collect(),
            last: WeightNormLinear::new(
                cfg.bottleneck,
                cfg.prototypes,
                !cfg.norm_last_layer,
                device,
            ),
        }
    }
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.mlp.len() - 1;
        let x = self.mlp.iter().enumerate().fold(x, |x, (i, linear)| {
            let y = linear.forward(x);
            if i == last {
                return y;
            }
            match self.norms.get(i) {
                Some(norm) => gelu(batch_norm_rows(norm, y)),
                None => gelu(y),
            }
        });
        let norm = x
            .clone()
            .powf_scalar(2.0)
            .sum_dim(1)
            .sqrt()
            .clamp_min(1e-12);
        self.last.forward(x / norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn weight_normalised_outputs_are_cosines_whatever_the_directions_length() {
        let device = Device::flex();
        let mut layer = WeightNormLinear::new(2, 2, false, &device);
        // Directions (3, 4) and (0, -2), stored as columns.
        layer.direction = Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(vec![3.0f32, 0.0, 4.0, -2.0], [2, 2]),
            &device,
        ));
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [2, 2]),
            &device,
        );
        let got = layer.forward(x).into_data().try_to_vec::<f32>().unwrap();
        let want = [0.6, 0.0, 0.8, -1.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }
}
