//! End-to-end tests of the log's commands: `sluice topic`, `produce`, `consume`, `group`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-log-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `sluice ARGS` on the log in `data`, with `input` on standard input.
fn sluice(data: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_DATA_DIR", data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sluice binary runs");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("input written");
    child.wait_with_output().expect("it exits")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", stderr(&output));
    stdout(&output)
}

/// Asserts a user error (exit code 2) whose message contains `expected`.
fn refused(output: Output, expected: &str) {
    assert_eq!(output.status.code(), Some(2), "stdout {} stderr {}", stdout(&output), stderr(&output));
    assert!(stderr(&output).contains(expected), "{}", stderr(&output));
}

#[test]
fn topics_are_produced_to_consumed_and_read_by_groups() {
    let data = temp_dir("round-trip");
    ok(sluice(&data, &["topic", "create", "orders", "--partitions", "3", "--retention", "7d"], ""));
    assert!(ok(sluice(&data, &["topic", "list"], "")).contains("orders\t3 partitions"));
    let lines: String = (0..100).map(|i| format!("{{\"id\":{i},\"at\":{}}}\n", 1_000 * i)).collect();
    let file = data.join("orders.jsonl");
    std::fs::write(&file, &lines).expect("input file");
    let file = file.to_str().expect("utf-8 path");
    ok(sluice(&data, &["produce", "orders", "--file", file, "--key-field", "id", "--timestamp-field", "at"], ""));
    let all = ok(sluice(&data, &["consume", "orders"], ""));
    let mut got: Vec<&str> = all.lines().collect();
    got.sort_unstable();
    let mut expected: Vec<&str> = lines.lines().collect();
    expected.sort_unstable();
    assert_eq!(got, expected, "every line comes back once");
    // From an event time: in each partition, from its first record at or after it.
    let since = ok(sluice(&data, &["consume", "orders", "--from", "1970-01-01T00:01:30Z"], ""));
    assert_eq!(since.lines().count(), 10, "{since}");
    // A group reads part, then resumes where it stopped.
    let first = ok(sluice(&data, &["consume", "orders", "--group", "billing", "--max-records", "40"], ""));
    let rest = ok(sluice(&data, &["consume", "orders", "--group", "billing"], ""));
    assert_eq!((first.lines().count(), first.lines().count() + rest.lines().count()), (40, 100));
    let described = ok(sluice(&data, &["group", "describe", "billing"], ""));
    assert!(
        described.lines().filter(|line| line.starts_with("  orders")).all(|line| line.ends_with(" 0")),
        "{described}"
    );
    assert!(ok(sluice(&data, &["group", "list"], "")).contains("billing"));
    // From standard input, with explicit partitions.
    ok(sluice(&data, &["produce", "orders", "--partition", "1"], "{\"late\":true}\n"));
    let one = ok(sluice(&data, &["consume", "orders", "--partition", "1", "--from", "latest"], ""));
    assert!(one.is_empty(), "{one}");
    let describe = ok(sluice(&data, &["topic", "describe", "orders"], ""));
    assert!(describe.contains("retention   604800 s"), "{describe}");
    ok(sluice(&data, &["topic", "delete", "orders"], ""));
    assert!(!ok(sluice(&data, &["topic", "list"], "")).contains("orders"));
}

#[test]
fn bad_input_is_refused_with_its_line_and_nothing_half_written() {
    let data = temp_dir("bad-input");
    ok(sluice(&data, &["topic", "create", "events"], ""));
    let file = data.join("bad.jsonl");
    std::fs::write(&file, "{\"a\":1}\n{\"a\":2}\nnot json\n{\"a\":4}\n").expect("input file");
    let file = file.to_str().expect("utf-8 path");
    refused(sluice(&data, &["produce", "events", "--file", file], ""), "line 3: not JSON");
    assert_eq!(ok(sluice(&data, &["consume", "events"], "")), "", "a file is written whole or not at all");
    refused(
        sluice(&data, &["produce", "events", "--max-record-bytes", "10"], "{\"a\":\"a long value\"}\n"),
        "line 1: a record of 20 bytes is over the limit of 10 bytes",
    );
    refused(sluice(&data, &["produce", "events", "--key-field", "id"], "{\"a\":1}\n"), "line 1: it has no field 'id'");
    refused(sluice(&data, &["produce", "nope"], "{}\n"), "there is no topic nope");
    refused(
        sluice(&data, &["produce", "events", "--partition", "4"], "{}\n"),
        "topic events has no partition 4 (it has 1)",
    );
    refused(sluice(&data, &["consume", "events", "--partition", "1"], ""), "has no partition 1");
    refused(sluice(&data, &["topic", "create", "x", "--retention", "3 weeks"], ""), "neither a duration");
    refused(sluice(&data, &["topic", "create", "events"], ""), "topic events exists");
    refused(sluice(&data, &["topic", "create", "a/b"], ""), "not a valid topic name");
    refused(sluice(&data, &["group", "describe", "nobody"], ""), "there is no consumer group nobody");
    let bad_from = sluice(&data, &["consume", "events", "--from", "yesterday"], "");
    assert_eq!(bad_from.status.code(), Some(2), "clap refuses it: {}", stderr(&bad_from));
    assert!(stderr(&bad_from).contains("not earliest, latest, an offset or an RFC 3339 time"));
    assert_eq!(ok(sluice(&data, &["consume", "events"], "")), "", "nothing was written by any of them");
}

