//! Sources of the typed API.

use crate::graph::Batch;
use crate::{Stream, StreamEnvironment};
use sluice_runtime::checkpoint::StateReader;
use sluice_runtime::{OperatorKind, OperatorState, SourceDriver, SourceReader};
use sluice_types::{Error, Result};

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
    /// A reader that resumes from a checkpoint: `state` holds the splits dealt to this
    /// worker, as the readers wrote them ([`SourceReader::snapshot`]); it may hold none.
    fn restore_reader(&self, _worker: usize, _parallelism: usize, _state: &StateReader) -> Result<Self::Reader> {
        Err(Error::invalid_job(format!("source '{}' cannot resume from a checkpoint", self.name())))
    }
}

pub(crate) fn add_source<S: Source>(env: &StreamEnvironment, source: S) -> Stream<S::Item> {
    let mut graph = env.graph.borrow_mut();
    let name = source.name();
    let operator = graph.add_operator(&name, OperatorKind::Source, OperatorState::Positions);
    let node = graph.add_node(operator);
    graph.roots.push(Box::new(move |graph, ctx| {
        let participant = ctx.checkpoints.register(operator, ctx.worker);
        let reader = match participant.restored() {
            Some(state) => source.restore_reader(ctx.worker, ctx.config.parallelism, &state)?,
            None => source.reader(ctx.worker, ctx.config.parallelism)?,
        };
        let metrics = ctx.metrics.register(operator, graph.operator_name(operator), OperatorKind::Source);
        let next = graph.build_consumers::<S::Item>(node, ctx)?;
        let task_name = format!("{}-w{}", graph.operator_name(operator), ctx.worker);
        Ok(Box::new(
            SourceDriver::new(task_name, reader, next, metrics, ctx.config.batch_size, ctx.config.tick_interval)
                .with_checkpoints(participant),
        ))
    }));
    drop(graph);
    Stream::from_node(env.graph.clone(), node, env.state_backend.clone())
}
