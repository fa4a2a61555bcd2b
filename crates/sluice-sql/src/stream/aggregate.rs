//! Window aggregation: `GROUP BY window_start, window_end, ...` over a window table
//! function. Rows arrive keyed (hash-exchanged by their group key), each window's
//! groups are aggregated by DataFusion's group accumulators, and a window's results
//! leave once the watermark passes its end: append-only, one row per group.
//!
//! The input's columns are the group key (its first `keys` columns, of which one is
//! `window_end`), then the aggregates' arguments and filters, as the planner's
//! projection before the exchange lays them out. A group's key is its row in
//! arrow-row's byte encoding: the map key of its state, and what the exchange hashes,
//! so state and routing agree on which key group a group is in.
//!
//! Checkpoints hold each open window's accumulator states (`GroupsAccumulator::state`),
//! as Arrow IPC, one entry per window and key group, so a job restores at any
//! parallelism.

use super::state::{ipc_decode, ipc_encode};
use crate::stream::watermark::millis;
use arrow_array::{Array, ArrayRef, BinaryArray, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion_expr::{EmitTo, GroupsAccumulator};
use datafusion_physical_expr::aggregate::AggregateFunctionExpr;
use datafusion_physical_expr::GroupsAccumulatorAdapter;
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::exchange::{KeyRouter, Partitioner};
use sluice_runtime::{Operator, Output};
use sluice_types::{hash_key, key_group_for_hash, Error, Result, Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One aggregate call: its function, and where its arguments and filter are.
#[derive(Debug)]
pub struct AggregateCall {
    /// The function, with its argument types.
    pub function: Arc<AggregateFunctionExpr>,
    /// The input columns of its arguments.
    pub args: Vec<usize>,
    /// The input column of its `FILTER (WHERE ...)`.
    pub filter: Option<usize>,
}

impl AggregateCall {
    pub(crate) fn accumulator(&self) -> Result<Box<dyn GroupsAccumulator>> {
        let function = self.function.clone();
        if function.groups_accumulator_supported() {
            return function.create_groups_accumulator().map_err(|e| Error::invalid_job(e.to_string()));
        }
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || function.create_accumulator())))
    }
}

/// What a window aggregation computes.
#[derive(Debug)]
pub struct WindowAggregateSpec {
    /// The operator's name.
    pub name: String,
    /// How many leading input columns are the group key.
    pub keys: usize,
    /// Which of them is `window_end`.
    pub window_end: usize,
    /// The aggregates.
    pub calls: Vec<AggregateCall>,
    /// The output: the key's columns, then one per aggregate.
    pub schema: SchemaRef,
    /// The input's schema.
    pub input: SchemaRef,
    /// Whether the windows are of processing time (over `PROCTIME()`): closed by the
    /// wall clock, not the watermark (save the end of input's).
    pub proctime: bool,
}

impl WindowAggregateSpec {
    fn converter(&self) -> Result<RowConverter> {
        key_converter(&self.input, self.keys)
    }
}

/// The row encoding of the first `keys` columns of `schema`.
pub fn key_converter(schema: &Schema, keys: usize) -> Result<RowConverter> {
    let fields = schema.fields()[..keys].iter().map(|f| SortField::new(f.data_type().clone())).collect();
    RowConverter::new(fields).map_err(|e| Error::invalid_job(format!("cannot group by these columns: {e}")))
}

/// The groups of one window (or slice): their keys, and the calls' accumulators.
pub(crate) struct Pane {
    index: FxHashMap<Box<[u8]>, usize>,
    pub(crate) keys: Vec<Box<[u8]>>,
    pub(crate) accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

impl Pane {
    pub(crate) fn new(calls: &[AggregateCall]) -> Result<Self> {
        let accumulators = calls.iter().map(AggregateCall::accumulator).collect::<Result<_>>()?;
        Ok(Pane { index: FxHashMap::default(), keys: Vec::new(), accumulators })
    }

