//! Property tests: for random inputs with random disorder, every windowed, joined and
//! processed result is the same multiset at 1, 2 and 4 workers and batches of 1, 7 and
//! 1024 records, and equals the reference model in `model.rs`.
//!
//! Inputs with late data are read from one source partition by worker 0; the other
//! workers' sources are empty and end at once. Which events are late is then the
//! model's only once those ends have reached every operator: until then an operator
//! downstream of an exchange is held at the minimum watermark by the empty inputs, and
//! late events count as on time. So one-input jobs hold the partition back behind a
//! sentinel event until every sink's watermark has passed it ([`Layout::Gated`]).
//! Two-input operators (joins) take the minimum of both inputs' watermarks, so which
//! late events they drop depends on how the inputs interleave: their properties bound
//! the output instead. Inputs without late data are spread over the workers.

use crate::model::{self, Agg, Emitted, Event, TableUpdate, WindowOutput};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use sluice::prelude::*;
use sluice::runtime::{SourcePoll, SourceReader};
use sluice::window::WindowAssigner;
use sluice::KeyedStateStore;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every (workers, batch size) a property runs the engine at.
const RUNS: [(usize, usize); 9] = [(1, 1), (1, 7), (1, 1024), (2, 1), (2, 7), (2, 1024), (4, 1), (4, 7), (4, 1024)];

fn config() -> ProptestConfig {
    ProptestConfig { cases: 24, max_shrink_iters: 200, failure_persistence: None, ..ProptestConfig::default() }
}

/// How an input is laid over the source's partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// One partition, read in order by worker 0, released only once every operator's
    /// watermark has passed a leading sentinel event: by then the other workers' sources
    /// have ended, so every operator's watermark is the one partition's.
    Gated,
    /// One partition, read in order by worker 0 from the start. Until the other
    /// workers' (empty) sources have ended, operators downstream of an exchange are held
    /// at the minimum watermark, so early late events may count as on time.
    OnePartition,
    /// Spread round robin over one partition per worker.
    Spread,
}

/// Raw arrivals: (clock step, key, value, late?, jitter).
type Raw = Vec<(i64, u8, i64, bool, i64)>;

fn raw(max_len: usize, late_percent: u32) -> impl Strategy<Value = Raw> {
    let arrival = (0i64..=6, 0u8..6, -20i64..=20, (0u32..100).prop_map(move |p| p < late_percent), 0i64..1_000);
    prop::collection::vec(arrival, 0..=max_len)
}

fn lateness() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0i64), 1i64..=40]
}

/// Events from raw arrivals: a base clock that never goes back, and each event behind
/// it by at most `delay` or, when marked late, by more. An event within the bound is
/// never at or behind the watermark of any partition it lands in; a late one often is.
fn timeline(raw: &Raw, delay: i64, first_id: u32) -> Vec<Event> {
    let mut base = 1_000;
    raw.iter()
        .enumerate()
        .map(|(i, &(step, key, value, late, jitter))| {
            base += step;
            let behind = if late { delay + 1 + jitter % 120 } else { jitter % (delay + 1) };
            Event { id: first_id + i as u32, ts: base - behind, key, value }
        })
        .collect()
}

/// A gated source's switch, and the watermark every sink must reach before it opens.
struct Gate {
    open: Arc<AtomicBool>,
    threshold: Timestamp,
}

/// The id of the sentinel event a gated source emits first (and the job filters out).
const SENTINEL: u32 = u32::MAX;

/// A stream of `events` with event time and bounded-out-of-orderness watermarks.
fn source(
    env: &StreamEnvironment,
    events: &[Event],
    layout: Layout,
    delay: i64,
    gates: &mut Vec<Gate>,
) -> Stream<Event> {
    let strategy = WatermarkStrategy::bounded_out_of_orderness(delay).with_timestamp(|e: &Event| e.ts);
    match layout {
        Layout::Gated => {
            // The sentinel has the first event's timestamp, so it changes no event's
            // watermark but the first one's, which is on time either way.
            let first = events.first().map_or(1_000, |e| e.ts);
            let sentinel = Event { id: SENTINEL, ts: first, key: 0, value: 0 };
            let open = Arc::new(AtomicBool::new(false));
            gates.push(Gate { open: open.clone(), threshold: first - delay - 1 });
            env.source(GatedSource::new(sentinel, events.to_vec(), open))
                .with_watermarks(strategy)
                .filter(|e: &Event| e.id != SENTINEL)
        }
        Layout::OnePartition => env.source(VecSource::partitioned(vec![events.to_vec()])).with_watermarks(strategy),
        Layout::Spread => env.source(VecSource::new(events.to_vec())).with_watermarks(strategy),
    }
}

