//! The stream-table join: a table is a changelog materialized as the latest value per
//! key, and each stream record joins the table as of its own event time.

use crate::graph::Batch;
use crate::Stream;
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Output, TwoInputOperator};
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

/// Versioned (event-time) stream-table join: stream records wait until the watermark
/// passes their timestamp, then join the version of the table valid at that time. The
/// result does not depend on how the two inputs interleave, only on event time.
/// What a snapshot keeps per key: stream records waiting for the watermark, and the
/// table's versions.
#[derive(serde::Serialize, serde::Deserialize)]
enum TableJoinEntry<T, V> {
    Pending(Timestamp, T),
    Versions(Vec<(Timestamp, Option<V>)>),
}

pub(crate) struct TableJoinOperator<K, T, V, KF, J> {
    key: KF,
    join: J,
    /// Stream records waiting for the watermark, by timestamp.
    pending: BTreeMap<Timestamp, Vec<(K, T)>>,
    /// Table versions per key, by the timestamp they became valid.
    versions: FxHashMap<K, BTreeMap<Timestamp, Option<V>>>,
    watermark: Timestamp,
}

impl<K, T, V, KF, J> TableJoinOperator<K, T, V, KF, J> {
    pub fn new(key: KF, join: J) -> Self {
        TableJoinOperator {
            key,
            join,
            pending: BTreeMap::new(),
            versions: FxHashMap::default(),
            watermark: MIN_TIMESTAMP,
        }
    }
}

impl<K: Key, T, V: Clone, KF, J> TableJoinOperator<K, T, V, KF, J> {
    fn lookup(&self, key: &K, at: Timestamp) -> Option<&V> {
        self.versions.get(key)?.range(..=at).next_back()?.1.as_ref()
    }

    /// Keeps the version valid at the watermark and every later one.
    fn prune(versions: &mut BTreeMap<Timestamp, Option<V>>, watermark: Timestamp) {
        while versions.len() > 1 {
            let mut keys = versions.keys();
            let (Some(&first), Some(&second)) = (keys.next(), keys.next()) else {
                break;
            };
            if second <= watermark {
                versions.remove(&first);
            } else {
                break;
            }
        }
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
            if record.timestamp <= self.watermark {
                // Late: the table may already have moved on; join what is known.
                if let Some(value) = (self.join)(&record.value, self.lookup(&key, record.timestamp)) {
                    emitted.push(Record { timestamp: record.timestamp, value });
                }
            } else {
                self.pending.entry(record.timestamp).or_default().push((key, record.value));
            }
        }
        out.emit(emitted)
    }

    fn process_right(&mut self, batch: Batch<(K, Option<V>)>, _out: &mut Output<Batch<O>>) -> Result<()> {
        for Record { timestamp, value: (key, value) } in batch {
            let versions = self.versions.entry(key).or_default();
            versions.insert(timestamp, value);
            Self::prune(versions, self.watermark);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Batch<O>>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let watermark = self.watermark;
        let mut emitted = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let timestamp = *entry.key();
            for (key, value) in entry.remove() {
                if let Some(joined) = (self.join)(&value, self.lookup(&key, timestamp)) {
                    emitted.push(Record { timestamp, value: joined });
                }
                // Later pending records of this key are at or after `timestamp`: the
                // versions before the one valid then are no longer needed.
                if let Some(versions) = self.versions.get_mut(&key) {
                    Self::prune(versions, timestamp);
                }
            }
        }
        out.emit(emitted)
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        for (timestamp, records) in &self.pending {
            for (key, value) in records {
                state.keyed(key, &TableJoinEntry::<&T, &V>::Pending(*timestamp, value))?;
            }
        }
        for (key, versions) in &self.versions {
            state.keyed(
                key,
                &TableJoinEntry::<&T, &V>::Versions(versions.iter().map(|(t, v)| (*t, v.as_ref())).collect()),
            )?;
        }
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        for (key, entry) in state.keyed::<K, TableJoinEntry<T, V>>()? {
            match entry {
                TableJoinEntry::Pending(timestamp, value) => {
                    self.pending.entry(timestamp).or_default().push((key, value))
                }
                TableJoinEntry::Versions(versions) => {
                    self.versions.insert(key, versions.into_iter().collect());
                }
            }
        }
        self.watermark = crate::process::restored_watermark(state)?;
        Ok(())
    }
}
