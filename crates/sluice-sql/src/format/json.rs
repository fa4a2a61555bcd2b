//! The `json` format, as Flink's: one object per line; fields by column name; nested
//! objects as `ROW`s; missing fields, and fields of no declared column, ignored (the
//! former read as NULL); timestamps written `yyyy-MM-dd HH:mm:ss.SSS`.
//!
//! Lines are decoded straight into the columns the job uses (`json_columns/`), or,
//! when a column's type is not one that decoder knows, by arrow-json's decoder a batch
//! at a time (`lines.rs`).

use super::json_columns::{self, ColumnsDecoder};
use super::lines::{LinesDecoder, ParseErrors, RowsDecoder, TextFormat};
use super::Unread;
use crate::changelog::data_columns;
use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sluice_connectors::file::{LineDecoder, Rejected};
use sluice_types::{Error, Result};
use std::sync::Arc;

/// Builds arrow-json decoders of `schema`.
pub struct Json;

impl TextFormat for Json {
    type Decoder = Decoder;
    const NAME: &'static str = "json";

    fn decoder(&self, schema: &SchemaRef, errors: ParseErrors, rows: usize) -> Result<Decoder> {
        ReaderBuilder::new(schema.clone())
            .with_batch_size(rows.max(1))
            // Numbers in strings and the like, as Flink reads them.
            .with_coerce_primitive(true)
            .with_ignore_type_conflicts(errors == ParseErrors::Ignore)
            .build_decoder()
            .map_err(|e| Error::invalid_job(format!("the json format cannot read columns {schema}: {e}")))
    }
}

impl RowsDecoder for Decoder {
    fn decode(&mut self, text: &[u8]) -> std::result::Result<usize, arrow_schema::ArrowError> {
        Decoder::decode(self, text)
    }
    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, arrow_schema::ArrowError> {
        Decoder::flush(self)
    }
}

/// Decodes JSON lines into record batches.
pub enum JsonDecoder {
    /// Each line straight into the columns.
    Columns(ColumnsDecoder),
    /// A batch of lines at a time by arrow-json, for types the other does not know.
    Tape(LinesDecoder<Json>),
}

impl JsonDecoder {
    /// A decoder of lines into `schema`'s columns, reading past the `unread` nested
    /// fields where it can.
    pub fn new(schema: SchemaRef, errors: ParseErrors, unread: &Unread) -> Result<Self> {
        Ok(match json_columns::reads(&schema) {
            true => JsonDecoder::Columns(ColumnsDecoder::new(schema, errors, unread)?),
            false => JsonDecoder::Tape(LinesDecoder::new(Json, schema, errors)?),
        })
    }
}

impl LineDecoder for JsonDecoder {
    type Batch = RecordBatch;

    fn decode(&mut self, line: &[u8]) {
        match self {
            JsonDecoder::Columns(decoder) => decoder.decode(line),
            JsonDecoder::Tape(decoder) => decoder.decode(line),
        }
    }

    fn pending(&self) -> usize {
        match self {
            JsonDecoder::Columns(decoder) => decoder.pending(),
            JsonDecoder::Tape(decoder) => decoder.pending(),
        }
    }

    fn take(&mut self) -> Result<(RecordBatch, Vec<Rejected>)> {
        match self {
            JsonDecoder::Columns(decoder) => decoder.take(),
            JsonDecoder::Tape(decoder) => decoder.take(),
        }
    }
}

/// Encodes record batches as JSON lines, as Flink's `json` format writes them.
pub struct JsonEncoder {
    schema: SchemaRef,
}

impl JsonEncoder {
    /// An encoder of rows of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        JsonEncoder { schema }
    }

    /// Appends one line per row of `batch` to `out`.
    pub fn encode(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        let error = |e: arrow_schema::ArrowError| Error::internal(format!("json rows: {e}"));
        // Timestamps written as text first: arrow-json's writer parses its format
        // string again for every value.
        let rows = with_timestamps_as_text(&self.schema, batch)?;
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .with_timestamp_format("%Y-%m-%d %H:%M:%S%.3f".to_string())
            .with_timestamp_tz_format("%Y-%m-%d %H:%M:%S%.3fZ".to_string())
            .build::<_, arrow_json::writer::LineDelimited>(out);
        writer.write(&rows).map_err(error)?;
        writer.finish().map_err(error)
    }
}

/// A timestamp column as Flink's json format writes it: `2026-01-01 00:00:00.000`,
/// with a `Z` after it for a time zone's (`TIMESTAMP_LTZ`).
/// `batch`'s data columns (named and typed as `schema`'s), its timestamps as text in
/// Flink's `yyyy-MM-dd HH:mm:ss.SSS`: what the text formats write.
pub(crate) fn with_timestamps_as_text(schema: &Schema, batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(fields.capacity());
    for (field, column) in schema.fields().iter().zip(data_columns(batch)) {
        match field.data_type() {
            DataType::Timestamp(_, zone) => {
                columns.push(format_timestamps(column, zone.is_some())?);
                fields.push(Field::new(field.name(), DataType::Utf8, true));
            }
            _ => {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
        .map_err(|e| Error::internal(format!("rows: {e}")))
}

fn format_timestamps(column: &ArrayRef, zoned: bool) -> Result<ArrayRef> {
    let millis = crate::stream::watermark::millis(column)?;
    let mut out = StringBuilder::with_capacity(millis.len(), millis.len() * 24);
    let mut text = [0u8; 24];
    for value in millis {
        match value {
            None => out.append_null(),
            Some(ms) => {
                let length = write_timestamp(ms, zoned, &mut text);
                out.append_value(std::str::from_utf8(&text[..length]).expect("invariant: ASCII digits"));
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Writes `ms` (since the epoch, UTC) as `yyyy-MM-dd HH:mm:ss.SSS[Z]` into `out`;
/// the length written. Years outside 0 to 9999 are clamped to four digits' range.
fn write_timestamp(ms: i64, zoned: bool, out: &mut [u8; 24]) -> usize {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999);
    let (hour, minute, second, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    let mut put = |at: usize, value: i64, digits: usize| {
        let mut value = value;
        for i in (0..digits).rev() {
            out[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, hour, 2);
    put(14, minute, 2);
    put(17, second, 2);
    put(20, milli, 3);
    for (at, c) in [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':'), (19, b'.')] {
        out[at] = c;
    }
    if zoned {
        out[23] = b'Z';
        24
    } else {
        23
    }
}

#[cfg(test)]
mod tests {
    use super::write_timestamp;

    fn text(ms: i64, zoned: bool) -> String {
        let mut out = [0u8; 24];
        let length = write_timestamp(ms, zoned, &mut out);
        String::from_utf8(out[..length].to_vec()).expect("ASCII")
    }

    #[test]
    fn timestamps_are_written_as_flinks_json_format_writes_them() {
        assert_eq!(text(0, false), "1970-01-01 00:00:00.000");
        assert_eq!(text(1_767_225_600_123, false), "2026-01-01 00:00:00.123");
        assert_eq!(text(951_782_400_000 + 86_399_999, true), "2000-02-29 23:59:59.999Z");
        assert_eq!(text(-1, false), "1969-12-31 23:59:59.999");
    }
}
