//! The keyed state of one operator instance.

use crate::disk::{DiskListTable, DiskMapTable, DiskValueTable, Kv};
use crate::heap::{HeapListTable, HeapMapTable, HeapValueTable};
use crate::{
    Health, ListState, ListTable, MapState, MapTable, StateDescriptor, StateTable, StateTtl, TtlClock, ValueState,
    ValueTable,
};
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_types::{Data, Error, Key, Result, Timestamp, MIN_TIMESTAMP};
use std::hash::Hash;
use std::sync::Arc;

/// Which backend keeps the state.
#[derive(Clone, Debug, Default)]
pub enum StateBackendKind {
    /// Objects in hash maps on the heap.
    #[default]
    Heap,
    /// An embedded LSM store on local disk, for state larger than memory.
    OnDisk(crate::DiskBackend),
}

impl StateBackendKind {
    /// The backend's short name, as `explain` shows it: `heap` or `disk`.
    pub fn name(&self) -> &'static str {
        match self {
            StateBackendKind::Heap => "heap",
            StateBackendKind::OnDisk(_) => "disk",
        }
    }
}

struct Slot<K> {
    name: String,
    ttl: Option<StateTtl>,
    last_cleanup: Timestamp,
    /// `Box<dyn ValueTable<K, V>>` (or list, map), behind `StateTable` for cleanup.
    table: Box<dyn StateTable<K>>,
}

/// All keyed state of one operator instance, on one worker.
///
/// The store knows the clocks TTL can use; the operator sets them before each call into
/// user code. Event-time TTL reads and writes are measured at the event time being
/// processed (the record's or the timer's timestamp); expired entries are swept as the
/// watermark passes them.
pub struct KeyedStateStore<K> {
    backend: StateBackendKind,
    /// The on-disk store of this instance, opened with the first disk table.
    kv: Option<Arc<dyn Kv>>,
    max_parallelism: u16,
    slots: Vec<Slot<K>>,
    processing_time: Timestamp,
    event_time: Timestamp,
    watermark: Timestamp,
    /// Restored entries of states not declared yet, by state name.
    restored: FxHashMap<String, Vec<(K, Vec<u8>)>>,
    /// The checkpoint the on-disk tables' recorded changes are relative to.
    changes_since: Option<u64>,
    /// How many snapshots of changes followed the last full one.
    chain: usize,
    /// The first failure of a table, or of a restore (see [`KeyedStateStore::check`]).
    health: Health,
}

/// After this many snapshots of changes, an on-disk store writes a full one: the chain a
/// restore applies stays short.
const MAX_CHAIN: usize = 10;

impl<K: Key> KeyedStateStore<K> {
    /// An empty store on `backend`.
    pub fn new(backend: StateBackendKind) -> Self {
        KeyedStateStore {
            backend,
            kv: None,
            max_parallelism: sluice_types::DEFAULT_MAX_PARALLELISM,
            slots: Vec::new(),
            processing_time: MIN_TIMESTAMP,
            event_time: MIN_TIMESTAMP,
            watermark: MIN_TIMESTAMP,
            restored: FxHashMap::default(),
            changes_since: None,
            chain: 0,
            health: Health::default(),
        }
    }

    /// Sets the clocks TTL reads: the wall clock, and the event time being processed
    /// (the current record's or timer's timestamp).
    pub fn set_time(&mut self, processing_time: Timestamp, event_time: Timestamp) {
        self.processing_time = processing_time;
        self.event_time = event_time;
    }

    /// Sets the operator's watermark, which drives the sweeps of event-time TTL. The
    /// final watermark of a bounded input sweeps nothing.
    pub fn set_watermark(&mut self, watermark: Timestamp) {
        if watermark != sluice_types::MAX_TIMESTAMP {
            self.watermark = watermark;
        }
    }

    fn now(&self, ttl: Option<&StateTtl>) -> Timestamp {
        match ttl.map(|t| t.clock) {
            Some(TtlClock::EventTime) if self.event_time != MIN_TIMESTAMP => self.event_time,
            Some(TtlClock::EventTime) => self.watermark,
            _ => self.processing_time,
        }
    }

