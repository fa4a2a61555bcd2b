//! `crash-test`: kills checkpointed jobs with SIGKILL at random moments, restarts them,
//! and checks that the output they finally commit equals, line for line, the output of
//! an uninterrupted run: nothing lost, nothing duplicated (at least once: nothing lost).
//!
//! The jobs are the real binaries: the fraud detection example on generated
//! transactions, from a file to part files and (`log-job`) from a topic of the
//! embedded log to a topic, and Nexmark q5 and q7 (`nexmark-job`). They must sit next to this
//! binary with `sluice` (`cargo build -p sluice-examples -p sluice-bench -p sluice-cli
//! --bins`).
//!
//! It cannot pass by accident: every run is killed only after a checkpoint completed in
//! it, every run after a kill must log that it restored, the expected output must not
//! be empty and some output must have been committed before the last run. Every third
//! run takes a savepoint (`sluice savepoint`) and is killed right after it; runs restart
//! at 1, 2 or 4 workers; the last run is killed once its final checkpoint is written,
//! during its final commit, and started once more. The fraud job's dead letters are
//! compared too.

use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Kills and restarts checkpointed jobs, then compares their output with an
/// uninterrupted run.
#[derive(Parser, Debug)]
#[command(name = "crash-test", version)]
struct Args {
    /// How many times to kill each job.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// The jobs to test, comma-separated: fraud, log (fraud detection from a topic of
    /// the embedded log to a topic), q5, q7.
    #[arg(long, default_value = "fraud,log,q5,q7", value_delimiter = ',')]
    jobs: Vec<String>,
    /// A scratch directory (emptied first).
    #[arg(long, value_name = "DIR", default_value = "target/crash-test")]
    work: PathBuf,
    /// Seed of the kill times [default: the clock].
    #[arg(long)]
    seed: Option<u64>,
    /// Checkpoint interval of the jobs.
    #[arg(long, default_value = "200ms")]
    checkpoint_interval: String,
    /// Workers per job in the uninterrupted run and the first run.
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// The worker counts runs after a kill restart at, picked at random.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    restart_parallelism: Vec<usize>,
    /// Take a savepoint before every third kill.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    savepoints: bool,
    /// How long an uninterrupted run of each job lasts at the test's input pace, in
    /// seconds [default: 1.5 s per kill, at least 10 s]: long enough that the job is
    /// still running after every kill (a run lasts until a checkpoint completed in it,
    /// and up to 0.4 s more).
    #[arg(long)]
    run_seconds: Option<f64>,
    /// Nexmark events per job.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Transactions of the fraud job.
    #[arg(long, default_value_t = 200_000)]
    transactions: u64,
    /// Keep the jobs' keyed state and windows on disk (incremental checkpoints).
    #[arg(long)]
    on_disk: bool,
    /// The jobs' delivery guarantee: exactly-once (the output equals the uninterrupted
    /// run's) or at-least-once (it holds every line of it).
    #[arg(long, default_value = "exactly-once")]
    delivery: String,
}

/// A small deterministic generator of kill times (xorshift64*).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A duration between `low` and `high`.
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = (high - low).as_micros() as u64;
        low + Duration::from_micros(self.next() % span.max(1))
    }
}

/// One job under test: how to run it, writing into a given output directory.
struct Job {
    name: String,
    program: PathBuf,
    /// The arguments before the output and checkpoint options.
    args: Vec<String>,
    /// Records per second that make a run last `run_seconds`.
    rate: u64,
    /// Where the on-disk state goes, if on disk.
    state_dir: Option<PathBuf>,
    /// The delivery guarantee.
    delivery: String,
    /// Whether the job writes dead letters (to `dead-letters.jsonl` beside its output).
    dead_letters: bool,
    /// For the log job: the input lines produced into its log before each first run.
    log_input: Option<PathBuf>,
}

