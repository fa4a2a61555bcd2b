//! Counters every operator keeps from the start.
//!
//! Each operator instance (one per worker) owns an [`OperatorMetrics`] that only its
//! own thread writes, once per batch; readers (the progress line, later the metrics
//! endpoint and the dashboard) sum the instances of an operator when they read. No lock
//! is taken on the hot path.

use crate::Running;
use sluice_types::{Timestamp, MIN_TIMESTAMP};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What role an operator plays, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorKind {
    /// Reads from outside.
    Source,
    /// Transforms records.
    Operator,
    /// Sends records to other workers.
    Exchange,
    /// Writes outside.
    Sink,
}

/// Counters of one operator instance.
#[derive(Debug)]
pub struct OperatorMetrics {
    operator_id: usize,
    records_in: AtomicU64,
    records_out: AtomicU64,
    dead_letters: AtomicU64,
    blocked_nanos: AtomicU64,
    watermark: AtomicI64,
    position: AtomicU64,
    lag: AtomicU64,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        OperatorMetrics {
            operator_id: usize::MAX,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            blocked_nanos: AtomicU64::new(0),
            watermark: AtomicI64::new(MIN_TIMESTAMP),
            position: AtomicU64::new(0),
            lag: AtomicU64::new(0),
        }
    }
}

impl OperatorMetrics {
    /// Marks the operator as running on this thread while the result lives, so that a
    /// panic in it is reported with its name.
    #[inline]
    pub fn enter(&self) -> Running {
        Running::enter(self.operator_id)
    }
    /// Counts records that entered the operator.
    pub fn add_in(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Ordering::Relaxed);
    }
    /// Counts records the operator emitted (main and side outputs).
    pub fn add_out(&self, n: usize) {
        self.records_out.fetch_add(n as u64, Ordering::Relaxed);
    }
    /// Counts records sent to the dead-letter output.
    pub fn add_dead_letters(&self, n: usize) {
        self.dead_letters.fetch_add(n as u64, Ordering::Relaxed);
    }
    /// Sets the dead-letter count (for sources that count it themselves).
    pub fn set_dead_letters(&self, n: u64) {
        self.dead_letters.store(n, Ordering::Relaxed);
    }
    /// Adds time spent blocked on a full output channel.
    pub fn add_blocked(&self, nanos: u64) {
        self.blocked_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
    /// Records the operator's current watermark.
    pub fn set_watermark(&self, watermark: Timestamp) {
        self.watermark.store(watermark, Ordering::Relaxed);
    }
    /// Records a source's position (records, lines or bytes read, by source).
    pub fn set_position(&self, position: u64) {
        self.position.store(position, Ordering::Relaxed);
    }
    /// Records that entered so far.
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }
    /// Records emitted so far.
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }
    /// Dead letters so far.
    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }
    /// Nanoseconds blocked on full output channels.
    pub fn blocked_nanos(&self) -> u64 {
        self.blocked_nanos.load(Ordering::Relaxed)
    }
    /// The current watermark.
    pub fn watermark(&self) -> Timestamp {
        self.watermark.load(Ordering::Relaxed)
    }
    /// The source position.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }
    /// Records a source's lag: records written to its input and not read yet.
    pub fn set_lag(&self, lag: u64) {
        self.lag.store(lag, Ordering::Relaxed);
    }
    /// The source's lag.
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Entry {
    operator_id: usize,
    name: String,
    kind: OperatorKind,
    metrics: Arc<OperatorMetrics>,
}

/// Every operator instance of a job and its counters. Cloning shares the registry.
#[derive(Clone, Debug, Default)]
pub struct MetricsRegistry {
    entries: Arc<Mutex<Vec<Entry>>>,
}

/// The counters of one logical operator, summed over its instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorSnapshot {
    /// The operator's id in the job graph.
    pub operator_id: usize,
    /// Its display name.
    pub name: String,
    /// Its role.
    pub kind: OperatorKind,
    /// How many instances (workers) run it.
    pub instances: usize,
    /// Records in, summed over instances.
    pub records_in: u64,
    /// Records out, summed over instances.
    pub records_out: u64,
    /// Dead letters, summed over instances.
    pub dead_letters: u64,
    /// Nanoseconds blocked on full output channels, summed over instances.
    pub blocked_nanos: u64,
    /// The minimum watermark over instances.
    pub watermark: Timestamp,
    /// Source position, summed over instances.
    pub position: u64,
    /// Source lag (records of its input not read yet, for sources that know it),
    /// summed over instances.
    pub lag: u64,
}

