//! Lines of text decoded into record batches by an arrow decoder (arrow-json's,
//! arrow-csv's), a batch at a time: the lines are gathered, then decoded at once. When
//! a batch fails, its lines are decoded one by one to find the bad ones, which go to
//! the dead letters with arrow's reason (or are dropped, or fail the job, as the table
//! says).

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
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

/// An arrow decoder of text: bytes in, batches out.
pub trait RowsDecoder: Send + 'static {
    /// Reads rows from `text`; how many bytes it took.
    fn decode(&mut self, text: &[u8]) -> std::result::Result<usize, ArrowError>;
    /// The rows read so far.
    fn flush(&mut self) -> std::result::Result<Option<RecordBatch>, ArrowError>;
}

/// A format of lines: what builds its decoders.
pub trait TextFormat: Send + 'static {
    /// Its decoder.
    type Decoder: RowsDecoder;
    /// Its name, for errors.
    const NAME: &'static str;
    /// A decoder of rows of `schema`, `rows` a batch.
    fn decoder(&self, schema: &SchemaRef, errors: ParseErrors, rows: usize) -> Result<Self::Decoder>;
}

/// Decodes lines of format `F` into record batches of `schema`.
pub struct LinesDecoder<F: TextFormat> {
    format: F,
    schema: SchemaRef,
    errors: ParseErrors,
    decoder: F::Decoder,
    /// The lines of the batch being built, each followed by a newline.
    text: Vec<u8>,
    /// Where each line ends in `text`.
    ends: Vec<usize>,
}

const BATCH_ROWS: usize = 8192;

impl<F: TextFormat> LinesDecoder<F> {
    /// A decoder of lines into `schema`'s columns.
    pub fn new(format: F, schema: SchemaRef, errors: ParseErrors) -> Result<Self> {
        let decoder = format.decoder(&schema, errors, BATCH_ROWS)?;
        Ok(LinesDecoder { format, decoder, schema, errors, text: Vec::new(), ends: Vec::new() })
    }

    /// Decodes `text` whole; an error leaves the decoder unusable.
    fn decode_all(decoder: &mut F::Decoder, text: &[u8]) -> std::result::Result<Vec<RecordBatch>, String> {
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

impl<F: TextFormat> LineDecoder for LinesDecoder<F> {
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
                self.decoder = self.format.decoder(&self.schema, self.errors, BATCH_ROWS)?;
                let mut good = Vec::new();
                let mut rejected = Vec::new();
                let mut start = 0;
                for (index, end) in ends.iter().copied().enumerate() {
                    let line = &text[start..end];
                    let mut alone = self.format.decoder(&self.schema, self.errors, 1)?;
                    match Self::decode_all(&mut alone, line) {
                        Ok(batches) => good.extend(batches),
                        Err(reason) => match self.errors {
                            ParseErrors::Fail => {
                                return Err(Error::Operator {
                                    operator: format!("{} format", F::NAME),
                                    message: format!(
                                        "a line cannot be read as {} ({reason}): {}",
                                        F::NAME,
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
