//! The builders of the columns JSON values are read into, one per SQL type: what each
//! makes of each kind of JSON value (its [`Accept`]), and how it rolls back a line that
//! failed (its [`Builder`]).

use super::text::JsonText;
use super::{Accept, Builder, Fields, Slot};
use arrow_array::timezone::Tz;
use arrow_array::types::{ArrowPrimitiveType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type};
use arrow_array::{new_null_array, ArrayRef, BooleanArray, PrimitiveArray, StringArray, StructArray};
use arrow_array::{
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_cast::parse::{string_to_datetime, Parser};
use arrow_schema::{DataType, TimeUnit};
use serde::de::{self, MapAccess, SeqAccess, Unexpected, Visitor};
use sluice_types::{Error, Result};
use std::sync::Arc;

/// The numeric SQL types, as JSON numbers and text read into them.
pub(super) trait JsonNumber: ArrowPrimitiveType + Parser {
    fn from_i64(value: i64) -> Option<Self::Native>;
    fn from_u64(value: u64) -> Option<Self::Native>;
    fn from_f64(value: f64) -> Option<Self::Native>;
}

macro_rules! integers {
    ($($type:ty => $native:ty),*) => {$(
        impl JsonNumber for $type {
            fn from_i64(value: i64) -> Option<$native> {
                <$native>::try_from(value).ok()
            }
            fn from_u64(value: u64) -> Option<$native> {
                <$native>::try_from(value).ok()
            }
            /// A fraction into an integer column is truncated, as arrow-json reads it.
            fn from_f64(value: f64) -> Option<$native> {
                let whole = value.trunc();
                (whole >= <$native>::MIN as f64 && whole < -(<$native>::MIN as f64)).then_some(whole as $native)
            }
        }
    )*};
}
integers!(Int8Type => i8, Int16Type => i16, Int32Type => i32, Int64Type => i64);

macro_rules! floats {
    ($($type:ty => $native:ty),*) => {$(
        impl JsonNumber for $type {
            fn from_i64(value: i64) -> Option<$native> {
                Some(value as $native)
            }
            fn from_u64(value: u64) -> Option<$native> {
                Some(value as $native)
            }
            fn from_f64(value: f64) -> Option<$native> {
                Some(value as $native)
            }
        }
    )*};
}
floats!(Float32Type => f32, Float64Type => f64);

pub(super) struct Numbers<T: ArrowPrimitiveType> {
    slot: Slot,
    values: Vec<T::Native>,
    nulls: NullBufferBuilder,
}

impl<T: ArrowPrimitiveType> Numbers<T> {
    pub(super) fn new(slot: Slot) -> Self {
        Numbers { slot, values: Vec::new(), nulls: NullBufferBuilder::new(0) }
    }

    fn push<E: de::Error>(&mut self, value: Option<T::Native>, found: Unexpected<'_>, lenient: bool) -> Result<(), E> {
        match value {
            Some(value) => {
                self.values.push(value);
                self.nulls.append_non_null();
                Ok(())
            }
            None => self.conflict(found, lenient),
        }
    }
}

impl<T: ArrowPrimitiveType> Builder for Numbers<T> {
    fn slot(&self) -> &Slot {
        &self.slot
    }
    fn len(&self) -> usize {
        self.values.len()
    }
    fn append_null(&mut self) {
        self.values.push(T::Native::default());
        self.nulls.append_null();
    }
    fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.nulls.truncate(rows);
    }
    fn finish(&mut self) -> Result<ArrayRef> {
        let capacity = self.values.len();
        let values = std::mem::replace(&mut self.values, Vec::with_capacity(capacity));
        Ok(Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(values), self.nulls.finish())))
    }
}

impl<T: JsonNumber> Accept for Numbers<T> {
    fn integer<E: de::Error>(&mut self, value: i64, lenient: bool) -> Result<(), E> {
        self.push(T::from_i64(value), Unexpected::Signed(value), lenient)
    }
    fn unsigned<E: de::Error>(&mut self, value: u64, lenient: bool) -> Result<(), E> {
        self.push(T::from_u64(value), Unexpected::Unsigned(value), lenient)
    }
    fn float<E: de::Error>(&mut self, value: f64, lenient: bool) -> Result<(), E> {
        self.push(T::from_f64(value), Unexpected::Float(value), lenient)
    }
    fn text<E: de::Error>(&mut self, value: &str, lenient: bool) -> Result<(), E> {
        self.push(T::parse(value), Unexpected::Str(value), lenient)
    }
}

/// `TIMESTAMP(p)` and `TIMESTAMP_LTZ(p)`: text as arrow parses it
/// (`2026-01-01 00:00:00.000`, RFC 3339), a number as the count of the column's unit.
pub(super) struct Timestamps {
    pub(super) slot: Slot,
    pub(super) data_type: DataType,
    pub(super) unit: TimeUnit,
    pub(super) zone: Option<Tz>,
    pub(super) values: Vec<i64>,
    pub(super) nulls: NullBufferBuilder,
}

