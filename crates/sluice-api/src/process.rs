//! Keyed process functions: per-key state, timers and side outputs.

use crate::graph::Batch;
use sluice_runtime::checkpoint::{decode, encode, StateReader, StateWriter};
use sluice_runtime::{now_millis, Operator, Output, SideOutputs};
use sluice_state::{KeyedStateStore, KeyedTimers, ListState, MapState, StateBackendKind, ValueState};
use sluice_types::{Data, Key, Record, Result, Timestamp, MIN_TIMESTAMP};
use std::hash::Hash;
use std::marker::PhantomData;

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    /// Fires when the watermark passes it.
    EventTime,
    /// Fires when the wall clock passes it.
    ProcessingTime,
}

/// Names a side output of type `S`. Emit with [`Context::output`], read with
/// [`crate::Stream::side_output`].
pub struct OutputTag<S> {
    name: String,
    _type: PhantomData<fn() -> S>,
}

impl<S> Clone for OutputTag<S> {
    fn clone(&self) -> Self {
        OutputTag { name: self.name.clone(), _type: PhantomData }
    }
}

impl<S> std::fmt::Debug for OutputTag<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTag({})", self.name)
    }
}

impl<S> OutputTag<S> {
    /// A tag named `name`, unique within its operator.
    pub fn new(name: impl Into<String>) -> Self {
        OutputTag { name: name.into(), _type: PhantomData }
    }

    /// The tag's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The event-time and processing-time timers of one keyed operator instance.
pub(crate) struct Timers<K: Ord> {
    pub event: KeyedTimers<K>,
    pub processing: KeyedTimers<K>,
}

impl<K: Key> Timers<K> {
    /// The timer queues of an operator whose state is `state`, in its backend.
    fn in_backend_of(state: &mut KeyedStateStore<K>) -> Self {
        Timers { event: state.timer_queue(0), processing: state.timer_queue(1) }
    }
}

/// The keyed state, timers, watermark and output buffer that keyed process operators
/// (one or two inputs) run user code with.
pub(crate) struct KeyedScope<K: Ord, O> {
    pub state: KeyedStateStore<K>,
    pub timers: Timers<K>,
    pub watermark: Timestamp,
    pub buffer: Vec<Record<O>>,
}

/// Names under which timers are kept in a snapshot, beside the states (whose names
/// cannot start with a NUL).
const EVENT_TIMER: &str = "\0event-timer";
const PROCESSING_TIMER: &str = "\0processing-timer";

/// The watermark an operator restores: the lowest of the instances it takes over (none
/// when it took over no instance's items, on a rescale).
pub(crate) fn restored_watermark(state: &StateReader) -> Result<Timestamp> {
    Ok(state.clocks::<Timestamp>()?.into_iter().min().unwrap_or(MIN_TIMESTAMP))
}

impl<K: Key, O> KeyedScope<K, O> {
    pub fn new(mut state: KeyedStateStore<K>) -> Self {
        let timers = Timers::in_backend_of(&mut state);
        KeyedScope { state, timers, watermark: MIN_TIMESTAMP, buffer: Vec::new() }
    }

    /// Emits what the last call produced, unless the state failed meanwhile (a failing
    /// disk, state that could not be restored): then the job fails and nothing of it
    /// leaves.
    pub fn emit(&mut self, out: &mut Output<Batch<O>>) -> Result<()>
    where
        O: Send + 'static,
    {
        self.state.check("keyed process function")?;
        out.emit(std::mem::take(&mut self.buffer))
    }

    /// Advances the watermark; after a restore it never goes back below the restored one.
    pub fn advance_watermark(&mut self, watermark: Timestamp) {
        self.watermark = self.watermark.max(watermark);
    }

    /// Writes the state and timers of every key, and the watermark.
    pub fn snapshot(&mut self, writer: &mut StateWriter) -> Result<()> {
        self.state.snapshot(writer)?;
        for (name, queue) in [(EVENT_TIMER, &self.timers.event), (PROCESSING_TIMER, &self.timers.processing)] {
            queue.for_each(|time, key| writer.keyed(key, &(name, encode(&time)?)))?;
        }
        writer.clock(&self.watermark)
    }

    /// Restores what [`KeyedScope::snapshot`] wrote, for the key groups of this worker.
    pub fn restore(&mut self, reader: &StateReader) -> Result<()> {
        reader.for_each_named_keyed(|key: K, name, bytes| {
            match name {
                EVENT_TIMER => self.timers.event.register(decode(bytes)?, key),
                PROCESSING_TIMER => self.timers.processing.register(decode(bytes)?, key),
                _ => self.state.restore_entry(key, name, bytes)?,
            }
            Ok(())
        })?;
        self.state.restore_changes(reader)?;
        self.watermark = restored_watermark(reader)?;
        Ok(())
    }

