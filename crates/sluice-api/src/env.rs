//! The job: settings, the graph, and running it.

use crate::graph::{Graph, SharedGraph};
use crate::source::{add_source, Source};
use crate::Stream;
use sluice_checkpoint::coordinator::{self, Command, CoordinatorSetup};
use sluice_checkpoint::{CheckpointConfig, CheckpointStats, CheckpointStore, DeliveryGuarantee, LoadedCheckpoint};
use sluice_runtime::checkpoint::CheckpointHub;
use sluice_runtime::{
    run_workers, BuildContext, JobSnapshot, MetricsRegistry, OperatorSnapshot, RuntimeConfig, Worker,
};
use sluice_state::StateBackendKind;
use sluice_types::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Describes a job: create streams from sources, transform them, then `execute`.
pub struct StreamEnvironment {
    pub(crate) graph: SharedGraph,
    config: RuntimeConfig,
    pub(crate) state_backend: StateBackendKind,
    checkpoints: Option<CheckpointConfig>,
}

impl Default for StreamEnvironment {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamEnvironment {
    /// A job with default settings: one worker per core, batches of 1024 records.
    pub fn new() -> Self {
        StreamEnvironment {
            graph: SharedGraph::default(),
            config: RuntimeConfig::default(),
            state_backend: StateBackendKind::Heap,
            checkpoints: None,
        }
    }

    /// Sets the number of workers.
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.config.parallelism = parallelism;
        self
    }

    /// Sets where keyed state is kept: on the heap (the default) or on disk
    /// ([`StateBackendKind::OnDisk`], for state larger than memory). Set it before
    /// adding sources: streams take the backend of their environment when created.
    ///
    /// ```
    /// # use sluice_api::*;
    /// let dir = std::env::temp_dir();
    /// let env = StreamEnvironment::new()
    ///     .state_backend(StateBackendKind::OnDisk(DiskBackend::new(dir).memory_budget(64 << 20)));
    /// ```
    pub fn state_backend(mut self, backend: StateBackendKind) -> Self {
        self.state_backend = backend;
        self
    }

