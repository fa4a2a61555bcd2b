//! The snapshot of one operator instance, split so that it can be redistributed.
//!
//! Keyed state is written per key group: each entry is a key and what the operator
//! keeps for it, appended to its key group's buffer. On restore a worker reads the key
//! groups it owns, from every old instance, whatever the old parallelism was. Operator
//! state that is not keyed (a source's splits) is a list of items, dealt out to the new
//! instances. Sinks add the transactions to commit once the checkpoint is complete.

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
    /// Transactions a sink pre-committed, to commit when the checkpoint completes.
    pub committables: Vec<Vec<u8>>,
}

impl InstanceState {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.keyed.is_empty() && self.items.is_empty() && self.committables.is_empty()
    }

    /// Its size in bytes, roughly.
    pub fn size(&self) -> usize {
        self.keyed.values().map(Vec::len).sum::<usize>()
            + self.items.iter().map(Vec::len).sum::<usize>()
            + self.committables.iter().map(Vec::len).sum::<usize>()
    }
}

fn encode_error(e: postcard::Error) -> Error {
    Error::checkpoint("snapshot", format!("cannot encode state: {e}"))
}

fn decode_error(e: postcard::Error) -> Error {
    Error::checkpoint("restore", format!("cannot decode state (was the job's code changed?): {e}"))
}

/// Where an operator writes its snapshot.
pub struct StateWriter {
    max_parallelism: u16,
    state: InstanceState,
}

impl StateWriter {
    /// An empty snapshot for a job with `max_parallelism` key groups.
    pub fn new(max_parallelism: u16) -> Self {
        StateWriter { max_parallelism, state: InstanceState::default() }
    }

    /// Adds what the operator keeps for `key`. Write several entries per key if needed
    /// (an enum tells them apart); they come back in the order written.
    pub fn keyed<K: Key, E: Serialize + ?Sized>(&mut self, key: &K, entry: &E) -> Result<()> {
        let group = key_group_for_hash(hash_key(key), self.max_parallelism).0;
        let buffer = self.state.keyed.entry(group).or_default();
        let buffer = postcard::to_extend(key, std::mem::take(buffer)).map_err(encode_error)?;
        let buffer = postcard::to_extend(entry, buffer).map_err(encode_error)?;
        self.state.keyed.insert(group, buffer);
        Ok(())
    }

    /// Adds one item of non-keyed state (a split and its position).
    pub fn item<E: Serialize + ?Sized>(&mut self, item: &E) -> Result<()> {
        self.state.items.push(postcard::to_stdvec(item).map_err(encode_error)?);
        Ok(())
    }

    /// Adds a transaction to commit when the checkpoint completes.
    pub fn committable<E: Serialize + ?Sized>(&mut self, committable: &E) -> Result<()> {
        self.state.committables.push(postcard::to_stdvec(committable).map_err(encode_error)?);
        Ok(())
    }

    /// The finished snapshot.
    pub fn finish(self) -> InstanceState {
        self.state
    }
}

/// The state an operator instance restores from: its key groups and its share of items.
#[derive(Clone, Debug, Default)]
pub struct StateReader {
    state: InstanceState,
}

impl StateReader {
    /// A reader of `state`.
    pub fn new(state: InstanceState) -> Self {
        StateReader { state }
    }

    /// Every keyed entry, key group by key group, in the order written.
    pub fn keyed<K: Key, E: DeserializeOwned>(&self) -> Result<Vec<(K, E)>> {
        let mut entries = Vec::new();
        for buffer in self.state.keyed.values() {
            let mut rest: &[u8] = buffer;
            while !rest.is_empty() {
                let (key, tail) = postcard::take_from_bytes::<K>(rest).map_err(decode_error)?;
                let (entry, tail) = postcard::take_from_bytes::<E>(tail).map_err(decode_error)?;
                entries.push((key, entry));
                rest = tail;
            }
        }
        Ok(entries)
    }

    /// Every item of non-keyed state.
    pub fn items<E: DeserializeOwned>(&self) -> Result<Vec<E>> {
        self.state.items.iter().map(|b| postcard::from_bytes(b).map_err(decode_error)).collect()
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
    fn garbage_is_an_error_not_a_panic() {
        let mut state = InstanceState::default();
        state.keyed.insert(3, vec![0xff, 0xff, 0xff]);
        assert!(StateReader::new(state).keyed::<String, u64>().is_err());
    }
}
