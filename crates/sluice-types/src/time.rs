//! Event time and processing time are both milliseconds since the Unix epoch.

/// Milliseconds since the Unix epoch. Event time and processing time share this unit.
pub type Timestamp = i64;

/// The smallest timestamp: a record without an event time carries it, and so does a
/// watermark that has not started yet.
pub const MIN_TIMESTAMP: Timestamp = i64::MIN;

/// The largest timestamp: the final watermark a bounded source sends, which fires every
/// pending window and timer.
pub const MAX_TIMESTAMP: Timestamp = i64::MAX;

/// A duration of `n` milliseconds.
pub const fn millis(n: i64) -> i64 {
    n
}

/// A duration of `n` seconds, in milliseconds.
pub const fn seconds(n: i64) -> i64 {
    n * 1_000
}

/// A duration of `n` minutes, in milliseconds.
pub const fn minutes(n: i64) -> i64 {
    n * 60_000
}

/// A duration of `n` hours, in milliseconds.
pub const fn hours(n: i64) -> i64 {
    n * 3_600_000
}

/// A duration of `n` days, in milliseconds.
pub const fn days(n: i64) -> i64 {
    n * 86_400_000
}
