//! The stream-stream interval join.

use crate::graph::{keyed_state, Batch};
use crate::keyed::{two_input, KeyedStream};
use crate::Stream;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Output, TwoInputOperator};
use sluice_state::{KeyedTimers, KeyedValues};
use sluice_types::{Data, Key, Record, Result, Timestamp, MIN_TIMESTAMP};

/// An interval join being declared: finish it with [`IntervalJoin::process`].
pub struct IntervalJoin<K, T, U, KF, KF2> {
    left: KeyedStream<K, T, KF>,
    right: KeyedStream<K, U, KF2>,
    lower: i64,
    upper: i64,
}

impl<K, T, U, KF, KF2> IntervalJoin<K, T, U, KF, KF2>
where
    K: Key,
    T: Clone + Send + 'static,
    U: Clone + Send + 'static,
    KF: Fn(&T) -> K + Clone + Send + Sync + 'static,
    KF2: Fn(&U) -> K + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(left: KeyedStream<K, T, KF>, right: KeyedStream<K, U, KF2>, lower: i64, upper: i64) -> Self {
        IntervalJoin { left, right, lower, upper }
    }

    /// Emits `f(left, right)` for every pair with equal keys and
    /// `left.t + lower <= right.t <= left.t + upper`, timestamped with the later of the
    /// two. Records behind the watermark when they arrive are dropped, as in Flink.
    pub fn process<O: Clone + Send + 'static>(&self, f: impl Fn(&K, &T, &U) -> O + Clone + Send + 'static) -> Stream<O>
    where
        T: Data,
        U: Data,
    {
        let (lower, upper) = (self.lower, self.upper);
        let (key1, key2) = (self.left.key.clone(), self.right.key.clone());
        let backend = self.left.stream.backend.clone();
        two_input(&self.left, &self.right, "interval_join", keyed_state(&backend), move || {
            IntervalJoinOperator {
                key1: key1.clone(),
                key2: key2.clone(),
                f: f.clone(),
                lower,
                upper,
                buffered: KeyedValues::new(&backend, "buffered"),
                left_expiry: KeyedTimers::default(),
                right_expiry: KeyedTimers::default(),
                watermark: MIN_TIMESTAMP,
            }
            .in_backend()
        })
    }
}

/// The records of both inputs buffered for one key.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Buffered<T, U> {
    left: Vec<Record<T>>,
    right: Vec<Record<U>>,
}

impl<T, U> Default for Buffered<T, U> {
    fn default() -> Self {
        Buffered { left: Vec::new(), right: Vec::new() }
    }
}

fn has_records<T, U>(buffered: &Buffered<T, U>) -> bool {
    !(buffered.left.is_empty() && buffered.right.is_empty())
}

struct IntervalJoinOperator<K, T, U, KF, KF2, F> {
    key1: KF,
    key2: KF2,
    f: F,
    lower: i64,
    upper: i64,
    /// Both inputs' records per key, in the job's state backend (one store, so that a
    /// record is matched and buffered in one access).
    buffered: KeyedValues<K, Buffered<T, U>>,
    /// When each side's records stop being able to match, by key (on the heap).
    left_expiry: KeyedTimers<K>,
    right_expiry: KeyedTimers<K>,
    watermark: Timestamp,
}

impl<K: Key, T: Data, U: Data, KF, KF2, F> IntervalJoinOperator<K, T, U, KF, KF2, F> {
    /// The operator with its expiry indexes in the backend of its buffers (timer
    /// queues: on disk, only their earliest entries stay in memory).
    fn in_backend(mut self) -> Self {
        self.left_expiry = self.buffered.timer_queue(0);
        self.right_expiry = self.buffered.timer_queue(1);
        self
    }
}

