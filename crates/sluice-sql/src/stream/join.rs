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
//! Outer joins (`LEFT`, `RIGHT`, `FULL`) keep how many rows of the other side each row
//! of an outer side matched (the condition besides the keys' equality is evaluated in
//! the join, as it decides what matches). A regular outer join's results are updating,
//! as Flink's: a row that matches nothing leaves padded with NULLs (`+I`), and is taken
//! back (`-D`) when its first match arrives. An interval outer join is append-only: a
//! row that matched nothing leaves padded once the watermark has passed its last chance.
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
use crate::changelog::{RowKind, ROW_KIND};
use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array, Int8Array, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow_row::RowConverter;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion_physical_expr::PhysicalExpr;
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
    /// Whether the left side's rows that match nothing are kept (`LEFT`, `FULL`).
    pub left_outer: bool,
    /// Whether the right side's rows that match nothing are kept (`RIGHT`, `FULL`).
    pub right_outer: bool,
    /// The join condition besides the keys' equality, over the output's columns,
    /// evaluated in the join (outer joins); `None` when it is evaluated after it.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

impl JoinSpec {
    /// Whether its results are updating (a regular outer join's).
    pub fn updating(&self) -> bool {
        (self.left_outer || self.right_outer) && self.interval.is_none() && self.window_end.is_none()
    }

    fn outer(&self, which: Which) -> bool {
        match which {
            Which::Left => self.left_outer,
            Which::Right => self.right_outer,
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.name.clone(), message: e.to_string() }
    }

    /// The output rows of pairs: `mine` of `batch` (of side `which`), each with the
    /// kept row `theirs` of `other`.
    fn pairs(
        &self,
        which: Which,
        batch: &RecordBatch,
        mine: &[u32],
        other: &Side,
        theirs: &[(usize, usize)],
    ) -> Result<RecordBatch> {
        let this_columns = take(&batch.columns()[self.keys..], mine).map_err(|e| self.error(e))?;
        let other_columns = other.interleave(self.keys, theirs).map_err(|e| self.error(e))?;
        let columns = match which {
            Which::Left => [this_columns, other_columns].concat(),
            Which::Right => [other_columns, this_columns].concat(),
        };
        let options = RecordBatchOptions::new().with_row_count(Some(mine.len()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options).map_err(|e| self.error(e))
    }

    /// Rows of side `which` (its `columns`, `rows` of them), the other side's NULL.
    fn padded(&self, which: Which, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
        let left = self.left.fields().len() - self.keys;
        let (nulls, at) = match which {
            Which::Left => (&self.schema.fields()[left..], columns.len()),
            Which::Right => (&self.schema.fields()[..left], 0),
        };
        let mut all = columns;
        let null_columns: Vec<ArrayRef> =
            nulls.iter().map(|f| arrow_array::new_null_array(f.data_type(), rows)).collect();
        all.splice(at..at, null_columns);
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), all, &options).map_err(|e| self.error(e))
    }

    /// Kept rows of side `which` (as (batch, row) of `side`), padded.
    fn padded_kept(&self, which: Which, side: &Side, rows: &[(usize, usize)]) -> Result<RecordBatch> {
        let columns = side.interleave(self.keys, rows).map_err(|e| self.error(e))?;
        self.padded(which, columns, rows.len())
    }
}

