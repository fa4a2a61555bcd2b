//! Each query as a hand-written single-threaded loop over the events: the practical
//! limit of a machine, and the oracle the engine's results are checked against.
//!
//! The loops consume the same in-memory events (or parse the same file) and feed their
//! results to the same kind of checksum as the engine's sink. They rely on the events
//! arriving in time order, which a generated stream does.

use crate::queries::{Query, SESSION_GAP, SLIDE, WINDOW};
use crate::results::{Outcome, OutcomeBuilder};
use rustc_hash::FxHashMap;
use sluice::connectors::nexmark::Event;
use std::collections::BTreeMap;

/// Runs `query` over `events`.
pub fn run(query: Query, events: impl Iterator<Item = Event>) -> Outcome {
    let mut out = OutcomeBuilder::new(query.keeps_rows());
    match query {
        Query::Q0 => {
            for event in events {
                if let Event::Bid(b) = event {
                    out.add(&(b.auction, b.bidder, b.price, b.date_time, b.extra));
                }
            }
        }
        Query::Q1 => {
            for event in events {
                if let Event::Bid(b) = event {
                    out.add(&(b.auction, b.bidder, b.price * 908 / 1000, b.date_time));
                }
            }
        }
        Query::Q2 => {
            for event in events {
                if let Event::Bid(b) = event {
                    if b.auction % 123 == 0 {
                        out.add(&(b.auction, b.price));
                    }
                }
            }
        }
        Query::Q3 => q3(events, &mut out),
        Query::Q4 => q4(events, &mut out),
        Query::Q5 => q5(events, &mut out),
        Query::Q7 => q7(events, &mut out),
        Query::Q8 => q8(events, &mut out),
        Query::Q11 => q11(events, &mut out),
    }
    out.finish()
}

fn q3(events: impl Iterator<Item = Event>, out: &mut OutcomeBuilder) {
    let mut people: FxHashMap<usize, (String, String, String)> = FxHashMap::default();
    let mut waiting: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
    for event in events {
        match event {
            Event::Person(p) if matches!(p.state.as_str(), "or" | "id" | "ca") => {
                for auction in waiting.remove(&p.id).unwrap_or_default() {
                    out.add(&(p.name.clone(), p.city.clone(), p.state.clone(), auction));
                }
                people.insert(p.id, (p.name, p.city, p.state));
            }
            Event::Auction(a) if a.category == 10 => match people.get(&a.seller) {
                Some((name, city, state)) => out.add(&(name.clone(), city.clone(), state.clone(), a.id)),
                None => waiting.entry(a.seller).or_default().push(a.id),
            },
            _ => {}
        }
    }
}

fn q4(events: impl Iterator<Item = Event>, out: &mut OutcomeBuilder) {
    // auction -> (category, opened, expires, best price)
    let mut open: FxHashMap<usize, (usize, u64, u64, Option<usize>)> = FxHashMap::default();
    let mut closing: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut per_category: FxHashMap<usize, (u64, u64)> = FxHashMap::default();
    // Bids for auctions not generated yet (ids only grow), folded in when they come.
    let mut early: FxHashMap<usize, Vec<(usize, u64)>> = FxHashMap::default();
    let mut highest_auction = None;
    let close = |auction: &(usize, u64, u64, Option<usize>), per_category: &mut FxHashMap<usize, (u64, u64)>| {
        if let Some(price) = auction.3 {
            let entry = per_category.entry(auction.0).or_insert((0, 0));
            entry.0 += price as u64;
            entry.1 += 1;
        }
    };
    for event in events {
        let now = event.timestamp();
        while let Some(entry) = closing.first_entry() {
            if *entry.key() >= now {
                break;
            }
            for id in entry.remove() {
                if let Some(auction) = open.remove(&id) {
                    close(&auction, &mut per_category);
                }
            }
        }
        match event {
            Event::Auction(a) => {
                closing.entry(a.expires).or_default().push(a.id);
                highest_auction = highest_auction.max(Some(a.id));
                let best = early
                    .remove(&a.id)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, time)| *time >= a.date_time && *time <= a.expires)
                    .map(|(price, _)| price)
                    .max();
                open.insert(a.id, (a.category, a.date_time, a.expires, best));
            }
            Event::Bid(b) => {
                if let Some(auction) = open.get_mut(&b.auction) {
                    if b.date_time >= auction.1 && b.date_time <= auction.2 {
                        auction.3 = Some(auction.3.map_or(b.price, |p| p.max(b.price)));
                    }
                } else if highest_auction.is_none_or(|h| b.auction > h) {
                    early.entry(b.auction).or_default().push((b.price, b.date_time));
                }
            }
            Event::Person(_) => {}
        }
    }
    for (_, auction) in open.drain() {
        close(&auction, &mut per_category);
    }
    for (category, (sum, count)) in per_category {
        out.add(&(category, sum / count));
    }
}

