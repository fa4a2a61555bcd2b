//! Where fixed-size windows keep their accumulators: one per key and pane, on the heap
//! or in the job's on-disk store.
//!
//! On disk, an accumulator is stored under `[pane start][key]` (the start as an
//! order-preserving big-endian number), so that firing a window scans its panes in
//! order and expiring a pane deletes one range. The pane starts themselves, few, stay
//! on the heap. Checkpoints of on-disk panes are incremental, like the on-disk keyed
//! state: the (pane, key) pairs changed since the previous checkpoint, a base every ten.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use sluice_runtime::checkpoint::{decode, encode, StateReader, StateWriter};
use sluice_state::disk::Kv;
use sluice_state::{Health, StateBackendKind};
use sluice_types::{Data, Error, Key, Result, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One key's accumulator over one pane, and whether it changed since the last early
/// firing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Slot<A> {
    pub acc: A,
    pub dirty: bool,
}

/// A change to one key's accumulator over a pane: its new value, or `None` if removed.
type PaneChange<A> = (Timestamp, Option<Slot<A>>);

/// After this many snapshots of changes, on-disk panes write a full one.
const MAX_CHAIN: usize = 10;

/// The accumulators of one fixed-window operator instance.
pub(crate) struct Panes<K, A> {
    store: PaneStore<K, A>,
    /// The first failure of the on-disk store: the operator fails the job with it.
    health: Health,
}

enum PaneStore<K, A> {
    Heap(BTreeMap<Timestamp, FxHashMap<K, Slot<A>>>),
    Disk(DiskPanes),
}

/// Accumulators in an on-disk store.
pub(crate) struct DiskPanes {
    kv: Arc<dyn Kv>,
    /// Pane starts, with how many keys each has.
    panes: BTreeMap<Timestamp, usize>,
    /// Stored keys changed since the last checkpoint.
    changed: FxHashSet<Vec<u8>>,
    changes_since: Option<u64>,
    chain: usize,
}

impl DiskPanes {
    /// Records a changed stored key, once checkpoints started (before the first one the
    /// next snapshot is full anyway).
    fn record(&mut self, stored: Vec<u8>) {
        if self.changes_since.is_some() {
            self.changed.insert(stored);
        }
    }
}

fn pane_prefix(pane: Timestamp) -> [u8; 8] {
    ((pane as u64) ^ (1 << 63)).to_be_bytes()
}

fn stored_key<K: Key>(pane: Timestamp, key: &K) -> Vec<u8> {
    let bytes = pane_prefix(pane).to_vec();
    // Encoding into a vector fails only for types serde cannot write at all.
    postcard::to_extend(key, bytes).unwrap_or_default()
}

fn split_stored<K: Key>(stored: &[u8]) -> Result<(Timestamp, K)> {
    let (prefix, key) = stored.split_at(8.min(stored.len()));
    let raw = u64::from_be_bytes(prefix.try_into().map_err(|_| Error::checkpoint("window state", "short key"))?);
    let key = postcard::from_bytes(key).map_err(|e| Error::checkpoint("window state", e.to_string()))?;
    Ok(((raw ^ (1 << 63)) as Timestamp, key))
}

impl<K: Key, A: Data> Panes<K, A> {
    /// Empty panes on `backend`.
    /// A store that cannot open is recorded as failed, and the panes stay on the heap
    /// until the operator reports the failure.
    pub fn new(backend: &StateBackendKind) -> Self {
        let health = Health::default();
        let store = match backend {
            StateBackendKind::Heap => PaneStore::Heap(BTreeMap::new()),
            StateBackendKind::OnDisk(disk) => match health.ok(disk.open()) {
                None => PaneStore::Heap(BTreeMap::new()),
                Some(kv) => PaneStore::Disk(DiskPanes {
                    kv: sluice_state::disk::guarded(kv, health.clone()),
                    panes: BTreeMap::new(),
                    changed: FxHashSet::default(),
                    changes_since: None,
                    chain: 0,
                }),
            },
        };
        Panes { store, health }
    }

    /// Fails with the first failure of the on-disk store, naming `operator`.
    pub fn check(&self, operator: &str) -> Result<()> {
        self.health.check(operator)
    }

