//! Order analytics: enrich large orders with their customer, and total the revenue per
//! category and hour.
//!
//! Two inputs: orders, and a changelog of customers in which a later record for a
//! customer replaces the earlier one (a new name or tier from its `time` on).
//!
//! - Enriched orders: orders with a total above [`LARGE_ORDER`] (100, strictly) are
//!   joined with the customers table *as of the order's event time*: the customer's
//!   latest record with `time <= order.time`. A record that takes effect later does
//!   not change an earlier order, whatever the arrival order. An order whose customer
//!   has no record yet (or at all) is still written, with `customer_name` and
//!   `customer_tier` null (a left join).
//! - Revenue: the totals of *all* orders, large or not, per category in tumbling
//!   one-hour event-time windows `[start, start + 1 h)`. The 100 threshold only decides
//!   which orders are worth enriching; revenue must count every sale. Totals are summed
//!   in whole cents (`i64`), so the result does not depend on the order in which
//!   records are added (a sum of `f64` would, in its last bits).
//!
//! Both inputs may arrive up to [`MAX_OUT_OF_ORDERNESS`] (30 s) out of order. An order
//! later than that is joined with the customer known at that point, and does not
//! count in revenue (its window was already written): it goes to the `late` stream.
//!
//! ```
//! use sluice::prelude::*;
//! use sluice_examples::orders::{analyze, Customer, Order};
//!
//! let env = StreamEnvironment::new().parallelism(2);
//! let enriched = CollectSink::new();
//! let order = |id, total| Order { order_id: id, customer_id: 7, category: "books".into(), total, time: 60_000 };
//! let customer = Customer { customer_id: 7, name: "Ada".into(), tier: "gold".into(), time: 0 };
//! let analytics = analyze(
//!     &env.source(VecSource::new(vec![order(1, 250.0), order(2, 40.0)])),
//!     &env.source(VecSource::new(vec![customer])),
//! );
//! analytics.enriched.sink(enriched.clone());
//! env.execute()?;
//! let names: Vec<_> = enriched.values().into_iter().map(|e| (e.order_id, e.customer_name)).collect();
//! assert_eq!(names, vec![(1, Some("Ada".to_string()))]);
//! # Ok::<(), sluice::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use sluice::prelude::*;
use sluice::{JobResult, Result, Stream, TimestampAssigner};
use std::path::PathBuf;

/// How far out of order orders and customer records may arrive.
pub const MAX_OUT_OF_ORDERNESS: i64 = seconds(30);
/// Orders with a total above this are enriched.
pub const LARGE_ORDER: f64 = 100.0;
/// The size of the revenue windows.
pub const REVENUE_WINDOW: i64 = hours(1);
/// The name of the side output of late orders.
pub const LATE_ORDERS: &str = "late-orders";

/// An order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id.
    pub order_id: u64,
    /// The customer who placed it.
    pub customer_id: u64,
    /// The product category.
    pub category: String,
    /// The order total.
    pub total: f64,
    /// Event time, in milliseconds since the epoch.
    pub time: i64,
}

/// A customer record: valid from `time` until the customer's next record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// The customer's id.
    pub customer_id: u64,
    /// The customer's name.
    pub name: String,
    /// The loyalty tier.
    pub tier: String,
    /// When this record takes effect, in milliseconds since the epoch.
    pub time: i64,
}

/// A large order with its customer as of the order's time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrichedOrder {
    /// The order's id.
    pub order_id: u64,
    /// The customer who placed it.
    pub customer_id: u64,
    /// The product category.
    pub category: String,
    /// The order total.
    pub total: f64,
    /// The order's event time.
    pub time: i64,
    /// The customer's name then; `None` if the customer had no record yet.
    pub customer_name: Option<String>,
    /// The customer's tier then; `None` if the customer had no record yet.
    pub customer_tier: Option<String>,
}

impl EnrichedOrder {
    fn new(order: &Order, customer: Option<&Customer>) -> Self {
        EnrichedOrder {
            order_id: order.order_id,
            customer_id: order.customer_id,
            category: order.category.clone(),
            total: order.total,
            time: order.time,
            customer_name: customer.map(|c| c.name.clone()),
            customer_tier: customer.map(|c| c.tier.clone()),
        }
    }
}

/// The revenue of one category in one hour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CategoryRevenue {
    /// The product category.
    pub category: String,
    /// The window's first millisecond.
    pub window_start: i64,
    /// The first millisecond after the window.
    pub window_end: i64,
    /// The sum of the totals of the window's orders, to the cent.
    pub revenue: f64,
}

