//! Sluice's SQL layer: jobs written in Flink's SQL dialect (issue 16, in progress).
//!
//! The front end: a job file is split into statements (`script.rs`), each
//! parsed into a [`Statement`]: Flink's `CREATE TABLE` with its column types, computed
//! columns, watermark, primary key and connector options by this crate (`ddl.rs`,
//! `types.rs`: Flink's types as Arrow's), `SET`, and the queries and inserts by
//! sqlparser with a dialect of Flink's lexical rules (`dialect.rs`). An error names the
//! statement, its line and column in the file, and what is wrong. `plan.rs` plans
//! queries with DataFusion against the job file's tables (its `ContextProvider`, with
//! DataFusion's function library and Flink's functions of `functions.rs`), and
//! `stream/` turns the plans into a job graph of streaming operators.

#![deny(missing_docs)]

pub mod changelog;
pub mod connectors;
pub mod ddl;
pub mod dialect;
mod error;
pub mod format;
mod functions;
mod group_window;
pub mod job;
mod json_functions;
pub mod plan;
mod rewrite;
pub mod script;
pub mod stream;
pub mod temporal;
pub mod tvf;
pub mod types;

pub use ddl::{Column, TableDefinition, Watermark};
pub use error::SqlError;
pub use job::{compile, CompiledJob, Functions};
pub use plan::Catalog;
pub use script::{parse_script, parse_script_positioned, Position, Statement};
