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

use crate::partition::{Partition, PartitionConfig};
use serde::{Deserialize, Serialize};
use sluice_fs::FileSystem;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// The log kept under one data directory.
#[derive(Clone, Debug)]
pub struct Log {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
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
    /// The log under `dir`, created if missing.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> io::Result<Log> {
        sluice_fs::create_dir_all_durably(fs.as_ref(), &dir.join(TOPICS))?;
        Ok(Log { fs, dir: dir.to_path_buf() })
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.dir.join(TOPICS).join(name)
    }

    /// Creates the topic `name`; an error if it exists or its settings are invalid.
    pub fn create_topic(&self, name: &str, config: &TopicConfig) -> io::Result<()> {
        check_topic_name(name)?;
        if config.partitions == 0 {
            return Err(error(io::ErrorKind::InvalidInput, format!("topic {name}: it needs at least one partition")));
        }
        let dir = self.topic_dir(name);
        if self.fs.exists(&dir.join(SETTINGS)) {
            return Err(error(io::ErrorKind::AlreadyExists, format!("topic {name} exists")));
        }
        sluice_fs::create_dir_all_durably(self.fs.as_ref(), &dir)?;
        let settings = serde_json::to_vec_pretty(config).map_err(io::Error::other)?;
        // The settings make the topic exist: its partitions are created after them.
        sluice_fs::write_durably(self.fs.as_ref(), &dir.join(SETTINGS), &settings)?;
        for partition in 0..config.partitions {
            sluice_fs::create_dir_all_durably(self.fs.as_ref(), &dir.join(partition.to_string()))?;
        }
        Ok(())
    }

    /// The topic `name`'s settings; an error naming it if there is no such topic.
    pub fn describe(&self, name: &str) -> io::Result<TopicConfig> {
        check_topic_name(name)?;
        let path = self.topic_dir(name).join(SETTINGS);
        let bytes = match self.fs.read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(error(
                    io::ErrorKind::NotFound,
                    format!("there is no topic {name} in {}", self.dir.display()),
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
            .fs
            .list(&self.dir.join(TOPICS))?
            .into_iter()
            .filter(|entry| entry.is_dir && self.fs.exists(&self.topic_dir(&entry.name).join(SETTINGS)))
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
        self.fs.remove_file(&dir.join(SETTINGS))?;
        self.fs.sync_dir(&dir)?;
        self.fs.remove_dir_all(&dir)?;
        self.fs.sync_dir(&self.dir.join(TOPICS))
    }

    /// Opens partition `partition` of topic `topic`.
    pub fn partition(&self, topic: &str, partition: u32, config: PartitionConfig) -> io::Result<Partition> {
        let settings = self.describe(topic)?;
        if partition >= settings.partitions {
            let message = format!("topic {topic} has no partition {partition} (it has {})", settings.partitions);
            return Err(error(io::ErrorKind::NotFound, message));
        }
        Partition::open(self.fs.clone(), &self.topic_dir(topic).join(partition.to_string()), config)
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
        partition.append(&mut batch, 0, crate::Producer::NONE).unwrap();
        let missing = log.partition("orders", 3, PartitionConfig::default()).err().unwrap().to_string();
        assert!(missing.contains("has no partition 3 (it has 3)"), "{missing}");
        let unknown = log.describe("nope").unwrap_err().to_string();
        assert!(unknown.contains("there is no topic nope"), "{unknown}");
        log.delete_topic("orders").unwrap();
        assert_eq!(log.topics().unwrap(), vec!["alerts"]);
        assert_eq!(log.describe("orders").unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
