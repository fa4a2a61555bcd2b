//! Jobs from the embedded log to the embedded log: exactly-once across a cancel and a
//! restart from the checkpoint, at another parallelism, and the same output whatever
//! the number of input partitions.

use crate::checkpoints::{checkpointed, wait_for_checkpoints};
use sluice::connectors::{LogSink, LogSource};
use sluice::log::{Consumer, ConsumerConfig, Log, Producer, ProducerConfig, ProducerRecord, TopicConfig};
use std::time::Duration;

const RECORDS: u64 = 20_000;

/// A log in `dir` with `input` holding the numbers 0..RECORDS (keyed by value, so
/// that each partition's share is the same whatever the job's parallelism) and an
/// empty `output` topic.
fn log_with_input(dir: &std::path::Path, partitions: u32) -> Log {
    let log = Log::open(sluice::fs::local(), dir).expect("log");
    log.create_topic("input", &TopicConfig { partitions, ..TopicConfig::default() }).expect("input topic");
    log.create_topic("output", &TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("output topic");
    produce_numbers(&log, 0..RECORDS);
    log
}

/// Appends the numbers of `range` to `input`, each keyed by itself, at event time `i` ms.
fn produce_numbers(log: &Log, range: std::ops::Range<u64>) {
    let mut producer = Producer::new(log, ProducerConfig::default()).expect("producer");
    for i in range {
        let value = i.to_string();
        let key = i.to_le_bytes();
        let record = ProducerRecord {
            topic: "input",
            partition: None,
            key: Some(&key),
            value: value.as_bytes(),
            headers: &[],
            timestamp: i as i64,
        };
        producer.send(&record).expect("send");
    }
    producer.flush().expect("flush");
}

/// Every committed value of `output`, sorted.
fn committed_output(log: &Log) -> Vec<u64> {
    let mut consumer = Consumer::subscribe(log, &["output"], &ConsumerConfig::default()).expect("consumer");
    let mut values = Vec::new();
    while let Some(fetched) = consumer.poll(1 << 20).expect("poll") {
        for record in fetched.records().expect("records") {
            values.push(std::str::from_utf8(record.value).expect("text").parse::<u64>().expect("a number"));
        }
    }
    values.sort_unstable();
    values
}

fn expected() -> Vec<u64> {
    (0..RECORDS).map(|i| i * 3).collect()
}

/// Reads `input` slowly (a pause per batch) so that a run can be stopped half-way.
fn job(env: &sluice::StreamEnvironment, log: &Log, pause: Duration) {
    let source = LogSource::<u64>::new(log, "input").expect("source").bounded().expect("bounded");
    env.source(source)
        .map(move |x| {
            std::thread::sleep(pause);
            x * 3
        })
        .sink(LogSink::new(log, "output").expect("sink").key_by(|x: &u64| x.to_le_bytes().to_vec()));
}

#[test]
fn a_job_from_log_to_log_is_exactly_once_across_a_cancel_and_a_restart_at_another_parallelism() {
    let (data, checkpoints) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let log = log_with_input(data.path(), 3);
    let env = checkpointed(2, checkpoints.path(), Duration::from_millis(20));
    job(&env, &log, Duration::from_micros(200));
    let handle = env.start().expect("the first run starts");
    wait_for_checkpoints(&handle, 3);
    handle.cancel();
    let _ = handle.join();
    let before = committed_output(&log);
    assert!(!before.is_empty() && before.len() < RECORDS as usize, "stopped half-way: {} records", before.len());
    // Its open transactions are aborted, its prepared ones committed on restore.
    let env = checkpointed(1, checkpoints.path(), Duration::from_millis(20));
    job(&env, &log, Duration::ZERO);
    let result = env.execute().expect("the restarted run finishes");
    assert!(result.checkpoints.and_then(|s| s.restored_from).is_some(), "it resumed from a checkpoint");
    assert_eq!(committed_output(&log), expected(), "every record once");
}

#[test]
fn the_output_is_the_same_whatever_the_number_of_input_partitions() {
    for partitions in [1, 3, 8] {
        let (data, checkpoints) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        let log = log_with_input(data.path(), partitions);
        let env = checkpointed(2, checkpoints.path(), Duration::from_millis(50));
        job(&env, &log, Duration::ZERO);
        env.execute().expect("the job finishes");
        assert_eq!(committed_output(&log), expected(), "{partitions} partitions");
    }
}

/// Partition 0 holds an hour of events and partition 1 the first minute again. Read by
/// one worker, partition 0's records come first: a watermark generated after the source
/// would be an hour ahead when partition 1's records arrive, and they would all be late.
/// Generated per partition, none is.
#[test]
fn per_partition_watermarks_keep_a_partition_that_runs_ahead_from_making_the_others_late() {
    use sluice::prelude::*;
    let data = tempfile::tempdir().expect("dir");
    let log = Log::open(sluice::fs::local(), data.path()).expect("log");
    log.create_topic("events", &TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("topic");
    let mut producer = Producer::new(&log, ProducerConfig::default()).expect("producer");
    let mut send = |partition: u32, second: i64| {
        let value = format!("{partition}");
        let record = ProducerRecord {
            topic: "events",
            partition: Some(partition),
            key: None,
            value: value.as_bytes(),
            headers: &[],
            timestamp: second * 1000,
        };
        producer.send(&record).expect("send");
    };
    (0..3600).for_each(|second| send(0, second));
    (0..60).for_each(|second| send(1, second));
    producer.flush().expect("flush");
    let counted = |per_partition: bool| {
        let env = StreamEnvironment::new().parallelism(1).batch_size(64);
        let out = CollectSink::new();
        let source = LogSource::<u32>::new(&log, "events").expect("source").bounded().expect("bounded");
        let strategy = WatermarkStrategy::bounded_out_of_orderness(seconds(1));
        let events = match per_partition {
            true => env.source(source.with_watermarks(strategy)),
            false => env.source(source).with_watermarks(strategy),
        };
        events.key_by(|partition| *partition).window(Tumbling::of(minutes(1))).count().sink(out.clone());
        env.execute().expect("the job finishes");
        out.records().iter().filter(|r| r.value.key == 1).map(|r| r.value.value).sum::<u64>()
    };
    assert_eq!(counted(true), 60, "generated per partition, no record of partition 1 is late");
    assert!(counted(false) < 60, "the scenario holds: generated after the source, partition 1's records are late");
}

/// Runs the job over what `input` holds now, paused at its end, and stops it once a
/// checkpoint started after the end has completed and committed (three more complete).
fn run_to_the_end_and_stop(log: &Log, checkpoints: &std::path::Path) -> sluice::JobResult {
    let env = checkpointed(2, checkpoints, Duration::from_millis(20));
    let (source, end) = LogSource::<u64>::new(log, "input").expect("source").pause_at_end().expect("pause at end");
    env.source(source).map(|x| x * 3).sink(LogSink::new(log, "output").expect("sink"));
    let handle = env.start().expect("the job starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !end.reached() {
        assert!(std::time::Instant::now() < deadline, "the job reaches the end of its input");
        assert!(!handle.is_finished(), "a paused source does not end the job");
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_end = handle.checkpoint_stats().map_or(0, |s| s.completed);
    wait_for_checkpoints(&handle, at_end + 3);
    handle.stop().expect("the job stops")
}

/// A job paused at the end of its topic and stopped, run again after more records
/// arrived, reads only the new ones: it resumes from its checkpoint.
#[test]
fn a_job_stopped_at_the_end_of_its_topic_resumes_and_reads_only_what_arrived_since() {
    let (data, checkpoints) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let log = log_with_input(data.path(), 3);
    let first = run_to_the_end_and_stop(&log, checkpoints.path());
    assert_eq!(first.metrics.source_records(), RECORDS, "the first run read everything once");
    assert_eq!(committed_output(&log), expected(), "and its output is committed when it stops");
    produce_numbers(&log, RECORDS..RECORDS + 500);
    let second = run_to_the_end_and_stop(&log, checkpoints.path());
    assert!(second.checkpoints.and_then(|s| s.restored_from).is_some(), "it resumed from the first run's checkpoint");
    assert_eq!(second.metrics.source_records(), 500, "the second run read only the new records");
    let all: Vec<u64> = (0..RECORDS + 500).map(|i| i * 3).collect();
    assert_eq!(committed_output(&log), all, "the new records once, the old ones not again");
}

/// Replay: a job started at an event time gives, over the windows from that time on,
/// the output of a job that read the topic from its start.
#[test]
fn a_job_replayed_from_a_timestamp_gives_the_same_windows_from_there_on() {
    use sluice::connectors::StartFrom;
    use sluice::prelude::*;
    let data = tempfile::tempdir().expect("dir");
    let log = log_with_input(data.path(), 3);
    let windows_from = |start: StartFrom| {
        let env = StreamEnvironment::new().parallelism(2).batch_size(100);
        let out = CollectSink::new();
        let source = LogSource::<u64>::new(&log, "input")
            .expect("source")
            .start_from(start)
            .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(100))
            .bounded()
            .expect("bounded");
        env.source(source).key_by(|x| x % 5).window(Tumbling::of(1_000)).count().sink(out.clone());
        env.execute().expect("the job finishes");
        let mut windows: Vec<(u64, i64, u64)> =
            out.records().into_iter().map(|r| (r.value.key, r.value.window.start, r.value.value)).collect();
        windows.sort_unstable();
        windows
    };
    let all = windows_from(StartFrom::Earliest);
    let replayed = windows_from(StartFrom::Timestamp(10_000));
    let expected: Vec<(u64, i64, u64)> = all.iter().copied().filter(|(_, start, _)| *start >= 10_000).collect();
    assert!(!expected.is_empty() && expected.len() < all.len());
    assert_eq!(replayed, expected);
}

/// The log source counts its consumer lag: records written and not read yet.
#[test]
fn the_log_source_reports_its_consumer_lag() {
    use sluice::prelude::*;
    let data = tempfile::tempdir().expect("dir");
    let log = log_with_input(data.path(), 3);
    let env = StreamEnvironment::new().parallelism(1).batch_size(100);
    let (source, end) = LogSource::<u64>::new(&log, "input").expect("source").pause_at_end().expect("pause at end");
    env.source(source)
        .map(|x| {
            std::thread::sleep(Duration::from_micros(20));
            x
        })
        .sink(CollectSink::new());
    let handle = env.start().expect("the job starts");
    let lag = |handle: &sluice::JobHandle| handle.snapshot().operators.iter().map(|o| o.lag).sum::<u64>();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while !end.reached() {
        seen = seen.max(lag(&handle));
        assert!(std::time::Instant::now() < deadline, "the job reaches the end of its input");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen > 0 && seen <= RECORDS, "a lag was reported while reading: {seen}");
    while lag(&handle) > 0 {
        assert!(std::time::Instant::now() < deadline, "the lag falls to zero at the end: {}", lag(&handle));
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.stop().expect("the job stops");
}

/// Partition 0 spans 1 000 s of event time and partition 1 100 000 s in as many
/// records; read in turn by one worker, partition 1 runs far ahead. Aligned to a
/// drift of 60 s, it waits for partition 0 while that one has records.
#[test]
fn watermark_alignment_keeps_a_fast_partition_within_the_drift_of_the_slow_one() {
    use sluice::prelude::*;
    use std::sync::{Arc, Mutex};
    let data = tempfile::tempdir().expect("dir");
    let log = Log::open(sluice::fs::local(), data.path()).expect("log");
    log.create_topic("skewed", &TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("topic");
    let mut producer = Producer::new(&log, ProducerConfig::default()).expect("producer");
    for i in 0..10_000u64 {
        for (partition, spacing) in [(0u32, 100i64), (1, 10_000)] {
            let timestamp = i as i64 * spacing;
            let value = (u64::from(partition) << 40 | timestamp as u64).to_string();
            let record = ProducerRecord {
                topic: "skewed",
                partition: Some(partition),
                key: None,
                value: value.as_bytes(),
                headers: &[],
                timestamp,
            };
            producer.send(&record).expect("send");
        }
    }
    producer.flush().expect("flush");
    let widest_skew = |aligned: bool| {
        let env = StreamEnvironment::new().parallelism(1).batch_size(100);
        let source = LogSource::<u64>::new(&log, "skewed")
            .expect("source")
            .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(0));
        let source = if aligned { source.with_alignment(seconds(60)) } else { source };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log_seen = seen.clone();
        env.source(source.bounded().expect("bounded"))
            .map(move |value| {
                log_seen.lock().expect("not poisoned").push(value);
                value
            })
            .sink(CollectSink::new());
        env.execute().expect("the job finishes");
        // The widest gap between the partitions' newest event times while partition 0
        // still had records to give.
        let mut newest = [i64::MIN; 2];
        let mut widest = 0;
        for value in seen.lock().expect("not poisoned").iter() {
            let (partition, timestamp) = ((value >> 40) as usize, (value & ((1 << 40) - 1)) as i64);
            newest[partition] = newest[partition].max(timestamp);
            if newest[0] > i64::MIN && newest[1] > i64::MIN && newest[0] < 999_900 {
                widest = widest.max(newest[1] - newest[0]);
            }
        }
        widest
    };
    let unaligned = widest_skew(false);
    let aligned = widest_skew(true);
    assert!(unaligned > 600_000, "the scenario holds: unaligned, partition 1 runs ahead by {unaligned} ms");
    assert!(aligned <= 60_000 + 10_000 + 100, "aligned, it stays within the drift: {aligned} ms");
}
