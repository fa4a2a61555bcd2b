//! Reads JSON lines from a file or a directory of files, in parallel.
//!
//! Each file is cut into blocks (1 MiB by default) dealt round robin to the workers,
//! so every worker parses its share, and the readers are held within a round of blocks
//! of each other ([`super::alignment`]), so that all advance through the file, and
//! through event time, together. A block owns the lines that start inside it.
//!
//! The files and blocks are [`LineFiles`]'s business, the lines' format a
//! [`LineDecoder`]'s: [`JsonLinesSource`] decodes each line with serde; the SQL layer
//! decodes JSON and CSV lines into Arrow record batches.

use super::alignment::{Aligner, Alignment};
use crate::{DeadLetter, DeadLetters};
use serde::de::DeserializeOwned;
use sluice_api::Source;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{SourcePoll, SourceReader};
use sluice_types::{Error, Record, Result, MIN_TIMESTAMP};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A source of JSON lines, one record per line, from a file or every file of a
/// directory (in name order). Lines that do not parse as `T` go to the dead letters.
pub struct JsonLinesSource<T> {
    lines: LineInput,
    _type: PhantomData<fn() -> T>,
}

/// Turns lines into batches: one worker's decoder of a line format.
pub trait LineDecoder: Send + 'static {
    /// The batches it builds.
    type Batch: sluice_runtime::Batch;
    /// Adds one line (without its newline) to the batch being built.
    fn decode(&mut self, line: &[u8]);
    /// How many lines the batch being built holds.
    fn pending(&self) -> usize;
    /// The batch of the lines decoded so far, and the lines of it that could not be
    /// decoded: their index among those lines, the reason, and the line.
    fn take(&mut self) -> Result<(Self::Batch, Vec<Rejected>)>;
}

/// A line a [`LineDecoder`] could not decode.
pub struct Rejected {
    /// Its index among the lines of the batch.
    pub index: usize,
    /// Why.
    pub reason: String,
    /// The line.
    pub line: Vec<u8>,
}

/// Decodes each line as JSON into a `T` with serde.
pub struct SerdeJsonDecoder<T> {
    batch: Vec<Record<T>>,
    rejected: Vec<Rejected>,
    lines: usize,
}

impl<T> Default for SerdeJsonDecoder<T> {
    fn default() -> Self {
        SerdeJsonDecoder { batch: Vec::new(), rejected: Vec::new(), lines: 0 }
    }
}

impl<T: DeserializeOwned + Send + 'static> LineDecoder for SerdeJsonDecoder<T> {
    type Batch = Vec<Record<T>>;

    fn decode(&mut self, line: &[u8]) {
        // Checked as UTF-8 once, faster than each string on its own as it is parsed.
        let value = match simdutf8::basic::from_utf8(line) {
            Ok(text) => serde_json::from_str::<T>(text).map_err(|e| e.to_string()),
            Err(_) => Err("the line is not UTF-8".to_string()),
        };
        match value {
            Ok(value) => self.batch.push(Record { timestamp: MIN_TIMESTAMP, value }),
            Err(reason) => self.rejected.push(Rejected { index: self.lines, reason, line: line.to_vec() }),
        }
        self.lines += 1;
    }

    fn pending(&self) -> usize {
        self.lines
    }

    fn take(&mut self) -> Result<(Vec<Record<T>>, Vec<Rejected>)> {
        self.lines = 0;
        Ok((std::mem::take(&mut self.batch), std::mem::take(&mut self.rejected)))
    }
}

/// The files of a line source, cut into blocks dealt to the workers, and where the
/// lines that cannot be decoded go.
pub struct LineInput {
    files: Vec<(PathBuf, u64)>,
    /// Each file's fingerprint when the job started: a restore checks the file is the one
    /// its checkpoint read.
    fingerprints: Vec<Fingerprint>,
    block_size: u64,
    dead_letters: DeadLetters,
    aligner: Aligner,
}

/// The default size of the blocks dealt to workers: small enough that readers one block
/// apart are close in event time, large enough that opening a block costs nothing.
const BLOCK_SIZE: u64 = 1 << 20;

