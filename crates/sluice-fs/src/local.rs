//! The real file system.

use crate::{DirEntry, FileLock, FileSyncer, FileSystem, WritableFile};
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// The local disk, through `std::fs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalFs;

struct LocalFile(File);

impl Write for LocalFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl WritableFile for LocalFile {
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>> {
        Ok(Box::new(LocalFile(self.0.try_clone()?)))
    }
}

impl FileSyncer for LocalFile {
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl FileSystem for LocalFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(LocalFile(File::create(path)?)))
    }
    fn append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(LocalFile(std::fs::OpenOptions::new().append(true).create(true).open(path)?)))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0; len];
        File::open(path)?.read_exact_at(&mut bytes, offset)?;
        Ok(bytes)
    }
    fn size(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        std::fs::OpenOptions::new().write(true).open(path)?.set_len(len)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<FileLock>> {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock::new(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let is_dir = entry.file_type()?.is_dir();
            entries.push(DirEntry { name: entry.file_name().to_string_lossy().into_owned(), is_dir });
        }
        entries.sort();
        Ok(entries)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // On Linux a directory opened read-only can be fsynced; that makes its entries
        // (files created, renamed or removed in it) durable.
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{create_dir_all_durably, write_durably};

    #[test]
    fn a_lock_is_held_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let held = LocalFs.try_lock(&path).unwrap().expect("free");
        assert!(LocalFs.try_lock(&path).unwrap().is_none(), "held by the first");
        drop(held);
        assert!(LocalFs.try_lock(&path).unwrap().is_some(), "free again");
    }

    #[test]
    fn durable_writes_on_the_local_disk() {
        let dir = tempfile::tempdir().unwrap();
        let fs = LocalFs;
        let nested = dir.path().join("a/b");
        create_dir_all_durably(&fs, &nested).unwrap();
        write_durably(&fs, &nested.join("f"), b"one").unwrap();
        write_durably(&fs, &nested.join("f"), b"two").unwrap();
        assert_eq!(fs.read(&nested.join("f")).unwrap(), b"two");
        let names: Vec<String> = fs.list(&nested).unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["f"], "no temporary file is left");
    }
}
