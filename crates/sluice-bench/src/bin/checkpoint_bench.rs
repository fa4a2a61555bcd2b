//! `checkpoint-bench`: what checkpoints cost.
//!
//! - `overhead`: Nexmark q5 throughput with checkpoints every second against none, in
//!   fresh `nexmark-job` processes, interleaved, median of `--runs`.
//! - `state`: a job holding `--mb` of keyed state (one value per key) takes a
//!   savepoint and is restored from it; prints the checkpoint's duration, the longest
//!   time an operator stopped processing for it, its size, and the restore time.
//! - `growth`: on-disk state under a steady load of updates to random keys, with
//!   checkpoints every second: how many bytes each checkpoint writes.

use clap::{Parser, Subcommand};
use sluice::prelude::*;
use sluice::runtime::checkpoint::{StateReader, StateWriter};
use sluice::runtime::{SourcePoll, SourceReader};
use sluice::{DiskBackend, KeyedStateStore, StateBackendKind};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "checkpoint-bench", version)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// q5 throughput with checkpoints every second against none.
    Overhead {
        /// Events per run.
        #[arg(long, default_value_t = 30_000_000)]
        events: u64,
        /// Workers.
        #[arg(long, default_value_t = 2)]
        parallelism: usize,
        /// Runs of each variant.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Checkpoint interval.
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Scratch directory.
        #[arg(long, default_value = "target/checkpoint-bench")]
        work: std::path::PathBuf,
    },
    /// Checkpoint and restore times of a job holding `--mb` of keyed state.
    State {
        /// Megabytes of encoded state to hold.
        #[arg(long, default_value_t = 1024)]
        mb: u64,
        /// Bytes of each value.
        #[arg(long, default_value_t = 100)]
        value_bytes: usize,
        /// Workers.
        #[arg(long, default_value_t = 2)]
        parallelism: usize,
        /// The state backend: heap or disk.
        #[arg(long, default_value = "heap")]
        backend: String,
        /// The on-disk backend's memory budget, in MiB.
        #[arg(long, default_value_t = 256)]
        state_memory: u64,
        /// Scratch directory.
        #[arg(long, default_value = "target/checkpoint-bench")]
        work: std::path::PathBuf,
    },
    /// Bytes written per checkpoint of on-disk state under steady updates.
    Growth {
        /// Keys in the state.
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Updates per second, after the keys are loaded.
        #[arg(long, default_value_t = 100_000)]
        updates_per_second: u64,
        /// Seconds of updates.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Scratch directory.
        #[arg(long, default_value = "target/checkpoint-bench")]
        work: std::path::PathBuf,
    },
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `nexmark-job` once; returns events per second.
fn q5_run(
    events: u64,
    parallelism: usize,
    checkpoints: Option<(&std::path::Path, &str)>,
    work: &std::path::Path,
) -> f64 {
    let exe = std::env::current_exe().expect("own path").with_file_name("nexmark-job");
    let output = work.join("q5-output");
    let _ = std::fs::remove_dir_all(&output);
    let mut command = Command::new(exe);
    command.args(["--query", "q5", "--events", &events.to_string(), "--parallelism", &parallelism.to_string()]);
    command.arg("--output").arg(&output);
    if let Some((dir, interval)) = checkpoints {
        let _ = std::fs::remove_dir_all(dir);
        command.arg("--checkpoints").arg(dir).args(["--checkpoint-interval", interval]);
    }
    let started = Instant::now();
    let out = command.output().expect("nexmark-job runs (build it: cargo build --release -p sluice-bench)");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "nexmark-job failed: {}", String::from_utf8_lossy(&out.stderr));
    let completed = String::from_utf8_lossy(&out.stderr).matches("complete:").count();
    if checkpoints.is_some() {
        eprintln!("  {completed} checkpoints in {elapsed:.2} s");
    }
    events as f64 / elapsed
}

fn overhead(events: u64, parallelism: usize, runs: usize, interval: &str, work: &std::path::Path) {
    std::fs::create_dir_all(work).expect("scratch directory");
    let checkpoints = work.join("q5-checkpoints");
    let (mut plain, mut checkpointed) = (Vec::new(), Vec::new());
    for run in 0..runs {
        plain.push(q5_run(events, parallelism, None, work));
        checkpointed.push(q5_run(events, parallelism, Some((&checkpoints, interval)), work));
        eprintln!(
            "run {run}: {:.2} M/s without, {:.2} M/s with checkpoints",
            plain[run] / 1e6,
            checkpointed[run] / 1e6
        );
    }
    let (plain, checkpointed) = (median(plain), median(checkpointed));
    println!(
        "| q5, {events} events, {parallelism} workers | without checkpoints | checkpoints every {interval} | ratio |"
    );
    println!("|---|---|---|---|");
    println!(
        "| events/s (median of {runs}, wall clock of the process) | {:.2} M | {:.2} M | {:.1} % |",
        plain / 1e6,
        checkpointed / 1e6,
        100.0 * checkpointed / plain
    );
}

