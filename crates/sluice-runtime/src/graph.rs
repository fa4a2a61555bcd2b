//! A job as data: its operators and the streams between them ([`Topology`]), and the
//! builders that instantiate it on every worker ([`JobGraph`]).
//!
//! The typed stream API and the SQL planner both build a `JobGraph`; the job's
//! lifecycle (`sluice-job`) runs one. The topology is plain data: it is printed by
//! `explain`, checked against a checkpoint's operators on restore, and (later) served
//! by the REST API and drawn by the dashboard.

use crate::checkpoint::{CheckpointHub, Committer};
use crate::{BuildContext, EdgeId, EdgeKind, MetricsRegistry, OperatorKind, RuntimeConfig, Task, Worker};
use sluice_types::{Error, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What an operator keeps in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorState {
    /// Nothing.
    Stateless,
    /// Where each reader is in its input (offsets, splits).
    Positions,
    /// State of the operator instance, not split by key (a watermark clock).
    Instance,
    /// State per key, rescaled by key group, in the named backend.
    Keyed {
        /// Where the state lives: `heap` or `disk`.
        backend: String,
    },
    /// The transactions a two-phase-commit sink pre-committed.
    Transactions,
}

impl std::fmt::Display for OperatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OperatorState::Stateless => f.write_str("-"),
            OperatorState::Positions => f.write_str("positions"),
            OperatorState::Instance => f.write_str("instance"),
            OperatorState::Keyed { backend } => write!(f, "keyed ({backend})"),
            OperatorState::Transactions => f.write_str("transactions"),
        }
    }
}

/// One operator of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorSpec {
    /// Its display name (counters, errors, checkpoints).
    pub name: String,
    /// Its role.
    pub kind: OperatorKind,
    /// What it keeps in checkpoints.
    pub state: OperatorState,
}

/// How records go from one operator to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// A direct call inside the worker: no channel, no copy.
    Chained,
    /// Through channels between workers, partitioned as the edge says.
    Channel(EdgeKind),
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Link::Chained => "chained",
            Link::Channel(EdgeKind::Forward) => "forward",
            Link::Channel(EdgeKind::Hash) => "hash",
            Link::Channel(EdgeKind::Rebalance) => "rebalance",
            Link::Channel(EdgeKind::Broadcast) => "broadcast",
        })
    }
}

/// A stream from one operator to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    /// The operator that emits it.
    pub from: usize,
    /// The operator that consumes it.
    pub to: usize,
    /// How records travel.
    pub link: Link,
    /// The side output it comes from, if not the main output.
    pub side_output: Option<String>,
}

/// A job's operators (by id, their index) and the streams between them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// The operators, in the order they were added.
    pub operators: Vec<OperatorSpec>,
    /// The streams between them.
    pub streams: Vec<StreamSpec>,
}

impl Topology {
    /// Adds an operator; returns its id.
    pub fn add_operator(&mut self, name: &str, kind: OperatorKind, state: OperatorState) -> usize {
        self.operators.push(OperatorSpec { name: name.to_string(), kind, state });
        self.operators.len() - 1
    }

    /// Adds a stream from `from`'s main output (or its side output `side_output`) to `to`.
    pub fn connect(&mut self, from: usize, to: usize, link: Link, side_output: Option<&str>) {
        self.streams.push(StreamSpec { from, to, link, side_output: side_output.map(str::to_string) });
    }

    /// The name of operator `id`.
    pub fn name(&self, id: usize) -> &str {
        self.operators.get(id).map_or("?", |o| o.name.as_str())
    }

    /// The operators' names, in id order (what a checkpoint records of its job).
    pub fn operator_names(&self) -> Vec<String> {
        self.operators.iter().map(|o| o.name.clone()).collect()
    }

