//! Both examples as one pipeline on the embedded log: what `sluice pipeline` runs.
//!
//! ```text
//!  generated ──> transactions ──> fraud detection ──> fraud-alerts
//!  input     ──> orders ───────┐
//!            ──> customers ────┴> order analytics ──> enriched-orders, hourly-revenue
//! ```
//!
//! Each run produces the next stretch of generated events into the input topics (in
//! one transaction: a run killed while producing leaves nothing half written), then
//! runs both jobs at once, each reading what its topics hold now and writing its topics
//! exactly-once, with checkpoints under the data directory. Once a job has read its
//! topics to their end and a checkpoint covers it, it is stopped, not drained: windows
//! still open stay open. Run again, it produces the events that follow in event time
//! and the jobs resume from their checkpoints, reading only what is new.

use crate::fraud::{self, detect_in_event_time, Transaction};
use crate::generate::{self, SampleConfig, DEFAULT_START_TIME, MAX_DELAY};
use crate::orders::{analyze_in_event_time, customer_watermarks, order_watermarks, Customer, Order};
use serde::{Deserialize, Serialize};
use sluice::connectors::{DeadLetters, EndReached, LogSink, LogSource};
use sluice::log::{Log, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use sluice::{CheckpointConfig, Error, Result, StreamEnvironment};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The topics of the pipeline: name, partitions, compacted.
pub const TOPICS: [(&str, u32, bool); 6] = [
    ("transactions", 3, false),
    ("orders", 3, false),
    ("customers", 1, true),
    ("fraud-alerts", 1, false),
    ("enriched-orders", 3, false),
    ("hourly-revenue", 1, false),
];

/// How the pipeline runs.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// The log's directory; checkpoints and dead letters go under it too.
    pub data_dir: PathBuf,
    /// Transactions generated per run.
    pub transactions: usize,
    /// Orders generated per run.
    pub orders: usize,
    /// Workers per job [default: one per core].
    pub parallelism: Option<usize>,
    /// Time between two checkpoints of each job.
    pub checkpoint_interval: Duration,
}

/// What one run produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Produced {
    /// The run's number, from 1.
    pub run: u64,
    /// Lines produced into each input topic: transactions, orders, customers.
    pub lines: [usize; 3],
}

/// Where the next run starts, kept in `<data dir>/pipeline.json`.
#[derive(Default, Serialize, Deserialize)]
struct RunState {
    runs: u64,
    next_start_time: i64,
}

fn io(path: &Path, error: std::io::Error) -> Error {
    Error::io(path.display().to_string(), error)
}

fn log_error(what: &str, error: std::io::Error) -> Error {
    Error::io(format!("the log: {what}"), error)
}

/// Opens the log under the options' data directory and creates the topics it lacks.
pub fn open_log(options: &PipelineOptions) -> Result<Log> {
    let log = Log::open(sluice::fs::local(), &options.data_dir).map_err(|e| io(&options.data_dir, e))?;
    for (name, partitions, compact) in TOPICS {
        if log.describe(name).is_err() {
            let config = TopicConfig { partitions, compact, ..TopicConfig::default() };
            log.create_topic(name, &config).map_err(|e| log_error(name, e))?;
        }
    }
    Ok(log)
}

/// The key and event time of a generated line (none for a line that does not parse:
/// it is produced as it is, and the job sends it to its dead letters).
fn key_and_time(line: &str, key_field: &str) -> (Option<Vec<u8>>, i64) {
    let value: Option<serde_json::Value> = serde_json::from_str(line).ok();
    let key = value.as_ref().and_then(|v| v.get(key_field)).map(|k| k.to_string().into_bytes());
    let time = value.as_ref().and_then(|v| v.get("time")).and_then(serde_json::Value::as_i64).unwrap_or(0);
    (key, time)
}