/// Emits keys 0..keys, each once with a value, then `updates_per_second` updates of
/// random keys until told to finish.
struct KeyFill {
    keys: u64,
    value_bytes: usize,
    updates_per_second: u64,
    finish: Arc<AtomicBool>,
}

struct KeyFillReader {
    next: u64,
    step: u64,
    keys: u64,
    value: String,
    updates_per_second: f64,
    updating_since: Option<Instant>,
    updated: u64,
    random: u64,
    finish: Arc<AtomicBool>,
}

impl Source for KeyFill {
    type Item = (u64, String);
    type Reader = KeyFillReader;
    fn name(&self) -> String {
        "key-fill".into()
    }
    fn reader(&self, worker: usize, parallelism: usize) -> sluice::Result<KeyFillReader> {
        Ok(KeyFillReader {
            next: worker as u64,
            step: parallelism as u64,
            keys: self.keys,
            value: "v".repeat(self.value_bytes),
            updates_per_second: self.updates_per_second as f64 / parallelism as f64,
            updating_since: None,
            updated: 0,
            random: 0x9e37_79b9_7f4a_7c15 ^ worker as u64,
            finish: self.finish.clone(),
        })
    }
    fn restore_reader(&self, worker: usize, parallelism: usize, state: &StateReader) -> sluice::Result<KeyFillReader> {
        let mut reader = self.reader(worker, parallelism)?;
        if let Some(&(next, step)) = state.items::<(u64, u64)>()?.first() {
            (reader.next, reader.step) = (next, step);
        } else {
            reader.next = self.keys;
        }
        Ok(reader)
    }
}

impl SourceReader for KeyFillReader {
    type Batch = Vec<Record<(u64, String)>>;
    fn poll(&mut self, max_records: usize) -> sluice::Result<SourcePoll<Self::Batch>> {
        if self.finish.load(Ordering::Relaxed) && self.next >= self.keys {
            return Ok(SourcePoll::Finished);
        }
        if self.next >= self.keys {
            let since = *self.updating_since.get_or_insert_with(Instant::now);
            let due = (since.elapsed().as_secs_f64() * self.updates_per_second) as u64;
            let count = due.saturating_sub(self.updated).min(max_records as u64);
            if count == 0 {
                return Ok(SourcePoll::Idle);
            }
            let mut batch = Vec::with_capacity(count as usize);
            for _ in 0..count {
                self.random ^= self.random << 13;
                self.random ^= self.random >> 7;
                self.random ^= self.random << 17;
                batch.push(Record::new(0, (self.random % self.keys, self.value.clone())));
            }
            self.updated += count;
            return Ok(SourcePoll::Batch(batch));
        }
        let mut batch = Vec::with_capacity(max_records);
        while batch.len() < max_records && self.next < self.keys {
            batch.push(Record::new(0, (self.next, self.value.clone())));
            self.next += self.step;
        }
        Ok(SourcePoll::Batch(batch))
    }
    fn position(&self) -> u64 {
        self.next
    }
    fn snapshot(&self, state: &mut StateWriter) -> sluice::Result<()> {
        state.item(&(self.next, self.step))
    }
}

/// Keeps the latest value of each key.
#[derive(Clone, Default)]
struct Keep {
    value: ValueState<String>,
}

impl KeyedProcessFunction for Keep {
    type Key = u64;
    type In = (u64, String);
    type Out = u64;
    fn open(&mut self, state: &mut KeyedStateStore<u64>) {
        self.value = state.value(&StateDescriptor::new("value"));
    }
    fn process_element(&mut self, (_, value): (u64, String), ctx: &mut Context<'_, u64, u64>) {
        ctx.set_value(self.value, value);
    }
}

/// The job of the state benchmarks: keyed values on `backend`.
struct StateJob {
    keys: u64,
    value_bytes: usize,
    updates_per_second: u64,
    parallelism: usize,
    backend: StateBackendKind,
}

fn state_job(job: &StateJob, config: CheckpointConfig) -> (StreamEnvironment, Arc<AtomicBool>) {
    let finish = Arc::new(AtomicBool::new(false));
    let env =
        StreamEnvironment::new().parallelism(job.parallelism).state_backend(job.backend.clone()).checkpointing(config);
    let fill = KeyFill {
        keys: job.keys,
        value_bytes: job.value_bytes,
        updates_per_second: job.updates_per_second,
        finish: finish.clone(),
    };
    env.source(fill).key_by(|(key, _)| *key).process(Keep::default()).sink(CollectSink::new());
    (env, finish)
}

fn backend(name: &str, memory_mib: u64, work: &std::path::Path) -> StateBackendKind {
    match name {
        "heap" => StateBackendKind::Heap,
        "disk" => StateBackendKind::OnDisk(DiskBackend::new(work.join("state")).memory_budget(memory_mib << 20)),
        other => panic!("unknown backend {other}: heap or disk"),
    }
}

