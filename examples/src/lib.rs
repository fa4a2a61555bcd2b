//! The classic stream processing examples, written with Sluice.
//!
//! - [`fraud`]: alerts on card transactions, per account, in event time: an amount
//!   spike against the previous transaction, and too many transactions in a minute. A
//!   [`KeyedProcessFunction`](sluice::KeyedProcessFunction) with keyed state, a time to
//!   live and event-time timers.
//! - [`orders`]: large orders enriched with the customer as of the order's time (a
//!   stream-table join), and hourly revenue per category (tumbling windows).
//! - [`generate`]: deterministic sample input for both, with a few bad lines so the
//!   dead-letter output has something to show.
//! - [`pipeline`]: both on the embedded log, from input topics to output topics,
//!   exactly-once: what `sluice pipeline` runs.
//!
//! Each example is a library module, so tests can run its pipeline on in-memory input,
//! plus a binary that runs it on JSON lines files (see `README.md`).
#![deny(missing_docs)]

pub mod fraud;
pub mod generate;
pub mod orders;
pub mod pipeline;

use serde::Serialize;
use sluice::connectors::{DeadLetters, JsonLinesSink};
use sluice::{
    CheckpointConfig, DeliveryGuarantee, DiskBackend, JobResult, Source, StateBackendKind, Stream, StreamEnvironment,
    Throttled,
};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How an example job runs: workers, checkpoints, input pace. The binaries take these
/// as command-line options.
#[derive(clap::Args, Clone, Debug)]
pub struct JobOptions {
    /// Number of workers [default: one per core].
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Take checkpoints into this directory (or object storage URL). Started again with
    /// the same one, the job resumes from its latest complete checkpoint.
    #[arg(long, value_name = "DIR")]
    pub checkpoints: Option<String>,
    /// Time between two checkpoints (200ms, 1s, 5m, ...).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = sluice::parse_duration)]
    pub checkpoint_interval: Duration,
    /// Restore from this checkpoint or savepoint directory instead of the latest
    /// checkpoint; needs --checkpoints.
    #[arg(long, value_name = "DIR", requires = "checkpoints")]
    pub restore: Option<String>,
    /// What the output promises after a crash: exactly-once, at-least-once or
    /// at-most-once. Exactly-once output must go to a directory.
    #[arg(long, value_name = "GUARANTEE", default_value = "exactly-once")]
    pub delivery: DeliveryGuarantee,
    /// Read each input at no more than this many records per second.
    #[arg(long, value_name = "RECORDS")]
    pub rate: Option<u64>,
    /// Keep keyed state on disk, in a working directory made under DIR, instead of on
    /// the heap: for state larger than memory.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Memory for the on-disk state's cache and write buffers, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256, requires = "state_dir")]
    pub state_memory: u64,
    /// Print the job's operators and the streams between them, and exit without
    /// running it.
    #[arg(long)]
    pub explain: bool,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            parallelism: None,
            checkpoints: None,
            checkpoint_interval: Duration::from_secs(1),
            restore: None,
            delivery: DeliveryGuarantee::ExactlyOnce,
            rate: None,
            state_dir: None,
            state_memory: 256,
            explain: false,
        }
    }
}

impl JobOptions {
    /// One worker per core.
    pub fn with_parallelism(parallelism: usize) -> Self {
        JobOptions { parallelism: Some(parallelism), ..JobOptions::default() }
    }

    /// The environment these options describe.
    pub fn environment(&self) -> StreamEnvironment {
        let mut env = StreamEnvironment::new();
        if let Some(parallelism) = self.parallelism {
            env = env.parallelism(parallelism);
        }
        if let Some(dir) = &self.state_dir {
            let backend = DiskBackend::new(dir).memory_budget(self.state_memory << 20);
            env = env.state_backend(StateBackendKind::OnDisk(backend));
        }
        if let Some(location) = &self.checkpoints {
            let mut config = CheckpointConfig::new(location.clone(), self.checkpoint_interval);
            config.guarantee = self.delivery;
            config.restore = self.restore.clone();
            env = env.checkpointing(config);
        }
        env
    }

    /// A stream read from `source`, at the pace these options set.
    pub fn source<S: Source>(&self, env: &StreamEnvironment, source: S) -> Stream<S::Item> {
        match self.rate {
            Some(rate) => env.source(Throttled::new(source, rate)),
            None => env.source(source),
        }
    }
}

/// A JSON lines sink at `path`: a directory of part files if `path` is a directory or
/// ends with `/` (what exactly-once output needs), else one file.
pub fn json_lines_sink<T>(path: &Path) -> sluice::Result<JsonLinesSink<T>>
where
    T: Serialize + Send + 'static,
{
    if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') {
        JsonLinesSink::directory(path)
    } else {
        JsonLinesSink::new(path)
    }
}

/// Where unreadable input lines go: a JSON lines file, or standard error.
pub fn dead_letters(path: Option<&Path>) -> sluice::Result<DeadLetters> {
    match path {
        Some(path) => DeadLetters::file(path),
        None => Ok(DeadLetters::stderr()),
    }
}

/// What an example binary does with the job it built: with `--explain`, prints it;
/// otherwise runs it and prints its summary. Returns the exit code.
pub fn run_job(
    name: &str,
    options: &JobOptions,
    build: impl FnOnce() -> sluice::Result<StreamEnvironment>,
) -> ExitCode {
    let outcome = build().and_then(|env| {
        if options.explain {
            print!("{}", env.explain());
            return Ok(None);
        }
        env.execute().map(Some)
    });
    match outcome {
        Ok(Some(result)) => {
            println!("{}", summary(name, &result));
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            report_error(name, &error);
            ExitCode::FAILURE
        }
    }
}

/// The one-line summary a binary prints when its job finished.
pub fn summary(name: &str, result: &JobResult) -> String {
    let metrics = &result.metrics;
    format!(
        "{name}: read {} records, wrote {} records, {} dead letters, in {:.2} s",
        metrics.source_records(),
        metrics.sink_records(),
        metrics.dead_letters(),
        result.elapsed.as_secs_f64()
    )
}

/// Prints `error` and its causes on one line of standard error, as
/// `name: error: ...: ...`. A cause whose text the line already shows is not repeated
/// (a defensive check: causes are not expected to repeat their parent).
pub fn report_error(name: &str, error: &dyn std::error::Error) {
    let mut line = format!("{name}: error: {error}");
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = inner.source();
    }
    eprintln!("{line}");
}

/// Sends the engine's log (checkpoints, restores, warnings) to standard error; set
/// `RUST_LOG` to see more or less (default: `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
