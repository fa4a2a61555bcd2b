//! The checkpoint coordinator: triggers checkpoints, collects the participants'
//! snapshots, writes complete checkpoints and commits the sinks' transactions.
//!
//! It runs on its own thread beside the workers, so storing state and committing never
//! stall processing. One checkpoint is in flight at a time; the next starts `interval`
//! after the previous started and at least `min_pause` after it completed.

use crate::manifest::{checkpoint_dir, savepoint_dir, ChainFile, Manifest};
use crate::request::SavepointRequest;
use crate::state_file::StateFileWriter;
use crate::{CheckpointConfig, CheckpointStore};
use crossbeam_channel::{select, Receiver, Sender};
use sluice_runtime::checkpoint::{
    Ack, AckKind, Barrier, BarrierKind, CheckpointHub, CheckpointId, Committer, Deferred, InstanceState, ParticipantId,
    StateWriter,
};
use sluice_types::{Error, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the job tells its coordinator.
pub enum Command {
    /// Take a savepoint and reply with its location.
    Savepoint(Sender<Result<String>>),
    /// The workers stopped: `Ok` when every source was exhausted.
    JobEnded {
        /// Whether the job finished (rather than failed or was cancelled).
        finished: bool,
        /// Whether it was cancelled by the user.
        cancelled: bool,
    },
}

/// Counters of a job's checkpoints, for logs, the CLI and the dashboard.
#[derive(Clone, Debug, Default)]
pub struct CheckpointStats {
    /// Checkpoints completed.
    pub completed: u64,
    /// Checkpoints abandoned (timed out, or a state write failed).
    pub failed: u64,
    /// The latest complete checkpoint.
    pub latest: Option<CheckpointId>,
    /// How long the latest took, from trigger to manifest.
    pub latest_duration: Duration,
    /// Bytes of state in the latest.
    pub latest_size: u64,
    /// The longest time an operator stopped processing to write its part of the
    /// latest checkpoint (the rest of the work happens off the workers).
    pub latest_sync: Duration,
    /// The checkpoint the job restored from.
    pub restored_from: Option<CheckpointId>,
}

/// Everything a coordinator needs.
pub struct CoordinatorSetup {
    /// The settings.
    pub config: CheckpointConfig,
    /// Where checkpoints go.
    pub store: CheckpointStore,
    /// The hub the participants registered with.
    pub hub: Arc<CheckpointHub>,
    /// The participants' reports.
    pub acks: Receiver<Ack>,
    /// The sinks' committers, by operator.
    pub committers: BTreeMap<usize, Arc<dyn Committer>>,
    /// The job's operator names, by graph index.
    pub operators: Vec<String>,
    /// The job's parallelism.
    pub parallelism: usize,
    /// The job's key groups.
    pub max_parallelism: u16,
    /// The first checkpoint id to use.
    pub first_id: CheckpointId,
    /// Shared counters.
    pub stats: Arc<Mutex<CheckpointStats>>,
}

/// Who asked for a savepoint, to tell them where it is.
enum Requester {
    /// The job's own handle.
    Handle(Sender<Result<String>>),
    /// A request object in the checkpoint location (`sluice savepoint`).
    Location(SavepointRequest),
}

struct InFlight {
    barrier: Barrier,
    started: Instant,
    states: BTreeMap<ParticipantId, InstanceState>,
    /// State files begun when a snapshot came in: its deferred entries were written
    /// straight into them.
    files: BTreeMap<ParticipantId, StateFileWriter>,
    /// The longest time a participant stopped processing to write its snapshot.
    longest_sync: Duration,
    requester: Option<Requester>,
}

/// The final state of a participant that finished.
enum Finished {
    /// Whole, in memory.
    InMemory(InstanceState),
    /// Its keyed entries in `file`; `state` holds the rest.
    Written { state: InstanceState, file: ChainFile },
}

impl Finished {
    fn state(&self) -> &InstanceState {
        match self {
            Finished::InMemory(state) | Finished::Written { state, .. } => state,
        }
    }

    fn state_mut(&mut self) -> &mut InstanceState {
        match self {
            Finished::InMemory(state) | Finished::Written { state, .. } => state,
        }
    }

    fn into_state(self) -> InstanceState {
        match self {
            Finished::InMemory(state) | Finished::Written { state, .. } => state,
        }
    }
}

/// The directory of a checkpoint or savepoint.
fn directory_of(barrier: Barrier) -> String {
    match barrier.kind {
        BarrierKind::Checkpoint => checkpoint_dir(barrier.id),
        BarrierKind::Savepoint => savepoint_dir(barrier.id),
    }
}

/// How often the location is looked at for savepoint requests.
const REQUEST_POLL: Duration = Duration::from_millis(500);

/// Runs the coordinator until the job ends; returns its first fatal error.
pub fn run(setup: CoordinatorSetup, commands: Receiver<Command>) -> Result<()> {
    Coordinator::new(setup).run(commands)
}

struct Coordinator {
    setup: CoordinatorSetup,
    participants: Vec<ParticipantId>,
    /// The final states of participants that finished: they stand in for them in every
    /// later checkpoint.
    finished: BTreeMap<ParticipantId, Finished>,
    next_id: CheckpointId,
    in_flight: Option<InFlight>,
    savepoints: Vec<Requester>,
    next_trigger: Instant,
    next_request_poll: Instant,
    /// Transactions that go into the next complete checkpoint, which covers their
    /// records too, and are committed with it: those pre-committed for a checkpoint that
    /// never completed (abandoned, or failed to store), for a savepoint (which commits
    /// nothing: a crash after it restores the checkpoint before it, and output the
    /// savepoint had published would be written twice), and those whose commit failed
    /// (kept in the checkpoint's own state, so a crash before the retry loses nothing).
    carried: Vec<(ParticipantId, Vec<u8>)>,
    /// The last complete checkpoint (not savepoint).
    last_complete: Option<CheckpointId>,
    /// The files each on-disk store's state in it is rebuilt from.
    chains: BTreeMap<ParticipantId, Vec<ChainFile>>,
}

impl Coordinator {
    fn new(setup: CoordinatorSetup) -> Self {
        let participants = setup.hub.participants();
        let next_trigger = Instant::now() + setup.config.interval;
        let next_id = setup.first_id;
        Coordinator {
            setup,
            participants,
            finished: BTreeMap::new(),
            next_id,
            in_flight: None,
            savepoints: Vec::new(),
            next_trigger,
            next_request_poll: Instant::now(),
            carried: Vec::new(),
            last_complete: None,
            chains: BTreeMap::new(),
        }
    }

    fn run(mut self, commands: Receiver<Command>) -> Result<()> {
        let acks = self.setup.acks.clone();
        loop {
            let wait = self.next_deadline().saturating_duration_since(Instant::now());
            select! {
                recv(acks) -> ack => {
                    if let Ok(ack) = ack {
                        self.on_ack(ack)?;
                    }
                }
                recv(commands) -> command => match command {
                    Ok(Command::Savepoint(reply)) => self.savepoints.push(Requester::Handle(reply)),
                    Ok(Command::JobEnded { finished, cancelled }) => return self.on_job_end(finished, cancelled),
                    Err(_) => return Ok(()),
                },
                default(wait) => {}
            }
            self.expire()?;
            self.poll_requests();
            self.maybe_trigger();
        }
    }

    fn next_deadline(&self) -> Instant {
        let deadline = match &self.in_flight {
            Some(flight) => flight.started + self.setup.config.timeout,
            None if !self.savepoints.is_empty() => Instant::now(),
            None => self.next_trigger,
        };
        deadline.min(self.next_request_poll)
    }

    /// Picks up a savepoint request written into the location by `sluice savepoint`.
    fn poll_requests(&mut self) {
        if Instant::now() < self.next_request_poll {
            return;
        }
        self.next_request_poll = Instant::now() + REQUEST_POLL;
        match crate::request::take_request(self.setup.store.storage()) {
            Ok(Some(request)) => self.savepoints.push(Requester::Location(request)),
            Ok(None) => {}
            Err(error) => tracing::warn!("cannot read savepoint requests: {error}"),
        }
    }

    fn answer(&self, requester: Requester, outcome: Result<String>) {
        match requester {
            Requester::Handle(reply) => {
                let _ = reply.send(outcome);
            }
            Requester::Location(request) => {
                if let Err(error) = crate::request::reply(self.setup.store.storage(), &request, &outcome) {
                    tracing::warn!("cannot answer savepoint request {}: {error}", request.id);
                }
            }
        }
    }

    fn maybe_trigger(&mut self) {
        if self.in_flight.is_some() {
            return;
        }
        let (kind, requester) = if !self.savepoints.is_empty() {
            (BarrierKind::Savepoint, Some(self.savepoints.remove(0)))
        } else if Instant::now() >= self.next_trigger {
            (BarrierKind::Checkpoint, None)
        } else {
            return;
        };
        let barrier = Barrier { id: self.next_id, kind };
        self.next_id += 1;
        self.in_flight = Some(InFlight {
            barrier,
            started: Instant::now(),
            states: BTreeMap::new(),
            files: BTreeMap::new(),
            longest_sync: Duration::ZERO,
            requester,
        });
        self.next_trigger = Instant::now() + self.setup.config.interval;
        self.setup.hub.request(barrier);
    }

    fn on_ack(&mut self, mut ack: Ack) -> Result<()> {
        let deferred = std::mem::take(&mut ack.deferred);
        match ack.kind {
            AckKind::Finished => self.keep_finished(ack.participant, ack.state, deferred)?,
            AckKind::Snapshot(id) => match &mut self.in_flight {
                Some(flight) if flight.barrier.id == id => {
                    if !deferred.is_empty() {
                        // Written here, off the workers, from the frozen view the
                        // participant left, straight into its state file.
                        let dir = directory_of(flight.barrier);
                        let written = self.setup.store.state_file(&dir, ack.participant).and_then(|file| {
                            StateWriter::complete_spilling(&mut ack.state, deferred, self.setup.max_parallelism, file)
                        });
                        match written {
                            Ok(file) => {
                                flight.files.insert(ack.participant, file);
                            }
                            Err(error) => {
                                // The checkpoint cannot complete without it; it times out.
                                tracing::warn!("cannot write the snapshot of {:?}: {error}", ack.participant);
                                self.carried.extend(ack.state.committables.into_iter().map(|c| (ack.participant, c)));
                                return Ok(());
                            }
                        }
                    }
                    flight.longest_sync = flight.longest_sync.max(ack.sync);
                    flight.states.insert(ack.participant, ack.state);
                }
                // A late snapshot of an abandoned checkpoint: only its transactions matter.
                _ => {
                    self.carried.extend(ack.state.committables.into_iter().map(|c| (ack.participant, c)));
                    return Ok(());
                }
            },
        }
        self.complete_if_acknowledged()
    }

    fn complete_if_acknowledged(&mut self) -> Result<()> {
        let Some(flight) = &self.in_flight else { return Ok(()) };
        let all = self.participants.iter().all(|p| flight.states.contains_key(p) || self.finished.contains_key(p));
        if !all {
            return Ok(());
        }
        let mut flight = self.in_flight.take().expect("invariant: checked above");
        for participant in &self.participants {
            if flight.states.contains_key(participant) {
                continue;
            }
            let Some(finished) = self.finished.get(participant) else { continue };
            flight.states.insert(*participant, finished.state().clone());
            if let Finished::Written { file, .. } = finished {
                match self.copy_finished(&directory_of(flight.barrier), *participant, file) {
                    Ok(copy) => {
                        flight.files.insert(*participant, copy);
                    }
                    Err(error) => {
                        // The checkpoint cannot complete without it; it times out.
                        tracing::warn!("cannot write the final state of {participant:?}: {error}");
                        self.in_flight = Some(flight);
                        return Ok(());
                    }
                }
            }
        }
        for (participant, committable) in std::mem::take(&mut self.carried) {
            if let Some(state) = flight.states.get_mut(&participant) {
                state.committables.insert(0, committable);
            }
        }
        let files = std::mem::take(&mut flight.files);
        let outcome = self.complete(flight.barrier, flight.started, &flight.states, files, false);
        match &outcome {
            Ok(_) => self.lock_stats().latest_sync = flight.longest_sync,
            // Not stored: its transactions wait for the next checkpoint.
            Err(_) => {
                for (participant, state) in &flight.states {
                    self.carried.extend(state.committables.iter().map(|c| (*participant, c.clone())));
                }
            }
        }
        match (flight.requester, outcome) {
            (Some(requester), outcome) => self.answer(requester, outcome),
            (None, Ok(_)) => {}
            (None, Err(error)) => {
                tracing::warn!("checkpoint {} failed: {error}", flight.barrier.id);
                self.lock_stats().failed += 1;
            }
        }
        self.next_trigger = self.next_trigger.max(Instant::now() + self.setup.config.min_pause);
        Ok(())
    }

    /// Writes a checkpoint whose states are all in, commits its transactions and prunes
    /// old checkpoints; returns where it was written.
    fn complete(
        &mut self,
        barrier: Barrier,
        started: Instant,
        states: &BTreeMap<ParticipantId, InstanceState>,
        files: BTreeMap<ParticipantId, StateFileWriter>,
        finished: bool,
    ) -> Result<String> {
        let dir = directory_of(barrier);
        let mut manifest = Manifest::new(barrier.id, barrier.kind, self.setup.parallelism, self.setup.max_parallelism);
        manifest.operators = self.setup.operators.clone();
        manifest.completed_at = sluice_runtime::now_millis();
        manifest.finished = finished;
        let chains = match self.chains_of(barrier, states) {
            Ok(chains) => chains,
            Err(error) => {
                // Changes that refer to a snapshot outside the last complete checkpoint
                // cannot be restored: the next snapshots must be full.
                self.setup.hub.require_full_snapshots(true);
                return Err(error);
            }
        };
        let (written, size) = self.setup.store.write_started(&dir, manifest, states, &chains, files)?;
        if barrier.kind == BarrierKind::Checkpoint {
            self.chains = written
                .files
                .iter()
                .filter(|file| states.get(&file.participant).is_some_and(|s| s.changes.is_some()))
                .map(|file| {
                    let mut chain = file.chain.clone();
                    let path = format!("{dir}/{}", file.path);
                    chain.push(ChainFile { path, size: file.size, crc32: file.crc32 });
                    (file.participant, chain)
                })
                .collect();
            self.last_complete = Some(barrier.id);
            self.setup.hub.require_full_snapshots(false);
        }
        let duration = started.elapsed();
        tracing::info!(
            "{} {} complete: {} bytes of state in {} ms",
            if barrier.kind == BarrierKind::Savepoint { "savepoint" } else { "checkpoint" },
            barrier.id,
            size,
            duration.as_millis()
        );
        {
            let mut stats = self.lock_stats();
            stats.completed += 1;
            stats.latest = Some(barrier.id);
            stats.latest_duration = duration;
            stats.latest_size = size;
        }
        match barrier.kind {
            BarrierKind::Checkpoint => self.commit(states),
            BarrierKind::Savepoint => {
                for (participant, state) in states {
                    self.carried.extend(state.committables.iter().map(|c| (*participant, c.clone())));
                }
            }
        }
        if barrier.kind == BarrierKind::Checkpoint {
            if let Err(error) = self.setup.store.prune(self.setup.config.retained, barrier.id) {
                tracing::warn!("cannot delete old checkpoints: {error}");
            }
        }
        Ok(format!("{}/{dir}", self.setup.store.location()))
    }

    /// Keeps the final state of `participant`. The entries of its deferred work (an
    /// on-disk store's) are written into a file of their own at once, while the store
    /// is still open, and copied into each later checkpoint, so they are never held in
    /// memory whole.
    fn keep_finished(
        &mut self,
        participant: ParticipantId,
        mut state: InstanceState,
        deferred: Vec<Deferred>,
    ) -> Result<()> {
        if deferred.is_empty() {
            self.finished.insert(participant, Finished::InMemory(state));
            return Ok(());
        }
        let store = &self.setup.store;
        let file = store.finished_state_file(participant)?;
        let file = StateWriter::complete_spilling(&mut state, deferred, self.setup.max_parallelism, file)?;
        let file = store.finish_finished_state(participant, file, &state)?;
        self.finished.insert(participant, Finished::Written { state, file });
        Ok(())
    }

    /// Starts the state file of a finished participant in `dir` with the entries of its
    /// final state's file, read a run at a time.
    fn copy_finished(&self, dir: &str, participant: ParticipantId, file: &ChainFile) -> Result<StateFileWriter> {
        let mut copy = self.setup.store.state_file(dir, participant)?;
        self.setup.store.copy_runs(file, &mut copy)?;
        Ok(copy)
    }

    /// The earlier files each participant's changes apply on top of: none for a full
    /// snapshot, the last complete checkpoint's chain for changes since it.
    fn chains_of(
        &self,
        barrier: Barrier,
        states: &BTreeMap<ParticipantId, InstanceState>,
    ) -> Result<BTreeMap<ParticipantId, Vec<ChainFile>>> {
        let mut chains = BTreeMap::new();
        for (participant, state) in states {
            let Some(since) = state.changes.as_ref().and_then(|c| c.since) else { continue };
            match self.chains.get(participant) {
                Some(chain) if Some(since) == self.last_complete && barrier.kind == BarrierKind::Checkpoint => {
                    chains.insert(*participant, chain.clone());
                }
                _ => {
                    return Err(Error::checkpoint(
                        self.setup.store.location(),
                        format!(
                            "checkpoint {}: {participant:?} wrote changes since checkpoint {since}, which is not the \
                             last complete one",
                            barrier.id
                        ),
                    ))
                }
            }
        }
        Ok(chains)
    }

    /// Commits the transactions of a complete checkpoint; one that fails is carried into
    /// the next checkpoint and committed again after it.
    fn commit(&mut self, states: &BTreeMap<ParticipantId, InstanceState>) {
        for (participant, state) in states {
            let Some(committer) = self.setup.committers.get(&participant.operator) else { continue };
            for committable in &state.committables {
                if let Err(error) = committer.commit(committable) {
                    tracing::warn!("commit failed, retrying after the next checkpoint: {error}");
                    self.carried.push((*participant, committable.clone()));
                }
            }
        }
    }

    fn expire(&mut self) -> Result<()> {
        let timed_out = self.in_flight.as_ref().is_some_and(|f| f.started.elapsed() >= self.setup.config.timeout);
        if timed_out {
            let flight = self.in_flight.take().expect("invariant: checked above");
            let message = format!(
                "checkpoint {} timed out after {:?} ({} of {} participants acknowledged)",
                flight.barrier.id,
                self.setup.config.timeout,
                flight.states.len(),
                self.participants.len()
            );
            tracing::warn!("{message}");
            self.lock_stats().failed += 1;
            // Its snapshots were taken: later changes must not refer to them.
            self.setup.hub.require_full_snapshots(true);
            for (participant, state) in &flight.states {
                self.carried.extend(state.committables.iter().map(|c| (*participant, c.clone())));
            }
            if let Some(requester) = flight.requester {
                self.answer(requester, Err(Error::checkpoint(self.setup.store.location(), message)));
            }
        }
        Ok(())
    }

    fn on_job_end(mut self, finished: bool, cancelled: bool) -> Result<()> {
        let ended = || Err(Error::checkpoint(self.setup.store.location(), "the job ended first"));
        let mut requesters: Vec<Requester> = self.savepoints.drain(..).collect();
        let in_flight = self.in_flight.take();
        let mut pre_committed: Vec<(ParticipantId, Vec<Vec<u8>>)> = Vec::new();
        if let Some(flight) = in_flight {
            requesters.extend(flight.requester);
            pre_committed = flight.states.into_iter().map(|(p, s)| (p, s.committables)).collect();
        }
        for requester in requesters {
            self.answer(requester, ended());
        }
        if finished {
            // Every participant reported its final state before its worker stopped.
            for mut ack in self.setup.acks.try_iter().collect::<Vec<_>>() {
                match ack.kind {
                    AckKind::Finished => {
                        let deferred = std::mem::take(&mut ack.deferred);
                        self.keep_finished(ack.participant, ack.state, deferred)?;
                    }
                    // A sink that pre-committed the checkpoint still in flight.
                    AckKind::Snapshot(_) => pre_committed.push((ack.participant, ack.state.committables)),
                }
            }
            // The checkpoint in flight will never complete, but the job did: what its
            // sinks pre-committed is final too, and goes into the final checkpoint
            // before their last transactions.
            pre_committed.extend(std::mem::take(&mut self.carried).into_iter().map(|(p, c)| (p, vec![c])));
            for (participant, committables) in pre_committed {
                if let Some(state) = self.finished.get_mut(&participant).map(Finished::state_mut) {
                    let last = std::mem::replace(&mut state.committables, committables);
                    state.committables.extend(last);
                }
            }
            let missing: Vec<_> = self.participants.iter().filter(|p| !self.finished.contains_key(p)).collect();
            if !missing.is_empty() {
                return Err(Error::internal(format!("the final checkpoint has no state from {missing:?}")));
            }
            let barrier = Barrier { id: self.next_id, kind: BarrierKind::Checkpoint };
            let dir = directory_of(barrier);
            let mut states = BTreeMap::new();
            let mut files = BTreeMap::new();
            for (participant, finished) in std::mem::take(&mut self.finished) {
                if let Finished::Written { file, .. } = &finished {
                    files.insert(participant, self.copy_finished(&dir, participant, file)?);
                }
                states.insert(participant, finished.into_state());
            }
            self.complete(barrier, Instant::now(), &states, files, true)?;
            self.setup.store.delete_finished_states()?;
            if !self.carried.is_empty() {
                return Err(Error::checkpoint(
                    self.setup.store.location(),
                    "the final results could not be committed; restart the job to retry",
                ));
            }
        } else if cancelled && !self.setup.config.retain_on_cancel {
            self.setup.store.delete_all()?;
        }
        Ok(())
    }

    fn lock_stats(&self) -> std::sync::MutexGuard<'_, CheckpointStats> {
        self.setup.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}
