//! The Nexmark queries of `examples/nexmark/` give the rows a plain Rust loop over the
//! same generated events gives, at one and at two workers.

mod common;

use serde_json::Value;
use sluice_connectors::nexmark::{self, Event};
use sluice_job::Job;
use std::path::Path;

const EVENTS: usize = 20_000;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nexmark").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs query `query` of the examples over the first `EVENTS` events at `parallelism`,
/// its sink replaced by a directory of JSON lines; returns the rows written.
fn run(query: &str, parallelism: usize) -> Vec<Value> {
    run_with(query, parallelism, &[])
}

/// As [`run`], each `(text, by)` of `replacements` replaced in the query first.
fn run_with(query: &str, parallelism: usize, replacements: &[(&str, &str)]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tables = example("tables.sql").replace("'events.num' = '1000000'", &format!("'events.num' = '{EVENTS}'"));
    assert!(tables.contains(&format!("'{EVENTS}'")), "the example's event count was replaced");
    let sink = format!("'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'", dir.path().display());
    let mut query = example(query).replace("'connector' = 'blackhole'", &sink);
    for (text, by) in replacements {
        assert!(query.contains(text), "the query holds {text}");
        query = query.replace(text, by);
    }
    let compiled = sluice_sql::compile(&format!("{tables}\n{query}"), &sluice_sql::Functions::default())
        .unwrap_or_else(|e| panic!("the job compiles: {e}"));
    let mut runtime = compiled.runtime;
    runtime.parallelism = parallelism;
    Job::new(compiled.graph.expect("the job inserts"), runtime).execute().expect("the job runs");
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("the sink's directory") {
        let text = std::fs::read_to_string(entry.expect("a part file").path()).expect("readable");
        rows.extend(text.lines().map(|line| serde_json::from_str::<Value>(line).expect("a JSON row")));
    }
    rows
}

/// Runs query `query`, whose results are updating, its sink replaced by a directory of
/// debezium-json changelog lines; returns the rows the changelog materializes. Every
/// retraction must take back a row the changelog holds.
fn run_updating(query: &str, parallelism: usize) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tables = example("tables.sql").replace("'events.num' = '1000000'", &format!("'events.num' = '{EVENTS}'"));
    let sink = format!("'connector' = 'filesystem', 'path' = '{}', 'format' = 'debezium-json'", dir.path().display());
    let query = example(query).replace("'connector' = 'blackhole'", &sink);
    let compiled = sluice_sql::compile(&format!("{tables}\n{query}"), &sluice_sql::Functions::default())
        .unwrap_or_else(|e| panic!("the job compiles: {e}"));
    let mut runtime = compiled.runtime;
    runtime.parallelism = parallelism;
    Job::new(compiled.graph.expect("the job inserts"), runtime).execute().expect("the job runs");
    let (rows, retracted) = common::materialize_changelog(dir.path());
    assert!(retracted > 0, "{query}: results were updated");
    rows.iter().map(|row| serde_json::from_str(row).expect("JSON")).collect()
}

fn bids() -> Vec<nexmark::Bid> {
    nexmark::generate(EVENTS)
        .into_iter()
        .filter_map(|e| match e {
            Event::Bid(bid) => Some(bid),
            _ => None,
        })
        .collect()
}

/// Flink's way of writing a TIMESTAMP(3) in JSON.
fn timestamp(millis: u64) -> String {
    let seconds = (millis / 1000) as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        millis % 1000
    )
}

/// Rows as sorted, comparable text.
fn sorted(rows: impl IntoIterator<Item = Value>) -> Vec<String> {
    let mut rows: Vec<String> = rows.into_iter().map(|r| r.to_string()).collect();
    rows.sort();
    rows
}

fn row(fields: &[(&str, Value)]) -> Value {
    Value::Object(fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<serde_json::Map<_, _>>())
}

