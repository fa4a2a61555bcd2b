//! The order analytics example on small inputs whose results are worked out by hand.

use crate::{at, BATCH_SIZES, PARALLELISMS, T0};
use sluice::prelude::*;
use sluice_examples::orders::{analyze, CategoryRevenue, Customer, EnrichedOrder, Order};

const HOUR: i64 = 3_600_000;

fn order(order_id: u64, customer_id: u64, category: &str, total: f64, seconds: f64) -> Order {
    Order { order_id, customer_id, category: category.to_string(), total, time: at(seconds) }
}

fn customer(customer_id: u64, name: &str, tier: &str, seconds: f64) -> Customer {
    Customer { customer_id, name: name.to_string(), tier: tier.to_string(), time: at(seconds) }
}

/// `order` enriched with a customer's name and tier, or with nothing.
fn enriched(order: &Order, customer: Option<(&str, &str)>) -> EnrichedOrder {
    EnrichedOrder {
        order_id: order.order_id,
        customer_id: order.customer_id,
        category: order.category.clone(),
        total: order.total,
        time: order.time,
        customer_name: customer.map(|c| c.0.to_string()),
        customer_tier: customer.map(|c| c.1.to_string()),
    }
}

/// The revenue of `category` in the hour starting `hour` hours after `T0`.
fn revenue(category: &str, hour: i64, revenue: f64) -> CategoryRevenue {
    CategoryRevenue {
        category: category.to_string(),
        window_start: T0 + hour * HOUR,
        window_end: T0 + (hour + 1) * HOUR,
        revenue,
    }
}

struct Outcome {
    enriched: Vec<EnrichedOrder>,
    revenue: Vec<CategoryRevenue>,
    late: Vec<Order>,
}

fn run(orders: Vec<Order>, customers: Vec<Customer>, parallelism: usize, batch_size: usize) -> Outcome {
    let env = StreamEnvironment::new().parallelism(parallelism).batch_size(batch_size);
    let (enriched, revenue, late) = (CollectSink::new(), CollectSink::new(), CollectSink::new());
    let analytics = analyze(&env.source(VecSource::new(orders)), &env.source(VecSource::new(customers)));
    analytics.enriched.sink(enriched.clone());
    analytics.revenue.sink(revenue.clone());
    analytics.late.sink(late.clone());
    env.execute().expect("the order analytics job runs");
    let mut enriched = enriched.values();
    enriched.sort_by_key(|e| e.order_id);
    let mut revenue = revenue.values();
    revenue.sort_by(|a, b| (&a.category, a.window_start).cmp(&(&b.category, b.window_start)));
    Outcome { enriched, revenue, late: late.values() }
}

/// Asserts the enriched orders (sorted by id) and the revenue (sorted by category and
/// hour) at every parallelism and batch size, with no late order.
fn assert_outcome(
    orders: &[Order],
    customers: &[Customer],
    expected_enriched: &[EnrichedOrder],
    expected_revenue: &[CategoryRevenue],
) {
    for parallelism in PARALLELISMS {
        for batch_size in BATCH_SIZES {
            let outcome = run(orders.to_vec(), customers.to_vec(), parallelism, batch_size);
            let case = format!("parallelism {parallelism}, batch size {batch_size}");
            assert_eq!(outcome.enriched, expected_enriched, "enriched orders at {case}");
            assert_eq!(outcome.revenue, expected_revenue, "revenue at {case}");
            assert_eq!(outcome.late, vec![], "late orders at {case}");
        }
    }
}

#[test]
fn a_customer_update_between_two_orders_applies_to_the_second_only() {
    // Customers 7 and 8 are silver from the start and turn gold at 20 min. Customer 7's
    // update comes between its orders at 10 min and 30 min, whichever arrives first.
    let customers = [
        customer(7, "Ada", "silver", 0.0),
        customer(8, "Grace", "silver", 0.0),
        customer(7, "Ada", "gold", 1200.0),
        customer(8, "Grace", "gold", 1200.0),
    ];
    let orders = [
        order(1, 7, "books", 150.0, 600.0),    // 10 min: silver
        order(2, 8, "books", 130.0, 1199.999), // a millisecond before the update: silver
        order(3, 7, "books", 120.0, 1200.0),   // at the update's very millisecond: gold
        order(4, 7, "books", 250.0, 1800.0),   // 30 min: gold
    ];
    let expected = [
        enriched(&orders[0], Some(("Ada", "silver"))),
        enriched(&orders[1], Some(("Grace", "silver"))),
        enriched(&orders[2], Some(("Ada", "gold"))),
        enriched(&orders[3], Some(("Ada", "gold"))),
    ];
    // All four in the first hour: 150 + 130 + 120 + 250.
    assert_outcome(&orders, &customers, &expected, &[revenue("books", 0, 650.0)]);
}

