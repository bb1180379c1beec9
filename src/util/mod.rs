//! The bottom layer: helpers that know no pretext types.

pub mod fs;
pub mod memory;