    /// Calls `handle` for each record with a context scoped to the record's key.
    pub fn each_record<T>(
        &mut self,
        batch: Batch<T>,
        key: impl Fn(&T) -> K,
        sides: &mut SideOutputs,
        mut handle: impl FnMut(T, &mut Context<'_, K, O>),
    ) {
        let processing_time = now_millis();
        for record in batch {
            let record_key = key(&record.value);
            self.state.set_time(processing_time, record.timestamp);
            let mut ctx = Context {
                key: &record_key,
                timestamp: record.timestamp,
                watermark: self.watermark,
                processing_time,
                state: &mut self.state,
                timers: &mut self.timers,
                out: &mut self.buffer,
                sides,
            };
            handle(record.value, &mut ctx);
        }
    }

    /// Calls `on_timer` for every timer of `domain` due at `now`, in (time, key) order,
    /// then sweeps expired state.
    pub fn fire(
        &mut self,
        domain: TimeDomain,
        now: Timestamp,
        sides: &mut SideOutputs,
        mut on_timer: impl FnMut(Timestamp, &mut Context<'_, K, O>),
    ) {
        let processing_time = now_millis();
        self.state.set_watermark(self.watermark);
        loop {
            let due = match domain {
                TimeDomain::EventTime => self.timers.event.pop_due(now),
                TimeDomain::ProcessingTime => self.timers.processing.pop_due(now),
            };
            let Some((time, key)) = due else { break };
            self.state.set_time(processing_time, if domain == TimeDomain::EventTime { time } else { MIN_TIMESTAMP });
            let mut ctx = Context {
                key: &key,
                timestamp: time,
                watermark: self.watermark,
                processing_time,
                state: &mut self.state,
                timers: &mut self.timers,
                out: &mut self.buffer,
                sides,
            };
            on_timer(time, &mut ctx);
        }
        self.state.cleanup_expired();
    }
}

/// A function called for each record of a keyed stream and for each of its timers,
/// with state scoped to the record's key (Flink's `KeyedProcessFunction`).
///
/// The function is cloned once per worker before `open`.
pub trait KeyedProcessFunction: Clone + Send + 'static {
    /// The key type.
    type Key: Key;
    /// The input records.
    type In: Clone + Send + 'static;
    /// The output records.
    type Out: Clone + Send + 'static;

    /// Declares state, once per worker, before the first record.
    fn open(&mut self, _state: &mut KeyedStateStore<Self::Key>) {}

    /// Processes one record.
    fn process_element(&mut self, value: Self::In, ctx: &mut Context<'_, Self::Key, Self::Out>);

    /// A timer registered for `ctx.key()` fired at `timestamp`.
    fn on_timer(&mut self, _timestamp: Timestamp, _domain: TimeDomain, _ctx: &mut Context<'_, Self::Key, Self::Out>) {}
}

/// What a process function sees and can do while handling a record or a timer.
pub struct Context<'a, K: Ord, O> {
    pub(crate) key: &'a K,
    pub(crate) timestamp: Timestamp,
    pub(crate) watermark: Timestamp,
    pub(crate) processing_time: Timestamp,
    pub(crate) state: &'a mut KeyedStateStore<K>,
    pub(crate) timers: &'a mut Timers<K>,
    pub(crate) out: &'a mut Vec<Record<O>>,
    pub(crate) sides: &'a mut SideOutputs,
}

impl<K: Key, O> Context<'_, K, O> {
    /// The current key.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The event time of the current record, or the time of the firing timer.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The operator's watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The wall clock, in milliseconds since the epoch.
    pub fn current_processing_time(&self) -> Timestamp {
        self.processing_time
    }

    /// Emits a record with the current timestamp.
    pub fn emit(&mut self, value: O) {
        self.out.push(Record { timestamp: self.timestamp, value });
    }

    /// Emits a record with the given timestamp.
    pub fn emit_at(&mut self, timestamp: Timestamp, value: O) {
        self.out.push(Record { timestamp, value });
    }

    /// Emits a record on a side output, with the current timestamp.
    pub fn output<S: Send + 'static>(&mut self, tag: &OutputTag<S>, value: S) {
        self.sides.emit_named(tag.name(), Record { timestamp: self.timestamp, value });
    }

    /// Calls `on_timer` for the current key once the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: Timestamp) {
        self.timers.event.register(time, self.key.clone());
    }

