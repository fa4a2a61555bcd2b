//! `GROUP BY` without windows gives updating results: a changelog of inserts and
//! updates that, applied in order, holds what a plain Rust loop over the same events
//! computes, at one and two workers and across a restart from a checkpoint. A sink that
//! writes appends only is refused when the job is planned.

mod common;

use serde_json::Value;
use sluice_connectors::nexmark::{self, Event};
use sluice_job::Job;
use std::collections::BTreeMap;
use std::path::Path;

const EVENTS: usize = 30_000;

fn tables(extra: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nexmark/tables.sql");
    let tables = std::fs::read_to_string(path).expect("the example tables");
    tables.replace("'events.num' = '1000000'", &format!("'events.num' = '{EVENTS}'{extra}"))
}

/// The job writing `select` into `out` (columns `columns`) as a debezium-json changelog.
fn job(columns: &str, select: &str, out: &Path, settings: &str) -> String {
    format!(
        "{settings}\n{}\nCREATE TABLE out ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = \
         'debezium-json');\nINSERT INTO out {select}",
        tables(""),
        out.display()
    )
}

fn compile(job: &str, parallelism: usize) -> Job {
    let compiled = sluice_sql::compile(job, &sluice_sql::Functions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut runtime = compiled.runtime;
    runtime.parallelism = parallelism;
    Job::new(compiled.graph.expect("an insert"), runtime).checkpointing(compiled.checkpointing)
}

/// What the changelog in `dir` materializes, by `key`, with how many rows were
/// retracted. Every retraction must take back the row its key holds.
fn materialize(dir: &Path, key: &str) -> (BTreeMap<u64, Value>, usize) {
    let mut rows: Vec<Value> = Vec::new();
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .expect("the sink's directory")
        .map(|e| e.expect("a part").path())
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    parts.sort();
    for part in parts {
        let text = std::fs::read_to_string(part).expect("readable");
        rows.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).expect("JSON")));
    }
    // A key's changes are all written by the one worker that owns it, in order, into
    // that worker's part files, which sort in the order they were written.
    let mut table: BTreeMap<u64, Value> = BTreeMap::new();
    let mut retracted = 0;
    for row in rows {
        match row["op"].as_str().expect("an op") {
            "c" => {
                let after = row["after"].clone();
                let id = after[key].as_u64().expect("a key");
                assert!(table.insert(id, after).is_none(), "{key} {id} inserted while it holds a row: {row}");
            }
            "d" => {
                let before = row["before"].clone();
                let id = before[key].as_u64().expect("a key");
                assert_eq!(table.remove(&id).as_ref(), Some(&before), "a retraction of a row {key} {id} does not hold");
                retracted += 1;
            }
            other => panic!("an unknown op {other}"),
        }
    }
    (table, retracted)
}

fn bids() -> Vec<nexmark::Bid> {
    nexmark::generate(EVENTS)
        .into_iter()
        .filter_map(|e| match e {
            Event::Bid(b) => Some(b),
            _ => None,
        })
        .collect()
}

/// Per auction, the number of bids and the highest price.
fn bids_per_auction() -> BTreeMap<u64, (u64, u64)> {
    let mut expected: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for bid in bids() {
        let entry = expected.entry(bid.auction as u64).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(bid.price as u64);
    }
    expected
}

const COUNT_AND_MAX: &str = "SELECT auction, COUNT(*) AS bids, MAX(price) AS top FROM bid GROUP BY auction;";

fn counts(table: &BTreeMap<u64, Value>) -> BTreeMap<u64, (u64, u64)> {
    table.iter().map(|(k, v)| (*k, (v["bids"].as_u64().expect("a count"), v["top"].as_u64().expect("a max")))).collect()
}

#[test]
fn a_group_by_without_windows_updates_each_group_as_bids_arrive() {
    let expected = bids_per_auction();
    for parallelism in [1, 2] {
        let out = tempfile::tempdir().expect("output directory");
        let job = job("auction BIGINT, bids BIGINT, top BIGINT", COUNT_AND_MAX, out.path(), "");
        compile(&job, parallelism).execute().expect("the job runs");
        let (table, retracted) = materialize(out.path(), "auction");
        assert!(retracted > 0, "groups were updated, not only inserted");
        assert_eq!(counts(&table), expected, "at {parallelism} workers");
    }
}

