//! The `sluice` command.

/// Worker threads free records that other threads allocated; mimalloc does that
/// without the cross-thread lock contention of the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod demo;
mod log;
mod pipeline;
mod progress;
mod run;

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
    /// Runs a whole pipeline on the embedded log: generated transactions, orders and
    /// customers are produced into topics; fraud detection and order analytics read
    /// them and write alerts, enriched orders and hourly revenue into topics,
    /// exactly-once. Run it again for the next stretch of events: the jobs resume.
    Pipeline(pipeline::PipelineArgs),
    /// Runs a job file of SQL statements in Flink's dialect: its tables, views and
    /// settings, then its inserts (and queries, which print their rows) as one job.
    Run(run::RunArgs),
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
    /// Creates, lists, describes and deletes topics of the embedded log.
    Topic {
        #[command(subcommand)]
        command: log::TopicCommand,
        #[command(flatten)]
        data: log::DataDir,
    },
    /// Writes JSON lines (from standard input or a file) to a topic.
    Produce {
        #[command(flatten)]
        args: log::ProduceArgs,
        #[command(flatten)]
        data: log::DataDir,
    },
    /// Prints a topic's values, one per line.
    Consume {
        #[command(flatten)]
        args: log::ConsumeArgs,
        #[command(flatten)]
        data: log::DataDir,
    },
    /// Lists consumer groups and shows their offsets and lag.
    Group {
        #[command(subcommand)]
        command: log::GroupCommand,
        #[command(flatten)]
        data: log::DataDir,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Pipeline(args) => pipeline::run(args),
        Command::Run(args) => run::run(args),
        Command::Generate { events, output } => {
            sluice::connectors::nexmark::write_json_lines(&output, events).map_err(anyhow::Error::from)
        }
        Command::Savepoint { location, timeout } => sluice::checkpoint::request_savepoint(&location, timeout)
            .map(|savepoint| println!("{savepoint}"))
            .map_err(anyhow::Error::from),
        Command::Topic { command, data } => log::topic(&data, command),
        Command::Produce { args, data } => log::produce(&data, args),
        Command::Consume { args, data } => log::consume(&data, args),
        Command::Group { command, data } => log::group(&data, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// Exit code of a bad job, configuration, input or argument (clap's own code for bad
/// arguments): the user must change something.
const EXIT_USER: u8 = 2;
/// Exit code of a failure outside Sluice (I/O, storage, a service): running again once
/// it is fixed may succeed, and resumes from the latest checkpoint.
const EXIT_EXTERNAL: u8 = 3;
/// Exit code of a bug: an operator panicked or an invariant of Sluice does not hold.
const EXIT_INTERNAL: u8 = 4;

/// Prints the error with its causes (and what to do, if a retry may help) and picks the
/// exit code of its domain.
fn fail(error: &anyhow::Error) -> ExitCode {
    eprint!("error: {error}");
    for cause in error.chain().skip(1) {
        eprint!(": {cause}");
    }
    eprintln!();
    if error.chain().any(|cause| cause.is::<log::UserError>()) {
        return ExitCode::from(EXIT_USER);
    }
    let engine_error = error.chain().find_map(|cause| cause.downcast_ref::<sluice::Error>());
    if let Some(hint) = engine_error.and_then(sluice::Error::retry_hint) {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(match engine_error.map(sluice::Error::domain) {
        Some(sluice::ErrorDomain::User) => EXIT_USER,
        Some(sluice::ErrorDomain::Internal) => EXIT_INTERNAL,
        Some(sluice::ErrorDomain::External) | None => EXIT_EXTERNAL,
    })
}
