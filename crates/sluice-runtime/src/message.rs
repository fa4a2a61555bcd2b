//! What travels between operators besides records: one control signal type, and the
//! messages on a channel between two workers.

use crate::checkpoint::Barrier;
use sluice_types::Timestamp;

/// A control signal. Signals travel in-band, behind the records before them, so a
/// watermark never overtakes a record and a barrier separates two checkpoints' records
/// exactly. Every chain element handles them in one place (`Push::control`): a new
/// signal is one new variant, handled where it matters and forwarded everywhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// No record with a timestamp at or below this one will follow.
    Watermark(Timestamp),
    /// The input has no data for now; its watermark must not hold others back until
    /// it sends again.
    Idle,
    /// Processing time advanced to this wall-clock time (milliseconds since the
    /// epoch). Each worker ticks its own chains: ticks never cross channels.
    Tick(Timestamp),
    /// Everything before belongs to checkpoint `barrier.id`, everything after to the
    /// next: stateful elements snapshot, then forward it.
    Barrier(Barrier),
    /// The input ended: nothing follows. Elements flush and release everything.
    End,
}

/// One message on a channel.
#[derive(Debug)]
pub enum Message<B> {
    /// A batch of records.
    Data(B),
    /// A control signal (never [`Control::Tick`]).
    Control(Control),
}
