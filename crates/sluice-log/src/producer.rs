//! Producers: records into batches per partition, appended idempotently, optionally in
//! transactions (see `transaction.rs`).
//!
//! A producer gathers the records it is sent into one batch per partition and appends a
//! batch once it holds `batch_bytes`, or on [`Producer::flush`]. Every producer is
//! idempotent: its batches carry a producer id and per-partition sequence numbers, so
//! that a batch appended again after a failed write is stored once.

use crate::batch::{BatchBuilder, ProducerInfo, TRANSACTIONAL};
use crate::topic::{lock, partition_for_key, Log};
use crate::transaction::{random_producer_id, Coordinator, PreparedTransaction};
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

/// How a producer works.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// Makes the producer transactional under this id (see [`Producer::begin`]).
    pub transactional_id: Option<String>,
    /// A partition's batch is appended once it holds this many bytes.
    pub batch_bytes: usize,
    /// The largest record accepted, in bytes of key, value and headers.
    pub max_record_bytes: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig { transactional_id: None, batch_bytes: 256 << 10, max_record_bytes: 1 << 20 }
    }
}

/// A record to send.
#[derive(Clone, Copy, Debug)]
pub struct ProducerRecord<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition; without one, that of its key (Kafka's murmur2), or without a key
    /// the partition the producer is filling (Kafka's sticky partitioner).
    pub partition: Option<u32>,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value.
    pub value: &'a [u8],
    /// Its headers.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Its event time, in milliseconds since the epoch.
    pub timestamp: i64,
}

/// One partition's batch being filled.
struct Pending {
    batch: BatchBuilder,
    /// The sequence number of the batch's first record.
    sequence: i32,
}

/// A transactional producer's hold on its id.
struct Transactional {
    coordinator: Arc<Mutex<Coordinator>>,
    generation: u64,
    /// The ongoing transaction's producer id and epoch.
    ongoing: Option<(i64, i16)>,
}

/// Writes records to the topics of a log.
pub struct Producer {
    log: Log,
    config: ProducerConfig,
    /// Producer id and epoch of the batches (of the ongoing transaction, if any).
    id: (i64, i16),
    pending: HashMap<(String, u32), Pending>,
    /// Partitions per topic, and the partition records without a key go to.
    topics: HashMap<String, (u32, u32)>,
    transactional: Option<Transactional>,
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl Producer {
    /// A producer of `log`; a transactional one takes its id (finishing or aborting
    /// what a previous holder of the id left, and fencing it).
    pub fn new(log: &Log, config: ProducerConfig) -> io::Result<Producer> {
        let transactional = match &config.transactional_id {
            None => None,
            Some(id) => {
                let coordinator = Coordinator::of(log, id)?;
                let generation = lock(&coordinator).init(log)?;
                Some(Transactional { coordinator, generation, ongoing: None })
            }
        };
        Ok(Producer {
            log: log.clone(),
            config,
            id: (random_producer_id(), 0),
            pending: HashMap::new(),
            topics: HashMap::new(),
            transactional,
        })
    }

    fn partition_of(&mut self, record: &ProducerRecord<'_>) -> io::Result<u32> {
        if !self.topics.contains_key(record.topic) {
            let partitions = self.log.describe(record.topic)?.partitions;
            self.topics.insert(record.topic.to_string(), (partitions, 0));
        }
        let (partitions, sticky) = self.topics[record.topic];
        let partition = match (record.partition, record.key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => sticky,
        };
        if partition >= partitions {
            let message = format!("topic {} has no partition {partition} (it has {partitions})", record.topic);
            return Err(io::Error::new(io::ErrorKind::NotFound, message));
        }
        Ok(partition)
    }

    /// Adds a record to its partition's batch, appending the batch once full; returns
    /// the partition. In a transactional producer, only inside a transaction.
    pub fn send(&mut self, record: &ProducerRecord<'_>) -> io::Result<u32> {
        let size = record.key.map_or(0, <[u8]>::len)
            + record.value.len()
            + record.headers.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>();
        if size > self.config.max_record_bytes {
            let limit = self.config.max_record_bytes;
            return Err(invalid_input(format!("a record of {size} bytes is over the limit of {limit} bytes")));
        }
        let partition = self.partition_of(record)?;
        let key = (record.topic.to_string(), partition);
        if let Some(transactional) = &self.transactional {
            let Some(at) = transactional.ongoing else {
                let message = "a transactional producer sends only inside a transaction (begin one first)";
                return Err(invalid_input(message.to_string()));
            };
            if !self.pending.contains_key(&key) {
                lock(&transactional.coordinator).add_partition(
                    transactional.generation,
                    at,
                    record.topic,
                    partition,
                )?;
            }
        }
        let pending =
            self.pending.entry(key.clone()).or_insert_with(|| Pending { batch: BatchBuilder::new(), sequence: 0 });
        pending.batch.push(record.timestamp, record.key, record.value, record.headers);
        if pending.batch.size() >= self.config.batch_bytes {
            self.append(&key)?;
            if record.key.is_none() && record.partition.is_none() {
                let (partitions, sticky) = self.topics.get_mut(record.topic).expect("invariant: looked up above");
                *sticky = (*sticky + 1) % *partitions;
            }
        }
        Ok(partition)
    }

    /// Appends a partition's batch; its sequence numbers move on once it is stored.
    fn append(&mut self, key: &(String, u32)) -> io::Result<()> {
        let transactional = self.transactional.is_some();
        let Some(pending) = self.pending.get_mut(key) else { return Ok(()) };
        if pending.batch.is_empty() {
            return Ok(());
        }
        let count = pending.batch.len() as i32;
        let producer = ProducerInfo { id: self.id.0, epoch: self.id.1, base_sequence: pending.sequence };
        let attributes = if transactional { TRANSACTIONAL } else { 0 };
        self.log.append(&key.0, key.1, &mut pending.batch, attributes, producer)?;
        pending.sequence = pending.sequence.wrapping_add(count);
        Ok(())
    }

    /// Appends every partition's batch; durable on return when the log syncs every
    /// append.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut keys: Vec<(String, u32)> = self.pending.keys().cloned().collect();
        keys.sort();
        keys.iter().try_for_each(|key| self.append(key))
    }

