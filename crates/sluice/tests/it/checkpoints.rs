//! Checkpoints and recovery inside one process: a checkpointed run gives the output of
//! a plain run; a job cancelled mid-way and started again resumes from its latest
//! checkpoint and commits every result exactly once; a savepoint taken at parallelism 2
//! restores at 1 and at 4; a corrupt checkpoint is skipped for the one before it.
//!
//! Killing real processes with SIGKILL is the job of the crash test (`sluice-bench`).

use sluice::connectors::nexmark::{Event, NexmarkSource};
use sluice::prelude::*;
use sluice::runtime::checkpoint::{StateReader, StateWriter};
use sluice::runtime::{SourcePoll, SourceReader};
use sluice::{DiskBackend, StateBackendKind};
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) const EVENTS: u64 = 60_000;

/// Nexmark events, slowed down so that a job lasts long enough to be interrupted.
pub(crate) struct Slow {
    pub(crate) inner: NexmarkSource,
    pub(crate) pause: Duration,
    /// After this many batches in one run, each reader waits (polls nothing) until the
    /// job is cancelled: a run that is to be cancelled never reaches the end of its
    /// input, however slowly its checkpoints complete.
    pub(crate) held_after: Option<u32>,
}

pub(crate) struct SlowReader {
    inner: <NexmarkSource as Source>::Reader,
    pause: Duration,
    batches_left: Option<u32>,
}

impl Source for Slow {
    type Item = Event;
    type Reader = SlowReader;
    fn name(&self) -> String {
        "slow-nexmark".to_string()
    }
    fn reader(&self, worker: usize, parallelism: usize) -> sluice::Result<SlowReader> {
        Ok(SlowReader {
            inner: self.inner.reader(worker, parallelism)?,
            pause: self.pause,
            batches_left: self.held_after,
        })
    }
    fn restore_reader(&self, worker: usize, parallelism: usize, state: &StateReader) -> sluice::Result<SlowReader> {
        let inner = self.inner.restore_reader(worker, parallelism, state)?;
        Ok(SlowReader { inner, pause: self.pause, batches_left: self.held_after })
    }
}

impl SourceReader for SlowReader {
    type Batch = Vec<Record<Event>>;
    fn poll(&mut self, max_records: usize) -> sluice::Result<SourcePoll<Self::Batch>> {
        std::thread::sleep(self.pause);
        match &mut self.batches_left {
            Some(0) => return Ok(SourcePoll::Pending),
            Some(left) => *left -= 1,
            None => {}
        }
        self.inner.poll(max_records)
    }
    fn position(&self) -> u64 {
        self.inner.position()
    }
    fn snapshot(&self, state: &mut StateWriter) -> sluice::Result<()> {
        self.inner.snapshot(state)
    }
}

/// Counts each key's records in keyed state (on the job's state backend); reports every
/// 100th.
#[derive(Clone, Default)]
struct EveryHundredth {
    count: ValueState<u64>,
}

impl KeyedProcessFunction for EveryHundredth {
    type Key = usize;
    type In = usize;
    type Out = String;
    fn open(&mut self, state: &mut sluice::KeyedStateStore<usize>) {
        self.count = state.value(&StateDescriptor::new("count"));
    }
    fn process_element(&mut self, auction: usize, ctx: &mut Context<'_, usize, String>) {
        let count = ctx.value(self.count).unwrap_or(0) + 1;
        ctx.set_value(self.count, count);
        if count.is_multiple_of(100) {
            ctx.emit(format!("auction {auction} has {count} bids"));
        }
    }
}

/// Bids per auction per 10 s window, a running count of bids per bidder, and a count
/// per auction in a process function's keyed state: windows, keyed state on the job's
/// backend, and three exchanges.
pub(crate) fn job(env: &StreamEnvironment, pause: Duration, output: &Path) {
    job_into(env, pause, JsonLinesSink::directory(output).expect("output directory"));
}

/// Batches each reader reads in a run that is to be cancelled: at parallelism 2 a
/// reader's share is 117 batches of 256 records, so three such runs leave input for
/// the last one.
pub(crate) const HELD_AFTER: u32 = 30;

/// [`job`] for a run that is to be cancelled: each reader reads [`HELD_AFTER`]
/// batches, then waits.
pub(crate) fn job_to_cancel(env: &StreamEnvironment, pause: Duration, output: &Path) {
    job_to_cancel_into(env, pause, JsonLinesSink::directory(output).expect("output directory"));
}

