//! A write-back cache in front of an operator instance's LSM tree.
//!
//! Most state a stream job touches is either hot (the same keys again and again) or
//! short-lived (written, read back and deleted within seconds: a pending list drained
//! by a timer, a window's pane). Sent straight to the LSM tree, every such access is a
//! memtable search or insert, and every short-lived entry is written, flushed and
//! compacted away. The cache keeps recently used entries in memory, raw bytes by key,
//! within one budget shared by the job's stores; it writes a changed entry to the tree
//! only when it evicts it (second-chance "clock" order). Scans merge the changed
//! entries with the tree's, and a checkpoint freezes the tree's MVCC snapshot under the
//! changed entries of the moment ([`super::overlay`]), so neither writes anything back.
//! An entry created and deleted while cached never reaches the tree. A filter of the
//! keys written to the tree answers most lookups of keys without state, and deletes of
//! them, without asking the tree.
//!
//! An access costs a few cache misses of the processor, not computation: the index
//! holds slot positions (4 bytes), a slot its key's hash (so that moving a slot
//! needs no rehash), and key and value share one allocation.

use super::filter::KeyFilter;
use super::overlay::{merged_scan, FrozenOverlay, Pair};
use super::{sweep_in_key_order, Frozen, Kv, SweepCursor, Visit};
use hashbrown::HashTable;
use sluice_types::Result;
use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The bytes all caches of a job may hold, and how many they hold now.
#[derive(Debug, Default)]
pub(crate) struct CacheBudget {
    capacity: usize,
    used: AtomicUsize,
}

impl CacheBudget {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(CacheBudget { capacity, used: AtomicUsize::new(0) })
    }

    fn over(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.capacity
    }
}

/// What a cached entry costs beyond its key and value: the slot, its index entry, the
/// allocation's header and rounding.
const OVERHEAD: usize = 64;

/// The hash of a stored key, for the index and the filter.
pub(super) fn hash_of(key: &[u8]) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(key)
}

struct Slot {
    hash: u64,
    /// The key and its value; no value: deleted (written to the tree as a delete on
    /// write-back).
    pair: Pair,
    /// Changed since it was read from or written to the tree.
    dirty: bool,
    /// The tree may hold the key: a delete must reach it. False when the tree was read
    /// and had nothing, until the entry is written back.
    stored: bool,
    /// Used since the clock hand last passed.
    referenced: bool,
}

impl Slot {
    fn size(&self) -> usize {
        self.pair.len() + OVERHEAD
    }
}

struct Entries {
    /// Positions in `slots`, by the hash of their keys.
    index: HashTable<u32>,
    slots: Vec<Slot>,
    /// The dirty keys of the tables scanned by key prefix (map state), in order, so that
    /// such a scan merges only its range. Other tables' scans (full snapshots, counts)
    /// sort the changed entries they need.
    ordered: BTreeSet<Arc<[u8]>>,
    /// The table prefixes kept in `ordered`.
    ordered_tables: Vec<[u8; 2]>,
    hand: usize,
    /// What the slots and the filter hold, in bytes.
    bytes: usize,
    /// The keys the tree may hold.
    filter: KeyFilter,
}

impl Entries {
    fn new() -> Self {
        let filter = KeyFilter::with_capacity(0);
        Entries {
            index: HashTable::new(),
            slots: Vec::new(),
            ordered: BTreeSet::new(),
            ordered_tables: Vec::new(),
            hand: 0,
            bytes: filter.bytes(),
            filter,
        }
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.index.find(hash, |&i| self.slots[i as usize].pair.key() == key).map(|&i| i as usize)
    }

    fn is_ordered(&self, key: &[u8]) -> bool {
        key.len() >= 2 && self.ordered_tables.contains(&[key[0], key[1]])
    }

    /// A slot's key became dirty.
    fn dirtied(&mut self, key: &[u8]) {
        if self.is_ordered(key) {
            self.ordered.insert(key.into());
        }
    }

