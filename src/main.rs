mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::{BenchCommand, Cli, Command};
use pretext::config::{PretrainConfig, TrainConfig, read_toml};
use pretext::methods::MethodConfig;
use pretext::models::EncoderSpec;
use pretext::pipeline;

// The training step allocates activation-sized buffers every step; glibc's malloc hands them
// back to the kernel and the next step pays page faults to zero them again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its option 15; the sys crate names only the older
/// options): -1 keeps freed memory committed, so that the next step's activation buffers do
/// not come back as fresh pages the kernel must zero (5 % of a ResNet-18 step, 12 % faster
/// with it at 2 threads). A training process stays near its peak footprint anyway.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc's `mi_option_arena_reserve` (option 23, in KiB): the size of each address range
/// mimalloc reserves. Its 1 GiB default let freed activations sit in one range while larger
/// ones were placed in fresh memory of another: a ResNet-50 step at 224 pixels peaked 0.2 GB
/// above PyTorch's; with 256 MiB ranges it peaks at PyTorch's, and runs no slower.
const MI_OPTION_ARENA_RESERVE: libmimalloc_sys::mi_option_t = 23;
const ARENA_RESERVE_KIB: std::ffi::c_long = 256 << 10;

/// Sets mimalloc's defaults before the Rust runtime's first allocation, which reserves the
/// first range; `MIMALLOC_PURGE_DELAY` and `MIMALLOC_ARENA_RESERVE` still override them.
extern "C" fn set_allocator_options() {
    for (option, value) in [
        (MI_OPTION_PURGE_DELAY, -1),
        (MI_OPTION_ARENA_RESERVE, ARENA_RESERVE_KIB),
    ] {
        // SAFETY: setting a default is a plain store inside mimalloc, valid at any time.
        unsafe { libmimalloc_sys::mi_option_set_default(option, value) };
    }
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static SET_ALLOCATOR_OPTIONS: extern "C" fn() = set_allocator_options;

fn main() -> ExitCode {
    #[cfg(not(target_os = "linux"))]
    set_allocator_options();
    let cli = Cli::parse();
    // The first Ctrl-C lets a training loop checkpoint and stop; a second one quits at once.
    let _ = ctrlc::set_handler(|| {
        if pretext::train::request_stop() {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current step (Ctrl-C again to quit now)");
    });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_interruption(&e) => {
            eprintln!("error: {e}");
            ExitCode::from(130)
        }
        Err(e) => {
            // One line. Library errors already name their cause in their message, so the
            // source chain is not printed again.
            eprintln!(
                "error: {}",
                e.to_string().lines().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}

fn is_interruption(e: &anyhow::Error) -> bool {
    use pretext::train::TrainError;
    matches!(
        e.downcast_ref::<pretext::Error>(),
        Some(pretext::Error::Train(
            TrainError::Interrupted { .. } | TrainError::Stopped { .. }
        ))
    )
}

fn set_threads(threads: usize) -> anyhow::Result<()> {
    if threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .map_err(|err| anyhow::anyhow!("cannot set the thread count: {err}"))?;
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let quiet = cli.quiet;
    let threads = cli.threads;
    match &cli.devices {
        Some(devices) => pretext::device::select_data_parallel(&devices.0)
            .map_err(|e| anyhow::anyhow!("--devices: {e}"))?,
        None => {
            pretext::device::select(cli.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?
        }
    }
    match cli.command {
        Command::Pretrain(args) => {
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
            };
            pretrain_with(cfg, model, threads, quiet)?;
        }
        Command::Resume { run_dir } => {
            set_threads(threads.unwrap_or(0))?;
            let summary = pipeline::resume(&run_dir, quiet)?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Transfer(args) => {
            let base = match &args.run {
                Some(run) => Some(read_toml::<PretrainConfig>(
                    &run.join(pipeline::CONFIG_FILE),
                )?),
                None => None,
            };
            let mut cfg = args.common.resolve(base)?;
            let t = &mut cfg.transfer;
            if !args.mode.is_empty() {
                t.modes = args.mode.clone();
            }
            if let Some(n) = args.labels_per_class {
                t.labels_per_class = n;
            }
            if let Some(s) = args.seeds {
                t.seeds = s;
            }
            if let Some(n) = args.test_limit {
                t.test_limit = n;
            }
            let c = &args.common;
            apply_recipe_flags(&mut t.finetune, c);
            let model = ModelFlags {
                arch: args.model,
                width: args.width,
                stem: args.stem,
            };
            model.apply(&mut cfg);
            if args.run.is_none() {
                cfg.model.validate()?;
            }
            cfg.transfer.validate()?;
            set_threads(threads.unwrap_or(cfg.run.threads))?;
            let out = c.out.clone().unwrap_or_else(|| match &args.run {
                Some(run) => run.join("transfer"),
                None => "runs/transfer".into(),
            });
            let text_run = args
                .run
                .as_deref()
                .filter(|r| pretext::text::transfer::is_text_run(r));
            let results = match text_run {
                Some(run) => pretext::text::transfer::transfer_text(run, &cfg, &out, quiet)?,
                None => {
                    let spec_without_run = args.run.is_none().then(|| EncoderSpec {
                        arch: cfg.model.arch,
                        width: cfg.model.width,
                        in_channels: 0,
                        mean: vec![],
                        std: vec![],
                        // The data is not loaded yet: an unset stem follows data.image_size
                        // where it is given, and is the CIFAR stem otherwise.
                        stem: cfg.model.stem_for(cfg.data.image_size.unwrap_or(0)),
                        // `model.patch` travels here; the image size is the data's, set once
                        // the data is read.
                        vit: cfg.model.patch.map(|patch| pretext::models::VitLayout {
                            patch,
                            image_size: cfg.data.image_size.unwrap_or(patch),
                        }),
                    });
                    pipeline::transfer(
                        args.run.as_deref(),
                        &cfg.data,
                        spec_without_run,
                        &cfg.transfer,
                        &out,
                        quiet,
                    )?
                }
            };
            print!("{}", results.table());
            println!("wrote {}", out.join(pipeline::RESULTS_FILE).display());
        }
        Command::Embed(args) => {
            set_threads(threads.unwrap_or(0))?;
            let mut cfg: PretrainConfig = read_toml(&args.run.join(pipeline::CONFIG_FILE))?;
            if let Some(d) = args.data {
                cfg.data.path = d;
            }
            if let Some(f) = args.format {
                cfg.data.format = Some(f.into());
            }
            args.framing.apply(&mut cfg.data);
            cfg.data.validate()?;
            let layer = pretext::models::FeatureLayer::new(args.stage, args.grid)
                .map_err(|e| pretext::Error::msg(format!("--stage/--grid: {e}")))?;
            for path in pipeline::embed(&args.run, &cfg.data, layer, &args.out)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Info {
            path,
            format,
            skip_corrupt,
            check,
            max_image_pixels,
            lossy_utf8,
            text_column,
            label_column,
        } => {
            set_threads(threads.unwrap_or(0))?;
            use pretext::data::text;
            let p = std::path::Path::new(&path);
            let opts = text::TextOptions { lossy_utf8 };
            if format.is_none() && p.is_file() && !pretext::data::shards::is_tar_file(p) {
                if text::is_table(p) {
                    let columns = text::Columns {
                        text: text_column,
                        label: label_column,
                        ..Default::default()
                    };
                    print!(
                        "{}",
                        text::describe_labelled(&text::read_labelled(p, &columns, &opts)?)
                    );
                } else {
                    print!("{}", text::describe_corpus(&text::read_corpus(p, &opts)?));
                }
                return Ok(());
            }
            if format.is_none()
                && p.is_dir()
                && text::is_corpus_dir(p)
                && !pretext::data::shards::holds_shards(p)
            {
                print!("{}", text::describe_corpus(&text::read_corpus(p, &opts)?));
                return Ok(());
            }
            let format = match format {
                Some(f) => Some(f.into()),
                None if path != pretext::data::SYNTHETIC => Some(pretext::data::detect_format(p)?),
                None => None,
            };
            if matches!(
                format,
                Some(pretext::data::Format::Folder | pretext::data::Format::Shards)
            ) {
                let (report, problems) = if format == Some(pretext::data::Format::Shards) {
                    pretext::data::shards::describe(p, check, max_image_pixels)?
                } else {
                    pipeline::describe_folder(p, check, max_image_pixels)?
                };
                print!("{report}");
                return match problems.first() {
                    None => Ok(()),
                    Some(_) if skip_corrupt => {
                        problems.iter().for_each(|p| eprintln!("warning: {p}"));
                        println!("skipped corrupt images: {}", problems.len());
                        Ok(())
                    }
                    Some(first) => Err(pretext::Error::msg(format!(
                        "{} unreadable image(s) in {path}, the first: {first} (--skip-corrupt reports them and goes on)",
                        problems.len()
                    ))
                    .into()),
                };
            }
            let data = pretext::config::DataConfig {
                path,
                format,
                skip_corrupt,
                ..Default::default()
            };
            let ds = pipeline::load_data(&data)?;
            print!("{}", pretext::data::describe(&ds));
            if format == Some(pretext::data::Format::Stl10) {
                let dir = std::path::Path::new(&data.path);
                print!("{}", pretext::data::stl::describe_unlabelled(dir)?);
            }
        }
        Command::Shard(a) => {
            set_threads(threads.unwrap_or(0))?;
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
            println!(
                "wrote {} shards ({} samples, {}) to {}",
                report.shards(),
                report.samples(),
                if report.classes > 0 {
                    format!("{} classes", report.classes)
                } else {
                    "unlabelled".into()
                },
                a.out.display()
            );
        }
        Command::Demo { out } => {
            set_threads(threads.unwrap_or(0))?;
            let outcome = pretext::demo::demo(&out, quiet)?;
            println!(
                "pretext task (rotation) test accuracy: {:.3}",
                outcome.pretrain.pretext_test_acc.unwrap_or(f64::NAN)
            );
            print!("{}", outcome.transfer.table());
            println!(
                "demo finished in {:.0} s; results in {}, the study's report in {}",
                outcome.seconds,
                out.join(pipeline::RESULTS_FILE).display(),
                outcome.report.display()
            );
        }
        Command::ClusterTransfer(a) => {
            // Without --config, the teacher's own config gives the data and the recipe.
            let base = match (&a.common.config, &a.teacher) {
                (None, Some(teacher)) => Some(read_toml::<PretrainConfig>(
                    &teacher.join(pipeline::CONFIG_FILE),
                )?),
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
            let c = &mut settings.cluster;
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
            cfg.task = MethodConfig::Cluster(settings);
            let model = ModelFlags {
                arch: a.student,
                width: a.width,
                stem: a.stem,
            };
            pretrain_with(cfg, model, threads, quiet)?;
        }
        Command::Kmeans(a) => {
            set_threads(threads.unwrap_or(0))?;
            let cfg = pretext::cluster::KMeansConfig {
                k: a.k,
                max_iter: a.max_iter,
                tol: a.tol,
                restarts: a.restarts,
                seed: a.seed,
            };
            let report =
                pretext::cluster::kmeans_npy(&a.features, &cfg, &a.out, a.labels.as_deref())?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Bench(BenchCommand::Step(a)) => {
            let t = threads.unwrap_or(0);
            set_threads(t)?;
            let t = if t == 0 {
                rayon::current_num_threads()
            } else {
                t
            };
            let r = match a.model {
                cli::BenchModel::Transformer if a.inference => {
                    anyhow::bail!("bench step: --inference times the image encoders only")
                }
                cli::BenchModel::Transformer => {
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
                    pretext::bench::mlm_step(
                        &spec,
                        a.batch_size.unwrap_or(32),
                        a.steps,
                        a.warmup,
                        t,
                    )
                }
                image => {
                    use pretext::models::Arch;
                    let (arch, batch) = match image {
                        cli::BenchModel::Resnet18 => (Arch::Resnet18, 64),
                        cli::BenchModel::Resnet50 => (Arch::Resnet50, 32),
                        cli::BenchModel::VitTiny => (Arch::VitTiny, 64),
                        cli::BenchModel::VitSmall => (Arch::VitSmall, 32),
                        _ => (Arch::Convnet4, 128),
                    };
                    let model = pretext::config::ModelConfig {
                        arch,
                        width: a.width,
                        stem: a.stem,
                        patch: None,
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
                    if a.inference {
                        pretext::bench::feature_extraction(net, shape, a.steps, a.warmup, t)
                    } else {
                        pretext::bench::training_step(net, shape, a.steps, a.warmup, t)
                    }
                }
            };
            println!("{}", serde_json::to_string(&r)?);
        }
        Command::Study { config, out } => {
            set_threads(threads.unwrap_or(0))?;
            let mut file = pretext::study::read_study(&config)?;
            if let Some(out) = out {
                file.study.out = out;
            }
            let outcome = pretext::study::run_study(&file, quiet)?;
            println!(
                "study: {} cells ({} new, {} kept from before) in {:.0} s; report in {}",
                outcome.cells.len(),
                outcome.computed,
                outcome.reused,
                outcome.seconds,
                outcome.report.display()
            );
        }
        Command::Bench(BenchCommand::Decode(a)) => {
            set_threads(threads.unwrap_or(0))?;
            let r = pretext::bench::decode_speed(
                std::path::Path::new(&a.data),
                a.image_size,
                a.images,
            )?;
            println!("{}", serde_json::to_string(&r)?);
        }
        Command::Bench(BenchCommand::Augment(a)) => {
            set_threads(threads.unwrap_or(0))?;
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
            let r = pretext::bench::data_pipeline(
                images.train(),
                method.task(),
                a.images,
                a.batch_size,
            )?;
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}

/// The backbone flags of the commands that build a model (`--model` or `--student`, `--width`,
/// `--stem`), each overriding its `model.*` key when given.
struct ModelFlags {
    arch: Option<pretext::models::Arch>,
    width: Option<usize>,
    stem: Option<pretext::models::Stem>,
}

impl ModelFlags {
    fn apply(&self, cfg: &mut PretrainConfig) {
        if let Some(m) = self.arch {
            cfg.model.arch = m;
        }
        if let Some(w) = self.width {
            cfg.model.width = w;
        }
        if let Some(s) = self.stem {
            cfg.model.stem = Some(s);
        }
    }
}

/// Applies the model and thread flags, validates, pretrains and prints the summary.
fn pretrain_with(
    mut cfg: PretrainConfig,
    model: ModelFlags,
    threads: Option<usize>,
    quiet: bool,
) -> anyhow::Result<()> {
    model.apply(&mut cfg);
    if let Some(t) = threads {
        cfg.run.threads = t;
    }
    cfg.validate()?;
    set_threads(cfg.run.threads)?;
    let summary = pipeline::pretrain(&cfg, quiet)?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

fn apply_train_flags(cfg: &mut PretrainConfig, c: &cli::CommonArgs) {
    apply_recipe_flags(&mut cfg.train, c);
    if let Some(o) = &c.out {
        cfg.run.out = o.clone();
    }
}

/// The training-recipe flags, for pretraining or for the fine-tuning recipe of a transfer.
fn apply_recipe_flags(recipe: &mut TrainConfig, c: &cli::CommonArgs) {
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
