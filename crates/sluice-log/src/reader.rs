//! Reading a partition that a writer, in this process or another, may be appending to.
//!
//! A reader never changes the files. It reads whole batches up to the current end of
//! the segment it is in; a batch still being written (the data ends inside it) is
//! read on a later poll, once it is whole. When it has caught up with a segment and a
//! newer one exists, the writer has rolled: it reads what the old one got last, then
//! moves on.
//!
//! Compaction may replace a sealed segment's file while a reader is in it: the batch
//! at the reader's position no longer starts at the offset it expects, and the reader
//! finds its place again by offset, from the segment's start.
//!
//! A read-committed reader hands out no transaction's records before the transaction's
//! marker: at the first batch of a transaction still undecided (Kafka's last stable
//! offset) it looks ahead, without handing anything out, for that transaction's
//! marker. It keeps only the markers it saw ahead, so its memory does not grow with
//! the size of open transactions. Markers and aborted batches are skipped.

use crate::batch::{Batch, Invalid};
use crate::segment::{self, Segment};
use sluice_fs::FileSystem;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which records a reader sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Only records outside transactions and of committed ones, once committed.
    #[default]
    ReadCommitted,
    /// Every record, as soon as it is written, aborted ones included.
    ReadUncommitted,
}

/// A place in a partition's files: a segment, by its first offset, and a byte in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Cursor {
    segment: u64,
    position: u64,
    /// The offset after the last batch passed: the batch at `position` must start
    /// there. If it does not, compaction replaced the segment's file, and the place is
    /// found again by offset.
    passed: u64,
}

/// A reader of one partition, with its position.
pub struct PartitionReader {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    isolation: Isolation,
    /// The first offsets of the segments seen so far, oldest first.
    segments: Vec<u64>,
    /// Where the next batch to hand out starts.
    cursor: Cursor,
    /// The next offset to hand out.
    next_offset: u64,
    /// How far a read-committed reader has looked ahead for markers.
    ahead: Cursor,
    /// The markers seen ahead of `cursor`: producer id and epoch, and whether it commits.
    decided: HashMap<(i64, i16), bool>,
    /// How far [`Self::end_offset`] has scanned the newest segment: segment, byte, and
    /// the offset after the last whole batch there.
    end: (u64, u64, u64),
}

fn corrupt(path: &Path, position: u64, why: &Invalid) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{} at byte {position}: {why}", path.display()))
}

