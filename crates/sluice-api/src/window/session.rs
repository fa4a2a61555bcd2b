//! The operator for session windows: per key, windows that merge while records keep
//! arriving within the gap.

use super::{AggregateFunction, ResultKind, Window, WindowResult, WindowSettings};
use crate::graph::Batch;
use crate::process::TimeDomain;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{now_millis, Operator, Output, TimerQueue};
use sluice_types::{Key, Record, Result, Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};
use std::marker::PhantomData;

#[derive(Clone, Serialize, Deserialize)]
struct SessionState<A> {
    start: Timestamp,
    end: Timestamp,
    acc: A,
    /// Its result for the current end has been emitted.
    fired: bool,
    /// A result of (part of) it was emitted before: the next one is an update.
    emitted: bool,
}

/// What a snapshot keeps per key.
#[derive(Serialize, Deserialize)]
enum SessionEntry<A> {
    Sessions(Vec<SessionState<A>>),
    FireAt(Timestamp),
    PurgeAt(Timestamp),
}

pub(crate) struct SessionWindowOperator<K: Ord, T, KF, A: AggregateFunction<T>> {
    key: KF,
    function: A,
    gap: i64,
    settings: WindowSettings,
    sessions: FxHashMap<K, Vec<SessionState<A::Acc>>>,
    /// (session end, key): fire when the clock passes end - 1. Entries of sessions
    /// that merged into others are skipped when they come up.
    fire_at: TimerQueue<K>,
    /// (cleanup time, key): drop fired sessions once their lateness has passed.
    purge_at: TimerQueue<K>,
    time: Timestamp,
    results: Vec<Record<WindowResult<K, A::Out>>>,
    _type: PhantomData<fn(T)>,
}

impl<K: Key, T, KF, A: AggregateFunction<T>> SessionWindowOperator<K, T, KF, A> {
    pub fn new(key: KF, function: A, gap: i64, settings: WindowSettings) -> Self {
        SessionWindowOperator {
            key,
            function,
            gap,
            settings,
            sessions: FxHashMap::default(),
            fire_at: TimerQueue::default(),
            purge_at: TimerQueue::default(),
            time: MIN_TIMESTAMP,
            results: Vec::new(),
            _type: PhantomData,
        }
    }

    fn result(&self, key: &K, session: &SessionState<A::Acc>, kind: ResultKind) -> Record<WindowResult<K, A::Out>> {
        let window = Window { start: session.start, end: session.end };
        Record {
            timestamp: session.end - 1,
            value: WindowResult { key: key.clone(), window, value: self.function.result(&session.acc), kind },
        }
    }

    /// Adds a record; returns false when it is too late for any session.
    fn add(&mut self, key: K, timestamp: Timestamp, value: &T) -> bool {
        let lateness = self.settings.allowed_lateness;
        let end = timestamp.saturating_add(self.gap);
        let event_time = self.settings.domain == TimeDomain::EventTime;
        if event_time {
            // As in Flink, lateness is judged on the session the record merges into: a
            // record behind the watermark still joins a session that has not expired.
            let (mut start_bound, mut end_bound) = (timestamp, end);
            if let Some(sessions) = self.sessions.get(&key) {
                for s in sessions {
                    if s.start < end_bound && start_bound < s.end {
                        start_bound = start_bound.min(s.start);
                        end_bound = end_bound.max(s.end);
                    }
                }
            }
            if (end_bound - 1).saturating_add(lateness) <= self.time {
                return false;
            }
        }
        let mut merged =
            SessionState { start: timestamp, end, acc: self.function.create(), fired: false, emitted: false };
        self.function.add(&mut merged.acc, value);
        let sessions = self.sessions.entry(key.clone()).or_default();
        let mut i = 0;
        while i < sessions.len() {
            let s = &sessions[i];
            if s.start < merged.end && merged.start < s.end {
                let s = sessions.swap_remove(i);
                if !s.fired {
                    // Its timer is replaced by the merged session's.
                    self.fire_at.delete(s.end, &key);
                }
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                merged.fired |= s.fired;
                merged.emitted |= s.emitted;
                self.function.merge(&mut merged.acc, s.acc);
            } else {
                i += 1;
            }
        }
        let already_due = event_time && merged.end - 1 <= self.time;
        if already_due {
            // A late record extended or re-opened a fired session: emit the update.
            merged.fired = true;
            merged.emitted = true;
            let update = self.result(&key, &merged, ResultKind::Update);
            self.results.push(update);
            self.purge_at.register((merged.end - 1).saturating_add(lateness), key.clone());
        } else {
            merged.fired = false;
            self.fire_at.register(merged.end, key.clone());
        }
        if let Some(sessions) = self.sessions.get_mut(&key) {
            sessions.push(merged);
        }
        true
    }

