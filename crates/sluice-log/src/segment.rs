//! One segment of a partition: a file of batches whose first offset names it
//! (`00000000000000001234.log`), with a sparse index of offsets to file positions.
//!
//! Only the newest segment of a partition is written. Opening it scans it batch by
//! batch: the first batch that is torn (a write cut short) or fails its checksum ends
//! the log, and the file is cut back to the end of the batch before it, with a warning.
//! Everything before was acknowledged only once synced, so nothing acknowledged is lost.
//!
//! When a segment is sealed (a newer one starts), its index is written beside it
//! (`00000000000000001234.index`), so that opening the partition later reads the
//! index instead of scanning the sealed segment. An index whose checksum fails or
//! whose size does not match its segment's is ignored and the segment scanned.

use crate::batch::{Batch, Invalid};
use serde::{Deserialize, Serialize};
use sluice_fs::FileSystem;
use std::io;
use std::path::{Path, PathBuf};

/// An index entry every this many bytes of batches.
const INDEX_INTERVAL: u64 = 4096;
/// How much of a segment a scan reads at once.
const SCAN_CHUNK: usize = 1 << 20;
/// Bytes a read takes at least, when there are.
const READ_AHEAD: usize = 64 << 10;

/// Adds `batch` to `out` if it holds records from `offset` on; false, leaving it, if
/// `out` has no room for it (the first batch always fits).
pub(crate) fn take(out: &mut Vec<u8>, batch: &Batch<'_>, offset: u64, max_bytes: usize) -> bool {
    if batch.last_offset() < offset {
        return true;
    }
    if !out.is_empty() && out.len() + batch.bytes().len() > max_bytes {
        return false;
    }
    out.extend_from_slice(batch.bytes());
    true
}

/// Where [`scan_batches`] stopped.
pub(crate) struct Scan {
    /// After the last batch visited (the one `visit` stopped at is not counted).
    pub position: u64,
    /// Whether the data ends inside a batch at `position`.
    pub torn: bool,
    /// Whether `visit` stopped the scan (at `position`).
    pub stopped: bool,
}

/// Calls `visit` with each whole batch of the file `path` from `position` to `end`,
/// in order, until it returns false (the batch it returned false for is left for a
/// later scan), reading about `max_bytes` at a time (more for a
/// larger batch). A damaged batch is an error.
pub(crate) fn scan_batches(
    fs: &dyn FileSystem,
    path: &Path,
    mut position: u64,
    end: u64,
    max_bytes: usize,
    mut visit: impl FnMut(&Batch<'_>) -> bool,
) -> io::Result<Scan> {
    let mut want = max_bytes.max(READ_AHEAD);
    while position < end {
        let chunk = fs.read_range(path, position, want.min((end - position) as usize))?;
        let mut rest: &[u8] = &chunk;
        loop {
            match Batch::parse(rest) {
                Ok((batch, after)) => {
                    if !visit(&batch) {
                        return Ok(Scan { position, torn: false, stopped: true });
                    }
                    position += batch.bytes().len() as u64;
                    rest = after;
                }
                // Read on from the first batch not whole in this chunk.
                Err(Invalid::Torn) if rest.len() < chunk.len() => break,
                Err(Invalid::Torn) if rest.len() >= 12 && (rest.len() as u64) < end - position => {
                    // One batch larger than the read: read it whole.
                    want = u32::from_le_bytes(rest[8..12].try_into().expect("four bytes")) as usize + 12;
                    break;
                }
                Err(Invalid::Torn) => return Ok(Scan { position, torn: true, stopped: false }),
                Err(why) => {
                    let message = format!("{} at byte {position}: {why}", path.display());
                    return Err(io::Error::new(io::ErrorKind::InvalidData, message));
                }
            }
        }
    }
    Ok(Scan { position, torn: false, stopped: false })
}

/// The file name of the segment whose first offset is `base_offset`.
pub fn file_name(base_offset: u64) -> String {
    format!("{base_offset:020}.log")
}

/// The first offset of a segment, from its file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_suffix(".log").filter(|digits| digits.len() == 20)?.parse().ok()
}

/// The file name of the index of the sealed segment whose first offset is `base_offset`.
pub fn index_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}.index")
}

/// Where a batch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct IndexEntry {
    offset: u64,
    position: u64,
    max_timestamp: i64,
}

