//! `pretext explore`, `pretext neighbors` and `pretext select`.

use pretext::models::FeatureLayer;
use pretext::pipeline::curate::{self, CurateInputs, ExploreConfig, NeighborsConfig, SelectConfig};

use super::{Globals, run_data, set_threads};
use crate::cli::{CurateArgs, ExploreArgs, NeighborsArgs, SelectArgs};

/// Runs `work` on the inputs the flags name: the run's encoder, its (or another) data set, the
/// split chosen, and the encoder's output as the features.
fn with_inputs<T>(
    args: &CurateArgs,
    g: Globals,
    work: impl FnOnce(&CurateInputs) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    set_threads(g.threads.unwrap_or(0))?;
    let data = run_data(&args.run, args.data.clone(), args.format, &args.framing)?;
    work(&CurateInputs {
        run: &args.run,
        data: &data,
        split: args.split,
        layer: FeatureLayer::OUTPUT,
    })
}

pub fn explore(args: ExploreArgs, g: Globals) -> anyhow::Result<()> {
    let mut cfg = ExploreConfig {
        seed: args.curate.seed,
        ..ExploreConfig::default()
    };
    cfg.umap.seed = args.curate.seed;
    if let Some(k) = args.clusters {
        cfg.clusters = k;
    }
    if let Some(t) = args.thumb {
        cfg.thumb = t;
    }
    if let Some(k) = args.neighbours {
        cfg.neighbours = k;
    }
    let summary = with_inputs(&args.curate, g, |inputs| {
        let last = |p: &std::path::Path| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        };
        let title = format!(
            "{} on {} ({} split)",
            last(&args.curate.run),
            last(std::path::Path::new(&inputs.data.path)),
            inputs.split.name()
        );
        Ok(curate::explore(inputs, &cfg, &args.out, &title)?)
    })?;
    println!("{}", serde_json::to_string(&summary)?);
    println!("open {}", summary.page.display());
    Ok(())
}

pub fn neighbors(args: NeighborsArgs, g: Globals) -> anyhow::Result<()> {
    let cfg = NeighborsConfig {
        queries: args.queries,
        k: args.k,
        seed: args.curate.seed,
    };
    let out = with_inputs(&args.curate, g, |inputs| {
        Ok(curate::neighbors(inputs, &cfg, &args.out)?)
    })?;
    println!("wrote {}", out.display());
    Ok(())
}

pub fn select(args: SelectArgs, g: Globals) -> anyhow::Result<()> {
    let cfg = SelectConfig {
        strategy: args.strategy,
        count: args.n,
        threshold: args.threshold,
        k: args.k,
        seed: args.curate.seed,
    };
    let (out, rows) = with_inputs(&args.curate, g, |inputs| {
        Ok(curate::select(inputs, &cfg, &args.out)?)
    })?;
    println!("wrote {} ({rows} images)", out.display());
    Ok(())
}
