//! The Nexmark queries written with Sluice's typed API.

use crate::results::{Outcome, OutcomeSink};
use sluice::connectors::nexmark::{event_time, Event};
use sluice::prelude::*;
use sluice::{CollectSink, KeyedStateStore, Stream};
use sluice::{ListState, StateDescriptor};

/// The benchmark's queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    /// Pass-through of bids.
    Q0,
    /// Currency conversion of bid prices.
    Q1,
    /// Bids on some auctions.
    Q2,
    /// People in some states selling in one category (incremental join).
    Q3,
    /// Average winning price per category.
    Q4,
    /// Hot items: most bids in sliding windows.
    Q5,
    /// Highest bid per tumbling window.
    Q7,
    /// New people who opened auctions in the same window (window join).
    Q8,
    /// Bids per user session.
    Q11,
}

impl Query {
    /// Every query, in order.
    pub const ALL: [Query; 9] =
        [Query::Q0, Query::Q1, Query::Q2, Query::Q3, Query::Q4, Query::Q5, Query::Q7, Query::Q8, Query::Q11];

    /// `q0`, `q1`, ...
    pub fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q3 => "q3",
            Query::Q4 => "q4",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Q8 => "q8",
            Query::Q11 => "q11",
        }
    }

    /// Parses `q5` and the like.
    pub fn parse(name: &str) -> Option<Query> {
        Query::ALL.into_iter().find(|q| q.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether results are few enough to compare row by row.
    pub fn keeps_rows(self) -> bool {
        !matches!(self, Query::Q0 | Query::Q1 | Query::Q2)
    }
}

/// Window sizes of the queries, as in the Nexmark suite.
pub const WINDOW: i64 = 10_000;
/// The slide of q5's sliding windows.
pub const SLIDE: i64 = 2_000;
/// The gap of q11's sessions.
pub const SESSION_GAP: i64 = 10_000;

fn bids(events: &Stream<Event>) -> Stream<sluice::connectors::nexmark::Bid> {
    events.filter_map(|e: Event| match e {
        Event::Bid(b) => Some(b),
        _ => None,
    })
}

fn timed(events: &Stream<Event>) -> Stream<Event> {
    events.with_watermarks(WatermarkStrategy::bounded_out_of_orderness(0).with_timestamp(event_time))
}

/// Adds `query` over `events` to the job, and returns how to read its outcome once the
/// job has run.
pub fn build(query: Query, events: &Stream<Event>) -> Box<dyn FnOnce() -> Outcome> {
    let sink = OutcomeSink::new(query.keeps_rows());
    match query {
        Query::Q0 => bids(events).map(|b| (b.auction, b.bidder, b.price, b.date_time, b.extra)).sink(sink.clone()),
        Query::Q1 => bids(events).map(|b| (b.auction, b.bidder, b.price * 908 / 1000, b.date_time)).sink(sink.clone()),
        Query::Q2 => events
            .filter_map(|e: Event| match e {
                Event::Bid(b) if b.auction % 123 == 0 => Some((b.auction, b.price)),
                _ => None,
            })
            .sink(sink.clone()),
        Query::Q3 => q3(events).sink(sink.clone()),
        Query::Q4 => {
            let updates = CollectSink::new();
            q4(events).sink(updates.clone());
            return Box::new(move || {
                // The running averages are a changelog; the last update of each
                // category (the one with the highest count) is its result.
                let mut last: rustc_hash::FxHashMap<usize, (u64, u64)> = Default::default();
                for (category, sum, count) in updates.values() {
                    let entry = last.entry(category).or_insert((0, 0));
                    if count > entry.1 {
                        *entry = (sum, count);
                    }
                }
                let mut builder = crate::results::OutcomeBuilder::new(true);
                for (category, (sum, count)) in last {
                    builder.add(&(category, sum / count));
                }
                builder.finish()
            });
        }
        Query::Q5 => q5(events).sink(sink.clone()),
        Query::Q7 => q7(events).sink(sink.clone()),
        Query::Q8 => q8(events).sink(sink.clone()),
        Query::Q11 => q11(events).sink(sink.clone()),
    }
    Box::new(move || sink.outcome())
}

/// Adds `query` over `events` to the job, writing its results as JSON lines into part
/// files in `output` (exactly-once when the job checkpoints exactly-once). q4 writes
/// its running averages as they change.
pub fn write_json_lines(query: Query, events: &Stream<Event>, output: &std::path::Path) -> sluice::Result<()> {
    match query {
        Query::Q0 => bids(events)
            .map(|b| (b.auction, b.bidder, b.price, b.date_time, b.extra))
            .sink(JsonLinesSink::directory(output)?),
        Query::Q1 => bids(events)
            .map(|b| (b.auction, b.bidder, b.price * 908 / 1000, b.date_time))
            .sink(JsonLinesSink::directory(output)?),
        Query::Q2 => events
            .filter_map(|e: Event| match e {
                Event::Bid(b) if b.auction % 123 == 0 => Some((b.auction, b.price)),
                _ => None,
            })
            .sink(JsonLinesSink::directory(output)?),
        Query::Q3 => q3(events).sink(JsonLinesSink::directory(output)?),
        Query::Q4 => q4(events).sink(JsonLinesSink::directory(output)?),
        Query::Q5 => q5(events).sink(JsonLinesSink::directory(output)?),
        Query::Q7 => q7(events).sink(JsonLinesSink::directory(output)?),
        Query::Q8 => q8(events).sink(JsonLinesSink::directory(output)?),
        Query::Q11 => q11(events).sink(JsonLinesSink::directory(output)?),
    }
    Ok(())
}

/// q3: people from OR, ID or CA who sell in category 10: (name, city, state, auction).
fn q3(events: &Stream<Event>) -> Stream<(String, String, String, usize)> {
    let persons = events
        .filter_map(|e: Event| match e {
            Event::Person(p) if matches!(p.state.as_str(), "or" | "id" | "ca") => Some((p.id, p.name, p.city, p.state)),
            _ => None,
        })
        .key_by(|p| p.0);
    let auctions = events
        .filter_map(|e: Event| match e {
            Event::Auction(a) if a.category == 10 => Some((a.seller, a.id)),
            _ => None,
        })
        .key_by(|a| a.0);
    persons.connect(&auctions).process(IncrementalJoin::default())
}

/// Joins each seller with their auctions, whichever arrives first.
#[derive(Clone, Default)]
struct IncrementalJoin {
    person: ValueState<(String, String, String)>,
    waiting: ListState<usize>,
}

impl KeyedCoProcessFunction for IncrementalJoin {
    type Key = usize;
    type In1 = (usize, String, String, String);
    type In2 = (usize, usize);
    type Out = (String, String, String, usize);

    fn open(&mut self, state: &mut KeyedStateStore<usize>) {
        self.person = state.value(&StateDescriptor::new("person"));
        self.waiting = state.list(&StateDescriptor::new("waiting-auctions"));
    }

    fn process_element1(&mut self, (_, name, city, state): Self::In1, ctx: &mut Context<'_, usize, Self::Out>) {
        for auction in ctx.list(self.waiting) {
            ctx.emit((name.clone(), city.clone(), state.clone(), auction));
        }
        ctx.clear_list(self.waiting);
        ctx.set_value(self.person, (name, city, state));
    }

    fn process_element2(&mut self, (_, auction): Self::In2, ctx: &mut Context<'_, usize, Self::Out>) {
        match ctx.value(self.person) {
            Some((name, city, state)) => ctx.emit((name, city, state, auction)),
            None => ctx.add_to_list(self.waiting, auction),
        }
    }
}

/// q4: the winning (highest valid) bid of each auction when it closes, then the running
/// average per category as (category, sum, count).
fn q4(events: &Stream<Event>) -> Stream<(usize, u64, u64)> {
    let events = timed(events);
    let auctions = events
        .filter_map(|e: Event| match e {
            Event::Auction(a) => Some((a.id, a.category, a.date_time as i64, a.expires as i64)),
            _ => None,
        })
        .key_by(|a| a.0);
    let bids = bids(&events).map(|b| (b.auction, b.price, b.date_time as i64)).key_by(|b| b.0);
    auctions
        .connect(&bids)
        .process(WinningBid::default())
        .map(|(category, price)| (category, price as u64, 1u64))
        .key_by(|c| c.0)
        .reduce(|a, b| (a.0, a.1 + b.1, a.2 + b.2))
}

/// How long a closed auction is remembered, in event time, so that bids arriving after
/// it closed are recognised as too late rather than kept as early bids.
const RETAIN: i64 = 60_000;

/// Tracks the highest bid within an auction's lifetime and emits it when it expires.
///
/// Bids may arrive before their auction (they come from another partition). They wait
/// in state until the watermark passes their own time: by then the auction, which
/// opened no later than the bid, has arrived if it exists, so the bid can be dropped.
#[derive(Clone, Default)]
struct WinningBid {
    auction: ValueState<(usize, i64, i64)>,
    best: ValueState<usize>,
    early: ListState<(usize, i64)>,
}

impl KeyedCoProcessFunction for WinningBid {
    type Key = usize;
    type In1 = (usize, usize, i64, i64);
    type In2 = (usize, usize, i64);
    type Out = (usize, usize);

    fn open(&mut self, state: &mut KeyedStateStore<usize>) {
        self.auction = state.value(&StateDescriptor::new("auction"));
        self.best = state.value(&StateDescriptor::new("best-price"));
        self.early = state.list(&StateDescriptor::new("early-bids"));
    }

    fn process_element1(&mut self, (_, category, opened, expires): Self::In1, ctx: &mut Context<'_, usize, Self::Out>) {
        let mut best = None;
        for (price, time) in ctx.list(self.early) {
            if time >= opened && time <= expires {
                best = best.max(Some(price));
            }
        }
        ctx.clear_list(self.early);
        if let Some(price) = best {
            ctx.set_value(self.best, price);
        }
        ctx.set_value(self.auction, (category, opened, expires));
        ctx.register_event_time_timer(expires);
        ctx.register_event_time_timer(expires + RETAIN);
    }

    fn process_element2(&mut self, (_, price, time): Self::In2, ctx: &mut Context<'_, usize, Self::Out>) {
        match ctx.value(self.auction) {
            Some((_, opened, expires)) => {
                if time >= opened && time <= expires {
                    ctx.update_value(self.best, |best| Some(best.map_or(price, |b: usize| b.max(price))));
                }
            }
            None => {
                ctx.add_to_list(self.early, (price, time));
                ctx.register_event_time_timer(time);
            }
        }
    }

    fn on_timer(&mut self, timestamp: Timestamp, _domain: TimeDomain, ctx: &mut Context<'_, usize, Self::Out>) {
        match ctx.value(self.auction) {
            Some((category, _, expires)) if timestamp == expires => {
                if let Some(price) = ctx.value(self.best) {
                    ctx.emit((category, price));
                }
                ctx.clear_value(self.best);
            }
            Some((_, _, expires)) if timestamp == expires + RETAIN => ctx.clear_value(self.auction),
            Some(_) => {}
            None => {
                // The auction of bids at or before `timestamp` would have arrived.
                let waiting: Vec<(usize, i64)> =
                    ctx.list(self.early).into_iter().filter(|(_, t)| *t > timestamp).collect();
                ctx.replace_list(self.early, waiting);
            }
        }
    }
}

/// q5: for each sliding window, the auctions with the most bids: (window end, bids,
/// auctions).
fn q5(events: &Stream<Event>) -> Stream<(i64, u64, Vec<usize>)> {
    bids(&timed(events))
        .map(|b| b.auction)
        .key_by(|auction| *auction)
        .window(Sliding::of(WINDOW, SLIDE))
        .count()
        .key_by(|r| r.window.end)
        .window(Tumbling::of(SLIDE))
        .aggregate(HotItems)
        .map(|r| (r.key, r.value.0, r.value.1))
}

/// The auctions with the highest count among one window's counts.
#[derive(Clone)]
struct HotItems;

impl AggregateFunction<WindowResult<usize, u64>> for HotItems {
    type Acc = (u64, Vec<usize>);
    type Out = (u64, Vec<usize>);
    fn create(&self) -> Self::Acc {
        (0, Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, r: &WindowResult<usize, u64>) {
        if r.value > acc.0 {
            *acc = (r.value, vec![r.key]);
        } else if r.value == acc.0 {
            acc.1.push(r.key);
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        if other.0 > acc.0 {
            *acc = other;
        } else if other.0 == acc.0 {
            acc.1.extend(other.1);
        }
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        let mut auctions = acc.1.clone();
        auctions.sort_unstable();
        (acc.0, auctions)
    }
}

/// q7: the highest bid of each tumbling window: (window end, price, auction, bidder).
fn q7(events: &Stream<Event>) -> Stream<(i64, usize, usize, usize)> {
    bids(&timed(events))
        .map(|b| (b.price, b.auction, b.bidder))
        .key_by(|b| b.1)
        .window(Tumbling::of(WINDOW))
        .reduce(|a, b| *a.max(b))
        .key_by(|r| r.window.end)
        .window(Tumbling::of(WINDOW))
        .reduce(|a, b| if b.value > a.value { b.clone() } else { a.clone() })
        .map(|r| (r.key, r.value.value.0, r.value.value.1, r.value.value.2))
}

/// A person or an auction, keyed by the person's id (the auction's seller).
#[derive(Clone, Debug)]
enum Newcomer {
    Person(usize, String),
    Auction(usize),
}

/// Whether a window saw a person and an auction of the same id.
#[derive(Clone)]
struct PersonWithAuction;

impl AggregateFunction<Newcomer> for PersonWithAuction {
    type Acc = (Option<String>, bool);
    type Out = Option<String>;
    fn create(&self) -> Self::Acc {
        (None, false)
    }
    fn add(&self, acc: &mut Self::Acc, value: &Newcomer) {
        match value {
            Newcomer::Person(_, name) => acc.0 = Some(name.clone()),
            Newcomer::Auction(_) => acc.1 = true,
        }
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0 = acc.0.take().or(other.0);
        acc.1 |= other.1;
    }
    fn result(&self, acc: &Self::Acc) -> Option<String> {
        if acc.1 {
            acc.0.clone()
        } else {
            None
        }
    }
}

/// q8: people who opened an auction in the tumbling window they registered in:
/// (person, name, window start).
fn q8(events: &Stream<Event>) -> Stream<(usize, String, i64)> {
    timed(events)
        .filter_map(|e: Event| match e {
            Event::Person(p) => Some(Newcomer::Person(p.id, p.name)),
            Event::Auction(a) => Some(Newcomer::Auction(a.seller)),
            Event::Bid(_) => None,
        })
        .key_by(|n| match n {
            Newcomer::Person(id, _) | Newcomer::Auction(id) => *id,
        })
        .window(Tumbling::of(WINDOW))
        .aggregate(PersonWithAuction)
        .filter_map(|r| r.value.map(|name| (r.key, name, r.window.start)))
}

/// q11: bids per bidder session: (bidder, bids, session start, session end).
fn q11(events: &Stream<Event>) -> Stream<(usize, u64, i64, i64)> {
    bids(&timed(events))
        .map(|b| b.bidder)
        .key_by(|bidder| *bidder)
        .window(Session::with_gap(SESSION_GAP))
        .count()
        .map(|r| (r.key, r.value, r.window.start, r.window.end))
}
