//! The format of a state file: one participant's snapshot, laid out so that a restore
//! can read it a key group at a time.
//!
//! ```text
//! [the keyed entries of each key group][an on-disk store's entries of each key group]
//! [index: postcard, where each key group's entries are, and the non-keyed state]
//! [index length: u64, little-endian]["SLUICEs2"]
//! ```
//!
//! The body is the snapshot's buffers as the workers (or their deferred work) wrote
//! them, each a run of one key group's entries; a key group may have several runs,
//! which apply in file order. A file written before this format (a postcard
//! `InstanceState`, without the magic at its end) is still read, whole.

use crate::storage::ObjectWriter;
use crate::Storage;
use serde::{Deserialize, Serialize};
use sluice_runtime::checkpoint::{Entries, InstanceState, KeyGroups, RestoredState, Spill, StoredFile};
use sluice_types::{Error, Result};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"SLUICEs2";
/// The index length and the magic.
const TRAILER: u64 = 16;

/// A file up to this size is read whole, once. A larger one is checked in pieces of this
/// size, and its key groups are read only when an operator restores them.
const READ_WHOLE: u64 = 4 << 20;

/// Where a run of one key group's entries is in the body.
#[derive(Serialize, Deserialize)]
struct Range {
    group: u16,
    offset: u64,
    len: u64,
}

/// Everything in a state file but its keyed entries.
#[derive(Serialize, Deserialize)]
struct Index {
    keyed: Vec<Range>,
    items: Vec<Vec<u8>>,
    clocks: Vec<Vec<u8>>,
    committables: Vec<Vec<u8>>,
    /// An on-disk store's entries: `since` as in `Changes`, and their key groups.
    changes: Option<(Option<u64>, Vec<Range>)>,
}

/// A state file being written. Deferred snapshot work hands it entries a few megabytes
/// at a time as it goes ([`Spill`]), so a snapshot of a store larger than memory is
/// never held whole; [`StateFileWriter::finish`] adds what the snapshot still holds
/// and the index, and makes the file durable.
pub(crate) struct StateFileWriter {
    out: ObjectWriter,
    size: u64,
    crc: crc32fast::Hasher,
    keyed: Vec<Range>,
    changes: Vec<Range>,
}

impl StateFileWriter {
    /// Starts the state file `path` in `storage`.
    pub fn create(storage: &Arc<Storage>, path: &str) -> Result<Self> {
        Ok(StateFileWriter {
            out: storage.writer(path)?,
            size: 0,
            crc: crc32fast::Hasher::new(),
            keyed: Vec::new(),
            changes: Vec::new(),
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write(bytes)?;
        self.crc.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Writes the entries `state` still holds and its index, and makes the file durable
    /// under its name. Returns its size and CRC-32.
    pub fn finish(mut self, state: &InstanceState) -> Result<(u64, u32)> {
        for (group, entries) in &state.keyed {
            self.spill(false, *group, entries)?;
        }
        for (group, entries) in state.changes.iter().flat_map(|changes| &changes.keyed) {
            self.spill(true, *group, entries)?;
        }
        let changes = std::mem::take(&mut self.changes);
        let index = Index {
            keyed: std::mem::take(&mut self.keyed),
            items: state.items.clone(),
            clocks: state.clocks.clone(),
            committables: state.committables.clone(),
            changes: state.changes.as_ref().map(|c| c.since).map(|since| (since, changes)),
        };
        let mut tail = postcard::to_stdvec(&index)
            .map_err(|e| Error::checkpoint("snapshot", format!("cannot encode the state's index: {e}")))?;
        let index_len = tail.len() as u64;
        tail.extend_from_slice(&index_len.to_le_bytes());
        tail.extend_from_slice(MAGIC);
        self.append(&tail)?;
        let (size, crc32) = (self.size, self.crc.clone().finalize());
        self.out.finish()?;
        Ok((size, crc32))
    }
}

impl Spill for StateFileWriter {
    fn spill(&mut self, changes: bool, group: u16, entries: &[u8]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let range = Range { group, offset: self.size, len: entries.len() as u64 };
        self.append(entries)?;
        if changes { &mut self.changes } else { &mut self.keyed }.push(range);
        Ok(())
    }
}

/// A state file in a checkpoint location, read in ranges by a restore.
struct StoredStateFile {
    storage: Arc<Storage>,
    path: String,
}

impl std::fmt::Debug for StoredStateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}/{}", self.storage, self.path)
    }
}

