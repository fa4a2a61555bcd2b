//! `nexmark`: runs the Nexmark queries on Sluice and as hand-written loops, checks they
//! agree, and prints events per second as a Markdown table.
//!
//! ```text
//! cargo run --release -p sluice-bench -- --events 5000000 --workers 1,2 --runs 3
//! ```

use clap::Parser;
use sluice::connectors::nexmark::{Event, NexmarkSource};
use sluice::connectors::JsonLinesSource;
use sluice::{StreamEnvironment, VecSource};
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

fn engine_memory(query: Query, events: &[Event], workers: usize) -> sluice::Result<(f64, Outcome)> {
    let partitions = data::partitions_from(events, workers);
    let env = StreamEnvironment::new().parallelism(workers);
    let stream = env.source(VecSource::from_records(partitions));
    let outcome = queries::build(query, &stream);
    let started = Instant::now();
    env.execute()?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((events.len() as f64 / seconds, outcome()))
}

fn engine_file(query: Query, path: &PathBuf, events: usize, workers: usize) -> sluice::Result<(f64, Outcome)> {
    let env = StreamEnvironment::new().parallelism(workers);
    let stream = env.source(JsonLinesSource::<Event>::new(path)?);
    let outcome = queries::build(query, &stream);
    let started = Instant::now();
    env.execute()?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((events as f64 / seconds, outcome()))
}

fn loop_memory(query: Query, events: &[Event]) -> (f64, Outcome) {
    let copy = events.to_vec();
    let started = Instant::now();
    let outcome = baseline::run(query, copy.into_iter());
    (events.len() as f64 / started.elapsed().as_secs_f64(), outcome)
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
    println!("| query | events | peak RSS | results |");
    println!("|---|---:|---:|---:|");
    for query in [Query::Q5, Query::Q7] {
        for events in [1_000_000usize, 10_000_000] {
            let output = std::process::Command::new(&exe)
                .args(["--probe", query.name(), "--events", &events.to_string()])
                .output()
                .map_err(|e| sluice::Error::io("probe", e))?;
            let text = String::from_utf8_lossy(&output.stdout);
            let mut fields = text.split_whitespace();
            let rss: u64 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let results = fields.next().unwrap_or("?");
            println!("| {} | {} | {:.1} MiB | {} |", query.name(), events, rss as f64 / 1024.0, results);
        }
    }
    Ok(())
}

fn main() -> sluice::Result<()> {
    let args = Args::parse();
    if let Some(name) = &args.probe {
        let query = Query::parse(name).ok_or_else(|| sluice::Error::invalid_job(format!("unknown query {name}")))?;
        return probe(query, args.events);
    }
    if args.memory {
        return memory_table();
    }
    let queries = parse_list(&args.queries, Query::parse);
    let file_queries = parse_list(&args.file_queries, Query::parse);
    let workers = parse_list(&args.workers, |s| s.parse::<usize>().ok());
    let (memory, file) = match args.mode.as_str() {
        "memory" => (true, false),
        "file" => (false, true),
        _ => (true, true),
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    eprintln!("machine: {} cores, {cpu}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    println!("| query | input | workers | sluice events/s | per worker | loop events/s | sluice / loop | results |");
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    let events = if memory { data::events(args.events) } else { Vec::new() };
    for &query in &queries {
        if memory {
            let mut loop_rates = Vec::new();
            let mut expected = None;
            for _ in 0..args.runs {
                let (rate, outcome) = loop_memory(query, &events);
                loop_rates.push(rate);
                expected = Some(outcome);
            }
            let loop_rate = median(loop_rates);
            for &w in &workers {
                let mut rates = Vec::new();
                let mut agree = true;
                for _ in 0..args.runs {
                    let (rate, outcome) = engine_memory(query, &events, w)?;
                    rates.push(rate);
                    agree &= Some(&outcome) == expected.as_ref();
                }
                report(query, "memory", w, median(rates), loop_rate, agree, expected.as_ref());
            }
        }
        if file && file_queries.contains(&query) {
            let path = data::json_file(&args.data_dir, args.events)?;
            let mut loop_rates = Vec::new();
            let mut expected = None;
            for _ in 0..args.runs {
                let (rate, outcome) = loop_file(query, &path, args.events);
                loop_rates.push(rate);
                expected = Some(outcome);
            }
            let loop_rate = median(loop_rates);
            for &w in &workers {
                let mut rates = Vec::new();
                let mut agree = true;
                for _ in 0..args.runs {
                    let (rate, outcome) = engine_file(query, &path, args.events, w)?;
                    rates.push(rate);
                    agree &= Some(&outcome) == expected.as_ref();
                }
                report(query, "json file", w, median(rates), loop_rate, agree, expected.as_ref());
            }
        }
    }
    Ok(())
}

fn report(
    query: Query,
    input: &str,
    workers: usize,
    rate: f64,
    loop_rate: f64,
    agree: bool,
    expected: Option<&Outcome>,
) {
    let results = expected.map(|o| o.count).unwrap_or(0);
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
