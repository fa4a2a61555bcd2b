//! One small example per method of the typed API.

use sluice::prelude::*;
use sluice::runtime::{SourcePoll, SourceReader};
use sluice::{CoContext, KeyedStateStore, ListState, MapState, SinkWriter};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn run(env: StreamEnvironment) {
    if let Err(error) = env.execute() {
        panic!("the job failed: {error}");
    }
}

fn timestamped<T: Clone + Ord>(sink: &CollectSink<T>) -> Vec<(Timestamp, T)> {
    let mut records: Vec<(Timestamp, T)> = sink.records().into_iter().map(|r| (r.timestamp, r.value)).collect();
    records.sort();
    records
}

// ---------------------------------------------------------------------------------
// Stateless operators

#[test]
fn map_filter_flat_map_and_filter_map_keep_each_record_timestamp() {
    let env = StreamEnvironment::new().parallelism(2);
    let out = CollectSink::new();
    env.source(VecSource::timestamped(vec![(10, 1), (20, 2), (30, 3), (40, 4)]))
        .map(|n| n * 10)
        .filter(|n| *n > 10)
        .flat_map(|n| vec![n, n + 1])
        .filter_map(|n| (n % 2 == 1).then(|| format!("odd {n}")))
        .sink(out.clone());
    run(env);
    let expected = vec![(20, "odd 21".to_string()), (30, "odd 31".to_string()), (40, "odd 41".to_string())];
    assert_eq!(timestamped(&out), expected);
}

#[test]
fn union_merges_every_input() {
    let env = StreamEnvironment::new().parallelism(2);
    let out = CollectSink::new();
    let a = env.source(VecSource::new(vec![1, 2, 3]));
    let b = env.source(VecSource::new(vec![10, 20]));
    let c = env.source(VecSource::new(vec![100]));
    a.union(&[b, c]).sink(out.clone());
    run(env);
    assert_eq!(out.sorted_values(), vec![1, 2, 3, 10, 20, 100]);
}

#[test]
fn split_and_branch_route_every_record_exactly_once() {
    let env = StreamEnvironment::new().parallelism(2);
    let (even, odd) = (CollectSink::new(), CollectSink::new());
    let branches: Vec<CollectSink<u32>> = (0..3).map(|_| CollectSink::new()).collect();
    let numbers = env.source(VecSource::new((0u32..12).collect()));
    let (evens, odds) = numbers.split(|n| n % 2 == 0);
    evens.sink(even.clone());
    odds.sink(odd.clone());
    // Route 0, 1, 2 by n % 4; n % 4 == 3 routes to 7, past the end: the last branch.
    let routed = numbers.branch(3, |n| match n % 4 {
        3 => 7,
        r => r as usize,
    });
    assert_eq!(routed.len(), 3);
    for (stream, sink) in routed.iter().zip(&branches) {
        stream.sink(sink.clone());
    }
    run(env);
    assert_eq!(even.sorted_values(), vec![0, 2, 4, 6, 8, 10]);
    assert_eq!(odd.sorted_values(), vec![1, 3, 5, 7, 9, 11]);
    assert_eq!(branches[0].sorted_values(), vec![0, 4, 8]);
    assert_eq!(branches[1].sorted_values(), vec![1, 5, 9]);
    assert_eq!(branches[2].sorted_values(), vec![2, 3, 6, 7, 10, 11]);
}

/// A sink that notes which worker wrote each value.
#[derive(Clone, Default)]
struct WorkerSink {
    written: Arc<Mutex<Vec<(usize, u32)>>>,
}

struct WorkerWriter {
    worker: usize,
    written: Arc<Mutex<Vec<(usize, u32)>>>,
}

impl Sink<u32> for WorkerSink {
    type Writer = WorkerWriter;
    fn name(&self) -> String {
        "worker-sink".to_string()
    }
    fn writer(&self, context: &SinkContext) -> sluice::Result<WorkerWriter> {
        Ok(WorkerWriter { worker: context.worker, written: self.written.clone() })
    }
}

impl SinkWriter<u32> for WorkerWriter {
    fn write_batch(&mut self, batch: Vec<Record<u32>>) -> sluice::Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.extend(batch.into_iter().map(|r| (self.worker, r.value)));
        Ok(())
    }
}

impl WorkerSink {
    fn per_worker(&self) -> BTreeMap<usize, usize> {
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let mut counts = BTreeMap::new();
        written.iter().for_each(|(worker, _)| *counts.entry(*worker).or_default() += 1);
        counts
    }
}

