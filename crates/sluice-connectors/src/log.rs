//! The embedded log as a source and a sink.
//!
//! [`LogSource`] reads a topic's partitions, dealt to workers by partition number
//! (one split per partition), each record's value as JSON of `T` and its event time
//! from the log. Its position per partition goes into checkpoints, so a restored job
//! reads on from there, at any parallelism. Read-committed: it never sees aborted or
//! open transactions.
//!
//! [`LogSink`] writes values as JSON. In an exactly-once job each worker writes in a
//! transaction of its own transactional id (`<prefix>-<worker>`), prepared at each
//! checkpoint barrier and committed once the checkpoint completes, so a job from log
//! to log is exactly-once end to end. Otherwise it writes straight through, with an
//! idempotent producer.

use crate::{DeadLetter, DeadLetters};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_api::{
    KeepTimestamp, Sink, SinkContext, SinkWriter, Source, SplitWatermarks, TimestampAssigner, WatermarkStrategy,
};
use sluice_log::transaction::{abort_unfinished_except, commit_prepared, finish_abandoned};
use sluice_log::{Isolation, Log, PartitionReader, PreparedTransaction, Producer, ProducerConfig, ProducerRecord};
use sluice_runtime::checkpoint::{CheckpointId, Committer, StateReader, StateWriter};
use sluice_runtime::{SourcePoll, SourceReader};
use sluice_types::{Error, Record, Result, Timestamp, MIN_TIMESTAMP};
use std::marker::PhantomData;
use std::sync::Arc;

fn log_error(topic: &str, error: std::io::Error) -> Error {
    Error::io(format!("log topic {topic}"), error)
}

/// Where a [`LogSource`] starts reading a partition it has no checkpoint for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record kept.
    #[default]
    Earliest,
    /// After the last record written when the job starts.
    Latest,
    /// The first record at or after this event time, in milliseconds.
    Timestamp(i64),
}

/// A topic of the embedded log, as a source of `T` read from JSON values.
pub struct LogSource<T, A = KeepTimestamp> {
    log: Log,
    topic: String,
    partitions: u32,
    start: StartFrom,
    /// For a bounded source: where each partition ended when the job started.
    ends: Option<Vec<u64>>,
    dead_letters: DeadLetters,
    /// Watermarks generated per partition, if asked for.
    watermarks: Option<WatermarkStrategy<T, A>>,
    /// With [`LogSource::pause_at_end`]: the partitions not at their end yet.
    paused: Option<EndReached>,
    /// With [`LogSource::with_alignment`]: the largest drift, and where the readers
    /// publish their watermarks.
    alignment: Option<(i64, Arc<AlignmentGroup>)>,
}

/// The watermarks of a source's readers, by worker, for watermark alignment: a
/// partition whose watermark is further than the drift ahead of the lowest is not read
/// until the others catch up.
#[derive(Debug, Default)]
pub struct AlignmentGroup {
    watermarks: std::sync::Mutex<Vec<Timestamp>>,
}

impl AlignmentGroup {
    fn publish(&self, worker: usize, watermark: Timestamp) {
        let mut watermarks = self.watermarks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if watermarks.len() <= worker {
            watermarks.resize(worker + 1, Timestamp::MAX);
        }
        watermarks[worker] = watermark;
    }

    fn lowest(&self) -> Timestamp {
        let watermarks = self.watermarks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        watermarks.iter().copied().min().unwrap_or(Timestamp::MAX)
    }
}

/// Whether every partition of a [`LogSource::pause_at_end`] source has been read to
/// the end it had when the job started.
#[derive(Clone, Debug)]
pub struct EndReached(Arc<std::sync::atomic::AtomicUsize>);

