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
