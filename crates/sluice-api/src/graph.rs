//! The logical job graph and how it is instantiated on each worker.
//!
//! Every stream is a node. A node's consumers are factories that build, for one worker,
//! the operator reading that stream (with its own downstream chain, recursively).
//! Segment roots (sources and gates) are factories that build a runtime [`Task`].
//! Factories are type-erased for storage and recovered by type at build time only.

use sluice_runtime::checkpoint::Committer;
use sluice_runtime::{BuildContext, Discard, EdgeId, EdgeKind, OperatorKind, Output, Push, SideOutputs, Task, Tee};
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

/// A logical operator, for names and counters.
pub(crate) struct OperatorInfo {
    pub name: String,
    pub kind: OperatorKind,
    /// Side outputs requested by name.
    pub side_outputs: Vec<SideConnector>,
}

#[derive(Default)]
pub(crate) struct Graph {
    pub operators: Vec<OperatorInfo>,
    /// Per stream node, its consumers (`ConsumerFactory<T>` boxed as `Any`).
    pub consumers: Vec<Vec<Box<dyn Any>>>,
    /// Per stream node, the operator that produces it.
    pub producers: Vec<usize>,
    pub roots: Vec<RootFactory>,
    pub edges: Vec<EdgeKind>,
    /// The committers of transactional sinks, by operator.
    pub committers: BTreeMap<usize, Arc<dyn Committer>>,
}

pub(crate) type SharedGraph = Rc<RefCell<Graph>>;

impl Graph {
    pub fn add_operator(&mut self, name: &str, kind: OperatorKind) -> usize {
        self.operators.push(OperatorInfo { name: name.to_string(), kind, side_outputs: Vec::new() });
        self.operators.len() - 1
    }

    pub fn add_node(&mut self, producer: usize) -> usize {
        self.consumers.push(Vec::new());
        self.producers.push(producer);
        self.consumers.len() - 1
    }

    pub fn add_consumer<T: 'static>(&mut self, node: usize, factory: ConsumerFactory<T>) {
        self.consumers[node].push(Box::new(factory));
    }

    pub fn add_edge(&mut self, kind: EdgeKind) -> EdgeId {
        self.edges.push(kind);
        self.edges.len() - 1
    }

    pub fn operator_name(&self, operator: usize) -> &str {
        &self.operators[operator].name
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
        for connect in &self.operators[operator].side_outputs {
            connect(self, ctx, &mut sides)?;
        }
        let info = &self.operators[operator];
        let metrics = ctx.metrics.register(operator, &info.name, info.kind);
        Ok(Output::new(next, sides, metrics))
    }
}
