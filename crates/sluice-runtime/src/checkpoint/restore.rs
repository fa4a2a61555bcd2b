//! What an operator instance restores from, read a key group at a time.
//!
//! A checkpoint's state files can be larger than memory (an on-disk store's), so a
//! restore does not read them whole: the checkpoint store hands over each file's index
//! (where each key group's entries are), and a [`StateReader`] reads one key group's
//! entries at a time, decodes them into the operator's state and lets go of them. What
//! is not keyed (items, clocks, committables) is small and read up front.

use super::state::{decode_error, InstanceState};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sluice_types::{hash_key, key_group_for_hash, Error, Key, Result};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A stored file of a checkpoint, read in ranges by the restore.
pub trait StoredFile: Send + Sync + std::fmt::Debug {
    /// `len` bytes of the file from `offset`.
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>>;
}

/// The entries of one key group from one snapshot: in memory, or a range of a stored
/// file read when the restore reaches it.
#[derive(Clone, Debug)]
pub enum Entries {
    /// In memory.
    Loaded(Vec<u8>),
    /// `len` bytes of `file` from `offset`.
    Stored {
        /// The file.
        file: Arc<dyn StoredFile>,
        /// Where the entries start.
        offset: u64,
        /// How many bytes they take.
        len: usize,
    },
}

impl Entries {
    /// Their size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Entries::Loaded(bytes) => bytes.len(),
            Entries::Stored { len, .. } => *len,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries' bytes, read from storage if they are there.
    pub fn load(&self) -> Result<Cow<'_, [u8]>> {
        match self {
            Entries::Loaded(bytes) => Ok(Cow::Borrowed(bytes)),
            Entries::Stored { file, offset, len } => Ok(Cow::Owned(file.read(*offset, *len)?)),
        }
    }
}

/// Key groups and the entries each holds, in the order they apply.
pub type KeyGroups = BTreeMap<u16, Vec<Entries>>;

/// What one operator instance's snapshot restores: an [`InstanceState`] whose key
/// groups may still be in storage, with an on-disk store's chain of changes (base
/// first) already put in order.
#[derive(Clone, Debug, Default)]
pub struct RestoredState {
    /// Keyed entries, per key group.
    pub keyed: KeyGroups,
    /// Items of non-keyed state.
    pub items: Vec<Vec<u8>>,
    /// The instance's clocks.
    pub clocks: Vec<Vec<u8>>,
    /// Transactions a sink pre-committed.
    pub committables: Vec<Vec<u8>>,
    /// An on-disk store's entries, per key group, the base's first, then each later
    /// change's.
    pub changes: Option<KeyGroups>,
}

fn loaded(groups: BTreeMap<u16, Vec<u8>>) -> KeyGroups {
    groups.into_iter().map(|(group, bytes)| (group, vec![Entries::Loaded(bytes)])).collect()
}

impl From<InstanceState> for RestoredState {
    fn from(state: InstanceState) -> Self {
        RestoredState {
            keyed: loaded(state.keyed),
            items: state.items,
            clocks: state.clocks,
            committables: state.committables,
            changes: state.changes.map(|changes| loaded(changes.keyed)),
        }
    }
}

impl RestoredState {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.keyed.is_empty()
            && self.items.is_empty()
            && self.clocks.is_empty()
            && self.committables.is_empty()
            && self.changes.is_none()
    }

    /// Its keyed size in bytes, in memory or not.
    pub fn keyed_size(&self) -> usize {
        let size = |groups: &KeyGroups| groups.values().flatten().map(Entries::len).sum::<usize>();
        size(&self.keyed) + self.changes.as_ref().map_or(0, size)
    }

    /// Puts the changes of `older`, the file before this one in a chain, before this
    /// state's own.
    pub fn apply_after(&mut self, older: RestoredState) {
        let own = self.changes.take().unwrap_or_default();
        let mut merged = older.changes.unwrap_or_default();
        for (group, entries) in own {
            merged.entry(group).or_default().extend(entries);
        }
        self.changes = Some(merged);
    }
}

/// Calls `visit` with each stored piece of `groups`, key group by key group, in the
/// order they apply; each piece is read when its turn comes and dropped after.
fn for_each_piece<'a>(
    groups: impl Iterator<Item = (&'a u16, &'a Vec<Entries>)>,
    mut visit: impl FnMut(u16, &[u8]) -> Result<()>,
) -> Result<()> {
    for (&group, pieces) in groups {
        for piece in pieces {
            visit(group, &piece.load()?)?;
        }
    }
    Ok(())
}

