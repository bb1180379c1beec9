mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;
use pretext::device::ranks;

use cli::{Cli, Command};

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
    pretext::device::prepare_process();
    let cli = Cli::parse();
    // The first Ctrl-C lets a training loop checkpoint and stop; a second one quits at once.
    let _ = ctrlc::set_handler(|| {
        if pretext::train::request_stop() {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current step (Ctrl-C again to quit now)");
    });
    let session = match ranks::start() {
        Ok(session) => session,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(cli);
    if outcome.is_ok() {
        drop(session);
    } else {
        session.abandon();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_interruption(&e) => {
            eprintln!("error: {}{e}", rank_prefix());
            ExitCode::from(130)
        }
        Err(e) => {
            // One line. Library errors already name their cause in their message, so the
            // source chain is not printed again.
            eprintln!(
                "error: {}{}",
                rank_prefix(),
                e.to_string().lines().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}

/// "rank R of N: " on a run of several ranks, whose lines interleave.
fn rank_prefix() -> String {
    match ranks::world() {
        1 => String::new(),
        n => format!("rank {} of {n}: ", ranks::rank()),
    }
}

/// Only training runs across ranks; any other command started on several would repeat its work
/// and race on its output.
fn refuse_ranks(command: &Command) -> anyhow::Result<()> {
    let across = matches!(command, Command::Pretrain(_) | Command::Resume { .. });
    if ranks::world() > 1 && !across {
        anyhow::bail!(
            "only `pretrain` and `resume` run across ranks; start this command as one process"
        );
    }
    Ok(())
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

fn run(cli: Cli) -> anyhow::Result<()> {
    refuse_ranks(&cli.command)?;
    pretext::device::set_precision(cli.precision)
        .map_err(|e| anyhow::anyhow!("--precision: {e}"))?;
    match &cli.devices {
        Some(devices) => pretext::device::select_data_parallel(&devices.0)
            .map_err(|e| anyhow::anyhow!("--devices: {e}"))?,
        None => {
            pretext::device::select(cli.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?
        }
    }
    let g = commands::Globals {
        threads: cli.threads,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Pretrain(args) => commands::pretrain(args, g),
        Command::Resume { run_dir } => commands::resume(&run_dir, g),
        Command::Transfer(args) => commands::transfer::run(args, g),
        Command::Embed(args) => commands::embed(args, g),
        Command::Explore(args) => commands::curate::explore(args, g),
        Command::Neighbors(args) => commands::curate::neighbors(args, g),
        Command::Select(args) => commands::curate::select(args, g),
        Command::Export(args) => commands::export(args, g),
        Command::Info(args) => commands::info::run(args, g),
        Command::Shard(args) => commands::shard(args, g),
        Command::Demo { out } => commands::demo(&out, g),
        Command::ClusterTransfer(args) => commands::cluster_transfer(args, g),
        Command::Kmeans(args) => commands::kmeans(args, g),
        Command::Study { config, out } => commands::study(&config, out, g),
        Command::Bench(command) => commands::bench::run(command, g),
    }
}