/// Tumbling or sliding window ends a timestamp falls in, as the engine assigns them.
fn window_ends(timestamp: i64, size: i64, slide: i64) -> impl Iterator<Item = i64> {
    let last_start = timestamp - timestamp.rem_euclid(slide);
    (0..)
        .map(move |i| last_start - i * slide)
        .take_while(move |start| *start > timestamp - size)
        .map(move |start| start + size)
}

fn q5(events: impl Iterator<Item = Event>, out: &mut OutcomeBuilder) {
    let mut windows: BTreeMap<i64, FxHashMap<usize, u64>> = BTreeMap::new();
    let fire = |end: i64, counts: FxHashMap<usize, u64>, out: &mut OutcomeBuilder| {
        let max = counts.values().copied().max().unwrap_or(0);
        let mut auctions: Vec<usize> = counts.into_iter().filter(|(_, c)| *c == max).map(|(a, _)| a).collect();
        auctions.sort_unstable();
        out.add(&(end, max, auctions));
    };
    for event in events {
        let Event::Bid(b) = event else { continue };
        let t = b.date_time as i64;
        while let Some(entry) = windows.first_entry() {
            if *entry.key() > t {
                break;
            }
            let end = *entry.key();
            fire(end, entry.remove(), out);
        }
        for end in window_ends(t, WINDOW, SLIDE) {
            *windows.entry(end).or_default().entry(b.auction).or_insert(0) += 1;
        }
    }
    for (end, counts) in windows {
        fire(end, counts, out);
    }
}

fn q7(events: impl Iterator<Item = Event>, out: &mut OutcomeBuilder) {
    let mut windows: BTreeMap<i64, (usize, usize, usize)> = BTreeMap::new();
    for event in events {
        let Event::Bid(b) = event else { continue };
        let t = b.date_time as i64;
        while let Some(entry) = windows.first_entry() {
            if *entry.key() > t {
                break;
            }
            let (end, (price, auction, bidder)) = entry.remove_entry();
            out.add(&(end, price, auction, bidder));
        }
        let end = t - t.rem_euclid(WINDOW) + WINDOW;
        let best = windows.entry(end).or_insert((0, 0, 0));
        *best = (*best).max((b.price, b.auction, b.bidder));
    }
    for (end, (price, auction, bidder)) in windows {
        out.add(&(end, price, auction, bidder));
    }
}

fn q8(events: impl Iterator<Item = Event>, out: &mut OutcomeBuilder) {
    let mut windows: BTreeMap<i64, FxHashMap<usize, (Option<String>, bool)>> = BTreeMap::new();
    let fire = |end: i64, seen: FxHashMap<usize, (Option<String>, bool)>, out: &mut OutcomeBuilder| {
        for (id, (name, auction)) in seen {
            if let (Some(name), true) = (name, auction) {
                out.add(&(id, name, end - WINDOW));
            }
        }
    };
    for event in events {
        let t = event.timestamp() as i64;
        while let Some(entry) = windows.first_entry() {
            if *entry.key() > t {
                break;
            }
            let (end, seen) = entry.remove_entry();
            fire(end, seen, out);
        }
        let end = t - t.rem_euclid(WINDOW) + WINDOW;
        match event {
            Event::Person(p) => windows.entry(end).or_default().entry(p.id).or_insert((None, false)).0 = Some(p.name),
            Event::Auction(a) => windows.entry(end).or_default().entry(a.seller).or_insert((None, false)).1 = true,
            Event::Bid(_) => {}
        }
    }
    for (end, seen) in windows {
        fire(end, seen, out);
    }
}

fn q11(events: impl Iterator<Item = Event>, out: &mut OutcomeBuilder) {
    // bidder -> (start, last bid time, count); sessions close gap after the last bid.
    let mut sessions: FxHashMap<usize, (i64, i64, u64)> = FxHashMap::default();
    let mut closing: BTreeMap<(i64, usize), ()> = BTreeMap::new();
    for event in events {
        let Event::Bid(b) = event else { continue };
        let t = b.date_time as i64;
        while let Some(entry) = closing.first_entry() {
            let (end, bidder) = *entry.key();
            if end > t {
                break;
            }
            entry.remove();
            if let Some(&(start, last, count)) = sessions.get(&bidder) {
                if last + SESSION_GAP == end {
                    sessions.remove(&bidder);
                    out.add(&(bidder, count, start, end));
                }
            }
        }
        let session = sessions.entry(b.bidder).or_insert((t, t, 0));
        session.1 = session.1.max(t);
        session.2 += 1;
        closing.insert((session.1 + SESSION_GAP, b.bidder), ());
    }
    for (bidder, (start, last, count)) in sessions {
        out.add(&(bidder, count, start, last + SESSION_GAP));
    }
}
