//! The first failure of an operator's state, kept until the operator reports it.
//!
//! Table methods cannot return errors: the heap cannot fail, and a `Result` on every
//! state access would burden every user function. A store that can fail (on disk)
//! records its first failure here instead and stops writing (so nothing is written
//! after a failed write); the operator checks once per batch and fails the job with the
//! error, which then restarts from its last checkpoint. Reads after a failure return
//! nothing, but the batch they serve is never committed.

use sluice_types::{Error, Result};
use std::sync::{Arc, OnceLock};

/// Shared by an operator instance's store and tables: empty while all is well.
#[derive(Clone, Debug, Default)]
pub struct Health(Arc<OnceLock<String>>);

impl Health {
    /// Records `error`, unless an earlier failure was recorded.
    pub fn record(&self, error: &Error) {
        if self.0.set(error.to_string()).is_ok() {
            tracing::error!("keyed state failed: {error}");
        }
    }

    /// The value of `result`, or `None` after recording its error.
    pub fn ok<T>(&self, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.record(&error);
                None
            }
        }
    }

    /// Whether a failure was recorded.
    pub fn failed(&self) -> bool {
        self.0.get().is_some()
    }

    /// The recorded failure, as an error of `operator`'s state.
    pub fn check(&self, operator: &str) -> Result<()> {
        match self.0.get() {
            None => Ok(()),
            Some(message) => Err(Error::State { operator: operator.to_string(), message: message.clone() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_kept() {
        let health = Health::default();
        assert!(health.check("op").is_ok());
        assert_eq!(health.ok(Err::<(), _>(Error::invalid_job("first"))), None);
        health.record(&Error::invalid_job("second"));
        let error = health.check("window").unwrap_err().to_string();
        assert!(error.contains("first") && error.contains("window"), "{error}");
        assert!(health.clone().failed());
    }
}
