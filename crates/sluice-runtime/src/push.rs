//! The interface between chained operators.

use crate::checkpoint::Barrier;
use sluice_types::{Result, Timestamp};

/// The input side of an operator chain: what an upstream operator, source or gate
/// calls, once per batch. Every call is synchronous; dynamic dispatch happens per batch,
/// never per record.
pub trait Push<B>: Send {
    /// Processes one batch.
    fn push(&mut self, batch: B) -> Result<()>;
    /// The event-time clock of the input advanced to `watermark`.
    fn watermark(&mut self, watermark: Timestamp) -> Result<()>;
    /// The input has no data for now (its watermark must not hold others back).
    fn idle(&mut self) -> Result<()>;
    /// Processing time advanced to `now` (milliseconds since the epoch).
    fn tick(&mut self, now: Timestamp) -> Result<()>;
    /// The input ended: flush and release everything.
    fn end(&mut self) -> Result<()>;
    /// A checkpoint barrier: snapshot (if stateful), then forward it.
    fn barrier(&mut self, barrier: Barrier) -> Result<()>;
    /// Tries to send what exchanges downstream could not send yet (their channel was
    /// full); returns whether something is still waiting. A worker does not feed a
    /// chain more input while it is backlogged: that is how backpressure travels.
    fn backlogged(&mut self) -> Result<bool>;
}

impl<B, P: Push<B> + ?Sized> Push<B> for Box<P> {
    fn push(&mut self, batch: B) -> Result<()> {
        (**self).push(batch)
    }
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        (**self).watermark(watermark)
    }
    fn idle(&mut self) -> Result<()> {
        (**self).idle()
    }
    fn tick(&mut self, now: Timestamp) -> Result<()> {
        (**self).tick(now)
    }
    fn end(&mut self) -> Result<()> {
        (**self).end()
    }
    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        (**self).barrier(barrier)
    }
    fn backlogged(&mut self) -> Result<bool> {
        (**self).backlogged()
    }
}

/// The wall clock in milliseconds since the epoch: processing time.
pub fn now_millis() -> Timestamp {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Timestamp).unwrap_or(0)
}
