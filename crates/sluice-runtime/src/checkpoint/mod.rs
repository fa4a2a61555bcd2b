//! Checkpoints, as the runtime sees them: barriers, snapshots and the hub that collects
//! them.
//!
//! A coordinator (outside the runtime) asks for checkpoint `n` through the
//! [`CheckpointHub`]. Each source instance notices the request between two batches,
//! snapshots its read position and sends a [`Barrier`] down its chain, in-band behind
//! the records read before it. A stateful operator snapshots when the barrier reaches
//! it; a gate first *aligns*: it stops reading a channel once that channel's barrier
//! has arrived, until every live channel's barrier has. The snapshot thus reflects
//! exactly the records before the barrier on every input (Chandy-Lamport, as in Flink's
//! asynchronous barrier snapshots). Each participant hands its snapshot to the hub as
//! an [`Ack`]; the coordinator stores them and writes the checkpoint's manifest once
//! every participant has acknowledged.

mod hub;
mod restore;
mod state;

pub use hub::{Ack, AckKind, CheckpointHub, Participant, ParticipantId, RestoredCheckpoint};
pub use restore::{Entries, KeyGroups, RestoredState, StateReader, StoredFile};
pub use state::{decode, encode, Changes, Deferred, InstanceState, Spill, StateWriter, SPILL_BYTES};

/// Identifies one checkpoint of a job; ids grow by one per checkpoint.
pub type CheckpointId = u64;

/// What a barrier asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BarrierKind {
    /// A periodic checkpoint, for recovery.
    Checkpoint,
    /// A savepoint: taken on demand, self-contained, kept until the user deletes it.
    Savepoint,
}

/// The marker that separates the records of one checkpoint from the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint this barrier closes.
    pub id: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: BarrierKind,
}

/// How gates treat barriers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Alignment {
    /// Block each channel from its barrier until all have one: exactly-once state.
    #[default]
    Aligned,
    /// Keep reading every channel; snapshot when the last barrier arrives. Records after
    /// an early barrier are in the snapshot and are replayed on recovery: at-least-once.
    Unaligned,
}

/// Publishes what a sink pre-committed, once the checkpoint that holds it is complete.
/// It runs on the coordinator's thread, never on a worker.
pub trait Committer: Send + Sync {
    /// Makes one pre-committed transaction visible. It must be idempotent: after a
    /// crash it may run again for a transaction that was already committed.
    fn commit(&self, committable: &[u8]) -> sluice_types::Result<()>;
    /// Called once before a job (re)starts with the transactions the restored
    /// checkpoint pre-committed (none on a fresh start): commits them, and aborts every
    /// other unfinished transaction, written after that checkpoint.
    fn recover(&self, committables: &[Vec<u8>]) -> sluice_types::Result<()>;
}