    fn transactional(&mut self) -> io::Result<&mut Transactional> {
        self.transactional.as_mut().ok_or_else(|| {
            invalid_input("the producer has no transactional id: it cannot run transactions".to_string())
        })
    }

    /// Starts a transaction: records sent until [`Self::commit`] are seen by
    /// read-committed consumers all together, or (aborted) never.
    pub fn begin(&mut self) -> io::Result<()> {
        let transactional = self.transactional()?;
        if transactional.ongoing.is_some() {
            return Err(invalid_input("a transaction is ongoing already".to_string()));
        }
        let at = lock(&transactional.coordinator).begin(transactional.generation)?;
        transactional.ongoing = Some(at);
        self.id = at;
        self.pending.clear();
        Ok(())
    }

    /// Appends and syncs every batch of the ongoing transaction; returns it.
    fn make_durable(&mut self) -> io::Result<(i64, i16)> {
        self.flush()?;
        for key in self.pending.keys() {
            crate::topic::sync_through(&self.log.writer(&key.0, key.1)?, u64::MAX)?;
        }
        let transactional = self.transactional()?;
        let at = transactional.ongoing.ok_or_else(|| invalid_input("no transaction is ongoing".to_string()))?;
        Ok(at)
    }

    /// Makes the ongoing transaction's records durable and marks it prepared: it waits
    /// for [`Self::commit_prepared`] or [`Self::abort_prepared`] (in this process or,
    /// after a crash, another), while this producer may begin the next.
    pub fn prepare(&mut self) -> io::Result<PreparedTransaction> {
        let at = self.make_durable()?;
        let transactional = self.transactional()?;
        let prepared = lock(&transactional.coordinator).prepare(transactional.generation, at)?;
        transactional.ongoing = None;
        self.pending.clear();
        Ok(prepared)
    }

    /// Commits the ongoing transaction: once its records are durable, the decision is
    /// (a crash after it finishes the commit when the id is opened again).
    pub fn commit(&mut self) -> io::Result<()> {
        let at = self.make_durable()?;
        let log = self.log.clone();
        let transactional = self.transactional()?;
        let mut coordinator = lock(&transactional.coordinator);
        coordinator.check(transactional.generation)?;
        transactional.ongoing = None;
        let finished = coordinator.finish(&log, at.0, at.1, true);
        drop(coordinator);
        self.pending.clear();
        finished
    }

    /// Aborts the ongoing transaction: its records are never seen by read-committed
    /// consumers.
    pub fn abort(&mut self) -> io::Result<()> {
        let transactional =
            self.transactional.as_mut().ok_or_else(|| invalid_input("no transactional id".to_string()))?;
        let at = transactional.ongoing.take().ok_or_else(|| invalid_input("no transaction is ongoing".to_string()))?;
        let finished = lock(&transactional.coordinator).finish(&self.log, at.0, at.1, false);
        self.pending.clear();
        finished
    }

    /// Commits a prepared transaction of this producer's id; nothing to do if it is
    /// finished already.
    pub fn commit_prepared(&mut self, prepared: &PreparedTransaction) -> io::Result<()> {
        self.decide(prepared, true)
    }

    /// Aborts a prepared transaction of this producer's id.
    pub fn abort_prepared(&mut self, prepared: &PreparedTransaction) -> io::Result<()> {
        self.decide(prepared, false)
    }

    fn decide(&mut self, prepared: &PreparedTransaction, commit: bool) -> io::Result<()> {
        let log = self.log.clone();
        let transactional = self.transactional()?;
        let mut coordinator = lock(&transactional.coordinator);
        coordinator.check(transactional.generation)?;
        coordinator.finish(&log, prepared.producer_id, prepared.epoch, commit)
    }

    /// The prepared transactions of this producer's id that wait for a decision.
    pub fn prepared(&mut self) -> io::Result<Vec<PreparedTransaction>> {
        let transactional = self.transactional()?;
        Ok(lock(&transactional.coordinator).prepared())
    }
}
