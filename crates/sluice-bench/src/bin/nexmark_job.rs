//! `nexmark-job`: runs one Nexmark query as a job, from the generator to JSON lines
//! part files, with the checkpoint options of the example binaries. The crash test
//! kills and restarts it.

use clap::Parser;
use sluice::connectors::nexmark::NexmarkSource;
use sluice_bench::{queries, Query};
use sluice_examples::{run_job, JobOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Generates Nexmark events, runs a query over them and writes its results.
#[derive(Parser, Debug)]
#[command(name = "nexmark-job", version)]
struct Args {
    /// The query: q0, q1, q2, q3, q4, q5, q7, q8 or q11.
    #[arg(long, value_parser = parse_query)]
    query: Query,
    /// How many events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// The directory to write the results into, as JSON lines part files.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
    #[command(flatten)]
    options: JobOptions,
}

fn parse_query(name: &str) -> Result<Query, String> {
    Query::parse(name).ok_or_else(|| format!("unknown query '{name}' (q0, q1, q2, q3, q4, q5, q7, q8 or q11)"))
}

fn main() -> ExitCode {
    sluice_examples::init_logging();
    let args = Args::parse();
    run_job("nexmark-job", &args.options, || {
        let env = args.options.environment();
        let events = args.options.source(&env, NexmarkSource::new(args.events));
        queries::write_json_lines(args.query, &events, &args.output)?;
        Ok(env)
    })
}
