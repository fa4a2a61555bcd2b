//! Flink SQL's lexical rules for sqlparser: identifiers quoted with backticks, and
//! the clauses Flink has (`FILTER (WHERE ...)` on aggregates).

use sqlparser::dialect::Dialect;

/// The dialect the queries and inserts of a job file are parsed with.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_ascii_alphabetic() || ch == '_' || ch == '$'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }
}
