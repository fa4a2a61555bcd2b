//! OVER aggregations: `AGG(x) OVER (PARTITION BY k ORDER BY rowtime frame)`, as Flink
//! runs them: every row leaves once, when the watermark passes its time, with the
//! aggregates over its frame: the `n` rows before it (`ROWS BETWEEN n PRECEDING AND
//! CURRENT ROW`), the rows of the `interval` before it (`RANGE BETWEEN INTERVAL ...
//! PRECEDING AND CURRENT ROW`, its peers of the same time included), or all rows before
//! it (`UNBOUNDED PRECEDING`). Rows are taken in time order, so the results do not
//! depend on the order rows arrive in; rows already passed by the watermark are late,
//! and dropped, as Flink drops them.
//!
//! Rows arrive keyed by the partition key: its columns first, then the row time, then
//! the aggregates' arguments, then the row's own columns. A row waits in its batch
//! until the watermark passes it; each key keeps the arguments of the rows its frames
//! still need (arrow-row encoded), or, for unbounded frames, its accumulators' state.
//! When the watermark moves, the frames of every row it passes are aggregated at once
//! by DataFusion's group accumulators, one group per row.

use super::aggregate::{key_converter, merge_into, results_batch, AggregateCall};
use super::state::{ipc_decode, ipc_encode, KeyGroupRows};
use super::watermark::millis;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::SchemaRef;
use datafusion_expr::{EmitTo, GroupsAccumulator};
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Operator, Output};
use sluice_types::{hash_key, key_group_for_hash, Error, Result, Timestamp, MIN_TIMESTAMP};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// The rows an OVER aggregation aggregates for a row: those before it, and it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The `n` rows before it (`ROWS BETWEEN n PRECEDING AND CURRENT ROW`).
    Rows(usize),
    /// The rows of the milliseconds before it, and its peers (`RANGE BETWEEN INTERVAL
    /// ... PRECEDING AND CURRENT ROW`).
    Range(i64),
    /// Every row before it (`ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`).
    UnboundedRows,
    /// Every row before it, and its peers (`RANGE ... UNBOUNDED PRECEDING`, the default).
    UnboundedRange,
}

impl Frame {
    fn unbounded(self) -> bool {
        matches!(self, Frame::UnboundedRows | Frame::UnboundedRange)
    }
    fn peers(self) -> bool {
        matches!(self, Frame::Range(_) | Frame::UnboundedRange)
    }
}

/// What an OVER aggregation computes.
#[derive(Debug)]
pub struct OverSpec {
    /// The operator's name.
    pub name: String,
    /// How many leading input columns are the partition key; the row time follows.
    pub keys: usize,
    /// How many columns after the row time are the aggregates' arguments.
    pub values: usize,
    /// The aggregates (their arguments are input columns).
    pub calls: Vec<AggregateCall>,
    /// The frame.
    pub frame: Frame,
    /// The input's schema.
    pub input: SchemaRef,
    /// The output: the row's own columns, then one per aggregate.
    pub schema: SchemaRef,
}

impl OverSpec {
    fn time(&self) -> usize {
        self.keys
    }
    /// The first of the row's own columns.
    fn own(&self) -> usize {
        self.keys + 1 + self.values
    }

    fn value_converter(&self) -> Result<Option<RowConverter>> {
        let fields: Vec<SortField> = self.input.fields()[self.keys + 1..self.own()]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        match fields.is_empty() {
            true => Ok(None),
            false => RowConverter::new(fields)
                .map(Some)
                .map_err(|e| Error::invalid_job(format!("cannot keep these aggregates' arguments: {e}"))),
        }
    }

    fn state_converter(&self) -> Result<RowConverter> {
        let mut fields = Vec::new();
        for call in &self.calls {
            for field in call.function.state_fields().map_err(|e| Error::invalid_job(e.to_string()))? {
                fields.push(SortField::new(field.data_type().clone()));
            }
        }
        RowConverter::new(fields).map_err(|e| Error::invalid_job(format!("cannot keep these aggregates' state: {e}")))
    }

