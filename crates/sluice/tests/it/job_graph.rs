//! A job is data: a graph built by hand from the runtime's parts, without the stream
//! API (as the SQL planner builds one), runs like the same job built by the stream API,
//! and both describe themselves alike.

use sluice::prelude::*;
use sluice::runtime::exchange::{HashExchange, VecPartitioner};
use sluice::runtime::{
    Control, EdgeKind, JobGraph, Link, Operator, OperatorKind, OperatorNode, OperatorState, Output, Push,
    RuntimeConfig, SideOutputs, SourceDriver, Topology, UnaryGate,
};
use sluice::{hash_key, Job};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const NUMBERS: u64 = 20_000;

fn key(n: &u64) -> u64 {
    n % 7
}

/// The job in the stream API: triple each number, then count per key (a running count).
fn with_the_stream_api(out: &CollectSink<(u64, u64)>) -> StreamEnvironment {
    let env = StreamEnvironment::new().parallelism(2).batch_size(100);
    env.source(VecSource::new((0..NUMBERS).collect::<Vec<u64>>()))
        .map(|n| n * 3)
        .key_by(key)
        .aggregate(Count)
        .sink(out.clone());
    env
}

struct Triple;

impl Operator for Triple {
    type In = Vec<Record<u64>>;
    type Out = Vec<Record<u64>>;
    fn process_batch(&mut self, mut batch: Self::In, out: &mut Output<Self::Out>) -> sluice::Result<()> {
        batch.iter_mut().for_each(|r| r.value *= 3);
        out.emit(batch)
    }
}

#[derive(Default)]
struct RunningCount {
    counts: HashMap<u64, u64>,
}

impl Operator for RunningCount {
    type In = Vec<Record<u64>>;
    type Out = Vec<Record<(u64, u64)>>;
    fn process_batch(&mut self, batch: Self::In, out: &mut Output<Self::Out>) -> sluice::Result<()> {
        let counted = batch
            .into_iter()
            .map(|r| {
                let k = key(&r.value);
                let count = self.counts.entry(k).or_default();
                *count += 1;
                Record { timestamp: r.timestamp, value: (k, *count) }
            })
            .collect();
        out.emit(counted)
    }
}

type Collected = Arc<Mutex<Vec<(u64, u64)>>>;

/// The end of the hand-built chain: counts what arrives, as a sink does, and keeps it.
struct Keep {
    collected: Collected,
    metrics: Arc<sluice::runtime::OperatorMetrics>,
}

impl Push<Vec<Record<(u64, u64)>>> for Keep {
    fn push(&mut self, batch: Vec<Record<(u64, u64)>>) -> sluice::Result<()> {
        self.metrics.add_in(batch.len());
        self.collected.lock().expect("lock").extend(batch.into_iter().map(|r| r.value));
        Ok(())
    }
    fn control(&mut self, control: Control) -> sluice::Result<()> {
        if let Control::Watermark(watermark) = control {
            self.metrics.set_watermark(watermark);
        }
        Ok(())
    }
    fn backlogged(&mut self) -> sluice::Result<bool> {
        Ok(false)
    }
}

/// The same job built by hand: its topology as data, then one builder per segment root
/// (the source chain up to the exchange, and the gate with the count and the sink).
fn by_hand(collected: &Collected) -> Job {
    let mut topology = Topology::default();
    let source = topology.add_operator("memory-source", OperatorKind::Source, OperatorState::Positions);
    let triple = topology.add_operator("map", OperatorKind::Operator, OperatorState::Stateless);
    let key_by = topology.add_operator("key_by", OperatorKind::Exchange, OperatorState::Stateless);
    let count = topology.add_operator(
        "aggregate",
        OperatorKind::Operator,
        OperatorState::Keyed { backend: "heap".to_string() },
    );
    let sink = topology.add_operator("collect-sink", OperatorKind::Sink, OperatorState::Stateless);
    topology.connect(source, triple, Link::Chained, None);
    topology.connect(triple, key_by, Link::Chained, None);
    topology.connect(key_by, count, Link::Channel(EdgeKind::Hash), None);
    topology.connect(count, sink, Link::Chained, None);

    let mut graph = JobGraph::new(topology);
    let edge = graph.add_channel(EdgeKind::Hash);
    let numbers = Arc::new(VecSource::new((0..NUMBERS).collect::<Vec<u64>>()));
    graph.add_root(Box::new(move |ctx| {
        let register = |id, name, kind| ctx.metrics.register(id, name, kind);
        let (source_metrics, triple_metrics, key_by_metrics) = (
            register(source, "memory-source", OperatorKind::Source),
            register(triple, "map", OperatorKind::Operator),
            register(key_by, "key_by", OperatorKind::Exchange),
        );
        let senders = ctx.edges.take_senders::<Vec<Record<u64>>>(edge, ctx.worker, &key_by_metrics)?;
        let partitioner = VecPartitioner::new(|r: &Record<u64>| hash_key(&key(&r.value)));
        let exchange = HashExchange::new(senders, partitioner, ctx.config.max_parallelism, key_by_metrics);
        let chain = OperatorNode::new(Triple, Output::new(Box::new(exchange), SideOutputs::default(), triple_metrics));
        let reader = numbers.reader(ctx.worker, ctx.config.parallelism)?;
        let (batch_size, tick) = (ctx.config.batch_size, ctx.config.tick_interval);
        let name = format!("memory-source-w{}", ctx.worker);
        Ok(Box::new(SourceDriver::new(name, reader, Box::new(chain), source_metrics, batch_size, tick)))
    }));
    let collected = collected.clone();
    graph.add_root(Box::new(move |ctx| {
        let count_metrics = ctx.metrics.register(count, "aggregate", OperatorKind::Operator);
        let sink_metrics = ctx.metrics.register(sink, "collect-sink", OperatorKind::Sink);
        let keep = Keep { collected: collected.clone(), metrics: sink_metrics };
        let chain = OperatorNode::new(
            RunningCount::default(),
            Output::new(Box::new(keep), SideOutputs::default(), count_metrics),
        );
        let receivers = ctx.edges.take_receivers::<Vec<Record<u64>>>(edge, ctx.worker)?;
        let name = format!("aggregate-w{}", ctx.worker);
        let alignment = ctx.checkpoints.alignment();
        Ok(Box::new(UnaryGate::new(name, receivers, Box::new(chain), ctx.config.tick_interval, alignment)))
    }));
    let config = RuntimeConfig { parallelism: 2, batch_size: 100, ..RuntimeConfig::default() };
    Job::new(graph, config)
}

/// Each operator's name and records in and out.
fn flows(result: &sluice::JobResult) -> Vec<(String, u64, u64)> {
    result.metrics.operators.iter().map(|o| (o.name.clone(), o.records_in, o.records_out)).collect()
}

#[test]
fn a_graph_built_by_hand_runs_like_the_same_job_built_by_the_stream_api() {
    let out = CollectSink::new();
    let env = with_the_stream_api(&out);
    let collected = Collected::default();
    let hand = by_hand(&collected);
    assert_eq!(hand.explain(), env.explain(), "both describe the same job");
    println!("{}", env.explain());

    let by_api = env.execute().expect("the stream API's job runs");
    let by_hand = hand.execute().expect("the hand-built job runs");
    let mut collected = collected.lock().expect("lock").clone();
    collected.sort_unstable();
    assert_eq!(collected.len() as u64, NUMBERS, "every number counted once");
    assert_eq!(collected, out.sorted_values(), "the same results");
    assert_eq!(flows(&by_hand), flows(&by_api), "the same records through the same operators");
}
