//! The generated sample data, end to end: files in, JSON lines files and dead letters
//! out, compared with straightforward single-threaded models of the two examples.

use crate::TempDir;
use serde::de::DeserializeOwned;
use sluice_examples::fraud::{Alert, AlertKind, FraudJob, Transaction};
use sluice_examples::generate::{write_samples, SampleConfig, SampleFiles};
use sluice_examples::orders::{cents, CategoryRevenue, Customer, EnrichedOrder, Order, OrderJob};
use sluice_examples::JobOptions;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn config() -> SampleConfig {
    SampleConfig { accounts: 200, transactions: 3_000, customers: 60, orders: 2_000, ..SampleConfig::default() }
}

/// The lines of `path` that parse as `T` (the bad ones are skipped).
fn read_good<T: DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .expect("the output file exists")
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).expect("the output file exists").lines().count()
}

/// The fraud rules, applied to each account's transactions sorted by time and amount.
fn model_alerts(transactions: &[Transaction]) -> Vec<Alert> {
    let mut by_account: BTreeMap<u64, Vec<&Transaction>> = BTreeMap::new();
    for tx in transactions {
        by_account.entry(tx.account).or_default().push(tx);
    }
    let mut alerts = Vec::new();
    for (_, mut txs) in by_account {
        txs.sort_by(|a, b| a.time.cmp(&b.time).then(a.amount.total_cmp(&b.amount)));
        for (i, tx) in txs.iter().enumerate() {
            let alert = |kind| Alert { account: tx.account, kind, amount: tx.amount, time: tx.time };
            if let Some(previous) = i.checked_sub(1).map(|j| txs[j]) {
                if tx.time - previous.time < DAY && tx.amount > 3.0 * previous.amount {
                    alerts.push(alert(AlertKind::AmountSpike));
                }
            }
            let in_last_minute = txs[..=i].iter().filter(|t| tx.time - t.time < 60_000).count();
            if in_last_minute >= 3 {
                alerts.push(alert(AlertKind::Velocity));
            }
        }
    }
    alerts
}

fn sort_alerts(alerts: &mut [Alert]) {
    alerts.sort_by(|a, b| {
        (a.account, a.time, a.kind).cmp(&(b.account, b.time, b.kind)).then(a.amount.total_cmp(&b.amount))
    });
}

/// Large orders with the latest customer record at or before their time.
fn model_enriched(orders: &[Order], customers: &[Customer]) -> Vec<EnrichedOrder> {
    let mut enriched: Vec<EnrichedOrder> = orders
        .iter()
        .filter(|o| o.total > 100.0)
        .map(|o| {
            let customer =
                customers.iter().filter(|c| c.customer_id == o.customer_id && c.time <= o.time).max_by_key(|c| c.time);
            EnrichedOrder {
                order_id: o.order_id,
                customer_id: o.customer_id,
                category: o.category.clone(),
                total: o.total,
                time: o.time,
                customer_name: customer.map(|c| c.name.clone()),
                customer_tier: customer.map(|c| c.tier.clone()),
            }
        })
        .collect();
    enriched.sort_by_key(|e| e.order_id);
    enriched
}

/// The cents of all orders per category and hour.
fn model_revenue(orders: &[Order]) -> Vec<CategoryRevenue> {
    let mut sums: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for o in orders {
        *sums.entry((o.category.clone(), o.time.div_euclid(HOUR) * HOUR)).or_default() += cents(o.total);
    }
    sums.into_iter()
        .map(|((category, start), cents)| CategoryRevenue {
            category,
            window_start: start,
            window_end: start + HOUR,
            revenue: cents as f64 / 100.0,
        })
        .collect()
}

fn sort_revenue(revenue: &mut [CategoryRevenue]) {
    revenue.sort_by(|a, b| (&a.category, a.window_start).cmp(&(&b.category, b.window_start)));
}

