//! `nexmark`: runs the Nexmark queries on Sluice and as hand-written loops, checks they
//! agree, and prints events per second as a Markdown table.
//!
//! ```text
//! cargo run --release -p sluice-bench -- --events 5000000 --workers 1,2 --runs 3
//! ```

/// Worker threads free records that other threads allocated; mimalloc does that
/// without the cross-thread lock contention of the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use sluice::connectors::nexmark::{Event, NexmarkSource};
use sluice::connectors::JsonLinesSource;
use sluice::StreamEnvironment;
use sluice_bench::results::Outcome;
use sluice_bench::{baseline, data, queries, Query};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Nexmark on Sluice beside hand-written loops")]
struct Args {
    /// Events per run.
    #[arg(long, default_value_t = 5_000_000)]
    events: usize,
    /// Queries to run, comma separated (q0,q1,q2,q3,q4,q5,q7,q8,q11).
    #[arg(long, default_value = "q0,q1,q2,q3,q4,q5,q7,q8,q11")]
    queries: String,
    /// Worker counts to run, comma separated.
    #[arg(long, default_value = "1,2")]
    workers: String,
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where events come from: memory (generated before timing), file (JSON lines,
    /// end to end), or both.
    #[arg(long, default_value = "memory")]
    mode: String,
    /// Queries to also run from the JSON lines file in `both` mode.
    #[arg(long, default_value = "q0,q1,q2,q5")]
    file_queries: String,
    /// Where the JSON lines files are kept.
    #[arg(long, default_value = "bench-data")]
    data_dir: PathBuf,
    /// Measures peak memory of q5 and q7 over 1M and 10M generated events instead.
    #[arg(long)]
    memory: bool,
    /// Records per batch.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// Batches a channel holds before its sender is backlogged.
    #[arg(long, default_value_t = 16)]
    channel_capacity: usize,
    /// Print each query's job (its operators and the streams between them) at the
    /// first worker count, and exit.
    #[arg(long)]
    explain: bool,
    /// Internal: one measurement, `query:input:workers` (workers 0 = the loop), in
    /// this fresh process; prints the rate and a digest of the outcome.
    #[arg(long, hide = true)]
    single: Option<String>,
    /// Internal: run one query over generated events and print the peak RSS.
    #[arg(long, hide = true)]
    probe: Option<String>,
}

fn parse_list<T>(list: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    list.split(',').filter(|s| !s.trim().is_empty()).filter_map(|s| parse(s.trim())).collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn engine_memory(
    query: Query,
    events: usize,
    workers: usize,
    batch_size: usize,
    capacity: usize,
) -> sluice::Result<(f64, Outcome)> {
    let source = data::PregeneratedSource::new(events, workers);
    let env = StreamEnvironment::new().parallelism(workers).batch_size(batch_size).channel_capacity(capacity);
    let stream = env.source(source.clone());
    let outcome = queries::build(query, &stream);
    let result = env.execute()?;
    let finished = Instant::now();
    let started = source.started().unwrap_or(finished);
    if std::env::var_os("SLUICE_BENCH_VERBOSE").is_some() {
        for o in result.instances.iter().filter(|o| o.name == "window") {
            eprintln!("{:>20} instance in {:>9} out {:>9}", o.name, o.records_in, o.records_out);
        }
        for o in &result.metrics.operators {
            eprintln!(
                "{:>20} in {:>9} out {:>9} blocked {:>6.3}s",
                o.name,
                o.records_in,
                o.records_out,
                o.blocked_nanos as f64 / 1e9
            );
        }
        eprintln!(
            "processing took {:.3}s; cpu at end {:.2}s",
            finished.duration_since(started).as_secs_f64(),
            data::cpu_seconds()
        );
    }
    Ok((events as f64 / finished.duration_since(started).as_secs_f64(), outcome()))
}

fn engine_file(
    query: Query,
    path: &PathBuf,
    events: usize,
    workers: usize,
    batch_size: usize,
) -> sluice::Result<(f64, Outcome)> {
    let env = StreamEnvironment::new().parallelism(workers).batch_size(batch_size);
    let stream = env.source(JsonLinesSource::<Event>::new(path)?);
    let outcome = queries::build(query, &stream);
    let started = Instant::now();
    env.execute()?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((events as f64 / seconds, outcome()))
}

/// The loop generates the events on its thread, then is timed over them, as the
/// engine's workers are.
fn loop_memory(query: Query, events: usize) -> (f64, Outcome) {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let events = data::events(events);
                let count = events.len() as f64;
                let started = Instant::now();
                let outcome = baseline::run(query, events.into_iter());
                (count / started.elapsed().as_secs_f64(), outcome)
            })
            .join()
            .expect("loop thread")
    })
}

