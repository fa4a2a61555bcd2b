//! Filters and projections: DataFusion's physical expressions evaluated on each
//! record batch, with no state.
//!
//! A calc that filters and projects filters only what its projections read: the
//! columns and nested fields they use are taken from the batch first (which copies
//! nothing), and the filter copies those alone, not every field of a `ROW` column of
//! which one is read (as the Nexmark views read `Bid.auction` of `WHERE Bid IS NOT
//! NULL`).

use crate::changelog::ROW_KIND;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{Schema, SchemaRef};
use datafusion_common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion_physical_expr::expressions::{Column, Literal};
use datafusion_physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use sluice_runtime::{Operator, Output};
use sluice_types::{Error, Result};
use std::sync::Arc;

/// What one calc step does: keep the rows `filter` holds for (all if `None`), then
/// compute the `projections` (`None`: pass the columns on).
#[derive(Debug)]
pub struct CalcSpec {
    /// The operator's name, for errors.
    pub name: String,
    /// The condition rows must meet.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The output columns, and their schema.
    pub projections: Option<(Vec<Arc<dyn PhysicalExpr>>, SchemaRef)>,
    /// Whether the rows are a changelog's: their last column, the row kind, is passed
    /// on after the projections.
    pub row_kind: bool,
    /// With a filter and projections: what the projections read, taken before the
    /// filter ([`CalcSpec::reading_first`]).
    pub reads: Option<Reads>,
}

/// The columns and nested fields the projections of a filtering calc read, and the
/// projections rewritten to read them from a batch of those alone.
#[derive(Debug)]
pub struct Reads {
    reads: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    projections: Vec<Arc<dyn PhysicalExpr>>,
}

/// Whether `expr` is a column or a field of one (`Bid.price`): what costs nothing to
/// take from a batch.
fn is_read(expr: &Arc<dyn PhysicalExpr>) -> bool {
    if expr.is::<Column>() {
        return true;
    }
    match expr.downcast_ref::<ScalarFunctionExpr>() {
        Some(call) if call.name() == "get_field" => {
            matches!(call.args(), [inner, field] if is_read(inner) && field.is::<Literal>())
        }
        _ => false,
    }
}

impl CalcSpec {
    /// The step, its projections set to read what they use before the filter, when it
    /// filters and projects rows of `input`.
    pub fn reading_first(mut self, input: &Schema) -> Result<Self> {
        let error = |e: &dyn std::fmt::Display| Error::invalid_job(format!("{}: {e}", self.name));
        let (Some(_), Some((projections, _))) = (&self.filter, &self.projections) else { return Ok(self) };
        let mut reads: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        let mut rewritten = Vec::with_capacity(projections.len());
        for projection in projections {
            let projection = projection.clone().transform_down(|node| {
                if !is_read(&node) {
                    return Ok(Transformed::no(node));
                }
                let index = match reads.iter().position(|read| read.as_ref() == node.as_ref()) {
                    Some(index) => index,
                    None => {
                        reads.push(node);
                        reads.len() - 1
                    }
                };
                let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(&format!("__read{index}"), index));
                Ok(Transformed::new(column, true, TreeNodeRecursion::Jump))
            });
            rewritten.push(projection.map_err(|e| error(&e))?.data);
        }
        let whole = reads.len() == input.fields().len()
            && reads.iter().enumerate().all(|(i, read)| read.downcast_ref::<Column>().is_some_and(|c| c.index() == i));
        if whole {
            return Ok(self);
        }
        let mut fields = reads
            .iter()
            .enumerate()
            .map(|(i, read)| {
                let field = read.return_field(input)?;
                Ok(arrow_schema::Field::new(format!("__read{i}"), field.data_type().clone(), field.is_nullable()))
            })
            .collect::<datafusion_common::Result<Vec<_>>>()
            .map_err(|e| error(&e))?;
        if self.row_kind {
            // The row kind follows the columns of `input` in the batches.
            let index = input.fields().len();
            reads.push(Arc::new(Column::new(ROW_KIND, index)));
            fields.push(arrow_schema::Field::new(ROW_KIND, arrow_schema::DataType::Int8, false));
        }
        self.reads = Some(Reads { reads, schema: Arc::new(Schema::new(fields)), projections: rewritten });
        Ok(self)
    }

    /// Applies the step to one batch.
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let error = |e: &dyn std::fmt::Display| Error::Operator { operator: self.name.clone(), message: e.to_string() };
        if let Some(reads) = &self.reads {
            return self.read_then_filter(reads, batch);
        }
        let batch = match &self.filter {
            None => batch,
            Some(filter) => {
                let keep =
                    filter.evaluate(&batch).and_then(|v| v.into_array(batch.num_rows())).map_err(|e| error(&e))?;
                let keep = keep
                    .as_any()
                    .downcast_ref::<arrow_array::BooleanArray>()
                    .ok_or_else(|| error(&"the WHERE condition is not a boolean"))?;
                if keep.true_count() == batch.num_rows() {
                    batch
                } else {
                    arrow_select::filter::filter_record_batch(&batch, keep).map_err(|e| error(&e))?
                }
            }
        };
        let Some((projections, schema)) = &self.projections else { return Ok(batch) };
        let mut columns = projections
            .iter()
            .map(|p| p.evaluate(&batch).and_then(|v| v.into_array(batch.num_rows())))
            .collect::<datafusion_common::Result<Vec<ArrayRef>>>()
            .map_err(|e| error(&e))?;
        if self.row_kind {
            columns.push(batch.column(batch.num_columns() - 1).clone());
        }
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| error(&e))
    }
}