impl<T> JsonLinesSource<T> {
    /// Reads `path`, a file or a directory of files.
    pub fn new(path: impl AsRef<Path>) -> Result<Self> {
        Ok(JsonLinesSource { lines: LineInput::new(path)?, _type: PhantomData })
    }

    /// Sends lines that cannot be read to `dead_letters` (default: standard error).
    pub fn dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.lines = self.lines.dead_letters(dead_letters);
        self
    }

    /// Sets the size of the blocks dealt to workers.
    pub fn block_size(mut self, bytes: u64) -> Self {
        self.lines = self.lines.block_size(bytes);
        self
    }
}

impl LineInput {
    /// Reads `path`, a file or a directory of files (not those whose names start with
    /// a dot).
    pub fn new(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let metadata = std::fs::metadata(path).map_err(|e| Error::io(shown.clone(), e))?;
        let mut files = Vec::new();
        if metadata.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| Error::io(shown.clone(), e))?;
            let mut paths = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(shown.clone(), e))?;
                let metadata = entry.metadata().map_err(|e| Error::io(entry.path().display().to_string(), e))?;
                let name = entry.file_name();
                if metadata.is_file() && !name.to_string_lossy().starts_with('.') {
                    paths.push((entry.path(), metadata.len()));
                }
            }
            paths.sort();
            files = paths;
        } else {
            files.push((path.to_path_buf(), metadata.len()));
        }
        let fingerprints = files.iter().map(|(path, length)| Fingerprint::of(path, *length)).collect::<Result<_>>()?;
        Ok(LineInput {
            files,
            fingerprints,
            block_size: BLOCK_SIZE,
            dead_letters: DeadLetters::default(),
            aligner: Aligner::default(),
        })
    }

    /// Sends lines that cannot be read to `dead_letters` (default: standard error).
    pub fn dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = dead_letters;
        self
    }

    /// Sets the size of the blocks dealt to workers.
    pub fn block_size(mut self, bytes: u64) -> Self {
        self.block_size = bytes.max(1);
        self
    }
}

/// A byte range of one file.
#[derive(Clone, Debug)]
struct Block {
    file: usize,
    start: u64,
    end: u64,
    /// Where to resume: the start of the next line to read, when restored from a
    /// checkpoint taken while the block was being read.
    resume: Option<u64>,
}

/// A block as a checkpoint keeps it: by file path, so that it survives the files being
/// listed again.
#[derive(serde::Serialize, serde::Deserialize)]
struct BlockSplit {
    path: String,
    fingerprint: Fingerprint,
    start: u64,
    end: u64,
    resume: Option<u64>,
}

/// What identifies a file's contents cheaply: its length and checksums of its first and
/// last 64 KiB. A checkpoint resumes a file at a byte offset, which only makes sense in
/// the same file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Fingerprint {
    length: u64,
    head_crc32: u32,
    tail_crc32: u32,
}

impl Fingerprint {
    const SPAN: u64 = 64 << 10;

    fn of(path: &Path, length: u64) -> Result<Self> {
        let shown = || path.display().to_string();
        let mut file = File::open(path).map_err(|e| Error::io(shown(), e))?;
        let mut crc_of = |from: u64| -> Result<u32> {
            use std::io::Read;
            let mut bytes = Vec::with_capacity(Self::SPAN as usize);
            file.seek(SeekFrom::Start(from)).map_err(|e| Error::io(shown(), e))?;
            (&mut file)
                .take(Self::SPAN.min(length - from))
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(shown(), e))?;
            Ok(crc32fast::hash(&bytes))
        };
        let head_crc32 = crc_of(0)?;
        let tail_crc32 = crc_of(length.saturating_sub(Self::SPAN))?;
        Ok(Fingerprint { length, head_crc32, tail_crc32 })
    }
}

