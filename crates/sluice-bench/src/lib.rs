//! The Nexmark benchmark: each query written with Sluice's typed API, and the same
//! query as a hand-written single-threaded loop (the practical limit), which also
//! serves as the oracle the engine's results are checked against.

pub mod baseline;
pub mod data;
pub mod queries;
pub mod results;

pub use queries::Query;