    /// The job as a table: one line per operator with its kind, parallelism, state and
    /// inputs (the operators it reads, and how).
    pub fn explain(&self, parallelism: usize) -> String {
        let mut rows = vec![["id", "operator", "kind", "parallelism", "state", "inputs"].map(str::to_string)];
        for (id, operator) in self.operators.iter().enumerate() {
            let inputs: Vec<String> = self
                .streams
                .iter()
                .filter(|s| s.to == id)
                .map(|s| match &s.side_output {
                    Some(side) => format!("{} {} (side output '{side}')", s.from, s.link),
                    None => format!("{} {}", s.from, s.link),
                })
                .collect();
            rows.push([
                id.to_string(),
                operator.name.clone(),
                kind_name(operator.kind).to_string(),
                parallelism.to_string(),
                operator.state.to_string(),
                if inputs.is_empty() { "-".to_string() } else { inputs.join(", ") },
            ]);
        }
        let widths: Vec<usize> = (0..6).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let mut text = String::new();
        for row in &rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let _ = if c == 0 {
                    write!(line, "{cell:>w$}", w = widths[c])
                } else {
                    write!(line, "  {cell:<w$}", w = widths[c])
                };
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

fn kind_name(kind: OperatorKind) -> &'static str {
    match kind {
        OperatorKind::Source => "source",
        OperatorKind::Operator => "operator",
        OperatorKind::Exchange => "exchange",
        OperatorKind::Sink => "sink",
    }
}

/// Builds, for the worker in the context, one segment root (a source or a gate) with
/// the operators chained behind it.
pub type RootBuilder = Box<dyn Fn(&mut BuildContext) -> Result<Box<dyn Task>>>;

/// A job ready to run: its topology, the channels its exchanges use, the builders of
/// its segment roots, and the committers of its transactional sinks.
#[derive(Default)]
pub struct JobGraph {
    /// The job as data.
    pub topology: Topology,
    channels: Vec<EdgeKind>,
    roots: Vec<RootBuilder>,
    committers: BTreeMap<usize, Arc<dyn Committer>>,
}

impl JobGraph {
    /// A job of `topology`, with no channels or roots yet.
    pub fn new(topology: Topology) -> Self {
        JobGraph { topology, ..JobGraph::default() }
    }

    /// Declares a channel edge between workers; builders take its ends by the id.
    pub fn add_channel(&mut self, kind: EdgeKind) -> EdgeId {
        self.channels.push(kind);
        self.channels.len() - 1
    }

    /// Adds a segment root, built once per worker.
    pub fn add_root(&mut self, root: RootBuilder) {
        self.roots.push(root);
    }

    /// Registers the committer of the transactional sink `operator`.
    pub fn add_committer(&mut self, operator: usize, committer: Arc<dyn Committer>) {
        self.committers.insert(operator, committer);
    }

    /// The committers of the transactional sinks, by operator id.
    pub fn committers(&self) -> &BTreeMap<usize, Arc<dyn Committer>> {
        &self.committers
    }

    /// Builds every worker's segments.
    pub fn instantiate(
        &self,
        config: &RuntimeConfig,
        metrics: MetricsRegistry,
        cancel: Arc<AtomicBool>,
        checkpoints: Arc<CheckpointHub>,
    ) -> Result<Vec<Worker>> {
        if self.roots.is_empty() {
            return Err(Error::invalid_job("the job has no source"));
        }
        let mut ctx = BuildContext::new(config.clone(), metrics, cancel, checkpoints);
        for kind in &self.channels {
            ctx.edges.declare(*kind);
        }
        for worker in 0..config.parallelism {
            ctx.worker = worker;
            for root in &self.roots {
                let task = root(&mut ctx)?;
                ctx.add_task(task);
            }
        }
        Ok(ctx.into_workers())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_lists_operators_with_their_inputs() {
        let mut topology = Topology::default();
        let source = topology.add_operator("numbers", OperatorKind::Source, OperatorState::Positions);
        let key_by = topology.add_operator("key_by", OperatorKind::Exchange, OperatorState::Stateless);
        let count =
            topology.add_operator("count", OperatorKind::Operator, OperatorState::Keyed { backend: "heap".into() });
        topology.connect(source, key_by, Link::Chained, None);
        topology.connect(key_by, count, Link::Channel(EdgeKind::Hash), None);
        topology.connect(count, source, Link::Chained, Some("late"));
        let text = topology.explain(4);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "id  operator  kind      parallelism  state         inputs");
        assert_eq!(lines[1], " 0  numbers   source    4            positions     2 chained (side output 'late')");
        assert_eq!(lines[2], " 1  key_by    exchange  4            -             0 chained");
        assert_eq!(lines[3], " 2  count     operator  4            keyed (heap)  1 hash");
    }
}
