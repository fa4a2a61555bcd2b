//! Regular joins: `a JOIN b ON a.k = b.k`, with no time bound, as Flink runs them.
//! Both inputs arrive hash-exchanged by their join key (its columns first, then the
//! side's own columns); every row of each side is kept, and a row joins the rows of
//! the other side kept under its key. An inner join of append-only inputs is
//! append-only: each pair of rows is emitted once, when the second of them arrives.
//!
//! Kept rows are the input batches themselves, indexed by the key's arrow-row
//! encoding, so a batch costs one index insert per row and no copy. With
//! `table.exec.state.ttl`, rows kept for that long (processing time since they
//! arrived, Flink's default for SQL state) are dropped, whole batches at a time.
//!
//! A join whose keys hold the `window_end` of both sides (two window aggregations
//! joined on their windows, Nexmark q5 and q8) is a window join: a window's rows are
//! dropped once the watermark passes its end, as no row of that window can follow.
//!
//! A join whose condition bounds one side's row time by the other's (`r.t BETWEEN
//! l.t - INTERVAL '1' HOUR AND l.t`) is an interval join: a row is dropped once the
//! watermark has passed the last time a row of the other side could match it. The
//! condition itself is evaluated after the join, as any other.
//!
//! Checkpoints hold each side's rows as Arrow IPC, one entry per side and key group,
//! so a job restores at any parallelism.

use super::aggregate::key_converter;
use super::state::{ipc_decode, ipc_encode, KeyGroupRows};
use super::watermark::millis;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow_row::RowConverter;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Output, TwoInputOperator};
use sluice_types::{hash_key, key_group_for_hash, Error, Result, Timestamp};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// What a join computes.
#[derive(Debug)]
pub struct JoinSpec {
    /// The operator's name.
    pub name: String,
    /// How many leading columns of each input are the join key.
    pub keys: usize,
    /// The inputs' schemas: the key's columns, then the side's.
    pub left: SchemaRef,
    /// See `left`.
    pub right: SchemaRef,
    /// The output: the left side's columns, then the right side's.
    pub schema: SchemaRef,
    /// How long rows are kept (milliseconds of processing time).
    pub ttl: Option<i64>,
    /// For a window join (the keys hold both sides' `window_end`), which key column:
    /// a window's rows are dropped once the watermark passes its end.
    pub window_end: Option<usize>,
    /// For an interval join, its time bounds.
    pub interval: Option<Interval>,
}

/// The time bounds of an interval join: a right row at `r` joins a left row at `l`
/// only if `l + lower <= r <= l + upper` (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// The row time's column in the left input, and in the right.
    pub left_time: usize,
    /// See `left_time`.
    pub right_time: usize,
    /// The bounds.
    pub lower: i64,
    /// See `lower`.
    pub upper: i64,
}

impl Interval {
    /// After which watermark a row of `which` side at `time` can join nothing more.
    fn last_match(&self, which: Which, time: i64) -> i64 {
        match which {
            Which::Left => time.saturating_add(self.upper),
            Which::Right => time.saturating_sub(self.lower),
        }
    }
}

/// A batch of kept rows.
struct Kept {
    /// When it arrived (processing time).
    arrived: Timestamp,
    /// In a window join, the last window end of its rows.
    end: Timestamp,
    rows: RecordBatch,
}

/// One side's kept rows.
struct Side {
    /// The batches kept, oldest first; the first has id `first`.
    batches: VecDeque<Kept>,
    first: u64,
    /// The rows of each key, as (batch id, row).
    index: FxHashMap<Box<[u8]>, Vec<(u64, u32)>>,
    /// In a window join, the keys of each window, by its end.
    windows: BTreeMap<Timestamp, Vec<Box<[u8]>>>,
    converter: RowConverter,
    /// Rows dropped whose index entries are still there (an interval join's index is
    /// cleaned when they outnumber the rows kept).
    stale: usize,
}

impl Side {
    fn new(schema: &Schema, keys: usize) -> Result<Self> {
        Ok(Side {
            batches: VecDeque::new(),
            first: 0,
            index: FxHashMap::default(),
            windows: BTreeMap::new(),
            converter: key_converter(schema, keys)?,
            stale: 0,
        })
    }