impl StoredFile for StoredStateFile {
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        Ok(self.storage.get_range(&self.path, offset, len)?.into())
    }
}

/// Reads the state file `path`, checking that it has `size` bytes and the checksum
/// `crc32`. A small file is read whole; a large one is checked piece by piece, and only
/// its index is kept: its key groups stay in storage until restored.
pub(crate) fn read(storage: &Arc<Storage>, location: &str, path: &str, size: u64, crc32: u32) -> Result<RestoredState> {
    let error = |message: String| Error::checkpoint(location, format!("state file {path} {message}"));
    match storage.size(path)? {
        None => return Err(error("is missing".to_string())),
        Some(actual) if actual != size => {
            return Err(error(format!("has {actual} bytes, expected {size} (truncated?)")))
        }
        Some(_) => {}
    }
    if size <= READ_WHOLE {
        let bytes = storage.get(path)?.ok_or_else(|| error("is missing".to_string()))?;
        if crc32fast::hash(&bytes) != crc32 {
            return Err(error("fails its checksum".to_string()));
        }
        let read = |offset: u64, len: u64| Ok(bytes[offset as usize..(offset + len) as usize].to_vec());
        return decode(size, read, |offset, len| {
            Entries::Loaded(bytes[offset as usize..(offset + len) as usize].to_vec())
        })
        .map_err(|e| error(format!("cannot be decoded: {e}")));
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut offset = 0;
    while offset < size {
        let len = READ_WHOLE.min(size - offset);
        hasher.update(&storage.get_range(path, offset, len as usize)?);
        offset += len;
    }
    if hasher.finalize() != crc32 {
        return Err(error("fails its checksum".to_string()));
    }
    let file: Arc<dyn StoredFile> = Arc::new(StoredStateFile { storage: storage.clone(), path: path.to_string() });
    let read = |offset: u64, len: u64| Ok(storage.get_range(path, offset, len as usize)?.to_vec());
    let entries = |offset, len: u64| Entries::Stored { file: file.clone(), offset, len: len as usize };
    decode(size, read, entries).map_err(|e| error(format!("cannot be decoded: {e}")))
}

/// Decodes a state file of `size` bytes whose ranges `read` returns; `entries` says
/// where the entries of a key group at (offset, len) are to be found.
fn decode(
    size: u64,
    read: impl Fn(u64, u64) -> Result<Vec<u8>>,
    entries: impl Fn(u64, u64) -> Entries,
) -> std::result::Result<RestoredState, String> {
    let trailer = match size >= TRAILER {
        true => read(size - TRAILER, TRAILER).map_err(|e| e.to_string())?,
        false => Vec::new(),
    };
    if trailer.len() as u64 != TRAILER || &trailer[8..] != MAGIC {
        // The format before key groups were indexed: the whole snapshot, encoded.
        let whole = read(0, size).map_err(|e| e.to_string())?;
        let state: InstanceState = postcard::from_bytes(&whole).map_err(|e| e.to_string())?;
        return Ok(state.into());
    }
    let index_len = u64::from_le_bytes(trailer[..8].try_into().expect("eight bytes"));
    let body = size - TRAILER;
    let index_start = body.checked_sub(index_len).ok_or("its index is longer than the file")?;
    let index: Index = postcard::from_bytes(&read(index_start, index_len).map_err(|e| e.to_string())?)
        .map_err(|e| format!("its index: {e}"))?;
    let groups = |ranges: Vec<Range>| -> std::result::Result<KeyGroups, String> {
        let mut groups = KeyGroups::new();
        for Range { group, offset, len } in ranges {
            if offset.checked_add(len).is_none_or(|end| end > index_start) {
                return Err(format!("key group {group} lies outside the file's body"));
            }
            groups.entry(group).or_default().push(entries(offset, len));
        }
        Ok(groups)
    };
    Ok(RestoredState {
        keyed: groups(index.keyed)?,
        items: index.items,
        clocks: index.clocks,
        committables: index.committables,
        changes: index.changes.map(|(_since, ranges)| groups(ranges)).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_runtime::checkpoint::{Changes, StateReader, StateWriter};

    fn sample(keys: u64, value_len: usize) -> InstanceState {
        let mut writer = StateWriter::new(128);
        for key in 0..keys {
            writer.keyed(&key, &"k".repeat(value_len)).unwrap();
        }
        writer.item(&"split").unwrap();
        writer.clock(&42i64).unwrap();
        writer.committable(&"part-1").unwrap();
        let mut state = writer.finish();
        state.changes = Some(Changes { since: Some(3), keyed: state.keyed.clone() });
        state
    }

    fn write(storage: &Arc<Storage>, path: &str, state: &InstanceState) -> (u64, u32) {
        StateFileWriter::create(storage, path).unwrap().finish(state).unwrap()
    }

    type Entry = (u64, String);

    fn entries(state: RestoredState) -> (Vec<Entry>, Vec<Entry>) {
        let reader = StateReader::checked(state, 128);
        (reader.keyed().unwrap(), reader.changes().unwrap())
    }

    #[test]
    fn small_and_large_files_read_back_the_same_entries() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path().to_str().unwrap()).unwrap());
        for (keys, value_len) in [(0, 0), (100, 10), (20_000, 300)] {
            let state = sample(keys, value_len);
            let (size, crc32) = write(&storage, "s.state", &state);
            assert_eq!(size > READ_WHOLE, keys == 20_000, "one file of each kind");
            let restored = read(&storage, "loc", "s.state", size, crc32).unwrap();
            let stored = restored.keyed.values().flatten().any(|e| matches!(e, Entries::Stored { .. }));
            assert_eq!(stored, size > READ_WHOLE, "a large file's key groups stay in storage");
            assert_eq!(restored.items, state.items);
            assert_eq!(restored.clocks, state.clocks);
            assert_eq!(restored.committables, state.committables);
            assert_eq!(entries(restored), entries(state.into()));
        }
    }

    #[test]
    fn a_file_of_the_earlier_format_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path().to_str().unwrap()).unwrap());
        let state = sample(300, 8);
        let bytes = postcard::to_stdvec(&state).unwrap();
        let (size, crc32) = (bytes.len() as u64, crc32fast::hash(&bytes));
        storage.put("old.state", bytes).unwrap();
        let restored = read(&storage, "loc", "old.state", size, crc32).unwrap();
        assert_eq!(restored.committables, state.committables);
        assert_eq!(entries(restored), entries(state.into()));
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(dir.path().to_str().unwrap()).unwrap());
        for keys in [100, 20_000] {
            let (size, crc32) = write(&storage, "s.state", &sample(keys, 300));
            let mut bytes = storage.get("s.state").unwrap().unwrap().to_vec();
            bytes[size as usize / 2] ^= 1;
            storage.put("s.state", bytes.clone()).unwrap();
            let flipped = read(&storage, "loc", "s.state", size, crc32).unwrap_err().to_string();
            assert!(flipped.contains("s.state fails its checksum"), "{flipped}");
            bytes.pop();
            storage.put("s.state", bytes).unwrap();
            let short = read(&storage, "loc", "s.state", size, crc32).unwrap_err().to_string();
            assert!(short.contains("truncated"), "{short}");
        }
        let missing = read(&storage, "loc", "none.state", 10, 0).unwrap_err().to_string();
        assert!(missing.contains("none.state is missing"), "{missing}");
    }
}
