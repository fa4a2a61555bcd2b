//! Exactly-once output where it was found to leak: a crash right after a savepoint,
//! commits that fail until the job crashes, a single-file at-least-once sink resumed,
//! and power cuts at any write of the checkpoint and output files.

use crate::checkpoints::{
    assert_same_lines, checkpointed, job, job_into, job_to_cancel, job_to_cancel_into, published, reference,
    wait_for_checkpoints, Slow, EVENTS, HELD_AFTER,
};
use sluice::checkpoint::{CheckpointStore, Storage};
use sluice::connectors::nexmark::{Event, NexmarkSource};
use sluice::fs::{FileSystem, SimulatedFs};
use sluice::prelude::*;
use sluice::runtime::checkpoint::Committer;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn a_crash_right_after_a_savepoint_publishes_nothing_twice() {
    let (checkpoints, output) = (dir(), dir());
    let mut config = CheckpointConfig::new(checkpoints.path().to_str().expect("utf-8"), Duration::from_millis(20));
    // No checkpoint for a second after the savepoint: the crash comes before the next.
    config.min_pause = Duration::from_secs(1);
    let env = StreamEnvironment::new().parallelism(2).batch_size(256).checkpointing(config);
    // Held, so that the job is still running when the savepoint is asked for.
    job_to_cancel(&env, Duration::from_millis(1), output.path());
    let handle = env.start().expect("start");
    wait_for_checkpoints(&handle, 1);
    let savepoint = handle.savepoint().expect("savepoint");
    handle.cancel(); // as a crash: nothing more is committed
    let _ = handle.join();

    let store = CheckpointStore::open(checkpoints.path().to_str().expect("utf-8")).expect("store");
    let savepoint_id: u64 = savepoint.rsplit("sp-").next().and_then(|id| id.parse().ok()).expect("savepoint id");
    let newest_checkpoint = store.checkpoint_ids().expect("list").into_iter().max().expect("a checkpoint");
    assert!(newest_checkpoint < savepoint_id, "the crash came after the savepoint, before another checkpoint");

    // Restarted (at another parallelism), the job resumes from the checkpoint before the
    // savepoint: what the savepoint covered must not be in the output twice.
    let env = checkpointed(1, checkpoints.path(), Duration::from_millis(20));
    job(&env, Duration::ZERO, output.path());
    let result = env.execute().expect("the restarted run finishes");
    assert_eq!(result.checkpoints.and_then(|s| s.restored_from), Some(newest_checkpoint));
    assert_same_lines(&published(output.path()), &reference(2), "after a savepoint and a crash");
}

/// A sink whose commits fail while `failing` is set.
struct FailingCommits {
    inner: JsonLinesSink<String>,
    failing: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
}

struct FailingCommitter {
    inner: Arc<dyn Committer>,
    failing: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
}

impl Committer for FailingCommitter {
    fn commit(&self, committable: &[u8]) -> sluice::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(sluice::Error::io("output", std::io::Error::other("the disk is full")));
        }
        self.inner.commit(committable)
    }
    fn recover(&self, committables: &[Vec<u8>]) -> sluice::Result<()> {
        self.inner.recover(committables)
    }
}

impl Sink<String> for FailingCommits {
    type Writer = <JsonLinesSink<String> as Sink<String>>::Writer;
    fn name(&self) -> String {
        self.inner.name()
    }
    fn writer(&self, context: &SinkContext) -> sluice::Result<Self::Writer> {
        self.inner.writer(context)
    }
    fn committer(&self) -> Option<Arc<dyn Committer>> {
        let inner = self.inner.committer()?;
        Some(Arc::new(FailingCommitter { inner, failing: self.failing.clone(), failures: self.failures.clone() }))
    }
}

#[test]
fn transactions_whose_commit_failed_are_committed_after_a_crash() {
    let (checkpoints, output) = (dir(), dir());
    let failing = Arc::new(AtomicBool::new(true));
    let failures = Arc::new(AtomicUsize::new(0));
    let env = checkpointed(2, checkpoints.path(), Duration::from_millis(15));
    let sink = FailingCommits {
        inner: JsonLinesSink::directory(output.path()).expect("output"),
        failing: failing.clone(),
        failures: failures.clone(),
    };
    job_to_cancel_into(&env, Duration::from_millis(1), sink);
    let handle = env.start().expect("start");
    wait_for_checkpoints(&handle, 3);
    handle.cancel();
    let _ = handle.join();
    assert!(failures.load(Ordering::SeqCst) >= 3, "commits failed in several checkpoints");
    assert!(published(output.path()).is_empty(), "nothing was published while commits failed");

    let env = checkpointed(2, checkpoints.path(), Duration::from_millis(15));
    job(&env, Duration::ZERO, output.path());
    env.execute().expect("the restarted run finishes");
    assert_same_lines(&published(output.path()), &reference(2), "after commits failed and a crash");
}

/// A stateless job: every bid as a line. Replayed records cannot change what it
/// writes, so at least once means every line is there. A run to be cancelled holds its
/// readers (see `job_to_cancel`).
fn bids_into(env: &StreamEnvironment, pause: Duration, to_cancel: bool, sink: JsonLinesSink<String>) {
    let held_after = to_cancel.then_some(HELD_AFTER);
    env.source(Slow { inner: NexmarkSource::new(EVENTS), pause, held_after })
        .filter_map(|e| match e {
            Event::Bid(bid) => Some(format!("bid {} on {} at {}", bid.bidder, bid.auction, bid.date_time)),
            _ => None,
        })
        .sink(sink);
}

