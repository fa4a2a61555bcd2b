//! Local pre-aggregation before the key exchange of a fixed-size window (a combiner,
//! Flink's local-global aggregation).
//!
//! Each worker folds the records of a batch into one accumulator per (key, pane) and
//! sends those partial accumulators, not the records, to the worker owning the key,
//! whose window operator merges them into its panes. The exchange carries fewer records
//! and most of the aggregation work stays on the worker that read the records. A batch
//! never spans a watermark (the watermark assigner cuts batches where it emits one), so
//! combining within a batch does not change which records are late.

use super::AggregateFunction;
use crate::graph::Batch;
use rustc_hash::FxHashMap;
use sluice_runtime::{Operator, Output};
use sluice_types::{Key, Record, Result, Timestamp, MIN_TIMESTAMP};
use std::marker::PhantomData;

/// The partial aggregate of one key over one pane, from one batch.
#[derive(Clone, Debug)]
pub struct Partial<K, Acc> {
    pub(crate) key: K,
    pub(crate) acc: Acc,
}

/// Folds each batch into partial accumulators per (key, pane).
pub(crate) struct PaneCombiner<K, T, KF, A: AggregateFunction<T>> {
    key: KF,
    function: A,
    pane: i64,
    offset: i64,
    partials: FxHashMap<(K, Timestamp), A::Acc>,
    _type: PhantomData<fn(T)>,
}

impl<K, T, KF, A: AggregateFunction<T>> PaneCombiner<K, T, KF, A> {
    pub fn new(key: KF, function: A, pane: i64, offset: i64) -> Self {
        PaneCombiner { key, function, pane, offset, partials: FxHashMap::default(), _type: PhantomData }
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
            // Records without event time keep it unset: the window operator rejects them.
            let pane = if record.timestamp == MIN_TIMESTAMP {
                MIN_TIMESTAMP
            } else {
                record.timestamp - (record.timestamp - self.offset).rem_euclid(self.pane)
            };
            let key = (self.key)(&record.value);
            let acc = self.partials.entry((key, pane)).or_insert_with(|| self.function.create());
            self.function.add(acc, &record.value);
        }
        let partials: Batch<Partial<K, A::Acc>> = self
            .partials
            .drain()
            .map(|((key, pane), acc)| Record { timestamp: pane, value: Partial { key, acc } })
            .collect();
        out.emit(partials)
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
