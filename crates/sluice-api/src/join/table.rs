//! The stream-table join: a table is a changelog materialized as the latest value per
//! key, and each stream record joins the table as of its own event time.

use crate::graph::Batch;
use crate::Stream;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Output, TwoInputOperator};
use sluice_state::{KeyedTimers, KeyedValues, StateBackendKind};
use sluice_types::{Data, Key, Record, Result, Timestamp, MIN_TIMESTAMP};
use std::collections::BTreeMap;

/// A table: the latest value per key of a changelog stream (like a Kafka Streams
/// `KTable`). An update with `None` deletes the key.
pub struct Table<K, V> {
    pub(crate) updates: Stream<(K, Option<V>)>,
}

impl<K: Key, V: Clone + Send + 'static> Table<K, V> {
    /// A table from a changelog of `(key, Some(value))` upserts and `(key, None)`
    /// deletions.
    pub fn from_changelog(changelog: &Stream<(K, Option<V>)>) -> Self {
        Table { updates: changelog.clone() }
    }

    pub(crate) fn from_updates(updates: Stream<(K, Option<V>)>) -> Self {
        Table { updates }
    }
}

/// What the join keeps per key: the table's versions, by the timestamp they became
/// valid, and the stream records waiting for the watermark.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct KeyState<T, V> {
    versions: BTreeMap<Timestamp, Option<V>>,
    pending: Vec<(Timestamp, T)>,
}

impl<T, V> Default for KeyState<T, V> {
    fn default() -> Self {
        KeyState { versions: BTreeMap::new(), pending: Vec::new() }
    }
}

impl<T, V> KeyState<T, V> {
    fn lookup(&self, at: Timestamp) -> Option<&V> {
        self.versions.range(..=at).next_back()?.1.as_ref()
    }

    /// Keeps the version valid at `time` and every later one.
    fn prune(&mut self, time: Timestamp) {
        while self.versions.len() > 1 {
            let mut keys = self.versions.keys();
            let (Some(&first), Some(&second)) = (keys.next(), keys.next()) else {
                break;
            };
            if second <= time {
                self.versions.remove(&first);
            } else {
                break;
            }
        }
    }
}

fn has_state<T, V>(state: &KeyState<T, V>) -> bool {
    !(state.versions.is_empty() && state.pending.is_empty())
}

/// Versioned (event-time) stream-table join: stream records wait until the watermark
/// passes their timestamp, then join the version of the table valid at that time. The
/// result does not depend on how the two inputs interleave, only on event time.
pub(crate) struct TableJoinOperator<K, T, V, KF, J> {
    key: KF,
    join: J,
    /// Each key's versions and waiting records, in the job's state backend.
    keys: KeyedValues<K, KeyState<T, V>>,
    /// The keys with records waiting, by the records' timestamps, in the backend of
    /// `keys` (a timer queue: on disk, only its earliest entries stay in memory).
    due: KeyedTimers<K>,
    watermark: Timestamp,
}

impl<K: Key, T: Data, V: Data, KF, J> TableJoinOperator<K, T, V, KF, J> {
    pub fn new(key: KF, join: J, backend: &StateBackendKind) -> Self {
        let mut keys = KeyedValues::new(backend, "table");
        let due = keys.timer_queue(0);
        TableJoinOperator { key, join, keys, due, watermark: MIN_TIMESTAMP }
    }
}

impl<K, T, V, O, KF, J> TwoInputOperator for TableJoinOperator<K, T, V, KF, J>
where
    K: Key,
    T: Data,
    V: Data,
    O: Send + 'static,
    KF: Fn(&T) -> K + Send + 'static,
    J: Fn(&T, Option<&V>) -> Option<O> + Send + 'static,
{
    type Left = Batch<T>;
    type Right = Batch<(K, Option<V>)>;
    type Out = Batch<O>;

    fn process_left(&mut self, batch: Batch<T>, out: &mut Output<Batch<O>>) -> Result<()> {
        let mut emitted = Vec::new();
        for record in batch {
            let key = (self.key)(&record.value);
            let (join, watermark) = (&self.join, self.watermark);
            let late = record.timestamp <= watermark;
            if !late {
                self.due.register(record.timestamp, key.clone());
            }
            self.keys.with(&key, has_state, |state| {
                if late {
                    // Late: the table may already have moved on; join what is known.
                    if let Some(value) = join(&record.value, state.lookup(record.timestamp)) {
                        emitted.push(Record { timestamp: record.timestamp, value });
                    }
                } else {
                    state.pending.push((record.timestamp, record.value));
                }
            });
        }
        self.keys.check("table join")?;
        out.emit(emitted)
    }

    fn process_right(&mut self, batch: Batch<(K, Option<V>)>, _out: &mut Output<Batch<O>>) -> Result<()> {
        let watermark = self.watermark;
        for Record { timestamp, value: (key, value) } in batch {
            self.keys.with(&key, has_state, |state| {
                state.versions.insert(timestamp, value);
                state.prune(watermark);
            });
        }
        self.keys.check("table join")
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Batch<O>>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let watermark = self.watermark;
        let mut emitted = Vec::new();
        let join = &self.join;
        while let Some((timestamp, key)) = self.due.pop_due(watermark) {
            self.keys.with(&key, has_state, |state| {
                let (now, later): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut state.pending).into_iter().partition(|(t, _)| *t == timestamp);
                state.pending = later;
                for (_, value) in now {
                    if let Some(joined) = join(&value, state.lookup(timestamp)) {
                        emitted.push(Record { timestamp, value: joined });
                    }
                }
                // Later pending records of this key are at or after `timestamp`: the
                // versions before the one valid then are no longer needed.
                state.prune(timestamp);
            });
        }
        self.keys.check("table join")?;
        out.emit(emitted)
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.keys.snapshot(state)?;
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        // Entry by entry; the index of keys by due time is rebuilt from the records.
        let restore = |key: K, name: &str, entry: &[u8]| {
            if !entry.is_empty() {
                for (timestamp, _) in &self.keys.decode(entry)?.pending {
                    self.due.register(*timestamp, key.clone());
                }
            }
            self.keys.restore_entry(key, name, entry)
        };
        state.for_each_state_entry(restore)?;
        self.keys.finish_restore();
        self.watermark = crate::process::restored_watermark(state)?;
        Ok(())
    }
}
