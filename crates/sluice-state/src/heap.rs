//! The heap backend: objects in hash maps, with a write timestamp per entry for TTL.

use crate::table::{EntrySink, LaterSnapshot};
use crate::{ListTable, MapTable, StateTable, StateTtl, TtlUpdate, ValueTable};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sluice_runtime::checkpoint::{decode, encode};
use sluice_types::{Data, Key, Result, Timestamp, MIN_TIMESTAMP};
use std::any::Any;
use std::hash::Hash;

/// The checkpoint hooks shared by the three heap tables: entries are written as they
/// are kept, key by key.
macro_rules! snapshot_entries {
    () => {
        fn snapshot(&self, sink: &mut EntrySink<'_, K>) -> Result<()> {
            for (key, entry) in &self.entries {
                sink(key, encode(entry)?)?;
            }
            Ok(())
        }
        fn restore(&mut self, key: K, entry: &[u8]) -> Result<()> {
            self.entries.insert(key, decode(entry)?);
            Ok(())
        }
        fn snapshot_later(&mut self) -> Option<LaterSnapshot<K>> {
            // Freezing the heap is copying it; encoding the copy happens off the worker.
            let entries = self.entries.clone();
            Some(Box::new(move |sink| {
                for (key, entry) in &entries {
                    sink(key, encode(entry)?)?;
                }
                Ok(())
            }))
        }
    };
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    pub(crate) touched: Timestamp,
}

pub(crate) fn live<V>(entry: &Entry<V>, ttl: Option<&StateTtl>, now: Timestamp) -> bool {
    // An entry written before the clock started (no watermark yet) counts as written
    // at the first sweep, below.
    entry.touched == MIN_TIMESTAMP || ttl.is_none_or(|ttl| !ttl.is_expired(entry.touched, now))
}

/// Sweep step: keeps live entries and starts the clock of entries written before it ran.
fn sweep<V>(entry: &mut Entry<V>, ttl: Option<&StateTtl>, now: Timestamp) -> bool {
    if entry.touched == MIN_TIMESTAMP {
        entry.touched = now;
        return true;
    }
    live(entry, ttl, now)
}

pub(crate) fn refresh_on_read(ttl: Option<&StateTtl>) -> bool {
    ttl.is_some_and(|t| t.update == TtlUpdate::OnReadAndWrite)
}

/// One value per key.
pub struct HeapValueTable<K, V> {
    entries: FxHashMap<K, Entry<V>>,
    ttl: Option<StateTtl>,
}

impl<K, V> HeapValueTable<K, V> {
    /// An empty table.
    pub fn new(ttl: Option<StateTtl>) -> Self {
        HeapValueTable { entries: FxHashMap::default(), ttl }
    }
}

