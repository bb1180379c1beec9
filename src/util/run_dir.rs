//! The names of the files a run directory holds.

/// The validated config the run ran, which `pretext resume` reads back.
pub const CONFIG_FILE: &str = "config.toml";
/// What the run measured (pretraining's summary, transfer's results).
pub const RESULTS_FILE: &str = "results.json";
