//! The on-disk state backend keeps a job running when its state is larger than the
//! memory budget, with memory near the budget.

use sluice::prelude::*;
use sluice::runtime::{SourcePoll, SourceReader};
use sluice::{DiskBackend, KeyedStateStore, StateBackendKind};

const KEYS: u64 = 500_000;
const VALUE_BYTES: usize = 400;
const BUDGET: u64 = 16 << 20;

/// Every key twice: a first pass writes it, a second pass reads it back.
struct TwoPasses;

struct TwoPassesReader {
    next: u64,
    step: u64,
}

impl Source for TwoPasses {
    type Item = (u64, bool);
    type Reader = TwoPassesReader;
    fn name(&self) -> String {
        "two-passes".into()
    }
    fn reader(&self, worker: usize, parallelism: usize) -> sluice::Result<TwoPassesReader> {
        Ok(TwoPassesReader { next: worker as u64, step: parallelism as u64 })
    }
}

impl SourceReader for TwoPassesReader {
    type Batch = Vec<Record<(u64, bool)>>;
    fn poll(&mut self, max_records: usize) -> sluice::Result<SourcePoll<Self::Batch>> {
        let mut batch = Vec::with_capacity(max_records);
        while batch.len() < max_records && self.next < 2 * KEYS {
            batch.push(Record::new(0, (self.next % KEYS, self.next >= KEYS)));
            self.next += self.step;
        }
        Ok(if batch.is_empty() { SourcePoll::Finished } else { SourcePoll::Batch(batch) })
    }
    fn position(&self) -> u64 {
        self.next
    }
}

fn value_of(key: u64) -> String {
    format!("{key:0width$}", width = VALUE_BYTES)
}

/// Stores each key's value, then checks it; emits the keys whose value was wrong.
#[derive(Clone, Default)]
struct WriteThenCheck {
    value: ValueState<String>,
}

impl KeyedProcessFunction for WriteThenCheck {
    type Key = u64;
    type In = (u64, bool);
    type Out = u64;
    fn open(&mut self, state: &mut KeyedStateStore<u64>) {
        self.value = state.value(&StateDescriptor::new("value"));
    }
    fn process_element(&mut self, (key, check): (u64, bool), ctx: &mut Context<'_, u64, u64>) {
        if !check {
            ctx.set_value(self.value, value_of(key));
        } else if ctx.value(self.value) != Some(value_of(key)) {
            ctx.emit(key);
        }
    }
}

/// The process's peak resident memory, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn state_larger_than_the_memory_budget_stays_on_disk() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = DiskBackend::new(dir.path()).memory_budget(BUDGET);
    let env = StreamEnvironment::new().parallelism(2).state_backend(StateBackendKind::OnDisk(backend));
    let wrong = CollectSink::new();
    env.source(TwoPasses).key_by(|(key, _)| *key).process(WriteThenCheck::default()).sink(wrong.clone());
    let result = env.execute().expect("the job runs");
    assert_eq!(result.metrics.source_records(), 2 * KEYS);
    assert!(wrong.is_empty(), "{} keys read back wrong, e.g. {:?}", wrong.len(), wrong.values().first());
    let state_bytes = KEYS * VALUE_BYTES as u64;
    let peak = peak_rss();
    eprintln!("state {} MB, budget {} MB, peak memory {} MB", state_bytes >> 20, BUDGET >> 20, peak >> 20);
    // The rest of the process (channels, batches, the test harness) takes some tens of
    // megabytes; the state, several times the budget, must not be in memory.
    let bound = (state_bytes / 2).min(BUDGET + (80 << 20));
    assert!(peak < bound, "peak memory {} MB for {} MB of state", peak >> 20, state_bytes >> 20);
}

