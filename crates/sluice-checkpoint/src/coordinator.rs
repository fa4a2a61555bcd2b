//! The checkpoint coordinator: triggers checkpoints, collects the participants'
//! snapshots, writes complete checkpoints and commits the sinks' transactions.
//!
//! It runs on its own thread beside the workers, so storing state and committing never
//! stall processing. One checkpoint is in flight at a time; the next starts `interval`
//! after the previous started and at least `min_pause` after it completed.

use crate::manifest::{checkpoint_dir, savepoint_dir, Manifest};
use crate::{CheckpointConfig, CheckpointStore};
use crossbeam_channel::{select, Receiver, Sender};
use sluice_runtime::checkpoint::{
    Ack, AckKind, Barrier, BarrierKind, CheckpointHub, CheckpointId, Committer, InstanceState, ParticipantId,
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

struct InFlight {
    barrier: Barrier,
    started: Instant,
    states: BTreeMap<ParticipantId, InstanceState>,
    reply: Option<Sender<Result<String>>>,
}

/// Runs the coordinator until the job ends; returns its first fatal error.
pub fn run(setup: CoordinatorSetup, commands: Receiver<Command>) -> Result<()> {
    Coordinator::new(setup).run(commands)
}

struct Coordinator {
    setup: CoordinatorSetup,
    participants: Vec<ParticipantId>,
    finished: BTreeMap<ParticipantId, InstanceState>,
    next_id: CheckpointId,
    in_flight: Option<InFlight>,
    savepoints: Vec<Sender<Result<String>>>,
    next_trigger: Instant,
    /// Transactions whose commit failed, retried after the next checkpoint.
    uncommitted: Vec<(usize, Vec<u8>)>,
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
            uncommitted: Vec::new(),
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
                    Ok(Command::Savepoint(reply)) => self.savepoints.push(reply),
                    Ok(Command::JobEnded { finished, cancelled }) => return self.on_job_end(finished, cancelled),
                    Err(_) => return Ok(()),
                },
                default(wait) => {}
            }
            self.expire()?;
            self.maybe_trigger();
        }
    }

    fn next_deadline(&self) -> Instant {
        match &self.in_flight {
            Some(flight) => flight.started + self.setup.config.timeout,
            None if !self.savepoints.is_empty() => Instant::now(),
            None => self.next_trigger,
        }
    }

    fn maybe_trigger(&mut self) {
        if self.in_flight.is_some() {
            return;
        }
        let kind = if let Some(reply) = self.savepoints.pop() {
            (BarrierKind::Savepoint, Some(reply))
        } else if Instant::now() >= self.next_trigger {
            (BarrierKind::Checkpoint, None)
        } else {
            return;
        };
        let barrier = Barrier { id: self.next_id, kind: kind.0 };
        self.next_id += 1;
        self.in_flight = Some(InFlight { barrier, started: Instant::now(), states: BTreeMap::new(), reply: kind.1 });
        self.next_trigger = Instant::now() + self.setup.config.interval;
        self.setup.hub.request(barrier);
    }

    fn on_ack(&mut self, ack: Ack) -> Result<()> {
        match ack.kind {
            AckKind::Finished => {
                self.finished.insert(ack.participant, ack.state);
            }
            AckKind::Snapshot(id) => match &mut self.in_flight {
                Some(flight) if flight.barrier.id == id => {
                    flight.states.insert(ack.participant, ack.state);
                }
                // A late snapshot of an abandoned checkpoint.
                _ => return Ok(()),
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
            if !flight.states.contains_key(participant) {
                let state = self.finished.get(participant).cloned().unwrap_or_default();
                flight.states.insert(*participant, state);
            }
        }
        let outcome = self.complete(flight.barrier, flight.started, &flight.states, false);
        match (flight.reply, outcome) {
            (Some(reply), outcome) => {
                let _ = reply.send(outcome);
            }
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
        finished: bool,
    ) -> Result<String> {
        let dir = match barrier.kind {
            BarrierKind::Checkpoint => checkpoint_dir(barrier.id),
            BarrierKind::Savepoint => savepoint_dir(barrier.id),
        };
        let mut manifest = Manifest::new(barrier.id, barrier.kind, self.setup.parallelism, self.setup.max_parallelism);
        manifest.operators = self.setup.operators.clone();
        manifest.completed_at = sluice_runtime::now_millis();
        manifest.finished = finished;
        let (_, size) = self.setup.store.write(&dir, manifest, states)?;
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
        for (participant, state) in states {
            for committable in &state.committables {
                self.uncommitted.push((participant.operator, committable.clone()));
            }
        }
        self.commit_pending();
        if barrier.kind == BarrierKind::Checkpoint {
            if let Err(error) = self.setup.store.prune(self.setup.config.retained, barrier.id) {
                tracing::warn!("cannot delete old checkpoints: {error}");
            }
        }
        Ok(format!("{}/{dir}", self.setup.store.location()))
    }

    fn commit_pending(&mut self) {
        let committers = &self.setup.committers;
        self.uncommitted.retain(|(operator, committable)| {
            let Some(committer) = committers.get(operator) else { return false };
            match committer.commit(committable) {
                Ok(()) => false,
                Err(error) => {
                    tracing::warn!("commit failed, retrying after the next checkpoint: {error}");
                    true
                }
            }
        });
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
            if let Some(reply) = flight.reply {
                let _ = reply.send(Err(Error::checkpoint(self.setup.store.location(), message)));
            }
        }
        Ok(())
    }

    fn on_job_end(mut self, finished: bool, cancelled: bool) -> Result<()> {
        for reply in self.savepoints.drain(..) {
            let _ = reply.send(Err(Error::checkpoint(self.setup.store.location(), "the job ended first")));
        }
        if let Some(flight) = self.in_flight.take() {
            if let Some(reply) = flight.reply {
                let _ = reply.send(Err(Error::checkpoint(self.setup.store.location(), "the job ended first")));
            }
        }
        if finished {
            // Every participant reported its final state before its worker stopped.
            for ack in self.setup.acks.try_iter().collect::<Vec<_>>() {
                if ack.kind == AckKind::Finished {
                    self.finished.insert(ack.participant, ack.state);
                }
            }
            let missing: Vec<_> = self.participants.iter().filter(|p| !self.finished.contains_key(p)).collect();
            if !missing.is_empty() {
                return Err(Error::checkpoint(
                    self.setup.store.location(),
                    format!("internal: no final state from {missing:?}"),
                ));
            }
            let barrier = Barrier { id: self.next_id, kind: BarrierKind::Checkpoint };
            let states = std::mem::take(&mut self.finished);
            self.complete(barrier, Instant::now(), &states, true)?;
            if !self.uncommitted.is_empty() {
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
