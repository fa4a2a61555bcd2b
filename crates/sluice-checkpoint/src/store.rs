//! Writing, reading, verifying and pruning checkpoints in a [`Storage`].

use crate::manifest::{
    checkpoint_dir, parse_checkpoint_dir, parse_savepoint_dir, ChainFile, Manifest, StateFile, MANIFEST, SAVEPOINTS,
};
use crate::state_file::{self, StateFileWriter};
use crate::Storage;
use sluice_runtime::checkpoint::Spill;
use sluice_runtime::checkpoint::{CheckpointId, InstanceState, ParticipantId, RestoredCheckpoint, RestoredState};
use sluice_types::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A checkpoint read back and verified.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    /// Where it was read from.
    pub location: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Every participant's state; the key groups of large state files are read only
    /// when restored.
    pub states: BTreeMap<ParticipantId, RestoredState>,
    /// Newer checkpoints that had completed (they have a manifest) but failed to verify,
    /// newest first, with the reason: [`CheckpointStore::latest`] fell back past them.
    /// Their transactions may have been published, so restoring this one can write
    /// output twice.
    pub skipped: Vec<(CheckpointId, String)>,
}

impl LoadedCheckpoint {
    /// The state to hand to the job's operators.
    pub fn restored(&self) -> RestoredCheckpoint {
        RestoredCheckpoint { id: self.manifest.id, parallelism: self.manifest.parallelism, states: self.states.clone() }
    }

    /// The state to hand to the job's operators, moved out of the loaded checkpoint.
    pub fn into_restored(self) -> RestoredCheckpoint {
        RestoredCheckpoint { id: self.manifest.id, parallelism: self.manifest.parallelism, states: self.states }
    }

    /// What each sink operator pre-committed in it.
    pub fn committables(&self) -> BTreeMap<usize, Vec<Vec<u8>>> {
        let mut by_operator: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
        for (id, state) in &self.states {
            by_operator.entry(id.operator).or_default().extend(state.committables.iter().cloned());
        }
        by_operator
    }
}

/// The checkpoints of one location.
#[derive(Debug)]
pub struct CheckpointStore {
    storage: Arc<Storage>,
}

/// Where the keyed entries of finished participants' final states are kept while the
/// job runs.
const FINISHED: &str = "finished-states";

fn state_file_name(participant: ParticipantId) -> String {
    format!("o{}-w{}.state", participant.operator, participant.worker)
}

fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_string()
    } else {
        format!("{dir}/{file}")
    }
}

impl CheckpointStore {
    /// The checkpoints kept in `storage`.
    pub fn new(storage: Storage) -> Self {
        CheckpointStore { storage: Arc::new(storage) }
    }

    /// Opens the location `location` (a path or URL).
    pub fn open(location: &str) -> Result<Self> {
        Ok(Self::new(Storage::open(location)?))
    }

    /// The location, as given.
    pub fn location(&self) -> &str {
        self.storage.location()
    }

    /// Starts the state file of `participant` in the checkpoint directory `dir`, for
    /// its snapshot's entries to be written as they come.
    pub(crate) fn state_file(&self, dir: &str, participant: ParticipantId) -> Result<StateFileWriter> {
        StateFileWriter::create(&self.storage, &join(dir, &state_file_name(participant)))
    }

    /// Starts the file that keeps the keyed entries of a finished participant's final
    /// state, for later checkpoints to copy (see [`CheckpointStore::copy_runs`]).
    pub(crate) fn finished_state_file(&self, participant: ParticipantId) -> Result<StateFileWriter> {
        StateFileWriter::create(&self.storage, &join(FINISHED, &state_file_name(participant)))
    }

    /// Finishes a file begun by [`CheckpointStore::finished_state_file`].
    pub(crate) fn finish_finished_state(
        &self,
        participant: ParticipantId,
        file: StateFileWriter,
        state: &InstanceState,
    ) -> Result<ChainFile> {
        let (size, crc32) = file.finish(state)?;
        Ok(ChainFile { path: join(FINISHED, &state_file_name(participant)), size, crc32 })
    }

    /// Writes the keyed entries of the state file `file` into `into`, a run at a time.
    pub(crate) fn copy_runs(&self, file: &ChainFile, into: &mut StateFileWriter) -> Result<()> {
        let location = self.storage.location();
        let state = state_file::read(&self.storage, location, &file.path, file.size, file.crc32)?;
        for (changes, groups) in [(false, Some(&state.keyed)), (true, state.changes.as_ref())] {
            for (group, runs) in groups.into_iter().flatten() {
                for run in runs {
                    into.spill(changes, *group, &run.load()?)?;
                }
            }
        }
        Ok(())
    }

