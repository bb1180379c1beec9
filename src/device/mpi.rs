//! The ranks of a run over MPI (the `mpi` feature): OpenMPI's or MPICH's collectives through
//! the `mpi` crate. Started when a launcher (`mpirun`, `srun`) started this process.

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::ranks::Collective;

/// MPI's world communicator. Collectives are called from one thread at a time (the training
/// loop's), which is what `Threading::Serialized` promises MPI.
struct MpiRanks {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
}

// SAFETY: the communicator is a handle MPI itself synchronises under `Threading::Serialized`;
// pretext calls collectives from the training loop's thread only.
unsafe impl Send for MpiRanks {}
unsafe impl Sync for MpiRanks {}

/// MPI, initialised: dropping it finalises MPI, which every rank must do before it exits.
pub struct MpiSession {
    _universe: Universe,
}

/// Initialise MPI and install its world as this process's ranks.
pub fn start() -> Result<MpiSession, String> {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Serialized)
        .ok_or("MPI was already initialised")?;
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    super::ranks::install(Box::new(MpiRanks { world, rank, size }))?;
    Ok(MpiSession {
        _universe: universe,
    })
}

impl Collective for MpiRanks {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn sum_f32(&self, values: &mut [f32]) {
        let local = values.to_vec();
        self.world
            .all_reduce_into(&local[..], values, SystemOperation::sum());
    }
    fn sum_f64(&self, values: &mut [f64]) {
        let local = values.to_vec();
        self.world
            .all_reduce_into(&local[..], values, SystemOperation::sum());
    }
    fn gather_f32(&self, local: &[f32]) -> (Vec<f32>, Vec<usize>) {
        let mut counts = vec![0i32; self.size];
        self.world
            .all_gather_into(&(local.len() as i32), &mut counts[..]);
        let displs: Vec<i32> = counts
            .iter()
            .scan(0, |at, &n| {
                let here = *at;
                *at += n;
                Some(here)
            })
            .collect();
        let lengths: Vec<usize> = counts.iter().map(|&n| n as usize).collect();
        let mut out = vec![0f32; lengths.iter().sum()];
        let mut partition = PartitionMut::new(&mut out[..], counts, displs);
        self.world.all_gather_varcount_into(local, &mut partition);
        (out, lengths)
    }
    fn gather_u64(&self, local: u64) -> Vec<u64> {
        let mut out = vec![0u64; self.size];
        self.world.all_gather_into(&local, &mut out[..]);
        out
    }
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) {
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
    }
}
