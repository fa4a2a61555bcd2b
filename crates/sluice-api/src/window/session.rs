//! The operator for session windows: per key, windows that merge while records keep
//! arriving within the gap.

use super::{AggregateFunction, ResultKind, Window, WindowResult, WindowSettings};
use crate::graph::Batch;
use crate::process::TimeDomain;
use serde::{Deserialize, Serialize};
use sluice_runtime::checkpoint::{decode, encode, StateReader, StateWriter};
use sluice_runtime::{now_millis, Operator, Output};
use sluice_state::{KeyedTimers, KeyedValues, StateBackendKind};
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

/// Names under which the timers are kept in a snapshot, beside the sessions (state
/// names cannot start with a NUL).
const FIRE_AT: &str = "\0fire-at";
const PURGE_AT: &str = "\0purge-at";

pub(crate) struct SessionWindowOperator<K: Ord, T, KF, A: AggregateFunction<T>> {
    key: KF,
    function: A,
    gap: i64,
    settings: WindowSettings,
    /// Each key's open and not yet purged sessions, in the job's state backend.
    sessions: KeyedValues<K, Vec<SessionState<A::Acc>>>,
    /// (session end, key): fire when the clock passes end - 1. Entries of sessions
    /// that merged into others are skipped when they come up.
    fire_at: KeyedTimers<K>,
    /// (cleanup time, key): drop fired sessions once their lateness has passed.
    purge_at: KeyedTimers<K>,
    time: Timestamp,
    results: Vec<Record<WindowResult<K, A::Out>>>,
    _type: PhantomData<fn(T)>,
}

impl<K: Key, T, KF, A: AggregateFunction<T>> SessionWindowOperator<K, T, KF, A> {
    pub fn new(key: KF, function: A, gap: i64, settings: WindowSettings, backend: &StateBackendKind) -> Self {
        let mut sessions = KeyedValues::new(backend, "sessions");
        let (fire_at, purge_at) = (sessions.timer_queue(0), sessions.timer_queue(1));
        SessionWindowOperator {
            key,
            function,
            gap,
            settings,
            sessions,
            fire_at,
            purge_at,
            time: MIN_TIMESTAMP,
            results: Vec::new(),
            _type: PhantomData,
        }
    }

    /// Adds a record; returns false when it is too late for any session.
    fn add(&mut self, key: K, timestamp: Timestamp, value: &T) -> bool {
        let SessionWindowOperator { function, gap, settings, fire_at, purge_at, time, results, .. } = self;
        let lateness = settings.allowed_lateness;
        let end = timestamp.saturating_add(*gap);
        let event_time = settings.domain == TimeDomain::EventTime;
        self.sessions.with(
            &key,
            |kept| !kept.is_empty(),
            |sessions| {
                if event_time {
                    // As in Flink, lateness is judged on the session the record merges into:
                    // a record behind the watermark still joins a session not yet expired.
                    let (mut start_bound, mut end_bound) = (timestamp, end);
                    for s in sessions.iter() {
                        if s.start < end_bound && start_bound < s.end {
                            start_bound = start_bound.min(s.start);
                            end_bound = end_bound.max(s.end);
                        }
                    }
                    if (end_bound - 1).saturating_add(lateness) <= *time {
                        return false;
                    }
                }
                let mut merged =
                    SessionState { start: timestamp, end, acc: function.create(), fired: false, emitted: false };
                function.add(&mut merged.acc, value);
                let mut i = 0;
                while i < sessions.len() {
                    let s = &sessions[i];
                    if s.start < merged.end && merged.start < s.end {
                        let s = sessions.swap_remove(i);
                        if !s.fired {
                            // Its timer is replaced by the merged session's.
                            fire_at.delete(s.end, &key);
                        }
                        merged.start = merged.start.min(s.start);
                        merged.end = merged.end.max(s.end);
                        merged.fired |= s.fired;
                        merged.emitted |= s.emitted;
                        function.merge(&mut merged.acc, s.acc);
                    } else {
                        i += 1;
                    }
                }
                if event_time && merged.end - 1 <= *time {
                    // A late record extended or re-opened a fired session: emit the update.
                    merged.fired = true;
                    merged.emitted = true;
                    results.push(result(function, &key, &merged, ResultKind::Update));
                    purge_at.register((merged.end - 1).saturating_add(lateness), key.clone());
                } else {
                    merged.fired = false;
                    fire_at.register(merged.end, key.clone());
                }
                sessions.push(merged);
                true
            },
        )
    }

    fn advance(&mut self, now: Timestamp) {
        let SessionWindowOperator { function, settings, fire_at, purge_at, time, results, sessions, .. } = self;
        *time = (*time).max(now);
        let lateness = if settings.domain == TimeDomain::EventTime { settings.allowed_lateness } else { 0 };
        while let Some((end, key)) = fire_at.pop_due(now.saturating_add(1)) {
            sessions.with(
                &key,
                |kept| !kept.is_empty(),
                |open| {
                    let Some(index) = open.iter().position(|s| s.end == end && !s.fired) else { return };
                    let mut session = open.swap_remove(index);
                    let kind = if session.emitted { ResultKind::Update } else { ResultKind::Final };
                    session.fired = true;
                    session.emitted = true;
                    results.push(result(function, &key, &session, kind));
                    if lateness > 0 {
                        purge_at.register((end - 1).saturating_add(lateness), key.clone());
                        open.push(session);
                    }
                },
            );
        }
        while let Some((_, key)) = purge_at.pop_due(now) {
            sessions.with(
                &key,
                |kept| !kept.is_empty(),
                |open| {
                    open.retain(|s| !(s.fired && (s.end - 1).saturating_add(lateness) <= now));
                },
            );
        }
    }
}

/// The result of `session` of `key`, stamped at the session's last millisecond.
fn result<K: Key, T, A: AggregateFunction<T>>(
    function: &A,
    key: &K,
    session: &SessionState<A::Acc>,
    kind: ResultKind,
) -> Record<WindowResult<K, A::Out>> {
    let window = Window { start: session.start, end: session.end };
    Record {
        timestamp: session.end - 1,
        value: WindowResult { key: key.clone(), window, value: function.result(&session.acc), kind },
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
        self.sessions.check("session_window")?;
        out.emit(std::mem::take(&mut self.results))
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        if self.settings.domain == TimeDomain::EventTime || watermark == MAX_TIMESTAMP {
            self.advance(watermark);
        }
        self.sessions.check("session_window")?;
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
        self.sessions.snapshot(state)?;
        for (name, queue) in [(FIRE_AT, &self.fire_at), (PURGE_AT, &self.purge_at)] {
            queue.for_each(|time, key| state.keyed(key, &(name, encode(&time)?)))?;
        }
        state.clock(&self.time)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        state.for_each_named_keyed(|key: K, name, bytes| {
            match name {
                FIRE_AT => self.fire_at.register(decode(bytes)?, key),
                PURGE_AT => self.purge_at.register(decode(bytes)?, key),
                _ => self.sessions.restore_entry(key, name, bytes)?,
            }
            Ok(())
        })?;
        self.sessions.restore_changes(state)?;
        self.time = crate::process::restored_watermark(state)?;
        Ok(())
    }
}
