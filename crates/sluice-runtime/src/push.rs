//! The interface between chained operators.

use crate::Control;
use sluice_types::{Result, Timestamp};

/// The input side of an operator chain: what an upstream operator, source or gate
/// calls, once per batch. Every call is synchronous; dynamic dispatch happens per batch,
/// never per record.
pub trait Push<B>: Send {
    /// Processes one batch.
    fn push(&mut self, batch: B) -> Result<()>;
    /// Handles a control signal (watermark, idleness, processing time, barrier, end)
    /// and forwards it downstream.
    fn control(&mut self, control: Control) -> Result<()>;
    /// Tries to send what exchanges downstream could not send yet (their channel was
    /// full); returns whether something is still waiting. A worker does not feed a
    /// chain more input while it is backlogged: that is how backpressure travels.
    fn backlogged(&mut self) -> Result<bool>;
}

impl<B, P: Push<B> + ?Sized> Push<B> for Box<P> {
    fn push(&mut self, batch: B) -> Result<()> {
        (**self).push(batch)
    }
    fn control(&mut self, control: Control) -> Result<()> {
        (**self).control(control)
    }
    fn backlogged(&mut self) -> Result<bool> {
        (**self).backlogged()
    }
}

/// The wall clock in milliseconds since the epoch: processing time.
pub fn now_millis() -> Timestamp {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Timestamp).unwrap_or(0)
}
