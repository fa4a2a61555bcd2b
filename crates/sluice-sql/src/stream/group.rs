//! Group aggregation: a `GROUP BY` that is not over windows, whose results are
//! updated as rows arrive (Flink's group aggregate). Each group's current result is
//! an insert (`+I`) the first time, then a retraction of the result before (`-U`) and
//! the result after (`+U`) whenever it changes.
//!
//! Rows arrive keyed as for window aggregation (`aggregate.rs`): the group key's
//! columns first, then the aggregates' arguments and filters. A batch is aggregated at
//! once, as Flink's mini-batch aggregation does: the batch's groups are aggregated
//! into fresh DataFusion group accumulators, merged with each group's state before,
//! and each changed group's result leaves once per batch. So the changelog's
//! intermediate rows depend on how input is batched; the results it materializes do
//! not.
//!
//! Each group keeps its accumulators' state and its last result, in arrow-row's byte
//! encoding, and when it was last updated: with `table.exec.state.ttl`, a group not
//! updated for that long is forgotten (in processing time, as Flink's state TTL), and
//! its next row starts it again with an insert.

use super::aggregate::{key_converter, AggregateCall};
use super::state::{KeyedState, Updated};
use crate::changelog::{RowKind, ROW_KIND};
use arrow_array::{Array, ArrayRef, BooleanArray, Int8Array, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion_expr::{EmitTo, GroupsAccumulator};
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Operator, Output};
use sluice_types::{Error, Result, Timestamp};
use std::sync::Arc;

/// What a group aggregation computes.
#[derive(Debug)]
pub struct GroupAggregateSpec {
    /// The operator's name.
    pub name: String,
    /// How many leading input columns are the group key.
    pub keys: usize,
    /// The aggregates.
    pub calls: Vec<AggregateCall>,
    /// The output's data columns: the key's, then one per aggregate (the row kind
    /// column follows them).
    pub schema: SchemaRef,
    /// The input's schema.
    pub input: SchemaRef,
    /// How long a group not updated is kept (milliseconds of processing time).
    pub ttl: Option<i64>,
}

impl GroupAggregateSpec {
    /// The output schema with the row kind column.
    pub fn changelog_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(ROW_KIND, DataType::Int8, false));
        Arc::new(Schema::new(fields))
    }

    /// Fails if a group's state cannot be kept (an aggregate's state type arrow-row
    /// cannot encode): checked when the job is planned.
    pub fn check(&self) -> Result<()> {
        state_converter(self)?;
        output_converter(self)?;
        key_converter(&self.input, self.keys)?;
        Ok(())
    }
}

fn state_converter(spec: &GroupAggregateSpec) -> Result<RowConverter> {
    let mut fields = Vec::new();
    for call in &spec.calls {
        for field in call.function.state_fields().map_err(|e| Error::invalid_job(e.to_string()))? {
            fields.push(SortField::new(field.data_type().clone()));
        }
    }
    RowConverter::new(fields).map_err(|e| Error::invalid_job(format!("cannot keep these aggregates' state: {e}")))
}

fn output_converter(spec: &GroupAggregateSpec) -> Result<RowConverter> {
    let fields = spec.schema.fields()[spec.keys..].iter().map(|f| SortField::new(f.data_type().clone())).collect();
    RowConverter::new(fields).map_err(|e| Error::invalid_job(format!("cannot keep these aggregates' results: {e}")))
}

/// One group's state.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Group {
    /// The accumulators' state, one row of the state converter.
    state: Box<[u8]>,
    /// The last result sent, one row of the output converter.
    output: Box<[u8]>,
    /// When the group was last updated (milliseconds since the epoch).
    updated: Timestamp,
}

/// One worker's group aggregation.
pub struct GroupAggregate {
    spec: Arc<GroupAggregateSpec>,
    keys: RowConverter,
    states: RowConverter,
    outputs: RowConverter,
    changelog: SchemaRef,
    groups: KeyedState<Group>,
    clock: fn() -> Timestamp,
}