fn check_fraud(files: &SampleFiles, out: &Path, parallelism: usize) {
    let good: Vec<Transaction> = read_good(&files.transactions);
    let job = FraudJob {
        transactions: files.transactions.clone(),
        alerts: out.join("alerts.jsonl"),
        late: Some(out.join("late-transactions.jsonl")),
        dead_letters: Some(out.join("transactions-dead-letters.jsonl")),
        options: JobOptions::with_parallelism(parallelism),
    };
    let result = job.run().expect("the job runs");
    assert_eq!(result.metrics.source_records(), good.len() as u64);
    assert_eq!(result.metrics.dead_letters(), 3, "the generator writes 3 bad transaction lines");
    assert_eq!(line_count(&out.join("transactions-dead-letters.jsonl")), 3);
    assert_eq!(line_count(&out.join("late-transactions.jsonl")), 0, "the generator keeps within the 30 s bound");

    let mut alerts: Vec<Alert> = read_good(&job.alerts);
    assert_eq!(alerts.len(), line_count(&job.alerts), "every alert line parses");
    sort_alerts(&mut alerts);
    let mut expected = model_alerts(&good);
    sort_alerts(&mut expected);
    assert!(expected.iter().any(|a| a.kind == AlertKind::AmountSpike), "the sample has spikes");
    assert!(expected.iter().any(|a| a.kind == AlertKind::Velocity), "the sample has bursts");
    let missing: Vec<&Alert> = expected.iter().filter(|a| !alerts.contains(a)).collect();
    let extra: Vec<&Alert> = alerts.iter().filter(|a| !expected.contains(a)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "at parallelism {parallelism}, missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(alerts, expected, "alerts at parallelism {parallelism}");
}

/// Checks the order analytics on the sample files. With `every_customer` false, the
/// customer of an order placed before a later record of its customer is not compared
/// (see `orders_are_enriched_exactly_end_to_end`).
fn check_orders(files: &SampleFiles, out: &Path, parallelism: usize, every_customer: bool) {
    let orders: Vec<Order> = read_good(&files.orders);
    let customers: Vec<Customer> = read_good(&files.customers);
    let job = OrderJob {
        orders: files.orders.clone(),
        customers: files.customers.clone(),
        enriched: out.join("enriched.jsonl"),
        revenue: out.join("revenue.jsonl"),
        late: Some(out.join("late-orders.jsonl")),
        dead_letters: Some(out.join("orders-dead-letters.jsonl")),
        options: JobOptions::with_parallelism(parallelism),
    };
    let result = job.run().expect("the job runs");
    assert_eq!(result.metrics.source_records(), (orders.len() + customers.len()) as u64);
    assert_eq!(result.metrics.dead_letters(), 3, "2 bad order lines and 1 bad customer line");
    assert_eq!(line_count(&out.join("orders-dead-letters.jsonl")), 3);
    assert_eq!(line_count(&out.join("late-orders.jsonl")), 0);

    let mut enriched: Vec<EnrichedOrder> = read_good(&job.enriched);
    enriched.sort_by_key(|e| e.order_id);
    let mut expected = model_enriched(&orders, &customers);
    assert!(expected.iter().any(|e| e.customer_name.is_none()), "some orders have no customer");
    if !every_customer {
        let updated_later =
            |e: &EnrichedOrder| customers.iter().any(|c| c.customer_id == e.customer_id && c.time > e.time);
        for e in enriched.iter_mut().chain(expected.iter_mut()).filter(|e| updated_later(e)) {
            e.customer_name = None;
            e.customer_tier = None;
        }
    }
    assert_eq!(enriched, expected, "enriched orders at parallelism {parallelism}");

    let mut revenue: Vec<CategoryRevenue> = read_good(&job.revenue);
    sort_revenue(&mut revenue);
    assert_eq!(revenue, model_revenue(&orders), "revenue at parallelism {parallelism}");
}

#[test]
fn generated_sample_data_runs_end_to_end_through_files() {
    let dir = TempDir::new("sample-data");
    let files = write_samples(&dir.join("input"), &config()).expect("the sample data is written");
    assert_eq!(files.bad_lines, 6);
    for parallelism in [1, 3] {
        let out = dir.join(format!("output-{parallelism}"));
        std::fs::create_dir_all(&out).expect("the output directory can be created");
        check_fraud(&files, &out, parallelism);
        check_orders(&files, &out, parallelism, false);
    }
}

#[test]
fn orders_are_enriched_exactly_end_to_end() {
    let dir = TempDir::new("sample-orders");
    let files = write_samples(&dir.join("input"), &config()).expect("the sample data is written");
    check_orders(&files, &dir, 2, true);
}

#[test]
fn the_binaries_run_on_generated_data_and_print_a_summary() {
    let dir = TempDir::new("binaries");
    let input = dir.join("input");
    let generate = Command::new(env!("CARGO_BIN_EXE_generate-sample-data"))
        .arg(&input)
        .args(["--transactions", "500", "--orders", "400", "--customers", "20", "--accounts", "10"])
        .output()
        .expect("the binary runs");
    assert!(generate.status.success(), "{}", String::from_utf8_lossy(&generate.stderr));

    let fraud = Command::new(env!("CARGO_BIN_EXE_fraud-detection"))
        .arg(input.join("transactions.jsonl"))
        .arg(dir.join("alerts.jsonl"))
        .arg("--dead-letters")
        .arg(dir.join("dead-letters.jsonl"))
        .args(["--parallelism", "2"])
        .output()
        .expect("the binary runs");
    assert!(fraud.status.success(), "{}", String::from_utf8_lossy(&fraud.stderr));
    let summary = String::from_utf8_lossy(&fraud.stdout);
    assert!(summary.starts_with("fraud-detection: read 500 records, wrote "), "{summary}");
    assert!(summary.contains(", 3 dead letters, "), "{summary}");

    let orders = Command::new(env!("CARGO_BIN_EXE_order-analytics"))
        .arg(input.join("orders.jsonl"))
        .arg(input.join("customers.jsonl"))
        .arg(dir.join("enriched.jsonl"))
        .arg(dir.join("revenue.jsonl"))
        .output()
        .expect("the binary runs");
    assert!(orders.status.success(), "{}", String::from_utf8_lossy(&orders.stderr));
    let summary = String::from_utf8_lossy(&orders.stdout);
    assert!(summary.starts_with("order-analytics: read "), "{summary}");
    // Without --dead-letters, the bad lines are reported on standard error.
    let stderr = String::from_utf8_lossy(&orders.stderr);
    assert_eq!(stderr.lines().filter(|l| l.starts_with("dead letter: ")).count(), 3, "{stderr}");
}

#[test]
fn the_binaries_fail_with_a_clear_message() {
    let dir = TempDir::new("errors");
    let missing = dir.join("no-such-file.jsonl");
    let fraud = Command::new(env!("CARGO_BIN_EXE_fraud-detection"))
        .arg(&missing)
        .arg(dir.join("alerts.jsonl"))
        .output()
        .expect("the binary runs");
    assert!(!fraud.status.success());
    let stderr = String::from_utf8_lossy(&fraud.stderr);
    assert!(stderr.starts_with("fraud-detection: error: "), "{stderr}");
    assert!(stderr.contains("no-such-file.jsonl"), "the message names the file: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let usage =
        Command::new(env!("CARGO_BIN_EXE_order-analytics")).arg("orders.jsonl").output().expect("the binary runs");
    assert!(!usage.status.success(), "missing arguments are an error");
}
