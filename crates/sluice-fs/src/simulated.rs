//! A file system in memory that models what a power cut keeps, for crash-consistency
//! tests (in the manner of redb's and ALICE's).
//!
//! Every file has its current contents and its durable contents (as of its last sync);
//! every directory has its current entries and its durable entries (as of its last
//! sync). A power cut throws away everything not durable: files go back to their
//! synced contents, directories to their synced entries, and a file or directory that
//! no durable entry names is gone. The cut can be set to happen at the n-th write (any
//! create, write, sync, rename, removal): that write and every later one fail, as the
//! process would have died there; [`SimulatedFs::restart`] then brings the machine back
//! with only what was durable.

use crate::{DirEntry, FileLock, FileSyncer, FileSystem, WritableFile};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A simulated file system; clones share it.
#[derive(Clone, Debug, Default)]
pub struct SimulatedFs {
    inner: Arc<Mutex<Sim>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(usize),
    Dir,
}

#[derive(Debug, Default)]
struct Dir {
    entries: BTreeMap<String, Node>,
    durable: BTreeMap<String, Node>,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct Sim {
    inodes: Vec<Inode>,
    /// Directories by normalized path; the root is the empty path. A removed
    /// directory's record stays, with no current entries: a power cut may bring back
    /// its durable ones.
    dirs: BTreeMap<PathBuf, Dir>,
    writes: u64,
    cut_at: Option<u64>,
    cut: bool,
    /// Files locked by [`FileSystem::try_lock`]: a process's locks, gone at a power cut
    /// only when their guards are dropped, as the process dies.
    locks: std::collections::BTreeSet<PathBuf>,
}

/// A lock of the simulated file system, released when dropped.
struct SimLock {
    fs: SimulatedFs,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.path);
    }
}

fn normalized(path: &Path) -> PathBuf {
    path.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let path = normalized(path);
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let name = name.to_string_lossy().into_owned();
    Ok((path.parent().map(Path::to_path_buf).unwrap_or_default(), name))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

impl Sim {
    /// Counts a write; fails it (and every later one) at the power cut.
    fn write_op(&mut self) -> io::Result<()> {
        if self.cut {
            return Err(io::Error::other("power cut"));
        }
        self.writes += 1;
        if self.cut_at == Some(self.writes) {
            self.cut = true;
            return Err(io::Error::other("power cut"));
        }
        Ok(())
    }

    /// The node at `path` in the current namespace.
    fn node(&self, path: &Path) -> Option<Node> {
        let path = normalized(path);
        if path.as_os_str().is_empty() {
            return Some(Node::Dir);
        }
        let mut dir = PathBuf::new();
        let mut node = Node::Dir;
        for part in path.iter() {
            let Node::Dir = node else { return None };
            node = *self.dirs.get(&dir)?.entries.get(&*part.to_string_lossy())?;
            dir.push(part);
        }
        Some(node)
    }

    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        match self.node(path) {
            Some(Node::Dir) => Ok(self.dirs.entry(normalized(path)).or_default()),
            _ => Err(not_found(path)),
        }
    }

    fn file(&self, path: &Path) -> io::Result<usize> {
        match self.node(path) {
            Some(Node::File(inode)) => Ok(inode),
            _ => Err(not_found(path)),
        }
    }

    fn power_cut(&mut self) {
        for inode in &mut self.inodes {
            inode.data = inode.durable.clone();
        }
        for dir in self.dirs.values_mut() {
            dir.entries = dir.durable.clone();
        }
    }
}

struct SimFile {
    fs: SimulatedFs,
    inode: usize,
}

impl Write for SimFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut sim = self.fs.lock();
        sim.write_op()?;
        sim.inodes[self.inode].data.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WritableFile for SimFile {
    fn sync(&mut self) -> io::Result<()> {
        FileSyncer::sync(self)
    }
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>> {
        Ok(Box::new(SimFile { fs: self.fs.clone(), inode: self.inode }))
    }
}

impl FileSyncer for SimFile {
    fn sync(&self) -> io::Result<()> {
        let mut sim = self.fs.lock();
        sim.write_op()?;
        let inode = &mut sim.inodes[self.inode];
        inode.durable = inode.data.clone();
        Ok(())
    }
}

