//! Arrow record batches run on the same runtime as the typed API: a source of record
//! batches, a chained filter, a hash exchange by key column and a gate on each of two
//! workers; and a two-input operator joining two streams of record batches.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{BooleanArray, Int64Array, RecordBatch, StringArray};
use sluice_runtime::arrow::ColumnPartitioner;
use sluice_runtime::checkpoint::{Alignment, CheckpointHub};
use sluice_runtime::exchange::{HashExchange, KeyRouter};
use sluice_runtime::{
    run_workers, BinaryGate, BuildContext, Control, EdgeKind, MetricsRegistry, Operator, OperatorKind, OperatorNode,
    Output, Push, RuntimeConfig, SideOutputs, SourceDriver, SourcePoll, SourceReader, TwoInputNode, TwoInputOperator,
    UnaryGate,
};
use sluice_types::{hash_key, Result, Timestamp, MAX_TIMESTAMP};
use std::collections::HashMap;
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
    fn control(&mut self, control: Control) -> Result<()> {
        if let Control::Watermark(watermark) = control {
            self.watermark.lock().expect("lock").push(watermark);
        }
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

/// Names of the keys 0 to 16, one batch per worker: worker w names the keys k with
/// k % 2 == w.
struct Names {
    worker: i64,
    done: bool,
}

impl SourceReader for Names {
    type Batch = RecordBatch;
    fn poll(&mut self, _max: usize) -> Result<SourcePoll<RecordBatch>> {
        if std::mem::replace(&mut self.done, true) {
            return Ok(SourcePoll::Finished);
        }
        let keys: Vec<i64> = (0..17).filter(|k| k % 2 == self.worker).collect();
        let names: Vec<String> = keys.iter().map(|k| format!("key-{k}")).collect();
        let batch = RecordBatch::try_from_iter([
            ("key", Arc::new(Int64Array::from(keys)) as _),
            ("name", Arc::new(StringArray::from(names)) as _),
        ])
        .expect("valid batch");
        Ok(SourcePoll::Batch(batch))
    }
    fn position(&self) -> u64 {
        0
    }
}

/// Joins (key, value) rows with the (key, name) rows of the same key: rows wait until
/// both inputs have ended (the final watermark), then leave as (key, value, name).
#[derive(Default)]
struct NameRows {
    names: HashMap<i64, String>,
    rows: Vec<RecordBatch>,
}

impl TwoInputOperator for NameRows {
    type Left = RecordBatch;
    type Right = RecordBatch;
    type Out = RecordBatch;
    fn process_left(&mut self, batch: RecordBatch, _out: &mut Output<RecordBatch>) -> Result<()> {
        self.rows.push(batch);
        Ok(())
    }
    fn process_right(&mut self, batch: RecordBatch, _out: &mut Output<RecordBatch>) -> Result<()> {
        let keys = batch.column(0).as_primitive::<Int64Type>();
        let names = batch.column(1).as_string::<i32>();
        for (key, name) in keys.iter().zip(names.iter()) {
            self.names.insert(key.expect("key"), name.expect("name").to_string());
        }
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        if watermark < MAX_TIMESTAMP {
            return Ok(());
        }
        for batch in std::mem::take(&mut self.rows) {
            let keys = batch.column(0).as_primitive::<Int64Type>();
            let names: StringArray = keys.iter().map(|k| k.and_then(|k| self.names.get(&k).cloned())).collect();
            let joined = RecordBatch::try_from_iter([
                ("key", batch.column(0).clone()),
                ("value", batch.column(1).clone()),
                ("name", Arc::new(names) as _),
            ])
            .expect("valid batch");
            out.emit(joined)?;
        }
        Ok(())
    }
}

#[test]
fn a_two_input_operator_joins_two_streams_of_record_batches() {
    let config = RuntimeConfig { parallelism: 2, channel_capacity: 2, ..RuntimeConfig::default() };
    let metrics = MetricsRegistry::default();
    let cancel = Arc::new(AtomicBool::new(false));
    let (hub, _) = CheckpointHub::disabled(config.parallelism, config.max_parallelism);
    let mut ctx = BuildContext::new(config.clone(), metrics.clone(), cancel.clone(), hub.clone());
    let (rows_edge, names_edge) = (ctx.edges.declare(EdgeKind::Hash), ctx.edges.declare(EdgeKind::Hash));
    let received: Received = Arc::default();
    let watermarks: Arc<Mutex<Vec<Timestamp>>> = Arc::default();
    for worker in 0..2 {
        ctx.worker = worker;
        for (edge, id, name) in [(rows_edge, 1, "rows by key"), (names_edge, 3, "names by key")] {
            let exchange_metrics = ctx.metrics.register(id, name, OperatorKind::Exchange);
            let senders = ctx.edges.take_senders::<RecordBatch>(edge, worker, &exchange_metrics).expect("senders");
            let exchange =
                HashExchange::new(senders, ColumnPartitioner::new(0), config.max_parallelism, exchange_metrics);
            let (source_id, source_name) = (id - 1, if id == 1 { "rows" } else { "names" });
            let source_metrics = ctx.metrics.register(source_id, source_name, OperatorKind::Source);
            let next = Box::new(exchange);
            let task: Box<dyn sluice_runtime::Task> = if id == 1 {
                let reader = Rows { worker: worker as i64, batches_left: 5 };
                Box::new(SourceDriver::new(format!("rows-{worker}"), reader, next, source_metrics, 100, TICK))
            } else {
                let reader = Names { worker: worker as i64, done: false };
                Box::new(SourceDriver::new(format!("names-{worker}"), reader, next, source_metrics, 100, TICK))
            };
            ctx.add_task(task);
        }
        let join_metrics = ctx.metrics.register(4, "name rows", OperatorKind::Operator);
        let sink = Collect { worker, received: received.clone(), watermark: watermarks.clone() };
        let out = Output::new(Box::new(sink), SideOutputs::default(), join_metrics);
        let join = TwoInputNode::new(NameRows::default(), out, hub.register(4, worker)).expect("join");
        let left = ctx.edges.take_receivers::<RecordBatch>(rows_edge, worker).expect("receivers");
        let right = ctx.edges.take_receivers::<RecordBatch>(names_edge, worker).expect("receivers");
        let gate = BinaryGate::new(format!("join-{worker}"), left, right, Box::new(join), TICK, Alignment::Aligned);
        ctx.add_task(Box::new(gate));
    }
    run_workers(ctx.into_workers(), cancel).expect("the job runs");

    let received = received.lock().expect("lock");
    let mut joined = 0;
    for (_, batch) in received.iter() {
        assert_eq!(batch.num_columns(), 3);
        let keys = batch.column(0).as_primitive::<Int64Type>();
        let names = batch.column(2).as_string::<i32>();
        for (key, name) in keys.iter().zip(names.iter()) {
            let key = key.expect("key");
            assert_eq!(name, Some(format!("key-{key}").as_str()), "row of key {key} got its key's name");
            joined += 1;
        }
    }
    assert_eq!(joined, 2 * 5 * 100, "every row joined once");
    let join = metrics.snapshot().operator("name rows").cloned().expect("join counted");
    assert_eq!((join.records_in, join.records_out), (1000 + 17, 1000));
}

const TICK: Duration = Duration::from_millis(10);