    /// Keeps `batch`, whose rows' keys are `rows` (`None`: a NULL in the key, which
    /// joins nothing) and, in a window or interval join, after which time (plus a
    /// millisecond) each row can join nothing more, `ends`; in a window join the end
    /// is the key's window's (`by_window`).
    fn keep(
        &mut self,
        batch: RecordBatch,
        rows: &[Option<&[u8]>],
        ends: Option<&[Option<i64>]>,
        by_window: bool,
        arrived: Timestamp,
    ) {
        let id = self.first + self.batches.len() as u64;
        let mut kept = false;
        let mut last_end = Timestamp::MIN;
        for (row, key) in rows.iter().enumerate() {
            let Some(key) = key else { continue };
            // A row without a row time joins nothing in an interval join.
            if !by_window && ends.is_some_and(|ends| ends[row].is_none()) {
                continue;
            }
            kept = true;
            match self.index.get_mut(*key) {
                Some(list) => list.push((id, row as u32)),
                None => {
                    self.index.insert(Box::from(*key), vec![(id, row as u32)]);
                    // The window end is part of the key: a key is in one window.
                    if let Some(end) = ends.filter(|_| by_window).and_then(|ends| ends[row]) {
                        self.windows.entry(end).or_default().push(Box::from(*key));
                    }
                }
            }
            if let Some(end) = ends.and_then(|ends| ends[row]) {
                last_end = last_end.max(end);
            }
        }
        // A batch with nothing to keep stays as an empty placeholder: ids stay in order.
        let rows = if kept { batch } else { batch.slice(0, 0) };
        self.batches.push_back(Kept { arrived, end: last_end, rows });
    }

    /// Drops the batches first kept, while `done` holds for them.
    fn drop_front(&mut self, done: impl Fn(&Kept) -> bool) -> bool {
        let mut dropped = 0;
        while self.batches.front().is_some_and(&done) {
            let kept = self.batches.pop_front().expect("invariant: there is a front");
            self.stale += kept.rows.num_rows();
            dropped += 1;
        }
        self.first += dropped;
        dropped > 0
    }

    /// Removes index entries of dropped batches.
    fn clean_index(&mut self) {
        let first = self.first;
        self.index.retain(|_, rows| {
            rows.retain(|(id, _)| *id >= first);
            !rows.is_empty()
        });
        self.stale = 0;
    }

    /// In an interval join: drops the batches whose rows can join nothing more, and
    /// their index entries once they outnumber the rows kept.
    fn expire_interval(&mut self, watermark: Timestamp) {
        self.drop_front(|kept| kept.end == Timestamp::MIN || kept.end - 1 <= watermark);
        let kept: usize = self.batches.iter().map(|b| b.rows.num_rows()).sum();
        if self.stale > kept {
            self.clean_index();
        }
    }

    /// Drops the batches that arrived at or before `before`.
    fn expire(&mut self, before: Timestamp) {
        if self.drop_front(|kept| kept.arrived <= before) {
            self.clean_index();
        }
    }

    /// In a window join: drops the rows of the windows the watermark has passed (their
    /// keys first, then the batches holding nothing else).
    fn expire_windows(&mut self, watermark: Timestamp) {
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() - 1 > watermark {
                break;
            }
            for key in entry.remove() {
                self.index.remove(&key);
            }
        }
        self.drop_front(|kept| kept.end == Timestamp::MIN || kept.end - 1 <= watermark);
    }
}

/// Which side a batch or an entry belongs to.
#[derive(Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Which {
    Left,
    Right,
}

/// A checkpoint's entry: one side's rows of one key group.
#[derive(serde::Serialize, serde::Deserialize)]
struct SideEntry {
    side: Which,
    /// An Arrow IPC stream: the side's columns, then when each row arrived.
    batch: Vec<u8>,
}

/// In a window or interval join, after which time (plus a millisecond) each row of
/// `batch`, of side `which`, can join nothing more.
fn ends(spec: &JoinSpec, which: Which, batch: &RecordBatch) -> Result<Option<Vec<Option<i64>>>> {
    if let Some(column) = spec.window_end {
        return Ok(Some(millis(batch.column(column))?));
    }
    let Some(interval) = spec.interval else { return Ok(None) };
    let column = match which {
        Which::Left => interval.left_time,
        Which::Right => interval.right_time,
    };
    let times = millis(batch.column(column))?;
    Ok(Some(times.into_iter().map(|t| t.map(|t| interval.last_match(which, t).saturating_add(1))).collect()))
}


