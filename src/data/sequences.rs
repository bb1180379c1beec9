//! Token sequences of a fixed length: a corpus packed into [CLS] ... chunks for masked language
//! modelling, a labelled text truncated to [CLS] text [SEP] for classification, and BERT's
//! masking of 15 % of the tokens.

use rand::Rng;

/// Ids of the special tokens a sequence is built with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Specials {
    pub pad: u32,
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    /// Ids below this are special tokens (never masked, never drawn as random replacements).
    pub first_word: u32,
}

/// The documents' tokens, each document followed by [SEP], cut into sequences of `len` tokens
/// that each start with [CLS]; the last, shorter one is padded. Packing wastes no positions on
/// padding, which matters for a corpus of short entries such as a dictionary.
pub fn pack(documents: &[Vec<u32>], len: usize, s: Specials) -> Vec<Vec<u32>> {
    assert!(len >= 2, "a sequence needs room for [CLS] and a token");
    let stream = documents
        .iter()
        .flat_map(|d| d.iter().copied().chain(std::iter::once(s.sep)));
    let mut out = Vec::new();
    let mut current = vec![s.cls];
    for token in stream {
        current.push(token);
        if current.len() == len {
            out.push(std::mem::replace(&mut current, vec![s.cls]));
        }
    }
    if current.len() > 1 {
        current.resize(len, s.pad);
        out.push(current);
    }
    out
}

/// [CLS] + the first `len - 2` tokens + [SEP], unpadded: a batch pads to its longest member.
pub fn truncate(tokens: &[u32], len: usize, s: Specials) -> Vec<u32> {
    let keep = tokens.len().min(len.saturating_sub(2));
    let mut out = Vec::with_capacity(keep + 2);
    out.push(s.cls);
    out.extend_from_slice(&tokens[..keep]);
    out.push(s.sep);
    out
}

/// Special ids for tests: [PAD] 0, [CLS] 2, [SEP] 3, [MASK] 4, words from 5.
#[cfg(test)]
pub const TEST_SPECIALS: Specials = Specials {
    pad: 0,
    cls: 2,
    sep: 3,
    mask: 4,
    first_word: 5,
};

/// One sequence after masking: the model's input, and the positions it must recover with
/// their original tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Masked {
    pub input: Vec<u32>,
    pub positions: Vec<usize>,
    pub targets: Vec<u32>,
}

/// BERT's masking (Devlin et al. 2019): each word token is selected with probability `rate`
/// (at least one per sequence); a selected token becomes [MASK] 80 % of the time, a random word
/// token 10 %, and stays itself 10 %. Special tokens are never selected.
pub fn mask_tokens(seq: &[u32], rate: f64, vocab: u32, s: Specials, rng: &mut impl Rng) -> Masked {
    let words: Vec<usize> = (0..seq.len()).filter(|&i| seq[i] >= s.first_word).collect();
    let mut positions: Vec<usize> = words
        .iter()
        .copied()
        .filter(|_| rng.random_bool(rate))
        .collect();
    if positions.is_empty() && !words.is_empty() {
        positions.push(words[rng.random_range(0..words.len())]);
    }
    let mut input = seq.to_vec();
    let targets = positions.iter().map(|&p| seq[p]).collect();
    for &p in &positions {
        let roll: f64 = rng.random();
        if roll < 0.8 {
            input[p] = s.mask;
        } else if roll < 0.9 {
            input[p] = rng.random_range(s.first_word..vocab);
        }
    }
    Masked {
        input,
        positions,
        targets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const S: Specials = TEST_SPECIALS;

    #[test]
    fn packing_keeps_every_token_in_order_with_cls_heads() {
        let docs = vec![vec![10, 11, 12], vec![13], vec![14, 15, 16, 17]];
        let seqs = pack(&docs, 4, S);
        assert_eq!(
            seqs,
            vec![
                vec![2, 10, 11, 12],
                vec![2, 3, 13, 3],
                vec![2, 14, 15, 16],
                vec![2, 17, 3, 0]
            ]
        );
        assert_eq!(truncate(&[10, 11, 12, 13], 4, S), vec![2, 10, 11, 3]);
        assert_eq!(truncate(&[10], 5, S), vec![2, 10, 3]);
    }

    #[test]
    fn masking_follows_bert_rates_and_never_touches_specials() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let seq: Vec<u32> = std::iter::once(2)
            .chain((0..126).map(|i| 5 + (i % 50)))
            .chain(std::iter::once(3))
            .collect();
        let (mut selected, mut to_mask, mut to_random, mut kept, mut words) = (0, 0, 0, 0, 0);
        for _ in 0..400 {
            let m = mask_tokens(&seq, 0.15, 100, S, &mut rng);
            words += 126;
            selected += m.positions.len();
            for (&p, &t) in m.positions.iter().zip(&m.targets) {
                assert_eq!(t, seq[p], "targets are the original tokens");
                assert!(seq[p] >= S.first_word, "special tokens are never selected");
                match m.input[p] {
                    4 => to_mask += 1,
                    x if x == seq[p] => kept += 1,
                    _ => to_random += 1,
                }
            }
            for i in 0..seq.len() {
                if !m.positions.contains(&i) {
                    assert_eq!(m.input[i], seq[i]);
                }
            }
        }
        let rate = selected as f64 / words as f64;
        assert!((rate - 0.15).abs() < 0.01, "{rate}");
        let share = |n: usize| n as f64 / selected as f64;
        assert!((share(to_mask) - 0.8).abs() < 0.02, "{}", share(to_mask));
        // A random replacement may draw the token itself (1 in 95 here): it then counts as kept.
        assert!(
            (share(to_random) - 0.1).abs() < 0.02,
            "{}",
            share(to_random)
        );
        assert!((share(kept) - 0.1).abs() < 0.02, "{}", share(kept));
        // A sequence whose draw selects nothing still gets one target.
        let short = mask_tokens(&[2, 9, 3], 0.0, 100, S, &mut rng);
        assert_eq!(short.positions, vec![1]);
    }
}
