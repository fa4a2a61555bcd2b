//! The dead-letter output: input that could not be read, with where it was and why.

use serde::Serialize;
use sluice_types::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
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
    File(Arc<DeadLetterFile>),
    Memory(Arc<Mutex<Vec<DeadLetter>>>),
}

/// A dead-letter file, opened by the first reader: truncated when the job starts
/// afresh, appended to when it resumes from a checkpoint, so that the dead letters
/// before the checkpoint (whose input is not read again) are kept.
struct DeadLetterFile {
    path: PathBuf,
    writer: Mutex<Option<BufWriter<File>>>,
    /// Written since the last sync: every worker's reader syncs at each checkpoint, and
    /// only the first after a write needs to reach the disk.
    unsynced: std::sync::atomic::AtomicBool,
}

impl DeadLetterFile {
    fn open(&self, writer: &mut Option<BufWriter<File>>, resumed: bool) -> Result<()> {
        if writer.is_none() {
            let mut options = std::fs::OpenOptions::new();
            match resumed {
                true => options.append(true).create(true),
                false => options.write(true).create(true).truncate(true),
            };
            let file = options.open(&self.path).map_err(|e| self.error(e))?;
            *writer = Some(BufWriter::new(file));
        }
        Ok(())
    }

    fn error(&self, e: std::io::Error) -> Error {
        Error::io(self.path.display().to_string(), e)
    }
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

    /// One JSON object per line in `path`: created or truncated when the job starts,
    /// appended to when it resumes from a checkpoint (the dead letters found after that
    /// checkpoint are then written again, as their input is read again).
    pub fn file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // Fail early on a path that cannot be written, before the job starts.
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(DeadLetters {
            target: Target::File(Arc::new(DeadLetterFile {
                path,
                writer: Mutex::new(None),
                unsynced: std::sync::atomic::AtomicBool::new(false),
            })),
        })
    }

    /// Opens a file destination for a job that starts afresh (`resumed` false: the file
    /// is truncated) or resumes from a checkpoint (appended to). The first call decides;
    /// a source calls it when it creates or restores its reader.
    pub fn open_for(&self, resumed: bool) -> Result<()> {
        match &self.target {
            Target::File(file) => file.open(&mut lock(&file.writer), resumed),
            _ => Ok(()),
        }
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
                let mut writer = lock(&file.writer);
                file.open(&mut writer, false)?;
                if let Some(writer) = writer.as_mut() {
                    writer.write_all(&line).map_err(|e| file.error(e))?;
                    file.unsynced.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }

    /// Flushes a file destination.
    pub fn flush(&self) -> Result<()> {
        if let Target::File(file) = &self.target {
            if let Some(writer) = lock(&file.writer).as_mut() {
                writer.flush().map_err(|e| file.error(e))?;
            }
        }
        Ok(())
    }

    /// Flushes a file destination and syncs it to disk: at a checkpoint, the dead letters
    /// of the input before it must survive a crash, as that input is not read again.
    pub fn sync(&self) -> Result<()> {
        if let Target::File(file) = &self.target {
            let mut writer = lock(&file.writer);
            if !file.unsynced.swap(false, std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            if let Some(writer) = writer.as_mut() {
                writer.flush().map_err(|e| file.error(e))?;
                writer.get_ref().sync_data().map_err(|e| file.error(e))?;
            }
        }
        Ok(())
    }
}
