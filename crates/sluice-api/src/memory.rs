//! An in-memory source and a collecting sink, for tests, examples and benchmarks.

use crate::graph::Batch;
use crate::sink::{Sink, SinkContext, SinkWriter};
use crate::source::Source;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{SourcePoll, SourceReader};
use sluice_types::{Record, Result, MIN_TIMESTAMP};
use std::sync::{Arc, Mutex, MutexGuard};

/// Partitions not yet handed to a reader.
type Partitions<T> = Arc<Mutex<Vec<Option<Vec<Record<T>>>>>>;

/// A source over records held in memory, split into partitions.
///
/// Each worker reads the partitions `p` with `p % parallelism == worker`, one after the
/// other. Records are moved out, not copied, so a `VecSource` feeds one run. A job
/// restored from a checkpoint skips, in a new `VecSource` with the same records, what
/// the checkpoint says was read.
pub struct VecSource<T> {
    partitions: Partitions<T>,
    spread: bool,
}

impl<T> VecSource<T> {
    /// Records without event time, spread round robin over one partition per worker.
    pub fn new(values: Vec<T>) -> Self {
        let records = values.into_iter().map(|value| Record { timestamp: MIN_TIMESTAMP, value }).collect();
        VecSource { partitions: Arc::new(Mutex::new(vec![Some(records)])), spread: true }
    }

    /// Records with event time, spread round robin over one partition per worker.
    pub fn timestamped(records: Vec<(i64, T)>) -> Self {
        let records = records.into_iter().map(|(timestamp, value)| Record { timestamp, value }).collect();
        VecSource { partitions: Arc::new(Mutex::new(vec![Some(records)])), spread: true }
    }

    /// Explicit partitions of records that already carry their timestamps; partition `p`
    /// is read, in order, by worker `p % parallelism`. Nothing is copied.
    pub fn from_records(partitions: Vec<Vec<Record<T>>>) -> Self {
        VecSource { partitions: Arc::new(Mutex::new(partitions.into_iter().map(Some).collect())), spread: false }
    }

    /// Explicit partitions: partition `p` is read, in order, by worker `p % parallelism`.
    pub fn partitioned(partitions: Vec<Vec<T>>) -> Self {
        let partitions = partitions
            .into_iter()
            .map(|p| Some(p.into_iter().map(|value| Record { timestamp: MIN_TIMESTAMP, value }).collect()))
            .collect();
        VecSource { partitions: Arc::new(Mutex::new(partitions)), spread: false }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T: Clone + Send + 'static> Source for VecSource<T> {
    type Item = T;
    type Reader = VecReader<T>;

    fn name(&self) -> String {
        "memory-source".to_string()
    }

    fn reader(&self, worker: usize, parallelism: usize) -> Result<VecReader<T>> {
        let spread_over = self.spread(parallelism);
        let mut partitions = lock(&self.partitions);
        let mine: Vec<usize> = (0..partitions.len()).filter(|p| p % parallelism == worker).collect();
        Ok(VecReader::new(&mut partitions, mine.into_iter().map(|p| (p, 0)).collect(), spread_over))
    }

    fn restore_reader(&self, _worker: usize, _parallelism: usize, state: &StateReader) -> Result<VecReader<T>> {
        let splits: Vec<VecSplit> = state.items()?;
        let spread_over = splits.first().map_or(1, |s| s.spread_over);
        self.spread(spread_over);
        let mut partitions = lock(&self.partitions);
        Ok(VecReader::new(&mut partitions, splits.iter().map(|s| (s.partition, s.offset)).collect(), spread_over))
    }
}

impl<T> VecSource<T> {
    /// Spreads a single list of records over `parallelism` partitions, once; returns
    /// the number of partitions it was spread over.
    fn spread(&self, parallelism: usize) -> usize {
        let mut partitions = lock(&self.partitions);
        if self.spread && partitions.len() == 1 && parallelism > 1 {
            let all = partitions[0].take().unwrap_or_default();
            let mut spread: Vec<Vec<Record<T>>> =
                (0..parallelism).map(|_| Vec::with_capacity(all.len() / parallelism + 1)).collect();
            for (i, record) in all.into_iter().enumerate() {
                spread[i % parallelism].push(record);
            }
            *partitions = spread.into_iter().map(Some).collect();
        }
        partitions.len()
    }
}

/// Where a reader is in one partition, as a checkpoint keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct VecSplit {
    partition: usize,
    offset: u64,
    /// How many partitions the records were spread over.
    spread_over: usize,
}