    /// Aggregates the rows of `batch`, whose group keys are `rows`, into their groups
    /// (`groups` is room for their indices).
    pub(crate) fn update<'a>(
        &mut self,
        calls: &[AggregateCall],
        rows: impl Iterator<Item = &'a [u8]>,
        batch: &RecordBatch,
        groups: &mut Vec<usize>,
    ) -> datafusion_common::Result<()> {
        self.groups(rows, groups);
        let total = self.keys.len();
        for (call, accumulator) in calls.iter().zip(self.accumulators.iter_mut()) {
            let values: Vec<ArrayRef> = call.args.iter().map(|&i| batch.column(i).clone()).collect();
            let filter = call.filter.and_then(|i| batch.column(i).as_any().downcast_ref::<BooleanArray>().cloned());
            accumulator.update_batch(&values, groups, filter.as_ref(), total)?;
        }
        Ok(())
    }

    /// The group index of each key row, new groups added.
    pub(crate) fn groups<'a>(&mut self, rows: impl Iterator<Item = &'a [u8]>, out: &mut Vec<usize>) {
        out.clear();
        for row in rows {
            // Looked up first: a key is allocated once, when its group is new.
            let group = match self.index.get(row) {
                Some(group) => *group,
                None => {
                    let group = self.keys.len();
                    self.index.insert(Box::from(row), group);
                    self.keys.push(Box::from(row));
                    group
                }
            };
            out.push(group);
        }
    }
}

/// A checkpoint's entry: one window's groups of one key group.
#[derive(serde::Serialize, serde::Deserialize)]
struct PaneEntry {
    end: Timestamp,
    /// An Arrow IPC stream of one batch: the keys (binary), then each accumulator's
    /// state columns.
    batch: Vec<u8>,
}

/// One worker's window aggregation.
pub struct WindowAggregate {
    spec: Arc<WindowAggregateSpec>,
    converter: RowConverter,
    panes: BTreeMap<Timestamp, Pane>,
    watermark: Timestamp,
    groups: Vec<usize>,
    max_parallelism: u16,
}

