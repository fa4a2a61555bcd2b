//! The snapshot of one operator instance, split so that it can be redistributed.
//!
//! Keyed state is written per key group: each entry is a key and what the operator
//! keeps for it, appended to its key group's buffer. On restore a worker reads the key
//! groups it owns, from every old instance, whatever the old parallelism was. Operator
//! state that is not keyed (a source's splits) is a list of items, dealt out to the new
//! instances. Sinks add the transactions to commit once the checkpoint is complete.
//!
//! State kept in an on-disk store is written as *changes*: either all of it (a base),
//! or only what changed since the instance's previous checkpoint, so that a checkpoint
//! of a large, slowly changing state writes little. The coordinator keeps the chain of
//! files a state is rebuilt from; restoring applies them in order.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_types::{hash_key, key_group_for_hash, Error, Key, Result};
use std::collections::BTreeMap;

/// The snapshot of one operator instance, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    /// Keyed entries, per key group.
    pub keyed: BTreeMap<u16, Vec<u8>>,
    /// Items of non-keyed state, redistributed one by one on rescale.
    pub items: Vec<Vec<u8>>,
    /// The instance's clocks (its watermark, how far its windows fired): on rescale
    /// every new instance gets the clocks of every old one, so that none starts at the
    /// beginning of time and accepts or fires again what an old one had settled.
    pub clocks: Vec<Vec<u8>>,
    /// Transactions a sink pre-committed, to commit when the checkpoint completes.
    pub committables: Vec<Vec<u8>>,
    /// Keyed entries of an on-disk store, in key groups; an empty entry deletes its key.
    pub changes: Option<Changes>,
}

/// The entries of an on-disk store in one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// `None`: all the store's entries (a base). `Some(n)`: only the entries changed
    /// since the instance's snapshot for checkpoint `n`, which must be the previous
    /// complete checkpoint.
    pub since: Option<u64>,
    /// Entries per key group, in the order written.
    pub keyed: BTreeMap<u16, Vec<u8>>,
}

impl InstanceState {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.keyed.is_empty()
            && self.items.is_empty()
            && self.clocks.is_empty()
            && self.committables.is_empty()
            && self.changes.is_none()
    }

    /// Its size in bytes, roughly.
    pub fn size(&self) -> usize {
        self.keyed.values().map(Vec::len).sum::<usize>()
            + self.items.iter().map(Vec::len).sum::<usize>()
            + self.clocks.iter().map(Vec::len).sum::<usize>()
            + self.committables.iter().map(Vec::len).sum::<usize>()
            + self.changes.as_ref().map_or(0, |c| c.keyed.values().map(Vec::len).sum())
    }

    /// Puts `older`'s changes before this state's own: a chain of base and changes
    /// becomes one state to restore.
    pub fn apply_after(&mut self, older: Changes) {
        let own = self.changes.take().unwrap_or_default();
        let mut merged = older;
        for (group, entries) in own.keyed {
            merged.keyed.entry(group).or_default().extend_from_slice(&entries);
        }
        merged.since = None;
        self.changes = Some(merged);
    }
}

fn encode_error(e: postcard::Error) -> Error {
    Error::checkpoint("snapshot", format!("cannot encode state: {e}"))
}

fn decode_error(e: postcard::Error) -> Error {
    Error::checkpoint("restore", format!("cannot decode state (was the job's code changed?): {e}"))
}

/// Work a snapshot leaves for later, off the worker: writing the entries of a frozen
/// view of an on-disk store. The coordinator runs it before storing the snapshot.
pub type Deferred = Box<dyn FnOnce(&mut StateWriter) -> Result<()> + Send>;

/// Where an operator writes its snapshot.
pub struct StateWriter {
    max_parallelism: u16,
    checkpoint: Option<u64>,
    full: bool,
    savepoint: bool,
    state: InstanceState,
    deferred: Vec<Deferred>,
}

fn append<K: Key, E: Serialize + ?Sized>(
    groups: &mut BTreeMap<u16, Vec<u8>>,
    max_parallelism: u16,
    key: &K,
    entry: &E,
) -> Result<()> {
    let group = key_group_for_hash(hash_key(key), max_parallelism).0;
    let buffer = groups.entry(group).or_default();
    let buffer = postcard::to_extend(key, std::mem::take(buffer)).map_err(encode_error)?;
    let buffer = postcard::to_extend(entry, buffer).map_err(encode_error)?;
    groups.insert(group, buffer);
    Ok(())
}

impl StateWriter {
    /// An empty snapshot for a job with `max_parallelism` key groups, outside any
    /// checkpoint (a full one).
    pub fn new(max_parallelism: u16) -> Self {
        StateWriter {
            max_parallelism,
            checkpoint: None,
            full: true,
            savepoint: false,
            state: InstanceState::default(),
            deferred: Vec::new(),
        }
    }

