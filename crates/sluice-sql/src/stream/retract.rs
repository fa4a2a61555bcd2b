//! Group aggregation of updating input: a `GROUP BY` over the results of another
//! `GROUP BY`, a Top-N or anything else that retracts rows (Nexmark q4's average of
//! each auction's highest bid). Each input row adds to its group (`+I`, `+U`) or takes
//! back from it (`-U`, `-D`), as Flink's retracting aggregate functions do: `COUNT` and
//! `SUM` add or subtract, `AVG` keeps a sum and a count, `MIN` and `MAX` keep how many
//! times each value was added (arrow-row encoded, so ordered as bytes), and so do the
//! `DISTINCT` forms, which aggregate the values held at least once. A group whose rows
//! are all taken back is deleted (`-D`).
//!
//! DataFusion's group accumulators cannot take values back, so these are Sluice's
//! own, one row at a time: a retracting aggregation is slower than one of
//! append-only input. Results leave once per batch, as in `group.rs`.

use super::state::{KeyedState, Updated};
use crate::changelog::{row_kinds, RowKind, ROW_KIND};
use arrow_array::{Array, ArrayRef, BooleanArray, Int8Array, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion_common::ScalarValue;
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Operator, Output};
use sluice_types::{Error, Result, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The aggregate functions that can take values back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retracting {
    /// `COUNT(*)`, or `COUNT(x)` with an argument: the rows (with `x` not NULL).
    Count,
    /// `SUM(x)`.
    Sum,
    /// `AVG(x)`.
    Avg,
    /// `MIN(x)`.
    Min,
    /// `MAX(x)`.
    Max,
}

impl Retracting {
    /// The function named `name` (DataFusion's name), if it can take values back.
    pub fn of(name: &str) -> Option<Self> {
        match name {
            "count" => Some(Retracting::Count),
            "sum" => Some(Retracting::Sum),
            "avg" => Some(Retracting::Avg),
            "min" => Some(Retracting::Min),
            "max" => Some(Retracting::Max),
            _ => None,
        }
    }
}

/// One aggregate call of a retracting aggregation.
#[derive(Debug)]
pub struct RetractCall {
    /// Its function.
    pub function: Retracting,
    /// The input column of its argument (`None`: `COUNT(*)`).
    pub arg: Option<usize>,
    /// The input column of its `FILTER (WHERE ...)`.
    pub filter: Option<usize>,
    /// Whether it aggregates distinct values (`COUNT(DISTINCT x)`).
    pub distinct: bool,
}

impl RetractCall {
    /// Whether its state is how many times each value is held.
    fn holds_values(&self) -> bool {
        self.distinct || matches!(self.function, Retracting::Min | Retracting::Max)
    }
}

/// What a retracting group aggregation computes.
#[derive(Debug)]
pub struct RetractAggregateSpec {
    /// The operator's name.
    pub name: String,
    /// How many leading input columns are the group key.
    pub keys: usize,
    /// The aggregates.
    pub calls: Vec<RetractCall>,
    /// The output's data columns: the key's, then one per aggregate.
    pub schema: SchemaRef,
    /// The input's schema (its last column the row kind).
    pub input: SchemaRef,
    /// How long a group not updated is kept (milliseconds of processing time).
    pub ttl: Option<i64>,
}

impl RetractAggregateSpec {
    fn changelog_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(ROW_KIND, DataType::Int8, false));
        Arc::new(Schema::new(fields))
    }

    fn output_type(&self, call: usize) -> &DataType {
        self.schema.field(self.keys + call).data_type()
    }

    /// Fails if an aggregate's types are not supported: checked when planned.
    pub fn check(&self) -> Result<()> {
        for (i, call) in self.calls.iter().enumerate() {
            let output = self.output_type(i);
            let supported = match call.function {
                Retracting::Count => true,
                Retracting::Sum => output.is_integer() || output.is_floating(),
                Retracting::Avg => *output == DataType::Float64,
                Retracting::Min | Retracting::Max => true,
            };
            let supported = supported
                && (!call.holds_values() || {
                    let arg = call.arg.map(|a| self.input.field(a).data_type().clone()).unwrap_or(DataType::Null);
                    RowConverter::new(vec![SortField::new(arg)]).is_ok()
                });
            if !supported {
                return Err(Error::invalid_job(format!(
                    "not supported yet in streaming SQL: {:?} of {output} over updating rows",
                    call.function
                )));
            }
        }
        Ok(())
    }
}

