//! The meeting point of the coordinator and the operator instances of a running job.

use super::{
    Alignment, Barrier, BarrierKind, CheckpointId, InstanceState, KeyGroups, RestoredState, StateReader, StateWriter,
};
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use sluice_types::{worker_for_key_group, KeyGroup};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One operator instance that takes part in checkpoints: a source, a stateful operator
/// or a sink, on one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ParticipantId {
    /// The operator's index in the job graph (stable for the same job code).
    pub operator: usize,
    /// The worker running the instance.
    pub worker: usize,
}

/// What a participant reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    /// Its snapshot for a checkpoint.
    Snapshot(CheckpointId),
    /// It has finished (its input ended); this final state stands in for it in every
    /// later checkpoint.
    Finished,
}

/// A participant's report to the coordinator.
pub struct Ack {
    /// Who reports.
    pub participant: ParticipantId,
    /// A snapshot or the final state.
    pub kind: AckKind,
    /// The state.
    pub state: InstanceState,
    /// How long the participant stopped processing to write it.
    pub sync: std::time::Duration,
    /// What is left to write into `state`, off the worker.
    pub deferred: Vec<super::Deferred>,
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack")
            .field("participant", &self.participant)
            .field("kind", &self.kind)
            .field("bytes", &self.state.size())
            .field("deferred", &self.deferred.len())
            .finish()
    }
}

/// The checkpoint a job restores from, read and verified.
#[derive(Clone, Debug, Default)]
pub struct RestoredCheckpoint {
    /// Its id; new checkpoints continue after it.
    pub id: CheckpointId,
    /// The parallelism it was taken at.
    pub parallelism: usize,
    /// Every instance's state.
    pub states: BTreeMap<ParticipantId, RestoredState>,
}

impl RestoredCheckpoint {
    /// What instance `worker` of `operator` restores at `parallelism`: the key groups it
    /// now owns, from every old instance, its share of the non-keyed items (its own
    /// when the parallelism is unchanged, dealt round-robin otherwise), and the clocks
    /// (its own, or every old instance's).
    pub fn share(&self, operator: usize, worker: usize, parallelism: usize, max_parallelism: u16) -> RestoredState {
        let mine = |group: &u16| worker_for_key_group(KeyGroup(*group), max_parallelism, parallelism) == worker;
        let mut share = self.share_unkeyed(operator, worker, parallelism);
        for (_, state) in self.states.iter().filter(|(id, _)| id.operator == operator) {
            for (group, entries) in state.keyed.iter().filter(|(group, _)| mine(group)) {
                share.keyed.entry(*group).or_default().extend(entries.iter().cloned());
            }
            if let Some(changes) = &state.changes {
                let into = share.changes.get_or_insert_with(Default::default);
                for (group, entries) in changes.iter().filter(|(group, _)| mine(group)) {
                    into.entry(*group).or_default().extend(entries.iter().cloned());
                }
            }
        }
        share
    }

    /// The items and clocks of a share, without its key groups.
    fn share_unkeyed(&self, operator: usize, worker: usize, parallelism: usize) -> RestoredState {
        let old: Vec<(&ParticipantId, &RestoredState)> =
            self.states.iter().filter(|(id, _)| id.operator == operator).collect();
        let mut share = RestoredState::default();
        if parallelism == self.parallelism {
            if let Some((_, state)) = old.iter().find(|(id, _)| id.worker == worker) {
                share.items = state.items.clone();
                share.clocks = state.clocks.clone();
            }
        } else {
            let all = old.iter().flat_map(|(_, s)| s.items.iter());
            share.items = all.enumerate().filter(|(i, _)| i % parallelism == worker).map(|(_, b)| b.clone()).collect();
            share.clocks = old.iter().flat_map(|(_, s)| s.clocks.iter().cloned()).collect();
        }
        share
    }

    /// As [`RestoredCheckpoint::share`], moving the key groups out rather than copying
    /// them (each belongs to one new instance): a restore does not hold the state
    /// twice. Only the instance itself may ask, once.
    pub fn take_share(
        &mut self,
        operator: usize,
        worker: usize,
        parallelism: usize,
        max_parallelism: u16,
    ) -> RestoredState {
        let mine = |group: &u16| worker_for_key_group(KeyGroup(*group), max_parallelism, parallelism) == worker;
        let mut keyed = KeyGroups::new();
        let mut changes: Option<KeyGroups> = None;
        for (_, state) in self.states.iter_mut().filter(|(id, _)| id.operator == operator) {
            for (group, entries) in state.keyed.iter_mut().filter(|(group, _)| mine(group)) {
                keyed.entry(*group).or_default().append(entries);
            }
            if let Some(old) = &mut state.changes {
                let into = changes.get_or_insert_with(Default::default);
                for (group, entries) in old.iter_mut().filter(|(group, _)| mine(group)) {
                    into.entry(*group).or_default().append(entries);
                }
            }
        }
        // Items and clocks are small: `share` copies them.
        let mut share = self.share_unkeyed(operator, worker, parallelism);
        share.keyed = keyed;
        share.changes = changes;
        share
    }

