//! A BERT-style text encoder: token and learned position embeddings, a pre-LN transformer
//! encoder (burn's modules, so that records keep burn's names, computed with pretext's CPU
//! kernels), a final LayerNorm; and the masked-language-model head.

use burn::module::Module;
use burn::nn::activation::Activation;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput, TransformerEncoderLayer,
};
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::kernels::transformer::{dropout, gelu, layer_norm, linear, self_attention};

/// Every LayerNorm's epsilon (burn's and BERT's default), set at construction and passed to
/// the kernel, since burn's `LayerNorm` keeps its own private.
const LAYER_NORM_EPSILON: f64 = 1e-5;

fn layer_norm_config(width: usize) -> LayerNormConfig {
    LayerNormConfig::new(width).with_epsilon(LAYER_NORM_EPSILON)
}

/// The shape of a text encoder (`[text.model]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BertSpec {
    pub vocab_size: usize,
    /// Longest sequence, in tokens with [CLS] and [SEP].
    pub max_len: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub feed_forward: usize,
    pub dropout: f64,
}

impl Default for BertSpec {
    fn default() -> Self {
        Self {
            vocab_size: 8000,
            max_len: 128,
            hidden: 256,
            layers: 4,
            heads: 4,
            feed_forward: 1024,
            dropout: 0.1,
        }
    }
}

/// Token and position embeddings start as in BERT (Devlin et al. 2019).
const EMBEDDING_INIT: Initializer = Initializer::Normal {
    mean: 0.0,
    std: 0.02,
};

impl BertSpec {
    pub fn validate(&self, key: &str) -> Result<(), String> {
        if self.hidden == 0 || self.heads == 0 || self.hidden % self.heads != 0 {
            return Err(format!(
                "{key}.hidden must be a positive multiple of {key}.heads"
            ));
        }
        if self.layers == 0 || self.feed_forward == 0 {
            return Err(format!(
                "{key}.layers and {key}.feed_forward must be at least 1"
            ));
        }
        if !(4..=4096).contains(&self.max_len) {
            return Err(format!("{key}.max_len must be between 4 and 4096"));
        }
        if !(16..=1_000_000).contains(&self.vocab_size) {
            return Err(format!("{key}.vocab_size must be between 16 and 1000000"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("{key}.dropout must be in [0, 1)"));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> BertEncoder {
        BertEncoder {
            // BERT's N(0, 0.02), not burn's N(0, 1): rows of norm ~sqrt(hidden) would barely
            // move at AdamW's per-step size, leaving the features a random bag of words.
            tokens: EmbeddingConfig::new(self.vocab_size, self.hidden)
                .with_initializer(EMBEDDING_INIT)
                .init(device),
            positions: EmbeddingConfig::new(self.max_len, self.hidden)
                .with_initializer(EMBEDDING_INIT)
                .init(device),
            encoder: TransformerEncoderConfig::new(
                self.hidden,
                self.feed_forward,
                self.heads,
                self.layers,
            )
            .with_norm_first(true)
            .with_dropout(self.dropout)
            .with_layer_norm_eps(LAYER_NORM_EPSILON)
            .init(device),
            norm: layer_norm_config(self.hidden).init(device),
        }
    }
}

#[derive(Module, Debug)]
pub struct BertEncoder {
    pub tokens: Embedding,
    pub positions: Embedding,
    pub encoder: TransformerEncoder,
    pub norm: LayerNorm,
}

impl BertEncoder {
    /// Hidden states `[batch, len, hidden]` of token ids `[batch, len]`; `padding` is true at
    /// [PAD] positions, which no token attends to.
    pub fn forward(&self, ids: Tensor<2, Int>, padding: Tensor<2, Bool>) -> Tensor<3> {
        let [batch, len] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device)
            .reshape([1, len])
            .repeat_dim(0, batch);
        let x = self.tokens.forward(ids) + self.positions.forward(positions);
        let pre_ln_gelu = |l: &TransformerEncoderLayer| {
            l.norm_first && matches!(l.pwff.activation, Activation::Gelu(_))
        };
        let h = if self.encoder.layers.iter().all(pre_ln_gelu) {
            self.encoder
                .layers
                .iter()
                .fold(x, |x, layer| encoder_layer(layer, x, &padding))
        } else {
            self.encoder
                .forward(TransformerEncoderInput::new(x).mask_pad(padding))
        };
        layer_norm(&self.norm, LAYER_NORM_EPSILON, h)
    }

    /// One feature per sequence: the mean of the hidden states of its non-padding tokens.
    pub fn pooled(&self, ids: Tensor<2, Int>, padding: Tensor<2, Bool>) -> Tensor<2> {
        let [batch, len] = ids.dims();
        let hidden = self.forward(ids, padding.clone());
        let keep = padding.bool_not().float().reshape([batch, len, 1]);
        let summed = (hidden * keep.clone()).sum_dim(1);
        let counts = keep.sum_dim(1).clamp_min(1.0);
        let [_, _, d] = summed.dims();
        (summed / counts).reshape([batch, d])
    }
}

/// burn's `TransformerEncoderLayer::forward` for a pre-LN layer with GELU, through the kernel
/// entry points: `x + drop(attn(norm_2(x)))`, then `x + drop(W2·drop(gelu(W1·norm_1(x))))`.
fn encoder_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    pad: &Tensor<2, Bool>,
) -> Tensor<3> {
    let normed = layer_norm(&layer.norm_2, LAYER_NORM_EPSILON, x.clone());
    let attended = self_attention(&layer.mha, normed, pad.clone());
    let x = x + dropout(&layer.dropout, attended);
    let ff = &layer.pwff;
    let normed = layer_norm(&layer.norm_1, LAYER_NORM_EPSILON, x.clone());
    let inner = dropout(&ff.dropout, gelu(linear(&ff.linear_inner, normed)));
    x + dropout(&layer.dropout, linear(&ff.linear_outer, inner))
}

/// BERT's MLM head: dense, GELU, LayerNorm, then the vocabulary logits.
#[derive(Module, Debug)]
pub struct MlmHead {
    pub dense: Linear,
    pub norm: LayerNorm,
    pub out: Linear,
}

impl MlmHead {
    pub fn new(hidden: usize, vocab: usize, device: &Device) -> Self {
        Self {
            dense: LinearConfig::new(hidden, hidden).init(device),
            norm: layer_norm_config(hidden).init(device),
            out: LinearConfig::new(hidden, vocab).init(device),
        }
    }

