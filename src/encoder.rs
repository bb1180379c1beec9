//! A trained encoder on disk: `encoder.safetensors` (the weights, readable by any safetensors
//! reader) and `encoder.json` (the [`EncoderSpec`] needed to rebuild and feed it).

use std::path::Path;

use burn::module::Module;
use burn::store::{FloatCastAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{DType, Device};

use crate::Error;
use crate::models::{Encoder, EncoderSpec};
use crate::train::checkpoint::write_atomic;

use crate::util::run_dir::RunDir;

pub struct TrainedEncoder {
    pub spec: EncoderSpec,
    pub encoder: Encoder,
}

/// Write `module`'s weights to `path` as safetensors (tensor names follow the module tree), with
/// `arch` in the metadata. They are stored as float32 whatever the run's precision, so that any
/// run, and PyTorch, reads them.
pub fn save_weights<M: Module>(module: &M, path: &Path, arch: &str) -> Result<(), Error> {
    let mut store = SafetensorsStore::from_bytes(None)
        .metadata("pretext.arch", arch.to_string())
        .with_to_adapter(FloatCastAdapter::to(DType::F32));
    // `valid()` folds BatchNorm's pending running-statistics update into the saved values.
    module.valid().save_into(&mut store).map_err(|e| {
        Error::msg(format!(
            "{}: cannot serialise the weights: {e}",
            path.display()
        ))
    })?;
    let bytes = store
        .get_bytes()
        .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
    write_atomic(path, &bytes)?;
    Ok(())
}

/// Load the weights at `path` into `module`, which must have every tensor they hold; `what`
/// describes the expected network in errors.
pub fn load_weights<M: Module>(mut module: M, path: &Path, what: &str) -> Result<M, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(FloatCastAdapter::to(crate::device::precision().dtype()));
    let applied = module.load_from(&mut store).map_err(|e| {
        Error::msg(format!(
            "{}: not the weights of {what}: {e}",
            path.display()
        ))
    })?;
    if !applied.missing.is_empty() || !applied.errors.is_empty() {
        return Err(Error::msg(format!(
            "{}: does not match {what} ({} tensors missing, {} errors)",
            path.display(),
            applied.missing.len(),
            applied.errors.len()
        )));
    }
    Ok(module)
}

/// Read a network's spec (`encoder.json`, `text_encoder.json`); errors name the file.
pub fn read_spec<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
}

impl TrainedEncoder {
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        save_weights(
            &self.encoder,
            &RunDir(dir).encoder_weights(),
            &self.spec.arch.to_string(),
        )?;
        let spec = serde_json::to_vec_pretty(&self.spec).expect("spec serialises");
        write_atomic(&RunDir(dir).encoder_spec(), &spec)?;
        Ok(())
    }

    /// Load the encoder saved in `dir` onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, Error> {
        let spec: EncoderSpec = read_spec(&RunDir(dir).encoder_spec())?;
        let what = format!("a {} of width {}", spec.arch, spec.width);
        let encoder = load_weights(spec.init(device), &RunDir(dir).encoder_weights(), &what)?;
        Ok(Self { spec, encoder })
    }
}