/// Runs the job; with gates, opens them once every sink's watermark reached theirs.
fn execute(env: StreamEnvironment, gates: Vec<Gate>, what: &str) {
    let handle = env.start().unwrap_or_else(|error| panic!("{what}: the job did not start: {error}"));
    if let Some(threshold) = gates.iter().map(|g| g.threshold).min() {
        // A guard against a hang, not a measure of speed.
        let deadline = Instant::now() + Duration::from_secs(120);
        while handle.snapshot().sink_watermark() < threshold {
            if handle.is_finished() {
                break;
            }
            assert!(Instant::now() < deadline, "{what}: the sinks' watermark never reached {threshold}");
            std::thread::sleep(Duration::from_millis(1));
        }
        gates.iter().for_each(|g| g.open.store(true, Ordering::Release));
    }
    if let Err(error) = handle.join() {
        panic!("{what}: the job failed: {error}");
    }
}

/// One partition for worker 0: first a sentinel, then, once `open`, the records.
struct GatedSource<T> {
    sentinel: T,
    records: Arc<Mutex<Option<Vec<T>>>>,
    open: Arc<AtomicBool>,
}

impl<T> GatedSource<T> {
    fn new(sentinel: T, records: Vec<T>, open: Arc<AtomicBool>) -> Self {
        GatedSource { sentinel, records: Arc::new(Mutex::new(Some(records))), open }
    }
}

struct GatedReader<T> {
    sentinel: Option<T>,
    records: std::vec::IntoIter<T>,
    open: Arc<AtomicBool>,
    read: u64,
}

impl<T: Clone + Send + 'static> Source for GatedSource<T> {
    type Item = T;
    type Reader = GatedReader<T>;

    fn name(&self) -> String {
        "gated-source".to_string()
    }

    fn reader(&self, worker: usize, _parallelism: usize) -> sluice::Result<GatedReader<T>> {
        if worker != 0 {
            let open = Arc::new(AtomicBool::new(true));
            return Ok(GatedReader { sentinel: None, records: Vec::new().into_iter(), open, read: 0 });
        }
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
        let sentinel = Some(self.sentinel.clone());
        Ok(GatedReader { sentinel, records: records.into_iter(), open: self.open.clone(), read: 0 })
    }
}

impl<T: Send + 'static> SourceReader for GatedReader<T> {
    type Batch = Vec<Record<T>>;

    fn poll(&mut self, max_records: usize) -> sluice::Result<SourcePoll<Vec<Record<T>>>> {
        if let Some(sentinel) = self.sentinel.take() {
            return Ok(SourcePoll::Batch(vec![Record::untimed(sentinel)]));
        }
        if !self.open.load(Ordering::Acquire) {
            return Ok(SourcePoll::Pending);
        }
        let batch: Vec<Record<T>> = self.records.by_ref().take(max_records).map(Record::untimed).collect();
        self.read += batch.len() as u64;
        Ok(if batch.is_empty() { SourcePoll::Finished } else { SourcePoll::Batch(batch) })
    }

    fn position(&self) -> u64 {
        self.read
    }
}

fn sorted_records<T: Clone + Ord>(sink: &CollectSink<T>) -> Vec<Record<T>> {
    let mut records = sink.records();
    records.sort();
    records
}