impl<T: DeserializeOwned + Clone + Send + 'static> Source for JsonLinesSource<T> {
    type Item = T;
    type Reader = JsonLinesReader<T>;

    fn name(&self) -> String {
        "json-lines-source".to_string()
    }

    fn reader(&self, worker: usize, parallelism: usize) -> Result<JsonLinesReader<T>> {
        self.lines.reader(worker, parallelism, SerdeJsonDecoder::default())
    }

    fn restore_reader(&self, worker: usize, parallelism: usize, state: &StateReader) -> Result<JsonLinesReader<T>> {
        self.lines.restore_reader(worker, parallelism, state, SerdeJsonDecoder::default())
    }
}

impl LineInput {
    /// The reader of `worker` of `parallelism`, decoding with `decoder`.
    pub fn reader<D: LineDecoder>(&self, worker: usize, parallelism: usize, decoder: D) -> Result<LinesReader<D>> {
        self.dead_letters.open_for(false)?;
        let mut blocks = Vec::new();
        let mut index = 0usize;
        for (file, (_, length)) in self.files.iter().enumerate() {
            let mut start = 0;
            while start < *length {
                let end = (start + self.block_size).min(*length);
                if index % parallelism == worker {
                    blocks.push(Block { file, start, end, resume: None });
                }
                index += 1;
                start = end;
            }
        }
        Ok(self.reader_of(blocks, worker, parallelism, decoder))
    }

    /// A reader resuming where the checkpoint's readers were in the blocks dealt to
    /// this worker.
    pub fn restore_reader<D: LineDecoder>(
        &self,
        worker: usize,
        parallelism: usize,
        state: &StateReader,
        decoder: D,
    ) -> Result<LinesReader<D>> {
        self.dead_letters.open_for(true)?;
        let mut blocks = Vec::new();
        for split in state.items::<BlockSplit>()? {
            let file = self.files.iter().position(|(p, _)| p.display().to_string() == split.path).ok_or_else(|| {
                Error::checkpoint(&split.path, "the checkpoint reads this file, which is no longer among the input")
            })?;
            let now = self.fingerprints[file];
            if now != split.fingerprint {
                let change = match now.length == split.fingerprint.length {
                    true => "its contents changed".to_string(),
                    false => format!("it has {} bytes, the checkpoint read {}", now.length, split.fingerprint.length),
                };
                return Err(Error::checkpoint(
                    &split.path,
                    format!(
                        "the input file changed since the checkpoint ({change}): resuming at byte {} would skip or \
                         repeat input. Restore the original file, or start the job without the checkpoint",
                        split.resume.unwrap_or(split.start)
                    ),
                ));
            }
            blocks.push(Block { file, start: split.start, end: split.end, resume: split.resume });
        }
        // After a rescale a reader gets blocks of several old readers, each of which was
        // somewhere else in the file: read them in file order, so that event time only
        // goes forward within the reader and no record becomes late behind the
        // watermark of a block further on.
        blocks.sort_by_key(|block| (block.file, block.start));
        Ok(self.reader_of(blocks, worker, parallelism, decoder))
    }

    /// The reader of `worker`, of `blocks` in order.
    fn reader_of<D>(&self, mut blocks: Vec<Block>, worker: usize, parallelism: usize, decoder: D) -> LinesReader<D> {
        blocks.reverse();
        let mut file_starts = Vec::with_capacity(self.files.len());
        let mut position = 0;
        for (_, length) in &self.files {
            file_starts.push(position);
            position += length;
        }
        LinesReader {
            decoder,
            spare: None,
            alignment: self.aligner.join(worker, parallelism, self.block_size),
            worker,
            file_starts,
            paths: self.files.iter().map(|(p, _)| p.clone()).collect(),
            fingerprints: self.fingerprints.clone(),
            blocks,
            current: None,
            line: Vec::with_capacity(1024),
            bytes_read: 0,
            dead_letters: self.dead_letters.clone(),
            dead_letter_count: 0,
            line_offsets: Vec::new(),
        }
    }
}

struct OpenBlock {
    reader: BufReader<File>,
    file: usize,
    start: u64,
    offset: u64,
    end: u64,
}

/// How much of a file a reader reads at a time.
const READ_BUFFER: usize = 64 << 10;

/// One worker's share of a [`JsonLinesSource`].
pub type JsonLinesReader<T> = LinesReader<SerdeJsonDecoder<T>>;

