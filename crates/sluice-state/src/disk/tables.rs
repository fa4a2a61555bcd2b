//! Value, list and map tables over a [`Kv`] store.

use super::{Kv, SweepCursor, Visit};
use crate::heap::{live, refresh_on_read, Entry};
use crate::table::{EntrySink, LaterSnapshot};
use crate::{Health, ListTable, MapTable, StateTable, StateTtl, ValueTable};
use rustc_hash::FxHashSet;
use sluice_runtime::checkpoint::{decode, encode};
use sluice_types::{hash_key, key_group_for_hash, Data, Error, Key, Result, Timestamp, MIN_TIMESTAMP};
use std::any::Any;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

/// Where one table's entries live in the store, how their keys are encoded, and which
/// stored keys changed since the last snapshot.
struct Layout {
    kv: Arc<dyn Kv>,
    /// Where a failure is recorded (table methods cannot return errors): the operator
    /// fails the job at the end of the batch.
    health: Health,
    table: u16,
    max_parallelism: u16,
    /// Whether changes are recorded: from the first checkpoint on (before it, the next
    /// snapshot is full anyway, and a job without checkpoints never needs them).
    tracking: bool,
    changed: FxHashSet<Vec<u8>>,
    /// Where the next TTL sweep goes on from.
    sweep_from: SweepCursor,
    /// Writes since the last sweep, which size the next one.
    written: usize,
}

impl Layout {
    /// `[table][key group][key]`.
    fn key<K: Key>(&self, key: &K) -> Vec<u8> {
        let group = key_group_for_hash(hash_key(key), self.max_parallelism).0;
        let mut bytes = Vec::with_capacity(24);
        bytes.extend_from_slice(&self.table.to_be_bytes());
        bytes.extend_from_slice(&group.to_be_bytes());
        let encoded = postcard::to_extend(key, bytes).map_err(|e| Error::checkpoint("state", e.to_string()));
        self.health.ok(encoded).unwrap_or_default()
    }

    fn new(kv: Arc<dyn Kv>, health: Health, table: u16, max_parallelism: u16) -> Self {
        Layout {
            kv,
            health,
            table,
            max_parallelism,
            tracking: false,
            changed: FxHashSet::default(),
            sweep_from: SweepCursor::default(),
            written: 0,
        }
    }

    fn decoded<E: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Option<E> {
        self.health.ok(decode(bytes))
    }

    fn put_encoded<E: serde::Serialize + ?Sized>(&mut self, key: &[u8], value: &E) {
        if let Some(bytes) = self.health.ok(encode(value)) {
            self.put(key, &bytes);
        }
    }

    fn table_prefix(&self) -> [u8; 2] {
        self.table.to_be_bytes()
    }

    /// The key inside a stored key, and what follows it (a map's user key).
    fn split_key<K: Key>(stored: &[u8]) -> Result<(K, &[u8])> {
        let rest = stored.get(4..).ok_or_else(|| Error::checkpoint("state", "a stored key is too short"))?;
        postcard::take_from_bytes::<K>(rest).map_err(|e| Error::checkpoint("state", e.to_string()))
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.health.ok(self.kv.get(key)).flatten()
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.written += 1;
        if self.health.ok(self.kv.put(key, value)).is_some() && self.tracking {
            self.changed.insert(key.to_vec());
        }
    }

    fn delete(&mut self, key: &[u8]) {
        self.written += 1;
        if self.health.ok(self.kv.delete(key)).is_some() && self.tracking {
            self.changed.insert(key.to_vec());
        }
    }

    /// Forgets the recorded changes, and records them from now on.
    fn forget_changes(&mut self) {
        self.changed.clear();
        self.tracking = true;
    }

    /// Hands `sink` each changed key's stored entry, or an empty one if it was deleted;
    /// for tables with one stored entry per key.
    fn snapshot_changes<K: Key>(&mut self, sink: &mut EntrySink<'_, K>) -> Result<()> {
        for stored in std::mem::take(&mut self.changed) {
            let (key, _) = Layout::split_key::<K>(&stored)?;
            sink(&key, self.kv.get(&stored)?.unwrap_or_default())?;
        }
        Ok(())
    }

    /// What [`Layout::snapshot_changes`] writes, written later from a frozen view.
    fn changes_later<K: Key>(&mut self) -> LaterSnapshot<K> {
        let changed = std::mem::take(&mut self.changed);
        let frozen = self.kv.frozen();
        Box::new(move |sink| {
            for stored in changed {
                let (key, _) = Layout::split_key::<K>(&stored)?;
                sink(&key, frozen.get(&stored)?.unwrap_or_default())?;
            }
            Ok(())
        })
    }