    fn slot_index(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.name == name)
    }

    fn add_slot(&mut self, descriptor: &StateDescriptor, mut table: Box<dyn StateTable<K>>) -> usize {
        let restored = self.restored.remove(&descriptor.name);
        let restoring = restored.is_some();
        for (key, entry) in restored.unwrap_or_default() {
            if entry.is_empty() {
                table.clear_key(&key);
                continue;
            }
            // A state whose type changed since the checkpoint cannot be read back. It is
            // neither restored in part nor started empty: the job fails, naming it.
            if let Err(error) = table.restore(key, &entry) {
                self.health.record(&unrestorable(&descriptor.name, &error));
                break;
            }
        }
        if restoring {
            table.forget_changes();
        }
        self.slots.push(Slot {
            name: descriptor.name.clone(),
            ttl: descriptor.ttl,
            last_cleanup: MIN_TIMESTAMP,
            table,
        });
        self.slots.len() - 1
    }

    /// Declares a value state; declaring the same name again returns the same handle.
    pub fn value<V: Data>(&mut self, descriptor: &StateDescriptor) -> ValueState<V> {
        if let Some(i) = self.slot_index(&descriptor.name) {
            return ValueState::new(i);
        }
        let table: Box<dyn StateTable<K>> = match self.disk_table() {
            None => Box::new(HeapValueTable::<K, V>::new(descriptor.ttl)),
            Some((kv, health, id, groups)) => {
                Box::new(DiskValueTable::<K, V>::new(kv, health, id, groups, descriptor.ttl))
            }
        };
        ValueState::new(self.add_slot(descriptor, table))
    }

    /// Declares a list state.
    pub fn list<V: Data>(&mut self, descriptor: &StateDescriptor) -> ListState<V> {
        if let Some(i) = self.slot_index(&descriptor.name) {
            return ListState::new(i);
        }
        let table: Box<dyn StateTable<K>> = match self.disk_table() {
            None => Box::new(HeapListTable::<K, V>::new(descriptor.ttl)),
            Some((kv, health, id, groups)) => {
                Box::new(DiskListTable::<K, V>::new(kv, health, id, groups, descriptor.ttl))
            }
        };
        ListState::new(self.add_slot(descriptor, table))
    }

    /// Declares a map state.
    pub fn map<UK: Data + Hash + Eq + Ord, UV: Data>(&mut self, descriptor: &StateDescriptor) -> MapState<UK, UV> {
        if let Some(i) = self.slot_index(&descriptor.name) {
            return MapState::new(i);
        }
        let table: Box<dyn StateTable<K>> = match self.disk_table() {
            None => Box::new(HeapMapTable::<K, UK, UV>::new(descriptor.ttl)),
            Some((kv, health, id, groups)) => {
                Box::new(DiskMapTable::<K, UK, UV>::new(kv, health, id, groups, descriptor.ttl))
            }
        };
        MapState::new(self.add_slot(descriptor, table))
    }

    /// The store and number of the next disk table, for the on-disk backend.
    /// The on-disk store, its health, the next table's id and the key groups; `None` on
    /// the heap. A store that cannot open is recorded as failed (the job fails at the
    /// end of its first batch) and its tables are kept on the heap meanwhile.
    fn disk_table(&mut self) -> Option<(Arc<dyn Kv>, Health, u16, u16)> {
        let StateBackendKind::OnDisk(disk) = &self.backend else { return None };
        let kv = match &self.kv {
            Some(kv) => kv.clone(),
            None => {
                let opened = disk.open().map_err(|error| Error::State {
                    operator: "store".into(),
                    message: format!("cannot open the on-disk store: {error}"),
                });
                let kv = crate::disk::guarded(self.health.ok(opened)?, self.health.clone());
                self.kv = Some(kv.clone());
                kv
            }
        };
        Some((kv, self.health.clone(), self.slots.len() as u16, self.max_parallelism))
    }

    /// A queue of timers in this store's backend: on the heap, or beyond a head of the
    /// earliest timers in the on-disk store. `queue` tells an operator's queues apart.
    pub fn timer_queue(&mut self, queue: u8) -> crate::KeyedTimers<K> {
        match self.disk_table() {
            Some((kv, health, _, _)) => crate::KeyedTimers::on_disk(kv, health, 0xFF00 | u16::from(queue)),
            None => crate::KeyedTimers::default(),
        }
    }

    /// Fails with the first failure of this store's tables (a failing disk) or of a
    /// restore (state that cannot be read back); operators check after each batch.
    pub fn check(&self, operator: &str) -> Result<()> {
        self.health.check(operator)
    }

    /// Where this store's failures are recorded, for operators' own on-disk tables.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Sets the number of key groups on-disk keys are laid out by (the job's maximum
    /// parallelism); before any state is declared.
    pub fn set_max_parallelism(&mut self, max_parallelism: u16) {
        self.max_parallelism = max_parallelism;
    }

    /// The table behind a handle, as `H` (heap) or `D` (disk), whichever it is, with
    /// the time its TTL clock reads.
    fn table<H: 'static, D: 'static, T: ?Sized>(
        &mut self,
        index: usize,
        heap: impl FnOnce(&mut H) -> &mut T,
        disk: impl FnOnce(&mut D) -> &mut T,
    ) -> (&mut T, Timestamp) {
        let slot = self.slots.get(index).expect("state used before it was declared: declare it in `open`");
        let now = self.now(slot.ttl.as_ref());
        let any = self.slots[index].table.as_any_mut();
        if any.is::<H>() {
            let table = any.downcast_mut::<H>().expect("invariant: checked above");
            return (heap(table), now);
        }
        let table =
            any.downcast_mut::<D>().expect("invariant: a state handle is only used with the store that issued it");
        (disk(table), now)
    }

    fn value_table<V: Data>(&mut self, index: usize) -> (&mut dyn ValueTable<K, V>, Timestamp) {
        self.table::<HeapValueTable<K, V>, DiskValueTable<K, V>, dyn ValueTable<K, V>>(index, |t| t, |t| t)
    }

    fn list_table<V: Data>(&mut self, index: usize) -> (&mut dyn ListTable<K, V>, Timestamp) {
        self.table::<HeapListTable<K, V>, DiskListTable<K, V>, dyn ListTable<K, V>>(index, |t| t, |t| t)
    }

    fn map_table<UK: Data + Hash + Eq + Ord, UV: Data>(
        &mut self,
        index: usize,
    ) -> (&mut dyn MapTable<K, UK, UV>, Timestamp) {
        self.table::<HeapMapTable<K, UK, UV>, DiskMapTable<K, UK, UV>, dyn MapTable<K, UK, UV>>(index, |t| t, |t| t)
    }

    /// The value of `key`.
    pub fn get<V: Data>(&mut self, state: ValueState<V>, key: &K) -> Option<V> {
        let (table, now) = self.value_table::<V>(state.index);
        table.get(key, now)
    }

    /// Sets the value of `key`.
    pub fn set<V: Data>(&mut self, state: ValueState<V>, key: &K, value: V) {
        let (table, now) = self.value_table::<V>(state.index);
        table.set(key, value, now)
    }

    /// Reads, changes and writes the value of `key` in one step; `None` clears it.
    pub fn update<V: Data>(&mut self, state: ValueState<V>, key: &K, mut change: impl FnMut(Option<V>) -> Option<V>) {
        let (table, now) = self.value_table::<V>(state.index);
        table.update(key, now, &mut change)
    }

    /// The live elements of `key`'s list.
    pub fn list_get<V: Data>(&mut self, state: ListState<V>, key: &K) -> Vec<V> {
        let (table, now) = self.list_table::<V>(state.index);
        table.get(key, now)
    }

    /// Appends to `key`'s list.
    pub fn list_add<V: Data>(&mut self, state: ListState<V>, key: &K, value: V) {
        let (table, now) = self.list_table::<V>(state.index);
        table.add(key, value, now)
    }

    /// Replaces `key`'s list.
    pub fn list_replace<V: Data>(&mut self, state: ListState<V>, key: &K, values: Vec<V>) {
        let (table, now) = self.list_table::<V>(state.index);
        table.replace(key, values, now)
    }

    /// The value under `user_key` in `key`'s map.
    pub fn map_get<UK: Data + Hash + Eq + Ord, UV: Data>(
        &mut self,
        state: MapState<UK, UV>,
        key: &K,
        user_key: &UK,
    ) -> Option<UV> {
        let (table, now) = self.map_table::<UK, UV>(state.index);
        table.get(key, user_key, now)
    }

    /// Puts into `key`'s map.
    pub fn map_put<UK: Data + Hash + Eq + Ord, UV: Data>(
        &mut self,
        state: MapState<UK, UV>,
        key: &K,
        user_key: UK,
        value: UV,
    ) {
        let (table, now) = self.map_table::<UK, UV>(state.index);
        table.put(key, user_key, value, now)
    }

    /// Removes from `key`'s map.
    pub fn map_remove<UK: Data + Hash + Eq + Ord, UV: Data>(
        &mut self,
        state: MapState<UK, UV>,
        key: &K,
        user_key: &UK,
    ) {
        let (table, _) = self.map_table::<UK, UV>(state.index);
        table.remove(key, user_key)
    }

    /// The live entries of `key`'s map, sorted by user key.
    pub fn map_entries<UK: Data + Hash + Eq + Ord, UV: Data>(
        &mut self,
        state: MapState<UK, UV>,
        key: &K,
    ) -> Vec<(UK, UV)> {
        let (table, now) = self.map_table::<UK, UV>(state.index);
        table.entries(key, now)
    }

    /// Clears one state of `key`.
    pub fn clear(&mut self, index: usize, key: &K) {
        if let Some(slot) = self.slots.get_mut(index) {
            slot.table.clear_key(key);
        }
    }

    /// Runs the TTL sweeps that are due.
    pub fn cleanup_expired(&mut self) {
        let (processing_time, watermark) = (self.processing_time, self.watermark);
        for slot in &mut self.slots {
            let Some(ttl) = slot.ttl else { continue };
            let now = match ttl.clock {
                TtlClock::EventTime => watermark,
                TtlClock::ProcessingTime => processing_time,
            };
            let due = now.saturating_sub(slot.last_cleanup) >= ttl.cleanup_interval;
            if now == MIN_TIMESTAMP || !(due || slot.table.incremental_cleanup()) {
                continue;
            }
            slot.last_cleanup = now;
            slot.table.cleanup(now);
        }
    }

    /// Writes every state of every key into a checkpoint, by key (so that key groups
    /// can move between workers) and state name.
    ///
    /// On disk, the entries are written as changes: only those changed since the previous
    /// checkpoint when the writer allows it, else all of them (a base, also every
    /// ten checkpoints). Savepoints are full and do not reset what changed.
    pub fn snapshot(&mut self, writer: &mut StateWriter) -> Result<()> {
        if self.kv.is_none() {
            // Copy each table now; encode the copies off the worker.
            let mut later = Vec::new();
            for slot in &mut self.slots {
                match slot.table.snapshot_later() {
                    Some(snapshot) => later.push((slot.name.clone(), snapshot)),
                    None => {
                        let name = slot.name.as_str();
                        slot.table.snapshot(&mut |key, entry| writer.keyed(key, &(name, entry)))?;
                    }
                }
            }
            if !later.is_empty() {
                writer.defer(Box::new(move |writer: &mut StateWriter| {
                    for (name, snapshot) in later {
                        let name = name.as_str();
                        snapshot(&mut |key: &K, entry: Vec<u8>| writer.keyed(key, &(name, entry)))?;
                    }
                    Ok(())
                }));
            }
            return Ok(());
        }
        let incremental = !writer.full() && self.changes_since.is_some() && self.chain < MAX_CHAIN;
        writer.begin_changes(if incremental { self.changes_since } else { None });
        let mut later = Vec::new();
        for slot in &mut self.slots {
            let name = slot.name.as_str();
            // Freeze the store now, write the entries off the worker.
            let frozen = if incremental { slot.table.changes_later() } else { slot.table.snapshot_later() };
            if let Some(snapshot) = frozen {
                later.push((slot.name.clone(), snapshot));
                continue;
            }
            let mut sink = |key: &K, entry: Vec<u8>| writer.change(key, &(name, entry));
            if incremental {
                slot.table.snapshot_changes(&mut sink)?;
            } else {
                slot.table.snapshot(&mut sink)?;
            }
        }
        if !later.is_empty() {
            writer.defer(Box::new(move |writer: &mut StateWriter| {
                for (name, snapshot) in later {
                    let name = name.as_str();
                    snapshot(&mut |key: &K, entry: Vec<u8>| writer.change(key, &(name, entry)))?;
                }
                Ok(())
            }));
        }
        if writer.savepoint() {
            return Ok(());
        }
        if let Some(checkpoint) = writer.checkpoint() {
            if !incremental {
                self.slots.iter_mut().for_each(|slot| slot.table.forget_changes());
                self.chain = 0;
            } else {
                self.chain += 1;
            }
            self.changes_since = Some(checkpoint);
        }
        Ok(())
    }

    /// Restores the entries written by [`KeyedStateStore::snapshot`]. States declared
    /// later get theirs when they are declared.
    pub fn restore(&mut self, reader: &StateReader) -> Result<()> {
        reader.for_each_state_entry(|key, name, entry| self.restore_entry(key, name, entry))?;
        self.finish_restore();
        Ok(())
    }

    /// Restores the entries of an on-disk store (the changes a [`StateReader`] holds),
    /// one at a time, and ends the restore: the last step of every restore.
    pub fn restore_changes(&mut self, reader: &StateReader) -> Result<()> {
        reader.for_each_named_change(|key, name, entry| self.restore_entry(key, name, entry))?;
        self.finish_restore();
        Ok(())
    }

    /// Restores one entry written by [`KeyedStateStore::snapshot`]: the entry of `key`
    /// in the state `name`. [`KeyedStateStore::restore_changes`] or
    /// [`KeyedStateStore::finish_restore`] ends the restore.
    pub fn restore_entry(&mut self, key: K, name: &str, entry: &[u8]) -> Result<()> {
        match self.slot_index(name) {
            // An empty entry: the key's state was deleted after an earlier snapshot.
            Some(i) if entry.is_empty() => self.slots[i].table.clear_key(&key),
            Some(i) => self.slots[i].table.restore(key, entry).map_err(|e| unrestorable(name, &e))?,
            None => self.restored.entry(name.to_string()).or_default().push((key, entry.to_vec())),
        }
        Ok(())
    }

    /// Ends a restore made of [`KeyedStateStore::restore_entry`] calls: the first
    /// snapshot after it is full, starting this run's chain.
    pub fn finish_restore(&mut self) {
        self.slots.iter_mut().for_each(|slot| slot.table.forget_changes());
    }

    /// Restores entries as [`KeyedStateStore::restore`] does, for operators that keep
    /// more than the store under the same keys (timers).
    pub fn restore_entries(&mut self, entries: Vec<(K, (String, Vec<u8>))>) -> Result<()> {
        for (key, (name, entry)) in entries {
            self.restore_entry(key, &name, &entry)?;
        }
        self.finish_restore();
        Ok(())
    }

    /// Number of keys with an entry in each state, by name.
    pub fn sizes(&self) -> Vec<(String, usize)> {
        self.slots.iter().map(|s| (s.name.clone(), s.table.len())).collect()
    }
}

