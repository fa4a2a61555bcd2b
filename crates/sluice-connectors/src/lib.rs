//! Sluice's connectors: where records come from and where they go.
//!
//! - [`file`](mod@file): JSON lines files or directories, read in parallel by byte ranges, and a
//!   JSON lines file sink.
//! - [`log`](mod@log): topics of the embedded log, read by partition and written in
//!   transactions committed with checkpoints.
//! - [`stdio`]: JSON lines on standard input and output.
//! - [`nexmark`]: the Nexmark auction event generator, partitioned over workers.
//! - [`DeadLetters`]: where input that cannot be read goes, with the reason.
//!
//! The in-memory source and collecting sink live in `sluice-api` (`VecSource`,
//! `CollectSink`) because every test uses them.

mod dead_letter;
pub mod file;
pub mod log;
pub mod nexmark;
pub mod stdio;

pub use dead_letter::{DeadLetter, DeadLetters};
pub use file::{JsonLinesSink, JsonLinesSource};
pub use log::{EndReached, LogSink, LogSource, StartFrom};
pub use stdio::{StdinSource, StdoutSink};
