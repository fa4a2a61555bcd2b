//! Window aggregations over window table functions give the rows a plain Rust loop
//! over the same events gives, at one and two workers.

use serde_json::Value;
use sluice_connectors::nexmark::{self, Event};
use sluice_job::Job;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const EVENTS: usize = 30_000;
/// The events a second of the runs stopped halfway.
const PACE: usize = 20_000;

fn tables() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nexmark/tables.sql");
    let tables = std::fs::read_to_string(path).expect("the example tables");
    tables.replace("'events.num' = '1000000'", &format!("'events.num' = '{EVENTS}'"))
}

/// Runs `insert` (into table `out` of `columns`) over the Nexmark tables; the rows written.
fn run(columns: &str, insert: &str, parallelism: usize) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let job = format!(
        "{}\nCREATE TABLE out ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n{insert}",
        tables(),
        dir.path().display()
    );
    let compiled = sluice_sql::compile(&job, &sluice_sql::Functions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut runtime = compiled.runtime;
    runtime.parallelism = parallelism;
    Job::new(compiled.graph.expect("an insert"), runtime).execute().expect("the job runs");
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("the sink's directory") {
        let text = std::fs::read_to_string(entry.expect("a part").path()).expect("readable");
        rows.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).expect("JSON")));
    }
    rows
}

/// What `EXPLAIN` prints of `insert` (into table `out` of `columns`), after `ddl`.
fn explain_after(ddl: &str, columns: &str, insert: &str) -> String {
    let job = format!(
        "{}\n{ddl}\nCREATE TABLE out ({columns}) WITH ('connector' = 'blackhole');\nEXPLAIN {insert};",
        tables()
    );
    let compiled = sluice_sql::compile(&job, &sluice_sql::Functions::default()).unwrap_or_else(|e| panic!("{e}"));
    compiled.explained.concat()
}

/// What `EXPLAIN` prints of `insert` (into table `out` of `columns`).
fn explain(columns: &str, insert: &str) -> String {
    explain_after("", columns, insert)
}

fn bids() -> Vec<nexmark::Bid> {
    bids_at(None)
}