/// Calls `visit` with each (key, entry) pair appended to `buffer`, the entries of key
/// group `group`, in order. With `key_groups`, checks that each key still hashes to the
/// group it was saved in: a changed `Hash` implementation of the key type would
/// otherwise put restored state on workers that never see the key's records.
fn decode_piece<'a, K: Key, E: Deserialize<'a>>(
    group: u16,
    buffer: &'a [u8],
    key_groups: Option<u16>,
    visit: &mut impl FnMut(K, E) -> Result<()>,
) -> Result<()> {
    let mut rest = buffer;
    while !rest.is_empty() {
        let (key, tail) = postcard::take_from_bytes::<K>(rest).map_err(decode_error)?;
        let (entry, tail) = postcard::take_from_bytes::<E>(tail).map_err(decode_error)?;
        if let Some(max_parallelism) = key_groups {
            let now = key_group_for_hash(hash_key(&key), max_parallelism).0;
            if now != group {
                return Err(Error::checkpoint(
                    "restore",
                    format!(
                        "key {key:?} was saved in key group {group} but hashes to key group {now} now: the key type's \
                         Hash implementation changed since the checkpoint"
                    ),
                ));
            }
        }
        visit(key, entry)?;
        rest = tail;
    }
    Ok(())
}

/// The state an operator instance restores from: its key groups and its share of items.
#[derive(Clone, Debug, Default)]
pub struct StateReader {
    state: RestoredState,
    /// The job's number of key groups, when known: keys are checked against their group.
    key_groups: Option<u16>,
}

impl StateReader {
    /// A reader of `state`.
    pub fn new(state: impl Into<RestoredState>) -> Self {
        StateReader { state: state.into(), key_groups: None }
    }

    /// A reader of `state` of a job with `max_parallelism` key groups, which checks that
    /// every restored key still falls in the key group it was saved in.
    pub fn checked(state: impl Into<RestoredState>, max_parallelism: u16) -> Self {
        StateReader { state: state.into(), key_groups: Some(max_parallelism) }
    }

    fn changed_groups(&self) -> impl Iterator<Item = (&u16, &Vec<Entries>)> {
        self.state.changes.iter().flatten()
    }

    /// Every keyed entry, key group by key group, in the order written.
    pub fn keyed<K: Key, E: DeserializeOwned>(&self) -> Result<Vec<(K, E)>> {
        let mut entries = Vec::new();
        self.for_each_keyed(|key, entry| {
            entries.push((key, entry));
            Ok(())
        })?;
        Ok(entries)
    }

    /// Every entry of an on-disk store, base first, then each later change in order:
    /// applied in this order they rebuild the store.
    pub fn changes<K: Key, E: DeserializeOwned>(&self) -> Result<Vec<(K, E)>> {
        let mut entries = Vec::new();
        self.for_each_change(|key, entry| {
            entries.push((key, entry));
            Ok(())
        })?;
        Ok(entries)
    }

    /// Calls `visit` with every keyed entry, as [`StateReader::keyed`] returns them,
    /// without collecting them: a restore holds one key group's entries at a time.
    pub fn for_each_keyed<K: Key, E: DeserializeOwned>(&self, mut visit: impl FnMut(K, E) -> Result<()>) -> Result<()> {
        let key_groups = self.key_groups;
        for_each_piece(self.state.keyed.iter(), |group, piece| decode_piece(group, piece, key_groups, &mut visit))
    }

    /// Calls `visit` with every entry of an on-disk store, as [`StateReader::changes`]
    /// returns them, without collecting them.
    pub fn for_each_change<K: Key, E: DeserializeOwned>(
        &self,
        mut visit: impl FnMut(K, E) -> Result<()>,
    ) -> Result<()> {
        let key_groups = self.key_groups;
        for_each_piece(self.changed_groups(), |group, piece| decode_piece(group, piece, key_groups, &mut visit))
    }

    /// As [`StateReader::for_each_keyed`], for entries written as a state's name and
    /// its encoded value under a key, which `visit` borrows: nothing is copied.
    pub fn for_each_named_keyed<K: Key>(&self, mut visit: impl FnMut(K, &str, &[u8]) -> Result<()>) -> Result<()> {
        let key_groups = self.key_groups;
        let mut visit = |key, (name, entry): (&str, &[u8])| visit(key, name, entry);
        for_each_piece(self.state.keyed.iter(), |group, piece| decode_piece(group, piece, key_groups, &mut visit))
    }

    /// As [`StateReader::for_each_named_keyed`], for an on-disk store's entries.
    pub fn for_each_named_change<K: Key>(&self, mut visit: impl FnMut(K, &str, &[u8]) -> Result<()>) -> Result<()> {
        let key_groups = self.key_groups;
        let mut visit = |key, (name, entry): (&str, &[u8])| visit(key, name, entry);
        for_each_piece(self.changed_groups(), |group, piece| decode_piece(group, piece, key_groups, &mut visit))
    }

    /// Calls `visit` with every entry a keyed state store's snapshot holds, a state's
    /// name and its entry under a key: the keyed entries, then the on-disk store's, in
    /// the order a restore applies them.
    pub fn for_each_state_entry<K: Key>(&self, mut visit: impl FnMut(K, &str, &[u8]) -> Result<()>) -> Result<()> {
        self.for_each_named_keyed(&mut visit)?;
        self.for_each_named_change(visit)
    }