    /// An empty snapshot for `checkpoint` (none: the final state); `full` when it must
    /// hold all state, with no reference to an earlier checkpoint. A savepoint is
    /// always full and is not a link in the chain of later checkpoints.
    pub fn for_checkpoint(max_parallelism: u16, checkpoint: Option<u64>, full: bool, savepoint: bool) -> Self {
        let full = full || savepoint || checkpoint.is_none();
        StateWriter {
            max_parallelism,
            checkpoint,
            full,
            savepoint,
            state: InstanceState::default(),
            deferred: Vec::new(),
        }
    }

    /// Whether this is a savepoint's snapshot.
    pub fn savepoint(&self) -> bool {
        self.savepoint
    }

    /// The checkpoint being written, if any.
    pub fn checkpoint(&self) -> Option<u64> {
        self.checkpoint
    }

    /// Whether the snapshot must hold all state (no changes since an earlier one).
    pub fn full(&self) -> bool {
        self.full
    }

    /// Adds what the operator keeps for `key`. Write several entries per key if needed
    /// (an enum tells them apart); they come back in the order written.
    pub fn keyed<K: Key, E: Serialize + ?Sized>(&mut self, key: &K, entry: &E) -> Result<()> {
        append(&mut self.state.keyed, self.max_parallelism, key, entry)
    }

    /// Starts the entries of an on-disk store: all of them (`since: None`), or the
    /// changes since the instance's snapshot of checkpoint `since`.
    pub fn begin_changes(&mut self, since: Option<u64>) {
        self.state.changes = Some(Changes { since, keyed: BTreeMap::new() });
    }

    /// Adds an on-disk store's entry for `key`, after [`StateWriter::begin_changes`]; an
    /// empty `entry` says the key has none any more.
    pub fn change<K: Key, E: Serialize + ?Sized>(&mut self, key: &K, entry: &E) -> Result<()> {
        let changes = self.state.changes.get_or_insert_with(Changes::default);
        append(&mut changes.keyed, self.max_parallelism, key, entry)
    }

    /// Adds one item of non-keyed state (a split and its position).
    pub fn item<E: Serialize + ?Sized>(&mut self, item: &E) -> Result<()> {
        self.state.items.push(postcard::to_stdvec(item).map_err(encode_error)?);
        Ok(())
    }

    /// Adds one of the instance's clocks (a watermark, how far windows fired). Unlike an
    /// item, it is not dealt out on rescale: each new instance reads every old
    /// instance's clocks ([`StateReader::clocks`]) and keeps the lowest.
    pub fn clock<E: Serialize + ?Sized>(&mut self, clock: &E) -> Result<()> {
        self.state.clocks.push(postcard::to_stdvec(clock).map_err(encode_error)?);
        Ok(())
    }

    /// Adds a transaction to commit when the checkpoint completes.
    pub fn committable<E: Serialize + ?Sized>(&mut self, committable: &E) -> Result<()> {
        self.state.committables.push(postcard::to_stdvec(committable).map_err(encode_error)?);
        Ok(())
    }

    /// Leaves writing part of the snapshot for later, off the worker: `write` gets a
    /// writer whose changes and keyed entries are added to this snapshot's. The state it
    /// writes must be frozen when it is deferred (an MVCC snapshot of a store).
    pub fn defer(&mut self, write: Deferred) {
        self.deferred.push(write);
    }

    /// The finished snapshot (its deferred work is dropped: see [`StateWriter::split`]).
    pub fn finish(self) -> InstanceState {
        self.state
    }

    /// The snapshot written so far and the work left for later.
    pub fn split(self) -> (InstanceState, Vec<Deferred>) {
        (self.state, self.deferred)
    }

    /// Runs deferred work into `state`, for a job with `max_parallelism` key groups.
    pub fn complete(state: &mut InstanceState, deferred: Vec<Deferred>, max_parallelism: u16) -> Result<()> {
        for write in deferred {
            let mut writer = StateWriter::new(max_parallelism);
            write(&mut writer)?;
            for (group, entries) in writer.state.keyed {
                state.keyed.entry(group).or_default().extend_from_slice(&entries);
            }
            if let Some(later) = writer.state.changes {
                let changes = state.changes.get_or_insert_with(Changes::default);
                for (group, entries) in later.keyed {
                    changes.keyed.entry(group).or_default().extend_from_slice(&entries);
                }
            }
        }
        Ok(())
    }
}

/// Decodes the (key, entry) pairs appended to the buffers of each key group, in order.
/// With `key_groups`, checks that each key still hashes to the group it was saved in: a
/// changed `Hash` implementation of the key type would otherwise put restored state on
/// workers that never see the key's records.
fn decode_entries<'a, K: Key, E: DeserializeOwned>(
    buffers: impl Iterator<Item = (&'a u16, &'a Vec<u8>)>,
    key_groups: Option<u16>,
) -> Result<Vec<(K, E)>> {
    let mut entries = Vec::new();
    visit_entries(buffers, key_groups, |key, entry| {
        entries.push((key, entry));
        Ok(())
    })?;
    Ok(entries)
}

