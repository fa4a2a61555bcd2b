//! Formats of the lines of files (and, later, of log and Kafka records): `json` and
//! `csv`, decoded by one line decoder (`lines.rs`).

pub mod csv;
pub mod json;
pub mod lines;