/// The elements in which two sorted multisets differ, at most ten each way.
fn difference<T: Ord + Clone + Debug>(actual: &[T], expected: &[T]) -> String {
    let count = |items: &[T]| {
        let mut counts: BTreeMap<T, i64> = BTreeMap::new();
        items.iter().for_each(|item| *counts.entry(item.clone()).or_default() += 1);
        counts
    };
    let (mut counts, expected_counts) = (count(actual), count(expected));
    for (item, n) in expected_counts {
        *counts.entry(item).or_default() -= n;
    }
    let unexpected: Vec<_> = counts.iter().filter(|(_, n)| **n > 0).take(10).collect();
    let missing: Vec<_> = counts.iter().filter(|(_, n)| **n < 0).take(10).collect();
    format!(
        "{} records, {} expected\n  unexpected (count): {unexpected:?}\n  missing (count): {missing:?}",
        actual.len(),
        expected.len()
    )
}

fn check_same<T: Ord + Clone + Debug>(actual: &[T], expected: &[T], what: &str) -> Result<(), TestCaseError> {
    prop_assert!(actual == expected, "{what}: {}", difference(actual, expected));
    Ok(())
}

// ---------------------------------------------------------------------------------
// Windows

/// Count, sum and the ids of a window's events.
#[derive(Clone, Copy, Debug)]
struct CountSum;

impl AggregateFunction<Event> for CountSum {
    type Acc = Agg;
    type Out = Agg;
    fn create(&self) -> Agg {
        Agg::default()
    }
    fn add(&self, acc: &mut Agg, event: &Event) {
        acc.add(event);
    }
    fn merge(&self, acc: &mut Agg, other: Agg) {
        acc.merge(other);
    }
    fn result(&self, acc: &Agg) -> Agg {
        acc.result()
    }
}

struct WindowJob {
    assigner: WindowAssigner,
    delay: i64,
    lateness: i64,
    layout: Layout,
}

fn run_windows(job: &WindowJob, events: &[Event], workers: usize, batch: usize) -> WindowOutput {
    let env = StreamEnvironment::new().parallelism(workers).batch_size(batch);
    let (results, late) = (CollectSink::new(), CollectSink::new());
    let tag = OutputTag::<Event>::new("late");
    let mut gates = Vec::new();
    let windowed = source(&env, events, job.layout, job.delay, &mut gates)
        .key_by(|e: &Event| e.key)
        .window(job.assigner)
        .allowed_lateness(job.lateness)
        .side_output_late_data(&tag)
        .aggregate(CountSum);
    windowed.sink(results.clone());
    windowed.side_output(&tag).sink(late.clone());
    execute(env, gates, "window job");
    WindowOutput { results: sorted_records(&results), late: sorted_records(&late), rescued: 0 }
}

