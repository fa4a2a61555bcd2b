//! Sinks of the typed API.

use crate::graph::Batch;
use sluice_runtime::{OperatorMetrics, Push};
use sluice_types::{Result, Timestamp};
use std::sync::Arc;

/// One worker's writer of a sink.
pub trait SinkWriter<T>: Send {
    /// Writes one batch.
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()>;
    /// The event-time clock advanced (sinks that roll files or commit on time use it).
    fn on_watermark(&mut self, _watermark: Timestamp) -> Result<()> {
        Ok(())
    }
    /// The input ended: flush everything.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A sink: it hands each worker a writer.
pub trait Sink<T>: 'static {
    /// The per-worker writer.
    type Writer: SinkWriter<T> + 'static;
    /// The display name.
    fn name(&self) -> String;
    /// The writer for `worker` of `parallelism`.
    fn writer(&self, worker: usize, parallelism: usize) -> Result<Self::Writer>;
}

/// The chain end that feeds a sink writer and counts what it writes.
pub(crate) struct SinkNode<W> {
    pub writer: W,
    pub metrics: Arc<OperatorMetrics>,
}

impl<T: Send, W: SinkWriter<T>> Push<Batch<T>> for SinkNode<W> {
    fn push(&mut self, batch: Batch<T>) -> Result<()> {
        self.metrics.add_in(batch.len());
        self.writer.write_batch(batch)
    }
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.metrics.set_watermark(watermark);
        self.writer.on_watermark(watermark)
    }
    fn idle(&mut self) -> Result<()> {
        Ok(())
    }
    fn tick(&mut self, _now: Timestamp) -> Result<()> {
        Ok(())
    }
    fn end(&mut self) -> Result<()> {
        self.writer.close()
    }
    fn backlogged(&mut self) -> Result<bool> {
        Ok(false)
    }
}
