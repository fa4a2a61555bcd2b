//! Consumers and consumer groups.
//!
//! A consumer reads partitions of one or more topics, each through its own
//! [`PartitionReader`]. In a group, it starts each partition at the group's committed
//! offset (the next offset to read, as Kafka stores it), or where the reset policy says
//! when the group has none, and commits its positions back. A group's offsets are a
//! file, `<data dir>/groups/<group>.json`, written durably on each commit. One process
//! at a time has a group open (a lock on `<group>.lock`); consumers of the group in
//! that process share it, each committing its own partitions.

use crate::batch::{Invalid, Record};
use crate::reader::{Isolation, PartitionReader};
use crate::topic::{lock, Log};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const DIR: &str = "groups";

/// Where a consumer starts a partition its group has no offset for (Kafka's
/// `auto.offset.reset`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffsetReset {
    /// At the oldest record kept.
    #[default]
    Earliest,
    /// After the last record written.
    Latest,
    /// Nowhere: an error.
    Fail,
}

/// How a consumer reads.
#[derive(Clone, Debug, Default)]
pub struct ConsumerConfig {
    /// Its group, whose committed offsets it starts from and commits to.
    pub group: Option<String>,
    /// Where it starts a partition without a committed offset.
    pub reset: OffsetReset,
    /// Which records it sees.
    pub isolation: Isolation,
}

/// The committed offsets of a group: topic, partition, next offset to read.
pub type GroupOffsets = BTreeMap<String, BTreeMap<u32, u64>>;

#[derive(Default, Serialize, Deserialize)]
struct GroupFile {
    offsets: GroupOffsets,
}

/// A group open in this process.
pub(crate) struct Group {
    /// Not the log: the log holds its groups.
    fs: Arc<dyn sluice_fs::FileSystem>,
    path: PathBuf,
    offsets: GroupOffsets,
    _lock: sluice_fs::FileLock,
}

fn group_path(log: &Log, group: &str) -> io::Result<PathBuf> {
    crate::topic::check_topic_name(group).map_err(|_| {
        let message = format!("{group:?} is not a valid group name (1 to 249 letters, digits, '.', '_' or '-')");
        io::Error::new(io::ErrorKind::InvalidInput, message)
    })?;
    Ok(log.state_dir(DIR)?.join(format!("{group}.json")))
}

fn read_offsets(log: &Log, path: &std::path::Path) -> io::Result<Option<GroupOffsets>> {
    match log.fs().read(path) {
        Ok(bytes) => serde_json::from_slice::<GroupFile>(&bytes)
            .map(|file| Some(file.offsets))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Group {
    fn of(log: &Log, group: &str) -> io::Result<Arc<Mutex<Group>>> {
        let mut open = lock(log.groups());
        if let Some(existing) = open.get(group) {
            return Ok(existing.clone());
        }
        let path = group_path(log, group)?;
        let Some(file_lock) = log.fs().try_lock(&path.with_extension("lock"))? else {
            let message = format!("consumer group {group} is in use by another process");
            return Err(io::Error::new(io::ErrorKind::WouldBlock, message));
        };
        let offsets = read_offsets(log, &path)?.unwrap_or_default();
        let opened = Arc::new(Mutex::new(Group { fs: log.fs().clone(), path, offsets, _lock: file_lock }));
        open.insert(group.to_string(), opened.clone());
        Ok(opened)
    }

    fn commit(&mut self, positions: impl IntoIterator<Item = (String, u32, u64)>) -> io::Result<()> {
        for (topic, partition, offset) in positions {
            self.offsets.entry(topic).or_default().insert(partition, offset);
        }
        let bytes =
            serde_json::to_vec_pretty(&GroupFile { offsets: self.offsets.clone() }).map_err(io::Error::other)?;
        sluice_fs::write_durably(self.fs.as_ref(), &self.path, &bytes)
    }
}

/// The groups with committed offsets, sorted.
pub fn groups(log: &Log) -> io::Result<Vec<String>> {
    let dir = log.state_dir(DIR)?;
    let mut names: Vec<String> = log
        .fs()
        .list(&dir)?
        .into_iter()
        .filter_map(|entry| entry.name.strip_suffix(".json").map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// The committed offsets of `group`; an error naming it if it has none.
pub fn group_offsets(log: &Log, group: &str) -> io::Result<GroupOffsets> {
    read_offsets(log, &group_path(log, group)?)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("there is no consumer group {group} in {}", log.dir().display()),
        )
    })
}

/// Records read from one partition, owned: [`Fetched::records`] decodes them.
#[derive(Debug)]
pub struct Fetched {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The first offset to use (the first batch may begin before it).
    pub from: u64,
    /// Whole batches, as read.
    pub bytes: Vec<u8>,
}

impl Fetched {
    /// Its records, from [`Fetched::from`] on.
    pub fn records(&self) -> Result<Vec<Record<'_>>, Invalid> {
        crate::records_from(&self.bytes, self.from)
    }
}

