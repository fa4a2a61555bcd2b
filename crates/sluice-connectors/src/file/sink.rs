//! Writes records as JSON lines to one file, shared by all workers.

use serde::Serialize;
use sluice_api::{Sink, SinkWriter};
use sluice_types::{Error, Record, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A sink writing each record's value as one JSON line. Workers serialize their batches
/// on their own and append whole batches under a short lock.
pub struct JsonLinesSink<T> {
    path: PathBuf,
    file: Arc<Mutex<BufWriter<File>>>,
    _type: PhantomData<fn(T)>,
}

impl<T> JsonLinesSink<T> {
    /// Creates (or truncates) `path`.
    pub fn new(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(JsonLinesSink {
            path,
            file: Arc::new(Mutex::new(BufWriter::with_capacity(1 << 20, file))),
            _type: PhantomData,
        })
    }
}

impl<T: Serialize + Send + 'static> Sink<T> for JsonLinesSink<T> {
    type Writer = JsonLinesWriter<T>;

    fn name(&self) -> String {
        "json-lines-sink".to_string()
    }

    fn writer(&self, _worker: usize, _parallelism: usize) -> Result<JsonLinesWriter<T>> {
        Ok(JsonLinesWriter { path: self.path.clone(), file: self.file.clone(), buffer: Vec::new(), _type: PhantomData })
    }
}

/// One worker's writer of a [`JsonLinesSink`].
pub struct JsonLinesWriter<T> {
    path: PathBuf,
    file: Arc<Mutex<BufWriter<File>>>,
    buffer: Vec<u8>,
    _type: PhantomData<fn(T)>,
}

impl<T> JsonLinesWriter<T> {
    fn io(&self, error: std::io::Error) -> Error {
        Error::io(self.path.display().to_string(), error)
    }
}

pub(crate) fn encode<T: Serialize>(batch: &[Record<T>], buffer: &mut Vec<u8>) -> Result<()> {
    for record in batch {
        serde_json::to_writer(&mut *buffer, &record.value)
            .map_err(|e| Error::Operator { operator: "json-lines-sink".into(), message: e.to_string() })?;
        buffer.push(b'\n');
    }
    Ok(())
}

impl<T: Serialize + Send + 'static> SinkWriter<T> for JsonLinesWriter<T> {
    fn write_batch(&mut self, batch: Vec<Record<T>>) -> Result<()> {
        self.buffer.clear();
        encode(&batch, &mut self.buffer)?;
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(&self.buffer).map_err(|e| self.io(e))
    }

    fn close(&mut self) -> Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        file.flush().map_err(|e| self.io(e))
    }
}
