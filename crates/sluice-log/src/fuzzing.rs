//! Harnesses for the fuzz targets (`fuzz/`, run by `scripts/fuzz.sh`) and the property
//! tests: garbage or truncated files must give errors, never panics. On a simulated
//! disk, so that they touch no real files.

use crate::batch::{BatchBuilder, ProducerInfo};
use crate::partition::{Partition, PartitionConfig};
use crate::reader::{Isolation, PartitionReader};
use crate::{producers, segment};
use sluice_fs::{FileSystem, SimulatedFs};
use std::path::Path;
use std::sync::Arc;

const DIR: &str = "partition";

fn disk() -> Arc<dyn FileSystem> {
    let fs: Arc<dyn FileSystem> = Arc::new(SimulatedFs::new());
    sluice_fs::create_dir_all_durably(fs.as_ref(), Path::new(DIR)).expect("a directory on the simulated disk");
    fs
}

/// Reads everything a reader with `isolation` sees, stopping at the first error.
fn read_all(fs: &Arc<dyn FileSystem>, isolation: Isolation) {
    let Ok(mut reader) = PartitionReader::with_isolation(fs.clone(), Path::new(DIR), isolation) else { return };
    for _ in 0..10_000 {
        match reader.poll(1 << 16) {
            Ok((_, bytes)) if bytes.is_empty() => break,
            Ok((from, bytes)) => {
                let _ = crate::records_from(&bytes, from);
            }
            Err(_) => break,
        }
    }
    let _ = reader.seek_to_time(0);
    let _ = reader.end_offset();
}

/// Opens a partition to write and reads it back, stopping at the first error.
fn open_and_use(fs: &Arc<dyn FileSystem>) {
    let Ok(mut partition) = Partition::open(fs.clone(), Path::new(DIR), PartitionConfig::default()) else { return };
    let mut offset = partition.start_offset();
    for _ in 0..10_000 {
        match partition.read(offset, 1 << 16) {
            Ok(bytes) if !bytes.is_empty() => match crate::records_from(&bytes, offset) {
                Ok(records) if !records.is_empty() => offset = records[records.len() - 1].offset + 1,
                _ => break,
            },
            _ => break,
        }
    }
    let _ = partition.offset_for_time(0);
    let _ = partition.compact(0);
    let mut batch = BatchBuilder::new();
    batch.push(1, Some(b"key"), b"value", &[]);
    let _ = partition.append(&mut batch, 0, ProducerInfo { id: 1, epoch: 0, base_sequence: 0 });
}

/// `bytes` as the only segment of a partition: read by readers, then opened to write.
pub fn open_and_read_segment(bytes: &[u8]) {
    let fs = disk();
    let path = Path::new(DIR).join(segment::file_name(0));
    sluice_fs::write_durably(fs.as_ref(), &path, bytes).expect("the simulated disk takes it");
    read_all(&fs, Isolation::ReadCommitted);
    read_all(&fs, Isolation::ReadUncommitted);
    open_and_use(&fs);
    read_all(&fs, Isolation::ReadCommitted);
}

/// A valid partition of several segments whose first sealed segment's index and newest
/// producer snapshot are replaced by `bytes`, then opened and read.
pub fn open_with_index(bytes: &[u8]) {
    let fs = disk();
    let config = PartitionConfig {
        segment_bytes: 512,
        compact: bytes.first().is_some_and(|b| b % 2 == 0),
        ..PartitionConfig::default()
    };
    let newest = {
        let mut partition = Partition::open(fs.clone(), Path::new(DIR), config).expect("a new partition");
        for i in 0..40u8 {
            let mut batch = BatchBuilder::new();
            batch.push(i64::from(i) * 100, Some(&[i % 5]), &[i; 40], &[]);
            let producer = ProducerInfo { id: 9, epoch: 0, base_sequence: i32::from(i) };
            partition.append(&mut batch, 0, producer).expect("an append on the simulated disk");
        }
        partition.next_offset()
    };
    let (index, snapshot) = bytes.split_at(bytes.len() / 2);
    let dir = Path::new(DIR);
    let _ = sluice_fs::write_durably(fs.as_ref(), &dir.join(segment::index_file_name(0)), index);
    let bases: Vec<u64> = fs
        .list(dir)
        .map(|entries| entries.iter().filter_map(|e| segment::parse_file_name(&e.name)).collect())
        .unwrap_or_default();
    if let Some(last) = bases.iter().max() {
        let _ = sluice_fs::write_durably(fs.as_ref(), &dir.join(producers::snapshot_name(*last)), snapshot);
    }
    debug_assert!(newest > 0);
    read_all(&fs, Isolation::ReadCommitted);
    open_and_use(&fs);
}