/// Sliding, tumbling and session window counts with allowed lateness and early results,
/// on `backend`. One worker: with late records, which ones are late depends on how several
/// source partitions interleave.
fn windows(backend: StateBackendKind) -> Vec<String> {
    let env = StreamEnvironment::new().parallelism(1).batch_size(7).state_backend(backend);
    let records: Vec<(i64, u32)> = (0..5_000i64).map(|i| (i * 37 % 20_000 + (i % 7) * 500, (i % 23) as u32)).collect();
    let events =
        env.source(VecSource::timestamped(records)).with_watermarks(WatermarkStrategy::bounded_out_of_orderness(2_000));
    let out = CollectSink::new();
    let sliding = events
        .key_by(|k| *k)
        .window(Sliding::of(seconds(4), seconds(1)))
        .allowed_lateness(1_000)
        .count()
        .map(|r| format!("sliding {} {} {} {:?}", r.key, r.window.start, r.value, r.kind));
    let tumbling = events
        .key_by(|k| *k % 5)
        .window(Tumbling::of(seconds(2)))
        .early_results(500)
        .aggregate(Sum::of(|k: &u32| u64::from(*k)))
        .map(|r| format!("tumbling {} {} {} {:?}", r.key, r.window.start, r.value, r.kind));
    let sessions = events
        .key_by(|k| *k % 7)
        .window(Session::with_gap(seconds(1)))
        .allowed_lateness(1_000)
        .count()
        .map(|r| format!("session {} {} {} {} {:?}", r.key, r.window.start, r.window.end, r.value, r.kind));
    sliding.union(&[tumbling, sessions]).sink(out.clone());
    env.execute().expect("the job runs");
    out.sorted_values()
}

#[test]
fn windows_on_disk_give_the_results_of_windows_on_the_heap() {
    let dir = tempfile::tempdir().expect("dir");
    let heap = windows(StateBackendKind::Heap);
    assert!(heap.len() > 100);
    assert!(heap.iter().any(|line| line.starts_with("session")), "sessions fired");
    assert_eq!(windows(StateBackendKind::OnDisk(DiskBackend::new(dir.path()).memory_budget(BUDGET))), heap);
}

/// A rolling sum and a rolling maximum per key, on `backend`, and the job's plan. One
/// worker: each key's running results depend on the order its records arrive in.
fn rolling(backend: StateBackendKind) -> (Vec<String>, String) {
    let env = StreamEnvironment::new().parallelism(1).batch_size(64).state_backend(backend);
    let records: Vec<(u32, u64)> = (0..20_000u64).map(|i| ((i * 7919 % 3_000) as u32, i % 101)).collect();
    let events = env.source(VecSource::new(records));
    let out = CollectSink::new();
    let sums = events
        .key_by(|(k, _)| *k)
        .aggregate(Sum::of(|(_, n): &(u32, u64)| *n))
        .map(|(k, sum)| format!("sum {k} {sum}"));
    let maxima = events
        .key_by(|(k, _)| *k % 97)
        .reduce(|a, b| (a.0 % 97, a.1.max(b.1)))
        .map(|(k, max)| format!("max {k} {max}"));
    sums.union(&[maxima]).sink(out.clone());
    let plan = env.explain();
    env.execute().expect("the job runs");
    (out.sorted_values(), plan)
}

#[test]
fn rolling_aggregates_keep_their_state_in_the_configured_backend() {
    let dir = tempfile::tempdir().expect("dir");
    let (heap, heap_plan) = rolling(StateBackendKind::Heap);
    assert_eq!(heap.len(), 40_000, "one result per record of each aggregate");
    let (disk, disk_plan) = rolling(StateBackendKind::OnDisk(DiskBackend::new(dir.path()).memory_budget(BUDGET)));
    assert_eq!(disk, heap);
    for operator in ["aggregate", "reduce"] {
        assert_state_in(&heap_plan, operator, "keyed (heap)");
        assert_state_in(&disk_plan, operator, "keyed (disk)");
    }
}

/// Asserts that `plan` (an `explain` table) shows `state` on the row of `operator`.
fn assert_state_in(plan: &str, operator: &str, state: &str) {
    let row = plan.lines().find(|l| l.contains(operator)).unwrap_or_default();
    assert!(row.contains(state), "{operator} keeps {state}: {plan}");
}

/// An interval join of clicks with the views of the same user up to 5 s before, on
/// `backend`, and the job's plan.
fn joined(backend: StateBackendKind) -> (Vec<(u32, i64, i64)>, String) {
    let env = StreamEnvironment::new().parallelism(2).batch_size(32).state_backend(backend);
    let views: Vec<(i64, (u32, i64))> = (0..3_000i64).map(|i| (i * 10, ((i % 50) as u32, i * 10))).collect();
    let clicks: Vec<(i64, (u32, i64))> = (0..1_000i64).map(|i| (i * 30 + 7, ((i % 50) as u32, i * 30 + 7))).collect();
    let by_time = || WatermarkStrategy::bounded_out_of_orderness(100);
    let views = env.source(VecSource::timestamped(views)).with_watermarks(by_time()).key_by(|v: &(u32, i64)| v.0);
    let clicks = env.source(VecSource::timestamped(clicks)).with_watermarks(by_time()).key_by(|c: &(u32, i64)| c.0);
    let out = CollectSink::new();
    clicks.interval_join(&views, -5_000, 0).process(|user, click, view| (*user, click.1, view.1)).sink(out.clone());
    let plan = env.explain();
    env.execute().expect("the job runs");
    (out.sorted_values(), plan)
}