impl EndReached {
    /// Whether every partition is at its end.
    pub fn reached(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    fn partition_done(&self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// One partition's position, as a checkpoint keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PartitionSplit {
    partition: u32,
    next_offset: u64,
    end: Option<u64>,
    /// The highest event time handed out (for the partition's watermark).
    max_timestamp: Timestamp,
}

impl<T> LogSource<T> {
    /// Reads `topic` of `log`, unbounded: the job runs until stopped.
    pub fn new(log: &Log, topic: &str) -> Result<Self> {
        let partitions = log.describe(topic).map_err(|e| log_error(topic, e))?.partitions;
        // Transactions of producers that died would hold the readers back.
        finish_abandoned(log).map_err(|e| log_error(topic, e))?;
        Ok(LogSource {
            log: log.clone(),
            topic: topic.to_string(),
            partitions,
            start: StartFrom::Earliest,
            ends: None,
            dead_letters: DeadLetters::default(),
            watermarks: None,
            paused: None,
            alignment: None,
        })
    }
}

impl<T, A: TimestampAssigner<T>> LogSource<T, A> {
    /// Generates watermarks per partition with `strategy` (its timestamp assigner gets
    /// the log's event time as the current one): each reader's watermark is the lowest
    /// of its partitions', so one partition ahead of the others cannot make their
    /// records late, and an idle partition (with [`WatermarkStrategy::with_idleness`])
    /// stops holding it back. No `with_watermarks` is needed on the stream then.
    pub fn with_watermarks<B: TimestampAssigner<T>>(self, strategy: WatermarkStrategy<T, B>) -> LogSource<T, B> {
        LogSource {
            log: self.log,
            topic: self.topic,
            partitions: self.partitions,
            start: self.start,
            ends: self.ends,
            dead_letters: self.dead_letters,
            watermarks: Some(strategy),
            paused: self.paused,
            alignment: self.alignment,
        }
    }

    /// Aligns the partitions' watermarks (with [`Self::with_watermarks`]; Flink's
    /// `withWatermarkAlignment`): a partition whose watermark is more than `max_drift`
    /// milliseconds ahead of the lowest of every worker's active partitions is not read
    /// until the others catch up, so that under skew the windows and buffers waiting
    /// for the slow partitions stay bounded. The slowest partition is always read.
    pub fn with_alignment(mut self, max_drift: i64) -> Self {
        self.alignment = Some((max_drift.max(0), Arc::new(AlignmentGroup::default())));
        self
    }

    /// Reads to the offsets the topic has now, like [`Self::bounded`], but then waits
    /// there instead of ending the stream: no final watermark fires the open windows,
    /// so the job can be stopped once a checkpoint covers everything read
    /// ([`sluice_api::JobHandle::stop`]) and resumed from it later, with its windows
    /// still open (Flink's stop with a savepoint, without draining). The returned
    /// handle says when every partition is at its end.
    pub fn pause_at_end(self) -> Result<(Self, EndReached)> {
        let mut source = self.bounded()?;
        let reached = EndReached(Arc::new(std::sync::atomic::AtomicUsize::new(source.partitions as usize)));
        source.paused = Some(reached.clone());
        Ok((source, reached))
    }

    /// Where to start partitions without a checkpoint (default: the earliest record).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Ends the source at what the topic held when this was called (Flink's
    /// `scan.bounded.mode = latest-offset`): the job ends like a batch job. A job
    /// resumed from a checkpoint ends where the topic ends when its source is built.
    pub fn bounded(mut self) -> Result<Self> {
        let mut ends = Vec::with_capacity(self.partitions as usize);
        for partition in 0..self.partitions {
            let mut reader = self.open(partition)?;
            ends.push(reader.end_offset().map_err(|e| log_error(&self.topic, e))?);
        }
        self.ends = Some(ends);
        Ok(self)
    }

    /// Sends values that do not parse as `T` to `dead_letters` (default: standard error).
    pub fn dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = dead_letters;
        self
    }

    fn open(&self, partition: u32) -> Result<PartitionReader> {
        self.log.reader(&self.topic, partition, Isolation::ReadCommitted).map_err(|e| log_error(&self.topic, e))
    }

    fn reader_of(&self, worker: usize, splits: Vec<(PartitionReader, PartitionSplit)>) -> LogReader<T, A> {
        let max_timestamps: Vec<Timestamp> = splits.iter().map(|(_, split)| split.max_timestamp).collect();
        LogReader {
            topic: self.topic.clone(),
            clocks: self.watermarks.clone().map(|strategy| SplitWatermarks::new(strategy, &max_timestamps)),
            partitions: splits.into_iter().map(|(reader, split)| (reader, split.partition, split.end)).collect(),
            next: 0,
            read: 0,
            pending: (0..max_timestamps.len()).map(|_| std::collections::VecDeque::new()).collect(),
            paused: self.paused.clone(),
            at_end: Vec::new(),
            alignment: self.alignment.as_ref().map(|(drift, group)| (*drift, group.clone(), worker)),
            dead_letters: self.dead_letters.clone(),
            dead_letter_count: 0,
            _type: PhantomData,
        }
    }
}

impl<T: DeserializeOwned + Clone + Send + 'static, A: TimestampAssigner<T>> Source for LogSource<T, A> {
    type Item = T;
    type Reader = LogReader<T, A>;

