//! JSON lines decoded straight into Arrow columns: each line is parsed by serde_json as
//! it arrives (no copy of the line, no tape of the whole object first), its fields
//! written into the builders of the columns the job reads, and every other value
//! skipped, nested ones too. Column types it does not know (lists, maps, decimals,
//! dates, ...) are read by arrow-json's decoder instead (`json.rs` chooses).
//!
//! Values are read as arrow-json reads them with primitive coercion, which is how
//! Flink's `json` format reads them: numbers in strings, numbers and booleans as text,
//! a missing field as NULL, a field of no column ignored; a value of the wrong type
//! fails its line, or reads as NULL under `json.ignore-parse-errors`. A field given
//! twice: the last wins.

use super::lines::ParseErrors;
use super::Unread;
use arrow_array::timezone::Tz;
use arrow_array::types::{Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type};
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_buffer::NullBufferBuilder;
use arrow_schema::{DataType, Field, SchemaRef};
use builders::{Booleans, Numbers, Skipped, Strings, Struct, Timestamps};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use sluice_connectors::file::{LineDecoder, Rejected};
use sluice_types::{Error, Result};
use std::fmt;

/// Whether this decoder reads every column of `schema` (else arrow-json's must).
pub fn reads(schema: &SchemaRef) -> bool {
    schema.fields().iter().all(|field| known(field.data_type()))
}

fn known(data_type: &DataType) -> bool {
    match data_type {
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::Timestamp(_, _) => true,
        DataType::Struct(fields) => fields.iter().all(|field| known(field.data_type())),
        _ => false,
    }
}

/// Decodes JSON lines into record batches of a schema of known types ([`reads`]).
pub struct ColumnsDecoder {
    schema: SchemaRef,
    root: Fields,
    /// Rows decoded into the columns so far.
    rows: usize,
    /// Lines given so far, the rejected ones too.
    lines: usize,
    errors: ParseErrors,
    rejected: Vec<Rejected>,
    /// The first line that failed the job (`ParseErrors::Fail`).
    failure: Option<Error>,
}

impl ColumnsDecoder {
    /// A decoder of `schema`'s columns, which [`reads`] must accept; the `unread` nested
    /// fields are read past and come out NULL.
    pub fn new(schema: SchemaRef, errors: ParseErrors, unread: &Unread) -> Result<Self> {
        let mut path = Vec::new();
        let root = Fields::of(schema.fields(), &mut path, unread)?;
        Ok(ColumnsDecoder { schema, root, rows: 0, lines: 0, errors, rejected: Vec::new(), failure: None })
    }
}

impl LineDecoder for ColumnsDecoder {
    type Batch = RecordBatch;

    fn decode(&mut self, line: &[u8]) {
        let index = self.lines;
        self.lines += 1;
        let lenient = self.errors == ParseErrors::Ignore;
        // Checked as UTF-8 once, faster than each string on its own as it is parsed.
        let read = match simdutf8::basic::from_utf8(line) {
            Ok(text) => {
                let mut parser = serde_json::Deserializer::from_str(text);
                let row = Row { fields: &mut self.root, row: self.rows, lenient };
                row.deserialize(&mut parser).and_then(|()| parser.end()).map_err(|e| e.to_string())
            }
            Err(_) => Err(format!("not UTF-8: {:?}", String::from_utf8_lossy(line))),
        };
        match read {
            Ok(()) => self.rows += 1,
            Err(error) => {
                self.root.truncate(self.rows);
                match self.errors {
                    ParseErrors::Ignore => {}
                    ParseErrors::DeadLetter => {
                        self.rejected.push(Rejected { index, reason: error, line: line.to_vec() })
                    }
                    ParseErrors::Fail if self.failure.is_none() => {
                        self.failure = Some(Error::Operator {
                            operator: "json format".to_string(),
                            message: format!(
                                "a line cannot be read as json ({error}): {}",
                                String::from_utf8_lossy(line)
                            ),
                        })
                    }
                    ParseErrors::Fail => {}
                }
            }
        }
    }

