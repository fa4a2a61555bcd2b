//! Sources of the typed API.

use crate::graph::Batch;
use crate::{Stream, StreamEnvironment};
use sluice_runtime::{OperatorKind, SourceDriver, SourceReader};
use sluice_types::Result;

/// A source: it hands each worker a reader of its share (partition, split or part).
pub trait Source: 'static {
    /// The records it produces.
    type Item: Clone + Send + 'static;
    /// The per-worker reader.
    type Reader: SourceReader<Batch = Batch<Self::Item>> + 'static;
    /// The display name.
    fn name(&self) -> String;
    /// The reader for `worker` of `parallelism`.
    fn reader(&self, worker: usize, parallelism: usize) -> Result<Self::Reader>;
}

pub(crate) fn add_source<S: Source>(env: &StreamEnvironment, source: S) -> Stream<S::Item> {
    let mut graph = env.graph.borrow_mut();
    let name = source.name();
    let operator = graph.add_operator(&name, OperatorKind::Source);
    let node = graph.add_node(operator);
    graph.roots.push(Box::new(move |graph, ctx| {
        let reader = source.reader(ctx.worker, ctx.config.parallelism)?;
        let metrics = ctx.metrics.register(operator, graph.operator_name(operator), OperatorKind::Source);
        let next = graph.build_consumers::<S::Item>(node, ctx)?;
        let task_name = format!("{}-w{}", graph.operator_name(operator), ctx.worker);
        Ok(Box::new(SourceDriver::new(
            task_name,
            reader,
            next,
            metrics,
            ctx.config.batch_size,
            ctx.config.tick_interval,
        )))
    }));
    drop(graph);
    Stream::from_node(env.graph.clone(), node, env.state_backend)
}
