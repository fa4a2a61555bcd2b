//! Runs a job: one thread per worker, each stepping its segment instances in turn.

use crate::checkpoint::CheckpointHub;
use crate::{Doorbell, Edges, MetricsRegistry, RuntimeConfig};
use sluice_types::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long an idle worker sleeps before it looks again (timers, pending sources);
/// arriving data wakes it sooner through its doorbell.
const IDLE_WAIT: Duration = Duration::from_millis(2);

/// What one step of a task achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// It did work; step it again soon.
    Busy,
    /// Nothing to do now: no input, or its output is backlogged.
    Waiting,
    /// It has finished for good.
    Done,
}

/// A segment instance: a chain root (source or gate) with its chained operators. Its
/// worker steps it until it is done; a step does a bounded amount of work and never
/// blocks, so one thread can run all of a worker's segments without deadlock.
pub trait Task: Send {
    /// The task's name, for logs and errors.
    fn name(&self) -> &str;
    /// Does a bounded amount of work.
    fn step(&mut self) -> Result<Step>;
}

/// Everything a job's builder needs to instantiate one worker's operators.
pub struct BuildContext {
    /// Which worker is being built.
    pub worker: usize,
    /// The job's settings.
    pub config: RuntimeConfig,
    /// The job's channels.
    pub edges: Edges,
    /// Where operators register their counters.
    pub metrics: MetricsRegistry,
    /// Set when the job must stop.
    pub cancel: Arc<AtomicBool>,
    /// Where checkpoint participants register, and the state they restore.
    pub checkpoints: Arc<CheckpointHub>,
    /// The segment roots built so far, per worker.
    pub tasks: Vec<Vec<Box<dyn Task>>>,
}

impl BuildContext {
    /// A context for a job with `config`, reporting into `metrics`, checkpointing
    /// through `checkpoints`.
    pub fn new(
        config: RuntimeConfig,
        metrics: MetricsRegistry,
        cancel: Arc<AtomicBool>,
        checkpoints: Arc<CheckpointHub>,
    ) -> Self {
        let edges = Edges::new(config.parallelism, config.channel_capacity);
        let tasks = (0..config.parallelism).map(|_| Vec::new()).collect();
        BuildContext { worker: 0, config, edges, metrics, cancel, checkpoints, tasks }
    }

    /// Adds a segment root to the current worker.
    pub fn add_task(&mut self, task: Box<dyn Task>) {
        self.tasks[self.worker].push(task);
    }

    /// The worker threads' work: their tasks and doorbells.
    pub fn into_workers(self) -> Vec<Worker> {
        let doorbells = self.edges.doorbells().to_vec();
        let metrics = self.metrics;
        self.tasks
            .into_iter()
            .zip(doorbells)
            .enumerate()
            .map(|(index, (tasks, doorbell))| Worker { index, tasks, doorbell, metrics: metrics.clone() })
            .collect()
    }
}

/// One worker: its segment instances and the doorbell that wakes it.
pub struct Worker {
    index: usize,
    tasks: Vec<Box<dyn Task>>,
    doorbell: Arc<Doorbell>,
    /// The job's operators by id, to name the one that panicked.
    metrics: MetricsRegistry,
}

impl Worker {
    /// Runs the worker's tasks to the end; a panic in an operator becomes an error
    /// naming it.
    fn run_catching(self, cancel: &AtomicBool) -> Result<()> {
        let (index, metrics) = (self.index, self.metrics.clone());
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(cancel))).unwrap_or_else(|panic| {
            let message = panic_message(panic.as_ref());
            Err(match crate::running::take_running().and_then(|id| metrics.name_of(id)) {
                Some(operator) => Error::OperatorPanicked { operator, worker: index, message },
                None => Error::WorkerPanicked { thread: format!("sluice-worker-{index}"), message },
            })
        })
    }

    fn run(mut self, cancel: &AtomicBool) -> Result<()> {
        self.doorbell.bind_current_thread();
        // Downstream segments were built last: stepping them first drains channels
        // before sources fill them further.
        self.tasks.reverse();
        while !self.tasks.is_empty() {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let mut busy = false;
            let mut i = 0;
            while i < self.tasks.len() {
                match self.tasks[i].step()? {
                    Step::Busy => {
                        busy = true;
                        i += 1;
                    }
                    Step::Waiting => i += 1,
                    Step::Done => {
                        busy = true;
                        self.tasks.remove(i);
                    }
                }
            }
            if !busy {
                self.doorbell.wait(IDLE_WAIT);
            }
        }
        Ok(())
    }
}

/// The message a panic was raised with.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Runs each worker on its own thread; returns the first real error (not a
/// cancellation it caused) once all threads have stopped.
pub fn run_workers(workers: Vec<Worker>, cancel: Arc<AtomicBool>) -> Result<()> {
    let mut handles = Vec::with_capacity(workers.len());
    for worker in workers {
        let name = format!("sluice-worker-{}", worker.index);
        let cancel = cancel.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let result = worker.run_catching(&cancel);
                if result.is_err() {
                    cancel.store(true, Ordering::Relaxed);
                }
                result
            })
            .map_err(|e| Error::io(format!("thread {name}"), e))?;
        handles.push((name, handle));
    }
    let mut first_error: Option<Error> = None;
    for (name, handle) in handles {
        let outcome = match handle.join() {
            Ok(result) => result,
            Err(panic) => {
                cancel.store(true, Ordering::Relaxed);
                Err(Error::WorkerPanicked { thread: name, message: panic_message(panic.as_ref()) })
            }
        };
        if let Err(error) = outcome {
            let replace = match &first_error {
                None => true,
                Some(Error::Cancelled) => !matches!(error, Error::Cancelled),
                Some(_) => false,
            };
            if replace {
                first_error = Some(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
