//! Text: a WordPiece tokenizer trained on the corpus, and token sequences for masked language
//! modelling and for classification.

pub mod pretrain;
pub mod sequences;
pub mod tokenizer;
pub mod transfer;

use serde::{Deserialize, Serialize};

use crate::data::text::Columns;
use crate::models::bert::BertSpec;

/// Text settings (`[text]`): the encoder's shape and the MLM recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextConfig {
    /// The transformer encoder (`[text.model]`); `vocab_size` is also the tokenizer's size.
    pub model: BertSpec,
    /// A word piece must occur this often in the corpus to enter the vocabulary.
    pub min_frequency: u64,
    /// Share of word tokens selected for prediction (BERT: 0.15).
    pub mask_rate: f64,
    /// Share of documents held out to measure masked-token accuracy and perplexity.
    pub heldout: f64,
    /// Held-out sequences measured after every epoch.
    pub monitor_sequences: usize,
    /// Sequences per epoch (0: the whole corpus). A large corpus is then measured and
    /// checkpointed every this many sequences, drawn from successive shuffled passes.
    pub epoch_sequences: usize,
    /// More unlabelled text for MLM, after `data.path`: corpora, or labelled tables whose
    /// training texts (not their test split) join the corpus, such as the transfer task's own.
    pub extra_corpora: Vec<String>,
    /// The columns of a labelled table with a header (`[text.columns]`), for transfer.
    pub columns: Columns,
    /// Replace invalid UTF-8 in the corpus instead of failing.
    pub lossy_utf8: bool,
    /// Read at most this many documents (0: all).
    pub max_documents: usize,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            model: BertSpec::default(),
            min_frequency: 2,
            mask_rate: 0.15,
            heldout: 0.02,
            monitor_sequences: 512,
            epoch_sequences: 0,
            extra_corpora: Vec::new(),
            columns: Columns::default(),
            lossy_utf8: false,
            max_documents: 0,
        }
    }
}

impl TextConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.model.validate("text.model")?;
        if !(self.mask_rate > 0.0 && self.mask_rate < 1.0) {
            return Err("text.mask_rate must be between 0 and 1".into());
        }
        if !(self.heldout > 0.0 && self.heldout < 0.5) {
            return Err("text.heldout must be between 0 and 0.5".into());
        }
        if self.monitor_sequences == 0 {
            return Err("text.monitor_sequences must be at least 1".into());
        }
        Ok(())
    }
}