#[test]
fn rebalance_spreads_batches_round_robin_over_workers() {
    let (kept, rebalanced) = (WorkerSink::default(), WorkerSink::default());
    let env = StreamEnvironment::new().parallelism(2).batch_size(1);
    // One partition: only worker 0 reads.
    let numbers = env.source(VecSource::partitioned(vec![(0u32..10).collect()]));
    numbers.sink(kept.clone());
    numbers.rebalance().sink(rebalanced.clone());
    run(env);
    assert_eq!(kept.per_worker(), BTreeMap::from([(0, 10)]), "without rebalance worker 0 writes everything");
    assert_eq!(rebalanced.per_worker(), BTreeMap::from([(0, 5), (1, 5)]), "batches of one alternate workers");
}

// ---------------------------------------------------------------------------------
// Keyed operators

#[test]
fn rolling_reduce_emits_every_running_result() {
    let env = StreamEnvironment::new().parallelism(2);
    let out = CollectSink::new();
    let input = vec![('a', 1), ('b', 10), ('a', 2), ('a', 3), ('b', 20)];
    env.source(VecSource::partitioned(vec![input]))
        .key_by(|(key, _)| *key)
        .reduce(|(key, x), (_, y)| (*key, x + y))
        .sink(out.clone());
    run(env);
    assert_eq!(out.sorted_values(), vec![('a', 1), ('a', 3), ('a', 6), ('b', 10), ('b', 30)]);
}

/// Orders add to an account's balance and payments take from it, in one keyed state;
/// an event-time timer reports the balance at the end of input.
#[derive(Clone, Default)]
struct Balance {
    balance: ValueState<i64>,
}

impl KeyedCoProcessFunction for Balance {
    type Key = u32;
    type In1 = (u32, i64);
    type In2 = (u32, i64);
    type Out = (u32, i64);

    fn open(&mut self, state: &mut KeyedStateStore<u32>) {
        self.balance = state.value(&StateDescriptor::new("balance"));
    }

    fn process_element1(&mut self, (_, amount): (u32, i64), ctx: &mut CoContext<'_, u32, (u32, i64)>) {
        ctx.update_value(self.balance, |b| Some(b.unwrap_or(0) + amount));
        ctx.register_event_time_timer(1_000);
    }

    fn process_element2(&mut self, (_, amount): (u32, i64), ctx: &mut CoContext<'_, u32, (u32, i64)>) {
        ctx.update_value(self.balance, |b| Some(b.unwrap_or(0) - amount));
        ctx.register_event_time_timer(1_000);
    }

    fn on_timer(&mut self, _at: Timestamp, domain: TimeDomain, ctx: &mut CoContext<'_, u32, (u32, i64)>) {
        assert_eq!(domain, TimeDomain::EventTime);
        let balance = ctx.value(self.balance).unwrap_or(0);
        ctx.emit((*ctx.key(), balance));
    }
}

#[test]
fn connected_streams_share_keyed_state_and_timers() {
    let env = StreamEnvironment::new().parallelism(2);
    let out = CollectSink::new();
    let orders = env.source(VecSource::new(vec![(1u32, 100i64), (2, 50), (1, 30), (3, 5)]));
    let payments = env.source(VecSource::new(vec![(1u32, 20i64), (2, 50), (4, 7)]));
    orders
        .key_by(|(account, _)| *account)
        .connect(&payments.key_by(|(account, _)| *account))
        .process(Balance::default())
        .sink(out.clone());
    run(env);
    assert_eq!(out.sorted_values(), vec![(1, 110), (2, 0), (3, 5), (4, -7)]);
}

/// Per key: a count (value state), the values in arrival order (list state) and how
/// often each value occurred (map state), reported by a timer at the end of input.
#[derive(Clone, Default)]
struct Profile {
    count: ValueState<u64>,
    values: ListState<i64>,
    occurrences: MapState<i64, u32>,
}

type ProfileOut = (char, u64, Vec<i64>, Vec<(i64, u32)>);

impl KeyedProcessFunction for Profile {
    type Key = char;
    type In = (char, i64);
    type Out = ProfileOut;

    fn open(&mut self, state: &mut KeyedStateStore<char>) {
        self.count = state.value(&StateDescriptor::new("count"));
        self.values = state.list(&StateDescriptor::new("values"));
        self.occurrences = state.map(&StateDescriptor::new("occurrences"));
    }

