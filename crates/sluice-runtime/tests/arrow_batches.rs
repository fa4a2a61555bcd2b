//! Arrow record batches run on the same runtime as the typed API: a source of record
//! batches, a chained filter, a hash exchange by key column and a gate on each of two
//! workers.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{BooleanArray, Int64Array, RecordBatch};
use sluice_runtime::arrow::ColumnPartitioner;
use sluice_runtime::checkpoint::{Alignment, Barrier, CheckpointHub};
use sluice_runtime::exchange::{HashExchange, KeyRouter};
use sluice_runtime::{
    run_workers, BuildContext, EdgeKind, MetricsRegistry, Operator, OperatorKind, OperatorNode, Output, Push,
    RuntimeConfig, SideOutputs, SourceDriver, SourcePoll, SourceReader, UnaryGate,
};
use sluice_types::{hash_key, Result, Timestamp, MAX_TIMESTAMP};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Batches of (key, value) rows; worker w's values are w*10_000 + i.
struct Rows {
    worker: i64,
    batches_left: i64,
}

impl SourceReader for Rows {
    type Batch = RecordBatch;
    fn poll(&mut self, _max: usize) -> Result<SourcePoll<RecordBatch>> {
        if self.batches_left == 0 {
            return Ok(SourcePoll::Finished);
        }
        self.batches_left -= 1;
        let base = self.worker * 10_000 + self.batches_left * 100;
        let values: Vec<i64> = (base..base + 100).collect();
        let keys: Vec<i64> = values.iter().map(|v| v % 17).collect();
        let batch = RecordBatch::try_from_iter([
            ("key", Arc::new(Int64Array::from(keys)) as _),
            ("value", Arc::new(Int64Array::from(values)) as _),
        ])
        .expect("valid batch");
        Ok(SourcePoll::Batch(batch))
    }
    fn position(&self) -> u64 {
        0
    }
}

/// Keeps rows with an even value.
struct KeepEven;

impl Operator for KeepEven {
    type In = RecordBatch;
    type Out = RecordBatch;
    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        let values = batch.column(1).as_primitive::<Int64Type>();
        let even: BooleanArray = values.iter().map(|v| v.map(|v| v % 2 == 0)).collect();
        out.emit(arrow_select::filter::filter_record_batch(&batch, &even).expect("filter"))
    }
}

type Received = Arc<Mutex<Vec<(usize, RecordBatch)>>>;

/// Collects what reaches worker `worker`, and the last watermark.
struct Collect {
    worker: usize,
    received: Received,
    watermark: Arc<Mutex<Vec<Timestamp>>>,
}

impl Push<RecordBatch> for Collect {
    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.received.lock().expect("lock").push((self.worker, batch));
        Ok(())
    }
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.watermark.lock().expect("lock").push(watermark);
        Ok(())
    }
    fn idle(&mut self) -> Result<()> {
        Ok(())
    }
    fn tick(&mut self, _now: Timestamp) -> Result<()> {
        Ok(())
    }
    fn end(&mut self) -> Result<()> {
        Ok(())
    }
    fn barrier(&mut self, _barrier: Barrier) -> Result<()> {
        Ok(())
    }
    fn backlogged(&mut self) -> Result<bool> {
        Ok(false)
    }
}

#[test]
fn record_batches_are_filtered_and_routed_by_key_column() {
    let config = RuntimeConfig { parallelism: 2, channel_capacity: 2, ..RuntimeConfig::default() };
    let metrics = MetricsRegistry::default();
    let cancel = Arc::new(AtomicBool::new(false));
    let (hub, _) = CheckpointHub::disabled(config.parallelism, config.max_parallelism);
    let mut ctx = BuildContext::new(config.clone(), metrics.clone(), cancel.clone(), hub);
    let edge = ctx.edges.declare(EdgeKind::Hash);
    let received: Received = Arc::default();
    let watermarks: Arc<Mutex<Vec<Timestamp>>> = Arc::default();
    for worker in 0..2 {
        ctx.worker = worker;
        let exchange_metrics = ctx.metrics.register(1, "key_by", OperatorKind::Exchange);
        let senders = ctx.edges.take_senders::<RecordBatch>(edge, worker, &exchange_metrics).expect("senders");
        let exchange = HashExchange::new(senders, ColumnPartitioner::new(0), config.max_parallelism, exchange_metrics);
        let filter_metrics = ctx.metrics.register(0, "keep_even", OperatorKind::Operator);
        let filter =
            OperatorNode::new(KeepEven, Output::new(Box::new(exchange), SideOutputs::default(), filter_metrics));
        let source_metrics = ctx.metrics.register(2, "rows", OperatorKind::Source);
        let reader = Rows { worker: worker as i64, batches_left: 20 };
        let source = SourceDriver::new(
            format!("rows-{worker}"),
            reader,
            Box::new(filter),
            source_metrics,
            100,
            Duration::from_millis(10),
        );
        ctx.add_task(Box::new(source));
        let receivers = ctx.edges.take_receivers::<RecordBatch>(edge, worker).expect("receivers");
        let sink = Collect { worker, received: received.clone(), watermark: watermarks.clone() };
        ctx.add_task(Box::new(UnaryGate::new(
            format!("gate-{worker}"),
            receivers,
            Box::new(sink),
            Duration::from_millis(10),
            Alignment::Aligned,
        )));
    }
    run_workers(ctx.into_workers(), cancel).expect("the job runs");

    let received = received.lock().expect("lock");
    let rows: usize = received.iter().map(|(_, b)| b.num_rows()).sum();
    assert_eq!(rows, 2 * 20 * 100 / 2, "every even row arrives once");
    let router = KeyRouter::new(config.max_parallelism, 2);
    for (worker, batch) in received.iter() {
        for key in batch.column(0).as_primitive::<Int64Type>().iter().flatten() {
            assert_eq!(router.target(hash_key(&key)), *worker, "key {key} reached the worker owning it");
        }
        assert!(batch.column(1).as_primitive::<Int64Type>().iter().flatten().all(|v| v % 2 == 0));
    }
    let watermarks = watermarks.lock().expect("lock");
    assert_eq!(watermarks.iter().filter(|w| **w == MAX_TIMESTAMP).count(), 2, "both gates saw the final watermark");
    let snapshot = metrics.snapshot();
    let exchange = snapshot.operator("key_by").expect("exchange counted");
    assert_eq!((exchange.records_in, exchange.records_out), (2000, 2000));
}