impl WindowAggregate {
    /// An aggregation with no open window.
    pub fn new(spec: Arc<WindowAggregateSpec>, max_parallelism: u16) -> Result<Self> {
        Ok(WindowAggregate {
            converter: spec.converter()?,
            spec,
            panes: BTreeMap::new(),
            watermark: MIN_TIMESTAMP,
            groups: Vec::new(),
            max_parallelism,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
    }

    /// Aggregates the rows of `batch` (all of one window) into the window ending at `end`.
    fn aggregate(&mut self, end: Timestamp, batch: &RecordBatch) -> Result<()> {
        let keys = &batch.columns()[..self.spec.keys];
        let rows = self.converter.convert_columns(keys).map_err(|e| self.error(e))?;
        let pane = match self.panes.entry(end) {
            std::collections::btree_map::Entry::Occupied(pane) => pane.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => slot.insert(Pane::new(&self.spec.calls)?),
        };
        pane.update(&self.spec.calls, rows.iter().map(|r| r.data()), batch, &mut self.groups)
            .map_err(|e| Error::Operator { operator: self.spec.name.clone(), message: e.to_string() })?;
        Ok(())
    }

    /// The results of a window.
    fn results(&self, mut pane: Pane) -> Result<RecordBatch> {
        let parser = self.converter.parser();
        let rows = pane.keys.iter().map(|k| parser.parse(k));
        let mut columns = self.converter.convert_rows(rows).map_err(|e| self.error(e))?;
        for accumulator in &mut pane.accumulators {
            columns.push(accumulator.evaluate(EmitTo::All).map_err(|e| self.error(e))?);
        }
        results_batch(&self.spec.schema, columns, pane.keys.len()).map_err(|e| self.error(e))
    }

    /// Emits the results of the windows that `time` (a watermark, or the wall clock)
    /// has passed.
    fn close(&mut self, time: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        self.watermark = self.watermark.max(time);
        while let Some(entry) = self.panes.first_entry() {
            if *entry.key() - 1 > self.watermark {
                break;
            }
            let pane = entry.remove();
            let results = self.results(pane)?;
            if results.num_rows() > 0 {
                out.emit(results)?;
            }
        }
        Ok(())
    }
}

/// The schema of a checkpoint's batch of groups: the keys, then each call's
/// accumulator state columns.
pub(crate) fn state_schema(calls: &[AggregateCall]) -> datafusion_common::Result<SchemaRef> {
    let mut fields = vec![Field::new("key", DataType::Binary, false)];
    for call in calls {
        for field in call.function.state_fields()? {
            fields.push(Field::new(format!("{}_{}", fields.len(), field.name()), field.data_type().clone(), true));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

impl Operator for WindowAggregate {
    type In = RecordBatch;
    type Out = RecordBatch;

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output<RecordBatch>) -> Result<()> {
        // Rows of windows the watermark has passed are late: dropped, as Flink drops them.
        let watermark = self.watermark;
        for (end, part) in split_by_end(&batch, self.spec.window_end, &self.spec.name, |end| end - 1 > watermark)? {
            self.aggregate(end, &part)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        if self.spec.proctime && watermark < MAX_TIMESTAMP {
            return Ok(());
        }
        self.close(watermark, out)
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        match self.spec.proctime {
            true => self.close(now, out),
            false => Ok(()),
        }
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        let schema = state_schema(&self.spec.calls).map_err(|e| self.error(e))?;
        let max_parallelism = self.max_parallelism;
        let ends: Vec<Timestamp> = self.panes.keys().copied().collect();
        for end in ends {
            let mut pane = self.panes.remove(&end).expect("invariant: listed");
            // `state` hands the accumulators' state out and empties them: it is merged
            // back into fresh ones, so the job goes on as before.
            let mut columns: Vec<ArrayRef> = vec![Arc::new(BinaryArray::from_iter_values(pane.keys.iter()))];
            for accumulator in &mut pane.accumulators {
                columns.extend(accumulator.state(EmitTo::All).map_err(|e| self.error(e))?);
            }
            let all: Vec<usize> = (0..pane.keys.len()).collect();
            let mut restored = Pane::new(&self.spec.calls)?;
            restored.index = std::mem::take(&mut pane.index);
            restored.keys = std::mem::take(&mut pane.keys);
            merge_states(&mut restored, &columns[1..], &all, &self.spec)?;
            self.panes.insert(end, restored);
            let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| self.error(e))?;
            // One entry per key group, under a key of that group.
            let keys = batch.column(0).as_any().downcast_ref::<BinaryArray>().expect("invariant: binary keys");
            let mut by_group: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
            for (row, key) in keys.iter().enumerate() {
                let group = key_group_for_hash(hash_key(key.unwrap_or_default()), max_parallelism);
                by_group.entry(group.0).or_default().push(row as u32);
            }
            for rows in by_group.into_values() {
                let first = keys.value(rows[0] as usize).to_vec();
                let part = arrow_select::take::take_record_batch(&batch, &UInt32Array::from(rows))
                    .map_err(|e| self.error(e))?;
                state.keyed(&first, &PaneEntry { end, batch: ipc_encode(&part)? })?;
            }
        }
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.watermark = state.clocks::<Timestamp>()?.into_iter().min().unwrap_or(MIN_TIMESTAMP);
        for (_, entry) in state.keyed::<Vec<u8>, PaneEntry>()? {
            let batch = ipc_decode(&entry.batch, &self.spec.name)?;
            let pane = match self.panes.entry(entry.end) {
                std::collections::btree_map::Entry::Occupied(pane) => pane.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => slot.insert(Pane::new(&self.spec.calls)?),
            };
            let keys = batch
                .column(0)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .ok_or_else(|| Error::checkpoint("window aggregate", "the state's keys are not binary"))?;
            let mut groups = Vec::new();
            pane.groups(keys.iter().map(|k| k.unwrap_or_default()), &mut groups);
            merge_states(pane, &batch.columns()[1..], &groups, &self.spec)?;
        }
        Ok(())
    }
}

/// The rows of `batch` by the end (in column `ends`) of their window or slice, of the
/// ends `on_time` takes: the whole batch when its rows are all of one. The others are
/// late, and dropped (counted in a debug line of `operator`).
pub(crate) fn split_by_end(
    batch: &RecordBatch,
    ends: usize,
    operator: &str,
    on_time: impl Fn(Timestamp) -> bool,
) -> Result<Vec<(Timestamp, RecordBatch)>> {
    let mut by_end: BTreeMap<Timestamp, Vec<u32>> = BTreeMap::new();
    let mut late = 0;
    for (row, end) in millis(batch.column(ends))?.iter().enumerate() {
        match end {
            Some(end) if on_time(*end) => by_end.entry(*end).or_default().push(row as u32),
            _ => late += 1,
        }
    }
    if late > 0 {
        tracing::debug!(operator, late, "late rows dropped");
    }
    if by_end.len() == 1 && late == 0 {
        return Ok(by_end.into_keys().map(|end| (end, batch.clone())).collect());
    }
    by_end
        .into_iter()
        .map(|(end, rows)| {
            let part = arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows))
                .map_err(|e| Error::Operator { operator: operator.to_string(), message: e.to_string() })?;
            Ok((end, part))
        })
        .collect()
}

/// Result columns as a batch of `schema` with `rows` rows, each cast to its field's
/// type where the aggregate's differs (a `COUNT` into an `INT` column).
pub(crate) fn results_batch(
    schema: &SchemaRef,
    columns: Vec<ArrayRef>,
    rows: usize,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(column, field)| match column.data_type() == field.data_type() {
            true => Ok(column),
            false => arrow_cast::cast(&column, field.data_type()),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}

/// Merges accumulator states (each call's state columns, in order) into `pane`.
fn merge_states(pane: &mut Pane, columns: &[ArrayRef], groups: &[usize], spec: &WindowAggregateSpec) -> Result<()> {
    let total = pane.keys.len();
    merge_into(&spec.calls, &mut pane.accumulators, columns, groups, total)
        .map_err(|e| Error::checkpoint("window aggregate", e.to_string()))
}

/// Merges accumulator states (each call's state columns, in order) into the groups
/// `groups` of `accumulators` (`total` groups in all).
pub(crate) fn merge_into(
    calls: &[AggregateCall],
    accumulators: &mut [Box<dyn GroupsAccumulator>],
    columns: &[ArrayRef],
    groups: &[usize],
    total: usize,
) -> datafusion_common::Result<()> {
    let mut at = 0;
    for (call, accumulator) in calls.iter().zip(accumulators.iter_mut()) {
        let width = call.function.state_fields()?.len();
        accumulator.merge_batch(&columns[at..at + width], groups, total)?;
        at += width;
    }
    Ok(())
}

/// Routes rows by the hash of their group key's row encoding (the first `keys`
/// columns), as the aggregation's state is keyed.
pub struct KeyPartitioner {
    converter: RowConverter,
    keys: usize,
}

impl KeyPartitioner {
    /// Routes by the first `keys` columns of `schema`.
    pub fn new(schema: &Schema, keys: usize) -> Result<Self> {
        Ok(KeyPartitioner { converter: key_converter(schema, keys)?, keys })
    }
}

impl Partitioner<RecordBatch> for KeyPartitioner {
    fn partition(&mut self, batch: RecordBatch, router: &KeyRouter) -> Result<Vec<RecordBatch>> {
        let error = |e: &dyn std::fmt::Display| Error::Operator { operator: "key_by".into(), message: e.to_string() };
        let rows = self.converter.convert_columns(&batch.columns()[..self.keys]).map_err(|e| error(&e))?;
        let mut targets: Vec<Vec<u32>> = vec![Vec::new(); router.targets()];
        for (i, row) in rows.iter().enumerate() {
            targets[router.target(hash_key(row.data()))].push(i as u32);
        }
        targets
            .into_iter()
            .map(|indices| match indices.len() == batch.num_rows() {
                true => Ok(batch.clone()),
                false => {
                    arrow_select::take::take_record_batch(&batch, &UInt32Array::from(indices)).map_err(|e| error(&e))
                }
            })
            .collect()
    }
}
