//! The Sluice dataflow runtime.
//!
//! A job runs as `parallelism` workers. Each worker owns one instance of every operator.
//! Operators that need no repartitioning are *chained*: they call each other directly
//! through the [`Push`] trait, once per batch, inside one thread. A chain starts at a
//! *segment root*, either a source ([`SourceDriver`]) or an input gate
//! ([`UnaryGate`], [`BinaryGate`]) that reads bounded channels filled by the exchanges
//! ([`exchange`]) of the upstream chains. Each worker is one thread that steps all its
//! segment instances in turn ([`Task::step`]). Nothing ever blocks: a full channel
//! keeps the batch in its sender's queue and the sender's chain reports itself
//! backlogged, so its worker stops feeding it (backpressure) and runs other segments,
//! which is why a graph of bounded channels cannot deadlock.
//!
//! Data, watermarks, idleness and end-of-stream travel in-band as [`Message`]s, so a
//! watermark never overtakes the records before it. Checkpoint barriers travel the
//! same way ([`checkpoint`]). Batches are any [`Batch`]: the typed API uses `Vec<Record<T>>`, and the SQL
//! layer will use Arrow record batches through the same interfaces.
//!
//! The runtime knows nothing of SQL, Kafka, HTTP, files or tokio.

#[cfg(feature = "arrow")]
pub mod arrow;
mod batch;
mod channel;
pub mod checkpoint;
mod config;
mod doorbell;
pub mod exchange;
mod executor;
mod gate;
pub mod graph;
mod message;
mod metrics;
mod operator;
mod push;
mod running;
mod source;
mod timers;
mod two_input;
mod watermarks;

pub use batch::Batch;
pub use channel::{ChannelReceiver, ChannelSender, EdgeId, EdgeKind, Edges};
pub use config::RuntimeConfig;
pub use doorbell::Doorbell;
pub use executor::{run_workers, BuildContext, Step, Task, Worker};
pub use gate::{BinaryGate, TwoInputPush, UnaryGate};
pub use graph::{JobGraph, Link, OperatorSpec, OperatorState, StreamSpec, Topology};
pub use message::{Control, Message};
pub use metrics::{JobSnapshot, MetricsRegistry, OperatorKind, OperatorMetrics, OperatorSnapshot};
pub use operator::{Discard, Operator, OperatorNode, Output, SideOutputs, SidePort, Tee};
pub use push::now_millis;
pub use push::Push;
pub use running::Running;
pub use source::{SourceDriver, SourcePoll, SourceReader};
pub use timers::TimerQueue;
pub use two_input::{TwoInputNode, TwoInputOperator};
pub use watermarks::WatermarkTracker;
