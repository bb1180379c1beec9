//! Heads: what a task (or a transfer) puts on top of the encoder's features.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

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
            .fold(x, |x, (linear, norm)| relu(norm.forward(linear.forward(x))));
        self.out.forward(x)
    }
}