    /// Sets how many records a source puts in a batch.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.config.batch_size = batch_size;
        self
    }

    /// Sets how many batches a channel holds before its sender blocks.
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.config.channel_capacity = capacity;
        self
    }

    /// Sets the number of key groups (the maximum parallelism).
    pub fn max_parallelism(mut self, max_parallelism: u16) -> Self {
        self.config.max_parallelism = max_parallelism;
        self
    }

    /// Sets how often processing-time timers and idleness are checked.
    pub fn tick_interval(mut self, interval: Duration) -> Self {
        self.config.tick_interval = interval;
        self
    }

    /// The job's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// A stream read from `source`, by every worker (each reads its share).
    pub fn source<S: Source>(&self, source: S) -> Stream<S::Item> {
        add_source(self, source)
    }

    /// Takes checkpoints as `config` says; a job started again with the same location
    /// resumes from its latest complete checkpoint.
    ///
    /// ```
    /// # use sluice_api::*;
    /// # let dir = std::env::temp_dir().join(format!("sluice-doc-{}", std::process::id()));
    /// let env = StreamEnvironment::new()
    ///     .parallelism(2)
    ///     .checkpointing(CheckpointConfig::new(dir.to_str().unwrap(), std::time::Duration::from_millis(200)));
    /// ```
    pub fn checkpointing(mut self, config: CheckpointConfig) -> Self {
        self.checkpoints = Some(config);
        self
    }

    /// The checkpoint settings, if the job checkpoints.
    pub fn checkpoint_config(&self) -> Option<&CheckpointConfig> {
        self.checkpoints.as_ref()
    }

    /// Builds every worker's operators and runs the job to completion.
    pub fn execute(self) -> Result<JobResult> {
        self.start()?.join()
    }

    /// Builds every worker's operators and starts the job in the background.
    pub fn start(self) -> Result<JobHandle> {
        self.config.validate()?;
        let metrics = MetricsRegistry::default();
        let cancel = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let Some(plan) = self.checkpoint_plan()? else {
            let (hub, _) = CheckpointHub::disabled(self.config.parallelism, self.config.max_parallelism);
            let workers = self.instantiate(metrics.clone(), cancel.clone(), hub)?;
            let runner_cancel = cancel.clone();
            let (ended, done) = crossbeam_channel::bounded::<()>(0);
            let runner = spawn("sluice-job", move || {
                let _ended = ended;
                run_workers(workers, runner_cancel)
            })?;
            return Ok(JobHandle { metrics, cancel, runner: Some(runner), done, started, checkpoints: None });
        };
        if let Some(loaded) = plan.restore.as_ref().filter(|l| l.manifest.finished) {
            tracing::info!("the job already finished (checkpoint {} is final); nothing to run", loaded.manifest.id);
            self.recover_committers(Some(loaded))?;
            let (_, done) = crossbeam_channel::bounded(0);
            return Ok(JobHandle { metrics, cancel, runner: None, done, started, checkpoints: None });
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
        let workers = self.instantiate(metrics.clone(), cancel.clone(), hub.clone())?;
        hub.release_restored();
        self.recover(restored_from.as_ref().map(|(_, _, committables)| committables))?;
        if let Some((_, location, _)) = &restored_from {
            tracing::info!("restoring from {location}");
        }
        let stats = Arc::new(Mutex::new(CheckpointStats {
            restored_from: restored_from.as_ref().map(|(id, _, _)| *id),
            ..CheckpointStats::default()
        }));
        let graph = self.graph.borrow();
        let setup = CoordinatorSetup {
            config,
            store: plan.store,
            hub,
            acks,
            committers: graph.committers.clone(),
            operators: graph.operators.iter().map(|o| o.name.clone()).collect(),
            parallelism: self.config.parallelism,
            max_parallelism: self.config.max_parallelism,
            first_id: plan.first_id,
            stats: stats.clone(),
        };
        drop(graph);
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
        Ok(JobHandle { metrics, cancel, runner: Some(runner), done, started, checkpoints: Some((commands, stats)) })
    }

    /// Opens the checkpoint location and finds the checkpoint to restore, if the job
    /// checkpoints.
    fn checkpoint_plan(&self) -> Result<Option<CheckpointPlan>> {
        let Some(config) = self.checkpoints.clone() else { return Ok(None) };
        if config.guarantee == DeliveryGuarantee::AtMostOnce {
            return Ok(None);
        }
        config.validate()?;
        let store = config.store()?;
        let restore = match &config.restore {
            Some(path) => Some(read_checkpoint(path)?),
            None => store.latest()?,
        };
        if let Some(loaded) = &restore {
            self.check_compatible(loaded)?;
            self.check_fallback(&config, loaded)?;
        }
        let first_id = store.newest_id()?.max(restore.as_ref().map_or(0, |l| l.manifest.id)) + 1;
        Ok(Some(CheckpointPlan { config, store, restore, first_id }))
    }

    /// Checks that a checkpoint was taken by this job.
    fn check_compatible(&self, loaded: &LoadedCheckpoint) -> Result<()> {
        let manifest = &loaded.manifest;
        if manifest.max_parallelism != self.config.max_parallelism {
            return Err(Error::checkpoint(
                &loaded.location,
                format!(
                    "it has {} key groups and the job {}: the maximum parallelism cannot change",
                    manifest.max_parallelism, self.config.max_parallelism
                ),
            ));
        }
        let graph = self.graph.borrow();
        let operators: Vec<&str> = graph.operators.iter().map(|o| o.name.as_str()).collect();
        if manifest.operators.iter().map(String::as_str).ne(operators.iter().copied()) {
            return Err(Error::checkpoint(
                &loaded.location,
                format!(
                    "it was taken by another job: its operators are {:?}, this job's are {:?}",
                    manifest.operators, operators
                ),
            ));
        }
        Ok(())
    }

    /// Refuses to fall back past a complete checkpoint that is corrupt when the job's
    /// output is exactly-once: that checkpoint's transactions may have been published,
    /// and replaying from an older one would publish them again. Restoring the older
    /// checkpoint explicitly accepts that.
    fn check_fallback(&self, config: &CheckpointConfig, loaded: &LoadedCheckpoint) -> Result<()> {
        let Some((newest, reason)) = loaded.skipped.first() else { return Ok(()) };
        let transactional = !self.graph.borrow().committers.is_empty();
        if config.guarantee != DeliveryGuarantee::ExactlyOnce || !transactional {
            return Ok(());
        }
        Err(Error::checkpoint(
            &config.location,
            format!(
                "checkpoint {newest} is complete but corrupt ({reason}); the newest intact one is {}, and restoring \
                 it would publish again the output of the checkpoints after it. To accept duplicates, restore it \
                 explicitly (--restore {}, or CheckpointConfig::restore)",
                loaded.manifest.id, loaded.location
            ),
        ))
    }

    /// Publishes what the restored checkpoint pre-committed and aborts the rest.
    fn recover_committers(&self, restored: Option<&LoadedCheckpoint>) -> Result<()> {
        self.recover(restored.map(|l| l.committables()).as_ref())
    }

    /// Hands each transactional sink's committer what it pre-committed in the restored
    /// checkpoint, by operator.
    fn recover(&self, committables: Option<&std::collections::BTreeMap<usize, Vec<Vec<u8>>>>) -> Result<()> {
        for (operator, committer) in &self.graph.borrow().committers {
            let pending = committables.and_then(|c| c.get(operator)).map(Vec::as_slice).unwrap_or(&[]);
            committer.recover(pending)?;
        }
        Ok(())
    }

    fn instantiate(
        &self,
        metrics: MetricsRegistry,
        cancel: Arc<AtomicBool>,
        checkpoints: Arc<CheckpointHub>,
    ) -> Result<Vec<Worker>> {
        let graph: &Graph = &self.graph.borrow();
        if graph.roots.is_empty() {
            return Err(Error::invalid_job("the job has no source"));
        }
        let mut ctx = BuildContext::new(self.config.clone(), metrics, cancel, checkpoints);
        for kind in &graph.edges {
            ctx.edges.declare(*kind);
        }
        for worker in 0..self.config.parallelism {
            ctx.worker = worker;
            for root in &graph.roots {
                let task = root(graph, &mut ctx)?;
                ctx.add_task(task);
            }
        }
        Ok(ctx.into_workers())
    }
}