/// A partition being read: its index, the records left, and how many were read.
struct Reading<T> {
    partition: usize,
    records: std::vec::IntoIter<Record<T>>,
    offset: u64,
}

/// One worker's share of a [`VecSource`].
pub struct VecReader<T> {
    /// Partitions still to read, the current one last.
    partitions: Vec<Reading<T>>,
    read: u64,
    spread_over: usize,
}

impl<T> VecReader<T> {
    /// Takes the partitions `(index, records to skip)` out of the source.
    fn new(all: &mut [Option<Vec<Record<T>>>], splits: Vec<(usize, u64)>, spread_over: usize) -> Self {
        // Hand over the partitions themselves: records are moved once, into batches.
        let mut partitions: Vec<Reading<T>> = splits
            .into_iter()
            .map(|(partition, offset)| {
                let records = all.get_mut(partition).and_then(Option::take).unwrap_or_default();
                let mut records = records.into_iter();
                if offset > 0 {
                    records.nth(offset as usize - 1);
                }
                Reading { partition, records, offset }
            })
            .collect();
        partitions.reverse();
        VecReader { partitions, read: 0, spread_over }
    }
}

impl<T: Send + 'static> SourceReader for VecReader<T> {
    type Batch = Batch<T>;

    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<Batch<T>>> {
        let batch: Batch<T> = loop {
            let Some(current) = self.partitions.last_mut() else { return Ok(SourcePoll::Finished) };
            let batch: Batch<T> = current.records.by_ref().take(max_records).collect();
            if !batch.is_empty() {
                current.offset += batch.len() as u64;
                break batch;
            }
            self.partitions.pop();
        };
        self.read += batch.len() as u64;
        Ok(SourcePoll::Batch(batch))
    }

    fn position(&self) -> u64 {
        self.read
    }

    fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        for reading in self.partitions.iter().rev() {
            let split =
                VecSplit { partition: reading.partition, offset: reading.offset, spread_over: self.spread_over };
            state.item(&split)?;
        }
        Ok(())
    }
}

/// A sink that keeps everything in memory, shared by all workers; clone it before
/// handing it to the job to read the results afterwards.
pub struct CollectSink<T> {
    records: Arc<Mutex<Vec<Record<T>>>>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        CollectSink { records: self.records.clone() }
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        CollectSink { records: Arc::new(Mutex::new(Vec::new())) }
    }
}

impl<T: Clone> CollectSink<T> {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything collected, with timestamps, in arrival order.
    pub fn records(&self) -> Vec<Record<T>> {
        lock(&self.records).clone()
    }

    /// The values collected, in arrival order.
    pub fn values(&self) -> Vec<T> {
        lock(&self.records).iter().map(|r| r.value.clone()).collect()
    }

    /// The values collected, sorted: arrival order across workers is not deterministic.
    pub fn sorted_values(&self) -> Vec<T>
    where
        T: Ord,
    {
        let mut values = self.values();
        values.sort();
        values
    }

    /// How many records were collected.
    pub fn len(&self) -> usize {
        lock(&self.records).len()
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Clone + Send + 'static> Sink<T> for CollectSink<T> {
    type Writer = CollectSink<T>;

    fn name(&self) -> String {
        "collect-sink".to_string()
    }

    fn writer(&self, _context: &SinkContext) -> Result<CollectSink<T>> {
        Ok(self.clone())
    }
}

impl<T: Send> SinkWriter<T> for CollectSink<T> {
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()> {
        lock(&self.records).extend(batch);
        Ok(())
    }
}
