//! The embedded log as SQL tables, with the option names of Flink's Kafka connectors:
//! `'connector' = 'log'` writes each row as a record (`format` `json`), and
//! `'connector' = 'upsert-log'` writes updating results keyed by the table's primary
//! key, as Flink's `upsert-kafka` does: an insert or the row after an update is the
//! key's value, a delete a tombstone (an empty value), and the row before an update is
//! not written, so a compacted topic holds each key's latest row.
//!
//! Written through the typed sink's record writer, so in transactions committed with
//! checkpoints when the job is exactly-once. A missing topic is created (one
//! partition; compacted for `upsert-log`), as a Kafka broker does by default. A `log`
//! table read is `log_source.rs`'s.

use super::{BoxedWriter, Options, TableSink};
use crate::changelog::{row_kinds, RowKind};
use crate::ddl::TableDefinition;
use crate::format::json::JsonEncoder;
use arrow_array::{RecordBatch, UInt32Array};
use arrow_schema::{Schema, SchemaRef};
use sluice_api::{BatchWriter, SinkContext};
use sluice_connectors::log::LogRecordWriter;
use sluice_connectors::LogSink;
use sluice_log::{Log, TopicConfig};
use sluice_runtime::checkpoint::{CheckpointId, Committer, StateWriter};
use sluice_types::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;

const LOG_OPTIONS: [&str; 6] = ["topic", "format", "value.format", "key.format", "key.fields", "log.dir"];
const UPSERT_OPTIONS: [&str; 4] = ["topic", "key.format", "value.format", "log.dir"];
const COMMON_OPTIONS: [&str; 1] = ["sink.transactional-id-prefix"];

/// The log's directory: the table's `log.dir`, else `$SLUICE_DATA_DIR`, else
/// `sluice-data`, as for the `sluice topic` commands.
pub(super) fn log_dir(options: &mut Options) -> PathBuf {
    options
        .take("log.dir")
        .or_else(|| std::env::var("SLUICE_DATA_DIR").ok())
        .unwrap_or_else(|| "sluice-data".to_string())
        .into()
}

pub(super) fn json_format(options: &mut Options, key: &str, required: bool) -> Result<bool> {
    match options.take(key) {
        None if required => {
            Err(options.error(format!("the '{}' connector needs the option '{key}'", options.connector())))
        }
        None => Ok(false),
        Some(format) if format == "json" => Ok(true),
        Some(other) => {
            Err(options.error(format!("option '{key}': there is no format '{other}' here (there is: json)")))
        }
    }
}

/// The column numbers of `names` in `schema`.
fn columns_of(options: &Options, schema: &Schema, names: &[String], what: &str) -> Result<Vec<usize>> {
    names
        .iter()
        .map(|name| {
            schema.index_of(name).map_err(|_| options.error(format!("{what} names {name}, which is not a column")))
        })
        .collect()
}

pub(super) fn sink(table: &TableDefinition, schema: SchemaRef, mut options: Options) -> Result<Arc<dyn TableSink>> {
    let upsert = options.connector() == "upsert-log";
    let topic = options.required("topic")?;
    let dir = log_dir(&mut options);
    let prefix = options.take("sink.transactional-id-prefix");
    let key = if upsert {
        if table.primary_key.is_empty() {
            return Err(options.error(
                "the 'upsert-log' connector needs a PRIMARY KEY (...) NOT ENFORCED: the key its records are written \
                 under",
            ));
        }
        json_format(&mut options, "key.format", true)?;
        json_format(&mut options, "value.format", true)?;
        Some(columns_of(&options, &schema, &table.primary_key, "the primary key")?)
    } else {
        let format = json_format(&mut options, "format", false)? | json_format(&mut options, "value.format", false)?;
        if !format {
            return Err(options.error("the 'log' connector needs the option 'format' (or 'value.format') = 'json'"));
        }
        let fields = options.take("key.fields");
        let key_format = json_format(&mut options, "key.format", false)?;
        match (fields, key_format) {
            (Some(fields), true) => {
                let names: Vec<String> = fields.split(';').map(|f| f.trim().to_string()).collect();
                Some(columns_of(&options, &schema, &names, "'key.fields'")?)
            }
            (None, false) => None,
            _ => return Err(options.error("'key.fields' and 'key.format' = 'json' go together")),
        }
    };
    let known: Vec<&str> = if upsert { UPSERT_OPTIONS.to_vec() } else { LOG_OPTIONS.to_vec() };
    options.finish(&[known, COMMON_OPTIONS.to_vec()].concat())?;

    let log = Log::open(sluice_fs::local(), &dir)
        .map_err(|e| Error::invalid_job(format!("table {}: opening the log in {}: {e}", table.name, dir.display())))?;
    if log.describe(&topic).is_err() {
        let config = TopicConfig { compact: upsert, ..TopicConfig::default() };
        log.create_topic(&topic, &config)
            .map_err(|e| Error::invalid_job(format!("table {}: creating topic {topic}: {e}", table.name)))?;
    }
    let mut sink = LogSink::<()>::new(&log, &topic)?;
    if let Some(prefix) = prefix {
        sink = sink.transactional_id_prefix(&prefix);
    }
    let key_schema = key.as_ref().map(|columns| Arc::new(schema.project(columns).expect("invariant: columns")));
    Ok(Arc::new(LogTable { sink, topic, schema, key, key_schema, upsert }))
}

