//! JSON lines on standard input and standard output.

use crate::file::sink_encode;
use crate::{DeadLetter, DeadLetters};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_api::{Sink, SinkContext, SinkWriter, Source};
use sluice_runtime::{SourcePoll, SourceReader};
use sluice_types::{Error, Record, Result, MIN_TIMESTAMP};
use std::io::{BufRead, Write};
use std::marker::PhantomData;

/// Reads JSON lines from standard input, on the first worker. Lines that do not parse
/// go to the dead letters.
pub struct StdinSource<T> {
    dead_letters: DeadLetters,
    _type: PhantomData<fn() -> T>,
}

impl<T> Default for StdinSource<T> {
    fn default() -> Self {
        StdinSource { dead_letters: DeadLetters::default(), _type: PhantomData }
    }
}

impl<T> StdinSource<T> {
    /// A source over standard input.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends lines that cannot be read to `dead_letters` (default: standard error).
    pub fn dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = dead_letters;
        self
    }
}

impl<T: DeserializeOwned + Clone + Send + 'static> Source for StdinSource<T> {
    type Item = T;
    type Reader = StdinReader<T>;

    fn name(&self) -> String {
        "stdin".to_string()
    }

    fn reader(&self, worker: usize, _parallelism: usize) -> Result<StdinReader<T>> {
        let lines = if worker == 0 {
            // Standard input blocks; a thread reads it so the worker can keep ticking
            // timers and watermarks while a terminal or pipe is quiet.
            let (sender, receiver) = crossbeam_channel::bounded::<std::io::Result<String>>(8192);
            std::thread::Builder::new()
                .name("sluice-stdin".into())
                .spawn(move || {
                    for line in std::io::stdin().lock().lines() {
                        let failed = line.is_err();
                        if sender.send(line).is_err() || failed {
                            break;
                        }
                    }
                })
                .map_err(|e| Error::io("stdin", e))?;
            Some(receiver)
        } else {
            None
        };
        Ok(StdinReader {
            lines,
            line_number: 0,
            dead_letters: self.dead_letters.clone(),
            rejected: 0,
            _type: PhantomData,
        })
    }
}

/// The reader of [`StdinSource`].
pub struct StdinReader<T> {
    lines: Option<crossbeam_channel::Receiver<std::io::Result<String>>>,
    line_number: u64,
    dead_letters: DeadLetters,
    rejected: u64,
    _type: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Send + 'static> SourceReader for StdinReader<T> {
    type Batch = Vec<Record<T>>;

    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<Vec<Record<T>>>> {
        let Some(lines) = &self.lines else { return Ok(SourcePoll::Finished) };
        let mut batch = Vec::new();
        let mut ended = false;
        while batch.len() < max_records {
            let line = match lines.try_recv() {
                Ok(line) => line.map_err(|e| Error::io("stdin", e))?,
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    ended = true;
                    break;
                }
            };
            self.line_number += 1;
            let text = line.trim_end_matches('\r');
            if text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<T>(text) {
                Ok(value) => batch.push(Record { timestamp: MIN_TIMESTAMP, value }),
                Err(error) => {
                    self.rejected += 1;
                    self.dead_letters.write(DeadLetter {
                        source: "stdin".into(),
                        position: format!("line {}", self.line_number),
                        reason: error.to_string(),
                        input: text.to_string(),
                    })?;
                }
            }
        }
        if !batch.is_empty() {
            return Ok(SourcePoll::Batch(batch));
        }
        if ended {
            self.lines = None;
            self.dead_letters.flush()?;
            return Ok(SourcePoll::Finished);
        }
        Ok(SourcePoll::Pending)
    }

    fn position(&self) -> u64 {
        self.line_number
    }

    fn dead_letters(&self) -> u64 {
        self.rejected
    }
}

/// Writes each record's value as a JSON line to standard output.
pub struct StdoutSink<T> {
    _type: PhantomData<fn(T)>,
}

impl<T> Default for StdoutSink<T> {
    fn default() -> Self {
        StdoutSink { _type: PhantomData }
    }
}

impl<T> StdoutSink<T> {
    /// A sink to standard output.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Serialize + Send + 'static> Sink<T> for StdoutSink<T> {
    type Writer = StdoutWriter<T>;

    fn name(&self) -> String {
        "stdout".to_string()
    }

    fn writer(&self, _context: &SinkContext) -> Result<StdoutWriter<T>> {
        Ok(StdoutWriter { buffer: Vec::new(), _type: PhantomData })
    }
}

/// The writer of [`StdoutSink`].
pub struct StdoutWriter<T> {
    buffer: Vec<u8>,
    _type: PhantomData<fn(T)>,
}

impl<T: Serialize + Send + 'static> SinkWriter<T> for StdoutWriter<T> {
    fn write_batch(&mut self, batch: Vec<Record<T>>) -> Result<()> {
        self.buffer.clear();
        sink_encode(&batch, &mut self.buffer)?;
        std::io::stdout().lock().write_all(&self.buffer).map_err(|e| Error::io("stdout", e))
    }

    fn close(&mut self) -> Result<()> {
        std::io::stdout().lock().flush().map_err(|e| Error::io("stdout", e))
    }
}