/// One call's state in one group.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum CallState {
    Count(i64),
    /// The sum, exact while every value is an integer, and how many values it holds.
    Sum {
        sum: Option<f64>,
        exact: Option<i128>,
        values: i64,
    },
    /// How many times each value (arrow-row encoded) is held.
    Extreme(BTreeMap<Vec<u8>, i64>),
}

/// One group's state.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Group {
    /// How many rows it holds.
    rows: i64,
    calls: Vec<CallState>,
    /// Its last result sent, one row of the output converter.
    output: Option<Vec<u8>>,
    updated: Timestamp,
}

/// One worker's retracting group aggregation.
pub struct RetractAggregate {
    spec: Arc<RetractAggregateSpec>,
    keys: RowConverter,
    /// One per call: the encoding of MIN and MAX arguments.
    values: Vec<Option<RowConverter>>,
    outputs: RowConverter,
    changelog: SchemaRef,
    groups: KeyedState<Group>,
}

impl RetractAggregate {
    /// An aggregation with no group yet.
    pub fn new(spec: Arc<RetractAggregateSpec>) -> Result<Self> {
        let error = |e: arrow_schema::ArrowError| Error::invalid_job(e.to_string());
        let values = spec
            .calls
            .iter()
            .map(|call| match call.arg.filter(|_| call.holds_values()) {
                Some(arg) => {
                    let field = SortField::new(spec.input.field(arg).data_type().clone());
                    RowConverter::new(vec![field]).map(Some).map_err(error)
                }
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let outputs = spec.schema.fields()[spec.keys..].iter().map(|f| SortField::new(f.data_type().clone())).collect();
        Ok(RetractAggregate {
            keys: super::aggregate::key_converter(&spec.input, spec.keys)?,
            values,
            outputs: RowConverter::new(outputs).map_err(error)?,
            changelog: spec.changelog_schema(),
            groups: KeyedState::new(spec.ttl),
            spec,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
    }

    fn fresh(&self) -> Vec<CallState> {
        self.spec
            .calls
            .iter()
            .map(|call| match call.function {
                _ if call.holds_values() => CallState::Extreme(BTreeMap::new()),
                Retracting::Count => CallState::Count(0),
                Retracting::Sum | Retracting::Avg => CallState::Sum { sum: None, exact: None, values: 0 },
                Retracting::Min | Retracting::Max => CallState::Extreme(BTreeMap::new()),
            })
            .collect()
    }

    /// A call's result in a group, as a scalar of its output type.
    fn result(&self, call: usize, state: &CallState) -> Result<ScalarValue> {
        let output = self.spec.output_type(call);
        let value = match state {
            CallState::Count(n) => ScalarValue::Int64(Some(*n)),
            CallState::Sum { values: 0, .. } => ScalarValue::try_from(output).map_err(|e| self.error(e))?,
            CallState::Sum { sum, exact, values } => match self.spec.calls[call].function {
                Retracting::Avg => ScalarValue::Float64(Some(sum.unwrap_or_default() / *values as f64)),
                _ => match exact {
                    Some(exact) => ScalarValue::Decimal128(Some(*exact), 38, 0),
                    None => ScalarValue::Float64(*sum),
                },
            },
            CallState::Extreme(held) if self.spec.calls[call].distinct => self.distinct_result(call, held)?,
            CallState::Extreme(held) => {
                let value = match self.spec.calls[call].function {
                    Retracting::Min => held.keys().next(),
                    _ => held.keys().next_back(),
                };
                match (value, &self.values[call]) {
                    (Some(bytes), Some(converter)) => {
                        let parser = converter.parser();
                        let column = converter.convert_rows([parser.parse(bytes)]).map_err(|e| self.error(e))?;
                        ScalarValue::try_from_array(&column[0], 0).map_err(|e| self.error(e))?
                    }
                    _ => ScalarValue::try_from(output).map_err(|e| self.error(e))?,
                }
            }
        };
        value.cast_to(output).map_err(|e| self.error(e))
    }
}

impl RetractAggregate {
    /// A `DISTINCT` call's result over the values `held`.
    fn distinct_result(&self, call: usize, held: &BTreeMap<Vec<u8>, i64>) -> Result<ScalarValue> {
        let function = self.spec.calls[call].function;
        if function == Retracting::Count {
            return Ok(ScalarValue::Int64(Some(held.len() as i64)));
        }
        let output = self.spec.output_type(call);
        let Some(converter) = &self.values[call] else { return Err(Error::internal("a DISTINCT without values")) };
        if held.is_empty() {
            return ScalarValue::try_from(output).map_err(|e| self.error(e));
        }
        let parser = converter.parser();
        let columns = converter.convert_rows(held.keys().map(|k| parser.parse(k))).map_err(|e| self.error(e))?;
        let column = &columns[0];
        let pick = |at: usize| ScalarValue::try_from_array(column, at).map_err(|e| self.error(e));
        Ok(match function {
            Retracting::Min => pick(0)?,
            Retracting::Max => pick(column.len() - 1)?,
            _ => {
                let mut state = CallState::Sum { sum: None, exact: None, values: 0 };
                for at in 0..column.len() {
                    apply(&mut state, Some((&pick(at)?, None)), 1)?;
                }
                let CallState::Sum { sum, exact, values } = state else { unreachable!("a sum") };
                match (function, exact) {
                    (Retracting::Avg, _) => ScalarValue::Float64(Some(sum.unwrap_or_default() / values as f64)),
                    (_, Some(exact)) => ScalarValue::Decimal128(Some(exact), 38, 0),
                    _ => ScalarValue::Float64(sum),
                }
            }
        })
    }
}

/// Adds (`sign` 1) or takes back (-1) `value` in `state`.
fn apply(state: &mut CallState, value: Option<(&ScalarValue, Option<Vec<u8>>)>, sign: i64) -> Result<()> {
    match state {
        CallState::Count(n) => *n += sign,
        CallState::Sum { sum, exact, values } => {
            let Some((value, _)) = value else { return Ok(()) };
            *values += sign;
            match value.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(v)))
                    if !matches!(value, ScalarValue::Float32(_) | ScalarValue::Float64(_)) =>
                {
                    *exact = Some(exact.unwrap_or_default() + i128::from(v) * i128::from(sign));
                    *sum = Some(sum.unwrap_or_default() + v as f64 * sign as f64);
                }
                _ => {
                    let v = match value.cast_to(&DataType::Float64) {
                        Ok(ScalarValue::Float64(Some(v))) => v,
                        _ => return Err(Error::internal(format!("SUM of {value}"))),
                    };
                    *sum = Some(sum.unwrap_or_default() + v * sign as f64);
                    *exact = None;
                }
            }
        }
        CallState::Extreme(held) => {
            let Some((_, Some(bytes))) = value else { return Ok(()) };
            let count = held.entry(bytes).or_default();
            *count += sign;
            if *count <= 0 {
                held.retain(|_, n| *n > 0);
            }
        }
    }
    Ok(())
}

impl Updated for Group {
    fn updated(&self) -> Timestamp {
        self.updated
    }
}

impl Operator for RetractAggregate {
    type In = RecordBatch;
    type Out = RecordBatch;

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        let now = sluice_runtime::now_millis();
        let spec = self.spec.clone();
        let kinds = row_kinds(&batch).cloned();
        let keys = self.keys.convert_columns(&batch.columns()[..spec.keys]).map_err(|e| self.error(e))?;
        let mut encoded: Vec<Option<arrow_row::Rows>> = Vec::new();
        for (call, converter) in spec.calls.iter().zip(&self.values) {
            encoded.push(match (converter, call.arg) {
                (Some(converter), Some(arg)) => {
                    Some(converter.convert_columns(&[batch.column(arg).clone()]).map_err(|e| self.error(e))?)
                }
                _ => None,
            });
        }
        let filters: Vec<Option<&BooleanArray>> = spec
            .calls
            .iter()
            .map(|call| call.filter.and_then(|f| batch.column(f).as_any().downcast_ref::<BooleanArray>()))
            .collect();
        // Each changed group's result before the batch, by first appearance.
        let mut touched: Vec<(Box<[u8]>, u32)> = Vec::new();
        let mut before: FxHashMap<Box<[u8]>, Option<Vec<u8>>> = FxHashMap::default();
        for row in 0..batch.num_rows() {
            let sign = match kinds.as_ref().map(|k| RowKind::from_code(k.value(row))) {
                Some(kind) if !kind.is_addition() => -1,
                _ => 1,
            };
            let key = keys.row(row).data();
            if !before.contains_key(key) {
                let previous = self.groups.map.get(key).and_then(|g| g.output.clone());
                before.insert(key.into(), previous);
                touched.push((key.into(), row as u32));
            }
            if !self.groups.map.contains_key(key) {
                let group = Group { rows: 0, calls: self.fresh(), output: None, updated: now };
                self.groups.map.insert(key.into(), group);
            }
            let group = self.groups.map.get_mut(key).expect("invariant: inserted");
            group.rows += sign;
            group.updated = now;
            for (i, call) in spec.calls.iter().enumerate() {
                if filters[i].is_some_and(|f| !f.value(row) || f.is_null(row)) {
                    continue;
                }
                let value = match call.arg {
                    None => None,
                    Some(arg) if batch.column(arg).is_null(row) => continue,
                    Some(arg) => Some(
                        ScalarValue::try_from_array(batch.column(arg), row)
                            .map_err(|e| Error::Operator { operator: spec.name.clone(), message: e.to_string() })?,
                    ),
                };
                let bytes = encoded[i].as_ref().map(|rows| rows.row(row).data().to_vec());
                apply(&mut group.calls[i], value.as_ref().map(|v| (v, bytes)), sign)?;
            }
        }

