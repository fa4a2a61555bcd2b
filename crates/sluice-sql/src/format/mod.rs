//! Formats of the lines of files and of log records: `json` and `csv`. JSON is
//! decoded straight into Arrow columns (`json_columns/`) where the columns' types
//! allow, else, as CSV is, by an arrow decoder a batch of lines at a time
//! (`lines.rs`).

pub mod csv;
pub mod json;
pub mod json_columns;
pub mod lines;

use std::collections::BTreeSet;
use std::sync::Arc;

/// The nested fields of a table's `ROW` columns that no query of the job reads, as
/// (column, field): decoders may read past them, and they come out NULL.
#[derive(Clone, Debug, Default)]
pub struct Unread(Arc<BTreeSet<(String, String)>>);

impl Unread {
    /// The fields `(column, field)` no query reads.
    pub fn new(fields: BTreeSet<(String, String)>) -> Self {
        Unread(Arc::new(fields))
    }

    /// Whether the field at `path` (`["Bid", "url"]`) is unread.
    pub fn skips(&self, path: &[&str]) -> bool {
        match path {
            [column, field] => self.0.iter().any(|(c, f)| c == column && f == field),
            _ => false,
        }
    }
}
