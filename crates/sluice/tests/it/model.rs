//! A naive, single-threaded reference model of the engine's event-time semantics.
//!
//! Each function walks a `Vec` of events in arrival order, one event at a time, with the
//! watermark one source partition implies: before event `i` it is the largest timestamp
//! of events `0..i`, minus the out-of-orderness delay, minus one (the engine emits this
//! watermark before any event at or behind it, so which events are late does not depend
//! on batching). At the end of the input the watermark jumps to `MAX_TIMESTAMP`.
//!
//! The model keeps everything in plain vectors and ordered maps and recomputes by brute
//! force where it can: it shares no code with the engine.

use sluice::window::{ResultKind, Window, WindowResult};
use sluice::{Record, Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};
use std::collections::BTreeMap;

/// One input event: an id (unique within a test input), event time, key and value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub id: u32,
    pub ts: Timestamp,
    pub key: u8,
    pub value: i64,
}

/// A window aggregate: how many events, their sum, and which events (ids, sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Agg {
    pub count: u64,
    pub sum: i64,
    pub ids: Vec<u32>,
}

impl Agg {
    pub fn add(&mut self, event: &Event) {
        self.count += 1;
        self.sum += event.value;
        self.ids.push(event.id);
    }

    pub fn merge(&mut self, other: Agg) {
        self.count += other.count;
        self.sum += other.sum;
        self.ids.extend(other.ids);
    }

    /// The aggregate as reported: ids sorted, so results compare by content.
    pub fn result(&self) -> Agg {
        let mut ids = self.ids.clone();
        ids.sort_unstable();
        Agg { count: self.count, sum: self.sum, ids }
    }
}

pub type WindowRecord = Record<WindowResult<u8, Agg>>;

/// What a window operator emits: results (with their timestamps) and late events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowOutput {
    pub results: Vec<WindowRecord>,
    pub late: Vec<Record<Event>>,
    /// Session windows: events whose own window `[ts, ts + gap)` had expired, but that
    /// fell into a session still open (or within its allowed lateness), which took them.
    pub rescued: usize,
}

impl WindowOutput {
    /// Both lists sorted, for comparison as multisets.
    pub fn sorted(mut self) -> Self {
        self.results.sort();
        self.late.sort();
        self
    }
}

/// The watermark in force before each event of one partition.
pub fn watermarks_before(events: &[Event], delay: i64) -> Vec<Timestamp> {
    let mut max_seen: Option<Timestamp> = None;
    let mut before = Vec::with_capacity(events.len());
    for event in events {
        before.push(match max_seen {
            None => MIN_TIMESTAMP,
            Some(max) => max - delay - 1,
        });
        max_seen = Some(max_seen.map_or(event.ts, |max| max.max(event.ts)));
    }
    before
}

/// Whether each event is strictly ahead of the watermark in force when it arrives.
pub fn on_time(events: &[Event], delay: i64) -> Vec<bool> {
    events.iter().zip(watermarks_before(events, delay)).map(|(e, w)| e.ts > w).collect()
}

/// Whether a window ending at `end` can no longer change at `watermark`.
fn expired(end: Timestamp, lateness: i64, watermark: Timestamp) -> bool {
    (end - 1).saturating_add(lateness) <= watermark
}

fn window_record(key: u8, start: Timestamp, end: Timestamp, agg: &Agg, kind: ResultKind) -> WindowRecord {
    Record::new(end - 1, WindowResult { key, window: Window { start, end }, value: agg.result(), kind })
}

/// The starts of the fixed windows of `size`, one every `slide` from `offset`, that
/// contain `ts`: every `offset + k * slide` in `(ts - size, ts]`.
pub fn window_starts(ts: Timestamp, size: i64, slide: i64, offset: i64) -> Vec<Timestamp> {
    let lowest = ts - offset - size + 1;
    let first = -((-lowest).div_euclid(slide));
    let last = (ts - offset).div_euclid(slide);
    (first..=last).map(|k| offset + k * slide).collect()
}

