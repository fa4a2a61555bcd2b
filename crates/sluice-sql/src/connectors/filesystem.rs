//! `'connector' = 'filesystem'`: a file or a directory of files, read in parallel by
//! byte ranges (`sluice_connectors::file::LineInput`), and written as a directory of part
//! files, exactly-once when the job checkpoints exactly-once
//! (`sluice_connectors::file::LineFiles`). Format `json`: one JSON object per line,
//! as Flink's `json` format reads and writes them; `csv`: one row of fields per line,
//! as Flink's `csv` format; `debezium-json` (written only, for now): a changelog, each
//! row wrapped as Debezium's `before`, `after` and `op`, as Flink writes it, so a sink
//! of updating results.

use super::{BoxedReader, BoxedWriter, Options, ScanSource, TableSink};
use crate::changelog::{row_kinds, RowKind};
use crate::ddl::TableDefinition;
use crate::format::csv::{self, Csv, CsvDecoder, CsvEncoder};
use crate::format::json::{JsonDecoder, JsonEncoder};
use crate::format::lines::ParseErrors;
use crate::format::Unread;
use arrow_array::{Array, RecordBatch};
use arrow_schema::SchemaRef;
use sluice_api::{BatchWriter, SinkContext};
use sluice_connectors::file::{LineFiles, LineInput, LineWriter};
use sluice_runtime::checkpoint::{CheckpointId, Committer, StateReader, StateWriter};
use sluice_types::Result;
use std::path::Path;
use std::sync::Arc;

const JSON_OPTIONS: [&str; 3] = ["json.ignore-parse-errors", "json.fail-on-parse-errors", "json.fail-on-missing-field"];

/// How rows are written in the files.
#[derive(Clone, PartialEq, Eq)]
enum Format {
    Json,
    Csv(Csv),
    DebeziumJson,
}

fn format(options: &mut Options) -> Result<Format> {
    match options.required("format")?.as_str() {
        "json" => Ok(Format::Json),
        "csv" => Ok(Format::Csv(Csv::from_options(options)?.0)),
        "debezium-json" => Ok(Format::DebeziumJson),
        other => Err(options
            .error(format!("the filesystem connector has no format '{other}' (it has: json, csv, debezium-json)"))),
    }
}

/// The connector's options, and those of `format`.
fn known(format: &Format) -> Vec<&'static str> {
    let mut known = vec!["path", "format"];
    match format {
        Format::Json => known.extend(JSON_OPTIONS),
        Format::Csv(_) => known.extend(csv::OPTIONS),
        Format::DebeziumJson => {}
    }
    known
}

pub(super) fn scan(schema: SchemaRef, mut options: Options, unread: Unread) -> Result<Arc<dyn ScanSource>> {
    let path = options.required("path")?;
    let format = match options.required("format")?.as_str() {
        "json" => Format::Json,
        "csv" => {
            let (csv, errors) = Csv::from_options(&mut options)?;
            csv.check(&schema).map_err(|e| options.error(e))?;
            options.finish(&known(&Format::Csv(csv.clone())))?;
            let input = LineInput::new(&path).map_err(|e| sluice_types::Error::invalid_job(format!("{e}")))?;
            return Ok(Arc::new(FileTable { input, schema, errors, format: Format::Csv(csv), unread }));
        }
        "debezium-json" => {
            return Err(options.error(
                "not supported yet: reading format 'debezium-json' (it is written only, for now); read format \
                 'json'",
            ))
        }
        other => {
            return Err(options.error(format!("the filesystem connector has no format '{other}' (it has: json, csv)")))
        }
    };
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
    options.finish(&known(&format))?;
    let input = LineInput::new(&path).map_err(|e| sluice_types::Error::invalid_job(format!("{e}")))?;
    Ok(Arc::new(FileTable { input, schema, errors, format, unread }))
}

struct FileTable {
    input: LineInput,
    schema: SchemaRef,
    errors: ParseErrors,
    format: Format,
    /// The nested fields no query reads.
    unread: Unread,
}

impl ScanSource for FileTable {
    fn name(&self) -> String {
        "filesystem".to_string()
    }

    fn reader(&self, worker: usize, parallelism: usize) -> Result<BoxedReader> {
        let (schema, errors) = (self.schema.clone(), self.errors);
        Ok(match &self.format {
            Format::Csv(csv) => {
                Box::new(self.input.reader(worker, parallelism, CsvDecoder::new(csv.clone(), schema, errors)?)?)
            }
            _ => Box::new(self.input.reader(worker, parallelism, JsonDecoder::new(schema, errors, &self.unread)?)?),
        })
    }

