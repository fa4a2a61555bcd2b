//! The embedded log through its producer and consumer APIs, on one partition.
//!
//! ```text
//! log-bench throughput [--records N] [--value-bytes B] [--sync append|interval]
//! log-bench latency [--rate R] [--seconds S] [--value-bytes B] [--sync append|interval]
//! ```
//!
//! `throughput` produces N records as fast as one thread can (the producer batches them,
//! 256 KiB a batch), then consumes them all with a read-committed consumer. `latency`
//! produces R records a second (the producer appends what it holds every millisecond,
//! as Kafka's `linger.ms = 1`) while a consumer thread follows the partition, and
//! reports how long each record took from the moment it was due to be sent until the
//! consumer had it: p50, p90, p99, p99.9, max. With `append` each batch is synced
//! before it is acknowledged; with `interval` the log syncs every 200 ms. Readers see a
//! batch once it is written, in both.

use clap::{Parser, Subcommand};
use sluice_log::{
    Consumer, ConsumerConfig, Durability, Isolation, Log, LogOptions, Producer, ProducerConfig, ProducerRecord,
    TopicConfig,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
    /// Where the log is written (deleted first).
    #[arg(long, default_value = "target/log-bench", global = true)]
    dir: PathBuf,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100, global = true)]
    value_bytes: usize,
    /// When appends are synced: `append` (each batch) or `interval` (every 200 ms).
    #[arg(long, default_value = "interval", global = true)]
    sync: String,
}

#[derive(Subcommand)]
enum Mode {
    /// Produce, then consume, as fast as possible.
    Throughput {
        /// Records to produce.
        #[arg(long, default_value_t = 10_000_000)]
        records: u64,
    },
    /// Produce at a fixed rate while a consumer follows; latency percentiles.
    Latency {
        /// Records per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// How long to produce.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn open(dir: &Path, sync: &str) -> Log {
    let _ = std::fs::remove_dir_all(dir);
    let durability = match sync {
        "append" => Durability::EveryAppend,
        "interval" => Durability::OnSync,
        other => panic!("--sync {other}: append or interval"),
    };
    let options = LogOptions { durability, ..LogOptions::default() };
    let log = Log::open_with(sluice_fs::local(), dir, options).expect("the log opens");
    log.create_topic("bench", &TopicConfig::default()).expect("topic");
    log
}

fn record(value: &[u8]) -> ProducerRecord<'_> {
    ProducerRecord { topic: "bench", partition: Some(0), key: None, value, headers: &[], timestamp: 0 }
}

fn throughput(args: &Args, records: u64) {
    let log = open(&args.dir, &args.sync);
    let mut producer = Producer::new(&log, ProducerConfig::default()).expect("producer");
    let value = vec![b'v'; args.value_bytes];
    let started = Instant::now();
    for _ in 0..records {
        producer.send(&record(&value)).expect("send");
    }
    producer.flush().expect("flush");
    log.sync().expect("sync");
    let produce = started.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(args.dir.join("topics/bench/0"))
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();

    let started = Instant::now();
    let mut consumer = Consumer::subscribe(&log, &["bench"], &ConsumerConfig::default()).expect("consumer");
    let (mut consumed, mut value_bytes) = (0u64, 0u64);
    while let Some(fetched) = consumer.poll(1 << 20).expect("poll") {
        for record in fetched.records().expect("whole batches") {
            value_bytes += record.value.len() as u64;
            consumed += 1;
        }
    }
    let consume = started.elapsed().as_secs_f64();
    assert_eq!(consumed, records, "every record read back");
    let mb = bytes as f64 / 1e6;
    println!(
        "throughput | {records} records of {} B, sync {} | produce {:.2} M rec/s, {:.0} MB/s | consume {:.2} M rec/s, {:.0} MB/s | {mb:.0} MB on disk, {value_bytes} value bytes read |",
        args.value_bytes,
        args.sync,
        records as f64 / produce / 1e6,
        mb / produce,
        consumed as f64 / consume / 1e6,
        mb / consume,
    );
}

fn latency(args: &Args, rate: u64, seconds: u64) {
    let log = open(&args.dir, &args.sync);
    let total = rate * seconds;
    let started = Instant::now();
    let follower = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut reader = log.reader("bench", 0, Isolation::ReadCommitted).expect("reader");
            let mut latencies = Vec::with_capacity(total as usize);
            while (latencies.len() as u64) < total {
                let (from, bytes) = reader.poll(1 << 20).expect("poll");
                if bytes.is_empty() {
                    // Spinning would take the core the producer and the disk's flushes need.
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                let now = started.elapsed().as_nanos() as u64;
                for record in sluice_log::records_from(&bytes, from).expect("whole batches") {
                    let due = u64::from_le_bytes(record.value[..8].try_into().expect("eight bytes"));
                    latencies.push(now.saturating_sub(due));
                }
            }
            latencies
        })
    };
    let mut producer = Producer::new(&log, ProducerConfig::default()).expect("producer");
    let mut value = vec![b'v'; args.value_bytes.max(8)];
    let mut last_flush = Instant::now();
    for i in 0..total {
        let due = Duration::from_nanos(i * 1_000_000_000 / rate);
        while started.elapsed() < due {
            if last_flush.elapsed() >= Duration::from_millis(1) {
                producer.flush().expect("flush");
                last_flush = Instant::now();
            }
            std::thread::sleep(Duration::from_micros(20));
        }
        value[..8].copy_from_slice(&(due.as_nanos() as u64).to_le_bytes());
        producer.send(&record(&value)).expect("send");
        if last_flush.elapsed() >= Duration::from_millis(1) {
            producer.flush().expect("flush");
            last_flush = Instant::now();
        }
    }
    producer.flush().expect("flush");
    let mut latencies = follower.join().expect("the consumer thread");
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e6;
    println!(
        "latency | {rate} records/s of {} B for {seconds} s, sync {} | p50 {:.2} ms | p90 {:.2} ms | p99 {:.2} ms | p99.9 {:.2} ms | max {:.2} ms |",
        args.value_bytes,
        args.sync,
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        at(1.0)
    );
}

fn main() {
    let args = Args::parse();
    match args.mode {
        Mode::Throughput { records } => throughput(&args, records),
        Mode::Latency { rate, seconds } => latency(&args, rate, seconds),
    }
}
