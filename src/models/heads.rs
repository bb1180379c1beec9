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

/// The projector and predictor MLP of SimCLR, BYOL and SimSiam: linear, BatchNorm, ReLU, linear.
#[derive(Module, Debug)]
pub struct ProjectionMlp {
    pub hidden: Linear,
    pub norm: BatchNorm,
    pub out: Linear,
}

impl ProjectionMlp {
    pub fn new(d_in: usize, d_hidden: usize, d_out: usize, device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(d_in, d_hidden).init(device),
            norm: BatchNormConfig::new(d_hidden).init(device),
            out: LinearConfig::new(d_hidden, d_out).init(device),
        }
    }
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out
            .forward(relu(self.norm.forward(self.hidden.forward(x))))
    }
}