    fn name(&self) -> String {
        format!("log-source({})", self.topic)
    }

    fn reader(&self, worker: usize, parallelism: usize) -> Result<LogReader<T, A>> {
        self.dead_letters.open_for(false)?;
        let mut splits = Vec::new();
        for partition in (0..self.partitions).filter(|p| *p as usize % parallelism == worker) {
            let mut reader = self.open(partition)?;
            let positioned = match self.start {
                StartFrom::Earliest => Ok(()),
                StartFrom::Latest => reader.end_offset().and_then(|end| reader.seek(end)),
                StartFrom::Timestamp(at) => reader.seek_to_time(at),
            };
            positioned.map_err(|e| log_error(&self.topic, e))?;
            let end = self.ends.as_ref().map(|ends| ends[partition as usize]);
            let split =
                PartitionSplit { partition, next_offset: reader.next_offset(), end, max_timestamp: MIN_TIMESTAMP };
            splits.push((reader, split));
        }
        Ok(self.reader_of(worker, splits))
    }

    fn restore_reader(&self, worker: usize, _parallelism: usize, state: &StateReader) -> Result<LogReader<T, A>> {
        self.dead_letters.open_for(true)?;
        let mut splits = Vec::new();
        for split in state.items::<PartitionSplit>()? {
            if split.partition >= self.partitions {
                let message =
                    format!("the checkpoint reads partition {} of {}, which has fewer", split.partition, self.topic);
                return Err(Error::checkpoint(&self.topic, message));
            }
            let mut reader = self.open(split.partition)?;
            reader.seek(split.next_offset).map_err(|e| log_error(&self.topic, e))?;
            // A bounded source ends where the topic ended when it was built, resumed or
            // not: run again later, it reads on to the new end.
            let end = self.ends.as_ref().map(|ends| ends[split.partition as usize]);
            splits.push((reader, PartitionSplit { end, ..split }));
        }
        Ok(self.reader_of(worker, splits))
    }
}

/// One worker's partitions of a [`LogSource`].
pub struct LogReader<T, A = KeepTimestamp> {
    topic: String,
    /// Each partition's watermark clock (by index in `partitions`), if generated here.
    clocks: Option<SplitWatermarks<T, A>>,
    /// Each partition's reader, number and end (bounded).
    partitions: Vec<(PartitionReader, u32, Option<u64>)>,
    /// The partition polled next, round robin.
    next: usize,
    read: u64,
    /// Records read but not handed out yet (a poll hands out at most as many as asked
    /// for), with their offsets, by partition (index in `partitions`).
    pending: Vec<std::collections::VecDeque<(u64, Record<T>)>>,
    /// With [`LogSource::pause_at_end`], where partitions reaching their end are counted.
    paused: Option<EndReached>,
    /// The partitions (by index) counted at their end already.
    at_end: Vec<bool>,
    /// With alignment: the largest drift, the group, and this reader's worker.
    alignment: Option<(i64, Arc<AlignmentGroup>, usize)>,
    dead_letters: DeadLetters,
    dead_letter_count: u64,
    _type: PhantomData<fn() -> T>,
}

/// About how many bytes a poll reads from one partition per record asked for.
const BYTES_PER_RECORD: usize = 64;

impl<T, A: TimestampAssigner<T>> LogReader<T, A> {
    /// Publishes this reader's watermark to its alignment group: the lowest of its
    /// partitions that are neither at their end nor idle.
    fn publish_alignment(&self) {
        let (Some((_, group, worker)), Some(clocks)) = (&self.alignment, &self.clocks) else { return };
        let lowest = (0..self.partitions.len())
            .filter(|&i| !self.is_at_end(i) && !clocks.is_idle(i))
            .map(|i| clocks.split_watermark(i))
            .min()
            .unwrap_or(Timestamp::MAX);
        group.publish(*worker, lowest);
    }

    fn is_at_end(&self, i: usize) -> bool {
        let (reader, _, end) = &self.partitions[i];
        end.is_some_and(|end| reader.next_offset() >= end) && self.pending[i].is_empty()
    }

