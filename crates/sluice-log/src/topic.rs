//! Topics: named sets of partitions under a data directory.
//!
//! ```text
//! <data dir>/topics/<name>/topic.json   its settings, written durably before its partitions
//! <data dir>/topics/<name>/<n>/         partition n: its segments
//! ```
//!
//! Records with a key go to the partition Kafka's default partitioner would choose
//! (murmur2 of the key bytes), so a job moved to Kafka finds each key in the same
//! partition number.

use crate::batch::{BatchBuilder, ProducerInfo};
use crate::partition::{Durability, Partition, PartitionConfig};
use crate::reader::{Isolation, PartitionReader};
use serde::{Deserialize, Serialize};
use sluice_fs::FileSystem;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

const SETTINGS: &str = "topic.json";
const TOPICS: &str = "topics";

/// A topic's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// How many partitions it has.
    pub partitions: u32,
    /// Whether only the latest record of each key is kept (a changelog).
    pub compact: bool,
    /// Records older than this many milliseconds may be deleted.
    pub retention_ms: Option<u64>,
    /// A partition's oldest segments may be deleted beyond this many bytes.
    pub retention_bytes: Option<u64>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig { partitions: 1, compact: false, retention_ms: None, retention_bytes: None }
    }
}

/// How a log keeps its partitions.
#[derive(Clone, Copy, Debug)]
pub struct LogOptions {
    /// When appends are durable: a sync per batch (the default: nothing is acknowledged
    /// before it is durable; writers of one partition share syncs), or on an interval.
    pub durability: Durability,
    /// With [`Durability::OnSync`], how often the open partitions are synced.
    pub sync_interval: Duration,
    /// A partition starts a new segment once its newest holds this many bytes.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            durability: Durability::EveryAppend,
            sync_interval: Duration::from_millis(200),
            segment_bytes: PartitionConfig::default().segment_bytes,
        }
    }
}

/// A partition open for writing, shared by the writers of one process.
pub type SharedPartition = Arc<Mutex<Partition>>;

/// The log kept under one data directory. Clones share its open partitions: a process
/// opens a log once and hands out clones.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
}

struct Shared {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    options: LogOptions,
    /// The partitions this process has open to write, by topic and number.
    writers: Mutex<HashMap<(String, u32), SharedPartition>>,
    /// The transactional ids this process owns.
    transactions: Mutex<HashMap<String, Arc<Mutex<crate::transaction::Coordinator>>>>,
    /// The consumer groups this process has open.
    groups: Mutex<HashMap<String, Arc<Mutex<crate::consumer::Group>>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}

/// Locks `mutex`, whose holder may have panicked: the partition it guards refuses
/// appends after a failed write, so its state stays consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn error(kind: io::ErrorKind, message: String) -> io::Error {
    io::Error::new(kind, message)
}

/// Checks a topic name as Kafka does: 1 to 249 of ASCII letters, digits, `.`, `_` and
/// `-`, and not `.` or `..`.
pub fn check_topic_name(name: &str) -> io::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    match valid {
        true => Ok(()),
        false => Err(error(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid topic name (1 to 249 letters, digits, '.', '_' or '-')"),
        )),
    }
}