/// One worker's share of a [`LineInput`], decoded by `D`.
pub struct LinesReader<D> {
    decoder: D,
    /// The file of the last block read, to read the next block of the same file with.
    spare: Option<(usize, BufReader<File>)>,
    alignment: Arc<Alignment>,
    worker: usize,
    /// Where each file starts in the whole input (the files one after another).
    file_starts: Vec<u64>,
    paths: Vec<PathBuf>,
    fingerprints: Vec<Fingerprint>,
    /// Blocks still to read, last first.
    blocks: Vec<Block>,
    current: Option<OpenBlock>,
    line: Vec<u8>,
    bytes_read: u64,
    dead_letters: DeadLetters,
    dead_letter_count: u64,
    /// Where the lines of the batch being decoded start (file, byte), for dead letters.
    line_offsets: Vec<(usize, u64)>,
}

impl<D> LinesReader<D> {
    /// Opens a block: at the next line to read if it was being read, else at the first
    /// line that starts in it. The file of the previous block is read on, not opened
    /// again.
    fn open(&mut self, block: Block) -> Result<OpenBlock> {
        let path = &self.paths[block.file];
        let shown = || path.display().to_string();
        let mut reader = match self.spare.take() {
            Some((file, reader)) if file == block.file => reader,
            _ => BufReader::with_capacity(READ_BUFFER, File::open(path).map_err(|e| Error::io(shown(), e))?),
        };
        let offset = match (block.resume, block.start) {
            (Some(resume), _) => {
                reader.seek(SeekFrom::Start(resume)).map_err(|e| Error::io(shown(), e))?;
                resume
            }
            (None, 0) => {
                reader.seek(SeekFrom::Start(0)).map_err(|e| Error::io(shown(), e))?;
                0
            }
            (None, start) => {
                // The line that starts before this block belongs to the previous one:
                // skip to the first line that starts at or after `start`.
                reader.seek(SeekFrom::Start(start - 1)).map_err(|e| Error::io(shown(), e))?;
                self.line.clear();
                let n = reader.read_until(b'\n', &mut self.line).map_err(|e| Error::io(shown(), e))?;
                start - 1 + n as u64
            }
        };
        Ok(OpenBlock { reader, file: block.file, start: block.start, offset, end: block.end })
    }
}

impl<D: LineDecoder> LinesReader<D> {
    /// The batch decoded so far; its rejected lines go to the dead letters.
    fn take_batch(&mut self) -> Result<D::Batch> {
        let (batch, rejected) = self.decoder.take()?;
        for line in rejected {
            let (file, offset) = self.line_offsets.get(line.index).copied().unwrap_or_default();
            self.dead_letter_count += 1;
            self.dead_letters.write(DeadLetter {
                source: self.paths[file].display().to_string(),
                position: format!("byte {offset}"),
                reason: line.reason,
                input: String::from_utf8_lossy(&line.line).into_owned(),
            })?;
        }
        self.line_offsets.clear();
        Ok(batch)
    }

    /// The batch decoded so far, or `empty` when there is none.
    fn batch_or(&mut self, empty: SourcePoll<D::Batch>) -> Result<SourcePoll<D::Batch>> {
        if self.decoder.pending() == 0 {
            return Ok(empty);
        }
        let batch = self.take_batch()?;
        // A batch of rejected lines only is nothing to hand on, but the reader moved on.
        Ok(match sluice_runtime::Batch::is_empty(&batch) {
            true => SourcePoll::Pending,
            false => SourcePoll::Batch(batch),
        })
    }
}