impl Job {
    fn command(
        &self,
        output: &Path,
        checkpoints: Option<(&Path, &str)>,
        rate: Option<u64>,
        parallelism: usize,
    ) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if self.dead_letters {
            command.arg("--dead-letters").arg(dead_letters_of(output));
        }
        match self.name.as_str() {
            "fraud" => {
                command.arg(format!("{}/", output.display()));
            }
            "log" => {
                command.arg("--data-dir").arg(output);
            }
            _ => {
                command.arg("--output").arg(output);
            }
        }
        command.arg("--parallelism").arg(parallelism.to_string());
        if let Some((dir, interval)) = checkpoints {
            command.arg("--checkpoints").arg(dir).arg("--checkpoint-interval").arg(interval);
            command.arg("--delivery").arg(&self.delivery);
        }
        if let Some(rate) = rate {
            command.arg("--rate").arg(rate.to_string());
        }
        if let Some(dir) = &self.state_dir {
            command.arg("--state-dir").arg(dir).args(["--state-memory", "64"]);
        }
        command.stdout(Stdio::null());
        command
    }
}

fn binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate crash-test: {e}"))?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build the job binaries first (cargo build -p sluice-examples -p sluice-bench --bins)",
            path.display()
        ))
    }
}

fn fresh_dir(path: &Path) -> Result<(), String> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|e| format!("cannot empty {}: {e}", path.display()))?;
    }
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// A log in `dir` whose topic `transactions` holds every line of `input` (bad ones
/// too: the job sends them to its dead letters), keyed by account, and an empty
/// `alerts` topic: the log job's input and output.
fn log_with_input(dir: &Path, input: &Path) -> Result<(), String> {
    use sluice_log::{Log, Producer, ProducerConfig, ProducerRecord, TopicConfig};
    let log =
        Log::open(sluice_fs::local(), dir).map_err(|e| format!("cannot open the log in {}: {e}", dir.display()))?;
    for (topic, partitions) in [("transactions", 3), ("alerts", 2)] {
        log.create_topic(topic, &TopicConfig { partitions, ..TopicConfig::default() }).map_err(|e| e.to_string())?;
    }
    let text = std::fs::read_to_string(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let mut producer = Producer::new(&log, ProducerConfig::default()).map_err(|e| e.to_string())?;
    for line in text.lines() {
        let parsed: Option<serde_json::Value> = serde_json::from_str(line).ok();
        let key = parsed.as_ref().and_then(|v| v.get("account")).map(|a| a.to_string().into_bytes());
        let time = parsed.as_ref().and_then(|v| v.get("time")).and_then(serde_json::Value::as_i64).unwrap_or(0);
        let record = ProducerRecord {
            topic: "transactions",
            partition: None,
            key: key.as_deref(),
            value: line.as_bytes(),
            headers: &[],
            timestamp: time,
        };
        producer.send(&record).map_err(|e| e.to_string())?;
    }
    producer.flush().map_err(|e| e.to_string())
}

/// Every committed value of the log job's `alerts` topic, sorted.
fn committed_alerts(dir: &Path) -> Result<Vec<String>, String> {
    use sluice_log::{Consumer, ConsumerConfig, Log};
    let log =
        Log::open(sluice_fs::local(), dir).map_err(|e| format!("cannot open the log in {}: {e}", dir.display()))?;
    let mut consumer = Consumer::subscribe(&log, &["alerts"], &ConsumerConfig::default()).map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    while let Some(fetched) = consumer.poll(1 << 20).map_err(|e| e.to_string())? {
        for record in fetched.records().map_err(|e| e.to_string())? {
            lines.push(String::from_utf8_lossy(record.value).into_owned());
        }
    }
    lines.sort_unstable();
    Ok(lines)
}

/// Every line of every published part file, sorted; for the log job, the committed
/// records of its output topic.
fn published(dir: &Path) -> Result<Vec<String>, String> {
    if dir.join("topics").exists() {
        return committed_alerts(dir);
    }
    let mut lines = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("part-") {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort_unstable();
    Ok(lines)
}

/// How two sorted multisets of lines differ: (missing, duplicated or extra) counts and
/// a few examples of each.
fn difference(actual: &[String], expected: &[String]) -> Option<String> {
    if actual == expected {
        return None;
    }
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < actual.len() || j < expected.len() {
        match (actual.get(i), expected.get(j)) {
            (Some(a), Some(e)) if a == e => (i, j) = (i + 1, j + 1),
            (Some(a), Some(e)) if a < e => {
                extra.push(a);
                i += 1;
            }
            (_, Some(e)) => {
                missing.push(e);
                j += 1;
            }
            (Some(a), None) => {
                extra.push(a);
                i += 1;
            }
            (None, None) => break,
        }
    }
    Some(format!(
        "{} lines instead of {}: {} missing (e.g. {:?}), {} extra or duplicated (e.g. {:?})",
        actual.len(),
        expected.len(),
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>()
    ))
}

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Result<std::process::ExitStatus, String> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            return Err(format!("the job did not finish within {deadline:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What happened to one job.
struct Outcome {
    kills: usize,
    savepoints: usize,
    lines: usize,
    /// Whether the kill after the final checkpoint left part files unpublished.
    final_commit_interrupted: bool,
    elapsed: Duration,
}

fn dead_letters_of(output: &Path) -> PathBuf {
    output.with_extension("dead-letters.jsonl")
}

/// The newest checkpoint in `dir` with a manifest, and whether it is the final one.
fn newest_complete(dir: &Path) -> Option<(u64, bool)> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut newest: Option<(u64, bool)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("chk-").and_then(|id| id.parse::<u64>().ok()) else { continue };
        let Ok(manifest) = std::fs::read_to_string(entry.path().join("manifest.json")) else { continue };
        if newest.is_none_or(|(n, _)| id > n) {
            newest = Some((id, manifest.contains("\"finished\": true")));
        }
    }
    newest
}

/// The sorted lines of a file; none if it does not exist.
fn lines_of(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> =
        std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
    lines.sort_unstable();
    lines
}

/// Whether the sorted `actual` holds every line of the sorted `expected` (each as many
/// times at least): at-least-once output.
fn missing_from(actual: &[String], expected: &[String]) -> Option<String> {
    let mut missing = Vec::new();
    let mut i = 0;
    for line in expected {
        while i < actual.len() && actual[i] < *line {
            i += 1;
        }
        if i < actual.len() && actual[i] == *line {
            i += 1;
        } else {
            missing.push(line);
        }
    }
    (!missing.is_empty()).then(|| {
        format!("{} of {} lines missing (e.g. {:?})", missing.len(), expected.len(), &missing[..missing.len().min(3)])
    })
}

/// Lines of `actual` that `expected` lacks (both sorted): at least once, a line the
/// uninterrupted run never wrote is a torn or garbled one.
fn foreign_lines(actual: &[String], expected: &[String]) -> Option<String> {
    let foreign: Vec<&String> = actual.iter().filter(|line| expected.binary_search(line).is_err()).collect();
    (!foreign.is_empty()).then(|| {
        format!(
            "{} lines the uninterrupted run never wrote (torn?), e.g. {:?}",
            foreign.len(),
            &foreign[..foreign.len().min(3)]
        )
    })
}

/// Waits until `dir` holds a complete checkpoint newer than `after`, or the job exits.
fn wait_for_checkpoint(child: &mut Child, dir: &Path, after: Option<u64>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match newest_complete(dir) {
            Some((_, true)) => return Err("the job finished: give it a longer --run-seconds".into()),
            Some((id, false)) if Some(id) > after => return Ok(()),
            _ => {}
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("the job exited ({status}) before it completed a checkpoint"));
        }
        if Instant::now() > deadline {
            return Err("no checkpoint completed within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill(child: &mut Child) -> Result<(), String> {
    child.kill().map_err(|e| format!("cannot kill the job: {e}"))?;
    let _ = child.wait();
    Ok(())
}

fn test_job(job: &Job, args: &Args, random: &mut Random, work: &Path) -> Result<Outcome, String> {
    let started = Instant::now();
    let reference = work.join("reference");
    fresh_dir(&reference)?;
    if let Some(input) = &job.log_input {
        log_with_input(&reference, input)?;
    }
    let status = job
        .command(&reference, None, None, args.parallelism)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", job.program.display()))?;
    if !status.success() {
        return Err(format!("the uninterrupted run failed: {status}"));
    }
    let expected = published(&reference)?;
    if expected.is_empty() {
        return Err("the uninterrupted run committed no output: nothing would be tested".into());
    }

    let (output, checkpoints) = (work.join("output"), work.join("checkpoints"));
    fresh_dir(&output)?;
    fresh_dir(&checkpoints)?;
    if let Some(input) = &job.log_input {
        log_with_input(&output, input)?;
    }
    let interval = args.checkpoint_interval.as_str();
    let sluice = binary("sluice")?;
    let (mut kills, mut savepoints, mut committed_before_kill) = (0, 0, 0);
    let mut parallelism = args.parallelism;
    while kills < args.kills {
        let before = newest_complete(&checkpoints).map(|(id, _)| id);
        let log = work.join(format!("run-{kills}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut child = job
            .command(&output, Some((&checkpoints, interval)), Some(job.rate), parallelism)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", job.program.display()))?;
        wait_for_checkpoint(&mut child, &checkpoints, before).map_err(|e| format!("run {}: {e}", kills + 1))?;
        if args.savepoints && kills % 3 == 2 {
            // A savepoint, then a crash before the next checkpoint.
            let status = Command::new(&sluice)
                .arg("savepoint")
                .arg(&checkpoints)
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("cannot run sluice savepoint: {e}"))?;
            if !status.success() {
                return Err(format!("run {}: sluice savepoint failed: {status}", kills + 1));
            }
            savepoints += 1;
            std::thread::sleep(random.between(Duration::ZERO, Duration::from_millis(50)));
        } else {
            std::thread::sleep(random.between(Duration::ZERO, Duration::from_millis(400)));
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!(
                "run {} ended ({status}) before it was killed: give it a longer --run-seconds",
                kills + 1
            ));
        }
        kill(&mut child)?;
        if kills > 0 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if !text.contains("restoring from") {
                return Err(format!("run {} did not restore from a checkpoint (see {})", kills + 1, log.display()));
            }
        }
        committed_before_kill = committed_before_kill.max(published(&output)?.len());
        kills += 1;
        let choices = &args.restart_parallelism;
        parallelism = choices.get(random.next() as usize % choices.len().max(1)).copied().unwrap_or(args.parallelism);
    }
    if committed_before_kill == 0 {
        return Err("no output was committed before any kill: nothing would be tested".into());
    }

    // Unthrottled to the end, killed once its final checkpoint is written: during (or
    // right before) the final commit.
    let mut child = job
        .command(&output, Some((&checkpoints, interval)), None, parallelism)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", job.program.display()))?;
    let mut final_commit_interrupted = false;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if newest_complete(&checkpoints).is_some_and(|(_, finished)| finished) {
            kill(&mut child)?;
            final_commit_interrupted = std::fs::read_dir(&output)
                .map_err(|e| e.to_string())?
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".inprogress"));
            break;
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            if !status.success() {
                return Err(format!("the last run failed: {status}"));
            }
            break;
        }
        if Instant::now() > deadline {
            kill(&mut child)?;
            return Err("the last run did not finish within 600 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Started once more, a finished job commits what is left and runs nothing.
    let mut child = job
        .command(&output, Some((&checkpoints, interval)), None, parallelism)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", job.program.display()))?;
    let status = wait_with_deadline(&mut child, Duration::from_secs(600))?;
    if !status.success() {
        return Err(format!("the run after the final checkpoint failed: {status}"));
    }

    let actual = published(&output)?;
    let problem = match job.delivery.as_str() {
        "at-least-once" => missing_from(&actual, &expected).or_else(|| foreign_lines(&actual, &expected)),
        _ => difference(&actual, &expected),
    };
    if let Some(problem) = problem {
        return Err(format!("after {kills} kills the committed output differs: {problem}"));
    }
    if job.dead_letters {
        // Dead letters after a restored checkpoint are reported again: at least once.
        let (mut got, wanted) = (lines_of(&dead_letters_of(&output)), lines_of(&dead_letters_of(&reference)));
        if wanted.is_empty() {
            return Err("the uninterrupted run reported no dead letters: nothing would be tested".into());
        }
        if let Some(problem) = missing_from(&got, &wanted) {
            return Err(format!("dead letters lost: {problem}"));
        }
        got.dedup();
        if got.len() != wanted.len() {
            return Err(format!("{} distinct dead letters, the uninterrupted run had {}", got.len(), wanted.len()));
        }
    }
    Ok(Outcome { kills, savepoints, lines: actual.len(), final_commit_interrupted, elapsed: started.elapsed() })
}

/// Sample transactions (with a few bad lines) in `dir/transactions.jsonl`.
fn generate_transactions(dir: &Path, transactions: u64) -> Result<(), String> {
    let status = Command::new(binary("generate-sample-data")?)
        .arg(dir)
        .arg("--transactions")
        .arg(transactions.to_string())
        .arg("--accounts")
        .arg("2000")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run generate-sample-data: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("generate-sample-data failed: {status}")),
    }
}

