//! Event-time temporal joins: `JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON
//! o.currency = r.currency`, where `rates` is a versioned table (a primary key, and a
//! row time: each row is the key's version from that time on). Each row of the left
//! side joins the version of its key valid at its time: the latest at or before it. A
//! left row waits until the watermark (of both sides) passes its time, as a version
//! valid then may still arrive; then it leaves, joined, or padded with NULLs in a `LEFT
//! JOIN`, or not at all. The output is append-only and keeps the left side's row time.
//!
//! Both sides arrive keyed by the join key. Each key keeps its waiting left rows, and
//! the versions a left row may still need: those after the watermark, and the latest
//! at or before it. Rows are kept in arrow-row's byte encoding, and checkpointed per key.

use super::aggregate::key_converter;
use super::watermark::millis;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_row::{RowConverter, SortField};
use arrow_schema::SchemaRef;
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Output, TwoInputOperator};
use sluice_types::{Error, Result, Timestamp, MIN_TIMESTAMP};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a temporal join computes.
#[derive(Debug)]
pub struct TemporalJoinSpec {
    /// The operator's name.
    pub name: String,
    /// How many leading columns of each input are the join key.
    pub keys: usize,
    /// The inputs' schemas: the key's columns, then the side's.
    pub left: SchemaRef,
    /// See `left`.
    pub right: SchemaRef,
    /// The row time's column in each input.
    pub left_time: usize,
    /// See `left_time`.
    pub right_time: usize,
    /// The right input's columns the output holds, in order.
    pub right_output: Vec<usize>,
    /// Whether a left row without a version is kept, padded (`LEFT JOIN`).
    pub left_outer: bool,
    /// The output: the left side's columns, then the versioned table's.
    pub schema: SchemaRef,
}

impl TemporalJoinSpec {
    fn left_converter(&self) -> Result<RowConverter> {
        converter(self.left.fields()[self.keys..].iter().map(|f| f.data_type().clone()))
    }
    fn right_converter(&self) -> Result<RowConverter> {
        converter(self.right_output.iter().map(|&i| self.right.field(i).data_type().clone()))
    }
    /// Fails if the rows cannot be kept: checked when the job is planned.
    pub fn check(&self) -> Result<()> {
        key_converter(&self.left, self.keys)?;
        self.left_converter()?;
        self.right_converter()?;
        Ok(())
    }
}

fn converter(types: impl Iterator<Item = arrow_schema::DataType>) -> Result<RowConverter> {
    RowConverter::new(types.map(SortField::new).collect())
        .map_err(|e| Error::invalid_job(format!("cannot keep the rows of a temporal join: {e}")))
}

/// A row's key, time and columns (arrow-row encoded).
type KeyedRow = (Box<[u8]>, Timestamp, Vec<u8>);

/// What one key keeps.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct PerKey {
    /// Left rows waiting for the watermark: time, arrival order, row.
    waiting: Vec<(Timestamp, u64, Vec<u8>)>,
    /// The versions, by time.
    versions: BTreeMap<Timestamp, Vec<u8>>,
}

impl PerKey {
    /// Drops the versions no row can need once the watermark is at `watermark`: those
    /// before the latest at or before it.
    fn prune(&mut self, watermark: Timestamp) {
        let Some((&latest, _)) = self.versions.range(..=watermark).next_back() else { return };
        self.versions = self.versions.split_off(&latest);
    }
}

/// One worker's temporal join.
pub struct TemporalJoin {
    spec: Arc<TemporalJoinSpec>,
    keys: RowConverter,
    lefts: RowConverter,
    rights: RowConverter,
    by_key: FxHashMap<Box<[u8]>, PerKey>,
    watermark: Timestamp,
    seq: u64,
}

