//! `WATERMARK FOR rowtime AS expression`: the watermark is the highest value of the
//! expression over the rows so far (Flink's semantics), in milliseconds. Rows at or
//! behind the watermark are late.
//!
//! A batch is cut before a row that the watermark of the rows before it makes late, and
//! that watermark sent between the two parts: which rows are late does not depend on
//! how the input was batched. The highest value is kept in checkpoints, so a restored
//! job resumes with the watermark it had.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use datafusion_physical_expr::PhysicalExpr;
use sluice_runtime::checkpoint::{Barrier, InstanceState, Participant};
use sluice_runtime::{Control, Output, Push};
use sluice_types::{Error, Result, Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};
use std::sync::Arc;

/// What a watermark step computes.
#[derive(Debug)]
pub struct WatermarkSpec {
    /// The operator's name.
    pub name: String,
    /// The row time column.
    pub rowtime: usize,
    /// The watermark expression over the row.
    pub expression: Arc<dyn PhysicalExpr>,
    /// When the expression is the row time less a fixed interval (`ts - INTERVAL '4'
    /// SECOND`, nearly always), that interval in milliseconds: the expression is not
    /// evaluated then.
    pub delay: Option<i64>,
    /// After this long without rows the source is idle and does not hold back the
    /// watermark of a join or union (`None`: never).
    pub idle_timeout: Option<Timestamp>,
}

/// Milliseconds since the epoch of each value of a timestamp column.
pub(crate) fn millis(column: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let values = match column.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            column.as_primitive::<TimestampMillisecondType>().iter().collect()
        }
        DataType::Timestamp(TimeUnit::Second, _) => {
            column.as_primitive::<TimestampSecondType>().iter().map(|v| v.map(|v| v * 1000)).collect()
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            column.as_primitive::<TimestampMicrosecondType>().iter().map(|v| v.map(|v| v.div_euclid(1000))).collect()
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => column
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .map(|v| v.map(|v| v.div_euclid(1_000_000)))
            .collect(),
        other => return Err(Error::invalid_job(format!("a row time must be a TIMESTAMP(3), not {other}"))),
    };
    Ok(values)
}

/// One worker's watermark step.
pub struct WatermarkAssigner {
    spec: Arc<WatermarkSpec>,
    out: Output<RecordBatch>,
    /// The highest watermark the rows gave.
    highest: Timestamp,
    emitted: Timestamp,
    last_row_at: Timestamp,
    idle: bool,
    participant: Participant,
}

impl WatermarkAssigner {
    /// A step resuming with the lowest watermark of the checkpoint's instances.
    pub fn new(spec: Arc<WatermarkSpec>, out: Output<RecordBatch>, participant: Participant) -> Result<Self> {
        let highest = match participant.restored() {
            Some(state) => state.clocks::<Timestamp>()?.into_iter().min().unwrap_or(MIN_TIMESTAMP),
            None => MIN_TIMESTAMP,
        };
        Ok(WatermarkAssigner {
            spec,
            out,
            highest,
            emitted: MIN_TIMESTAMP,
            last_row_at: MIN_TIMESTAMP,
            idle: false,
            participant,
        })
    }

    fn snapshot(&self, barrier: Option<Barrier>) -> Result<Option<InstanceState>> {
        if !self.participant.enabled() {
            return Ok(None);
        }
        let mut state = self.participant.writer(barrier);
        state.clock(&self.highest)?;
        Ok(Some(state.finish()))
    }

    fn emit_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        if watermark > self.emitted {
            self.emitted = watermark;
            self.out.control(Control::Watermark(watermark))?;
        }
        Ok(())
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
    }
}

impl Push<RecordBatch> for WatermarkAssigner {
    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        let _running = self.out.metrics().enter();
        self.out.metrics().add_in(batch.num_rows());
        self.idle = false;
        self.last_row_at = MIN_TIMESTAMP;
        let rows = batch.num_rows();
        let rowtimes = millis(batch.column(self.spec.rowtime))?;
        let marks = match self.spec.delay {
            Some(delay) => rowtimes.iter().map(|t| t.map(|t| t.saturating_sub(delay))).collect(),
            None => {
                let marks = self
                    .spec
                    .expression
                    .evaluate(&batch)
                    .and_then(|v| v.into_array(rows))
                    .map_err(|e| self.error(e))?;
                millis(&marks)?
            }
        };
        let mut start = 0;
        for row in 0..rows {
            let late = rowtimes[row].is_some_and(|time| time <= self.highest);
            if late && self.highest > self.emitted {
                if row > start {
                    self.out.emit(batch.slice(start, row - start))?;
                    start = row;
                }
                self.emit_watermark(self.highest)?;
            }
            if let Some(mark) = marks[row] {
                self.highest = self.highest.max(mark);
            }
        }
        if start < rows {
            self.out.emit(if start == 0 { batch } else { batch.slice(start, rows - start) })?;
        }
        self.emit_watermark(self.highest)
    }

    fn control(&mut self, control: Control) -> Result<()> {
        match control {
            // Upstream watermarks are replaced by the table's; only the final one of a
            // bounded source passes.
            Control::Watermark(watermark) => {
                if watermark == MAX_TIMESTAMP {
                    self.emit_watermark(watermark)?;
                }
                return Ok(());
            }
            Control::Idle => self.idle = true,
            Control::Tick(now) => {
                if let Some(timeout) = self.spec.idle_timeout {
                    if self.last_row_at == MIN_TIMESTAMP {
                        self.last_row_at = now;
                    } else if !self.idle && now - self.last_row_at >= timeout {
                        self.idle = true;
                        self.out.control(Control::Idle)?;
                    }
                }
            }
            Control::End => {
                if let Some(state) = self.snapshot(None)? {
                    self.participant.finished(state);
                }
            }
            Control::Barrier(barrier) => {
                let started = std::time::Instant::now();
                if let Some(state) = self.snapshot(Some(barrier))? {
                    self.participant.ack(barrier.id, state, started.elapsed());
                }
            }
        }
        self.out.control(control)
    }

    fn backlogged(&mut self) -> Result<bool> {
        self.out.backlogged()
    }
}
