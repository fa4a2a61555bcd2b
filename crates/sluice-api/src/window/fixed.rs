//! The operator for fixed-size windows (tumbling and sliding).
//!
//! Records are aggregated into *panes*: slices of time of `gcd(size, slide)`
//! milliseconds, one accumulator per key and pane. A window is the union of the
//! `size / pane` panes it covers, so a record costs one accumulator update however many
//! sliding windows it belongs to, and a window's result is the merge of its panes'
//! accumulators when it fires. For tumbling windows a pane is a window.

use super::panes::Panes;
use super::{AggregateFunction, ResultKind, Window, WindowResult, WindowSettings};
use crate::graph::Batch;
use crate::process::TimeDomain;
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{now_millis, Operator, Output};
use sluice_state::StateBackendKind;
use sluice_types::{Key, Record, Result, Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};
use std::collections::BTreeSet;
use std::marker::PhantomData;

/// The pane of windows of `size` every `slide`: the largest slice both are multiples of.
pub(crate) fn pane_size(size: i64, slide: i64) -> i64 {
    gcd(size, slide).max(1)
}

/// The timestamps whose windows and panes can all be computed in `i64`, for windows
/// of `size` every `slide` shifted by `offset`: a record timed within one window of the
/// ends of time has windows that cannot be represented, and is rejected rather than put
/// into a window whose bounds wrapped around. Computed once per operator.
pub(crate) fn representable(size: i64, slide: i64, offset: i64) -> std::ops::RangeInclusive<Timestamp> {
    let margin = size.saturating_add(slide).saturating_add(offset.saturating_abs());
    (Timestamp::MIN + margin)..=(Timestamp::MAX - margin)
}

/// Where a record went.
enum Placed {
    /// Into its panes (or into no window, between hopping windows).
    Added,
    /// Every window holding it has expired.
    Late,
    /// Its windows lie beyond the representable time range.
    OutOfRange,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

pub(crate) struct FixedWindowOperator<K, T, KF, A: AggregateFunction<T>> {
    key: KF,
    function: A,
    size: i64,
    slide: i64,
    offset: i64,
    pane: i64,
    /// The timestamps whose windows can be represented.
    representable: std::ops::RangeInclusive<Timestamp>,
    settings: WindowSettings,
    /// Accumulators by pane start, then by key, on the heap or on disk.
    panes: Panes<K, A::Acc>,
    watermark: Timestamp,
    /// Windows ending at or before this (plus one) have fired.
    fired_through: Timestamp,
    early_round: i64,
    /// Records dropped because their windows lie beyond the range of event time.
    out_of_range: u64,
    results: Vec<Record<WindowResult<K, A::Out>>>,
    _type: PhantomData<fn(T)>,
}

impl<K: Key, T, KF, A: AggregateFunction<T>> FixedWindowOperator<K, T, KF, A> {
    pub fn new(
        key: KF,
        function: A,
        size: i64,
        slide: i64,
        offset: i64,
        settings: WindowSettings,
        backend: &StateBackendKind,
    ) -> Self {
        FixedWindowOperator {
            key,
            function,
            size,
            slide,
            offset,
            pane: pane_size(size, slide),
            representable: representable(size, slide, offset),
            settings,
            panes: Panes::new(backend),
            watermark: MIN_TIMESTAMP,
            fired_through: MIN_TIMESTAMP,
            early_round: MIN_TIMESTAMP,
            out_of_range: 0,
            results: Vec::new(),
            _type: PhantomData,
        }
    }

    fn event_time(&self) -> bool {
        self.settings.domain == TimeDomain::EventTime
    }

    /// Whether the window ending at `end` has fired and will take no more updates.
    fn is_expired(&self, end: Timestamp) -> bool {
        self.event_time() && (end - 1).saturating_add(self.settings.allowed_lateness) <= self.watermark
    }