    /// The lowest watermark of the alignment group and the drift allowed past it.
    fn alignment_limit(&self) -> Option<(Timestamp, i64)> {
        self.clocks.as_ref()?;
        self.alignment.as_ref().map(|(drift, group, _)| (group.lowest(), *drift))
    }

    /// Whether partition `i` may hand out a record at `timestamp` (any, without one)
    /// under `limit`: it is the laggard, or would stay within the drift of the lowest.
    fn aligned(&self, limit: Option<(Timestamp, i64)>, i: usize, timestamp: Option<Timestamp>) -> bool {
        let (Some((lowest, drift)), Some(clocks)) = (limit, &self.clocks) else { return true };
        let own = clocks.split_watermark(i);
        if own <= lowest {
            return true;
        }
        let after = timestamp.map_or(own, |t| own.max(clocks.implied_by(t)));
        after <= lowest.saturating_add(drift)
    }

    /// Up to `max_records` of partition `i`'s pending records; fewer (none, even)
    /// where the watermark must be sent before the next one; `None` if alignment holds
    /// the partition back before its first.
    fn take_pending(
        &mut self,
        i: usize,
        max_records: usize,
        limit: Option<(Timestamp, i64)>,
    ) -> Option<Vec<Record<T>>> {
        if self.clocks.is_none() {
            let n = self.pending[i].len().min(max_records.max(1));
            return Some(self.pending[i].drain(..n).map(|(_, record)| record).collect());
        }
        let mut batch = Vec::new();
        let mut held = false;
        while batch.len() < max_records.max(1) {
            let Some((_, record)) = self.pending[i].front() else { break };
            let timestamp = record.timestamp;
            if self.clocks.as_ref().is_some_and(|clocks| clocks.cuts_before(timestamp)) {
                break;
            }
            if !self.aligned(limit, i, Some(timestamp)) {
                held = true;
                break;
            }
            let clocks = self.clocks.as_mut().expect("invariant: checked above");
            clocks.observe(i, timestamp);
            batch.extend(self.pending[i].pop_front().map(|(_, record)| record));
        }
        self.publish_alignment();
        (!(held && batch.is_empty())).then_some(batch)
    }
}

impl<T: DeserializeOwned + Send + 'static, A: TimestampAssigner<T>> SourceReader for LogReader<T, A> {
    type Batch = Vec<Record<T>>;

    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<Vec<Record<T>>>> {
        self.publish_alignment();
        let mut unfinished = false;
        let limit = self.alignment_limit();
        for _ in 0..self.partitions.len() {
            let i = self.next % self.partitions.len();
            self.next = i + 1;
            if !self.pending[i].is_empty() {
                unfinished = true;
                // Held back by alignment: the other partitions go first.
                match self.take_pending(i, max_records, limit) {
                    Some(batch) => return Ok(SourcePoll::Batch(batch)),
                    None => continue,
                }
            }
            if !self.aligned(limit, i, None) {
                unfinished = true;
                continue;
            }
            let (reader, partition, end) = &mut self.partitions[i];
            if end.is_some_and(|end| reader.next_offset() >= end) {
                if let Some(paused) = &self.paused {
                    self.at_end.resize(self.partitions.len(), false);
                    if !std::mem::replace(&mut self.at_end[i], true) {
                        paused.partition_done();
                    }
                }
                continue;
            }
            unfinished = true;
            let (from, bytes) =
                reader.poll(max_records.max(1) * BYTES_PER_RECORD).map_err(|e| log_error(&self.topic, e))?;
            if bytes.is_empty() {
                continue;
            }
            let records = sluice_log::records_from(&bytes, from)
                .map_err(|e| Error::checkpoint(&self.topic, format!("partition {partition}: {e}")))?;
            for record in records.iter().filter(|r| end.is_none_or(|end| r.offset < end)) {
                self.read += 1;
                match serde_json::from_slice::<T>(record.value) {
                    Ok(value) => {
                        let timestamp = match &self.clocks {
                            Some(clocks) => clocks.timestamp(&value, record.timestamp),
                            None => record.timestamp,
                        };
                        self.pending[i].push_back((record.offset, Record { timestamp, value }));
                    }
                    Err(error) => {
                        self.dead_letter_count += 1;
                        self.dead_letters.write(DeadLetter {
                            source: format!("log topic {} partition {partition}", self.topic),
                            position: format!("offset {}", record.offset),
                            reason: error.to_string(),
                            input: String::from_utf8_lossy(record.value).into_owned(),
                        })?;
                    }
                }
            }
            if let Some(end) = end {
                if reader.next_offset() > *end {
                    reader.seek(*end).map_err(|e| log_error(&self.topic, e))?;
                }
            }
            if !self.pending[i].is_empty() {
                if let Some(batch) = self.take_pending(i, max_records, limit) {
                    return Ok(SourcePoll::Batch(batch));
                }
            }
        }
        if !unfinished {
            self.dead_letters.flush()?;
            // Paused at the end (or without a partition): idle, so that the other
            // readers' watermarks carry the job on.
            if self.paused.is_some() {
                return Ok(SourcePoll::Idle);
            }
            return Ok(SourcePoll::Finished);
        }
        if self.clocks.as_mut().is_some_and(SplitWatermarks::check_idleness) {
            return Ok(SourcePoll::Idle);
        }
        Ok(SourcePoll::Pending)
    }

    fn watermark(&mut self) -> Option<Timestamp> {
        self.clocks.as_mut().and_then(SplitWatermarks::advance)
    }

    /// Records written to its partitions (up to their ends, if bounded) and not handed
    /// out yet; transaction markers and aborted records count, as in Kafka's lag.
    fn lag(&mut self) -> Option<u64> {
        let mut lag: u64 = self.pending.iter().map(|p| p.len() as u64).sum();
        for (reader, _, end) in &mut self.partitions {
            let written = reader.end_offset().ok()?;
            lag += end.unwrap_or(written).min(written).saturating_sub(reader.next_offset());
        }
        Some(lag)
    }

    fn position(&self) -> u64 {
        self.read
    }

    fn dead_letters(&self) -> u64 {
        self.dead_letter_count
    }

    fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        self.dead_letters.sync()?;
        for (i, (reader, partition, end)) in self.partitions.iter().enumerate() {
            // Records read but not handed out are read again after a restore.
            let next_offset = self.pending[i].front().map_or(reader.next_offset(), |(offset, _)| *offset);
            let max_timestamp = self.clocks.as_ref().map_or(MIN_TIMESTAMP, |clocks| clocks.max_timestamp(i));
            state.item(&PartitionSplit { partition: *partition, next_offset, end: *end, max_timestamp })?;
        }
        Ok(())
    }
}