impl Timestamps {
    fn push<E: de::Error>(&mut self, value: Option<i64>, found: Unexpected<'_>, lenient: bool) -> Result<(), E> {
        match value {
            Some(value) => {
                self.values.push(value);
                self.nulls.append_non_null();
                Ok(())
            }
            None => self.conflict(found, lenient),
        }
    }

    fn parse(&self, text: &str) -> Option<i64> {
        let instant = match &self.zone {
            Some(zone) => string_to_datetime(zone, text).ok()?.to_utc(),
            None => string_to_datetime(&chrono::Utc, text).ok()?,
        };
        match self.unit {
            TimeUnit::Second => Some(instant.timestamp()),
            TimeUnit::Millisecond => Some(instant.timestamp_millis()),
            TimeUnit::Microsecond => Some(instant.timestamp_micros()),
            TimeUnit::Nanosecond => instant.timestamp_nanos_opt(),
        }
    }
}

impl Builder for Timestamps {
    fn slot(&self) -> &Slot {
        &self.slot
    }
    fn len(&self) -> usize {
        self.values.len()
    }
    fn append_null(&mut self) {
        self.values.push(0);
        self.nulls.append_null();
    }
    fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.nulls.truncate(rows);
    }
    fn finish(&mut self) -> Result<ArrayRef> {
        let capacity = self.values.len();
        let values = std::mem::replace(&mut self.values, Vec::with_capacity(capacity));
        let (values, nulls) = (ScalarBuffer::from(values), self.nulls.finish());
        let zone = match &self.data_type {
            DataType::Timestamp(_, zone) => zone.clone(),
            _ => None,
        };
        Ok(match self.unit {
            TimeUnit::Second => Arc::new(TimestampSecondArray::new(values, nulls).with_timezone_opt(zone)),
            TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::new(values, nulls).with_timezone_opt(zone)),
            TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::new(values, nulls).with_timezone_opt(zone)),
            TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::new(values, nulls).with_timezone_opt(zone)),
        })
    }
}

impl Accept for Timestamps {
    fn integer<E: de::Error>(&mut self, value: i64, lenient: bool) -> Result<(), E> {
        self.push(Some(value), Unexpected::Signed(value), lenient)
    }
    fn unsigned<E: de::Error>(&mut self, value: u64, lenient: bool) -> Result<(), E> {
        self.push(i64::try_from(value).ok(), Unexpected::Unsigned(value), lenient)
    }
    fn float<E: de::Error>(&mut self, value: f64, lenient: bool) -> Result<(), E> {
        self.push(Some(value as i64), Unexpected::Float(value), lenient)
    }
    fn text<E: de::Error>(&mut self, value: &str, lenient: bool) -> Result<(), E> {
        let parsed = self.parse(value);
        self.push(parsed, Unexpected::Str(value), lenient)
    }
}

/// `STRING`: text, and numbers and booleans as their text.
pub(super) struct Strings {
    slot: Slot,
    bytes: Vec<u8>,
    /// Where each value starts in `bytes`, and where the last ends.
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl Strings {
    pub(super) fn new(slot: Slot) -> Self {
        Strings { slot, bytes: Vec::new(), offsets: vec![0], nulls: NullBufferBuilder::new(0) }
    }

    fn push<E: de::Error>(&mut self, text: &[u8]) -> Result<(), E> {
        self.bytes.extend_from_slice(text);
        let end = i32::try_from(self.bytes.len())
            .map_err(|_| E::custom(format_args!("{}: more than 2 GiB of text in one batch", self.slot.path)))?;
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }
}

impl Builder for Strings {
    fn slot(&self) -> &Slot {
        &self.slot
    }
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    fn append_null(&mut self) {
        self.offsets.push(self.bytes.len() as i32);
        self.nulls.append_null();
    }
    fn truncate(&mut self, rows: usize) {
        self.bytes.truncate(self.offsets[rows] as usize);
        self.offsets.truncate(rows + 1);
        self.nulls.truncate(rows);
    }
    fn finish(&mut self) -> Result<ArrayRef> {
        let capacity = self.bytes.len();
        let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(capacity));
        let mut offsets = Vec::with_capacity(self.offsets.len());
        offsets.push(0);
        let offsets = std::mem::replace(&mut self.offsets, offsets);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let strings = StringArray::try_new(offsets, Buffer::from_vec(bytes), self.nulls.finish())
            .map_err(|e| Error::internal(format!("json strings: {e}")))?;
        Ok(Arc::new(strings))
    }
}

