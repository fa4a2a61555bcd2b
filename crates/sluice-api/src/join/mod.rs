//! Joins: stream-stream interval join and stream-table join.

pub mod interval;
pub mod table;
