//! pretext: self-supervised representation learning. Pretrain an encoder on unlabelled images
//! with a pretext task, transfer it with few labels, and compare it with training from scratch.

pub mod bench;
pub mod cluster;
pub mod collection;
pub mod config;
pub mod curate;
pub mod data;
pub mod demo;
pub mod device;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod interop;
pub mod kernels;
pub mod losses;
pub mod methods;
pub mod models;
pub mod npy;
pub mod pipeline;
pub mod study;
pub mod text;
pub mod train;
pub mod transfer;
pub mod util;

pub use error::Error;