fn loop_file(query: Query, path: &PathBuf, events: usize) -> (f64, Outcome) {
    let started = Instant::now();
    let file = std::fs::File::open(path).expect("benchmark file exists");
    let lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
    let parsed = lines.map_while(Result::ok).filter_map(|line| serde_json::from_str::<Event>(&line).ok());
    let outcome = baseline::run(query, parsed);
    (events as f64 / started.elapsed().as_secs_f64(), outcome)
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn probe(query: Query, events: usize) -> sluice::Result<()> {
    let env = StreamEnvironment::new().parallelism(2);
    let stream = env.source(NexmarkSource::new(events as u64));
    let outcome = queries::build(query, &stream);
    env.execute()?;
    println!("{} {}", peak_rss_kib(), outcome().count);
    Ok(())
}

fn memory_table() -> sluice::Result<()> {
    let exe = std::env::current_exe().map_err(|e| sluice::Error::io("current exe", e))?;
    println!("| query | events | peak RSS (median of 3) | runs | results |");
    println!("|---|---:|---:|---|---:|");
    for query in [Query::Q5, Query::Q7] {
        for events in [1_000_000usize, 10_000_000] {
            let mut peaks = Vec::new();
            let mut results = String::new();
            for _ in 0..3 {
                let output = std::process::Command::new(&exe)
                    .args(["--probe", query.name(), "--events", &events.to_string()])
                    .output()
                    .map_err(|e| sluice::Error::io("probe", e))?;
                let text = String::from_utf8_lossy(&output.stdout);
                let mut fields = text.split_whitespace();
                peaks.push(fields.next().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0);
                results = fields.next().unwrap_or("?").to_string();
            }
            let runs = peaks.iter().map(|p| format!("{p:.0}")).collect::<Vec<_>>().join(", ");
            println!("| {} | {} | {:.1} MiB | {} MiB | {} |", query.name(), events, median(peaks), runs, results);
        }
    }
    Ok(())
}

/// One measurement in this process: events are generated (untimed), then either the
/// engine or the loop runs over them. Prints `rate count checksum rows-digest`.
fn single(spec: &str, args: &Args) -> sluice::Result<()> {
    let bad = || sluice::Error::invalid_job(format!("bad measurement {spec}"));
    let mut parts = spec.split(':');
    let query = parts.next().and_then(Query::parse).ok_or_else(bad)?;
    let input = parts.next().ok_or_else(bad)?;
    let workers: usize = parts.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
    let (rate, outcome) = match (input, workers) {
        ("memory", 0) => loop_memory(query, args.events),
        ("memory", w) => engine_memory(query, args.events, w, args.batch_size, args.channel_capacity)?,
        ("file", 0) => loop_file(query, &data::json_file(&args.data_dir, args.events)?, args.events),
        ("file", w) => {
            engine_file(query, &data::json_file(&args.data_dir, args.events)?, args.events, w, args.batch_size)?
        }
        _ => return Err(bad()),
    };
    let digest = sluice_bench::results::hash_of(&outcome.rows);
    println!("{rate} {} {} {digest}", outcome.count, outcome.checksum);
    Ok(())
}

/// One measurement in a fresh process, so that allocator state left by one run never
/// slows the next: the rate and the outcome's digest.
fn measure_once(args: &Args, query: Query, input: &str, workers: usize) -> sluice::Result<(f64, String)> {
    let exe = std::env::current_exe().map_err(|e| sluice::Error::io("current exe", e))?;
    let output = std::process::Command::new(&exe)
        .args(["--single", &format!("{}:{input}:{workers}", query.name())])
        .args(["--events", &args.events.to_string(), "--batch-size", &args.batch_size.to_string()])
        .args(["--channel-capacity", &args.channel_capacity.to_string()])
        .arg("--data-dir")
        .arg(&args.data_dir)
        .output()
        .map_err(|e| sluice::Error::io("measurement", e))?;
    if !output.status.success() {
        return Err(sluice::Error::invalid_job(format!(
            "measurement {} {input} {workers} failed: {}",
            query.name(),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let mut fields = text.split_whitespace();
    let rate = fields.next().and_then(|r| r.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((rate, fields.collect::<Vec<_>>().join(" ")))
}

/// Measures the loop (workers 0) and each worker count `runs` times, interleaved (loop,
/// 1 worker, 2 workers, loop, ...) so that the machine's drift affects all alike;
/// returns the median rate and the outcome of each.
fn measure(args: &Args, query: Query, input: &str, workers: &[usize]) -> sluice::Result<Vec<(f64, String)>> {
    let configs: Vec<usize> = std::iter::once(0).chain(workers.iter().copied()).collect();
    let mut rates = vec![Vec::new(); configs.len()];
    let mut outcomes = vec![Vec::new(); configs.len()];
    for _ in 0..args.runs.max(1) {
        for (i, &w) in configs.iter().enumerate() {
            let (rate, outcome) = measure_once(args, query, input, w)?;
            rates[i].push(rate);
            outcomes[i].push(outcome);
        }
    }
    Ok(rates
        .into_iter()
        .zip(outcomes)
        .map(|(rates, mut outcomes)| {
            outcomes.dedup();
            let outcome = if outcomes.len() == 1 { outcomes.remove(0) } else { format!("unstable: {outcomes:?}") };
            (median(rates), outcome)
        })
        .collect())
}

fn main() -> sluice::Result<()> {
    let args = Args::parse();
    if let Some(spec) = &args.single {
        return single(spec, &args);
    }
    if let Some(name) = &args.probe {
        let query = Query::parse(name).ok_or_else(|| sluice::Error::invalid_job(format!("unknown query {name}")))?;
        return probe(query, args.events);
    }
    if args.memory {
        return memory_table();
    }
    if args.explain {
        let workers = parse_list(&args.workers, |s| s.parse::<usize>().ok()).first().copied().unwrap_or(1);
        for query in parse_list(&args.queries, Query::parse) {
            let env = StreamEnvironment::new().parallelism(workers);
            let _outcome = queries::build(query, &env.source(data::PregeneratedSource::new(0, workers)));
            println!("{}:\n{}", query.name(), env.explain());
        }
        return Ok(());
    }
    let queries = parse_list(&args.queries, Query::parse);
    let file_queries = parse_list(&args.file_queries, Query::parse);
    let workers = parse_list(&args.workers, |s| s.parse::<usize>().ok());
    let inputs: Vec<&str> = match args.mode.as_str() {
        "memory" => vec!["memory"],
        "file" => vec!["file"],
        _ => vec!["memory", "file"],
    };
    if inputs.contains(&"file") {
        data::json_file(&args.data_dir, args.events)?;
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    eprintln!(
        "machine: {} cores, {cpu}; {} events, batch size {}, median of {} runs",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        args.events,
        args.batch_size,
        args.runs
    );
    println!("| query | input | workers | sluice events/s | per worker | loop events/s | sluice / loop | results |");
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for &query in &queries {
        for &input in &inputs {
            if input == "file" && !file_queries.contains(&query) {
                continue;
            }
            let measured = measure(&args, query, input, &workers)?;
            let (loop_rate, expected) = &measured[0];
            for (&w, (rate, outcome)) in workers.iter().zip(&measured[1..]) {
                let shown = if input == "file" { "json file" } else { "memory" };
                report(query, shown, w, *rate, *loop_rate, outcome == expected, expected);
            }
        }
    }
    Ok(())
}

fn report(query: Query, input: &str, workers: usize, rate: f64, loop_rate: f64, agree: bool, expected: &str) {
    let results = expected.split_whitespace().next().unwrap_or("?");
    println!(
        "| {} | {} | {} | {:.2}M | {:.2}M | {:.2}M | {:.2} | {} ({}) |",
        query.name(),
        input,
        workers,
        rate / 1e6,
        rate / 1e6 / workers as f64,
        loop_rate / 1e6,
        rate / loop_rate,
        if agree { "agree" } else { "DIFFER" },
        results
    );
}
