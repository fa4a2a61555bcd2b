//! Two-input operators and the node that connects one to its gate and output.

use crate::graph::Batch;
use sluice_runtime::checkpoint::{Barrier, Participant, StateReader, StateWriter};
use sluice_runtime::{Output, TwoInputPush};
use sluice_types::{Result, Timestamp};

/// An operator with two inputs (connect, joins), batch in, batch out.
pub(crate) trait TwoInputOperator: Send + 'static {
    type Left: Send + 'static;
    type Right: Send + 'static;
    type Out: Send + 'static;

    fn process_left(&mut self, batch: Batch<Self::Left>, out: &mut Output<Batch<Self::Out>>) -> Result<()>;
    fn process_right(&mut self, batch: Batch<Self::Right>, out: &mut Output<Batch<Self::Out>>) -> Result<()>;
    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Batch<Self::Out>>) -> Result<()>;
    fn on_processing_time(&mut self, _now: Timestamp, _out: &mut Output<Batch<Self::Out>>) -> Result<()> {
        Ok(())
    }
    /// Writes the operator's state into a checkpoint (see `Operator::snapshot`).
    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()>;
    /// Restores what `snapshot` wrote.
    fn restore(&mut self, state: &StateReader) -> Result<()>;
}

/// A two-input operator in its chain. Every two-input operator is keyed and stateful,
/// so every one takes part in checkpoints.
pub(crate) struct TwoInputNode<O: TwoInputOperator> {
    operator: O,
    out: Output<Batch<O::Out>>,
    participant: Participant,
}

impl<O: TwoInputOperator> TwoInputNode<O> {
    pub fn new(mut operator: O, out: Output<Batch<O::Out>>, participant: Participant) -> Result<Self> {
        if let Some(state) = participant.restored() {
            operator.restore(&state)?;
        }
        Ok(TwoInputNode { operator, out, participant })
    }

    fn snapshot(&mut self, barrier: Option<Barrier>) -> Result<Option<StateWriter>> {
        if !self.participant.enabled() {
            return Ok(None);
        }
        let mut state = self.participant.writer(barrier);
        self.operator.snapshot(&mut state)?;
        Ok(Some(state))
    }
}

impl<O: TwoInputOperator> TwoInputPush<Batch<O::Left>, Batch<O::Right>> for TwoInputNode<O> {
    fn push_left(&mut self, batch: Batch<O::Left>) -> Result<()> {
        let _running = self.out.metrics().enter();
        self.out.metrics().add_in(batch.len());
        self.operator.process_left(batch, &mut self.out)?;
        self.out.flush_sides()
    }
    fn push_right(&mut self, batch: Batch<O::Right>) -> Result<()> {
        let _running = self.out.metrics().enter();
        self.out.metrics().add_in(batch.len());
        self.operator.process_right(batch, &mut self.out)?;
        self.out.flush_sides()
    }
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        let _running = self.out.metrics().enter();
        self.operator.on_watermark(watermark, &mut self.out)?;
        self.out.flush_sides()?;
        self.out.watermark(watermark)
    }
    fn idle(&mut self) -> Result<()> {
        self.out.idle()
    }
    fn tick(&mut self, now: Timestamp) -> Result<()> {
        let _running = self.out.metrics().enter();
        self.operator.on_processing_time(now, &mut self.out)?;
        self.out.flush_sides()?;
        self.out.tick(now)
    }
    fn end(&mut self) -> Result<()> {
        self.out.flush_sides()?;
        if let Some(state) = self.snapshot(None)? {
            self.participant.finished_writer(state);
        }
        self.out.end()
    }
    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        let _running = self.out.metrics().enter();
        let started = std::time::Instant::now();
        if let Some(state) = self.snapshot(Some(barrier))? {
            self.participant.ack_writer(barrier.id, state, started.elapsed());
        }
        self.out.barrier(barrier)
    }
    fn backlogged(&mut self) -> Result<bool> {
        self.out.backlogged()
    }
}
