//! Produce and consume throughput of one partition of the embedded log, on one thread:
//! `log-bench [--records N] [--value-bytes B] [--batch R] [--sync append|interval]`.
//! With `interval`, appends are synced every 100 ms of producing (the interval policy);
//! with `append`, every batch is synced before the next.

use clap::Parser;
use sluice_log::{records_from, BatchBuilder, Durability, Partition, PartitionConfig, ProducerInfo};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Records to produce.
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// When appends are synced: `append` (each batch) or `interval` (every 100 ms).
    #[arg(long, default_value = "interval")]
    sync: String,
    /// Where the partition is written (deleted first).
    #[arg(long, default_value = "target/log-bench")]
    dir: std::path::PathBuf,
}

fn main() {
    let args = Args::parse();
    let _ = std::fs::remove_dir_all(&args.dir);
    let durability = match args.sync.as_str() {
        "append" => Durability::EveryAppend,
        "interval" => Durability::OnSync,
        other => panic!("--sync {other}: append or interval"),
    };
    let config = PartitionConfig { durability, ..PartitionConfig::default() };
    let mut partition = Partition::open(sluice_fs::local(), &args.dir, config).expect("the partition opens");
    let value = vec![b'v'; args.value_bytes];
    let mut builder = BatchBuilder::new();
    let started = Instant::now();
    let mut last_sync = Instant::now();
    let mut produced = 0u64;
    while produced < args.records {
        let count = args.batch.min(args.records - produced);
        for i in produced..produced + count {
            builder.push(i as i64, None, &value, &[]);
        }
        partition.append(&mut builder, 0, ProducerInfo::NONE).expect("append");
        produced += count;
        if last_sync.elapsed() >= Duration::from_millis(100) {
            partition.sync().expect("sync");
            last_sync = Instant::now();
        }
    }
    partition.sync().expect("sync");
    let produce = started.elapsed().as_secs_f64();
    let bytes: u64 =
        std::fs::read_dir(&args.dir).expect("dir").filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();

    let started = Instant::now();
    let (mut offset, mut consumed, mut value_bytes) = (0u64, 0u64, 0u64);
    loop {
        let chunk = partition.read(offset, 1 << 20).expect("read");
        if chunk.is_empty() {
            break;
        }
        for record in records_from(&chunk, offset).expect("whole batches") {
            value_bytes += record.value.len() as u64;
            consumed += 1;
            offset = record.offset + 1;
        }
    }
    let consume = started.elapsed().as_secs_f64();
    assert_eq!(consumed, args.records, "every record read back");
    let mb = bytes as f64 / 1e6;
    println!(
        "| {} records of {} B, batches of {}, sync {} | produce {:.2} M rec/s, {:.0} MB/s | consume {:.2} M rec/s, {:.0} MB/s | {:.0} MB on disk, {} value bytes read |",
        args.records, args.value_bytes, args.batch, args.sync,
        args.records as f64 / produce / 1e6, mb / produce,
        consumed as f64 / consume / 1e6, mb / consume, mb, value_bytes
    );
}