    /// Removes an event-time timer of the current key.
    pub fn delete_event_time_timer(&mut self, time: Timestamp) {
        self.timers.event.delete(time, self.key);
    }

    /// Calls `on_timer` for the current key once the wall clock reaches `time`.
    pub fn register_processing_time_timer(&mut self, time: Timestamp) {
        self.timers.processing.register(time, self.key.clone());
    }

    /// Removes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&mut self, time: Timestamp) {
        self.timers.processing.delete(time, self.key);
    }

    /// The current key's value.
    pub fn value<V: Data>(&mut self, state: ValueState<V>) -> Option<V> {
        self.state.get(state, self.key)
    }

    /// Sets the current key's value.
    pub fn set_value<V: Data>(&mut self, state: ValueState<V>, value: V) {
        self.state.set(state, self.key, value)
    }

    /// Reads, changes and writes the current key's value; `None` clears it.
    pub fn update_value<V: Data>(&mut self, state: ValueState<V>, change: impl FnMut(Option<V>) -> Option<V>) {
        self.state.update(state, self.key, change)
    }

    /// Clears the current key's value.
    pub fn clear_value<V>(&mut self, state: ValueState<V>) {
        self.state.clear(state.index(), self.key)
    }

    /// The current key's list.
    pub fn list<V: Data>(&mut self, state: ListState<V>) -> Vec<V> {
        self.state.list_get(state, self.key)
    }

    /// Appends to the current key's list.
    pub fn add_to_list<V: Data>(&mut self, state: ListState<V>, value: V) {
        self.state.list_add(state, self.key, value)
    }

    /// Replaces the current key's list.
    pub fn replace_list<V: Data>(&mut self, state: ListState<V>, values: Vec<V>) {
        self.state.list_replace(state, self.key, values)
    }

    /// Clears the current key's list.
    pub fn clear_list<V>(&mut self, state: ListState<V>) {
        self.state.clear(state.index(), self.key)
    }

    /// A value of the current key's map.
    pub fn map_get<UK: Data + Hash + Ord, UV: Data>(&mut self, state: MapState<UK, UV>, user_key: &UK) -> Option<UV> {
        self.state.map_get(state, self.key, user_key)
    }

    /// Puts into the current key's map.
    pub fn map_put<UK: Data + Hash + Ord, UV: Data>(&mut self, state: MapState<UK, UV>, user_key: UK, value: UV) {
        self.state.map_put(state, self.key, user_key, value)
    }

    /// Removes from the current key's map.
    pub fn map_remove<UK: Data + Hash + Ord, UV: Data>(&mut self, state: MapState<UK, UV>, user_key: &UK) {
        self.state.map_remove(state, self.key, user_key)
    }

    /// The current key's map entries, sorted by user key.
    pub fn map_entries<UK: Data + Hash + Ord, UV: Data>(&mut self, state: MapState<UK, UV>) -> Vec<(UK, UV)> {
        self.state.map_entries(state, self.key)
    }

    /// Clears the current key's map.
    pub fn clear_map<UK, UV>(&mut self, state: MapState<UK, UV>) {
        self.state.clear(state.index(), self.key)
    }
}

/// Runs a [`KeyedProcessFunction`] on one worker.
pub(crate) struct KeyedProcessOperator<F: KeyedProcessFunction, KF> {
    function: F,
    key: KF,
    scope: KeyedScope<F::Key, F::Out>,
}

impl<F: KeyedProcessFunction, KF> KeyedProcessOperator<F, KF> {
    pub fn new(mut function: F, key: KF, backend: StateBackendKind) -> Self {
        let mut state = KeyedStateStore::new(backend);
        function.open(&mut state);
        KeyedProcessOperator { function, key, scope: KeyedScope::new(state) }
    }

    fn fire(&mut self, domain: TimeDomain, now: Timestamp, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        let function = &mut self.function;
        self.scope.fire(domain, now, out.sides(), |time, ctx| function.on_timer(time, domain, ctx));
        self.scope.emit(out)
    }
}

impl<F, KF> Operator for KeyedProcessOperator<F, KF>
where
    F: KeyedProcessFunction,
    KF: Fn(&F::In) -> F::Key + Send + 'static,
{
    type In = Batch<F::In>;
    type Out = Batch<F::Out>;

    fn process_batch(&mut self, batch: Batch<F::In>, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        let function = &mut self.function;
        self.scope.each_record(batch, &self.key, out.sides(), |value, ctx| function.process_element(value, ctx));
        self.scope.emit(out)
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        self.scope.advance_watermark(watermark);
        self.fire(TimeDomain::EventTime, watermark, out)
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, now, out)
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.scope.snapshot(state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.scope.restore(state)
    }
}