    /// Vocabulary logits `[n, vocab]` of hidden states `[n, hidden]`.
    pub fn forward(&self, hidden: Tensor<2>) -> Tensor<2> {
        let activated = gelu(linear(&self.dense, hidden));
        linear(
            &self.out,
            layer_norm(&self.norm, LAYER_NORM_EPSILON, activated),
        )
    }
}

/// The hidden states of the selected positions only: `hidden` `[batch, len, d]` and flat
/// positions (`b * len + i`) give `[n, d]`, so the vocabulary head runs on the masked tokens
/// alone.
pub fn gather_positions(hidden: Tensor<3>, flat_positions: Tensor<1, Int>) -> Tensor<2> {
    let [batch, len, d] = hidden.dims();
    hidden.reshape([batch * len, d]).select(0, flat_positions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn tiny() -> BertSpec {
        BertSpec {
            vocab_size: 50,
            max_len: 8,
            hidden: 16,
            layers: 2,
            heads: 2,
            feed_forward: 32,
            dropout: 0.0,
        }
    }

    #[test]
    fn the_kernel_path_computes_burns_transformer_encoder() {
        let device = Device::flex().autodiff();
        device.seed(9);
        let enc = tiny().init(&device);
        let x = Tensor::<3>::random([2, 6, 16], burn::tensor::Distribution::Default, &device);
        let pad = Tensor::<2, Bool>::from_data(
            TensorData::new((0..12).map(|i| i >= 10).collect::<Vec<_>>(), [2, 6]),
            &device,
        );
        let run = |kernels: bool| {
            let x = x.clone().detach().require_grad();
            let h = if kernels {
                enc.encoder
                    .layers
                    .iter()
                    .fold(x.clone(), |h, layer| encoder_layer(layer, h, &pad))
            } else {
                enc.encoder
                    .forward(TransformerEncoderInput::new(x.clone()).mask_pad(pad.clone()))
            };
            let g = (h.clone() * h.clone()).sum().backward();
            let layer = &enc.encoder.layers[0];
            [
                h.into_data(),
                x.grad(&g).unwrap().into_data(),
                layer.mha.key.weight.val().grad(&g).unwrap().into_data(),
                layer
                    .pwff
                    .linear_inner
                    .weight
                    .val()
                    .grad(&g)
                    .unwrap()
                    .into_data(),
                layer.norm_2.gamma.val().grad(&g).unwrap().into_data(),
            ]
        };
        for (ours, burns) in run(true).iter().zip(&run(false)) {
            ours.assert_approx_eq::<f32>(burns, burn::tensor::Tolerance::absolute(1e-4));
        }
    }

    #[test]
    fn embeddings_start_at_berts_scale() {
        let spec = BertSpec {
            vocab_size: 2000,
            hidden: 64,
            ..tiny()
        };
        let enc = spec.init(&Device::flex());
        let values: Vec<f32> = enc.tokens.weight.val().into_data().try_to_vec().unwrap();
        let var = values.iter().map(|v| v * v).sum::<f32>() / values.len() as f32;
        assert!((var.sqrt() - 0.02).abs() < 0.002, "std {}", var.sqrt());
    }

    #[test]
    fn shapes_and_padding_do_not_leak() {
        let dev = Device::flex();
        let enc = tiny().init(&dev);
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![2i64, 7, 8, 3, 2, 9, 3, 0], [2, 4]),
            &dev,
        );
        let pad = Tensor::<2, Bool>::from_data(
            TensorData::new(
                vec![false, false, false, false, false, false, false, true],
                [2, 4],
            ),
            &dev,
        );
        assert_eq!(enc.forward(ids.clone(), pad.clone()).dims(), [2, 4, 16]);
        let pooled = enc
            .pooled(ids, pad)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        // Changing the token under the padding leaves the second sequence's feature unchanged.
        let ids2 = Tensor::<2, Int>::from_data(
            TensorData::new(vec![2i64, 7, 8, 3, 2, 9, 3, 41], [2, 4]),
            &dev,
        );
        let pad2 = Tensor::<2, Bool>::from_data(
            TensorData::new(
                vec![false, false, false, false, false, false, false, true],
                [2, 4],
            ),
            &dev,
        );
        let pooled2 = enc
            .pooled(ids2, pad2)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        for (a, b) in pooled.iter().zip(&pooled2) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let hidden = Tensor::<3>::from_data(
            TensorData::new((0..24).map(|v| v as f32).collect::<Vec<_>>(), [2, 3, 4]),
            &dev,
        );
        let picked = gather_positions(
            hidden,
            Tensor::<1, Int>::from_data(TensorData::new(vec![4i64, 0], [2]), &dev),
        );
        let picked = picked
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(picked, vec![16.0, 17.0, 18.0, 19.0, 0.0, 1.0, 2.0, 3.0]);
        assert!(
            BertSpec { heads: 3, ..tiny() }
                .validate("text.model")
                .unwrap_err()
                .contains("multiple")
        );
    }
}