impl GroupAggregate {
    /// An aggregation with no group yet.
    pub fn new(spec: Arc<GroupAggregateSpec>) -> Result<Self> {
        Ok(GroupAggregate {
            keys: key_converter(&spec.input, spec.keys)?,
            states: state_converter(&spec)?,
            outputs: output_converter(&spec)?,
            changelog: spec.changelog_schema(),
            groups: KeyedState::new(spec.ttl),
            spec,
            clock: sluice_runtime::now_millis,
        })
    }

    /// The same, reading processing time from `clock` (for tests of state TTL).
    #[cfg(test)]
    fn with_clock(mut self, clock: fn() -> Timestamp) -> Self {
        self.clock = clock;
        self
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
    }

    fn accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.spec.calls.iter().map(AggregateCall::accumulator).collect()
    }

    /// Merges the state columns (each call's, in order) into `accumulators`.
    fn merge(
        &self,
        accumulators: &mut [Box<dyn GroupsAccumulator>],
        columns: &[ArrayRef],
        groups: &[usize],
        total: usize,
    ) -> Result<()> {
        super::aggregate::merge_into(&self.spec.calls, accumulators, columns, groups, total).map_err(|e| self.error(e))
    }

    /// The changelog rows of one batch's changed groups.
    fn aggregate(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        let now = (self.clock)();
        let key_rows = self.keys.convert_columns(&batch.columns()[..self.spec.keys]).map_err(|e| self.error(e))?;
        // The batch's groups, numbered from 0 in order of first appearance.
        let mut local: FxHashMap<&[u8], usize> = FxHashMap::default();
        let mut ids = Vec::with_capacity(batch.num_rows());
        let mut firsts: Vec<u32> = Vec::new();
        for (row, key) in key_rows.iter().enumerate() {
            let next = firsts.len();
            let id = *local.entry(key.data()).or_insert(next);
            if id == next {
                firsts.push(row as u32);
            }
            ids.push(id);
        }
        let total = firsts.len();
        let key_of = |g: usize| key_rows.row(firsts[g] as usize);

        // Fresh accumulators, given what the groups held before, then the batch.
        let mut accumulators = self.accumulators()?;
        let mut before: Vec<usize> = Vec::new();
        for g in 0..total {
            if let Some(group) = self.groups.map.get(key_of(g).data()) {
                if !self.groups.expired(group, now) {
                    before.push(g);
                }
            }
        }
        if !before.is_empty() {
            let parser = self.states.parser();
            let rows = before.iter().map(|&g| parser.parse(&self.groups.map[key_of(g).data()].state));
            let columns = self.states.convert_rows(rows).map_err(|e| self.error(e))?;
            self.merge(&mut accumulators, &columns, &before, total)?;
        }
        for (call, accumulator) in self.spec.calls.iter().zip(accumulators.iter_mut()) {
            let values: Vec<ArrayRef> = call.args.iter().map(|&i| batch.column(i).clone()).collect();
            let filter = call.filter.and_then(|i| batch.column(i).as_any().downcast_ref::<BooleanArray>().cloned());
            accumulator.update_batch(&values, &ids, filter.as_ref(), total).map_err(|e| self.error(e))?;
        }
        // `state` and `evaluate` each consume the accumulators: the state goes into
        // a second set, which gives the results.
        let mut state_columns = Vec::new();
        for accumulator in &mut accumulators {
            state_columns.extend(accumulator.state(EmitTo::All).map_err(|e| self.error(e))?);
        }
        let mut results = self.accumulators()?;
        let all: Vec<usize> = (0..total).collect();
        self.merge(&mut results, &state_columns, &all, total)?;
        let mut result_columns = Vec::new();
        for (accumulator, field) in results.iter_mut().zip(&self.spec.schema.fields()[self.spec.keys..]) {
            let column = accumulator.evaluate(EmitTo::All).map_err(|e| self.error(e))?;
            result_columns.push(match column.data_type() == field.data_type() {
                true => column,
                false => arrow_cast::cast(&column, field.data_type()).map_err(|e| self.error(e))?,
            });
        }
        let new_states = self.states.convert_columns(&state_columns).map_err(|e| self.error(e))?;
        let new_results = self.outputs.convert_columns(&result_columns).map_err(|e| self.error(e))?;

        // The changelog: +I for a new group, -U and +U for a changed one, nothing for
        // one whose result did not change.
        let mut order: Vec<(usize, usize)> = Vec::new();
        let mut kinds: Vec<i8> = Vec::new();
        let mut retracted: Vec<Box<[u8]>> = Vec::new();
        let mut retracted_keys: Vec<u32> = Vec::new();
        for (g, &first) in firsts.iter().enumerate() {
            let key = key_rows.row(first as usize);
            let result = new_results.row(g);
            let updated = Group { state: new_states.row(g).data().into(), output: result.data().into(), updated: now };
            match self.groups.map.get_mut(key.data()) {
                Some(group) if before.binary_search(&g).is_ok() => {
                    if *group.output != *result.data() {
                        order.push((1, retracted.len()));
                        kinds.push(RowKind::UpdateBefore.code());
                        retracted.push(std::mem::take(&mut group.output));
                        retracted_keys.push(first);
                        order.push((0, g));
                        kinds.push(RowKind::UpdateAfter.code());
                    }
                    *group = updated;
                }
                Some(group) => {
                    // Expired: started again.
                    order.push((0, g));
                    kinds.push(RowKind::Insert.code());
                    *group = updated;
                }
                None => {
                    order.push((0, g));
                    kinds.push(RowKind::Insert.code());
                    self.groups.map.insert(key.data().into(), updated);
                }
            }
        }
        if order.is_empty() {
            return Ok(None);
        }
        let firsts = UInt32Array::from(firsts);
        let retracted_keys = UInt32Array::from(retracted_keys);
        let parser = self.outputs.parser();
        let old_results =
            self.outputs.convert_rows(retracted.iter().map(|r| parser.parse(r))).map_err(|e| self.error(e))?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.changelog.fields().len());
        for key in &batch.columns()[..self.spec.keys] {
            let new = arrow_select::take::take(key, &firsts, None).map_err(|e| self.error(e))?;
            let old = arrow_select::take::take(key, &retracted_keys, None).map_err(|e| self.error(e))?;
            columns.push(arrow_select::interleave::interleave(&[&new, &old], &order).map_err(|e| self.error(e))?);
        }
        for (new, old) in result_columns.iter().zip(&old_results) {
            columns.push(arrow_select::interleave::interleave(&[new, old], &order).map_err(|e| self.error(e))?);
        }
        columns.push(Arc::new(Int8Array::from(kinds)));
        let options = RecordBatchOptions::new().with_row_count(Some(order.len()));
        RecordBatch::try_new_with_options(self.changelog.clone(), columns, &options)
            .map(Some)
            .map_err(|e| self.error(e))
    }
}