/// Tumbling (`slide == size`) and sliding event-time windows over one partition, their
/// starts shifted by `offset`.
pub fn fixed_windows(events: &[Event], delay: i64, size: i64, slide: i64, offset: i64, lateness: i64) -> WindowOutput {
    struct Open {
        agg: Agg,
        fired: bool,
    }
    // Windows still kept, by (end, key).
    let mut open: BTreeMap<(Timestamp, u8), Open> = BTreeMap::new();
    let mut out = WindowOutput::default();
    let advance = |open: &mut BTreeMap<(Timestamp, u8), Open>, out: &mut WindowOutput, now: Timestamp| {
        for (&(end, key), window) in open.iter_mut() {
            if !window.fired && end - 1 <= now {
                window.fired = true;
                out.results.push(window_record(key, end - size, end, &window.agg, ResultKind::Final));
            }
        }
        open.retain(|&(end, _), _| !expired(end, lateness, now));
    };
    for (event, watermark) in events.iter().zip(watermarks_before(events, delay)) {
        advance(&mut open, &mut out, watermark);
        let mut assigned = false;
        for start in window_starts(event.ts, size, slide, offset) {
            let end = start + size;
            if expired(end, lateness, watermark) {
                continue;
            }
            assigned = true;
            let window = open
                .entry((end, event.key))
                .or_insert_with(|| Open { agg: Agg::default(), fired: end - 1 <= watermark });
            window.agg.add(event);
            if window.fired {
                out.results.push(window_record(event.key, start, end, &window.agg, ResultKind::Update));
            }
        }
        if !assigned {
            out.late.push(Record::new(event.ts, event.clone()));
        }
    }
    advance(&mut open, &mut out, MAX_TIMESTAMP);
    out.sorted()
}

/// Event-time session windows with inactivity `gap` over one partition. An event is
/// late when the session it belongs to, its own window merged with the kept sessions it
/// overlaps, has expired.
pub fn session_windows(events: &[Event], delay: i64, gap: i64, lateness: i64) -> WindowOutput {
    struct Session {
        start: Timestamp,
        end: Timestamp,
        agg: Agg,
        fired: bool,
        /// A result of (part of) it was emitted: the next one is an update.
        emitted: bool,
    }
    let mut sessions: BTreeMap<u8, Vec<Session>> = BTreeMap::new();
    let mut out = WindowOutput::default();
    let advance = |sessions: &mut BTreeMap<u8, Vec<Session>>, out: &mut WindowOutput, now: Timestamp| {
        for (&key, list) in sessions.iter_mut() {
            for session in list.iter_mut() {
                if !session.fired && session.end - 1 <= now {
                    session.fired = true;
                    let kind = if session.emitted { ResultKind::Update } else { ResultKind::Final };
                    session.emitted = true;
                    out.results.push(window_record(key, session.start, session.end, &session.agg, kind));
                }
            }
            list.retain(|s| !(s.fired && expired(s.end, lateness, now)));
        }
    };
    for (event, watermark) in events.iter().zip(watermarks_before(events, delay)) {
        advance(&mut sessions, &mut out, watermark);
        // The event's own window, merged with every kept session it overlaps (and those
        // they overlap): the session the event belongs to.
        let end = event.ts + gap;
        let mut agg = Agg::default();
        agg.add(event);
        let mut merged = Session { start: event.ts, end, agg, fired: false, emitted: false };
        let list = sessions.entry(event.key).or_default();
        let mut parts = Vec::new();
        while let Some(i) = list.iter().position(|s| s.start < merged.end && merged.start < s.end) {
            let part = list.remove(i);
            merged.start = merged.start.min(part.start);
            merged.end = merged.end.max(part.end);
            parts.push(part);
        }
        if expired(merged.end, lateness, watermark) {
            list.extend(parts);
            out.late.push(Record::new(event.ts, event.clone()));
            continue;
        }
        if expired(end, lateness, watermark) {
            out.rescued += 1;
        }
        for part in parts {
            merged.emitted |= part.emitted;
            merged.agg.merge(part.agg);
        }
        // A session that is already due when it forms (late data within the allowed
        // lateness) is an update; otherwise it fires when the watermark passes its end.
        merged.fired = merged.end - 1 <= watermark;
        if merged.fired {
            merged.emitted = true;
            out.results.push(window_record(event.key, merged.start, merged.end, &merged.agg, ResultKind::Update));
        }
        list.push(merged);
    }
    advance(&mut sessions, &mut out, MAX_TIMESTAMP);
    out.sorted()
}

/// Interval join: every pair with equal keys and `l.ts + lower <= r.ts <= l.ts + upper`,
/// as `(key, left id, right id)` stamped with the later timestamp. No event is dropped.
pub fn interval_join(left: &[Event], right: &[Event], lower: i64, upper: i64) -> Vec<Record<(u8, u32, u32)>> {
    let mut out = Vec::new();
    for l in left {
        for r in right {
            if l.key == r.key && l.ts + lower <= r.ts && r.ts <= l.ts + upper {
                out.push(Record::new(l.ts.max(r.ts), (l.key, l.id, r.id)));
            }
        }
    }
    out.sort();
    out
}