/// [`job_to_cancel`], writing into `sink`.
pub(crate) fn job_to_cancel_into<S: Sink<String>>(env: &StreamEnvironment, pause: Duration, sink: S) {
    job_from(env, Slow { inner: NexmarkSource::new(EVENTS), pause, held_after: Some(HELD_AFTER) }, sink);
}

/// [`job`], writing into `sink`.
pub(crate) fn job_into<S: Sink<String>>(env: &StreamEnvironment, pause: Duration, sink: S) {
    job_from(env, Slow { inner: NexmarkSource::new(EVENTS), pause, held_after: None }, sink);
}

fn job_from<S: Sink<String>>(env: &StreamEnvironment, source: Slow, sink: S) {
    let events = env.source(source).with_watermarks(
        WatermarkStrategy::bounded_out_of_orderness(seconds(1)).with_timestamp(|e: &Event| e.timestamp() as i64),
    );
    let bids = events.filter_map(|e| match e {
        Event::Bid(bid) => Some(bid),
        _ => None,
    });
    let per_auction = bids
        .key_by(|b| b.auction)
        .window(Tumbling::of(seconds(10)))
        .count()
        .map(|r| format!("auction {} window {} count {}", r.key, r.window.start, r.value));
    let per_bidder = bids
        .key_by(|b| b.bidder)
        .aggregate(Count)
        .filter(|(_, n)| n % 50 == 0)
        .map(|(bidder, n)| format!("bidder {bidder} reached {n}"));
    let counted = bids.map(|b| b.auction).key_by(|a| *a).process(EveryHundredth::default());
    per_auction.union(&[per_bidder, counted]).sink(sink);
}

pub(crate) fn checkpointed(parallelism: usize, checkpoints: &Path, interval: Duration) -> StreamEnvironment {
    let config = CheckpointConfig::new(checkpoints.to_str().expect("utf-8 path"), interval);
    StreamEnvironment::new().parallelism(parallelism).batch_size(256).checkpointing(config)
}

/// Every line of every published part file, sorted; in-progress files are ignored.
pub(crate) fn published(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output directory") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        if name.starts_with("part-") {
            let text = std::fs::read_to_string(&path).expect("part file");
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

/// Compares two sorted multisets of lines, reporting a few differences, not all lines.
pub(crate) fn assert_same_lines(actual: &[String], expected: &[String], context: &str) {
    if actual == expected {
        return;
    }
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < actual.len() || j < expected.len() {
        match (actual.get(i), expected.get(j)) {
            (Some(a), Some(e)) if a == e => (i, j) = (i + 1, j + 1),
            (Some(a), Some(e)) if a < e => (extra.push(a.clone()), i += 1).1,
            (Some(_), Some(e)) => (missing.push(e.clone()), j += 1).1,
            (Some(a), None) => (extra.push(a.clone()), i += 1).1,
            (None, Some(e)) => (missing.push(e.clone()), j += 1).1,
            (None, None) => break,
        }
    }
    panic!(
        "{context}: {} lines, expected {}; {} missing (first: {:?}), {} extra (first: {:?})",
        actual.len(),
        expected.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)]
    );
}

pub(crate) fn reference(parallelism: usize) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = StreamEnvironment::new().parallelism(parallelism).batch_size(256);
    job(&env, Duration::ZERO, dir.path());
    env.execute().expect("reference run");
    let lines = published(dir.path());
    assert!(lines.len() > 100, "the reference run produced {} lines", lines.len());
    lines
}

