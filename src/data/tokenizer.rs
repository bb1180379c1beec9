//! A WordPiece vocabulary trained on the corpus with Hugging Face's `tokenizers`, in BERT's
//! layout (lower-cased, accents stripped, [CLS] ... [SEP]), saved as `tokenizer.json` so that the
//! Python `tokenizers` library loads it and encodes to the same ids.

use std::path::Path;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainerBuilder};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::sequences::Specials;
use crate::data::DataError as Error;

pub const PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";
pub const CLS: &str = "[CLS]";
pub const SEP: &str = "[SEP]";
pub const MASK: &str = "[MASK]";
/// The special tokens, which take ids 0 to 4 in this order.
pub const SPECIAL: [&str; 5] = [PAD, UNK, CLS, SEP, MASK];

/// A trained tokenizer with the ids of its special tokens.
pub struct TextTokenizer {
    pub inner: Tokenizer,
    pub pad: u32,
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
}

impl TextTokenizer {
    /// Train a WordPiece vocabulary of (at most) `vocab_size` entries on `documents`.
    pub fn train<'a>(
        documents: impl Iterator<Item = &'a str> + Send,
        vocab_size: usize,
        min_frequency: u64,
    ) -> Result<TextTokenizer, Error> {
        let mut tokenizer = Tokenizer::new(
            WordPiece::builder()
                .unk_token(UNK.into())
                .build()
                .map_err(tok_err)?,
        );
        tokenizer
            .with_normalizer(Some(BertNormalizer::default()))
            .map_err(tok_err)?;
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        tokenizer.with_decoder(Some(WordPieceDecoder::default()));
        let mut trainer: TrainerWrapper = WordPieceTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(min_frequency)
            .show_progress(false)
            .special_tokens(SPECIAL.iter().map(|t| AddedToken::from(*t, true)).collect())
            .build()
            .into();
        tokenizer.train(&mut trainer, documents).map_err(tok_err)?;
        Self::finish(tokenizer)
    }

    /// Load a `tokenizer.json` written by [`TextTokenizer::save`].
    pub fn load(path: &Path) -> Result<TextTokenizer, Error> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| Error::Other(format!("{}: not a tokenizer file: {e}", path.display())))?;
        Self::finish(tokenizer)
    }

    fn finish(mut tokenizer: Tokenizer) -> Result<TextTokenizer, Error> {
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| Error::Other(format!("the tokenizer has no {t} token")))
        };
        let (pad, cls, sep, mask) = (id(PAD)?, id(CLS)?, id(SEP)?, id(MASK)?);
        tokenizer.with_post_processor(Some(BertProcessing::new(
            (SEP.into(), sep),
            (CLS.into(), cls),
        )));
        Ok(TextTokenizer {
            inner: tokenizer,
            pad,
            cls,
            sep,
            mask,
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), Error> {
        self.inner
            .save(path, false)
            .map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }

    /// The special ids sequences are built with.
    pub fn specials(&self) -> Specials {
        Specials {
            pad: self.pad,
            cls: self.cls,
            sep: self.sep,
            mask: self.mask,
            first_word: SPECIAL.len() as u32,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of each text, without [CLS] and [SEP], in parallel.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, Error> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), false)
            .map_err(tok_err)?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Token ids of one text with [CLS] and [SEP], as the Python library's `encode` gives them.
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>, Error> {
        Ok(self
            .inner
            .encode(text, true)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("tokenizer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        (0..200)
            .map(|i| {
                format!(
                    "the quick brown fox {} jumps over the lazy dog number {i}",
                    ["runs", "running", "runner"][i % 3]
                )
            })
            .collect()
    }

    #[test]
    fn trains_saves_loads_and_encodes_the_same() {
        let docs = corpus();
        let tok = TextTokenizer::train(docs.iter().map(String::as_str), 200, 1).unwrap();
        assert_eq!((tok.pad, tok.cls, tok.sep, tok.mask), (0, 2, 3, 4));
        assert!(
            tok.vocab_size() <= 200 && tok.vocab_size() > 30,
            "{}",
            tok.vocab_size()
        );
        let ids = tok.encode(&["The QUICK brown fox runs"]).unwrap();
        assert_eq!(ids[0].len(), 5, "{:?}", ids);
        assert!(
            !ids[0].contains(&1),
            "no [UNK] for words of the corpus: {ids:?}"
        );
        let with = tok.encode_with_specials("the fox").unwrap();
        assert_eq!((with[0], *with.last().unwrap()), (tok.cls, tok.sep));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path).unwrap();
        let again = TextTokenizer::load(&path).unwrap();
        assert_eq!(
            again.encode(&["the quick brown fox runs"]).unwrap(),
            tok.encode(&["the quick brown fox runs"]).unwrap()
        );
        std::fs::write(&path, "{not json").unwrap();
        let Err(e) = TextTokenizer::load(&path) else {
            panic!("a broken tokenizer.json loads");
        };
        assert!(e.to_string().contains("not a tokenizer file"), "{e}");
    }
}
