//! The stream-stream interval join.

use crate::graph::{keyed_state, Batch};
use crate::keyed::{two_input, KeyedStream};
use crate::Stream;
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Output, TwoInputOperator};
use sluice_state::StateBackendKind;
use sluice_types::{Data, Key, Record, Result, Timestamp, MIN_TIMESTAMP};
use std::collections::BTreeMap;

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
        two_input(&self.left, &self.right, "interval_join", keyed_state(&StateBackendKind::Heap), move || {
            IntervalJoinOperator {
                key1: key1.clone(),
                key2: key2.clone(),
                f: f.clone(),
                lower,
                upper,
                left: Side::default(),
                right: Side::default(),
                watermark: MIN_TIMESTAMP,
            }
        })
    }
}

/// The buffered records of one input, per key, with an index by time for cleanup.
struct Side<K, V> {
    records: FxHashMap<K, Vec<Record<V>>>,
    expiry: BTreeMap<Timestamp, Vec<K>>,
}

impl<K, V> Default for Side<K, V> {
    fn default() -> Self {
        Side { records: FxHashMap::default(), expiry: BTreeMap::new() }
    }
}

impl<K: Key, V> Side<K, V> {
    fn insert(&mut self, key: K, record: Record<V>, expires_at: Timestamp) {
        self.expiry.entry(expires_at).or_default().push(key.clone());
        self.records.entry(key).or_default().push(record);
    }

    /// Drops records that can no longer match: those whose `expires_at` is behind the
    /// watermark. `keep` says whether a record still may match at `watermark`.
    fn expire(&mut self, watermark: Timestamp, keep: impl Fn(Timestamp) -> bool) {
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() >= watermark {
                break;
            }
            for key in entry.remove() {
                if let Some(list) = self.records.get_mut(&key) {
                    list.retain(|r| keep(r.timestamp));
                    if list.is_empty() {
                        self.records.remove(&key);
                    }
                }
            }
        }
    }
}

/// What a snapshot keeps per key: the buffered records of each side.
#[derive(serde::Serialize, serde::Deserialize)]
enum JoinEntry<T, U> {
    Left(Vec<Record<T>>),
    Right(Vec<Record<U>>),
}

struct IntervalJoinOperator<K, T, U, KF, KF2, F> {
    key1: KF,
    key2: KF2,
    f: F,
    lower: i64,
    upper: i64,
    left: Side<K, T>,
    right: Side<K, U>,
    watermark: Timestamp,
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
            if let Some(others) = self.right.records.get(&key) {
                for other in others.iter().filter(|o| o.timestamp >= from && o.timestamp <= to) {
                    let value = (self.f)(&key, &record.value, &other.value);
                    emitted.push(Record { timestamp: record.timestamp.max(other.timestamp), value });
                }
            }
            let expires_at = record.timestamp.saturating_add(self.upper);
            self.left.insert(key, record, expires_at);
        }
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
            if let Some(others) = self.left.records.get(&key) {
                for other in others.iter().filter(|o| o.timestamp >= from && o.timestamp <= to) {
                    let value = (self.f)(&key, &other.value, &record.value);
                    emitted.push(Record { timestamp: record.timestamp.max(other.timestamp), value });
                }
            }
            let expires_at = record.timestamp.saturating_sub(self.lower);
            self.right.insert(key, record, expires_at);
        }
        out.emit(emitted)
    }

    fn on_watermark(&mut self, watermark: Timestamp, _out: &mut Output<Batch<O>>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let watermark = self.watermark;
        let (lower, upper) = (self.lower, self.upper);
        // A left record at t matches rights up to t + upper; rights arriving from now on
        // are at or after the watermark.
        self.left.expire(watermark, |t| t.saturating_add(upper) >= watermark);
        self.right.expire(watermark, |t| t.saturating_sub(lower) >= watermark);
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        for (key, records) in &self.left.records {
            state.keyed(key, &JoinEntry::<T, U>::Left(records.clone()))?;
        }
        for (key, records) in &self.right.records {
            state.keyed(key, &JoinEntry::<T, U>::Right(records.clone()))?;
        }
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        for (key, entry) in state.keyed::<K, JoinEntry<T, U>>()? {
            match entry {
                JoinEntry::Left(records) => {
                    for record in records {
                        let expires_at = record.timestamp.saturating_add(self.upper);
                        self.left.insert(key.clone(), record, expires_at);
                    }
                }
                JoinEntry::Right(records) => {
                    for record in records {
                        let expires_at = record.timestamp.saturating_sub(self.lower);
                        self.right.insert(key.clone(), record, expires_at);
                    }
                }
            }
        }
        self.watermark = crate::process::restored_watermark(state)?;
        Ok(())
    }
}
