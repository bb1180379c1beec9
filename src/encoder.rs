//! A trained encoder on disk: `encoder.safetensors` (the weights, readable by any safetensors
//! reader) and `encoder.json` (the [`EncoderSpec`] needed to rebuild and feed it).

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;

use crate::Error;
use crate::models::{Encoder, EncoderSpec};
use crate::train::checkpoint::write_atomic;

pub const WEIGHTS_FILE: &str = "encoder.safetensors";
pub const SPEC_FILE: &str = "encoder.json";

pub struct TrainedEncoder {
    pub spec: EncoderSpec,
    pub encoder: Encoder,
}

impl TrainedEncoder {
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let mut store =
            SafetensorsStore::from_bytes(None).metadata("pretext.arch", self.spec.arch.to_string());
        // `valid()` folds BatchNorm's pending running-statistics update into the saved values.
        self.encoder.valid().save_into(&mut store).map_err(|e| {
            Error::msg(format!(
                "{}: cannot serialise encoder: {e}",
                dir.join(WEIGHTS_FILE).display()
            ))
        })?;
        let bytes = store
            .get_bytes()
            .map_err(|e| Error::msg(format!("{}: {e}", dir.join(WEIGHTS_FILE).display())))?;
        write_atomic(&dir.join(WEIGHTS_FILE), &bytes)?;
        let spec = serde_json::to_vec_pretty(&self.spec).expect("spec serialises");
        write_atomic(&dir.join(SPEC_FILE), &spec)?;
        Ok(())
    }

    /// Load the encoder saved in `dir` onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, Error> {
        let spec_path = dir.join(SPEC_FILE);
        let text = std::fs::read(&spec_path).map_err(|e| Error::io(&spec_path, e))?;
        let spec: EncoderSpec = serde_json::from_slice(&text)
            .map_err(|e| Error::msg(format!("{}: {e}", spec_path.display())))?;
        let weights = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).map_err(|e| Error::io(&weights, e))?;
        let mut encoder = spec.init(device);
        let mut store = SafetensorsStore::from_bytes(Some(bytes));
        let applied = encoder.load_from(&mut store).map_err(|e| {
            Error::msg(format!(
                "{}: not the weights of a {} (width {}): {e}",
                weights.display(),
                spec.arch,
                spec.width
            ))
        })?;
        if !applied.missing.is_empty() || !applied.errors.is_empty() {
            return Err(Error::msg(format!(
                "{}: does not match a {} of width {} ({} tensors missing, {} errors)",
                weights.display(),
                spec.arch,
                spec.width,
                applied.missing.len(),
                applied.errors.len()
            )));
        }
        Ok(Self { spec, encoder })
    }
}