    /// Whether the checkpoint holds state for `operator`.
    pub fn has_operator(&self, operator: usize) -> bool {
        self.states.keys().any(|id| id.operator == operator)
    }
}

/// Shared by the coordinator and every participant of one job.
pub struct CheckpointHub {
    enabled: bool,
    alignment: Alignment,
    max_parallelism: u16,
    parallelism: usize,
    /// The latest requested checkpoint: `id << 1 | savepoint`; 0 when none.
    requested: AtomicU64,
    /// Set when the next snapshots must hold all state (after an abandoned checkpoint,
    /// whose snapshots later changes would otherwise refer to).
    full_required: AtomicBool,
    acks: Sender<Ack>,
    /// Whether the job restores from a checkpoint.
    restores: bool,
    /// The checkpoint it restores, until every operator took its share.
    restored: Mutex<Option<Arc<RestoredCheckpoint>>>,
    participants: Mutex<Vec<ParticipantId>>,
}

impl CheckpointHub {
    /// A hub for a job without checkpoints: nothing is requested, nothing reported.
    pub fn disabled(parallelism: usize, max_parallelism: u16) -> (Arc<Self>, Receiver<Ack>) {
        Self::new(false, Alignment::Aligned, parallelism, max_parallelism, None)
    }

    /// A hub for a job with checkpoints, restoring from `restored` if given.
    pub fn new(
        enabled: bool,
        alignment: Alignment,
        parallelism: usize,
        max_parallelism: u16,
        restored: Option<Arc<RestoredCheckpoint>>,
    ) -> (Arc<Self>, Receiver<Ack>) {
        let (acks, receiver) = crossbeam_channel::unbounded();
        let hub = CheckpointHub {
            enabled,
            alignment,
            max_parallelism,
            parallelism,
            requested: AtomicU64::new(0),
            full_required: AtomicBool::new(false),
            acks,
            restores: restored.is_some(),
            restored: Mutex::new(restored),
            participants: Mutex::new(Vec::new()),
        };
        (Arc::new(hub), receiver)
    }

    /// Whether checkpoints are taken.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How gates treat barriers.
    pub fn alignment(&self) -> Alignment {
        self.alignment
    }

    /// Whether the job restores from a checkpoint.
    pub fn restores(&self) -> bool {
        self.restores
    }

