//! Keyed co-process functions: two inputs, one keyed state.

use crate::graph::Batch;
use crate::process::{Context, TimeDomain, Timers};
use crate::two_input::TwoInputOperator;
use sluice_runtime::{now_millis, Output};
use sluice_state::{KeyedStateStore, StateBackendKind};
use sluice_types::{Key, Record, Result, Timestamp, MIN_TIMESTAMP};

/// The context of a co-process function: the same as a process function's.
pub type CoContext<'a, K, O> = Context<'a, K, O>;

/// A function over two connected keyed streams that share keyed state and timers
/// (Flink's `KeyedCoProcessFunction`).
pub trait KeyedCoProcessFunction: Clone + Send + 'static {
    /// The key type of both inputs.
    type Key: Key;
    /// The first input's records.
    type In1: Clone + Send + 'static;
    /// The second input's records.
    type In2: Clone + Send + 'static;
    /// The output records.
    type Out: Clone + Send + 'static;

    /// Declares state, once per worker.
    fn open(&mut self, _state: &mut KeyedStateStore<Self::Key>) {}
    /// Processes a record of the first input.
    fn process_element1(&mut self, value: Self::In1, ctx: &mut CoContext<'_, Self::Key, Self::Out>);
    /// Processes a record of the second input.
    fn process_element2(&mut self, value: Self::In2, ctx: &mut CoContext<'_, Self::Key, Self::Out>);
    /// A timer of `ctx.key()` fired.
    fn on_timer(&mut self, _timestamp: Timestamp, _domain: TimeDomain, _ctx: &mut CoContext<'_, Self::Key, Self::Out>) {
    }
}

pub(crate) struct KeyedCoProcessOperator<F: KeyedCoProcessFunction, KF1, KF2> {
    function: F,
    key1: KF1,
    key2: KF2,
    state: KeyedStateStore<F::Key>,
    timers: Timers<F::Key>,
    watermark: Timestamp,
    buffer: Vec<Record<F::Out>>,
}

impl<F: KeyedCoProcessFunction, KF1, KF2> KeyedCoProcessOperator<F, KF1, KF2> {
    pub fn new(mut function: F, key1: KF1, key2: KF2, backend: StateBackendKind) -> Self {
        let mut state = KeyedStateStore::new(backend);
        function.open(&mut state);
        KeyedCoProcessOperator {
            function,
            key1,
            key2,
            state,
            timers: Timers::default(),
            watermark: MIN_TIMESTAMP,
            buffer: Vec::new(),
        }
    }

    fn fire(&mut self, domain: TimeDomain, now: Timestamp, out: &mut Output<Batch<F::Out>>) -> Result<()> {
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
                sides: out.sides(),
            };
            self.function.on_timer(time, domain, &mut ctx);
        }
        self.state.cleanup_expired();
        out.emit(std::mem::take(&mut self.buffer))
    }
}

macro_rules! process_side {
    ($self:ident, $batch:ident, $out:ident, $key:ident, $method:ident) => {{
        let processing_time = now_millis();
        for record in $batch {
            let key = ($self.$key)(&record.value);
            $self.state.set_time(processing_time, record.timestamp);
            let mut ctx = Context {
                key: &key,
                timestamp: record.timestamp,
                watermark: $self.watermark,
                processing_time,
                state: &mut $self.state,
                timers: &mut $self.timers,
                out: &mut $self.buffer,
                sides: $out.sides(),
            };
            $self.function.$method(record.value, &mut ctx);
        }
        $out.emit(std::mem::take(&mut $self.buffer))
    }};
}

impl<F, KF1, KF2> TwoInputOperator for KeyedCoProcessOperator<F, KF1, KF2>
where
    F: KeyedCoProcessFunction,
    KF1: Fn(&F::In1) -> F::Key + Send + 'static,
    KF2: Fn(&F::In2) -> F::Key + Send + 'static,
{
    type Left = F::In1;
    type Right = F::In2;
    type Out = F::Out;

    fn process_left(&mut self, batch: Batch<F::In1>, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        process_side!(self, batch, out, key1, process_element1)
    }

    fn process_right(&mut self, batch: Batch<F::In2>, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        process_side!(self, batch, out, key2, process_element2)
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        self.watermark = watermark;
        self.fire(TimeDomain::EventTime, watermark, out)
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        self.fire(TimeDomain::ProcessingTime, now, out)
    }
}
