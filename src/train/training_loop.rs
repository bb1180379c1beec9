//! The training loop: warm-up and cosine schedule (by steps, or by time under
//! `train.max_minutes`), batches made ahead of the model, checkpoints after every epoch (and
//! every `checkpoint_every`), resumption, divergence and interruption handling,
//! `metrics.jsonl`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::across_ranks::{self, RankShare};
use super::checkpoint::{Checkpoint, EpochSums, LoopState};
use super::progress::{self, MetricsLog, Progress};
use super::{Learner, StepStats, TrainConfig, TrainError, env_number, monitor, schedule};
use crate::data::DataError;
use crate::data::loader::{BatchSource, prefetch};
use crate::device::ranks;
use crate::util::run_dir::RunDir;

/// What the loop needs besides the data and the learner.
pub struct LoopSettings<'a> {
    pub recipe: &'a TrainConfig,
    pub run_dir: Option<&'a Path>,
    pub model_tag: String,
    pub label: String,
    pub quiet: bool,
    pub checkpoint_every: Option<Duration>,
}

/// How a training run went.
pub struct RunStats {
    pub steps: usize,
    pub final_loss: f32,
    pub seconds: f64,
    pub views_per_s: f64,
}

/// Numbers a monitor adds to every epoch's record.
pub type LearnerMonitor<'m, L> = &'m dyn Fn(&L) -> Map<String, Value>;

/// Trains `learner` on `source` under `spec`'s recipe; `monitor` adds its numbers to every
/// epoch's record. A run directory with a checkpoint resumes it. On several ranks, each trains
/// on its share of every batch and rank 0 alone writes the run directory and monitors.
pub fn run_loop<S: BatchSource, L: Learner<Batch = S::Batch> + ?Sized>(
    spec: &LoopSettings,
    source: &S,
    learner: &mut L,
    monitor: Option<LearnerMonitor<L>>,
) -> Result<RunStats, TrainError> {
    let leader = ranks::is_leader();
    across_ranks::check_batches(source, ranks::world()).map_err(TrainError::Ranks)?;
    let source = RankShare {
        inner: source,
        rank: ranks::rank(),
        world: ranks::world(),
    };
    let run_dir = spec.run_dir.filter(|_| leader);
    let saver = Saver {
        path: run_dir.map(|dir| RunDir(dir).checkpoint()),
    };
    let state = across_ranks::start(learner, |learner| {
        resume(spec, saver.path.as_deref(), learner)
    })?;
    let metrics = open_metrics(run_dir, state.next_epoch)?;
    let clock = Clock::new(spec.recipe, source.batches(0).len(), state.elapsed_seconds);
    let mut progress = Progress::new(
        &spec.label,
        clock.total_steps as u64,
        state.step as u64,
        spec.quiet || !leader,
    );
    progress.set_deadline(clock.deadline());
    let mut run = Run {
        spec,
        learner,
        monitor,
        state,
        clock,
        saver,
        metrics,
        progress,
        collapse: monitor::CollapseWatch::default(),
        views_seen: 0,
        final_loss: f32::NAN,
        last_save: Instant::now(),
    };
    let mut epoch = run.state.next_epoch;
    while !run.state.finished {
        let epoch_start = Instant::now();
        let sums = run.epoch(&source, epoch)?;
        if sums.batches == 0 && run.state.finished {
            // The time budget ran out at an epoch boundary: there is no epoch to record, only
            // the finished state to keep.
            run.state.elapsed_seconds = run.clock.elapsed();
            run.saver.save(&*run.learner, &run.state)?;
            break;
        }
        run.end_epoch(epoch, &sums, epoch_start.elapsed().as_secs_f64())?;
        abort_if_asked(epoch + 1);
        epoch += 1;
    }
    run.progress.finish();
    Ok(RunStats {
        steps: run.state.step,
        final_loss: run.final_loss,
        seconds: run.clock.started.elapsed().as_secs_f64(),
        views_per_s: run.views_per_s(),
    })
}

