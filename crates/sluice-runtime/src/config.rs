//! Settings of the runtime, shared by every worker of a job.

use sluice_types::{Error, Result, DEFAULT_MAX_PARALLELISM};
use std::time::Duration;

/// How a job is run: parallelism, batch size, channel capacity.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Number of workers; each runs one instance of every operator.
    pub parallelism: usize,
    /// Number of key groups; the upper bound of `parallelism`.
    pub max_parallelism: u16,
    /// Records a source puts in one batch.
    pub batch_size: usize,
    /// Batches a channel holds before its sender blocks (backpressure).
    pub channel_capacity: usize,
    /// How often processing-time timers and idle checks run.
    pub tick_interval: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            parallelism: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            batch_size: 1024,
            channel_capacity: 16,
            tick_interval: Duration::from_millis(50),
        }
    }
}

impl RuntimeConfig {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<()> {
        if self.parallelism == 0 {
            return Err(Error::invalid_job("parallelism must be at least 1"));
        }
        if self.parallelism > usize::from(self.max_parallelism) {
            return Err(Error::invalid_job(format!(
                "parallelism {} exceeds the maximum parallelism (key groups) {}",
                self.parallelism, self.max_parallelism
            )));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid_job("batch size must be at least 1"));
        }
        if self.channel_capacity == 0 {
            return Err(Error::invalid_job("channel capacity must be at least 1"));
        }
        Ok(())
    }
}