pub(crate) fn wait_for_checkpoints(handle: &sluice::JobHandle, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.checkpoint_stats().is_none_or(|s| s.completed < at_least) {
        assert!(!handle.is_finished(), "the job ended before {at_least} checkpoints");
        assert!(Instant::now() < deadline, "no checkpoint completed in time");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_checkpointed_run_gives_the_output_of_a_plain_run() {
    let (checkpoints, output) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let env = checkpointed(2, checkpoints.path(), Duration::from_millis(20));
    job(&env, Duration::from_micros(200), output.path());
    let result = env.execute().expect("checkpointed run");
    let stats = result.checkpoints.expect("checkpoint counters");
    assert!(stats.completed >= 2, "{stats:?}");
    assert_same_lines(&published(output.path()), &reference(2), "checkpointed run");
}

#[test]
fn a_cancelled_job_resumes_from_its_latest_checkpoint_exactly_once() {
    let (checkpoints, output) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    for round in 0..3 {
        let env = checkpointed(2, checkpoints.path(), Duration::from_millis(15));
        job_to_cancel(&env, Duration::from_millis(1), output.path());
        let handle = env.start().expect("start");
        wait_for_checkpoints(&handle, 2);
        if round > 0 {
            assert!(handle.checkpoint_stats().and_then(|s| s.restored_from).is_some(), "round {round} restored");
        }
        handle.cancel();
        let ended = handle.join();
        assert!(matches!(ended, Err(sluice::Error::Cancelled)), "{ended:?}");
    }
    let env = checkpointed(2, checkpoints.path(), Duration::from_millis(15));
    job(&env, Duration::ZERO, output.path());
    env.execute().expect("the last run finishes");
    let expected = reference(2);
    assert_same_lines(&published(output.path()), &expected, "after three cancels");

    // Started again, a finished job does nothing.
    let env = checkpointed(2, checkpoints.path(), Duration::from_millis(15));
    job(&env, Duration::ZERO, output.path());
    env.execute().expect("a finished job starts and stops");
    assert_same_lines(&published(output.path()), &expected, "after a restart of the finished job");
}

/// Copies an output directory: published and in-progress part files (a savepoint
/// publishes nothing itself; what it pre-committed is published by the run restored
/// from it, or by the next checkpoint).
fn copy_output(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

#[test]
fn a_savepoint_taken_at_parallelism_2_restores_at_1_and_at_4() {
    let (checkpoints, output) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    // No periodic checkpoint: what is published when the job stops is what the
    // savepoint covers.
    let env = checkpointed(2, checkpoints.path(), Duration::from_secs(3600));
    job(&env, Duration::from_millis(1), output.path());
    let handle = env.start().expect("start");
    std::thread::sleep(Duration::from_millis(150));
    let savepoint = handle.savepoint().expect("savepoint");
    handle.cancel();
    let _ = handle.join();
    let expected = reference(2);
    for parallelism in [1, 4] {
        let (checkpoints, output_again) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
        copy_output(output.path(), output_again.path());
        let mut config = CheckpointConfig::new(checkpoints.path().to_str().expect("utf-8"), Duration::from_millis(50));
        config.restore = Some(savepoint.clone());
        let env = StreamEnvironment::new().parallelism(parallelism).batch_size(256).checkpointing(config);
        job(&env, Duration::ZERO, output_again.path());
        let result = env.execute().expect("restored run");
        assert!(result.checkpoints.and_then(|s| s.restored_from).is_some());
        assert_same_lines(&published(output_again.path()), &expected, &format!("restored at {parallelism}"));
    }
}

#[test]
fn state_on_disk_resumes_exactly_once_from_incremental_checkpoints() {
    let (checkpoints, output, state) =
        (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let on_disk = || {
        checkpointed(2, checkpoints.path(), Duration::from_millis(15))
            .state_backend(StateBackendKind::OnDisk(DiskBackend::new(state.path()).memory_budget(16 << 20)))
    };
    for _ in 0..3 {
        let env = on_disk();
        // Slow enough that checkpoints (each synced to disk) complete while records flow;
        // held, so that the run is still going when the third completes.
        job_to_cancel(&env, Duration::from_millis(3), output.path());
        let handle = env.start().expect("start");
        wait_for_checkpoints(&handle, 3);
        handle.cancel();
        let ended = handle.join();
        assert!(matches!(ended, Err(sluice::Error::Cancelled)), "{ended:?}");
    }
    let store = sluice::checkpoint::CheckpointStore::open(checkpoints.path().to_str().expect("utf-8")).expect("store");
    let latest = store.latest().expect("read").expect("a checkpoint");
    assert!(
        latest.manifest.files.iter().any(|f| !f.chain.is_empty()),
        "the latest checkpoint holds changes on top of earlier files"
    );
    let env = on_disk();
    job(&env, Duration::ZERO, output.path());
    env.execute().expect("the last run finishes");
    assert_same_lines(&published(output.path()), &reference(2), "on disk, after three cancels");
}

#[cfg(feature = "s3")]
/// The S3 bucket the test services provide (`scripts/services.sh`), if running.
fn s3_bucket() -> Option<String> {
    let bucket = std::env::var("SLUICE_TEST_S3_BUCKET").ok();
    if bucket.is_none() {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_SERVICES").is_none(),
            "SLUICE_TEST_S3_BUCKET is not set: start the services with scripts/services.sh"
        );
        eprintln!("skipped: no S3 service (run scripts/services.sh, as scripts/test.sh does)");
    }
    bucket
}

#[test]
#[cfg(feature = "s3")]
fn checkpoints_in_s3_object_storage_resume_exactly_once() {
    let Some(bucket) = s3_bucket() else { return };
    let location = format!("s3://{bucket}/test-{}-{}", std::process::id(), sluice::runtime::now_millis());
    let output = tempfile::tempdir().expect("dir");
    let in_s3 = || {
        StreamEnvironment::new()
            .parallelism(2)
            .batch_size(256)
            .checkpointing(CheckpointConfig::new(location.clone(), Duration::from_millis(20)))
    };
    for _ in 0..2 {
        let env = in_s3();
        // Slower than the local tests: a checkpoint in S3 takes longer.
        job_to_cancel(&env, Duration::from_millis(5), output.path());
        let handle = env.start().expect("start");
        wait_for_checkpoints(&handle, 2);
        handle.cancel();
        let ended = handle.join();
        assert!(matches!(ended, Err(sluice::Error::Cancelled)), "{ended:?}");
    }
    let store = sluice::checkpoint::CheckpointStore::open(&location).expect("the bucket opens");
    assert!(!store.checkpoint_ids().expect("list").is_empty(), "checkpoints are in the bucket");
    let env = in_s3();
    job(&env, Duration::ZERO, output.path());
    let result = env.execute().expect("the last run finishes");
    assert!(result.checkpoints.and_then(|s| s.restored_from).is_some(), "restored from S3");
    assert_same_lines(&published(output.path()), &reference(2), "checkpoints in S3");
}

#[test]
fn a_corrupt_checkpoint_is_skipped_for_the_one_before() {
    let (checkpoints, output) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let env = checkpointed(2, checkpoints.path(), Duration::from_millis(15));
    job(&env, Duration::from_millis(1), output.path());
    let handle = env.start().expect("start");
    wait_for_checkpoints(&handle, 3);
    handle.cancel();
    let _ = handle.join();

    let store = sluice::checkpoint::CheckpointStore::open(checkpoints.path().to_str().expect("utf-8")).expect("store");
    let latest = store.latest().expect("read").expect("a checkpoint").manifest.id;
    let dir = checkpoints.path().join(format!("chk-{latest:010}"));
    let victim = std::fs::read_dir(&dir)
        .expect("checkpoint dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "state"))
        .expect("a state file");
    let bytes = std::fs::read(&victim).expect("state file");
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).expect("truncate");

    let loaded = store.latest().expect("falls back").expect("an older checkpoint");
    assert!(loaded.manifest.id < latest, "restores {} instead of the corrupt {latest}", loaded.manifest.id);
    assert_eq!(loaded.skipped.first().map(|s| s.0), Some(latest), "the corrupt one is reported");

    // Its output may have been published: exactly-once refuses to replay it, and says
    // how to accept duplicates.
    let env = checkpointed(2, checkpoints.path(), Duration::from_millis(15));
    job(&env, Duration::ZERO, output.path());
    let error = env.execute().expect_err("an exactly-once job refuses to fall back").to_string();
    assert!(error.contains("corrupt") && error.contains("--restore"), "{error}");

    // Restored explicitly, it runs from the older checkpoint; nothing is lost.
    let mut config = CheckpointConfig::new(checkpoints.path().to_str().expect("utf-8"), Duration::from_millis(15));
    config.restore = Some(loaded.location.clone());
    let env = StreamEnvironment::new().parallelism(2).batch_size(256).checkpointing(config);
    job(&env, Duration::ZERO, output.path());
    let result = env.execute().expect("the job runs from the older checkpoint");
    assert_eq!(result.checkpoints.and_then(|s| s.restored_from), Some(loaded.manifest.id));
    let lines = published(output.path());
    let expected = reference(2);
    let missing: Vec<&String> = expected.iter().filter(|l| lines.binary_search(l).is_err()).collect();
    assert!(missing.is_empty(), "{} lines missing, such as {:?}", missing.len(), missing.first());
}
