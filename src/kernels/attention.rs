//! The core of multi-head self-attention, `softmax(Q·Kᵀ/√d + mask)·V` per head, with dropout
//! on the attention weights, forward and backward.
//!
//! burn's `MultiHeadAttention` splits the heads out with reshapes and axis swaps (copies),
//! masks, scales, exponentiates, normalises and drops out in separate passes over the
//! `[batch, heads, len, len]` scores, and draws the dropout serially. Here each sequence is
//! one parallel task: every head's products read and write their column block of the
//! `[len, heads·head_dim]` activations in place, through `gemm`'s strides.

use rayon::prelude::*;

use super::activation::exp;
use super::dropout::{DropMask, apply_chunk};
use super::lanes;
use super::matmul::matmul;

/// `[batch, len, heads·head_dim]` queries, keys, values and context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }
    fn sequence(&self) -> usize {
        self.len * self.width()
    }
    fn weights(&self) -> usize {
        self.heads * self.len * self.len
    }
    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// How the weights are masked and dropped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionMasking {
    /// The score a padding key gets before the softmax (burn's `min_float`, -1e4): a fill,
    /// not a bias.
    pub masked_score: f32,
    /// Dropout on the weights; `None` outside training.
    pub dropout: Option<DropMask>,
}

crate::simd_fn! {
    /// Each row of `scores` (`len` wide) becomes its softmax, padding keys filled first.
    fn softmax_rows(scores: &mut [f32], pad: &[bool], masked_score: f32) -> () {
        for row in scores.chunks_exact_mut(pad.len()) {
            for (v, &p) in row.iter_mut().zip(pad) {
                if p {
                    *v = masked_score;
                }
            }
            let max = lanes::max(row);
            // A plain map loop, which LLVM vectorises (a fused exp-and-sum loop stayed scalar).
            row.iter_mut().for_each(|v| *v = exp(*v - max));
            let inv = 1.0 / lanes::sum_of(row, |v| v);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

crate::simd_fn! {
    /// The softmax's backward pass in place: `dp` becomes `p ⊙ (dp - rowsum(dp ⊙ p))`, 0 at
    /// padding keys (their scores were a constant fill).
    fn softmax_backward_rows(p: &[f32], dp: &mut [f32], pad: &[bool]) -> () {
        let len = pad.len();
        for (pr, dr) in p.chunks_exact(len).zip(dp.chunks_exact_mut(len)) {
            let dot = lanes::dot(pr, dr);
            for ((d, &p), &m) in dr.iter_mut().zip(pr).zip(pad) {
                *d = if m { 0.0 } else { p * (*d - dot) };
            }
        }
    }
}

/// The weights one head's product with V uses: `p` itself, or `p` dropped out into `buffer`.
fn dropped<'a>(
    masking: &AttentionMasking,
    offset: usize,
    p: &'a [f32],
    buffer: &'a mut [f32],
) -> &'a [f32] {
    match masking.dropout {
        Some(mask) => {
            apply_chunk(mask, offset, p, buffer);
            buffer
        }
        None => p,
    }
}

fn check(s: &AttentionShape, q: &[f32], k: &[f32], v: &[f32], pad: &[bool]) {
    let n = s.batch * s.sequence();
    assert!(q.len() == n && k.len() == n && v.len() == n && pad.len() == s.batch * s.len);
    assert!(
        s.batch * s.weights() <= u32::MAX as usize,
        "attention over 2^32 weights"
    );
}

/// The context `[batch, len, heads·head_dim]` and the attention weights before dropout
/// (`[batch, heads, len, len]`, which the backward pass needs). `pad` is true at padding keys.
pub fn forward(
    s: AttentionShape,
    (q, k, v): (&[f32], &[f32], &[f32]),
    pad: &[bool],
    masking: AttentionMasking,
) -> (Vec<f32>, Vec<f32>) {
    check(&s, q, k, v, pad);
    let (len, width, dk) = (s.len, s.width(), s.head_dim);
    let mut context = super::zeros(s.batch * s.sequence());
    let mut weights = super::zeros(s.batch * s.weights());
    context
        .par_chunks_mut(s.sequence())
        .zip(weights.par_chunks_mut(s.weights()))
        .enumerate()
        .for_each(|(b, (context, weights))| {
            let at = b * s.sequence();
            let (qb, kb, vb) = (&q[at..], &k[at..], &v[at..]);
            let pad = &pad[b * len..][..len];
            let mut buffer = vec![
                0.0;
                if masking.dropout.is_some() {
                    len * len
                } else {
                    0
                }
            ];
            for (h, p) in weights.chunks_exact_mut(len * len).enumerate() {
                let col = h * dk;
                let (qh, kh) = ((&qb[col..], width, 1), (&kb[col..], 1, width));
                matmul((len, len, dk), p, len, false, qh, kh, s.scale());
                softmax_rows(p, pad, masking.masked_score);
                let offset = (b * s.heads + h) * len * len;
                let used = dropped(&masking, offset, p, &mut buffer);
                let vh = (&vb[col..], width, 1);
                matmul(
                    (len, dk, len),
                    &mut context[col..],
                    width,
                    false,
                    (used, len, 1),
                    vh,
                    1.0,
                );
            }
        });
    (context, weights)
}

/// The gradients of [`forward`] with respect to q, k and v, given the context's gradient.
pub fn backward(
    s: AttentionShape,
    (q, k, v): (&[f32], &[f32], &[f32]),
    weights: &[f32],
    pad: &[bool],
    masking: AttentionMasking,
    dcontext: &[f32],
) -> [Vec<f32>; 3] {
    check(&s, q, k, v, pad);
    let (len, width, dk) = (s.len, s.width(), s.head_dim);
    let n = s.batch * s.sequence();
    let (mut dq, mut dk_, mut dv) = (super::zeros(n), super::zeros(n), super::zeros(n));
    dq.par_chunks_mut(s.sequence())
        .zip(dk_.par_chunks_mut(s.sequence()))
        .zip(dv.par_chunks_mut(s.sequence()))
        .enumerate()
        .for_each(|(b, ((dq, dkb), dv))| {
            let at = b * s.sequence();
            let (qb, kb, vb, db) = (&q[at..], &k[at..], &v[at..], &dcontext[at..]);
            let pad = &pad[b * len..][..len];
            let weights = &weights[b * s.weights()..][..s.weights()];
            let mut buffer = vec![
                0.0;
                if masking.dropout.is_some() {
                    len * len
                } else {
                    0
                }
            ];
            let mut dp = vec![0.0; len * len];
            for (h, p) in weights.chunks_exact(len * len).enumerate() {
                let col = h * dk;
                let offset = (b * s.heads + h) * len * len;
                let dh = (&db[col..], width, 1);
                // dV = used weightsᵀ · dcontext
                let used = dropped(&masking, offset, p, &mut buffer);
                matmul(
                    (len, dk, len),
                    &mut dv[col..],
                    width,
                    false,
                    (used, 1, len),
                    dh,
                    1.0,
                );
                // d(used weights) = dcontext · Vᵀ, then back through the dropout.
                let vt = (&vb[col..], 1, width);
                matmul((len, len, dk), &mut dp, len, false, dh, vt, 1.0);
                let dw: &mut [f32] = match masking.dropout {
                    Some(mask) => {
                        apply_chunk(mask, offset, &dp, &mut buffer);
                        &mut buffer
                    }
                    None => &mut dp,
                };
                softmax_backward_rows(p, dw, pad);
                let dw: &[f32] = dw;
                // dQ = dS · K / √d, dK = dSᵀ · Q / √d
                let (kh, qh) = ((&kb[col..], width, 1), (&qb[col..], width, 1));
                matmul(
                    (len, dk, len),
                    &mut dq[col..],
                    width,
                    false,
                    (dw, len, 1),
                    kh,
                    s.scale(),
                );
                matmul(
                    (len, dk, len),
                    &mut dkb[col..],
                    width,
                    false,
                    (dw, 1, len),
                    qh,
                    s.scale(),
                );
            }
        });
    [dq, dk_, dv]
}
