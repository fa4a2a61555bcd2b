//! One partition of a topic: a directory of segments, the newest of which is appended to.

use crate::batch::{Batch, BatchBuilder, ProducerInfo};
use crate::producers::{self, Check, ProducerStates};
use crate::segment::{self, Segment, Tail};
use sluice_fs::{FileSystem, WritableFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// When appended batches are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Each append is synced before it returns: nothing acknowledged is ever lost.
    EveryAppend,
    /// Appends return at once; [`Partition::sync`] makes them durable (a caller syncs
    /// on an interval). A power cut loses what was appended since the last sync.
    OnSync,
}

/// How a partition is kept.
#[derive(Clone, Copy, Debug)]
pub struct PartitionConfig {
    /// A new segment starts once the newest holds this many bytes.
    pub segment_bytes: u64,
    /// When appends are durable.
    pub durability: Durability,
    /// Sealed segments whose newest event time is older than this many milliseconds
    /// are deleted.
    pub retention_ms: Option<u64>,
    /// The oldest sealed segments are deleted while the rest still hold this many bytes.
    pub retention_bytes: Option<u64>,
    /// Sealed segments are compacted (only the newest value of each key stays) at
    /// each roll: a changelog.
    pub compact: bool,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            segment_bytes: 128 << 20,
            durability: Durability::EveryAppend,
            retention_ms: None,
            retention_bytes: None,
            compact: false,
        }
    }
}

/// A partition open for reading and appending.
pub struct Partition {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    config: PartitionConfig,
    /// Oldest first; the last is appended to.
    segments: Vec<Segment>,
    /// The newest segment's file, open to append.
    file: Box<dyn WritableFile>,
    /// How many batches were written, and how many of them are durable.
    written: u64,
    synced: u64,
    /// Held while the partition is open: one writer at a time, in any process.
    _lock: sluice_fs::FileLock,
    /// Set by a failed write or sync: the file may end inside a batch, so nothing more
    /// is appended until the partition is opened again (which cuts the tail off).
    failed: bool,
    /// The idempotent and transactional producers that have written here.
    producers: ProducerStates,
}

/// The file a partition's writer locks.
const LOCK: &str = ".lock";

/// The wall clock, in milliseconds since the epoch.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn invalid(dir: &Path, message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {message}", dir.display()))
}