    /// Every entry of this table, as stored.
    fn scan(&self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        self.kv.scan_prefix(prefix, visit)
    }
}

/// The count of keys, kept by scanning: tables on disk do not track it on every write.
fn count_keys(layout: &Layout, distinct_prefix: impl Fn(&[u8]) -> usize) -> usize {
    let mut count = 0;
    let mut last: Vec<u8> = Vec::new();
    let _ = layout.scan(&layout.table_prefix(), &mut |key, _| {
        let head = &key[..distinct_prefix(key).min(key.len())];
        if head != last.as_slice() {
            count += 1;
            last = head.to_vec();
        }
        Ok(true)
    });
    count
}

/// The `StateTable` hooks of the tables stored as one entry per key (value and list).
macro_rules! per_key_table_hooks {
    () => {
        fn clear_key(&mut self, key: &K) {
            let stored_key = self.layout.key(key);
            self.layout.delete(&stored_key);
        }
        fn len(&self) -> usize {
            count_keys(&self.layout, |key| key.len())
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
        fn snapshot(&self, sink: &mut EntrySink<'_, K>) -> Result<()> {
            snapshot_per_key(&self.layout, sink)
        }
        fn restore(&mut self, key: K, entry: &[u8]) -> Result<()> {
            self.layout.kv.put(&self.layout.key(&key), entry)
        }
        fn snapshot_changes(&mut self, sink: &mut EntrySink<'_, K>) -> Result<()> {
            self.layout.snapshot_changes(sink)
        }
        fn changes_later(&mut self) -> Option<LaterSnapshot<K>> {
            Some(self.layout.changes_later())
        }
        fn snapshot_later(&mut self) -> Option<LaterSnapshot<K>> {
            Some(later_per_key(&self.layout))
        }
        fn forget_changes(&mut self) {
            self.layout.forget_changes();
        }
    };
}

/// One value per key, on disk.
pub struct DiskValueTable<K, V> {
    layout: Layout,
    ttl: Option<StateTtl>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> DiskValueTable<K, V> {
    /// Table number `table` of the store `kv`.
    pub fn new(kv: Arc<dyn Kv>, health: Health, table: u16, max_parallelism: u16, ttl: Option<StateTtl>) -> Self {
        DiskValueTable { layout: Layout::new(kv, health, table, max_parallelism), ttl, _types: PhantomData }
    }
}

/// Removes expired entries of a table whose stored values are `E`, and starts the
/// clock of entries written before it ran; `keep` decides and may rewrite an entry.
///
/// A sweep is incremental: it goes on from where the last one stopped, over twice as
/// many entries as were written since (none if nothing was written), wrapping around
/// the table. So sweeping costs in proportion to the input, not to the state, and
/// keeps pace with it: expired entries (never returned by reads anyway) are removed
/// within about one pass over the table per half its size in writes.
fn sweep_table<E: Data>(layout: &mut Layout, mut keep: impl FnMut(&mut E) -> Sweep) {
    let budget = layout.written.saturating_mul(2);
    if budget == 0 {
        return;
    }
    let prefix = layout.table_prefix();
    let mut changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    let swept = layout.kv.sweep(&prefix, &mut layout.sweep_from, budget, &mut |key, value| {
        let mut entry: E = decode(value)?;
        match keep(&mut entry) {
            Sweep::Keep => {}
            Sweep::Rewrite => changes.push((key.to_vec(), Some(encode(&entry)?))),
            Sweep::Drop => changes.push((key.to_vec(), None)),
        }
        Ok(true)
    });
    layout.health.ok(swept);
    for (key, value) in changes {
        match value {
            Some(value) => layout.put(&key, &value),
            None => layout.delete(&key),
        }
    }
    // The sweep's own writes do not size the next sweep.
    layout.written = 0;
}

/// What a sweep does with one stored entry.
enum Sweep {
    Keep,
    Rewrite,
    Drop,
}

fn sweep_entry<V>(entry: &mut Entry<V>, ttl: Option<&StateTtl>, now: Timestamp) -> Sweep {
    if entry.touched == MIN_TIMESTAMP {
        entry.touched = now;
        Sweep::Rewrite
    } else if live(entry, ttl, now) {
        Sweep::Keep
    } else {
        Sweep::Drop
    }
}

/// The checkpoint hooks of a table stored as one entry per key.
fn snapshot_per_key<K: Key>(layout: &Layout, sink: &mut EntrySink<'_, K>) -> Result<()> {
    write_per_key(&|prefix, visit| layout.scan(prefix, visit), &layout.table_prefix(), sink)
}

/// How the snapshot code reads a store, live or frozen.
type Scan<'a> = dyn Fn(&[u8], &mut Visit<'_>) -> Result<()> + 'a;

/// Writes a table stored as one entry per key: each key and its stored entry.
fn write_per_key<K: Key>(scan: &Scan<'_>, prefix: &[u8], sink: &mut EntrySink<'_, K>) -> Result<()> {
    scan(prefix, &mut |key, value| {
        let (key, _) = Layout::split_key::<K>(key)?;
        sink(&key, value.to_vec())?;
        Ok(true)
    })
}

/// A full snapshot of a table stored as one entry per key, written later from a frozen
/// view of the store.
fn later_per_key<K: Key>(layout: &Layout) -> LaterSnapshot<K> {
    let frozen = layout.kv.frozen();
    let prefix = layout.table_prefix();
    Box::new(move |sink| write_per_key(&|p, visit| frozen.scan_prefix(p, visit), &prefix, sink))
}

/// Writes a map table: one entry per key, its whole map, as the heap backend writes it.
fn write_maps<K: Key, UK: Data, UV: Data>(scan: &Scan<'_>, prefix: &[u8], sink: &mut EntrySink<'_, K>) -> Result<()> {
    let mut current: Option<KeyMap<K, UK, UV>> = None;
    scan(prefix, &mut |stored, value| {
        let (key, rest) = Layout::split_key::<K>(stored)?;
        let user_key: UK = decode(rest)?;
        let entry: Entry<UV> = decode(value)?;
        match &mut current {
            Some((k, map)) if *k == key => map.push((user_key, entry)),
            _ => {
                if let Some((k, map)) = current.take() {
                    sink(&k, encode(&map)?)?;
                }
                current = Some((key, vec![(user_key, entry)]));
            }
        }
        Ok(true)
    })?;
    if let Some((k, map)) = current {
        sink(&k, encode(&map)?)?;
    }
    Ok(())
}

impl<K: Key, V: Data> StateTable<K> for DiskValueTable<K, V> {
    fn incremental_cleanup(&self) -> bool {
        true
    }
    fn cleanup(&mut self, now: Timestamp) {
        let ttl = self.ttl;
        sweep_table::<Entry<V>>(&mut self.layout, |entry| sweep_entry(entry, ttl.as_ref(), now));
    }
    per_key_table_hooks!();
}

impl<K: Key, V: Data> ValueTable<K, V> for DiskValueTable<K, V> {
    fn get(&mut self, key: &K, now: Timestamp) -> Option<V> {
        let stored_key = self.layout.key(key);
        let mut entry: Entry<V> = self.layout.decoded(&self.layout.get(&stored_key)?)?;
        if !live(&entry, self.ttl.as_ref(), now) {
            self.layout.delete(&stored_key);
            return None;
        }
        if refresh_on_read(self.ttl.as_ref()) {
            entry.touched = now;
            self.layout.put_encoded(&stored_key, &entry);
        }
        Some(entry.value)
    }

    fn set(&mut self, key: &K, value: V, now: Timestamp) {
        let stored_key = self.layout.key(key);
        self.layout.put_encoded(&stored_key, &Entry { value, touched: now });
    }

    fn update(&mut self, key: &K, now: Timestamp, change: &mut dyn FnMut(Option<V>) -> Option<V>) {
        let current = self.get(key, now);
        match change(current) {
            Some(value) => self.set(key, value, now),
            None => self.clear_key(key),
        }
    }
}

/// A list per key, on disk, stored as one entry per key.
pub struct DiskListTable<K, V> {
    layout: Layout,
    ttl: Option<StateTtl>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> DiskListTable<K, V> {
    /// Table number `table` of the store `kv`.
    pub fn new(kv: Arc<dyn Kv>, health: Health, table: u16, max_parallelism: u16, ttl: Option<StateTtl>) -> Self {
        DiskListTable { layout: Layout::new(kv, health, table, max_parallelism), ttl, _types: PhantomData }
    }

    fn load(&self, stored_key: &[u8]) -> Vec<Entry<V>>
    where
        V: Data,
    {
        self.layout.get(stored_key).and_then(|bytes| self.layout.decoded(&bytes)).unwrap_or_default()
    }

    fn store(&mut self, stored_key: &[u8], list: &[Entry<V>])
    where
        V: Data,
    {
        if list.is_empty() {
            self.layout.delete(stored_key);
        } else {
            self.layout.put_encoded(stored_key, list);
        }
    }
}

impl<K: Key, V: Data> StateTable<K> for DiskListTable<K, V> {
    fn incremental_cleanup(&self) -> bool {
        true
    }
    fn cleanup(&mut self, now: Timestamp) {
        let ttl = self.ttl;
        sweep_table::<Vec<Entry<V>>>(&mut self.layout, |list| {
            let before = list.len();
            let started = list.iter().any(|e| e.touched == MIN_TIMESTAMP);
            list.retain_mut(|e| !matches!(sweep_entry(e, ttl.as_ref(), now), Sweep::Drop));
            match (list.is_empty(), list.len() != before || started) {
                (true, _) => Sweep::Drop,
                (false, true) => Sweep::Rewrite,
                (false, false) => Sweep::Keep,
            }
        });
    }
    per_key_table_hooks!();
}

impl<K: Key, V: Data> ListTable<K, V> for DiskListTable<K, V> {
    fn get(&mut self, key: &K, now: Timestamp) -> Vec<V> {
        let stored_key = self.layout.key(key);
        let mut list = self.load(&stored_key);
        let before = list.len();
        list.retain(|e| live(e, self.ttl.as_ref(), now));
        let refresh = refresh_on_read(self.ttl.as_ref());
        if refresh {
            list.iter_mut().for_each(|e| e.touched = now);
        }
        if refresh || list.len() != before {
            self.store(&stored_key, &list);
        }
        list.into_iter().map(|e| e.value).collect()
    }

    fn add(&mut self, key: &K, value: V, now: Timestamp) {
        let stored_key = self.layout.key(key);
        let mut list = self.load(&stored_key);
        list.push(Entry { value, touched: now });
        self.store(&stored_key, &list);
    }

    fn replace(&mut self, key: &K, values: Vec<V>, now: Timestamp) {
        let list: Vec<Entry<V>> = values.into_iter().map(|value| Entry { value, touched: now }).collect();
        let stored_key = self.layout.key(key);
        self.store(&stored_key, &list);
    }
}

/// One key's whole map, as a snapshot holds it.
type KeyMap<K, UK, UV> = (K, Vec<(UK, Entry<UV>)>);

/// A stored map entry: its stored key, user key and entry.
type StoredEntry<UK, UV> = (Vec<u8>, UK, Entry<UV>);

/// A map per key, on disk, one stored entry per (key, user key).
pub struct DiskMapTable<K, UK, UV> {
    layout: Layout,
    ttl: Option<StateTtl>,
    _types: MapTypes<K, UK, UV>,
}

/// The types a map table is for.
type MapTypes<K, UK, UV> = PhantomData<fn() -> KeyMap<K, UK, UV>>;

impl<K, UK, UV> DiskMapTable<K, UK, UV> {
    /// Table number `table` of the store `kv`.
    pub fn new(kv: Arc<dyn Kv>, health: Health, table: u16, max_parallelism: u16, ttl: Option<StateTtl>) -> Self {
        kv.keep_ordered(table.to_be_bytes());
        DiskMapTable { layout: Layout::new(kv, health, table, max_parallelism), ttl, _types: PhantomData }
    }
}

impl<K: Key, UK: Data + Hash + Eq + Ord, UV: Data> DiskMapTable<K, UK, UV> {
    fn entry_key(&self, key: &K, user_key: &UK) -> Vec<u8> {
        let encoded =
            postcard::to_extend(user_key, self.layout.key(key)).map_err(|e| Error::checkpoint("state", e.to_string()));
        self.layout.health.ok(encoded).unwrap_or_default()
    }

    /// Every (user key, entry) of `key`'s map.
    fn entries_of(&self, key: &K) -> Vec<StoredEntry<UK, UV>> {
        let prefix = self.layout.key(key);
        let mut entries = Vec::new();
        let scanned = self.layout.scan(&prefix, &mut |stored, value| {
            let user_key: UK = decode(&stored[prefix.len()..])?;
            entries.push((stored.to_vec(), user_key, decode(value)?));
            Ok(true)
        });
        self.layout.health.ok(scanned);
        entries
    }
}

impl<K: Key, UK: Data + Hash + Eq + Ord, UV: Data> StateTable<K> for DiskMapTable<K, UK, UV> {
    fn incremental_cleanup(&self) -> bool {
        true
    }
    fn cleanup(&mut self, now: Timestamp) {
        let ttl = self.ttl;
        sweep_table::<Entry<UV>>(&mut self.layout, |entry| sweep_entry(entry, ttl.as_ref(), now));
    }
    fn clear_key(&mut self, key: &K) {
        for (stored, _, _) in self.entries_of(key) {
            self.layout.delete(&stored);
        }
    }
    fn len(&self) -> usize {
        count_keys(&self.layout, |stored| {
            // The user key follows the key: count distinct keys.
            match Layout::split_key::<K>(stored) {
                Ok((_, rest)) => stored.len() - rest.len(),
                Err(_) => stored.len(),
            }
        })
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn snapshot(&self, sink: &mut EntrySink<'_, K>) -> Result<()> {
        let layout = &self.layout;
        write_maps::<K, UK, UV>(&|p, visit| layout.scan(p, visit), &layout.table_prefix(), sink)
    }
    fn snapshot_later(&mut self) -> Option<LaterSnapshot<K>> {
        let frozen = self.layout.kv.frozen();
        let prefix = self.layout.table_prefix();
        Some(Box::new(move |sink| write_maps::<K, UK, UV>(&|p, visit| frozen.scan_prefix(p, visit), &prefix, sink)))
    }
    fn snapshot_changes(&mut self, sink: &mut EntrySink<'_, K>) -> Result<()> {
        // A change to one user key writes the key's whole map, as a full snapshot does.
        let mut keys: Vec<K> = Vec::new();
        let mut seen: FxHashSet<Vec<u8>> = FxHashSet::default();
        for stored in std::mem::take(&mut self.layout.changed) {
            let (key, rest) = Layout::split_key::<K>(&stored)?;
            if seen.insert(stored[..stored.len() - rest.len()].to_vec()) {
                keys.push(key);
            }
        }
        for key in keys {
            let map: Vec<(UK, Entry<UV>)> = self.entries_of(&key).into_iter().map(|(_, uk, e)| (uk, e)).collect();
            sink(&key, if map.is_empty() { Vec::new() } else { encode(&map)? })?;
        }
        Ok(())
    }
    fn forget_changes(&mut self) {
        self.layout.forget_changes();
    }
    fn restore(&mut self, key: K, entry: &[u8]) -> Result<()> {
        // The key's whole map replaces what it had.
        for (stored, _, _) in self.entries_of(&key) {
            self.layout.kv.delete(&stored)?;
        }
        let map: Vec<(UK, Entry<UV>)> = decode(entry)?;
        for (user_key, entry) in map {
            self.layout.kv.put(&self.entry_key(&key, &user_key), &encode(&entry)?)?;
        }
        Ok(())
    }
}

impl<K: Key, UK: Data + Hash + Eq + Ord, UV: Data> MapTable<K, UK, UV> for DiskMapTable<K, UK, UV> {
    fn get(&mut self, key: &K, user_key: &UK, now: Timestamp) -> Option<UV> {
        let stored = self.entry_key(key, user_key);
        let mut entry: Entry<UV> = self.layout.decoded(&self.layout.get(&stored)?)?;
        if !live(&entry, self.ttl.as_ref(), now) {
            self.layout.delete(&stored);
            return None;
        }
        if refresh_on_read(self.ttl.as_ref()) {
            entry.touched = now;
            self.layout.put_encoded(&stored, &entry);
        }
        Some(entry.value)
    }

    fn put(&mut self, key: &K, user_key: UK, value: UV, now: Timestamp) {
        let stored = self.entry_key(key, &user_key);
        self.layout.put_encoded(&stored, &Entry { value, touched: now });
    }

    fn remove(&mut self, key: &K, user_key: &UK) {
        self.layout.delete(&self.entry_key(key, user_key));
    }

    fn entries(&mut self, key: &K, now: Timestamp) -> Vec<(UK, UV)> {
        let refresh = refresh_on_read(self.ttl.as_ref());
        let mut live_entries = Vec::new();
        for (stored, user_key, mut entry) in self.entries_of(key) {
            if !live(&entry, self.ttl.as_ref(), now) {
                self.layout.delete(&stored);
                continue;
            }
            if refresh {
                entry.touched = now;
                self.layout.put_encoded(&stored, &entry);
            }
            live_entries.push((user_key, entry.value));
        }
        live_entries.sort_by(|a, b| a.0.cmp(&b.0));
        live_entries
    }
}