#[test]
fn the_pipeline_writes_its_topics_and_run_again_resumes_from_its_checkpoints() {
    let data = temp_dir("pipeline");
    let run = ["pipeline", "--transactions", "5000", "--orders", "3000", "--progress", "always"];
    let first = sluice(&data, &run, "");
    assert!(first.status.success(), "{}", stderr(&first));
    let log = stderr(&first);
    assert!(log.contains("run 1: produced 5003 transactions"), "{log}");
    assert!(log.contains("fraud-detection: done:") && log.contains("order-analytics: done:"), "{log}");
    let alerts = ok(sluice(&data, &["consume", "fraud-alerts"], "")).lines().count();
    let enriched = ok(sluice(&data, &["consume", "enriched-orders"], "")).lines().count();
    assert!(alerts > 0 && enriched > 0, "the jobs committed output: {alerts} alerts, {enriched} enriched orders");
    let dead = std::fs::read_to_string(data.join("dead-letters/transactions.jsonl")).expect("dead letters");
    assert_eq!(dead.lines().count(), 3, "the generator's three bad transaction lines: {dead}");

    let second = sluice(&data, &run, "");
    assert!(second.status.success(), "{}", stderr(&second));
    let log = stderr(&second);
    assert!(log.contains("run 2: produced") && log.contains("(resumed from checkpoint"), "{log}");
    assert!(log.contains("fraud-detection: done: 5000 events"), "only the new (good) transactions are read: {log}");
    let more = ok(sluice(&data, &["consume", "fraud-alerts"], "")).lines().count();
    assert!(more > alerts, "the second run added alerts: {alerts} then {more}");
}

#[test]
fn the_demo_writes_its_results_into_a_topic() {
    let data = temp_dir("demo-topic");
    let checkpoints = data.join("checkpoints");
    let checkpoints = checkpoints.to_str().expect("utf-8 path");
    let run =
        ["demo", "--events", "50000", "--topic", "hot-auctions", "--checkpoints", checkpoints, "--progress", "never"];
    ok(sluice(&data, &run, ""));
    let results = ok(sluice(&data, &["consume", "hot-auctions"], ""));
    assert!(results.lines().count() > 0, "committed results in the topic");
    assert!(results.lines().all(|line| line.contains("\"auction\"")), "{results}");
}

#[test]
fn the_demo_reads_its_events_from_a_topic_with_the_generators_results() {
    let data = temp_dir("demo-input-topic");
    let events = data.join("events.jsonl");
    let events = events.to_str().expect("utf-8 path");
    ok(sluice(&data, &["generate", "--events", "40000", "--output", events], ""));
    ok(sluice(&data, &["topic", "create", "nexmark", "--partitions", "3"], ""));
    ok(sluice(&data, &["produce", "nexmark", "--file", events], ""));
    let (from_topic, generated) = (data.join("from-topic.jsonl"), data.join("generated.jsonl"));
    let common = ["--parallelism", "2", "--progress", "never", "--output"];
    let mut topic_run = vec!["demo", "--input-topic", "nexmark"];
    topic_run.extend(common);
    topic_run.push(from_topic.to_str().expect("utf-8 path"));
    ok(sluice(&data, &topic_run, ""));
    let mut generator_run = vec!["demo", "--events", "40000"];
    generator_run.extend(common);
    generator_run.push(generated.to_str().expect("utf-8 path"));
    ok(sluice(&data, &generator_run, ""));
    let sorted = |path: &Path| {
        let mut lines: Vec<String> =
            std::fs::read_to_string(path).expect("output").lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let expected = sorted(&generated);
    assert!(!expected.is_empty());
    assert_eq!(sorted(&from_topic), expected, "the same hot auctions from the topic's 3 partitions");
}
