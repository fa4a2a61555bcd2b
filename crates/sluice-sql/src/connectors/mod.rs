//! The connectors of SQL tables: what `WITH ('connector' = '...')` names.
//!
//! A table read by a query becomes a [`ScanSource`] of Arrow record batches holding the
//! table's physical columns (only those the job uses); a table written by `INSERT INTO`
//! becomes a [`TableSink`]. Each connector takes its options out of the table's
//! [`Options`], and whatever is left is an error naming the unknown option.

mod datagen;
mod filesystem;
mod log;
mod log_source;
mod nexmark;
mod print;

use crate::ddl::TableDefinition;
use crate::format::Unread;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use sluice_api::{BatchWriter, SinkContext};
use sluice_runtime::checkpoint::{Committer, StateReader};
use sluice_runtime::SourceReader;
use sluice_types::{Error, Result};
use std::sync::Arc;

/// A reader of one worker's share of a table.
pub type BoxedReader = Box<dyn SourceReader<Batch = RecordBatch>>;

/// A writer of one worker's share of a table's rows.
pub type BoxedWriter = Box<dyn BatchWriter<RecordBatch>>;

/// A table as a job reads it.
pub trait ScanSource: Send + Sync {
    /// The operator's name.
    fn name(&self) -> String;
    /// The reader of `worker` of `parallelism`.
    fn reader(&self, worker: usize, parallelism: usize) -> Result<BoxedReader>;
    /// A reader resuming from what the checkpoint's readers wrote.
    fn restore_reader(&self, worker: usize, parallelism: usize, state: &StateReader) -> Result<BoxedReader>;
}

/// A table as a job writes it.
pub trait TableSink: Send + Sync {
    /// The operator's name.
    fn name(&self) -> String;
    /// The writer of one worker.
    fn writer(&self, context: &SinkContext) -> Result<BoxedWriter>;
    /// What publishes pre-committed transactions, for sinks that write in them.
    fn committer(&self) -> Option<Arc<dyn Committer>> {
        None
    }
    /// Whether it takes updating rows (retractions and upserts), not only inserts.
    fn accepts_updates(&self) -> bool {
        false
    }
}

/// A table's `WITH` options, taken one by one by its connector.
pub struct Options {
    table: String,
    connector: String,
    left: Vec<(String, String)>,
}

impl Options {
    /// The options of `table`, less `connector`.
    pub fn of(table: &TableDefinition) -> Result<Self> {
        let mut left = table.options.clone();
        let connector = match left.iter().position(|(k, _)| k == "connector") {
            Some(at) => left.remove(at).1,
            None => {
                return Err(Error::invalid_job(format!(
                    "table {} has no 'connector' option (one of: {})",
                    table.name,
                    CONNECTORS.join(", ")
                )))
            }
        };
        Ok(Options { table: table.name.clone(), connector, left })
    }

    /// The connector's name.
    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// Takes option `key`.
    pub fn take(&mut self, key: &str) -> Option<String> {
        let at = self.left.iter().position(|(k, _)| k == key)?;
        Some(self.left.remove(at).1)
    }

    /// Takes option `key`, which must be there.
    pub fn required(&mut self, key: &str) -> Result<String> {
        self.take(key).ok_or_else(|| self.error(format!("the '{}' connector needs the option '{key}'", self.connector)))
    }

    /// Takes option `key`, parsed.
    pub fn parse<T: std::str::FromStr>(&mut self, key: &str) -> Result<Option<T>> {
        match self.take(key) {
            None => Ok(None),
            Some(value) => value.trim().parse().map(Some).map_err(|_| {
                self.error(format!("option '{key}' = '{value}' is not a valid {}", std::any::type_name::<T>()))
            }),
        }
    }

    /// Takes option `key`, a boolean.
    pub fn flag(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.take(key).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v == "true" => Ok(true),
            Some(v) if v == "false" => Ok(false),
            Some(v) => Err(self.error(format!("option '{key}' = '{v}' must be 'true' or 'false'"))),
        }
    }

    /// An error about this table's options.
    pub fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::invalid_job(format!("table {}: {message}", self.table))
    }

    /// Fails if options are left that the connector did not take.
    pub fn finish(self, known: &[&str]) -> Result<()> {
        match self.left.first() {
            None => Ok(()),
            Some((key, _)) => Err(self.error(format!(
                "the '{}' connector has no option '{key}' (its options: {})",
                self.connector,
                known.join(", ")
            ))),
        }
    }
}

/// The connectors, by name.
pub const CONNECTORS: [&str; 7] = ["blackhole", "datagen", "filesystem", "log", "nexmark", "print", "upsert-log"];

/// Fails unless `table` names a connector there is.
pub fn check_connector(table: &TableDefinition) -> Result<()> {
    let options = Options::of(table)?;
    match CONNECTORS.contains(&options.connector()) {
        true => Ok(()),
        false => Err(unknown(&options, options.connector())),
    }
}

/// The source reading `table`'s physical columns `schema`.
pub fn scan(table: &TableDefinition, schema: SchemaRef, unread: Unread) -> Result<Arc<dyn ScanSource>> {
    let options = Options::of(table)?;
    match options.connector() {
        "nexmark" => nexmark::scan(schema, options),
        "datagen" => datagen::scan(table, schema, options),
        "filesystem" if !table.partitioned_by.is_empty() => {
            Err(options
                .error("not supported yet: reading a partitioned filesystem table (it is written only, for now)"))
        }
        "filesystem" => filesystem::scan(schema, options, unread),
        "print" | "blackhole" => Err(options.error(format!("the '{}' connector cannot be read", options.connector()))),
        "log" | "upsert-log" => log_source::scan(schema, options, unread),
        other => Err(unknown(&options, other)),
    }
}

/// The sink writing rows of `schema` to `table`.
pub fn sink(table: &TableDefinition, schema: SchemaRef) -> Result<Arc<dyn TableSink>> {
    let options = Options::of(table)?;
    match options.connector() {
        "print" => print::print(schema, options),
        "blackhole" => print::blackhole(options),
        "filesystem" => filesystem::sink(table, schema, options),
        "log" | "upsert-log" => log::sink(table, schema, options),
        "nexmark" | "datagen" => {
            Err(options.error(format!("the '{}' connector cannot be written", options.connector())))
        }
        other => Err(unknown(&options, other)),
    }
}

fn unknown(options: &Options, connector: &str) -> Error {
    options.error(format!("there is no connector '{connector}' (there are: {})", CONNECTORS.join(", ")))
}