#[test]
fn q0_passes_every_bid_through() {
    let expected = sorted(bids().iter().map(|b| {
        row(&[
            ("auction", b.auction.into()),
            ("bidder", b.bidder.into()),
            ("price", b.price.into()),
            ("dateTime", timestamp(b.date_time).into()),
            ("extra", b.extra.clone().into()),
        ])
    }));
    assert!(expected.len() > EVENTS / 2, "most events are bids");
    for parallelism in [1, 2] {
        assert_eq!(sorted(run("q0.sql", parallelism)), expected, "at {parallelism} workers");
    }
}

#[test]
fn q1_converts_prices_to_euros() {
    // Prices in thousandths of a euro: exact, as a DECIMAL(23, 3) is.
    let mut expected: Vec<(u64, u64, String, u64)> = bids()
        .iter()
        .map(|b| (b.auction as u64, b.bidder as u64, timestamp(b.date_time), b.price as u64 * 908))
        .collect();
    expected.sort();
    for parallelism in [1, 2] {
        let mut rows: Vec<(u64, u64, String, u64)> = run("q1.sql", parallelism)
            .iter()
            .map(|r| {
                let price = (r["price"].as_f64().expect("a number") * 1000.0).round() as u64;
                let time = r["dateTime"].as_str().expect("a time").to_string();
                (r["auction"].as_u64().expect("id"), r["bidder"].as_u64().expect("id"), time, price)
            })
            .collect();
        rows.sort();
        assert_eq!(rows, expected, "at {parallelism} workers");
    }
}

#[test]
fn q2_selects_the_bids_on_every_123rd_auction() {
    let expected = sorted(
        bids()
            .iter()
            .filter(|b| b.auction % 123 == 0)
            .map(|b| row(&[("auction", b.auction.into()), ("price", b.price.into())])),
    );
    assert!(!expected.is_empty(), "some bids are selected");
    for parallelism in [1, 2] {
        assert_eq!(sorted(run("q2.sql", parallelism)), expected, "at {parallelism} workers");
    }
}

#[test]
fn q3_joins_auctions_in_category_10_with_their_sellers_in_three_states() {
    let events = nexmark::generate(EVENTS);
    let persons: std::collections::HashMap<u64, &nexmark::Person> = events
        .iter()
        .filter_map(|e| match e {
            Event::Person(p) => Some((p.id as u64, p)),
            _ => None,
        })
        .collect();
    let expected = sorted(events.iter().filter_map(|e| match e {
        Event::Auction(a) if a.category == 10 => {
            let p = persons.get(&(a.seller as u64)).filter(|p| ["or", "id", "ca"].contains(&p.state.as_str()))?;
            Some(row(&[
                ("name", p.name.clone().into()),
                ("city", p.city.clone().into()),
                ("state", p.state.clone().into()),
                ("id", a.id.into()),
            ]))
        }
        _ => None,
    }));
    assert!(expected.len() > 10, "some auctions are matched: {}", expected.len());
    for parallelism in [1, 2] {
        assert_eq!(sorted(run("q3.sql", parallelism)), expected, "at {parallelism} workers");
    }
}

/// The start of the 10-second window `millis` is in.
fn window_start(millis: u64) -> u64 {
    millis - millis % 10_000
}

/// The sessions of `times` (each opening a window `gap` long, windows that touch
/// merged, as Flink merges them): each session's start, end and number of times.
fn sessions(mut times: Vec<u64>, gap: u64) -> Vec<(u64, u64, u64)> {
    times.sort_unstable();
    let mut sessions: Vec<(u64, u64, u64)> = Vec::new();
    for t in times {
        match sessions.last_mut() {
            Some(last) if t <= last.1 => {
                last.1 = last.1.max(t + gap);
                last.2 += 1;
            }
            _ => sessions.push((t, t + gap, 1)),
        }
    }
    sessions
}

#[test]
fn q11_counts_the_bids_of_each_bidders_sessions() {
    let mut by_bidder: std::collections::BTreeMap<u64, Vec<u64>> = std::collections::BTreeMap::new();
    for b in bids() {
        by_bidder.entry(b.bidder as u64).or_default().push(b.date_time);
    }
    let expected = sorted(by_bidder.into_iter().flat_map(|(bidder, times)| {
        sessions(times, 10_000).into_iter().map(move |(start, end, n)| {
            row(&[
                ("bidder", bidder.into()),
                ("bid_count", n.into()),
                ("starttime", timestamp(start).into()),
                ("endtime", timestamp(end).into()),
            ])
        })
    }));
    assert!(
        expected.len() < bids().len() && expected.iter().any(|r| !r.contains("\"bid_count\":1,")),
        "some sessions hold several bids"
    );
    for parallelism in [1, 2] {
        assert_eq!(sorted(run("q11.sql", parallelism)), expected, "at {parallelism} workers");
    }
}