/// One change of a table: from `ts` on, `key` has `value` (`None`: no value).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableUpdate {
    pub ts: Timestamp,
    pub key: u8,
    pub value: Option<i64>,
}

/// The value of `key` in `table` as of `at`: the update with the latest timestamp at or
/// before `at` (update timestamps are distinct per key).
pub fn table_value_at(table: &[TableUpdate], key: u8, at: Timestamp) -> Option<i64> {
    table.iter().filter(|u| u.key == key && u.ts <= at).max_by_key(|u| u.ts).and_then(|u| u.value)
}

/// Versioned left join: each stream event with its key's table value as of its event
/// time, as `(id, key, value)` stamped with the event's timestamp.
pub fn table_left_join(stream: &[Event], table: &[TableUpdate]) -> Vec<Record<(u32, u8, Option<i64>)>> {
    let mut out: Vec<_> =
        stream.iter().map(|e| Record::new(e.ts, (e.id, e.key, table_value_at(table, e.key, e.ts)))).collect();
    out.sort();
    out
}

/// What the bucket-totals process function emits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Emitted {
    /// An on-time event arrived; it is the `count`-th on-time event of its key.
    Seen { key: u8, id: u32, count: u64 },
    /// The bucket ending at `at` closed with `count` events summing to `sum`; `total`
    /// sums every closed bucket of the key so far.
    Closed { key: u8, at: Timestamp, count: u64, sum: i64, total: i64 },
}

/// The last timestamp of the bucket of `bucket` milliseconds that holds `ts`.
pub fn bucket_end(ts: Timestamp, bucket: i64) -> Timestamp {
    ts.div_euclid(bucket) * bucket + bucket - 1
}

/// What the process function emits on its main output and its late side output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessOutput {
    pub main: Vec<Record<Emitted>>,
    pub late: Vec<Record<Event>>,
}