/// The state a checkpoint at `path` holds, loaded into `learner`; a fresh state without one.
fn resume<L: Learner + ?Sized>(
    spec: &LoopSettings,
    path: Option<&Path>,
    learner: &mut L,
) -> Result<LoopState, TrainError> {
    let Some(path) = path.filter(|p| p.exists()) else {
        return Ok(LoopState {
            model_tag: spec.model_tag.clone(),
            ranks: ranks::world(),
            ..LoopState::default()
        });
    };
    let incompatible = |problem: String| TrainError::Incompatible {
        path: path.to_path_buf(),
        problem,
    };
    let ckpt = Checkpoint::load(path)?;
    if ckpt.state.model_tag != spec.model_tag {
        return Err(incompatible(format!(
            "checkpoint is for `{}`, this run builds `{}`",
            ckpt.state.model_tag, spec.model_tag
        )));
    }
    learner
        .load_parts([ckpt.model, ckpt.encoder_optim, ckpt.head_optim])
        .map_err(|(what, e)| incompatible(format!("cannot load {what}: {e}")))?;
    let state = ckpt.state;
    if !spec.quiet {
        eprintln!(
            "resuming {} at epoch {} batch {} (step {})",
            path.display(),
            state.next_epoch + 1,
            state.batch,
            state.step
        );
    }
    Ok(state)
}

/// The run's `metrics.jsonl`, without the epochs logged after the checkpoint (by a run killed
/// before its next save: they are redone).
fn open_metrics(run_dir: Option<&Path>, next_epoch: usize) -> Result<Option<Metrics>, TrainError> {
    let Some(dir) = run_dir else {
        return Ok(None);
    };
    let path = RunDir(dir).metrics();
    let io = |source| TrainError::Io {
        path: path.clone(),
        source,
    };
    progress::truncate_after_epoch(&path, next_epoch).map_err(io)?;
    let log = MetricsLog::open(&path).map_err(io)?;
    Ok(Some(Metrics { log, path }))
}

struct Metrics {
    log: MetricsLog,
    path: PathBuf,
}

/// The run's length and clock: steps, warm-up, the time budget, and the time spent before a
/// resume.
struct Clock {
    total_steps: usize,
    warmup_steps: usize,
    peak_lr: f64,
    /// `train.max_minutes` in seconds, if set.
    budget: Option<f64>,
    spent_before: f64,
    started: Instant,
    /// When this process's first step ended. Until then the clock stands still: that step
    /// compiles and autotunes a GPU's kernels (and warms the allocator), which neither the time
    /// budget nor the throughput should count.
    warm: Option<Instant>,
    /// On several ranks: the training time they agreed on after the last step, so that they
    /// reach the time budget at the same step.
    agreed: Option<f64>,
}

impl Clock {
    fn new(recipe: &TrainConfig, steps_per_epoch: usize, spent_before: f64) -> Self {
        let mut total_steps = recipe.epochs * steps_per_epoch;
        if recipe.max_steps > 0 {
            total_steps = total_steps.min(recipe.max_steps);
        }
        let warmup = (recipe.warmup_epochs * steps_per_epoch as f64).round() as usize;
        Self {
            total_steps,
            warmup_steps: warmup.min(total_steps / 2),
            peak_lr: recipe.lr,
            budget: (recipe.max_minutes > 0.0).then_some(recipe.max_minutes * 60.0),
            spent_before,
            started: Instant::now(),
            warm: None,
            agreed: (ranks::world() > 1).then_some(spent_before),
        }
    }

    /// Training time spent, this process's and before (as the ranks agreed, on several).
    fn elapsed(&self) -> f64 {
        self.agreed.unwrap_or_else(|| self.local_elapsed())
    }

    fn local_elapsed(&self) -> f64 {
        self.spent_before + self.warm_seconds()
    }