fn jobs(args: &Args) -> Result<Vec<(Job, PathBuf)>, String> {
    let run_seconds = args.run_seconds.unwrap_or((args.kills as f64 * 1.5).max(10.0));
    let mut jobs = Vec::new();
    for name in &args.jobs {
        let work = args.work.join(name);
        fresh_dir(&work)?;
        let job = match name.as_str() {
            "fraud" => {
                let input = work.join("input");
                generate_transactions(&input, args.transactions)?;
                let transactions = input.join("transactions.jsonl");
                Job {
                    name: name.clone(),
                    program: binary("fraud-detection")?,
                    args: vec![transactions.display().to_string()],
                    rate: (args.transactions as f64 / run_seconds) as u64,
                    state_dir: args.on_disk.then(|| work.join("state")),
                    delivery: args.delivery.clone(),
                    dead_letters: true,
                    log_input: None,
                }
            }
            "log" => {
                let input = work.join("input");
                generate_transactions(&input, args.transactions)?;
                Job {
                    name: name.clone(),
                    program: binary("log-job")?,
                    args: Vec::new(),
                    rate: (args.transactions as f64 / run_seconds) as u64,
                    state_dir: args.on_disk.then(|| work.join("state")),
                    delivery: args.delivery.clone(),
                    dead_letters: true,
                    log_input: Some(input.join("transactions.jsonl")),
                }
            }
            "q5" | "q7" => Job {
                name: name.clone(),
                program: binary("nexmark-job")?,
                args: vec!["--query".into(), name.clone(), "--events".into(), args.events.to_string()],
                rate: (args.events as f64 / run_seconds) as u64,
                state_dir: args.on_disk.then(|| work.join("state")),
                delivery: args.delivery.clone(),
                dead_letters: false,
                log_input: None,
            },
            other => return Err(format!("unknown job '{other}' (fraud, log, q5, q7)")),
        };
        jobs.push((job, work));
    }
    Ok(jobs)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    println!(
        "crash-test: seed {seed}, {} kills per job, checkpoints every {}, {}{}",
        args.kills,
        args.checkpoint_interval,
        args.delivery,
        if args.on_disk { ", state on disk" } else { "" }
    );
    let mut random = Random(seed.max(1));
    let jobs = match jobs(&args) {
        Ok(jobs) => jobs,
        Err(error) => {
            eprintln!("crash-test: error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    for (job, work) in &jobs {
        match test_job(job, &args, &mut random, work) {
            Ok(outcome) => println!(
                "crash-test: {}: killed {} times ({} right after a savepoint, each after a checkpoint, restarted at \
                 {:?} workers) and once after its final checkpoint ({}), {} output lines committed, {} the \
                 uninterrupted run's ({:.1} s)",
                job.name,
                outcome.kills,
                outcome.savepoints,
                args.restart_parallelism,
                if outcome.final_commit_interrupted { "its final commit interrupted" } else { "committed already" },
                outcome.lines,
                if job.delivery == "at-least-once" { "holding every line of" } else { "equal to" },
                outcome.elapsed.as_secs_f64()
            ),
            Err(error) => {
                println!("crash-test: {}: FAILED: {error}", job.name);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
