//! Nexmark events for the benchmark: in memory (generated before timing) or in a JSON
//! lines file (generated once and kept).

use sluice::connectors::nexmark::{self, event_time, Event};
use sluice::Record;
use std::path::{Path, PathBuf};

/// `count` events split round robin into `partitions` partitions of timestamped
/// records, ready for `VecSource::from_records`.
pub fn partitions(count: usize, partitions: usize) -> Vec<Vec<Record<Event>>> {
    let partitions = partitions.max(1);
    let mut parts: Vec<Vec<Record<Event>>> =
        (0..partitions).map(|_| Vec::with_capacity(count / partitions + 1)).collect();
    for (i, event) in nexmark::generate(count).into_iter().enumerate() {
        parts[i % partitions].push(Record { timestamp: event_time(&event), value: event });
    }
    parts
}

/// The first `count` events, in order (for the baseline loops).
pub fn events(count: usize) -> Vec<Event> {
    nexmark::generate(count)
}

/// The JSON lines file of the first `count` events under `dir`, written if missing.
pub fn json_file(dir: &Path, count: usize) -> sluice::Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| sluice::Error::io(dir.display().to_string(), e))?;
    let path = dir.join(format!("nexmark-{count}.jsonl"));
    if !path.exists() {
        let partial = dir.join(format!("nexmark-{count}.jsonl.tmp"));
        nexmark::write_json_lines(&partial, count)?;
        std::fs::rename(&partial, &path).map_err(|e| sluice::Error::io(path.display().to_string(), e))?;
    }
    Ok(path)
}

/// Copies of `events` split round robin into `partitions` partitions of timestamped
/// records (done before timing).
pub fn partitions_from(events: &[Event], partitions: usize) -> Vec<Vec<Record<Event>>> {
    let partitions = partitions.max(1);
    let mut parts: Vec<Vec<Record<Event>>> =
        (0..partitions).map(|_| Vec::with_capacity(events.len() / partitions + 1)).collect();
    for (i, event) in events.iter().enumerate() {
        parts[i % partitions].push(Record { timestamp: event_time(event), value: event.clone() });
    }
    parts
}

/// A source that generates each worker's share of the events on the worker's own
/// thread before any worker starts, and records when they all started: the benchmark
/// times the engine alone, on records its own threads allocated, as in production.
#[derive(Clone)]
pub struct PregeneratedSource {
    events: usize,
    start: std::sync::Arc<StartLine>,
}

/// Where the workers of a [`PregeneratedSource`] wait for each other.
pub struct StartLine {
    barrier: std::sync::Barrier,
    started: std::sync::Mutex<Option<std::time::Instant>>,
}

impl PregeneratedSource {
    /// `events` events over `workers` workers.
    pub fn new(events: usize, workers: usize) -> Self {
        let start = StartLine { barrier: std::sync::Barrier::new(workers), started: std::sync::Mutex::new(None) };
        PregeneratedSource { events, start: std::sync::Arc::new(start) }
    }

    /// When the last worker finished generating and processing started.
    pub fn started(&self) -> Option<std::time::Instant> {
        *self.start.started.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl sluice::Source for PregeneratedSource {
    type Item = Event;
    type Reader = PregeneratedReader;

    fn name(&self) -> String {
        "nexmark-in-memory".to_string()
    }

    fn reader(&self, worker: usize, parallelism: usize) -> sluice::Result<PregeneratedReader> {
        let share = (self.events + parallelism - 1 - worker) / parallelism;
        Ok(PregeneratedReader { worker, parallelism, share, records: None, start: self.start.clone() })
    }
}

/// One worker's share of a [`PregeneratedSource`].
pub struct PregeneratedReader {
    worker: usize,
    parallelism: usize,
    share: usize,
    records: Option<std::vec::IntoIter<Record<Event>>>,
    start: std::sync::Arc<StartLine>,
}

impl sluice::runtime::SourceReader for PregeneratedReader {
    type Batch = Vec<Record<Event>>;

    fn poll(&mut self, max_records: usize) -> sluice::Result<sluice::runtime::SourcePoll<Vec<Record<Event>>>> {
        use sluice::runtime::SourcePoll;
        if self.records.is_none() {
            let generator = sluice::connectors::nexmark::generator(self.worker, self.parallelism);
            let records: Vec<Record<Event>> =
                generator.take(self.share).map(|e| Record { timestamp: event_time(&e), value: e }).collect();
            self.records = Some(records.into_iter());
            if self.start.barrier.wait().is_leader() {
                *self.start.started.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
                if std::env::var_os("SLUICE_BENCH_VERBOSE").is_some() {
                    eprintln!("processing starts; cpu so far {:.2}s", cpu_seconds());
                }
            }
        }
        let batch: Vec<Record<Event>> =
            self.records.as_mut().map(|r| r.by_ref().take(max_records).collect()).unwrap_or_default();
        if batch.is_empty() {
            return Ok(SourcePoll::Finished);
        }
        Ok(SourcePoll::Batch(batch))
    }

    fn position(&self) -> u64 {
        0
    }
}

/// CPU time (user + system) this process has used, from /proc (Linux), for the
/// benchmark's verbose mode.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
