//! Sluice's typed stream API.
//!
//! A job is described with a [`StreamEnvironment`]: sources produce [`Stream`]s, which
//! are transformed (`map`, `filter`, `flat_map`, `union`, `split`), given event time
//! ([`WatermarkStrategy`]), partitioned by key ([`KeyedStream`]) and processed with
//! state, timers and windows, then written to [`Sink`]s. `execute` instantiates the
//! graph once per worker on the runtime and runs it.
//!
//! ```
//! use sluice_api::{StreamEnvironment, CollectSink, VecSource};
//! let env = StreamEnvironment::new().parallelism(2);
//! let out = CollectSink::new();
//! env.source(VecSource::new(vec![1, 2, 3, 4]))
//!     .filter(|n| n % 2 == 0)
//!     .map(|n| n * 10)
//!     .sink(out.clone());
//! env.execute().unwrap();
//! assert_eq!(out.sorted_values(), vec![20, 40]);
//! ```
#![deny(missing_docs)]

mod basic;
mod coprocess;
mod env;
mod graph;
mod join;
mod keyed;
mod memory;
mod process;
mod sink;
mod source;
mod stream;
mod throttle;
mod watermark;
pub mod window;

pub use coprocess::{CoContext, KeyedCoProcessFunction};
pub use env::StreamEnvironment;
pub use join::interval::IntervalJoin;
pub use join::table::Table;
pub use keyed::{ConnectedStreams, KeyedStream};
pub use memory::{CollectSink, VecSource};
pub use process::{Context, KeyedProcessFunction, OutputTag, TimeDomain};
pub use sink::{BatchWriter, Sink, SinkContext, SinkNode, SinkWriter, FINAL_CHECKPOINT};
pub use sluice_checkpoint::{parse_duration, CheckpointConfig, CheckpointStats, DeliveryGuarantee};
pub use sluice_job::{Job, JobControl, JobHandle, JobResult};
pub use sluice_state::KeyedStateStore;
pub use source::Source;
pub use stream::Stream;
pub use throttle::{Throttled, ThrottledReader};
pub use watermark::{KeepTimestamp, SplitWatermarks, TimestampAssigner, WatermarkStrategy};
pub use window::{AggregateFunction, ResultKind, Window, WindowResult, WindowedStream};

pub use sluice_runtime::{JobSnapshot, OperatorKind, OperatorSnapshot, RuntimeConfig};
pub use sluice_state::{
    DiskBackend, ListState, MapState, StateBackendKind, StateDescriptor, StateTtl, TtlClock, TtlUpdate, ValueState,
};
pub use sluice_types::{
    days, hash_key, hours, millis, minutes, seconds, Error, ErrorDomain, Key, Record, Result, Timestamp, MAX_TIMESTAMP,
    MIN_TIMESTAMP,
};
