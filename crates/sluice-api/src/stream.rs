//! `Stream`: a stream of records and the operations on it.

use crate::basic::{Branch, Filter, FilterMap, FlatMap, Map};
use crate::graph::{Batch, SharedGraph};
use crate::keyed::KeyedStream;
use crate::process::OutputTag;
use crate::sink::{Sink, SinkContext, SinkNode};
use crate::watermark::{TimestampAssigner, WatermarkAssigner, WatermarkStrategy};
use sluice_runtime::exchange::BatchExchange;
use sluice_runtime::{EdgeKind, Link, Operator, OperatorKind, OperatorNode, OperatorState, UnaryGate};
use sluice_state::StateBackendKind;
use sluice_types::{Key, Record};
use std::marker::PhantomData;
use std::rc::Rc;

/// A stream of records of type `T`, each with an event timestamp.
pub struct Stream<T> {
    pub(crate) graph: SharedGraph,
    pub(crate) node: usize,
    pub(crate) backend: StateBackendKind,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream { graph: self.graph.clone(), node: self.node, backend: self.backend.clone(), _type: PhantomData }
    }
}

impl<T: Clone + Send + 'static> Stream<T> {
    pub(crate) fn from_node(graph: SharedGraph, node: usize, backend: StateBackendKind) -> Self {
        Stream { graph, node, backend, _type: PhantomData }
    }

    pub(crate) fn derive<U>(&self, node: usize) -> Stream<U> {
        Stream { graph: self.graph.clone(), node, backend: self.backend.clone(), _type: PhantomData }
    }

    /// Chains a stateless operator built by `make` (once per worker) after this stream.
    pub(crate) fn chain<U, O, M>(&self, name: &str, make: M) -> Stream<U>
    where
        U: Clone + Send + 'static,
        O: Operator<In = Batch<T>, Out = Batch<U>>,
        M: Fn() -> O + 'static,
    {
        self.chain_operator(name, false, make)
    }

    /// Chains an operator that keeps state across batches: it takes part in checkpoints.
    pub(crate) fn chain_stateful<U, O, M>(&self, name: &str, make: M) -> Stream<U>
    where
        U: Clone + Send + 'static,
        O: Operator<In = Batch<T>, Out = Batch<U>>,
        M: Fn() -> O + 'static,
    {
        self.chain_operator(name, true, make)
    }

    fn chain_operator<U, O, M>(&self, name: &str, stateful: bool, make: M) -> Stream<U>
    where
        U: Clone + Send + 'static,
        O: Operator<In = Batch<T>, Out = Batch<U>>,
        M: Fn() -> O + 'static,
    {
        let mut graph = self.graph.borrow_mut();
        let state = if stateful { OperatorState::Instance } else { OperatorState::Stateless };
        let operator = graph.add_operator(name, OperatorKind::Operator, state);
        let node = graph.add_node(operator);
        graph.add_consumer::<T>(
            self.node,
            operator,
            Box::new(move |graph, ctx| {
                let out = graph.output::<U>(operator, node, ctx)?;
                Ok(if stateful {
                    let participant = ctx.checkpoints.register(operator, ctx.worker);
                    Box::new(OperatorNode::stateful(make(), out, participant)?)
                } else {
                    Box::new(OperatorNode::new(make(), out))
                })
            }),
        );
        drop(graph);
        self.derive(node)
    }

    /// Transforms each record's value; the timestamp is kept.
    ///
    /// ```
    /// # use sluice_api::*;
    /// let env = StreamEnvironment::new().parallelism(1);
    /// let out = CollectSink::new();
    /// env.source(VecSource::new(vec![1, 2])).map(|n| n + 1).sink(out.clone());
    /// env.execute().unwrap();
    /// assert_eq!(out.sorted_values(), vec![2, 3]);
    /// ```
    pub fn map<U: Clone + Send + 'static>(&self, f: impl Fn(T) -> U + Clone + Send + 'static) -> Stream<U> {
        self.chain("map", move || Map { f: f.clone(), _types: PhantomData })
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(&self, f: impl Fn(&T) -> bool + Clone + Send + 'static) -> Stream<T> {
        self.chain("filter", move || Filter { f: f.clone(), _types: PhantomData })
    }

    /// Turns each record into zero or more, all with the input's timestamp.
    pub fn flat_map<U, I>(&self, f: impl Fn(T) -> I + Clone + Send + 'static) -> Stream<U>
    where
        U: Clone + Send + 'static,
        I: IntoIterator<Item = U> + 'static,
    {
        self.chain("flat_map", move || FlatMap { f: f.clone(), _types: PhantomData })
    }

    /// Transforms each record and keeps the `Some` results.
    pub fn filter_map<U: Clone + Send + 'static>(
        &self,
        f: impl Fn(T) -> Option<U> + Clone + Send + 'static,
    ) -> Stream<U> {
        self.chain("filter_map", move || FilterMap { f: f.clone(), _types: PhantomData })
    }

    /// Splits the stream in `outputs` streams; `route` picks each record's output
    /// (values at or beyond `outputs` go to the last one).
    pub fn branch(&self, outputs: usize, route: impl Fn(&T) -> usize + Clone + Send + 'static) -> Vec<Stream<T>> {
        let outputs = outputs.max(1);
        let last = outputs - 1;
        let main = self.chain("branch", move || {
            let route = route.clone();
            Branch { route: move |t: &T| route(t).min(last), _types: PhantomData }
        });
        let operator = self.graph.borrow().producers[main.node];
        let mut streams = vec![main];
        for i in 1..outputs {
            streams.push(self.graph_side_output::<T>(operator, &format!("branch-{i}")));
        }
        streams
    }

    /// Splits the stream in two: records for which `f` is true, and the others.
    pub fn split(&self, f: impl Fn(&T) -> bool + Clone + Send + 'static) -> (Stream<T>, Stream<T>) {
        let mut streams = self.branch(2, move |t| usize::from(!f(t)));
        let rejected = streams.pop().expect("invariant: two branches");
        let accepted = streams.pop().expect("invariant: two branches");
        (accepted, rejected)
    }

    /// Names the operator that produces this stream (shown by counters and progress).
    pub fn name(self, name: &str) -> Self {
        let mut graph = self.graph.borrow_mut();
        let operator = graph.producers[self.node];
        graph.topology.operators[operator].name = name.to_string();
        drop(graph);
        self
    }

    /// Assigns event timestamps and generates watermarks.
    pub fn with_watermarks<A: TimestampAssigner<T>>(&self, strategy: WatermarkStrategy<T, A>) -> Stream<T> {
        let mut graph = self.graph.borrow_mut();
        let operator = graph.add_operator("watermarks", OperatorKind::Operator, OperatorState::Instance);
        let node = graph.add_node(operator);
        graph.add_consumer::<T>(
            self.node,
            operator,
            Box::new(move |graph, ctx| {
                let out = graph.output::<T>(operator, node, ctx)?;
                let participant = ctx.checkpoints.register(operator, ctx.worker);
                Ok(Box::new(WatermarkAssigner::new(strategy.clone(), out, participant)?))
            }),
        );
        drop(graph);
        self.derive(node)
    }

    /// Partitions the stream by key: records with equal keys go to the same worker,
    /// where keyed state, timers and windows live.
    pub fn key_by<K: Key, F: Fn(&T) -> K + Clone + Send + Sync + 'static>(&self, key: F) -> KeyedStream<K, T, F> {
        KeyedStream::new(self.clone(), key)
    }

    /// Merges this stream with `others` of the same type. The merged watermark is the
    /// minimum of the inputs'.
    pub fn union(&self, others: &[Stream<T>]) -> Stream<T> {
        let inputs: Vec<Stream<T>> = std::iter::once(self.clone()).chain(others.iter().cloned()).collect();
        self.through_edges(&inputs, EdgeKind::Forward, "union")
    }

    /// Spreads batches round robin over all workers.
    pub fn rebalance(&self) -> Stream<T> {
        self.through_edges(std::slice::from_ref(self), EdgeKind::Rebalance, "rebalance")
    }

    fn through_edges(&self, inputs: &[Stream<T>], kind: EdgeKind, name: &str) -> Stream<T> {
        let mut graph = self.graph.borrow_mut();
        let operator = graph.add_operator(name, OperatorKind::Exchange, OperatorState::Stateless);
        let node = graph.add_node_linked(operator, Link::Channel(kind), None);
        let mut edges = Vec::new();
        for input in inputs {
            let edge = graph.add_channel(kind);
            edges.push(edge);
            graph.add_consumer::<T>(
                input.node,
                operator,
                Box::new(move |graph, ctx| {
                    let metrics = ctx.metrics.register(operator, graph.operator_name(operator), OperatorKind::Exchange);
                    let outputs = ctx.edges.take_senders::<Batch<T>>(edge, ctx.worker, &metrics)?;
                    Ok(Box::new(BatchExchange::new(outputs, metrics)))
                }),
            );
        }
        let gate_name = name.to_string();
        graph.roots.push(Box::new(move |graph, ctx| {
            let mut receivers = Vec::new();
            for &edge in &edges {
                receivers.extend(ctx.edges.take_receivers::<Batch<T>>(edge, ctx.worker)?);
            }
            let next = graph.build_consumers::<T>(node, ctx)?;
            Ok(Box::new(UnaryGate::new(
                format!("{gate_name}-w{}", ctx.worker),
                receivers,
                next,
                ctx.config.tick_interval,
                ctx.checkpoints.alignment(),
            )))
        }));
        drop(graph);
        self.derive(node)
    }

    /// The records the operator producing this stream emitted on side output `tag`.
    pub fn side_output<S: Clone + Send + 'static>(&self, tag: &OutputTag<S>) -> Stream<S> {
        let operator = self.graph.borrow().producers[self.node];
        self.graph_side_output(operator, tag.name())
    }

    pub(crate) fn graph_side_output<S: Clone + Send + 'static>(&self, operator: usize, name: &str) -> Stream<S> {
        let mut graph = self.graph.borrow_mut();
        let node = graph.add_node_linked(operator, Link::Chained, Some(name));
        let name = name.to_string();
        graph.side_outputs[operator].push(Rc::new(move |graph, ctx, sides| {
            let next = graph.build_consumers::<S>(node, ctx)?;
            sides.connect::<Record<S>>(&name, next);
            Ok(())
        }));
        drop(graph);
        self.derive(node)
    }

    /// Writes the stream to `sink`.
    pub fn sink<S: Sink<T>>(&self, sink: S) {
        let mut graph = self.graph.borrow_mut();
        let committer = sink.committer();
        let state = if committer.is_some() { OperatorState::Transactions } else { OperatorState::Stateless };
        let operator = graph.add_operator(&sink.name(), OperatorKind::Sink, state);
        if let Some(committer) = committer {
            graph.committers.insert(operator, committer);
        }
        graph.add_consumer::<T>(
            self.node,
            operator,
            Box::new(move |graph, ctx| {
                let context = SinkContext::of(ctx);
                let writer = sink.writer(&context)?;
                let metrics = ctx.metrics.register(operator, graph.operator_name(operator), OperatorKind::Sink);
                let participant = ctx.checkpoints.register(operator, ctx.worker);
                Ok(Box::new(SinkNode::new(writer, metrics, participant)))
            }),
        );
    }
}
