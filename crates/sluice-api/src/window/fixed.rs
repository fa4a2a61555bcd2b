//! The operator for fixed-size windows (tumbling and sliding).
//!
//! Accumulators are kept per window end, then per key: all keys' windows with the same
//! end fire together when the watermark passes it, which is one ordered-map pop.

use super::{AggregateFunction, ResultKind, Window, WindowResult, WindowSettings};
use crate::graph::Batch;
use crate::process::TimeDomain;
use rustc_hash::FxHashMap;
use sluice_runtime::{now_millis, Operator, Output};
use sluice_types::{Key, Record, Result, Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};
use std::collections::BTreeMap;
use std::marker::PhantomData;

struct Slot<A> {
    acc: A,
    dirty: bool,
}

pub(crate) struct FixedWindowOperator<K, T, KF, A: AggregateFunction<T>> {
    key: KF,
    function: A,
    size: i64,
    slide: i64,
    offset: i64,
    settings: WindowSettings,
    /// Open windows by end, then by key.
    windows: BTreeMap<Timestamp, FxHashMap<K, Slot<A::Acc>>>,
    watermark: Timestamp,
    early_round: i64,
    results: Vec<Record<WindowResult<K, A::Out>>>,
    _type: PhantomData<fn(T)>,
}

impl<K: Key, T, KF, A: AggregateFunction<T>> FixedWindowOperator<K, T, KF, A> {
    pub fn new(key: KF, function: A, size: i64, slide: i64, offset: i64, settings: WindowSettings) -> Self {
        FixedWindowOperator {
            key,
            function,
            size,
            slide,
            offset,
            settings,
            windows: BTreeMap::new(),
            watermark: MIN_TIMESTAMP,
            early_round: MIN_TIMESTAMP,
            results: Vec::new(),
            _type: PhantomData,
        }
    }

    fn is_expired(&self, end: Timestamp) -> bool {
        self.settings.domain == TimeDomain::EventTime
            && (end - 1).saturating_add(self.settings.allowed_lateness) <= self.watermark
    }

    fn emit(&mut self, key: &K, end: Timestamp, acc: &A::Acc, kind: ResultKind) {
        let window = Window { start: end - self.size, end };
        let value = self.function.result(acc);
        self.results.push(Record { timestamp: end - 1, value: WindowResult { key: key.clone(), window, value, kind } });
    }

    fn add(&mut self, key: &K, timestamp: Timestamp, value: &T) -> bool {
        let last_start = timestamp - (timestamp - self.offset).rem_euclid(self.slide);
        let mut start = last_start;
        let mut assigned = false;
        while start > timestamp - self.size {
            let end = start + self.size;
            start -= self.slide;
            if self.is_expired(end) {
                continue;
            }
            assigned = true;
            let fired = self.settings.domain == TimeDomain::EventTime && end - 1 <= self.watermark;
            let slots = self.windows.entry(end).or_default();
            let slot = match slots.get_mut(key) {
                Some(slot) => slot,
                None => slots.entry(key.clone()).or_insert(Slot { acc: self.function.create(), dirty: false }),
            };
            self.function.add(&mut slot.acc, value);
            slot.dirty = true;
            if fired {
                let acc = slot.acc.clone();
                self.emit(key, end, &acc, ResultKind::Update);
            }
        }
        assigned
    }

    /// Fires windows whose end passed `time`, emits early results, drops expired state.
    fn advance(&mut self, previous: Timestamp, time: Timestamp) {
        if let Some(interval) = self.settings.early_interval {
            let round = time.div_euclid(interval);
            if round > self.early_round && time != MAX_TIMESTAMP {
                self.early_round = round;
                let open: Vec<Timestamp> = self.windows.range(time.saturating_add(2)..).map(|(end, _)| *end).collect();
                for end in open {
                    let dirty: Vec<(K, A::Acc)> = self.windows[&end]
                        .iter()
                        .filter(|(_, s)| s.dirty)
                        .map(|(k, s)| (k.clone(), s.acc.clone()))
                        .collect();
                    for (key, acc) in dirty {
                        self.emit(&key, end, &acc, ResultKind::Early);
                    }
                    if let Some(slots) = self.windows.get_mut(&end) {
                        slots.values_mut().for_each(|s| s.dirty = false);
                    }
                }
            }
        }
        // Windows with previous < end - 1 <= time are due now.
        let due: Vec<Timestamp> =
            self.windows.range(previous.saturating_add(2)..=time.saturating_add(1)).map(|(end, _)| *end).collect();
        let lateness = self.settings.allowed_lateness;
        for end in due {
            let purge = lateness == 0 || (end - 1).saturating_add(lateness) <= time;
            if purge {
                if let Some(slots) = self.windows.remove(&end) {
                    for (key, slot) in slots {
                        self.emit(&key, end, &slot.acc, ResultKind::Final);
                    }
                }
            } else if let Some(slots) = self.windows.remove(&end) {
                for (key, slot) in &slots {
                    self.emit(key, end, &slot.acc, ResultKind::Final);
                }
                self.windows.insert(end, slots);
            }
        }
        if lateness > 0 {
            let limit = time.saturating_sub(lateness).saturating_add(1);
            while let Some(entry) = self.windows.first_entry() {
                if *entry.key() <= limit && (*entry.key() - 1).saturating_add(lateness) <= time {
                    entry.remove();
                } else {
                    break;
                }
            }
        }
    }
}

impl<K, T, KF, A> Operator for FixedWindowOperator<K, T, KF, A>
where
    K: Key,
    T: Send + 'static,
    KF: Fn(&T) -> K + Send + 'static,
    A: AggregateFunction<T>,
{
    type In = Batch<T>;
    type Out = Batch<WindowResult<K, A::Out>>;

    fn process_batch(&mut self, batch: Batch<T>, out: &mut Output<Self::Out>) -> Result<()> {
        let now = if self.settings.domain == TimeDomain::ProcessingTime { now_millis() } else { 0 };
        for record in batch {
            let key = (self.key)(&record.value);
            let timestamp = if self.settings.domain == TimeDomain::ProcessingTime { now } else { record.timestamp };
            if !self.add(&key, timestamp, &record.value) {
                if let Some(tag) = &self.settings.late_tag {
                    out.sides().emit_named(tag, record);
                }
            }
        }
        out.emit(std::mem::take(&mut self.results))
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        let previous = self.watermark;
        self.watermark = watermark;
        match self.settings.domain {
            TimeDomain::EventTime => self.advance(previous, watermark),
            // The end of a bounded input fires processing-time windows too.
            TimeDomain::ProcessingTime if watermark == MAX_TIMESTAMP => self.advance(MIN_TIMESTAMP, MAX_TIMESTAMP),
            TimeDomain::ProcessingTime => {}
        }
        out.emit(std::mem::take(&mut self.results))
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        if self.settings.domain == TimeDomain::ProcessingTime {
            self.advance(MIN_TIMESTAMP, now);
            out.emit(std::mem::take(&mut self.results))?;
        }
        Ok(())
    }
}