impl TemporalJoin {
    /// A join with nothing kept.
    pub fn new(spec: Arc<TemporalJoinSpec>) -> Result<Self> {
        Ok(TemporalJoin {
            keys: key_converter(&spec.left, spec.keys)?,
            lefts: spec.left_converter()?,
            rights: spec.right_converter()?,
            spec,
            by_key: FxHashMap::default(),
            watermark: MIN_TIMESTAMP,
            seq: 0,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
    }

    /// The rows of `batch` as (key, time, row) of `columns`, NULL keys and times left out.
    fn rows(
        &self,
        batch: &RecordBatch,
        time: usize,
        converter: &RowConverter,
        columns: &[usize],
    ) -> Result<Vec<KeyedRow>> {
        let key_columns = &batch.columns()[..self.spec.keys];
        let keys = self.keys.convert_columns(key_columns).map_err(|e| self.error(e))?;
        let picked: Vec<ArrayRef> = columns.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = converter.convert_columns(&picked).map_err(|e| self.error(e))?;
        let times = millis(batch.column(time))?;
        Ok((0..batch.num_rows())
            .filter(|&r| key_columns.iter().all(|k| k.is_valid(r)))
            .filter_map(|r| times[r].map(|t| (Box::from(keys.row(r).data()), t, rows.row(r).data().to_vec())))
            .collect())
    }
}

impl TwoInputOperator for TemporalJoin {
    type Left = RecordBatch;
    type Right = RecordBatch;
    type Out = RecordBatch;

    fn process_left(&mut self, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        let columns: Vec<usize> = (self.spec.keys..batch.num_columns()).collect();
        let rows = self.rows(&batch, self.spec.left_time, &self.lefts, &columns)?;
        for (key, time, row) in rows {
            self.by_key.entry(key).or_default().waiting.push((time, self.seq, row));
            self.seq += 1;
        }
        // A left row with a NULL key or time joins nothing: in a LEFT JOIN it leaves
        // padded now.
        if !self.spec.left_outer {
            return Ok(());
        }
        let times = millis(batch.column(self.spec.left_time))?;
        let key_columns = &batch.columns()[..self.spec.keys];
        let unjoinable: Vec<u32> = (0..batch.num_rows())
            .filter(|&r| times[r].is_none() || key_columns.iter().any(|k| k.is_null(r)))
            .map(|r| r as u32)
            .collect();
        if unjoinable.is_empty() {
            return Ok(());
        }
        let indices = arrow_array::UInt32Array::from(unjoinable);
        let mut columns = batch.columns()[self.spec.keys..]
            .iter()
            .map(|c| arrow_select::take::take(c, &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.error(e))?;
        let width = columns.len();
        for field in &self.spec.schema.fields()[width..] {
            columns.push(arrow_array::new_null_array(field.data_type(), indices.len()));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
        out.emit(
            RecordBatch::try_new_with_options(self.spec.schema.clone(), columns, &options)
                .map_err(|e| self.error(e))?,
        )
    }

    fn process_right(&mut self, batch: RecordBatch, _out: &mut Output<RecordBatch>) -> Result<()> {
        let rows = self.rows(&batch, self.spec.right_time, &self.rights, &self.spec.right_output)?;
        let watermark = self.watermark;
        for (key, time, row) in rows {
            let per_key = self.by_key.entry(key).or_default();
            // A later version of the same time replaces the earlier, as in Flink.
            per_key.versions.insert(time, row);
            per_key.prune(watermark);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let watermark = self.watermark;
        let (mut lefts, mut rights): (Vec<Vec<u8>>, Vec<Option<Vec<u8>>>) = (Vec::new(), Vec::new());
        let left_outer = self.spec.left_outer;
        self.by_key.retain(|_, per_key| {
            if per_key.waiting.iter().any(|(t, _, _)| *t <= watermark) {
                let (mut ready, rest): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut per_key.waiting).into_iter().partition(|(t, _, _)| *t <= watermark);
                per_key.waiting = rest;
                ready.sort_unstable_by_key(|(t, seq, _)| (*t, *seq));
                for (time, _, row) in ready {
                    let version = per_key.versions.range(..=time).next_back().map(|(_, v)| v.clone());
                    if version.is_some() || left_outer {
                        lefts.push(row);
                        rights.push(version);
                    }
                }
            }
            per_key.prune(watermark);
            !(per_key.waiting.is_empty() && per_key.versions.is_empty())
        });
        if lefts.is_empty() {
            return Ok(());
        }
        let parser = self.lefts.parser();
        let mut columns = self.lefts.convert_rows(lefts.iter().map(|r| parser.parse(r))).map_err(|e| self.error(e))?;
        // The versions, NULL where a left row has none.
        let found: Vec<&Vec<u8>> = rights.iter().flatten().collect();
        let parser = self.rights.parser();
        let versions = self.rights.convert_rows(found.iter().map(|r| parser.parse(r))).map_err(|e| self.error(e))?;
        let mut at = 0u32;
        let indices: arrow_array::UInt32Array = rights
            .iter()
            .map(|v| {
                v.as_ref().map(|_| {
                    at += 1;
                    at - 1
                })
            })
            .collect();
        for column in versions {
            columns.push(arrow_select::take::take(&column, &indices, None).map_err(|e| self.error(e))?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(lefts.len()));
        out.emit(
            RecordBatch::try_new_with_options(self.spec.schema.clone(), columns, &options)
                .map_err(|e| self.error(e))?,
        )
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        for (key, per_key) in &self.by_key {
            state.keyed(&key.to_vec(), per_key)?;
        }
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.watermark = state.clocks::<Timestamp>()?.into_iter().min().unwrap_or(MIN_TIMESTAMP);
        state.for_each_keyed(|key: Vec<u8>, per_key: PerKey| {
            self.seq = self.seq.max(per_key.waiting.iter().map(|w| w.1 + 1).max().unwrap_or(0));
            self.by_key.insert(key.into(), per_key);
            Ok(())
        })
    }
}
