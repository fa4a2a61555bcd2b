//! `generate-sample-data`: writes deterministic sample input for the examples.

use clap::Parser;
use sluice_examples::generate::{write_samples, SampleConfig, DEFAULT_START_TIME};
use sluice_examples::report_error;
use std::path::PathBuf;
use std::process::ExitCode;

/// Writes transactions.jsonl, orders.jsonl and customers.jsonl into a directory. The same
/// options always give the same files; each file has a few bad lines on purpose.
#[derive(Parser, Debug)]
#[command(name = "generate-sample-data", version)]
struct Args {
    /// The directory to write into (created if missing).
    dir: PathBuf,
    /// The seed of the pseudo-random choices.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The event time the data starts at, in milliseconds since the epoch (the default
    /// is 2026-01-01T00:00:00Z).
    #[arg(long, default_value_t = DEFAULT_START_TIME)]
    start_time: i64,
    /// How many accounts make transactions.
    #[arg(long, default_value_t = 500)]
    accounts: u64,
    /// How many transactions.
    #[arg(long, default_value_t = 50_000)]
    transactions: usize,
    /// How many customers have records.
    #[arg(long, default_value_t = 1_000)]
    customers: u64,
    /// How many orders.
    #[arg(long, default_value_t = 50_000)]
    orders: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = SampleConfig {
        seed: args.seed,
        start_time: args.start_time,
        accounts: args.accounts,
        transactions: args.transactions,
        customers: args.customers,
        orders: args.orders,
    };
    match write_samples(&args.dir, &config) {
        Ok(files) => {
            println!(
                "generate-sample-data: wrote {} lines ({} bad on purpose) to {}, {} and {}",
                files.lines,
                files.bad_lines,
                files.transactions.display(),
                files.orders.display(),
                files.customers.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            report_error("generate-sample-data", &error);
            ExitCode::FAILURE
        }
    }
}
