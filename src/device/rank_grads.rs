//! Gradients summed over the ranks of a run: every trainable parameter's gradient packed into
//! one buffer (in the modules' visiting order, the same on every rank), one all-reduce, and
//! the sums unpacked into gradients again. A parameter that got no gradient on a rank adds
//! zeros there; one that got none on any rank stays without a gradient, as it would alone.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use std::ops::Range;

use burn::tensor::{Tensor, TensorData};

use super::ranks;

/// What the all-reduce of gradients is called in a timeout message.
const ALL_REDUCE: &str = "all-reduce of the gradients";

/// The (encoder, heads) gradients summed over the ranks, each rank's multiplied by `scale`
/// first (its share of the global batch for a mean loss; 1 where the gradient is already the
/// global batch's). Returned as they are when the process is alone.
pub fn sum_over_ranks<E: Module, H: Module>(
    (encoder, heads): (&E, &H),
    (encoder_grads, head_grads): (GradientsParams, GradientsParams),
    scale: f32,
) -> (GradientsParams, GradientsParams) {
    if ranks::ranks().is_none() {
        return (encoder_grads, head_grads);
    }
    let mut pack = Pack {
        grads: encoder_grads,
        scale,
        values: Vec::new(),
        present: Vec::new(),
    };
    encoder.visit(&mut pack);
    let encoder_params = pack.present.len();
    pack.grads = head_grads;
    heads.visit(&mut pack);
    let Pack {
        mut values,
        present,
        ..
    } = pack;
    // The presence flags travel with the values: one collective per step.
    let flags = present.len();
    values.extend(present);
    ranks::timed(ALL_REDUCE, |r| r.sum_f32(&mut values));
    let present = values.split_off(values.len() - flags);
    let mut unpack = Unpack {
        values: &values,
        present: &present[..encoder_params],
        at: 0,
        param: 0,
        out: GradientsParams::new(),
    };
    encoder.visit(&mut unpack);
    let encoder_grads = std::mem::take(&mut unpack.out);
    unpack.present = &present[encoder_params..];
    unpack.param = 0;
    heads.visit(&mut unpack);
    (encoder_grads, unpack.out)
}

/// Whether a parameter trains (frozen ones carry no gradient on any rank and are left out).
fn trains<const D: usize>(param: &Param<Tensor<D>>) -> bool {
    param.val().is_require_grad()
}

struct Pack {
    grads: GradientsParams,
    scale: f32,
    values: Vec<f32>,
    present: Vec<f32>,
}

impl ModuleVisitor for Pack {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !trains(param) {
            return;
        }
        let elements = param.val().shape().num_elements();
        match self.grads.remove::<D>(param.id) {
            Some(grad) => {
                let data = grad.into_data().convert::<f32>();
                let grad = data.as_slice::<f32>().expect("converted to f32");
                self.values.extend(grad.iter().map(|g| g * self.scale));
                self.present.push(1.0);
            }
            None => {
                self.values.resize(self.values.len() + elements, 0.0);
                self.present.push(0.0);
            }
        }
    }
}

struct Unpack<'a> {
    values: &'a [f32],
    present: &'a [f32],
    /// The next parameter's first value.
    at: usize,
    /// The next parameter's index among those that train.
    param: usize,
    out: GradientsParams,
}

impl ModuleVisitor for Unpack<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !trains(param) {
            return;
        }
        let value = param.val();
        let shape = value.shape();
        let elements = shape.num_elements();
        let sum = &self.values[self.at..self.at + elements];
        self.at += elements;
        let somewhere = self.present[self.param] > 0.0;
        self.param += 1;
        if somewhere {
            let device = value.device().inner();
            let data = TensorData::new(sum.to_vec(), shape);
            self.out
                .register(param.id, Tensor::<D>::from_data(data, &device));
        }
    }
}

/// The mean of the rows `[n, k]` of every rank's batch, `[1, k]` (the rows' own mean alone):
/// batch statistics of the global batch, such as DINO's centre.
pub fn mean_rows_over_ranks(rows: Tensor<2>) -> Tensor<2> {
    if ranks::ranks().is_none() {
        return rows.mean_dim(0);
    }
    let [n, k] = rows.dims();
    let device = rows.device();
    let data = rows.sum_dim(0).into_data().convert::<f32>();
    let mut sums: Vec<f64> = data
        .as_slice::<f32>()
        .expect("converted to f32")
        .iter()
        .map(|&v| v as f64)
        .chain([n as f64])
        .collect();
    ranks::sum_f64("all-reduce of a batch mean", &mut sums);
    let total = sums.pop().unwrap_or(1.0).max(1.0);
    let mean: Vec<f32> = sums.iter().map(|s| (s / total) as f32).collect();
    Tensor::from_data(TensorData::new(mean, [1, k]), &device)
}

/// Every rank's rows `[n_r, k]` concatenated in rank order (as a new leaf, detached), and
/// which of its rows are this rank's own: the all-gather of SimCLR's negatives. The gradient
/// of a loss over them comes back to this rank as those rows of its gradient.
pub fn gather_rows_over_ranks(local: Tensor<2>) -> (Tensor<2>, Range<usize>) {
    let [n, k] = local.dims();
    if ranks::ranks().is_none() {
        return (local.detach(), 0..n);
    }
    let device = local.device();
    let data = local.detach().into_data().convert::<f32>();
    let (values, lengths) = ranks::gather_f32(
        "all-gather of the projections",
        data.as_slice::<f32>().expect("converted to f32"),
    );
    let start = lengths[..ranks::rank()].iter().sum::<usize>() / k.max(1);
    let rows = values.len() / k.max(1);
    let all = Tensor::from_data(TensorData::new(values, [rows, k]), &device);
    (all, start..start + n)
}
