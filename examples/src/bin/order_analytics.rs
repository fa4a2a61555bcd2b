//! `order-analytics`: enriches large orders with their customer and totals the revenue
//! per category and hour, from JSON lines to JSON lines.

use clap::Parser;
use sluice_examples::orders::OrderJob;
use sluice_examples::{run_job, JobOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Joins orders above 100 with the customer as of the order's time, and sums the revenue
/// of all orders per category in hourly event-time windows.
#[derive(Parser, Debug)]
#[command(name = "order-analytics", version)]
struct Args {
    /// Orders, one {"order_id", "customer_id", "category", "total", "time"} object per
    /// line (a file, or a directory of files).
    orders: PathBuf,
    /// The customers changelog, one {"customer_id", "name", "tier", "time"} object per
    /// line; a later record of a customer replaces the earlier one.
    customers: PathBuf,
    /// Where to write the enriched orders, one JSON object per line.
    enriched: PathBuf,
    /// Where to write the hourly revenue per category, one JSON object per line.
    revenue: PathBuf,
    /// Where to write input lines that cannot be read, as JSON lines [default: standard
    /// error].
    #[arg(long, value_name = "PATH")]
    dead_letters: Option<PathBuf>,
    /// Where to write orders that arrived after their revenue window closed [default:
    /// dropped].
    #[arg(long, value_name = "PATH")]
    late: Option<PathBuf>,
    #[command(flatten)]
    options: JobOptions,
}

fn main() -> ExitCode {
    sluice_examples::init_logging();
    let args = Args::parse();
    let job = OrderJob {
        orders: args.orders,
        customers: args.customers,
        enriched: args.enriched,
        revenue: args.revenue,
        late: args.late,
        dead_letters: args.dead_letters,
        options: args.options,
    };
    run_job("order-analytics", &job.options, || job.build())
}
