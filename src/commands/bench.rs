//! `pretext bench`: training steps, the data pipeline and decoding, each one JSON object.

use pretext::methods::MethodConfig;
use pretext::models::Arch;

use super::{Globals, set_threads};
use crate::cli::{BenchArgs, BenchAugmentArgs, BenchCommand, BenchDecodeArgs, BenchModel};

pub fn run(command: BenchCommand, g: Globals) -> anyhow::Result<()> {
    match command {
        BenchCommand::Step(a) => step(a, g),
        BenchCommand::Augment(a) => augment(a, g),
        BenchCommand::Decode(a) => decode(a, g),
    }
}

fn step(a: BenchArgs, g: Globals) -> anyhow::Result<()> {
    let t = g.threads.unwrap_or(0);
    set_threads(t)?;
    let t = if t == 0 {
        rayon::current_num_threads()
    } else {
        t
    };
    let r = match a.model {
        BenchModel::Transformer if a.inference => {
            anyhow::bail!("bench step: --inference times the image encoders only")
        }
        BenchModel::Transformer => mlm_step(&a, t)?,
        image => image_step(image, &a, t)?,
    };
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

fn mlm_step(a: &BenchArgs, threads: usize) -> anyhow::Result<pretext::bench::StepBench> {
    let spec = pretext::models::bert::BertSpec {
        vocab_size: a.vocab,
        max_len: a.seq_len,
        hidden: a.hidden,
        layers: a.layers,
        heads: (a.hidden / 64).max(1),
        feed_forward: 4 * a.hidden,
        dropout: 0.1,
    };
    spec.validate("bench")
        .map_err(|e| anyhow::anyhow!("bench step: {e}"))?;
    let batch = a.batch_size.unwrap_or(32);
    Ok(pretext::bench::mlm_step(
        &spec, batch, a.steps, a.warmup, threads,
    ))
}

fn image_step(
    image: BenchModel,
    a: &BenchArgs,
    threads: usize,
) -> anyhow::Result<pretext::bench::StepBench> {
    let (arch, batch) = match image {
        BenchModel::Resnet18 => (Arch::Resnet18, 64),
        BenchModel::Resnet50 => (Arch::Resnet50, 32),
        BenchModel::VitTiny => (Arch::VitTiny, 64),
        BenchModel::VitSmall => (Arch::VitSmall, 32),
        _ => (Arch::Convnet4, 128),
    };
    let model = pretext::config::ModelConfig {
        arch,
        width: a.width,
        stem: a.stem,
        patch: None,
        init_from: None,
    };
    model.validate()?;
    let net = pretext::bench::Backbone {
        arch,
        width: a.width,
        stem: model.stem_for(a.image_size),
    };
    let shape = pretext::bench::ImageBatch {
        channels: a.channels,
        size: a.image_size,
        batch: a.batch_size.unwrap_or(batch),
    };
    Ok(if a.inference {
        pretext::bench::feature_extraction(net, shape, a.steps, a.warmup, threads)
    } else {
        pretext::bench::training_step(net, shape, a.steps, a.warmup, threads)
    })
}

fn decode(a: BenchDecodeArgs, g: Globals) -> anyhow::Result<()> {
    set_threads(g.threads.unwrap_or(0))?;
    let r = pretext::bench::decode_speed(std::path::Path::new(&a.data), a.image_size, a.images)?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

fn augment(a: BenchAugmentArgs, g: Globals) -> anyhow::Result<()> {
    set_threads(g.threads.unwrap_or(0))?;
    let mut data = pretext::config::DataConfig {
        path: a.data.clone(),
        ..Default::default()
    };
    a.framing.apply(&mut data);
    data.validate()?;
    let images = pretext::collection::for_training(&data)?;
    let method = MethodConfig::default_for(a.task)
        .build()
        .ok_or_else(|| anyhow::anyhow!("--task {}: not an image method", a.task))?;
    let r = pretext::bench::data_pipeline(images.train(), method.task(), a.images, a.batch_size)?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