    fn pending(&self) -> usize {
        self.lines
    }

    fn take(&mut self) -> Result<(RecordBatch, Vec<Rejected>)> {
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        let rows = std::mem::take(&mut self.rows);
        self.lines = 0;
        let columns = self.root.finish()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| Error::internal(format!("json rows: {e}")))?;
        Ok((batch, std::mem::take(&mut self.rejected)))
    }
}

/// The columns of an object's fields (a row's, or a `ROW` column's), by name.
struct Fields {
    names: Vec<Box<str>>,
    columns: Vec<Column>,
}

impl Fields {
    fn of(fields: &arrow_schema::Fields, path: &mut Vec<String>, unread: &Unread) -> Result<Self> {
        let mut columns = Vec::with_capacity(fields.len());
        for field in fields {
            path.push(field.name().clone());
            columns.push(Column::of(field, path, unread)?);
            path.pop();
        }
        Ok(Fields { names: fields.iter().map(|f| f.name().as_str().into()).collect(), columns })
    }

    /// Reads the fields of one object into the columns' row `row`; fields it lacks are
    /// NULL.
    fn read<'de, A: MapAccess<'de>>(&mut self, mut map: A, row: usize, lenient: bool) -> Result<(), A::Error> {
        // Fields mostly come in the order of the columns: the next column's name is
        // compared first.
        let mut next = 0;
        while let Some(found) = map.next_key_seed(Key { names: &self.names, next })? {
            match found {
                Some(index) => {
                    next = index + 1;
                    let column = &mut self.columns[index];
                    if column.len() > row {
                        // Given twice: the last wins.
                        column.truncate(row);
                    }
                    map.next_value_seed(Value { column, lenient })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        for column in &mut self.columns {
            if column.len() == row {
                column.missing()?;
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        self.columns.iter_mut().for_each(Column::append_null);
    }

    fn truncate(&mut self, rows: usize) {
        self.columns.iter_mut().for_each(|column| column.truncate(rows));
    }

    fn finish(&mut self) -> Result<Vec<ArrayRef>> {
        self.columns.iter_mut().map(Column::finish).collect()
    }
}

/// One column's builder, by type.
enum Column {
    Boolean(Booleans),
    Int8(Numbers<Int8Type>),
    Int16(Numbers<Int16Type>),
    Int32(Numbers<Int32Type>),
    Int64(Numbers<Int64Type>),
    Float32(Numbers<Float32Type>),
    Float64(Numbers<Float64Type>),
    Timestamp(Timestamps),
    Utf8(Strings),
    Struct(Box<Struct>),
    /// A nested field no query reads.
    Skipped(Skipped),
}

/// Calls `$body` with `$c` bound to the builder of whichever type `$column` is.
macro_rules! each {
    ($column:expr, $c:ident => $body:expr) => {
        match $column {
            Column::Boolean($c) => $body,
            Column::Int8($c) => $body,
            Column::Int16($c) => $body,
            Column::Int32($c) => $body,
            Column::Int64($c) => $body,
            Column::Float32($c) => $body,
            Column::Float64($c) => $body,
            Column::Timestamp($c) => $body,
            Column::Utf8($c) => $body,
            Column::Struct($c) => $body,
            Column::Skipped($c) => $body,
        }
    };
}

/// What every column's builder does.
trait Builder {
    fn slot(&self) -> &Slot;
    fn len(&self) -> usize;
    fn append_null(&mut self);
    fn truncate(&mut self, rows: usize);
    fn finish(&mut self) -> Result<ArrayRef>;

    /// A NULL the data holds (a `null` value, a missing field): refused in a NOT NULL
    /// column.
    fn null<E: de::Error>(&mut self) -> Result<(), E> {
        if !self.slot().nullable {
            return Err(E::custom(format_args!("{} is NULL, and the column is NOT NULL", self.slot().path)));
        }
        self.append_null();
        Ok(())
    }

    /// A value of the wrong type: the line fails, or under `json.ignore-parse-errors`
    /// the value reads as NULL.
    fn conflict<E: de::Error>(&mut self, found: Unexpected<'_>, lenient: bool) -> Result<(), E> {
        match lenient {
            true => self.null(),
            false => {
                let Slot { path, sql, .. } = self.slot();
                Err(E::custom(format_args!("{path}: {found} where {sql} was expected")))
            }
        }
    }
}

impl Column {
    fn of(field: &Field, path: &[String], unread: &Unread) -> Result<Column> {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        let slot =
            Slot { path: names.join(".").into(), sql: sql_name(field.data_type()), nullable: field.is_nullable() };
        if path.len() > 1 && field.is_nullable() && unread.skips(&names) {
            return Ok(Column::Skipped(Skipped { slot, data_type: field.data_type().clone(), len: 0 }));
        }
        Ok(match field.data_type() {
            DataType::Boolean => Column::Boolean(Booleans::new(slot)),
            DataType::Int8 => Column::Int8(Numbers::new(slot)),
            DataType::Int16 => Column::Int16(Numbers::new(slot)),
            DataType::Int32 => Column::Int32(Numbers::new(slot)),
            DataType::Int64 => Column::Int64(Numbers::new(slot)),
            DataType::Float32 => Column::Float32(Numbers::new(slot)),
            DataType::Float64 => Column::Float64(Numbers::new(slot)),
            DataType::Utf8 => Column::Utf8(Strings::new(slot)),
            DataType::Timestamp(unit, zone) => {
                let zone = match zone {
                    Some(zone) => {
                        Some(zone.parse::<Tz>().map_err(|e| Error::invalid_job(format!("{}: {e}", slot.path)))?)
                    }
                    None => None,
                };
                Column::Timestamp(Timestamps {
                    slot,
                    data_type: field.data_type().clone(),
                    unit: *unit,
                    zone,
                    values: Vec::new(),
                    nulls: NullBufferBuilder::new(0),
                })
            }
            DataType::Struct(fields) => {
                let mut path = path.to_vec();
                Column::Struct(Box::new(Struct {
                    fields: Fields::of(fields, &mut path, unread)?,
                    types: fields.clone(),
                    slot,
                    nulls: NullBufferBuilder::new(0),
                }))
            }
            other => return Err(Error::internal(format!("json columns of type {other}"))),
        })
    }

    fn len(&self) -> usize {
        each!(self, c => c.len())
    }

    fn append_null(&mut self) {
        each!(self, c => c.append_null())
    }

    fn missing<E: de::Error>(&mut self) -> Result<(), E> {
        each!(self, c => c.null())
    }

    fn truncate(&mut self, rows: usize) {
        each!(self, c => c.truncate(rows))
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        each!(self, c => c.finish())
    }
}

/// What errors say of a column.
struct Slot {
    /// Its name, nested fields after their row's: `Bid.price`.
    path: Box<str>,
    /// Its SQL type.
    sql: &'static str,
    nullable: bool,
}

fn sql_name(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "a BOOLEAN",
        DataType::Int8 => "a TINYINT",
        DataType::Int16 => "a SMALLINT",
        DataType::Int32 => "an INT",
        DataType::Int64 => "a BIGINT",
        DataType::Float32 => "a FLOAT",
        DataType::Float64 => "a DOUBLE",
        DataType::Utf8 => "a STRING",
        DataType::Timestamp(_, None) => "a TIMESTAMP",
        DataType::Timestamp(_, Some(_)) => "a TIMESTAMP_LTZ",
        DataType::Struct(_) => "a ROW (an object)",
        _ => "a value",
    }
}

/// A line: an object whose fields are the columns.
struct Row<'a> {
    fields: &'a mut Fields,
    row: usize,
    lenient: bool,
}

impl<'de> DeserializeSeed<'de> for Row<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, parser: D) -> Result<(), D::Error> {
        parser.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Row<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.fields.read(map, self.row, self.lenient)
    }
}

/// A field's name: the index of its column, if it has one; the column `next` is
/// tried first.
struct Key<'a> {
    names: &'a [Box<str>],
    next: usize,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, parser: D) -> Result<Option<usize>, D::Error> {
        parser.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        match self.names.get(self.next) {
            Some(expected) if **expected == *name => Ok(Some(self.next)),
            _ => Ok(self.names.iter().position(|known| **known == *name)),
        }
    }
}

