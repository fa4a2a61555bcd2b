//! Query results in a form both the engine and the loops produce, to compare them.

use sluice::{Result, Sink, SinkContext, SinkWriter};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// What a query produced: how many records and an order-independent checksum, plus
/// the records themselves (sorted) for queries with small outputs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Number of results.
    pub count: u64,
    /// Sum of the results' hashes, so order does not matter.
    pub checksum: u64,
    /// The results as text, sorted, when they are few enough to keep.
    pub rows: Vec<String>,
}

/// The hash of one result, the same in the engine and the loops.
pub fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Counts and checksums results; keeps them when `keep` is set.
#[derive(Clone)]
pub struct OutcomeSink {
    shared: Arc<Mutex<Outcome>>,
    keep: bool,
}

impl OutcomeSink {
    /// A sink that keeps rows only if `keep`.
    pub fn new(keep: bool) -> Self {
        OutcomeSink { shared: Arc::new(Mutex::new(Outcome::default())), keep }
    }

    /// The outcome collected so far, rows sorted.
    pub fn outcome(&self) -> Outcome {
        let mut outcome = self.shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
        outcome.rows.sort();
        outcome
    }
}

/// One worker's part of an [`OutcomeSink`], merged when it closes.
pub struct OutcomeWriter {
    shared: Arc<Mutex<Outcome>>,
    local: Outcome,
    keep: bool,
}

impl<T: Hash + std::fmt::Debug + Send + 'static> Sink<T> for OutcomeSink {
    type Writer = OutcomeWriter;
    fn name(&self) -> String {
        "outcome".to_string()
    }
    fn writer(&self, _context: &SinkContext) -> Result<OutcomeWriter> {
        Ok(OutcomeWriter { shared: self.shared.clone(), local: Outcome::default(), keep: self.keep })
    }
}

impl<T: Hash + std::fmt::Debug + Send + 'static> SinkWriter<T> for OutcomeWriter {
    fn write_batch(&mut self, batch: Vec<sluice::Record<T>>) -> Result<()> {
        for record in &batch {
            self.local.count += 1;
            self.local.checksum = self.local.checksum.wrapping_add(hash_of(&record.value));
            if self.keep {
                self.local.rows.push(format!("{:?}", record.value));
            }
        }
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        shared.count += self.local.count;
        shared.checksum = shared.checksum.wrapping_add(self.local.checksum);
        shared.rows.append(&mut self.local.rows);
        Ok(())
    }
}

/// Collects results in a loop the same way the sink does.
#[derive(Default)]
pub struct OutcomeBuilder {
    outcome: Outcome,
    keep: bool,
}

impl OutcomeBuilder {
    /// A builder that keeps rows only if `keep`.
    pub fn new(keep: bool) -> Self {
        OutcomeBuilder { outcome: Outcome::default(), keep }
    }

    /// Adds one result.
    pub fn add<T: Hash + std::fmt::Debug>(&mut self, value: &T) {
        self.outcome.count += 1;
        self.outcome.checksum = self.outcome.checksum.wrapping_add(hash_of(value));
        if self.keep {
            self.outcome.rows.push(format!("{value:?}"));
        }
    }

    /// The outcome, rows sorted.
    pub fn finish(mut self) -> Outcome {
        self.outcome.rows.sort();
        self.outcome
    }
}