#[test]
fn an_interval_join_keeps_its_buffers_in_the_configured_backend() {
    let dir = tempfile::tempdir().expect("dir");
    let (heap, heap_plan) = joined(StateBackendKind::Heap);
    assert!(heap.len() > 1_000, "{} pairs", heap.len());
    let (disk, disk_plan) = joined(StateBackendKind::OnDisk(DiskBackend::new(dir.path()).memory_budget(BUDGET)));
    assert_eq!(disk, heap);
    assert_state_in(&heap_plan, "interval_join", "keyed (heap)");
    assert_state_in(&disk_plan, "interval_join", "keyed (disk)");
}

/// Orders enriched with their customer's latest name as of the order's time (a
/// versioned table join, left), on `backend`, and the job's plan.
fn enriched(backend: StateBackendKind) -> (Vec<(u32, i64, Option<String>)>, String) {
    let env = StreamEnvironment::new().parallelism(2).batch_size(16).state_backend(backend);
    let orders: Vec<(i64, (u32, i64))> = (0..2_000i64).map(|i| (i * 10 + 5, ((i % 40) as u32, i * 10 + 5))).collect();
    let names: Vec<(i64, (u32, Option<String>))> =
        (0..400i64).map(|i| (i * 50, ((i % 40) as u32, (i % 7 != 0).then(|| format!("name {i}"))))).collect();
    let orders = env
        .source(VecSource::timestamped(orders))
        .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(200))
        .key_by(|o: &(u32, i64)| o.0);
    let names =
        env.source(VecSource::timestamped(names)).with_watermarks(WatermarkStrategy::bounded_out_of_orderness(200));
    let table = Table::from_changelog(&names);
    let out = CollectSink::new();
    orders.left_join_table(&table, |order, name| (order.0, order.1, name.cloned())).sink(out.clone());
    let plan = env.explain();
    env.execute().expect("the job runs");
    (out.sorted_values(), plan)
}

#[test]
fn a_table_join_keeps_its_versions_and_waiting_records_in_the_configured_backend() {
    let dir = tempfile::tempdir().expect("dir");
    let (heap, heap_plan) = enriched(StateBackendKind::Heap);
    assert_eq!(heap.len(), 2_000, "every order once");
    assert!(heap.iter().any(|(_, _, name)| name.is_some()) && heap.iter().any(|(_, _, name)| name.is_none()));
    let (disk, disk_plan) = enriched(StateBackendKind::OnDisk(DiskBackend::new(dir.path()).memory_budget(BUDGET)));
    assert_eq!(disk, heap);
    assert_state_in(&heap_plan, "join_table", "keyed (heap)");
    assert_state_in(&disk_plan, "join_table", "keyed (disk)");
}

/// Registers, for each record, an event-time timer a long way ahead, and emits the timers
/// as they fire.
#[derive(Clone)]
struct RemindLater;

impl KeyedProcessFunction for RemindLater {
    type Key = u64;
    type In = u64;
    type Out = (Timestamp, u64);

    fn process_element(&mut self, value: u64, ctx: &mut Context<'_, u64, (Timestamp, u64)>) {
        // Scrambled times, several keys per time.
        ctx.register_event_time_timer(1_000_000 + (value * 7_919 % 10_007) as Timestamp);
    }

    fn on_timer(&mut self, timestamp: Timestamp, _domain: TimeDomain, ctx: &mut Context<'_, u64, (Timestamp, u64)>) {
        let key = *ctx.key();
        ctx.emit_at(timestamp, (timestamp, key));
    }
}

/// The timers of `RemindLater` over 40 000 keys, as they fired, on `backend`. One worker:
/// the order of firing is the order of the output.
fn reminders(backend: StateBackendKind) -> Vec<(Timestamp, u64)> {
    let env = StreamEnvironment::new().parallelism(1).batch_size(256).state_backend(backend);
    let keys: Vec<(Timestamp, u64)> = (0..40_000u64).map(|k| (k as Timestamp, k)).collect();
    let out = CollectSink::new();
    env.source(VecSource::timestamped(keys))
        .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(0))
        .key_by(|k| *k)
        .process(RemindLater)
        .sink(out.clone());
    env.execute().expect("the job runs");
    out.values()
}