/// A field's value, into its column.
struct Value<'a> {
    column: &'a mut Column,
    lenient: bool,
}

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, parser: D) -> Result<(), D::Error> {
        let lenient = self.lenient;
        match self.column {
            Column::Boolean(column) => parser.deserialize_any(Typed { column, lenient }),
            Column::Int8(column) => parser.deserialize_any(Typed { column, lenient }),
            Column::Int16(column) => parser.deserialize_any(Typed { column, lenient }),
            Column::Int32(column) => parser.deserialize_any(Typed { column, lenient }),
            Column::Int64(column) => parser.deserialize_any(Typed { column, lenient }),
            Column::Float32(column) => parser.deserialize_any(Typed { column, lenient }),
            Column::Float64(column) => parser.deserialize_any(Typed { column, lenient }),
            Column::Timestamp(column) => parser.deserialize_any(Typed { column, lenient }),
            Column::Utf8(column) => parser.deserialize_any(Typed { column, lenient }),
            Column::Struct(column) => parser.deserialize_any(Typed { column: column.as_mut(), lenient }),
            Column::Skipped(column) => {
                parser.deserialize_ignored_any(IgnoredAny)?;
                column.len += 1;
                Ok(())
            }
        }
    }
}

/// A value read into a column of a known type: the column's [`Accept`] says what it
/// makes of each kind of JSON value.
struct Typed<'a, C> {
    column: &'a mut C,
    lenient: bool,
}

