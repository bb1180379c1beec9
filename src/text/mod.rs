//! Text: a WordPiece tokenizer trained on the corpus, and token sequences for masked language
//! modelling and for classification.

pub mod pretrain;
pub mod transfer;

pub use crate::data::{sequences, tokenizer};
pub use crate::methods::mlm::TextConfig;
