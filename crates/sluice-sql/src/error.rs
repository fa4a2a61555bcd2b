//! Errors that name where in the job file they are.

/// A statement of a job file that cannot be used: which one, where, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlError {
    /// The statement's number in the file, from 1.
    pub statement: usize,
    /// The line in the file, from 1.
    pub line: u64,
    /// The column in the line, from 1.
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "statement {}, line {}, column {}: {}", self.statement, self.line, self.column, self.message)
    }
}

impl std::error::Error for SqlError {}
