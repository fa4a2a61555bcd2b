//! `'connector' = 'datagen'`: generated rows, with Flink's options. `rows-per-second`
//! (default 10000) paces the generator; `number-of-rows` bounds it (unbounded without).
//! Each column is `random` (the default) or a `sequence` (`fields.<name>.kind`):
//!
//! - random numbers between `fields.<name>.min` and `.max` (the type's range by
//!   default), strings of `fields.<name>.length` letters and digits (default 100),
//!   booleans, and timestamps up to `fields.<name>.max-past` before the time the row is
//!   made (default 0: now);
//! - a sequence counts from `fields.<name>.start` to `.end`, each value once over all
//!   the workers, and the source ends after the last;
//! - `fields.<name>.null-rate` (0 to 1) makes that share of a random column NULL.
//!
//! Row `i` of the stream is the same in every run and at any parallelism (random
//! values are a hash of the row's number and the column's), save the timestamps, which
//! go by the clock. Each worker makes rows `w, w + p, w + 2p, ...`; checkpoints hold the
//! next row of each such split, so a restored job goes on where it was, at any
//! parallelism.

use super::{BoxedReader, Options, ScanSource};
use crate::ddl::{ColumnKind, TableDefinition};
use arrow_array::builder::{BooleanBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, RecordBatchOptions, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, SchemaRef, TimeUnit};
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{SourcePoll, SourceReader};
use sluice_types::{Error, Result};
use std::sync::Arc;
use std::time::Instant;

/// How one column's values are made.
#[derive(Clone, Debug)]
enum Kind {
    /// Random, between `min` and `max` for numbers, `length` long for strings, up to
    /// `max_past` milliseconds ago for timestamps; NULL at `null_rate`.
    Random { min: f64, max: f64, length: usize, max_past: i64, null_rate: f64 },
    /// `start`, `start + 1`, ... to `end`.
    Sequence { start: i64, end: i64 },
}

#[derive(Clone, Debug)]
struct Column {
    field: Field,
    kind: Kind,
    /// Its place among the table's columns: what its random values are mixed with, so
    /// that they do not depend on which columns a query reads.
    salt: u64,
}

/// The range of random values of `data_type`, as Flink's datagen has it by default.
fn type_range(data_type: &DataType) -> (f64, f64) {
    match data_type {
        DataType::Int8 => (i8::MIN as f64, i8::MAX as f64),
        DataType::Int16 => (i16::MIN as f64, i16::MAX as f64),
        DataType::Int32 => (i32::MIN as f64, i32::MAX as f64),
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => (f64::MIN / 2.0, f64::MAX / 2.0),
        _ => (i64::MIN as f64, i64::MAX as f64),
    }
}

fn is_number(data_type: &DataType) -> bool {
    data_type.is_numeric()
}

fn column(field: &Field, salt: u64, options: &mut Options) -> Result<Column> {
    let name = field.name();
    let key = |what: &str| format!("fields.{name}.{what}");
    let data_type = field.data_type();
    let supported = is_number(data_type)
        || matches!(data_type, DataType::Utf8 | DataType::Boolean | DataType::Timestamp(_, _) | DataType::Date32);
    if !supported {
        return Err(options.error(format!("the datagen connector cannot make column {name} of type {data_type}")));
    }
    let kind = options.take(&key("kind")).unwrap_or_else(|| "random".to_string());
    let kind = match kind.as_str() {
        "sequence" => {
            if !(is_number(data_type) || *data_type == DataType::Utf8) {
                return Err(options.error(format!("a sequence of {data_type} ({name}): numbers or strings")));
            }
            let start = options.parse::<i64>(&key("start"))?;
            let end = options.parse::<i64>(&key("end"))?;
            let (Some(start), Some(end)) = (start, end) else {
                return Err(options.error(format!(
                    "the sequence {name} needs '{}' and '{}'",
                    key("start"),
                    key("end")
                )));
            };
            if end < start {
                return Err(options.error(format!("the sequence {name} ends ({end}) before it starts ({start})")));
            }
            Kind::Sequence { start, end }
        }
        "random" => {
            let (low, high) = type_range(data_type);
            let min = options.parse::<f64>(&key("min"))?.unwrap_or(low);
            let max = options.parse::<f64>(&key("max"))?.unwrap_or(high);
            if max < min {
                return Err(options.error(format!("column {name}: '{}' is below '{}'", key("max"), key("min"))));
            }
            let length = options.parse::<usize>(&key("length"))?.unwrap_or(100);
            let max_past = match options.take(&key("max-past")) {
                None => 0,
                Some(text) => crate::job::duration(&text)
                    .map_err(|e| options.error(format!("'{}': {e}", key("max-past"))))?
                    .as_millis() as i64,
            };
            let null_rate = options.parse::<f64>(&key("null-rate"))?.unwrap_or(0.0);
            if !(0.0..=1.0).contains(&null_rate) {
                return Err(options.error(format!("'{}' is between 0 and 1", key("null-rate"))));
            }
            Kind::Random { min, max, length, max_past, null_rate }
        }
        other => return Err(options.error(format!("'{}' = '{other}': the kinds are random and sequence", key("kind")))),
    };
    Ok(Column { field: field.clone(), kind, salt })
}