fn base_offset_of(path: &Path) -> io::Result<u64> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parse_file_name(&name)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{name} is not a segment file")))
}

/// What opening a segment found at its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// It ended at a whole batch.
    Clean,
    /// It ended inside a batch, or at a damaged one, and was cut off there.
    Truncated {
        /// How many bytes were cut off.
        dropped: u64,
        /// What was wrong with the first of them.
        why: String,
    },
}

/// A sealed segment's index file: what opening the segment would find by scanning it.
#[derive(Serialize, Deserialize)]
struct IndexFile {
    size: u64,
    next_offset: u64,
    max_timestamp: i64,
    index: Vec<IndexEntry>,
}

/// One segment file and its index.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    base_offset: u64,
    next_offset: u64,
    size: u64,
    max_timestamp: i64,
    /// Sparse: the first batch, then a batch every [`INDEX_INTERVAL`] bytes.
    index: Vec<IndexEntry>,
    last_indexed: u64,
}

impl Segment {
    /// A new, empty segment starting at `base_offset` in `dir`.
    pub fn create(fs: &dyn FileSystem, dir: &Path, base_offset: u64) -> io::Result<Segment> {
        let path = dir.join(file_name(base_offset));
        let mut file = fs.create(&path)?;
        file.sync()?;
        fs.sync_dir(dir)?;
        Ok(Segment::empty(path, base_offset))
    }

    fn empty(path: PathBuf, base_offset: u64) -> Segment {
        Segment {
            path,
            base_offset,
            next_offset: base_offset,
            size: 0,
            max_timestamp: i64::MIN,
            index: Vec::new(),
            last_indexed: 0,
        }
    }

    fn index_path(&self) -> PathBuf {
        self.path.with_file_name(index_file_name(self.base_offset))
    }

    /// Writes the index of this segment, now sealed, durably beside it.
    pub fn write_index(&self, fs: &dyn FileSystem) -> io::Result<()> {
        let file = IndexFile {
            size: self.size,
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp,
            index: self.index.clone(),
        };
        let mut bytes = postcard::to_allocvec(&file).expect("invariant: encoding into a Vec cannot fail");
        bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        sluice_fs::write_durably(fs, &self.index_path(), &bytes)
    }

    /// The sealed segment `path` from its index file, if that is there and matches it.
    pub fn load_sealed(fs: &dyn FileSystem, path: &Path) -> io::Result<Option<Segment>> {
        let base_offset = base_offset_of(path)?;
        let mut segment = Segment::empty(path.to_path_buf(), base_offset);
        let bytes = match fs.read(&segment.index_path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else { return Ok(None) };
        if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
            tracing::warn!("{}: its index fails its checksum; scanning the segment", path.display());
            return Ok(None);
        }
        let Ok(file) = postcard::from_bytes::<IndexFile>(body) else { return Ok(None) };
        if file.size != fs.size(path)? || file.next_offset < base_offset {
            tracing::warn!("{}: its index does not match it; scanning the segment", path.display());
            return Ok(None);
        }
        segment.size = file.size;
        segment.next_offset = file.next_offset;
        segment.max_timestamp = file.max_timestamp;
        segment.last_indexed = file.index.last().map_or(0, |entry| entry.position);
        segment.index = file.index;
        Ok(Some(segment))
    }

