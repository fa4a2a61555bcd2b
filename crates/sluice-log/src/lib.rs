//! Sluice's embedded event log, on the model of Kafka's: a topic is a set of
//! partitions; a partition is a directory of segment files named by the offset of
//! their first record; a segment is a sequence of checksummed record batches, each
//! record with its key, value, headers and event time.
//!
//! This crate is the storage layer: batches (`batch.rs`), segments and their recovery
//! (`segment.rs`), partitions (`partition.rs`) and topics under a data directory
//! (`topic.rs`). Writes go through
//! [`sluice_fs::FileSystem`], so the power-cut tests run it on a simulated disk.

#![deny(missing_docs)]

pub mod batch;
pub mod compaction;
pub mod consumer;
#[doc(hidden)]
pub mod fuzzing;
pub mod partition;
pub mod producer;
mod producers;
pub mod reader;
pub mod segment;
pub mod topic;
pub mod transaction;

pub use batch::{Batch, BatchBuilder, Invalid, ProducerInfo, Record};
pub use consumer::{Consumer, ConsumerConfig, Fetched, OffsetReset};
pub use partition::{Durability, Partition, PartitionConfig};
pub use producer::{Producer, ProducerConfig, ProducerRecord};
pub use reader::{Isolation, PartitionReader};
pub use topic::{partition_compact, partition_for_key, Log, LogOptions, SharedPartition, TopicConfig};
pub use transaction::PreparedTransaction;

/// Every record of `bytes`, whole batches as [`Partition::read`] returns them, from
/// offset `from` on.
pub fn records_from(bytes: &[u8], from: u64) -> Result<Vec<Record<'_>>, Invalid> {
    let mut records = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (batch, after) = Batch::parse(rest)?;
        records.extend(batch.records()?.into_iter().filter(|record| record.offset >= from));
        rest = after;
    }
    Ok(records)
}