/// The options every datagen table may give, and each column's.
pub const OPTIONS: [&str; 2] = ["rows-per-second", "number-of-rows"];
const FIELD_OPTIONS: [&str; 8] = ["kind", "min", "max", "length", "max-past", "null-rate", "start", "end"];

pub(super) fn scan(table: &TableDefinition, schema: SchemaRef, mut options: Options) -> Result<Arc<dyn ScanSource>> {
    let rate = options.parse::<f64>("rows-per-second")?.unwrap_or(10_000.0);
    if rate <= 0.0 {
        return Err(options.error("'rows-per-second' must be above 0"));
    }
    let mut rows = options.parse::<u64>("number-of-rows")?;
    // Every physical column's options, read or not: a sequence bounds the rows.
    let physical: Vec<(usize, Field)> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.kind == ColumnKind::Physical)
        .filter_map(|(i, c)| c.sql_type.as_ref().map(|t| (i, Field::new(&c.name, t.data_type.clone(), t.nullable))))
        .collect();
    let mut all = Vec::with_capacity(physical.len());
    for (i, field) in &physical {
        all.push(column(field, *i as u64 + 1, &mut options)?);
    }
    for column in &all {
        if let Kind::Sequence { start, end } = column.kind {
            let length = (end - start) as u64 + 1;
            rows = Some(rows.map_or(length, |n| n.min(length)));
        }
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| all.iter().find(|c| c.field.name() == f.name()).cloned().ok_or_else(|| options.error(f.name())))
        .collect::<Result<Vec<_>>>()?;
    let mut known: Vec<String> = OPTIONS.iter().map(|o| o.to_string()).collect();
    for (_, field) in &physical {
        known.extend(FIELD_OPTIONS.iter().map(|o| format!("fields.{}.{o}", field.name())));
    }
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    options.finish(&known)?;
    Ok(Arc::new(DatagenTable { schema, columns, rows, rate }))
}

struct DatagenTable {
    schema: SchemaRef,
    columns: Vec<Column>,
    rows: Option<u64>,
    rate: f64,
}

/// A share of the rows: `next`, `next + step`, ...
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Split {
    next: u64,
    step: u64,
}

impl DatagenTable {
    fn boxed(&self, splits: Vec<Split>, parallelism: usize) -> BoxedReader {
        Box::new(DatagenReader {
            schema: self.schema.clone(),
            columns: self.columns.clone(),
            rows: self.rows,
            splits,
            rate: self.rate / parallelism.max(1) as f64,
            started: Instant::now(),
            made: 0,
        })
    }
}

impl ScanSource for DatagenTable {
    fn name(&self) -> String {
        "datagen".to_string()
    }

    fn reader(&self, worker: usize, parallelism: usize) -> Result<BoxedReader> {
        Ok(self.boxed(vec![Split { next: worker as u64, step: parallelism.max(1) as u64 }], parallelism))
    }

    fn restore_reader(&self, _worker: usize, parallelism: usize, state: &StateReader) -> Result<BoxedReader> {
        Ok(self.boxed(state.items()?, parallelism))
    }
}

/// One worker's splits of a datagen table.
struct DatagenReader {
    schema: SchemaRef,
    columns: Vec<Column>,
    rows: Option<u64>,
    splits: Vec<Split>,
    /// Rows a second for this worker, since `started`.
    rate: f64,
    started: Instant,
    made: u64,
}

