//! The Nexmark benchmark's auction events, generated on the fly or into memory.
//!
//! Events come from the `nexmark` crate's generator; each worker generates every
//! `parallelism`-th event, so a job sees the same events at any parallelism.

pub use nexmark::config::NexmarkConfig;
pub use nexmark::event::{Auction, Bid, Event, Person};

use nexmark::EventGenerator;
use sluice_api::Source;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{SourcePoll, SourceReader};
use sluice_types::{Record, Result};
use std::io::Write;
use std::path::Path;

/// The event time of a Nexmark event, in milliseconds.
pub fn event_time(event: &Event) -> i64 {
    event.timestamp() as i64
}

/// The time of the first event of [`config`]: 2026-01-01T00:00:00Z.
pub const BASE_TIME: u64 = 1_767_225_600_000;

/// The standard configuration with a fixed start time, so every run generates the
/// same events (the generator's own default starts at the current time).
pub fn config() -> NexmarkConfig {
    NexmarkConfig { base_time: BASE_TIME, ..NexmarkConfig::default() }
}

/// The generator of worker `worker` of `parallelism`: events `worker`,
/// `worker + parallelism`, ... of [`config`].
pub fn generator(worker: usize, parallelism: usize) -> EventGenerator {
    EventGenerator::new(config()).with_offset(worker as u64).with_step(parallelism.max(1) as u64)
}

/// The first `count` events of [`config`], in order.
pub fn generate(count: usize) -> Vec<Event> {
    generate_with(config(), count)
}

/// The first `count` events of `config`, in order.
pub fn generate_with(config: NexmarkConfig, count: usize) -> Vec<Event> {
    EventGenerator::new(config).take(count).collect()
}

/// Writes the first `count` events to `path` as JSON lines.
pub fn write_json_lines(path: &Path, count: usize) -> Result<()> {
    let shown = path.display().to_string();
    let file = std::fs::File::create(path).map_err(|e| sluice_types::Error::io(shown.clone(), e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    for event in EventGenerator::new(config()).take(count) {
        serde_json::to_writer(&mut out, &event)
            .map_err(|e| sluice_types::Error::io(shown.clone(), std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(|e| sluice_types::Error::io(shown.clone(), e))?;
    }
    out.flush().map_err(|e| sluice_types::Error::io(shown, e))
}

/// Generates `events` Nexmark events (timestamped with their event time).
#[derive(Clone)]
pub struct NexmarkSource {
    events: u64,
    config: NexmarkConfig,
}

impl NexmarkSource {
    /// The first `events` events of [`config`].
    pub fn new(events: u64) -> Self {
        NexmarkSource { events, config: config() }
    }

    /// Uses `config` instead of the default configuration.
    pub fn config(mut self, config: NexmarkConfig) -> Self {
        self.config = config;
        self
    }
}

impl Source for NexmarkSource {
    type Item = Event;
    type Reader = NexmarkReader;

    fn name(&self) -> String {
        "nexmark".to_string()
    }

    fn reader(&self, worker: usize, parallelism: usize) -> Result<NexmarkReader> {
        let split = NexmarkSplit { next: worker as u64, step: parallelism as u64 };
        Ok(NexmarkReader::new(&self.config, vec![split], self.events))
    }

    fn restore_reader(&self, _worker: usize, _parallelism: usize, state: &StateReader) -> Result<NexmarkReader> {
        Ok(NexmarkReader::new(&self.config, state.items()?, self.events))
    }
}

/// A share of the event sequence: events `next`, `next + step`, `next + 2 step`…
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct NexmarkSplit {
    next: u64,
    step: u64,
}

/// One split being generated.
struct Generating {
    split: NexmarkSplit,
    generator: EventGenerator,
}

/// One worker's share of a [`NexmarkSource`]: one split, or several after a restore at
/// a lower parallelism, read merged in sequence order (so in event-time order).
pub struct NexmarkReader {
    splits: Vec<Generating>,
    total: u64,
    generated: u64,
}

impl NexmarkReader {
    fn new(config: &NexmarkConfig, splits: Vec<NexmarkSplit>, total: u64) -> Self {
        let splits = splits
            .into_iter()
            .map(|split| Generating {
                split,
                generator: EventGenerator::new(config.clone()).with_offset(split.next).with_step(split.step),
            })
            .collect();
        NexmarkReader { splits, total, generated: 0 }
    }

    fn next_event(&mut self) -> Option<Event> {
        let total = self.total;
        let current = self.splits.iter_mut().filter(|s| s.split.next < total).min_by_key(|s| s.split.next)?;
        let event = current.generator.next()?;
        current.split.next += current.split.step;
        Some(event)
    }
}

impl SourceReader for NexmarkReader {
    type Batch = Vec<Record<Event>>;

    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<Vec<Record<Event>>>> {
        let mut batch = Vec::with_capacity(max_records);
        while batch.len() < max_records {
            let Some(event) = self.next_event() else { break };
            batch.push(Record { timestamp: event_time(&event), value: event });
        }
        if batch.is_empty() {
            return Ok(SourcePoll::Finished);
        }
        self.generated += batch.len() as u64;
        Ok(SourcePoll::Batch(batch))
    }

    fn position(&self) -> u64 {
        self.generated
    }

    fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        for generating in self.splits.iter().filter(|s| s.split.next < self.total) {
            state.item(&generating.split)?;
        }
        Ok(())
    }
}