impl<D: LineDecoder> SourceReader for LinesReader<D> {
    type Batch = D::Batch;

    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<D::Batch>> {
        while self.decoder.pending() < max_records {
            let mut open = match self.current.take() {
                Some(open) => open,
                None => match self.blocks.pop() {
                    Some(block) => {
                        let position = self.file_starts[block.file] + block.start;
                        if !self.alignment.may_open(self.worker, position) {
                            self.blocks.push(block);
                            return self.batch_or(SourcePoll::Pending);
                        }
                        self.open(block)?
                    }
                    None => {
                        self.alignment.done(self.worker);
                        break;
                    }
                },
            };
            let mut finished = false;
            while self.decoder.pending() < max_records {
                if open.offset >= open.end {
                    finished = true;
                    break;
                }
                let shown = |e| Error::io(self.paths[open.file].display().to_string(), e);
                // A line wholly in the read buffer is decoded where it is; one that
                // runs past the buffer's end is copied out first.
                let buffered = open.reader.fill_buf().map_err(shown)?;
                let (n, text, in_place) = match memchr::memchr(b'\n', buffered) {
                    Some(end) => (end + 1, &buffered[..end + 1], true),
                    None => {
                        self.line.clear();
                        let n = open.reader.read_until(b'\n', &mut self.line).map_err(shown)?;
                        (n, &self.line[..], false)
                    }
                };
                if n == 0 {
                    finished = true;
                    break;
                }
                let line_offset = open.offset;
                open.offset += n as u64;
                self.bytes_read += n as u64;
                let text = text.strip_suffix(b"\n").unwrap_or(text);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                if !text.iter().all(u8::is_ascii_whitespace) {
                    self.line_offsets.push((open.file, line_offset));
                    self.decoder.decode(text);
                }
                if in_place {
                    open.reader.consume(n);
                }
            }
            match finished {
                true => self.spare = Some((open.file, open.reader)),
                false => self.current = Some(open),
            }
        }
        if self.decoder.pending() == 0 && self.current.is_none() && self.blocks.is_empty() {
            self.dead_letters.flush()?;
            return Ok(SourcePoll::Finished);
        }
        self.batch_or(SourcePoll::Pending)
    }

    fn position(&self) -> u64 {
        self.bytes_read
    }

    fn dead_letters(&self) -> u64 {
        self.dead_letter_count
    }

    fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        // The dead letters of the input before the checkpoint, which is not read again.
        self.dead_letters.sync()?;
        let path = |file: usize| self.paths[file].display().to_string();
        if let Some(open) = &self.current {
            let split = BlockSplit {
                path: path(open.file),
                fingerprint: self.fingerprints[open.file],
                start: open.start,
                end: open.end,
                resume: Some(open.offset),
            };
            state.item(&split)?;
        }
        for block in self.blocks.iter().rev() {
            state.item(&BlockSplit {
                path: path(block.file),
                fingerprint: self.fingerprints[block.file],
                start: block.start,
                end: block.end,
                resume: block.resume,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint_after_one_batch(path: &Path) -> sluice_runtime::checkpoint::InstanceState {
        let source = JsonLinesSource::<u64>::new(path).unwrap();
        let mut reader = source.reader(0, 1).unwrap();
        assert!(matches!(reader.poll(10).unwrap(), SourcePoll::Batch(batch) if batch.len() == 10));
        let mut state = StateWriter::new(128);
        reader.snapshot(&mut state).unwrap();
        state.finish()
    }

    /// Lines longer than the read buffer are read whole (copied out of it), those in it
    /// where they lie, and a line that is not UTF-8 is a dead letter, not a value.
    #[test]
    fn long_lines_are_read_whole_and_a_line_not_utf8_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let long = format!("\"{}\"", "x".repeat(3 * READ_BUFFER));
        let mut input = Vec::new();
        for i in 0..100 {
            input.extend_from_slice(if i % 10 == 5 { long.as_bytes() } else { b"\"short\"" });
            input.push(b'\n');
        }
        input.extend_from_slice(b"\"not \xff utf-8\"\n");
        std::fs::write(&path, &input).unwrap();
        let source = JsonLinesSource::<String>::new(&path).unwrap();
        let mut reader = source.reader(0, 1).unwrap();
        let mut values = Vec::new();
        while let SourcePoll::Batch(batch) = reader.poll(7).unwrap() {
            values.extend(batch.into_iter().map(|r| r.value));
        }
        assert_eq!(values.len(), 100);
        for (i, value) in values.iter().enumerate() {
            assert_eq!(value.len(), if i % 10 == 5 { 3 * READ_BUFFER } else { 5 }, "line {i}");
        }
        assert_eq!(reader.dead_letters(), 1, "the line that is not UTF-8");
    }

    #[test]
    fn a_reader_waits_rather_than_run_more_than_a_round_of_blocks_ahead_of_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, (0..1000).map(|i| format!("{i}\n")).collect::<String>()).unwrap();
        let source = JsonLinesSource::<u64>::new(&path).unwrap().block_size(100);
        let mut readers = [source.reader(0, 2).unwrap(), source.reader(1, 2).unwrap()];
        let mut values = Vec::new();
        // Worker 0 alone: worker 1 is still at the start, so worker 0 reads its first two
        // blocks (a round ahead) and then waits.
        loop {
            match readers[0].poll(10).unwrap() {
                SourcePoll::Batch(batch) => values.extend(batch.into_iter().map(|r| r.value)),
                SourcePoll::Pending => break,
                _ => panic!("worker 0 neither read nor waited"),
            }
        }
        assert!(!values.is_empty() && values.iter().all(|&v| v < 300), "worker 0 ran ahead: {values:?}");
        // Both polled in turn: everything is read, once.
        let mut finished = [false, false];
        while !finished.iter().all(|&f| f) {
            for (worker, reader) in readers.iter_mut().enumerate() {
                match reader.poll(10).unwrap() {
                    SourcePoll::Batch(batch) => values.extend(batch.into_iter().map(|r| r.value)),
                    SourcePoll::Finished => finished[worker] = true,
                    _ => {}
                }
            }
        }
        values.sort_unstable();
        assert_eq!(values, (0..1000).collect::<Vec<u64>>());
    }

