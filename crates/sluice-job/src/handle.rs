//! A running job and what it reports when it ends.

use sluice_checkpoint::coordinator::Command;
use sluice_checkpoint::CheckpointStats;
use sluice_runtime::{JobSnapshot, MetricsRegistry, OperatorSnapshot};
use sluice_types::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running job.
pub struct JobHandle {
    metrics: MetricsRegistry,
    cancel: Arc<AtomicBool>,
    runner: Option<JoinHandle<Result<()>>>,
    /// Disconnected when the runner ends: waiting on it wakes at once.
    done: crossbeam_channel::Receiver<()>,
    started: Instant,
    checkpoints: Option<CheckpointLink>,
}

/// What another thread may do to a running job.
#[derive(Clone)]
pub struct JobControl {
    cancel: Arc<AtomicBool>,
    done: crossbeam_channel::Receiver<()>,
    checkpoints: Option<CheckpointLink>,
}

impl JobControl {
    /// As [`JobHandle::savepoint`].
    pub fn savepoint(&self) -> Result<String> {
        savepoint(&self.checkpoints)
    }

    /// As [`JobHandle::cancel`].
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether the job has stopped.
    pub fn is_finished(&self) -> bool {
        matches!(self.done.try_recv(), Err(crossbeam_channel::TryRecvError::Disconnected))
    }
}

fn savepoint(checkpoints: &Option<CheckpointLink>) -> Result<String> {
    let Some((commands, _)) = checkpoints else {
        return Err(Error::invalid_job("savepoints need checkpointing: set a checkpoint location"));
    };
    let (reply, answer) = crossbeam_channel::bounded(1);
    commands.send(Command::Savepoint(reply)).map_err(|_| Error::checkpoint("savepoint", "the job has ended"))?;
    answer.recv().map_err(|_| Error::checkpoint("savepoint", "the job has ended"))?
}

/// The coordinator's command channel and the checkpoint counters it updates.
pub(crate) type CheckpointLink = (crossbeam_channel::Sender<Command>, Arc<Mutex<CheckpointStats>>);

impl JobHandle {
    pub(crate) fn new(
        metrics: MetricsRegistry,
        cancel: Arc<AtomicBool>,
        runner: Option<JoinHandle<Result<()>>>,
        done: crossbeam_channel::Receiver<()>,
        started: Instant,
        checkpoints: Option<CheckpointLink>,
    ) -> Self {
        JobHandle { metrics, cancel, runner, done, started, checkpoints }
    }

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
        savepoint(&self.checkpoints)
    }

    /// A handle another thread can take a savepoint or cancel the job with (a signal
    /// handler's, while this thread waits for the job).
    pub fn control(&self) -> JobControl {
        JobControl { cancel: self.cancel.clone(), done: self.done.clone(), checkpoints: self.checkpoints.clone() }
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

    /// Stops the job and waits for it: its result as of the stop (where [`Self::join`]
    /// after [`Self::cancel`] returns [`Error::Cancelled`]). Restarted from its latest
    /// checkpoint, the job processes again what it read after that checkpoint.
    pub fn stop(self) -> Result<JobResult> {
        self.cancel();
        let metrics = self.metrics.clone();
        let (started, checkpoints) = (self.started, self.checkpoint_stats());
        match self.join() {
            Err(Error::Cancelled) => Ok(JobResult {
                metrics: metrics.snapshot(),
                instances: metrics.instances(),
                elapsed: started.elapsed(),
                checkpoints,
            }),
            other => other,
        }
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
