//! What a checkpoint reads of a cached store: the tree's MVCC snapshot with the
//! cache's changed entries of that moment laid over it.

use super::{Frozen, Visit};
use sluice_types::Result;
use std::sync::{Arc, Mutex, OnceLock};

/// A key and its value, or `None` if deleted, in one reference-counted allocation: one
/// memory access reads both, and freezing shares them instead of copying.
#[derive(Clone)]
pub(super) struct Pair {
    bytes: Arc<[u8]>,
    key_len: u32,
    deleted: bool,
}

impl Pair {
    pub(super) fn new(key: &[u8], value: Option<&[u8]>) -> Self {
        let bytes: Arc<[u8]> = key.iter().chain(value.unwrap_or_default()).copied().collect();
        Pair { bytes, key_len: key.len() as u32, deleted: value.is_none() }
    }

    pub(super) fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len as usize]
    }

    pub(super) fn value(&self) -> Option<&[u8]> {
        (!self.deleted).then(|| &self.bytes[self.key_len as usize..])
    }

    /// Bytes of key and value.
    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// A frozen tree with the cache's changes at freezing time laid over it.
pub(super) struct FrozenOverlay {
    /// The changed entries as they were taken, in slot order: sorted by the first read,
    /// off the worker.
    unsorted: Mutex<Vec<Pair>>,
    /// The changed entries in key order.
    changed: OnceLock<Vec<Pair>>,
    tree: Box<dyn Frozen>,
}

impl FrozenOverlay {
    pub(super) fn new(changed: Vec<Pair>, tree: Box<dyn Frozen>) -> Self {
        FrozenOverlay { unsorted: Mutex::new(changed), changed: OnceLock::new(), tree }
    }

    fn changed(&self) -> &[Pair] {
        self.changed.get_or_init(|| {
            let mut changed = std::mem::take(&mut *self.unsorted.lock().unwrap_or_else(|e| e.into_inner()));
            changed.sort_unstable_by(|a, b| a.key().cmp(b.key()));
            changed
        })
    }
}

impl Frozen for FrozenOverlay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let changed = self.changed();
        match changed.binary_search_by(|pair| pair.key().cmp(key)) {
            Ok(i) => Ok(changed[i].value().map(<[u8]>::to_vec)),
            Err(_) => self.tree.get(key),
        }
    }
    fn scan_prefix(&self, prefix: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        let changed = self.changed();
        let first = changed.partition_point(|pair| pair.key() < prefix);
        let changed = changed[first..]
            .iter()
            .take_while(|pair| pair.key().starts_with(prefix))
            .map(|pair| (pair.key(), pair.value()));
        merged_scan(changed, |tree_visit| self.tree.scan_prefix(prefix, tree_visit), visit)
    }
}

/// Visits the entries of a tree scan with `changed` (in key order; `None`: deleted)
/// laid over them: a changed key's value replaces the tree's, a deleted one is skipped,
/// and changed keys the tree lacks are visited in their place in the order.
pub(super) fn merged_scan<'a>(
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