/// Calls `visit` with each entry of `buffers`, key group by key group, in the order
/// written; an entry may borrow from the buffers, so nothing is copied.
fn visit_entries<'a, K: Key, E: Deserialize<'a>>(
    buffers: impl Iterator<Item = (&'a u16, &'a Vec<u8>)>,
    key_groups: Option<u16>,
    mut visit: impl FnMut(K, E) -> Result<()>,
) -> Result<()> {
    for (&group, buffer) in buffers {
        let mut rest: &'a [u8] = buffer;
        while !rest.is_empty() {
            let (key, tail) = postcard::take_from_bytes::<K>(rest).map_err(decode_error)?;
            let (entry, tail) = postcard::take_from_bytes::<E>(tail).map_err(decode_error)?;
            if let Some(max_parallelism) = key_groups {
                let now = key_group_for_hash(hash_key(&key), max_parallelism).0;
                if now != group {
                    return Err(Error::checkpoint(
                        "restore",
                        format!(
                            "key {key:?} was saved in key group {group} but hashes to key group {now} now: the key \
                             type's Hash implementation changed since the checkpoint"
                        ),
                    ));
                }
            }
            visit(key, entry)?;
            rest = tail;
        }
    }
    Ok(())
}

/// The state an operator instance restores from: its key groups and its share of items.
#[derive(Clone, Debug, Default)]
pub struct StateReader {
    state: InstanceState,
    /// The job's number of key groups, when known: keys are checked against their group.
    key_groups: Option<u16>,
}

impl StateReader {
    /// A reader of `state`.
    pub fn new(state: InstanceState) -> Self {
        StateReader { state, key_groups: None }
    }

    /// A reader of `state` of a job with `max_parallelism` key groups, which checks that
    /// every restored key still falls in the key group it was saved in.
    pub fn checked(state: InstanceState, max_parallelism: u16) -> Self {
        StateReader { state, key_groups: Some(max_parallelism) }
    }

    /// Every keyed entry, key group by key group, in the order written.
    pub fn keyed<K: Key, E: DeserializeOwned>(&self) -> Result<Vec<(K, E)>> {
        decode_entries(self.state.keyed.iter(), self.key_groups)
    }

    /// Every entry of an on-disk store, base first, then each later change in order:
    /// applied in this order they rebuild the store.
    pub fn changes<K: Key, E: DeserializeOwned>(&self) -> Result<Vec<(K, E)>> {
        decode_entries(self.state.changes.iter().flat_map(|c| c.keyed.iter()), self.key_groups)
    }

    /// Calls `visit` with every keyed entry, as [`StateReader::keyed`] returns them,
    /// without collecting them: entries may borrow from the snapshot.
    pub fn for_each_keyed<'s, K: Key, E: Deserialize<'s>>(
        &'s self,
        visit: impl FnMut(K, E) -> Result<()>,
    ) -> Result<()> {
        visit_entries(self.state.keyed.iter(), self.key_groups, visit)
    }

    /// Calls `visit` with every entry of an on-disk store, as [`StateReader::changes`]
    /// returns them, without collecting them: a restore holds one entry at a time
    /// beside the snapshot, not a decoded copy of it.
    pub fn for_each_change<'s, K: Key, E: Deserialize<'s>>(
        &'s self,
        visit: impl FnMut(K, E) -> Result<()>,
    ) -> Result<()> {
        visit_entries(self.state.changes.iter().flat_map(|c| c.keyed.iter()), self.key_groups, visit)
    }

    /// Calls `visit` with every entry a keyed state store's snapshot holds, a state's
    /// name and its entry under a key: the keyed entries, then the on-disk store's, in
    /// the order a restore applies them.
    pub fn for_each_state_entry<K: Key>(&self, mut visit: impl FnMut(K, &str, &[u8]) -> Result<()>) -> Result<()> {
        self.for_each_keyed::<K, (&str, &[u8])>(|key, (name, entry)| visit(key, name, entry))?;
        self.for_each_change::<K, (&str, &[u8])>(|key, (name, entry)| visit(key, name, entry))
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

/// Encodes a value the way snapshots do (for entries nested in entries, committables).
pub fn encode<E: Serialize + ?Sized>(value: &E) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(encode_error)
}

/// Decodes a value written by [`encode`], [`StateWriter::item`] or
/// [`StateWriter::committable`].
pub fn decode<E: DeserializeOwned>(bytes: &[u8]) -> Result<E> {
    postcard::from_bytes(bytes).map_err(decode_error)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