    fn process_element(&mut self, (_, value): (char, i64), ctx: &mut Context<'_, char, ProfileOut>) {
        ctx.update_value(self.count, |n| Some(n.unwrap_or(0) + 1));
        ctx.add_to_list(self.values, value);
        let seen = ctx.map_get(self.occurrences, &value).unwrap_or(0);
        ctx.map_put(self.occurrences, value, seen + 1);
        if value < 0 {
            // A negative value removes its opposite from the map.
            ctx.map_remove(self.occurrences, &-value);
        }
        ctx.register_event_time_timer(sluice::MAX_TIMESTAMP - 1);
    }

    fn on_timer(&mut self, _at: Timestamp, _domain: TimeDomain, ctx: &mut Context<'_, char, ProfileOut>) {
        let count = ctx.value(self.count).unwrap_or(0);
        let values = ctx.list(self.values);
        let occurrences = ctx.map_entries(self.occurrences);
        ctx.emit((*ctx.key(), count, values, occurrences));
        ctx.clear_value(self.count);
        ctx.clear_list(self.values);
        ctx.clear_map(self.occurrences);
    }
}

#[test]
fn process_function_keeps_value_list_and_map_state_per_key() {
    let env = StreamEnvironment::new().parallelism(2);
    let out = CollectSink::new();
    let input = vec![('x', 3), ('y', 1), ('x', 3), ('x', 5), ('y', 2), ('x', -3)];
    env.source(VecSource::partitioned(vec![input]))
        .key_by(|(key, _)| *key)
        .process(Profile::default())
        .sink(out.clone());
    run(env);
    assert_eq!(
        out.sorted_values(),
        vec![('x', 4, vec![3, 3, 5, -3], vec![(-3, 1), (5, 1)]), ('y', 2, vec![1, 2], vec![(1, 1), (2, 1)])]
    );
}

/// Records handed to the first worker that asks.
type Shared<T> = Arc<Mutex<Option<T>>>;

/// A source for worker 0 that emits its records, then stays open until `until` holds
/// (or, as a guard against a hang, a minute has passed); other workers read nothing.
struct OpenSource<T> {
    records: Shared<Vec<(Timestamp, T)>>,
    until: Arc<dyn Fn() -> bool + Send + Sync>,
    gave_up: Arc<AtomicBool>,
}

impl<T> OpenSource<T> {
    fn new(records: Vec<(Timestamp, T)>, until: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        OpenSource {
            records: Arc::new(Mutex::new(Some(records))),
            until: Arc::new(until),
            gave_up: Arc::new(AtomicBool::new(false)),
        }
    }
}

struct OpenReader<T> {
    records: std::vec::IntoIter<(Timestamp, T)>,
    until: Arc<dyn Fn() -> bool + Send + Sync>,
    gave_up: Arc<AtomicBool>,
    deadline: Instant,
    read: u64,
}

impl<T: Clone + Send + 'static> Source for OpenSource<T> {
    type Item = T;
    type Reader = OpenReader<T>;
    fn name(&self) -> String {
        "open-source".to_string()
    }
    fn reader(&self, worker: usize, _parallelism: usize) -> sluice::Result<OpenReader<T>> {
        let records = if worker == 0 {
            self.records.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(OpenReader {
            records: records.into_iter(),
            until: self.until.clone(),
            gave_up: self.gave_up.clone(),
            deadline: Instant::now() + Duration::from_secs(60),
            read: 0,
        })
    }
}

impl<T: Send + 'static> SourceReader for OpenReader<T> {
    type Batch = Vec<Record<T>>;
    fn poll(&mut self, max_records: usize) -> sluice::Result<SourcePoll<Vec<Record<T>>>> {
        let batch: Vec<Record<T>> = self.records.by_ref().take(max_records).map(|(t, v)| Record::new(t, v)).collect();
        if !batch.is_empty() {
            self.read += batch.len() as u64;
            return Ok(SourcePoll::Batch(batch));
        }
        if (self.until)() {
            return Ok(SourcePoll::Finished);
        }
        if Instant::now() > self.deadline {
            self.gave_up.store(true, Ordering::Relaxed);
            return Ok(SourcePoll::Finished);
        }
        Ok(SourcePoll::Pending)
    }
    fn position(&self) -> u64 {
        self.read
    }
}

/// Sets a processing-time timer a little after each record; the timer reports it.
#[derive(Clone)]
struct Reminder;

