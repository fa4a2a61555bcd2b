//! The window table functions `TUMBLE`, `HOP`, `CUMULATE` and `SESSION` as a step: each row gets
//! the windows it belongs to, as Flink's three columns `window_start`, `window_end`
//! and `window_time` (the end less a millisecond: the results' row time), one row per
//! window. A tumbling window holds each row once; a hopping window of size `n` slides
//! holds it `n` times; a cumulating period of `n` steps holds it in each window of the
//! period that ends after it. A session window gives each row its own window, `gap`
//! long from the row's time: the session aggregation (`session.rs`) merges them.

use crate::stream::watermark::millis;
use crate::tvf::WindowKind;
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions, TimestampMillisecondArray, UInt32Array};
use arrow_schema::SchemaRef;
use sluice_runtime::{Operator, Output};
use sluice_types::{Error, Result};
use std::sync::Arc;

/// What a window assigner computes.
#[derive(Debug)]
pub struct AssignSpec {
    /// The operator's name.
    pub name: String,
    /// The window function.
    pub kind: WindowKind,
    /// The row time column.
    pub time: usize,
    /// The output: the input's columns, then the window's three.
    pub schema: SchemaRef,
}

/// The windows `[start, end)` a row at `time` belongs to, in `kind`.
pub fn windows_of(kind: &WindowKind, time: i64, out: &mut Vec<(i64, i64)>) {
    let start_of = |time: i64, size: i64, offset: i64| time - (time - offset).rem_euclid(size);
    match *kind {
        WindowKind::Tumble { size, offset } => {
            let start = start_of(time, size, offset);
            out.push((start, start + size));
        }
        WindowKind::Hop { slide, size, offset } => {
            let last = start_of(time, slide, offset);
            let mut start = last - size + slide;
            while start <= last {
                out.push((start, start + size));
                start += slide;
            }
        }
        WindowKind::Cumulate { step, size, offset } => {
            let start = start_of(time, size, offset);
            let mut end = start_of(time, step, offset) + step;
            while end <= start + size {
                out.push((start, end));
                end += step;
            }
        }
        // The row's own window, which the session aggregation merges with the
        // windows it touches.
        WindowKind::Session { gap } => out.push((time, time + gap)),
    }
}

impl AssignSpec {
    /// The rows of `batch`, one per window each is in, with the window columns.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let error = |e: &dyn std::fmt::Display| Error::Operator { operator: self.name.clone(), message: e.to_string() };
        let times = millis(batch.column(self.time))?;
        let mut rows: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let (mut starts, mut ends) = (Vec::with_capacity(batch.num_rows()), Vec::with_capacity(batch.num_rows()));
        let mut windows = Vec::new();
        for (row, time) in times.iter().enumerate() {
            // A row without a time is in no window (Flink drops it too).
            let Some(time) = time else { continue };
            windows.clear();
            windows_of(&self.kind, *time, &mut windows);
            for &(start, end) in &windows {
                rows.push(row as u32);
                starts.push(start);
                ends.push(end);
            }
        }
        let mut columns: Vec<ArrayRef> =
            if rows.len() == batch.num_rows() && rows.iter().enumerate().all(|(i, r)| i == *r as usize) {
                batch.columns().to_vec()
            } else {
                let indices = UInt32Array::from(rows);
                batch
                    .columns()
                    .iter()
                    .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| error(&e))?
            };
        let zone = match self.schema.field(batch.num_columns()).data_type() {
            arrow_schema::DataType::Timestamp(_, zone) => zone.clone(),
            _ => None,
        };
        let window_time: Vec<i64> = ends.iter().map(|end| end - 1).collect();
        for values in [starts, ends, window_time] {
            columns.push(Arc::new(TimestampMillisecondArray::from(values).with_timezone_opt(zone.clone())));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(columns.first().map_or(0, |c| c.len())));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options).map_err(|e| error(&e))
    }
}

/// One worker's window assigner.
pub struct Assign {
    pub(crate) spec: Arc<AssignSpec>,
}

impl Operator for Assign {
    type In = RecordBatch;
    type Out = RecordBatch;

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        let batch = self.spec.apply(&batch)?;
        if batch.num_rows() > 0 {
            out.emit(batch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(kind: WindowKind, time: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        windows_of(&kind, time, &mut out);
        out
    }

    #[test]
    fn rows_get_the_windows_flink_gives_them() {
        assert_eq!(windows(WindowKind::Tumble { size: 10, offset: 0 }, 25), vec![(20, 30)]);
        assert_eq!(windows(WindowKind::Tumble { size: 10, offset: 0 }, -5), vec![(-10, 0)]);
        assert_eq!(windows(WindowKind::Tumble { size: 10, offset: 3 }, 25), vec![(23, 33)]);
        assert_eq!(windows(WindowKind::Hop { slide: 2, size: 6, offset: 0 }, 7), vec![(2, 8), (4, 10), (6, 12)]);
        assert_eq!(windows(WindowKind::Cumulate { step: 2, size: 6, offset: 0 }, 7), vec![(6, 8), (6, 10), (6, 12)]);
        assert_eq!(windows(WindowKind::Cumulate { step: 2, size: 6, offset: 0 }, 11), vec![(6, 12)]);
    }
}
