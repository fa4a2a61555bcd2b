//! Deterministic sample input for the examples: transactions, orders and customers as
//! JSON lines, with a few deliberately bad lines.
//!
//! The same [`SampleConfig`] always gives the same bytes: a small xorshift generator,
//! seeded from the config, drives every choice, and each file has its own stream of
//! numbers (changing the number of orders does not change the customers).
//!
//! What the data contains, so the examples have something to find:
//!
//! - Transactions: each account has a typical amount, and ordinary transactions vary
//!   between 0.5 and 1.5 times it, so they never raise an amount spike on their own.
//!   About 2% are injected spikes of 5 to 20 times the typical amount, and about 1% of
//!   the time an account makes a burst of 3 to 5 transactions less than 15 s apart
//!   (velocity).
//! - Customers: most have a record a day before the first order; every tenth signs up
//!   only during the orders (earlier orders of theirs have no customer), and about 40%
//!   change tier once during the orders. Orders also come from a few customer ids that
//!   never have a record.
//! - Orders: totals from 5 to 400, in five categories.
//! - Out-of-order input: about 10% of the lines are written up to 20 s after their
//!   event time, within the examples' 30 s bound, so no record is late.
//! - Bad lines: [`Generated::bad_lines`] lines per file do not parse (a wrong type, a
//!   truncated object, plain text), to show the dead-letter output.