    /// Deletes the files of finished participants' final states, once the final
    /// checkpoint holds them.
    pub(crate) fn delete_finished_states(&self) -> Result<()> {
        self.storage.delete_dir(FINISHED)
    }

    /// Writes the state files under `dir`, then the manifest: only then is the
    /// checkpoint complete. Returns the manifest written and the bytes of state.
    /// `chains` gives, per participant whose state is changes on top of earlier files,
    /// those files.
    pub fn write(
        &self,
        dir: &str,
        manifest: Manifest,
        states: &BTreeMap<ParticipantId, InstanceState>,
        chains: &BTreeMap<ParticipantId, Vec<ChainFile>>,
    ) -> Result<(Manifest, u64)> {
        self.write_started(dir, manifest, states, chains, BTreeMap::new())
    }

    /// As [`CheckpointStore::write`], where `started` holds the state files already
    /// begun (by `state_file`), which `states` completes.
    pub(crate) fn write_started(
        &self,
        dir: &str,
        mut manifest: Manifest,
        states: &BTreeMap<ParticipantId, InstanceState>,
        chains: &BTreeMap<ParticipantId, Vec<ChainFile>>,
        mut started: BTreeMap<ParticipantId, StateFileWriter>,
    ) -> Result<(Manifest, u64)> {
        let mut total = 0u64;
        for (participant, state) in states {
            let writer = match started.remove(participant) {
                Some(writer) => writer,
                None => self.state_file(dir, *participant)?,
            };
            let (size, crc32) = writer.finish(state)?;
            let file = StateFile {
                participant: *participant,
                path: state_file_name(*participant),
                size,
                crc32,
                chain: chains.get(participant).cloned().unwrap_or_default(),
            };
            total += file.size;
            manifest.files.push(file);
        }
        self.storage.put(&join(dir, MANIFEST), manifest.encode()?)?;
        Ok((manifest, total))
    }

    /// Reads the checkpoint under `dir`, verifying the manifest and every file's size
    /// and checksum. `Ok(None)` if it has no manifest (it never completed). The key
    /// groups of large state files stay in storage, to be read one at a time by the
    /// operators that restore them.
    pub fn read(&self, dir: &str) -> Result<Option<LoadedCheckpoint>> {
        let location = join(self.storage.location(), dir);
        let Some(bytes) = self.storage.get(&join(dir, MANIFEST))? else { return Ok(None) };
        let manifest = Manifest::decode(&bytes, &location)?;
        let mut states = BTreeMap::new();
        for file in &manifest.files {
            let mut state = state_file::read(&self.storage, &location, &join(dir, &file.path), file.size, file.crc32)?;
            // Changes apply on top of the chain's files, the newest last.
            for earlier in file.chain.iter().rev() {
                state.apply_after(state_file::read(
                    &self.storage,
                    &location,
                    &earlier.path,
                    earlier.size,
                    earlier.crc32,
                )?);
            }
            states.insert(file.participant, state);
        }
        Ok(Some(LoadedCheckpoint { location, manifest, states, skipped: Vec::new() }))
    }