    /// Changes `key`'s accumulator over `pane`, creating it with `create` first.
    pub fn update(&mut self, pane: Timestamp, key: &K, create: impl FnOnce() -> A, change: impl FnOnce(&mut Slot<A>)) {
        match &mut self.store {
            PaneStore::Heap(panes) => {
                let slots = match panes.get_mut(&pane) {
                    Some(slots) => slots,
                    None => {
                        let capacity = panes.values().next_back().map_or(0, |p| p.len());
                        panes
                            .entry(pane)
                            .or_insert_with(|| FxHashMap::with_capacity_and_hasher(capacity, Default::default()))
                    }
                };
                let slot = match slots.get_mut(key) {
                    Some(slot) => slot,
                    None => slots.entry(key.clone()).or_insert(Slot { acc: create(), dirty: false }),
                };
                change(slot);
            }
            PaneStore::Disk(disk) => {
                let stored = stored_key(pane, key);
                let found = self.health.ok(disk.kv.get(&stored)).flatten();
                let mut slot = match found.and_then(|bytes| self.health.ok(decode(&bytes))) {
                    Some(slot) => slot,
                    None => {
                        *disk.panes.entry(pane).or_default() += 1;
                        Slot { acc: create(), dirty: false }
                    }
                };
                change(&mut slot);
                if let Some(bytes) = self.health.ok(encode(&slot)) {
                    self.health.ok(disk.kv.put(&stored, &bytes));
                }
                disk.record(stored);
            }
        }
    }

    /// `key`'s accumulator over `pane`.
    pub fn get(&self, pane: Timestamp, key: &K) -> Option<A> {
        match &self.store {
            PaneStore::Heap(panes) => panes.get(&pane)?.get(key).map(|slot| slot.acc.clone()),
            PaneStore::Disk(disk) => {
                let bytes = self.health.ok(disk.kv.get(&stored_key(pane, key))).flatten()?;
                Some(self.health.ok(decode::<Slot<A>>(&bytes))?.acc)
            }
        }
    }

    /// The starts of the panes that hold accumulators, in order.
    pub fn starts(&self) -> Vec<Timestamp> {
        match &self.store {
            PaneStore::Heap(panes) => panes.keys().copied().collect(),
            PaneStore::Disk(disk) => disk.panes.keys().copied().collect(),
        }
    }

    /// The first pane's start.
    pub fn first(&self) -> Option<Timestamp> {
        match &self.store {
            PaneStore::Heap(panes) => panes.keys().next().copied(),
            PaneStore::Disk(disk) => disk.panes.keys().next().copied(),
        }
    }

    /// Calls `visit` with every accumulator of the panes starting in `[from, to)`.
    pub fn for_each_in(&self, from: Timestamp, to: Timestamp, mut visit: impl FnMut(&K, &Slot<A>)) {
        match &self.store {
            PaneStore::Heap(panes) => {
                for slots in panes.range(from..to).map(|(_, slots)| slots) {
                    slots.iter().for_each(|(key, slot)| visit(key, slot));
                }
            }
            PaneStore::Disk(disk) => {
                for &pane in disk.panes.range(from..to).map(|(pane, _)| pane) {
                    let scanned = disk.kv.scan_prefix(&pane_prefix(pane), &mut |stored, bytes| {
                        let (_, key) = split_stored::<K>(stored)?;
                        visit(&key, &decode(bytes)?);
                        Ok(true)
                    });
                    self.health.ok(scanned);
                }
            }
        }
    }

    /// Removes the pane starting at `pane`; returns its accumulators.
    pub fn remove(&mut self, pane: Timestamp) -> Vec<(K, Slot<A>)> {
        match &mut self.store {
            PaneStore::Heap(panes) => panes.remove(&pane).map(|slots| slots.into_iter().collect()).unwrap_or_default(),
            PaneStore::Disk(disk) => {
                if disk.panes.remove(&pane).is_none() {
                    return Vec::new();
                }
                let mut removed = Vec::new();
                let mut keys = Vec::new();
                let scanned = disk.kv.scan_prefix(&pane_prefix(pane), &mut |stored, bytes| {
                    let (_, key) = split_stored::<K>(stored)?;
                    removed.push((key, decode(bytes)?));
                    keys.push(stored.to_vec());
                    Ok(true)
                });
                self.health.ok(scanned);
                for stored in keys {
                    self.health.ok(disk.kv.delete(&stored));
                    disk.record(stored);
                }
                removed
            }
        }
    }

