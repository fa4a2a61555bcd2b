//! `'connector' = 'log'` read: a topic of the embedded log as a table, each record's
//! value a JSON object of the row (`format` = `json`), with the option names of Flink's
//! Kafka connector where they apply: `scan.startup.mode` (`earliest-offset`, the
//! default, `latest-offset`, `timestamp` with `scan.startup.timestamp-millis`) and
//! `scan.bounded.mode` (`unbounded`, the default, or `latest-offset`: the job ends at
//! what the topic holds when it starts, as a batch job does).
//!
//! The typed log source reads the partitions (one split per partition, dealt to the
//! workers; positions in checkpoints, read-committed), each value kept as raw JSON; a
//! batch of them is decoded at once into the columns the job uses, as a file's lines
//! are, and values that cannot be read go to the dead letters with the reason.

use super::{BoxedReader, Options, ScanSource};
use crate::format::json::JsonDecoder;
use crate::format::lines::ParseErrors;
use crate::format::Unread;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde_json::value::RawValue;
use sluice_api::Source;
use sluice_connectors::file::LineDecoder;
use sluice_connectors::log::LogReader;
use sluice_connectors::{DeadLetter, DeadLetters, LogSource, StartFrom};
use sluice_log::Log;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{SourcePoll, SourceReader};
use sluice_types::{Error, Result, Timestamp};
use std::sync::Arc;

/// The options of a log table that is read.
pub const SOURCE_OPTIONS: [&str; 8] = [
    "topic",
    "format",
    "value.format",
    "log.dir",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "scan.bounded.mode",
    "json.ignore-parse-errors",
];

pub(super) fn scan(schema: SchemaRef, mut options: Options, unread: Unread) -> Result<Arc<dyn ScanSource>> {
    if options.connector() == "upsert-log" {
        return Err(options.error(
            "not supported yet: reading the 'upsert-log' connector (a changelog of upserts); read the topic as a \
             'log' table",
        ));
    }
    let topic = options.required("topic")?;
    let dir = super::log::log_dir(&mut options);
    let format = super::log::json_format(&mut options, "format", false)?
        | super::log::json_format(&mut options, "value.format", false)?;
    if !format {
        return Err(options.error("the 'log' connector needs the option 'format' (or 'value.format') = 'json'"));
    }
    let start = match options.take("scan.startup.mode").as_deref() {
        None | Some("earliest-offset") => StartFrom::Earliest,
        Some("latest-offset") => StartFrom::Latest,
        Some("timestamp") => match options.parse::<Timestamp>("scan.startup.timestamp-millis")? {
            Some(at) => StartFrom::Timestamp(at),
            None => {
                return Err(options.error("'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis'"))
            }
        },
        Some(other) => {
            return Err(options.error(format!(
                "'scan.startup.mode' = '{other}' is not supported here (earliest-offset, latest-offset or timestamp)"
            )))
        }
    };
    let bounded = match options.take("scan.bounded.mode").as_deref() {
        None | Some("unbounded") => false,
        Some("latest-offset") => true,
        Some(other) => {
            return Err(options
                .error(format!("'scan.bounded.mode' = '{other}' is not supported here (unbounded or latest-offset)")))
        }
    };
    let errors = match options.flag("json.ignore-parse-errors", false)? {
        true => ParseErrors::Ignore,
        false => ParseErrors::DeadLetter,
    };
    options.finish(&SOURCE_OPTIONS)?;
    let log = Log::open(sluice_fs::local(), &dir)
        .map_err(|e| options_error(&topic, format!("opening the log in {}: {e}", dir.display())))?;
    let mut source = LogSource::<Box<RawValue>>::new(&log, &topic)?.start_from(start);
    if bounded {
        source = source.bounded()?;
    }
    Ok(Arc::new(LogTable { source, topic, schema, errors, dead_letters: DeadLetters::default(), unread }))
}

fn options_error(topic: &str, message: String) -> Error {
    Error::invalid_job(format!("log topic {topic}: {message}"))
}

struct LogTable {
    source: LogSource<Box<RawValue>>,
    topic: String,
    schema: SchemaRef,
    errors: ParseErrors,
    dead_letters: DeadLetters,
    /// The nested fields no query reads.
    unread: Unread,
}

impl LogTable {
    fn reader_of(&self, records: LogReader<Box<RawValue>>) -> Result<BoxedReader> {
        Ok(Box::new(LogTableReader {
            records,
            decoder: JsonDecoder::new(self.schema.clone(), self.errors, &self.unread)?,
            topic: self.topic.clone(),
            dead_letters: self.dead_letters.clone(),
            rejected: 0,
        }))
    }
}

impl ScanSource for LogTable {
    fn name(&self) -> String {
        format!("log {}", self.topic)
    }

    fn reader(&self, worker: usize, parallelism: usize) -> Result<BoxedReader> {
        self.reader_of(self.source.reader(worker, parallelism)?)
    }

    fn restore_reader(&self, worker: usize, parallelism: usize, state: &StateReader) -> Result<BoxedReader> {
        self.reader_of(self.source.restore_reader(worker, parallelism, state)?)
    }
}

/// One worker's partitions of a log table, as record batches.
struct LogTableReader {
    records: LogReader<Box<RawValue>>,
    decoder: JsonDecoder,
    topic: String,
    dead_letters: DeadLetters,
    rejected: u64,
}

impl SourceReader for LogTableReader {
    type Batch = RecordBatch;

    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<RecordBatch>> {
        let records = match self.records.poll(max_records)? {
            SourcePoll::Batch(records) => records,
            SourcePoll::Pending => return Ok(SourcePoll::Pending),
            SourcePoll::Idle => return Ok(SourcePoll::Idle),
            SourcePoll::Finished => return Ok(SourcePoll::Finished),
        };
        for record in &records {
            self.decoder.decode(record.value.get().as_bytes());
        }
        let (batch, rejected) = self.decoder.take()?;
        for line in rejected {
            self.rejected += 1;
            self.dead_letters.write(DeadLetter {
                source: format!("log topic {}", self.topic),
                position: format!("record {} of a batch read", line.index),
                reason: line.reason,
                input: String::from_utf8_lossy(&line.line).into_owned(),
            })?;
        }
        Ok(SourcePoll::Batch(batch))
    }

    fn position(&self) -> u64 {
        self.records.position()
    }

    fn dead_letters(&self) -> u64 {
        self.records.dead_letters() + self.rejected
    }

    fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        self.dead_letters.sync()?;
        self.records.snapshot(state)
    }

    fn watermark(&mut self) -> Option<Timestamp> {
        None
    }

    fn lag(&mut self) -> Option<u64> {
        self.records.lag()
    }
}
