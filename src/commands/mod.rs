//! The commands: each reads its flags into the library's configs and makes one library call.
//! Flags override config keys; everything else lives in the library.

pub mod bench;
pub mod curate;
pub mod info;
pub mod transfer;

use std::path::Path;

use pretext::config::{DataConfig, PretrainConfig, TrainConfig, read_toml};
use pretext::methods::MethodConfig;
use pretext::pipeline::{self, RunDir};

use crate::cli::{
    self, ClusterTransferArgs, EmbedArgs, ExportArgs, FormatArg, FramingArgs, KmeansArgs,
    PretrainArgs, ShardArgs,
};

/// The global flags every command gets.
#[derive(Clone, Copy)]
pub struct Globals {
    pub threads: Option<usize>,
    pub quiet: bool,
}

/// Sizes rayon's global pool; 0 keeps its default (all cores).
pub fn set_threads(threads: usize) -> anyhow::Result<()> {
    if threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .map_err(|err| anyhow::anyhow!("cannot set the thread count: {err}"))?;
    }
    Ok(())
}

pub fn pretrain(args: PretrainArgs, g: Globals) -> anyhow::Result<()> {
    let mut cfg = args.common.resolve(None)?;
    apply_train_flags(&mut cfg, &args.common);
    if let Some(kind) = args.task
        && kind != cfg.task.kind()
    {
        cfg.task = MethodConfig::default_for(kind);
    }
    let model = ModelFlags {
        arch: args.model,
        width: args.width,
        stem: args.stem,
        init_from: args.init_from,
    };
    pretrain_with(cfg, model, g)
}

pub fn resume(run_dir: &std::path::Path, g: Globals) -> anyhow::Result<()> {
    set_threads(g.threads.unwrap_or(0))?;
    let summary = pipeline::resume(run_dir, g.quiet)?;
    print_summary(&summary)
}

