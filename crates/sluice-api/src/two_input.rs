//! Two-input operators and the node that connects one to its gate and output.

use crate::graph::Batch;
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
}

pub(crate) struct TwoInputNode<O: TwoInputOperator> {
    operator: O,
    out: Output<Batch<O::Out>>,
}

impl<O: TwoInputOperator> TwoInputNode<O> {
    pub fn new(operator: O, out: Output<Batch<O::Out>>) -> Self {
        TwoInputNode { operator, out }
    }
}

impl<O: TwoInputOperator> TwoInputPush<Batch<O::Left>, Batch<O::Right>> for TwoInputNode<O> {
    fn push_left(&mut self, batch: Batch<O::Left>) -> Result<()> {
        self.out.metrics().add_in(batch.len());
        self.operator.process_left(batch, &mut self.out)?;
        self.out.flush_sides()
    }
    fn push_right(&mut self, batch: Batch<O::Right>) -> Result<()> {
        self.out.metrics().add_in(batch.len());
        self.operator.process_right(batch, &mut self.out)?;
        self.out.flush_sides()
    }
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.operator.on_watermark(watermark, &mut self.out)?;
        self.out.flush_sides()?;
        self.out.watermark(watermark)
    }
    fn idle(&mut self) -> Result<()> {
        self.out.idle()
    }
    fn tick(&mut self, now: Timestamp) -> Result<()> {
        self.operator.on_processing_time(now, &mut self.out)?;
        self.out.flush_sides()?;
        self.out.tick(now)
    }
    fn end(&mut self) -> Result<()> {
        self.out.flush_sides()?;
        self.out.end()
    }
    fn backlogged(&mut self) -> Result<bool> {
        self.out.backlogged()
    }
}
