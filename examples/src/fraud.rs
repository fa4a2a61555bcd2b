//! Fraud detection on card transactions, per account, in event time.
//!
//! Two rules look at each account's transactions in event-time order:
//!
//! - `AMOUNT_SPIKE`: the amount is more than [`SPIKE_FACTOR`] (3) times the amount of
//!   the account's previous transaction, provided that one is less than [`HISTORY_TTL`]
//!   (24 h) older. A previous transaction 24 h or more older is forgotten: the new one
//!   is not compared with anything.
//! - `VELOCITY`: counting this transaction, the account made [`VELOCITY_COUNT`] (3) or
//!   more transactions in the trailing minute, that is with a timestamp `t` such that
//!   `time - t < 60 s`. Every transaction that brings the count to 3 or more raises one
//!   alert: five transactions within 10 s raise three.
//!
//! Transactions of one account can arrive up to [`MAX_OUT_OF_ORDERNESS`] (30 s) out of
//! order. So each one is buffered in keyed state with an event-time timer at its
//! timestamp; once the watermark passes the timer no earlier transaction can arrive,
//! and the buffered transactions up to it are checked in timestamp order (the classic
//! Flink pattern). Equal timestamps are taken in ascending amount order. The alerts
//! therefore depend only on the input, not on arrival order, batching or parallelism.
//!
//! A transaction that arrives behind the watermark (more than 30 s late) cannot be put
//! in order any more: it goes to the side output [`LATE_TRANSACTIONS`] and raises
//! nothing.
//!
//! ```
//! use sluice::prelude::*;
//! use sluice_examples::fraud::{detect, AlertKind, Transaction};
//!
//! let env = StreamEnvironment::new().parallelism(2);
//! let alerts = CollectSink::new();
//! let input = vec![
//!     Transaction { account: 1, amount: 20.0, time: 0 },
//!     Transaction { account: 1, amount: 90.0, time: 5_000 },
//! ];
//! detect(&env.source(VecSource::new(input))).alerts.sink(alerts.clone());
//! env.execute()?;
//! let kinds: Vec<AlertKind> = alerts.values().iter().map(|a| a.kind).collect();
//! assert_eq!(kinds, vec![AlertKind::AmountSpike]);
//! # Ok::<(), sluice::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use sluice::prelude::*;
use sluice::{JobResult, KeyedStateStore, ListState, Result, Stream, TimestampAssigner};
use std::path::PathBuf;

/// How far out of order transactions may arrive.
pub const MAX_OUT_OF_ORDERNESS: i64 = seconds(30);
/// How long an account's history counts, and its keyed state's time to live.
pub const HISTORY_TTL: i64 = hours(24);
/// An amount above this many times the previous one is a spike.
pub const SPIKE_FACTOR: f64 = 3.0;
/// The trailing window of the velocity rule.
pub const VELOCITY_WINDOW: i64 = minutes(1);
/// How many transactions in the trailing window raise a velocity alert.
pub const VELOCITY_COUNT: usize = 3;
/// The name of the side output of late transactions.
pub const LATE_TRANSACTIONS: &str = "late-transactions";

/// A card transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// The account charged.
    pub account: u64,
    /// The amount charged.
    pub amount: f64,
    /// Event time, in milliseconds since the epoch.
    pub time: i64,
}

/// Which rule an alert comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertKind {
    /// More than 3 times the previous amount.
    AmountSpike,
    /// 3 or more transactions within a minute.
    Velocity,
}

/// A suspicious transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The account.
    pub account: u64,
    /// The rule that fired.
    pub kind: AlertKind,
    /// The amount of the transaction that raised the alert.
    pub amount: f64,
    /// The time of the transaction that raised the alert.
    pub time: i64,
}

/// What the rules remember of an account: all they need, however many transactions it
/// made.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct History {
    /// Time and amount of the latest transaction.
    previous: Option<(Timestamp, f64)>,
    /// Times of the latest transactions in the trailing window, oldest first; at most
    /// `VELOCITY_COUNT - 1`, enough to tell whether the next one reaches the count.
    recent: Vec<Timestamp>,
}

