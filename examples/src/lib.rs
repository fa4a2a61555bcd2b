//! The classic stream processing examples, written with Sluice.
//!
//! - [`fraud`]: alerts on card transactions, per account, in event time: an amount
//!   spike against the previous transaction, and too many transactions in a minute. A
//!   [`KeyedProcessFunction`](sluice::KeyedProcessFunction) with keyed state, a time to
//!   live and event-time timers.
//! - [`orders`]: large orders enriched with the customer as of the order's time (a
//!   stream-table join), and hourly revenue per category (tumbling windows).
//! - [`generate`]: deterministic sample input for both, with a few bad lines so the
//!   dead-letter output has something to show.
//!
//! Each example is a library module, so tests can run its pipeline on in-memory input,
//! plus a binary that runs it on JSON lines files (see `README.md`).
#![deny(missing_docs)]

pub mod fraud;
pub mod generate;
pub mod orders;

use sluice::connectors::DeadLetters;
use sluice::{JobResult, StreamEnvironment};
use std::path::Path;

/// The environment of an example job: `parallelism` workers, or one per core.
pub fn environment(parallelism: Option<usize>) -> StreamEnvironment {
    match parallelism {
        Some(parallelism) => StreamEnvironment::new().parallelism(parallelism),
        None => StreamEnvironment::new(),
    }
}

/// Where unreadable input lines go: a JSON lines file, or standard error.
pub fn dead_letters(path: Option<&Path>) -> sluice::Result<DeadLetters> {
    match path {
        Some(path) => DeadLetters::file(path),
        None => Ok(DeadLetters::stderr()),
    }
}

/// The one-line summary a binary prints when its job finished.
pub fn summary(name: &str, result: &JobResult) -> String {
    let metrics = &result.metrics;
    format!(
        "{name}: read {} records, wrote {} records, {} dead letters, in {:.2} s",
        metrics.source_records(),
        metrics.sink_records(),
        metrics.dead_letters(),
        result.elapsed.as_secs_f64()
    )
}

/// Prints `error` and its causes on one line of standard error, as
/// `name: error: ...: ...`. A cause whose text the line already shows is not repeated
/// (a defensive check: causes are not expected to repeat their parent).
pub fn report_error(name: &str, error: &dyn std::error::Error) {
    let mut line = format!("{name}: error: {error}");
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = inner.source();
    }
    eprintln!("{line}");
}
