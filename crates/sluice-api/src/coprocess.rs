//! Keyed co-process functions: two inputs, one keyed state.

use crate::graph::Batch;
use crate::process::{Context, KeyedScope, TimeDomain};
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::Output;
use sluice_runtime::TwoInputOperator;
use sluice_state::{KeyedStateStore, StateBackendKind};
use sluice_types::{Key, Result, Timestamp};

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
    scope: KeyedScope<F::Key, F::Out>,
}

impl<F: KeyedCoProcessFunction, KF1, KF2> KeyedCoProcessOperator<F, KF1, KF2> {
    pub fn new(mut function: F, key1: KF1, key2: KF2, backend: StateBackendKind) -> Self {
        let mut state = KeyedStateStore::new(backend);
        function.open(&mut state);
        KeyedCoProcessOperator { function, key1, key2, scope: KeyedScope::new(state) }
    }

    fn fire(&mut self, domain: TimeDomain, now: Timestamp, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        let function = &mut self.function;
        self.scope.fire(domain, now, out.sides(), |time, ctx| function.on_timer(time, domain, ctx));
        self.scope.emit(out)
    }
}

impl<F, KF1, KF2> TwoInputOperator for KeyedCoProcessOperator<F, KF1, KF2>
where
    F: KeyedCoProcessFunction,
    KF1: Fn(&F::In1) -> F::Key + Send + 'static,
    KF2: Fn(&F::In2) -> F::Key + Send + 'static,
{
    type Left = Batch<F::In1>;
    type Right = Batch<F::In2>;
    type Out = Batch<F::Out>;

    fn process_left(&mut self, batch: Batch<F::In1>, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        let function = &mut self.function;
        self.scope.each_record(batch, &self.key1, out.sides(), |value, ctx| function.process_element1(value, ctx));
        self.scope.emit(out)
    }

    fn process_right(&mut self, batch: Batch<F::In2>, out: &mut Output<Batch<F::Out>>) -> Result<()> {
        let function = &mut self.function;
        self.scope.each_record(batch, &self.key2, out.sides(), |value, ctx| function.process_element2(value, ctx));
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