impl History {
    /// Checks the account's next transaction in event-time order and remembers it.
    fn check(&mut self, time: Timestamp, amount: f64) -> [Option<AlertKind>; 2] {
        let spike = self.previous.is_some_and(|(previous_time, previous)| {
            time - previous_time < HISTORY_TTL && amount > SPIKE_FACTOR * previous
        });
        self.recent.retain(|&t| time - t < VELOCITY_WINDOW);
        self.recent.push(time);
        let velocity = self.recent.len() >= VELOCITY_COUNT;
        let keep = VELOCITY_COUNT.saturating_sub(1);
        if self.recent.len() > keep {
            self.recent.drain(..self.recent.len() - keep);
        }
        self.previous = Some((time, amount));
        [spike.then_some(AlertKind::AmountSpike), velocity.then_some(AlertKind::Velocity)]
    }
}

/// The time to live of an account's history: an account that stays quiet for a day
/// of event time leaves no state behind. Event-time TTL is timed by the transaction or
/// timer being processed, so it is deterministic on replay; the rules also compare
/// event timestamps themselves, so the TTL only bounds the state.
fn history_ttl() -> StateTtl {
    StateTtl::new(HISTORY_TTL).event_time()
}

/// The keyed process function behind [`detect`]: buffers each account's transactions
/// until the watermark puts them in order, then applies the rules.
///
/// Its event time is the record timestamp, which [`detect`] takes from
/// [`Transaction::time`].
#[derive(Clone)]
pub struct FraudDetector {
    late: OutputTag<Transaction>,
    pending: ListState<(Timestamp, Transaction)>,
    history: ValueState<History>,
}

impl FraudDetector {
    /// A detector that sends late transactions to `late`.
    pub fn new(late: OutputTag<Transaction>) -> Self {
        FraudDetector { late, pending: ListState::default(), history: ValueState::default() }
    }
}

impl KeyedProcessFunction for FraudDetector {
    type Key = u64;
    type In = Transaction;
    type Out = Alert;

    fn open(&mut self, state: &mut KeyedStateStore<u64>) {
        // Drained by the timers, so it needs no time to live: it holds the account's
        // transactions the watermark has not passed yet, about 30 s worth.
        self.pending = state.list(&StateDescriptor::new("pending-transactions"));
        self.history = state.value(&StateDescriptor::new("history").with_ttl(history_ttl()));
    }

    fn process_element(&mut self, transaction: Transaction, ctx: &mut Context<'_, u64, Alert>) {
        let time = ctx.timestamp();
        if time <= ctx.current_watermark() {
            // Transactions up to the watermark may already have been checked.
            ctx.output(&self.late, transaction);
            return;
        }
        ctx.add_to_list(self.pending, (time, transaction));
        ctx.register_event_time_timer(time);
    }

    fn on_timer(&mut self, timestamp: Timestamp, _domain: TimeDomain, ctx: &mut Context<'_, u64, Alert>) {
        let (mut due, waiting): (Vec<_>, Vec<_>) =
            ctx.list(self.pending).into_iter().partition(|(time, _)| *time <= timestamp);
        if due.is_empty() {
            return;
        }
        if waiting.is_empty() {
            ctx.clear_list(self.pending);
        } else {
            ctx.replace_list(self.pending, waiting);
        }
        due.sort_by(|(t1, a), (t2, b)| t1.cmp(t2).then(a.amount.total_cmp(&b.amount)));
        let mut history = ctx.value(self.history).unwrap_or_default();
        for (time, transaction) in due {
            for kind in history.check(time, transaction.amount).into_iter().flatten() {
                let alert =
                    Alert { account: transaction.account, kind, amount: transaction.amount, time: transaction.time };
                ctx.emit_at(time, alert);
            }
        }
        ctx.set_value(self.history, history);
    }
}

