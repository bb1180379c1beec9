//! `pretext bench`: training steps, the data pipeline, decoding and UMAP, each one JSON object.

use pretext::methods::MethodConfig;
use pretext::models::Arch;

use super::{Globals, set_threads};
use crate::cli::{
    BenchArgs, BenchAugmentArgs, BenchCommand, BenchDecodeArgs, BenchModel, BenchUmapArgs,
};

pub fn run(command: BenchCommand, g: Globals) -> anyhow::Result<()> {
    match command {
        BenchCommand::Step(a) => step(a, g),
        BenchCommand::Augment(a) => augment(a, g),
        BenchCommand::Decode(a) => decode(a, g),
        BenchCommand::Umap(a) => umap(a, g),
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
    Ok(pretext::bench::mlm_step(&spec, batch, counts(a), threads))
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
        pretext::bench::feature_extraction(net, shape, counts(a), threads)
    } else {
        pretext::bench::training_step(net, shape, counts(a), threads)
    })
}

fn counts(a: &BenchArgs) -> pretext::bench::StepCounts {
    pretext::bench::StepCounts {
        steps: a.steps,
        warmup: a.warmup,
        profile: a.profile,
    }
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

/// Neighbours per point in `bench umap`'s trustworthiness, as in bench/umap_check.py.
const TRUST_NEIGHBOURS: usize = 15;
/// Seed of the rows the trustworthiness is measured on.
const TRUST_SEED: u64 = 0;

fn umap(a: BenchUmapArgs, g: Globals) -> anyhow::Result<()> {
    use pretext::eval::{neighbours::cosine_knn, pca::l2_normalise, umap};
    set_threads(g.threads.unwrap_or(0))?;
    let m = pretext::npy::read_matrix(&a.features)?;
    let (n, dim, mut values) = (m.rows, m.cols, m.values);
    if a.normalise {
        l2_normalise(&mut values, dim);
    }
    let cfg = umap::UmapConfig {
        seed: a.seed,
        ..Default::default()
    };
    let fail = |e: String| anyhow::anyhow!("{}: {e}", a.features.display());
    cfg.validate(n).map_err(fail)?;
    if a.trust_sample > 0 && a.trust_sample.min(n) <= 2 * TRUST_NEIGHBOURS + 1 {
        anyhow::bail!(
            "--trust-sample: trustworthiness with {TRUST_NEIGHBOURS} neighbours needs more than {} rows",
            2 * TRUST_NEIGHBOURS + 1
        );
    }
    let start = std::time::Instant::now();
    let graph = cosine_knn(&values, n, dim, cfg.neighbours - 1);
    let knn_seconds = start.elapsed().as_secs_f64();
    let map = umap::umap_with(&graph, &values, dim, &cfg).map_err(fail)?;
    let total = start.elapsed().as_secs_f64();
    let peak = pretext::util::memory::ResidentMemory::read().map(|r| r.peak_mib);
    if let Some(out) = &a.out {
        pretext::npy::write(out, &map, &[n as u64, 2])?;
    }
    let trust = (a.trust_sample > 0)
        .then(|| sampled_trustworthiness(&values, dim, &map, n, a.trust_sample));
    let r = serde_json::json!({
        "n": n,
        "dim": dim,
        "threads": rayon::current_num_threads(),
        "knn_seconds": knn_seconds,
        "layout_seconds": total - knn_seconds,
        "seconds": total,
        "peak_rss_mib": peak,
        "trust_sample": a.trust_sample.min(n),
        "trustworthiness": trust,
    });
    println!("{r}");
    Ok(())
}

/// Trustworthiness on `sample` rows drawn without replacement under a fixed seed.
fn sampled_trustworthiness(
    values: &[f32],
    dim: usize,
    map: &[f32],
    n: usize,
    sample: usize,
) -> f64 {
    use rand::{SeedableRng, seq::SliceRandom};
    let mut rows: Vec<usize> = (0..n).collect();
    rows.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(TRUST_SEED));
    rows.truncate(sample.min(n));
    rows.sort_unstable();
    let high: Vec<f32> = rows
        .iter()
        .flat_map(|&i| values[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let low: Vec<f32> = rows
        .iter()
        .flat_map(|&i| [map[2 * i], map[2 * i + 1]])
        .collect();
    pretext::eval::umap::trustworthiness(&high, dim, &low, 2, rows.len(), TRUST_NEIGHBOURS)
}