impl Accept for Strings {
    fn integer<E: de::Error>(&mut self, value: i64, _: bool) -> Result<(), E> {
        self.push(value.to_string().as_bytes())
    }
    fn unsigned<E: de::Error>(&mut self, value: u64, _: bool) -> Result<(), E> {
        self.push(value.to_string().as_bytes())
    }
    fn float<E: de::Error>(&mut self, value: f64, _: bool) -> Result<(), E> {
        self.push(value.to_string().as_bytes())
    }
    fn text<E: de::Error>(&mut self, value: &str, _: bool) -> Result<(), E> {
        self.push(value.as_bytes())
    }
    fn boolean<E: de::Error>(&mut self, value: bool, _: bool) -> Result<(), E> {
        self.push(if value { b"true" } else { b"false" })
    }
    /// An object or array as its JSON text, compact, as Flink reads one into a `STRING`.
    fn object<'de, A: MapAccess<'de>>(&mut self, map: A, _: bool) -> Result<(), A::Error> {
        let mut text = Vec::new();
        JsonText(&mut text).visit_map(map)?;
        self.push(&text)
    }
    fn array<'de, A: SeqAccess<'de>>(&mut self, seq: A, _: bool) -> Result<(), A::Error> {
        let mut text = Vec::new();
        JsonText(&mut text).visit_seq(seq)?;
        self.push(&text)
    }
}

/// `BOOLEAN`: `true`, `false`, and their text as Flink reads it.
pub(super) struct Booleans {
    slot: Slot,
    values: BooleanBufferBuilder,
    nulls: NullBufferBuilder,
}

impl Booleans {
    pub(super) fn new(slot: Slot) -> Self {
        Booleans { slot, values: BooleanBufferBuilder::new(0), nulls: NullBufferBuilder::new(0) }
    }
}

impl Builder for Booleans {
    fn slot(&self) -> &Slot {
        &self.slot
    }
    fn len(&self) -> usize {
        self.values.len()
    }
    fn append_null(&mut self) {
        self.values.append(false);
        self.nulls.append_null();
    }
    fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.nulls.truncate(rows);
    }
    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(Arc::new(BooleanArray::new(self.values.finish(), self.nulls.finish())))
    }
}

impl Accept for Booleans {
    fn boolean<E: de::Error>(&mut self, value: bool, _: bool) -> Result<(), E> {
        self.values.append(value);
        self.nulls.append_non_null();
        Ok(())
    }
    fn text<E: de::Error>(&mut self, value: &str, lenient: bool) -> Result<(), E> {
        match value.trim() {
            text if text.eq_ignore_ascii_case("true") => self.boolean(true, lenient),
            text if text.eq_ignore_ascii_case("false") => self.boolean(false, lenient),
            _ => self.conflict(Unexpected::Str(value), lenient),
        }
    }
}

/// `ROW<...>`: an object, its fields the row's.
pub(super) struct Struct {
    pub(super) slot: Slot,
    pub(super) fields: Fields,
    pub(super) types: arrow_schema::Fields,
    pub(super) nulls: NullBufferBuilder,
}

impl Builder for Struct {
    fn slot(&self) -> &Slot {
        &self.slot
    }
    fn len(&self) -> usize {
        self.nulls.len()
    }
    fn append_null(&mut self) {
        self.fields.append_null();
        self.nulls.append_null();
    }
    fn truncate(&mut self, rows: usize) {
        self.fields.truncate(rows);
        self.nulls.truncate(rows);
    }
    fn finish(&mut self) -> Result<ArrayRef> {
        let columns = self.fields.finish()?;
        let rows = StructArray::try_new(self.types.clone(), columns, self.nulls.finish())
            .map_err(|e| Error::internal(format!("json rows of {}: {e}", self.slot.path)))?;
        Ok(Arc::new(rows))
    }
}

impl Accept for Struct {
    fn object<'de, A: MapAccess<'de>>(&mut self, map: A, lenient: bool) -> Result<(), A::Error> {
        let row = self.len();
        self.fields.read(map, row, lenient)?;
        self.nulls.append_non_null();
        Ok(())
    }
}

/// A nested field no query reads: read past, NULL.
pub(super) struct Skipped {
    pub(super) slot: Slot,
    pub(super) data_type: DataType,
    pub(super) len: usize,
}

impl Builder for Skipped {
    fn slot(&self) -> &Slot {
        &self.slot
    }
    fn len(&self) -> usize {
        self.len
    }
    fn append_null(&mut self) {
        self.len += 1;
    }
    fn null<E: de::Error>(&mut self) -> Result<(), E> {
        self.len += 1;
        Ok(())
    }
    fn truncate(&mut self, rows: usize) {
        self.len = rows;
    }
    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(new_null_array(&self.data_type, std::mem::take(&mut self.len)))
    }
}