impl SimulatedFs {
    /// An empty file system: only the root directory, durable.
    pub fn new() -> Self {
        SimulatedFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, Sim> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many writes were made so far.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// Cuts the power at the `n`-th write from now (1 is the next one).
    pub fn cut_power_after(&self, n: u64) {
        let mut sim = self.lock();
        sim.cut_at = Some(sim.writes + n.max(1));
    }

    /// Whether the power was cut: every write fails until [`SimulatedFs::restart`].
    pub fn is_cut(&self) -> bool {
        self.lock().cut
    }

    /// Restarts after a power cut (or cuts the power now, if it was on): only what was
    /// durable remains, and writes work again.
    pub fn restart(&self) {
        let mut sim = self.lock();
        sim.power_cut();
        sim.cut = false;
        sim.cut_at = None;
    }

    fn open(&self, path: &Path, truncate: bool) -> io::Result<Box<dyn WritableFile>> {
        let mut sim = self.lock();
        sim.write_op()?;
        let (parent, name) = split(path)?;
        let inode = match sim.node(path) {
            Some(Node::File(inode)) => {
                if truncate {
                    sim.inodes[inode].data.clear();
                }
                inode
            }
            Some(Node::Dir) => return Err(io::Error::new(io::ErrorKind::IsADirectory, "a directory")),
            None => {
                let inode = sim.inodes.len();
                sim.inodes.push(Inode::default());
                sim.dir_mut(&parent)?.entries.insert(name, Node::File(inode));
                inode
            }
        };
        Ok(Box::new(SimFile { fs: self.clone(), inode }))
    }
}

impl FileSystem for SimulatedFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.open(path, true)
    }

    fn append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.open(path, false)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let sim = self.lock();
        let inode = sim.file(path)?;
        Ok(sim.inodes[inode].data.clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let sim = self.lock();
        let data = &sim.inodes[sim.file(path)?].data;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(len).and_then(|end| data.get(start..end)) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} is shorter", path.display()))),
        }
    }

    fn size(&self, path: &Path) -> io::Result<u64> {
        let sim = self.lock();
        Ok(sim.inodes[sim.file(path)?].data.len() as u64)
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<FileLock>> {
        let path = normalized(path);
        if !self.lock().locks.insert(path.clone()) {
            return Ok(None);
        }
        Ok(Some(FileLock::new(SimLock { fs: self.clone(), path })))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut sim = self.lock();
        sim.write_op()?;
        let inode = sim.file(path)?;
        sim.inodes[inode].data.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.write_op()?;
        let node = sim.node(from).ok_or_else(|| not_found(from))?;
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        sim.dir_mut(&to_dir)?;
        sim.dir_mut(&from_dir)?.entries.remove(&from_name);
        sim.dir_mut(&to_dir)?.entries.insert(to_name, node);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.write_op()?;
        sim.file(path)?;
        let (dir, name) = split(path)?;
        sim.dir_mut(&dir)?.entries.remove(&name);
        Ok(())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.write_op()?;
        if sim.node(path).is_some() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        let (parent, name) = split(path)?;
        sim.dir_mut(&parent)?.entries.insert(name, Node::Dir);
        sim.dirs.entry(normalized(path)).or_default().entries.clear();
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.write_op()?;
        match sim.node(path) {
            Some(Node::Dir) => {}
            _ => return Err(not_found(path)),
        }
        let (parent, name) = split(path)?;
        sim.dir_mut(&parent)?.entries.remove(&name);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let sim = self.lock();
        match sim.node(dir) {
            Some(Node::Dir) => {}
            _ => return Err(not_found(dir)),
        }
        let entries = sim.dirs.get(&normalized(dir)).map(|d| d.entries.clone()).unwrap_or_default();
        Ok(entries.into_iter().map(|(name, node)| DirEntry { name, is_dir: node == Node::Dir }).collect())
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().node(path).is_some()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.write_op()?;
        let dir = sim.dir_mut(dir)?;
        dir.durable = dir.entries.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{create_dir_all_durably, write_durably};

    fn contents(fs: &SimulatedFs, path: &str) -> Option<Vec<u8>> {
        fs.read(Path::new(path)).ok()
    }

    #[test]
    fn a_power_cut_keeps_only_what_was_synced() {
        let fs = SimulatedFs::new();
        fs.create_dir(Path::new("/d")).unwrap();
        let mut file = fs.create(Path::new("/d/unsynced-name")).unwrap();
        file.write_all(b"data").unwrap();
        file.sync().unwrap();
        let mut other = fs.create(Path::new("/synced-name")).unwrap();
        other.write_all(b"lost").unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs.restart();
        // The directory's name was synced in the root, its file's name never was.
        assert!(fs.exists(Path::new("/d")));
        assert_eq!(contents(&fs, "/d/unsynced-name"), None);
        // The name was synced, the data never was.
        assert_eq!(contents(&fs, "/synced-name"), Some(Vec::new()));
    }

    #[test]
    fn durable_writes_survive_and_a_cut_write_fails() {
        let fs = SimulatedFs::new();
        write_durably(&fs, Path::new("/a/b/f"), b"one").unwrap();
        fs.restart();
        assert_eq!(contents(&fs, "/a/b/f"), Some(b"one".to_vec()));
        fs.cut_power_after(3);
        let outcome = write_durably(&fs, Path::new("/a/b/f"), b"two");
        assert!(outcome.is_err() && fs.is_cut());
        assert!(fs.create_dir(Path::new("/x")).is_err(), "every write fails after the cut");
        fs.restart();
        assert_eq!(contents(&fs, "/a/b/f"), Some(b"one".to_vec()), "the old file, whole");
        create_dir_all_durably(&fs, Path::new("/x/y")).unwrap();
        fs.restart();
        assert!(fs.exists(Path::new("/x/y")));
    }

    #[test]
    fn a_rename_is_durable_once_its_directory_is_synced() {
        let fs = SimulatedFs::new();
        let mut file = fs.create(Path::new("/.part")).unwrap();
        file.write_all(b"rows").unwrap();
        file.sync().unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs.rename(Path::new("/.part"), Path::new("/part")).unwrap();
        fs.restart();
        assert_eq!(contents(&fs, "/part"), None, "rename lost");
        assert_eq!(contents(&fs, "/.part"), Some(b"rows".to_vec()));
        fs.rename(Path::new("/.part"), Path::new("/part")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs.restart();
        assert_eq!(contents(&fs, "/part"), Some(b"rows".to_vec()));
    }
}