    /// Seconds since the first step ended (0 before).
    fn warm_seconds(&self) -> f64 {
        self.warm.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// Seconds from the start to the end of the first step: start-up, the first batch, and the
    /// kernels' compilation and autotuning.
    fn warmup_seconds(&self) -> Option<f64> {
        self.warm.map(|t| (t - self.started).as_secs_f64())
    }

    /// Marks the end of a step; the first one's end is where the clock starts. Returns whether
    /// this was that first step.
    fn step_done(&mut self) -> bool {
        let first = self.warm.is_none();
        if first {
            self.warm = Some(Instant::now());
        }
        first
    }

    fn deadline(&self) -> Option<Instant> {
        let from = self.warm.unwrap_or_else(Instant::now);
        self.budget
            .map(|b| from + Duration::from_secs_f64((b - self.spent_before).max(0.0)))
    }

    /// Fraction of the run done at `step`: by steps, or by time when that is further along.
    fn progress_at(&self, step: usize) -> f64 {
        let by_steps = step as f64 / self.total_steps.max(1) as f64;
        match self.budget {
            Some(b) => by_steps.max(self.elapsed() / b),
            None => by_steps,
        }
    }

    fn is_done(&self, step: usize) -> bool {
        step >= self.total_steps || self.progress_at(step) >= 1.0
    }

    fn lr(&self, step: usize, progress: f64) -> f64 {
        schedule::warmup_cosine_progress(
            step,
            self.total_steps,
            self.warmup_steps,
            progress,
            self.peak_lr,
        )
    }
}

/// Writes checkpoints, where the run has a directory.
struct Saver {
    path: Option<PathBuf>,
}

impl Saver {
    fn save<L: Learner + ?Sized>(&self, learner: &L, state: &LoopState) -> Result<(), TrainError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let [model, encoder_optim, head_optim] =
            learner
                .save_parts()
                .map_err(|problem| TrainError::Incompatible {
                    path: path.clone(),
                    problem,
                })?;
        Checkpoint {
            state: state.clone(),
            model,
            encoder_optim,
            head_optim,
        }
        .save(path)
        .map_err(TrainError::from)
    }
}

/// What one batch left the epoch to do.
enum Next {
    Continue,
    Stop,
    Diverged(f32),
}

/// One run of the loop in progress.
struct Run<'a, 's, L: ?Sized> {
    spec: &'a LoopSettings<'s>,
    learner: &'a mut L,
    monitor: Option<LearnerMonitor<'a, L>>,
    state: LoopState,
    clock: Clock,
    saver: Saver,
    metrics: Option<Metrics>,
    progress: Progress,
    collapse: monitor::CollapseWatch,
    views_seen: usize,
    final_loss: f32,
    last_save: Instant,
}

impl<L: Learner + ?Sized> Run<'_, '_, L> {
    /// Trains on `epoch`'s batches (from where a checkpoint inside it stopped) until the epoch
    /// or the run ends; returns the epoch's sums.
    fn epoch<S: BatchSource<Batch = L::Batch>>(
        &mut self,
        source: &S,
        epoch: usize,
    ) -> Result<EpochSums, TrainError> {
        let mut sums = std::mem::take(&mut self.state.epoch_sums);
        let skip = std::mem::take(&mut self.state.batch);
        let mut diverged = None;
        prefetch(source, epoch as u64, skip, |b, batch| {
            Ok::<_, TrainError>(match self.batch(epoch, b, batch, &mut sums)? {
                Next::Continue => true,
                Next::Stop => false,
                Next::Diverged(value) => {
                    diverged = Some(value);
                    false
                }
            })
        })?;
        match diverged {
            Some(value) => Err(self.diverged(value, epoch)),
            None => Ok(sums),
        }
    }

    /// One optimiser step on batch `b` of `epoch`, and a checkpoint inside the epoch when one is
    /// due or a stop was asked for.
    fn batch(
        &mut self,
        epoch: usize,
        b: usize,
        batch: Result<L::Batch, DataError>,
        sums: &mut EpochSums,
    ) -> Result<Next, TrainError> {
        if ranks::world() > 1 && across_ranks::any_failed(batch.is_err()) && batch.is_ok() {
            return Err(self.other_rank_failed(epoch, b, sums));
        }
        let batch = match batch {
            Ok(batch) => batch,
            Err(source) => return Err(self.data_failed(source, epoch, b, sums)),
        };
        let done = self.clock.progress_at(self.state.step);
        if self.state.step >= self.clock.total_steps || done >= 1.0 {
            self.state.finished = true;
            return Ok(Next::Stop);
        }
        let lr = self.clock.lr(self.state.step, done);
        let stats = self.learner.step(&batch, lr, done);
        if !stats.loss.is_finite() {
            return Ok(Next::Diverged(stats.loss));
        }
        self.state.step += 1;
        let first = self.clock.step_done();
        let (stats, inputs, stop) = self.agree(stats, self.learner.inputs(&batch));
        sums.correct += stats.hits;
        sums.seen += stats.counted;
        sums.loss += stats.loss as f64;
        sums.batches += 1;
        if first {
            self.progress.set_deadline(self.clock.deadline());
        } else {
            self.views_seen += inputs;
        }
        self.final_loss = stats.loss;
        self.progress.step(stats.loss, self.views_per_s());
        self.save_inside_epoch(epoch, b, sums, stop)?;
        Ok(if self.clock.is_done(self.state.step) {
            Next::Stop
        } else {
            Next::Continue
        })
    }

