//! One partition of a topic: a directory of segments, the newest of which is appended to.

use crate::batch::{BatchBuilder, Producer};
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
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig { segment_bytes: 128 << 20, durability: Durability::EveryAppend }
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
    unsynced: bool,
    /// Held while the partition is open: one writer at a time, in any process.
    _lock: sluice_fs::FileLock,
    /// Set by a failed write or sync: the file may end inside a batch, so nothing more
    /// is appended until the partition is opened again (which cuts the tail off).
    failed: bool,
}

/// The file a partition's writer locks.
const LOCK: &str = ".lock";

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
        for (i, base) in bases.iter().enumerate() {
            let (segment, tail) = Segment::open(fs.as_ref(), &dir.join(segment::file_name(*base)))?;
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
            if let (Tail::Truncated { why, .. }, false) = (&tail, i + 1 == bases.len()) {
                let message = format!("segment {} is damaged before the newest one ({why})", segment::file_name(*base));
                return Err(invalid(dir, message));
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            segments.push(Segment::create(fs.as_ref(), dir, 0)?);
        }
        let file = fs.append(segments.last().expect("invariant: one at least").path())?;
        Ok(Partition {
            fs,
            dir: dir.to_path_buf(),
            config,
            segments,
            file,
            unsynced: false,
            _lock: lock,
            failed: false,
        })
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
    pub fn append(&mut self, batch: &mut BatchBuilder, attributes: u16, producer: Producer) -> io::Result<u64> {
        if self.failed {
            let message = format!("{}: an earlier write failed; open the partition again", self.dir.display());
            return Err(io::Error::other(message));
        }
        let appended = self.append_batch(batch, attributes, producer);
        self.failed = appended.is_err();
        appended
    }

    fn append_batch(&mut self, batch: &mut BatchBuilder, attributes: u16, producer: Producer) -> io::Result<u64> {
        if batch.is_empty() {
            return Ok(self.next_offset());
        }
        if self.newest().size() > 0 && self.newest().size() + batch.size() as u64 > self.config.segment_bytes {
            self.roll()?;
        }
        let base = self.next_offset();
        let bytes = batch.finish(base, attributes, producer);
        let segment = self.segments.last_mut().expect("invariant: a partition has a segment");
        segment.append(&mut self.file, &bytes)?;
        self.unsynced = true;
        if self.config.durability == Durability::EveryAppend {
            self.sync()?;
        }
        Ok(base)
    }

    /// Makes every append so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            let synced = self.file.flush().and_then(|()| self.file.sync());
            self.failed |= synced.is_err();
            synced?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Starts a new segment after syncing the newest.
    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let segment = Segment::create(self.fs.as_ref(), &self.dir, self.next_offset())?;
        self.file = self.fs.append(segment.path())?;
        self.segments.push(segment);
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

    /// How many segments it has.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}