struct LogTable {
    sink: LogSink<()>,
    topic: String,
    schema: SchemaRef,
    key: Option<Vec<usize>>,
    key_schema: Option<SchemaRef>,
    upsert: bool,
}

impl TableSink for LogTable {
    fn name(&self) -> String {
        format!("{} {}", if self.upsert { "upsert-log" } else { "log" }, self.topic)
    }

    fn writer(&self, context: &SinkContext) -> Result<BoxedWriter> {
        Ok(Box::new(LogTableWriter {
            records: self.sink.record_writer(context)?,
            values: JsonEncoder::new(self.schema.clone()),
            keys: self.key_schema.clone().map(JsonEncoder::new),
            key: self.key.clone(),
            upsert: self.upsert,
            value_lines: Vec::new(),
            key_lines: Vec::new(),
        }))
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        Some(self.sink.record_committer())
    }

    fn accepts_updates(&self) -> bool {
        self.upsert
    }
}

struct LogTableWriter {
    records: LogRecordWriter,
    values: JsonEncoder,
    keys: Option<JsonEncoder>,
    key: Option<Vec<usize>>,
    upsert: bool,
    value_lines: Vec<u8>,
    key_lines: Vec<u8>,
}

impl LogTableWriter {
    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: "log sink".into(), message: e.to_string() }
    }
}

impl BatchWriter<RecordBatch> for LogTableWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        // Rows before an update are not written: the update's row after replaces them.
        let batch = match row_kinds(&batch) {
            Some(kinds) if self.upsert => {
                let keep: Vec<u32> = (0..batch.num_rows() as u32)
                    .filter(|&i| RowKind::from_code(kinds.value(i as usize)) != RowKind::UpdateBefore)
                    .collect();
                arrow_select::take::take_record_batch(&batch, &UInt32Array::from(keep)).map_err(|e| self.error(e))?
            }
            _ => batch,
        };
        self.value_lines.clear();
        self.values.encode(&batch, &mut self.value_lines)?;
        self.key_lines.clear();
        if let (Some(keys), Some(columns)) = (&self.keys, &self.key) {
            let projected = batch.project(columns).map_err(|e| self.error(e))?;
            keys.encode(&projected, &mut self.key_lines)?;
        }
        let kinds = row_kinds(&batch).cloned();
        let timestamp = sluice_runtime::now_millis();
        let mut key_lines = self.key_lines.split(|b| *b == b'\n');
        let value_lines = std::mem::take(&mut self.value_lines);
        for (i, value) in value_lines.split(|b| *b == b'\n').take(batch.num_rows()).enumerate() {
            let key = key_lines.next().filter(|_| self.key.is_some());
            let deleted = kinds.as_ref().is_some_and(|k| RowKind::from_code(k.value(i)) == RowKind::Delete);
            let value: &[u8] = if deleted && self.upsert { b"" } else { value };
            self.records.send(key, value, timestamp)?;
        }
        self.value_lines = value_lines;
        Ok(())
    }
    fn pre_commit(&mut self, _checkpoint: CheckpointId, state: &mut StateWriter) -> Result<()> {
        self.records.pre_commit(state)
    }
    fn close(&mut self) -> Result<()> {
        self.records.close()
    }
}
