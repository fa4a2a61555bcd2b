//! The fraud detection example on small inputs whose alerts are worked out by hand.

use crate::{at, BATCH_SIZES, PARALLELISMS};
use sluice::prelude::*;
use sluice_examples::fraud::{detect, Alert, AlertKind, Transaction};

fn tx(account: u64, amount: f64, seconds: f64) -> Transaction {
    Transaction { account, amount, time: at(seconds) }
}

fn spike(account: u64, amount: f64, seconds: f64) -> Alert {
    Alert { account, kind: AlertKind::AmountSpike, amount, time: at(seconds) }
}

fn velocity(account: u64, amount: f64, seconds: f64) -> Alert {
    Alert { account, kind: AlertKind::Velocity, amount, time: at(seconds) }
}

fn sort_alerts(alerts: &mut [Alert]) {
    alerts.sort_by(|a, b| {
        (a.account, a.time, a.kind).cmp(&(b.account, b.time, b.kind)).then(a.amount.total_cmp(&b.amount))
    });
}

/// Runs the example over `source` and returns its alerts, sorted, and late transactions.
fn run(source: VecSource<Transaction>, parallelism: usize, batch_size: usize) -> (Vec<Alert>, Vec<Transaction>) {
    let env = StreamEnvironment::new().parallelism(parallelism).batch_size(batch_size);
    let (alerts, late) = (CollectSink::new(), CollectSink::new());
    let detection = detect(&env.source(source));
    detection.alerts.sink(alerts.clone());
    detection.late.sink(late.clone());
    env.execute().expect("the fraud detection job runs");
    let mut alerts = alerts.values();
    sort_alerts(&mut alerts);
    (alerts, late.values())
}

/// Asserts that `input`, spread over the workers, raises exactly `expected` and has no
/// late transaction, at every parallelism and batch size.
fn assert_alerts(input: &[Transaction], mut expected: Vec<Alert>) {
    sort_alerts(&mut expected);
    for parallelism in PARALLELISMS {
        for batch_size in BATCH_SIZES {
            let (alerts, late) = run(VecSource::new(input.to_vec()), parallelism, batch_size);
            assert_eq!(alerts, expected, "alerts at parallelism {parallelism}, batch size {batch_size}");
            assert_eq!(late, vec![], "late transactions at parallelism {parallelism}, batch size {batch_size}");
        }
    }
}

// The inputs below are in time order, except where a test says otherwise: a record
// that arrives more than 30 s behind the newest one would be late.

#[test]
fn amount_spike_needs_more_than_three_times_the_previous_amount() {
    let input = [
        // Account 1, a minute or more apart so that velocity stays out of it:
        tx(1, 100.0, 0.0),    // the first: nothing to compare with
        tx(1, 300.0, 70.0),   // exactly 3 x 100: not more than 3 times
        tx(1, 901.0, 140.0),  // 901 > 3 x 300 = 900: AMOUNT_SPIKE
        tx(1, 1000.0, 210.0), // 1000 < 3 x 901
        // Account 2: 151 > 3 x 50, 100 s later. The first is checked when the watermark
        // passes 300 s, the second only at the end of the input.
        tx(2, 50.0, 300.0),
        tx(2, 151.0, 400.0), // AMOUNT_SPIKE
        // Account 3: a drop, then a spike against the lower amount.
        tx(3, 500.0, 500.0),
        tx(3, 20.0, 600.0), // 20 < 3 x 500
        tx(3, 61.0, 700.0), // 61 > 3 x 20: AMOUNT_SPIKE
    ];
    assert_alerts(&input, vec![spike(1, 901.0, 140.0), spike(2, 151.0, 400.0), spike(3, 61.0, 700.0)]);
}

#[test]
fn velocity_counts_transactions_in_the_trailing_minute() {
    // Equal amounts: no spike anywhere.
    let input = [
        // Account 5: 0 s, 30 s and 60 s: the first is exactly a minute before the third,
        // which is no longer within the trailing minute. No alert.
        tx(5, 20.0, 0.0),
        tx(5, 20.0, 30.0),
        tx(5, 20.0, 60.0),
        // Account 6: a burst of five in 8 s raises one alert each for the 3rd, 4th and
        // 5th transaction.
        tx(6, 20.0, 500.0),
        tx(6, 20.0, 502.0),
        tx(6, 20.0, 504.0), // VELOCITY
        tx(6, 20.0, 506.0), // VELOCITY
        tx(6, 20.0, 508.0), // VELOCITY
        // Account 4: the third within 59.999 s raises VELOCITY. At 1060 s the one at
        // 1000 s has left the trailing minute, but 1030 s and 1059.999 s have not: three
        // again. At 1120 s only 1060 s is within the minute before it.
        tx(4, 20.0, 1000.0),
        tx(4, 20.0, 1030.0),
        tx(4, 20.0, 1059.999), // VELOCITY
        tx(4, 20.0, 1060.0),   // VELOCITY
        tx(4, 20.0, 1120.0),
    ];
    let expected = vec![
        velocity(4, 20.0, 1059.999),
        velocity(4, 20.0, 1060.0),
        velocity(6, 20.0, 504.0),
        velocity(6, 20.0, 506.0),
        velocity(6, 20.0, 508.0),
    ];
    assert_alerts(&input, expected);
}

