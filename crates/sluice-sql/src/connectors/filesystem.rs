//! `'connector' = 'filesystem'`: a file or a directory of files, read in parallel by
//! byte ranges (`sluice_connectors::file::LineInput`), and written as a directory of part
//! files, exactly-once when the job checkpoints exactly-once
//! (`sluice_connectors::file::LineFiles`). Format `json`: one JSON object per line,
//! as Flink's `json` format reads and writes them; format `debezium-json` (written
//! only, for now): a changelog, each row wrapped as Debezium's `before`, `after` and
//! `op`, as Flink writes it, so a sink of updating results.

use super::{BoxedReader, BoxedWriter, Options, ScanSource, TableSink};
use crate::changelog::{row_kinds, RowKind};
use crate::format::json::{JsonDecoder, JsonEncoder, ParseErrors};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use sluice_api::{BatchWriter, SinkContext};
use sluice_connectors::file::{LineFiles, LineInput, LineWriter};
use sluice_runtime::checkpoint::{CheckpointId, Committer, StateReader, StateWriter};
use sluice_types::Result;
use std::sync::Arc;

const SOURCE_OPTIONS: [&str; 5] =
    ["path", "format", "json.ignore-parse-errors", "json.fail-on-parse-errors", "json.fail-on-missing-field"];
const SINK_OPTIONS: [&str; 2] = ["path", "format"];

/// How rows are written in the files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    DebeziumJson,
}

fn format(options: &mut Options) -> Result<Format> {
    match options.required("format")?.as_str() {
        "json" => Ok(Format::Json),
        "debezium-json" => Ok(Format::DebeziumJson),
        other => {
            Err(options
                .error(format!("the filesystem connector has no format '{other}' (it has: json, debezium-json)")))
        }
    }
}

pub(super) fn scan(schema: SchemaRef, mut options: Options) -> Result<Arc<dyn ScanSource>> {
    let path = options.required("path")?;
    if format(&mut options)? == Format::DebeziumJson {
        return Err(options.error(
            "not supported yet: reading format 'debezium-json' (it is written only, for now); read format 'json'",
        ));
    }
    let errors =
        match (options.flag("json.ignore-parse-errors", false)?, options.flag("json.fail-on-parse-errors", false)?) {
            (true, true) => {
                return Err(
                    options.error("'json.ignore-parse-errors' and 'json.fail-on-parse-errors' contradict each other")
                )
            }
            (true, false) => ParseErrors::Ignore,
            (false, true) => ParseErrors::Fail,
            (false, false) => ParseErrors::DeadLetter,
        };
    if options.flag("json.fail-on-missing-field", false)? {
        return Err(
            options.error("'json.fail-on-missing-field' = 'true' is not supported: missing fields read as NULL")
        );
    }
    options.finish(&SOURCE_OPTIONS)?;
    let input = LineInput::new(&path).map_err(|e| sluice_types::Error::invalid_job(format!("{e}")))?;
    Ok(Arc::new(FileTable { input, schema, errors }))
}

struct FileTable {
    input: LineInput,
    schema: SchemaRef,
    errors: ParseErrors,
}

impl ScanSource for FileTable {
    fn name(&self) -> String {
        "filesystem".to_string()
    }

    fn reader(&self, worker: usize, parallelism: usize) -> Result<BoxedReader> {
        let decoder = JsonDecoder::new(self.schema.clone(), self.errors)?;
        Ok(Box::new(self.input.reader(worker, parallelism, decoder)?))
    }

    fn restore_reader(&self, worker: usize, parallelism: usize, state: &StateReader) -> Result<BoxedReader> {
        let decoder = JsonDecoder::new(self.schema.clone(), self.errors)?;
        Ok(Box::new(self.input.restore_reader(worker, parallelism, state, decoder)?))
    }
}

pub(super) fn sink(schema: SchemaRef, mut options: Options) -> Result<Arc<dyn TableSink>> {
    let path = options.required("path")?;
    let format = format(&mut options)?;
    options.finish(&SINK_OPTIONS)?;
    Ok(Arc::new(FileSink { files: LineFiles::directory(&path, "json")?, schema, format }))
}

struct FileSink {
    files: LineFiles,
    schema: SchemaRef,
    format: Format,
}

impl TableSink for FileSink {
    fn name(&self) -> String {
        "filesystem".to_string()
    }

    fn writer(&self, context: &SinkContext) -> Result<BoxedWriter> {
        Ok(Box::new(FileWriter {
            lines: self.files.writer(context)?,
            encoder: JsonEncoder::new(self.schema.clone()),
            format: self.format,
            buffer: Vec::new(),
            rows: Vec::new(),
        }))
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        self.files.committer()
    }

    fn accepts_updates(&self) -> bool {
        self.format == Format::DebeziumJson
    }
}

struct FileWriter {
    lines: LineWriter,
    encoder: JsonEncoder,
    format: Format,
    buffer: Vec<u8>,
    rows: Vec<u8>,
}

impl BatchWriter<RecordBatch> for FileWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.buffer.clear();
        match self.format {
            Format::Json => self.encoder.encode(&batch, &mut self.buffer)?,
            Format::DebeziumJson => {
                // Flink's debezium-json: an insert or the row after an update is a
                // create of `after`, the row before or a delete a delete of `before`.
                self.rows.clear();
                self.encoder.encode(&batch, &mut self.rows)?;
                let kinds = row_kinds(&batch);
                for (i, row) in self.rows.split(|b| *b == b'\n').take(batch.num_rows()).enumerate() {
                    let kind = kinds.map_or(RowKind::Insert, |k| RowKind::from_code(k.value(i)));
                    let (before, after, op): (&[u8], &[u8], &str) = match kind.is_addition() {
                        true => (b"null", row, "c"),
                        false => (row, b"null", "d"),
                    };
                    self.buffer.extend_from_slice(b"{\"before\":");
                    self.buffer.extend_from_slice(before);
                    self.buffer.extend_from_slice(b",\"after\":");
                    self.buffer.extend_from_slice(after);
                    self.buffer.extend_from_slice(format!(",\"op\":\"{op}\"}}\n").as_bytes());
                }
            }
        }
        self.lines.write(&self.buffer)
    }
    fn pre_commit(&mut self, checkpoint: CheckpointId, state: &mut StateWriter) -> Result<()> {
        self.lines.pre_commit(checkpoint, state)
    }
    fn close(&mut self) -> Result<()> {
        self.lines.close()
    }
}