#[test]
fn q12_counts_the_bids_of_each_bidder_in_windows_of_processing_time() {
    let mut expected: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for b in bids() {
        *expected.entry(b.bidder as u64).or_default() += 1;
    }
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    let first_window = timestamp(window_start(started.as_millis() as u64));
    for parallelism in [1, 2] {
        let rows = run("q12.sql", parallelism);
        let mut got: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
        for row in &rows {
            let (start, end) = (row["starttime"].as_str().expect("a start"), row["endtime"].as_str().expect("an end"));
            assert!(start >= first_window.as_str(), "a window of the time the job ran, not of the events: {row}");
            assert!(start.ends_with("0.000") && end.ends_with("0.000"), "windows of 10 seconds: {row}");
            *got.entry(row["bidder"].as_u64().expect("a bidder")).or_default() += row["bid_count"].as_u64().expect("n");
        }
        assert_eq!(got, expected, "every bid counted once, at {parallelism} workers");
    }
}

#[test]
fn q13_joins_each_bid_with_the_side_input_row_of_its_auction() {
    // Every other key of the side input, so that some bids find no row.
    let side = tempfile::NamedTempFile::new().expect("a side input file");
    let lines: String = (0..10_000).step_by(2).map(|k| format!("{k},value of {k}\n")).collect();
    std::fs::write(side.path(), lines).expect("written");
    let path = side.path().display().to_string();
    let expected = sorted(bids().into_iter().filter(|b| b.auction % 10_000 % 2 == 0).map(|b| {
        row(&[
            ("auction", b.auction.into()),
            ("bidder", b.bidder.into()),
            ("price", b.price.into()),
            ("dateTime", timestamp(b.date_time).into()),
            ("value", format!("value of {}", b.auction % 10_000).into()),
        ])
    }));
    assert!(!expected.is_empty() && expected.len() < bids().len(), "some bids join, some do not");
    for parallelism in [1, 2] {
        let got = run_with("q13.sql", parallelism, &[("examples/nexmark/side_input.csv", &path)]);
        assert_eq!(sorted(got), expected, "at {parallelism} workers");
    }
}

