//! Checkpoints of Sluice jobs: the coordinator that triggers and completes them, their
//! storage (a local directory or object storage), and how a job finds the checkpoint
//! to restore.
//!
//! The protocol inside the job (barriers, alignment, snapshots) lives in
//! `sluice_runtime::checkpoint`; this crate is the part outside the workers. A
//! checkpoint location holds one directory per checkpoint, `chk-<id>/`, with a state
//! file per participant and a `manifest.json` written last; savepoints go to
//! `savepoints/sp-<id>/` with the same layout.
#![deny(missing_docs)]

mod config;
pub mod coordinator;
pub mod manifest;
pub use manifest::ChainFile;
mod request;
mod state_file;
mod storage;
mod store;

pub use config::{parse_duration, CheckpointConfig, DeliveryGuarantee};
pub use coordinator::{CheckpointStats, Command, CoordinatorSetup};
pub use request::{request_savepoint, SavepointReply, SavepointRequest};
pub use storage::{ObjectWriter, Storage};
pub use store::{CheckpointStore, LoadedCheckpoint};
