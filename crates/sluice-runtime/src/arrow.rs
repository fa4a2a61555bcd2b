//! Arrow record batches on the runtime: the batch type of the SQL layer.
//!
//! A `RecordBatch` is a [`Batch`]; [`ColumnPartitioner`] splits one by the hash of a key
//! column, with the same stable hash as the typed API, so an `i64` or string key lands
//! on the same worker whichever layer routes it.

use crate::exchange::{KeyRouter, Partitioner};
use crate::Batch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_schema::DataType;
use sluice_types::{hash_key, Error, Result};

impl Batch for RecordBatch {
    fn len(&self) -> usize {
        self.num_rows()
    }
}

/// Splits record batches by the hash of one key column.
#[derive(Clone, Debug)]
pub struct ColumnPartitioner {
    column: usize,
}

impl ColumnPartitioner {
    /// Partitions by column `column`, which must be an integer or string column.
    pub fn new(column: usize) -> Self {
        ColumnPartitioner { column }
    }

    fn row_hashes(&self, batch: &RecordBatch) -> Result<Vec<u64>> {
        let column = batch.columns().get(self.column).ok_or_else(|| {
            Error::invalid_job(format!(
                "key column {} out of range: the batch has {}",
                self.column,
                batch.num_columns()
            ))
        })?;
        let hashes = match column.data_type() {
            DataType::Int64 => {
                column.as_primitive::<Int64Type>().iter().map(|v| hash_key(&v.unwrap_or_default())).collect()
            }
            DataType::UInt64 => {
                column.as_primitive::<UInt64Type>().iter().map(|v| hash_key(&v.unwrap_or_default())).collect()
            }
            DataType::Int32 => {
                column.as_primitive::<Int32Type>().iter().map(|v| hash_key(&v.unwrap_or_default())).collect()
            }
            DataType::UInt32 => {
                column.as_primitive::<UInt32Type>().iter().map(|v| hash_key(&v.unwrap_or_default())).collect()
            }
            DataType::Utf8 => column.as_string::<i32>().iter().map(|v| hash_key(v.unwrap_or_default())).collect(),
            other => return Err(Error::invalid_job(format!("cannot partition by a column of type {other}"))),
        };
        Ok(hashes)
    }
}

impl Partitioner<RecordBatch> for ColumnPartitioner {
    fn partition(&mut self, batch: RecordBatch, router: &KeyRouter) -> Result<Vec<RecordBatch>> {
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); router.targets()];
        for (row, hash) in self.row_hashes(&batch)?.into_iter().enumerate() {
            rows[router.target(hash)].push(row as u32);
        }
        rows.into_iter()
            .map(|indices| {
                arrow_select::take::take_record_batch(&batch, &UInt32Array::from(indices))
                    .map_err(|e| Error::Operator { operator: "key_by".into(), message: e.to_string() })
            })
            .collect()
    }
}
