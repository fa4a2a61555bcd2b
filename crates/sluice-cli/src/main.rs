//! The `sluice` command.

/// Worker threads free records that other threads allocated; mimalloc does that
/// without the cross-thread lock contention of the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod demo;
mod progress;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Sluice: a stream processing engine.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the built-in demo: the hottest Nexmark auctions (most bids in sliding
    /// 10-second windows every 2 seconds of event time), on generated events.
    Demo(demo::DemoArgs),
    /// Writes Nexmark events as JSON lines, for benchmarks and experiments.
    Generate {
        /// How many events.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// The file to write.
        #[arg(long)]
        output: PathBuf,
    },
    /// Asks the running job that checkpoints into LOCATION for a savepoint, waits for
    /// it and prints where it is. Restore it with `--restore`, at any parallelism.
    Savepoint {
        /// The job's checkpoint location (its `--checkpoints` directory or URL).
        location: String,
        /// How long to wait for the savepoint.
        #[arg(long, default_value = "60s", value_parser = sluice::parse_duration)]
        timeout: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Generate { events, output } => {
            sluice::connectors::nexmark::write_json_lines(&output, events).map_err(anyhow::Error::from)
        }
        Command::Savepoint { location, timeout } => sluice::checkpoint::request_savepoint(&location, timeout)
            .map(|savepoint| println!("{savepoint}"))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprint!("error: {error}");
            for cause in error.chain().skip(1) {
                eprint!(": {cause}");
            }
            eprintln!();
            ExitCode::FAILURE
        }
    }
}