    /// Opens the segment file `path`, scanning it to rebuild its index and showing each
    /// whole batch to `visit`; a torn or damaged tail is cut off.
    pub fn open(fs: &dyn FileSystem, path: &Path, visit: &mut dyn FnMut(&Batch<'_>)) -> io::Result<(Segment, Tail)> {
        let base_offset = base_offset_of(path)?;
        let mut segment = Segment::empty(path.to_path_buf(), base_offset);
        let length = fs.size(path)?;
        let mut tail = Tail::Clean;
        let mut pending: Vec<u8> = Vec::new();
        let mut read = 0u64;
        'scan: while read < length || !pending.is_empty() {
            if read < length {
                let chunk = SCAN_CHUNK.min((length - read) as usize);
                pending.extend_from_slice(&fs.read_range(path, read, chunk)?);
                read += chunk as u64;
            }
            let mut rest: &[u8] = &pending;
            loop {
                match Batch::parse(rest) {
                    Ok((batch, after)) => {
                        if batch.base_offset() != segment.next_offset {
                            let why = format!(
                                "a batch at offset {} where {} was expected",
                                batch.base_offset(),
                                segment.next_offset
                            );
                            tail = Tail::Truncated { dropped: length - segment.size, why };
                            break 'scan;
                        }
                        segment.appended(&batch);
                        visit(&batch);
                        rest = after;
                    }
                    Err(Invalid::Torn) if read < length => break,
                    Err(Invalid::Torn) if rest.is_empty() => break 'scan,
                    Err(why) => {
                        tail = Tail::Truncated { dropped: length - segment.size, why: why.to_string() };
                        break 'scan;
                    }
                }
            }
            let consumed = pending.len() - rest.len();
            pending.drain(..consumed);
        }
        if let Tail::Truncated { dropped, why } = &tail {
            tracing::warn!("{}: cutting off its last {dropped} bytes ({why})", path.display());
            fs.truncate(path, segment.size)?;
            let mut file = fs.append(path)?;
            file.sync()?;
        }
        Ok((segment, tail))
    }

    /// Records a batch written at the segment's end.
    fn appended(&mut self, batch: &Batch<'_>) {
        let entry =
            IndexEntry { offset: batch.base_offset(), position: self.size, max_timestamp: batch.max_timestamp() };
        if self.index.is_empty() || self.size - self.last_indexed >= INDEX_INTERVAL {
            self.index.push(entry);
            self.last_indexed = self.size;
        }
        self.max_timestamp = self.max_timestamp.max(batch.max_timestamp());
        if let Some(last) = self.index.last_mut() {
            last.max_timestamp = last.max_timestamp.max(batch.max_timestamp());
        }
        self.size += batch.bytes().len() as u64;
        self.next_offset = batch.next_offset();
    }

    /// Appends `bytes`, whole batches whose first offset is the segment's next, through
    /// `file` (this segment's file, open to append), showing each to `visit` once
    /// written. Durable once `file` is synced.
    pub fn append(
        &mut self,
        file: &mut dyn io::Write,
        bytes: &[u8],
        visit: &mut dyn FnMut(&Batch<'_>),
    ) -> io::Result<()> {
        let mut rest = bytes;
        let mut batches = Vec::new();
        while !rest.is_empty() {
            let (batch, after) =
                Batch::parse(rest).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let expected = batches.last().map_or(self.next_offset, |b: &Batch<'_>| b.next_offset());
            if batch.base_offset() != expected {
                let message = format!("a batch at offset {} appended where {expected} is next", batch.base_offset());
                return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
            }
            batches.push(batch);
            rest = after;
        }
        file.write_all(bytes)?;
        for batch in &batches {
            self.appended(batch);
            visit(batch);
        }
        Ok(())
    }

    /// Up to about `max_bytes` of whole batches from the one holding `offset` (at least
    /// one batch, if any holds it or a later offset).
    pub fn read(&self, fs: &dyn FileSystem, offset: u64, max_bytes: usize) -> io::Result<Vec<u8>> {
        if offset >= self.next_offset {
            return Ok(Vec::new());
        }
        let start = match self.index.partition_point(|entry| entry.offset <= offset) {
            0 => 0,
            i => self.index[i - 1].position,
        };
        let mut out = Vec::new();
        let scan = scan_batches(fs, &self.path, start, self.size, max_bytes, |batch| {
            take(&mut out, batch, offset, max_bytes)
        })?;
        if scan.torn {
            let message = format!("{} at byte {}: {}", self.path.display(), scan.position, Invalid::Torn);
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        Ok(out)
    }

    /// The first offset of the first batch whose records may be at or after
    /// `timestamp` (batches are in offset order, not time order: the earliest batch
    /// whose highest timestamp reaches it).
    pub fn offset_for_time(&self, timestamp: i64) -> Option<u64> {
        self.index.iter().find(|entry| entry.max_timestamp >= timestamp).map(|entry| entry.offset)
    }

    /// Where the first batch whose records may be at or after `timestamp` starts.
    pub fn position_for_time(&self, timestamp: i64) -> Option<u64> {
        self.index.iter().find(|entry| entry.max_timestamp >= timestamp).map(|entry| entry.position)
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The offset of its first record.
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// The offset its next record gets.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The highest event time in it.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
}