/// Runs the window job at every (workers, batch size) and compares with `expected`;
/// also checks that late events are reported once and counted in no result.
fn check_windows(job: &WindowJob, events: &[Event], expected: &WindowOutput) -> Result<(), TestCaseError> {
    for (workers, batch) in RUNS {
        let actual = run_windows(job, events, workers, batch);
        let at = format!("{workers} workers, batch {batch}");
        check_same(&actual.results, &expected.results, &format!("window results at {at}"))?;
        check_same(&actual.late, &expected.late, &format!("late events at {at}"))?;
        let late_ids: BTreeSet<u32> = actual.late.iter().map(|r| r.value.id).collect();
        prop_assert_eq!(late_ids.len(), actual.late.len(), "a late event was reported twice at {}", at);
        let counted: BTreeSet<u32> = actual.results.iter().flat_map(|r| r.value.value.ids.iter().copied()).collect();
        prop_assert!(late_ids.is_disjoint(&counted), "a late event was also counted in a result at {}", at);
        let every: BTreeSet<u32> = events.iter().map(|e| e.id).collect();
        let reported: BTreeSet<u32> = late_ids.union(&counted).copied().collect();
        prop_assert_eq!(reported, every, "every event is either late or in a result, at {}", at);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tumbling_windows_agree_with_the_model(
        raw in raw(300, 12), delay in 0i64..=20, size in 5i64..=50, offset in 0i64..50, lateness in lateness(),
    ) {
        let events = timeline(&raw, delay, 0);
        let offset = offset % size;
        let expected = model::fixed_windows(&events, delay, size, size, offset, lateness);
        let assigner = Tumbling::of(size).with_offset(offset);
        let job = WindowJob { assigner, delay, lateness, layout: Layout::Gated };
        check_windows(&job, &events, &expected)?;
    }

    #[test]
    fn sliding_windows_agree_with_the_model(
        raw in raw(200, 12), delay in 0i64..=20, size in 5i64..=50, slides in 1i64..=4, offset in 0i64..50,
        lateness in lateness(),
    ) {
        let events = timeline(&raw, delay, 0);
        let slide = (size / slides).max(1);
        let offset = offset % slide;
        let expected = model::fixed_windows(&events, delay, size, slide, offset, lateness);
        let assigner = Sliding::of(size, slide).with_offset(offset);
        let job = WindowJob { assigner, delay, lateness, layout: Layout::Gated };
        check_windows(&job, &events, &expected)?;
    }

    /// The same without allowed lateness: a fired window has expired, so no record
    /// updates one (which the engine gets wrong, above).
    #[test]
    fn sliding_windows_without_lateness_agree_with_the_model(
        raw in raw(200, 12), delay in 0i64..=20, size in 5i64..=50, slides in 1i64..=4, offset in 0i64..50,
    ) {
        let events = timeline(&raw, delay, 0);
        let slide = (size / slides).max(1);
        let offset = offset % slide;
        let expected = model::fixed_windows(&events, delay, size, slide, offset, 0);
        let assigner = Sliding::of(size, slide).with_offset(offset);
        let job = WindowJob { assigner, delay, lateness: 0, layout: Layout::Gated };
        check_windows(&job, &events, &expected)?;
    }

    #[test]
    fn session_windows_agree_with_the_model(
        raw in raw(300, 12), delay in 0i64..=20, gap in 1i64..=30, lateness in lateness(),
    ) {
        let events = timeline(&raw, delay, 0);
        let expected = model::session_windows(&events, delay, gap, lateness);
        let job = WindowJob { assigner: Session::with_gap(gap), delay, lateness, layout: Layout::Gated };
        check_windows(&job, &events, &expected)?;
    }

    /// Without late data the input can be spread over the workers: every window then
    /// fires once, complete, whatever the partitioning.
    #[test]
    fn windows_over_spread_partitions_agree_with_the_model(
        raw in raw(300, 0), delay in 0i64..=20, size in 5i64..=50, slides in 1i64..=3, gap in 1i64..=30,
        shape in 0u8..3, lateness in lateness(),
    ) {
        let events = timeline(&raw, delay, 0);
        let slide = (size / slides).max(1);
        let (assigner, expected) = match shape {
            0 => (Tumbling::of(size), model::fixed_windows(&events, delay, size, size, 0, lateness)),
            1 => (Sliding::of(size, slide), model::fixed_windows(&events, delay, size, slide, 0, lateness)),
            _ => (Session::with_gap(gap), model::session_windows(&events, delay, gap, lateness)),
        };
        prop_assert!(expected.late.is_empty(), "the input has no late data");
        prop_assert!(expected.results.iter().all(|r| r.value.kind == ResultKind::Final));
        let job = WindowJob { assigner, delay, lateness, layout: Layout::Spread };
        check_windows(&job, &events, &expected)?;
    }
}

// ---------------------------------------------------------------------------------
// Interval join

type JoinedPair = Record<(u8, u32, u32)>;

#[allow(clippy::too_many_arguments)]
fn run_interval_join(
    left: &[Event],
    right: &[Event],
    delay: i64,
    lower: i64,
    upper: i64,
    layout: Layout,
    workers: usize,
    batch: usize,
) -> Vec<JoinedPair> {
    let env = StreamEnvironment::new().parallelism(workers).batch_size(batch);
    let out = CollectSink::new();
    let mut gates = Vec::new();
    let left = source(&env, left, layout, delay, &mut gates).key_by(|e: &Event| e.key);
    let right = source(&env, right, layout, delay, &mut gates).key_by(|e: &Event| e.key);
    left.interval_join(&right, lower, upper).process(|key, l: &Event, r: &Event| (*key, l.id, r.id)).sink(out.clone());
    execute(env, gates, "interval join job");
    sorted_records(&out)
}

const RIGHT_IDS: u32 = 100_000;

proptest! {
    #![proptest_config(config())]

    /// Without late data nothing is dropped: the join is every matching pair.
    #[test]
    fn interval_join_agrees_with_the_model(
        left in raw(150, 0), right in raw(150, 0), delay in 0i64..=20, lower in -20i64..=5, width in 0i64..=25,
    ) {
        let (left, right) = (timeline(&left, delay, 0), timeline(&right, delay, RIGHT_IDS));
        let upper = lower + width;
        let expected = model::interval_join(&left, &right, lower, upper);
        for (workers, batch) in RUNS {
            let actual = run_interval_join(&left, &right, delay, lower, upper, Layout::Spread, workers, batch);
            check_same(&actual, &expected, &format!("interval join at {workers} workers, batch {batch}"))?;
        }
    }

    /// With late data, whether a late event is behind the join's watermark when it
    /// arrives depends on how the two inputs interleave at the join (its watermark is the
    /// minimum of both): on-time events are never dropped, a late event may be. Whatever
    /// was dropped, the output is exactly every matching pair among the events kept.
    #[test]
    fn interval_join_with_late_data_joins_exactly_the_events_it_keeps(
        left in raw(150, 12), right in raw(150, 12), delay in 0i64..=20, lower in -20i64..=5, width in 0i64..=25,
    ) {
        let (left, right) = (timeline(&left, delay, 0), timeline(&right, delay, RIGHT_IDS));
        let upper = lower + width;
        let every_pair = model::interval_join(&left, &right, lower, upper);
        for (workers, batch) in RUNS {
            let actual = run_interval_join(&left, &right, delay, lower, upper, Layout::OnePartition, workers, batch);
            let at = format!("{workers} workers, batch {batch}");
            let joined: BTreeSet<u32> = actual.iter().flat_map(|r| [r.value.1, r.value.2]).collect();
            let kept = |events: &[Event]| -> Vec<Event> {
                events
                    .iter()
                    .zip(model::on_time(events, delay))
                    .filter(|(e, on_time)| *on_time || joined.contains(&e.id))
                    .map(|(e, _)| e.clone())
                    .collect()
            };
            let expected = model::interval_join(&kept(&left), &kept(&right), lower, upper);
            check_same(&actual, &expected, &format!("pairs of the events kept at {at}"))?;
            prop_assert!(actual.iter().all(|p| every_pair.binary_search(p).is_ok()), "a pair that does not match, at {}", at);
        }
    }
}

// ---------------------------------------------------------------------------------
// Stream-table left join

type Enriched = Record<(u32, u8, Option<i64>)>;

/// Table updates from events: a value divisible by 4 deletes the key; only the first
/// update of a (key, timestamp) is kept, so versions are distinct per key.
fn table_updates(events: &[Event]) -> Vec<TableUpdate> {
    let mut seen = BTreeSet::new();
    events
        .iter()
        .filter(|e| seen.insert((e.key, e.ts)))
        .map(|e| TableUpdate { ts: e.ts, key: e.key, value: (e.value % 4 != 0).then_some(e.value) })
        .collect()
}

fn run_table_join(
    stream: &[Event],
    table: &[TableUpdate],
    delay: i64,
    stream_layout: Layout,
    table_layout: Layout,
    workers: usize,
    batch: usize,
) -> Vec<Enriched> {
    let env = StreamEnvironment::new().parallelism(workers).batch_size(batch);
    let out = CollectSink::new();
    let changelog = match table_layout {
        Layout::Spread => VecSource::new(table.to_vec()),
        _ => VecSource::partitioned(vec![table.to_vec()]),
    };
    let changelog = env
        .source(changelog)
        .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(delay).with_timestamp(|u: &TableUpdate| u.ts))
        .map(|u: TableUpdate| (u.key, u.value));
    let table = Table::from_changelog(&changelog);
    let mut gates = Vec::new();
    source(&env, stream, stream_layout, delay, &mut gates)
        .key_by(|e: &Event| e.key)
        .left_join_table(&table, |e: &Event, value: Option<&i64>| (e.id, e.key, value.copied()))
        .sink(out.clone());
    execute(env, gates, "table join job");
    sorted_records(&out)
}

