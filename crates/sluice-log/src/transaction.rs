//! Transactions across partitions and topics, on Kafka's model.
//!
//! A transactional id names a producer that outlives its process. Its state is a file,
//! `<data dir>/transactions/<id>.json`, written durably at each step, and one process
//! at a time owns it (a lock on `<id>.lock`: a second process gets a clear error).
//! Each transaction takes a new epoch of the id's producer id, so a transaction is one
//! (producer id, epoch). Its steps:
//!
//! 1. **Ongoing**: before the first batch to a partition, the partition is added to the
//!    state file, so that a crash leaves a list of where markers must go.
//! 2. **Prepared** (optional, for two-phase-commit sinks): the data is durable and the
//!    transaction waits for a decision, while the producer goes on with the next one.
//! 3. **Committing** or **Aborting**: the decision, durable, then a marker in each of its
//!    partitions; then the transaction leaves the file.
//!
//! Opening the id again (after a crash) finishes what was decided and aborts what was
//! ongoing ([`finish_abandoned`] does it for ids no process holds); prepared
//! transactions wait for [`crate::Producer::commit_prepared`] or
//! [`crate::Producer::abort_prepared`]. A marker is written at most once per
//! partition, so finishing again is harmless.

use crate::batch::{BatchBuilder, ProducerInfo, CONTROL, TRANSACTIONAL};
use crate::topic::{lock, Log};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const DIR: &str = "transactions";

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    Ongoing,
    Prepared,
    Committing,
    Aborting,
}

/// A transaction not finished yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Unfinished {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) phase: Phase,
    /// The partitions it may have written to: topic and number.
    pub(crate) partitions: Vec<(String, u32)>,
}

/// The state file of a transactional id.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    /// Its producer id and the latest epoch given out.
    producer_id: i64,
    epoch: i16,
    unfinished: Vec<Unfinished>,
}

/// A transaction that is durable and waits for its decision: what a two-phase-commit
/// sink stores in a checkpoint, to commit once the checkpoint completes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedTransaction {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id and epoch of the transaction.
    pub producer_id: i64,
    /// Its epoch.
    pub epoch: i16,
}

/// The one owner, in this process, of a transactional id's state.
pub(crate) struct Coordinator {
    /// Not the log: the log holds its coordinators.
    fs: Arc<dyn sluice_fs::FileSystem>,
    path: PathBuf,
    state: State,
    /// Bumped by each producer that opens the id: an older producer object is fenced.
    generation: u64,
    _lock: sluice_fs::FileLock,
}

/// A random producer id: ids are not handed out by a central place, and 63 random bits
/// do not collide in practice.
pub(crate) fn random_producer_id() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.write_u32(std::process::id());
    (hasher.finish() >> 1) as i64
}

pub(crate) fn fenced(id: &str) -> io::Error {
    let message = format!("transactional id {id}: a newer producer with this id has fenced this one");
    io::Error::new(io::ErrorKind::PermissionDenied, message)
}