impl KeyedProcessFunction for Reminder {
    type Key = char;
    type In = char;
    type Out = (char, bool, bool);

    fn process_element(&mut self, _value: char, ctx: &mut Context<'_, char, Self::Out>) {
        let at = ctx.current_processing_time() + 20;
        ctx.register_processing_time_timer(at);
        // A timer set and deleted never fires.
        ctx.register_processing_time_timer(at + 1);
        ctx.delete_processing_time_timer(at + 1);
    }

    fn on_timer(&mut self, at: Timestamp, domain: TimeDomain, ctx: &mut Context<'_, char, Self::Out>) {
        let on_time = ctx.current_processing_time() >= at;
        ctx.emit((*ctx.key(), domain == TimeDomain::ProcessingTime, on_time));
    }
}

#[test]
fn processing_time_timers_fire_while_the_input_is_open() {
    let env = StreamEnvironment::new().parallelism(1).tick_interval(Duration::from_millis(5));
    let out = CollectSink::new();
    let watched = out.clone();
    let source = OpenSource::new(vec![(0, 'a'), (0, 'b')], move || watched.len() >= 2);
    let gave_up = source.gave_up.clone();
    env.source(source).key_by(|k| *k).process(Reminder).sink(out.clone());
    run(env);
    assert!(!gave_up.load(Ordering::Relaxed), "no processing-time timer fired while the input was open");
    assert_eq!(out.sorted_values(), vec![('a', true, true), ('b', true, true)]);
}

/// Commands for a keyed value with an event-time time to live.
#[derive(Clone, Debug)]
enum Command {
    Set(char, i64),
    Get(char),
    /// Only moves event time forward.
    Tick,
}

fn command_key(command: &Command) -> char {
    match command {
        Command::Set(key, _) | Command::Get(key) => *key,
        Command::Tick => '-',
    }
}

#[derive(Clone, Default)]
struct Remember {
    last: ValueState<i64>,
}

impl KeyedProcessFunction for Remember {
    type Key = char;
    type In = Command;
    type Out = (char, Timestamp, Option<i64>);

    fn open(&mut self, state: &mut KeyedStateStore<char>) {
        let ttl = StateTtl::new(100).event_time();
        self.last = state.value(&StateDescriptor::new("last").with_ttl(ttl));
    }

    fn process_element(&mut self, command: Command, ctx: &mut Context<'_, char, Self::Out>) {
        match command {
            Command::Set(_, value) => ctx.set_value(self.last, value),
            Command::Get(key) => {
                let value = ctx.value(self.last);
                let at = ctx.timestamp();
                ctx.emit((key, at, value));
            }
            Command::Tick => {}
        }
    }
}

#[test]
fn event_time_state_ttl_never_returns_expired_values() {
    // A value lives 100 ms of event time after the event that wrote it; it is read at
    // the event time of the reading event. One partition keeps each key's commands in
    // order; watermarks only sweep, so the batch size does not matter.
    let commands = vec![
        (1_000, Command::Tick),
        (1_001, Command::Set('a', 1)),
        (1_002, Command::Set('b', 2)),
        (1_050, Command::Get('a')), // 49 ms old
        (1_099, Command::Set('b', 3)),
        (1_100, Command::Get('a')), // 99 ms old
        (1_101, Command::Get('a')), // 100 ms old: expired
        (1_150, Command::Get('b')), // 51 ms after it was rewritten
        (1_400, Command::Tick),
        (1_401, Command::Get('b')), // expired (and swept by watermark 1_399)
        (1_402, Command::Get('c')), // never written
    ];
    let expected = vec![
        ('a', 1_050, Some(1)),
        ('a', 1_100, Some(1)),
        ('a', 1_101, None),
        ('b', 1_150, Some(3)),
        ('b', 1_401, None),
        ('c', 1_402, None),
    ];
    for (workers, batch) in [(1, 1), (1, 1024), (2, 7)] {
        let env = StreamEnvironment::new().parallelism(workers).batch_size(batch);
        let out = CollectSink::new();
        let records = commands.iter().map(|(t, c)| Record::new(*t, c.clone())).collect();
        env.source(VecSource::from_records(vec![records]))
            .with_watermarks(WatermarkStrategy::monotonous())
            .key_by(command_key)
            .process(Remember::default())
            .sink(out.clone());
        run(env);
        let reads: Vec<_> = timestamped(&out).into_iter().map(|(_, v)| v).collect();
        assert_eq!(reads, expected, "{workers} workers, batch {batch}");
    }
}

