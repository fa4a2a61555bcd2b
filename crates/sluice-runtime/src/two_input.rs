//! Two-input operators (connect, joins) and the node that connects one to its gate and
//! output.

use crate::checkpoint::{Barrier, Participant, StateReader, StateWriter};
use crate::{Batch, Control, Output, TwoInputPush};
use sluice_types::{Result, Timestamp};

/// An operator with two inputs, batch in, batch out: the two-input counterpart of
/// [`crate::Operator`], generic over the batch types in the same way (typed `Vec`s
/// in the stream API, Arrow record batches in SQL).
pub trait TwoInputOperator: Send + 'static {
    /// The batches of the first input.
    type Left: Batch;
    /// The batches of the second input.
    type Right: Batch;
    /// The batches it emits on its main output.
    type Out: Batch;

    /// Processes a batch of the first input.
    fn process_left(&mut self, batch: Self::Left, out: &mut Output<Self::Out>) -> Result<()>;
    /// Processes a batch of the second input.
    fn process_right(&mut self, batch: Self::Right, out: &mut Output<Self::Out>) -> Result<()>;
    /// The combined event-time clock of both inputs (their minimum) advanced.
    fn on_watermark(&mut self, _watermark: Timestamp, _out: &mut Output<Self::Out>) -> Result<()> {
        Ok(())
    }
    /// Processing time advanced.
    fn on_processing_time(&mut self, _now: Timestamp, _out: &mut Output<Self::Out>) -> Result<()> {
        Ok(())
    }
    /// Writes the operator's state into a checkpoint (see [`crate::Operator::snapshot`]).
    fn snapshot(&mut self, _state: &mut StateWriter) -> Result<()> {
        Ok(())
    }
    /// Restores what `snapshot` wrote.
    fn restore(&mut self, _state: &StateReader) -> Result<()> {
        Ok(())
    }
}

/// A two-input operator in its chain, behind a [`crate::BinaryGate`]. It takes part
/// in checkpoints: it restores before any input and snapshots at every barrier.
pub struct TwoInputNode<O: TwoInputOperator> {
    operator: O,
    out: Output<O::Out>,
    participant: Participant,
}

impl<O: TwoInputOperator> TwoInputNode<O> {
    /// Wraps `operator`, emitting into `out`; restores it from `participant`'s restored
    /// state, if the job restores.
    pub fn new(mut operator: O, out: Output<O::Out>, participant: Participant) -> Result<Self> {
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

impl<O: TwoInputOperator> TwoInputPush<O::Left, O::Right> for TwoInputNode<O> {
    fn push_left(&mut self, batch: O::Left) -> Result<()> {
        let _running = self.out.metrics().enter();
        self.out.metrics().add_in(batch.len());
        self.operator.process_left(batch, &mut self.out)?;
        self.out.flush_sides()
    }
    fn push_right(&mut self, batch: O::Right) -> Result<()> {
        let _running = self.out.metrics().enter();
        self.out.metrics().add_in(batch.len());
        self.operator.process_right(batch, &mut self.out)?;
        self.out.flush_sides()
    }
    fn control(&mut self, control: Control) -> Result<()> {
        let _running = self.out.metrics().enter();
        match control {
            Control::Watermark(watermark) => self.operator.on_watermark(watermark, &mut self.out)?,
            Control::Tick(now) => self.operator.on_processing_time(now, &mut self.out)?,
            Control::Idle => {}
            Control::Barrier(barrier) => {
                let started = std::time::Instant::now();
                if let Some(state) = self.snapshot(Some(barrier))? {
                    self.participant.ack_writer(barrier.id, state, started.elapsed());
                }
            }
            Control::End => {
                if let Some(state) = self.snapshot(None)? {
                    self.participant.finished_writer(state);
                }
            }
        }
        self.out.flush_sides()?;
        self.out.control(control)
    }
    fn backlogged(&mut self) -> Result<bool> {
        self.out.backlogged()
    }
}