proptest! {
    #![proptest_config(config())]

    /// Without late data, each event joins the table version valid at its event time.
    #[test]
    fn table_left_join_agrees_with_the_model(
        stream in raw(150, 0), table in raw(150, 0), delay in 0i64..=20,
    ) {
        let stream = timeline(&stream, delay, 0);
        let table = table_updates(&timeline(&table, delay, RIGHT_IDS));
        let expected = model::table_left_join(&stream, &table);
        for (workers, batch) in RUNS {
            let actual = run_table_join(&stream, &table, delay, Layout::Spread, Layout::Spread, workers, batch);
            check_same(&actual, &expected, &format!("table join at {workers} workers, batch {batch}"))?;
        }
    }

    /// With late stream events (the table on time): every event is emitted exactly once;
    /// an on-time event joins the version valid at its event time; a late one (joined
    /// with "what is known", which depends on how the inputs interleave) joins some
    /// version of its key at or before its event time, or none.
    #[test]
    fn table_left_join_with_late_events_emits_each_once_with_a_valid_version(
        stream in raw(150, 12), table in raw(150, 0), delay in 0i64..=20,
    ) {
        let stream = timeline(&stream, delay, 0);
        let table = table_updates(&timeline(&table, delay, RIGHT_IDS));
        let on_time: BTreeMap<u32, bool> = stream.iter().map(|e| e.id).zip(model::on_time(&stream, delay)).collect();
        let mut expected_ids: Vec<u32> = stream.iter().map(|e| e.id).collect();
        expected_ids.sort_unstable();
        let by_id: BTreeMap<u32, &Event> = stream.iter().map(|e| (e.id, e)).collect();
        for (workers, batch) in RUNS {
            let actual =
                run_table_join(&stream, &table, delay, Layout::OnePartition, Layout::OnePartition, workers, batch);
            let at = format!("{workers} workers, batch {batch}");
            let mut ids: Vec<u32> = actual.iter().map(|r| r.value.0).collect();
            ids.sort_unstable();
            check_same(&ids, &expected_ids, &format!("stream events emitted at {at}"))?;
            for record in &actual {
                let (id, key, value) = record.value;
                let event = by_id[&id];
                prop_assert_eq!((record.timestamp, key), (event.ts, event.key), "event {} at {}", id, at);
                if on_time[&id] {
                    let expected = model::table_value_at(&table, key, event.ts);
                    prop_assert_eq!(value, expected, "on-time event {:?} at {}", event, at);
                } else {
                    let possible = value.is_none()
                        || table.iter().any(|u| u.key == key && u.ts <= event.ts && u.value == value);
                    prop_assert!(possible, "late event {:?} joined {:?}, no version of its key, at {}", event, value, at);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Keyed process function with timers and value state

/// The process function of [`model::bucket_totals`].
#[derive(Clone)]
struct BucketTotals {
    bucket: i64,
    late: OutputTag<Event>,
    seen: ValueState<u64>,
    total: ValueState<i64>,
    buckets: ValueState<BTreeMap<i64, (u64, i64)>>,
}

impl BucketTotals {
    fn new(bucket: i64, late: &OutputTag<Event>) -> Self {
        BucketTotals {
            bucket,
            late: late.clone(),
            seen: ValueState::default(),
            total: ValueState::default(),
            buckets: ValueState::default(),
        }
    }
}

impl KeyedProcessFunction for BucketTotals {
    type Key = u8;
    type In = Event;
    type Out = Emitted;

    fn open(&mut self, state: &mut KeyedStateStore<u8>) {
        self.seen = state.value(&StateDescriptor::new("seen"));
        self.total = state.value(&StateDescriptor::new("total"));
        self.buckets = state.value(&StateDescriptor::new("buckets"));
    }

    fn process_element(&mut self, event: Event, ctx: &mut Context<'_, u8, Emitted>) {
        if ctx.timestamp() <= ctx.current_watermark() {
            ctx.output(&self.late, event);
            return;
        }
        let count = ctx.value(self.seen).unwrap_or(0) + 1;
        ctx.set_value(self.seen, count);
        ctx.emit(Emitted::Seen { key: event.key, id: event.id, count });
        let end = model::bucket_end(event.ts, self.bucket);
        ctx.update_value(self.buckets, |buckets| {
            let mut buckets = buckets.unwrap_or_default();
            let slot = buckets.entry(end).or_default();
            slot.0 += 1;
            slot.1 += event.value;
            Some(buckets)
        });
        ctx.register_event_time_timer(end);
    }

    fn on_timer(&mut self, at: Timestamp, _domain: TimeDomain, ctx: &mut Context<'_, u8, Emitted>) {
        let mut buckets = ctx.value(self.buckets).unwrap_or_default();
        let (count, sum) = buckets.remove(&at).unwrap_or_default();
        ctx.set_value(self.buckets, buckets);
        let total = ctx.value(self.total).unwrap_or(0) + sum;
        ctx.set_value(self.total, total);
        ctx.emit(Emitted::Closed { key: *ctx.key(), at, count, sum, total });
    }
}

fn run_bucket_totals(
    events: &[Event],
    delay: i64,
    bucket: i64,
    workers: usize,
    batch: usize,
) -> (Vec<Record<Emitted>>, Vec<Record<Event>>) {
    let env = StreamEnvironment::new().parallelism(workers).batch_size(batch);
    let (main, late) = (CollectSink::new(), CollectSink::new());
    let tag = OutputTag::<Event>::new("late");
    let mut gates = Vec::new();
    let processed = source(&env, events, Layout::Gated, delay, &mut gates)
        .key_by(|e: &Event| e.key)
        .process(BucketTotals::new(bucket, &tag));
    processed.sink(main.clone());
    processed.side_output(&tag).sink(late.clone());
    execute(env, gates, "process job");
    (sorted_records(&main), sorted_records(&late))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn keyed_process_function_with_timers_agrees_with_the_model(
        raw in raw(300, 12), delay in 0i64..=20, bucket in 1i64..=40,
    ) {
        let events = timeline(&raw, delay, 0);
        let expected = model::bucket_totals(&events, delay, bucket);
        for (workers, batch) in RUNS {
            let (main, late) = run_bucket_totals(&events, delay, bucket, workers, batch);
            let at = format!("{workers} workers, batch {batch}");
            check_same(&main, &expected.main, &format!("process output at {at}"))?;
            check_same(&late, &expected.late, &format!("late events at {at}"))?;
        }
    }
}

/// The generator is what makes the properties above worth running: most inputs must
/// have late events, and many must update fired windows within the allowed lateness.
#[test]
fn generated_inputs_have_late_events_and_updates() {
    let mut runner = TestRunner::deterministic();
    let strategy = (raw(300, 12), 0i64..=20, 5i64..=50, 1i64..=40, 1i64..=30);
    let (mut inputs, mut late, mut updates, mut session_updates, mut process_late, mut rescued) =
        (0usize, 0, 0, 0, 0, 0);
    for _ in 0..100 {
        let (raw, delay, size, lateness, gap) = strategy.new_tree(&mut runner).expect("an input").current();
        let events = timeline(&raw, delay, 0);
        let fixed = model::fixed_windows(&events, delay, size, size, 0, lateness);
        let sessions = model::session_windows(&events, delay, gap, lateness);
        let has_update = |out: &WindowOutput| out.results.iter().any(|r| r.value.kind == ResultKind::Update);
        inputs += 1;
        late += usize::from(!fixed.late.is_empty());
        updates += usize::from(has_update(&fixed));
        session_updates += usize::from(has_update(&sessions));
        rescued += usize::from(sessions.rescued > 0);
        process_late += usize::from(!model::bucket_totals(&events, delay, size).late.is_empty());
    }
    let counts = format!(
        "of {inputs} inputs, {late} have late events, {updates} tumbling updates, {session_updates} session \
         updates ({rescued} taking in an event behind the watermark), {process_late} events late for the process \
         function"
    );
    assert!(late * 4 >= inputs * 3 && process_late * 4 >= inputs * 3, "{counts}");
    assert!(updates * 3 >= inputs && session_updates * 3 >= inputs, "{counts}");
}
