//! `KeyedStream`: a stream partitioned by key, and the keyed operations on it.

use crate::coprocess::{KeyedCoProcessFunction, KeyedCoProcessOperator};
use crate::graph::{keyed_state, Batch, Graph};
use crate::join::interval::IntervalJoin;
use crate::join::table::{Table, TableJoinOperator};
use crate::process::{KeyedProcessFunction, KeyedProcessOperator};
use crate::window::{AggregateFunction, WindowAssigner, WindowedStream};
use crate::Stream;

use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::exchange::{HashExchange, VecPartitioner};
use sluice_runtime::{
    BinaryGate, EdgeId, EdgeKind, Link, Operator, OperatorKind, OperatorNode, OperatorState, Output, TwoInputNode,
    TwoInputOperator, UnaryGate,
};
use sluice_state::KeyedValues;
use sluice_types::{hash_key, Data, Key, Record, Result};
use std::marker::PhantomData;

/// A stream partitioned by key: every record with a given key is processed by the same
/// worker, where its keyed state, timers and windows live.
pub struct KeyedStream<K, T, KF> {
    pub(crate) stream: Stream<T>,
    pub(crate) key: KF,
    _key: PhantomData<fn() -> K>,
}

impl<K, T, KF: Clone> Clone for KeyedStream<K, T, KF> {
    fn clone(&self) -> Self {
        KeyedStream { stream: self.stream.clone(), key: self.key.clone(), _key: PhantomData }
    }
}

/// Adds the hash exchange that routes `node`'s records by key over a new edge; returns
/// the edge and the exchange operator.
pub(crate) fn hash_edge<T, K, KF>(graph: &mut Graph, node: usize, key: KF) -> (EdgeId, usize)
where
    T: Clone + Send + 'static,
    K: Key,
    KF: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    let edge = graph.add_channel(EdgeKind::Hash);
    let operator = graph.add_operator("key_by", OperatorKind::Exchange, OperatorState::Stateless);
    graph.add_consumer::<T>(
        node,
        operator,
        Box::new(move |graph, ctx| {
            let metrics = ctx.metrics.register(operator, graph.operator_name(operator), OperatorKind::Exchange);
            let outputs = ctx.edges.take_senders::<Batch<T>>(edge, ctx.worker, &metrics)?;
            let key = key.clone();
            let partitioner = VecPartitioner::new(move |record: &Record<T>| hash_key(&key(&record.value)));
            Ok(Box::new(HashExchange::new(outputs, partitioner, ctx.config.max_parallelism, metrics)))
        }),
    );
    (edge, operator)
}