/// Produces the next run's generated input into the input topics, in one transaction.
pub fn produce_inputs(log: &Log, options: &PipelineOptions) -> Result<Produced> {
    let state_path = options.data_dir.join("pipeline.json");
    let state: RunState = match std::fs::read(&state_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::checkpoint(state_path.display().to_string(), e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RunState { runs: 0, next_start_time: DEFAULT_START_TIME },
        Err(e) => return Err(io(&state_path, e)),
    };
    let run = state.runs + 1;
    let config = SampleConfig {
        seed: 42 + run,
        start_time: state.next_start_time,
        transactions: options.transactions,
        orders: options.orders,
        ..SampleConfig::default()
    };
    let inputs = [
        ("transactions", "account", generate::transactions(&config)),
        ("orders", "customer_id", generate::orders(&config)),
        ("customers", "customer_id", generate::customers(&config)),
    ];
    let producer_config =
        ProducerConfig { transactional_id: Some("pipeline-input".to_string()), ..ProducerConfig::default() };
    let mut producer = Producer::new(log, producer_config).map_err(|e| log_error("the input producer", e))?;
    producer.begin().map_err(|e| log_error("begin", e))?;
    let mut last_time = state.next_start_time;
    let mut lines = [0; 3];
    for (i, (topic, key_field, generated)) in inputs.iter().enumerate() {
        for line in &generated.lines {
            let (key, time) = key_and_time(line, key_field);
            last_time = last_time.max(time);
            let record = ProducerRecord {
                topic,
                partition: None,
                key: key.as_deref(),
                value: line.as_bytes(),
                headers: &[],
                timestamp: time,
            };
            producer.send(&record).map_err(|e| log_error(topic, e))?;
        }
        lines[i] = generated.lines.len();
    }
    producer.commit().map_err(|e| log_error("commit", e))?;
    // The next run's events follow these, past their latest delay, an hour on.
    let next = RunState { runs: run, next_start_time: last_time + MAX_DELAY + 3_600_000 };
    let bytes = serde_json::to_vec_pretty(&next).map_err(|e| Error::invalid_job(e.to_string()))?;
    sluice::fs::write_durably(sluice::fs::local().as_ref(), &state_path, &bytes).map_err(|e| io(&state_path, e))?;
    Ok(Produced { run, lines })
}

fn environment(options: &PipelineOptions, job: &str) -> StreamEnvironment {
    let mut env = StreamEnvironment::new();
    if let Some(parallelism) = options.parallelism {
        env = env.parallelism(parallelism);
    }
    let checkpoints = options.data_dir.join("checkpoints").join(job);
    env.checkpointing(CheckpointConfig::new(checkpoints.display().to_string(), options.checkpoint_interval))
}

fn dead_letters(options: &PipelineOptions, input: &str) -> Result<DeadLetters> {
    let dir = options.data_dir.join("dead-letters");
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    DeadLetters::file(dir.join(format!("{input}.jsonl")))
}

/// A job of the pipeline, and whether its sources have read their topics to the end
/// they had when it was built: then, once a checkpoint covers what they read, it is
/// stopped, to resume from that checkpoint in the next run.
pub struct PipelineJob {
    /// The job.
    pub env: StreamEnvironment,
    /// One per source.
    pub ends: Vec<EndReached>,
}

impl PipelineJob {
    /// Whether every source is at its end.
    pub fn at_end(&self) -> bool {
        self.ends.iter().all(EndReached::reached)
    }
}

/// Fraud detection from `transactions` to `fraud-alerts`, up to what the topic holds now.
pub fn fraud_job(log: &Log, options: &PipelineOptions) -> Result<PipelineJob> {
    let env = environment(options, "fraud-detection");
    // Watermarks per partition: the partitions are read in turn, and a watermark
    // generated after mixing them would make the others' transactions late.
    let (transactions, end) =
        LogSource::<Transaction>::new(log, "transactions")?.with_watermarks(fraud::watermarks()).pause_at_end()?;
    let transactions = transactions.dead_letters(dead_letters(options, "transactions")?);
    let detection = detect_in_event_time(&env.source(transactions));
    let sink =
        LogSink::new(log, "fraud-alerts")?.key_by(|alert: &crate::fraud::Alert| alert.account.to_string().into_bytes());
    detection.alerts.sink(sink);
    Ok(PipelineJob { env, ends: vec![end] })
}

/// Order analytics from `orders` and `customers` to `enriched-orders` and
/// `hourly-revenue`, up to what the topics hold now.
pub fn orders_job(log: &Log, options: &PipelineOptions) -> Result<PipelineJob> {
    let env = environment(options, "order-analytics");
    let (orders, orders_end) =
        LogSource::<Order>::new(log, "orders")?.with_watermarks(order_watermarks()).pause_at_end()?;
    let orders = orders.dead_letters(dead_letters(options, "orders")?);
    let (customers, customers_end) =
        LogSource::<Customer>::new(log, "customers")?.with_watermarks(customer_watermarks()).pause_at_end()?;
    let customers = customers.dead_letters(dead_letters(options, "customers")?);
    let analytics = analyze_in_event_time(&env.source(orders), &env.source(customers));
    let enriched = LogSink::new(log, "enriched-orders")?
        .key_by(|order: &crate::orders::EnrichedOrder| order.customer_id.to_string().into_bytes());
    analytics.enriched.sink(enriched);
    analytics.revenue.sink(LogSink::new(log, "hourly-revenue")?);
    Ok(PipelineJob { env, ends: vec![orders_end, customers_end] })
}
