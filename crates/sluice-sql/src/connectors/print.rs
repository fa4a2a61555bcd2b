//! `'connector' = 'print'` writes each row to standard output as Flink's print sink
//! does (`+I[1, a]`, prefixed by `N> ` with the worker's number from 1 when the job has
//! several, and by `identifier:` when `print-identifier` is set);
//! `'connector' = 'blackhole'` drops every row (for benchmarks).

use super::{BoxedWriter, Options, TableSink};
use crate::changelog::{row_kinds, RowKind};
use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::SchemaRef;
use sluice_api::{BatchWriter, SinkContext};
use sluice_runtime::checkpoint::{CheckpointId, StateWriter};
use sluice_types::{Error, Result};
use std::io::Write;
use std::sync::Arc;

pub(super) fn print(schema: SchemaRef, mut options: Options) -> Result<Arc<dyn TableSink>> {
    let identifier = options.take("print-identifier");
    let standard_error = options.flag("standard-error", false)?;
    options.finish(&["print-identifier", "standard-error"])?;
    Ok(Arc::new(Print { schema, identifier, standard_error }))
}

pub(super) fn blackhole(options: Options) -> Result<Arc<dyn TableSink>> {
    options.finish(&[])?;
    Ok(Arc::new(Blackhole))
}

struct Print {
    schema: SchemaRef,
    identifier: Option<String>,
    standard_error: bool,
}

impl TableSink for Print {
    fn name(&self) -> String {
        "print".to_string()
    }

    fn writer(&self, context: &SinkContext) -> Result<BoxedWriter> {
        let mut prefix = String::new();
        if let Some(identifier) = &self.identifier {
            prefix.push_str(identifier);
            prefix.push(':');
        }
        if context.parallelism > 1 {
            prefix.push_str(&format!("{}> ", context.worker + 1));
        }
        Ok(Box::new(PrintWriter { prefix, schema: self.schema.clone(), standard_error: self.standard_error }))
    }

    fn accepts_updates(&self) -> bool {
        true
    }
}

struct PrintWriter {
    prefix: String,
    schema: SchemaRef,
    standard_error: bool,
}

impl BatchWriter<RecordBatch> for PrintWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let text = format_rows(&self.prefix, &self.schema, &batch)?;
        let written = match self.standard_error {
            true => std::io::stderr().lock().write_all(text.as_bytes()),
            false => std::io::stdout().lock().write_all(text.as_bytes()),
        };
        written.map_err(|e| Error::io("standard output", e))
    }
    fn pre_commit(&mut self, _checkpoint: CheckpointId, _state: &mut StateWriter) -> Result<()> {
        std::io::stdout().flush().map_err(|e| Error::io("standard output", e))
    }
    fn close(&mut self) -> Result<()> {
        std::io::stdout().flush().map_err(|e| Error::io("standard output", e))
    }
}

/// The rows of `batch` as Flink prints them, one per line: `+I[1, a]`.
pub(crate) fn format_rows(prefix: &str, schema: &SchemaRef, batch: &RecordBatch) -> Result<String> {
    let options = FormatOptions::default().with_null("NULL");
    let kinds = row_kinds(batch);
    let columns = crate::changelog::data_columns(batch);
    let formatters = columns
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::internal(format!("printing {schema:?}: {e}")))?;
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        text.push_str(prefix);
        text.push_str(kinds.as_ref().map_or(RowKind::Insert, |k| RowKind::from_code(k.value(row))).short());
        text.push('[');
        for (i, formatter) in formatters.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(&formatter.value(row).to_string());
        }
        text.push_str("]\n");
    }
    Ok(text)
}

struct Blackhole;

impl TableSink for Blackhole {
    fn name(&self) -> String {
        "blackhole".to_string()
    }

    fn writer(&self, _context: &SinkContext) -> Result<BoxedWriter> {
        Ok(Box::new(Discard))
    }

    fn accepts_updates(&self) -> bool {
        true
    }
}

struct Discard;

impl BatchWriter<RecordBatch> for Discard {
    fn write(&mut self, _batch: RecordBatch) -> Result<()> {
        Ok(())
    }
}
