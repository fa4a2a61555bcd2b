//! `sluice pipeline`: the two examples as one pipeline on the embedded log.

use crate::progress;
use anyhow::Context as _;
use sluice_examples::pipeline::{fraud_job, open_log, orders_job, produce_inputs, PipelineOptions};
use std::path::PathBuf;

/// Options of `sluice pipeline`.
#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// The log's directory (checkpoints and dead letters go under it too).
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "sluice-data")]
    data_dir: PathBuf,
    /// Transactions to generate in this run.
    #[arg(long, default_value_t = 200_000)]
    transactions: usize,
    /// Orders to generate in this run.
    #[arg(long, default_value_t = 100_000)]
    orders: usize,
    /// Workers per job (default: one per core).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Time between two checkpoints of each job.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = sluice::parse_duration)]
    checkpoint_interval: std::time::Duration,
    /// When to show the progress lines on standard error.
    #[arg(long, value_enum, default_value_t = progress::ProgressMode::Auto)]
    progress: progress::ProgressMode,
}

pub fn run(args: PipelineArgs) -> anyhow::Result<()> {
    let options = PipelineOptions {
        data_dir: args.data_dir.clone(),
        transactions: args.transactions,
        orders: args.orders,
        parallelism: args.parallelism,
        checkpoint_interval: args.checkpoint_interval,
    };
    let log = open_log(&options)?;
    let produced = produce_inputs(&log, &options).context("producing the input")?;
    let [transactions, orders, customers] = produced.lines;
    eprintln!(
        "run {}: produced {transactions} transactions, {orders} orders and {customers} customer changes into the log in {}",
        produced.run,
        args.data_dir.display()
    );
    let fraud = fraud_job(&log, &options)?;
    let orders = orders_job(&log, &options)?;
    let ends = [fraud.ends.clone(), orders.ends.clone()];
    let jobs = vec![
        ("fraud-detection".to_string(), fraud.env.start().context("starting fraud detection")?),
        ("order-analytics".to_string(), orders.env.start().context("starting order analytics")?),
    ];
    // A job at the end of its input stops once three more checkpoints have completed:
    // the second is the first triggered after that moment, so it covers everything
    // read, and its output is committed before the third completes.
    let mut covered_at: [Option<u64>; 2] = [None, None];
    let results = progress::follow_all(jobs, args.progress, |i, job| {
        let completed = job.checkpoint_stats().map_or(0, |stats| stats.completed);
        if covered_at[i].is_none() && ends[i].iter().all(|end| end.reached()) {
            covered_at[i] = Some(completed + 3);
        }
        covered_at[i].is_some_and(|at| completed >= at)
    });
    let mut failed = None;
    for (name, result) in ["fraud-detection", "order-analytics"].iter().zip(results) {
        match result {
            Ok(result) => {
                let resumed = result
                    .checkpoints
                    .as_ref()
                    .and_then(|c| c.restored_from)
                    .map_or(String::new(), |id| format!(" (resumed from checkpoint {id})"));
                eprintln!("{name}: {}{resumed}", progress::summary(&result));
            }
            Err(error) => {
                eprintln!("{name}: failed: {error}");
                failed.get_or_insert(anyhow::Error::from(error).context(format!("{name} failed")));
            }
        }
    }
    if let Some(error) = failed {
        return Err(error);
    }
    let dir = args.data_dir.display();
    eprintln!("results are in the topics fraud-alerts, enriched-orders and hourly-revenue; for example:");
    eprintln!("  sluice consume fraud-alerts --data-dir {dir} | head");
    eprintln!("  sluice consume hourly-revenue --data-dir {dir} --from 2026-01-01T00:00:00Z | head");
    eprintln!("dead letters (bad input lines, with the reason) are in {dir}/dead-letters/; run again for more events");
    Ok(())
}
