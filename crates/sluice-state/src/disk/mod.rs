//! The on-disk backend: keyed state in an embedded LSM store, for state larger than
//! memory.
//!
//! Every table of an operator instance lives in the instance's own store, under a
//! prefix: `[table: u16][key group: u16][key]` (big-endian, the key in postcard), plus
//! `[user key]` for map state. Values are encoded as the heap backend keeps them (the
//! value and its last write time, for TTL), so both backends expire entries alike.
//! The key group comes right after the table so that a worker restoring another
//! parallelism reads whole key-group ranges.

mod lsm;
mod tables;

pub use lsm::{DiskBackend, DEFAULT_MEMORY_BUDGET};
pub use tables::{DiskListTable, DiskMapTable, DiskValueTable};

use sluice_types::Result;

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
    /// Calls `visit` with every entry whose key starts with `prefix`, in key order,
    /// until it returns `false`.
    fn scan_prefix(&self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<()>;
    /// A read-only view of the store as it is now, unaffected by later writes: what a
    /// checkpoint reads off the worker (an MVCC snapshot, taken in microseconds).
    fn frozen(&self) -> Box<dyn Frozen>;
}

/// A frozen view of a [`Kv`] store.
pub trait Frozen: Send {
    /// As [`Kv::get`], on the view.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// As [`Kv::scan_prefix`], on the view.
    fn scan_prefix(&self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<()>;
}
