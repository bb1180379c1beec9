//! The training loop's part in a run of several ranks: each rank trains on its share of every
//! global batch; rank 0 starts the run (fresh or from its checkpoint) and sends every rank the
//! same state; after each step the ranks agree on the numbers that decide what happens next
//! (whether to stop, the time spent), so that they take the same steps and stop together.

use crate::data::DataError;
use crate::data::loader::BatchSource;
use crate::device::ranks;

use super::checkpoint::{Checkpoint, LoopState};
use super::{Learner, StepStats, TrainError};

/// Rank `rank`'s contiguous share of `indices` when `world` ranks split it: shares differ by
/// at most one item, in rank order, so that together they are the global batch.
pub fn share(indices: &[usize], rank: usize, world: usize) -> &[usize] {
    let n = indices.len();
    &indices[rank * n / world..(rank + 1) * n / world]
}

/// A batch source whose batches are this rank's shares of `inner`'s (global) batches. Every
/// image's randomness depends on (seed, epoch, index) only, so the shares together make
/// exactly the batch one process would make.
pub struct RankShare<'a, S> {
    pub inner: &'a S,
    pub rank: usize,
    pub world: usize,
}

impl<S: BatchSource> BatchSource for RankShare<'_, S> {
    type Batch = S::Batch;
    fn batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        self.inner
            .batches(epoch)
            .iter()
            .map(|b| share(b, self.rank, self.world).to_vec())
            .collect()
    }
    fn make(&self, epoch: u64, indices: &[usize]) -> Result<S::Batch, DataError> {
        self.inner.make(epoch, indices)
    }
}

/// Why a run cannot start on this many ranks: a global batch too small to give every rank an
/// image.
pub fn check_batches<S: BatchSource>(source: &S, world: usize) -> Result<(), String> {
    if world == 1 {
        return Ok(());
    }
    let smallest = source.batches(0).iter().map(Vec::len).min().unwrap_or(0);
    if smallest < world {
        return Err(format!(
            "a batch of {smallest} items cannot be shared by {world} ranks (each needs at least \
             one); raise train.batch_size or start fewer ranks"
        ));
    }
    Ok(())
}

/// Marks what rank 0 sends at start: a checkpoint's bytes, or why the run cannot start.
const START_OK: u8 = 0;
const START_FAILED: u8 = 1;

/// Rank 0's starting point on every rank: `start` runs on rank 0 (it loads the checkpoint or
/// keeps the fresh learner); the learner's parts and the loop state travel to the other ranks,
/// which load them, so every rank starts from the same parameters. A checkpoint written by
/// another number of ranks is refused.
pub fn start<L: Learner + ?Sized>(
    learner: &mut L,
    start: impl FnOnce(&mut L) -> Result<LoopState, TrainError>,
) -> Result<LoopState, TrainError> {
    let world = ranks::world();
    if ranks::ranks().is_none() {
        let state = start(learner)?;
        refuse_other_world(&state, world)?;
        return Ok(state);
    }
    let mut bytes = Vec::new();
    let mut leader_error = None;
    if ranks::is_leader() {
        let made = start(learner).and_then(|state| {
            refuse_other_world(&state, world)?;
            let [model, encoder_optim, head_optim] =
                learner.save_parts().map_err(TrainError::Ranks)?;
            Ok(Checkpoint {
                state,
                model,
                encoder_optim,
                head_optim,
            })
        });
        bytes = match made {
            Ok(ckpt) => [&[START_OK][..], &ckpt.to_bytes()].concat(),
            Err(e) => {
                let why = [&[START_FAILED][..], e.to_string().as_bytes()].concat();
                leader_error = Some(e);
                why
            }
        };
    }
    ranks::broadcast_bytes("start of the run", &mut bytes);
    if let Some(e) = leader_error {
        return Err(e);
    }
    let (tag, rest) = bytes
        .split_first()
        .ok_or(TrainError::Ranks("rank 0 sent no start".into()))?;
    if *tag != START_OK {
        return Err(TrainError::Ranks(
            String::from_utf8_lossy(rest).into_owned(),
        ));
    }
    let ckpt = Checkpoint::from_bytes(rest).map_err(TrainError::Ranks)?;
    if !ranks::is_leader() {
        learner
            .load_parts([ckpt.model, ckpt.encoder_optim, ckpt.head_optim])
            .map_err(|(what, e)| TrainError::Ranks(format!("cannot load rank 0's {what}: {e}")))?;
    }
    Ok(ckpt.state)
}

fn refuse_other_world(state: &LoopState, world: usize) -> Result<(), TrainError> {
    if state.ranks == world {
        return Ok(());
    }
    Err(TrainError::Ranks(format!(
        "the checkpoint was written by a run on {} rank(s) and this run has {world}; resume it \
         on {} (as in `mpirun -np {} pretext resume RUN_DIR`): each rank's share of every batch \
         and its BatchNorm statistics depend on the number of ranks",
        state.ranks, state.ranks, state.ranks
    )))
}

/// Whether any rank failed to make its share of the coming batch (every rank must know, or
/// the others would wait in the step's collectives).
pub fn any_failed(failed: bool) -> bool {
    let mut flag = [failed as u8 as f64];
    ranks::sum_f64("agreement on the next batch", &mut flag);
    flag[0] > 0.0
}

/// What the ranks agree on after a step.
pub struct AfterStep {
    /// The step's numbers over the global batch.
    pub stats: StepStats,
    /// Inputs (views, sequences) the step put through all ranks' models.
    pub inputs: usize,
    /// Whether any rank was asked to stop (Ctrl-C reaches the ranks at different steps).
    pub stop: bool,
    /// The training time of the ranks, averaged: what the time budget counts.
    pub elapsed: f64,
}

/// Sum the step's counts over the ranks and agree on stopping and the time spent. The loss is
/// already the global batch's (see `Optimisers::global_loss`).
pub fn after_step(stats: StepStats, inputs: usize, stop: bool, elapsed: f64) -> AfterStep {
    let mut sums = [
        stats.hits as f64,
        stats.counted as f64,
        inputs as f64,
        stop as u8 as f64,
        elapsed,
    ];
    ranks::sum_f64("agreement after a step", &mut sums);
    AfterStep {
        stats: StepStats {
            loss: stats.loss,
            hits: sums[0] as usize,
            counted: sums[1] as usize,
        },
        inputs: sums[2] as usize,
        stop: sums[3] > 0.0,
        elapsed: sums[4] / ranks::world() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_contiguous_near_equal_and_cover_the_batch() {
        let batch: Vec<usize> = (10..17).collect();
        let shares: Vec<&[usize]> = (0..3).map(|r| share(&batch, r, 3)).collect();
        assert_eq!(shares, vec![&[10, 11][..], &[12, 13], &[14, 15, 16]]);
        assert_eq!(share(&batch, 0, 1), &batch[..]);
    }

    #[test]
    fn a_checkpoint_of_another_world_size_is_refused_by_name() {
        let state = LoopState {
            ranks: 2,
            ..LoopState::default()
        };
        assert!(refuse_other_world(&state, 2).is_ok());
        let err = refuse_other_world(&state, 3).unwrap_err().to_string();
        assert!(err.contains("2 rank(s)") && err.contains("has 3"), "{err}");
    }
}
