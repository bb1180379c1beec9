//! Config parsing and validation: the input as a pretraining and a transfer config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pretext::config::{PretrainConfig, TransferConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = toml::from_str::<PretrainConfig>(text) {
        let _ = cfg.validate();
    }
    if let Ok(cfg) = toml::from_str::<TransferConfig>(text) {
        let _ = cfg.validate();
    }
});
