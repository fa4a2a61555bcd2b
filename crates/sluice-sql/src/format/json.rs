//! The `json` format, as Flink's: one object per line; fields by column name; nested
//! objects as `ROW`s; missing fields, and fields of no declared column, ignored (the
//! former read as NULL); timestamps written `yyyy-MM-dd HH:mm:ss.SSS`.
//!
//! Lines are decoded by arrow-json's decoder a batch at a time, into the columns the
//! job uses only. When a batch fails, its lines are decoded one by one to find the
//! bad ones, which go to the dead letters with arrow's reason.

use crate::changelog::data_columns;
use arrow_array::RecordBatch;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::SchemaRef;
use sluice_connectors::file::{LineDecoder, Rejected};
use sluice_types::{Error, Result};

/// What becomes of a line that cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseErrors {
    /// It goes to the dead letters, with the reason (the default).
    DeadLetter,
    /// It is dropped, and fields of the wrong type read as NULL
    /// (`'json.ignore-parse-errors' = 'true'`).
    Ignore,
    /// The job fails (`'json.fail-on-parse-errors' = 'true'`).
    Fail,
}

/// Decodes JSON lines into record batches of `schema`.
pub struct JsonDecoder {
    schema: SchemaRef,
    errors: ParseErrors,
    decoder: Decoder,
    /// The lines of the batch being built, each followed by a newline.
    text: Vec<u8>,
    /// Where each line ends in `text`.
    ends: Vec<usize>,
}

fn decoder(schema: &SchemaRef, errors: ParseErrors, rows: usize) -> Result<Decoder> {
    ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.max(1))
        .with_coerce_primitive(true)
        .with_ignore_type_conflicts(errors == ParseErrors::Ignore)
        .build_decoder()
        .map_err(|e| Error::invalid_job(format!("the json format cannot read columns {schema}: {e}")))
}

impl JsonDecoder {
    /// A decoder of lines into `schema`'s columns.
    pub fn new(schema: SchemaRef, errors: ParseErrors) -> Result<Self> {
        Ok(JsonDecoder { decoder: decoder(&schema, errors, 8192)?, schema, errors, text: Vec::new(), ends: Vec::new() })
    }

    /// Decodes `text` whole; an error leaves the decoder unusable.
    fn decode_all(decoder: &mut Decoder, text: &[u8]) -> std::result::Result<Vec<RecordBatch>, String> {
        let mut batches = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let read = decoder.decode(&text[at..]).map_err(|e| e.to_string())?;
            at += read;
            if read == 0 || at < text.len() {
                if let Some(batch) = decoder.flush().map_err(|e| e.to_string())? {
                    batches.push(batch);
                }
            }
        }
        if let Some(batch) = decoder.flush().map_err(|e| e.to_string())? {
            batches.push(batch);
        }
        Ok(batches)
    }

    fn concat(&self, batches: &[RecordBatch]) -> Result<RecordBatch> {
        arrow_select::concat::concat_batches(&self.schema, batches).map_err(|e| Error::internal(e.to_string()))
    }
}

impl LineDecoder for JsonDecoder {
    type Batch = RecordBatch;

    fn decode(&mut self, line: &[u8]) {
        self.text.extend_from_slice(line);
        self.text.push(b'\n');
        self.ends.push(self.text.len());
    }

    fn pending(&self) -> usize {
        self.ends.len()
    }

    fn take(&mut self) -> Result<(RecordBatch, Vec<Rejected>)> {
        let text = std::mem::take(&mut self.text);
        let ends = std::mem::take(&mut self.ends);
        let result = match Self::decode_all(&mut self.decoder, &text) {
            Ok(batches) => Ok((self.concat(&batches)?, Vec::new())),
            Err(_) => {
                // Some line is bad: find which, decoding each alone.
                self.decoder = decoder(&self.schema, self.errors, 8192)?;
                let mut good = Vec::new();
                let mut rejected = Vec::new();
                let mut start = 0;
                for (index, end) in ends.iter().copied().enumerate() {
                    let line = &text[start..end];
                    let mut alone = decoder(&self.schema, self.errors, 1)?;
                    match Self::decode_all(&mut alone, line) {
                        Ok(batches) => good.extend(batches),
                        Err(reason) => match self.errors {
                            ParseErrors::Fail => {
                                return Err(Error::Operator {
                                    operator: "json format".into(),
                                    message: format!(
                                        "a line cannot be read as json ({reason}): {}",
                                        String::from_utf8_lossy(&line[..line.len() - 1])
                                    ),
                                })
                            }
                            ParseErrors::Ignore => {}
                            ParseErrors::DeadLetter => {
                                rejected.push(Rejected { index, reason, line: line[..line.len() - 1].to_vec() })
                            }
                        },
                    }
                    start = end;
                }
                Ok((self.concat(&good)?, rejected))
            }
        };
        // Keep the allocations for the next batch.
        self.text = text;
        self.text.clear();
        self.ends = ends;
        self.ends.clear();
        result
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
        let rows = RecordBatch::try_new(self.schema.clone(), data_columns(batch).to_vec())
            .map_err(|e| Error::internal(format!("json rows: {e}")))?;
        let mut writer = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .with_timestamp_format("%Y-%m-%d %H:%M:%S%.3f".to_string())
            .with_timestamp_tz_format("%Y-%m-%d %H:%M:%S%.3fZ".to_string())
            .build::<_, arrow_json::writer::LineDelimited>(out);
        writer.write(&rows).map_err(|e| Error::internal(format!("json rows: {e}")))?;
        writer.finish().map_err(|e| Error::internal(format!("json rows: {e}")))
    }
}