// ---------------------------------------------------------------------------------
// Windows

#[test]
fn window_count_reduce_and_process() {
    let env = StreamEnvironment::new().parallelism(2);
    let (counts, sums, lists) = (CollectSink::new(), CollectSink::new(), CollectSink::new());
    let input = vec![(5, ('a', 1)), (15, ('a', 2)), (17, ('a', 3)), (3, ('b', 4))];
    let windowed = env.source(VecSource::timestamped(input)).key_by(|(key, _)| *key).window(Tumbling::of(10));
    windowed.count().map(|r| (r.key, r.window.start, r.value, r.kind)).sink(counts.clone());
    windowed.reduce(|(k, x), (_, y)| (*k, x + y)).map(|r| (r.key, r.window.start, r.value.1)).sink(sums.clone());
    windowed
        .process(|key, window, records| vec![(*key, window.start, records.iter().map(|(_, n)| *n).sum::<i32>())])
        .sink(lists.clone());
    run(env);
    let final_ = ResultKind::Final;
    assert_eq!(counts.sorted_values(), vec![('a', 0, 1, final_), ('a', 10, 2, final_), ('b', 0, 1, final_)]);
    assert_eq!(sums.sorted_values(), vec![('a', 0, 1), ('a', 10, 5), ('b', 0, 4)]);
    assert_eq!(lists.sorted_values(), sums.sorted_values());
    // Results are stamped with their window's last millisecond.
    let stamps: Vec<Timestamp> = timestamped(&counts).into_iter().map(|(t, _)| t).collect();
    assert_eq!(stamps, vec![9, 9, 19]);
}

#[test]
fn early_results_report_open_windows_as_the_watermark_crosses_each_interval() {
    let env = StreamEnvironment::new().parallelism(1).batch_size(1);
    let out = CollectSink::new();
    env.source(VecSource::timestamped(vec![(5, 'a'), (25, 'a'), (27, 'a'), (150, 'a')]))
        .with_watermarks(WatermarkStrategy::monotonous())
        .key_by(|k| *k)
        .window(Tumbling::of(100))
        .early_results(10)
        .count()
        .map(|r| (r.kind, r.window.start, r.value))
        .sink(out.clone());
    run(env);
    // Watermarks 4, 24, 26, 149, MAX: a round crossed at 4, 24 and 149 reports the open
    // windows that changed since the last report; 149 also closes [0, 100).
    assert_eq!(
        out.values(),
        vec![
            (ResultKind::Early, 0, 1),
            (ResultKind::Early, 0, 2),
            (ResultKind::Early, 100, 1),
            (ResultKind::Final, 0, 3),
            (ResultKind::Final, 100, 1),
        ]
    );
}

/// A record behind the watermark but within the allowed lateness updates every sliding
/// window of it that already fired, including one that had no record of its key.
#[test]
fn a_late_record_updates_the_sliding_windows_that_fired() {
    let env = StreamEnvironment::new().parallelism(1).batch_size(1);
    let (out, late) = (CollectSink::new(), CollectSink::new());
    let tag = OutputTag::<char>::new("late");
    // Windows of 5 ms every 1 ms, 1 ms of lateness. 998 arrives at watermark 999:
    // [994, 999) has expired, [995, 1000) has fired, the later windows are open.
    let windows = env
        .source(VecSource::timestamped(vec![(1_000, 'k'), (998, 'k')]))
        .with_watermarks(WatermarkStrategy::monotonous())
        .key_by(|k| *k)
        .window(Sliding::of(5, 1))
        .allowed_lateness(1)
        .side_output_late_data(&tag)
        .count();
    windows.sink(out.clone());
    windows.side_output(&tag).sink(late.clone());
    run(env);
    let results: Vec<(Timestamp, u64, ResultKind)> =
        out.sorted_values().into_iter().map(|r| (r.window.start, r.value, r.kind)).collect();
    let (update, final_) = (ResultKind::Update, ResultKind::Final);
    assert_eq!(
        results,
        vec![
            (995, 1, update),
            (996, 2, final_),
            (997, 2, final_),
            (998, 2, final_),
            (999, 1, final_),
            (1_000, 1, final_)
        ]
    );
    assert!(late.is_empty(), "late: {:?}", late.values());
}