struct Assigned {
    topic: String,
    partition: u32,
    reader: PartitionReader,
}

/// Reads partitions of a log's topics.
pub struct Consumer {
    assigned: Vec<Assigned>,
    group: Option<Arc<Mutex<Group>>>,
    /// The partition polled next, round robin.
    next: usize,
}

impl Consumer {
    /// A consumer of every partition of `topics`.
    pub fn subscribe(log: &Log, topics: &[&str], config: &ConsumerConfig) -> io::Result<Consumer> {
        let mut partitions = Vec::new();
        for topic in topics {
            let count = log.describe(topic)?.partitions;
            partitions.extend((0..count).map(|p| (topic.to_string(), p)));
        }
        Self::assign(log, &partitions, config)
    }

    /// A consumer of the given partitions (topic and number).
    pub fn assign(log: &Log, partitions: &[(String, u32)], config: &ConsumerConfig) -> io::Result<Consumer> {
        let group = config.group.as_deref().map(|name| Group::of(log, name)).transpose()?;
        let mut assigned = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let mut reader = log.reader(topic, *partition, config.isolation)?;
            let committed =
                group.as_ref().and_then(|g| lock(g).offsets.get(topic).and_then(|o| o.get(partition)).copied());
            match (committed, config.reset) {
                (Some(offset), _) => reader.seek(offset)?,
                (None, OffsetReset::Earliest) => {}
                (None, OffsetReset::Latest) => {
                    let end = reader.end_offset()?;
                    reader.seek(end)?;
                }
                (None, OffsetReset::Fail) => {
                    let name = config.group.as_deref().unwrap_or("(none)");
                    let message = format!(
                        "consumer group {name} has no offset for {topic}/{partition}, and the reset policy is to fail"
                    );
                    return Err(io::Error::new(io::ErrorKind::NotFound, message));
                }
            }
            assigned.push(Assigned { topic: topic.clone(), partition: *partition, reader });
        }
        Ok(Consumer { assigned, group, next: 0 })
    }

    fn find(&mut self, topic: &str, partition: u32) -> io::Result<&mut PartitionReader> {
        self.assigned
            .iter_mut()
            .find(|a| a.topic == topic && a.partition == partition)
            .map(|a| &mut a.reader)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{topic}/{partition} is not assigned")))
    }

    /// The next records of one partition (round robin), about `max_bytes`; `None` when
    /// every partition has been read to its end.
    pub fn poll(&mut self, max_bytes: usize) -> io::Result<Option<Fetched>> {
        for _ in 0..self.assigned.len() {
            let i = self.next % self.assigned.len();
            self.next = i + 1;
            let assigned = &mut self.assigned[i];
            let (from, bytes) = assigned.reader.poll(max_bytes)?;
            if !bytes.is_empty() {
                return Ok(Some(Fetched { topic: assigned.topic.clone(), partition: assigned.partition, from, bytes }));
            }
        }
        Ok(None)
    }

    /// Moves a partition's position to `offset`.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: u64) -> io::Result<()> {
        self.find(topic, partition)?.seek(offset)
    }

    /// Moves every partition to its first record at or after event time `timestamp`
    /// (see [`PartitionReader::seek_to_time`]).
    pub fn seek_to_time(&mut self, timestamp: i64) -> io::Result<()> {
        self.assigned.iter_mut().try_for_each(|a| a.reader.seek_to_time(timestamp))
    }

    /// Moves every partition to its end.
    pub fn seek_to_end(&mut self) -> io::Result<()> {
        for assigned in &mut self.assigned {
            let end = assigned.reader.end_offset()?;
            assigned.reader.seek(end)?;
        }
        Ok(())
    }

    /// The next offset of each partition: topic, partition, offset.
    pub fn positions(&self) -> Vec<(String, u32, u64)> {
        self.assigned.iter().map(|a| (a.topic.clone(), a.partition, a.reader.next_offset())).collect()
    }

    /// How many records each partition has after its position (markers and aborted
    /// records counted): topic, partition, lag.
    pub fn lag(&mut self) -> io::Result<Vec<(String, u32, u64)>> {
        let mut lags = Vec::with_capacity(self.assigned.len());
        for assigned in &mut self.assigned {
            let end = assigned.reader.end_offset()?;
            lags.push((assigned.topic.clone(), assigned.partition, end.saturating_sub(assigned.reader.next_offset())));
        }
        Ok(lags)
    }

    /// Commits the positions of every partition to the group, durably.
    pub fn commit(&mut self) -> io::Result<()> {
        let Some(group) = &self.group else {
            let message = "the consumer has no group to commit its offsets to";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        };
        let positions = self.positions();
        lock(group).commit(positions)
    }
}