/// A keyed process function over one partition: an event at or behind the watermark
/// goes to the late output; an on-time event counts (value state), adds to its bucket
/// and sets an event-time timer at the bucket's end; the timer emits the bucket and the
/// key's running total.
pub fn bucket_totals(events: &[Event], delay: i64, bucket: i64) -> ProcessOutput {
    #[derive(Default)]
    struct KeyState {
        seen: u64,
        total: i64,
        buckets: BTreeMap<Timestamp, (u64, i64)>,
    }
    let mut keys: BTreeMap<u8, KeyState> = BTreeMap::new();
    let mut out = ProcessOutput::default();
    let fire = |keys: &mut BTreeMap<u8, KeyState>, out: &mut ProcessOutput, now: Timestamp| {
        for (&key, state) in keys.iter_mut() {
            while let Some((&at, _)) = state.buckets.first_key_value() {
                if at > now {
                    break;
                }
                let (count, sum) = state.buckets.remove(&at).unwrap_or_default();
                state.total += sum;
                out.main.push(Record::new(at, Emitted::Closed { key, at, count, sum, total: state.total }));
            }
        }
    };
    for (event, watermark) in events.iter().zip(watermarks_before(events, delay)) {
        fire(&mut keys, &mut out, watermark);
        if event.ts <= watermark {
            out.late.push(Record::new(event.ts, event.clone()));
            continue;
        }
        let state = keys.entry(event.key).or_default();
        state.seen += 1;
        out.main.push(Record::new(event.ts, Emitted::Seen { key: event.key, id: event.id, count: state.seen }));
        let slot = state.buckets.entry(bucket_end(event.ts, bucket)).or_default();
        slot.0 += 1;
        slot.1 += event.value;
    }
    fire(&mut keys, &mut out, MAX_TIMESTAMP);
    out.main.sort();
    out.late.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u32, ts: Timestamp, key: u8, value: i64) -> Event {
        Event { id, ts, key, value }
    }

    #[test]
    fn watermark_trails_the_maximum_by_delay_plus_one() {
        let events = [event(0, 10, 0, 0), event(1, 5, 0, 0), event(2, 20, 0, 0), event(3, 0, 0, 0)];
        assert_eq!(watermarks_before(&events, 2), vec![MIN_TIMESTAMP, 7, 7, 17]);
        assert_eq!(on_time(&events, 2), vec![true, false, true, false]);
    }

    #[test]
    fn window_starts_cover_the_timestamp() {
        assert_eq!(window_starts(15, 10, 10, 0), vec![10]);
        assert_eq!(window_starts(10, 10, 10, 0), vec![10]);
        assert_eq!(window_starts(9, 10, 10, 0), vec![0]);
        assert_eq!(window_starts(15, 10, 3, 0), vec![6, 9, 12, 15]);
        assert_eq!(window_starts(-1, 10, 10, 0), vec![-10]);
        assert_eq!(window_starts(15, 10, 10, 4), vec![14]);
        assert_eq!(window_starts(15, 10, 3, 1), vec![7, 10, 13]);
        // Hopping windows with gaps: 15 is in none of [0, 10), [30, 40).
        assert_eq!(window_starts(15, 10, 30, 0), Vec::<Timestamp>::new());
    }

    #[test]
    fn tumbling_model_fires_updates_and_drops_late_events() {
        // Window [0,10): 1@5 fires at watermark 19 (after 20); 2@7 arrives within the
        // lateness of 15 (9 + 15 > 19) and updates; 4@3 arrives at watermark 29 (after
        // 30): 9 + 15 <= 29, late.
        let events = [event(1, 5, 0, 1), event(2, 20, 0, 2), event(3, 7, 0, 3), event(4, 30, 0, 4), event(5, 3, 0, 5)];
        let out = fixed_windows(&events, 0, 10, 10, 0, 15);
        let kinds: Vec<(Timestamp, ResultKind, u64)> =
            out.results.iter().map(|r| (r.value.window.start, r.value.kind, r.value.value.count)).collect();
        assert_eq!(
            kinds,
            vec![
                (0, ResultKind::Final, 1),
                (0, ResultKind::Update, 2),
                (20, ResultKind::Final, 1),
                (30, ResultKind::Final, 1)
            ]
        );
        assert_eq!(out.late, vec![Record::new(3, events[4].clone())]);
    }

    #[test]
    fn session_model_merges_and_updates() {
        // gap 10: 1@0 and 2@5 form [0,15); 3@40 closes it (watermark 39); 4@12 is within
        // lateness 30 and extends it to [0,22), already due: an update.
        let events = [event(1, 0, 0, 1), event(2, 5, 0, 1), event(3, 40, 0, 1), event(4, 12, 0, 1)];
        let out = session_windows(&events, 0, 10, 30);
        let windows: Vec<(Window, ResultKind, u64)> =
            out.results.iter().map(|r| (r.value.window, r.value.kind, r.value.value.count)).collect();
        assert_eq!(
            windows,
            vec![
                (Window { start: 0, end: 15 }, ResultKind::Final, 2),
                (Window { start: 0, end: 22 }, ResultKind::Update, 3),
                (Window { start: 40, end: 50 }, ResultKind::Final, 1),
            ]
        );
        assert!(out.late.is_empty());
    }

    #[test]
    fn session_model_takes_an_event_behind_the_watermark_into_an_open_session() {
        // gap 10: 20, 25 and 31 form [20, 41); 15 arrives at watermark 30. Its own window
        // [15, 25) has expired, but it overlaps the open session, which takes it.
        let events = [event(1, 20, 0, 1), event(2, 25, 0, 1), event(3, 31, 0, 1), event(4, 15, 0, 1)];
        let out = session_windows(&events, 0, 10, 0);
        let windows: Vec<(Window, ResultKind, Vec<u32>)> =
            out.results.iter().map(|r| (r.value.window, r.value.kind, r.value.value.ids.clone())).collect();
        assert_eq!(windows, vec![(Window { start: 15, end: 41 }, ResultKind::Final, vec![1, 2, 3, 4])]);
        assert!(out.late.is_empty());
        assert_eq!(out.rescued, 1);
    }

    #[test]
    fn table_value_is_the_latest_version_at_or_before() {
        let table = [
            TableUpdate { ts: 10, key: 1, value: Some(1) },
            TableUpdate { ts: 20, key: 1, value: None },
            TableUpdate { ts: 30, key: 1, value: Some(3) },
        ];
        assert_eq!(table_value_at(&table, 1, 9), None);
        assert_eq!(table_value_at(&table, 1, 10), Some(1));
        assert_eq!(table_value_at(&table, 1, 25), None);
        assert_eq!(table_value_at(&table, 1, 30), Some(3));
        assert_eq!(table_value_at(&table, 2, 30), None);
    }
}
