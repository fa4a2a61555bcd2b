//! A write-back cache in front of an operator instance's LSM tree.
//!
//! Most state a stream job touches is either hot (the same keys again and again) or
//! short-lived (written, read back and deleted within seconds: a pending list drained
//! by a timer, a window's pane). Sent straight to the LSM tree, every such access is a
//! memtable search or insert, and every short-lived entry is written, flushed and
//! compacted away. The cache keeps recently used entries in memory, raw bytes by key,
//! within one budget shared by the job's stores; it writes a changed entry to the tree
//! only when it evicts it (second-chance "clock" order), before a scan of its range,
//! and before the tree is frozen for a checkpoint. An entry created and deleted while
//! cached never reaches the tree.

use super::{Frozen, Kv, Visit};
use rustc_hash::FxHashMap;
use sluice_types::Result;
use std::collections::BTreeSet;
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

/// What a cached entry costs beyond its key and value: the slot, the index entry, the
/// allocations' headers.
const OVERHEAD: usize = 96;

struct Slot {
    key: Box<[u8]>,
    /// `None`: deleted (written to the tree as a delete on write-back).
    value: Option<Box<[u8]>>,
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
        self.key.len() + self.value.as_ref().map_or(0, |v| v.len()) + OVERHEAD
    }
}

#[derive(Default)]
struct Entries {
    index: FxHashMap<Box<[u8]>, usize>,
    slots: Vec<Slot>,
    /// The dirty keys in order, so that a scan writes back only its range.
    dirty: BTreeSet<Box<[u8]>>,
    hand: usize,
    bytes: usize,
}

/// An LSM tree behind a write-back cache.
pub(crate) struct CachedKv {
    tree: Arc<dyn Kv>,
    entries: Mutex<Entries>,
    budget: Arc<CacheBudget>,
}

impl CachedKv {
    pub(crate) fn new(tree: Arc<dyn Kv>, budget: Arc<CacheBudget>) -> Self {
        CachedKv { tree, entries: Mutex::default(), budget }
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
    fn change(&self, entries: &mut Entries, i: usize, value: Option<Box<[u8]>>) {
        let before = entries.slots[i].size();
        let slot = &mut entries.slots[i];
        slot.value = value;
        slot.referenced = true;
        if !std::mem::replace(&mut slot.dirty, true) {
            entries.dirty.insert(slot.key.clone());
        }
        let after = entries.slots[i].size();
        self.resize(entries, before, after);
    }

    /// Writes a slot's change to the tree.
    fn write_back(&self, slot: &mut Slot) -> Result<()> {
        if slot.dirty {
            match &slot.value {
                Some(value) => self.tree.put(&slot.key, value)?,
                None => self.tree.delete(&slot.key)?,
            }
            slot.dirty = false;
            slot.stored = slot.value.is_some();
        }
        Ok(())
    }

    fn insert(&self, entries: &mut Entries, mut slot: Slot) -> Result<()> {
        // A new entry gets its second chance at once: the clock hand may stand where
        // eviction moves it.
        slot.referenced = true;
        let size = slot.size();
        if slot.dirty {
            entries.dirty.insert(slot.key.clone());
        }
        entries.index.insert(slot.key.clone(), entries.slots.len());
        entries.slots.push(slot);
        self.resize(entries, 0, size);
        self.evict(entries)
    }

    /// Removes the slot at `i`, keeping the index of the one moved into its place.
    fn remove(&self, entries: &mut Entries, i: usize) -> Slot {
        let slot = entries.slots.swap_remove(i);
        entries.index.remove(&slot.key);
        if let Some(moved) = entries.slots.get(i) {
            let key = moved.key.clone();
            entries.index.insert(key, i);
        }
        if slot.dirty {
            entries.dirty.remove(&slot.key);
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
            let mut slot = self.remove(entries, hand);
            self.write_back(&mut slot)?;
        }
        Ok(())
    }

    /// Writes back the dirty entries whose keys start with `prefix` (all for an empty
    /// prefix).
    fn write_back_range(&self, entries: &mut Entries, prefix: &[u8]) -> Result<()> {
        let keys: Vec<Box<[u8]>> = entries
            .dirty
            .range::<[u8], _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|key| key.starts_with(prefix))
            .cloned()
            .collect();
        for key in keys {
            entries.dirty.remove(&key);
            if let Some(&i) = entries.index.get(&key) {
                self.write_back(&mut entries.slots[i])?;
            }
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
        if let Some(&i) = entries.index.get(key) {
            let slot = &mut entries.slots[i];
            slot.referenced = true;
            return Ok(slot.value.as_ref().map(|v| v.to_vec()));
        }
        let value = self.tree.get(key)?;
        let slot = Slot {
            key: key.into(),
            value: value.as_deref().map(Box::from),
            dirty: false,
            stored: value.is_some(),
            referenced: false,
        };
        self.insert(&mut entries, slot)?;
        Ok(value)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut entries = self.lock();
        if let Some(&i) = entries.index.get(key) {
            self.change(&mut entries, i, Some(value.into()));
            return self.evict(&mut entries);
        }
        // Whether the tree holds the key is unknown: a later delete must reach it.
        let slot = Slot { key: key.into(), value: Some(value.into()), dirty: true, stored: true, referenced: false };
        self.insert(&mut entries, slot)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        let mut entries = self.lock();
        let Some(&i) = entries.index.get(key) else { return self.tree.delete(key) };
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
        let mut changed = entries
            .dirty
            .range::<[u8], _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
            .take_while(|key| key.starts_with(prefix))
            .map(|key| (key, entries.index.get(key).and_then(|&i| entries.slots[i].value.as_deref())))
            .peekable();
        let mut going = true;
        self.tree.scan_from(prefix, start, &mut |key, value| {
            // Changed keys before this one, then this one, changed or as stored.
            while let Some((changed_key, changed_value)) = changed.next_if(|(k, _)| &***k <= key) {
                let same = &**changed_key == key;
                if let Some(changed_value) = changed_value {
                    going = visit(changed_key, changed_value)?;
                    if !going {
                        return Ok(false);
                    }
                }
                if same {
                    return Ok(true);
                }
            }
            going = visit(key, value)?;
            Ok(going)
        })?;
        while going {
            let Some((key, value)) = changed.next() else { break };
            if let Some(value) = value {
                going = visit(key, value)?;
            }
        }
        Ok(())
    }

    fn frozen(&self) -> Box<dyn Frozen> {
        let mut entries = self.lock();
        // A failed write-back leaves the entries dirty; the caller's next access fails
        // the same way and is recorded.
        let _ = self.write_back_range(&mut entries, &[]);
        self.tree.frozen()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A tree in memory that counts its writes.
    #[derive(Default)]
    struct Tree {
        map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
        writes: AtomicUsize,
    }

    impl Kv for Tree {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
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
            unimplemented!("not frozen in these tests")
        }
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
        tree.put(b"p0", b"old").unwrap();
        tree.put(b"p1", b"old").unwrap();
        tree.put(b"p3", b"kept").unwrap();
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
}