#[test]
fn a_having_clause_filters_updating_results() {
    let out = tempfile::tempdir().expect("output directory");
    let select = "SELECT auction, COUNT(*) AS bids FROM bid GROUP BY auction HAVING COUNT(*) >= 10;";
    compile(&job("auction BIGINT, bids BIGINT", select, out.path(), ""), 2).execute().expect("the job runs");
    let (table, _) = materialize(out.path(), "auction");
    let expected: BTreeMap<u64, u64> =
        bids_per_auction().into_iter().filter(|(_, (n, _))| *n >= 10).map(|(k, (n, _))| (k, n)).collect();
    assert!(!expected.is_empty(), "some auctions have ten bids");
    let got: BTreeMap<u64, u64> = table.iter().map(|(k, v)| (*k, v["bids"].as_u64().expect("a count"))).collect();
    assert_eq!(got, expected);
}

#[test]
fn updating_results_into_an_append_only_sink_are_refused_when_planned() {
    let out = tempfile::tempdir().expect("output directory");
    let job = format!(
        "{}\nCREATE TABLE out (auction BIGINT, bids BIGINT, top BIGINT) WITH ('connector' = 'filesystem', 'path' = \
         '{}', 'format' = 'json');\nINSERT INTO out {COUNT_AND_MAX}",
        tables(""),
        out.path().display()
    );
    let error = sluice_sql::compile(&job, &sluice_sql::Functions::default()).err().expect("refused").to_string();
    assert!(error.contains("table out cannot take"), "the error names the sink: {error}");
    assert!(error.contains("line"), "the error names the statement's line: {error}");
}

