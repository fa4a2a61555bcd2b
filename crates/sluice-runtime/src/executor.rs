//! Runs the segment instances of a job on threads and collects the outcome.

use crate::{Edges, MetricsRegistry, RuntimeConfig};
use sluice_types::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A segment instance: a chain root (source or gate) with its chained operators, run to
/// completion on its own thread.
pub trait Task: Send {
    /// The thread name, for logs and panics.
    fn name(&self) -> &str;
    /// Runs until the input ends, the job is cancelled or an error occurs.
    fn run(self: Box<Self>) -> Result<()>;
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
    /// The segment roots built so far, for all workers.
    pub tasks: Vec<Box<dyn Task>>,
}

impl BuildContext {
    /// A context for a job with `config`, reporting into `metrics`.
    pub fn new(config: RuntimeConfig, metrics: MetricsRegistry, cancel: Arc<AtomicBool>) -> Self {
        let edges = Edges::new(config.parallelism, config.channel_capacity);
        BuildContext { worker: 0, config, edges, metrics, cancel, tasks: Vec::new() }
    }
}

/// Runs `tasks` each on its own thread; returns the first real error (not a
/// cancellation it caused) once all threads have stopped.
pub fn run_tasks(tasks: Vec<Box<dyn Task>>, cancel: Arc<AtomicBool>) -> Result<()> {
    let mut handles = Vec::with_capacity(tasks.len());
    for task in tasks {
        let name = task.name().to_string();
        let cancel = cancel.clone();
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let result = task.run();
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
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".to_string());
                Err(Error::WorkerPanicked { thread: name, message })
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