    /// The changed entries under `prefix` from `start` on, in key order.
    fn changed_from<'a>(&'a self, prefix: &'a [u8], start: &'a [u8]) -> Vec<(&'a [u8], Option<&'a [u8]>)> {
        if self.is_ordered(prefix) {
            return self
                .ordered
                .range::<[u8], _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
                .take_while(|key| key.starts_with(prefix))
                .filter_map(|key| self.find(hash_of(key), key))
                .map(|i| (self.slots[i].pair.key(), self.slots[i].pair.value()))
                .collect();
        }
        let mut changed: Vec<(&[u8], Option<&[u8]>)> = self
            .slots
            .iter()
            .filter(|slot| slot.dirty && slot.pair.key().starts_with(prefix) && slot.pair.key() >= start)
            .map(|slot| (slot.pair.key(), slot.pair.value()))
            .collect();
        changed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        changed
    }

    /// Whether the key's cached entry, if any, is changed.
    fn changes(&self, key: &[u8]) -> bool {
        self.find(hash_of(key), key).is_some_and(|i| self.slots[i].dirty)
    }
}

/// An LSM tree behind a write-back cache.
pub(crate) struct CachedKv {
    tree: Arc<dyn Kv>,
    entries: Mutex<Entries>,
    budget: Arc<CacheBudget>,
}

impl CachedKv {
    /// A cache in front of `tree`, which must be empty and is written only through the
    /// cache from now on (its filter knows the keys the tree holds).
    pub(crate) fn new(tree: Arc<dyn Kv>, budget: Arc<CacheBudget>) -> Self {
        let entries = Entries::new();
        budget.used.fetch_add(entries.bytes, Ordering::Relaxed);
        CachedKv { tree, entries: Mutex::new(entries), budget }
    }