/// The key of a record a [`LogSink`] writes.
type KeyOf<T> = Arc<dyn Fn(&T) -> Vec<u8> + Send + Sync>;

/// A topic of the embedded log, as a sink of `T` written as JSON values.
pub struct LogSink<T> {
    log: Log,
    topic: String,
    transactional_id_prefix: String,
    key: Option<KeyOf<T>>,
}

impl<T> LogSink<T> {
    /// Writes to `topic` of `log`; in an exactly-once job, in transactions under the
    /// ids `<topic>-sink-<worker>` (see [`Self::transactional_id_prefix`]).
    pub fn new(log: &Log, topic: &str) -> Result<Self> {
        log.describe(topic).map_err(|e| log_error(topic, e))?;
        Ok(LogSink {
            log: log.clone(),
            topic: topic.to_string(),
            transactional_id_prefix: format!("{topic}-sink"),
            key: None,
        })
    }

    /// The prefix of the writers' transactional ids; two jobs writing the same topic
    /// need different ones (Flink's `sink.transactional-id-prefix`).
    pub fn transactional_id_prefix(mut self, prefix: &str) -> Self {
        self.transactional_id_prefix = prefix.to_string();
        self
    }

    /// Keys each record by `key` (records of a key go to one partition).
    pub fn key_by(mut self, key: impl Fn(&T) -> Vec<u8> + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self
    }
}

impl<T: Serialize + Send + 'static> Sink<T> for LogSink<T> {
    type Writer = LogWriter<T>;

    fn name(&self) -> String {
        format!("log-sink({})", self.topic)
    }

    fn writer(&self, context: &SinkContext) -> Result<LogWriter<T>> {
        Ok(LogWriter {
            records: self.record_writer(context)?,
            key: self.key.clone(),
            value: Vec::new(),
            _type: PhantomData,
        })
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        Some(self.record_committer())
    }
}