    fn restore_reader(&self, worker: usize, parallelism: usize, state: &StateReader) -> Result<BoxedReader> {
        let (schema, errors) = (self.schema.clone(), self.errors);
        Ok(match &self.format {
            Format::Csv(csv) => Box::new(self.input.restore_reader(
                worker,
                parallelism,
                state,
                CsvDecoder::new(csv.clone(), schema, errors)?,
            )?),
            _ => Box::new(self.input.restore_reader(
                worker,
                parallelism,
                state,
                JsonDecoder::new(schema, errors, &self.unread)?,
            )?),
        })
    }
}

pub(super) fn sink(table: &TableDefinition, schema: SchemaRef, mut options: Options) -> Result<Arc<dyn TableSink>> {
    let path = options.required("path")?;
    let partitions: Vec<usize> = table
        .partitioned_by
        .iter()
        .map(|name| schema.index_of(name).map_err(|_| options.error(format!("no partition column {name}"))))
        .collect::<Result<_>>()?;
    let default_partition =
        options.take("partition.default-name").unwrap_or_else(|| "__DEFAULT_PARTITION__".to_string());
    if partitions.len() == schema.fields().len() {
        return Err(options.error("every column is a partition column: the files would hold nothing"));
    }
    // The files hold the columns but the partition columns, which their directories name.
    let full = schema.clone();
    let data: Vec<usize> = (0..schema.fields().len()).filter(|i| !partitions.contains(i)).collect();
    let schema = Arc::new(schema.project(&data).map_err(|e| options.error(e))?);
    let format = format(&mut options)?;
    if let Format::Csv(csv) = &format {
        csv.check(&schema).map_err(|e| options.error(e))?;
    }
    let mut known = known(&format);
    known.retain(|k| !k.ends_with("parse-errors") && !k.ends_with("missing-field"));
    if !partitions.is_empty() {
        known.push("partition.default-name");
    }
    options.finish(&known)?;
    let partitioning = (!partitions.is_empty()).then(|| {
        let names = partitions.iter().map(|&i| full.field(i).name().clone()).collect();
        Arc::new(Partitioning { columns: partitions, names, data, default: default_partition })
    });
    let extension = match format {
        Format::Csv(_) => "csv",
        _ => "json",
    };
    Ok(Arc::new(FileSink { files: LineFiles::directory(&path, extension)?, schema, format, partitioning }))
}

struct FileSink {
    files: LineFiles,
    /// The columns the files hold.
    schema: SchemaRef,
    format: Format,
    partitioning: Option<Arc<Partitioning>>,
}

/// How a table `PARTITIONED BY` columns is written: rows into the directory of their
/// partition, named as Flink names it (`dt=2026-01-01/hm=10%3A00`).
struct Partitioning {
    /// The partition columns, in the rows written.
    columns: Vec<usize>,
    names: Vec<String>,
    /// The other columns (and the row kind), which the files hold.
    data: Vec<usize>,
    /// The directory name of a NULL value (`partition.default-name`).
    default: String,
}

/// `value` escaped as Flink escapes partition values in paths.
fn escape_path_name(value: &str, out: &mut String) {
    for c in value.chars() {
        let special = matches!(c, '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^')
            || (c as u32) < 0x20
            || c as u32 == 0x7f;
        match special {
            true => out.push_str(&format!("%{:02X}", c as u32)),
            false => out.push(c),
        }
    }
}