        // The changelog of the changed groups.
        let mut retracted: Vec<(u32, Vec<u8>, RowKind)> = Vec::new();
        let mut added: Vec<(u32, Vec<u8>, RowKind)> = Vec::new();
        let mut order: Vec<(usize, usize)> = Vec::new();
        for (key, first) in &touched {
            let previous = before.remove(key).flatten();
            let group = &self.groups.map[key];
            if group.rows <= 0 {
                if let Some(previous) = previous {
                    order.push((0, retracted.len()));
                    retracted.push((*first, previous, RowKind::Delete));
                }
                self.groups.map.remove(key);
                continue;
            }
            let results = (0..spec.calls.len())
                .map(|i| self.result(i, &group.calls[i]).and_then(|v| v.to_array().map_err(|e| self.error(e))))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let row = self.outputs.convert_columns(&results).map_err(|e| self.error(e))?.row(0).data().to_vec();
            match previous {
                Some(previous) if previous == row => {}
                Some(previous) => {
                    order.push((0, retracted.len()));
                    retracted.push((*first, previous, RowKind::UpdateBefore));
                    order.push((1, added.len()));
                    added.push((*first, row.clone(), RowKind::UpdateAfter));
                }
                None => {
                    order.push((1, added.len()));
                    added.push((*first, row.clone(), RowKind::Insert));
                }
            }
            self.groups.map.get_mut(key).expect("invariant: kept").output = Some(row);
        }
        if order.is_empty() {
            return Ok(());
        }
        let parser = self.outputs.parser();
        let mut parts: Vec<Vec<ArrayRef>> = Vec::new();
        let mut kinds: Vec<Vec<i8>> = Vec::new();
        for part in [&retracted, &added] {
            let firsts = UInt32Array::from_iter_values(part.iter().map(|(first, _, _)| *first));
            let mut columns: Vec<ArrayRef> = batch.columns()[..spec.keys]
                .iter()
                .map(|key| arrow_select::take::take(key, &firsts, None))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| self.error(e))?;
            columns.extend(
                self.outputs
                    .convert_rows(part.iter().map(|(_, row, _)| parser.parse(row)))
                    .map_err(|e| self.error(e))?,
            );
            parts.push(columns);
            kinds.push(part.iter().map(|(_, _, kind)| kind.code()).collect());
        }
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (old, new) in parts[0].iter().zip(&parts[1]) {
            let arrays = [old.as_ref(), new.as_ref()];
            columns.push(arrow_select::interleave::interleave(&arrays, &order).map_err(|e| self.error(e))?);
        }
        columns.push(Arc::new(Int8Array::from_iter_values(order.iter().map(|(part, i)| kinds[*part][*i]))));
        let options = RecordBatchOptions::new().with_row_count(Some(order.len()));
        let changes =
            RecordBatch::try_new_with_options(self.changelog.clone(), columns, &options).map_err(|e| self.error(e))?;
        out.emit(changes)
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
    use crate::stream::testing::Collected;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, Int8Type};
    use arrow_array::Int64Array;

    /// `SELECT k, MIN(v), MAX(v), AVG(v), COUNT(*) ... GROUP BY k` over updating rows.
    fn spec() -> Arc<RetractAggregateSpec> {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
            Field::new(ROW_KIND, DataType::Int8, false),
        ]));
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("lo", DataType::Int64, true),
            Field::new("hi", DataType::Int64, true),
            Field::new("mean", DataType::Float64, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let call = |function, arg| RetractCall { function, arg, filter: None, distinct: false };
        Arc::new(RetractAggregateSpec {
            name: "retract".into(),
            keys: 1,
            calls: vec![
                call(Retracting::Min, Some(1)),
                call(Retracting::Max, Some(1)),
                call(Retracting::Avg, Some(1)),
                call(Retracting::Count, None),
            ],
            schema,
            input,
            ttl: None,
        })
    }

    fn batch(spec: &RetractAggregateSpec, rows: &[(i64, i64, RowKind)]) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.2.code()))),
        ];
        RecordBatch::try_new(spec.input.clone(), columns).expect("a batch")
    }

    /// The last batch's rows as (kind, key, min, max, avg, count).
    fn rows(batch: &RecordBatch) -> Vec<(&'static str, i64, i64, i64, f64, i64)> {
        let int = |c: usize| batch.column(c).as_primitive::<Int64Type>().clone();
        let (keys, lo, hi, n) = (int(0), int(1), int(2), int(4));
        let mean = batch.column(3).as_primitive::<Float64Type>();
        let kinds = batch.column(5).as_primitive::<Int8Type>();
        (0..batch.num_rows())
            .map(|i| {
                let kind = RowKind::from_code(kinds.value(i)).short();
                (kind, keys.value(i), lo.value(i), hi.value(i), mean.value(i), n.value(i))
            })
            .collect()
    }

    #[test]
    fn values_taken_back_in_any_order_leave_min_max_and_avg_of_the_rest() {
        use RowKind::*;
        let spec = spec();
        let (mut out, collected) = Collected::output();
        let mut aggregate = RetractAggregate::new(spec.clone()).expect("planned");
        aggregate
            .process_batch(batch(&spec, &[(1, 5, Insert), (1, 3, Insert), (1, 9, Insert)]), &mut out)
            .expect("aggregated");
        // The smallest and the largest taken back, not the first added.
        aggregate.process_batch(batch(&spec, &[(1, 3, UpdateBefore), (1, 9, Delete)]), &mut out).expect("aggregated");
        let batches = collected.batches();
        assert_eq!(rows(&batches[0]), vec![("+I", 1, 3, 9, 17.0 / 3.0, 3)]);
        assert_eq!(rows(&batches[1]), vec![("-U", 1, 3, 9, 17.0 / 3.0, 3), ("+U", 1, 5, 5, 5.0, 1)]);
        aggregate.process_batch(batch(&spec, &[(1, 5, Delete)]), &mut out).expect("aggregated");
        let batches = collected.batches();
        assert_eq!(rows(&batches[2]), vec![("-D", 1, 5, 5, 5.0, 1)], "the group's last row taken back deletes it");
        assert!(aggregate.groups.is_empty(), "and forgets it");
    }
}
