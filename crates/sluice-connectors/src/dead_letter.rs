//! The dead-letter output: input that could not be read, with where it was and why.

use serde::Serialize;
use sluice_types::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// One rejected input record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The input it came from (a file path, `stdin`).
    pub source: String,
    /// Where in the input: a byte offset or a line number, as `source` defines.
    pub position: String,
    /// Why it was rejected.
    pub reason: String,
    /// The raw input, lossily decoded as UTF-8.
    pub input: String,
}

#[derive(Clone)]
enum Target {
    Stderr,
    File(Arc<Mutex<BufWriter<File>>>),
    Memory(Arc<Mutex<Vec<DeadLetter>>>),
}

/// Where dead letters go: standard error (the default), a JSON lines file, or memory.
/// Cloning shares the destination.
#[derive(Clone)]
pub struct DeadLetters {
    target: Target,
}

impl Default for DeadLetters {
    fn default() -> Self {
        DeadLetters::stderr()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DeadLetters {
    /// One JSON object per line on standard error.
    pub fn stderr() -> Self {
        DeadLetters { target: Target::Stderr }
    }

    /// One JSON object per line in `path` (created or truncated).
    pub fn file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(DeadLetters { target: Target::File(Arc::new(Mutex::new(BufWriter::new(file)))) })
    }

    /// Kept in memory, for tests.
    pub fn memory() -> Self {
        DeadLetters { target: Target::Memory(Arc::new(Mutex::new(Vec::new()))) }
    }

    /// The dead letters kept in memory (empty for other destinations).
    pub fn collected(&self) -> Vec<DeadLetter> {
        match &self.target {
            Target::Memory(letters) => lock(letters).clone(),
            _ => Vec::new(),
        }
    }

    /// Records one dead letter.
    pub fn write(&self, letter: DeadLetter) -> Result<()> {
        match &self.target {
            Target::Memory(letters) => lock(letters).push(letter),
            Target::Stderr => {
                let line = serde_json::to_string(&letter).unwrap_or_default();
                eprintln!("dead letter: {line}");
            }
            Target::File(file) => {
                let mut line = serde_json::to_vec(&letter).unwrap_or_default();
                line.push(b'\n');
                lock(file).write_all(&line).map_err(|e| Error::io("dead-letter file", e))?;
            }
        }
        Ok(())
    }

    /// Flushes a file destination.
    pub fn flush(&self) -> Result<()> {
        if let Target::File(file) = &self.target {
            lock(file).flush().map_err(|e| Error::io("dead-letter file", e))?;
        }
        Ok(())
    }
}