fn unrestorable(state: &str, error: &Error) -> Error {
    Error::State {
        operator: "store".into(),
        message: format!(
            "state '{state}' cannot be restored from the checkpoint ({error}); was its type changed? Start the job \
             without that checkpoint, or keep the state's type"
        ),
    }
}

impl<V> ValueState<V> {
    /// The slot index, for [`KeyedStateStore::clear`].
    pub fn index(&self) -> usize {
        self.index
    }
}

impl<V> ListState<V> {
    /// The slot index, for [`KeyedStateStore::clear`].
    pub fn index(&self) -> usize {
        self.index
    }
}

impl<UK, UV> MapState<UK, UV> {
    /// The slot index, for [`KeyedStateStore::clear`].
    pub fn index(&self) -> usize {
        self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_state_round_trip() {
        let mut store = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        let count = store.value::<u64>(&StateDescriptor::new("count"));
        assert_eq!(store.get(count, &1), None);
        store.set(count, &1, 5);
        store.update(count, &1, |v| v.map(|n| n + 1));
        assert_eq!(store.get(count, &1), Some(6));
        assert_eq!(store.get(count, &2), None);
        store.clear(count.index(), &1);
        assert_eq!(store.get(count, &1), None);
    }

    #[test]
    fn expired_values_are_never_returned() {
        let mut store = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        let last = store.value::<u64>(&StateDescriptor::new("last").with_ttl(StateTtl::new(100).event_time()));
        store.set_time(0, 1_000);
        store.set(last, &7, 1);
        store.set_time(0, 1_099);
        assert_eq!(store.get(last, &7), Some(1));
        store.set_time(0, 1_100);
        assert_eq!(store.get(last, &7), None);
    }

    #[test]
    fn read_refreshes_ttl_when_asked() {
        let mut store = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        let ttl = StateTtl::new(100).event_time().update(crate::TtlUpdate::OnReadAndWrite);
        let last = store.value::<u64>(&StateDescriptor::new("last").with_ttl(ttl));
        store.set_time(0, 0);
        store.set(last, &7, 1);
        store.set_time(0, 90);
        assert_eq!(store.get(last, &7), Some(1));
        store.set_time(0, 150);
        assert_eq!(store.get(last, &7), Some(1));
    }

    #[test]
    fn entries_written_before_the_clock_starts_live_a_full_ttl() {
        let mut store = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        let last = store.value::<u64>(&StateDescriptor::new("last").with_ttl(StateTtl::new(100).event_time()));
        store.set(last, &1, 1);
        store.set_time(0, 5_000);
        assert_eq!(store.get(last, &1), Some(1));
        store.set_watermark(5_000);
        store.cleanup_expired();
        store.set_time(0, 5_099);
        assert_eq!(store.get(last, &1), Some(1));
        store.set_time(0, 5_100);
        assert_eq!(store.get(last, &1), None);
    }

    #[test]
    fn the_final_watermark_sweeps_nothing() {
        let mut store = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        let last = store.value::<u64>(&StateDescriptor::new("last").with_ttl(StateTtl::new(100).event_time()));
        store.set_time(0, 1_000);
        store.set(last, &1, 1);
        store.set_watermark(sluice_types::MAX_TIMESTAMP);
        store.cleanup_expired();
        assert_eq!(store.get(last, &1), Some(1));
    }

    #[test]
    fn cleanup_sweeps_expired_keys() {
        let mut store = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        let last = store.value::<u64>(&StateDescriptor::new("last").with_ttl(StateTtl::new(100).event_time()));
        store.set_time(0, 0);
        for key in 0..10 {
            store.set(last, &key, key);
        }
        store.set_watermark(500);
        store.cleanup_expired();
        assert_eq!(store.sizes(), vec![("last".to_string(), 0)]);
    }

    #[test]
    fn list_and_map_state() {
        let mut store = KeyedStateStore::<String>::new(StateBackendKind::Heap);
        let list = store.list::<i32>(&StateDescriptor::new("list"));
        let map = store.map::<String, i32>(&StateDescriptor::new("map"));
        let a = "a".to_string();
        store.list_add(list, &a, 1);
        store.list_add(list, &a, 2);
        assert_eq!(store.list_get(list, &a), vec![1, 2]);
        store.map_put(map, &a, "x".to_string(), 1);
        store.map_put(map, &a, "w".to_string(), 2);
        assert_eq!(store.map_entries(map, &a), vec![("w".to_string(), 2), ("x".to_string(), 1)]);
        store.map_remove(map, &a, &"w".to_string());
        assert_eq!(store.map_get(map, &a, &"w".to_string()), None);
    }

    #[test]
    fn state_that_cannot_be_read_back_fails_the_operator_instead_of_starting_empty() {
        let mut store = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        let names = store.value::<String>(&StateDescriptor::new("name"));
        store.set(names, &1, "a long name".to_string());
        let mut writer = StateWriter::new(128);
        store.snapshot(&mut writer).unwrap();
        let (mut state, deferred) = writer.split();
        StateWriter::complete(&mut state, deferred, 128).unwrap();

        // Declared after the restore, with another type: the restore cannot decode it.
        let mut restored = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        restored.restore(&StateReader::new(state.clone())).unwrap();
        let _ = restored.value::<bool>(&StateDescriptor::new("name"));
        let error = restored.check("process").unwrap_err().to_string();
        assert!(error.contains("'name' cannot be restored"), "{error}");

        // Declared before the restore: the restore itself fails.
        let mut restored = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        let _ = restored.value::<bool>(&StateDescriptor::new("name"));
        assert!(restored.restore(&StateReader::new(state)).is_err());
    }

    #[test]
    fn snapshot_restores_every_state_with_its_ttl_clock() {
        let mut store = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        let count = store.value::<u64>(&StateDescriptor::new("count").with_ttl(StateTtl::new(100).event_time()));
        let seen = store.list::<String>(&StateDescriptor::new("seen"));
        store.set_time(0, 1_000);
        for key in 0..50 {
            store.set(count, &key, key * 10);
            store.list_add(seen, &key, format!("k{key}"));
        }
        let mut writer = StateWriter::new(128);
        store.snapshot(&mut writer).unwrap();
        let (mut state, deferred) = writer.split();
        StateWriter::complete(&mut state, deferred, 128).unwrap();
        let reader = StateReader::new(state);

        let mut restored = KeyedStateStore::<u64>::new(StateBackendKind::Heap);
        restored.restore(&reader).unwrap();
        let count = restored.value::<u64>(&StateDescriptor::new("count").with_ttl(StateTtl::new(100).event_time()));
        let seen = restored.list::<String>(&StateDescriptor::new("seen"));
        restored.set_time(0, 1_099);
        assert_eq!(restored.get(count, &7), Some(70));
        assert_eq!(restored.list_get(seen, &49), vec!["k49".to_string()]);
        restored.set_time(0, 1_100);
        assert_eq!(restored.get(count, &7), None, "the write time survives the checkpoint");
    }

    fn on_disk(dir: &tempfile::TempDir) -> StateBackendKind {
        StateBackendKind::OnDisk(crate::DiskBackend::new(dir.path()).memory_budget(16 << 20))
    }

    /// Runs the same operations on a store of each backend and returns what they read.
    fn exercise(backend: StateBackendKind) -> Vec<String> {
        let mut store = KeyedStateStore::<u64>::new(backend);
        let ttl = StateTtl::new(100).event_time();
        let value = store.value::<String>(&StateDescriptor::new("value").with_ttl(ttl));
        let list = store.list::<i32>(&StateDescriptor::new("list"));
        let map = store.map::<String, u64>(&StateDescriptor::new("map"));
        let mut seen = Vec::new();
        store.set_time(0, 1_000);
        for key in 0..20u64 {
            store.set(value, &key, format!("v{key}"));
            store.list_add(list, &key, key as i32);
            store.list_add(list, &key, -(key as i32));
            store.map_put(map, &key, format!("b{key}"), key);
            store.map_put(map, &key, "a".to_string(), 0);
        }
        store.update(value, &3, |v| v.map(|v| v + "!"));
        store.map_remove(map, &4, &"a".to_string());
        store.clear(list.index(), &5);
        store.set_time(0, 1_050);
        seen.push(format!("{:?}", store.get(value, &3)));
        seen.push(format!("{:?}", store.list_get(list, &7)));
        seen.push(format!("{:?}", store.list_get(list, &5)));
        seen.push(format!("{:?}", store.map_entries(map, &4)));
        seen.push(format!("{:?}", store.map_get(map, &6, &"a".to_string())));
        store.set_time(0, 1_100);
        seen.push(format!("{:?}", store.get(value, &3)));
        store.set_watermark(2_000);
        store.cleanup_expired();
        seen.push(format!("{:?}", store.sizes()));
        seen
    }

    #[test]
    fn the_disk_backend_reads_what_the_heap_backend_reads() {
        let dir = tempfile::tempdir().unwrap();
        let heap = exercise(StateBackendKind::Heap);
        assert_eq!(exercise(on_disk(&dir)), heap);
        assert_eq!(heap[0], "Some(\"v3!\")");
        assert_eq!(heap[5], "None", "expired at 1100");
    }

    #[test]
    fn snapshots_move_between_backends() {
        let dir = tempfile::tempdir().unwrap();
        for (from, to) in [(StateBackendKind::Heap, on_disk(&dir)), (on_disk(&dir), StateBackendKind::Heap)] {
            let mut store = KeyedStateStore::<u64>::new(from);
            let value = store.value::<u64>(&StateDescriptor::new("value"));
            let map = store.map::<u32, String>(&StateDescriptor::new("map"));
            for key in 0..100u64 {
                store.set(value, &key, key * 3);
                store.map_put(map, &key, 1, format!("x{key}"));
                store.map_put(map, &key, 2, format!("y{key}"));
            }
            let mut writer = StateWriter::new(128);
            store.snapshot(&mut writer).unwrap();
            // On disk, the snapshot is written later, from a frozen view: change the
            // store before it is, the snapshot must not see it.
            store.set(value, &42, 0);
            let (mut state, deferred) = writer.split();
            StateWriter::complete(&mut state, deferred, 128).unwrap();
            let mut restored = KeyedStateStore::<u64>::new(to);
            let value = restored.value::<u64>(&StateDescriptor::new("value"));
            let map = restored.map::<u32, String>(&StateDescriptor::new("map"));
            restored.restore(&StateReader::new(state)).unwrap();
            assert_eq!(restored.get(value, &42), Some(126));
            assert_eq!(restored.map_entries(map, &42), vec![(1, "x42".to_string()), (2, "y42".to_string())]);
            assert_eq!(restored.sizes(), vec![("value".to_string(), 100), ("map".to_string(), 100)]);
        }
    }

    #[test]
    fn incremental_snapshots_rebuild_the_store_at_every_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = KeyedStateStore::<u64>::new(on_disk(&dir));
        let value = store.value::<u64>(&StateDescriptor::new("value"));
        let mut model: std::collections::BTreeMap<u64, u64> = Default::default();
        let mut chain: Vec<sluice_runtime::checkpoint::Changes> = Vec::new();
        let mut random = 0x1234_5678_9abc_def0u64;
        for checkpoint in 1..=25u64 {
            for _ in 0..200 {
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                let key = random % 64;
                if random.is_multiple_of(5) {
                    store.clear(value.index(), &key);
                    model.remove(&key);
                } else {
                    store.set(value, &key, random);
                    model.insert(key, random);
                }
            }
            let mut writer = StateWriter::for_checkpoint(128, Some(checkpoint), false, false);
            store.snapshot(&mut writer).unwrap();
            let at_barrier = model.clone();
            // The worker goes on before the coordinator writes the snapshot.
            for key in 1..64u64 {
                store.set(value, &key, 7);
                model.insert(key, 7);
            }
            let (mut state, deferred) = writer.split();
            StateWriter::complete(&mut state, deferred, 128).unwrap();
            let changes = state.changes.clone().unwrap();
            if changes.since.is_none() {
                chain.clear();
            }
            chain.push(changes);
            // Writes after the barrier must not leak into the snapshot.
            store.set(value, &0, 999);
            model.insert(0, 999);
            let mut merged = InstanceStateForTest::default();
            for changes in &chain {
                merged.apply(changes);
            }
            let mut restored = KeyedStateStore::<u64>::new(on_disk(&dir));
            let restored_value = restored.value::<u64>(&StateDescriptor::new("value"));
            restored.restore(&StateReader::new(merged.state)).unwrap();
            for key in 1..64 {
                let got = restored.get(restored_value, &key);
                assert_eq!(got, at_barrier.get(&key).copied(), "key {key} after checkpoint {checkpoint}");
            }
        }
    }

