//! One value per key, for operators that keep a single accumulator per key (rolling
//! reduce and aggregate), in the job's backend.
//!
//! On the heap the values sit in a hash map updated in place, with no dispatch per
//! record; on disk they are a value state of a [`KeyedStateStore`], within its memory
//! budget and with incremental checkpoints. Both write checkpoints in the store's
//! format (each key with its state's name and its entry: the value and, for TTL, when it
//! was written), so a savepoint taken on one backend restores on the other.

use crate::heap::Entry;
use crate::{KeyedStateStore, StateBackendKind, StateDescriptor, ValueState};
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{decode, encode, StateReader, StateWriter};
use sluice_types::{Data, Key, Result, MIN_TIMESTAMP};

/// A value per key, on the heap or on disk.
pub struct KeyedValues<K, V> {
    name: String,
    values: Values<K, V>,
}

enum Values<K, V> {
    Heap(FxHashMap<K, V>),
    Store { store: Box<KeyedStateStore<K>>, state: ValueState<V> },
}

impl<K: Key, V: Data> KeyedValues<K, V> {
    /// Values named `name` (in checkpoints) kept as `backend` says.
    pub fn new(backend: &StateBackendKind, name: &str) -> Self {
        let values = match backend {
            StateBackendKind::Heap => Values::Heap(FxHashMap::default()),
            StateBackendKind::OnDisk(_) => {
                let mut store = KeyedStateStore::new(backend.clone());
                let state = store.value(&StateDescriptor::new(name));
                Values::Store { store: Box::new(store), state }
            }
        };
        KeyedValues { name: name.to_string(), values }
    }

    /// A timer queue in the same backend as the values (for the operator that keeps
    /// them): on the heap, or beyond a head of the earliest timers in their store.
    pub fn timer_queue(&mut self, queue: u8) -> crate::KeyedTimers<K> {
        match &mut self.values {
            Values::Heap(_) => crate::KeyedTimers::default(),
            Values::Store { store, .. } => store.timer_queue(queue),
        }
    }

    /// Changes `key`'s value with `modify`, or gives it the value `insert` makes if it
    /// has none; returns what `read` makes of the new value.
    pub fn upsert<R>(
        &mut self,
        key: &K,
        insert: impl FnOnce() -> V,
        modify: impl FnOnce(&mut V),
        read: impl FnOnce(&V) -> R,
    ) -> R {
        match &mut self.values {
            Values::Heap(map) => match map.get_mut(key) {
                Some(value) => {
                    modify(value);
                    read(value)
                }
                None => read(map.entry(key.clone()).or_insert_with(insert)),
            },
            Values::Store { store, state } => {
                let value = match store.get(*state, key) {
                    Some(mut value) => {
                        modify(&mut value);
                        value
                    }
                    None => insert(),
                };
                let result = read(&value);
                store.set(*state, key, value);
                result
            }
        }
    }

    /// Calls `f` with `key`'s value (the default value if it has none), which `f` may
    /// change; the key keeps the value if `keep` says so, else it is removed. On the
    /// heap a present value is changed in place (one lookup, no copy).
    pub fn with<R>(&mut self, key: &K, keep: fn(&V) -> bool, f: impl FnOnce(&mut V) -> R) -> R
    where
        V: Default,
    {
        match &mut self.values {
            Values::Heap(map) => match map.get_mut(key) {
                Some(value) => {
                    let result = f(value);
                    if !keep(value) {
                        map.remove(key);
                    }
                    result
                }
                None => {
                    let mut value = V::default();
                    let result = f(&mut value);
                    if keep(&value) {
                        map.insert(key.clone(), value);
                    }
                    result
                }
            },
            Values::Store { store, state } => {
                let mut value = store.get(*state, key).unwrap_or_default();
                let result = f(&mut value);
                if keep(&value) {
                    store.set(*state, key, value);
                } else {
                    store.clear(state.index(), key);
                }
                result
            }
        }
    }

    /// The value held in a checkpoint entry of these values (as `restore_entries`
    /// takes them), for operators that index what they restore.
    pub fn decode(&self, entry: &[u8]) -> Result<V> {
        Ok(decode::<Entry<V>>(entry)?.value)
    }