#[test]
fn two_orders_before_an_update_both_join_the_old_record() {
    let customers = [
        customer(7, "Ada", "silver", 0.0),
        customer(7, "Ada", "gold", 1200.0),
        customer(10, "Niklaus", "gold", 1300.0),
    ];
    let orders = [
        order(1, 7, "books", 150.0, 600.0),    // silver
        order(2, 7, "books", 130.0, 1199.999), // silver as well
        order(3, 9, "books", 5.0, 1300.0),
    ];
    // At parallelism 1 with 1024-record batches, each source sends one watermark,
    // 1269.999 s, so the join's first watermark step passes both orders and the update.
    let expected = [enriched(&orders[0], Some(("Ada", "silver"))), enriched(&orders[1], Some(("Ada", "silver")))];
    assert_outcome(&orders, &customers, &expected, &[revenue("books", 0, 285.0)]);
}

#[test]
fn an_order_without_a_customer_record_is_enriched_with_none() {
    let customers = [customer(8, "Grace", "gold", 360.0)];
    let orders = [
        order(5, 99, "toys", 500.0, 60.0), // customer 99 never has a record
        order(6, 8, "toys", 200.0, 300.0), // customer 8's record only starts at 6 min
        order(7, 8, "toys", 200.0, 420.0), // after it: Grace
    ];
    let expected =
        [enriched(&orders[0], None), enriched(&orders[1], None), enriched(&orders[2], Some(("Grace", "gold")))];
    assert_outcome(&orders, &customers, &expected, &[revenue("toys", 0, 900.0)]);
}

#[test]
fn only_orders_above_100_are_enriched_but_revenue_counts_all() {
    let customers = [customer(1, "Alan", "bronze", 0.0)];
    let orders = [
        order(8, 1, "garden", 100.0, 60.0),   // exactly 100: not above it, not enriched
        order(9, 1, "garden", 100.01, 120.0), // enriched
        order(10, 1, "garden", 5.0, 180.0),   // small: revenue only
    ];
    let expected = [enriched(&orders[1], Some(("Alan", "bronze")))];
    // 100 + 100.01 + 5, in cents: 20501.
    assert_outcome(&orders, &customers, &expected, &[revenue("garden", 0, 205.01)]);
}

#[test]
fn revenue_is_summed_per_category_in_hourly_windows() {
    let orders = [
        order(11, 1, "books", 40.0, 600.0),     // books, hour 0
        order(12, 1, "books", 19.99, 3599.999), // books, hour 0: its last millisecond
        order(13, 1, "books", 5.01, 3600.0),    // books, hour 1: its first millisecond
        order(14, 1, "garden", 0.10, 1000.0),   // garden, hour 0
        order(15, 1, "garden", 0.20, 1001.0),   // garden, hour 0: 0.1 + 0.2 is 0.30 in cents
        order(16, 1, "books", 80.0, 3620.0),    // books, hour 1
        // 25 s behind the order at 3620 s, across the hour boundary, still within the
        // 30 s bound: the first hour's window has not been written yet.
        order(17, 1, "books", 0.01, 3595.0),           // books, hour 0
        order(18, 1, "toys", 7.5, 3.0 * 3600.0 + 1.0), // toys, hour 3; hour 2 has nothing
    ];
    let expected_revenue = [
        revenue("books", 0, 60.0),  // 40 + 19.99 + 0.01
        revenue("books", 1, 85.01), // 5.01 + 80
        revenue("garden", 0, 0.30),
        revenue("toys", 3, 7.5),
    ];
    // No customers and no order above 100: nothing is enriched.
    assert_outcome(&orders, &[], &[], &expected_revenue);
}

#[test]
fn orders_after_their_window_closed_go_to_the_late_output() {
    // As for late transactions, which records are late depends on how far each
    // operator's watermark got when they arrive, which at higher parallelism races with
    // the other workers' sources: this runs one worker.
    let customers = [customer(2, "Barbara", "platinum", 0.0)];
    let orders = vec![
        order(19, 2, "electronics", 300.0, 3500.0),
        order(20, 2, "electronics", 50.0, 3660.0), // the watermark moves to 3629.999 s
        // 2 min 40 s behind: the first hour was written when the watermark passed it.
        // Late: no revenue, but it is still enriched, with the customer known now.
        order(21, 2, "electronics", 400.0, 3500.0),
    ];
    for batch_size in BATCH_SIZES {
        let outcome = run(orders.clone(), customers.to_vec(), 1, batch_size);
        let expected =
            [enriched(&orders[0], Some(("Barbara", "platinum"))), enriched(&orders[2], Some(("Barbara", "platinum")))];
        assert_eq!(outcome.enriched, expected, "enriched at batch size {batch_size}");
        let expected_revenue = [revenue("electronics", 0, 300.0), revenue("electronics", 1, 50.0)];
        assert_eq!(outcome.revenue, expected_revenue, "revenue at batch size {batch_size}");
        assert_eq!(outcome.late, vec![orders[2].clone()], "late at batch size {batch_size}");
    }
}