    #[test]
    fn a_restored_store_goes_on_with_incremental_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let mut model: std::collections::BTreeMap<u64, u64> = Default::default();
        let mut restored_from: Option<InstanceStateForTest> = None;
        let mut next_id = 1;
        for round in 0..4u64 {
            let mut store = KeyedStateStore::<u64>::new(on_disk(&dir));
            let value = store.value::<u64>(&StateDescriptor::new("value"));
            if let Some(merged) = restored_from.take() {
                store.restore(&StateReader::new(merged.state)).unwrap();
            }
            let mut chain = InstanceStateForTest::default();
            for _ in 0..4 {
                for key in 0..20u64 {
                    let key = key + round * 10;
                    let count = model.get(&key).copied().unwrap_or(0) + 1;
                    store.set(value, &key, count);
                    model.insert(key, count);
                }
                let mut writer = StateWriter::for_checkpoint(128, Some(next_id), false, false);
                next_id += 1;
                store.snapshot(&mut writer).unwrap();
                let (mut state, deferred) = writer.split();
                StateWriter::complete(&mut state, deferred, 128).unwrap();
                let changes = state.changes.clone().unwrap();
                if changes.since.is_none() {
                    chain = InstanceStateForTest::default();
                }
                chain.apply(&changes);
            }
            restored_from = Some(chain);
        }
        let mut store = KeyedStateStore::<u64>::new(on_disk(&dir));
        let value = store.value::<u64>(&StateDescriptor::new("value"));
        store.restore(&StateReader::new(restored_from.unwrap().state)).unwrap();
        for (key, count) in model {
            assert_eq!(store.get(value, &key), Some(count), "key {key}");
        }
    }

    #[test]
    fn a_full_snapshot_sees_every_key_while_other_stores_write() {
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::DiskBackend::new(dir.path()).memory_budget(8 << 20);
        let other = std::thread::spawn({
            let backend = backend.clone();
            move || {
                let mut store = KeyedStateStore::<u64>::new(StateBackendKind::OnDisk(backend));
                let value = store.value::<String>(&StateDescriptor::new("other"));
                for key in 0..200_000u64 {
                    store.set(value, &key, "x".repeat(100));
                }
            }
        });
        for round in 0..5u64 {
            let mut store = KeyedStateStore::<u64>::new(StateBackendKind::OnDisk(backend.clone()));
            let value = store.value::<String>(&StateDescriptor::new("value"));
            let keys = 30_000u64;
            for key in 0..keys {
                store.set(value, &key, format!("{round}-{key:0100}"));
            }
            let mut writer = StateWriter::for_checkpoint(128, Some(1), false, false);
            store.snapshot(&mut writer).unwrap();
            let (mut state, deferred) = writer.split();
            StateWriter::complete(&mut state, deferred, 128).unwrap();
            let entries: Vec<(u64, (String, Vec<u8>))> = StateReader::new(state).changes().unwrap();
            assert_eq!(entries.len() as u64, keys, "round {round}");
        }
        other.join().unwrap();
    }

    /// Puts a chain of changes together as a restore does.
    #[derive(Default)]
    struct InstanceStateForTest {
        state: sluice_runtime::checkpoint::RestoredState,
    }

    impl InstanceStateForTest {
        fn apply(&mut self, changes: &sluice_runtime::checkpoint::Changes) {
            let own =
                sluice_runtime::checkpoint::InstanceState { changes: Some(changes.clone()), ..Default::default() };
            let mut own = sluice_runtime::checkpoint::RestoredState::from(own);
            own.apply_after(std::mem::take(&mut self.state));
            self.state = own;
        }
    }
}
