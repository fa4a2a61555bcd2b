//! The job as the stream API builds it: settings and the graph; running it hands both
//! to the job lifecycle (`sluice-job`).

use crate::graph::{into_job_graph, SharedGraph};
use crate::source::{add_source, Source};
use crate::Stream;
use sluice_checkpoint::CheckpointConfig;
use sluice_job::{Job, JobHandle, JobResult};
use sluice_runtime::RuntimeConfig;
use sluice_state::StateBackendKind;
use sluice_types::Result;
use std::time::Duration;

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

    /// The job's operators and streams as a table: for each operator its id, name,
    /// kind, parallelism, state and inputs (which operators feed it, and how: chained
    /// in the worker, or through a hash, forward or rebalance exchange).
    ///
    /// ```
    /// # use sluice_api::*;
    /// let env = StreamEnvironment::new().parallelism(2);
    /// env.source(VecSource::new(vec![1, 2, 3])).key_by(|n| n % 2).reduce(|a, b| a + b).sink(CollectSink::new());
    /// print!("{}", env.explain());
    /// // id  operator       kind      parallelism  state         inputs
    /// //  0  memory-source  source    2            positions     -
    /// //  1  key_by         exchange  2            -             0 chained
    /// //  2  reduce         operator  2            keyed (heap)  1 hash
    /// //  3  collect-sink   sink      2            -             2 chained
    /// let reduce = env.explain().lines().nth(3).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "));
    /// assert_eq!(reduce.as_deref(), Some("2 reduce operator 2 keyed (heap) 1 hash"));
    /// ```
    pub fn explain(&self) -> String {
        self.graph.borrow().topology.explain(self.config.parallelism)
    }

    /// The job as the runtime runs it: its topology and the builders of its
    /// operators. The environment's graph moves into it.
    pub fn into_job(self) -> Job {
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        Job::new(into_job_graph(graph), self.config).checkpointing(self.checkpoints)
    }

    /// Builds every worker's operators and runs the job to completion.
    pub fn execute(self) -> Result<JobResult> {
        self.start()?.join()
    }

    /// Builds every worker's operators and starts the job in the background.
    pub fn start(self) -> Result<JobHandle> {
        self.into_job().start()
    }
}
