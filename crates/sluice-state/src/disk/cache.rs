//! A write-back cache in front of an operator instance's LSM tree.
//!
//! Most state a stream job touches is either hot (the same keys again and again) or
//! short-lived (written, read back and deleted within seconds: a pending list drained
//! by a timer, a window's pane). Sent straight to the LSM tree, every such access is a
//! memtable search or insert, and every short-lived entry is written, flushed and
//! compacted away. The cache keeps recently used entries in memory, raw bytes by key,
//! within one budget shared by the job's stores; it writes a changed entry to the tree
//! only when it evicts it (second-chance "clock" order). Scans merge the changed
//! entries with the tree's, and a checkpoint freezes the tree's MVCC snapshot under a
//! copy of them, so neither writes anything back. An entry created and deleted while
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
    key: Arc<[u8]>,
    /// `None`: deleted (written to the tree as a delete on write-back).
    value: Option<Arc<[u8]>>,
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
    index: FxHashMap<Arc<[u8]>, usize>,
    slots: Vec<Slot>,
    /// The dirty keys in order, so that a scan writes back only its range.
    dirty: BTreeSet<Arc<[u8]>>,
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
    fn change(&self, entries: &mut Entries, i: usize, value: Option<Arc<[u8]>>) {
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
            value: value.as_deref().map(Arc::from),
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
        let changed = entries
            .dirty
            .range::<[u8], _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
            .take_while(|key| key.starts_with(prefix))
            .map(|key| (&**key, entries.index.get(key).and_then(|&i| entries.slots[i].value.as_deref())));
        merged_scan(changed, |tree_visit| self.tree.scan_from(prefix, start, tree_visit), visit)
    }

    /// The tree's MVCC snapshot under the cache's changed entries of this moment:
    /// freezing shares them (keys and values are reference-counted, and a later write
    /// replaces a value rather than changing it) instead of writing them back on the
    /// worker.
    fn frozen(&self) -> Box<dyn Frozen> {
        let entries = self.lock();
        let changed = entries
            .dirty
            .iter()
            .map(|key| (key.clone(), entries.index.get(key).and_then(|&i| entries.slots[i].value.clone())))
            .collect();
        Box::new(FrozenOverlay { changed, tree: self.tree.frozen() })
    }
}

/// A changed entry: its key, and its value or `None` if deleted.
type Change = (Arc<[u8]>, Option<Arc<[u8]>>);

/// A frozen tree with the cache's changes at freezing time laid over it.
struct FrozenOverlay {
    /// Changed entries in key order.
    changed: Vec<Change>,
    tree: Box<dyn Frozen>,
}

impl Frozen for FrozenOverlay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.changed.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => Ok(self.changed[i].1.as_ref().map(|v| v.to_vec())),
            Err(_) => self.tree.get(key),
        }
    }
    fn scan_prefix(&self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        let first = self.changed.partition_point(|(k, _)| &**k < prefix);
        let changed =
            self.changed[first..].iter().take_while(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (&**k, v.as_deref()));
        merged_scan(changed, |tree_visit| self.tree.scan_prefix(prefix, tree_visit), visit)
    }
}

/// Visits the entries of a tree scan with `changed` (in key order; `None`: deleted)
/// laid over them: a changed key's value replaces the tree's, a deleted one is skipped,
/// and changed keys the tree lacks are visited in their place in the order.
fn merged_scan<'a>(
    changed: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    scan: impl FnOnce(&mut Visit<'_>) -> Result<()>,
    visit: &mut Visit<'_>,
) -> Result<()> {
    let mut changed = changed.peekable();
    let mut going = true;
    scan(&mut |key, value| {
        // Changed keys before this one, then this one, changed or as stored.
        while let Some((changed_key, changed_value)) = changed.next_if(|(k, _)| *k <= key) {
            if let Some(changed_value) = changed_value {
                going = visit(changed_key, changed_value)?;
                if !going {
                    return Ok(false);
                }
            }
            if changed_key == key {
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