/// Stopped after three checkpoints at two workers, resumed at one: the changelog of
/// both runs together materializes the right counts, every update taking back the row
/// before it, none lost or repeated.
#[test]
fn a_group_aggregation_resumes_from_a_checkpoint_at_another_parallelism() {
    let out = tempfile::tempdir().expect("output directory");
    let checkpoints = tempfile::tempdir().expect("checkpoint directory");
    let settings = format!(
        "SET 'execution.checkpointing.interval' = '100ms';\nSET 'execution.checkpointing.dir' = '{}';",
        checkpoints.path().display()
    );
    let job = job("auction BIGINT, bids BIGINT, top BIGINT", COUNT_AND_MAX, out.path(), &settings).replace(
        &format!("'events.num' = '{EVENTS}'"),
        &format!("'events.num' = '{EVENTS}', 'first-event.rate' = '20000'"),
    );
    let first = compile(&job, 2).start().expect("the first run starts");
    while first.checkpoint_stats().is_none_or(|s| s.completed < 3) {
        assert!(!first.is_finished(), "the first run ended before its third checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stopped = first.stop().expect("the first run stops");
    let read = stopped.metrics.source_records();
    assert!(read > 0 && read < EVENTS as u64, "stopped halfway: {read} of {EVENTS} events read");

    let second = compile(&job, 1).execute().expect("the second run resumes and ends");
    assert!(second.checkpoints.and_then(|s| s.restored_from).is_some(), "the second run restored a checkpoint");
    let (table, retracted) = materialize(out.path(), "auction");
    assert!(retracted > 0, "groups were updated");
    assert_eq!(counts(&table), bids_per_auction());
}

/// Updating results into an `upsert-log` table: a compacted topic of the embedded log
/// whose latest record per key (the primary key, as JSON) is the key's row, written
/// in transactions committed with the job's checkpoints.
#[test]
fn updating_results_reach_an_upsert_log_table_keyed_by_its_primary_key() {
    let data = tempfile::tempdir().expect("log directory");
    let checkpoints = tempfile::tempdir().expect("checkpoint directory");
    let job = format!(
        "SET 'execution.checkpointing.interval' = '100ms';\nSET 'execution.checkpointing.dir' = '{}';\n{}\n\
         CREATE TABLE out (auction BIGINT, bids BIGINT, top BIGINT, PRIMARY KEY (auction) NOT ENFORCED)
           WITH ('connector' = 'upsert-log', 'topic' = 'bids-per-auction', 'log.dir' = '{}',
                 'key.format' = 'json', 'value.format' = 'json');\nINSERT INTO out {COUNT_AND_MAX}",
        checkpoints.path().display(),
        tables(""),
        data.path().display()
    );
    let result = compile(&job, 2).execute().expect("the job runs");
    assert!(result.checkpoints.is_some_and(|s| s.completed > 0), "checkpoints completed: the writes were transactions");

    let log = sluice_log::Log::open(sluice_fs::local(), data.path()).expect("the log");
    assert!(log.describe("bids-per-auction").expect("the topic was created").compact, "compacted");
    let config = sluice_log::ConsumerConfig::default();
    let mut consumer = sluice_log::Consumer::subscribe(&log, &["bids-per-auction"], &config).expect("a consumer");
    let mut latest: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut records = 0;
    while let Some(fetched) = consumer.poll(1 << 20).expect("read") {
        for record in fetched.records().expect("whole batches") {
            let key: Value = serde_json::from_slice(record.key.expect("a key")).expect("a JSON key");
            let value: Value = serde_json::from_slice(record.value).expect("a JSON row");
            let auction = key["auction"].as_u64().expect("the key is the primary key");
            assert_eq!(value["auction"], key["auction"], "the value holds every column");
            let row = (value["bids"].as_u64().expect("a count"), value["top"].as_u64().expect("a max"));
            latest.insert(auction, row);
            records += 1;
        }
    }
    let expected = bids_per_auction();
    assert!(records > expected.len(), "updates were written, not only inserts: {records} records");
    assert_eq!(latest, expected);
}

#[test]
fn a_left_join_pads_unmatched_rows_and_takes_them_back_when_a_match_arrives() {
    let events = nexmark::generate(EVENTS);
    let mut auctions: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for event in &events {
        if let Event::Auction(a) = event {
            auctions.entry(a.seller as u64).or_default().push(a.id as u64);
        }
    }
    let row = |person: u64, auction: Option<u64>| serde_json::json!({"person": person, "auction": auction}).to_string();
    let mut expected: Vec<String> = Vec::new();
    for event in &events {
        if let Event::Person(p) = event {
            match auctions.get(&(p.id as u64)) {
                Some(ids) => expected.extend(ids.iter().map(|a| row(p.id as u64, Some(*a)))),
                None => expected.push(row(p.id as u64, None)),
            }
        }
    }
    expected.sort();
    assert!(expected.iter().any(|r| r.contains("null")), "some persons open no auction");
    for parallelism in [1, 2] {
        let out = tempfile::tempdir().expect("output directory");
        let select = "SELECT P.id AS person, A.id AS auction FROM person P LEFT JOIN auction A ON P.id = A.seller";
        compile(&job("person BIGINT, auction BIGINT", select, out.path(), ""), parallelism).execute().expect("runs");
        let (mut got, retracted) = common::materialize_changelog(out.path());
        got.sort();
        assert!(retracted > 0, "padded rows were taken back when their match arrived");
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn a_full_join_keeps_the_unmatched_rows_of_both_sides() {
    // Persons with the auctions they opened, under a condition besides the key's: the
    // first auctions only. A person opening none of them, and every other auction,
    // stay padded.
    let events = nexmark::generate(EVENTS);
    let persons: Vec<u64> = events
        .iter()
        .filter_map(|e| if let Event::Person(p) = e { Some(p.id as u64) } else { None })
        .filter(|id| *id <= 1005)
        .collect();
    let auctions: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| if let Event::Auction(a) = e { Some((a.id as u64, a.seller as u64)) } else { None })
        .collect();
    let row = |person: Option<u64>, auction: Option<u64>| {
        serde_json::json!({"person": person, "auction": auction}).to_string()
    };
    let matches = |p: u64, (id, seller): &(u64, u64)| *seller == p && *id <= 1010;
    let mut expected: Vec<String> = Vec::new();
    for &p in &persons {
        let matched: Vec<u64> = auctions.iter().filter(|a| matches(p, a)).map(|a| a.0).collect();
        match matched.is_empty() {
            true => expected.push(row(Some(p), None)),
            false => expected.extend(matched.into_iter().map(|a| row(Some(p), Some(a)))),
        }
    }
    for a in &auctions {
        if !persons.iter().any(|&p| matches(p, a)) {
            expected.push(row(None, Some(a.0)));
        }
    }
    expected.sort();
    assert!(expected.iter().any(|r| r.starts_with("{\"auction\":null")), "a person stays padded");
    assert!(expected.iter().any(|r| r.ends_with("\"person\":null}")), "an auction stays padded");
    let select = "SELECT P.id AS person, A.id AS auction
        FROM (SELECT * FROM person WHERE id <= 1005) P FULL JOIN auction A ON P.id = A.seller AND A.id <= 1010";
    for parallelism in [1, 2] {
        let out = tempfile::tempdir().expect("output directory");
        compile(&job("person BIGINT, auction BIGINT", select, out.path(), ""), parallelism).execute().expect("runs");
        let (mut got, _) = common::materialize_changelog(out.path());
        got.sort();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

/// A job writes bids into a topic of the embedded log (three partitions, keyed by
/// auction); another reads them back as a table with a watermark, bounded at what the
/// topic holds, and counts them per auction and window; a value that is not a row goes
/// to the dead letters.
#[test]
fn a_log_topic_written_by_one_job_is_read_back_as_a_table_by_another() {
    let data = tempfile::tempdir().expect("log directory");
    let log = sluice_log::Log::open(sluice_fs::local(), data.path()).expect("the log");
    let config = sluice_log::TopicConfig { partitions: 3, ..Default::default() };
    log.create_topic("bids", &config).expect("a topic");
    let write = format!(
        "{}\nCREATE TABLE bids (auction BIGINT, price BIGINT, dateTime TIMESTAMP(3))
           WITH ('connector' = 'log', 'topic' = 'bids', 'log.dir' = '{}', 'format' = 'json',
                 'key.fields' = 'auction', 'key.format' = 'json');
         INSERT INTO bids SELECT auction, price, dateTime FROM bid;",
        tables(""),
        data.path().display()
    );
    compile(&write, 2).execute().expect("the writing job runs");
    let mut producer = sluice_log::Producer::new(&log, sluice_log::ProducerConfig::default()).expect("a producer");
    let bad = sluice_log::ProducerRecord {
        topic: "bids",
        partition: Some(1),
        key: None,
        value: b"not a row",
        headers: &[],
        timestamp: 0,
    };
    producer.send(&bad).expect("sent");
    producer.flush().expect("flushed");

    let mut expected: BTreeMap<(u64, String), u64> = BTreeMap::new();
    for bid in bids() {
        let start = bid.date_time - bid.date_time % 10_000;
        let seconds = (start - nexmark::BASE_TIME) / 1000;
        let start = format!("2026-01-01 00:{:02}:{:02}.000", seconds / 60, seconds % 60);
        *expected.entry((bid.auction as u64, start)).or_default() += 1;
    }
    for parallelism in [1, 2] {
        let out = tempfile::tempdir().expect("output directory");
        let read = format!(
            "CREATE TABLE bids (auction BIGINT, price BIGINT, dateTime TIMESTAMP(3),
               WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND)
               WITH ('connector' = 'log', 'topic' = 'bids', 'log.dir' = '{}', 'format' = 'json',
                     'scan.bounded.mode' = 'latest-offset');
             CREATE TABLE out (auction BIGINT, window_start TIMESTAMP(3), n BIGINT)
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO out SELECT auction, window_start, COUNT(*) AS n
               FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
               GROUP BY auction, window_start, window_end;",
            data.path().display(),
            out.path().display()
        );
        let result = compile(&read, parallelism).execute().expect("the reading job runs");
        assert_eq!(result.metrics.dead_letters(), 1, "the bad value is a dead letter");
        let mut got: BTreeMap<(u64, String), u64> = BTreeMap::new();
        for part in std::fs::read_dir(out.path()).expect("the output") {
            for line in std::fs::read_to_string(part.expect("a part").path()).expect("readable").lines() {
                let row: Value = serde_json::from_str(line).expect("JSON");
                let key = (row["auction"].as_u64().expect("id"), row["window_start"].as_str().expect("start").into());
                got.insert(key, row["n"].as_u64().expect("a count"));
            }
        }
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn a_datagen_table_makes_each_sequence_value_once_and_the_same_rows_at_any_parallelism() {
    let run = |parallelism| -> Vec<(i64, f64, String, Option<bool>, i64)> {
        let out = tempfile::tempdir().expect("output directory");
        let job = format!(
            "CREATE TABLE gen (id BIGINT, amount DOUBLE, name STRING, flag BOOLEAN, at TIMESTAMP(3))
               WITH ('connector' = 'datagen', 'rows-per-second' = '10000000',
                     'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '20000',
                     'fields.amount.min' = '0', 'fields.amount.max' = '100',
                     'fields.name.length' = '5', 'fields.flag.null-rate' = '0.5',
                     'fields.at.max-past' = '1 min');
             CREATE TABLE out (id BIGINT, amount DOUBLE, name STRING, flag BOOLEAN, at TIMESTAMP(3))
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             INSERT INTO out SELECT * FROM gen;",
            out.path().display()
        );
        compile(&job, parallelism).execute().expect("the job runs");
        let mut rows = Vec::new();
        for part in std::fs::read_dir(out.path()).expect("the output") {
            for line in std::fs::read_to_string(part.expect("a part").path()).expect("readable").lines() {
                let row: Value = serde_json::from_str(line).expect("JSON");
                let at = row["at"].as_str().expect("a time").to_string();
                rows.push((
                    row["id"].as_i64().expect("an id"),
                    row["amount"].as_f64().expect("an amount"),
                    row["name"].as_str().expect("a name").to_string(),
                    row["flag"].as_bool(),
                    at.len() as i64,
                ));
            }
        }
        rows.sort_by_key(|r| r.0);
        rows
    };
    let one = run(1);
    assert_eq!(one.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=20_000).collect::<Vec<_>>(), "each id once");
    assert!(one.iter().all(|r| (0.0..=100.0).contains(&r.1)), "amounts between min and max");
    assert!(one.iter().all(|r| r.2.len() == 5 && r.2.chars().all(|c| c.is_ascii_alphanumeric())), "names of 5");
    let nulls = one.iter().filter(|r| r.3.is_none()).count();
    assert!((8_000..12_000).contains(&nulls), "about half the flags NULL: {nulls}");
    assert!(one.iter().any(|r| r.3 == Some(true)) && one.iter().any(|r| r.3 == Some(false)));
    assert_eq!(run(2), one, "the same rows at two workers");
}

#[test]
fn distinct_aggregates_of_updating_rows_take_values_back() {
    // Each auction's highest bid so far is updated as bids arrive; per auction % 5, the
    // distinct highest bids, and the sum of their distinct last digits.
    let select = "SELECT g, COUNT(DISTINCT top) AS tops, COUNT(*) AS auctions, SUM(DISTINCT top % 10) AS digits
        FROM (SELECT auction % 5 AS g, MAX(price) AS top FROM bid GROUP BY auction) GROUP BY g";
    let mut tops: BTreeMap<u64, u64> = BTreeMap::new();
    for bid in bids() {
        let top = tops.entry(bid.auction as u64).or_default();
        *top = (*top).max(bid.price as u64);
    }
    let mut groups: BTreeMap<u64, (std::collections::BTreeSet<u64>, u64)> = BTreeMap::new();
    for (auction, top) in &tops {
        let group = groups.entry(auction % 5).or_default();
        group.0.insert(*top);
        group.1 += 1;
    }
    let expected: BTreeMap<u64, (u64, u64, u64)> = groups
        .into_iter()
        .map(|(g, (distinct, n))| {
            let digits: std::collections::BTreeSet<u64> = distinct.iter().map(|t| t % 10).collect();
            (g, (distinct.len() as u64, n, digits.iter().sum()))
        })
        .collect();
    for parallelism in [1, 2] {
        let out = tempfile::tempdir().expect("output directory");
        let columns = "g BIGINT, tops BIGINT, auctions BIGINT, digits BIGINT";
        compile(&job(columns, select, out.path(), ""), parallelism).execute().expect("the job runs");
        let (table, retracted) = materialize(out.path(), "g");
        assert!(retracted > 0, "the groups were updated");
        let got: BTreeMap<u64, (u64, u64, u64)> = table
            .iter()
            .map(|(g, row)| {
                let n = |c: &str| row[c].as_u64().expect("a number");
                (*g, (n("tops"), n("auctions"), n("digits")))
            })
            .collect();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}
