//! Reading a partition that a writer, in this process or another, may be appending to.
//!
//! A reader never changes the files. It reads whole batches up to the current end of
//! the segment it is in; a batch still being written (the data ends inside it) is
//! read on a later poll, once it is whole. When it has caught up with a segment and a
//! newer one exists, the writer has rolled: it reads what the old one got last, then
//! moves on.

use crate::batch::Invalid;
use crate::segment;
use sluice_fs::FileSystem;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A reader of one partition, with its position.
pub struct PartitionReader {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// The first offsets of the segments seen so far, oldest first.
    segments: Vec<u64>,
    /// The segment being read, as an index in `segments`.
    current: usize,
    /// Where the next batch starts in it.
    position: u64,
    /// The next offset to hand out.
    next_offset: u64,
}

fn corrupt(path: &Path, position: u64, why: &Invalid) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{} at byte {position}: {why}", path.display()))
}

impl PartitionReader {
    /// A reader of the partition in `dir`, at its oldest record.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> io::Result<PartitionReader> {
        let mut reader = PartitionReader {
            fs,
            dir: dir.to_path_buf(),
            segments: Vec::new(),
            current: 0,
            position: 0,
            next_offset: 0,
        };
        reader.refresh()?;
        reader.next_offset = reader.segments.first().copied().unwrap_or(0);
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
        let reading = self.segments.get(self.current).copied();
        self.segments = bases;
        // Retention may have deleted segments before the one being read.
        if let Some(base) = reading {
            self.current = self.segments.partition_point(|&b| b < base);
        }
        Ok(())
    }

    fn path(&self) -> Option<PathBuf> {
        self.segments.get(self.current).map(|base| self.dir.join(segment::file_name(*base)))
    }

    /// The offset of the next record a poll returns.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Moves to `offset`: the next poll starts at the batch that holds it (or the first
    /// batch after it), or at the oldest record kept if `offset` is older.
    pub fn seek(&mut self, offset: u64) -> io::Result<()> {
        self.refresh()?;
        self.current = self.segments.partition_point(|&base| base <= offset).saturating_sub(1);
        self.position = 0;
        self.next_offset = offset.max(self.segments.get(self.current).copied().unwrap_or(0));
        Ok(())
    }

    /// Whole batches from the next offset, about `max_bytes` of them (at least one when
    /// one is there), and the offset the first record to use has: the first batch may
    /// begin before it. Empty when the reader has caught up with the writer.
    pub fn poll(&mut self, max_bytes: usize) -> io::Result<(u64, Vec<u8>)> {
        let from = self.next_offset;
        // Where a segment followed by a newer one was found to end inside a batch.
        let mut rechecked_at = None;
        loop {
            let Some(path) = self.path() else {
                self.refresh()?;
                if self.segments.is_empty() {
                    return Ok((from, Vec::new()));
                }
                continue;
            };
            let size = self.fs.size(&path)?;
            let (mut out, mut next) = (Vec::new(), None);
            // A batch the data ends inside may still be being written: read it later.
            let scan = segment::scan_batches(self.fs.as_ref(), &path, self.position, size, max_bytes, |batch| {
                let before = out.len();
                let go_on = segment::take(&mut out, batch, from, max_bytes);
                if out.len() > before {
                    next = Some(batch.next_offset());
                }
                go_on
            })?;
            self.position = scan.position;
            if let Some(next) = next {
                self.next_offset = next;
                return Ok((from, out));
            }
            // Caught up with this segment: has the writer moved to a newer one?
            self.refresh()?;
            if self.current + 1 >= self.segments.len() {
                return Ok((from, Vec::new()));
            }
            // It wrote the last of this segment before creating the next one.
            if self.position < self.fs.size(&path)? {
                if rechecked_at == Some(self.position) {
                    // Read again whole, it still ends inside a batch: a crashed writer's
                    // torn tail, in a segment no writer will cut back.
                    return Err(corrupt(&path, self.position, &Invalid::Torn));
                }
                rechecked_at = Some(self.position);
                continue;
            }
            self.current += 1;
            self.position = 0;
        }
    }
}