impl Coordinator {
    /// The coordinator of `id` in this process, its state read (and the id locked
    /// against other processes) on first use.
    pub(crate) fn of(log: &Log, id: &str) -> io::Result<Arc<Mutex<Coordinator>>> {
        crate::topic::check_topic_name(id).map_err(|_| {
            let message = format!("{id:?} is not a valid transactional id (1 to 249 letters, digits, '.', '_' or '-')");
            io::Error::new(io::ErrorKind::InvalidInput, message)
        })?;
        let mut owned = lock(log.transactions());
        if let Some(coordinator) = owned.get(id) {
            return Ok(coordinator.clone());
        }
        let dir = log.state_dir(DIR)?;
        let fs = log.fs();
        let Some(file_lock) = fs.try_lock(&dir.join(format!("{id}.lock")))? else {
            let message = format!("transactional id {id} is in use by another process");
            return Err(io::Error::new(io::ErrorKind::WouldBlock, message));
        };
        let path = dir.join(format!("{id}.json"));
        let state = match fs.read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                State { producer_id: random_producer_id(), epoch: -1, unfinished: Vec::new() }
            }
            Err(e) => return Err(e),
        };
        let coordinator =
            Arc::new(Mutex::new(Coordinator { fs: fs.clone(), path, state, generation: 0, _lock: file_lock }));
        owned.insert(id.to_string(), coordinator.clone());
        Ok(coordinator)
    }

    fn id(&self) -> String {
        self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn save(&self) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(io::Error::other)?;
        sluice_fs::write_durably(self.fs.as_ref(), &self.path, &bytes)
    }

    /// A producer takes the id: finishes what was decided, aborts what was ongoing, and
    /// fences older producer objects of it. Returns its generation.
    pub(crate) fn init(&mut self, log: &Log) -> io::Result<u64> {
        self.generation += 1;
        let leftovers: Vec<Unfinished> =
            self.state.unfinished.iter().filter(|t| t.phase != Phase::Prepared).cloned().collect();
        for transaction in leftovers {
            self.finish(log, transaction.producer_id, transaction.epoch, transaction.phase == Phase::Committing)?;
        }
        Ok(self.generation)
    }

    pub(crate) fn check(&self, generation: u64) -> io::Result<()> {
        match generation == self.generation {
            true => Ok(()),
            false => Err(fenced(&self.id())),
        }
    }

    /// Starts a transaction: a new epoch (a new producer id once the epochs run out).
    pub(crate) fn begin(&mut self, generation: u64) -> io::Result<(i64, i16)> {
        self.check(generation)?;
        if self.state.epoch >= i16::MAX - 1 {
            self.state.producer_id = random_producer_id();
            self.state.epoch = -1;
        }
        self.state.epoch += 1;
        let (producer_id, epoch) = (self.state.producer_id, self.state.epoch);
        self.state.unfinished.push(Unfinished { producer_id, epoch, phase: Phase::Ongoing, partitions: Vec::new() });
        Ok((producer_id, epoch))
    }

    fn find(&mut self, producer_id: i64, epoch: i16) -> Option<&mut Unfinished> {
        self.state.unfinished.iter_mut().find(|t| t.producer_id == producer_id && t.epoch == epoch)
    }

    /// Records, durably, that the ongoing transaction writes to `topic`'s `partition`.
    pub(crate) fn add_partition(
        &mut self,
        generation: u64,
        at: (i64, i16),
        topic: &str,
        partition: u32,
    ) -> io::Result<()> {
        self.check(generation)?;
        let id = self.id();
        let transaction = self.find(at.0, at.1).ok_or_else(|| fenced(&id))?;
        if transaction.phase != Phase::Ongoing {
            let message = format!("transactional id {id}: the transaction is no longer ongoing");
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        if !transaction.partitions.iter().any(|(t, p)| t == topic && *p == partition) {
            transaction.partitions.push((topic.to_string(), partition));
            self.save()?;
        }
        Ok(())
    }

    /// Marks the ongoing transaction prepared, durably: its data must be durable.
    pub(crate) fn prepare(&mut self, generation: u64, at: (i64, i16)) -> io::Result<PreparedTransaction> {
        self.check(generation)?;
        let id = self.id();
        let transaction = self.find(at.0, at.1).ok_or_else(|| fenced(&id))?;
        transaction.phase = Phase::Prepared;
        self.save()?;
        Ok(PreparedTransaction { transactional_id: id, producer_id: at.0, epoch: at.1 })
    }

    /// Commits or aborts a transaction: the decision durably, then its markers, then it
    /// leaves the state. Nothing to do if it is not there (finished already).
    pub(crate) fn finish(&mut self, log: &Log, producer_id: i64, epoch: i16, commit: bool) -> io::Result<()> {
        let Some(transaction) = self.find(producer_id, epoch) else { return Ok(()) };
        let decided = match commit {
            true => Phase::Committing,
            false => Phase::Aborting,
        };
        if transaction.phase != decided {
            if matches!(transaction.phase, Phase::Committing | Phase::Aborting) {
                let message = format!("transactional id {}: the transaction was decided the other way", self.id());
                return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
            }
            transaction.phase = decided;
            self.save()?;
        }
        let partitions = self.find(producer_id, epoch).map(|t| t.partitions.clone()).unwrap_or_default();
        let producer = ProducerInfo { id: producer_id, epoch, base_sequence: -1 };
        let now = crate::partition::now_millis();
        for (topic, partition) in &partitions {
            let mut marker = BatchBuilder::marker(commit, now);
            log.append(topic, *partition, &mut marker, TRANSACTIONAL | CONTROL, producer)?;
        }
        // Markers must be durable before the transaction leaves the file.
        for (topic, partition) in &partitions {
            crate::topic::sync_through(&log.writer(topic, *partition)?, u64::MAX)?;
        }
        self.state.unfinished.retain(|t| !(t.producer_id == producer_id && t.epoch == epoch));
        self.save()
    }

    /// The prepared transactions waiting for a decision.
    pub(crate) fn prepared(&self) -> Vec<PreparedTransaction> {
        let id = self.id();
        self.state
            .unfinished
            .iter()
            .filter(|t| t.phase == Phase::Prepared)
            .map(|t| PreparedTransaction { transactional_id: id.clone(), producer_id: t.producer_id, epoch: t.epoch })
            .collect()
    }
}