/// What a column makes of each kind of JSON value; by default, a type conflict.
trait Accept: Builder {
    fn integer<E: de::Error>(&mut self, value: i64, lenient: bool) -> Result<(), E> {
        self.conflict(Unexpected::Signed(value), lenient)
    }
    fn unsigned<E: de::Error>(&mut self, value: u64, lenient: bool) -> Result<(), E> {
        self.conflict(Unexpected::Unsigned(value), lenient)
    }
    fn float<E: de::Error>(&mut self, value: f64, lenient: bool) -> Result<(), E> {
        self.conflict(Unexpected::Float(value), lenient)
    }
    fn text<E: de::Error>(&mut self, value: &str, lenient: bool) -> Result<(), E> {
        self.conflict(Unexpected::Str(value), lenient)
    }
    fn boolean<E: de::Error>(&mut self, value: bool, lenient: bool) -> Result<(), E> {
        self.conflict(Unexpected::Bool(value), lenient)
    }
    fn object<'de, A: MapAccess<'de>>(&mut self, mut map: A, lenient: bool) -> Result<(), A::Error> {
        self.conflict(Unexpected::Map, lenient)?;
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn array<'de, A: SeqAccess<'de>>(&mut self, mut seq: A, lenient: bool) -> Result<(), A::Error> {
        self.conflict(Unexpected::Seq, lenient)?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

impl<'de, C: Accept> Visitor<'de> for Typed<'_, C> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.column.slot().sql)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.column.null()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.column.null()
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.column.integer(value, self.lenient)
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.column.unsigned(value, self.lenient)
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.column.float(value, self.lenient)
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.column.text(value, self.lenient)
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.column.boolean(value, self.lenient)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.column.object(map, self.lenient)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.column.array(seq, self.lenient)
    }
}

mod builders;
#[cfg(test)]
mod tests;
mod text;