use crate::fraud::Transaction;
use crate::orders::{Customer, Order};
use serde::Serialize;
use sluice::{days, Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// 2026-01-01T00:00:00Z, in milliseconds since the epoch.
pub const DEFAULT_START_TIME: i64 = 1_767_225_600_000;

/// How lines are written up to this long after their event time.
pub const MAX_DELAY: i64 = 20_000;

/// The product categories of the orders.
pub const CATEGORIES: [&str; 5] = ["books", "electronics", "garden", "grocery", "toys"];

const TIERS: [&str; 4] = ["bronze", "silver", "gold", "platinum"];
const NAMES: [&str; 8] = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Niklaus"];

/// A xorshift64* pseudo-random generator: tiny, fast and the same on every platform.
#[derive(Clone, Debug)]
pub struct Xorshift {
    state: u64,
}

impl Xorshift {
    /// A generator seeded with `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        // Scramble the seed so that nearby seeds give unrelated streams; the state must
        // not be zero.
        let state = (seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        Xorshift { state: if state == 0 { 0x2545_f491_4f6c_dd1d } else { state } }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A millisecond count in `0..n`.
    pub fn millis_below(&mut self, n: i64) -> i64 {
        i64::try_from(self.below(u64::try_from(n).unwrap_or(0))).unwrap_or(0)
    }

    /// True with a chance of `percent` in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An amount in `[low, high)`, rounded to the cent.
    pub fn amount(&mut self, low: f64, high: f64) -> f64 {
        let unit = self.next_u64() as f64 / (u64::MAX as f64 + 1.0);
        ((low + unit * (high - low)) * 100.0).floor() / 100.0
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleConfig {
    /// The seed: the same seed gives the same files.
    pub seed: u64,
    /// The event time the data starts at, in milliseconds since the epoch.
    pub start_time: i64,
    /// How many accounts make transactions.
    pub accounts: u64,
    /// How many transactions (good lines).
    pub transactions: usize,
    /// How many customers have records.
    pub customers: u64,
    /// How many orders (good lines).
    pub orders: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig {
            seed: 42,
            start_time: DEFAULT_START_TIME,
            accounts: 500,
            transactions: 50_000,
            customers: 1_000,
            orders: 50_000,
        }
    }
}

/// The lines of one generated file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// Every line, bad ones included, without line ends.
    pub lines: Vec<String>,
    /// How many of them do not parse.
    pub bad_lines: usize,
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("invariant: the example records serialize to JSON")
}

/// Puts events in file order: most at their event time, some up to [`MAX_DELAY`]
/// later, then turns them into lines.
fn delayed<T: Serialize>(rng: &mut Xorshift, events: Vec<(i64, T)>) -> Vec<String> {
    let mut events: Vec<(i64, usize, T)> = events
        .into_iter()
        .enumerate()
        .map(|(i, (time, event))| {
            let delay = if rng.chance(10) { rng.millis_below(MAX_DELAY) } else { 0 };
            (time + delay, i, event)
        })
        .collect();
    events.sort_by_key(|(at, i, _)| (*at, *i));
    events.iter().map(|(_, _, event)| to_json(event)).collect()
}

/// Inserts `bad` lines at evenly spread positions.
fn with_bad_lines(mut lines: Vec<String>, bad: &[String]) -> Generated {
    let step = lines.len() / (bad.len() + 1);
    for (i, line) in bad.iter().enumerate().rev() {
        lines.insert((i + 1) * step, line.clone());
    }
    Generated { lines, bad_lines: bad.len() }
}

/// Card transactions, see the module docs.
pub fn transactions(config: &SampleConfig) -> Generated {
    let mut rng = Xorshift::new(config.seed ^ 0x7472_616e_7361_6374);
    let accounts = config.accounts.max(1);
    let typical_amounts: Vec<f64> = (0..accounts).map(|_| rng.amount(10.0, 200.0)).collect();
    let typical = |account: u64| typical_amounts.get((account - 1) as usize).copied().unwrap_or(50.0);
    let mut events: Vec<(i64, Transaction)> = Vec::with_capacity(config.transactions + 5);
    let mut time = config.start_time;
    while events.len() < config.transactions {
        time += rng.millis_below(4_000);
        let account = 1 + rng.below(accounts);
        let base = typical(account);
        if rng.chance(1) {
            // A burst: 3 to 5 transactions, each less than 15 s after the one before.
            let count = 3 + rng.below(3);
            let mut at = time;
            for _ in 0..count {
                events.push((at, Transaction { account, amount: rng.amount(0.5 * base, 1.5 * base), time: at }));
                at += 1 + rng.millis_below(14_999);
            }
        } else {
            let amount =
                if rng.chance(2) { rng.amount(5.0 * base, 20.0 * base) } else { rng.amount(0.5 * base, 1.5 * base) };
            events.push((time, Transaction { account, amount, time }));
        }
    }
    events.truncate(config.transactions);
    let lines = delayed(&mut rng, events);
    let bad = [
        format!(r#"{{"account": "not-a-number", "amount": 12.5, "time": {}}}"#, config.start_time),
        r#"{"account": 7, "amount": 12.5"#.to_string(),
        "this line is not JSON".to_string(),
    ];
    with_bad_lines(lines, &bad)
}

/// The customers changelog, see the module docs.
pub fn customers(config: &SampleConfig) -> Generated {
    let mut rng = Xorshift::new(config.seed ^ 0x6375_7374_6f6d_6572);
    let span = orders_span(config);
    let mut events: Vec<(i64, Customer)> = Vec::new();
    for id in 1..=config.customers {
        let name = format!("{} #{id}", NAMES[(id % NAMES.len() as u64) as usize]);
        let first_tier = rng.below(TIERS.len() as u64) as usize;
        let joined =
            if id % 10 == 0 { config.start_time + rng.millis_below(span) } else { config.start_time - days(1) };
        let tier = TIERS[first_tier].to_string();
        events.push((joined, Customer { customer_id: id, name: name.clone(), tier, time: joined }));
        if rng.chance(40) {
            let changed = joined.max(config.start_time) + 1 + rng.millis_below(span);
            let tier = TIERS[(first_tier + 1 + rng.below(TIERS.len() as u64 - 1) as usize) % TIERS.len()].to_string();
            events.push((changed, Customer { customer_id: id, name, tier, time: changed }));
        }
    }
    events.sort_by_key(|(time, customer)| (*time, customer.customer_id));
    let lines = delayed(&mut rng, events);
    let bad = [r#"{"customer_id": 3, "name": "Ada"}"#.to_string()];
    with_bad_lines(lines, &bad)
}

/// Roughly how long the orders span in event time.
fn orders_span(config: &SampleConfig) -> i64 {
    (config.orders as i64).saturating_mul(3_000).max(1)
}

/// Orders, see the module docs.
pub fn orders(config: &SampleConfig) -> Generated {
    let mut rng = Xorshift::new(config.seed ^ 0x6f72_6465_7273);
    // One customer id in twenty has no record at all.
    let ids = config.customers + (config.customers / 20).max(1);
    let mut events: Vec<(i64, Order)> = Vec::with_capacity(config.orders);
    let mut time = config.start_time;
    for order_id in 1..=config.orders as u64 {
        time += rng.millis_below(6_000);
        let category = CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize].to_string();
        let order = Order { order_id, customer_id: 1 + rng.below(ids), category, total: rng.amount(5.0, 400.0), time };
        events.push((time, order));
    }
    let lines = delayed(&mut rng, events);
    let bad = [
        format!(
            r#"{{"order_id": 0, "customer_id": 1, "category": "books", "total": "12,50", "time": {}}}"#,
            config.start_time
        ),
        "order 17: 3 books".to_string(),
    ];
    with_bad_lines(lines, &bad)
}

/// The files [`write_samples`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleFiles {
    /// `transactions.jsonl`.
    pub transactions: PathBuf,
    /// `orders.jsonl`.
    pub orders: PathBuf,
    /// `customers.jsonl`.
    pub customers: PathBuf,
    /// Lines written to the three files.
    pub lines: usize,
    /// How many of them are bad on purpose.
    pub bad_lines: usize,
}

fn write_lines(path: &Path, generated: &Generated) -> Result<()> {
    let io = |e| Error::io(path.display().to_string(), e);
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    for line in &generated.lines {
        out.write_all(line.as_bytes()).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Writes `transactions.jsonl`, `orders.jsonl` and `customers.jsonl` into `dir`
/// (created if missing; existing files are replaced).
pub fn write_samples(dir: &Path, config: &SampleConfig) -> Result<SampleFiles> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    let files = [
        (dir.join("transactions.jsonl"), transactions(config)),
        (dir.join("orders.jsonl"), orders(config)),
        (dir.join("customers.jsonl"), customers(config)),
    ];
    for (path, generated) in &files {
        write_lines(path, generated)?;
    }
    let [(transactions, t), (orders, o), (customers, c)] = files;
    Ok(SampleFiles {
        transactions,
        orders,
        customers,
        lines: t.lines.len() + o.lines.len() + c.lines.len(),
        bad_lines: t.bad_lines + o.bad_lines + c.bad_lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_lines() {
        let config = SampleConfig { transactions: 500, orders: 300, customers: 40, ..SampleConfig::default() };
        assert_eq!(transactions(&config), transactions(&config));
        assert_eq!(orders(&config), orders(&config));
        assert_eq!(customers(&config), customers(&config));
        let other = SampleConfig { seed: 43, ..config.clone() };
        assert_ne!(transactions(&config), transactions(&other));
    }

    #[test]
    fn xorshift_stays_in_range() {
        let mut rng = Xorshift::new(0);
        for _ in 0..1_000 {
            assert!(rng.below(7) < 7);
            let amount = rng.amount(5.0, 400.0);
            assert!((5.0..400.0).contains(&amount));
        }
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn lines_are_written_at_most_max_delay_after_later_ones() {
        let config = SampleConfig { transactions: 2_000, ..SampleConfig::default() };
        let mut latest = i64::MIN;
        for line in transactions(&config).lines {
            let Ok(tx) = serde_json::from_str::<Transaction>(&line) else { continue };
            assert!(tx.time > latest.saturating_sub(MAX_DELAY), "{line} is more than {MAX_DELAY} ms behind {latest}");
            latest = latest.max(tx.time);
        }
    }
}