#[test]
fn timers_beyond_the_head_wait_on_disk_and_fire_in_the_order_of_the_heap() {
    let dir = tempfile::tempdir().expect("dir");
    let heap = reminders(StateBackendKind::Heap);
    assert_eq!(heap.len(), 40_000);
    assert!(heap.len() > 2 * 16_384, "more timers than an on-disk queue holds in memory (HEAD_CAPACITY)");
    assert!(heap.windows(2).all(|w| w[0] < w[1]), "fired in (time, key) order");
    let disk = reminders(StateBackendKind::OnDisk(DiskBackend::new(dir.path()).memory_budget(BUDGET)));
    assert_eq!(disk, heap);
}

/// Writes the values of its share of `keys` keys, then (`hold`) waits to be cancelled;
/// restored, it checks them instead.
struct WriteOrCheck {
    keys: u64,
}

struct WriteOrCheckReader {
    next: u64,
    step: u64,
    keys: u64,
    check: bool,
}

impl Source for WriteOrCheck {
    type Item = (u64, bool);
    type Reader = WriteOrCheckReader;
    fn name(&self) -> String {
        "write-or-check".into()
    }
    fn reader(&self, worker: usize, parallelism: usize) -> sluice::Result<WriteOrCheckReader> {
        Ok(WriteOrCheckReader { next: worker as u64, step: parallelism as u64, keys: self.keys, check: false })
    }
    fn restore_reader(
        &self,
        worker: usize,
        parallelism: usize,
        _: &sluice::runtime::checkpoint::StateReader,
    ) -> sluice::Result<WriteOrCheckReader> {
        Ok(WriteOrCheckReader { next: worker as u64, step: parallelism as u64, keys: self.keys, check: true })
    }
}

impl SourceReader for WriteOrCheckReader {
    type Batch = Vec<Record<(u64, bool)>>;
    fn poll(&mut self, max_records: usize) -> sluice::Result<SourcePoll<Self::Batch>> {
        let mut batch = Vec::with_capacity(max_records);
        while batch.len() < max_records && self.next < self.keys {
            batch.push(Record::new(0, (self.next, self.check)));
            self.next += self.step;
        }
        Ok(match (batch.is_empty(), self.check) {
            (false, _) => SourcePoll::Batch(batch),
            (true, false) => SourcePoll::Idle,
            (true, true) => SourcePoll::Finished,
        })
    }
    fn position(&self) -> u64 {
        self.next
    }
    fn snapshot(&self, _: &mut sluice::runtime::checkpoint::StateWriter) -> sluice::Result<()> {
        Ok(())
    }
}

#[test]
fn a_savepoint_of_large_state_files_restores_key_group_by_key_group_at_another_parallelism() {
    const KEYS: u64 = 30_000;
    let (checkpoints, state) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let on_disk = |parallelism, restore: Option<String>| {
        let mut config =
            CheckpointConfig::new(checkpoints.path().to_str().expect("utf-8"), std::time::Duration::from_secs(3600));
        config.restore = restore;
        let backend = DiskBackend::new(state.path()).memory_budget(BUDGET);
        StreamEnvironment::new()
            .parallelism(parallelism)
            .state_backend(StateBackendKind::OnDisk(backend))
            .checkpointing(config)
    };
    let env = on_disk(2, None);
    env.source(WriteOrCheck { keys: KEYS })
        .key_by(|(key, _)| *key)
        .process(WriteThenCheck::default())
        .sink(CollectSink::new());
    let handle = env.start().expect("start");
    while handle.snapshot().source_records() < KEYS {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let savepoint = match handle.savepoint() {
        Ok(savepoint) => savepoint,
        Err(error) => panic!("savepoint: {error}; the job: {:?}", handle.join()),
    };
    handle.cancel();
    let _ = handle.join();
    // The scenario: a state file too large to be read whole by a restore.
    let largest = std::fs::read_dir(&savepoint)
        .expect("the savepoint's directory")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|meta| meta.len())
        .max()
        .unwrap_or(0);
    assert!(largest > 5 << 20, "a state file of {largest} bytes");

    let env = on_disk(3, Some(savepoint));
    let wrong = CollectSink::new();
    env.source(WriteOrCheck { keys: KEYS })
        .key_by(|(key, _)| *key)
        .process(WriteThenCheck::default())
        .sink(wrong.clone());
    let result = env.execute().expect("the restored job runs");
    assert!(result.checkpoints.and_then(|s| s.restored_from).is_some(), "it restored");
    assert_eq!(result.metrics.source_records(), KEYS, "every key checked");
    assert!(wrong.is_empty(), "{} keys restored wrong, e.g. {:?}", wrong.len(), wrong.values().first());
}