#[test]
fn a_single_file_sink_resumed_keeps_what_it_wrote_before() {
    let (checkpoints, output) = (dir(), dir());
    let file = output.path().join("out.jsonl");
    let at_least_once = || {
        let mut config = CheckpointConfig::new(checkpoints.path().to_str().expect("utf-8"), Duration::from_millis(15));
        config.guarantee = DeliveryGuarantee::AtLeastOnce;
        StreamEnvironment::new().parallelism(2).batch_size(256).checkpointing(config)
    };
    let lines = |path: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(path).expect("output file");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let reference = output.path().join("reference.jsonl");
    let env = StreamEnvironment::new().parallelism(2).batch_size(256);
    bids_into(&env, Duration::ZERO, false, JsonLinesSink::new(&reference).expect("file"));
    env.execute().expect("reference run");
    let expected = lines(&reference);
    assert!(expected.len() > 1000, "{} bids", expected.len());

    let env = at_least_once();
    bids_into(&env, Duration::from_millis(1), true, JsonLinesSink::new(&file).expect("file"));
    let handle = env.start().expect("start");
    wait_for_checkpoints(&handle, 3);
    handle.cancel();
    let _ = handle.join();
    assert!(!lines(&file).is_empty(), "the first run wrote output");

    let env = at_least_once();
    bids_into(&env, Duration::ZERO, false, JsonLinesSink::new(&file).expect("file"));
    let result = env.execute().expect("the restarted run finishes");
    assert!(result.checkpoints.and_then(|s| s.restored_from).is_some(), "it resumed");
    let written = lines(&file);
    let missing: Vec<&String> = expected.iter().filter(|l| written.binary_search(l).is_err()).collect();
    assert!(missing.is_empty(), "{} of {} lines missing, such as {:?}", missing.len(), expected.len(), missing.first());
}

/// Every line of the published part files in `dir` of `fs`, by file.
fn published_on(fs: &SimulatedFs, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let entries = fs.list(dir).unwrap_or_default();
    let names = entries.into_iter().map(|e| e.name).filter(|n| n.starts_with("part-"));
    names.map(|name| (name.clone(), fs.read(&dir.join(&name)).expect("part file"))).collect()
}

fn lines_of(files: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut lines: Vec<String> = files
        .iter()
        .flat_map(|(_, bytes)| String::from_utf8_lossy(bytes).lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    lines.sort();
    lines
}

/// Runs the job on `fs` until it ends or the power is cut; whether the power was cut.
fn run_until_cut(fs: &SimulatedFs, pause: Duration) -> bool {
    let shared: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let mut config = CheckpointConfig::new("/checkpoints", Duration::from_millis(10));
    config.file_system = Some(shared.clone());
    let env = StreamEnvironment::new().parallelism(2).batch_size(256).checkpointing(config);
    let sink = match JsonLinesSink::directory_on("/output", shared) {
        Ok(sink) => sink,
        Err(_) => return fs.is_cut(),
    };
    job_into(&env, pause, sink);
    let handle = match env.start() {
        Ok(handle) => handle,
        Err(error) => {
            assert!(fs.is_cut(), "the job failed to start without a power cut: {error}");
            return true;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !handle.is_finished() && !fs.is_cut() {
        assert!(Instant::now() < deadline, "the job neither ended nor hit the power cut");
        std::thread::sleep(Duration::from_millis(1));
    }
    handle.cancel();
    let outcome = handle.join();
    let cut = fs.is_cut();
    if !cut {
        outcome.expect("without a power cut the job finishes");
    }
    cut
}

#[test]
fn a_power_cut_at_any_write_keeps_checkpoints_complete_and_committed_output() {
    let expected = reference(2);
    // An uninterrupted run on the simulated disk: the output, and how many writes it took.
    let calibration = SimulatedFs::new();
    assert!(!run_until_cut(&calibration, Duration::from_millis(1)));
    assert_same_lines(&lines_of(&published_on(&calibration, Path::new("/output"))), &expected, "no power cut");
    let writes = calibration.writes();
    assert!(writes > 100, "the job wrote {writes} times");

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let rounds = 16;
    let mut restored_rounds = 0;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Spread over the whole run, at a random write within each slice.
        let cut_at = 1 + writes * round / rounds + seed % (writes / rounds).max(1);
        let fs = SimulatedFs::new();
        fs.cut_power_after(cut_at);
        if !run_until_cut(&fs, Duration::from_millis(1)) {
            continue; // this run wrote less than the calibration run
        }
        let visible = published_on(&fs, Path::new("/output"));
        fs.restart();

        // Every complete checkpoint on disk is whole: nothing to skip.
        let shared: Arc<dyn FileSystem> = Arc::new(fs.clone());
        let store = CheckpointStore::new(Storage::on_file_system("/checkpoints", shared).expect("storage"));
        if let Some(latest) = store.latest().expect("the latest checkpoint reads") {
            assert!(latest.skipped.is_empty(), "cut at write {cut_at}: corrupt checkpoints {:?}", latest.skipped);
            restored_rounds += 1;
        }
        // Started again, the job finishes with every result exactly once, and every file
        // that was published before the cut is still there, unchanged.
        assert!(!run_until_cut(&fs, Duration::ZERO), "no second cut");
        let after = published_on(&fs, Path::new("/output"));
        assert_same_lines(&lines_of(&after), &expected, &format!("power cut at write {cut_at} of {writes}"));
        for (name, bytes) in &visible {
            let now = after.iter().find(|(n, _)| n == name).map(|(_, b)| b);
            assert_eq!(now, Some(bytes), "cut at write {cut_at}: published {name} changed or vanished");
        }
    }
    assert!(restored_rounds >= rounds / 2, "only {restored_rounds} of {rounds} runs restored a checkpoint");
}
