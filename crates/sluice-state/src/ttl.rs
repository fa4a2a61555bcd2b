//! Time to live of keyed state, as in Flink's `StateTtlConfig`.

use sluice_types::Timestamp;

/// When an entry's time to live restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TtlUpdate {
    /// On create and on every write (Flink's default).
    #[default]
    OnCreateAndWrite,
    /// Also on every read.
    OnReadAndWrite,
}

/// Which clock measures the time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TtlClock {
    /// Wall-clock time (Flink's only option).
    #[default]
    ProcessingTime,
    /// Event time: reads and writes are timed by the record or timer being processed,
    /// and expired entries are swept as the watermark passes them. Deterministic on
    /// replay.
    EventTime,
}

/// How long state lives after it was last written (or read).
///
/// Expired values are never returned. They are removed when touched, and a sweep of
/// the whole table runs at most once per `cleanup_interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateTtl {
    /// Milliseconds an entry lives.
    pub ttl: i64,
    /// What restarts the time to live.
    pub update: TtlUpdate,
    /// Which clock measures it.
    pub clock: TtlClock,
    /// Milliseconds between full cleanup sweeps.
    pub cleanup_interval: i64,
}

impl StateTtl {
    /// Entries live `ttl` milliseconds after their last write, in processing time.
    pub fn new(ttl: i64) -> Self {
        StateTtl {
            ttl,
            update: TtlUpdate::OnCreateAndWrite,
            clock: TtlClock::ProcessingTime,
            cleanup_interval: (ttl / 2).max(1),
        }
    }

    /// Sets what restarts the time to live.
    pub fn update(mut self, update: TtlUpdate) -> Self {
        self.update = update;
        self
    }

    /// Measures the time to live in event time (the operator's watermark).
    pub fn event_time(mut self) -> Self {
        self.clock = TtlClock::EventTime;
        self
    }

    /// Sets the interval between full cleanup sweeps.
    pub fn cleanup_interval(mut self, interval: i64) -> Self {
        self.cleanup_interval = interval.max(1);
        self
    }

    /// Whether an entry last touched at `touched` has expired at `now`.
    pub fn is_expired(&self, touched: Timestamp, now: Timestamp) -> bool {
        now.saturating_sub(touched) >= self.ttl
    }
}
