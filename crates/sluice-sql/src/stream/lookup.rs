//! Processing-time temporal joins against a bounded table (Flink's lookup join):
//! `JOIN side FOR SYSTEM_TIME AS OF b.p_time AS s ON b.k = s.key`, where `p_time` is a
//! `PROCTIME()` column. Each row joins the table as it is when the row is processed;
//! the table (a file) is read once, when the job starts, and shared by every worker,
//! indexed by the join key's arrow-row encoding. The join is chained where the probing
//! rows are: nothing is exchanged, and it keeps no state (the table is read again on
//! restart).

use crate::connectors::ScanSource;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow_row::{RowConverter, SortField};
use arrow_schema::SchemaRef;
use datafusion_physical_expr::PhysicalExpr;
use rustc_hash::FxHashMap;
use sluice_runtime::{Operator, Output, SourcePoll};
use sluice_types::{Error, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a lookup join computes.
pub struct LookupSpec {
    /// The operator's name.
    pub name: String,
    /// The table joined.
    pub table: String,
    /// What reads it.
    pub source: Arc<dyn ScanSource>,
    /// The columns read.
    pub right: SchemaRef,
    /// The join key of the probing rows.
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The join key of the table's rows.
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Which of the table's rows are joined (conditions on its columns alone).
    pub filters: Vec<Arc<dyn PhysicalExpr>>,
    /// Whether a row without a match is kept, the table's columns NULL (`LEFT JOIN`).
    pub left_outer: bool,
    /// The output: the probing rows' columns, then the table's.
    pub schema: SchemaRef,
    /// The table as read, once the first worker has read it.
    loaded: Mutex<Option<Arc<Table>>>,
}

impl std::fmt::Debug for LookupSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupSpec").field("name", &self.name).field("table", &self.table).finish()
    }
}

/// The rows of the table, indexed by key.
struct Table {
    rows: RecordBatch,
    converter: RowConverter,
    index: FxHashMap<Box<[u8]>, Vec<u32>>,
}

/// How long reading the table may wait on a source with nothing to read: a table
/// that never ends (a stream) cannot be looked up.
const PATIENCE: Duration = Duration::from_secs(30);

impl LookupSpec {
    /// A lookup join of `table`, whose columns `right` `source` reads.
    pub fn new(table: String, source: Arc<dyn ScanSource>, right: SchemaRef, schema: SchemaRef) -> Self {
        LookupSpec {
            name: format!("lookup join of {table}"),
            table,
            source,
            right,
            left_keys: Vec::new(),
            right_keys: Vec::new(),
            filters: Vec::new(),
            left_outer: false,
            schema,
            loaded: Mutex::new(None),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.name.clone(), message: e.to_string() }
    }

    /// The table, read the first time.
    fn table(&self) -> Result<Arc<Table>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(table) = loaded.as_ref() {
            return Ok(table.clone());
        }
        let table = Arc::new(self.read()?);
        *loaded = Some(table.clone());
        Ok(table)
    }

    fn read(&self) -> Result<Table> {
        let mut reader = self.source.reader(0, 1)?;
        let mut batches = Vec::new();
        let mut waiting: Option<Instant> = None;
        loop {
            match reader.poll(8192)? {
                SourcePoll::Batch(batch) => {
                    waiting = None;
                    batches.push(batch);
                }
                SourcePoll::Finished => break,
                SourcePoll::Pending | SourcePoll::Idle => {
                    if waiting.get_or_insert_with(Instant::now).elapsed() > PATIENCE {
                        return Err(self.error(format!(
                            "table {} did not end: a table looked up (FOR SYSTEM_TIME AS OF a PROCTIME()) is read \
                             whole when the job starts, so it must be bounded (a file)",
                            self.table
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let mut rows = arrow_select::concat::concat_batches(&self.right, &batches).map_err(|e| self.error(e))?;
        for filter in &self.filters {
            let keep = filter.evaluate(&rows).and_then(|v| v.into_array(rows.num_rows())).map_err(|e| self.error(e))?;
            let keep = keep
                .as_any()
                .downcast_ref::<arrow_array::BooleanArray>()
                .ok_or_else(|| self.error("the condition is not a boolean"))?;
            rows = arrow_select::filter::filter_record_batch(&rows, keep).map_err(|e| self.error(e))?;
        }
        let keys = evaluate(&self.right_keys, &rows).map_err(|e| self.error(e))?;
        let converter = key_converter(&keys)?;
        let encoded = converter.convert_columns(&keys).map_err(|e| self.error(e))?;
        let mut index: FxHashMap<Box<[u8]>, Vec<u32>> = FxHashMap::default();
        for (row, key) in encoded.iter().enumerate() {
            if keys.iter().all(|k| k.is_valid(row)) {
                index.entry(Box::from(key.data())).or_default().push(row as u32);
            }
        }
        tracing::info!(operator = %self.name, rows = rows.num_rows(), keys = index.len(), "lookup table read");
        Ok(Table { rows, converter, index })
    }
}

fn evaluate(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> datafusion_common::Result<Vec<ArrayRef>> {
    exprs.iter().map(|e| e.evaluate(batch).and_then(|v| v.into_array(batch.num_rows()))).collect()
}

fn key_converter(keys: &[ArrayRef]) -> Result<RowConverter> {
    RowConverter::new(keys.iter().map(|k| SortField::new(k.data_type().clone())).collect())
        .map_err(|e| Error::invalid_job(format!("cannot join on these keys: {e}")))
}

/// One worker's lookup join.
pub struct LookupJoin {
    spec: Arc<LookupSpec>,
    table: Arc<Table>,
}

impl LookupJoin {
    /// The join, the table read if no worker has yet.
    pub fn new(spec: Arc<LookupSpec>) -> Result<Self> {
        Ok(LookupJoin { table: spec.table()?, spec })
    }
}

impl Operator for LookupJoin {
    type In = RecordBatch;
    type Out = RecordBatch;

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output<RecordBatch>) -> Result<()> {
        let spec = &self.spec;
        let keys = evaluate(&spec.left_keys, &batch).map_err(|e| spec.error(e))?;
        let encoded = self.table.converter.convert_columns(&keys).map_err(|e| spec.error(e))?;
        let mut left: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut right: Vec<Option<u32>> = Vec::with_capacity(batch.num_rows());
        for (row, key) in encoded.iter().enumerate() {
            let matches = match keys.iter().all(|k| k.is_valid(row)) {
                true => self.table.index.get(key.data()),
                false => None,
            };
            match matches {
                Some(rows) => {
                    for &r in rows {
                        left.push(row as u32);
                        right.push(Some(r));
                    }
                }
                None if spec.left_outer => {
                    left.push(row as u32);
                    right.push(None);
                }
                None => {}
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        let (left, right) = (UInt32Array::from(left), UInt32Array::from(right));
        let take = |columns: &[ArrayRef], indices: &UInt32Array| -> Result<Vec<ArrayRef>> {
            columns
                .iter()
                .map(|c| arrow_select::take::take(c.as_ref(), indices, None).map_err(|e| spec.error(e)))
                .collect()
        };
        let mut columns = take(batch.columns(), &left)?;
        columns.extend(take(self.table.rows.columns(), &right)?);
        let options = RecordBatchOptions::new().with_row_count(Some(left.len()));
        out.emit(RecordBatch::try_new_with_options(spec.schema.clone(), columns, &options).map_err(|e| spec.error(e))?)
    }
}
