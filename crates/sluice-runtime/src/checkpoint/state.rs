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
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

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
}

fn encode_error(e: postcard::Error) -> Error {
    Error::checkpoint("snapshot", format!("cannot encode state: {e}"))
}

pub(super) fn decode_error(e: postcard::Error) -> Error {
    Error::checkpoint("restore", format!("cannot decode state (was the job's code changed?): {e}"))
}

/// Work a snapshot leaves for later, off the worker: writing the entries of a frozen
/// view of an on-disk store. The coordinator runs it into the state file it writes.
pub type Deferred = Box<dyn FnOnce(&mut StateWriter) -> Result<()> + Send>;

/// Where deferred work puts a snapshot's entries as it goes, so that a snapshot of a
/// store larger than memory is never held whole: the state file being written.
pub trait Spill {
    /// Takes entries of key group `group`: keyed entries, or an on-disk store's when
    /// `changes`. Entries of a group come in the order they apply.
    fn spill(&mut self, changes: bool, group: u16, entries: &[u8]) -> Result<()>;
}

/// A spill lent to the writers of deferred work, one after the other.
struct Shared<S>(Rc<RefCell<S>>);

impl<S: Spill> Spill for Shared<S> {
    fn spill(&mut self, changes: bool, group: u16, entries: &[u8]) -> Result<()> {
        self.0.borrow_mut().spill(changes, group, entries)
    }
}

/// How many bytes of entries deferred work buffers before it hands them to its
/// [`Spill`].
pub const SPILL_BYTES: usize = 4 << 20;

/// Where an operator writes its snapshot.
pub struct StateWriter {
    max_parallelism: u16,
    checkpoint: Option<u64>,
    full: bool,
    savepoint: bool,
    state: InstanceState,
    deferred: Vec<Deferred>,
    /// Where entries go once [`SPILL_BYTES`] of them are buffered, if anywhere.
    spill: Option<Box<dyn Spill>>,
    buffered: usize,
}

/// Hands every buffer of `groups` to `spill` and empties them.
fn spill_groups(spill: &mut dyn Spill, changes: bool, groups: &mut BTreeMap<u16, Vec<u8>>) -> Result<()> {
    for (group, entries) in std::mem::take(groups) {
        spill.spill(changes, group, &entries)?;
    }
    Ok(())
}