impl<T> LogSink<T> {
    /// A writer of records already encoded (the SQL sinks' rows), in transactions as
    /// the sink's own writers.
    pub fn record_writer(&self, context: &SinkContext) -> Result<LogRecordWriter> {
        let transactional = context.transactional();
        let transactional_id = transactional.then(|| format!("{}-{}", self.transactional_id_prefix, context.worker));
        let config = ProducerConfig { transactional_id, ..ProducerConfig::default() };
        let producer = Producer::new(&self.log, config).map_err(|e| log_error(&self.topic, e))?;
        Ok(LogRecordWriter { topic: self.topic.clone(), producer, transactional, ongoing: false })
    }

    /// What commits the transactions of [`Self::record_writer`]'s writers.
    pub fn record_committer(&self) -> Arc<dyn Committer> {
        Arc::new(LogCommitter { log: self.log.clone(), prefix: self.transactional_id_prefix.clone() })
    }
}

/// One worker's writer of encoded records into a topic: in a transaction per
/// checkpoint when the job is exactly-once, straight through otherwise.
pub struct LogRecordWriter {
    topic: String,
    producer: Producer,
    transactional: bool,
    /// Whether a transaction is open (one begins at the first record after a barrier).
    ongoing: bool,
}

impl LogRecordWriter {
    /// Writes one record; an empty `value` is a tombstone (a deletion of its key in a
    /// compacted topic).
    pub fn send(&mut self, key: Option<&[u8]>, value: &[u8], timestamp: Timestamp) -> Result<()> {
        if self.transactional && !self.ongoing {
            self.producer.begin().map_err(|e| log_error(&self.topic, e))?;
            self.ongoing = true;
        }
        let send = ProducerRecord { topic: &self.topic, partition: None, key, value, headers: &[], timestamp };
        self.producer.send(&send).map(|_| ()).map_err(|e| log_error(&self.topic, e))
    }

    /// At a checkpoint barrier: prepares the open transaction (its committable goes
    /// into `state`), or flushes.
    pub fn pre_commit(&mut self, state: &mut StateWriter) -> Result<()> {
        if !self.transactional {
            return self.producer.flush().map_err(|e| log_error(&self.topic, e));
        }
        if self.ongoing {
            let prepared = self.producer.prepare().map_err(|e| log_error(&self.topic, e))?;
            self.ongoing = false;
            state.committable(&prepared)?;
        }
        Ok(())
    }

    /// At the end of the input.
    pub fn close(&mut self) -> Result<()> {
        self.producer.flush().map_err(|e| log_error(&self.topic, e))
    }
}

/// One worker's writer of a [`LogSink`].
pub struct LogWriter<T> {
    records: LogRecordWriter,
    key: Option<KeyOf<T>>,
    value: Vec<u8>,
    _type: PhantomData<fn(T)>,
}

impl<T: Serialize + Send + 'static> SinkWriter<T> for LogWriter<T> {
    fn write_batch(&mut self, batch: Vec<Record<T>>) -> Result<()> {
        for record in &batch {
            self.value.clear();
            serde_json::to_writer(&mut self.value, &record.value)
                .map_err(|e| Error::Operator { operator: "log-sink".into(), message: e.to_string() })?;
            let key = self.key.as_ref().map(|key| key(&record.value));
            self.records.send(key.as_deref(), &self.value, record.timestamp)?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, _checkpoint: CheckpointId, state: &mut StateWriter) -> Result<()> {
        self.records.pre_commit(state)
    }

    fn close(&mut self) -> Result<()> {
        self.records.close()
    }
}

/// Commits the transactions the sink's writers prepared.
struct LogCommitter {
    log: Log,
    prefix: String,
}

fn decode(committable: &[u8]) -> Result<PreparedTransaction> {
    postcard::from_bytes(committable)
        .map_err(|e| Error::checkpoint("log sink", format!("a committable does not decode: {e}")))
}

impl Committer for LogCommitter {
    fn commit(&self, committable: &[u8]) -> Result<()> {
        let prepared = decode(committable)?;
        commit_prepared(&self.log, &prepared).map_err(|e| log_error(&prepared.transactional_id, e))
    }

    fn recover(&self, committables: &[Vec<u8>]) -> Result<()> {
        let keep: Vec<PreparedTransaction> = committables.iter().map(|c| decode(c)).collect::<Result<_>>()?;
        for prepared in &keep {
            commit_prepared(&self.log, prepared).map_err(|e| log_error(&prepared.transactional_id, e))?;
        }
        abort_unfinished_except(&self.log, &self.prefix, &keep).map_err(|e| log_error(&self.prefix, e))
    }
}
