//! Hopping window aggregation by slices, as Flink's slicing window operators do it: a
//! `HOP` window of size `n` slides holds each row `n` times, so instead of copying each
//! row into its `n` windows, each row goes once into its slice (a tumbling window of
//! the greatest common divisor of size and slide, which the window assigner gives
//! it), the slices of a key are aggregated by DataFusion's group accumulators, and a
//! window's results are its slices' accumulator states merged when the watermark
//! passes its end. The rows are exchanged once each, by the group key without the
//! window, so that every slice of a key is on one worker.
//!
//! The input's columns are the group key without the window (its first `keys`
//! columns), then the slice's start and end, then the aggregates' arguments and
//! filters, as the planner's projection before the exchange lays them out. A slice
//! stays until the last window holding it has fired; a row whose windows have all
//! fired is late and dropped, one whose first windows have fired still counts in the
//! rest, as in Flink.
//!
//! Checkpoints hold each slice's accumulator states as Arrow IPC, one entry per slice
//! and key group, so a job restores at any parallelism.

use super::aggregate::{key_converter, merge_into, results_batch, split_by_end, state_schema, AggregateCall, Pane};
use super::session::SessionColumn;
use super::state::{ipc_decode, ipc_encode};
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, TimestampMillisecondArray, UInt32Array};
use arrow_row::RowConverter;
use arrow_schema::{DataType, SchemaRef};
use datafusion_expr::EmitTo;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Operator, Output};
use sluice_types::{hash_key, key_group_for_hash, Error, Result, Timestamp, MIN_TIMESTAMP};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a sliced hopping window aggregation computes.
#[derive(Debug)]
pub struct SlicedAggregateSpec {
    /// The operator's name.
    pub name: String,
    /// How many leading input columns are the group key without the window; the
    /// slice's start and end follow them.
    pub keys: usize,
    /// The aggregates; their arguments and filters are input columns after the slice's.
    pub calls: Vec<AggregateCall>,
    /// The output's group key columns, in the output's order; the aggregates follow.
    pub columns: Vec<SessionColumn>,
    /// The output.
    pub schema: SchemaRef,
    /// The input's schema.
    pub input: SchemaRef,
    /// How far apart windows start (`HOP`'s slide), less than their size.
    pub slide: i64,
    /// How long a window is.
    pub size: i64,
    /// Where windows start, after the epoch modulo the slide.
    pub offset: i64,
}

impl SlicedAggregateSpec {
    /// How long a slice is: the greatest common divisor of size and slide.
    pub fn slice(slide: i64, size: i64) -> i64 {
        let (mut a, mut b) = (slide, size);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }

    /// The smallest window end at or after `time`.
    fn end_at_or_after(&self, time: Timestamp) -> Timestamp {
        time + (self.offset + self.size - time).rem_euclid(self.slide)
    }

    /// The end of the last window that holds the slice ending at `end`.
    fn last_window_of(&self, end: Timestamp) -> Timestamp {
        let start = end - Self::slice(self.slide, self.size);
        start - (start - self.offset).rem_euclid(self.slide) + self.size
    }

    /// Fails if the key cannot be kept: checked when the job is planned.
    pub fn check(&self) -> Result<()> {
        key_converter(&self.input, self.keys).map(|_| ())
    }
}

/// One slice's groups: while rows come, in the accumulators; once a window has read
/// them, as the accumulators' states, until a late row needs the accumulators again.
struct Slice {
    pane: Pane,
    states: Option<Vec<ArrayRef>>,
}

impl Slice {
    /// The groups' keys, and the accumulators' states (each call's columns in order).
    fn states(&mut self) -> datafusion_common::Result<GroupStates<'_>> {
        if self.states.is_none() {
            let mut columns = Vec::new();
            for accumulator in &mut self.pane.accumulators {
                columns.extend(accumulator.state(EmitTo::All)?);
            }
            self.states = Some(columns);
        }
        Ok((&self.pane.keys, self.states.as_deref().unwrap_or_default()))
    }

    /// The accumulators, holding the states again if a window had read them out.
    fn accumulators(&mut self, calls: &[AggregateCall]) -> Result<&mut Pane> {
        if let Some(states) = self.states.take() {
            let fresh = Pane::new(calls)?;
            self.pane.accumulators = fresh.accumulators;
            let all: Vec<usize> = (0..self.pane.keys.len()).collect();
            merge_into(calls, &mut self.pane.accumulators, &states, &all, all.len())
                .map_err(|e| Error::internal(format!("slice states: {e}")))?;
        }
        Ok(&mut self.pane)
    }
}