    /// The ids of the checkpoint directories, complete or not, oldest first.
    pub fn checkpoint_ids(&self) -> Result<Vec<CheckpointId>> {
        let mut ids: Vec<CheckpointId> =
            self.storage.list_dirs("")?.iter().filter_map(|d| parse_checkpoint_dir(d)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The latest complete checkpoint that reads back intact. A corrupt one is skipped,
    /// with a warning, for the one before it, and listed in
    /// [`LoadedCheckpoint::skipped`]; an error only if checkpoints exist but none can be
    /// used (restoring nothing would replay output already committed).
    pub fn latest(&self) -> Result<Option<LoadedCheckpoint>> {
        let mut last_error = None;
        let mut skipped = Vec::new();
        for id in self.checkpoint_ids()?.into_iter().rev() {
            match self.read(&checkpoint_dir(id)) {
                Ok(Some(mut loaded)) => {
                    loaded.skipped = skipped;
                    return Ok(Some(loaded));
                }
                Ok(None) => tracing::debug!("checkpoint {id} is incomplete (no manifest); skipping it"),
                Err(error) => {
                    tracing::warn!("checkpoint {id} is corrupt, falling back to the previous one: {error}");
                    skipped.push((id, error.to_string()));
                    last_error = Some(error);
                }
            }
        }
        match last_error {
            Some(error) => Err(Error::checkpoint(
                self.storage.location(),
                format!("no usable checkpoint; the last error was: {error}"),
            )),
            None => Ok(None),
        }
    }

    /// The ids of the savepoints kept in the location, oldest first.
    pub fn savepoint_ids(&self) -> Result<Vec<CheckpointId>> {
        let mut ids: Vec<CheckpointId> =
            self.storage.list_dirs(SAVEPOINTS)?.iter().filter_map(|d| parse_savepoint_dir(d)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The highest id of any checkpoint or savepoint in the location, complete or not:
    /// new ones are numbered after it, so no id (and no output named after one) is
    /// reused.
    pub fn newest_id(&self) -> Result<CheckpointId> {
        let checkpoints = self.checkpoint_ids()?.last().copied().unwrap_or(0);
        let savepoints = self.savepoint_ids()?.last().copied().unwrap_or(0);
        Ok(checkpoints.max(savepoints))
    }

    /// Deletes the checkpoint directories other than the `retain` newest complete
    /// ones, and incomplete directories older than the newest complete one.
    /// A directory whose files a retained checkpoint's chains still use is kept.
    pub fn prune(&self, retain: usize, newest_complete: CheckpointId) -> Result<()> {
        let ids = self.checkpoint_ids()?;
        let mut kept = 0;
        let mut doomed = Vec::new();
        let mut needed = std::collections::BTreeSet::new();
        for id in ids.into_iter().rev() {
            if id > newest_complete {
                continue;
            }
            let manifest = self.storage.get(&join(&checkpoint_dir(id), MANIFEST))?;
            if let (Some(bytes), true) = (&manifest, kept < retain) {
                kept += 1;
                let manifest = Manifest::decode(bytes, &checkpoint_dir(id))?;
                for chained in manifest.files.iter().flat_map(|f| &f.chain) {
                    needed.extend(chained.path.split('/').next().map(str::to_string));
                }
                continue;
            }
            doomed.push(checkpoint_dir(id));
        }
        for dir in doomed.into_iter().filter(|d| !needed.contains(d)) {
            self.storage.delete_dir(&dir)?;
        }
        Ok(())
    }

    /// Deletes checkpoint directories newer than `id`: left by a run that crashed before
    /// completing them.
    pub fn delete_after(&self, id: CheckpointId) -> Result<()> {
        for newer in self.checkpoint_ids()?.into_iter().filter(|&n| n > id) {
            self.storage.delete_dir(&checkpoint_dir(newer))?;
        }
        Ok(())
    }

    /// Deletes every checkpoint.
    pub fn delete_all(&self) -> Result<()> {
        for id in self.checkpoint_ids()? {
            self.storage.delete_dir(&checkpoint_dir(id))?;
        }
        self.delete_finished_states()
    }

    /// The storage, for tests and tools.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_runtime::checkpoint::{BarrierKind, Changes};

    fn changes(since: Option<u64>, entries: &[(u16, &[u8])]) -> InstanceState {
        let keyed = entries.iter().map(|(group, bytes)| (*group, bytes.to_vec())).collect();
        InstanceState { changes: Some(Changes { since, keyed }), ..InstanceState::default() }
    }

    #[test]
    fn a_state_is_read_back_with_the_files_of_its_chain_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path().to_str().unwrap()).unwrap();
        let participant = ParticipantId { operator: 3, worker: 0 };
        let mut chain: Vec<ChainFile> = Vec::new();
        let files: [InstanceState; 3] = [
            changes(None, &[(1, b"base1"), (2, b"base2")]),
            changes(Some(1), &[(1, b"-d1")]),
            changes(Some(2), &[(2, b"-d2")]),
        ];
        for (i, state) in files.iter().enumerate() {
            let id = i as u64 + 1;
            let states = BTreeMap::from([(participant, state.clone())]);
            let chains = BTreeMap::from([(participant, chain.clone())]);
            let manifest = Manifest::new(id, BarrierKind::Checkpoint, 1, 128);
            let (written, _) = store.write(&checkpoint_dir(id), manifest, &states, &chains).unwrap();
            let file = &written.files[0];
            chain.push(ChainFile {
                path: format!("{}/{}", checkpoint_dir(id), file.path),
                size: file.size,
                crc32: file.crc32,
            });
        }
        let loaded = store.latest().unwrap().unwrap();
        let merged = loaded.states[&participant].changes.clone().unwrap();
        let group =
            |group| merged[&group].iter().flat_map(|entries| entries.load().unwrap().to_vec()).collect::<Vec<u8>>();
        assert_eq!(group(1), b"base1-d1");
        assert_eq!(group(2), b"base2-d2");

        // Pruning to one checkpoint keeps the directories its chain reads.
        store.prune(1, 3).unwrap();
        assert_eq!(store.checkpoint_ids().unwrap(), vec![1, 2, 3]);
        assert!(store.latest().unwrap().is_some());
    }
}