/// Reads the checkpoint or savepoint directory `path`. A checkpoint is read from its
/// location (the parent directory), where the earlier files of its on-disk state are.
fn read_checkpoint(path: &str) -> Result<LoadedCheckpoint> {
    let trimmed = path.trim_end_matches('/');
    let loaded = match trimmed.rsplit_once('/') {
        Some((location, dir)) if dir.starts_with("chk-") => CheckpointStore::open(location)?.read(dir)?,
        _ => CheckpointStore::open(trimmed)?.read("")?,
    };
    loaded.ok_or_else(|| Error::checkpoint(path, "no manifest.json here: not a complete checkpoint or savepoint"))
}

/// What a checkpointing job starts from.
struct CheckpointPlan {
    config: CheckpointConfig,
    store: CheckpointStore,
    restore: Option<LoadedCheckpoint>,
    first_id: u64,
}

fn spawn<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name.to_string()).spawn(f).map_err(|e| Error::io(format!("thread {name}"), e))
}

/// A running job.
pub struct JobHandle {
    metrics: MetricsRegistry,
    cancel: Arc<AtomicBool>,
    runner: Option<JoinHandle<Result<()>>>,
    /// Disconnected when the runner ends: waiting on it wakes at once.
    done: crossbeam_channel::Receiver<()>,
    started: Instant,
    checkpoints: Option<(crossbeam_channel::Sender<Command>, Arc<Mutex<CheckpointStats>>)>,
}

impl JobHandle {
    /// Every operator's counters now.
    pub fn snapshot(&self) -> JobSnapshot {
        self.metrics.snapshot()
    }

    /// The job's checkpoint counters, if it checkpoints.
    pub fn checkpoint_stats(&self) -> Option<CheckpointStats> {
        self.checkpoints.as_ref().map(|(_, stats)| stats.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Takes a savepoint now and waits for it; returns its location. The job goes on.
    pub fn savepoint(&self) -> Result<String> {
        let Some((commands, _)) = &self.checkpoints else {
            return Err(Error::invalid_job("savepoints need checkpointing: set a checkpoint location"));
        };
        let (reply, answer) = crossbeam_channel::bounded(1);
        commands.send(Command::Savepoint(reply)).map_err(|_| Error::checkpoint("savepoint", "the job has ended"))?;
        answer.recv().map_err(|_| Error::checkpoint("savepoint", "the job has ended"))?
    }

    /// Whether the job has stopped (finished, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.runner.as_ref().is_none_or(|r| r.is_finished())
    }

    /// Waits up to `timeout` for the job to stop; returns whether it has.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match self.done.recv_timeout(timeout) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => self.is_finished(),
            _ => true,
        }
    }

    /// Time since the job started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Asks the job to stop; `join` then returns [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Waits for the job to stop.
    pub fn join(mut self) -> Result<JobResult> {
        let outcome = match self.runner.take() {
            Some(runner) => runner.join().unwrap_or_else(|_| {
                Err(Error::WorkerPanicked { thread: "sluice-job".into(), message: "job runner panicked".into() })
            }),
            None => Ok(()),
        };
        let elapsed = self.started.elapsed();
        let checkpoints = self.checkpoint_stats();
        outcome.map(|()| JobResult {
            metrics: self.metrics.snapshot(),
            instances: self.metrics.instances(),
            elapsed,
            checkpoints,
        })
    }
}

/// What a finished job reports.
#[derive(Clone, Debug)]
pub struct JobResult {
    /// Every operator's final counters.
    pub metrics: JobSnapshot,
    /// Every operator instance's final counters, worker by worker.
    pub instances: Vec<OperatorSnapshot>,
    /// How long the job ran.
    pub elapsed: Duration,
    /// Its checkpoint counters, if it checkpointed.
    pub checkpoints: Option<CheckpointStats>,
}