/// An amount in whole cents, rounded half away from zero.
pub fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

/// The streams [`analyze`] adds to a job.
pub struct Analytics {
    /// Large orders with their customer.
    pub enriched: Stream<EnrichedOrder>,
    /// Revenue per category and hour.
    pub revenue: Stream<CategoryRevenue>,
    /// Orders that arrived after their revenue window was written.
    pub late: Stream<Order>,
}

/// How an order's event time is read, and how far the watermark trails it.
pub fn order_watermarks() -> WatermarkStrategy<Order, impl TimestampAssigner<Order>> {
    WatermarkStrategy::bounded_out_of_orderness(MAX_OUT_OF_ORDERNESS).with_timestamp(|o: &Order| o.time)
}

/// How a customer change's event time is read, and how far the watermark trails it.
pub fn customer_watermarks() -> WatermarkStrategy<Customer, impl TimestampAssigner<Customer>> {
    WatermarkStrategy::bounded_out_of_orderness(MAX_OUT_OF_ORDERNESS).with_timestamp(|c: &Customer| c.time)
}

/// Adds order analytics over `orders` and `customers` to their job.
pub fn analyze(orders: &Stream<Order>, customers: &Stream<Customer>) -> Analytics {
    analyze_in_event_time(
        &orders.with_watermarks(order_watermarks()),
        &customers.with_watermarks(customer_watermarks()),
    )
}

/// [`analyze`] over streams whose sources already give them their event time and
/// watermarks ([`order_watermarks`], [`customer_watermarks`], generated per partition
/// of a topic, say).
pub fn analyze_in_event_time(orders: &Stream<Order>, customers: &Stream<Customer>) -> Analytics {
    let customers = customers.key_by(|c| c.customer_id).into_table();
    let enriched = orders
        .filter(|o| o.total > LARGE_ORDER)
        .key_by(|o| o.customer_id)
        .left_join_table(&customers, EnrichedOrder::new)
        .name("enrich");
    let late_tag = OutputTag::new(LATE_ORDERS);
    let windows = orders
        .key_by(|o| o.category.clone())
        .window(Tumbling::of(REVENUE_WINDOW))
        .side_output_late_data(&late_tag)
        .aggregate(Sum::of(|o: &Order| cents(o.total)))
        .name("hourly-revenue");
    let late = windows.side_output(&late_tag);
    let revenue = windows.map(|r| CategoryRevenue {
        category: r.key,
        window_start: r.window.start,
        window_end: r.window.end,
        revenue: r.value as f64 / 100.0,
    });
    Analytics { enriched, revenue, late }
}

/// Order analytics over JSON lines files: what the `order-analytics` binary runs.
#[derive(Clone, Debug)]
pub struct OrderJob {
    /// Orders, one JSON object per line (a file or a directory of files).
    pub orders: PathBuf,
    /// The customers changelog, one JSON object per line.
    pub customers: PathBuf,
    /// Where enriched orders go, one JSON object per line.
    pub enriched: PathBuf,
    /// Where the hourly revenue goes, one JSON object per line.
    pub revenue: PathBuf,
    /// Where late orders go; they are dropped when `None`.
    pub late: Option<PathBuf>,
    /// Where unreadable lines of both inputs go, as JSON lines; standard error when
    /// `None`.
    pub dead_letters: Option<PathBuf>,
    /// Workers, checkpoints and input pace.
    pub options: crate::JobOptions,
}

impl OrderJob {
    /// Runs the job to completion.
    pub fn run(&self) -> Result<JobResult> {
        self.build()?.execute()
    }

    /// The job, ready to run or explain.
    pub fn build(&self) -> Result<StreamEnvironment> {
        let env = self.options.environment();
        let dead_letters = crate::dead_letters(self.dead_letters.as_deref())?;
        let orders = JsonLinesSource::<Order>::new(&self.orders)?.dead_letters(dead_letters.clone());
        let customers = JsonLinesSource::<Customer>::new(&self.customers)?.dead_letters(dead_letters);
        let analytics = analyze(&self.options.source(&env, orders), &self.options.source(&env, customers));
        analytics.enriched.sink(crate::json_lines_sink(&self.enriched)?);
        analytics.revenue.sink(crate::json_lines_sink(&self.revenue)?);
        if let Some(path) = &self.late {
            analytics.late.sink(crate::json_lines_sink(path)?);
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_round_to_the_nearest_cent() {
        assert_eq!(cents(0.1 + 0.2), 30);
        assert_eq!(cents(-2.5), -250);
        assert_eq!(cents(19.99), 1_999);
    }
}
