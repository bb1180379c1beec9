//! An encoder's weights under PyTorch's names and in PyTorch's layout, and the safetensors file
//! `torch.load`-free PyTorch code reads them from (`safetensors.torch.load_file`).

use std::collections::HashMap;
use std::path::Path;

use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, bridge};
use burn::tensor::TensorData;
use safetensors::tensor::{Dtype, TensorView};

use super::names::{NUM_BATCHES_TRACKED, RUNNING_MEAN, Scheme};
use crate::Error;
use crate::models::Encoder;
use crate::train::checkpoint::write_atomic;

/// One of an encoder's tensors under its PyTorch name, in PyTorch's layout (a linear layer's
/// weight is `[out, in]`).
#[derive(Clone, Debug, PartialEq)]
pub struct TorchTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl TorchTensor {
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    /// As a burn-store tensor (for [`ModuleSnapshot::apply`]).
    pub fn into_pack(self) -> burn::store::burn_pack::Tensor {
        bridge::from_data(TensorData::new(self.values, self.shape), self.name, None)
    }
}

/// Every learned tensor and BatchNorm running statistic of `encoder` under PyTorch's names, in
/// the module's order (BatchNorm's `num_batches_tracked`, which burn does not keep, excepted).
pub fn torch_state(encoder: &Encoder) -> Result<Vec<TorchTensor>, Error> {
    // `valid()` folds BatchNorm's pending running-statistics update into the values.
    let snapshots = encoder
        .valid()
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let (renamed, _) = Scheme::of(encoder).to_torch().remap(snapshots);
    renamed.into_iter().map(to_torch_tensor).collect()
}

fn to_torch_tensor(pack: burn::store::burn_pack::Tensor) -> Result<TorchTensor, Error> {
    let (name, data) = float_data(pack).map_err(Error::msg)?;
    let shape = data.shape().to_vec();
    let values = data
        .try_into_vec::<f32>()
        .map_err(|e| Error::msg(format!("the tensor {name} is not float: {e:?}")))?;
    Ok(TorchTensor {
        name,
        shape,
        values,
    })
}

/// A burn-store tensor's name and its values as float32 (read if deferred).
pub fn float_data(pack: burn::store::burn_pack::Tensor) -> Result<(String, TensorData), String> {
    let name = pack.name.clone();
    let data =
        bridge::into_data(pack).map_err(|e| format!("cannot read the tensor {name}: {e:?}"))?;
    Ok((name, data.convert::<f32>()))
}

/// Writes `state` to `path` as safetensors (float32, little-endian), with a
/// `num_batches_tracked` of 0 (int64, shape `[]`) beside each BatchNorm, as a PyTorch
/// `state_dict` has, and `metadata` in the header.
pub fn write_safetensors(
    path: &Path,
    state: &[TorchTensor],
    metadata: HashMap<String, String>,
) -> Result<(), Error> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>, Dtype)> = with_batch_counters(state);
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(name, data, shape, dtype)| {
            let view = TensorView::new(*dtype, shape.clone(), data)
                .expect("the byte length follows the shape");
            (name.clone(), view)
        })
        .collect();
    let file = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::msg(format!("{}: cannot serialise: {e}", path.display())))?;
    write_atomic(path, &file)?;
    Ok(())
}

/// `state`'s tensors as raw little-endian bytes, with a zero `num_batches_tracked` after each
/// BatchNorm's running mean.
fn with_batch_counters(state: &[TorchTensor]) -> Vec<(String, Vec<u8>, Vec<usize>, Dtype)> {
    let mut out = Vec::with_capacity(state.len() + state.len() / 4);
    for t in state {
        let bytes = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.push((t.name.clone(), bytes, t.shape.clone(), Dtype::F32));
        if let Some(bn) = t.name.strip_suffix(RUNNING_MEAN) {
            let counter = format!("{bn}{NUM_BATCHES_TRACKED}");
            out.push((counter, 0i64.to_le_bytes().to_vec(), Vec::new(), Dtype::I64));
        }
    }
    out
}
