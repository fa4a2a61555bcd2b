//! Operator state as Arrow IPC: how the SQL operators write record batches of rows,
//! keys or accumulator states into checkpoint entries, and read them back.

use arrow_array::RecordBatch;
use sluice_types::{Error, Result};

/// `batch` as an Arrow IPC stream.
pub fn ipc_encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let error = |e: arrow_schema::ArrowError| Error::internal(format!("state encoding: {e}"));
    let mut bytes = Vec::new();
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(&mut bytes, batch.schema_ref()).map_err(error)?;
    writer.write(batch).map_err(error)?;
    writer.finish().map_err(error)?;
    drop(writer);
    Ok(bytes)
}

/// The batch of an Arrow IPC stream that `operator` wrote.
pub fn ipc_decode(bytes: &[u8], operator: &str) -> Result<RecordBatch> {
    let error = |e: arrow_schema::ArrowError| Error::checkpoint(operator, format!("state decoding: {e}"));
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(error)?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(error)?;
    let schema = batches.first().map(|b| b.schema()).ok_or_else(|| Error::checkpoint(operator, "empty state"))?;
    arrow_select::concat::concat_batches(&schema, &batches).map_err(error)
}