/// All operators' counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobSnapshot {
    /// One entry per logical operator, in job-graph order.
    pub operators: Vec<OperatorSnapshot>,
}

impl JobSnapshot {
    /// Records read by all sources.
    pub fn source_records(&self) -> u64 {
        self.of_kind(OperatorKind::Source).map(|o| o.records_out).sum()
    }
    /// Records written by all sinks.
    pub fn sink_records(&self) -> u64 {
        self.of_kind(OperatorKind::Sink).map(|o| o.records_in).sum()
    }
    /// Dead letters over all operators.
    pub fn dead_letters(&self) -> u64 {
        self.operators.iter().map(|o| o.dead_letters).sum()
    }
    /// The lowest watermark any sink has seen, the job's event-time progress.
    pub fn sink_watermark(&self) -> Timestamp {
        self.of_kind(OperatorKind::Sink).map(|o| o.watermark).min().unwrap_or(MIN_TIMESTAMP)
    }
    /// The operators of one kind.
    pub fn of_kind(&self, kind: OperatorKind) -> impl Iterator<Item = &OperatorSnapshot> {
        self.operators.iter().filter(move |o| o.kind == kind)
    }
    /// The operator with the given name, if exactly one has it.
    pub fn operator(&self, name: &str) -> Option<&OperatorSnapshot> {
        let mut found = self.operators.iter().filter(|o| o.name == name);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }
}

impl MetricsRegistry {
    /// Registers one instance of an operator and returns its counters.
    pub fn register(&self, operator_id: usize, name: &str, kind: OperatorKind) -> Arc<OperatorMetrics> {
        let metrics = Arc::new(OperatorMetrics { operator_id, ..OperatorMetrics::default() });
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.push(Entry { operator_id, name: name.to_string(), kind, metrics: metrics.clone() });
        metrics
    }

    /// The name of operator `operator_id`, if registered.
    pub fn name_of(&self, operator_id: usize) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.iter().find(|e| e.operator_id == operator_id).map(|e| e.name.clone())
    }

    /// Every instance's counters, unsummed, in registration order (worker by worker):
    /// shows skew between workers.
    pub fn instances(&self) -> Vec<OperatorSnapshot> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .iter()
            .map(|e| OperatorSnapshot {
                operator_id: e.operator_id,
                name: e.name.clone(),
                kind: e.kind,
                instances: 1,
                records_in: e.metrics.records_in(),
                records_out: e.metrics.records_out(),
                dead_letters: e.metrics.dead_letters(),
                blocked_nanos: e.metrics.blocked_nanos(),
                watermark: e.metrics.watermark(),
                position: e.metrics.position(),
                lag: e.metrics.lag(),
            })
            .collect()
    }

    /// Sums every operator's instances.
    pub fn snapshot(&self) -> JobSnapshot {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut operators: Vec<OperatorSnapshot> = Vec::new();
        for entry in entries.iter() {
            let m = &entry.metrics;
            let position = operators.iter().position(|o| o.operator_id == entry.operator_id);
            let snapshot = match position {
                Some(i) => &mut operators[i],
                None => {
                    operators.push(OperatorSnapshot {
                        operator_id: entry.operator_id,
                        name: entry.name.clone(),
                        kind: entry.kind,
                        instances: 0,
                        records_in: 0,
                        records_out: 0,
                        dead_letters: 0,
                        blocked_nanos: 0,
                        watermark: Timestamp::MAX,
                        position: 0,
                        lag: 0,
                    });
                    let last = operators.len() - 1;
                    &mut operators[last]
                }
            };
            snapshot.instances += 1;
            snapshot.records_in += m.records_in();
            snapshot.records_out += m.records_out();
            snapshot.dead_letters += m.dead_letters();
            snapshot.blocked_nanos += m.blocked_nanos();
            snapshot.watermark = snapshot.watermark.min(m.watermark());
            snapshot.position += m.position();
            snapshot.lag += m.lag();
        }
        operators.sort_by_key(|o| o.operator_id);
        JobSnapshot { operators }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums_instances_and_takes_min_watermark() {
        let registry = MetricsRegistry::default();
        let a = registry.register(1, "map", OperatorKind::Operator);
        let b = registry.register(1, "map", OperatorKind::Operator);
        a.add_in(3);
        b.add_in(4);
        a.set_watermark(10);
        b.set_watermark(7);
        let snapshot = registry.snapshot();
        let map = snapshot.operator("map").expect("map registered");
        assert_eq!((map.instances, map.records_in, map.watermark), (2, 7, 7));
    }
}