    /// Lets go of the restored checkpoint once every operator instance took its share
    /// (they do when they are built): it is not kept in memory while the job runs.
    pub fn release_restored(&self) {
        self.restored.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Registers the instance of `operator` on `worker` as a participant.
    pub fn register(self: &Arc<Self>, operator: usize, worker: usize) -> Participant {
        let id = ParticipantId { operator, worker };
        self.participants.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        Participant { id, hub: self.clone() }
    }

    /// Every registered participant.
    pub fn participants(&self) -> Vec<ParticipantId> {
        self.participants.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes the snapshots of every later checkpoint full (`true`), until cleared.
    pub fn require_full_snapshots(&self, required: bool) {
        self.full_required.store(required, Ordering::Release);
    }

    /// Asks the sources for checkpoint `id`.
    pub fn request(&self, barrier: Barrier) {
        let savepoint = u64::from(barrier.kind == BarrierKind::Savepoint);
        self.requested.store(barrier.id << 1 | savepoint, Ordering::Release);
    }

    fn requested(&self) -> Option<Barrier> {
        let raw = self.requested.load(Ordering::Acquire);
        let kind = if raw & 1 == 1 { BarrierKind::Savepoint } else { BarrierKind::Checkpoint };
        (raw != 0).then_some(Barrier { id: raw >> 1, kind })
    }
}

/// One participant's handle on the hub.
#[derive(Clone)]
pub struct Participant {
    id: ParticipantId,
    hub: Arc<CheckpointHub>,
}

impl Participant {
    /// Who this is.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// Whether checkpoints are taken.
    pub fn enabled(&self) -> bool {
        self.hub.enabled
    }

    /// The latest checkpoint requested, for sources to inject.
    pub fn requested(&self) -> Option<Barrier> {
        self.hub.requested()
    }

    /// An empty snapshot to write into, for `barrier` (none: the final state, which is
    /// always full).
    pub fn writer(&self, barrier: Option<Barrier>) -> StateWriter {
        let savepoint = barrier.is_some_and(|b| b.kind == BarrierKind::Savepoint);
        let full = self.hub.full_required.load(Ordering::Acquire);
        StateWriter::for_checkpoint(self.hub.max_parallelism, barrier.map(|b| b.id), full, savepoint)
    }

    /// The state this instance restores, if the job restores from a checkpoint.
    pub fn restored(&self) -> Option<StateReader> {
        let mut restored = self.hub.restored.lock().unwrap_or_else(|e| e.into_inner());
        let Some(restored) = restored.as_mut() else {
            if self.hub.restores {
                tracing::error!("internal: {:?} asked for its restored state after the job started", self.id);
            }
            return None;
        };
        let (operator, worker, parallelism, groups) =
            (self.id.operator, self.id.worker, self.hub.parallelism, self.hub.max_parallelism);
        // Each instance asks once: its key groups can move out of the checkpoint, unless
        // someone else holds it too.
        let share = match Arc::get_mut(restored) {
            Some(restored) => restored.take_share(operator, worker, parallelism, groups),
            None => restored.share(operator, worker, parallelism, groups),
        };
        Some(StateReader::checked(share, self.hub.max_parallelism))
    }

    /// Hands a snapshot for `checkpoint` to the coordinator; writing it stopped the
    /// participant for `sync`.
    pub fn ack(&self, checkpoint: CheckpointId, state: InstanceState, sync: std::time::Duration) {
        self.send(AckKind::Snapshot(checkpoint), state, sync, Vec::new());
    }

    /// Hands a snapshot written into `writer` for `checkpoint`, with its deferred work.
    pub fn ack_writer(&self, checkpoint: CheckpointId, writer: StateWriter, sync: std::time::Duration) {
        let (state, deferred) = writer.split();
        self.send(AckKind::Snapshot(checkpoint), state, sync, deferred);
    }

    /// Reports the instance finished, with its final state.
    pub fn finished(&self, state: InstanceState) {
        self.send(AckKind::Finished, state, std::time::Duration::ZERO, Vec::new());
    }

    /// Reports the instance finished, with its final state written into `writer`.
    pub fn finished_writer(&self, writer: StateWriter) {
        let (state, deferred) = writer.split();
        self.send(AckKind::Finished, state, std::time::Duration::ZERO, deferred);
    }

    fn send(&self, kind: AckKind, state: InstanceState, sync: std::time::Duration, deferred: Vec<super::Deferred>) {
        if self.hub.enabled {
            // The coordinator gone means the job is stopping: nothing to report to.
            let _ = self.hub.acks.send(Ack { participant: self.id, kind, state, sync, deferred });
        }
    }

    /// The job's number of key groups.
    pub fn max_parallelism(&self) -> u16 {
        self.hub.max_parallelism
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_of_a_rescaled_operator_gets_every_old_clock() {
        let mut states = BTreeMap::new();
        for worker in 0..2 {
            let mut writer = StateWriter::new(128);
            writer.clock(&(1_000i64 + worker as i64)).unwrap();
            writer.item(&format!("split-{worker}")).unwrap();
            states.insert(ParticipantId { operator: 3, worker }, writer.finish().into());
        }
        let restored = RestoredCheckpoint { id: 9, parallelism: 2, states };
        for worker in 0..4 {
            let share = StateReader::new(restored.share(3, worker, 4, 128));
            assert_eq!(share.clocks::<i64>().unwrap(), vec![1_000, 1_001], "worker {worker}");
        }
        // At the same parallelism, each instance gets its own back.
        let own = StateReader::new(restored.share(3, 1, 2, 128));
        assert_eq!(own.clocks::<i64>().unwrap(), vec![1_001]);
        assert_eq!(own.items::<String>().unwrap(), vec!["split-1".to_string()]);
    }

    #[test]
    fn taking_a_share_moves_out_what_sharing_copies() {
        let mut states = BTreeMap::new();
        for worker in 0..2 {
            let mut writer = StateWriter::new(128);
            for key in 0u64..200 {
                writer.keyed(&(key * 2 + worker as u64), &format!("v{key}")).unwrap();
            }
            writer.clock(&(worker as i64)).unwrap();
            let mut state = writer.finish();
            state.changes = Some(super::super::Changes { since: None, keyed: state.keyed.clone() });
            states.insert(ParticipantId { operator: 3, worker }, state.into());
        }
        let mut restored = RestoredCheckpoint { id: 9, parallelism: 2, states };
        let copied: Vec<RestoredState> = (0..3).map(|worker| restored.share(3, worker, 3, 128)).collect();
        assert!(copied.iter().all(|share| share.keyed_size() > 0), "every new instance gets key groups");
        for (worker, copy) in copied.iter().enumerate() {
            let taken = restored.take_share(3, worker, 3, 128);
            let reader = |state: &RestoredState| StateReader::new(state.clone());
            let keyed = |state| reader(state).keyed::<u64, String>().unwrap();
            let changes = |state| reader(state).changes::<u64, String>().unwrap();
            assert_eq!(keyed(&taken), keyed(copy), "worker {worker}");
            assert_eq!(changes(&taken), changes(copy), "worker {worker}");
            assert_eq!(taken.clocks, copy.clocks, "worker {worker}");
        }
        let left: usize = restored.states.values().map(RestoredState::keyed_size).sum();
        assert_eq!(left, 0, "nothing keyed is left behind to hold twice");
    }
}
