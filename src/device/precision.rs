//! The float type a run computes in. burn 0.22 has no automatic mixed precision, so `bf16` makes
//! bf16 the device's default float type: weights, activations, gradients and optimiser state
//! are all bf16 (PyTorch's `autocast` keeps fp32 weights; see docs/gpu.md).

use std::fmt;

use burn::tensor::{DType, FloatDType};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

impl Precision {
    /// The device's default float type, or `None` to keep the backend's (fp32).
    pub fn float_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::Fp32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }

    /// The float type of tensors made on the device.
    pub fn dtype(self) -> DType {
        match self {
            Precision::Fp32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
