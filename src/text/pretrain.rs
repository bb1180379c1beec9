//! `pretext pretrain --task mlm`: read the corpus, hold out a share of its documents, train the
//! tokenizer, pack the token streams into sequences, and train the BERT encoder with masked
//! language modelling, measuring held-out masked-token accuracy and perplexity every epoch.

use std::path::Path;

use serde_json::json;

use super::sequences::pack;
use super::tokenizer::TextTokenizer;
use crate::Error;
use crate::config::PretrainConfig;
use crate::data::text::{TextOptions, read_unlabelled};
use crate::device::ranks;
use crate::encoder::save_weights;
use crate::methods::mlm::{MlmLearner, MlmModel, TextBatches, heldout_metrics};
use crate::methods::{MethodKind, PretrainSummary};
use crate::train::checkpoint::write_atomic;
use crate::train::{LoopSettings, run_loop, train_device};
use crate::util::run_dir::RunDir;

pub fn pretrain_mlm(
    cfg: &PretrainConfig,
    run_dir: &Path,
    quiet: bool,
) -> Result<PretrainSummary, Error> {
    let text = &cfg.text;
    let (source, documents) = read_documents(cfg)?;
    let (train_docs, heldout_docs) = hold_out(&documents, text.heldout);
    if train_docs.is_empty() || heldout_docs.is_empty() {
        return Err(Error::msg(format!(
            "{}: {} documents are too few to hold out {:.0} % of them",
            cfg.data.path,
            documents.len(),
            100.0 * text.heldout
        )));
    }
    let tokenizer = tokenizer_for(cfg, run_dir, &train_docs)?;
    let specials = tokenizer.specials();
    let vocab = tokenizer.vocab_size() as u32;
    let len = text.model.max_len;
    let train_seqs = pack(&tokenizer.encode(&train_docs)?, len, specials);
    let mut heldout_seqs = pack(&tokenizer.encode(&heldout_docs)?, len, specials);
    heldout_seqs.truncate(text.monitor_sequences);
    if !quiet {
        eprintln!(
            "pretrain mlm on {source} ({} documents, {} held out): vocabulary {vocab}, {} training sequences of {len} tokens; encoder {} layers x {} hidden, into {}",
            documents.len(),
            heldout_docs.len(),
            train_seqs.len(),
            text.model.layers,
            text.model.hidden,
            run_dir.display()
        );
    }

    let device = train_device();
    device.seed(cfg.train.seed);
    let mut learner = MlmLearner::new(MlmModel::new(&text.model, &device), &cfg.train, &device);
    let source = TextBatches {
        sequences: &train_seqs,
        batch_size: cfg.train.batch_size,
        shuffle: true,
        epoch_sequences: text.epoch_sequences,
        seed: cfg.train.seed,
        mask_rate: text.mask_rate,
        vocab,
        specials,
    };
    let heldout = TextBatches {
        sequences: &heldout_seqs,
        shuffle: false,
        seed: cfg.train.seed ^ 0x4e1d_0u64,
        ..source
    };
    let monitor = |l: &MlmLearner| {
        let (acc, perplexity) = heldout_metrics(&l.model, &heldout);
        let mut m = serde_json::Map::new();
        m.insert("heldout_acc".into(), json!(acc));
        m.insert("heldout_perplexity".into(), json!(perplexity));
        m
    };
    let settings = LoopSettings {
        recipe: &cfg.train,
        run_dir: Some(run_dir),
        model_tag: format!(
            "bert/l{}/h{}/v{}/mlm",
            text.model.layers, text.model.hidden, text.model.vocab_size
        ),
        label: "pretrain mlm".into(),
        quiet,
        checkpoint_every: cfg.run.checkpoint_every(),
    };
    let outcome = run_loop(&settings, &source, &mut learner, Some(&monitor))?;
    let (acc, perplexity) = heldout_metrics(&learner.model, &heldout);
    let summary = PretrainSummary {
        task: MethodKind::Mlm.name().into(),
        arch: BERT_ARCH.into(),
        steps: outcome.steps,
        seconds: outcome.seconds,
        views_per_s: outcome.views_per_s,
        pretext_test_acc: Some(acc),
        heldout_perplexity: Some(perplexity),
        run_dir: run_dir.to_path_buf(),
        clustering: None,
    };
    if ranks::is_leader() {
        save_run(cfg, run_dir, &learner.model, &summary)?;
    }
    Ok(summary)
}

/// The name the text encoder's weights and summary carry.
const BERT_ARCH: &str = "bert";

/// The corpus and `text.extra_corpora` as one list of documents (at most
/// `text.max_documents`), with a description of where they come from.
fn read_documents(cfg: &PretrainConfig) -> Result<(String, Vec<String>), Error> {
    let text = &cfg.text;
    let opts = TextOptions {
        lossy_utf8: text.lossy_utf8,
    };
    let mut corpus = read_unlabelled(Path::new(&cfg.data.path), &text.columns, &opts)?;
    for extra in &text.extra_corpora {
        let more = read_unlabelled(Path::new(extra), &text.columns, &opts)?;
        corpus.source = format!("{} + {}", corpus.source, more.source);
        corpus.documents.extend(more.documents);
    }
    let mut documents = corpus.documents;
    if text.max_documents > 0 {
        documents.truncate(text.max_documents);
    }
    Ok((corpus.source, documents))
}

/// (training, held-out) documents: every k-th is held out, so that the held-out text spreads
/// over the whole corpus.
fn hold_out(documents: &[String], share: f64) -> (Vec<&str>, Vec<&str>) {
    let every = (1.0 / share).round().max(2.0) as usize;
    let (mut train, mut heldout) = (Vec::new(), Vec::new());
    for (i, d) in documents.iter().enumerate() {
        if i % every == every - 1 {
            heldout.push(d.as_str());
        } else {
            train.push(d.as_str());
        }
    }
    (train, heldout)
}

/// A resumed run keeps its tokenizer; a new one trains it on the training documents.
fn tokenizer_for(
    cfg: &PretrainConfig,
    run_dir: &Path,
    train_docs: &[&str],
) -> Result<TextTokenizer, Error> {
    let run = RunDir(run_dir);
    let path = run.tokenizer();
    if path.exists() && run.checkpoint().exists() {
        return Ok(TextTokenizer::load(&path)?);
    }
    let text = &cfg.text;
    let tokenizer = TextTokenizer::train(
        train_docs.iter().copied(),
        text.model.vocab_size,
        text.min_frequency,
    )?;
    // Every rank trains the same tokenizer from the same documents; rank 0 keeps it.
    if ranks::is_leader() {
        tokenizer.save(&path)?;
    }
    Ok(tokenizer)
}

/// The encoder's weights and spec, and the run's summary.
fn save_run(
    cfg: &PretrainConfig,
    run_dir: &Path,
    model: &MlmModel,
    summary: &PretrainSummary,
) -> Result<(), Error> {
    let run = RunDir(run_dir);
    save_weights(&model.encoder, &run.text_weights(), BERT_ARCH)?;
    write_atomic(
        &run.text_spec(),
        &serde_json::to_vec_pretty(&cfg.text.model).expect("spec serialises"),
    )?;
    write_atomic(
        &run.results(),
        &serde_json::to_vec_pretty(summary).expect("summary serialises"),
    )?;
    Ok(())
}