    /// Writes an entry to the tree, as a write-back would.
    #[cfg(test)]
    fn seed(&self, key: &[u8], value: &[u8]) {
        self.tree.put(key, value).unwrap();
        self.lock().filter.add(hash_of(key));
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resize(&self, entries: &mut Entries, before: usize, after: usize) {
        entries.bytes = entries.bytes + after - before;
        if after >= before {
            self.budget.used.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.budget.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Sets the value of the cached entry at `i` (`None`: deleted), to be written back.
    fn change(&self, entries: &mut Entries, i: usize, value: Option<&[u8]>) {
        let before = entries.slots[i].size();
        let slot = &mut entries.slots[i];
        slot.pair = Pair::new(slot.pair.key(), value);
        slot.referenced = true;
        if !std::mem::replace(&mut slot.dirty, true) {
            let pair = slot.pair.clone();
            entries.dirtied(pair.key());
        }
        let after = entries.slots[i].size();
        self.resize(entries, before, after);
    }

    /// Writes an evicted slot's change to the tree.
    fn write_back(&self, entries: &mut Entries, slot: Slot) -> Result<()> {
        if !slot.dirty {
            return Ok(());
        }
        match slot.pair.value() {
            Some(value) => {
                self.tree.put(slot.pair.key(), value)?;
                entries.filter.add(slot.hash);
                if entries.filter.full() {
                    self.rebuild_filter(entries)?;
                }
            }
            None => self.tree.delete(slot.pair.key())?,
        }
        Ok(())
    }

    /// A new filter of the keys the tree holds, sized for twice as many: the old one
    /// is full of keys since deleted, or too small.
    fn rebuild_filter(&self, entries: &mut Entries) -> Result<()> {
        let mut hashes = Vec::new();
        self.tree.scan_prefix(&[], &mut |key, _| {
            hashes.push(hash_of(key));
            Ok(true)
        })?;
        let mut filter = KeyFilter::with_capacity(hashes.len() * 2);
        for hash in hashes {
            filter.add(hash);
        }
        let (before, after) = (entries.filter.bytes(), filter.bytes());
        entries.filter = filter;
        self.resize(entries, before, after);
        Ok(())
    }

    fn insert(&self, entries: &mut Entries, mut slot: Slot) -> Result<()> {
        // A new entry gets its second chance at once: the clock hand may stand where
        // eviction moves it.
        slot.referenced = true;
        let size = slot.size();
        if slot.dirty {
            entries.dirtied(slot.pair.key());
        }
        let (hash, position) = (slot.hash, entries.slots.len() as u32);
        entries.slots.push(slot);
        let slots = &entries.slots;
        entries.index.insert_unique(hash, position, |&i| slots[i as usize].hash);
        self.resize(entries, 0, size);
        self.evict(entries)
    }

    /// Removes the slot at `i`, keeping the index of the one moved into its place.
    fn remove(&self, entries: &mut Entries, i: usize) -> Slot {
        if let Ok(entry) = entries.index.find_entry(entries.slots[i].hash, |&j| j as usize == i) {
            entry.remove();
        }
        let slot = entries.slots.swap_remove(i);
        let last = entries.slots.len();
        if let Some(moved) = entries.slots.get(i) {
            if let Some(position) = entries.index.find_mut(moved.hash, |&j| j as usize == last) {
                *position = i as u32;
            }
        }
        if slot.dirty && entries.is_ordered(slot.pair.key()) {
            entries.ordered.remove(slot.pair.key());
        }
        self.resize(entries, slot.size(), 0);
        slot
    }

    /// Evicts entries, in clock order, while the job's caches are over budget.
    fn evict(&self, entries: &mut Entries) -> Result<()> {
        while self.budget.over() && !entries.slots.is_empty() {
            if entries.hand >= entries.slots.len() {
                entries.hand = 0;
            }
            let hand = entries.hand;
            if std::mem::take(&mut entries.slots[hand].referenced) {
                entries.hand += 1;
                continue;
            }
            let slot = self.remove(entries, hand);
            self.write_back(entries, slot)?;
        }
        Ok(())
    }
}

impl Drop for CachedKv {
    fn drop(&mut self) {
        let bytes = self.lock().bytes;
        self.budget.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Kv for CachedKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut entries = self.lock();
        let hash = hash_of(key);
        if let Some(i) = entries.find(hash, key) {
            let slot = &mut entries.slots[i];
            slot.referenced = true;
            return Ok(slot.pair.value().map(<[u8]>::to_vec));
        }
        if !entries.filter.may_contain(hash) {
            // Nothing to cache: a write will find the filter again.
            return Ok(None);
        }
        let value = self.tree.get(key)?;
        let slot = Slot {
            hash,
            pair: Pair::new(key, value.as_deref()),
            dirty: false,
            stored: value.is_some(),
            referenced: false,
        };
        self.insert(&mut entries, slot)?;
        Ok(value)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut entries = self.lock();
        let hash = hash_of(key);
        if let Some(i) = entries.find(hash, key) {
            self.change(&mut entries, i, Some(value));
            return self.evict(&mut entries);
        }
        // Whether the tree holds the key is what the filter says: if it may, a later
        // delete must reach it.
        let stored = entries.filter.may_contain(hash);
        let slot = Slot { hash, pair: Pair::new(key, Some(value)), dirty: true, stored, referenced: false };
        self.insert(&mut entries, slot)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        let mut entries = self.lock();
        let hash = hash_of(key);
        let Some(i) = entries.find(hash, key) else {
            return match entries.filter.may_contain(hash) {
                true => self.tree.delete(key),
                false => Ok(()),
            };
        };
        if !entries.slots[i].stored {
            // Created while cached: the tree never saw it.
            self.remove(&mut entries, i);
            return Ok(());
        }
        self.change(&mut entries, i, None);
        Ok(())
    }

    /// The tree's entries overlaid with the cache's changed ones, merged in key order:
    /// a scan sees the latest value of every key without writing anything back.
    fn scan_from(&self, prefix: &[u8], from: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        let entries = self.lock();
        let start = from.max(prefix);
        let changed = entries.changed_from(prefix, start);
        merged_scan(changed.into_iter(), |tree_visit| self.tree.scan_from(prefix, start, tree_visit), visit)
    }

    fn keep_ordered(&self, table: [u8; 2]) {
        let mut entries = self.lock();
        if !entries.ordered_tables.contains(&table) {
            entries.ordered_tables.push(table);
            let keys: Vec<Arc<[u8]>> = entries
                .slots
                .iter()
                .filter(|slot| slot.dirty && slot.pair.key().starts_with(&table))
                .map(|slot| slot.pair.key().into())
                .collect();
            entries.ordered.extend(keys);
        }
    }

    /// The cache's changed entries first, by slot, then the tree's entries the cache
    /// does not change, in key order. Slots of other tables count a quarter towards the
    /// budget: the work is bounded, and a table that is most of the cache is swept at
    /// the pace of its writes.
    fn sweep(&self, prefix: &[u8], cursor: &mut SweepCursor, budget: usize, visit: &mut Visit<'_>) -> Result<()> {
        let entries = self.lock();
        let (mut seen, mut examined) = (0, 0);
        if !cursor.in_tree {
            while cursor.slot < entries.slots.len() && seen < budget && examined < budget * 4 {
                let slot = &entries.slots[cursor.slot];
                cursor.slot += 1;
                examined += 1;
                let key = slot.pair.key();
                if !key.starts_with(prefix) {
                    continue;
                }
                seen += 1;
                if let (true, Some(value)) = (slot.dirty, slot.pair.value()) {
                    if !visit(key, value)? {
                        return Ok(());
                    }
                }
            }
            if cursor.slot < entries.slots.len() {
                return Ok(());
            }
            cursor.in_tree = true;
            cursor.tree_from.clear();
        }
        let scan = |from: &[u8], visit: &mut Visit<'_>| self.tree.scan_from(prefix, from.max(prefix), visit);
        sweep_in_key_order(scan, cursor, seen, budget, |key| entries.changes(key), visit)
    }

    /// The tree's MVCC snapshot under the cache's changed entries of this moment:
    /// freezing shares them (reference-counted; a later write replaces a slot's pair
    /// rather than changing it) instead of writing them back on the worker.
    fn frozen(&self) -> Box<dyn Frozen> {
        let entries = self.lock();
        let changed = entries.slots.iter().filter(|slot| slot.dirty).map(|slot| slot.pair.clone()).collect();
        Box::new(FrozenOverlay::new(changed, self.tree.frozen()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A tree in memory that counts its reads and writes.
    #[derive(Default)]
    struct Tree {
        map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
        reads: AtomicUsize,
        writes: AtomicUsize,
    }

    impl Kv for Tree {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Ok(self.map.lock().unwrap().get(key).cloned())
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.map.lock().unwrap().insert(key.to_vec(), value.to_vec());
            Ok(())
        }
        fn delete(&self, key: &[u8]) -> Result<()> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.map.lock().unwrap().remove(key);
            Ok(())
        }
        fn scan_from(&self, prefix: &[u8], from: &[u8], visit: &mut Visit<'_>) -> Result<()> {
            let map = self.map.lock().unwrap();
            for (key, value) in map.range(from.max(prefix).to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
                if !visit(key, value)? {
                    break;
                }
            }
            Ok(())
        }
        fn frozen(&self) -> Box<dyn Frozen> {
            Box::new(Snapshot(self.map.lock().unwrap().clone()))
        }
    }

    struct Snapshot(BTreeMap<Vec<u8>, Vec<u8>>);

    impl Frozen for Snapshot {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(self.0.get(key).cloned())
        }
        fn scan_prefix(&self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<()> {
            for (key, value) in self.0.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
                if !visit(key, value)? {
                    break;
                }
            }
            Ok(())
        }
    }

    #[test]
    fn a_frozen_view_holds_the_changes_of_its_moment_and_writes_nothing_back() {
        let tree = Arc::new(Tree::default());
        let budget = CacheBudget::new((1 << 20) + 8 * (OVERHEAD + 8));
        let cache = CachedKv::new(tree.clone(), budget);
        for i in 0u8..20 {
            cache.put(&[b'k', i], &[i]).unwrap();
        }
        cache.delete(&[b'k', 3]).unwrap();
        let writes = tree.writes.load(Ordering::Relaxed);
        let frozen = cache.frozen();
        assert_eq!(tree.writes.load(Ordering::Relaxed), writes, "freezing writes nothing back");
        cache.put(&[b'k', 5], b"later").unwrap();
        cache.delete(&[b'k', 6]).unwrap();
        assert_eq!(frozen.get(&[b'k', 5]).unwrap(), Some(vec![5]), "later writes are not in the view");
        assert_eq!(frozen.get(&[b'k', 3]).unwrap(), None);
        let mut seen = Vec::new();
        frozen
            .scan_prefix(b"k", &mut |key, value| {
                seen.push((key[1], value.to_vec()));
                Ok(true)
            })
            .unwrap();
        let expected: Vec<(u8, Vec<u8>)> = (0u8..20).filter(|i| *i != 3).map(|i| (i, vec![i])).collect();
        assert_eq!(seen, expected);
    }

    fn scan(kv: &dyn Kv, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        kv.scan_prefix(prefix, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
        out
    }

    #[test]
    fn reads_see_writes_and_short_lived_entries_never_reach_the_tree() {
        let tree = Arc::new(Tree::default());
        let cache = CachedKv::new(tree.clone(), CacheBudget::new(1 << 20));
        assert_eq!(cache.get(b"a").unwrap(), None);
        cache.put(b"a", b"1").unwrap();
        assert_eq!(cache.get(b"a").unwrap(), Some(b"1".to_vec()));
        cache.delete(b"a").unwrap();
        assert_eq!(cache.get(b"a").unwrap(), None);
        assert_eq!(tree.writes.load(Ordering::Relaxed), 0, "created and deleted in the cache");
        cache.put(b"p1", b"x").unwrap();
        cache.put(b"p2", b"y").unwrap();
        cache.put(b"q", b"z").unwrap();
        cache.seed(b"p0", b"old");
        cache.seed(b"p1", b"old");
        cache.seed(b"p3", b"kept");
        cache.get(b"p3").unwrap();
        cache.delete(b"p3").unwrap();
        let expected =
            vec![(b"p0".to_vec(), b"old".to_vec()), (b"p1".to_vec(), b"x".to_vec()), (b"p2".to_vec(), b"y".to_vec())];
        assert_eq!(scan(&cache, b"p"), expected, "the cache's changes overlay the tree");
        assert_eq!(tree.writes.load(Ordering::Relaxed), 3, "a scan writes nothing back");
    }

    #[test]
    fn over_budget_entries_are_written_back_and_read_again() {
        let tree = Arc::new(Tree::default());
        let budget = CacheBudget::new(64 * (OVERHEAD + 16));
        let cache = CachedKv::new(tree.clone(), budget.clone());
        for i in 0u32..1000 {
            cache.put(&i.to_be_bytes(), &(i * 2).to_be_bytes()).unwrap();
        }
        assert!(budget.used.load(Ordering::Relaxed) <= budget.capacity, "within budget");
        for i in (0u32..1000).step_by(7) {
            cache.delete(&i.to_be_bytes()).unwrap();
        }
        for i in 0u32..1000 {
            let expected = (i % 7 != 0).then(|| (i * 2).to_be_bytes().to_vec());
            assert_eq!(cache.get(&i.to_be_bytes()).unwrap(), expected, "key {i}");
        }
        assert_eq!(scan(&cache, b"").len(), 1000 - 143);
        drop(cache);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0, "a dropped cache returns its bytes");
    }

    #[test]
    fn keys_never_written_back_are_answered_without_the_tree_and_the_filter_keeps_every_key() {
        let tree = Arc::new(Tree::default());
        let budget = CacheBudget::new(64 * (OVERHEAD + 16) + (4 << 10));
        let cache = CachedKv::new(tree.clone(), budget);
        // Five times the filter's first size: it is rebuilt on the way.
        for i in 0u32..5_000 {
            cache.put(&i.to_be_bytes(), &i.to_le_bytes()).unwrap();
        }
        assert!(tree.writes.load(Ordering::Relaxed) > 4_000, "written back");
        let (reads, writes) = (tree.reads.load(Ordering::Relaxed), tree.writes.load(Ordering::Relaxed));
        for i in 5_000u32..15_000 {
            assert_eq!(cache.get(&i.to_be_bytes()).unwrap(), None);
            cache.delete(&i.to_be_bytes()).unwrap();
        }
        let asked = tree.reads.load(Ordering::Relaxed) - reads;
        assert!(asked < 500, "{asked} of 10 000 lookups of keys never written reached the tree");
        assert!(tree.writes.load(Ordering::Relaxed) - writes < 500, "deletes of keys never written");
        for i in 0u32..5_000 {
            assert_eq!(cache.get(&i.to_be_bytes()).unwrap(), Some(i.to_le_bytes().to_vec()), "key {i}");
        }
    }
}
