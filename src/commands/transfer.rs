//! `pretext transfer`: a pretrained encoder (or none, for scratch and random) to few labels.

use std::path::PathBuf;

use pretext::config::{PretrainConfig, read_toml};
use pretext::models::EncoderSpec;
use pretext::pipeline::{self, EncoderSource, RunDir};

use super::{Globals, ModelFlags, apply_recipe_flags, set_threads};
use crate::cli::TransferArgs;

pub fn run(args: TransferArgs, g: Globals) -> anyhow::Result<()> {
    let cfg = resolve(&args)?;
    set_threads(g.threads.unwrap_or(cfg.run.threads))?;
    let out = args.common.out.clone().unwrap_or_else(|| match &args.run {
        Some(run) => RunDir(run).transfer(),
        None => PathBuf::from("runs/transfer"),
    });
    let text_run = args
        .run
        .as_deref()
        .filter(|r| pretext::text::transfer::is_text_run(r));
    let results = match text_run {
        Some(run) => pretext::text::transfer::transfer_text(run, &cfg, &out, g.quiet)?,
        None => pipeline::transfer(
            encoder_source(&args, &cfg)?,
            &cfg.data,
            &cfg.transfer,
            &out,
            g.quiet,
        )?,
    };
    print!("{}", results.table());
    println!("wrote {}", RunDir(&out).results().display());
    Ok(())
}

/// The run's config (or the flags' and `--config`'s alone, without `--run`) with the transfer
/// and model flags applied, validated.
fn resolve(args: &TransferArgs) -> anyhow::Result<PretrainConfig> {
    let base = match &args.run {
        Some(run) => Some(read_toml::<PretrainConfig>(&RunDir(run).config())?),
        None => None,
    };
    let mut cfg = args.common.resolve(base)?;
    let t = &mut cfg.transfer;
    if !args.mode.is_empty() {
        t.modes = args.mode.clone();
    }
    // A subset chosen on the command line replaces the config's (they exclude each other).
    if let Some(n) = args.labels_per_class {
        t.labels_per_class = n;
        t.labels_file = None;
        t.random_labels = 0;
        t.stratified = true;
    }
    if let Some(file) = &args.labels_file {
        t.labels_file = Some(file.clone());
        t.random_labels = 0;
        t.stratified = true;
    }
    if let Some(n) = args.random {
        t.labels_file = None;
        t.random_labels = n;
        t.stratified = !args.unstratified;
    }
    if let Some(s) = args.seeds {
        t.seeds = s;
    }
    if let Some(n) = args.test_limit {
        t.test_limit = n;
    }
    apply_recipe_flags(&mut t.finetune, &args.common);
    let model = ModelFlags {
        arch: args.model,
        width: args.width,
        stem: args.stem,
        init_from: args.init_from.clone(),
    };
    model.apply(&mut cfg);
    if args.run.is_none() {
        cfg.model.validate()?;
    }
    cfg.transfer.validate()?;
    Ok(cfg)
}

/// The run's encoder, or (without `--run`) the backbone the flags describe, from
/// `--init-from`'s weights where given.
fn encoder_source<'a>(
    args: &'a TransferArgs,
    cfg: &'a PretrainConfig,
) -> anyhow::Result<EncoderSource<'a>> {
    Ok(match (&args.run, &args.init_from) {
        (Some(_), Some(_)) => anyhow::bail!(
            "--run and --init-from both name the encoder to transfer: give one (--init-from transfers an outside encoder)"
        ),
        (Some(run), None) => EncoderSource::Run(run),
        (None, _) => EncoderSource::Spec {
            spec: spec_without_run(cfg),
            init_from: cfg.model.init_from.as_deref(),
        },
    })
}

/// The backbone that scratch and random build when no run gives one.
fn spec_without_run(cfg: &PretrainConfig) -> EncoderSpec {
    EncoderSpec {
        arch: cfg.model.arch,
        width: cfg.model.width,
        in_channels: 0,
        mean: vec![],
        std: vec![],
        // The data is not loaded yet: an unset stem follows data.image_size where it is
        // given, and is the CIFAR stem otherwise.
        stem: cfg.model.stem_for(cfg.data.image_size.unwrap_or(0)),
        // `model.patch` travels here; the image size is the data's, set once the data is read.
        vit: cfg.model.patch.map(|patch| pretext::models::VitLayout {
            patch,
            image_size: cfg.data.image_size.unwrap_or(patch),
        }),
        input_size: None,
        start: None,
    }
}