/// The highest resident memory of this process since the last call, sampled every
/// 20 ms by a thread of its own.
struct PeakMemory(Arc<std::sync::atomic::AtomicU64>);

impl PeakMemory {
    fn start() -> Self {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampled = peak.clone();
        std::thread::spawn(move || loop {
            // The second field of statm is the resident set, in pages of 4 KiB.
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
            let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            sampled.fetch_max(pages * 4096, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(20));
        });
        PeakMemory(peak)
    }

    /// The peak in MB since the last call.
    fn take(&self) -> f64 {
        self.0.swap(0, Ordering::Relaxed) as f64 / 1e6
    }
}

fn state(mb: u64, value_bytes: usize, parallelism: usize, backend_name: &str, memory_mib: u64, work: &std::path::Path) {
    let memory = PeakMemory::start();
    // Each entry is encoded as its key, the state's name, the value and its write time.
    let keys = mb * 1_000_000 / (value_bytes as u64 + 24);
    let location = work.join("state-checkpoints");
    let _ = std::fs::remove_dir_all(&location);
    let config = CheckpointConfig::new(location.to_str().expect("utf-8 path"), Duration::from_secs(3600));
    let backend = backend(backend_name, memory_mib, work);
    let job = StateJob { keys, value_bytes, updates_per_second: 0, parallelism, backend };
    let (env, finish) = state_job(&job, config.clone());
    let started = Instant::now();
    let handle = env.start().expect("the job starts");
    while handle.snapshot().source_records() < keys {
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{keys} keys loaded in {:.1} s", started.elapsed().as_secs_f64());
    let loading = memory.take();
    let savepoint = handle.savepoint().expect("savepoint");
    let saving = memory.take();
    let stats = handle.checkpoint_stats().expect("stats");
    finish.store(true, Ordering::Relaxed);
    handle.cancel();
    let _ = handle.join();
    let _ = memory.take();

    let mut restore = config;
    restore.restore = Some(savepoint.clone());
    let (env, finish) = state_job(&job, restore);
    let started = Instant::now();
    let handle = env.start().expect("the job restores");
    let restore_time = started.elapsed();
    let restoring = memory.take();
    finish.store(true, Ordering::Relaxed);
    let _ = handle.join();
    println!("| {backend_name} state, {keys} keys, {parallelism} workers | value |");
    println!("|---|---|");
    println!("| checkpoint size | {:.0} MB |", stats.latest_size as f64 / 1e6);
    println!("| checkpoint duration (trigger to manifest written) | {:.2} s |", stats.latest_duration.as_secs_f64());
    println!("| longest stop of an operator to snapshot | {:.2} s |", stats.latest_sync.as_secs_f64());
    println!("| restore (read, verify, decode, rebuild the state) | {:.2} s |", restore_time.as_secs_f64());
    println!(
        "| peak resident memory: loading, savepoint, restore | {loading:.0} MB, {saving:.0} MB, {restoring:.0} MB |"
    );
}

fn growth(keys: u64, updates_per_second: u64, seconds: u64, work: &std::path::Path) {
    let location = work.join("growth-checkpoints");
    let _ = std::fs::remove_dir_all(&location);
    let config = CheckpointConfig::new(location.to_str().expect("utf-8 path"), Duration::from_secs(1));
    let job =
        StateJob { keys, value_bytes: 100, updates_per_second, parallelism: 2, backend: backend("disk", 256, work) };
    let (env, finish) = state_job(&job, config);
    let handle = env.start().expect("the job starts");
    while handle.snapshot().source_records() < keys {
        std::thread::sleep(Duration::from_millis(20));
    }
    let loaded = Instant::now();
    let mut sizes: Vec<(u64, u64, f64)> = Vec::new();
    while loaded.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(20));
        let stats = handle.checkpoint_stats().expect("stats");
        if let Some(id) = stats.latest.filter(|id| sizes.last().is_none_or(|(last, _, _)| last != id)) {
            sizes.push((id, stats.latest_size, stats.latest_sync.as_secs_f64()));
        }
    }
    finish.store(true, Ordering::Relaxed);
    let _ = handle.join();
    println!("| checkpoint | bytes written | longest operator stop |");
    println!("|---|---|---|");
    for (id, size, sync) in sizes {
        println!("| {id} | {:.1} MB | {:.0} ms |", size as f64 / 1e6, sync * 1e3);
    }
}

fn main() {
    sluice_examples::init_logging();
    match Args::parse().bench {
        Bench::Overhead { events, parallelism, runs, interval, work } => {
            overhead(events, parallelism, runs, &interval, &work)
        }
        Bench::State { mb, value_bytes, parallelism, backend, state_memory, work } => {
            state(mb, value_bytes, parallelism, &backend, state_memory, &work)
        }
        Bench::Growth { keys, updates_per_second, seconds, work } => growth(keys, updates_per_second, seconds, &work),
    }
}