/// Aborts the ongoing transactions (and finishes the decided ones) of every
/// transactional id that no process holds: their producers died, and until then
/// read-committed readers wait at their first record. Prepared transactions are left
/// for their owner's recovery. Returns how many transactions were finished.
pub fn finish_abandoned(log: &Log) -> io::Result<usize> {
    let dir = log.state_dir(DIR)?;
    let mut finished = 0;
    for entry in log.fs().list(&dir)? {
        let Some(id) = entry.name.strip_suffix(".json") else { continue };
        if lock(log.transactions()).contains_key(id) {
            continue;
        }
        let coordinator = match Coordinator::of(log, id) {
            Ok(coordinator) => coordinator,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut owned = lock(&coordinator);
        let before = owned.state.unfinished.len();
        owned.init(log)?;
        finished += before - owned.state.unfinished.len();
        drop(owned);
        lock(log.transactions()).remove(id);
    }
    Ok(finished)
}

/// Commits a prepared transaction, from whichever producer object or process prepared
/// it (a two-phase-commit sink's committer); nothing to do if it is finished already.
pub fn commit_prepared(log: &Log, prepared: &PreparedTransaction) -> io::Result<()> {
    let coordinator = Coordinator::of(log, &prepared.transactional_id)?;
    let mut coordinator = lock(&coordinator);
    coordinator.finish(log, prepared.producer_id, prepared.epoch, true)
}

/// Aborts every unfinished transaction of the transactional ids `<prefix>-<n>` but
/// those in `keep` (which a restored checkpoint commits): what a sink wrote after the
/// checkpoint it restarts from.
pub fn abort_unfinished_except(log: &Log, prefix: &str, keep: &[PreparedTransaction]) -> io::Result<()> {
    let dir = log.state_dir(DIR)?;
    for entry in log.fs().list(&dir)? {
        let Some(id) = entry.name.strip_suffix(".json") else { continue };
        let ours = id.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('-'));
        if !ours.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let coordinator = Coordinator::of(log, id)?;
        let mut coordinator = lock(&coordinator);
        let abort: Vec<(i64, i16)> = coordinator
            .state
            .unfinished
            .iter()
            .filter(|t| t.phase != Phase::Committing)
            .filter(|t| !keep.iter().any(|k| k.producer_id == t.producer_id && k.epoch == t.epoch))
            .map(|t| (t.producer_id, t.epoch))
            .collect();
        for (producer_id, epoch) in abort {
            coordinator.finish(log, producer_id, epoch, false)?;
        }
    }
    Ok(())
}
