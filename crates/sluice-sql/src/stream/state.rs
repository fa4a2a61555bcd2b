//! Operator state: record batches of rows, keys or accumulator states as Arrow IPC in
//! checkpoint entries, and the per-key state of the updating operators with its TTL.

use arrow_array::RecordBatch;
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_types::{Error, Result, Timestamp};

/// A key of a key group, and the group's rows as (batch, row): how the operators
/// that keep batches gather a key group's rows for a checkpoint entry.
pub type KeyGroupRows = (Vec<u8>, Vec<(usize, usize)>);

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

/// What an updating operator keeps per key (a group, a partition): when it was last
/// updated, for `table.exec.state.ttl`.
pub trait Updated {
    /// When the key was last updated (milliseconds of processing time).
    fn updated(&self) -> Timestamp;
}

/// The state of an updating operator: a value per key, keys in arrow-row's encoding,
/// forgotten once not updated for the state TTL (Flink's `table.exec.state.ttl`, in
/// processing time), and written into checkpoints one entry per key.
pub struct KeyedState<V> {
    /// The values, by key.
    pub map: FxHashMap<Box<[u8]>, V>,
    ttl: Option<i64>,
    /// When expired keys were last removed.
    swept: Timestamp,
}

impl<V: Updated + Serialize + DeserializeOwned> KeyedState<V> {
    /// No key yet; keys expire after `ttl` milliseconds without an update.
    pub fn new(ttl: Option<i64>) -> Self {
        KeyedState { map: FxHashMap::default(), ttl, swept: Timestamp::MIN }
    }

    /// How many keys are kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether `value` has expired at `now` (it may not have been removed yet).
    pub fn expired(&self, value: &V, now: Timestamp) -> bool {
        self.ttl.is_some_and(|ttl| value.updated().saturating_add(ttl) <= now)
    }

    /// Removes expired keys, a few times per TTL: until then they are only ignored.
    pub fn sweep(&mut self, now: Timestamp) {
        let Some(ttl) = self.ttl else { return };
        if now.saturating_sub(self.swept) >= (ttl / 4).max(1) {
            self.swept = now;
            self.map.retain(|_, value| value.updated().saturating_add(ttl) > now);
        }
    }

    /// Writes every key's value into a checkpoint.
    pub fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        for (key, value) in &self.map {
            state.keyed(&key.to_vec(), value)?;
        }
        Ok(())
    }

    /// Reads back what `snapshot` wrote, each key also shown to `visit`.
    pub fn restore(&mut self, state: &StateReader, mut visit: impl FnMut(&[u8], &V)) -> Result<()> {
        state.for_each_keyed(|key: Vec<u8>, value: V| {
            visit(&key, &value);
            self.map.insert(key.into(), value);
            Ok(())
        })
    }
}