    /// Marks every accumulator as reported (after early results).
    pub fn clear_dirty(&mut self) {
        match &mut self.store {
            PaneStore::Heap(panes) => panes.values_mut().flat_map(|p| p.values_mut()).for_each(|s| s.dirty = false),
            PaneStore::Disk(disk) => {
                let mut rewrites = Vec::new();
                for &pane in disk.panes.keys() {
                    let scanned = disk.kv.scan_prefix(&pane_prefix(pane), &mut |stored, bytes| {
                        let mut slot: Slot<A> = decode(bytes)?;
                        if slot.dirty {
                            slot.dirty = false;
                            rewrites.push((stored.to_vec(), encode(&slot)?));
                        }
                        Ok(true)
                    });
                    self.health.ok(scanned);
                }
                for (stored, bytes) in rewrites {
                    self.health.ok(disk.kv.put(&stored, &bytes));
                    disk.record(stored);
                }
            }
        }
    }

    /// Writes every accumulator (heap), or the changed ones (disk, when allowed).
    pub fn snapshot(&mut self, writer: &mut StateWriter) -> Result<()> {
        match &mut self.store {
            PaneStore::Heap(panes) => {
                for (pane, slots) in panes.iter() {
                    for (key, slot) in slots {
                        writer.keyed(key, &(*pane, &slot.acc, slot.dirty))?;
                    }
                }
                Ok(())
            }
            PaneStore::Disk(disk) => {
                let incremental = !writer.full() && disk.changes_since.is_some() && disk.chain < MAX_CHAIN;
                writer.begin_changes(if incremental { disk.changes_since } else { None });
                if incremental {
                    // The changed accumulators, read off the worker from a frozen view.
                    let frozen = disk.kv.frozen();
                    let changed = std::mem::take(&mut disk.changed);
                    writer.defer(Box::new(move |writer: &mut StateWriter| {
                        for stored in changed {
                            let (pane, key) = split_stored::<K>(&stored)?;
                            let slot: Option<Slot<A>> = frozen.get(&stored)?.map(|b| decode(&b)).transpose()?;
                            writer.change(&key, &(pane, slot))?;
                        }
                        Ok(())
                    }));
                } else {
                    // All the accumulators: freeze the store now, write them off the worker.
                    let frozen = disk.kv.frozen();
                    let panes: Vec<Timestamp> = disk.panes.keys().copied().collect();
                    writer.defer(Box::new(move |writer: &mut StateWriter| {
                        for pane in panes {
                            frozen.scan_prefix(&pane_prefix(pane), &mut |stored, bytes| {
                                let (_, key) = split_stored::<K>(stored)?;
                                let slot: Slot<A> = decode(bytes)?;
                                writer.change(&key, &(pane, Some(slot)))?;
                                Ok(true)
                            })?;
                        }
                        Ok(())
                    }));
                }
                if let (Some(checkpoint), false) = (writer.checkpoint(), writer.savepoint()) {
                    disk.changed.clear();
                    disk.chain = if incremental { disk.chain + 1 } else { 0 };
                    disk.changes_since = Some(checkpoint);
                }
                Ok(())
            }
        }
    }

    /// Restores what [`Panes::snapshot`] wrote, on either backend.
    pub fn restore(&mut self, reader: &StateReader) -> Result<()> {
        // One entry at a time: a restore holds no decoded copy of the snapshot.
        reader.for_each_keyed::<K, (Timestamp, A, bool)>(|key, (pane, acc, dirty)| {
            self.restore_entry(key, (pane, Some(Slot { acc, dirty })))
        })?;
        reader.for_each_change::<K, PaneChange<A>>(|key, change| self.restore_entry(key, change))
    }

    /// Applies one restored entry: a slot of a pane, or its deletion.
    fn restore_entry(&mut self, key: K, (pane, slot): PaneChange<A>) -> Result<()> {
        match (&mut self.store, slot) {
            (PaneStore::Heap(panes), Some(slot)) => {
                panes.entry(pane).or_default().insert(key, slot);
            }
            (PaneStore::Heap(panes), None) => {
                if let Some(slots) = panes.get_mut(&pane) {
                    slots.remove(&key);
                    if slots.is_empty() {
                        panes.remove(&pane);
                    }
                }
            }
            (PaneStore::Disk(disk), slot) => {
                let stored = stored_key(pane, &key);
                let existed = disk.kv.get(&stored)?.is_some();
                match slot {
                    Some(slot) => {
                        disk.kv.put(&stored, &encode(&slot)?)?;
                        if !existed {
                            *disk.panes.entry(pane).or_default() += 1;
                        }
                    }
                    None if existed => {
                        disk.kv.delete(&stored)?;
                        if let Some(count) = disk.panes.get_mut(&pane) {
                            *count -= 1;
                            if *count == 0 {
                                disk.panes.remove(&pane);
                            }
                        }
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }
}