/// `indices` of each of `columns`.
fn take(columns: &[ArrayRef], indices: &[u32]) -> std::result::Result<Vec<ArrayRef>, arrow_schema::ArrowError> {
    let indices = UInt32Array::from(indices.to_vec());
    columns.iter().map(|c| arrow_select::take::take(c, &indices, None)).collect()
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
    /// On an outer side, how many rows of the other side each row matched.
    matches: Vec<u32>,
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
    /// The columns after the key of kept rows (batch, row).
    fn interleave(
        &self,
        keys: usize,
        rows: &[(usize, usize)],
    ) -> std::result::Result<Vec<ArrayRef>, arrow_schema::ArrowError> {
        // Numbered by the batches used, so that interleaving reads those only.
        let mut used: Vec<usize> = Vec::new();
        let mut numbered: FxHashMap<usize, usize> = FxHashMap::default();
        let indices: Vec<(usize, usize)> = rows
            .iter()
            .map(|&(kept, row)| {
                let number = *numbered.entry(kept).or_insert_with(|| {
                    used.push(kept);
                    used.len() - 1
                });
                (number, row)
            })
            .collect();
        let width = self.batches.front().map_or(0, |kept| kept.rows.num_columns());
        (keys..width)
            .map(|column| {
                let arrays: Vec<&dyn Array> =
                    used.iter().map(|&b| self.batches[b].rows.column(column).as_ref()).collect();
                arrow_select::interleave::interleave(&arrays, &indices)
            })
            .collect()
    }

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
        matches: Vec<u32>,
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
        let (rows, matches) = if kept { (batch, matches) } else { (batch.slice(0, 0), Vec::new()) };
        self.batches.push_back(Kept { arrived, end: last_end, rows, matches });
    }

    /// Drops the batches first kept, while `done` holds for them; returns them.
    fn drop_front(&mut self, done: impl Fn(&Kept) -> bool) -> Vec<Kept> {
        let mut dropped = Vec::new();
        while self.batches.front().is_some_and(&done) {
            let kept = self.batches.pop_front().expect("invariant: there is a front");
            self.stale += kept.rows.num_rows();
            dropped.push(kept);
        }
        self.first += dropped.len() as u64;
        dropped
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
    /// their index entries once they outnumber the rows kept; returns the batches.
    fn expire_interval(&mut self, watermark: Timestamp) -> Vec<Kept> {
        let dropped = self.drop_front(|kept| kept.end == Timestamp::MIN || kept.end - 1 <= watermark);
        let kept: usize = self.batches.iter().map(|b| b.rows.num_rows()).sum();
        if self.stale > kept {
            self.clean_index();
        }
        dropped
    }

    /// Drops the batches that arrived at or before `before`.
    fn expire(&mut self, before: Timestamp) {
        if !self.drop_front(|kept| kept.arrived <= before).is_empty() {
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

impl Which {
    fn other(self) -> Which {
        match self {
            Which::Left => Which::Right,
            Which::Right => Which::Left,
        }
    }
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
    /// The output's schema: the spec's, with the row kind when updating.
    output: SchemaRef,
    left: Side,
    right: Side,
    clock: fn() -> Timestamp,
    swept: Timestamp,
    max_parallelism: u16,
}

impl Join {
    /// A join with nothing kept.
    pub fn new(spec: Arc<JoinSpec>, max_parallelism: u16) -> Result<Self> {
        let mut fields: Vec<Field> = spec.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        if spec.updating() {
            fields.push(Field::new(ROW_KIND, DataType::Int8, false));
        }
        Ok(Join {
            output: Arc::new(Schema::new(fields)),
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
        let spec = self.spec.clone();
        let keys = spec.keys;
        let (this, other) = match which {
            Which::Left => (&mut self.left, &self.right),
            Which::Right => (&mut self.right, &self.left),
        };
        let encoded = this.converter.convert_columns(&batch.columns()[..keys]).map_err(|e| spec.error(e))?;
        let nulls: Vec<bool> =
            (0..batch.num_rows()).map(|row| batch.columns()[..keys].iter().any(|c| c.is_null(row))).collect();
        let rows: Vec<Option<&[u8]>> =
            encoded.iter().zip(&nulls).map(|(row, null)| (!null).then_some(row.data())).collect();
        // The pairs: this batch's row, and the other side's kept (batch, row).
        let mut mine: Vec<u32> = Vec::new();
        let mut theirs: Vec<(usize, usize)> = Vec::new();
        for (row, key) in rows.iter().enumerate() {
            let Some(matches) = key.and_then(|key| other.index.get(key)) else { continue };
            for &(id, at) in matches {
                // An entry of a dropped batch, not cleaned yet.
                let Some(kept) = id.checked_sub(other.first) else { continue };
                mine.push(row as u32);
                theirs.push((kept as usize, at as usize));
            }
        }
        let mut joined = match mine.is_empty() {
            true => None,
            false => Some(spec.pairs(which, &batch, &mine, other, &theirs)?),
        };
        // The condition besides the keys', where the join decides what matches.
        if let (Some(filter), Some(pairs)) = (&spec.filter, &joined) {
            let keep =
                filter.evaluate(pairs).and_then(|v| v.into_array(pairs.num_rows())).map_err(|e| spec.error(e))?;
            let keep = keep.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| spec.error("a non-boolean ON"))?;
            let kept = |i: &usize| keep.is_valid(*i) && keep.value(*i);
            mine = mine.iter().enumerate().filter(|(i, _)| kept(i)).map(|(_, r)| *r).collect();
            theirs = theirs.iter().enumerate().filter(|(i, _)| kept(i)).map(|(_, p)| *p).collect();
            let filtered = arrow_select::filter::filter_record_batch(pairs, keep).map_err(|e| spec.error(e))?;
            joined = (filtered.num_rows() > 0).then_some(filtered);
        }
        let ends = ends(&spec, which, &batch)?;
        let mut parts: Vec<(RecordBatch, RowKind)> = Vec::new();
        // The other side's rows matched for the first time: their padded row is taken
        // back (a regular outer join), or will not be sent (an interval one).
        let other_side = match which {
            Which::Left => &mut self.right,
            Which::Right => &mut self.left,
        };
        if spec.outer(which.other()) {
            let mut first_matches = Vec::new();
            for &(kept, row) in &theirs {
                let count = &mut other_side.batches[kept].matches[row];
                if *count == 0 {
                    first_matches.push((kept, row));
                }
                *count += 1;
            }
            if spec.updating() && !first_matches.is_empty() {
                parts.push((spec.padded_kept(which.other(), other_side, &first_matches)?, RowKind::Delete));
            }
        }
        if let Some(joined) = joined {
            parts.push((joined, RowKind::Insert));
        }
        let mut matches = Vec::new();
        if spec.outer(which) {
            matches = vec![0u32; batch.num_rows()];
            for &row in &mine {
                matches[row as usize] += 1;
            }
            // Padded now: in a regular join, every row that matched nothing; in an
            // interval join, the rows that can match nothing ever (no key or time).
            let unmatched: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|&r| matches[r as usize] == 0)
                .filter(|&r| {
                    spec.updating()
                        || rows[r as usize].is_none()
                        || ends.as_ref().is_some_and(|e| e[r as usize].is_none())
                })
                .collect();
            if !unmatched.is_empty() {
                let columns = take(&batch.columns()[keys..], &unmatched).map_err(|e| spec.error(e))?;
                parts.push((spec.padded(which, columns, unmatched.len())?, RowKind::Insert));
            }
        }
        let this = match which {
            Which::Left => &mut self.left,
            Which::Right => &mut self.right,
        };
        this.keep(batch.clone(), &rows, ends.as_deref(), spec.window_end.is_some(), now, matches);
        self.emit(parts, out)
    }

    /// Sends `parts`, with their row kinds when the results are updating.
    fn emit(&self, parts: Vec<(RecordBatch, RowKind)>, out: &mut Output<RecordBatch>) -> Result<()> {
        if parts.is_empty() {
            return Ok(());
        }
        let spec = &self.spec;
        let batches: Vec<&RecordBatch> = parts.iter().map(|(b, _)| b).collect();
        let data = arrow_select::concat::concat_batches(&spec.schema, batches).map_err(|e| spec.error(e))?;
        if !spec.updating() {
            return out.emit(data);
        }
        let kinds: Vec<i8> = parts.iter().flat_map(|(b, k)| std::iter::repeat_n(k.code(), b.num_rows())).collect();
        let mut columns = data.columns().to_vec();
        columns.push(Arc::new(Int8Array::from(kinds)));
        out.emit(RecordBatch::try_new(self.output.clone(), columns).map_err(|e| spec.error(e))?)
    }

    fn snapshot_side(&self, which: Which, state: &mut StateWriter) -> Result<()> {
        let side = match which {
            Which::Left => &self.left,
            Which::Right => &self.right,
        };
        let Some(first) = side.batches.front().map(|kept| &kept.rows) else { return Ok(()) };
        let mut fields: Vec<Field> = first.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("__arrived", DataType::Int64, false));
        fields.push(Field::new("__matches", DataType::UInt32, false));
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
            let matches = match kept.matches.is_empty() {
                true => vec![0; kept.rows.num_rows()],
                false => kept.matches.clone(),
            };
            columns.push(Arc::new(UInt32Array::from(matches)));
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

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        if self.spec.window_end.is_some() {
            self.left.expire_windows(watermark);
            self.right.expire_windows(watermark);
        }
        if self.spec.interval.is_some() {
            let mut parts = Vec::new();
            for which in [Which::Left, Which::Right] {
                let side = match which {
                    Which::Left => &mut self.left,
                    Which::Right => &mut self.right,
                };
                let dropped = side.expire_interval(watermark);
                // An outer side's rows that matched nothing leave, padded.
                if self.spec.outer(which) {
                    for kept in dropped {
                        let unmatched: Vec<u32> =
                            (0..kept.rows.num_rows() as u32).filter(|&r| kept.matches[r as usize] == 0).collect();
                        if !unmatched.is_empty() {
                            let columns =
                                take(&kept.rows.columns()[self.spec.keys..], &unmatched).map_err(|e| self.error(e))?;
                            parts.push((self.spec.padded(which, columns, unmatched.len())?, RowKind::Insert));
                        }
                    }
                }
            }
            self.emit(parts, out)?;
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
            let (side, schema) = match entry.side {
                Which::Left => (&mut self.left, &self.spec.left),
                Which::Right => (&mut self.right, &self.spec.right),
            };
            // The side's columns, when each row arrived, and (since outer joins) how
            // many rows each matched.
            let width = schema.fields().len();
            let matches: Vec<u32> = match batch.num_columns() > width + 1 {
                true => batch
                    .column(width + 1)
                    .as_any()
                    .downcast_ref::<UInt32Array>()
                    .map(|a| a.values().to_vec())
                    .ok_or_else(|| Error::checkpoint(&name, "the rows' match counts are not numbers"))?,
                false => vec![0; batch.num_rows()],
            };
            let matches = if spec.outer(entry.side) { matches } else { Vec::new() };
            let arrived = batch
                .column(width)
                .as_any()
                .downcast_ref::<Int64Array>()
                .and_then(|a| a.iter().flatten().max())
                .unwrap_or_default();
            let rows = RecordBatch::try_new(schema.clone(), batch.columns()[..width].to_vec())
                .map_err(|e| Error::checkpoint(&name, e.to_string()))?;
            let encoded = side
                .converter
                .convert_columns(&rows.columns()[..keys])
                .map_err(|e| Error::checkpoint(&name, e.to_string()))?;
            let keys: Vec<Box<[u8]>> = encoded.iter().map(|r| Box::from(r.data())).collect();
            let keys: Vec<Option<&[u8]>> = keys.iter().map(|k| Some(k.as_ref())).collect();
            let ends = ends(&spec, entry.side, &rows)?;
            side.keep(rows.clone(), &keys, ends.as_deref(), spec.window_end.is_some(), arrived, matches);
            Ok(())
        })
    }
}
