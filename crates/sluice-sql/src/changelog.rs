//! Updating results as Flink defines them: each row of a changelog stream has a kind,
//! an insert (`+I`), the row an update replaces (`-U`), the row that replaces it
//! (`+U`), or a delete (`-D`).
//!
//! An append-only stream's batches hold only the rows' columns; an updating stream's
//! batches hold one more, last, column named [`ROW_KIND`] with each row's kind code.

use arrow_array::cast::AsArray;
use arrow_array::types::Int8Type;
use arrow_array::{ArrayRef, Int8Array, RecordBatch};

/// The name of the column of row kinds.
pub const ROW_KIND: &str = "__row_kind";

/// The kind of a row of a changelog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// `+I`
    Insert,
    /// `-U`
    UpdateBefore,
    /// `+U`
    UpdateAfter,
    /// `-D`
    Delete,
}

impl RowKind {
    /// The code stored in the [`ROW_KIND`] column.
    pub fn code(self) -> i8 {
        match self {
            RowKind::Insert => 0,
            RowKind::UpdateBefore => 1,
            RowKind::UpdateAfter => 2,
            RowKind::Delete => 3,
        }
    }

    /// The kind of `code`.
    pub fn from_code(code: i8) -> Self {
        match code {
            1 => RowKind::UpdateBefore,
            2 => RowKind::UpdateAfter,
            3 => RowKind::Delete,
            _ => RowKind::Insert,
        }
    }

    /// As Flink prints it.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// Whether the row is added to the result (`+I`, `+U`), not taken out of it.
    pub fn is_addition(self) -> bool {
        matches!(self, RowKind::Insert | RowKind::UpdateAfter)
    }
}

/// The row kinds of an updating stream's batch; `None` for an append-only one.
pub fn row_kinds(batch: &RecordBatch) -> Option<&Int8Array> {
    let last = batch.schema_ref().fields().last()?;
    (last.name() == ROW_KIND).then(|| batch.column(batch.num_columns() - 1).as_primitive::<Int8Type>())
}

/// The columns of the rows, without the row kinds.
pub fn data_columns(batch: &RecordBatch) -> &[ArrayRef] {
    let columns = batch.columns();
    match row_kinds(batch) {
        Some(_) => &columns[..columns.len() - 1],
        None => columns,
    }
}
