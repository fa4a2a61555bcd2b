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
    /// Write results to this JSON lines file instead of standard output; to a directory
    /// of part files if it ends with `/` (exactly-once with --checkpoints).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write the results into this topic of the embedded log instead (created with 1
    /// partition if missing; exactly-once with --checkpoints).
    #[arg(long, value_name = "TOPIC", conflicts_with = "output")]
    topic: Option<String>,
    /// Read the Nexmark events from this topic of the embedded log (as `sluice generate`
    /// writes them, produced with `sluice produce`) instead of generating them: to its
    /// end as the demo starts, with watermarks per partition.
    #[arg(long, value_name = "TOPIC")]
    input_topic: Option<String>,
    /// The embedded log's directory, with --topic or --input-topic.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "sluice-data")]
    data_dir: PathBuf,
    /// Take checkpoints into this directory; run again with the same one to resume.
    #[arg(long, value_name = "DIR")]
    checkpoints: Option<String>,
    /// Time between checkpoints.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = sluice::parse_duration)]
    checkpoint_interval: std::time::Duration,
    /// Restore from this checkpoint or savepoint directory; needs --checkpoints.
    #[arg(long, value_name = "DIR", requires = "checkpoints")]
    restore: Option<String>,
    /// Generate no more than this many events per second.
    #[arg(long, value_name = "EVENTS")]
    rate: Option<u64>,
    /// When to show the progress line on standard error.
    #[arg(long, value_enum, default_value_t = progress::ProgressMode::Auto)]
    progress: progress::ProgressMode,
    /// Print the job's operators and the streams between them, and exit without
    /// running it.
    #[arg(long)]
    explain: bool,
    /// Makes the last operator panic on its first result: shows (and tests) how a bug
    /// in a user function is reported.
    #[arg(long, hide = true)]
    inject_panic: bool,
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
    if let Some(location) = &args.checkpoints {
        let mut config = CheckpointConfig::new(location.clone(), args.checkpoint_interval);
        config.restore = args.restore.clone();
        env = env.checkpointing(config);
    }
    let parallelism = env.config().parallelism;
    let inject_panic = args.inject_panic;
    let watermarks = WatermarkStrategy::bounded_out_of_orderness(seconds(1));
    let events = match (&args.input_topic, args.rate) {
        (Some(topic), _) => {
            let log = sluice::log::Log::open(sluice::fs::local(), &args.data_dir)
                .with_context(|| format!("opening the log in {}", args.data_dir.display()))?;
            let timed = watermarks.with_timestamp(|event: &Event| sluice::connectors::nexmark::event_time(event));
            let source = sluice::connectors::LogSource::<Event>::new(&log, topic)?.with_watermarks(timed).bounded()?;
            match args.rate {
                Some(rate) => env.source(sluice::Throttled::new(source, rate)),
                None => env.source(source),
            }
        }
        (None, Some(rate)) => {
            env.source(sluice::Throttled::new(NexmarkSource::new(args.events), rate)).with_watermarks(watermarks)
        }
        (None, None) => env.source(NexmarkSource::new(args.events)).with_watermarks(watermarks),
    };
    let hot = events
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
        .map(move |top| {
            assert!(!inject_panic, "injected panic (--inject-panic)");
            HotAuction {
                window_start: top.value.window.start,
                window_end: top.value.window.end,
                auction: top.value.key,
                bids: top.value.value,
            }
        })
        .name("hot auction");
    if let Some(topic) = &args.topic {
        let log = sluice::log::Log::open(sluice::fs::local(), &args.data_dir)
            .with_context(|| format!("opening the log in {}", args.data_dir.display()))?;
        if log.describe(topic).is_err() {
            log.create_topic(topic, &sluice::log::TopicConfig::default())
                .map_err(|e| crate::log::UserError(format!("cannot create topic {topic}: {e}")))?;
        }
        hot.sink(sluice::connectors::LogSink::new(&log, topic)?);
    } else {
        sink_to_output(&hot, args.output.as_deref())?;
    }
    if args.explain {
        print!("{}", env.explain());
        return Ok(());
    }
    match &args.input_topic {
        Some(topic) => eprintln!(
            "sluice demo: Nexmark events of topic {topic}, {parallelism} workers, hot auctions per 10 s window"
        ),
        None => eprintln!(
            "sluice demo: {} Nexmark events, {parallelism} workers, hot auctions per 10 s window",
            args.events
        ),
    }
    let result = progress::follow(env.start()?, args.progress)?;
    eprintln!("{}", progress::summary(&result));
    Ok(())
}

/// Writes the results to `output` (a file, a directory of part files if it ends with
/// `/`), or to standard output.
fn sink_to_output(hot: &Stream<HotAuction>, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    match output {
        Some(path) if path.is_dir() || path.to_string_lossy().ends_with('/') => {
            hot.sink(JsonLinesSink::directory(path).with_context(|| format!("cannot write into {}", path.display()))?)
        }
        Some(path) => hot.sink(JsonLinesSink::new(path).with_context(|| format!("cannot write {}", path.display()))?),
        None => hot.sink(StdoutSink::new()),
    }
    Ok(())
}