impl Log {
    /// The log under `dir`, created if missing, with the default options.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> io::Result<Log> {
        Self::open_with(fs, dir, LogOptions::default())
    }

    /// The log under `dir`, created if missing.
    pub fn open_with(fs: Arc<dyn FileSystem>, dir: &Path, options: LogOptions) -> io::Result<Log> {
        sluice_fs::create_dir_all_durably(fs.as_ref(), &dir.join(TOPICS))?;
        let shared = Arc::new(Shared {
            fs,
            dir: dir.to_path_buf(),
            options,
            writers: Mutex::new(HashMap::new()),
            transactions: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
        });
        if options.durability == Durability::OnSync {
            let weak = Arc::downgrade(&shared);
            std::thread::Builder::new()
                .name("sluice-log-sync".to_string())
                .spawn(move || sync_on_interval(&weak, options.sync_interval))?;
        }
        Ok(Log { shared })
    }

    /// Its file system.
    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.shared.fs
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.shared.dir.join(TOPICS).join(name)
    }

    /// The directory of partition `partition` of `topic`, checked to exist.
    fn partition_dir(&self, topic: &str, partition: u32) -> io::Result<PathBuf> {
        let settings = self.describe(topic)?;
        if partition >= settings.partitions {
            let message = format!("topic {topic} has no partition {partition} (it has {})", settings.partitions);
            return Err(error(io::ErrorKind::NotFound, message));
        }
        Ok(self.topic_dir(topic).join(partition.to_string()))
    }

    /// Partition `partition` of `topic`, open to write and shared with this process's
    /// other writers of it; opened (and locked against other processes) on first use.
    pub fn writer(&self, topic: &str, partition: u32) -> io::Result<SharedPartition> {
        let key = (topic.to_string(), partition);
        if let Some(open) = lock(&self.shared.writers).get(&key) {
            return Ok(open.clone());
        }
        let dir = self.partition_dir(topic, partition)?;
        let settings = self.describe(topic)?;
        let config = PartitionConfig {
            segment_bytes: self.shared.options.segment_bytes,
            durability: self.shared.options.durability,
            retention_ms: settings.retention_ms,
            retention_bytes: settings.retention_bytes,
            compact: settings.compact,
        };
        let mut writers = lock(&self.shared.writers);
        if let Some(open) = writers.get(&key) {
            return Ok(open.clone());
        }
        let opened = Arc::new(Mutex::new(Partition::open(self.shared.fs.clone(), &dir, config)?));
        writers.insert(key, opened.clone());
        Ok(opened)
    }

    /// Appends `batch` to partition `partition` of `topic` (see [`Partition::append`]),
    /// durable on return with [`Durability::EveryAppend`]; writers of the same
    /// partition that append meanwhile share one sync.
    pub fn append(
        &self,
        topic: &str,
        partition: u32,
        batch: &mut BatchBuilder,
        attributes: u16,
        producer: ProducerInfo,
    ) -> io::Result<u64> {
        let attempt = |batch: &mut BatchBuilder| -> io::Result<u64> {
            let writer = self.writer(topic, partition)?;
            let (offset, ticket, every_append) = {
                let mut partition = lock(&writer);
                let (offset, ticket) = partition.write(batch, attributes, producer)?;
                (offset, ticket, partition.syncs_every_append())
            };
            if every_append {
                sync_through(&writer, ticket)?;
            }
            Ok(offset)
        };
        let offset = match attempt(batch) {
            Err(e) if retriable(&e) => {
                // Open the partition again (cutting off a torn write) and append the
                // same batch again: with a producer id it is stored once.
                tracing::warn!("appending to {topic}/{partition}: {e}; opening it again to retry");
                lock(&self.shared.writers).remove(&(topic.to_string(), partition));
                attempt(batch)?
            }
            other => other?,
        };
        batch.clear();
        Ok(offset)
    }

    /// Makes everything appended through this process durable.
    pub fn sync(&self) -> io::Result<()> {
        let writers: Vec<SharedPartition> = lock(&self.shared.writers).values().cloned().collect();
        writers.iter().try_for_each(|writer| sync_through(writer, u64::MAX))
    }

    /// A reader of partition `partition` of `topic`, at its oldest record.
    pub fn reader(&self, topic: &str, partition: u32, isolation: Isolation) -> io::Result<PartitionReader> {
        PartitionReader::with_isolation(self.shared.fs.clone(), &self.partition_dir(topic, partition)?, isolation)
    }

    /// Creates the topic `name`; an error if it exists or its settings are invalid.
    pub fn create_topic(&self, name: &str, config: &TopicConfig) -> io::Result<()> {
        check_topic_name(name)?;
        if config.partitions == 0 {
            return Err(error(io::ErrorKind::InvalidInput, format!("topic {name}: it needs at least one partition")));
        }
        let dir = self.topic_dir(name);
        if self.shared.fs.exists(&dir.join(SETTINGS)) {
            return Err(error(io::ErrorKind::AlreadyExists, format!("topic {name} exists")));
        }
        sluice_fs::create_dir_all_durably(self.shared.fs.as_ref(), &dir)?;
        let settings = serde_json::to_vec_pretty(config).map_err(io::Error::other)?;
        // The settings make the topic exist: its partitions are created after them.
        sluice_fs::write_durably(self.shared.fs.as_ref(), &dir.join(SETTINGS), &settings)?;
        for partition in 0..config.partitions {
            sluice_fs::create_dir_all_durably(self.shared.fs.as_ref(), &dir.join(partition.to_string()))?;
        }
        Ok(())
    }

    /// The topic `name`'s settings; an error naming it if there is no such topic.
    pub fn describe(&self, name: &str) -> io::Result<TopicConfig> {
        check_topic_name(name)?;
        let path = self.topic_dir(name).join(SETTINGS);
        let bytes = match self.shared.fs.read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(error(
                    io::ErrorKind::NotFound,
                    format!("there is no topic {name} in {}", self.shared.dir.display()),
                ))
            }
            other => other?,
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| error(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
    }

    /// The names of the topics, sorted.
    pub fn topics(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .shared
            .fs
            .list(&self.shared.dir.join(TOPICS))?
            .into_iter()
            .filter(|entry| entry.is_dir && self.shared.fs.exists(&self.topic_dir(&entry.name).join(SETTINGS)))
            .map(|entry| entry.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes the topic `name` and its records.
    pub fn delete_topic(&self, name: &str) -> io::Result<()> {
        self.describe(name)?;
        let dir = self.topic_dir(name);
        // Without its settings the topic no longer exists, whatever is left of it.
        self.shared.fs.remove_file(&dir.join(SETTINGS))?;
        self.shared.fs.sync_dir(&dir)?;
        self.shared.fs.remove_dir_all(&dir)?;
        self.shared.fs.sync_dir(&self.shared.dir.join(TOPICS))
    }

    /// Opens partition `partition` of topic `topic` for this caller alone (see
    /// [`Self::writer`] to share it).
    pub fn partition(&self, topic: &str, partition: u32, config: PartitionConfig) -> io::Result<Partition> {
        Partition::open(self.shared.fs.clone(), &self.partition_dir(topic, partition)?, config)
    }

    /// The directory transactional ids and consumer groups keep their state in.
    pub(crate) fn state_dir(&self, kind: &str) -> io::Result<PathBuf> {
        let dir = self.shared.dir.join(kind);
        sluice_fs::create_dir_all_durably(self.shared.fs.as_ref(), &dir)?;
        Ok(dir)
    }

    pub(crate) fn transactions(&self) -> &Mutex<HashMap<String, Arc<Mutex<crate::transaction::Coordinator>>>> {
        &self.shared.transactions
    }

    pub(crate) fn groups(&self) -> &Mutex<HashMap<String, Arc<Mutex<crate::consumer::Group>>>> {
        &self.shared.groups
    }
}

/// Makes the batches of `writer` through `ticket` (`u64::MAX`: all so far) durable, if
/// not yet. The sync runs without the partition's lock held: writers append meanwhile,
/// and a later sync covers all their batches at once (group commit).
pub(crate) fn sync_through(writer: &SharedPartition, ticket: u64) -> io::Result<()> {
    let (syncer, through) = {
        let partition = lock(writer);
        if partition.is_durable(ticket.min(partition.written())) {
            return Ok(());
        }
        partition.syncer()?
    };
    let result = syncer.sync();
    lock(writer).synced(through, result)
}

/// Compacts partition `partition` of `topic` now (see [`Partition::compact`]), through
/// this process's writer of it; returns how many segments were rewritten.
pub fn partition_compact(log: &Log, topic: &str, partition: u32, now: i64) -> io::Result<usize> {
    let writer = log.writer(topic, partition)?;
    let mut partition = lock(&writer);
    partition.compact(now)
}

/// Whether an append that failed with `error` may succeed once the partition is opened
/// again: a failed write or sync, not a refusal.
fn retriable(error: &io::Error) -> bool {
    !matches!(
        error.kind(),
        io::ErrorKind::InvalidInput
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::NotFound
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::InvalidData
    )
}

/// Syncs the open partitions of a log every `interval`, until the log is dropped.
fn sync_on_interval(shared: &Weak<Shared>, interval: Duration) {
    loop {
        std::thread::sleep(interval);
        let Some(shared) = shared.upgrade() else { return };
        let writers: Vec<SharedPartition> = lock(&shared.writers).values().cloned().collect();
        for writer in writers {
            if let Err(e) = sync_through(&writer, u64::MAX) {
                tracing::error!("syncing the log in {}: {e}", shared.dir.display());
            }
        }
    }
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`), as a signed 32-bit value.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("four bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `partitions` a record with `key` goes to, as Kafka's default
/// partitioner chooses it.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas() {
        // Values of the Kafka Java client's Utils.murmur2 for these inputs.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "{}", String::from_utf8_lossy(input));
        }
        assert!((0..10_000).all(|i: u32| partition_for_key(&i.to_le_bytes(), 3) < 3));
    }

    #[test]
    fn topics_are_created_listed_described_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(sluice_fs::local(), dir.path()).unwrap();
        let config = TopicConfig { partitions: 3, compact: true, retention_ms: Some(60_000), retention_bytes: None };
        log.create_topic("orders", &config).unwrap();
        log.create_topic("alerts", &TopicConfig::default()).unwrap();
        assert_eq!(log.topics().unwrap(), vec!["alerts", "orders"]);
        assert_eq!(log.describe("orders").unwrap(), config);
        let exists = log.create_topic("orders", &config).unwrap_err();
        assert_eq!(exists.kind(), io::ErrorKind::AlreadyExists);
        let bad = log.create_topic("a/b", &config).unwrap_err().to_string();
        assert!(bad.contains("not a valid topic name"), "{bad}");
        let none = log.create_topic("empty", &TopicConfig { partitions: 0, ..TopicConfig::default() });
        assert!(none.unwrap_err().to_string().contains("at least one partition"));
        let mut partition = log.partition("orders", 2, PartitionConfig::default()).unwrap();
        let mut batch = crate::BatchBuilder::new();
        batch.push(1, Some(b"k"), b"v", &[]);
        partition.append(&mut batch, 0, crate::ProducerInfo::NONE).unwrap();
        let missing = log.partition("orders", 3, PartitionConfig::default()).err().unwrap().to_string();
        assert!(missing.contains("has no partition 3 (it has 3)"), "{missing}");
        let unknown = log.describe("nope").unwrap_err().to_string();
        assert!(unknown.contains("there is no topic nope"), "{unknown}");
        log.delete_topic("orders").unwrap();
        assert_eq!(log.topics().unwrap(), vec!["alerts"]);
        assert_eq!(log.describe("orders").unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
