//! Sluice's job lifecycle: runs a [`JobGraph`] on the runtime.
//!
//! A job is a job graph (built by the typed stream API or by the SQL planner), the
//! runtime settings, and optionally checkpointing. Starting it plans its checkpoints
//! (which one to restore, the next id), publishes what the restored checkpoint
//! pre-committed, instantiates every worker's operators, starts the checkpoint
//! coordinator beside the workers, and returns a [`JobHandle`].
//!
//! This crate sits above the runtime and the checkpoint crate (the runtime does not
//! know the coordinator) and below the APIs that describe jobs.
#![deny(missing_docs)]

mod handle;
mod restore;

pub use handle::{JobControl, JobHandle, JobResult};

use restore::CheckpointPlan;
use sluice_checkpoint::coordinator::{self, Command, CoordinatorSetup};
use sluice_checkpoint::{CheckpointConfig, CheckpointStats};
use sluice_runtime::checkpoint::CheckpointHub;
use sluice_runtime::{run_workers, JobGraph, MetricsRegistry, RuntimeConfig};
use sluice_types::{Error, Result};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// A job ready to start: what it runs, how, and how it checkpoints.
pub struct Job {
    graph: JobGraph,
    config: RuntimeConfig,
    checkpoints: Option<CheckpointConfig>,
}

impl Job {
    /// A job running `graph` with `config`, without checkpoints.
    pub fn new(graph: JobGraph, config: RuntimeConfig) -> Self {
        Job { graph, config, checkpoints: None }
    }

    /// Takes checkpoints as `config` says (none if `None`).
    pub fn checkpointing(mut self, config: Option<CheckpointConfig>) -> Self {
        self.checkpoints = config;
        self
    }

    /// The job's operators and streams as a table (see [`sluice_runtime::Topology::explain`]).
    pub fn explain(&self) -> String {
        self.graph.topology.explain(self.config.parallelism)
    }

    /// Runs the job to completion.
    pub fn execute(self) -> Result<JobResult> {
        self.start()?.join()
    }

    /// Starts the job in the background.
    pub fn start(self) -> Result<JobHandle> {
        self.config.validate()?;
        let metrics = MetricsRegistry::default();
        let cancel = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let Some(plan) = CheckpointPlan::new(self.checkpoints.clone(), &self.graph, &self.config)? else {
            let (hub, _) = CheckpointHub::disabled(self.config.parallelism, self.config.max_parallelism);
            let workers = self.graph.instantiate(&self.config, metrics.clone(), cancel.clone(), hub)?;
            let runner_cancel = cancel.clone();
            let (ended, done) = crossbeam_channel::bounded::<()>(0);
            let runner = spawn("sluice-job", move || {
                let _ended = ended;
                run_workers(workers, runner_cancel)
            })?;
            return Ok(JobHandle::new(metrics, cancel, Some(runner), done, started, None));
        };
        if let Some(loaded) = plan.restore.as_ref().filter(|l| l.manifest.finished) {
            tracing::info!("the job already finished (checkpoint {} is final); nothing to run", loaded.manifest.id);
            restore::recover_committers(&self.graph, Some(&loaded.committables()))?;
            let (_, done) = crossbeam_channel::bounded(0);
            return Ok(JobHandle::new(metrics, cancel, None, done, started, None));
        }
        // The restored state moves into the hub (no copy), and the hub lets go of it once
        // every operator has taken its share, before the job runs.
        let restored_from = plan.restore.as_ref().map(|l| (l.manifest.id, l.location.clone(), l.committables()));
        let restored = plan.restore.map(|l| Arc::new(l.into_restored()));
        let config = plan.config;
        let (hub, acks) = CheckpointHub::new(
            true,
            config.guarantee.alignment(),
            self.config.parallelism,
            self.config.max_parallelism,
            restored,
        );
        let workers = self.graph.instantiate(&self.config, metrics.clone(), cancel.clone(), hub.clone())?;
        hub.release_restored();
        restore::recover_committers(&self.graph, restored_from.as_ref().map(|(_, _, committables)| committables))?;
        if let Some((_, location, _)) = &restored_from {
            tracing::info!("restoring from {location}");
        }
        let stats = Arc::new(Mutex::new(CheckpointStats {
            restored_from: restored_from.as_ref().map(|(id, _, _)| *id),
            ..CheckpointStats::default()
        }));
        let setup = CoordinatorSetup {
            config,
            store: plan.store,
            hub,
            acks,
            committers: self.graph.committers().clone(),
            operators: self.graph.topology.operator_names(),
            parallelism: self.config.parallelism,
            max_parallelism: self.config.max_parallelism,
            first_id: plan.first_id,
            stats: stats.clone(),
        };
        let (commands, command_receiver) = crossbeam_channel::unbounded();
        let coordinator = spawn("sluice-checkpoints", move || coordinator::run(setup, command_receiver))?;
        let runner_cancel = cancel.clone();
        let ended = commands.clone();
        let (runner_ended, done) = crossbeam_channel::bounded::<()>(0);
        let runner = spawn("sluice-job", move || {
            let _ended = runner_ended;
            let outcome = run_workers(workers, runner_cancel);
            let cancelled = matches!(outcome, Err(Error::Cancelled));
            let _ = ended.send(Command::JobEnded { finished: outcome.is_ok(), cancelled });
            let checkpoints = coordinator.join().unwrap_or_else(|_| {
                Err(Error::WorkerPanicked {
                    thread: "sluice-checkpoints".into(),
                    message: "coordinator panicked".into(),
                })
            });
            outcome.and(checkpoints)
        })?;
        Ok(JobHandle::new(metrics, cancel, Some(runner), done, started, Some((commands, stats))))
    }
}

fn spawn<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name.to_string()).spawn(f).map_err(|e| Error::io(format!("thread {name}"), e))
}
