//! The streaming side of the SQL layer: a DataFusion logical plan becomes a Sluice job
//! graph of streaming operators over Arrow record batches (`plan.rs`), whose operators
//! live beside it: filters and projections (`calc.rs`), watermarks (`watermark.rs`).

pub mod aggregate;
pub mod assign;
pub mod calc;
pub mod plan;
pub mod watermark;

pub use plan::StreamPlanner;