/// One worker's join.
pub struct Join {
    spec: Arc<JoinSpec>,
    left: Side,
    right: Side,
    clock: fn() -> Timestamp,
    swept: Timestamp,
    max_parallelism: u16,
}

impl Join {
    /// A join with nothing kept.
    pub fn new(spec: Arc<JoinSpec>, max_parallelism: u16) -> Result<Self> {
        Ok(Join {
            left: Side::new(&spec.left, spec.keys)?,
            right: Side::new(&spec.right, spec.keys)?,
            spec,
            clock: sluice_runtime::now_millis,
            swept: Timestamp::MIN,
            max_parallelism,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
    }

    /// Joins a batch of one side with the other side's kept rows, then keeps it.
    fn process(&mut self, which: Which, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let now = (self.clock)();
        let keys = self.spec.keys;
        let (this, other) = match which {
            Which::Left => (&mut self.left, &self.right),
            Which::Right => (&mut self.right, &self.left),
        };
        let encoded = this
            .converter
            .convert_columns(&batch.columns()[..keys])
            .map_err(|e| Error::Operator { operator: self.spec.name.clone(), message: e.to_string() })?;
        let nulls: Vec<bool> =
            (0..batch.num_rows()).map(|row| batch.columns()[..keys].iter().any(|c| c.is_null(row))).collect();
        let rows: Vec<Option<&[u8]>> =
            encoded.iter().zip(&nulls).map(|(row, null)| (!null).then_some(row.data())).collect();
        // The pairs: this batch's row, and the other side's (batch, row).
        let mut mine: Vec<u32> = Vec::new();
        // The other side's batches holding matches, numbered in `used` as `theirs`
        // refers to them: interleaving reads those, not every batch kept.
        let mut theirs: Vec<(usize, usize)> = Vec::new();
        let mut used: Vec<usize> = Vec::new();
        let mut numbered: FxHashMap<usize, usize> = FxHashMap::default();
        for (row, key) in rows.iter().enumerate() {
            let Some(matches) = key.and_then(|key| other.index.get(key)) else { continue };
            for &(id, at) in matches {
                // An entry of a dropped batch, not cleaned yet.
                let Some(kept) = id.checked_sub(other.first) else { continue };
                let kept = kept as usize;
                let number = *numbered.entry(kept).or_insert_with(|| {
                    used.push(kept);
                    used.len() - 1
                });
                mine.push(row as u32);
                theirs.push((number, at as usize));
            }
        }
        let joined =
            match mine.is_empty() {
                true => None,
                false => {
                    let indices = UInt32Array::from(mine);
                    let this_columns: Vec<ArrayRef> = batch.columns()[keys..]
                        .iter()
                        .map(|c| arrow_select::take::take(c, &indices, None))
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|e| Error::Operator { operator: self.spec.name.clone(), message: e.to_string() })?;
                    let width = other.batches.front().map_or(0, |kept| kept.rows.num_columns());
                    let mut other_columns = Vec::new();
                    for column in keys..width {
                        let arrays: Vec<&dyn Array> =
                            used.iter().map(|&b| other.batches[b].rows.column(column).as_ref()).collect();
                        other_columns.push(arrow_select::interleave::interleave(&arrays, &theirs).map_err(|e| {
                            Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
                        })?);
                    }
                    let columns = match which {
                        Which::Left => [this_columns, other_columns].concat(),
                        Which::Right => [other_columns, this_columns].concat(),
                    };
                    Some(columns)
                }
            };
        let ends = ends(&self.spec, which, &batch)?;
        this.keep(batch.clone(), &rows, ends.as_deref(), self.spec.window_end.is_some(), now);
        if let Some(columns) = joined {
            let rows = columns.first().map_or(0, |c| c.len());
            let options = RecordBatchOptions::new().with_row_count(Some(rows));
            let batch = RecordBatch::try_new_with_options(self.spec.schema.clone(), columns, &options)
                .map_err(|e| self.error(e))?;
            out.emit(batch)?;
        }
        Ok(())
    }

    fn snapshot_side(&self, which: Which, state: &mut StateWriter) -> Result<()> {
        let side = match which {
            Which::Left => &self.left,
            Which::Right => &self.right,
        };
        let Some(first) = side.batches.front().map(|kept| &kept.rows) else { return Ok(()) };
        let mut fields: Vec<Field> = first.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("__arrived", DataType::Int64, false));
        let schema = Arc::new(Schema::new(fields));
        // The rows of each key group, as (batch, row), under one of its keys.
        let mut groups: BTreeMap<u16, KeyGroupRows> = BTreeMap::new();
        for (key, rows) in &side.index {
            let group = key_group_for_hash(hash_key(key.as_ref()), self.max_parallelism).0;
            let entry = groups.entry(group).or_insert_with(|| (key.to_vec(), Vec::new()));
            entry.1.extend(rows.iter().map(|(id, row)| ((id - side.first) as usize, *row as usize)));
        }
        // All kept rows in one batch, with when each arrived; each key group's rows
        // taken from it.
        let mut offsets = Vec::with_capacity(side.batches.len());
        let mut parts = Vec::with_capacity(side.batches.len());
        let mut total = 0;
        for kept in &side.batches {
            offsets.push(total);
            total += kept.rows.num_rows();
            let mut columns = kept.rows.columns().to_vec();
            columns.push(Arc::new(Int64Array::from(vec![kept.arrived; kept.rows.num_rows()])));
            parts.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| self.error(e))?);
        }
        let all = arrow_select::concat::concat_batches(&schema, &parts).map_err(|e| self.error(e))?;
        for (_, (key, rows)) in groups {
            let indices = UInt32Array::from_iter_values(rows.iter().map(|(b, r)| (offsets[*b] + r) as u32));
            let batch = arrow_select::take::take_record_batch(&all, &indices).map_err(|e| self.error(e))?;
            state.keyed(&key, &SideEntry { side: which, batch: ipc_encode(&batch)? })?;
        }
        Ok(())
    }
}