    /// Views trained per second of the clock, the first step left out.
    fn views_per_s(&self) -> f64 {
        let seconds = self.clock.warm_seconds();
        if seconds > 0.0 {
            self.views_seen as f64 / seconds
        } else {
            0.0
        }
    }

    /// The step's counts and inputs over all ranks, and whether to stop; on several ranks the
    /// ranks agree on these and on the time spent.
    fn agree(&mut self, stats: StepStats, inputs: usize) -> (StepStats, usize, bool) {
        let stop = super::stop_requested(self.state.step);
        if ranks::world() == 1 {
            return (stats, inputs, stop);
        }
        let agreed = across_ranks::after_step(stats, inputs, stop, self.clock.local_elapsed());
        self.clock.agreed = Some(agreed.elapsed);
        (agreed.stats, agreed.inputs, agreed.stop)
    }

    /// The state after batch `b` of `epoch` (`b` itself is redone when it was not trained).
    fn state_inside(&self, epoch: usize, b: usize, sums: &EpochSums) -> LoopState {
        LoopState {
            next_epoch: epoch,
            batch: b,
            epoch_sums: sums.clone(),
            elapsed_seconds: self.clock.elapsed(),
            ..self.state.clone()
        }
    }

    /// Checkpoints after batch `b` when `checkpoint_every` has passed or a stop was asked for;
    /// a stop then ends the run with [`TrainError::Interrupted`] (or
    /// [`TrainError::Stopped`] without a run directory).
    fn save_inside_epoch(
        &mut self,
        epoch: usize,
        b: usize,
        sums: &EpochSums,
        stop: bool,
    ) -> Result<(), TrainError> {
        let Some(path) = self.saver.path.clone() else {
            if stop {
                self.progress.finish();
                return Err(TrainError::Stopped {
                    step: self.state.step,
                });
            }
            return Ok(());
        };
        let due = self
            .spec
            .checkpoint_every
            .is_some_and(|every| self.last_save.elapsed() >= every);
        if !(stop || due) {
            return Ok(());
        }
        self.saver
            .save(&*self.learner, &self.state_inside(epoch, b + 1, sums))?;
        self.last_save = Instant::now();
        if stop {
            self.progress.finish();
            return Err(TrainError::Interrupted {
                step: self.state.step,
                path,
            });
        }
        Ok(())
    }

    /// A batch could not be made: the work done so far is kept (resuming retries the batch).
    fn data_failed(
        &mut self,
        source: DataError,
        epoch: usize,
        b: usize,
        sums: &EpochSums,
    ) -> TrainError {
        match self.keep_work(epoch, b, sums) {
            Ok(where_) => TrainError::Data {
                source,
                step: self.state.step,
                where_,
            },
            Err(e) => e,
        }
    }

    /// Another rank could not make its share of batch `b`: the work done so far is kept, as
    /// that rank keeps it.
    fn other_rank_failed(&mut self, epoch: usize, b: usize, sums: &EpochSums) -> TrainError {
        match self.keep_work(epoch, b, sums) {
            Ok(where_) => TrainError::OtherRankFailed {
                batch: b + 1,
                epoch: epoch + 1,
                step: self.state.step,
                where_,
            },
            Err(e) => e,
        }
    }

    /// Checkpoint the state before batch `b` of `epoch` (which a resumed run redoes) and end
    /// the progress line; where the checkpoint went, for the error message.
    fn keep_work(
        &mut self,
        epoch: usize,
        b: usize,
        sums: &EpochSums,
    ) -> Result<String, TrainError> {
        self.saver
            .save(&*self.learner, &self.state_inside(epoch, b, sums))?;
        self.progress.finish();
        Ok(self.saved_where())
    }

    fn saved_where(&self) -> String {
        self.saver
            .path
            .as_ref()
            .map(|p| format!("; checkpoint saved to {}", p.display()))
            .unwrap_or_default()
    }

