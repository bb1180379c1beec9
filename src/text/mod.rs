//! Text: a WordPiece tokenizer trained on the corpus, and token sequences for masked language
//! modelling and for classification.

pub mod sequences;
pub mod tokenizer;