impl Updated for Group {
    fn updated(&self) -> Timestamp {
        self.updated
    }
}

impl Operator for GroupAggregate {
    type In = RecordBatch;
    type Out = RecordBatch;

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(changes) = self.aggregate(&batch)? {
            out.emit(changes)?;
        }
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, _out: &mut Output<RecordBatch>) -> Result<()> {
        self.groups.sweep(now);
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        self.groups.snapshot(state)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.groups.restore(state, |_, _| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::aggregate::AggregateCall;
    use crate::stream::testing::Collected;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Int64Array;
    use datafusion_physical_expr::aggregate::AggregateExprBuilder;
    use datafusion_physical_expr::expressions::Column;
    use std::sync::atomic::{AtomicI64, Ordering};

    static NOW: AtomicI64 = AtomicI64::new(0);

    fn now() -> Timestamp {
        NOW.load(Ordering::SeqCst)
    }

    /// `SELECT k, SUM(v) ... GROUP BY k`.
    fn sum_by_key(ttl: Option<i64>) -> Arc<GroupAggregateSpec> {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let sum = AggregateExprBuilder::new(
            datafusion_functions_aggregate::sum::sum_udaf(),
            vec![Arc::new(Column::new("v", 1))],
        )
        .schema(input.clone())
        .alias("s")
        .build()
        .expect("SUM");
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Int64, true),
        ]));
        Arc::new(GroupAggregateSpec {
            name: "sum".into(),
            keys: 1,
            calls: vec![AggregateCall { function: Arc::new(sum), args: vec![1], filter: None }],
            schema,
            input,
            ttl,
        })
    }

    fn batch(spec: &GroupAggregateSpec, rows: &[(i64, i64)]) -> RecordBatch {
        let keys = Int64Array::from_iter_values(rows.iter().map(|r| r.0));
        let values = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
        RecordBatch::try_new(spec.input.clone(), vec![Arc::new(keys), Arc::new(values)]).expect("a batch")
    }

    /// The changelog rows as `(kind, key, sum)`.
    fn rows(batches: &[RecordBatch]) -> Vec<(&'static str, i64, i64)> {
        let mut rows = Vec::new();
        for batch in batches {
            let keys = batch.column(0).as_primitive::<Int64Type>();
            let sums = batch.column(1).as_primitive::<Int64Type>();
            let kinds = batch.column(2).as_primitive::<arrow_array::types::Int8Type>();
            for i in 0..batch.num_rows() {
                rows.push((RowKind::from_code(kinds.value(i)).short(), keys.value(i), sums.value(i)));
            }
        }
        rows
    }

    #[test]
    fn a_changed_group_is_retracted_and_updated_an_unchanged_one_is_not_sent() {
        let spec = sum_by_key(None);
        let (mut out, collected) = Collected::output();
        let mut aggregate = GroupAggregate::new(spec.clone()).expect("planned");
        aggregate.process_batch(batch(&spec, &[(1, 5), (2, 1), (1, 2)]), &mut out).expect("aggregated");
        aggregate.process_batch(batch(&spec, &[(2, 3), (1, 0)]), &mut out).expect("aggregated");
        assert_eq!(
            rows(&collected.batches()),
            vec![("+I", 1, 7), ("+I", 2, 1), ("-U", 2, 1), ("+U", 2, 4)],
            "key 1's sum did not change in the second batch"
        );
    }

    #[test]
    fn a_group_not_updated_for_the_ttl_starts_again_and_its_state_survives_a_checkpoint() {
        let spec = sum_by_key(Some(1_000));
        let (mut out, collected) = Collected::output();
        let mut aggregate = GroupAggregate::new(spec.clone()).expect("planned").with_clock(now);
        NOW.store(10_000, Ordering::SeqCst);
        aggregate.process_batch(batch(&spec, &[(1, 5), (2, 1)]), &mut out).expect("aggregated");
        NOW.store(10_900, Ordering::SeqCst);
        aggregate.process_batch(batch(&spec, &[(2, 1)]), &mut out).expect("aggregated");
        // Key 1 was last updated at 10 000, key 2 at 10 900.
        NOW.store(11_500, Ordering::SeqCst);
        aggregate.on_processing_time(11_500, &mut out).expect("swept");
        assert_eq!(aggregate.groups.len(), 1, "key 1 expired and was removed");

        let mut state = StateWriter::new(128);
        aggregate.snapshot(&mut state).expect("snapshot");
        let mut restored = GroupAggregate::new(spec.clone()).expect("planned").with_clock(now);
        restored.restore(&StateReader::new(state.finish())).expect("restored");
        restored.process_batch(batch(&spec, &[(1, 1), (2, 1)]), &mut out).expect("aggregated");
        NOW.store(13_000, Ordering::SeqCst);
        restored.process_batch(batch(&spec, &[(2, 1)]), &mut out).expect("aggregated");
        assert_eq!(
            rows(&collected.batches()),
            vec![
                ("+I", 1, 5),
                ("+I", 2, 1),
                ("-U", 2, 1),
                ("+U", 2, 2),
                ("+I", 1, 1),
                ("-U", 2, 2),
                ("+U", 2, 3),
                ("+I", 2, 1)
            ]
        );
    }
}