impl CalcSpec {
    /// What the projections read taken from `batch`, filtered, then projected.
    fn read_then_filter(&self, reads: &Reads, batch: RecordBatch) -> Result<RecordBatch> {
        let error = |e: &dyn std::fmt::Display| Error::Operator { operator: self.name.clone(), message: e.to_string() };
        let rows = batch.num_rows();
        let (Some(filter), Some((_, schema))) = (&self.filter, &self.projections) else {
            return Err(error(&"a calc reading first without a filter and projections"));
        };
        let keep = filter.evaluate(&batch).and_then(|v| v.into_array(rows)).map_err(|e| error(&e))?;
        let keep = keep
            .as_any()
            .downcast_ref::<arrow_array::BooleanArray>()
            .ok_or_else(|| error(&"the WHERE condition is not a boolean"))?;
        let columns = reads
            .reads
            .iter()
            .map(|read| read.evaluate(&batch).and_then(|v| v.into_array(rows)))
            .collect::<datafusion_common::Result<Vec<ArrayRef>>>()
            .map_err(|e| error(&e))?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let mut read =
            RecordBatch::try_new_with_options(reads.schema.clone(), columns, &options).map_err(|e| error(&e))?;
        if keep.true_count() != rows {
            read = arrow_select::filter::filter_record_batch(&read, keep).map_err(|e| error(&e))?;
        }
        let mut columns = reads
            .projections
            .iter()
            .map(|p| p.evaluate(&read).and_then(|v| v.into_array(read.num_rows())))
            .collect::<datafusion_common::Result<Vec<ArrayRef>>>()
            .map_err(|e| error(&e))?;
        if self.row_kind {
            columns.push(read.column(read.num_columns() - 1).clone());
        }
        let options = RecordBatchOptions::new().with_row_count(Some(read.num_rows()));
        RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| error(&e))
    }
}

/// One worker's instance of a calc step.
pub struct Calc {
    pub(crate) spec: Arc<CalcSpec>,
}

impl Operator for Calc {
    type In = RecordBatch;
    type Out = RecordBatch;

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        let batch = self.spec.apply(batch)?;
        if batch.num_rows() > 0 {
            out.emit(batch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, Int64Array, StringArray, StructArray};
    use arrow_schema::{DataType, Field, Fields};
    use datafusion_common::DFSchema;
    use datafusion_expr::execution_props::ExecutionProps;
    use datafusion_expr::{col, lit, Expr};
    use datafusion_functions::core::expr_fn::get_field;
    use datafusion_physical_expr::create_physical_expr;

    /// Rows `(s: ROW<a BIGINT, b STRING>, keep BOOLEAN)`, `s` NULL in every third.
    fn batch(rows: usize) -> RecordBatch {
        let fields = Fields::from(vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Utf8, true)]);
        let a = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 10));
        let b = StringArray::from_iter_values((0..rows).map(|i| format!("row {i}")));
        let nulls = arrow_buffer::NullBuffer::from_iter((0..rows).map(|i| i % 3 != 0));
        let s = StructArray::new(fields.clone(), vec![Arc::new(a), Arc::new(b)], Some(nulls));
        let keep = BooleanArray::from_iter((0..rows).map(|i| Some(i % 2 == 0)));
        let schema = Schema::new(vec![
            Field::new("s", DataType::Struct(fields), true),
            Field::new("keep", DataType::Boolean, false),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(s), Arc::new(keep)]).expect("a batch")
    }

    /// `SELECT s.a + 1, s.b, s.a FROM t WHERE keep AND s IS NOT NULL`.
    fn spec(input: &Schema) -> CalcSpec {
        let schema = DFSchema::try_from(input.clone()).expect("a schema");
        let physical = |e: &Expr| {
            create_physical_expr(e, &schema, &ExecutionProps::new(), &Default::default()).expect("an expression")
        };
        let exprs = [get_field(col("s"), "a") + lit(1i64), get_field(col("s"), "b"), get_field(col("s"), "a")];
        let output = Schema::new(vec![
            Field::new("a1", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("a", DataType::Int64, true),
        ]);
        CalcSpec {
            name: "test".into(),
            filter: Some(physical(&col("keep").and(col("s").is_not_null()))),
            projections: Some((exprs.iter().map(physical).collect(), Arc::new(output))),
            row_kind: false,
            reads: None,
        }
    }

    #[test]
    fn a_filter_copies_only_what_the_projections_read_and_gives_the_same_rows() {
        let batch = batch(100);
        let plain = spec(&batch.schema());
        let reading = spec(&batch.schema()).reading_first(&batch.schema()).expect("planned");
        let reads = reading.reads.as_ref().expect("the projections read fields");
        // `s.a` once, though read twice, and `s.b`: not the whole of `s`.
        assert_eq!(reads.reads.len(), 2);
        let (expected, got) = (plain.apply(batch.clone()).expect("plain"), reading.apply(batch).expect("reading"));
        assert!(expected.num_rows() > 0 && expected.num_rows() < 100, "some rows filtered out");
        assert_eq!(got, expected);
    }
}
