//! Filters and projections: DataFusion's physical expressions evaluated on each
//! record batch, with no state.

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::SchemaRef;
use datafusion_physical_expr::PhysicalExpr;
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
}

impl CalcSpec {
    /// Applies the step to one batch.
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let error = |e: &dyn std::fmt::Display| Error::Operator { operator: self.name.clone(), message: e.to_string() };
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