impl<K, T, KF> KeyedStream<K, T, KF>
where
    K: Key,
    T: Clone + Send + 'static,
    KF: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(stream: Stream<T>, key: KF) -> Self {
        KeyedStream { stream, key, _key: PhantomData }
    }

    /// Runs a keyed operator, built by `make` once per worker, after a hash exchange;
    /// it keeps `state`.
    pub(crate) fn keyed_operator<U, O, M>(&self, name: &str, state: OperatorState, make: M) -> Stream<U>
    where
        U: Clone + Send + 'static,
        O: Operator<In = Batch<T>, Out = Batch<U>>,
        M: Fn() -> O + 'static,
    {
        let mut graph = self.stream.graph.borrow_mut();
        let (edge, exchange) = hash_edge(&mut graph, self.stream.node, self.key.clone());
        let operator = graph.add_operator(name, OperatorKind::Operator, state);
        graph.topology.connect(exchange, operator, Link::Channel(EdgeKind::Hash), None);
        let node = graph.add_node(operator);
        graph.roots.push(Box::new(move |graph, ctx| {
            let receivers = ctx.edges.take_receivers::<Batch<T>>(edge, ctx.worker)?;
            let out: Output<Batch<U>> = graph.output::<U>(operator, node, ctx)?;
            let participant = ctx.checkpoints.register(operator, ctx.worker);
            let chain = Box::new(OperatorNode::stateful(make(), out, participant)?);
            let name = format!("{}-w{}", graph.operator_name(operator), ctx.worker);
            let alignment = ctx.checkpoints.alignment();
            Ok(Box::new(UnaryGate::new(name, receivers, chain, ctx.config.tick_interval, alignment)))
        }));
        drop(graph);
        self.stream.derive(node)
    }

    /// Processes each record with a [`KeyedProcessFunction`]: keyed state, timers and
    /// side outputs.
    pub fn process<F>(&self, function: F) -> Stream<F::Out>
    where
        F: KeyedProcessFunction<Key = K, In = T>,
    {
        let key = self.key.clone();
        let backend = self.stream.backend.clone();
        self.keyed_operator("process", keyed_state(&backend), move || {
            KeyedProcessOperator::new(function.clone(), key.clone(), backend.clone())
        })
    }

    /// A rolling reduce: for each record, combines it with the key's previous result
    /// and emits the new result.
    ///
    /// ```
    /// # use sluice_api::*;
    /// let env = StreamEnvironment::new().parallelism(2);
    /// let out = CollectSink::new();
    /// env.source(VecSource::new(vec![('a', 1), ('b', 2), ('a', 3)]))
    ///     .key_by(|(k, _)| *k)
    ///     .reduce(|(k, x), (_, y)| (*k, x + y))
    ///     .sink(out.clone());
    /// env.execute().unwrap();
    /// assert_eq!(out.sorted_values(), vec![('a', 1), ('a', 4), ('b', 2)]);
    /// ```
    pub fn reduce(&self, f: impl Fn(&T, &T) -> T + Clone + Send + 'static) -> Stream<T>
    where
        T: Data,
    {
        let key = self.key.clone();
        let backend = self.stream.backend.clone();
        self.keyed_operator("reduce", keyed_state(&backend), move || RollingReduce {
            key: key.clone(),
            f: f.clone(),
            state: KeyedValues::new(&backend, "reduce"),
        })
    }

    /// A rolling aggregate: for each record, adds it to its key's accumulator and emits
    /// the key with the new result (an updating, per-key aggregate, as Kafka Streams'
    /// `aggregate` on a grouped stream).
    ///
    /// ```
    /// # use sluice_api::*;
    /// # use sluice_api::window::Sum;
    /// let env = StreamEnvironment::new().parallelism(2);
    /// let out = CollectSink::new();
    /// env.source(VecSource::new(vec![('a', 1), ('b', 2), ('a', 3)]))
    ///     .key_by(|(k, _)| *k)
    ///     .aggregate(Sum::of(|(_, n): &(char, i32)| *n))
    ///     .sink(out.clone());
    /// env.execute().unwrap();
    /// assert_eq!(out.sorted_values(), vec![('a', 1), ('a', 4), ('b', 2)]);
    /// ```
    pub fn aggregate<A: AggregateFunction<T>>(&self, function: A) -> Stream<(K, A::Out)> {
        let key = self.key.clone();
        let backend = self.stream.backend.clone();
        self.keyed_operator("aggregate", keyed_state(&backend), move || RollingAggregate {
            key: key.clone(),
            function: function.clone(),
            state: KeyedValues::new(&backend, "aggregate"),
            _type: PhantomData,
        })
    }

    /// Groups the keyed stream into windows.
    pub fn window(&self, assigner: WindowAssigner) -> WindowedStream<K, T, KF> {
        WindowedStream::new(self.clone(), assigner)
    }

    /// Connects with another stream keyed the same way, for a
    /// [`KeyedCoProcessFunction`] with state shared by both inputs.
    pub fn connect<U, KF2>(&self, other: &KeyedStream<K, U, KF2>) -> ConnectedStreams<K, T, U, KF, KF2>
    where
        U: Clone + Send + 'static,
        KF2: Fn(&U) -> K + Clone + Send + Sync + 'static,
    {
        ConnectedStreams { left: self.clone(), right: other.clone() }
    }

    /// Joins each record with the records of `other` with the same key whose timestamp
    /// lies within `[t + lower, t + upper]` (inclusive).
    pub fn interval_join<U, KF2>(
        &self,
        other: &KeyedStream<K, U, KF2>,
        lower: i64,
        upper: i64,
    ) -> IntervalJoin<K, T, U, KF, KF2>
    where
        U: Clone + Send + 'static,
        KF2: Fn(&U) -> K + Clone + Send + Sync + 'static,
    {
        IntervalJoin::new(self.clone(), other.clone(), lower, upper)
    }

    /// This stream read as a table: the latest value per key (each record replaces the
    /// previous value of its key).
    pub fn into_table(&self) -> Table<K, T> {
        let key = self.key.clone();
        let updates = self.stream.map(move |value: T| (key(&value), Some(value)));
        Table::from_updates(updates)
    }

    /// Joins each record with the table's value for its key as of the record's event
    /// time; records without a table value are dropped (inner join).
    pub fn join_table<V, O>(&self, table: &Table<K, V>, f: impl Fn(&T, &V) -> O + Clone + Send + 'static) -> Stream<O>
    where
        T: Data,
        V: Data,
        O: Clone + Send + 'static,
    {
        self.table_join(table, "join_table", move |t: &T, v: Option<&V>| v.map(|v| f(t, v)))
    }

    /// Joins each record with the table's value for its key as of the record's event
    /// time, or `None` when the table has none (left join).
    pub fn left_join_table<V, O>(
        &self,
        table: &Table<K, V>,
        f: impl Fn(&T, Option<&V>) -> O + Clone + Send + 'static,
    ) -> Stream<O>
    where
        T: Data,
        V: Data,
        O: Clone + Send + 'static,
    {
        self.table_join(table, "left_join_table", move |t: &T, v: Option<&V>| Some(f(t, v)))
    }

    fn table_join<V, O, J>(&self, table: &Table<K, V>, name: &str, join: J) -> Stream<O>
    where
        T: Data,
        V: Data,
        O: Clone + Send + 'static,
        J: Fn(&T, Option<&V>) -> Option<O> + Clone + Send + 'static,
    {
        let right = table.updates.key_by(|(k, _): &(K, Option<V>)| k.clone());
        let key = self.key.clone();
        let backend = self.stream.backend.clone();
        two_input(self, &right, name, keyed_state(&backend), move || {
            TableJoinOperator::new(key.clone(), join.clone(), &backend)
        })
    }
}

/// Two keyed streams connected for a co-process function.
pub struct ConnectedStreams<K, T, U, KF, KF2> {
    left: KeyedStream<K, T, KF>,
    right: KeyedStream<K, U, KF2>,
}

impl<K, T, U, KF, KF2> ConnectedStreams<K, T, U, KF, KF2>
where
    K: Key,
    T: Clone + Send + 'static,
    U: Clone + Send + 'static,
    KF: Fn(&T) -> K + Clone + Send + Sync + 'static,
    KF2: Fn(&U) -> K + Clone + Send + Sync + 'static,
{
    /// Processes both inputs with one function and shared keyed state.
    pub fn process<F>(&self, function: F) -> Stream<F::Out>
    where
        F: KeyedCoProcessFunction<Key = K, In1 = T, In2 = U>,
    {
        let (key1, key2) = (self.left.key.clone(), self.right.key.clone());
        let backend = self.left.stream.backend.clone();
        two_input(&self.left, &self.right, "co_process", keyed_state(&backend), move || {
            KeyedCoProcessOperator::new(function.clone(), key1.clone(), key2.clone(), backend.clone())
        })
    }
}

/// Runs a two-input keyed operator after hash exchanges of both inputs.
pub(crate) fn two_input<K, T, U, V, KF, KF2, O, M>(
    left: &KeyedStream<K, T, KF>,
    right: &KeyedStream<K, U, KF2>,
    name: &str,
    state: OperatorState,
    make: M,
) -> Stream<V>
where
    K: Key,
    T: Clone + Send + 'static,
    U: Clone + Send + 'static,
    V: Clone + Send + 'static,
    KF: Fn(&T) -> K + Clone + Send + Sync + 'static,
    KF2: Fn(&U) -> K + Clone + Send + Sync + 'static,
    O: TwoInputOperator<Left = Batch<T>, Right = Batch<U>, Out = Batch<V>>,
    M: Fn() -> O + 'static,
{
    let mut graph = left.stream.graph.borrow_mut();
    let (left_edge, left_exchange) = hash_edge(&mut graph, left.stream.node, left.key.clone());
    let (right_edge, right_exchange) = hash_edge(&mut graph, right.stream.node, right.key.clone());
    let operator = graph.add_operator(name, OperatorKind::Operator, state);
    graph.topology.connect(left_exchange, operator, Link::Channel(EdgeKind::Hash), None);
    graph.topology.connect(right_exchange, operator, Link::Channel(EdgeKind::Hash), None);
    let node = graph.add_node(operator);
    graph.roots.push(Box::new(move |graph, ctx| {
        let left = ctx.edges.take_receivers::<Batch<T>>(left_edge, ctx.worker)?;
        let right = ctx.edges.take_receivers::<Batch<U>>(right_edge, ctx.worker)?;
        let out = graph.output::<V>(operator, node, ctx)?;
        let name = format!("{}-w{}", graph.operator_name(operator), ctx.worker);
        let participant = ctx.checkpoints.register(operator, ctx.worker);
        let target = Box::new(TwoInputNode::new(make(), out, participant)?);
        let alignment = ctx.checkpoints.alignment();
        Ok(Box::new(BinaryGate::new(name, left, right, target, ctx.config.tick_interval, alignment)))
    }));
    drop(graph);
    left.stream.derive(node)
}

struct RollingAggregate<K, T, KF, A: AggregateFunction<T>> {
    key: KF,
    function: A,
    state: KeyedValues<K, A::Acc>,
    _type: PhantomData<fn(T)>,
}

impl<K, T, KF, A> Operator for RollingAggregate<K, T, KF, A>
where
    K: Key,
    T: Send + 'static,
    KF: Fn(&T) -> K + Send + 'static,
    A: AggregateFunction<T>,
{
    type In = Batch<T>;
    type Out = Batch<(K, A::Out)>;

    fn process_batch(&mut self, batch: Batch<T>, out: &mut Output<Self::Out>) -> Result<()> {
        let mut emitted = Vec::with_capacity(batch.len());
        let function = &self.function;
        for record in batch {
            let key = (self.key)(&record.value);
            let result = self.state.upsert(
                &key,
                || {
                    let mut acc = function.create();
                    function.add(&mut acc, &record.value);
                    acc
                },
                |acc| function.add(acc, &record.value),
                |acc| function.result(acc),
            );
            emitted.push(Record { timestamp: record.timestamp, value: (key, result) });
        }
        self.state.check("aggregate")?;
        out.emit(emitted)
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.state.snapshot(state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.state.restore(state)
    }
}

struct RollingReduce<K, T, KF, F> {
    key: KF,
    f: F,
    state: KeyedValues<K, T>,
}

impl<K, T, KF, F> Operator for RollingReduce<K, T, KF, F>
where
    K: Key,
    T: Data,
    KF: Fn(&T) -> K + Send + 'static,
    F: Fn(&T, &T) -> T + Send + 'static,
{
    type In = Batch<T>;
    type Out = Batch<T>;

    fn process_batch(&mut self, batch: Batch<T>, out: &mut Output<Batch<T>>) -> Result<()> {
        let mut emitted = Vec::with_capacity(batch.len());
        let f = &self.f;
        for record in batch {
            let key = (self.key)(&record.value);
            let value = self.state.upsert(
                &key,
                || record.value.clone(),
                |current| *current = f(current, &record.value),
                T::clone,
            );
            emitted.push(Record { timestamp: record.timestamp, value });
        }
        self.state.check("reduce")?;
        out.emit(emitted)
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.state.snapshot(state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.state.restore(state)
    }
}
