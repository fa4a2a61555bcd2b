//! The job: settings, the graph, and running it.

use crate::graph::{Graph, SharedGraph};
use crate::source::{add_source, Source};
use crate::Stream;
use sluice_runtime::{
    run_workers, BuildContext, JobSnapshot, MetricsRegistry, OperatorSnapshot, RuntimeConfig, Worker,
};
use sluice_state::StateBackendKind;
use sluice_types::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Describes a job: create streams from sources, transform them, then `execute`.
pub struct StreamEnvironment {
    pub(crate) graph: SharedGraph,
    config: RuntimeConfig,
    pub(crate) state_backend: StateBackendKind,
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
        }
    }

    /// Sets the number of workers.
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.config.parallelism = parallelism;
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

    /// Builds every worker's operators and runs the job to completion.
    pub fn execute(self) -> Result<JobResult> {
        self.start()?.join()
    }

    /// Builds every worker's operators and starts the job in the background.
    pub fn start(self) -> Result<JobHandle> {
        self.config.validate()?;
        let metrics = MetricsRegistry::default();
        let cancel = Arc::new(AtomicBool::new(false));
        let workers = self.instantiate(metrics.clone(), cancel.clone())?;
        let started = Instant::now();
        let runner_cancel = cancel.clone();
        let runner = std::thread::Builder::new()
            .name("sluice-job".to_string())
            .spawn(move || run_workers(workers, runner_cancel))
            .map_err(|e| Error::io("thread sluice-job", e))?;
        Ok(JobHandle { metrics, cancel, runner: Some(runner), started })
    }

    fn instantiate(&self, metrics: MetricsRegistry, cancel: Arc<AtomicBool>) -> Result<Vec<Worker>> {
        let graph: &Graph = &self.graph.borrow();
        if graph.roots.is_empty() {
            return Err(Error::invalid_job("the job has no source"));
        }
        let mut ctx = BuildContext::new(self.config.clone(), metrics, cancel);
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

/// A running job.
pub struct JobHandle {
    metrics: MetricsRegistry,
    cancel: Arc<AtomicBool>,
    runner: Option<JoinHandle<Result<()>>>,
    started: Instant,
}

impl JobHandle {
    /// Every operator's counters now.
    pub fn snapshot(&self) -> JobSnapshot {
        self.metrics.snapshot()
    }

    /// Whether the job has stopped (finished, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        self.runner.as_ref().is_none_or(|r| r.is_finished())
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
        outcome.map(|()| JobResult { metrics: self.metrics.snapshot(), instances: self.metrics.instances(), elapsed })
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
}