#[test]
fn processing_time_windows_fire_at_the_end_of_input() {
    let env = StreamEnvironment::new().parallelism(2);
    let out = CollectSink::new();
    let input: Vec<(char, u32)> = (0..50).map(|i| (if i % 3 == 0 { 'x' } else { 'y' }, i)).collect();
    env.source(VecSource::new(input))
        .key_by(|(key, _)| *key)
        .window(Tumbling::of(days(1)).processing_time())
        .count()
        .sink(out.clone());
    run(env);
    let results = out.values();
    assert!(results.iter().all(|r| r.kind == ResultKind::Final), "{results:?}");
    // A day boundary may fall inside the run and split a key's records in two windows.
    let mut per_key: BTreeMap<char, u64> = BTreeMap::new();
    results.iter().for_each(|r| *per_key.entry(r.key).or_default() += r.value);
    assert_eq!(per_key, BTreeMap::from([('x', 17), ('y', 33)]));
}

#[test]
fn an_idle_input_does_not_hold_back_the_watermark_of_a_union() {
    let env = StreamEnvironment::new().parallelism(1).tick_interval(Duration::from_millis(5));
    let out: CollectSink<WindowResult<char, u64>> = CollectSink::new();
    // Both inputs stay open until the window of 'a' closed. Input `quiet` has one record,
    // then none: once idle, the union follows `busy` alone, whose watermark is 2_999.
    let watched = out.clone();
    let closed = move || watched.values().iter().any(|r| r.key == 'a');
    let closed_too = closed.clone();
    let quiet = OpenSource::new(vec![(1_000, 'a')], closed);
    let busy = OpenSource::new(vec![(1_000, 'b'), (3_000, 'b')], closed_too);
    let gave_up = [quiet.gave_up.clone(), busy.gave_up.clone()];
    let quiet = env.source(quiet).with_watermarks(WatermarkStrategy::monotonous().with_idleness(50));
    let busy = env.source(busy).with_watermarks(WatermarkStrategy::monotonous());
    quiet.union(&[busy]).key_by(|k| *k).window(Tumbling::of(1_000)).count().sink(out.clone());
    run(env);
    assert!(
        gave_up.iter().all(|g| !g.load(Ordering::Relaxed)),
        "the window of the idle input never closed while the inputs were open"
    );
    let results: Vec<(char, Timestamp, u64)> =
        out.sorted_values().into_iter().map(|r| (r.key, r.window.start, r.value)).collect();
    assert_eq!(results, vec![('a', 1_000, 1), ('b', 1_000, 1), ('b', 3_000, 1)]);
}

/// An event behind the watermark, whose own window `[ts, ts + gap)` has expired, but
/// which overlaps a session that has not fired yet, belongs to that session.
#[test]
fn a_session_still_open_takes_in_an_event_behind_the_watermark() {
    let env = StreamEnvironment::new().parallelism(1).batch_size(1);
    let (out, late) = (CollectSink::new(), CollectSink::new());
    let tag = OutputTag::<i64>::new("late");
    // Gap 10: 20, 25 and 31 form the session [20, 41). 15 arrives at watermark 30: its
    // own window [15, 25) has expired, but it overlaps [20, 41), which fires at 40.
    let sessions = env
        .source(VecSource::timestamped(vec![(20, 20i64), (25, 25), (31, 31), (15, 15)]))
        .with_watermarks(WatermarkStrategy::monotonous())
        .key_by(|_| 'k')
        .window(Session::with_gap(10))
        .side_output_late_data(&tag)
        .count();
    sessions.sink(out.clone());
    sessions.side_output(&tag).sink(late.clone());
    run(env);
    let results: Vec<(Window, u64, ResultKind)> =
        out.values().into_iter().map(|r| (r.window, r.value, r.kind)).collect();
    assert_eq!(results, vec![(Window { start: 15, end: 41 }, 4, ResultKind::Final)]);
    assert!(late.is_empty(), "late: {:?}", late.values());
}

// ---------------------------------------------------------------------------------
// Joins

#[test]
fn interval_join_pairs_records_within_the_bounds() {
    let env = StreamEnvironment::new().parallelism(2);
    let out = CollectSink::new();
    let clicks = env.source(VecSource::timestamped(vec![(100, ('u', 1)), (200, ('u', 2)), (100, ('v', 3))]));
    let buys = env.source(VecSource::timestamped(vec![(105, ('u', 11)), (240, ('u', 12)), (90, ('v', 13))]));
    clicks
        .key_by(|(user, _)| *user)
        .interval_join(&buys.key_by(|(user, _)| *user), 0, 50)
        .process(|user, (_, click), (_, buy)| (*user, *click, *buy))
        .sink(out.clone());
    run(env);
    // A buy matches the clicks of the 50 ms before it; the pair has the later timestamp.
    assert_eq!(timestamped(&out), vec![(105, ('u', 1, 11)), (240, ('u', 2, 12))]);
}

