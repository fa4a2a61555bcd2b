//! What travels on a channel between two workers.

use crate::checkpoint::Barrier;
use sluice_types::Timestamp;

/// One message on a channel. Control messages travel in-band, behind the data sent
/// before them, so a watermark never overtakes a record.
#[derive(Debug)]
pub enum Message<B> {
    /// A batch of records.
    Data(B),
    /// No record with a timestamp at or below this one will follow on this channel.
    Watermark(Timestamp),
    /// The sender has no data for now; its watermark must not hold the receiver back
    /// until it sends again.
    Idle,
    /// The sender is done: nothing follows.
    End,
    /// Everything before belongs to checkpoint `barrier.id`, everything after to the next.
    Barrier(Barrier),
}