#[test]
fn q10_writes_each_bid_into_the_directory_of_its_day_and_minute() {
    let mut expected: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for b in bids() {
        let time = timestamp(b.date_time);
        // Partitions of a second rather than a minute: the events span a few seconds.
        let partition = format!("dt={}/hm={}%3A{}%3A{}", &time[..10], &time[11..13], &time[14..16], &time[17..19]);
        expected.entry(partition).or_default().push(format!("{},{},{}", b.auction, b.bidder, b.price));
    }
    expected.values_mut().for_each(|rows| rows.sort());
    assert!(expected.len() > 1, "the bids span several seconds");
    for parallelism in [1, 2] {
        let out = tempfile::tempdir().expect("output directory");
        let path = out.path().display().to_string();
        run_with("q10.sql", parallelism, &[("/tmp/sluice-nexmark-q10", &path), ("'HH:mm'", "'HH:mm:ss'")]);
        let mut got: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for day in std::fs::read_dir(out.path()).expect("the output") {
            let day = day.expect("a day").path();
            for minute in std::fs::read_dir(&day).expect("a day's directory") {
                let minute = minute.expect("a minute").path();
                let partition = minute.strip_prefix(out.path()).expect("inside").display().to_string();
                for part in std::fs::read_dir(&minute).expect("a minute's directory") {
                    let part = part.expect("a part").path();
                    assert!(part.extension().is_some_and(|e| e == "csv"), "a csv part: {}", part.display());
                    for line in std::fs::read_to_string(&part).expect("readable").lines() {
                        let fields: Vec<&str> = line.splitn(4, ',').collect();
                        assert!(fields[3].starts_with(&partition[3..13]), "the bid's time: {line}");
                        got.entry(partition.clone()).or_default().push(fields[..3].join(","));
                    }
                }
            }
        }
        got.values_mut().for_each(|rows| rows.sort());
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn q5_finds_the_auctions_with_the_most_bids_of_each_hopping_window() {
    // Windows of 10 s every 2 s: a bid is in the five whose start is a multiple of 2 s
    // in (t - 10 s, t].
    let mut counts: std::collections::BTreeMap<(u64, u64), u64> = std::collections::BTreeMap::new();
    for b in bids() {
        let last = b.date_time - b.date_time % 2_000;
        for start in (0..5).map(|i| last - i * 2_000) {
            *counts.entry((start, b.auction as u64)).or_default() += 1;
        }
    }
    let mut most: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for ((start, _), n) in &counts {
        let top = most.entry(*start).or_default();
        *top = (*top).max(*n);
    }
    let expected = sorted(
        counts
            .iter()
            .filter(|((start, _), n)| most[start] == **n)
            .map(|((_, auction), n)| row(&[("auction", (*auction).into()), ("num", (*n).into())])),
    );
    assert!(expected.len() >= most.len(), "every window has a hottest auction");
    for parallelism in [1, 2] {
        assert_eq!(sorted(run("q5.sql", parallelism)), expected, "at {parallelism} workers");
    }
}

#[test]
fn q7_finds_the_bids_at_each_windows_highest_price() {
    let bids = bids();
    let mut highest: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for b in &bids {
        let top = highest.entry(window_start(b.date_time) + 10_000).or_default();
        *top = (*top).max(b.price as u64);
    }
    let mut expected = Vec::new();
    for (end, top) in &highest {
        for b in bids.iter().filter(|b| b.price as u64 == *top && (end - 10_000..=*end).contains(&b.date_time)) {
            // The query's select list puts price before bidder.
            expected.push(row(&[
                ("auction", b.auction.into()),
                ("bidder", b.price.into()),
                ("price", b.bidder.into()),
                ("dateTime", timestamp(b.date_time).into()),
                ("extra", b.extra.clone().into()),
            ]));
        }
    }
    let expected = sorted(expected);
    assert!(expected.len() >= highest.len(), "every window has a highest bid");
    for parallelism in [1, 2] {
        assert_eq!(sorted(run("q7.sql", parallelism)), expected, "at {parallelism} workers");
    }
}

#[test]
fn q8_finds_the_persons_who_created_an_auction_in_the_window_they_joined() {
    let events = nexmark::generate(EVENTS);
    let mut persons = std::collections::BTreeSet::new();
    let mut sellers = std::collections::BTreeSet::new();
    for event in &events {
        match event {
            Event::Person(p) => {
                persons.insert((p.id as u64, window_start(p.date_time), p.name.clone()));
            }
            Event::Auction(a) => {
                sellers.insert((a.seller as u64, window_start(a.date_time)));
            }
            _ => {}
        }
    }
    let expected =
        sorted(persons.iter().filter(|(id, start, _)| sellers.contains(&(*id, *start))).map(|(id, start, name)| {
            row(&[("id", (*id).into()), ("name", name.clone().into()), ("stime", timestamp(*start).into())])
        }));
    assert!(!expected.is_empty(), "some persons sell in their first window");
    for parallelism in [1, 2] {
        assert_eq!(sorted(run("q8.sql", parallelism)), expected, "at {parallelism} workers");
    }
}

#[test]
fn q4_averages_the_winning_bids_of_each_category() {
    let events = nexmark::generate(EVENTS);
    let auctions: std::collections::HashMap<u64, &nexmark::Auction> = events
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => Some((a.id as u64, a)),
            _ => None,
        })
        .collect();
    let mut winning: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for event in &events {
        let Event::Bid(b) = event else { continue };
        let Some(a) = auctions.get(&(b.auction as u64)) else { continue };
        if (a.date_time..=a.expires).contains(&b.date_time) {
            let top = winning.entry(a.id as u64).or_default();
            *top = (*top).max(b.price as u64);
        }
    }
    let mut per_category: std::collections::BTreeMap<u64, (u64, u64)> = std::collections::BTreeMap::new();
    for (id, price) in &winning {
        let entry = per_category.entry(auctions[id].category as u64).or_default();
        entry.0 += price;
        entry.1 += 1;
    }
    // AVG of BIGINT into a BIGINT column: the average, truncated.
    let expected: Vec<(u64, u64)> = per_category.iter().map(|(c, (sum, n))| (*c, sum / n)).collect();
    assert!(expected.len() > 1, "several categories have winning bids");
    for parallelism in [1, 2] {
        let mut got: Vec<(u64, u64)> = run_updating("q4.sql", parallelism)
            .iter()
            .map(|r| (r["id"].as_u64().expect("a category"), r["final"].as_u64().expect("an average")))
            .collect();
        got.sort();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn q9_finds_each_auctions_winning_bid() {
    let events = nexmark::generate(EVENTS);
    let mut best: std::collections::BTreeMap<u64, (u64, std::cmp::Reverse<u64>)> = std::collections::BTreeMap::new();
    let auctions: std::collections::HashMap<u64, &nexmark::Auction> = events
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => Some((a.id as u64, a)),
            _ => None,
        })
        .collect();
    for event in &events {
        let Event::Bid(b) = event else { continue };
        let Some(a) = auctions.get(&(b.auction as u64)) else { continue };
        if (a.date_time..=a.expires).contains(&b.date_time) {
            let candidate = (b.price as u64, std::cmp::Reverse(b.date_time));
            let entry = best.entry(a.id as u64).or_insert(candidate);
            *entry = (*entry).max(candidate);
        }
    }
    let expected: Vec<(u64, u64, String)> =
        best.iter().map(|(id, (price, time))| (*id, *price, timestamp(time.0))).collect();
    assert!(!expected.is_empty(), "some auctions have bids");
    for parallelism in [1, 2] {
        let mut got: Vec<(u64, u64, String)> = run_updating("q9.sql", parallelism)
            .iter()
            .map(|r| {
                let time = r["bid_dateTime"].as_str().expect("a time").to_string();
                (r["id"].as_u64().expect("id"), r["price"].as_u64().expect("price"), time)
            })
            .collect();
        got.sort();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn q18_keeps_the_last_bid_of_each_bidder_on_each_auction() {
    let mut last: std::collections::BTreeMap<(u64, u64), u64> = std::collections::BTreeMap::new();
    for b in bids() {
        let time = last.entry((b.auction as u64, b.bidder as u64)).or_default();
        *time = (*time).max(b.date_time);
    }
    let expected: Vec<(u64, u64, String)> = last.iter().map(|((a, b), t)| (*a, *b, timestamp(*t))).collect();
    for parallelism in [1, 2] {
        let mut got: Vec<(u64, u64, String)> = run_updating("q18.sql", parallelism)
            .iter()
            .map(|r| {
                let time = r["dateTime"].as_str().expect("a time").to_string();
                (r["auction"].as_u64().expect("id"), r["bidder"].as_u64().expect("id"), time)
            })
            .collect();
        got.sort();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn q19_ranks_the_ten_highest_bids_of_each_auction() {
    let mut prices: std::collections::BTreeMap<u64, Vec<u64>> = std::collections::BTreeMap::new();
    for b in bids() {
        prices.entry(b.auction as u64).or_default().push(b.price as u64);
    }
    let mut expected: Vec<(u64, u64, u64)> = Vec::new();
    for (auction, mut list) in prices {
        list.sort_by(|a, b| b.cmp(a));
        expected.extend(list.iter().take(10).enumerate().map(|(i, p)| (auction, i as u64 + 1, *p)));
    }
    expected.sort();
    assert!(expected.iter().any(|(_, rank, _)| *rank == 10), "some auctions have ten bids");
    for parallelism in [1, 2] {
        let mut got: Vec<(u64, u64, u64)> = run_updating("q19.sql", parallelism)
            .iter()
            .map(|r| {
                let rank = r["rank_number"].as_u64().expect("a rank");
                (r["auction"].as_u64().expect("id"), rank, r["price"].as_u64().expect("price"))
            })
            .collect();
        got.sort();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn q14_classifies_bids_in_a_price_range_by_time_of_day_with_a_user_function() {
    let expected: Vec<(u64, u64, u64, String, String, u64)> = bids()
        .iter()
        .filter(|b| b.price * 908 > 1_000_000_000 && b.price * 908 < 50_000_000_000)
        .map(|b| {
            let hour = b.date_time / 3_600_000 % 24;
            let kind = match hour {
                8..=18 => "dayTime",
                0..=6 | 20.. => "nightTime",
                _ => "otherTime",
            };
            let c = b.extra.chars().filter(|c| *c == 'c').count() as u64;
            (b.auction as u64, b.price as u64 * 908, b.bidder as u64, kind.to_string(), timestamp(b.date_time), c)
        })
        .collect();
    let mut expected = expected;
    expected.sort();
    assert!(!expected.is_empty(), "some bids are in the range");
    for parallelism in [1, 2] {
        let mut got: Vec<(u64, u64, u64, String, String, u64)> = run("q14.sql", parallelism)
            .iter()
            .map(|r| {
                let price = (r["price"].as_f64().expect("a number") * 1000.0).round() as u64;
                let text = |k: &str| r[k].as_str().expect("text").to_string();
                let id = |k: &str| r[k].as_u64().expect("a number");
                (id("auction"), price, id("bidder"), text("bidTimeType"), text("dateTime"), id("c_counts"))
            })
            .collect();
        got.sort();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

/// Per key, q15's to q17's counts of bids (all, and in three price ranges).
#[derive(Default, Debug, PartialEq)]
struct Report {
    bids: [u64; 4],
    bidders: [std::collections::BTreeSet<u64>; 4],
    auctions: [std::collections::BTreeSet<u64>; 4],
    minute: String,
    prices: Vec<u64>,
}

impl Report {
    fn add(&mut self, b: &nexmark::Bid) {
        let range = match b.price {
            0..10_000 => 1,
            10_000..1_000_000 => 2,
            _ => 3,
        };
        for i in [0, range] {
            self.bids[i] += 1;
            self.bidders[i].insert(b.bidder as u64);
            self.auctions[i].insert(b.auction as u64);
        }
        self.minute = self.minute.clone().max(timestamp(b.date_time)[11..16].to_string());
        self.prices.push(b.price as u64);
    }

    /// The columns q15 and q16 write.
    fn counts(&self) -> Vec<(String, Value)> {
        let mut columns = Vec::new();
        let names = ["total", "rank1", "rank2", "rank3"];
        for (i, name) in names.iter().enumerate() {
            columns.push((format!("{name}_bids"), self.bids[i].into()));
            columns.push((format!("{name}_bidders"), (self.bidders[i].len() as u64).into()));
            columns.push((format!("{name}_auctions"), (self.auctions[i].len() as u64).into()));
        }
        columns
    }
}

fn day(millis: u64) -> String {
    timestamp(millis)[..10].to_string()
}

/// The columns of `row` named in `columns`.
fn pick(row: &Value, columns: &[(String, Value)]) -> Vec<(String, Value)> {
    columns.iter().map(|(name, _)| (name.clone(), row[name].clone())).collect()
}

#[test]
fn q15_reports_bids_bidders_and_auctions_per_day_and_price_range() {
    let mut reports: std::collections::BTreeMap<String, Report> = std::collections::BTreeMap::new();
    for b in bids() {
        reports.entry(day(b.date_time)).or_default().add(&b);
    }
    for parallelism in [1, 2] {
        let rows = run_updating("q15.sql", parallelism);
        assert_eq!(rows.len(), reports.len(), "one row per day");
        for row in rows {
            let report = &reports[row["day"].as_str().expect("a day")];
            assert_eq!(pick(&row, &report.counts()), report.counts(), "at {parallelism} workers");
        }
    }
}

#[test]
fn q16_reports_per_channel_and_day_with_the_last_minute() {
    let mut reports: std::collections::BTreeMap<(String, String), Report> = std::collections::BTreeMap::new();
    for b in bids() {
        reports.entry((b.channel.clone(), day(b.date_time))).or_default().add(&b);
    }
    assert!(reports.len() > 1, "several channels");
    for parallelism in [1, 2] {
        let rows = run_updating("q16.sql", parallelism);
        assert_eq!(rows.len(), reports.len(), "one row per channel and day");
        for row in rows {
            let key = (
                row["channel"].as_str().expect("a channel").to_string(),
                row["day"].as_str().expect("a day").to_string(),
            );
            let report = &reports[&key];
            assert_eq!(pick(&row, &report.counts()), report.counts(), "at {parallelism} workers");
            assert_eq!(row["minute"].as_str(), Some(report.minute.as_str()));
        }
    }
}

#[test]
fn q17_reports_per_auction_and_day_with_price_statistics() {
    let mut reports: std::collections::BTreeMap<(u64, String), Report> = std::collections::BTreeMap::new();
    for b in bids() {
        reports.entry((b.auction as u64, day(b.date_time))).or_default().add(&b);
    }
    let expected: Vec<Vec<u64>> = reports
        .iter()
        .map(|((auction, _), r)| {
            let (min, max) = (r.prices.iter().min().expect("a bid"), r.prices.iter().max().expect("a bid"));
            let sum: u64 = r.prices.iter().sum();
            let mut row = vec![*auction];
            row.extend(r.bids);
            row.extend([*min, *max, sum / r.prices.len() as u64, sum]);
            row
        })
        .collect();
    for parallelism in [1, 2] {
        let mut got: Vec<Vec<u64>> = run_updating("q17.sql", parallelism)
            .iter()
            .map(|r| {
                [
                    "auction",
                    "total_bids",
                    "rank1_bids",
                    "rank2_bids",
                    "rank3_bids",
                    "min_price",
                    "max_price",
                    "avg_price",
                    "sum_price",
                ]
                .iter()
                .map(|k| r[*k].as_u64().expect("a number"))
                .collect()
            })
            .collect();
        got.sort();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn q20_expands_bids_on_category_10_with_their_auction() {
    let events = nexmark::generate(EVENTS);
    let auctions: std::collections::HashMap<u64, &nexmark::Auction> = events
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) if a.category == 10 => Some((a.id as u64, a)),
            _ => None,
        })
        .collect();
    let mut expected: Vec<(u64, u64, String, String, u64)> = bids()
        .iter()
        .filter_map(|b| {
            let a = auctions.get(&(b.auction as u64))?;
            Some((b.auction as u64, b.bidder as u64, timestamp(b.date_time), timestamp(a.date_time), a.seller as u64))
        })
        .collect();
    expected.sort();
    assert!(!expected.is_empty(), "some bids are on category 10");
    for parallelism in [1, 2] {
        let mut got: Vec<(u64, u64, String, String, u64)> = run("q20.sql", parallelism)
            .iter()
            .map(|r| {
                let text = |k: &str| r[k].as_str().expect("a time").to_string();
                let id = |k: &str| r[k].as_u64().expect("a number");
                (id("auction"), id("bidder"), text("bid_dateTime"), text("auction_dateTime"), id("seller"))
            })
            .collect();
        got.sort();
        assert_eq!(got, expected, "at {parallelism} workers");
    }
}

#[test]
fn q21_numbers_channels_by_name_or_by_the_urls_channel_id() {
    // The channel_id parameter: at the start of the URL or after a '&', up to the next '&'.
    let parameter = |url: &str| {
        let mut at = 0;
        while let Some(found) = url[at..].find("channel_id=") {
            let start = at + found;
            if start == 0 || url.as_bytes()[start - 1] == b'&' {
                let value = &url[start + "channel_id=".len()..];
                return Some(value.split('&').next().unwrap_or_default().to_string());
            }
            at = start + 1;
        }
        None
    };
    let expected = sorted(bids().iter().filter_map(|b| {
        let named = ["apple", "google", "facebook", "baidu"].iter().position(|n| *n == b.channel.to_lowercase());
        let id = match named {
            Some(i) => i.to_string(),
            None => parameter(&b.url)?,
        };
        let fields = [("auction", b.auction.into()), ("bidder", b.bidder.into()), ("price", b.price.into())];
        let mut fields = fields.to_vec();
        fields.push(("channel", b.channel.clone().into()));
        fields.push(("channel_id", id.into()));
        Some(row(&fields))
    }));
    assert!(!expected.is_empty(), "some bids have a channel id");
    for parallelism in [1, 2] {
        assert_eq!(sorted(run("q21.sql", parallelism)), expected, "at {parallelism} workers");
    }
}

#[test]
fn q22_takes_the_first_directories_of_each_url() {
    let expected = sorted(bids().iter().map(|b| {
        let dir = |i: usize| b.url.split('/').nth(i).map_or(Value::Null, |d| d.into());
        row(&[
            ("auction", b.auction.into()),
            ("bidder", b.bidder.into()),
            ("price", b.price.into()),
            ("channel", b.channel.clone().into()),
            ("dir1", dir(3)),
            ("dir2", dir(4)),
            ("dir3", dir(5)),
        ])
    }));
    for parallelism in [1, 2] {
        assert_eq!(sorted(run("q22.sql", parallelism)), expected, "at {parallelism} workers");
    }
}

/// A JSON lines file of events in the `nexmark` crate's format, read by the
/// filesystem connector with a computed COALESCE row time (as the SQL benchmark's
/// tables do): the same bids as the generator's.
#[test]
fn bids_read_from_a_json_lines_file_are_the_generated_ones() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let events = dir.path().join("events.jsonl");
    nexmark::write_json_lines(&events, EVENTS).expect("events written");
    let out = dir.path().join("out");
    let tables = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/sql/file-tables.sql"))
        .expect("the benchmark's tables")
        .replace("EVENTS_FILE", &events.display().to_string());
    let job = format!(
        "{tables}\nCREATE TABLE out (auction BIGINT, price BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', \
         'format' = 'json');\nINSERT INTO out SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;",
        out.display()
    );
    let compiled = sluice_sql::compile(&job, &sluice_sql::Functions::default()).unwrap_or_else(|e| panic!("{e}"));
    Job::new(compiled.graph.expect("an insert"), compiled.runtime).execute().expect("the job runs");
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(&out).expect("the sink's directory") {
        let text = std::fs::read_to_string(entry.expect("a part").path()).expect("readable");
        rows.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).expect("JSON")));
    }
    let expected = sorted(
        bids()
            .iter()
            .filter(|b| b.auction % 123 == 0)
            .map(|b| row(&[("auction", b.auction.into()), ("price", b.price.into())])),
    );
    assert!(!expected.is_empty());
    assert_eq!(sorted(rows), expected);
}

/// Lines that are not JSON, or hold a field of the wrong type, do not stop the job:
/// they go to the dead letters and the other lines are read.
#[test]
fn malformed_lines_go_to_the_dead_letters() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"a\": 1, \"b\": \"x\"}\nnot json\n{\"a\": \"seven\", \"b\": \"y\"}\n{\"a\": 3}\n")
        .expect("input written");
    let out = dir.path().join("out");
    let job = format!(
        "CREATE TABLE t (a BIGINT, b STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE o (a BIGINT, b STRING) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         INSERT INTO o SELECT a, b FROM t;",
        input.display(),
        out.display()
    );
    let compiled = sluice_sql::compile(&job, &sluice_sql::Functions::default()).unwrap_or_else(|e| panic!("{e}"));
    let result = Job::new(compiled.graph.expect("an insert"), compiled.runtime).execute().expect("the job runs");
    assert_eq!(result.metrics.dead_letters(), 2, "the two bad lines are dead letters");
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(&out).expect("the sink's directory") {
        let text = std::fs::read_to_string(entry.expect("a part").path()).expect("readable");
        rows.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).expect("JSON")));
    }
    assert_eq!(sorted(rows), sorted([serde_json::json!({"a": 1, "b": "x"}), serde_json::json!({"a": 3, "b": null})]));
}