/// The bids of the events generated `rate` a second (the generator's default rate
/// without).
fn bids_at(rate: Option<usize>) -> Vec<nexmark::Bid> {
    let mut config = nexmark::config();
    if let Some(rate) = rate {
        (config.first_rate, config.next_rate) = (rate, rate);
    }
    nexmark::generate_with(config, EVENTS)
        .into_iter()
        .filter_map(|e| match e {
            Event::Bid(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn millis(text: &str) -> i64 {
    // "2026-01-01 00:00:10.000": the events are all on the first day of 2026, and
    // the first hopping windows start on the day before.
    let (date, time) = text.split_once(' ').expect("a date and a time");
    let base = match date {
        "2026-01-01" => nexmark::BASE_TIME as i64,
        "2025-12-31" => nexmark::BASE_TIME as i64 - 86_400_000,
        other => panic!("a date far from the events': {other}"),
    };
    let parts: Vec<f64> = time.split(':').map(|p| p.parse().expect("a number")).collect();
    let [h, m, s] = parts[..] else { panic!("a time: {time}") };
    let (h, m) = (h as i64, m as i64);
    base + h * 3_600_000 + m * 60_000 + (s * 1000.0).round() as i64
}

#[test]
fn a_tumbling_window_aggregation_counts_bids_per_auction_and_window() {
    let insert = "INSERT INTO out
        SELECT auction, window_start, window_end, COUNT(*) AS bids, MAX(price) AS top,
               SUM(price) FILTER (WHERE price > 1000000) AS big
        FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
        GROUP BY auction, window_start, window_end";
    let columns =
        "auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, top BIGINT, big BIGINT";
    let mut expected: BTreeMap<(u64, i64), (u64, u64, Option<u64>)> = BTreeMap::new();
    for bid in bids() {
        let start = bid.date_time as i64 - (bid.date_time as i64).rem_euclid(10_000);
        let entry = expected.entry((bid.auction as u64, start)).or_insert((0, 0, None));
        entry.0 += 1;
        entry.1 = entry.1.max(bid.price as u64);
        if bid.price > 1_000_000 {
            entry.2 = Some(entry.2.unwrap_or(0) + bid.price as u64);
        }
    }
    assert!(expected.len() > 100, "many groups");
    for parallelism in [1, 2] {
        let mut got = BTreeMap::new();
        for row in run(columns, insert, parallelism) {
            let start = millis(row["window_start"].as_str().expect("a start"));
            assert_eq!(millis(row["window_end"].as_str().expect("an end")), start + 10_000);
            let key = (row["auction"].as_u64().expect("an auction"), start);
            let value =
                (row["bids"].as_u64().expect("a count"), row["top"].as_u64().expect("a max"), row["big"].as_u64());
            assert!(got.insert(key, value).is_none(), "one row per group: {row}");
        }
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn a_hopping_window_holds_each_bid_in_every_window_it_overlaps() {
    let insert = "INSERT INTO out
        SELECT window_start, window_end, COUNT(*) AS bids, COUNT(DISTINCT auction) AS auctions
        FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
        GROUP BY window_start, window_end";
    let columns = "window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, auctions BIGINT";
    let mut expected: BTreeMap<i64, (u64, std::collections::BTreeSet<u64>)> = BTreeMap::new();
    for bid in bids() {
        let last = bid.date_time as i64 - (bid.date_time as i64).rem_euclid(2_000);
        for start in (last - 8_000..=last).step_by(2_000) {
            let entry = expected.entry(start).or_default();
            entry.0 += 1;
            entry.1.insert(bid.auction as u64);
        }
    }
    let expected: BTreeMap<i64, (u64, u64)> =
        expected.into_iter().map(|(k, (n, a))| (k, (n, a.len() as u64))).collect();
    for parallelism in [1, 2] {
        let got: BTreeMap<i64, (u64, u64)> = run(columns, insert, parallelism)
            .iter()
            .map(|row| {
                let start = millis(row["window_start"].as_str().expect("a start"));
                (start, (row["bids"].as_u64().expect("a count"), row["auctions"].as_u64().expect("a count")))
            })
            .collect();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

/// Grouped by a key besides the window, a hopping window is aggregated by slices (each
/// bid once, into a slice as long as the slide), and gives the rows of every window
/// each bid overlaps.
#[test]
fn a_hopping_window_aggregation_by_slices_gives_each_auction_every_window_it_overlaps() {
    let columns =
        "auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, top BIGINT, big BIGINT";
    for (slide, size) in [(2_000, 10_000), (5_000, 15_000)] {
        let insert = format!(
            "INSERT INTO out
             SELECT auction, window_start, window_end, COUNT(*) AS bids, MAX(price) AS top,
                    COUNT(*) FILTER (WHERE price > 10000) AS big
             FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '{}' SECOND, INTERVAL '{}' SECOND))
             GROUP BY auction, window_start, window_end",
            slide / 1000,
            size / 1000
        );
        let plan = explain(columns, &insert);
        assert!(
            plan.contains(&format!("in slices of {slide} ms")) && plan.contains("sliced window aggregate"),
            "{plan}"
        );
        let mut expected: BTreeMap<(u64, i64), (u64, u64, u64)> = BTreeMap::new();
        for bid in bids() {
            let time = bid.date_time as i64;
            let last = time - time.rem_euclid(slide);
            for start in (last - size + slide..=last).step_by(slide as usize).filter(|s| time < s + size) {
                let entry = expected.entry((bid.auction as u64, start)).or_default();
                entry.0 += 1;
                entry.1 = entry.1.max(bid.price as u64);
                entry.2 += u64::from(bid.price > 10_000);
            }
        }
        assert!(!expected.is_empty());
        for parallelism in [1, 2] {
            let mut got = BTreeMap::new();
            for row in run(columns, &insert, parallelism) {
                let start = millis(row["window_start"].as_str().expect("a start"));
                assert_eq!(millis(row["window_end"].as_str().expect("an end")), start + size);
                let key = (row["auction"].as_u64().expect("an auction"), start);
                let value = (
                    row["bids"].as_u64().expect("a count"),
                    row["top"].as_u64().expect("a max"),
                    row["big"].as_u64().expect("a count"),
                );
                assert!(got.insert(key, value).is_none(), "one row per group: {row}");
            }
            assert_eq!(got, expected, "slide {slide}, size {size}, at {parallelism} workers");
        }
    }
}

/// A Top-N partitioned by window is a window Top-N: each window's first rows leave
/// once, as inserts, so an append-only sink takes them.
#[test]
fn a_window_top_n_keeps_the_three_auctions_with_most_bids_of_each_window() {
    let insert = "INSERT INTO out
        SELECT window_start, bids, rownum FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY bids DESC) AS rownum
            FROM (
                SELECT auction, window_start, window_end, COUNT(*) AS bids
                FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' SECOND))
                GROUP BY auction, window_start, window_end))
        WHERE rownum <= 3";
    let columns = "window_start TIMESTAMP(3), bids BIGINT, rownum BIGINT";
    let mut counts: BTreeMap<i64, BTreeMap<u64, u64>> = BTreeMap::new();
    for bid in bids() {
        let start = bid.date_time as i64 - (bid.date_time as i64).rem_euclid(1_000);
        *counts.entry(start).or_default().entry(bid.auction as u64).or_default() += 1;
    }
    // Per window, the three highest counts with their rank (ties rank in any order,
    // with the same counts).
    let mut expected: Vec<(i64, u64, u64)> = Vec::new();
    for (start, auctions) in counts {
        let mut top: Vec<u64> = auctions.into_values().collect();
        top.sort_by(|a, b| b.cmp(a));
        expected.extend(top.into_iter().take(3).enumerate().map(|(i, n)| (start, i as u64 + 1, n)));
    }
    expected.sort();
    assert!(expected.len() > 6, "several windows: {}", expected.len());
    for parallelism in [1, 2] {
        let mut got: Vec<(i64, u64, u64)> = run(columns, insert, parallelism)
            .iter()
            .map(|row| {
                let start = millis(row["window_start"].as_str().expect("a start"));
                (start, row["rownum"].as_u64().expect("a rank"), row["bids"].as_u64().expect("a count"))
            })
            .collect();
        got.sort();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

/// Runs `select` (rows of a key `k`, `window_start` and a count `n`), stopped after a
/// checkpoint at two workers and restarted from it at one: each row written once,
/// exactly-once into part files. The counts, by key and window start.
fn resumed_at_another_parallelism(select: &str) -> BTreeMap<(u64, i64), Vec<u64>> {
    let out = tempfile::tempdir().expect("output directory");
    let checkpoints = tempfile::tempdir().expect("checkpoint directory");
    // Paced, so that the first run is stopped halfway.
    let tables = tables().replace(
        &format!("'events.num' = '{EVENTS}'"),
        &format!("'events.num' = '{EVENTS}', 'first-event.rate' = '{PACE}'"),
    );
    let job = format!(
        "SET 'execution.checkpointing.interval' = '100ms';
         SET 'execution.checkpointing.dir' = '{}';
         {tables}
         CREATE TABLE out (k BIGINT, window_start TIMESTAMP(3), n BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO out {select};",
        checkpoints.path().display(),
        out.path().display()
    );
    let compile = |parallelism| {
        let compiled = sluice_sql::compile(&job, &sluice_sql::Functions::default()).unwrap_or_else(|e| panic!("{e}"));
        let mut runtime = compiled.runtime;
        runtime.parallelism = parallelism;
        Job::new(compiled.graph.expect("an insert"), runtime).checkpointing(compiled.checkpointing)
    };
    let first = compile(2).start().expect("the first run starts");
    while first.checkpoint_stats().is_none_or(|s| s.completed < 3) {
        assert!(!first.is_finished(), "the first run ended before its third checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stopped = first.stop().expect("the first run stops");
    let read = stopped.metrics.source_records();
    assert!(read > 0 && read < EVENTS as u64, "stopped halfway: {read} of {EVENTS} events read");

    let second = compile(1).execute().expect("the second run resumes and ends");
    assert!(second.checkpoints.and_then(|s| s.restored_from).is_some(), "the second run restored a checkpoint");

    let mut got: BTreeMap<(u64, i64), Vec<u64>> = BTreeMap::new();
    for entry in std::fs::read_dir(out.path()).expect("the output") {
        let path = entry.expect("a part").path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("readable").lines() {
            let row: Value = serde_json::from_str(line).expect("JSON");
            let key = (row["k"].as_u64().expect("a key"), millis(row["window_start"].as_str().expect("start")));
            got.entry(key).or_default().push(row["n"].as_u64().expect("a count"));
        }
    }
    got.values_mut().for_each(|counts| counts.sort_unstable());
    got
}

#[test]
fn a_window_aggregation_resumes_from_a_checkpoint_at_another_parallelism() {
    let got = resumed_at_another_parallelism(
        "SELECT auction AS k, window_start, COUNT(*) AS n
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
         GROUP BY auction, window_start, window_end",
    );
    let mut expected: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for bid in bids_at(Some(PACE)) {
        let start = bid.date_time as i64 - (bid.date_time as i64).rem_euclid(10_000);
        *expected.entry((bid.auction as u64, start)).or_default() += 1;
    }
    let expected: BTreeMap<(u64, i64), Vec<u64>> = expected.into_iter().map(|(k, n)| (k, vec![n])).collect();
    assert_eq!(got, expected);
}

#[test]
fn a_hopping_window_aggregation_by_slices_resumes_from_a_checkpoint_at_another_parallelism() {
    let got = resumed_at_another_parallelism(
        "SELECT auction AS k, window_start, COUNT(*) AS n
         FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '2' SECOND, INTERVAL '6' SECOND))
         GROUP BY auction, window_start, window_end",
    );
    let mut expected: BTreeMap<(u64, i64), u64> = BTreeMap::new();
    for bid in bids_at(Some(PACE)) {
        let last = bid.date_time as i64 - (bid.date_time as i64).rem_euclid(2_000);
        for start in (last - 4_000..=last).step_by(2_000) {
            *expected.entry((bid.auction as u64, start)).or_default() += 1;
        }
    }
    let expected: BTreeMap<(u64, i64), Vec<u64>> = expected.into_iter().map(|(k, n)| (k, vec![n])).collect();
    assert_eq!(got, expected);
}

/// The bids of each bidder's sessions (a session ends after `gap` without a bid), by
/// bidder and session start: the count and the session's end.
fn sessions(bids: &[nexmark::Bid], gap: i64) -> BTreeMap<(u64, i64), (u64, i64)> {
    let mut by_bidder: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for bid in bids {
        by_bidder.entry(bid.bidder as u64).or_default().push(bid.date_time as i64);
    }
    let mut sessions = BTreeMap::new();
    for (bidder, mut times) in by_bidder {
        times.sort_unstable();
        let mut current: Option<(i64, i64, u64)> = None;
        for t in times {
            current = match current {
                Some((start, end, n)) if t <= end => Some((start, end.max(t + gap), n + 1)),
                other => {
                    if let Some((start, end, n)) = other {
                        sessions.insert((bidder, start), (n, end));
                    }
                    Some((t, t + gap, 1))
                }
            };
        }
        if let Some((start, end, n)) = current {
            sessions.insert((bidder, start), (n, end));
        }
    }
    sessions
}

#[test]
fn a_session_window_merges_the_bids_of_a_bidder_less_than_the_gap_apart() {
    let insert = "INSERT INTO out
        SELECT bidder, window_start, window_end, COUNT(*) AS bids, MAX(price) - MIN(price) AS spread
        FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(dateTime), INTERVAL '5' SECOND))
        GROUP BY bidder, window_start, window_end";
    let columns = "bidder BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, spread BIGINT";
    let mut prices: BTreeMap<u64, Vec<(i64, i64)>> = BTreeMap::new();
    for bid in bids() {
        prices.entry(bid.bidder as u64).or_default().push((bid.date_time as i64, bid.price as i64));
    }
    let expected: BTreeMap<(u64, i64), (i64, u64, i64)> = sessions(&bids(), 5_000)
        .into_iter()
        .map(|((bidder, start), (n, end))| {
            let inside = prices[&bidder].iter().filter(|(t, _)| *t >= start && *t < end).map(|(_, p)| *p);
            let (lo, hi) = inside.fold((i64::MAX, i64::MIN), |(lo, hi), p| (lo.min(p), hi.max(p)));
            ((bidder, start), (end, n, hi - lo))
        })
        .collect();
    assert!(expected.values().any(|(_, n, _)| *n > 1), "some sessions hold several bids");
    for parallelism in [1, 2] {
        let got: BTreeMap<(u64, i64), (i64, u64, i64)> = run(columns, insert, parallelism)
            .into_iter()
            .map(|row| {
                let time = |c: &str| millis(row[c].as_str().expect("a time"));
                let number = |c: &str| row[c].as_i64().expect("a number");
                let key = (number("bidder") as u64, time("window_start"));
                (key, (time("window_end"), number("bids") as u64, number("spread")))
            })
            .collect();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn a_session_window_aggregation_resumes_from_a_checkpoint_at_another_parallelism() {
    let got = resumed_at_another_parallelism(
        "SELECT bidder AS k, SESSION_START(dateTime, INTERVAL '0.1' SECOND) AS window_start, COUNT(*) AS n
         FROM bid GROUP BY bidder, SESSION(dateTime, INTERVAL '0.1' SECOND)",
    );
    let bids = bids_at(Some(PACE));
    let expected: BTreeMap<(u64, i64), Vec<u64>> =
        sessions(&bids, 100).into_iter().map(|(k, (n, _))| (k, vec![n])).collect();
    assert!(
        expected.len() > expected.keys().map(|k| k.0).collect::<BTreeSet<_>>().len(),
        "some bidders have several sessions"
    );
    assert_eq!(got, expected);
}

#[test]
fn an_interval_join_pairs_each_person_with_the_auctions_they_open_within_ten_seconds() {
    let insert = "INSERT INTO out
        SELECT P.id AS person, A.id AS auction
        FROM person P JOIN auction A
          ON P.id = A.seller AND A.dateTime BETWEEN P.dateTime AND P.dateTime + INTERVAL '10' SECOND";
    let events = nexmark::generate(EVENTS);
    let persons: BTreeMap<i64, i64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Person(p) => Some((p.id as i64, p.date_time as i64)),
            _ => None,
        })
        .collect();
    let mut expected: Vec<(i64, i64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => {
                let joined = *persons.get(&(a.seller as i64))?;
                let opened = a.date_time as i64;
                (opened >= joined && opened <= joined + 10_000).then_some((a.seller as i64, a.id as i64))
            }
            _ => None,
        })
        .collect();
    expected.sort_unstable();
    assert!(!expected.is_empty(), "some persons open auctions within ten seconds");
    let sellers = events.iter().filter(|e| matches!(e, Event::Auction(_))).count();
    assert!(expected.len() < sellers, "and some auctions are opened later, or by persons not joined");
    let explained = explain("person BIGINT, auction BIGINT", insert);
    assert!(explained.contains("interval join"), "its rows go with the watermark: {explained}");
    for parallelism in [1, 2] {
        let mut got: Vec<(i64, i64)> = run("person BIGINT, auction BIGINT", insert, parallelism)
            .iter()
            .map(|row| (row["person"].as_i64().expect("a person"), row["auction"].as_i64().expect("an auction")))
            .collect();
        got.sort_unstable();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

/// Runs `AGG(price) OVER w` for the frame `frame` of bids per auction in time order;
/// the rows, as (auction, time, price, sum, count), sorted.
fn over(frame: &str, parallelism: usize) -> Vec<(i64, i64, i64, i64, i64)> {
    let insert = format!(
        "INSERT INTO out
         SELECT auction, dateTime, price, SUM(price) OVER w AS total, COUNT(*) OVER w AS n
         FROM bid WINDOW w AS (PARTITION BY auction ORDER BY dateTime {frame})"
    );
    let columns = "auction BIGINT, dateTime TIMESTAMP(3), price BIGINT, total BIGINT, n BIGINT";
    let mut rows: Vec<(i64, i64, i64, i64, i64)> = run(columns, &insert, parallelism)
        .iter()
        .map(|row| {
            let number = |c: &str| row[c].as_i64().expect("a number");
            (
                number("auction"),
                millis(row["dateTime"].as_str().expect("a time")),
                number("price"),
                number("total"),
                number("n"),
            )
        })
        .collect();
    rows.sort_unstable();
    rows
}

/// The same computed by a loop: each auction's bids in time order, and for each the
/// bids of its frame, from `start(bids before it and it, index)` to `end`.
fn over_loop(frame: impl Fn(&[(i64, i64)], usize) -> (usize, usize)) -> Vec<(i64, i64, i64, i64, i64)> {
    let mut by_auction: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for bid in bids() {
        by_auction.entry(bid.auction as i64).or_default().push((bid.date_time as i64, bid.price as i64));
    }
    let mut rows = Vec::new();
    for (auction, mut bids) in by_auction {
        bids.sort_by_key(|(time, _)| *time);
        for i in 0..bids.len() {
            let (start, end) = frame(&bids, i);
            let total: i64 = bids[start..=end].iter().map(|(_, p)| p).sum();
            rows.push((auction, bids[i].0, bids[i].1, total, (end - start + 1) as i64));
        }
    }
    rows.sort_unstable();
    rows
}

#[test]
fn over_aggregations_sum_each_bids_frame_of_its_auctions_bids_in_time_order() {
    let last_peer = |bids: &[(i64, i64)], i: usize| {
        let mut end = i;
        while end + 1 < bids.len() && bids[end + 1].0 == bids[i].0 {
            end += 1;
        }
        end
    };
    let rows = over_loop(|_, i| (i.saturating_sub(2), i));
    assert!(rows.iter().any(|r| r.4 == 3), "some frames hold three bids");
    // Bids of the same millisecond are in arrival order, which two workers interleave.
    assert_eq!(over("ROWS BETWEEN 2 PRECEDING AND CURRENT ROW", 1), rows, "two rows before");

    let rows = over_loop(|bids, i| (bids.partition_point(|(t, _)| *t < bids[i].0 - 100), last_peer(bids, i)));
    assert!(rows.iter().any(|r| r.4 > 1), "some frames hold several bids");
    for parallelism in [1, 2] {
        let got = over("RANGE BETWEEN INTERVAL '0.1' SECOND PRECEDING AND CURRENT ROW", parallelism);
        assert_eq!(got, rows, "the bids of the 100 ms before, at {parallelism} workers");
    }
    let rows = over_loop(|bids, i| (0, last_peer(bids, i)));
    for parallelism in [1, 2] {
        assert_eq!(over("", parallelism), rows, "every bid before, at {parallelism} workers");
    }
}

#[test]
fn an_over_aggregation_resumes_from_a_checkpoint_at_another_parallelism() {
    let got = resumed_at_another_parallelism(
        "SELECT auction AS k, dateTime AS window_start, COUNT(*) OVER (PARTITION BY auction ORDER BY dateTime) AS n
         FROM bid",
    );
    // Each bid's count: the bids of its auction at or before its time.
    let mut by_auction: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for bid in bids_at(Some(PACE)) {
        by_auction.entry(bid.auction as u64).or_default().push(bid.date_time as i64);
    }
    let mut expected: BTreeMap<(u64, i64), Vec<u64>> = BTreeMap::new();
    for (auction, times) in by_auction {
        for &t in &times {
            let n = times.iter().filter(|&&u| u <= t).count() as u64;
            expected.entry((auction, t)).or_default().push(n);
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn an_interval_left_join_pads_each_person_who_opens_no_auction_in_time_once_the_watermark_passes() {
    let insert = "INSERT INTO out
        SELECT P.id AS person, A.id AS auction
        FROM person P LEFT JOIN auction A
          ON P.id = A.seller AND A.dateTime BETWEEN P.dateTime AND P.dateTime + INTERVAL '1' SECOND";
    let columns = "person BIGINT, auction BIGINT";
    let explained = explain(columns, insert);
    assert!(explained.contains("left outer interval join"), "append-only: {explained}");
    let events = nexmark::generate(EVENTS);
    let auctions: Vec<(i64, i64, i64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => Some((a.id as i64, a.seller as i64, a.date_time as i64)),
            _ => None,
        })
        .collect();
    let mut expected: Vec<(i64, Option<i64>)> = Vec::new();
    for event in &events {
        let Event::Person(p) = event else { continue };
        let (id, joined) = (p.id as i64, p.date_time as i64);
        let opened: Vec<i64> = auctions
            .iter()
            .filter(|(_, seller, at)| *seller == id && *at >= joined && *at <= joined + 1_000)
            .map(|a| a.0)
            .collect();
        match opened.is_empty() {
            true => expected.push((id, None)),
            false => expected.extend(opened.into_iter().map(|a| (id, Some(a)))),
        }
    }
    expected.sort_unstable();
    assert!(expected.iter().any(|r| r.1.is_none()) && expected.iter().any(|r| r.1.is_some()), "both kinds of rows");
    for parallelism in [1, 2] {
        let mut got: Vec<(i64, Option<i64>)> = run(columns, insert, parallelism)
            .iter()
            .map(|row| (row["person"].as_i64().expect("a person"), row["auction"].as_i64()))
            .collect();
        got.sort_unstable();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

/// Each bid joined, as of its time, with the version of a versioned table (a price
/// list per `auction % 10`, a new version every 500 ms from 200 ms after the first
/// event) valid then: the latest at or before it.
#[test]
fn a_temporal_join_gives_each_bid_the_version_valid_at_its_time() {
    let dir = tempfile::tempdir().expect("a directory");
    let versions = dir.path().join("versions.json");
    let base = nexmark::BASE_TIME as i64;
    let mut lines = String::new();
    for j in 0..8 {
        for k in 0..10 {
            let at = base + 200 + j * 500;
            let seconds = (at - base) / 1000;
            lines.push_str(&format!(
                "{{\"k\": {k}, \"version\": {}, \"valid_from\": \"2026-01-01 00:00:{seconds:02}.{:03}\"}}\n",
                k * 100 + j,
                (at - base) % 1000
            ));
        }
    }
    std::fs::write(&versions, lines).expect("written");
    let table = format!(
        "CREATE TABLE prices (k BIGINT, version BIGINT, valid_from TIMESTAMP(3),
           PRIMARY KEY (k) NOT ENFORCED, WATERMARK FOR valid_from AS valid_from)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');",
        versions.display()
    );
    let expected = |outer: bool| -> Vec<(i64, i64, Option<i64>)> {
        let mut rows: Vec<(i64, i64, Option<i64>)> = bids()
            .iter()
            .filter_map(|b| {
                let (t, k) = (b.date_time as i64, b.auction as i64 % 10);
                let j = (0..8).rev().find(|j| base + 200 + j * 500 <= t);
                match j {
                    Some(j) => Some((b.auction as i64, t, Some(k * 100 + j))),
                    None if outer => Some((b.auction as i64, t, None)),
                    None => None,
                }
            })
            .collect();
        rows.sort_unstable();
        rows
    };
    assert!(expected(true).len() > expected(false).len(), "some bids are before the first version");
    for (join, outer) in [("JOIN", false), ("LEFT JOIN", true)] {
        let select = format!(
            "INSERT INTO out SELECT B.auction, B.dateTime, P.version
             FROM bid B {join} prices FOR SYSTEM_TIME AS OF B.dateTime AS P ON MOD(B.auction, 10) = P.k"
        );
        let insert = format!("{table}\n{select}");
        let columns = "auction BIGINT, dateTime TIMESTAMP(3), version BIGINT";
        let explained = explain_after(&table, columns, &select);
        assert!(explained.contains("temporal join of the versioned table prices"), "{explained}");
        for parallelism in [1, 2] {
            let mut got: Vec<(i64, i64, Option<i64>)> = run(columns, &insert, parallelism)
                .iter()
                .map(|row| {
                    let time = millis(row["dateTime"].as_str().expect("a time"));
                    (row["auction"].as_i64().expect("an auction"), time, row["version"].as_i64())
                })
                .collect();
            got.sort_unstable();
            assert_eq!(got, expected(outer), "{join} at {parallelism} workers");
        }
    }
}

/// Jobs using this file's features wrongly are refused when planned, with the reason.
#[test]
fn mistakes_in_windows_joins_and_generated_tables_are_refused_with_the_reason() {
    let refused = |ddl: &str, insert: &str, words: &[&str]| {
        let job = format!("{}\n{ddl}\n{insert}", tables());
        let error = match sluice_sql::compile(&job, &sluice_sql::Functions::default()) {
            Ok(_) => panic!("{insert} was accepted"),
            Err(error) => error.to_string(),
        };
        for word in words {
            assert!(error.contains(word), "'{word}' in: {error}");
        }
    };
    let out = "CREATE TABLE out (a BIGINT, b BIGINT) WITH ('connector' = 'blackhole');";
    refused(
        out,
        "INSERT INTO out SELECT bidder, COUNT(*) FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '1' \
         SECOND)) GROUP BY bidder, window_start",
        &["SESSION", "window_start and window_end"],
    );
    refused(
        out,
        "INSERT INTO out SELECT auction, SUM(price) OVER (PARTITION BY auction ORDER BY price) FROM bid",
        &["time attribute"],
    );
    refused(
        out,
        "INSERT INTO out SELECT auction, SUM(price) OVER (PARTITION BY auction ORDER BY dateTime DESC) FROM bid",
        &["ascending"],
    );
    refused(
        &format!("{out}\nCREATE TABLE side (k BIGINT, v BIGINT) WITH ('connector' = 'datagen');"),
        "INSERT INTO out SELECT B.auction, S.v FROM bid B JOIN side FOR SYSTEM_TIME AS OF B.dateTime AS S ON \
         B.auction = S.k",
        &["PROCTIME()", "versioned table", "PRIMARY KEY"],
    );
    refused(
        "CREATE TABLE gen (a BIGINT, b BIGINT) WITH ('connector' = 'datagen', 'fields.a.kind' = 'sequence');
         CREATE TABLE out (a BIGINT, b BIGINT) WITH ('connector' = 'blackhole');",
        "INSERT INTO out SELECT * FROM gen",
        &["table gen", "fields.a.start"],
    );
    refused(
        "CREATE TABLE gen (a BIGINT, b BIGINT) WITH ('connector' = 'datagen', 'fields.c.min' = '1');
         CREATE TABLE out (a BIGINT, b BIGINT) WITH ('connector' = 'blackhole');",
        "INSERT INTO out SELECT * FROM gen",
        &["no option 'fields.c.min'"],
    );
    refused(
        "CREATE TABLE t (a BIGINT, b BIGINT) WITH ('connector' = 'filesystem', 'path' = '/tmp/x', 'format' = 'csv',
           'csv.field-delimiter' = ';;');
         CREATE TABLE out (a BIGINT, b BIGINT) WITH ('connector' = 'blackhole');",
        "INSERT INTO out SELECT * FROM t",
        &["csv.field-delimiter", "one character"],
    );
    refused(
        "CREATE TABLE t (a BIGINT, b BIGINT) PARTITIONED BY (a, b) WITH ('connector' = 'filesystem', 'path' = \
         '/tmp/x', 'format' = 'csv');",
        "INSERT INTO t SELECT auction, price FROM bid",
        &["every column is a partition column"],
    );
}
