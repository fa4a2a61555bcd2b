//! Local pre-aggregation before the key exchange of a fixed-size window (a combiner,
//! Flink's local-global aggregation).
//!
//! Each worker folds its records into one accumulator per (key, pane) and sends those
//! partial accumulators, not the records, to the worker owning the key, whose window
//! operator merges them into its panes. The exchange carries far fewer records and most
//! of the aggregation work stays on the worker that read the records. Partials leave
//! before the watermark that could fire a window holding them, so results and lateness
//! are those of the window without a combiner.

use super::AggregateFunction;
use crate::graph::Batch;
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Operator, Output};
use sluice_types::{Key, Record, Result, Timestamp, MIN_TIMESTAMP};
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// The partial aggregate of one key over one pane, from one batch.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Partial<K, Acc> {
    pub(crate) key: K,
    pub(crate) acc: Acc,
}

/// Folds records into partial accumulators per (pane, key) and holds them until the
/// watermark reaches the end of the pane's first window: until then no window holding
/// the pane can fire downstream, so one partial per key and pane is enough. Partials of
/// panes that are already due (late records) leave after their batch.
pub(crate) struct PaneCombiner<K, T, KF, A: AggregateFunction<T>> {
    key: KF,
    function: A,
    size: i64,
    slide: i64,
    pane: i64,
    offset: i64,
    /// The timestamps whose windows can be represented (the window operator drops
    /// the others).
    representable: std::ops::RangeInclusive<Timestamp>,
    /// Hold partials across batches (false: flush after every batch, for early results).
    hold: bool,
    partials: BTreeMap<Timestamp, FxHashMap<K, A::Acc>>,
    watermark: Timestamp,
    _type: PhantomData<fn(T)>,
}

impl<K: Key, T, KF, A: AggregateFunction<T>> PaneCombiner<K, T, KF, A> {
    pub fn new(key: KF, function: A, size: i64, slide: i64, offset: i64, hold: bool) -> Self {
        PaneCombiner {
            key,
            function,
            size,
            slide,
            pane: super::fixed::pane_size(size, slide),
            offset,
            representable: super::fixed::representable(size, slide, offset),
            hold,
            partials: BTreeMap::new(),
            watermark: MIN_TIMESTAMP,
            _type: PhantomData,
        }
    }

    /// The end of the first window containing pane `pane`: the pane must be downstream
    /// before the watermark reaches that end.
    fn first_window_end(&self, pane: Timestamp) -> Timestamp {
        let last_start = pane - (pane - self.offset).rem_euclid(self.slide);
        let windows = (self.size - 1 - (pane - last_start)).max(0) / self.slide;
        last_start - windows * self.slide + self.size
    }

    /// Sends the partials of every pane that is due at `watermark` (all when not holding).
    fn flush(&mut self, watermark: Timestamp, out: &mut Output<Batch<Partial<K, A::Acc>>>) -> Result<()> {
        let due: Vec<Timestamp> = self
            .partials
            .keys()
            .copied()
            .filter(|&pane| {
                !self.hold || !self.representable.contains(&pane) || self.first_window_end(pane) - 1 <= watermark
            })
            .collect();
        let mut batch = Vec::new();
        for pane in due {
            if let Some(partials) = self.partials.remove(&pane) {
                batch.extend(
                    partials.into_iter().map(|(key, acc)| Record { timestamp: pane, value: Partial { key, acc } }),
                );
            }
        }
        out.emit(batch)
    }
}

impl<K, T, KF, A> Operator for PaneCombiner<K, T, KF, A>
where
    K: Key,
    T: Send + 'static,
    KF: Fn(&T) -> K + Send + 'static,
    A: AggregateFunction<T>,
{
    type In = Batch<T>;
    type Out = Batch<Partial<K, A::Acc>>;

    fn process_batch(&mut self, batch: Batch<T>, out: &mut Output<Self::Out>) -> Result<()> {
        for record in batch {
            // Records without event time keep it unset, and records whose windows cannot be
            // represented keep their own time: the window operator rejects both.
            let pane = if record.timestamp == MIN_TIMESTAMP || !self.representable.contains(&record.timestamp) {
                record.timestamp
            } else {
                record.timestamp - (record.timestamp - self.offset).rem_euclid(self.pane)
            };
            let key = (self.key)(&record.value);
            let partials = self.partials.entry(pane).or_default();
            let acc = match partials.get_mut(&key) {
                Some(acc) => acc,
                None => partials.entry(key).or_insert_with(|| self.function.create()),
            };
            self.function.add(acc, &record.value);
        }
        self.flush(self.watermark, out)
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        self.flush(watermark, out)
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        for (pane, partials) in &self.partials {
            for (key, acc) in partials {
                state.keyed(key, &(*pane, acc))?;
            }
        }
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        // Every old instance may hold a partial of the same key: merge them, since the
        // combiner sits before the exchange and owns no keys.
        for (key, (pane, acc)) in state.keyed::<K, (Timestamp, A::Acc)>()? {
            match self.partials.entry(pane).or_default().entry(key) {
                std::collections::hash_map::Entry::Occupied(mut held) => self.function.merge(held.get_mut(), acc),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(acc);
                }
            }
        }
        self.watermark = crate::process::restored_watermark(state)?;
        Ok(())
    }
}

/// The downstream half: merges partial accumulators with the original function.
pub(crate) struct MergePartials<A, T> {
    function: A,
    _type: PhantomData<fn(T)>,
}

impl<A, T> MergePartials<A, T> {
    pub fn new(function: A) -> Self {
        MergePartials { function, _type: PhantomData }
    }
}

impl<A: Clone, T> Clone for MergePartials<A, T> {
    fn clone(&self) -> Self {
        MergePartials::new(self.function.clone())
    }
}

impl<K: Clone + Send + 'static, T: 'static, A: AggregateFunction<T>> AggregateFunction<Partial<K, A::Acc>>
    for MergePartials<A, T>
{
    type Acc = A::Acc;
    type Out = A::Out;
    fn create(&self) -> A::Acc {
        self.function.create()
    }
    fn add(&self, acc: &mut A::Acc, partial: &Partial<K, A::Acc>) {
        self.function.merge(acc, partial.acc.clone());
    }
    fn merge(&self, acc: &mut A::Acc, other: A::Acc) {
        self.function.merge(acc, other);
    }
    fn result(&self, acc: &A::Acc) -> A::Out {
        self.function.result(acc)
    }
}