    /// Fails if the key, arguments or state cannot be kept: checked when planned.
    pub fn check(&self) -> Result<()> {
        key_converter(&self.input, self.keys)?;
        self.value_converter()?;
        if self.frame.unbounded() {
            self.state_converter()?;
        }
        Ok(())
    }
}

/// A row waiting for the watermark: its time, arrival order, batch and row.
#[derive(Clone, Copy)]
struct Waiting {
    time: Timestamp,
    seq: u64,
    batch: u64,
    row: u32,
}

/// What one key keeps.
#[derive(Default)]
struct PerKey {
    /// The rows passed by the watermark that later frames still need: time, arguments.
    history: VecDeque<(Timestamp, Box<[u8]>)>,
    /// For an unbounded frame, the accumulators' state over every row passed.
    state: Option<Box<[u8]>>,
    waiting: Vec<Waiting>,
}

/// A batch holding waiting rows, its arguments encoded, and how many still wait.
struct Held {
    rows: RecordBatch,
    values: Option<Rows>,
    waiting: usize,
}

/// A key, and its accumulators' state (both arrow-row encoded).
type KeyState = (Box<[u8]>, Box<[u8]>);

/// A checkpoint's entry.
#[derive(serde::Serialize, serde::Deserialize)]
enum OverEntry {
    /// What a key keeps of the rows passed.
    Key { history: Vec<(Timestamp, Vec<u8>)>, state: Option<Vec<u8>> },
    /// The waiting rows of a key group, as Arrow IPC (their keys are their first columns).
    Waiting { batch: Vec<u8> },
}

/// One worker's OVER aggregation.
pub struct OverAggregate {
    spec: Arc<OverSpec>,
    keys: RowConverter,
    values: Option<RowConverter>,
    states: Option<RowConverter>,
    by_key: FxHashMap<Box<[u8]>, PerKey>,
    /// The keys with waiting rows.
    waiting_keys: Vec<Box<[u8]>>,
    held: BTreeMap<u64, Held>,
    next_batch: u64,
    seq: u64,
    watermark: Timestamp,
    max_parallelism: u16,
}

/// The rows passed by one watermark, gathered across keys: each emitted row is a
/// group, whose frame's argument rows are listed with it.
#[derive(Default)]
struct Firing<'a> {
    emitted: Vec<(u64, u32)>,
    frame_values: Vec<&'a [u8]>,
    frame_groups: Vec<usize>,
    /// Unbounded frames: the state a group starts from.
    priors: Vec<(usize, &'a [u8])>,
    /// Unbounded frames: the group whose state is a key's next (after the emitted ones).
    next_states: Vec<(Box<[u8]>, usize)>,
}

