//! `fraud-detection`: reads transactions as JSON lines and writes alerts as JSON lines.

use clap::Parser;
use sluice_examples::fraud::FraudJob;
use sluice_examples::{run_job, JobOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Alerts on amount spikes and bursts of transactions, per account, in event time.
#[derive(Parser, Debug)]
#[command(name = "fraud-detection", version)]
struct Args {
    /// Transactions, one {"account", "amount", "time"} object per line (a file, or a
    /// directory of files).
    transactions: PathBuf,
    /// Where to write the alerts, one JSON object per line: a file, or a directory of
    /// part files if it ends with `/` (needed for exactly-once output with checkpoints).
    alerts: PathBuf,
    /// Where to write input lines that cannot be read, as JSON lines [default: standard
    /// error].
    #[arg(long, value_name = "PATH")]
    dead_letters: Option<PathBuf>,
    /// Where to write transactions that arrived more than 30 s late [default: dropped].
    #[arg(long, value_name = "PATH")]
    late: Option<PathBuf>,
    #[command(flatten)]
    options: JobOptions,
}

fn main() -> ExitCode {
    sluice_examples::init_logging();
    let args = Args::parse();
    let job = FraudJob {
        transactions: args.transactions,
        alerts: args.alerts,
        late: args.late,
        dead_letters: args.dead_letters,
        options: args.options,
    };
    run_job("fraud-detection", &job.options, || job.build())
}
