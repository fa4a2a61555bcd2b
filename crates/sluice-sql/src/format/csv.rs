//! The `csv` format, as Flink's: one row per line, no header, fields in column order,
//! separated by `csv.field-delimiter` (`,`) and quoted with `csv.quote-character`
//! (`"`) where needed; an empty field (or `csv.null-literal`) is NULL; timestamps
//! written `yyyy-MM-dd HH:mm:ss.SSS`. Read with arrow-csv's decoder a batch at a time
//! (`lines.rs`); a quoted field holding a newline is not supported (files are split
//! into lines).

use super::json::with_timestamps_as_text;
use super::lines::{LinesDecoder, ParseErrors, RowsDecoder, TextFormat};
use crate::connectors::Options;
use arrow_array::RecordBatch;
use arrow_csv::reader::{Decoder, ReaderBuilder};
use arrow_schema::{ArrowError, Schema, SchemaRef};
use sluice_types::{Error, Result};

/// The options of the csv format, as a table's `WITH` gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csv {
    delimiter: u8,
    quote: u8,
    comment: Option<u8>,
    null_literal: Option<String>,
}

/// The csv format's options a table may give.
pub const OPTIONS: [&str; 5] =
    ["csv.field-delimiter", "csv.quote-character", "csv.allow-comments", "csv.null-literal", "csv.ignore-parse-errors"];

fn one_byte(options: &mut Options, key: &str, default: u8) -> Result<u8> {
    match options.take(key) {
        None => Ok(default),
        Some(value) if value == "\\t" => Ok(b'\t'),
        Some(value) if value.len() == 1 => Ok(value.as_bytes()[0]),
        Some(value) => Err(options.error(format!("option '{key}' = '{value}' must be one character"))),
    }
}

impl Csv {
    /// The format's options taken out of `options`, and what becomes of bad lines.
    pub fn from_options(options: &mut Options) -> Result<(Self, ParseErrors)> {
        let csv = Csv {
            delimiter: one_byte(options, "csv.field-delimiter", b',')?,
            quote: one_byte(options, "csv.quote-character", b'"')?,
            comment: options.flag("csv.allow-comments", false)?.then_some(b'#'),
            null_literal: options.take("csv.null-literal"),
        };
        let errors = match options.flag("csv.ignore-parse-errors", false)? {
            true => ParseErrors::Ignore,
            false => ParseErrors::DeadLetter,
        };
        Ok((csv, errors))
    }

    /// Fails if a column of `schema` cannot be a csv field (a `ROW` or an array).
    pub fn check(&self, schema: &Schema) -> Result<()> {
        for field in schema.fields() {
            if field.data_type().is_nested() {
                return Err(Error::invalid_job(format!(
                    "the csv format has no way to hold the nested column {} ({}): use the json format",
                    field.name(),
                    field.data_type()
                )));
            }
        }
        Ok(())
    }
}

impl TextFormat for Csv {
    type Decoder = Decoder;
    const NAME: &'static str = "csv";

    fn decoder(&self, schema: &SchemaRef, _errors: ParseErrors, rows: usize) -> Result<Decoder> {
        let mut builder = ReaderBuilder::new(schema.clone())
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_quote(self.quote)
            .with_batch_size(rows.max(1));
        if let Some(comment) = self.comment {
            builder = builder.with_comment(comment);
        }
        if let Some(literal) = &self.null_literal {
            let pattern = regex::Regex::new(&format!("^{}$", regex::escape(literal)))
                .map_err(|e| Error::invalid_job(format!("csv.null-literal: {e}")))?;
            builder = builder.with_null_regex(pattern);
        }
        Ok(builder.build_decoder())
    }
}

impl RowsDecoder for Decoder {
    fn decode(&mut self, text: &[u8]) -> std::result::Result<usize, ArrowError> {
        Decoder::decode(self, text)
    }
    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, ArrowError> {
        Decoder::flush(self)
    }
}

/// Decodes csv lines into record batches.
pub type CsvDecoder = LinesDecoder<Csv>;

/// Writes record batches of `schema` as csv lines.
pub struct CsvEncoder {
    schema: SchemaRef,
    csv: Csv,
}

impl CsvEncoder {
    /// An encoder of rows of `schema`.
    pub fn new(schema: SchemaRef, csv: Csv) -> Self {
        CsvEncoder { schema, csv }
    }

    /// Appends `batch`'s rows to `out`, a line each.
    pub fn encode(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        let error = |e: ArrowError| Error::internal(format!("csv rows: {e}"));
        let rows = with_timestamps_as_text(&self.schema, batch)?;
        let mut builder = arrow_csv::WriterBuilder::new()
            .with_header(false)
            .with_delimiter(self.csv.delimiter)
            .with_quote(self.csv.quote);
        if let Some(literal) = &self.csv.null_literal {
            builder = builder.with_null(literal.clone());
        }
        builder.build(out).write(&rows).map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType};
    use arrow_array::{Int64Array, StringArray, TimestampMillisecondArray};
    use arrow_schema::{DataType, Field};
    use sluice_connectors::file::LineDecoder;
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::Int64, true),
            Field::new("value", DataType::Utf8, true),
            Field::new("at", DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, None), true),
        ]))
    }

    fn csv() -> Csv {
        Csv { delimiter: b',', quote: b'"', comment: None, null_literal: None }
    }

    #[test]
    fn rows_written_as_csv_read_back_the_same() {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a, \"quoted\" text"), Some("plain")])),
                Arc::new(TimestampMillisecondArray::from(vec![Some(1_767_225_600_123), None])),
            ],
        )
        .expect("a batch");
        let mut text = Vec::new();
        CsvEncoder::new(schema(), csv()).encode(&batch, &mut text).expect("encodes");
        let text = String::from_utf8(text).expect("UTF-8");
        assert_eq!(text, "1,\"a, \"\"quoted\"\" text\",2026-01-01 00:00:00.123\n,plain,\n");

        let mut decoder = CsvDecoder::new(csv(), schema(), ParseErrors::DeadLetter).expect("a decoder");
        for line in text.lines().chain(["x,not a number key,"]) {
            decoder.decode(line.as_bytes());
        }
        let (read, rejected) = decoder.take().expect("decodes");
        assert_eq!(read.num_rows(), 2);
        assert_eq!(read.column(0).as_primitive::<Int64Type>().iter().collect::<Vec<_>>(), vec![Some(1), None]);
        assert_eq!(read.column(1).as_string::<i32>().value(0), "a, \"quoted\" text");
        assert_eq!(read.column(2).as_primitive::<TimestampMillisecondType>().value(0), 1_767_225_600_123);
        assert_eq!(rejected.len(), 1, "the bad line goes to the dead letters");
        assert_eq!(rejected[0].index, 2);
    }
}