impl<K, T, U, O, KF, KF2, F> TwoInputOperator for IntervalJoinOperator<K, T, U, KF, KF2, F>
where
    K: Key,
    T: Data,
    U: Data,
    O: Send + 'static,
    KF: Fn(&T) -> K + Send + 'static,
    KF2: Fn(&U) -> K + Send + 'static,
    F: Fn(&K, &T, &U) -> O + Send + 'static,
{
    type Left = Batch<T>;
    type Right = Batch<U>;
    type Out = Batch<O>;

    fn process_left(&mut self, batch: Batch<T>, out: &mut Output<Batch<O>>) -> Result<()> {
        let mut emitted = Vec::new();
        for record in batch {
            if self.watermark != MIN_TIMESTAMP && record.timestamp < self.watermark {
                continue;
            }
            let key = (self.key1)(&record.value);
            let (from, to) = (record.timestamp.saturating_add(self.lower), record.timestamp.saturating_add(self.upper));
            let expires_at = record.timestamp.saturating_add(self.upper);
            self.left_expiry.register(expires_at, key.clone());
            let f = &self.f;
            self.buffered.with(&key, has_records, |buffered| {
                for other in buffered.right.iter().filter(|o| o.timestamp >= from && o.timestamp <= to) {
                    let value = f(&key, &record.value, &other.value);
                    emitted.push(Record { timestamp: record.timestamp.max(other.timestamp), value });
                }
                buffered.left.push(record);
            });
        }
        self.buffered.check("interval_join")?;
        out.emit(emitted)
    }

    fn process_right(&mut self, batch: Batch<U>, out: &mut Output<Batch<O>>) -> Result<()> {
        let mut emitted = Vec::new();
        for record in batch {
            if self.watermark != MIN_TIMESTAMP && record.timestamp < self.watermark {
                continue;
            }
            let key = (self.key2)(&record.value);
            let (from, to) = (record.timestamp.saturating_sub(self.upper), record.timestamp.saturating_sub(self.lower));
            let expires_at = record.timestamp.saturating_sub(self.lower);
            self.right_expiry.register(expires_at, key.clone());
            let f = &self.f;
            self.buffered.with(&key, has_records, |buffered| {
                for other in buffered.left.iter().filter(|o| o.timestamp >= from && o.timestamp <= to) {
                    let value = f(&key, &other.value, &record.value);
                    emitted.push(Record { timestamp: record.timestamp.max(other.timestamp), value });
                }
                buffered.right.push(record);
            });
        }
        self.buffered.check("interval_join")?;
        out.emit(emitted)
    }

    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut Output<Batch<O>>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let watermark = self.watermark;
        let (lower, upper) = (self.lower, self.upper);
        // A left record at t matches rights up to t + upper; rights arriving from now on
        // are at or after the watermark.
        // Records expire before the watermark, not at it.
        let expired = watermark.saturating_sub(1);
        while let Some((_, key)) = self.left_expiry.pop_due(expired) {
            self.buffered
                .with(&key, has_records, |b| b.left.retain(|r| r.timestamp.saturating_add(upper) >= watermark));
        }
        while let Some((_, key)) = self.right_expiry.pop_due(expired) {
            self.buffered
                .with(&key, has_records, |b| b.right.retain(|r| r.timestamp.saturating_sub(lower) >= watermark));
        }
        self.buffered.check("interval_join")
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.buffered.snapshot(state)?;
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        // Entry by entry; the expiry indexes are rebuilt from the records.
        let restore = |key: K, name: &str, entry: &[u8]| {
            if !entry.is_empty() {
                let buffered = self.buffered.decode(entry)?;
                for record in &buffered.left {
                    self.left_expiry.register(record.timestamp.saturating_add(self.upper), key.clone());
                }
                for record in &buffered.right {
                    self.right_expiry.register(record.timestamp.saturating_sub(self.lower), key.clone());
                }
            }
            self.buffered.restore_entry(key, name, entry)
        };
        state.for_each_state_entry(restore)?;
        self.buffered.finish_restore();
        self.watermark = crate::process::restored_watermark(state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_runtime::checkpoint::StateWriter;
    use sluice_runtime::{Discard, OperatorMetrics, SideOutputs};
    use sluice_state::{DiskBackend, StateBackendKind};

    type Join = IntervalJoinOperator<u32, i64, i64, fn(&i64) -> u32, fn(&i64) -> u32, fn(&u32, &i64, &i64) -> i64>;

    fn join(backend: &StateBackendKind) -> Join {
        let join: Join = IntervalJoinOperator {
            key1: |t| (*t % 3) as u32,
            key2: |t| (*t % 3) as u32,
            f: |_, left, right| left * 1000 + right,
            lower: 0,
            upper: 20,
            buffered: KeyedValues::new(backend, "buffered"),
            left_expiry: KeyedTimers::default(),
            right_expiry: KeyedTimers::default(),
            watermark: MIN_TIMESTAMP,
        };
        join.in_backend()
    }

    fn records(times: std::ops::Range<i64>) -> Batch<i64> {
        times.map(|t| Record { timestamp: t, value: t }).collect()
    }

    fn discard() -> Output<Batch<i64>> {
        Output::new(Box::new(Discard), SideOutputs::default(), std::sync::Arc::new(OperatorMetrics::default()))
    }

    /// Restored on the other backend, a join keeps the buffers and the expiry index of
    /// the original: both forget the same records at the next watermark.
    #[test]
    fn a_restored_join_buffers_and_expires_what_the_original_did() {
        let dir = tempfile::tempdir().expect("dir");
        let disk = StateBackendKind::OnDisk(DiskBackend::new(dir.path()));
        for (from, to) in [(&StateBackendKind::Heap, &disk), (&disk, &StateBackendKind::Heap)] {
            let mut original = join(from);
            original.process_left(records(0..60), &mut discard()).expect("left");
            original.process_right(records(10..40), &mut discard()).expect("right");
            original.on_watermark(30, &mut discard()).expect("watermark");
            let mut writer = StateWriter::new(128);
            original.snapshot(&mut writer).expect("snapshot");
            let (mut state, deferred) = writer.split();
            StateWriter::complete(&mut state, deferred, 128).expect("encoded");
            let mut restored = join(to);
            restored.restore(&StateReader::new(state)).expect("restore");
            assert_eq!(restored.buffered.len(), original.buffered.len());
            assert_eq!(restored.watermark, 30);
            for operator in [&mut original, &mut restored] {
                operator.on_watermark(200, &mut discard()).expect("watermark");
                assert!(operator.buffered.is_empty(), "every record expired at 200");
            }
        }
    }
}
