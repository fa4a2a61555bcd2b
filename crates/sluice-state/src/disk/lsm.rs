//! The on-disk backend's store: one fjall keyspace per job, shared by every operator
//! instance, so that its block cache and write buffers respect one memory budget; one
//! partition (an LSM tree) per operator instance, behind a write-back cache. Of the
//! budget, a quarter goes to the caches of raw entries, a quarter to the
//! block cache, half to write buffers.
//!
//! The store is a working copy: checkpoints, not the store's journal, make state
//! durable, so the journal is never synced and the directory is deleted when the job
//! ends.

use super::cache::{CacheBudget, CachedKv};
use super::{Frozen, Kv, Visit};
use sluice_types::{Error, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The on-disk state backend of a job.
#[derive(Clone)]
pub struct DiskBackend {
    dir: PathBuf,
    memory_budget: u64,
    keyspace: Arc<Mutex<Option<fjall::Keyspace>>>,
    /// The write-back caches' share of the budget, shared by every store of the job.
    cache: Arc<Mutex<Option<Arc<CacheBudget>>>>,
}

impl std::fmt::Debug for DiskBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskBackend").field("dir", &self.dir).field("memory_budget", &self.memory_budget).finish()
    }
}

/// The default memory budget of the on-disk backend.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 << 20;

/// Distinguishes the stores of one process.
static NEXT_STORE: AtomicU64 = AtomicU64::new(0);

fn store_error(dir: &std::path::Path, error: fjall::Error) -> Error {
    Error::io(dir.display().to_string(), std::io::Error::other(error))
}

impl DiskBackend {
    /// Keeps state under `dir` (a working directory per job is made inside it), with
    /// the default memory budget (256 MiB).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskBackend {
            dir: dir.into(),
            memory_budget: DEFAULT_MEMORY_BUDGET,
            keyspace: Arc::default(),
            cache: Arc::default(),
        }
    }

    /// Bounds the memory the store uses for caching and write buffers, for the whole
    /// job (at least 8 MiB). State beyond it stays on disk.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes.max(8 << 20);
        self
    }

    /// The configured memory budget, in bytes.
    pub fn budget(&self) -> u64 {
        self.memory_budget
    }

    /// Opens a new, empty store for one operator instance.
    pub fn open(&self) -> Result<Arc<dyn Kv>> {
        let mut keyspace = self.keyspace.lock().unwrap_or_else(|e| e.into_inner());
        if keyspace.is_none() {
            remove_abandoned(&self.dir);
            let path = self.dir.join(format!("sluice-state-{}-{}", std::process::id(), sluice_runtime::now_millis()));
            std::fs::create_dir_all(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
            // The journal's cap is disk space, not memory. fjall stalls every write for
            // 500 ms once the journals reach 90% of it, until memtables are flushed: at
            // 32 MiB a state that does not fit the budget was written at a few MB/s
            // (a 64 MB restore took 26 s; 1.2 s with this cap).
            let opened = fjall::Config::new(&path)
                .temporary(true)
                .manual_journal_persist(true)
                .cache_size(self.memory_budget / 8)
                .max_write_buffer_size(self.memory_budget / 8)
                .max_journaling_size((self.memory_budget * 2).max(1 << 30))
                .flush_workers(1)
                .compaction_workers(1)
                .open()
                .map_err(|e| store_error(&path, e))?;
            *keyspace = Some(opened);
        }
        let keyspace = keyspace.as_ref().expect("invariant: opened above");
        let name = format!("s{}", NEXT_STORE.fetch_add(1, Ordering::Relaxed));
        // Each tree's memtable is a share of the write buffers: many operator instances
        // must not each hold the default 16 MiB.
        let memtable = (self.memory_budget / 16).clamp(1 << 20, 16 << 20) as u32;
        // The journal is never needed (checkpoints make state durable): writes do not
        // push it to the OS one by one. Blocks are not compressed: point reads of small
        // entries dominate, and decompressing a block per read costs more than the disk
        // space saved.
        let options = fjall::PartitionCreateOptions::default()
            .max_memtable_size(memtable)
            .manual_journal_persist(true)
            .compression(fjall::CompressionType::None);
        let partition = keyspace.open_partition(&name, options).map_err(|e| store_error(&self.dir, e))?;
        let tree = Arc::new(Partition { partition, keyspace: keyspace.clone(), dir: self.dir.clone() });
        let budget = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| CacheBudget::new((self.memory_budget * 3 / 4) as usize))
            .clone();
        Ok(Arc::new(CachedKv::new(tree, budget)))
    }
}

/// Deletes the working directories of jobs whose process is gone (killed before it
/// could delete its own): their state is in their checkpoints, not there. Only where
/// `/proc` tells which processes live (Linux).
fn remove_abandoned(dir: &std::path::Path) {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("sluice-state-").and_then(|rest| rest.split('-').next()) else { continue };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One operator instance's tree.
struct Partition {
    partition: fjall::PartitionHandle,
    /// The keyspace is temporary: its directory is deleted when the last handle on it
    /// goes. A frozen view read after the job's workers stopped (to write their final
    /// state) keeps it, through this.
    keyspace: fjall::Keyspace,
    dir: PathBuf,
}

impl Kv for Partition {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.partition.get(key).map_err(|e| store_error(&self.dir, e))?.map(|v| v.to_vec()))
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.partition.insert(key, value).map_err(|e| store_error(&self.dir, e))
    }
    fn delete(&self, key: &[u8]) -> Result<()> {
        self.partition.remove(key).map_err(|e| store_error(&self.dir, e))
    }
    fn scan_from(&self, prefix: &[u8], from: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        let entries = match from > prefix {
            true => self.partition.range(from.to_vec()..),
            false => self.partition.range(prefix.to_vec()..),
        };
        for entry in entries {
            let (key, value) = entry.map_err(|e| store_error(&self.dir, e))?;
            if !key.starts_with(prefix) || !visit(&key, &value)? {
                break;
            }
        }
        Ok(())
    }
    fn frozen(&self) -> Box<dyn Frozen> {
        Box::new(FrozenPartition {
            snapshot: self.partition.snapshot(),
            _keyspace: self.keyspace.clone(),
            dir: self.dir.clone(),
        })
    }
}

/// An MVCC snapshot of one partition.
struct FrozenPartition {
    snapshot: fjall::Snapshot,
    _keyspace: fjall::Keyspace,
    dir: PathBuf,
}

impl Frozen for FrozenPartition {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value =
            self.snapshot.get(key).map_err(|e| Error::io(self.dir.display().to_string(), std::io::Error::other(e)))?;
        Ok(value.map(|v| v.to_vec()))
    }
    fn scan_prefix(&self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        for entry in self.snapshot.prefix(prefix) {
            let (key, value) =
                entry.map_err(|e| Error::io(self.dir.display().to_string(), std::io::Error::other(e)))?;
            if !visit(&key, &value)? {
                break;
            }
        }
        Ok(())
    }
}
