//! The built-in demo: hot auctions on generated Nexmark events.

use crate::progress;
use anyhow::Context as _;
use serde::Serialize;
use sluice::connectors::nexmark::{Event, NexmarkSource};
use sluice::prelude::*;
use std::path::PathBuf;

/// Options of `sluice demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How many events to generate.
    #[arg(long, default_value_t = 5_000_000)]
    events: u64,
    /// Number of workers (default: one per core).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Write results to this JSON lines file instead of standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// When to show the progress line on standard error.
    #[arg(long, value_enum, default_value_t = progress::ProgressMode::Auto)]
    progress: progress::ProgressMode,
}

/// The most-bid auction of one window.
#[derive(Clone, Debug, Serialize)]
struct HotAuction {
    window_start: i64,
    window_end: i64,
    auction: usize,
    bids: u64,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut env = StreamEnvironment::new();
    if let Some(parallelism) = args.parallelism {
        env = env.parallelism(parallelism);
    }
    let parallelism = env.config().parallelism;
    let hot = env
        .source(NexmarkSource::new(args.events))
        .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(seconds(1)))
        .flat_map(|event: Event| match event {
            Event::Bid(bid) => Some(bid),
            _ => None,
        })
        .key_by(|bid| bid.auction)
        .window(Sliding::of(seconds(10), seconds(2)))
        .count()
        .key_by(|result| result.window.end)
        .window(Tumbling::of(seconds(2)))
        .reduce(|a, b| if (b.value, a.key) > (a.value, b.key) { b.clone() } else { a.clone() })
        .map(|top| HotAuction {
            window_start: top.value.window.start,
            window_end: top.value.window.end,
            auction: top.value.key,
            bids: top.value.value,
        });
    match &args.output {
        Some(path) => hot.sink(JsonLinesSink::new(path).with_context(|| format!("cannot write {}", path.display()))?),
        None => hot.sink(StdoutSink::new()),
    }
    eprintln!("sluice demo: {} Nexmark events, {parallelism} workers, hot auctions per 10 s window", args.events);
    let result = progress::follow(env.start()?, args.progress)?;
    eprintln!("{}", progress::summary(&result));
    Ok(())
}
