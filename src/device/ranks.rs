//! The processes of one training run: ranks started by `mpirun` or `srun`, each one process
//! with its threads (and devices), that train one model together. A [`Collective`] moves numbers
//! between them (MPI, behind the `mpi` cargo feature); a process started alone is rank 0 of 1
//! and never calls one.
//!
//! A collective blocks until every rank takes part, so a rank that dies or hangs would leave
//! the others waiting for ever (under `srun` nothing else stops them). Every collective is
//! therefore timed by a [`Watchdog`]: past the timeout the rank prints one line and exits,
//! and the launcher stops the rest. The run then resumes from its last checkpoint.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a rank waits in one collective before it gives the run up: PyTorch's default for
/// its process groups. A rank also waits here while rank 0 checkpoints and monitors an epoch.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The exit status of a rank that gave up waiting (as `timeout(1)` exits).
pub const TIMEOUT_EXIT: i32 = 124;

/// The operations the ranks of a run take part in together, in the same order on every rank.
/// Results are in rank order.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Element-wise sums over the ranks, in place.
    fn sum_f32(&self, values: &mut [f32]);
    fn sum_f64(&self, values: &mut [f64]);
    /// Every rank's `local` (of any length), concatenated in rank order, and each rank's
    /// length.
    fn gather_f32(&self, local: &[f32]) -> (Vec<f32>, Vec<usize>);
    /// Every rank's number, in rank order.
    fn gather_u64(&self, local: u64) -> Vec<u64>;
    /// Rank 0's `bytes` on every rank (the others' are replaced).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>);
}

/// The ranks of this process's run, once started; `None` for a process alone.
static RANKS: OnceLock<Box<dyn Collective>> = OnceLock::new();
static WATCHDOG: OnceLock<Watchdog> = OnceLock::new();
/// Nanoseconds spent inside collectives (waiting included), for the all-reduce's share.
static COLLECTIVE_NANOS: AtomicU64 = AtomicU64::new(0);
static SYNC_BATCHNORM: AtomicBool = AtomicBool::new(false);

/// Make `collective` this process's ranks (once, at start).
pub fn install(collective: Box<dyn Collective>) -> Result<(), String> {
    RANKS
        .set(collective)
        .map_err(|_| "the ranks were already started".to_string())
}

/// The run's ranks when there are several.
pub fn ranks() -> Option<&'static dyn Collective> {
    RANKS.get().map(Box::as_ref).filter(|r| r.size() > 1)
}

/// This process's rank (0 alone).
pub fn rank() -> usize {
    ranks().map_or(0, |r| r.rank())
}

/// How many ranks train together (1 alone).
pub fn world() -> usize {
    ranks().map_or(1, |r| r.size())
}

/// Whether this process writes the run's files: rank 0, or a process alone.
pub fn is_leader() -> bool {
    rank() == 0
}

/// Normalise BatchNorm with the global batch's statistics (`train.sync_batchnorm`).
pub fn set_sync_batchnorm(on: bool) {
    SYNC_BATCHNORM.store(on, Ordering::Relaxed);
}

/// Whether BatchNorm's batch statistics, and the sums its backward pass averages, are totalled
/// over the ranks: asked for, and there are several.
pub fn sync_batchnorm() -> bool {
    SYNC_BATCHNORM.load(Ordering::Relaxed) && ranks().is_some()
}

/// Seconds spent in collectives so far.
pub fn collective_seconds() -> f64 {
    COLLECTIVE_NANOS.load(Ordering::Relaxed) as f64 * 1e-9
}

/// Set how long a collective may wait (`run.collective_timeout_s`).
pub fn set_timeout(timeout: Duration) {
    watchdog().set_timeout(timeout);
}

/// Run `op` on the ranks, timed by the watchdog: past the timeout this process exits with one
/// line naming `what`.
pub fn timed<R>(what: &'static str, op: impl FnOnce(&dyn Collective) -> R) -> Option<R> {
    let ranks = ranks()?;
    let started = Instant::now();
    let guard = watchdog().arm(what);
    let out = op(ranks);
    drop(guard);
    COLLECTIVE_NANOS.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    Some(out)
}

/// The cross-rank sum of `values` (unchanged alone).
pub fn sum_f64(what: &'static str, values: &mut [f64]) {
    timed(what, |r| r.sum_f64(values));
}

/// The values of `local` from every rank in rank order, and how many each rank sent (`local`
/// itself alone).
pub fn gather_f32(what: &'static str, local: &[f32]) -> (Vec<f32>, Vec<usize>) {
    timed(what, |r| r.gather_f32(local)).unwrap_or_else(|| (local.to_vec(), vec![local.len()]))
}

/// Rank 0's `bytes` everywhere (nothing to do alone).
pub fn broadcast_bytes(what: &'static str, bytes: &mut Vec<u8>) {
    timed(what, |r| r.broadcast_bytes(bytes));
}