/// The keys of a slice's groups, and their accumulators' states.
type GroupStates<'a> = (&'a [Box<[u8]>], &'a [ArrayRef]);

/// A checkpoint's entry: one slice's groups of one key group.
#[derive(serde::Serialize, serde::Deserialize)]
struct SliceEntry {
    end: Timestamp,
    /// An Arrow IPC stream of one batch: the keys (binary), then each accumulator's
    /// state columns.
    batch: Vec<u8>,
}

/// One worker's sliced hopping window aggregation.
pub struct SlicedAggregate {
    spec: Arc<SlicedAggregateSpec>,
    converter: RowConverter,
    /// The open slices, by end.
    slices: BTreeMap<Timestamp, Slice>,
    /// Every window ending at or before a millisecond past it has fired.
    watermark: Timestamp,
    groups: Vec<usize>,
    max_parallelism: u16,
}

impl SlicedAggregate {
    /// An aggregation with no open slice.
    pub fn new(spec: Arc<SlicedAggregateSpec>, max_parallelism: u16) -> Result<Self> {
        Ok(SlicedAggregate {
            converter: key_converter(&spec.input, spec.keys)?,
            spec,
            slices: BTreeMap::new(),
            watermark: MIN_TIMESTAMP,
            groups: Vec::new(),
            max_parallelism,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
    }

    /// Aggregates the rows of `batch` (all of one slice) into the slice ending at `end`.
    fn aggregate(&mut self, end: Timestamp, batch: &RecordBatch) -> Result<()> {
        let rows = self.converter.convert_columns(&batch.columns()[..self.spec.keys]).map_err(|e| self.error(e))?;
        let slice = match self.slices.entry(end) {
            std::collections::btree_map::Entry::Occupied(slice) => slice.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(Slice { pane: Pane::new(&self.spec.calls)?, states: None })
            }
        };
        let pane = slice.accumulators(&self.spec.calls)?;
        pane.update(&self.spec.calls, rows.iter().map(|r| r.data()), batch, &mut self.groups)
            .map_err(|e| Error::Operator { operator: self.spec.name.clone(), message: e.to_string() })?;
        Ok(())
    }

    /// The results of the window ending at `end`: its slices merged.
    fn results(&mut self, end: Timestamp) -> Result<RecordBatch> {
        let spec = self.spec.clone();
        let mut window = Pane::new(&spec.calls)?;
        for slice in self.slices.range_mut(end - spec.size + 1..=end).map(|(_, slice)| slice) {
            let (keys, states) = slice.states().map_err(|e| Error::internal(e.to_string()))?;
            window.groups(keys.iter().map(|k| &k[..]), &mut self.groups);
            merge_into(&spec.calls, &mut window.accumulators, states, &self.groups, window.keys.len())
                .map_err(|e| Error::Operator { operator: spec.name.clone(), message: e.to_string() })?;
        }
        let rows = window.keys.len();
        let parser = self.converter.parser();
        let keys =
            self.converter.convert_rows(window.keys.iter().map(|k| parser.parse(k))).map_err(|e| self.error(e))?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(spec.schema.fields().len());
        for (column, field) in spec.columns.iter().zip(spec.schema.fields()) {
            let time = match column {
                SessionColumn::Key(i) => {
                    columns.push(keys[*i].clone());
                    continue;
                }
                SessionColumn::Start => end - spec.size,
                SessionColumn::End => end,
                SessionColumn::Time => end - 1,
            };
            let zone = match field.data_type() {
                DataType::Timestamp(_, zone) => zone.clone(),
                _ => None,
            };
            columns.push(Arc::new(TimestampMillisecondArray::from(vec![time; rows]).with_timezone_opt(zone)));
        }
        for accumulator in &mut window.accumulators {
            columns.push(accumulator.evaluate(EmitTo::All).map_err(|e| self.error(e))?);
        }
        results_batch(&spec.schema, columns, rows).map_err(|e| self.error(e))
    }

    /// Emits the results of the windows that `watermark` has passed, in order of end,
    /// and drops the slices no window still open holds.
    fn close(&mut self, watermark: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        let fired = self.watermark;
        if watermark <= fired {
            return Ok(());
        }
        self.watermark = watermark;
        let Some(&first) = self.slices.keys().next() else { return Ok(()) };
        // The first window not fired yet that holds a slice.
        let mut end = self.spec.end_at_or_after(first.max(fired.saturating_add(2)));
        while end - 1 <= watermark {
            let results = self.results(end)?;
            if results.num_rows() > 0 {
                out.emit(results)?;
            }
            // Slices of no later window are done with.
            let next = end + self.spec.slide;
            while let Some(entry) = self.slices.first_entry() {
                if *entry.key() > next - self.spec.size {
                    break;
                }
                entry.remove();
            }
            let Some(&first) = self.slices.keys().next() else { break };
            end = self.spec.end_at_or_after(first.max(next));
        }
        Ok(())
    }
}

impl Operator for SlicedAggregate {
    type In = RecordBatch;
    type Out = RecordBatch;

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output<RecordBatch>) -> Result<()> {
        // Rows of slices whose windows have all fired are late.
        let (watermark, spec) = (self.watermark, self.spec.clone());
        let on_time = |end| spec.last_window_of(end) - 1 > watermark;
        for (end, part) in split_by_end(&batch, spec.keys + 1, &spec.name, on_time)? {
            self.aggregate(end, &part)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        self.close(watermark, out)
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        let schema = state_schema(&self.spec.calls).map_err(|e| self.error(e))?;
        let max_parallelism = self.max_parallelism;
        for (&end, slice) in &mut self.slices {
            // Read out as a window reads it: the accumulators fill again when a row comes.
            let (keys, states) = slice.states().map_err(|e| Error::internal(e.to_string()))?;
            let mut columns: Vec<ArrayRef> = vec![Arc::new(BinaryArray::from_iter_values(keys.iter()))];
            columns.extend(states.iter().cloned());
            let batch = RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| Error::internal(format!("slice state: {e}")))?;
            let mut by_group: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
            for (row, key) in keys.iter().enumerate() {
                by_group.entry(key_group_for_hash(hash_key(key), max_parallelism).0).or_default().push(row as u32);
            }
            for rows in by_group.into_values() {
                let first = keys[rows[0] as usize].to_vec();
                let part = arrow_select::take::take_record_batch(&batch, &UInt32Array::from(rows))
                    .map_err(|e| Error::internal(format!("slice state: {e}")))?;
                state.keyed(&first, &SliceEntry { end, batch: ipc_encode(&part)? })?;
            }
        }
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.watermark = state.clocks::<Timestamp>()?.into_iter().min().unwrap_or(MIN_TIMESTAMP);
        for (_, entry) in state.keyed::<Vec<u8>, SliceEntry>()? {
            let batch = ipc_decode(&entry.batch, &self.spec.name)?;
            let keys = batch
                .column(0)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .ok_or_else(|| Error::checkpoint("sliced window aggregate", "the state's keys are not binary"))?;
            let slice = match self.slices.entry(entry.end) {
                std::collections::btree_map::Entry::Occupied(slice) => slice.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(Slice { pane: Pane::new(&self.spec.calls)?, states: None })
                }
            };
            let pane = slice.accumulators(&self.spec.calls)?;
            let mut groups = Vec::new();
            pane.groups(keys.iter().map(|k| k.unwrap_or_default()), &mut groups);
            merge_into(&self.spec.calls, &mut pane.accumulators, &batch.columns()[1..], &groups, pane.keys.len())
                .map_err(|e| Error::checkpoint("sliced window aggregate", e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testing::Collected;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType};
    use arrow_array::Int64Array;
    use arrow_schema::{Field, Schema, TimeUnit};
    use datafusion_physical_expr::aggregate::AggregateExprBuilder;
    use datafusion_physical_expr::expressions::Column;
    use sluice_types::MAX_TIMESTAMP;

    /// `SELECT k, window_start, window_end, SUM(v) FROM TABLE(HOP(..., 2 ms, 6 ms)) GROUP BY ...`.
    fn sum_by_key() -> SlicedAggregateSpec {
        let time = DataType::Timestamp(TimeUnit::Millisecond, None);
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("slice_start", time.clone(), false),
            Field::new("slice_end", time.clone(), false),
            Field::new("v", DataType::Int64, false),
        ]));
        let sum = AggregateExprBuilder::new(
            datafusion_functions_aggregate::sum::sum_udaf(),
            vec![Arc::new(Column::new("v", 3))],
        )
        .schema(input.clone())
        .alias("s")
        .build()
        .expect("SUM");
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("window_start", time.clone(), false),
            Field::new("window_end", time, false),
            Field::new("s", DataType::Int64, true),
        ]));
        SlicedAggregateSpec {
            name: "sum".into(),
            keys: 1,
            calls: vec![AggregateCall { function: Arc::new(sum), args: vec![3], filter: None }],
            columns: vec![SessionColumn::Key(0), SessionColumn::Start, SessionColumn::End],
            schema,
            input,
            slide: 2,
            size: 6,
            offset: 0,
        }
    }

    /// Rows `(key, time, value)`, each in its 2 ms slice.
    fn batch(spec: &SlicedAggregateSpec, rows: &[(i64, i64, i64)]) -> RecordBatch {
        let starts = rows.iter().map(|r| r.1 - r.1.rem_euclid(2));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampMillisecondArray::from_iter_values(starts.clone())),
            Arc::new(TimestampMillisecondArray::from_iter_values(starts.map(|s| s + 2))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ];
        RecordBatch::try_new(spec.input.clone(), columns).expect("a batch")
    }

    /// The results as `(key, window start, window end, sum)`.
    fn rows(collected: &Collected) -> Vec<(i64, i64, i64, i64)> {
        let mut rows = Vec::new();
        for batch in collected.batches() {
            let (keys, sums) =
                (batch.column(0).as_primitive::<Int64Type>(), batch.column(3).as_primitive::<Int64Type>());
            let starts = batch.column(1).as_primitive::<TimestampMillisecondType>();
            let ends = batch.column(2).as_primitive::<TimestampMillisecondType>();
            for i in 0..batch.num_rows() {
                rows.push((keys.value(i), starts.value(i), ends.value(i), sums.value(i)));
            }
        }
        rows
    }

    #[test]
    fn a_late_row_counts_in_the_windows_not_fired_yet_and_is_dropped_once_all_have() {
        let spec = Arc::new(sum_by_key());
        let mut aggregate = SlicedAggregate::new(spec.clone(), 128).expect("an aggregate");
        let (mut out, collected) = Collected::output();
        aggregate.process_batch(batch(&spec, &[(1, 1, 1), (1, 3, 10), (2, 3, 5)]), &mut out).expect("rows");
        aggregate.on_watermark(3, &mut out).expect("a watermark");
        assert_eq!(rows(&collected), vec![(1, -4, 2, 1), (1, -2, 4, 11), (2, -2, 4, 5)]);
        // Late for [-4, 2) and [-2, 4), not for [0, 6).
        aggregate.process_batch(batch(&spec, &[(1, 1, 100)]), &mut out).expect("a late row");
        aggregate.on_watermark(5, &mut out).expect("a watermark");
        assert_eq!(rows(&collected)[3..], [(1, 0, 6, 111), (2, 0, 6, 5)]);
        // Late for every window it is in.
        aggregate.process_batch(batch(&spec, &[(1, 1, 1000)]), &mut out).expect("a row too late");
        aggregate.on_watermark(MAX_TIMESTAMP, &mut out).expect("the end");
        assert_eq!(rows(&collected)[5..], [(1, 2, 8, 10), (2, 2, 8, 5)]);
        assert!(aggregate.slices.is_empty(), "every slice dropped once its last window fired");
    }

    fn spec(slide: i64, size: i64, offset: i64) -> SlicedAggregateSpec {
        SlicedAggregateSpec {
            name: "test".into(),
            keys: 1,
            calls: Vec::new(),
            columns: Vec::new(),
            schema: Arc::new(arrow_schema::Schema::empty()),
            input: Arc::new(arrow_schema::Schema::empty()),
            slide,
            size,
            offset,
        }
    }

    #[test]
    fn slices_and_windows_line_up() {
        assert_eq!(SlicedAggregateSpec::slice(2, 10), 2);
        assert_eq!(SlicedAggregateSpec::slice(4, 10), 2);
        let hop = spec(2, 10, 0);
        assert_eq!(hop.end_at_or_after(7), 8);
        assert_eq!(hop.end_at_or_after(8), 8);
        // The slice [6, 8) is in the windows ending at 8, 10, ..., 16.
        assert_eq!(hop.last_window_of(8), 16);
        let offset = spec(4, 10, 1);
        // Windows start at 1, 5, 9, ...: they end at 11, 15, ...; slices are 2 long from 1.
        assert_eq!(offset.end_at_or_after(12), 15);
        // The slice [7, 9) is in [1, 11) and [5, 15): the last ends at 15.
        assert_eq!(offset.last_window_of(9), 15);
    }
}