impl<K: Key, V: Data> StateTable<K> for HeapValueTable<K, V> {
    snapshot_entries!();
    fn cleanup(&mut self, now: Timestamp) {
        let ttl = self.ttl;
        self.entries.retain(|_, e| sweep(e, ttl.as_ref(), now));
    }
    fn clear_key(&mut self, key: &K) {
        self.entries.remove(key);
    }
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<K: Key, V: Data> ValueTable<K, V> for HeapValueTable<K, V> {
    fn get(&mut self, key: &K, now: Timestamp) -> Option<V> {
        let ttl = self.ttl;
        let entry = self.entries.get_mut(key)?;
        if !live(entry, ttl.as_ref(), now) {
            self.entries.remove(key);
            return None;
        }
        if refresh_on_read(ttl.as_ref()) {
            entry.touched = now;
        }
        Some(entry.value.clone())
    }

    fn set(&mut self, key: &K, value: V, now: Timestamp) {
        match self.entries.get_mut(key) {
            Some(entry) => *entry = Entry { value, touched: now },
            None => {
                self.entries.insert(key.clone(), Entry { value, touched: now });
            }
        }
    }

    fn update(&mut self, key: &K, now: Timestamp, change: &mut dyn FnMut(Option<V>) -> Option<V>) {
        let current = self.get(key, now);
        match change(current) {
            Some(value) => self.set(key, value, now),
            None => {
                self.entries.remove(key);
            }
        }
    }
}

/// A list per key; each element has its own time to live.
pub struct HeapListTable<K, V> {
    entries: FxHashMap<K, Vec<Entry<V>>>,
    ttl: Option<StateTtl>,
}

impl<K, V> HeapListTable<K, V> {
    /// An empty table.
    pub fn new(ttl: Option<StateTtl>) -> Self {
        HeapListTable { entries: FxHashMap::default(), ttl }
    }
}

impl<K: Key, V: Data> StateTable<K> for HeapListTable<K, V> {
    snapshot_entries!();
    fn cleanup(&mut self, now: Timestamp) {
        let ttl = self.ttl;
        self.entries.retain(|_, list| {
            list.retain_mut(|e| sweep(e, ttl.as_ref(), now));
            !list.is_empty()
        });
    }
    fn clear_key(&mut self, key: &K) {
        self.entries.remove(key);
    }
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<K: Key, V: Data> ListTable<K, V> for HeapListTable<K, V> {
    fn get(&mut self, key: &K, now: Timestamp) -> Vec<V> {
        let ttl = self.ttl;
        let Some(list) = self.entries.get_mut(key) else {
            return Vec::new();
        };
        list.retain(|e| live(e, ttl.as_ref(), now));
        if refresh_on_read(ttl.as_ref()) {
            list.iter_mut().for_each(|e| e.touched = now);
        }
        let values = list.iter().map(|e| e.value.clone()).collect();
        if list.is_empty() {
            self.entries.remove(key);
        }
        values
    }

    fn add(&mut self, key: &K, value: V, now: Timestamp) {
        match self.entries.get_mut(key) {
            Some(list) => list.push(Entry { value, touched: now }),
            None => {
                self.entries.insert(key.clone(), vec![Entry { value, touched: now }]);
            }
        }
    }

    fn replace(&mut self, key: &K, values: Vec<V>, now: Timestamp) {
        if values.is_empty() {
            self.entries.remove(key);
        } else {
            self.entries.insert(key.clone(), values.into_iter().map(|value| Entry { value, touched: now }).collect());
        }
    }
}

/// A map per key; each entry has its own time to live.
pub struct HeapMapTable<K, UK, UV> {
    entries: FxHashMap<K, FxHashMap<UK, Entry<UV>>>,
    ttl: Option<StateTtl>,
}

impl<K, UK, UV> HeapMapTable<K, UK, UV> {
    /// An empty table.
    pub fn new(ttl: Option<StateTtl>) -> Self {
        HeapMapTable { entries: FxHashMap::default(), ttl }
    }
}

impl<K: Key, UK: Data + Hash + Eq, UV: Data> StateTable<K> for HeapMapTable<K, UK, UV> {
    snapshot_entries!();
    fn cleanup(&mut self, now: Timestamp) {
        let ttl = self.ttl;
        self.entries.retain(|_, map| {
            map.retain(|_, e| sweep(e, ttl.as_ref(), now));
            !map.is_empty()
        });
    }
    fn clear_key(&mut self, key: &K) {
        self.entries.remove(key);
    }
    fn len(&self) -> usize {
        self.entries.len()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<K: Key, UK: Data + Hash + Eq + Ord, UV: Data> MapTable<K, UK, UV> for HeapMapTable<K, UK, UV> {
    fn get(&mut self, key: &K, user_key: &UK, now: Timestamp) -> Option<UV> {
        let ttl = self.ttl;
        let map = self.entries.get_mut(key)?;
        let entry = map.get_mut(user_key)?;
        if !live(entry, ttl.as_ref(), now) {
            map.remove(user_key);
            return None;
        }
        if refresh_on_read(ttl.as_ref()) {
            entry.touched = now;
        }
        Some(entry.value.clone())
    }

    fn put(&mut self, key: &K, user_key: UK, value: UV, now: Timestamp) {
        self.entries.entry(key.clone()).or_default().insert(user_key, Entry { value, touched: now });
    }

    fn remove(&mut self, key: &K, user_key: &UK) {
        if let Some(map) = self.entries.get_mut(key) {
            map.remove(user_key);
            if map.is_empty() {
                self.entries.remove(key);
            }
        }
    }

    fn entries(&mut self, key: &K, now: Timestamp) -> Vec<(UK, UV)> {
        let ttl = self.ttl;
        let Some(map) = self.entries.get_mut(key) else {
            return Vec::new();
        };
        map.retain(|_, e| live(e, ttl.as_ref(), now));
        let refresh = refresh_on_read(ttl.as_ref());
        let mut entries: Vec<(UK, UV)> = map
            .iter_mut()
            .map(|(k, e)| {
                if refresh {
                    e.touched = now;
                }
                (k.clone(), e.value.clone())
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    }
}
