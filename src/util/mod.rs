//! The bottom layer: helpers that know no pretext types.

pub mod config;
pub mod font;
pub mod fs;
pub mod memory;
pub mod rows;
pub mod run_dir;