    /// How many keys have a value.
    pub fn len(&self) -> usize {
        match &self.values {
            Values::Heap(map) => map.len(),
            Values::Store { store, .. } => store.sizes().into_iter().map(|(_, n)| n).sum(),
        }
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fails with the first failure of the on-disk store, naming `operator`.
    pub fn check(&self, operator: &str) -> Result<()> {
        match &self.values {
            Values::Heap(_) => Ok(()),
            Values::Store { store, .. } => store.check(operator),
        }
    }

    /// Writes every key's value (on disk: what changed since the last checkpoint).
    pub fn snapshot(&mut self, writer: &mut StateWriter) -> Result<()> {
        match &mut self.values {
            Values::Heap(map) => {
                let name = self.name.as_str();
                map.iter().try_for_each(|(key, value)| {
                    let entry = encode(&Entry { value, touched: MIN_TIMESTAMP })?;
                    writer.keyed(key, &(name, entry))
                })
            }
            Values::Store { store, .. } => store.snapshot(writer),
        }
    }

    /// Restores what [`KeyedValues::snapshot`] wrote, on either backend.
    pub fn restore(&mut self, reader: &StateReader) -> Result<()> {
        reader.for_each_state_entry(|key, name, entry| self.restore_entry(key, name, entry))?;
        self.finish_restore();
        Ok(())
    }

    /// Restores the entries of an on-disk store, one at a time, and ends the restore:
    /// the last step of every restore.
    pub fn restore_changes(&mut self, reader: &StateReader) -> Result<()> {
        reader.for_each_named_change(|key, name, entry| self.restore_entry(key, name, entry))?;
        self.finish_restore();
        Ok(())
    }

    /// Restores entries as [`KeyedValues::restore_entry`] does, and ends the restore.
    pub fn restore_entries(&mut self, entries: Vec<(K, (String, Vec<u8>))>) -> Result<()> {
        for (key, (name, entry)) in entries {
            self.restore_entry(key, &name, &entry)?;
        }
        self.finish_restore();
        Ok(())
    }

    /// Ends a restore made of [`KeyedValues::restore_entry`] calls.
    pub fn finish_restore(&mut self) {
        if let Values::Store { store, .. } = &mut self.values {
            store.finish_restore();
        }
    }

    /// Restores one entry as [`KeyedValues::restore`] does, for operators that keep more
    /// than these values under the same keys (timers); an entry of another name is
    /// ignored. [`KeyedValues::restore_changes`] or [`KeyedValues::finish_restore`]
    /// ends the restore.
    pub fn restore_entry(&mut self, key: K, name: &str, entry: &[u8]) -> Result<()> {
        if name != self.name {
            return Ok(());
        }
        match &mut self.values {
            // An empty entry: the key was deleted after an earlier snapshot.
            Values::Heap(map) if entry.is_empty() => {
                map.remove(&key);
            }
            Values::Heap(map) => {
                map.insert(key, decode::<Entry<V>>(entry)?.value);
            }
            Values::Store { store, .. } => store.restore_entry(key, name, entry)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DiskBackend;

    fn counts(backend: &StateBackendKind) -> KeyedValues<u32, u64> {
        KeyedValues::new(backend, "count")
    }

    fn add(values: &mut KeyedValues<u32, u64>, key: u32) -> u64 {
        values.upsert(&key, || 1, |n| *n += 1, |n| *n)
    }

    #[test]
    fn values_move_between_the_heap_and_the_disk_through_a_checkpoint() {
        let dir = tempfile::tempdir().expect("dir");
        let disk = StateBackendKind::OnDisk(DiskBackend::new(dir.path()));
        for (from, to) in [(&StateBackendKind::Heap, &disk), (&disk, &StateBackendKind::Heap)] {
            let mut values = counts(from);
            assert_eq!([add(&mut values, 1), add(&mut values, 2), add(&mut values, 1)], [1, 1, 2]);
            let mut writer = StateWriter::new(128);
            values.snapshot(&mut writer).expect("snapshot");
            let (mut state, deferred) = writer.split();
            StateWriter::complete(&mut state, deferred, 128).expect("encoded");
            let mut restored = counts(to);
            restored.restore(&StateReader::new(state)).expect("restore");
            assert_eq!([add(&mut restored, 1), add(&mut restored, 2), add(&mut restored, 3)], [3, 2, 1]);
        }
    }
}
