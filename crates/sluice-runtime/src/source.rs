//! Sources and the driver that pumps them into their chain.

use crate::executor::Task;
use crate::push::now_millis;
use crate::{Batch, OperatorMetrics, Push};
use sluice_types::{Error, Result, MAX_TIMESTAMP};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a poll of a source returned.
pub enum SourcePoll<B> {
    /// A batch of records.
    Batch(B),
    /// Nothing right now; poll again soon.
    Pending,
    /// Nothing for a while: do not hold back downstream watermarks.
    Idle,
    /// The source is exhausted (a bounded source).
    Finished,
}

/// One worker's share of a source: a partition, a split, or nothing.
pub trait SourceReader: Send {
    /// The batches it produces.
    type Batch: Batch;
    /// Reads up to `max_records` records.
    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<Self::Batch>>;
    /// Where the reader is: records, lines or bytes read, as the source defines.
    fn position(&self) -> u64;
    /// How many input records it rejected to the dead-letter output so far.
    fn dead_letters(&self) -> u64 {
        0
    }
}

/// Pumps a source's batches into its chain until the source finishes, then sends the
/// final watermark (which fires every pending window and timer) and ends the chain.
pub struct SourceDriver<S: SourceReader> {
    name: String,
    reader: S,
    next: Box<dyn Push<S::Batch>>,
    metrics: Arc<OperatorMetrics>,
    batch_size: usize,
    cancel: Arc<AtomicBool>,
    tick_interval: Duration,
}

impl<S: SourceReader> SourceDriver<S> {
    /// A driver of `reader` into `next`.
    pub fn new(
        name: String,
        reader: S,
        next: Box<dyn Push<S::Batch>>,
        metrics: Arc<OperatorMetrics>,
        batch_size: usize,
        cancel: Arc<AtomicBool>,
        tick_interval: Duration,
    ) -> Self {
        SourceDriver { name, reader, next, metrics, batch_size, cancel, tick_interval }
    }
}

impl<S: SourceReader + 'static> Task for SourceDriver<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(mut self: Box<Self>) -> Result<()> {
        let mut last_tick = Instant::now();
        let mut idle = false;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            match self.reader.poll(self.batch_size)? {
                SourcePoll::Batch(batch) if batch.is_empty() => {}
                SourcePoll::Batch(batch) => {
                    idle = false;
                    self.metrics.add_out(batch.len());
                    self.metrics.set_position(self.reader.position());
                    self.metrics.set_dead_letters(self.reader.dead_letters());
                    self.next.push(batch)?;
                }
                SourcePoll::Pending => std::thread::sleep(Duration::from_millis(1)),
                SourcePoll::Idle => {
                    if !idle {
                        idle = true;
                        self.next.idle()?;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                SourcePoll::Finished => break,
            }
            if last_tick.elapsed() >= self.tick_interval {
                last_tick = Instant::now();
                self.next.tick(now_millis())?;
            }
        }
        self.metrics.set_position(self.reader.position());
        self.metrics.set_dead_letters(self.reader.dead_letters());
        self.metrics.set_watermark(MAX_TIMESTAMP);
        self.next.watermark(MAX_TIMESTAMP)?;
        self.next.end()
    }
}