/// Appends `key` and `entry` to the buffer of the key's group; returns the bytes added.
fn append<K: Key, E: Serialize + ?Sized>(
    groups: &mut BTreeMap<u16, Vec<u8>>,
    max_parallelism: u16,
    key: &K,
    entry: &E,
) -> Result<usize> {
    let group = key_group_for_hash(hash_key(key), max_parallelism).0;
    let buffer = groups.entry(group).or_default();
    let before = buffer.len();
    let buffer = postcard::to_extend(key, std::mem::take(buffer)).map_err(encode_error)?;
    let buffer = postcard::to_extend(entry, buffer).map_err(encode_error)?;
    let added = buffer.len() - before;
    groups.insert(group, buffer);
    Ok(added)
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
            spill: None,
            buffered: 0,
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
            spill: None,
            buffered: 0,
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
        self.buffered += append(&mut self.state.keyed, self.max_parallelism, key, entry)?;
        self.spill_if_full()
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
        self.buffered += append(&mut changes.keyed, self.max_parallelism, key, entry)?;
        self.spill_if_full()
    }

    /// Hands the buffered entries to the spill, if there is one and enough of them.
    fn spill_if_full(&mut self) -> Result<()> {
        match &mut self.spill {
            Some(spill) if self.buffered >= SPILL_BYTES => {
                spill_groups(spill.as_mut(), false, &mut self.state.keyed)?;
                if let Some(changes) = &mut self.state.changes {
                    spill_groups(spill.as_mut(), true, &mut changes.keyed)?;
                }
                self.buffered = 0;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Adds one item of non-keyed state (a split and its position).
    pub fn item<E: Serialize + ?Sized>(&mut self, item: &E) -> Result<()> {
        self.state.items.push(postcard::to_stdvec(item).map_err(encode_error)?);
        Ok(())
    }

    /// Adds one of the instance's clocks (a watermark, how far windows fired). Unlike an
    /// item, it is not dealt out on rescale: each new instance reads every old
    /// instance's clocks ([`StateReader::clocks`](super::StateReader::clocks)) and keeps the lowest.
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
    /// Entries handed to a spill are not in it.
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

    /// As [`StateWriter::complete`], handing every entry to `spill` instead: first
    /// those already in `state`, then the deferred work's, a few megabytes at a time.
    /// `state` keeps what is not keyed (and whether it has changes, and since when).
    /// Returns the spill.
    pub fn complete_spilling<S: Spill + 'static>(
        state: &mut InstanceState,
        deferred: Vec<Deferred>,
        max_parallelism: u16,
        mut spill: S,
    ) -> Result<S> {
        spill_groups(&mut spill, false, &mut state.keyed)?;
        if let Some(changes) = &mut state.changes {
            spill_groups(&mut spill, true, &mut changes.keyed)?;
        }
        let shared = Rc::new(RefCell::new(spill));
        for write in deferred {
            let mut writer = StateWriter::new(max_parallelism);
            writer.spill = Some(Box::new(Shared(shared.clone())));
            write(&mut writer)?;
            writer.buffered = SPILL_BYTES;
            writer.spill_if_full()?;
            if writer.state.changes.is_some() && state.changes.is_none() {
                state.changes = Some(Changes::default());
            }
        }
        Ok(Rc::into_inner(shared).expect("invariant: every writer holding the spill is gone").into_inner())
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

    /// Collects what it is handed, per key group, and how much at most at once.
    #[derive(Default)]
    struct Collected {
        keyed: BTreeMap<u16, Vec<u8>>,
        changes: BTreeMap<u16, Vec<u8>>,
        calls: usize,
    }

    impl Spill for Collected {
        fn spill(&mut self, changes: bool, group: u16, entries: &[u8]) -> Result<()> {
            let into = if changes { &mut self.changes } else { &mut self.keyed };
            into.entry(group).or_default().extend_from_slice(entries);
            self.calls += 1;
            Ok(())
        }
    }

    fn snapshot() -> (InstanceState, Vec<Deferred>) {
        let mut writer = StateWriter::new(128);
        writer.keyed(&u64::MAX, &1u8).unwrap();
        writer.begin_changes(Some(4));
        writer.change(&u64::MAX, &2u8).unwrap();
        writer.defer(Box::new(|writer: &mut StateWriter| {
            for key in 0u64..200_000 {
                writer.change(&key, &[7u8; 40][..])?;
            }
            writer.keyed(&(u64::MAX - 1), &3u8)
        }));
        writer.split()
    }

    #[test]
    fn spilled_entries_are_those_completed_in_memory_in_the_same_order() {
        let (mut whole, deferred) = snapshot();
        StateWriter::complete(&mut whole, deferred, 128).unwrap();
        let (mut spilled, deferred) = snapshot();
        let collected = StateWriter::complete_spilling(&mut spilled, deferred, 128, Collected::default()).unwrap();
        assert_eq!(collected.keyed, whole.keyed);
        assert_eq!(collected.changes, whole.changes.as_ref().unwrap().keyed);
        let size: usize = whole.changes.as_ref().unwrap().keyed.values().map(Vec::len).sum();
        assert!(size > 2 * SPILL_BYTES, "enough entries to spill more than once");
        assert!(collected.calls > 2 * 128, "spilled a few megabytes at a time, not all at the end");
        assert!(spilled.keyed.is_empty(), "nothing keyed is left in memory");
        assert_eq!(spilled.changes, Some(Changes { since: Some(4), keyed: BTreeMap::new() }), "since is kept");
    }
}