    fn advance(&mut self, time: Timestamp) {
        self.time = self.time.max(time);
        let lateness = if self.settings.domain == TimeDomain::EventTime { self.settings.allowed_lateness } else { 0 };
        while let Some((end, key)) = self.fire_at.pop_due(time.saturating_add(1)) {
            let Some(sessions) = self.sessions.get_mut(&key) else {
                continue;
            };
            let Some(index) = sessions.iter().position(|s| s.end == end && !s.fired) else {
                continue;
            };
            let mut session = sessions.swap_remove(index);
            let kind = if session.emitted { ResultKind::Update } else { ResultKind::Final };
            session.fired = true;
            session.emitted = true;
            let result = self.result(&key, &session, kind);
            self.results.push(result);
            if lateness == 0 {
                if self.sessions.get(&key).is_some_and(|s| s.is_empty()) {
                    self.sessions.remove(&key);
                }
            } else {
                self.purge_at.register((end - 1).saturating_add(lateness), key.clone());
                if let Some(sessions) = self.sessions.get_mut(&key) {
                    sessions.push(session);
                }
            }
        }
        while let Some((_, key)) = self.purge_at.pop_due(time) {
            if let Some(sessions) = self.sessions.get_mut(&key) {
                sessions.retain(|s| !(s.fired && (s.end - 1).saturating_add(lateness) <= time));
                if sessions.is_empty() {
                    self.sessions.remove(&key);
                }
            }
        }
    }
}

impl<K, T, KF, A> Operator for SessionWindowOperator<K, T, KF, A>
where
    K: Key,
    T: Send + 'static,
    KF: Fn(&T) -> K + Send + 'static,
    A: AggregateFunction<T>,
{
    type In = Batch<T>;
    type Out = Batch<WindowResult<K, A::Out>>;

    fn process_batch(&mut self, batch: Batch<T>, out: &mut Output<Self::Out>) -> Result<()> {
        let processing = self.settings.domain == TimeDomain::ProcessingTime;
        let now = if processing { now_millis() } else { 0 };
        for record in batch {
            let key = (self.key)(&record.value);
            let timestamp = if processing { now } else { record.timestamp };
            if timestamp == MIN_TIMESTAMP {
                return Err(super::untimed_record());
            }
            if !self.add(key, timestamp, &record.value) {
                if let Some(tag) = &self.settings.late_tag {
                    out.sides().emit_named(tag, record);
                }
            }
        }
        out.emit(std::mem::take(&mut self.results))
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        if self.settings.domain == TimeDomain::EventTime || watermark == MAX_TIMESTAMP {
            self.advance(watermark);
        }
        out.emit(std::mem::take(&mut self.results))
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        if self.settings.domain == TimeDomain::ProcessingTime {
            self.advance(now);
            out.emit(std::mem::take(&mut self.results))?;
        }
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        for (key, sessions) in &self.sessions {
            state.keyed(key, &SessionEntry::Sessions(sessions.clone()))?;
        }
        for (time, key) in self.fire_at.iter() {
            state.keyed(key, &SessionEntry::<A::Acc>::FireAt(*time))?;
        }
        for (time, key) in self.purge_at.iter() {
            state.keyed(key, &SessionEntry::<A::Acc>::PurgeAt(*time))?;
        }
        state.clock(&self.time)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        for (key, entry) in state.keyed::<K, SessionEntry<A::Acc>>()? {
            match entry {
                SessionEntry::Sessions(sessions) => {
                    self.sessions.insert(key, sessions);
                }
                SessionEntry::FireAt(time) => self.fire_at.register(time, key),
                SessionEntry::PurgeAt(time) => self.purge_at.register(time, key),
            }
        }
        self.time = crate::process::restored_watermark(state)?;
        Ok(())
    }
}
