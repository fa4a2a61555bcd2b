//! Formats of the lines of files (and, later, of log and Kafka records).

pub mod json;