/// A well-mixed 64-bit hash of a row's and a column's number (splitmix64).
fn mix(row: u64, column: u64) -> u64 {
    let mut z = row.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ column.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in [0, 1) from a hash.
fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

impl DatagenReader {
    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: "datagen".into(), message: e.to_string() }
    }

    /// The column `c` of rows `rows`.
    fn make(&self, c: usize, rows: &[u64], now: i64) -> Result<ArrayRef> {
        let column = &self.columns[c];
        let data_type = column.field.data_type();
        let salt = column.salt;
        let array: ArrayRef = match &column.kind {
            Kind::Sequence { start, .. } => match data_type {
                DataType::Utf8 => {
                    let mut builder = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                    for row in rows {
                        builder.append_value((start + *row as i64).to_string());
                    }
                    Arc::new(builder.finish())
                }
                _ => Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| start + *row as i64))),
            },
            Kind::Random { min, max, length, max_past, null_rate } => {
                let null = |row: u64| *null_rate > 0.0 && unit(mix(row, salt ^ 0xA5A5)) < *null_rate;
                match data_type {
                    DataType::Utf8 => {
                        let mut builder = StringBuilder::with_capacity(rows.len(), rows.len() * length);
                        let mut text = Vec::with_capacity(*length);
                        for &row in rows {
                            if null(row) {
                                builder.append_null();
                                continue;
                            }
                            text.clear();
                            for i in 0..*length as u64 {
                                text.push(ALPHABET[(mix(row, salt.wrapping_mul(1000) + i) % 62) as usize]);
                            }
                            builder.append_value(std::str::from_utf8(&text).expect("invariant: ASCII"));
                        }
                        Arc::new(builder.finish())
                    }
                    DataType::Boolean => {
                        let mut builder = BooleanBuilder::with_capacity(rows.len());
                        for &row in rows {
                            builder.append_option((!null(row)).then(|| mix(row, salt) & 1 == 1));
                        }
                        Arc::new(builder.finish())
                    }
                    DataType::Timestamp(_, zone) => {
                        let values = rows.iter().map(|&row| {
                            (!null(row)).then(|| now - (unit(mix(row, salt)) * (*max_past as f64 + 1.0)) as i64)
                        });
                        Arc::new(TimestampMillisecondArray::from_iter(values).with_timezone_opt(zone.clone()))
                    }
                    DataType::Date32 => {
                        let today = now.div_euclid(86_400_000) as i32;
                        let days = (*max_past as f64 / 86_400_000.0) + 1.0;
                        let values =
                            rows.iter().map(|&row| (!null(row)).then(|| today - (unit(mix(row, salt)) * days) as i32));
                        Arc::new(Date32Array::from_iter(values))
                    }
                    DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
                        let values =
                            rows.iter().map(|&row| (!null(row)).then(|| min + unit(mix(row, salt)) * (max - min)));
                        Arc::new(Float64Array::from_iter(values))
                    }
                    _ => {
                        let (low, high) = (*min as i128, *max as i128);
                        let span = (high - low + 1) as u128;
                        let values = rows
                            .iter()
                            .map(|&row| (!null(row)).then(|| (low + (mix(row, salt) as u128 % span) as i128) as i64));
                        Arc::new(Int64Array::from_iter(values))
                    }
                }
            }
        };
        let wanted = match data_type {
            DataType::Timestamp(TimeUnit::Millisecond, _) => return Ok(array),
            other => other,
        };
        match array.data_type() == wanted {
            true => Ok(array),
            false => arrow_cast::cast(&array, wanted).map_err(|e| self.error(e)),
        }
    }
}

impl SourceReader for DatagenReader {
    type Batch = RecordBatch;

    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<RecordBatch>> {
        let due = (self.started.elapsed().as_secs_f64() * self.rate) as u64;
        let allowed = (due.saturating_sub(self.made) as usize).min(max_records.max(1));
        let limit = self.rows.unwrap_or(u64::MAX);
        self.splits.retain(|s| s.next < limit);
        if self.splits.is_empty() {
            return Ok(SourcePoll::Finished);
        }
        if allowed == 0 {
            return Ok(SourcePoll::Pending);
        }
        // Round robin over the splits, so that they advance together.
        let mut rows = Vec::with_capacity(allowed);
        'fill: while rows.len() < allowed {
            let mut any = false;
            for split in &mut self.splits {
                if split.next < limit {
                    rows.push(split.next);
                    split.next += split.step;
                    any = true;
                    if rows.len() == allowed {
                        break 'fill;
                    }
                }
            }
            if !any {
                break;
            }
        }
        self.made += rows.len() as u64;
        let now = sluice_runtime::now_millis();
        let columns = (0..self.columns.len()).map(|c| self.make(c, &rows, now)).collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        let batch =
            RecordBatch::try_new_with_options(self.schema.clone(), columns, &options).map_err(|e| self.error(e))?;
        Ok(SourcePoll::Batch(batch))
    }

    fn position(&self) -> u64 {
        self.made
    }

    fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        for split in &self.splits {
            state.item(split)?;
        }
        Ok(())
    }
}