    /// Every item of non-keyed state.
    pub fn items<E: DeserializeOwned>(&self) -> Result<Vec<E>> {
        self.state.items.iter().map(|b| postcard::from_bytes(b).map_err(decode_error)).collect()
    }

    /// The clocks of the old instances this one takes over: its own at the same
    /// parallelism, every old instance's after a rescale.
    pub fn clocks<E: DeserializeOwned>(&self) -> Result<Vec<E>> {
        self.state.clocks.iter().map(|b| postcard::from_bytes(b).map_err(decode_error)).collect()
    }

    /// Whether there is nothing to restore.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::StateWriter;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn keyed_entries_come_back_in_order() {
        let mut writer = StateWriter::new(128);
        for k in 0u64..100 {
            writer.keyed(&k, &(k * 2, format!("v{k}"))).unwrap();
        }
        writer.item(&"split-0").unwrap();
        let state = writer.finish();
        assert!(state.keyed.len() > 10, "keys spread over key groups");
        let reader = StateReader::new(state);
        let mut entries: Vec<(u64, (u64, String))> = reader.keyed().unwrap();
        entries.sort();
        assert_eq!(entries.len(), 100);
        assert_eq!(entries[7], (7, (14, "v7".to_string())));
        assert_eq!(reader.items::<String>().unwrap(), vec!["split-0".to_string()]);
    }

    #[test]
    fn a_key_in_the_wrong_group_is_an_error() {
        let mut writer = StateWriter::new(128);
        writer.keyed(&7u64, &1u8).unwrap();
        let mut state = writer.finish();
        let (group, entries) = state.keyed.pop_first().unwrap();
        state.keyed.insert((group + 1) % 128, entries);
        assert!(StateReader::new(state.clone()).keyed::<u64, u8>().is_ok(), "unchecked");
        let error = StateReader::checked(state, 128).keyed::<u64, u8>().unwrap_err().to_string();
        assert!(error.contains("Hash implementation changed"), "{error}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut state = InstanceState::default();
        state.keyed.insert(3, vec![0xff, 0xff, 0xff]);
        assert!(StateReader::new(state).keyed::<String, u64>().is_err());
    }

    /// A file in memory that counts its reads and remembers the largest.
    #[derive(Debug, Default)]
    struct CountedFile {
        bytes: Vec<u8>,
        reads: AtomicUsize,
        largest: AtomicUsize,
    }

    impl StoredFile for CountedFile {
        fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.largest.fetch_max(len, Ordering::Relaxed);
            let start = offset as usize;
            Ok(self.bytes[start..start + len].to_vec())
        }
    }

    #[test]
    fn stored_key_groups_are_read_one_at_a_time_in_chain_order() {
        // A base and one change, both in one "file", as a store's index describes them.
        let mut base = StateWriter::new(16);
        let mut change = StateWriter::new(16);
        for key in 0u64..400 {
            base.change(&key, &(key, "base")).unwrap();
            if key % 3 == 0 {
                change.change(&key, &(key, "later")).unwrap();
            }
        }
        let (base, change) = (base.finish().changes.unwrap().keyed, change.finish().changes.unwrap().keyed);
        let mut file = CountedFile::default();
        let mut ranges: Vec<(u16, u64, usize)> = Vec::new();
        for groups in [&base, &change] {
            for (group, bytes) in groups {
                ranges.push((*group, file.bytes.len() as u64, bytes.len()));
                file.bytes.extend_from_slice(bytes);
            }
        }
        let file = Arc::new(file);
        let mut changes = KeyGroups::new();
        for (group, offset, len) in ranges {
            changes.entry(group).or_default().push(Entries::Stored { file: file.clone(), offset, len });
        }
        let state = RestoredState { changes: Some(changes), ..Default::default() };
        let pieces = state.changes.as_ref().unwrap().values().map(Vec::len).sum::<usize>();

        let mut last: BTreeMap<u64, String> = BTreeMap::new();
        StateReader::checked(state, 16)
            .for_each_change::<u64, (u64, String)>(|key, (value, from)| {
                assert_eq!(key, value);
                last.insert(key, from);
                Ok(())
            })
            .unwrap();
        assert_eq!(last.len(), 400);
        for (key, from) in last {
            assert_eq!(from, if key % 3 == 0 { "later" } else { "base" }, "key {key}: the change applies last");
        }
        assert_eq!(file.reads.load(Ordering::Relaxed), pieces, "each piece read once, when its turn came");
        let largest_group = base.values().map(Vec::len).max().unwrap();
        assert!(file.largest.load(Ordering::Relaxed) <= largest_group, "never more than one key group's piece at once");
    }
}
