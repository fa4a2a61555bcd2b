//! Sluice: a stream processing engine, embedded in your program.
//!
//! Read events from sources, give them event time, key them, keep state, window and
//! join them, and write the results — on all cores, in batches, with watermarks.
//!
//! ```
//! use sluice::prelude::*;
//!
//! #[derive(Clone, Debug)]
//! struct Order { customer: u32, total: f64, time: i64 }
//!
//! let env = StreamEnvironment::new().parallelism(2);
//! let out = CollectSink::new();
//! let orders = vec![
//!     Order { customer: 1, total: 50.0, time: 1_000 },
//!     Order { customer: 1, total: 150.0, time: 2_000 },
//!     Order { customer: 2, total: 300.0, time: 61_000 },
//! ];
//! env.source(VecSource::new(orders))
//!     .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(seconds(5)).with_timestamp(|o: &Order| o.time))
//!     .filter(|o| o.total > 100.0)
//!     .key_by(|o| o.customer)
//!     .window(Tumbling::of(minutes(1)))
//!     .aggregate(Sum::of(|o: &Order| o.total))
//!     .map(|r| (r.key, r.window.start, r.value as i64))
//!     .sink(out.clone());
//! env.execute()?;
//! assert_eq!(out.sorted_values(), vec![(1, 0, 150), (2, 60_000, 300)]);
//! # Ok::<(), sluice::Error>(())
//! ```
#![deny(missing_docs)]

pub use sluice_api::*;
pub use sluice_connectors as connectors;
/// The embedded event log: topics, producers, consumers, transactions.
pub use sluice_log as log;

/// The runtime's parts, to write operators and sources of your own, or to build a job
/// graph by hand (as the SQL planner does) and run it with [`Job`].
pub mod runtime {
    pub use sluice_runtime::{
        now_millis, Batch, BinaryGate, BuildContext, Control, EdgeId, EdgeKind, JobGraph, Link, MetricsRegistry,
        Operator, OperatorKind, OperatorMetrics, OperatorNode, OperatorSpec, OperatorState, Output, Push,
        RuntimeConfig, SideOutputs, SourceDriver, SourcePoll, SourceReader, Step, StreamSpec, Task, Topology,
        TwoInputNode, TwoInputOperator, TwoInputPush, UnaryGate,
    };

    /// Chain ends that send records to other workers.
    pub mod exchange {
        pub use sluice_runtime::exchange::{
            BatchExchange, BroadcastExchange, ChannelSender, HashExchange, KeyRouter, Partitioner, VecPartitioner,
        };
    }

    /// What operators, sources and sinks write into checkpoints and read back.
    pub mod checkpoint {
        pub use sluice_runtime::checkpoint::{Barrier, BarrierKind, CheckpointId, Committer, StateReader, StateWriter};
    }
}

/// Checkpoint locations: open one, read its checkpoints, ask a running job for a
/// savepoint.
pub mod checkpoint {
    pub use sluice_checkpoint::{request_savepoint, CheckpointStore, LoadedCheckpoint, Storage};
}

/// The file system durable writes go through, and the power-cut simulator that tests
/// crash consistency.
pub mod fs {
    pub use sluice_fs::{create_dir_all_durably, local, write_durably, DirEntry, FileSystem, LocalFs, SimulatedFs};
}

pub mod testing;

/// Everything a job usually needs, in one import.
pub mod prelude {
    pub use sluice_api::window::{Avg, Collect, Count, Max, Min, Reduce, Session, Sliding, Sum, Tumbling};
    pub use sluice_api::{
        days, hours, millis, minutes, seconds, AggregateFunction, CheckpointConfig, CollectSink, Context,
        DeliveryGuarantee, Error, KeyedCoProcessFunction, KeyedProcessFunction, KeyedStateStore, OutputTag, Record,
        ResultKind, Sink, SinkContext, Source, StateDescriptor, StateTtl, Stream, StreamEnvironment, Table, TimeDomain,
        Timestamp, ValueState, VecSource, WatermarkStrategy, Window, WindowResult,
    };
    pub use sluice_connectors::{DeadLetters, JsonLinesSink, JsonLinesSource, StdinSource, StdoutSink};
}