    fn diverged(&self, value: f32, epoch: usize) -> TrainError {
        let where_ = self
            .saver
            .path
            .as_ref()
            .filter(|p| p.exists())
            .map(|p| format!(" at {}", p.display()))
            .unwrap_or_default();
        TrainError::Diverged {
            value,
            step: self.state.step,
            epoch: epoch + 1,
            where_,
        }
    }

    /// Records `epoch` (with the monitor's numbers) in the progress line and `metrics.jsonl`,
    /// and checkpoints.
    fn end_epoch(
        &mut self,
        epoch: usize,
        sums: &EpochSums,
        epoch_seconds: f64,
    ) -> Result<(), TrainError> {
        self.state.next_epoch = epoch + 1;
        self.state.finished = self.clock.is_done(self.state.step);
        self.state.elapsed_seconds = self.clock.elapsed();
        let mut record = self.epoch_record(epoch, sums, epoch_seconds);
        // Rank 0 alone measures the encoder, which is the same on every rank.
        if let (Some(monitor), Some(fields), true) =
            (self.monitor, record.as_object_mut(), ranks::is_leader())
        {
            fields.extend(monitor(&*self.learner));
            if let Some(warning) = self.collapse.check(fields) {
                eprintln!("{warning}");
            }
        }
        self.progress.epoch(&record);
        if let Some(m) = self.metrics.as_mut() {
            m.log.append(&record).map_err(|source| TrainError::Io {
                path: m.path.clone(),
                source,
            })?;
        }
        self.saver.save(&*self.learner, &self.state)?;
        self.last_save = Instant::now();
        Ok(())
    }

    fn epoch_record(&self, epoch: usize, sums: &EpochSums, epoch_seconds: f64) -> Value {
        let last = self.state.step.saturating_sub(1);
        let mut record = serde_json::json!({
            "epoch": epoch + 1,
            "step": self.state.step,
            "loss": sums.loss / sums.batches.max(1) as f64,
            "train_acc": sums.correct as f64 / sums.seen.max(1) as f64,
            "lr": self.clock.lr(last, self.clock.progress_at(last)),
            "epoch_seconds": epoch_seconds,
            "views_per_s": self.views_per_s(),
            "warmup_seconds": self.clock.warmup_seconds(),
        });
        if ranks::world() > 1
            && let Some(fields) = record.as_object_mut()
        {
            fields.insert("ranks".into(), ranks::world().into());
            fields.insert(
                "collective_seconds".into(),
                ranks::collective_seconds().into(),
            );
        }
        record
    }
}

/// Test hook: `PRETEXT_ABORT_AFTER_EPOCH=N` kills the process right after epoch N's checkpoint,
/// as an interruption would, so that resuming can be tested deterministically.
fn abort_if_asked(epoch_done: usize) {
    static HOOK: OnceLock<Option<usize>> = OnceLock::new();
    if *HOOK.get_or_init(|| env_number("PRETEXT_ABORT_AFTER_EPOCH")) == Some(epoch_done) {
        eprintln!("aborting after epoch {epoch_done} (PRETEXT_ABORT_AFTER_EPOCH)");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_stands_still_until_the_first_step_ends() {
        let recipe = TrainConfig {
            max_minutes: 1.0,
            ..TrainConfig::default()
        };
        let mut clock = Clock::new(&recipe, 10, 12.5);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(clock.elapsed(), 12.5, "the warm-up counts for nothing");
        assert_eq!(clock.warmup_seconds(), None);
        assert!(clock.step_done(), "the first step");
        let warmup = clock.warmup_seconds().unwrap();
        assert!(warmup >= 0.03, "the warm-up lasted {warmup} s");
        let after = clock.elapsed() - 12.5;
        assert!(
            (0.0..warmup).contains(&after),
            "{after} s counted after the warm-up"
        );
        // The budget's deadline is measured from the end of the first step.
        let left = clock.deadline().unwrap() - clock.warm.unwrap();
        assert!(
            (left.as_secs_f64() - (60.0 - 12.5)).abs() < 1e-6,
            "{left:?}"
        );
        assert!(!clock.step_done(), "the second step");
        assert_eq!(
            clock.warmup_seconds(),
            Some(warmup),
            "only the first step is warm-up"
        );
    }
}