impl Partition {
    /// Opens the partition in `dir`, creating it if missing. Its newest segment is
    /// checked batch by batch and a torn tail cut off; older segments are only read.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path, config: PartitionConfig) -> io::Result<Partition> {
        sluice_fs::create_dir_all_durably(fs.as_ref(), dir)?;
        let Some(lock) = fs.try_lock(&dir.join(LOCK))? else {
            let message = "another writer (in this or another process) has it open; readers use a PartitionReader";
            return Err(io::Error::new(io::ErrorKind::WouldBlock, format!("{}: {message}", dir.display())));
        };
        let mut bases: Vec<u64> =
            fs.list(dir)?.iter().filter_map(|entry| segment::parse_file_name(&entry.name)).collect();
        bases.sort_unstable();
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let newest = bases.last().copied();
        // The producers as the newest segment began, then its batches on top.
        let snapshot = newest.map(|base| dir.join(producers::snapshot_name(base)));
        // Without the snapshot (a log written before there were any) every segment is
        // scanned to rebuild them.
        let (mut states, rebuild_all) = match snapshot.filter(|path| fs.exists(path)) {
            Some(path) => (
                ProducerStates::decode(&fs.read(&path)?)
                    .map_err(|why| invalid(dir, format!("{}: {why}", path.display())))?,
                false,
            ),
            None => (ProducerStates::default(), newest.is_some_and(|base| base > 0)),
        };
        for base in &bases {
            let path = dir.join(segment::file_name(*base));
            let is_newest = Some(*base) == newest;
            let sealed = match is_newest || rebuild_all {
                true => None,
                false => Segment::load_sealed(fs.as_ref(), &path)?,
            };
            let (segment, tail) = match sealed {
                Some(segment) => (segment, Tail::Clean),
                None => {
                    let mut record = |batch: &Batch<'_>| {
                        if is_newest || rebuild_all {
                            states.record(batch);
                        }
                    };
                    Segment::open(fs.as_ref(), &path, &mut record)?
                }
            };
            if let Some(previous) = segments.last() {
                if previous.next_offset() != segment.base_offset() {
                    let message = format!(
                        "segment {} starts at offset {} but the one before ends at {}",
                        segment::file_name(*base),
                        segment.base_offset(),
                        previous.next_offset()
                    );
                    return Err(invalid(dir, message));
                }
            }
            if let (Tail::Truncated { why, .. }, false) = (&tail, is_newest) {
                let message = format!("segment {} is damaged before the newest one ({why})", segment::file_name(*base));
                return Err(invalid(dir, message));
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            segments.push(Segment::create(fs.as_ref(), dir, 0)?);
        }
        let file = fs.append(segments.last().expect("invariant: one at least").path())?;
        let mut partition = Partition {
            fs,
            dir: dir.to_path_buf(),
            config,
            segments,
            file,
            written: 0,
            synced: 0,
            _lock: lock,
            failed: false,
            producers: states,
        };
        partition.enforce_retention(now_millis())?;
        Ok(partition)
    }

    /// Compacts the sealed segments wholly before the last stable offset: of each key,
    /// only its newest visible record stays (see `compaction.rs`); returns how many
    /// segments were rewritten. Offsets do not change.
    pub fn compact(&mut self, now: i64) -> io::Result<usize> {
        let plan = crate::compaction::plan(self.fs.as_ref(), &self.segments)?;
        let mut rewritten = 0;
        for i in 0..self.segments.len().saturating_sub(1) {
            if self.segments[i].next_offset() > plan.stable {
                break;
            }
            let path = self.segments[i].path().to_path_buf();
            let bytes = self.fs.read(&path)?;
            let Some(compacted) = crate::compaction::rewrite(&bytes, &plan, now)? else { continue };
            // The new file replaces the old one at once (renamed over it, durably).
            sluice_fs::write_durably(self.fs.as_ref(), &path, &compacted)?;
            let (segment, _) = Segment::open(self.fs.as_ref(), &path, &mut |_| {})?;
            segment.write_index(self.fs.as_ref())?;
            self.segments[i] = segment;
            rewritten += 1;
        }
        Ok(rewritten)
    }

    /// Deletes the oldest sealed segments that retention no longer keeps (the newest
    /// segment always stays); returns how many. Readers in a deleted segment go on
    /// at the oldest one left.
    pub fn enforce_retention(&mut self, now: i64) -> io::Result<usize> {
        let mut deleted = 0;
        let mut total: u64 = self.segments.iter().map(Segment::size).sum();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let expired = self.config.retention_ms.is_some_and(|ms| {
                oldest.max_timestamp() != i64::MIN && oldest.max_timestamp() < now.saturating_sub(ms as i64)
            });
            let beyond_size = self.config.retention_bytes.is_some_and(|bytes| total - oldest.size() >= bytes);
            if !expired && !beyond_size {
                break;
            }
            let base = oldest.base_offset();
            total -= oldest.size();
            // The segment first: without it, its index and snapshot are never read.
            self.fs.remove_file(oldest.path())?;
            for name in [segment::index_file_name(base), producers::snapshot_name(base)] {
                match self.fs.remove_file(&self.dir.join(name)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            tracing::debug!("{}: retention deleted segment {}", self.dir.display(), segment::file_name(base));
            self.segments.remove(0);
            deleted += 1;
        }
        if deleted > 0 {
            self.fs.sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }

    fn newest(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("invariant: a partition has a segment")
    }

    /// The offset the next record gets.
    pub fn next_offset(&self) -> u64 {
        self.segments.last().map_or(0, Segment::next_offset)
    }

    /// The offset of the oldest record kept.
    pub fn start_offset(&self) -> u64 {
        self.segments.first().map_or(0, Segment::base_offset)
    }

    /// Appends the records of `batch` as one batch (emptying it); returns the offset of
    /// its first record. Durable on return under [`Durability::EveryAppend`].
    ///
    /// With a producer id, a batch with the sequence numbers of one of its latest
    /// batches was stored already: it is not appended again, and the offset it got
    /// then is returned. A sequence gap, or a producer fenced by a newer epoch of it,
    /// is an error. A transaction marker for a transaction with nothing open here is
    /// not written.
    pub fn append(&mut self, batch: &mut BatchBuilder, attributes: u16, producer: ProducerInfo) -> io::Result<u64> {
        let (offset, ticket) = self.write(batch, attributes, producer)?;
        if self.config.durability == Durability::EveryAppend {
            self.sync_through(ticket)?;
        }
        batch.clear();
        Ok(offset)
    }

    /// [`Self::append`] without syncing, whatever the durability, and keeping the
    /// records in `batch` (to append again if the write or a later sync fails: a
    /// producer id makes it stored once): returns the offset and a ticket for
    /// [`Self::sync_through`]. Writers sharing the partition (behind a lock) sync
    /// through their tickets after releasing it in between, so that one sync makes
    /// every batch written meanwhile durable (group commit).
    pub fn write(
        &mut self,
        batch: &mut BatchBuilder,
        attributes: u16,
        producer: ProducerInfo,
    ) -> io::Result<(u64, u64)> {
        if self.failed {
            let message = format!("{}: an earlier write failed; open the partition again", self.dir.display());
            return Err(io::Error::other(message));
        }
        let appended = self.append_batch(batch, attributes, producer);
        self.failed = appended.is_err();
        Ok((appended?, self.written))
    }

    /// Makes the batch of `ticket`, and every one before, durable, if not yet.
    pub fn sync_through(&mut self, ticket: u64) -> io::Result<()> {
        match self.synced >= ticket {
            true => Ok(()),
            false => self.sync(),
        }
    }

    /// A handle that syncs the newest segment without the partition (behind its lock)
    /// held, and the ticket it makes durable: [`Self::synced`] it once it returns.
    /// Older segments were synced when the next one started.
    pub fn syncer(&self) -> io::Result<(Box<dyn sluice_fs::FileSyncer>, u64)> {
        Ok((self.file.syncer()?, self.written))
    }

    /// The batches through `ticket` are durable (a [`Self::syncer`]'s sync returned);
    /// `Err` if it failed: nothing more is appended until the partition is opened again.
    pub fn synced(&mut self, ticket: u64, result: io::Result<()>) -> io::Result<()> {
        match result {
            Ok(()) => {
                self.synced = self.synced.max(ticket);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// How many batches were written (the latest ticket).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether the batch of `ticket` is durable.
    pub fn is_durable(&self, ticket: u64) -> bool {
        self.synced >= ticket
    }

    /// Whether the durability is [`Durability::EveryAppend`].
    pub fn syncs_every_append(&self) -> bool {
        self.config.durability == Durability::EveryAppend
    }

    fn append_batch(&mut self, batch: &mut BatchBuilder, attributes: u16, producer: ProducerInfo) -> io::Result<u64> {
        if batch.is_empty() {
            return Ok(self.next_offset());
        }
        if self.newest().size() > 0 && self.newest().size() + batch.size() as u64 > self.config.segment_bytes {
            self.roll()?;
        }
        match self.producers.check(producer, attributes, batch.len() as u32)? {
            Check::Append => {}
            Check::Duplicate(offset) => return Ok(offset),
            Check::Unneeded => return Ok(self.next_offset()),
        }
        let base = self.next_offset();
        let bytes = batch.finish(base, attributes, producer);
        let segment = self.segments.last_mut().expect("invariant: a partition has a segment");
        let producers = &mut self.producers;
        let written = segment.append(&mut self.file, &bytes, &mut |batch| producers.record(batch));
        batch.restore(bytes);
        written?;
        self.written += 1;
        Ok(base)
    }

    /// Makes every append so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.synced < self.written {
            let synced = self.file.flush().and_then(|()| self.file.sync());
            self.failed |= synced.is_err();
            synced?;
            self.synced = self.written;
        }
        Ok(())
    }

    /// Starts a new segment after syncing the newest and writing its index, and the
    /// producers' states as the new one begins.
    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        self.segments.last().expect("invariant: a partition has a segment").write_index(self.fs.as_ref())?;
        let snapshot = self.dir.join(producers::snapshot_name(self.next_offset()));
        sluice_fs::write_durably(self.fs.as_ref(), &snapshot, &self.producers.encode())?;
        let segment = Segment::create(self.fs.as_ref(), &self.dir, self.next_offset())?;
        self.file = self.fs.append(segment.path())?;
        self.segments.push(segment);
        self.enforce_retention(now_millis())?;
        if self.config.compact {
            self.compact(now_millis())?;
        }
        Ok(())
    }

    /// Up to about `max_bytes` of whole batches from the one holding `offset` (at least
    /// one batch when there is one at or after `offset`), possibly beyond what is durable.
    pub fn read(&self, offset: u64, max_bytes: usize) -> io::Result<Vec<u8>> {
        let i = self.segments.partition_point(|segment| segment.base_offset() <= offset).saturating_sub(1);
        for segment in &self.segments[i..] {
            let bytes = segment.read(self.fs.as_ref(), offset.max(segment.base_offset()), max_bytes)?;
            if !bytes.is_empty() {
                return Ok(bytes);
            }
        }
        Ok(Vec::new())
    }

    /// The first offset whose record may be at or after `timestamp`: readers from it
    /// skip the records before `timestamp`. The next offset if none is.
    pub fn offset_for_time(&self, timestamp: i64) -> u64 {
        self.segments
            .iter()
            .filter(|segment| segment.max_timestamp() >= timestamp)
            .find_map(|segment| segment.offset_for_time(timestamp))
            .unwrap_or_else(|| self.next_offset())
    }

    /// The transactions with data here and no marker yet: producer id and epoch.
    pub fn open_transactions(&self) -> Vec<(i64, i16)> {
        self.producers.open_transactions().collect()
    }

    /// How many segments it has.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}
