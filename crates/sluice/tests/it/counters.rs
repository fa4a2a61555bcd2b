//! Operator counters: records in and out, instances, watermarks, blocked time.

use sluice::prelude::*;
use sluice::{OperatorKind, OperatorSnapshot, SinkWriter, MAX_TIMESTAMP};
use std::collections::BTreeSet;
use std::time::Duration;

fn operator<'a>(metrics: &'a sluice::JobSnapshot, name: &str) -> &'a OperatorSnapshot {
    metrics.operator(name).unwrap_or_else(|| panic!("no single operator named {name} in {:#?}", metrics.operators))
}

#[test]
fn every_operator_counts_what_flowed_through_it() {
    // (timestamp, (key, value)), in no particular time order.
    let input: Vec<(i64, (u32, i64))> = (0..400i64).map(|i| ((i * 37) % 2_000, ((i % 7) as u32, i))).collect();
    let passed: Vec<(i64, (u32, i64))> = input.iter().copied().filter(|(_, (_, v))| v % 3 != 0).collect();
    let windows: BTreeSet<(u32, i64)> = passed.iter().map(|(t, (k, _))| (*k, t.div_euclid(100))).collect();
    // The window pre-aggregates before the exchange: each worker sends one partial per
    // (key, window) it saw, once the watermark (here only the final one) passes it.
    // Worker w reads records w, w + 2, ...
    let partials: usize = (0..2)
        .map(|worker| {
            let kept = input.iter().skip(worker).step_by(2).filter(|(_, (_, v))| v % 3 != 0);
            kept.map(|(t, (k, _))| (*k, t.div_euclid(100))).collect::<BTreeSet<_>>().len()
        })
        .sum();
    let env = StreamEnvironment::new().parallelism(2).batch_size(16);
    let out = CollectSink::new();
    env.source(VecSource::timestamped(input.clone()))
        .filter(|(_, v)| v % 3 != 0)
        .map(|(k, v)| (k, v * 2))
        .key_by(|(k, _)| *k)
        .window(Tumbling::of(100))
        .count()
        .sink(out.clone());
    let metrics = env.execute().unwrap_or_else(|error| panic!("the job failed: {error}")).metrics;

    let expected = [
        ("memory-source", OperatorKind::Source, 0, input.len()),
        ("filter", OperatorKind::Operator, input.len(), passed.len()),
        ("map", OperatorKind::Operator, passed.len(), passed.len()),
        ("combine", OperatorKind::Operator, passed.len(), partials),
        ("key_by", OperatorKind::Exchange, partials, partials),
        ("window", OperatorKind::Operator, partials, windows.len()),
        ("collect-sink", OperatorKind::Sink, windows.len(), 0),
    ];
    assert_eq!(metrics.operators.len(), expected.len(), "{:#?}", metrics.operators);
    for (name, kind, records_in, records_out) in expected {
        let op = operator(&metrics, name);
        assert_eq!(op.kind, kind, "{name}");
        assert_eq!(op.instances, 2, "{name} runs once per worker");
        assert_eq!((op.records_in, op.records_out), (records_in as u64, records_out as u64), "{name}: in, out");
        assert_eq!(op.watermark, MAX_TIMESTAMP, "{name}: the final watermark");
        assert_eq!(op.dead_letters, 0, "{name}");
    }
    assert_eq!(operator(&metrics, "memory-source").position, input.len() as u64, "records read");
    assert_eq!(metrics.source_records(), input.len() as u64);
    assert_eq!(metrics.sink_records(), out.len() as u64, "the sink counted what it collected");
    assert_eq!(out.len(), windows.len());
    assert_eq!(metrics.sink_watermark(), MAX_TIMESTAMP);
}

/// A sink that takes a while for each batch.
struct SlowSink;

struct SlowWriter;

impl Sink<(u32, u64)> for SlowSink {
    type Writer = SlowWriter;
    fn name(&self) -> String {
        "slow-sink".to_string()
    }
    fn writer(&self, _context: &SinkContext) -> sluice::Result<SlowWriter> {
        Ok(SlowWriter)
    }
}

impl SinkWriter<(u32, u64)> for SlowWriter {
    fn write_batch(&mut self, _batch: Vec<Record<(u32, u64)>>) -> sluice::Result<()> {
        std::thread::sleep(Duration::from_millis(2));
        Ok(())
    }
}

#[test]
fn a_slow_sink_blocks_the_key_by_exchange() {
    let env = StreamEnvironment::new().parallelism(2).batch_size(1).channel_capacity(1);
    env.source(VecSource::new((0..200u64).map(|n| ((n % 4) as u32, n)).collect()))
        .key_by(|(k, _)| *k)
        .reduce(|(k, a), (_, b)| (*k, a + b))
        .sink(SlowSink);
    let metrics = env.execute().unwrap_or_else(|error| panic!("the job failed: {error}")).metrics;
    let exchange = operator(&metrics, "key_by");
    assert_eq!((exchange.records_in, exchange.records_out), (200, 200));
    assert!(exchange.blocked_nanos > 0, "the exchange never waited on a full channel: {exchange:?}");
    assert_eq!(operator(&metrics, "slow-sink").records_in, 200);
}
