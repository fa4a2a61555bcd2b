//! `crash-test`: kills checkpointed jobs with SIGKILL at random moments, restarts them,
//! and checks that the output they finally commit equals, line for line, the output of
//! an uninterrupted run: nothing lost, nothing duplicated.
//!
//! The jobs are the real binaries: the fraud detection example on generated
//! transactions, and Nexmark q5 and q7 (`nexmark-job`). They must sit next to this
//! binary (`cargo build -p sluice-examples -p sluice-bench --bins`).

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
    /// The jobs to test, comma-separated: fraud, q5, q7.
    #[arg(long, default_value = "fraud,q5,q7", value_delimiter = ',')]
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
    /// Workers per job.
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// How long an uninterrupted run of each job lasts at the test's input pace, in
    /// seconds [default: 0.5 s per kill, at least 5 s]: long enough that the job is
    /// still running after every kill.
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
        if self.name == "fraud" {
            command.arg(format!("{}/", output.display()));
        } else {
            command.arg("--output").arg(output);
        }
        command.arg("--parallelism").arg(parallelism.to_string());
        if let Some((dir, interval)) = checkpoints {
            command.arg("--checkpoints").arg(dir).arg("--checkpoint-interval").arg(interval);
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

/// Every line of every published part file, sorted.
fn published(dir: &Path) -> Result<Vec<String>, String> {
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
    lines: usize,
    elapsed: Duration,
}

fn test_job(job: &Job, args: &Args, random: &mut Random, work: &Path) -> Result<Outcome, String> {
    let started = Instant::now();
    let reference = work.join("reference");
    fresh_dir(&reference)?;
    let status = job
        .command(&reference, None, None, args.parallelism)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", job.program.display()))?;
    if !status.success() {
        return Err(format!("the uninterrupted run failed: {status}"));
    }
    let expected = published(&reference)?;

    let (output, checkpoints) = (work.join("output"), work.join("checkpoints"));
    fresh_dir(&output)?;
    fresh_dir(&checkpoints)?;
    let interval = args.checkpoint_interval.as_str();
    let mut kills = 0;
    while kills < args.kills {
        let mut child = job
            .command(&output, Some((&checkpoints, interval)), Some(job.rate), args.parallelism)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", job.program.display()))?;
        std::thread::sleep(random.between(Duration::from_millis(50), Duration::from_millis(700)));
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => {
                return Err(format!("the job finished after only {kills} kills: give it a longer --run-seconds"))
            }
            Some(status) => return Err(format!("run {} failed before it was killed: {status}", kills + 1)),
            None => {
                child.kill().map_err(|e| format!("cannot kill the job: {e}"))?;
                let _ = child.wait();
                kills += 1;
            }
        }
    }
    let mut child = job
        .command(&output, Some((&checkpoints, interval)), None, args.parallelism)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", job.program.display()))?;
    let status = wait_with_deadline(&mut child, Duration::from_secs(600))?;
    if !status.success() {
        return Err(format!("the last run failed: {status}"));
    }
    let actual = published(&output)?;
    if let Some(difference) = difference(&actual, &expected) {
        return Err(format!("after {kills} kills the committed output differs: {difference}"));
    }
    Ok(Outcome { kills, lines: actual.len(), elapsed: started.elapsed() })
}

fn jobs(args: &Args) -> Result<Vec<(Job, PathBuf)>, String> {
    let run_seconds = args.run_seconds.unwrap_or((args.kills as f64 * 0.5).max(5.0));
    let mut jobs = Vec::new();
    for name in &args.jobs {
        let work = args.work.join(name);
        fresh_dir(&work)?;
        let job = match name.as_str() {
            "fraud" => {
                let input = work.join("input");
                let status = Command::new(binary("generate-sample-data")?)
                    .arg(&input)
                    .arg("--transactions")
                    .arg(args.transactions.to_string())
                    .arg("--accounts")
                    .arg("2000")
                    .stdout(Stdio::null())
                    .status()
                    .map_err(|e| format!("cannot run generate-sample-data: {e}"))?;
                if !status.success() {
                    return Err(format!("generate-sample-data failed: {status}"));
                }
                let transactions = input.join("transactions.jsonl");
                let dead_letters = work.join("dead-letters.jsonl");
                Job {
                    name: name.clone(),
                    program: binary("fraud-detection")?,
                    args: vec![
                        transactions.display().to_string(),
                        "--dead-letters".into(),
                        dead_letters.display().to_string(),
                    ],
                    rate: (args.transactions as f64 / run_seconds) as u64,
                    state_dir: args.on_disk.then(|| work.join("state")),
                }
            }
            "q5" | "q7" => Job {
                name: name.clone(),
                program: binary("nexmark-job")?,
                args: vec!["--query".into(), name.clone(), "--events".into(), args.events.to_string()],
                rate: (args.events as f64 / run_seconds) as u64,
                state_dir: args.on_disk.then(|| work.join("state")),
            },
            other => return Err(format!("unknown job '{other}' (fraud, q5, q7)")),
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
    println!("crash-test: seed {seed}, {} kills per job, checkpoints every {}", args.kills, args.checkpoint_interval);
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
                "crash-test: {}: killed {} times, {} output lines committed, equal to the uninterrupted run ({:.1} s)",
                job.name,
                outcome.kills,
                outcome.lines,
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
