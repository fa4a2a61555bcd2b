//! Top-N: `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)` filtered to the first N
//! rows (`WHERE rownum <= N`), and deduplication (`rownum = 1`), as Flink runs them.
//!
//! Rows arrive hash-exchanged by the partition key, laid out as the key's columns,
//! then the `ORDER BY` expressions, then the input's columns. Each partition keeps its
//! first N rows in order: the order is the arrow-row encoding of the `ORDER BY` columns
//! with their directions, which compares as bytes, and a row equal to kept ones comes
//! after them (arrival order breaks ties, as in Flink). Rows are kept in arrow-row's
//! encoding too.
//!
//! Over a window (the partition key holds a window's `window_end`) it is a window
//! Top-N: a window's rows leave when the watermark passes its end, once, as inserts.
//! Otherwise results are updating: after each batch, every position of a changed
//! partition whose row changed sends the row it held (`-U`) and the row it holds
//! (`+U`), or an insert (`+I`) for a position filled for the first time. Rows that
//! leave the first N are forgotten.

use super::aggregate::key_converter;
use super::state::{KeyedState, Updated};
use super::watermark::millis;
use crate::changelog::{RowKind, ROW_KIND};
use arrow_array::{ArrayRef, Int8Array, RecordBatch, RecordBatchOptions, UInt64Array};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef, SortOptions};
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Operator, Output};
use sluice_types::{Error, Result, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a Top-N computes.
#[derive(Debug)]
pub struct RankSpec {
    /// The operator's name.
    pub name: String,
    /// How many leading input columns are the partition key.
    pub keys: usize,
    /// The `ORDER BY` columns that follow it, with their directions.
    pub order: Vec<SortOptions>,
    /// How many rows of each partition are kept.
    pub limit: usize,
    /// The input's schema.
    pub input: SchemaRef,
    /// The output's data columns: the input's own, then the row number.
    pub schema: SchemaRef,
    /// In a window Top-N, which key column is the window's end.
    pub window_end: Option<usize>,
    /// How long a partition not updated is kept (milliseconds of processing time).
    pub ttl: Option<i64>,
}

impl RankSpec {
    /// The first input column of the rows themselves.
    fn rows_from(&self) -> usize {
        self.keys + self.order.len()
    }

    /// The output schema, with the row kind column when results are updating.
    pub fn output_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        if self.window_end.is_none() {
            fields.push(Field::new(ROW_KIND, DataType::Int8, false));
        }
        Arc::new(Schema::new(fields))
    }

    fn converters(&self) -> Result<(RowConverter, RowConverter, RowConverter)> {
        let error = |e: arrow_schema::ArrowError| Error::invalid_job(format!("cannot rank these rows: {e}"));
        let fields = self.input.fields();
        let order = self
            .order
            .iter()
            .enumerate()
            .map(|(i, options)| SortField::new_with_options(fields[self.keys + i].data_type().clone(), *options))
            .collect();
        let rows = fields[self.rows_from()..].iter().map(|f| SortField::new(f.data_type().clone())).collect();
        Ok((
            key_converter(&self.input, self.keys)?,
            RowConverter::new(order).map_err(error)?,
            RowConverter::new(rows).map_err(error)?,
        ))
    }

    /// Fails if the rows cannot be kept (a type arrow-row cannot encode): checked
    /// when the job is planned.
    pub fn check(&self) -> Result<()> {
        self.converters().map(|_| ())
    }
}

/// A kept row: its order and its columns, both in arrow-row's encoding.
type Ranked = (Box<[u8]>, Box<[u8]>);

/// One partition's first rows, in order.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Partition {
    rows: Vec<Ranked>,
    /// In a window Top-N, the window's end.
    end: Option<Timestamp>,
    /// When it was last updated (milliseconds since the epoch).
    updated: Timestamp,
}

impl Updated for Partition {
    fn updated(&self) -> Timestamp {
        self.updated
    }
}

/// One worker's Top-N.
pub struct Rank {
    spec: Arc<RankSpec>,
    keys: RowConverter,
    order: RowConverter,
    rows: RowConverter,
    output: SchemaRef,
    partitions: KeyedState<Partition>,
    /// In a window Top-N, the partitions of each window, by its end.
    windows: BTreeMap<Timestamp, Vec<Box<[u8]>>>,
    watermark: Timestamp,
}

/// The rows of one output batch, before they are decoded: (row, row number, kind).
type Changes<'a> = Vec<(&'a [u8], u64, RowKind)>;