/// Check that every rank holds the same value of each named fingerprint (a hash of the binary,
/// of the config); the error names the first rank and fingerprint that differ from rank 0's.
pub fn check_same(fingerprints: &[(&str, u64)]) -> Result<(), String> {
    let Some(ranks) = ranks() else {
        return Ok(());
    };
    for (name, value) in fingerprints {
        let all = timed("start-up check", |r| r.gather_u64(*value)).expect("several ranks");
        if let Some(other) = all.iter().position(|v| *v != all[0]) {
            return Err(format!(
                "rank {other} of {} has another {name} than rank 0; start every rank with the \
                 same pretext binary and the same config",
                ranks.size()
            ));
        }
    }
    Ok(())
}

fn watchdog() -> &'static Watchdog {
    WATCHDOG.get_or_init(Watchdog::start)
}

/// A thread that ends the process when a collective outlasts the timeout.
pub struct Watchdog {
    state: Mutex<Armed>,
    wake: Condvar,
}

#[derive(Default)]
struct Armed {
    timeout: Option<Duration>,
    waiting: Option<(Instant, &'static str)>,
    /// Collectives armed so far, so that a new one is told from the one that timed out.
    count: u64,
}

/// Disarms the watchdog when the collective returns.
pub struct Waiting<'a>(&'a Watchdog);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.waiting = None;
    }
}

impl Watchdog {
    fn start() -> Self {
        Watchdog {
            state: Mutex::new(Armed::default()),
            wake: Condvar::new(),
        }
    }

    fn set_timeout(&self, timeout: Duration) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).timeout = Some(timeout);
    }

    fn arm(&'static self, what: &'static str) -> Waiting<'static> {
        static THREAD: OnceLock<()> = OnceLock::new();
        THREAD.get_or_init(|| {
            std::thread::Builder::new()
                .name("collective-watchdog".into())
                .spawn(move || self.watch())
                .expect("the watchdog thread starts");
        });
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.waiting = Some((Instant::now(), what));
        state.count += 1;
        self.wake.notify_one();
        Waiting(self)
    }

    fn watch(&self) -> ! {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let timeout = state.timeout.unwrap_or(DEFAULT_TIMEOUT);
            let Some((since, what)) = state.waiting else {
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let count = state.count;
            let left = timeout.saturating_sub(since.elapsed());
            if left.is_zero() {
                give_up(what, timeout);
            }
            let (next, _) = self
                .wake
                .wait_timeout_while(state, left, |s| s.waiting.is_some() && s.count == count)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
        }
    }
}

/// One line, then an immediate exit: the collective never returns, so nothing else can run.
fn give_up(what: &str, timeout: Duration) -> ! {
    use std::io::Write;
    let (rank, size) = RANKS.get().map_or((0, 1), |r| (r.rank(), r.size()));
    let _ = writeln!(
        std::io::stderr(),
        "error: rank {rank} of {size}: no answer from the other ranks in {} s ({what}); a rank \
         died or hangs. Stopping; the run resumes from its last checkpoint with \
         `pretext resume` on the same number of ranks (run.collective_timeout_s sets the wait)",
        timeout.as_secs_f64()
    );
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process at once; the rank's other threads are blocked inside
    // MPI, whose exit handlers must not run under them.
    unsafe { libc::_exit(TIMEOUT_EXIT) }
}

/// Environment variables through which launchers tell each process how many ranks run:
/// OpenMPI's `mpirun`, MPICH's (and PMI-2's), and a Slurm job step's (`srun`).
const LAUNCHER_SIZE: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"];

/// How many ranks a launcher started, and the variable that says so, where one did.
pub fn launched_size() -> Option<(usize, &'static str)> {
    LAUNCHER_SIZE.iter().find_map(|&name| {
        let size = std::env::var(name).ok()?.trim().parse().ok()?;
        Some((size, name))
    })
}

/// This process's part in a run of several, kept until the process ends.
pub enum Session {
    Alone,
    #[cfg(feature = "mpi")]
    Mpi(super::mpi::MpiSession),
}

impl Session {
    /// Leave without finalising MPI: after a failure, so that the launcher stops the other
    /// ranks at once instead of this one waiting for them in `MPI_Finalize`.
    pub fn abandon(self) {
        std::mem::forget(self);
    }
}

/// Join the run's ranks when a launcher started several; a process alone stays alone. A
/// build without the `mpi` feature started as one of several refuses, rather than training
/// alone into a run directory the others write too.
pub fn start() -> Result<Session, String> {
    match launched_size() {
        Some((size, var)) if size > 1 => start_mpi(size, var),
        _ => Ok(Session::Alone),
    }
}

#[cfg(feature = "mpi")]
fn start_mpi(_size: usize, _var: &str) -> Result<Session, String> {
    super::mpi::start().map(Session::Mpi)
}

#[cfg(not(feature = "mpi"))]
fn start_mpi(size: usize, var: &str) -> Result<Session, String> {
    Err(format!(
        "a launcher started this process as one of {size} ranks ({var}), but this pretext was \
         built without the 'mpi' feature; rebuild it with `cargo build --release --features mpi` \
         (README, 'Several processes and machines')"
    ))
}