impl TwoInputOperator for Join {
    type Left = RecordBatch;
    type Right = RecordBatch;
    type Out = RecordBatch;

    fn process_left(&mut self, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        self.process(Which::Left, batch, out)
    }

    fn process_right(&mut self, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        self.process(Which::Right, batch, out)
    }

    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut Output<RecordBatch>) -> Result<()> {
        if self.spec.window_end.is_some() {
            self.left.expire_windows(watermark);
            self.right.expire_windows(watermark);
        }
        if self.spec.interval.is_some() {
            self.left.expire_interval(watermark);
            self.right.expire_interval(watermark);
        }
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, _out: &mut Output<RecordBatch>) -> Result<()> {
        let Some(ttl) = self.spec.ttl else { return Ok(()) };
        if now.saturating_sub(self.swept) >= (ttl / 4).max(1) {
            self.swept = now;
            self.left.expire(now - ttl);
            self.right.expire(now - ttl);
        }
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.snapshot_side(Which::Left, state)?;
        self.snapshot_side(Which::Right, state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        let keys = self.spec.keys;
        let spec = self.spec.clone();
        let name = self.spec.name.clone();
        state.for_each_keyed(|_: Vec<u8>, entry: SideEntry| {
            let batch = ipc_decode(&entry.batch, &name)?;
            let width = batch.num_columns() - 1;
            let arrived = batch
                .column(width)
                .as_any()
                .downcast_ref::<Int64Array>()
                .and_then(|a| a.iter().flatten().max())
                .unwrap_or_default();
            let (side, schema) = match entry.side {
                Which::Left => (&mut self.left, &self.spec.left),
                Which::Right => (&mut self.right, &self.spec.right),
            };
            let rows = RecordBatch::try_new(schema.clone(), batch.columns()[..width].to_vec())
                .map_err(|e| Error::checkpoint(&name, e.to_string()))?;
            let encoded = side
                .converter
                .convert_columns(&rows.columns()[..keys])
                .map_err(|e| Error::checkpoint(&name, e.to_string()))?;
            let keys: Vec<Box<[u8]>> = encoded.iter().map(|r| Box::from(r.data())).collect();
            let keys: Vec<Option<&[u8]>> = keys.iter().map(|k| Some(k.as_ref())).collect();
            let ends = ends(&spec, entry.side, &rows)?;
            side.keep(rows.clone(), &keys, ends.as_deref(), spec.window_end.is_some(), arrived);
            Ok(())
        })
    }
}