    /// The ends of the windows containing `timestamp`, latest first.
    fn window_ends(&self, timestamp: Timestamp) -> impl Iterator<Item = Timestamp> {
        let (size, slide) = (self.size, self.slide);
        let last_start = timestamp - (timestamp - self.offset).rem_euclid(slide);
        (0..)
            .map(move |i| last_start - i * slide)
            .take_while(move |start| *start > timestamp - size)
            .map(move |s| s + size)
    }

    fn pane_of(&self, timestamp: Timestamp) -> Timestamp {
        timestamp - (timestamp - self.offset).rem_euclid(self.pane)
    }

    /// The merged accumulator of `key` over the panes of the window ending at `end`.
    fn merged(&self, key: &K, end: Timestamp) -> Option<A::Acc> {
        let mut merged: Option<A::Acc> = None;
        for pane in self.panes.starts().into_iter().filter(|p| (end - self.size..end).contains(p)) {
            if let Some(acc) = self.panes.get(pane, key) {
                match &mut merged {
                    Some(merged) => self.function.merge(merged, acc),
                    None => merged = Some(acc),
                }
            }
        }
        merged
    }

    fn emit(&mut self, key: K, end: Timestamp, acc: &A::Acc, kind: ResultKind) {
        let window = Window { start: end - self.size, end };
        let value = self.function.result(acc);
        self.results.push(Record { timestamp: end - 1, value: WindowResult { key, window, value, kind } });
    }

    /// Adds a record to its pane, unless it is late (every window it belongs to has
    /// expired) or out of range.
    fn add(&mut self, key: &K, timestamp: Timestamp, value: &T) -> Placed {
        if !self.representable.contains(&timestamp) {
            return Placed::OutOfRange;
        }
        let last_start = timestamp - (timestamp - self.offset).rem_euclid(self.slide);
        let into_window = timestamp - last_start;
        if into_window >= self.size {
            // Hopping windows with gaps (slide > size): the record is in no window.
            return Placed::Added;
        }
        let latest_end = last_start + self.size;
        if self.is_expired(latest_end) {
            return Placed::Late;
        }
        // The earliest window containing the record ends first; if it has not fired, no
        // window of this record has.
        let earliest_end = latest_end - (self.size - 1 - into_window) / self.slide * self.slide;
        let any_fired = self.event_time() && earliest_end - 1 <= self.watermark;
        let pane = self.pane_of(timestamp);
        let function = &self.function;
        self.panes.update(
            pane,
            key,
            || function.create(),
            |slot| {
                function.add(&mut slot.acc, value);
                slot.dirty = true;
            },
        );
        if any_fired {
            // A late record within the allowed lateness corrects the windows that
            // already fired and have not expired.
            let fired: Vec<Timestamp> =
                self.window_ends(timestamp).filter(|&end| end - 1 <= self.watermark && !self.is_expired(end)).collect();
            for end in fired {
                if let Some(acc) = self.merged(key, end) {
                    self.emit(key.clone(), end, &acc, ResultKind::Update);
                }
            }
        }
        Placed::Added
    }

    /// The ends of windows that contain a pane and satisfy `wanted`, in order.
    fn ends_of_panes(&self, wanted: impl Fn(Timestamp) -> bool) -> BTreeSet<Timestamp> {
        let mut ends = BTreeSet::new();
        for pane in self.panes.starts() {
            for end in self.window_ends(pane) {
                if wanted(end) {
                    ends.insert(end);
                }
            }
        }
        ends
    }

    /// Emits the merged result of the window ending at `end` for every key, or, with
    /// `only_dirty`, for the keys updated since the last early firing.
    fn fire(&mut self, end: Timestamp, kind: ResultKind, only_dirty: bool) {
        let mut merged: FxHashMap<K, (A::Acc, bool)> = FxHashMap::default();
        let function = &self.function;
        self.panes.for_each_in(end - self.size, end, |key, slot| match merged.get_mut(key) {
            Some((acc, dirty)) => {
                function.merge(acc, slot.acc.clone());
                *dirty |= slot.dirty;
            }
            None => {
                merged.insert(key.clone(), (slot.acc.clone(), slot.dirty));
            }
        });
        for (key, (acc, dirty)) in merged {
            if dirty || !only_dirty {
                self.emit(key, end, &acc, kind);
            }
        }
    }

