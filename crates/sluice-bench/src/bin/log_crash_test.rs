//! Kills a producer of the embedded log with SIGKILL at random moments, many times,
//! and checks after each kill that every acknowledged record is there, once, in order,
//! and that nothing else is half there.
//!
//! The producer writes the numbers 0, 1, 2, ... in batches and prints the last number
//! of each batch once the log has acknowledged it. Three ways of acknowledging take
//! turns: a sync per batch, an explicit sync on interval durability, and a committed
//! transaction (read-committed readers must then see exactly whole transactions).
//!
//! ```text
//! log-crash-test --kills 30 --work DIR
//! ```

use clap::Parser;
use sluice_log::{
    Consumer, ConsumerConfig, Durability, Isolation, Log, LogOptions, Producer, ProducerConfig, ProducerRecord,
    TopicConfig,
};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// How many times the producer is killed.
    #[arg(long, default_value_t = 30)]
    kills: u32,
    /// The directory the logs are kept in (emptied first).
    #[arg(long)]
    work: PathBuf,
    /// Runs as the producer of the log in this directory, in this mode (internal).
    #[arg(long, hide = true)]
    producer: Option<PathBuf>,
    #[arg(long, hide = true, default_value = "sync")]
    mode: String,
}

const MODES: [&str; 3] = ["sync", "interval", "transaction"];
const BATCH: u64 = 97;

fn open(dir: &Path, mode: &str) -> Log {
    let durability = if mode == "interval" { Durability::OnSync } else { Durability::EveryAppend };
    let options = LogOptions { durability, segment_bytes: 256 << 10, ..LogOptions::default() };
    Log::open_with(sluice_fs::local(), dir, options).expect("the log opens after any kill")
}

/// Every number in the topic, in order, as a reader with `isolation` sees it.
fn numbers(log: &Log, isolation: Isolation) -> Vec<u64> {
    let config = ConsumerConfig { isolation, ..ConsumerConfig::default() };
    let mut consumer = Consumer::subscribe(log, &["numbers"], &config).expect("consumer");
    let mut out = Vec::new();
    while let Some(fetched) = consumer.poll(1 << 20).expect("every batch read is whole") {
        for record in fetched.records().expect("records decode") {
            let text = std::str::from_utf8(record.value).expect("text");
            out.push(text.parse().expect("a number"));
        }
    }
    out
}

/// The producer: appends numbers from where the log stands, acknowledging batches on
/// standard output, until killed.
fn produce(dir: &Path, mode: &str) {
    let log = open(dir, mode);
    if log.describe("numbers").is_err() {
        log.create_topic("numbers", &TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("topic");
    }
    let transactional = mode == "transaction";
    let config = ProducerConfig {
        transactional_id: transactional.then(|| "crash-producer".to_string()),
        batch_bytes: 2048,
        ..ProducerConfig::default()
    };
    // Opening the transactional id aborts what the killed producer left open.
    let mut producer = Producer::new(&log, config).expect("producer");
    let mut next = numbers(&log, Isolation::ReadCommitted).len() as u64;
    let stdout = std::io::stdout();
    loop {
        if transactional {
            producer.begin().expect("begin");
        }
        for n in next..next + BATCH {
            let value = n.to_string();
            let record = ProducerRecord {
                topic: "numbers",
                partition: Some(0),
                key: None,
                value: value.as_bytes(),
                headers: &[],
                timestamp: n as i64,
            };
            producer.send(&record).expect("send");
        }
        match mode {
            "transaction" => producer.commit().expect("commit"),
            "interval" => {
                producer.flush().expect("flush");
                log.sync().expect("sync");
            }
            _ => producer.flush().expect("flush"),
        }
        next += BATCH;
        let mut out = stdout.lock();
        writeln!(out, "acked {}", next - 1).expect("stdout");
        out.flush().expect("stdout");
    }
}

/// A small random number generator: the test needs no cryptographic randomness.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn main() {
    let args = Args::parse();
    if let Some(dir) = &args.producer {
        produce(dir, &args.mode);
        return;
    }
    let _ = std::fs::remove_dir_all(&args.work);
    std::fs::create_dir_all(&args.work).expect("work directory");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut rng = Rng(seed | 1);
    println!("log crash test: {} kills, seed {seed}", args.kills);
    let mut acknowledged_total = 0;
    for kill in 0..args.kills {
        let mode = MODES[kill as usize % MODES.len()];
        let dir = args.work.join(mode);
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["--work", "unused", "--mode", mode, "--producer"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the producer starts");
        let stdout = child.stdout.take().expect("stdout");
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(n) = line.strip_prefix("acked ").and_then(|n| n.parse::<u64>().ok()) {
                    if send.send(n).is_err() {
                        return;
                    }
                }
            }
        });
        // Kill it at a random moment after its first acknowledgement of this run.
        let first = receive.recv_timeout(Duration::from_secs(60)).expect("the producer acknowledges a batch");
        let deadline = Instant::now() + Duration::from_millis(5 + rng.below(150));
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("the producer is gone");
        let acknowledged = receive.try_iter().last().unwrap_or(first);
        let log = open(&dir, mode);
        let seen = numbers(&log, Isolation::ReadCommitted);
        let expected_prefix: Vec<u64> = (0..seen.len() as u64).collect();
        assert!(seen == expected_prefix, "kill {kill} ({mode}): the numbers are not 0.. in order, once each");
        assert!(
            seen.len() as u64 > acknowledged,
            "kill {kill} ({mode}): {acknowledged} was acknowledged but only {} records are there",
            seen.len()
        );
        if mode == "transaction" {
            assert_eq!(
                seen.len() as u64 % BATCH,
                0,
                "kill {kill}: a read-committed reader sees whole transactions only"
            );
        }
        acknowledged_total += acknowledged - first + 1;
        println!("kill {kill:>3} ({mode:>11}): acknowledged up to {acknowledged}, {} records there", seen.len());
        drop(log);
    }
    println!(
        "log crash test passed: {} kills, {acknowledged_total} records acknowledged in the killed runs",
        args.kills
    );
}