pub fn embed(args: EmbedArgs, g: Globals) -> anyhow::Result<()> {
    set_threads(g.threads.unwrap_or(0))?;
    let data = run_data(&args.run, args.data.clone(), args.format, &args.framing)?;
    let layer = pretext::models::FeatureLayer::new(args.stage, args.grid)
        .map_err(|e| pretext::Error::msg(format!("--stage/--grid: {e}")))?;
    for path in pipeline::embed(&args.run, &data, layer, &args.out)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The run's `[data]` with another path, format or framing where the flags give one, validated.
pub fn run_data(
    run: &Path,
    path: Option<String>,
    format: Option<FormatArg>,
    framing: &FramingArgs,
) -> anyhow::Result<DataConfig> {
    let mut cfg: PretrainConfig = read_toml(&RunDir(run).config())?;
    if let Some(d) = path {
        cfg.data.path = d;
    }
    if let Some(f) = format {
        cfg.data.format = Some(f.into());
    }
    framing.apply(&mut cfg.data);
    cfg.data.validate()?;
    Ok(cfg.data)
}

pub fn export(args: ExportArgs, g: Globals) -> anyhow::Result<()> {
    set_threads(g.threads.unwrap_or(0))?;
    let summary = pretext::interop::export(&args.run, args.to, &args.out)?;
    println!(
        "wrote {} ({}: {} tensors, {} values)",
        summary.out.display(),
        summary.format,
        summary.tensors,
        summary.parameters
    );
    Ok(())
}

pub fn shard(a: ShardArgs, g: Globals) -> anyhow::Result<()> {
    set_threads(g.threads.unwrap_or(0))?;
    let opts = pretext::data::shards::write::ShardOptions {
        shard_size: a.shard_size,
        shuffle: a.shuffle,
    };
    let report = pretext::data::shards::write::shard(&a.folder, &a.out, &opts)?;
    for split in &report.splits {
        println!(
            "{}: {} shards, {} samples",
            split.dir.display(),
            split.shards,
            split.samples
        );
    }
    let classes = if report.classes > 0 {
        format!("{} classes", report.classes)
    } else {
        "unlabelled".into()
    };
    println!(
        "wrote {} shards ({} samples, {classes}) to {}",
        report.shards(),
        report.samples(),
        a.out.display()
    );
    Ok(())
}

pub fn demo(out: &std::path::Path, g: Globals) -> anyhow::Result<()> {
    set_threads(g.threads.unwrap_or(0))?;
    let outcome = pretext::demo::demo(out, g.quiet)?;
    println!(
        "pretext task (rotation) test accuracy: {:.3}",
        outcome.pretrain.pretext_test_acc.unwrap_or(f64::NAN)
    );
    print!("{}", outcome.transfer.table());
    println!(
        "demo finished in {:.0} s; results in {}, the study's report in {}",
        outcome.seconds,
        RunDir(out).results().display(),
        outcome.report.display()
    );
    Ok(())
}

pub fn cluster_transfer(a: ClusterTransferArgs, g: Globals) -> anyhow::Result<()> {
    // Without --config, the teacher's own config gives the data and the recipe.
    let base = match (&a.common.config, &a.teacher) {
        (None, Some(teacher)) => Some(read_toml::<PretrainConfig>(&RunDir(teacher).config())?),
        _ => None,
    };
    let mut cfg = a.common.resolve(base)?;
    if a.common.config.is_none() {
        cfg.run.out = std::path::PathBuf::from("runs/cluster-transfer");
    }
    apply_train_flags(&mut cfg, &a.common);
    let mut settings = match cfg.task {
        MethodConfig::Cluster(s) => s,
        _ => Default::default(),
    };
    apply_cluster_flags(&mut settings.cluster, &a);
    cfg.task = MethodConfig::Cluster(settings);
    let model = ModelFlags {
        arch: a.student,
        width: a.width,
        stem: a.stem,
        init_from: a.init_from.clone(),
    };
    pretrain_with(cfg, model, g)
}

fn apply_cluster_flags(c: &mut pretext::cluster::config::ClusterConfig, a: &ClusterTransferArgs) {
    if let Some(t) = &a.teacher {
        c.teacher = t.clone();
    }
    if let Some(k) = a.k {
        c.k = k;
    }
    if let Some(s) = a.teacher_stage {
        c.teacher_stage = s;
    }
    if let Some(g) = a.teacher_grid {
        c.teacher_grid = g;
    }
    if let Some(p) = a.pca {
        c.pca = p;
    }
    if a.whiten {
        c.whiten = true;
    }
    if a.no_l2 {
        c.l2_normalize = false;
    }
    if let Some(r) = a.restarts {
        c.restarts = r;
    }
}

pub fn kmeans(a: KmeansArgs, g: Globals) -> anyhow::Result<()> {
    set_threads(g.threads.unwrap_or(0))?;
    let cfg = pretext::cluster::KMeansConfig {
        k: a.k,
        max_iter: a.max_iter,
        tol: a.tol,
        restarts: a.restarts,
        seed: a.seed,
    };
    let report = pretext::cluster::kmeans_npy(&a.features, &cfg, &a.out, a.labels.as_deref())?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

pub fn study(
    config: &std::path::Path,
    out: Option<std::path::PathBuf>,
    g: Globals,
) -> anyhow::Result<()> {
    set_threads(g.threads.unwrap_or(0))?;
    let mut file = pretext::study::read_study(config)?;
    if let Some(out) = out {
        file.study.out = out;
    }
    let outcome = pretext::study::run_study(&file, g.quiet)?;
    println!(
        "study: {} cells ({} new, {} kept from before) in {:.0} s; report in {}",
        outcome.cells.len(),
        outcome.computed,
        outcome.reused,
        outcome.seconds,
        outcome.report.display()
    );
    Ok(())
}

/// The backbone flags of the commands that build a model (`--model` or `--student`, `--width`,
/// `--stem`), each overriding its `model.*` key when given.
pub struct ModelFlags {
    pub arch: Option<pretext::models::Arch>,
    pub width: Option<usize>,
    pub stem: Option<pretext::models::Stem>,
    pub init_from: Option<std::path::PathBuf>,
}

impl ModelFlags {
    pub fn apply(&self, cfg: &mut PretrainConfig) {
        if let Some(m) = self.arch {
            cfg.model.arch = m;
        }
        if let Some(w) = self.width {
            cfg.model.width = w;
        }
        if let Some(s) = self.stem {
            cfg.model.stem = Some(s);
        }
        if let Some(f) = &self.init_from {
            cfg.model.init_from = Some(f.clone());
        }
    }
}

/// Applies the model and thread flags, validates, pretrains and prints the summary.
fn pretrain_with(mut cfg: PretrainConfig, model: ModelFlags, g: Globals) -> anyhow::Result<()> {
    model.apply(&mut cfg);
    if let Some(t) = g.threads {
        cfg.run.threads = t;
    }
    cfg.validate()?;
    set_threads(cfg.run.threads)?;
    let summary = pipeline::pretrain(&cfg, g.quiet)?;
    print_summary(&summary)
}

/// A pretraining run's summary on stdout, once: by rank 0 on a run of several ranks.
fn print_summary(summary: &pretext::methods::PretrainSummary) -> anyhow::Result<()> {
    if pretext::device::ranks::is_leader() {
        println!("{}", serde_json::to_string(summary)?);
    }
    Ok(())
}

fn apply_train_flags(cfg: &mut PretrainConfig, c: &cli::CommonArgs) {
    apply_recipe_flags(&mut cfg.train, c);
    if let Some(o) = &c.out {
        cfg.run.out = o.clone();
    }
}

/// The training-recipe flags, for pretraining or for the fine-tuning recipe of a transfer.
pub fn apply_recipe_flags(recipe: &mut TrainConfig, c: &cli::CommonArgs) {
    if let Some(e) = c.epochs {
        recipe.epochs = e;
    }
    if let Some(m) = c.max_minutes {
        recipe.max_minutes = m;
    }
    if let Some(s) = c.max_steps {
        recipe.max_steps = s;
    }
    if let Some(b) = c.batch_size {
        recipe.batch_size = b;
    }
    if let Some(lr) = c.lr {
        recipe.lr = lr;
    }
    if let Some(s) = c.seed {
        recipe.seed = s;
    }
}
