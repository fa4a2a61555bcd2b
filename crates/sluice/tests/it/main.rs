//! Integration tests of Sluice's typed API, in one test binary.
//!
//! - `model`: a naive single-threaded reference model of windows, joins and a keyed
//!   process function with timers, with the engine's event-time semantics.
//! - `properties`: random inputs with disorder and late data give the same results at
//!   every parallelism and batch size, equal to the model's.
//! - `counters`: operator counters and backpressure time.
//! - `dead_letters`: unreadable input lines go to the dead letters, with the reason.
//! - `api`: one small example per method of the DSL.
//! - `disk_state`: state larger than the memory budget stays on disk.
//! - `checkpoints`: checkpoints, recovery after a cancel, savepoints restored at other
//!   parallelisms, corrupt checkpoints.
//! - `exactly_once`: the holes found in review, each closed: a crash after a savepoint,
//!   commits that fail, a single-file sink restored, power cuts at any write.
//! - `log_jobs`: jobs from the embedded log to the embedded log, exactly-once.

mod api;
mod checkpoints;
mod counters;
mod dead_letters;
mod disk_state;
mod exactly_once;
mod job_graph;
mod log_jobs;
mod model;
mod properties;
