//! The streaming side of the SQL layer: a DataFusion logical plan becomes a Sluice job
//! graph of streaming operators over Arrow record batches (`plan.rs`), whose operators
//! live beside it: filters and projections (`calc.rs`), watermarks (`watermark.rs`),
//! which fields of `ROW` columns a query reads (`field_uses.rs`), window assignment
//! (`assign.rs`) and aggregation (`aggregate.rs`, sessions in `session.rs`, hopping
//! windows by slices in `sliced.rs`), group
//! aggregation with updating results (`group.rs`) and of updating input
//! (`retract.rs`), regular and window joins (`join.rs`), lookup joins
//! (`lookup.rs`), event-time temporal joins (`temporal_join.rs`), Top-N and
//! deduplication (`rank.rs`), OVER aggregations (`over.rs`), and
//! their state in checkpoints (`state.rs`).

pub mod aggregate;
pub mod assign;
pub mod calc;
pub mod field_uses;
pub mod group;
pub mod join;
pub mod lookup;
pub mod over;
pub mod plan;
pub mod rank;
pub mod retract;
pub mod session;
pub mod sliced;
pub mod state;
pub mod temporal_join;
#[cfg(test)]
mod testing;
pub mod watermark;

pub use plan::StreamPlanner;
