//! A queue of per-key timers, fired in time order.

use sluice_types::Timestamp;
use std::collections::BTreeSet;

/// Timers keyed by (time, key): a key has at most one timer per timestamp, as in Flink,
/// and timers due at the same time fire in key order, so output is deterministic.
#[derive(Debug)]
pub struct TimerQueue<K: Ord> {
    timers: BTreeSet<(Timestamp, K)>,
}

impl<K: Ord> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue { timers: BTreeSet::new() }
    }
}

impl<K: Ord + Clone> TimerQueue<K> {
    /// Registers a timer; registering the same one twice keeps one.
    pub fn register(&mut self, time: Timestamp, key: K) {
        self.timers.insert((time, key));
    }

    /// Removes a timer, if registered.
    pub fn delete(&mut self, time: Timestamp, key: &K) {
        self.timers.remove(&(time, key.clone()));
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<(Timestamp, K)> {
        let first = self.timers.first()?;
        if first.0 <= now {
            self.timers.pop_first()
        } else {
            None
        }
    }

    /// Every pending timer, in firing order.
    pub fn iter(&self) -> impl Iterator<Item = &(Timestamp, K)> {
        self.timers.iter()
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        self.timers.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }
}