#[test]
fn stream_table_joins_use_the_version_valid_at_each_event() {
    let env = StreamEnvironment::new().parallelism(2);
    let (inner, left) = (CollectSink::new(), CollectSink::new());
    // Currencies: e(uro), u(s dollar), g(b pound).
    let rates = env.source(VecSource::timestamped(vec![(0, ('e', 10)), (50, ('e', 11)), (20, ('u', 7))]));
    let table = rates.key_by(|(currency, _)| *currency).into_table();
    let orders =
        env.source(VecSource::timestamped(vec![(10, ('e', 2)), (60, ('e', 3)), (10, ('u', 1)), (70, ('g', 1))]));
    let orders = orders.key_by(|(currency, _)| *currency);
    orders.join_table(&table, |(c, n), (_, rate)| (*c, n * rate)).sink(inner.clone());
    orders.left_join_table(&table, |(c, n), rate| (*c, *n, rate.map(|(_, r)| *r))).sink(left.clone());
    run(env);
    assert_eq!(timestamped(&inner), vec![(10, ('e', 20)), (60, ('e', 33))]);
    assert_eq!(
        timestamped(&left),
        vec![(10, ('e', 2, Some(10))), (10, ('u', 1, None)), (60, ('e', 3, Some(11))), (70, ('g', 1, None))]
    );
}

#[test]
fn a_changelog_table_deletes_keys() {
    let env = StreamEnvironment::new().parallelism(1);
    let out = CollectSink::new();
    let changes =
        env.source(VecSource::timestamped(vec![(0, (1u8, Some('+'))), (10, (1, None)), (20, (1, Some('=')))]));
    let table = Table::from_changelog(&changes);
    env.source(VecSource::timestamped(vec![(5, 1u8), (15, 1), (25, 1)]))
        .key_by(|k| *k)
        .left_join_table(&table, |_, v| v.copied())
        .sink(out.clone());
    run(env);
    assert_eq!(timestamped(&out), vec![(5, Some('+')), (15, None), (25, Some('='))]);
}

/// Regression: two events of one key wait for the same watermark, and a table version
/// lies between their timestamps. Joining the first pruned the table to the watermark,
/// which dropped the version the second needs.
#[test]
fn table_join_keeps_the_versions_pending_events_need() {
    let env = StreamEnvironment::new().parallelism(1);
    let out = CollectSink::new();
    let changes = env.source(VecSource::timestamped(vec![(0, (1u8, Some('o'))), (15, (1, Some('n')))]));
    let table = Table::from_changelog(&changes);
    // No watermarks but the final one: both events wait for it.
    env.source(VecSource::timestamped(vec![(5, 1u8), (10, 1)]))
        .key_by(|k| *k)
        .left_join_table(&table, |_, v| v.copied())
        .sink(out.clone());
    run(env);
    assert_eq!(timestamped(&out), vec![(5, Some('o')), (10, Some('o'))]);
}

// ---------------------------------------------------------------------------------
// Errors

#[test]
fn parallelism_zero_is_rejected() {
    let env = StreamEnvironment::new().parallelism(0);
    env.source(VecSource::new(vec![1])).sink(CollectSink::new());
    let error = env.execute().expect_err("a job with no workers cannot run");
    assert!(matches!(error, Error::InvalidJob { .. }), "{error:?}");
    assert!(error.to_string().contains("parallelism must be at least 1"), "{error}");
}

#[test]
fn a_job_without_a_source_is_rejected() {
    let error = StreamEnvironment::new().parallelism(1).execute().expect_err("a job needs a source");
    assert!(matches!(error, Error::InvalidJob { .. }), "{error:?}");
    assert!(error.to_string().contains("no source"), "{error}");
}

#[test]
fn a_named_operator_shows_its_name_in_the_counters() {
    let env = StreamEnvironment::new().parallelism(1);
    env.source(VecSource::new(vec![1, 2, 3])).filter(|n| *n > 1).name("big-only").sink(CollectSink::new());
    let result = env.execute().unwrap_or_else(|error| panic!("the job failed: {error}"));
    let named = result.metrics.operator("big-only").expect("the filter is named big-only");
    assert_eq!((named.records_in, named.records_out), (3, 2));
}

