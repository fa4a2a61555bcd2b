//! The file system Sluice's checkpoints and file sinks write through.
//!
//! A write is on disk only once it is synced: the file's data by `fsync` on the file,
//! its name (creation, rename, removal) by `fsync` on the directory holding it. What is
//! written but not synced may be lost at a power cut, in any combination. Sluice's
//! write paths promise "once a checkpoint's manifest exists, everything it names is
//! durable" and "output a checkpoint committed stays committed", so they sync in a
//! fixed order (listed in ARCHITECTURE.md). They go through [`FileSystem`] so that
//! tests can run them on a [`SimulatedFs`], which keeps only what was synced when the
//! power is cut, at any chosen write.

mod local;
mod simulated;

pub use local::LocalFs;
pub use simulated::SimulatedFs;

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// A file open for writing.
pub trait WritableFile: Write + Send {
    /// Makes everything written so far durable (`fsync` of the data).
    fn sync(&mut self) -> io::Result<()>;
    /// A handle that syncs the same file on its own, so that a writer shared behind a
    /// lock can sync without holding the lock (others append meanwhile).
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>>;
}

/// Syncs one file: what was written to it before [`FileSyncer::sync`] is called is
/// durable when it returns.
pub trait FileSyncer: Send {
    /// `fsync` of the file's data.
    fn sync(&self) -> io::Result<()>;
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    /// Its name.
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// The operations Sluice's durable write paths need.
pub trait FileSystem: Send + Sync + std::fmt::Debug {
    /// Creates the file `path`, or truncates it.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens the file `path` to append to it, creating it if missing.
    fn append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// The contents of the file `path` (an error of kind `NotFound` if missing).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// `len` bytes of the file `path` from `offset`; an error of kind `UnexpectedEof` if
    /// the file ends before.
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// The length of the file `path`.
    fn size(&self, path: &Path) -> io::Result<u64>;
    /// Cuts the file `path` to `len` bytes; durable once the file is synced.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Takes an exclusive lock on the file `path` (created if missing), held until the
    /// returned guard is dropped, also against other processes; `None` if someone
    /// holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<FileLock>>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates the directory `path`, whose parent exists.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Removes the directory `path` and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The entries of the directory `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Makes the names in `dir` durable (`fsync` of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An exclusive lock on a file, released when dropped.
pub struct FileLock {
    _held: Box<dyn Send + Sync>,
}

impl FileLock {
    /// A lock held as long as `held` lives.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        FileLock { _held: Box::new(held) }
    }
}

impl std::fmt::Debug for FileLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileLock")
    }
}

/// The local disk.
pub fn local() -> Arc<dyn FileSystem> {
    Arc::new(LocalFs)
}

/// Creates `dir` and its missing parents, each made durable in its parent.
pub fn create_dir_all_durably(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || fs.exists(dir) {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all_durably(fs, parent)?;
    }
    match fs.create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent() {
        // A relative path's first directory is made in the working directory.
        Some(parent) if parent.as_os_str().is_empty() => fs.sync_dir(Path::new(".")),
        Some(parent) => fs.sync_dir(parent),
        None => Ok(()),
    }
}

/// Writes the file `path` whole and durably: into a temporary file beside it, synced,
/// renamed over `path`, then the directory synced. Readers see the old file or the new
/// one, never a part; once this returns, the new one survives a power cut.
pub fn write_durably(fs: &dyn FileSystem, path: &Path, data: &[u8]) -> io::Result<()> {
    write_parts_durably(fs, path, &[data])
}

/// As [`write_durably`], for a file made of `parts` written one after the other: a
/// caller holding a file's pieces does not join them into one copy first.
pub fn write_parts_durably(fs: &dyn FileSystem, path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let mut file = DurableFile::create(fs, path)?;
    for part in parts {
        file.write(part)?;
    }
    file.commit(fs)
}

/// A file written piece by piece and then made durable whole, as [`write_durably`]
/// does: until [`DurableFile::commit`] it is a temporary file beside `path`, which
/// readers never see.
pub struct DurableFile {
    path: std::path::PathBuf,
    temporary: std::path::PathBuf,
    file: Box<dyn WritableFile>,
}

impl DurableFile {
    /// Starts the file `path`, creating its directory durably if missing.
    pub fn create(fs: &dyn FileSystem, path: &Path) -> io::Result<Self> {
        let parent = path.parent().unwrap_or(Path::new(""));
        create_dir_all_durably(fs, parent)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = parent.join(format!(".{name}.tmp"));
        let file = fs.create(&temporary)?;
        Ok(DurableFile { path: path.to_path_buf(), temporary, file })
    }

    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    /// Syncs the file, renames it to its name in `fs` (the file system it was created
    /// in) and syncs its directory: once this returns, the whole file survives a power
    /// cut.
    pub fn commit(mut self, fs: &dyn FileSystem) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync()?;
        drop(self.file);
        fs.rename(&self.temporary, &self.path)?;
        fs.sync_dir(self.path.parent().unwrap_or(Path::new("")))
    }
}
