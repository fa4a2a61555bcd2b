//! A job's checkpoint settings.

use sluice_fs::FileSystem;
use sluice_runtime::checkpoint::Alignment;
use sluice_types::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// What a job's output promises after a crash and restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Every result is committed exactly once: aligned checkpoints, and sinks that
    /// publish only what a completed checkpoint covers (two-phase commit).
    #[default]
    ExactlyOnce,
    /// Nothing is lost, but results after the last checkpoint may be written again:
    /// barriers are not aligned and sinks write straight through.
    AtLeastOnce,
    /// No checkpoints: nothing is replayed, so results are never written twice by a
    /// restore, but what was in flight at a crash is lost.
    AtMostOnce,
}

impl DeliveryGuarantee {
    /// How gates treat barriers under this guarantee.
    pub fn alignment(self) -> Alignment {
        match self {
            DeliveryGuarantee::ExactlyOnce => Alignment::Aligned,
            _ => Alignment::Unaligned,
        }
    }
}

impl std::str::FromStr for DeliveryGuarantee {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "exactly-once" => Ok(DeliveryGuarantee::ExactlyOnce),
            "at-least-once" => Ok(DeliveryGuarantee::AtLeastOnce),
            "at-most-once" | "none" => Ok(DeliveryGuarantee::AtMostOnce),
            other => Err(Error::invalid_job(format!(
                "unknown delivery guarantee '{other}': expected exactly-once, at-least-once or at-most-once"
            ))),
        }
    }
}

/// How and where a job checkpoints.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// Where checkpoints are kept: a local directory or an object storage URL.
    pub location: String,
    /// Time between the starts of two checkpoints.
    pub interval: Duration,
    /// Least time between the end of one checkpoint and the start of the next.
    pub min_pause: Duration,
    /// A checkpoint not complete after this long is abandoned.
    pub timeout: Duration,
    /// How many complete checkpoints to keep (at least 1).
    pub retained: usize,
    /// Keep the checkpoints when the job is cancelled (to restart it later).
    pub retain_on_cancel: bool,
    /// What the output promises.
    pub guarantee: DeliveryGuarantee,
    /// Restore from this checkpoint or savepoint directory instead of the latest
    /// checkpoint in `location`.
    pub restore: Option<String>,
    /// The file system a local `location` is written through: the local disk if
    /// `None`. Crash-consistency tests pass a [`sluice_fs::SimulatedFs`].
    pub file_system: Option<Arc<dyn FileSystem>>,
}

impl CheckpointConfig {
    /// Checkpoints into `location` every `interval`, exactly-once, keeping the last 3.
    pub fn new(location: impl Into<String>, interval: Duration) -> Self {
        CheckpointConfig {
            location: location.into(),
            interval,
            min_pause: Duration::ZERO,
            timeout: Duration::from_secs(600),
            retained: 3,
            retain_on_cancel: true,
            guarantee: DeliveryGuarantee::ExactlyOnce,
            restore: None,
            file_system: None,
        }
    }

    /// Opens the checkpoints of `location`, through the configured file system.
    pub fn store(&self) -> Result<crate::CheckpointStore> {
        match (&self.file_system, self.location.contains("://")) {
            (Some(fs), false) => {
                Ok(crate::CheckpointStore::new(crate::Storage::on_file_system(&self.location, fs.clone())?))
            }
            _ => crate::CheckpointStore::open(&self.location),
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(Error::invalid_job("the checkpoint interval must be more than 0"));
        }
        if self.retained == 0 {
            return Err(Error::invalid_job("at least one checkpoint must be retained"));
        }
        if self.location.is_empty() {
            return Err(Error::invalid_job("the checkpoint location is empty"));
        }
        Ok(())
    }
}

/// Parses a duration such as `200ms`, `1s`, `5m` or `1h` (a bare number is milliseconds).
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 =
        number.parse().map_err(|_| Error::invalid_job(format!("'{text}' is not a duration (try 200ms, 1s, 5m)")))?;
    match unit {
        "" | "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        "d" => Ok(Duration::from_secs(n * 86_400)),
        _ => Err(Error::invalid_job(format!("'{text}' has an unknown unit '{unit}' (use ms, s, m, h or d)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("150").unwrap(), Duration::from_millis(150));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn guarantees() {
        assert_eq!("exactly-once".parse::<DeliveryGuarantee>().unwrap(), DeliveryGuarantee::ExactlyOnce);
        assert_eq!("AT_LEAST_ONCE".parse::<DeliveryGuarantee>().unwrap(), DeliveryGuarantee::AtLeastOnce);
        assert!("twice".parse::<DeliveryGuarantee>().is_err());
    }
}
