//! End-to-end tests of the `sluice` binary.

use std::path::PathBuf;
use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice")).args(args).output().expect("the sluice binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_version() {
    let help = sluice(&["--help"]);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("demo"), "{}", text(&help.stdout));
    let version = sluice(&["--version"]);
    assert!(version.status.success());
    assert_eq!(text(&version.stdout).trim(), format!("sluice {}", env!("CARGO_PKG_VERSION")));
}

/// Parses `in N  out M` from a progress line; counts may be shortened (12.3k).
fn field(line: &str, name: &str) -> String {
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == name {
            return words.next().unwrap_or_default().to_string();
        }
    }
    panic!("no '{name}' in progress line: {line}");
}

#[test]
fn demo_writes_results_and_its_progress_line_reports_the_counters() {
    let dir = temp_dir("demo");
    let output = dir.join("hot.jsonl");
    let run = sluice(&[
        "demo",
        "--events",
        "30000",
        "--parallelism",
        "2",
        "--progress",
        "always",
        "--output",
        output.to_str().expect("utf-8 path"),
    ]);
    let stderr = text(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let results = std::fs::read_to_string(&output).expect("output written");
    let rows: Vec<serde_json::Value> = results.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert!(!rows.is_empty(), "no results");
    assert!(rows.iter().all(|r| r["bids"].as_u64().unwrap_or(0) > 0), "{results}");
    // The last progress line is drawn from the finished job's counters.
    let last = stderr.lines().rfind(|l| l.contains("watermark")).expect("a progress line");
    assert_eq!(field(last, "in"), "30.0k", "{last}");
    assert_eq!(field(last, "out"), rows.len().to_string(), "{last}");
    assert_eq!(field(last, "watermark"), "end", "{last}");
    assert_eq!(field(last, "letters"), "0", "{last}");
    let summary = stderr.lines().find(|l| l.starts_with("done:")).expect("a summary line");
    assert!(summary.contains(&format!("{} results", rows.len())), "{summary}");
    std::fs::remove_dir_all(dir).ok();
}

/// A bad job or argument exits with 2, a failure outside Sluice with 3 (and a hint),
/// a bug with 4; each prints what happened.
#[test]
fn each_kind_of_failure_has_its_exit_code_and_says_what_happened() {
    let zero = sluice(&["demo", "--events", "10", "--parallelism", "0"]);
    assert_eq!(zero.status.code(), Some(2), "a bad setting");
    assert!(text(&zero.stderr).contains("parallelism must be at least 1"), "{}", text(&zero.stderr));

    let unknown = sluice(&["no-such-command"]);
    assert_eq!(unknown.status.code(), Some(2), "a bad argument");

    let unwritable = sluice(&["generate", "--events", "10", "--output", "/nonexistent-dir/events.jsonl"]);
    let stderr = text(&unwritable.stderr);
    assert_eq!(unwritable.status.code(), Some(3), "a failure outside: {stderr}");
    assert!(stderr.contains("/nonexistent-dir/events.jsonl") && stderr.contains("No such file"), "{stderr}");
    assert!(stderr.contains("hint: check that the path exists"), "{stderr}");

    let bug = sluice(&["demo", "--events", "100000", "--progress", "never", "--inject-panic"]);
    let stderr = text(&bug.stderr);
    assert_eq!(bug.status.code(), Some(4), "a bug: {stderr}");
    assert!(stderr.contains("error: operator 'hot auction' panicked on worker"), "{stderr}");
    assert!(stderr.contains("injected panic (--inject-panic)"), "{stderr}");
}

#[test]
fn generate_writes_nexmark_events() {
    let dir = temp_dir("generate");
    let path = dir.join("events.jsonl");
    let run = sluice(&["generate", "--events", "100", "--output", path.to_str().expect("utf-8 path")]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let lines = std::fs::read_to_string(&path).expect("written");
    assert_eq!(lines.lines().count(), 100);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn savepoint_asks_a_running_job_for_a_savepoint() {
    let dir = temp_dir("savepoint");
    let checkpoints = dir.join("checkpoints");
    let output = format!("{}/", dir.join("out").display());
    let mut demo = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--events", "100000000", "--rate", "200000", "--parallelism", "2", "--progress", "never"])
        .args(["--output", &output, "--checkpoints", checkpoints.to_str().expect("utf-8")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the demo starts");
    let answer = sluice(&["savepoint", checkpoints.to_str().expect("utf-8"), "--timeout", "60s"]);
    demo.kill().expect("kill the demo");
    let _ = demo.wait();
    assert!(answer.status.success(), "{}", text(&answer.stderr));
    let savepoint = text(&answer.stdout).trim().to_string();
    assert!(savepoint.contains("savepoints/sp-"), "{savepoint}");
    assert!(PathBuf::from(&savepoint).join("manifest.json").exists(), "{savepoint} has a manifest");

    // Nobody checkpoints into an empty location: the command says so and fails.
    let nobody = sluice(&["savepoint", dir.join("nobody").to_str().expect("utf-8"), "--timeout", "1s"]);
    assert!(!nobody.status.success());
    assert!(
        text(&nobody.stderr).contains("is a job with checkpoints in this location running"),
        "{}",
        text(&nobody.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_prints_the_job_without_running_it() {
    let run = sluice(&["demo", "--explain", "--parallelism", "3"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let plan = text(&run.stdout);
    let rows: Vec<Vec<&str>> = plan.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["id", "operator", "kind", "parallelism", "state", "inputs"], "{plan}");
    assert!(rows.contains(&vec!["5", "window", "operator", "3", "keyed", "(heap)", "4", "hash"]), "{plan}");
    assert!(rows.contains(&vec!["10", "stdout", "sink", "3", "-", "9", "chained"]), "{plan}");
    assert!(!text(&run.stderr).contains("done:"), "the job did not run");
}
