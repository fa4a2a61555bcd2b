//! The interfaces every state backend implements.

use sluice_types::{Result, Timestamp};
use std::any::Any;

/// Receives a table's entries for a checkpoint: a key and its encoded entry.
pub type EntrySink<'a, K> = dyn FnMut(&K, Vec<u8>) -> Result<()> + 'a;

/// A full snapshot of a table, to be written later, off the worker, from a frozen view.
pub type LaterSnapshot<K> = Box<dyn for<'a> FnOnce(&mut EntrySink<'a, K>) -> Result<()> + Send>;

/// What every table offers the store, whatever its type.
pub trait StateTable<K>: Send {
    /// Removes expired entries; `now` is measured on the table's TTL clock.
    fn cleanup(&mut self, now: Timestamp);
    /// Whether [`StateTable::cleanup`] sweeps a slice of the table, in proportion to the
    /// writes since the last call, rather than all of it: then it runs on every
    /// occasion, not once per cleanup interval.
    fn incremental_cleanup(&self) -> bool {
        false
    }
    /// Removes everything stored for `key`.
    fn clear_key(&mut self, key: &K);
    /// Number of keys with an entry.
    fn len(&self) -> usize;
    /// Whether no key has an entry.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The table as `Any`, to reach its typed interface.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Hands every key's encoded entry to `sink`, for a checkpoint.
    fn snapshot(&self, sink: &mut EntrySink<'_, K>) -> Result<()>;
    /// Puts back one key's entry written by [`StateTable::snapshot`].
    fn restore(&mut self, key: K, entry: &[u8]) -> Result<()>;
    /// Hands `sink` the entry of every key changed since the last call (or
    /// [`StateTable::forget_changes`]), as it is now, or an empty entry for a key that
    /// has none any more. Only on-disk tables record changes; the others write all.
    fn snapshot_changes(&mut self, sink: &mut EntrySink<'_, K>) -> Result<()> {
        self.snapshot(sink)
    }
    /// The changes [`StateTable::snapshot_changes`] would write, written later from a
    /// frozen view, for tables that can freeze (on disk).
    fn changes_later(&mut self) -> Option<LaterSnapshot<K>> {
        None
    }
    /// A full snapshot written later from a frozen view, for tables that can freeze
    /// (on disk); the heap tables write theirs at once.
    fn snapshot_later(&mut self) -> Option<LaterSnapshot<K>> {
        None
    }
    /// Forgets the changes recorded so far (a full snapshot was just taken), and records
    /// them from now on.
    fn forget_changes(&mut self) {}
}

/// One value per key.
pub trait ValueTable<K, V>: StateTable<K> {
    /// The value of `key`, unless absent or expired.
    fn get(&mut self, key: &K, now: Timestamp) -> Option<V>;
    /// Sets the value of `key`.
    fn set(&mut self, key: &K, value: V, now: Timestamp);
    /// Reads, changes and writes back the value of `key` in one step.
    fn update(&mut self, key: &K, now: Timestamp, change: &mut dyn FnMut(Option<V>) -> Option<V>);
}

/// A list of values per key.
pub trait ListTable<K, V>: StateTable<K> {
    /// The live elements of `key`'s list.
    fn get(&mut self, key: &K, now: Timestamp) -> Vec<V>;
    /// Appends to `key`'s list.
    fn add(&mut self, key: &K, value: V, now: Timestamp);
    /// Replaces `key`'s list.
    fn replace(&mut self, key: &K, values: Vec<V>, now: Timestamp);
}

/// A map per key.
pub trait MapTable<K, UK, UV>: StateTable<K> {
    /// The value under `user_key` in `key`'s map.
    fn get(&mut self, key: &K, user_key: &UK, now: Timestamp) -> Option<UV>;
    /// Puts a value into `key`'s map.
    fn put(&mut self, key: &K, user_key: UK, value: UV, now: Timestamp);
    /// Removes an entry from `key`'s map.
    fn remove(&mut self, key: &K, user_key: &UK);
    /// The live entries of `key`'s map, sorted by user key.
    fn entries(&mut self, key: &K, now: Timestamp) -> Vec<(UK, UV)>;
}
