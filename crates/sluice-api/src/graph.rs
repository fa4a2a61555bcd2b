//! The stream API's typed wiring, and its translation into the runtime's job graph.
//!
//! Every stream is a node. A node's consumers are factories that build, for one worker,
//! the operator reading that stream (with its own downstream chain, recursively).
//! Segment roots (sources and gates) are factories that build a runtime [`Task`].
//! Factories are type-erased for storage and recovered by type at build time only.
//! Alongside, every operator and stream is recorded as data in a [`Topology`].

use sluice_runtime::checkpoint::Committer;
use sluice_runtime::{
    BuildContext, Discard, EdgeId, EdgeKind, JobGraph, Link, OperatorKind, OperatorState, Output, Push, SideOutputs,
    Task, Tee, Topology,
};
use sluice_state::StateBackendKind;
use sluice_types::{Error, Record, Result};
use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

/// A typed batch of the typed API.
pub(crate) type Batch<T> = Vec<Record<T>>;

/// Builds, for one worker, the chain that consumes a stream of `T`.
pub(crate) type ConsumerFactory<T> = Box<dyn Fn(&Graph, &mut BuildContext) -> Result<Box<dyn Push<Batch<T>>>>>;

/// Builds, for one worker, a segment root.
pub(crate) type RootFactory = Box<dyn Fn(&Graph, &mut BuildContext) -> Result<Box<dyn Task>>>;

/// Connects one side output of an operator instance to its consumers.
pub(crate) type SideConnector = Rc<dyn Fn(&Graph, &mut BuildContext, &mut SideOutputs) -> Result<()>>;

/// The typed wiring of a job as the stream API builds it. Its topology is the job as
/// data; [`into_job_graph`] turns it into the runtime's [`JobGraph`].
#[derive(Default)]
pub(crate) struct Graph {
    pub topology: Topology,
    /// Per operator, the side outputs requested by name.
    pub side_outputs: Vec<Vec<SideConnector>>,
    /// Per stream node, its consumers (`ConsumerFactory<T>` boxed as `Any`).
    pub consumers: Vec<Vec<Box<dyn Any>>>,
    /// Per stream node, the operator that produces it.
    pub producers: Vec<usize>,
    /// Per stream node, how its consumers receive it, and from which side output.
    links: Vec<(Link, Option<String>)>,
    pub roots: Vec<RootFactory>,
    pub channels: Vec<EdgeKind>,
    /// The committers of transactional sinks, by operator.
    pub committers: BTreeMap<usize, Arc<dyn Committer>>,
}

pub(crate) type SharedGraph = Rc<RefCell<Graph>>;

/// Keyed state in `backend`.
pub(crate) fn keyed_state(backend: &StateBackendKind) -> OperatorState {
    OperatorState::Keyed { backend: backend.name().to_string() }
}

impl Graph {
    pub fn add_operator(&mut self, name: &str, kind: OperatorKind, state: OperatorState) -> usize {
        self.side_outputs.push(Vec::new());
        self.topology.add_operator(name, kind, state)
    }

    /// A stream produced by `producer`'s main output, consumed by chained operators.
    pub fn add_node(&mut self, producer: usize) -> usize {
        self.add_node_linked(producer, Link::Chained, None)
    }

    /// A stream produced by `producer` whose consumers receive it through `link`, from
    /// its side output `side_output` if given.
    pub fn add_node_linked(&mut self, producer: usize, link: Link, side_output: Option<&str>) -> usize {
        self.consumers.push(Vec::new());
        self.producers.push(producer);
        self.links.push((link, side_output.map(str::to_string)));
        self.consumers.len() - 1
    }

    /// Adds operator `consumer` as a consumer of `node`, built by `factory`.
    pub fn add_consumer<T: 'static>(&mut self, node: usize, consumer: usize, factory: ConsumerFactory<T>) {
        let (link, side_output) = &self.links[node];
        self.topology.connect(self.producers[node], consumer, *link, side_output.as_deref());
        self.consumers[node].push(Box::new(factory));
    }

    pub fn add_channel(&mut self, kind: EdgeKind) -> EdgeId {
        self.channels.push(kind);
        self.channels.len() - 1
    }

    pub fn operator_name(&self, operator: usize) -> &str {
        self.topology.name(operator)
    }

    /// Builds, for the worker in `ctx`, everything that consumes `node`.
    pub fn build_consumers<T: Clone + Send + 'static>(
        &self,
        node: usize,
        ctx: &mut BuildContext,
    ) -> Result<Box<dyn Push<Batch<T>>>> {
        let mut chains: Vec<Box<dyn Push<Batch<T>>>> = Vec::new();
        for consumer in &self.consumers[node] {
            let factory = consumer
                .downcast_ref::<ConsumerFactory<T>>()
                .ok_or_else(|| Error::internal(format!("stream {node} consumed with the wrong type")))?;
            chains.push(factory(self, ctx)?);
        }
        Ok(match chains.len() {
            0 => Box::new(Discard),
            1 => chains.pop().expect("invariant: one chain"),
            _ => Box::new(Tee::new(chains)),
        })
    }

    /// The output of one instance of `operator`: its main output feeds the consumers
    /// of `node`, its side outputs feed theirs, and it counts into fresh counters.
    pub fn output<U: Clone + Send + 'static>(
        &self,
        operator: usize,
        node: usize,
        ctx: &mut BuildContext,
    ) -> Result<Output<Batch<U>>> {
        let next = self.build_consumers::<U>(node, ctx)?;
        let mut sides = SideOutputs::default();
        for connect in &self.side_outputs[operator] {
            connect(self, ctx, &mut sides)?;
        }
        let info = &self.topology.operators[operator];
        let metrics = ctx.metrics.register(operator, &info.name, info.kind);
        Ok(Output::new(next, sides, metrics))
    }
}

/// Turns the stream API's graph into the runtime's job graph: the same topology, with
/// each segment root built from the typed wiring.
pub(crate) fn into_job_graph(graph: Graph) -> JobGraph {
    let mut job = JobGraph::new(graph.topology.clone());
    for kind in &graph.channels {
        job.add_channel(*kind);
    }
    for (operator, committer) in &graph.committers {
        job.add_committer(*operator, committer.clone());
    }
    let graph = Rc::new(graph);
    for root in 0..graph.roots.len() {
        let graph = graph.clone();
        job.add_root(Box::new(move |ctx| (graph.roots[root])(&graph, ctx)));
    }
    job
}
