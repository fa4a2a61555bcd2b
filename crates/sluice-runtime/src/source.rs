//! Sources and the task that pumps them into their chain.

use crate::checkpoint::{Barrier, CheckpointId, Participant, StateWriter};
use crate::executor::{Step, Task};
use crate::push::now_millis;
use crate::{Batch, Control, OperatorMetrics, Push};
use sluice_types::{Error, Result, Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};
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
    /// Reads up to `max_records` records. It must not block for long: the worker runs
    /// other tasks between polls.
    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<Self::Batch>>;
    /// Where the reader is: records, lines or bytes read, as the source defines.
    fn position(&self) -> u64;
    /// How many input records it rejected to the dead-letter output so far.
    fn dead_letters(&self) -> u64 {
        0
    }
    /// Writes where it is, as items of [`StateWriter::item`] (one per split it reads,
    /// so that splits can be dealt to other workers on rescale), for a checkpoint. The
    /// source restores readers from them. Sources that cannot replay their input (stdin)
    /// keep the default, which fails the checkpoint.
    fn snapshot(&self, _state: &mut StateWriter) -> Result<()> {
        Err(Error::invalid_job("this source cannot be replayed, so a job reading it cannot take checkpoints"))
    }
    /// The watermark of a reader that generates its own (per partition, say: the
    /// lowest of its partitions'), read after each poll; `None` for readers whose
    /// watermarks are generated downstream. A reader that generates watermarks cuts its
    /// batches where the watermark passes a record still to come, so that which records
    /// are late does not depend on batching.
    fn watermark(&mut self) -> Option<Timestamp> {
        None
    }
    /// How many records of its input are written and not read yet (consumer lag), for
    /// readers that know: read after polls, at most about once a second.
    fn lag(&mut self) -> Option<u64> {
        None
    }
}

/// A boxed reader reads as the reader in it: the SQL layer picks its readers' types
/// when the job file is planned, not when Sluice is compiled.
impl<R: SourceReader + ?Sized> SourceReader for Box<R> {
    type Batch = R::Batch;
    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<Self::Batch>> {
        (**self).poll(max_records)
    }
    fn position(&self) -> u64 {
        (**self).position()
    }
    fn dead_letters(&self) -> u64 {
        (**self).dead_letters()
    }
    fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        (**self).snapshot(state)
    }
    fn watermark(&mut self) -> Option<Timestamp> {
        (**self).watermark()
    }
    fn lag(&mut self) -> Option<u64> {
        (**self).lag()
    }
}

/// Pumps a source's batches into its chain, one batch per step, while the chain is not
/// backlogged; when the source finishes, sends the final watermark (which fires every
/// pending window and timer) and ends the chain.
pub struct SourceDriver<S: SourceReader> {
    name: String,
    reader: S,
    next: Box<dyn Push<S::Batch>>,
    metrics: Arc<OperatorMetrics>,
    batch_size: usize,
    tick_interval: Duration,
    last_tick: Instant,
    idle: bool,
    finished: bool,
    participant: Option<Participant>,
    last_barrier: CheckpointId,
    /// The last watermark the reader generated and the driver sent on.
    watermark: Timestamp,
    /// When the reader's lag was last read.
    last_lag: Instant,
}

impl<S: SourceReader> SourceDriver<S> {
    /// A driver of `reader` into `next`.
    pub fn new(
        name: String,
        reader: S,
        next: Box<dyn Push<S::Batch>>,
        metrics: Arc<OperatorMetrics>,
        batch_size: usize,
        tick_interval: Duration,
    ) -> Self {
        SourceDriver {
            name,
            reader,
            next,
            metrics,
            batch_size,
            tick_interval,
            last_tick: Instant::now(),
            idle: false,
            finished: false,
            participant: None,
            last_barrier: 0,
            watermark: MIN_TIMESTAMP,
            last_lag: Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now),
        }
    }

    /// Takes part in checkpoints: injects the barriers the coordinator requests.
    pub fn with_checkpoints(mut self, participant: Participant) -> Self {
        self.participant = Some(participant);
        self
    }

    fn snapshot(
        &self,
        participant: &Participant,
        barrier: Option<Barrier>,
    ) -> Result<crate::checkpoint::InstanceState> {
        let mut state = participant.writer(barrier);
        self.reader.snapshot(&mut state)?;
        Ok(state.finish())
    }

    /// Injects the latest requested barrier, once, behind the records read so far.
    fn inject_barrier(&mut self) -> Result<()> {
        let Some(participant) = self.participant.as_ref().filter(|p| p.enabled()) else { return Ok(()) };
        let Some(barrier) = participant.requested().filter(|b| b.id > self.last_barrier) else { return Ok(()) };
        let participant = participant.clone();
        self.last_barrier = barrier.id;
        let started = std::time::Instant::now();
        let state = self.snapshot(&participant, Some(barrier))?;
        participant.ack(barrier.id, state, started.elapsed());
        self.next.control(Control::Barrier(barrier))
    }

    /// Sends on the reader's own watermark, if it has one and it advanced.
    fn advance_watermark(&mut self) -> Result<()> {
        if let Some(watermark) = self.reader.watermark().filter(|w| *w > self.watermark) {
            self.watermark = watermark;
            self.metrics.set_watermark(watermark);
            self.next.control(Control::Watermark(watermark))?;
        }
        Ok(())
    }

    fn report(&mut self) {
        self.metrics.set_position(self.reader.position());
        self.metrics.set_dead_letters(self.reader.dead_letters());
        if self.last_lag.elapsed() >= Duration::from_secs(1) {
            self.last_lag = Instant::now();
            if let Some(lag) = self.reader.lag() {
                self.metrics.set_lag(lag);
            }
        }
    }
}

impl<S: SourceReader + 'static> Task for SourceDriver<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn step(&mut self) -> Result<Step> {
        let _running = self.metrics.enter();
        if !self.finished {
            self.inject_barrier()?;
        }
        if self.next.backlogged()? {
            return Ok(Step::Waiting);
        }
        if self.finished {
            return Ok(Step::Done);
        }
        let step = match self.reader.poll(self.batch_size)? {
            SourcePoll::Batch(batch) if batch.is_empty() => {
                // A reader that cut its batch before its first record, to send its
                // watermark first.
                self.advance_watermark()?;
                Step::Busy
            }
            SourcePoll::Batch(batch) => {
                self.idle = false;
                self.metrics.add_out(batch.len());
                self.report();
                self.next.push(batch)?;
                self.advance_watermark()?;
                Step::Busy
            }
            SourcePoll::Pending => {
                self.report();
                self.advance_watermark()?;
                Step::Waiting
            }
            SourcePoll::Idle => {
                self.report();
                if !self.idle {
                    self.idle = true;
                    self.next.control(Control::Idle)?;
                }
                Step::Waiting
            }
            SourcePoll::Finished => {
                self.report();
                if let Some(participant) = self.participant.as_ref().filter(|p| p.enabled()) {
                    participant.finished(self.snapshot(participant, None)?);
                }
                self.metrics.set_watermark(MAX_TIMESTAMP);
                self.next.control(Control::Watermark(MAX_TIMESTAMP))?;
                self.next.control(Control::End)?;
                self.finished = true;
                return Ok(if self.next.backlogged()? { Step::Waiting } else { Step::Done });
            }
        };
        if self.last_tick.elapsed() >= self.tick_interval {
            self.last_tick = Instant::now();
            self.next.control(Control::Tick(now_millis()))?;
        }
        Ok(step)
    }
}