impl Rank {
    /// A Top-N with nothing kept.
    pub fn new(spec: Arc<RankSpec>) -> Result<Self> {
        let (keys, order, rows) = spec.converters()?;
        // A window's partitions go with the watermark, not the state TTL.
        let ttl = spec.ttl.filter(|_| spec.window_end.is_none());
        Ok(Rank {
            output: spec.output_schema(),
            partitions: KeyedState::new(ttl),
            spec,
            keys,
            order,
            rows,
            windows: BTreeMap::new(),
            watermark: Timestamp::MIN,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
    }

    /// The output batch of `changes`.
    fn batch(&self, changes: &Changes<'_>) -> Result<RecordBatch> {
        let parser = self.rows.parser();
        let mut columns: Vec<ArrayRef> =
            self.rows.convert_rows(changes.iter().map(|(row, _, _)| parser.parse(row))).map_err(|e| self.error(e))?;
        columns.push(Arc::new(UInt64Array::from_iter_values(changes.iter().map(|(_, number, _)| *number))));
        if self.spec.window_end.is_none() {
            columns.push(Arc::new(Int8Array::from_iter_values(changes.iter().map(|(_, _, kind)| kind.code()))));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(changes.len()));
        RecordBatch::try_new_with_options(self.output.clone(), columns, &options).map_err(|e| self.error(e))
    }
}

impl Operator for Rank {
    type In = RecordBatch;
    type Out = RecordBatch;

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        let now = sluice_runtime::now_millis();
        let spec = self.spec.clone();
        let keys = self.keys.convert_columns(&batch.columns()[..spec.keys]).map_err(|e| self.error(e))?;
        let order =
            self.order.convert_columns(&batch.columns()[spec.keys..spec.rows_from()]).map_err(|e| self.error(e))?;
        let rows = self.rows.convert_columns(&batch.columns()[spec.rows_from()..]).map_err(|e| self.error(e))?;
        let ends = match spec.window_end {
            Some(column) => Some(millis(batch.column(column))?),
            None => None,
        };
        // Each changed partition's rows before the batch (updating results only).
        let mut before: FxHashMap<Box<[u8]>, Vec<Ranked>> = FxHashMap::default();
        let mut touched: Vec<Box<[u8]>> = Vec::new();
        for row in 0..batch.num_rows() {
            let end = ends.as_ref().and_then(|ends| ends[row]);
            if end.is_some_and(|end| end - 1 <= self.watermark) {
                continue; // Late: its window has been sent.
            }
            let key = keys.row(row).data();
            if !self.partitions.map.contains_key(key) {
                let key: Box<[u8]> = key.into();
                if let Some(end) = end {
                    self.windows.entry(end).or_default().push(key.clone());
                }
                self.partitions.map.insert(key, Partition { end, ..Partition::default() });
            }
            let partition = self.partitions.map.get_mut(key).expect("invariant: inserted");
            let rank = order.row(row).data();
            let at = partition.rows.partition_point(|(kept, _)| kept.as_ref() <= rank);
            if at >= spec.limit {
                continue;
            }
            if spec.window_end.is_none() && !before.contains_key(key) {
                before.insert(key.into(), partition.rows.clone());
                touched.push(key.into());
            }
            partition.rows.insert(at, (rank.into(), rows.row(row).data().into()));
            partition.rows.truncate(spec.limit);
            partition.updated = now;
        }
        if spec.window_end.is_some() || touched.is_empty() {
            return Ok(());
        }
        let mut changes: Changes<'_> = Vec::new();
        for key in &touched {
            let old = &before[key];
            let new = &self.partitions.map[key].rows;
            for position in 0..old.len().max(new.len()) {
                let number = position as u64 + 1;
                match (old.get(position), new.get(position)) {
                    (Some(o), Some(n)) if o.1 == n.1 => {}
                    (Some(o), Some(n)) => {
                        changes.push((&o.1, number, RowKind::UpdateBefore));
                        changes.push((&n.1, number, RowKind::UpdateAfter));
                    }
                    (None, Some(n)) => changes.push((&n.1, number, RowKind::Insert)),
                    (Some(o), None) => changes.push((&o.1, number, RowKind::Delete)),
                    (None, None) => {}
                }
            }
        }
        if !changes.is_empty() {
            let batch = self.batch(&changes)?;
            out.emit(batch)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        if self.spec.window_end.is_none() {
            return Ok(());
        }
        let mut done = Vec::new();
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() - 1 > self.watermark {
                break;
            }
            for key in entry.remove() {
                if let Some(partition) = self.partitions.map.remove(&key) {
                    done.push(partition);
                }
            }
        }
        let changes: Changes<'_> = done
            .iter()
            .flat_map(|p| p.rows.iter().enumerate().map(|(i, (_, row))| (row.as_ref(), i as u64 + 1, RowKind::Insert)))
            .collect();
        if !changes.is_empty() {
            let batch = self.batch(&changes)?;
            out.emit(batch)?;
        }
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, _out: &mut Output<RecordBatch>) -> Result<()> {
        self.partitions.sweep(now);
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.partitions.snapshot(state)?;
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.watermark = state.clocks::<Timestamp>()?.into_iter().min().unwrap_or(Timestamp::MIN);
        let windows = &mut self.windows;
        self.partitions.restore(state, |key, partition| {
            if let Some(end) = partition.end {
                windows.entry(end).or_default().push(key.into());
            }
        })
    }
}
