//! The on-disk backend: keyed state in an embedded LSM store, for state larger than
//! memory.
//!
//! Every table of an operator instance lives in the instance's own store, under a
//! prefix: `[table: u16][key group: u16][key]` (big-endian, the key in postcard), plus
//! `[user key]` for map state. Values are encoded as the heap backend keeps them (the
//! value and its last write time, for TTL), so both backends expire entries alike.
//! The key group comes right after the table so that a worker restoring another
//! parallelism reads whole key-group ranges.

mod cache;
mod filter;
mod lsm;
mod overlay;
mod tables;

pub use lsm::{DiskBackend, DEFAULT_MEMORY_BUDGET};
pub use tables::{DiskListTable, DiskMapTable, DiskValueTable};

use crate::Health;
use sluice_types::{Error, Result};
use std::sync::Arc;

/// Called with each entry of a scan; returns whether to go on.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// The ordered key-value store the on-disk tables need: point reads and writes, and
/// ordered range scans.
pub trait Kv: Send + Sync {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Sets the value under `key`.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Removes `key`.
    fn delete(&self, key: &[u8]) -> Result<()>;
    /// Calls `visit` with every entry whose key starts with `prefix` and is at least
    /// `from`, in key order, until it returns `false`. `visit` must not use the store.
    fn scan_from(&self, prefix: &[u8], from: &[u8], visit: &mut Visit<'_>) -> Result<()>;
    /// Calls `visit` with every entry whose key starts with `prefix`, in key order,
    /// until it returns `false`. `visit` must not use the store.
    fn scan_prefix(&self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        self.scan_from(prefix, prefix, visit)
    }
    /// Asks that scans of the table with this prefix be fast: its state is read by key
    /// prefix on every access (map state), not only by checkpoints.
    fn keep_ordered(&self, _table: [u8; 2]) {}
    /// Calls `visit` with about `budget` entries whose key starts with `prefix`, going
    /// on from `cursor`, until it returns `false`: a pass of a TTL sweep. The order is
    /// the store's own; every entry is visited once per pass over the table, and the
    /// cursor starts a new pass after the last. `visit` must not use the store.
    fn sweep(&self, prefix: &[u8], cursor: &mut SweepCursor, budget: usize, visit: &mut Visit<'_>) -> Result<()> {
        sweep_in_key_order(|from, scan| self.scan_from(prefix, from, scan), cursor, 0, budget, |_| false, visit)
    }
    /// A read-only view of the store as it is now, unaffected by later writes: what a
    /// checkpoint reads off the worker (an MVCC snapshot, taken in microseconds).
    fn frozen(&self) -> Box<dyn Frozen>;
}

/// Goes on with a sweep over a store's entries in key order from the cursor's place
/// (`scan` from a key): visits those `skip` does not name, counting every entry in
/// `seen`, until it reaches `budget`; then leaves the cursor after the last entry seen,
/// or, at the end, at the start of a new pass.
fn sweep_in_key_order(
    scan: impl FnOnce(&[u8], &mut Visit<'_>) -> Result<()>,
    cursor: &mut SweepCursor,
    mut seen: usize,
    budget: usize,
    skip: impl Fn(&[u8]) -> bool,
    visit: &mut Visit<'_>,
) -> Result<()> {
    let from = std::mem::take(&mut cursor.tree_from);
    let mut last = None;
    scan(&from, &mut |key, value| {
        seen += 1;
        if !skip(key) && !visit(key, value)? {
            return Ok(false);
        }
        if seen >= budget {
            last = Some(key.to_vec());
            return Ok(false);
        }
        Ok(true)
    })?;
    match last {
        Some(mut key) => {
            key.push(0);
            cursor.tree_from = key;
        }
        None => *cursor = SweepCursor::default(),
    }
    Ok(())
}

/// Where a TTL sweep of a table goes on from.
#[derive(Debug, Default, Clone)]
pub struct SweepCursor {
    /// The next cached entry to look at, by position.
    slot: usize,
    /// Whether the cache was swept and the tree is being swept.
    in_tree: bool,
    /// The tree's next key to look at (empty: the table's start).
    tree_from: Vec<u8>,
}

/// A frozen view of a [`Kv`] store.
pub trait Frozen: Send {
    /// As [`Kv::get`], on the view.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// As [`Kv::scan_prefix`], on the view.
    fn scan_prefix(&self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<()>;
}

/// A store that records its first failure in a [`Health`] and refuses every write
/// after it, so that nothing is written on top of a failed write.
struct Guarded {
    kv: Arc<dyn Kv>,
    health: Health,
}

impl Guarded {
    fn noted<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result {
            self.health.record(error);
        }
        result
    }

    fn writable(&self) -> Result<()> {
        match self.health.failed() {
            true => {
                Err(Error::State { operator: "store".into(), message: "not written after an earlier failure".into() })
            }
            false => Ok(()),
        }
    }
}

impl Kv for Guarded {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.noted(self.kv.get(key))
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.writable()?;
        self.noted(self.kv.put(key, value))
    }
    fn delete(&self, key: &[u8]) -> Result<()> {
        self.writable()?;
        self.noted(self.kv.delete(key))
    }
    fn scan_from(&self, prefix: &[u8], from: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        self.noted(self.kv.scan_from(prefix, from, visit))
    }
    fn keep_ordered(&self, table: [u8; 2]) {
        self.kv.keep_ordered(table)
    }
    fn sweep(&self, prefix: &[u8], cursor: &mut SweepCursor, budget: usize, visit: &mut Visit<'_>) -> Result<()> {
        self.noted(self.kv.sweep(prefix, cursor, budget, visit))
    }
    fn frozen(&self) -> Box<dyn Frozen> {
        self.kv.frozen()
    }
}

/// `kv`, recording its failures in `health` and refusing writes after the first.
pub fn guarded(kv: Arc<dyn Kv>, health: Health) -> Arc<dyn Kv> {
    Arc::new(Guarded { kv, health })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValueTable;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store whose writes fail.
    #[derive(Default)]
    struct BrokenDisk {
        writes: AtomicUsize,
    }

    impl Kv for BrokenDisk {
        fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(None)
        }
        fn put(&self, _key: &[u8], _value: &[u8]) -> Result<()> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Err(Error::State { operator: "store".into(), message: "no space left on device".into() })
        }
        fn delete(&self, _key: &[u8]) -> Result<()> {
            Ok(())
        }
        fn scan_from(&self, _prefix: &[u8], _from: &[u8], _visit: &mut Visit<'_>) -> Result<()> {
            Ok(())
        }
        fn frozen(&self) -> Box<dyn Frozen> {
            unimplemented!("not snapshotted in this test")
        }
    }

    #[test]
    fn a_failing_disk_is_recorded_not_a_panic_and_nothing_is_written_after_it() {
        let disk = Arc::new(BrokenDisk::default());
        let health = Health::default();
        let kv = guarded(disk.clone(), health.clone());
        let mut table = DiskValueTable::<u64, u64>::new(kv, health.clone(), 0, 128, None);
        table.set(&1, 10, 0);
        table.set(&2, 20, 0);
        assert_eq!(table.get(&1, 0), None);
        let error = health.check("window").unwrap_err().to_string();
        assert!(error.contains("no space left"), "{error}");
        assert_eq!(disk.writes.load(Ordering::SeqCst), 1, "no write after the failed one");
    }
}
