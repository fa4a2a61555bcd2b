//! `log-job`: the fraud detection example from a topic of the embedded log to a topic,
//! exactly-once: `transactions` to `alerts` in `--data-dir`, bounded at what the input
//! topic holds when the job starts. The crash test kills and restarts it.

use clap::Parser;
use sluice::connectors::{LogSink, LogSource};
use sluice::log::Log;
use sluice_examples::fraud::{detect_in_event_time, watermarks, Alert, Transaction};
use sluice_examples::{run_job, JobOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Fraud detection from the topic `transactions` to the topic `alerts`.
#[derive(Parser, Debug)]
#[command(name = "log-job", version)]
struct Args {
    /// The log's directory.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Where values that do not parse go, as JSON lines.
    #[arg(long, value_name = "PATH")]
    dead_letters: Option<PathBuf>,
    #[command(flatten)]
    options: JobOptions,
}

fn main() -> ExitCode {
    sluice_examples::init_logging();
    let args = Args::parse();
    run_job("log-job", &args.options, || {
        let log = Log::open(sluice::fs::local(), &args.data_dir)
            .map_err(|e| sluice::Error::io(args.data_dir.display().to_string(), e))?;
        let env = args.options.environment();
        let dead_letters = sluice_examples::dead_letters(args.dead_letters.as_deref())?;
        // Watermarks per partition: a watermark generated after the partitions are mixed
        // would make some transactions late, and which ones would depend on timing.
        let source = LogSource::<Transaction>::new(&log, "transactions")?
            .with_watermarks(watermarks())
            .bounded()?
            .dead_letters(dead_letters);
        let detection = detect_in_event_time(&args.options.source(&env, source));
        detection
            .alerts
            .sink(LogSink::new(&log, "alerts")?.key_by(|alert: &Alert| alert.account.to_string().into_bytes()));
        Ok(env)
    })
}