/// The streams [`detect`] adds to a job.
pub struct Detection {
    /// The alerts.
    pub alerts: Stream<Alert>,
    /// Transactions that arrived more than 30 s late and were not checked.
    pub late: Stream<Transaction>,
}

/// How a transaction's event time is read, and how far the watermark trails it.
pub fn watermarks() -> WatermarkStrategy<Transaction, impl TimestampAssigner<Transaction>> {
    WatermarkStrategy::bounded_out_of_orderness(MAX_OUT_OF_ORDERNESS).with_timestamp(|tx: &Transaction| tx.time)
}

/// Adds fraud detection over `transactions` to their job.
pub fn detect(transactions: &Stream<Transaction>) -> Detection {
    detect_in_event_time(&transactions.with_watermarks(watermarks()))
}

/// [`detect`] over transactions whose source already gives them their event time and
/// watermarks ([`watermarks`], generated per partition of a topic, say).
pub fn detect_in_event_time(transactions: &Stream<Transaction>) -> Detection {
    let late_tag = OutputTag::new(LATE_TRANSACTIONS);
    let alerts =
        transactions.key_by(|tx| tx.account).process(FraudDetector::new(late_tag.clone())).name("fraud-detector");
    let late = alerts.side_output(&late_tag);
    Detection { alerts, late }
}

/// Fraud detection over JSON lines files: what the `fraud-detection` binary runs.
#[derive(Clone, Debug)]
pub struct FraudJob {
    /// Transactions, one JSON object per line (a file or a directory of files).
    pub transactions: PathBuf,
    /// Where the alerts go, one JSON object per line.
    pub alerts: PathBuf,
    /// Where late transactions go; they are dropped when `None`.
    pub late: Option<PathBuf>,
    /// Where unreadable lines go, as JSON lines; standard error when `None`.
    pub dead_letters: Option<PathBuf>,
    /// Workers, checkpoints and input pace.
    pub options: crate::JobOptions,
}

impl FraudJob {
    /// Runs the job to completion.
    pub fn run(&self) -> Result<JobResult> {
        self.build()?.execute()
    }

    /// The job, ready to run or explain.
    pub fn build(&self) -> Result<StreamEnvironment> {
        let env = self.options.environment();
        let dead_letters = crate::dead_letters(self.dead_letters.as_deref())?;
        let source = JsonLinesSource::<Transaction>::new(&self.transactions)?.dead_letters(dead_letters);
        let detection = detect(&self.options.source(&env, source));
        detection.alerts.sink(crate::json_lines_sink(&self.alerts)?);
        if let Some(path) = &self.late {
            detection.late.sink(crate::json_lines_sink(path)?);
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all(history: &mut History, transactions: &[(i64, f64)]) -> Vec<Vec<AlertKind>> {
        transactions.iter().map(|&(time, amount)| history.check(time, amount).into_iter().flatten().collect()).collect()
    }

    #[test]
    fn spike_needs_more_than_three_times_a_recent_amount() {
        let mut history = History::default();
        let spike = vec![AlertKind::AmountSpike];
        // 30 = 3 x 10 is not a spike; 91 > 3 x 30 is; the last one is 24 h after 91.
        let alerts =
            check_all(&mut history, &[(0, 10.0), (1_000_000, 30.0), (2_000_000, 91.0), (2_000_000 + HISTORY_TTL, 1e6)]);
        assert_eq!(alerts, vec![vec![], vec![], spike, vec![]]);
    }

    #[test]
    fn velocity_counts_the_trailing_minute() {
        let mut history = History::default();
        let velocity = vec![AlertKind::Velocity];
        // 0, 30 s and 59.999 s are within one minute. At 60 s the one at 0 has left the
        // trailing minute, but 30 s and 59.999 s are still in it. At 150 s none is.
        let alerts = check_all(&mut history, &[(0, 1.0), (30_000, 1.0), (59_999, 1.0), (60_000, 1.0), (150_000, 1.0)]);
        assert_eq!(alerts, vec![vec![], vec![], velocity.clone(), velocity, vec![]]);
        assert!(history.recent.len() < VELOCITY_COUNT);
    }
}