    #[test]
    fn a_reader_restored_at_another_parallelism_reads_its_blocks_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, (0..1000).map(|i| format!("{i}\n")).collect::<String>()).unwrap();
        let source = JsonLinesSource::<u64>::new(&path).unwrap().block_size(100);
        // Two old readers, each a few records into its first block.
        let mut items = Vec::new();
        for worker in 0..2 {
            let mut reader = source.reader(worker, 2).unwrap();
            assert!(matches!(reader.poll(3).unwrap(), SourcePoll::Batch(_)));
            let mut state = StateWriter::new(128);
            reader.snapshot(&mut state).unwrap();
            items.extend(state.finish().items);
        }
        // One new reader gets every third item, from both old readers' lists.
        let share = sluice_runtime::checkpoint::InstanceState {
            items: items.iter().step_by(3).cloned().collect(),
            ..Default::default()
        };
        let mut reader = source.restore_reader(0, 3, &StateReader::new(share)).unwrap();
        let mut values = Vec::new();
        while let SourcePoll::Batch(batch) = reader.poll(1000).unwrap() {
            values.extend(batch.into_iter().map(|r| r.value));
        }
        assert!(!values.is_empty());
        assert!(values.windows(2).all(|w| w[0] < w[1]), "read out of file order: {values:?}");
    }

    #[test]
    fn a_restore_refuses_an_input_file_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let lines: String = (0..100).map(|i| format!("{i}\n")).collect();
        std::fs::write(&path, &lines).unwrap();
        let state = checkpoint_after_one_batch(&path);
        let source = JsonLinesSource::<u64>::new(&path).unwrap();
        assert!(source.restore_reader(0, 1, &StateReader::new(state.clone())).is_ok(), "the same file resumes");

        std::fs::write(&path, lines.replace("5\n", "6\n")).unwrap();
        let source = JsonLinesSource::<u64>::new(&path).unwrap();
        let error = source.restore_reader(0, 1, &StateReader::new(state.clone())).err().unwrap().to_string();
        assert!(error.contains("contents changed"), "{error}");

        std::fs::write(&path, format!("{lines}100\n")).unwrap();
        let source = JsonLinesSource::<u64>::new(&path).unwrap();
        let error = source.restore_reader(0, 1, &StateReader::new(state)).err().unwrap().to_string();
        assert!(error.contains("the checkpoint read 290"), "{error}");
    }
}