    /// Fires windows whose end passed `time`, emits early results, drops expired panes.
    fn advance(&mut self, time: Timestamp) {
        let previous = self.fired_through;
        if time <= previous {
            return;
        }
        self.fired_through = time;
        if let Some(interval) = self.settings.early_interval {
            let round = time.div_euclid(interval);
            if round > self.early_round && time != MAX_TIMESTAMP {
                self.early_round = round;
                let open = self.ends_of_panes(|end| end - 1 > time);
                for end in open {
                    self.fire(end, ResultKind::Early, true);
                }
                self.panes.clear_dirty();
            }
        }
        // Windows with previous < end - 1 <= time are due now.
        let due = self.ends_of_panes(|end| end - 1 > previous && end - 1 <= time);
        let tumbling_without_lateness = self.pane == self.size && self.settings.allowed_lateness == 0;
        for end in due {
            if tumbling_without_lateness {
                // The window's only pane is dropped right after: move, do not copy.
                for (key, slot) in self.panes.remove(end - self.size) {
                    self.emit(key, end, &slot.acc, ResultKind::Final);
                }
            } else {
                self.fire(end, ResultKind::Final, false);
            }
        }
        // A pane is needed until the last window containing it expires.
        let lateness = if self.event_time() { self.settings.allowed_lateness } else { 0 };
        while let Some(pane) = self.panes.first() {
            let last_end = pane - (pane - self.offset).rem_euclid(self.slide) + self.size;
            if (last_end - 1).saturating_add(lateness) <= time {
                self.panes.remove(pane);
            } else {
                break;
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
            if timestamp == MIN_TIMESTAMP {
                return Err(super::untimed_record());
            }
            match self.add(&key, timestamp, &record.value) {
                Placed::Added => continue,
                Placed::Late => {}
                Placed::OutOfRange => {
                    // Counted as a dead letter, and on the late output if there is one.
                    if self.out_of_range == 0 {
                        tracing::warn!(
                            "a window dropped a record at {timestamp} ms: its windows end beyond the range of event \
                             time (counted as a dead letter)"
                        );
                    }
                    self.out_of_range += 1;
                    out.count_dead_letters(1);
                }
            }
            if let Some(tag) = &self.settings.late_tag {
                out.sides().emit_named(tag, record);
            }
        }
        self.panes.check("window")?;
        out.emit(std::mem::take(&mut self.results))
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        match self.settings.domain {
            TimeDomain::EventTime => self.advance(watermark),
            // The end of a bounded input fires processing-time windows too.
            TimeDomain::ProcessingTime if watermark == MAX_TIMESTAMP => self.advance(MAX_TIMESTAMP),
            TimeDomain::ProcessingTime => {}
        }
        self.panes.check("window")?;
        out.emit(std::mem::take(&mut self.results))
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        if self.settings.domain == TimeDomain::ProcessingTime {
            self.advance(now);
            self.panes.check("window")?;
            out.emit(std::mem::take(&mut self.results))?;
        }
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.panes.snapshot(state)?;
        state.clock(&(self.watermark, self.fired_through, self.early_round))
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.panes.restore(state)?;
        // Aligned barriers reach every instance after the same watermarks: the clocks of
        // the instances taken over agree; the minimum is the safe choice if they do not.
        if let Some(clock) = state.clocks::<(Timestamp, Timestamp, Timestamp)>()?.into_iter().min() {
            (self.watermark, self.fired_through, self.early_round) = clock;
        }
        Ok(())
    }
}
