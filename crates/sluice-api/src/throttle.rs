//! A source read no faster than a given rate: to replay recorded input at about the
//! speed it was produced, or to keep a test job running long enough to interrupt it.

use crate::source::Source;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{SourcePoll, SourceReader};
use sluice_types::Result;
use std::time::Instant;

/// Reads `source` at no more than `records_per_second` in total, shared evenly by the
/// workers.
///
/// ```
/// # use sluice_api::*;
/// let env = StreamEnvironment::new().parallelism(2);
/// let out = CollectSink::new();
/// env.source(Throttled::new(VecSource::new((0..100).collect::<Vec<u32>>()), 10_000)).sink(out.clone());
/// let result = env.execute().unwrap();
/// assert_eq!(out.len(), 100);
/// assert!(result.elapsed.as_millis() >= 9);
/// ```
pub struct Throttled<S> {
    source: S,
    records_per_second: u64,
}

impl<S> Throttled<S> {
    /// `source`, read at no more than `records_per_second` (at least 1).
    pub fn new(source: S, records_per_second: u64) -> Self {
        Throttled { source, records_per_second: records_per_second.max(1) }
    }
}

impl<S: Source> Source for Throttled<S> {
    type Item = S::Item;
    type Reader = ThrottledReader<S::Reader>;

    fn name(&self) -> String {
        self.source.name()
    }

    fn reader(&self, worker: usize, parallelism: usize) -> Result<Self::Reader> {
        Ok(ThrottledReader::new(self.source.reader(worker, parallelism)?, self.records_per_second, parallelism))
    }

    fn restore_reader(&self, worker: usize, parallelism: usize, state: &StateReader) -> Result<Self::Reader> {
        let reader = self.source.restore_reader(worker, parallelism, state)?;
        Ok(ThrottledReader::new(reader, self.records_per_second, parallelism))
    }
}

/// One worker's reader of a [`Throttled`] source.
pub struct ThrottledReader<R> {
    reader: R,
    per_second: f64,
    started: Option<Instant>,
    read: u64,
}

impl<R> ThrottledReader<R> {
    fn new(reader: R, records_per_second: u64, parallelism: usize) -> Self {
        let per_second = records_per_second as f64 / parallelism.max(1) as f64;
        ThrottledReader { reader, per_second, started: None, read: 0 }
    }
}

impl<R: SourceReader> SourceReader for ThrottledReader<R> {
    type Batch = R::Batch;

    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<R::Batch>> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let allowed = (started.elapsed().as_secs_f64() * self.per_second) as u64;
        let budget = allowed.saturating_sub(self.read);
        if budget == 0 {
            return Ok(SourcePoll::Pending);
        }
        let poll = self.reader.poll(max_records.min(budget.min(usize::MAX as u64) as usize))?;
        if let SourcePoll::Batch(batch) = &poll {
            self.read += sluice_runtime::Batch::len(batch) as u64;
        }
        Ok(poll)
    }

    fn position(&self) -> u64 {
        self.reader.position()
    }

    fn dead_letters(&self) -> u64 {
        self.reader.dead_letters()
    }

    fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        self.reader.snapshot(state)
    }

    fn watermark(&mut self) -> Option<sluice_types::Timestamp> {
        self.reader.watermark()
    }
}