#[test]
fn out_of_order_transactions_are_checked_in_event_time_order() {
    let input = [
        // Account 7 arrives as 10 s, 0 s, 20 s. In event time: 10 at 0 s, then 50 at
        // 10 s (50 > 3 x 10: AMOUNT_SPIKE), then 140 at 20 s (140 < 3 x 50, but the
        // third within a minute: VELOCITY). In arrival order it would have been a spike
        // at 20 s (140 > 3 x 10) and none at 10 s.
        tx(7, 50.0, 10.0),
        tx(7, 10.0, 0.0),
        tx(7, 140.0, 20.0),
        // Account 8: 40 at 70 s arrives after 10 at 100 s, exactly 30 s behind it: still
        // on time (the bound is inclusive). In event time 10 follows 40: no spike; in
        // arrival order 40 > 3 x 10 would have been one.
        tx(8, 10.0, 100.0),
        tx(8, 40.0, 70.0),
        // Account 9: two transactions at the same millisecond are taken in ascending
        // amount order, whichever arrives first: 90 > 3 x 20, AMOUNT_SPIKE.
        tx(9, 90.0, 200.0),
        tx(9, 20.0, 200.0),
    ];
    assert_alerts(&input, vec![spike(7, 50.0, 10.0), velocity(7, 140.0, 20.0), spike(9, 90.0, 200.0)]);
}

#[test]
fn a_previous_amount_24_hours_old_is_forgotten() {
    let day = 24.0 * 3600.0;
    let input = [
        // Accounts 10, 11 and 12 start with 10 at 0 s.
        tx(10, 10.0, 0.0),
        tx(11, 10.0, 0.0),
        tx(12, 10.0, 0.0),
        // Account 11: 100 > 3 x 10 a millisecond less than 24 h later: AMOUNT_SPIKE.
        tx(11, 100.0, day - 0.001),
        // Account 10: exactly 24 h later the 10 is forgotten: no alert.
        tx(10, 100.0, day),
        // Account 12: a day and an hour later, no alert; then a spike against that new
        // amount: 301 > 3 x 100.
        tx(12, 100.0, day + 3600.0),
        tx(12, 301.0, day + 3660.0), // AMOUNT_SPIKE
    ];
    assert_alerts(&input, vec![spike(11, 100.0, day - 0.001), spike(12, 301.0, day + 3660.0)]);
}

#[test]
fn history_checked_before_the_end_of_the_input_still_counts_at_the_end() {
    // The first transaction is checked as soon as the watermark passes it (at 29.999 s,
    // after the second arrives); the second only when the input ends and the watermark
    // jumps to the end of time. Its history must still be there.
    let input = [tx(13, 10.0, 0.0), tx(13, 100.0, 60.0)];
    assert_alerts(&input, vec![spike(13, 100.0, 60.0)]);
}

#[test]
fn a_long_gap_in_the_input_keeps_the_history_checked_before_it() {
    let two_days = 48.0 * 3600.0;
    let input = [
        tx(15, 10.0, 0.0),
        tx(15, 100.0, 20.0), // 100 > 3 x 10, 20 s later: AMOUNT_SPIKE
        // Moves the watermark to 4.999 s: the transaction at 0 s is checked now, the
        // one at 20 s waits.
        tx(16, 10.0, 35.0),
        // Two days later: the watermark jumps, and the transaction at 20 s is checked
        // against the history written two days of watermark earlier, which is only
        // 20 s older in event time.
        tx(16, 10.0, two_days),
    ];
    assert_alerts(&input, vec![spike(15, 100.0, 20.0)]);
}

#[test]
fn transactions_more_than_30_s_late_go_to_the_side_output() {
    // Which records are late depends on how far each worker's watermark got when they
    // arrive, so this runs one worker: at higher parallelism the watermark of an
    // operator also waits for the other workers' sources, and whether they are done
    // yet is a race.
    let input = vec![
        tx(14, 10.0, 0.0),
        tx(14, 10.0, 100.0),
        // 40 s behind 100 s: the watermark is already at 69.999 s. Late, so it neither
        // raises a spike (500 > 3 x 10) nor becomes the amount later ones compare with.
        tx(14, 500.0, 60.0),
        // Compared with 10 (at 100 s), not with the late 500: AMOUNT_SPIKE.
        tx(14, 40.0, 200.0),
    ];
    for batch_size in BATCH_SIZES {
        let (alerts, late) = run(VecSource::new(input.clone()), 1, batch_size);
        assert_eq!(alerts, vec![spike(14, 40.0, 200.0)], "alerts at batch size {batch_size}");
        assert_eq!(late, vec![tx(14, 500.0, 60.0)], "late at batch size {batch_size}");
    }
}