#[test]
fn invalid_settings_are_rejected_with_their_name() {
    let cases: [(StreamEnvironment, &str); 3] = [
        (StreamEnvironment::new().parallelism(4).max_parallelism(2), "maximum parallelism"),
        (StreamEnvironment::new().parallelism(1).batch_size(0), "batch size"),
        (StreamEnvironment::new().parallelism(1).channel_capacity(0), "channel capacity"),
    ];
    for (env, problem) in cases {
        env.source(VecSource::new(vec![1])).sink(CollectSink::new());
        let error = env.execute().expect_err("an invalid setting fails the job");
        assert!(matches!(error, Error::InvalidJob { .. }), "{error:?}");
        assert!(error.to_string().contains(problem), "{error} does not name {problem}");
    }
}

#[test]
fn a_panicking_user_function_fails_the_job() {
    let env = StreamEnvironment::new().parallelism(2).batch_size(1);
    env.source(VecSource::new((0..100).collect::<Vec<u32>>()))
        .map(|n| if n == 42 { panic!("no 42 here") } else { n })
        .name("picky map")
        .key_by(|n| n % 3)
        .reduce(|a, b| a + b)
        .sink(CollectSink::new());
    let handle = env.start().unwrap_or_else(|error| panic!("the job did not start: {error}"));
    // A guard against a hang, not a measure of speed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "the job did not stop after a worker panicked");
        std::thread::sleep(Duration::from_millis(5));
    }
    let error = handle.join().expect_err("a panic fails the job");
    assert!(matches!(&error, Error::OperatorPanicked { operator, .. } if operator == "picky map"), "{error:?}");
    assert!(error.to_string().contains("no 42 here"), "{error}");
    assert_eq!(error.domain(), sluice::ErrorDomain::Internal);
}

#[test]
fn a_cancelled_job_stops_and_says_so() {
    let env = StreamEnvironment::new().parallelism(2);
    let source = OpenSource::new(vec![(0, 1u32), (1, 2)], || false);
    env.source(source).key_by(|n| *n).reduce(|a, b| a + b).sink(CollectSink::new());
    let handle = env.start().unwrap_or_else(|error| panic!("the job did not start: {error}"));
    assert!(!handle.is_finished(), "the source stays open");
    handle.cancel();
    let error = handle.join().expect_err("a cancelled job does not succeed");
    assert!(matches!(error, Error::Cancelled), "{error:?}");
}

/// Records without event time (no timestamp assigned) in an event-time window.
#[test]
fn an_event_time_window_over_untimed_records_fails_with_a_clear_error() {
    let env = StreamEnvironment::new().parallelism(1);
    env.source(VecSource::new(vec![1, 2, 3])).key_by(|n| *n).window(Tumbling::of(10)).count().sink(CollectSink::new());
    let error = env.execute().expect_err("records without event time cannot be windowed by event time");
    assert!(!matches!(error, Error::WorkerPanicked { .. }), "a worker panicked: {error}");
    assert!(error.to_string().contains("time"), "{error} does not name the missing event time");
}

/// Records timed at the ends of the i64 range, whose windows cannot be represented,
/// are counted as dead letters instead of landing in windows whose bounds wrapped
/// around; the rest is windowed as usual, with and without the pre-exchange combiner.
#[test]
fn records_at_the_ends_of_time_are_dead_letters_not_wrapped_windows() {
    for late_output in [false, true] {
        let env = StreamEnvironment::new().parallelism(2);
        let out = CollectSink::new();
        let times = vec![i64::MIN + 2, 5, 15, i64::MAX - 3, i64::MAX - 1];
        let timed = env
            .source(VecSource::new(times))
            .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(0).with_timestamp(|t: &i64| *t));
        let window = timed.key_by(|_| 0u8).window(Tumbling::of(10));
        let window = if late_output { window.side_output_late_data(&OutputTag::new("late")) } else { window };
        window.count().map(|r| (r.window.start, r.value)).sink(out.clone());
        let result = env.execute().expect("the job runs");
        assert_eq!(out.sorted_values(), vec![(0, 1), (10, 1)], "late output: {late_output}");
        assert_eq!(result.metrics.dead_letters(), 3, "late output: {late_output}");
    }
}
