//! The unit the typed API moves: a value and its event time.

use crate::Timestamp;

/// A value with its event timestamp.
///
/// Batches of records (`Vec<Record<T>>`) travel between operators; the timestamp follows
/// the value through `map`, `filter` and `flat_map`, as in Flink's `StreamRecord`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Record<T> {
    /// Event time in milliseconds, or [`crate::MIN_TIMESTAMP`] when none was assigned.
    pub timestamp: Timestamp,
    /// The payload.
    pub value: T,
}

impl<T> Record<T> {
    /// A record with the given timestamp.
    pub fn new(timestamp: Timestamp, value: T) -> Self {
        Record { timestamp, value }
    }

    /// A record without an event time (its timestamp is [`crate::MIN_TIMESTAMP`]).
    pub fn untimed(value: T) -> Self {
        Record { timestamp: crate::MIN_TIMESTAMP, value }
    }
}