impl Partitioning {
    /// The rows of `batch` by partition directory, in order of first appearance.
    fn split(&self, batch: &RecordBatch) -> Result<Vec<(String, RecordBatch)>> {
        let error = |e: arrow_schema::ArrowError| sluice_types::Error::internal(format!("partitions: {e}"));
        let values = self
            .columns
            .iter()
            .map(|&i| arrow_cast::cast(batch.column(i), &arrow_schema::DataType::Utf8).map_err(error))
            .collect::<Result<Vec<_>>>()?;
        let values: Vec<&arrow_array::StringArray> =
            values.iter().map(|v| v.as_any().downcast_ref().expect("invariant: cast to Utf8")).collect();
        let mut groups: rustc_hash::FxHashMap<String, usize> = rustc_hash::FxHashMap::default();
        let mut rows: Vec<(String, Vec<u32>)> = Vec::new();
        let mut key = String::new();
        for row in 0..batch.num_rows() {
            key.clear();
            for (n, (name, column)) in self.names.iter().zip(&values).enumerate() {
                if n > 0 {
                    key.push('/');
                }
                escape_path_name(name, &mut key);
                key.push('=');
                match column.is_null(row) {
                    true => key.push_str(&self.default),
                    false => escape_path_name(column.value(row), &mut key),
                }
            }
            let group = match groups.get(key.as_str()) {
                Some(&group) => group,
                None => {
                    groups.insert(key.clone(), rows.len());
                    rows.push((key.clone(), Vec::new()));
                    rows.len() - 1
                }
            };
            rows[group].1.push(row as u32);
        }
        let mut data = self.data.clone();
        if batch.schema().fields().last().is_some_and(|f| f.name() == crate::changelog::ROW_KIND) {
            data.push(batch.num_columns() - 1);
        }
        let projected = batch.project(&data).map_err(error)?;
        rows.into_iter()
            .map(|(key, indices)| {
                let part = match indices.len() == batch.num_rows() {
                    true => projected.clone(),
                    false => {
                        arrow_select::take::take_record_batch(&projected, &arrow_array::UInt32Array::from(indices))
                            .map_err(error)?
                    }
                };
                Ok((key, part))
            })
            .collect()
    }
}

impl TableSink for FileSink {
    fn name(&self) -> String {
        "filesystem".to_string()
    }

    fn writer(&self, context: &SinkContext) -> Result<BoxedWriter> {
        Ok(Box::new(FileWriter {
            lines: self.files.writer(context)?,
            partitioned: self.partitioning.clone().map(|partitioning| Partitioned {
                partitioning,
                files: self.files.clone(),
                context: *context,
                writers: Default::default(),
            }),
            encoder: match &self.format {
                Format::Csv(csv) => Encoder::Csv(CsvEncoder::new(self.schema.clone(), csv.clone())),
                _ => Encoder::Json(JsonEncoder::new(self.schema.clone())),
            },
            debezium: self.format == Format::DebeziumJson,
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

enum Encoder {
    Json(JsonEncoder),
    Csv(CsvEncoder),
}

impl Encoder {
    fn encode(&self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Encoder::Json(json) => json.encode(batch, out),
            Encoder::Csv(csv) => csv.encode(batch, out),
        }
    }
}

/// One worker's writers of partition directories.
struct Partitioned {
    partitioning: Arc<Partitioning>,
    files: LineFiles,
    context: SinkContext,
    /// Each partition's writer, once written to (kept: its part file names go on).
    writers: std::collections::BTreeMap<String, LineWriter>,
}

struct FileWriter {
    lines: LineWriter,
    partitioned: Option<Partitioned>,
    encoder: Encoder,
    /// Whether rows are wrapped as Debezium's changes.
    debezium: bool,
    buffer: Vec<u8>,
    rows: Vec<u8>,
}

impl BatchWriter<RecordBatch> for FileWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let Some(partitioned) = &self.partitioned else {
            self.encode(&batch)?;
            return self.lines.write(&self.buffer);
        };
        for (partition, rows) in partitioned.partitioning.split(&batch)? {
            self.encode(&rows)?;
            let partitioned = self.partitioned.as_mut().expect("invariant: partitioned");
            let writer = match partitioned.writers.entry(partition) {
                std::collections::btree_map::Entry::Occupied(writer) => writer.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    let writer = partitioned.files.partition_writer(&partitioned.context, Path::new(slot.key()))?;
                    slot.insert(writer)
                }
            };
            writer.write(&self.buffer)?;
        }
        Ok(())
    }
    fn pre_commit(&mut self, checkpoint: CheckpointId, state: &mut StateWriter) -> Result<()> {
        self.lines.pre_commit(checkpoint, state)?;
        for writer in self.partitioned.iter_mut().flat_map(|p| p.writers.values_mut()) {
            writer.pre_commit(checkpoint, state)?;
        }
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        self.lines.close()?;
        for writer in self.partitioned.iter_mut().flat_map(|p| p.writers.values_mut()) {
            writer.close()?;
        }
        Ok(())
    }
}

impl FileWriter {
    /// `batch`'s rows encoded into the buffer.
    fn encode(&mut self, batch: &RecordBatch) -> Result<()> {
        self.buffer.clear();
        match self.debezium {
            false => self.encoder.encode(batch, &mut self.buffer)?,
            true => {
                // Flink's debezium-json: an insert or the row after an update is a
                // create of `after`, the row before or a delete a delete of `before`.
                self.rows.clear();
                self.encoder.encode(batch, &mut self.rows)?;
                let kinds = row_kinds(batch);
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
        Ok(())
    }
}