impl OverAggregate {
    /// An aggregation with nothing kept.
    pub fn new(spec: Arc<OverSpec>, max_parallelism: u16) -> Result<Self> {
        Ok(OverAggregate {
            keys: key_converter(&spec.input, spec.keys)?,
            values: spec.value_converter()?,
            states: match spec.frame.unbounded() {
                true => Some(spec.state_converter()?),
                false => None,
            },
            spec,
            by_key: FxHashMap::default(),
            waiting_keys: Vec::new(),
            held: BTreeMap::new(),
            next_batch: 0,
            seq: 0,
            watermark: MIN_TIMESTAMP,
            max_parallelism,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
    }

    /// Holds `batch`'s rows until the watermark passes them (late rows dropped).
    fn hold(&mut self, batch: RecordBatch) -> Result<()> {
        let keys = self.keys.convert_columns(&batch.columns()[..self.spec.keys]).map_err(|e| self.error(e))?;
        let times = millis(batch.column(self.spec.time()))?;
        let id = self.next_batch;
        let mut waiting = 0;
        let mut late = 0;
        for (row, time) in times.iter().enumerate() {
            let Some(time) = *time else { continue };
            if time <= self.watermark {
                late += 1;
                continue;
            }
            let key = keys.row(row);
            let per_key = match self.by_key.get_mut(key.data()) {
                Some(per_key) => per_key,
                None => self.by_key.entry(Box::from(key.data())).or_default(),
            };
            if per_key.waiting.is_empty() {
                self.waiting_keys.push(Box::from(key.data()));
            }
            per_key.waiting.push(Waiting { time, seq: self.seq, batch: id, row: row as u32 });
            self.seq += 1;
            waiting += 1;
        }
        if late > 0 {
            tracing::debug!(operator = %self.spec.name, late, "late rows dropped");
        }
        if waiting > 0 {
            let values = match &self.values {
                Some(converter) => Some(
                    converter
                        .convert_columns(&batch.columns()[self.spec.keys + 1..self.spec.own()])
                        .map_err(|e| self.error(e))?,
                ),
                None => None,
            };
            self.held.insert(id, Held { rows: batch, values, waiting });
            self.next_batch += 1;
        }
        Ok(())
    }

    /// Emits every row the watermark `watermark` passes, with its aggregates.
    fn fire(&mut self, watermark: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let watermark = self.watermark;
        let frame = self.spec.frame;
        // The rows passed, per key in time order, taken out of waiting.
        let mut passed: Vec<(Box<[u8]>, Vec<Waiting>)> = Vec::new();
        let mut still = Vec::new();
        for key in std::mem::take(&mut self.waiting_keys) {
            let per_key = self.by_key.get_mut(&key).expect("invariant: a waiting key is kept");
            let (mut ready, rest): (Vec<Waiting>, Vec<Waiting>) =
                per_key.waiting.iter().partition(|w| w.time <= watermark);
            per_key.waiting = rest;
            if !per_key.waiting.is_empty() {
                still.push(key.clone());
            }
            if !ready.is_empty() {
                ready.sort_unstable_by_key(|w| (w.time, w.seq));
                passed.push((key, ready));
            }
        }
        self.waiting_keys = still;
        if passed.is_empty() {
            return Ok(());
        }
        let value_of = |held: &BTreeMap<u64, Held>, w: &Waiting| -> Box<[u8]> {
            match &held[&w.batch].values {
                Some(values) => Box::from(values.row(w.row as usize).data()),
                None => Box::from(&[][..]),
            }
        };
        // Each key's rows before these and these, as (time, arguments).
        let mut lists: Vec<Vec<(Timestamp, Box<[u8]>)>> = Vec::with_capacity(passed.len());
        let mut firsts: Vec<usize> = Vec::with_capacity(passed.len());
        for (key, ready) in &passed {
            let per_key = &self.by_key[key];
            let mut list: Vec<(Timestamp, Box<[u8]>)> = match frame.unbounded() {
                true => Vec::new(),
                false => per_key.history.iter().cloned().collect(),
            };
            firsts.push(list.len());
            list.extend(ready.iter().map(|w| (w.time, value_of(&self.held, w))));
            lists.push(list);
        }
        let mut firing = Firing::default();
        for (k, ((key, ready), list)) in passed.iter().zip(&lists).enumerate() {
            let first = firsts[k];
            for (j, w) in ready.iter().enumerate() {
                let at = first + j;
                let group = firing.emitted.len();
                firing.emitted.push((w.batch, w.row));
                // The frame's last row: this one, or its last peer.
                let mut end = at;
                if frame.peers() {
                    while end + 1 < list.len() && list[end + 1].0 == list[at].0 {
                        end += 1;
                    }
                }
                let start = match frame {
                    Frame::Rows(n) => at.saturating_sub(n),
                    Frame::Range(length) => list.partition_point(|(t, _)| *t < list[at].0 - length),
                    Frame::UnboundedRows | Frame::UnboundedRange => 0,
                };
                for (_, values) in &list[start..=end] {
                    firing.frame_values.push(values);
                    firing.frame_groups.push(group);
                }
                if let Some(state) = self.by_key[key].state.as_deref().filter(|_| frame.unbounded()) {
                    firing.priors.push((group, state));
                }
            }
        }
        if frame.unbounded() {
            // One more group per key: every row, whose state the key keeps.
            for ((key, _), list) in passed.iter().zip(&lists) {
                let group = firing.emitted.len() + firing.next_states.len();
                for (_, values) in list {
                    firing.frame_values.push(values);
                    firing.frame_groups.push(group);
                }
                if let Some(state) = self.by_key[key].state.as_deref() {
                    firing.priors.push((group, state));
                }
                firing.next_states.push((key.clone(), group));
            }
        }
        let (results, next_states) = self.aggregate(&firing)?;
        let output = self.output(&firing.emitted, results)?;
        drop(firing);

        // What the keys keep now.
        for (key, state) in next_states {
            self.by_key.get_mut(&key).expect("invariant: kept").state = Some(state);
        }
        for ((key, ready), list) in passed.into_iter().zip(lists) {
            let per_key = self.by_key.get_mut(&key).expect("invariant: kept");
            if !frame.unbounded() {
                let keep_from = match frame {
                    Frame::Rows(n) => list.len().saturating_sub(n),
                    // Later rows are after the watermark: their frames start after this.
                    Frame::Range(length) => list.partition_point(|(t, _)| *t < watermark - length),
                    _ => list.len(),
                };
                per_key.history = list.into_iter().skip(keep_from).collect();
            }
            for w in ready {
                let held = self.held.get_mut(&w.batch).expect("invariant: held");
                held.waiting -= 1;
                if held.waiting == 0 {
                    self.held.remove(&w.batch);
                }
            }
            if per_key.waiting.is_empty() && per_key.history.is_empty() && per_key.state.is_none() {
                self.by_key.remove(&key);
            }
        }
        if output.num_rows() > 0 {
            out.emit(output)?;
        }
        Ok(())
    }

    /// The aggregates of each emitted group, and the keys' next states.
    fn aggregate(&self, firing: &Firing) -> Result<(Vec<ArrayRef>, Vec<KeyState>)> {
        let groups = firing.emitted.len() + firing.next_states.len();
        let values: Vec<ArrayRef> = match &self.values {
            Some(converter) => {
                let parser = converter.parser();
                converter
                    .convert_rows(firing.frame_values.iter().map(|v| parser.parse(v)))
                    .map_err(|e| self.error(e))?
            }
            None => Vec::new(),
        };
        let first = self.spec.keys + 1;
        let mut accumulators: Vec<Box<dyn GroupsAccumulator>> =
            self.spec.calls.iter().map(AggregateCall::accumulator).collect::<Result<_>>()?;
        if !firing.priors.is_empty() {
            let states = self.states.as_ref().expect("invariant: unbounded frames keep states");
            let parser = states.parser();
            let columns =
                states.convert_rows(firing.priors.iter().map(|(_, s)| parser.parse(s))).map_err(|e| self.error(e))?;
            let prior_groups: Vec<usize> = firing.priors.iter().map(|(g, _)| *g).collect();
            merge_into(&self.spec.calls, &mut accumulators, &columns, &prior_groups, groups)
                .map_err(|e| self.error(e))?;
        }
        for (call, accumulator) in self.spec.calls.iter().zip(accumulators.iter_mut()) {
            let args: Vec<ArrayRef> = call.args.iter().map(|&i| values[i - first].clone()).collect();
            accumulator.update_batch(&args, &firing.frame_groups, None, groups).map_err(|e| self.error(e))?;
        }
        // `state` and `evaluate` each consume the accumulators: the state goes into a
        // second set, which gives the results.
        let mut state_columns = Vec::new();
        for accumulator in &mut accumulators {
            state_columns.extend(accumulator.state(EmitTo::All).map_err(|e| self.error(e))?);
        }
        let mut next_states = Vec::new();
        if let Some(states) = &self.states {
            let rows = states.convert_columns(&state_columns).map_err(|e| self.error(e))?;
            for (key, group) in &firing.next_states {
                next_states.push((key.clone(), Box::from(rows.row(*group).data())));
            }
        }
        let mut results: Vec<Box<dyn GroupsAccumulator>> =
            self.spec.calls.iter().map(AggregateCall::accumulator).collect::<Result<_>>()?;
        let all: Vec<usize> = (0..groups).collect();
        merge_into(&self.spec.calls, &mut results, &state_columns, &all, groups).map_err(|e| self.error(e))?;
        let mut columns = Vec::with_capacity(results.len());
        for accumulator in &mut results {
            let column = accumulator.evaluate(EmitTo::First(firing.emitted.len())).map_err(|e| self.error(e))?;
            columns.push(column);
        }
        Ok((columns, next_states))
    }

    /// The emitted rows' own columns, then their aggregates.
    fn output(&self, emitted: &[(u64, u32)], aggregates: Vec<ArrayRef>) -> Result<RecordBatch> {
        let mut used: Vec<u64> = Vec::new();
        let mut numbered: FxHashMap<u64, usize> = FxHashMap::default();
        let indices: Vec<(usize, usize)> = emitted
            .iter()
            .map(|(batch, row)| {
                let number = *numbered.entry(*batch).or_insert_with(|| {
                    used.push(*batch);
                    used.len() - 1
                });
                (number, *row as usize)
            })
            .collect();
        let width = self.spec.input.fields().len();
        let mut columns = Vec::with_capacity(self.spec.schema.fields().len());
        for column in self.spec.own()..width {
            let arrays: Vec<&dyn Array> = used.iter().map(|b| self.held[b].rows.column(column).as_ref()).collect();
            columns.push(arrow_select::interleave::interleave(&arrays, &indices).map_err(|e| self.error(e))?);
        }
        columns.extend(aggregates);
        results_batch(&self.spec.schema, columns, emitted.len()).map_err(|e| self.error(e))
    }
}

impl Operator for OverAggregate {
    type In = RecordBatch;
    type Out = RecordBatch;

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output<RecordBatch>) -> Result<()> {
        self.hold(batch)
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        self.fire(watermark, out)
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        // The waiting rows of each key group, under one of its keys.
        let mut groups: BTreeMap<u16, KeyGroupRows> = BTreeMap::new();
        let held: Vec<u64> = self.held.keys().copied().collect();
        let number: FxHashMap<u64, usize> = held.iter().enumerate().map(|(i, b)| (*b, i)).collect();
        for (key, per_key) in &self.by_key {
            if !per_key.history.is_empty() || per_key.state.is_some() {
                let history = per_key.history.iter().map(|(t, v)| (*t, v.to_vec())).collect();
                let entry = OverEntry::Key { history, state: per_key.state.as_ref().map(|s| s.to_vec()) };
                state.keyed(&key.to_vec(), &entry)?;
            }
            if !per_key.waiting.is_empty() {
                let group = key_group_for_hash(hash_key(key.as_ref()), self.max_parallelism).0;
                let rows = groups.entry(group).or_insert_with(|| (key.to_vec(), Vec::new()));
                rows.1.extend(per_key.waiting.iter().map(|w| (number[&w.batch], w.row as usize)));
            }
        }
        let arrays = |column: usize| -> Vec<&dyn Array> {
            held.iter().map(|b| self.held[b].rows.column(column).as_ref()).collect()
        };
        for (_, (key, rows)) in groups {
            let columns = (0..self.spec.input.fields().len())
                .map(|c| arrow_select::interleave::interleave(&arrays(c), &rows))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.error(e))?;
            let batch = RecordBatch::try_new(self.spec.input.clone(), columns).map_err(|e| self.error(e))?;
            state.keyed(&key, &OverEntry::Waiting { batch: ipc_encode(&batch)? })?;
        }
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.watermark = state.clocks::<Timestamp>()?.into_iter().min().unwrap_or(MIN_TIMESTAMP);
        let mut waiting = Vec::new();
        state.for_each_keyed(|key: Vec<u8>, entry: OverEntry| {
            match entry {
                OverEntry::Key { history, state } => {
                    let per_key = self.by_key.entry(key.into()).or_default();
                    per_key.history = history.into_iter().map(|(t, v)| (t, v.into())).collect();
                    per_key.state = state.map(Into::into);
                }
                OverEntry::Waiting { batch } => waiting.push(ipc_decode(&batch, &self.spec.name)?),
            }
            Ok(())
        })?;
        for batch in waiting {
            let batch = RecordBatch::try_new(self.spec.input.clone(), batch.columns().to_vec())
                .map_err(|e| Error::checkpoint(&self.spec.name, e.to_string()))?;
            self.hold(batch)?;
        }
        Ok(())
    }
}