impl PartitionReader {
    /// A read-committed reader of the partition in `dir`, at its oldest record.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> io::Result<PartitionReader> {
        Self::with_isolation(fs, dir, Isolation::ReadCommitted)
    }

    /// A reader of the partition in `dir` that sees what `isolation` lets it, at its
    /// oldest record.
    pub fn with_isolation(fs: Arc<dyn FileSystem>, dir: &Path, isolation: Isolation) -> io::Result<PartitionReader> {
        let mut reader = PartitionReader {
            fs,
            dir: dir.to_path_buf(),
            isolation,
            segments: Vec::new(),
            cursor: Cursor::default(),
            next_offset: 0,
            ahead: Cursor::default(),
            decided: HashMap::new(),
            end: (0, 0, 0),
        };
        reader.refresh()?;
        reader.seek(0)?;
        Ok(reader)
    }

    /// Lists the segments again.
    fn refresh(&mut self) -> io::Result<()> {
        let mut bases: Vec<u64> = match self.fs.list(&self.dir) {
            Ok(entries) => entries.iter().filter_map(|entry| segment::parse_file_name(&entry.name)).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        bases.sort_unstable();
        self.segments = bases;
        Ok(())
    }

    fn path(&self, segment: u64) -> PathBuf {
        self.dir.join(segment::file_name(segment))
    }

    /// The offset of the next record a poll returns.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The offset of the oldest record kept.
    pub fn start_offset(&mut self) -> io::Result<u64> {
        self.refresh()?;
        Ok(self.segments.first().copied().unwrap_or(0))
    }

    /// Moves to `offset`: the next poll starts at the batch that holds it (or the first
    /// batch after it), or at the oldest record kept if `offset` is older.
    pub fn seek(&mut self, offset: u64) -> io::Result<()> {
        self.refresh()?;
        let i = self.segments.partition_point(|&base| base <= offset).saturating_sub(1);
        let base = self.segments.get(i).copied().unwrap_or(0);
        self.cursor = Cursor { segment: base, position: 0, passed: base };
        self.ahead = self.cursor;
        self.decided.clear();
        self.next_offset = offset.max(base);
        Ok(())
    }

    /// Moves to the first record (in offset order) whose event time is at or after
    /// `timestamp`, as Kafka's `offsetsForTimes` finds it (later records may be older:
    /// they are read too), or to the end if there is none.
    pub fn seek_to_time(&mut self, timestamp: i64) -> io::Result<()> {
        self.refresh()?;
        let segments = self.segments.clone();
        for (i, base) in segments.iter().enumerate() {
            let path = self.path(*base);
            // A sealed segment's index says where to start looking, or to skip it.
            let mut start = 0;
            if i + 1 < segments.len() {
                if let Some(segment) = Segment::load_sealed(self.fs.as_ref(), &path)? {
                    match segment.position_for_time(timestamp) {
                        Some(position) => start = position,
                        None => continue,
                    }
                }
            }
            let size = match self.fs.size(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => other?,
            };
            let mut found = None;
            segment::scan_batches(self.fs.as_ref(), &path, start, size, 1 << 20, |batch| {
                if batch.max_timestamp() >= timestamp {
                    found = batch.records().ok().and_then(|records| {
                        records.iter().find(|record| record.timestamp >= timestamp).map(|record| record.offset)
                    });
                }
                found.is_none()
            })?;
            if let Some(offset) = found {
                return self.seek(offset);
            }
        }
        let end = self.end_offset()?;
        self.seek(end)
    }

    /// The offset after the last whole batch written so far, whatever its isolation.
    /// It scans the newest segment from where the last call stopped.
    pub fn end_offset(&mut self) -> io::Result<u64> {
        self.refresh()?;
        let Some(&base) = self.segments.last() else { return Ok(0) };
        let path = self.path(base);
        let size = self.fs.size(&path)?;
        let (segment, position, offset) = self.end;
        let (mut position, mut end) = match segment == base && position <= size {
            true => (position, offset),
            false => (0, base),
        };
        let scan = segment::scan_batches(self.fs.as_ref(), &path, position, size, 1 << 20, |batch| {
            end = batch.next_offset();
            true
        })?;
        position = scan.position;
        self.end = (base, position, end);
        Ok(end)
    }

    /// Calls `visit` with each whole batch from `cursor` on, across segments, until it
    /// returns false (true then) or the data written so far ends (false).
    fn scan(
        &mut self,
        cursor: &mut Cursor,
        max_bytes: usize,
        mut visit: impl FnMut(&Batch<'_>) -> bool,
    ) -> io::Result<bool> {
        // Where a segment followed by a newer one was found to end inside a batch.
        let mut rechecked_at = None;
        loop {
            let path = self.path(cursor.segment);
            let size = match self.fs.size(&path) {
                Ok(size) => size,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Not created yet, or deleted by retention: go on at the next one.
                    self.refresh()?;
                    match self.segments.iter().find(|&&base| base > cursor.segment) {
                        Some(&next) => {
                            *cursor = Cursor { segment: next, position: 0, passed: cursor.passed.max(next) };
                            continue;
                        }
                        None => return Ok(false),
                    }
                }
                Err(e) => return Err(e),
            };
            if size < cursor.position {
                // Compacted: shorter now. Find the place again by offset.
                cursor.position = 0;
                continue;
            }
            let (mut replaced, mut passed) = (false, cursor.passed);
            let check_first = cursor.position > 0;
            let scanned = segment::scan_batches(self.fs.as_ref(), &path, cursor.position, size, max_bytes, |batch| {
                if check_first && passed == cursor.passed && batch.base_offset() != passed {
                    replaced = true;
                    return false;
                }
                // Batches passed already (looked for again from the segment's start).
                if batch.next_offset() <= passed {
                    return true;
                }
                let go_on = visit(batch);
                if go_on {
                    passed = batch.next_offset();
                }
                go_on
            });
            let scan = match scanned {
                // A position inside a batch of a file compacted since.
                Err(e) if e.kind() == io::ErrorKind::InvalidData && cursor.position > 0 => {
                    cursor.position = 0;
                    continue;
                }
                other => other?,
            };
            if replaced {
                cursor.position = 0;
                continue;
            }
            cursor.position = scan.position;
            cursor.passed = passed;
            if scan.stopped {
                return Ok(true);
            }
            // Caught up with this segment: has the writer moved to a newer one?
            self.refresh()?;
            let Some(&next) = self.segments.iter().find(|&&base| base > cursor.segment) else {
                return Ok(false);
            };
            // It wrote the last of this segment before creating the next one.
            if cursor.position < self.fs.size(&path)? {
                if rechecked_at == Some(cursor.position) {
                    // Read again whole, it still ends inside a batch: a crashed writer's
                    // torn tail, in a segment no writer will cut back.
                    return Err(corrupt(&path, cursor.position, &Invalid::Torn));
                }
                rechecked_at = Some(cursor.position);
                continue;
            }
            *cursor = Cursor { segment: next, position: 0, passed: cursor.passed.max(next) };
        }
    }

    /// Whole batches from the next offset, about `max_bytes` of them (at least one when
    /// one is there), and the offset the first record to use has: the first batch may
    /// begin before it. Empty when the reader has caught up with the writer (with the
    /// last stable offset, reading committed).
    pub fn poll(&mut self, max_bytes: usize) -> io::Result<(u64, Vec<u8>)> {
        let from = self.next_offset;
        let committed = self.isolation == Isolation::ReadCommitted;
        let mut out = Vec::new();
        loop {
            let mut cursor = self.cursor;
            let (mut next, mut blocked) = (self.next_offset, false);
            let mut decided = std::mem::take(&mut self.decided);
            let mut deliver = |batch: &Batch<'_>| {
                if batch.last_offset() < from {
                    return true;
                }
                let producer = batch.producer();
                let transaction = (producer.id, producer.epoch);
                // Markers are for readers, not records to hand out.
                if batch.is_control() {
                    decided.remove(&transaction);
                    next = batch.next_offset();
                    return true;
                }
                if committed && batch.is_transactional_data() {
                    match decided.get(&transaction) {
                        None => {
                            blocked = true;
                            return false;
                        }
                        Some(false) => {
                            next = batch.next_offset();
                            return true;
                        }
                        Some(true) => {}
                    }
                }
                let before = out.len();
                let go_on = segment::take(&mut out, batch, from, max_bytes);
                if out.len() > before {
                    next = batch.next_offset();
                }
                go_on
            };
            let scanned = self.scan(&mut cursor, max_bytes, &mut deliver);
            self.decided = decided;
            scanned?;
            self.cursor = cursor;
            self.next_offset = next;
            if !blocked || !out.is_empty() {
                return Ok((from, out));
            }
            // At an undecided transaction: look ahead for its marker.
            let mut ahead = self.ahead.max(self.cursor);
            let mut markers = Vec::new();
            self.scan(&mut ahead, 1 << 20, |batch| {
                if batch.is_control() {
                    let producer = batch.producer();
                    markers.push(((producer.id, producer.epoch), batch.commits()));
                }
                true
            })?;
            self.ahead = ahead;
            let found = !markers.is_empty();
            self.decided.extend(markers);
            if !found {
                return Ok((from, out));
            }
        }
    }
}
