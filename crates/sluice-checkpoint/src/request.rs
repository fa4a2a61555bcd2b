//! Savepoints asked for from outside the job's process: `sluice savepoint <location>`
//! writes a request object into the job's checkpoint location; the job's coordinator
//! looks for it between checkpoints, takes the savepoint, and writes the reply next to
//! it. Through the location rather than a socket, so that it works wherever the job
//! runs and whatever the storage.

use crate::Storage;
use serde::{Deserialize, Serialize};
use sluice_types::{Error, Result};
use std::time::{Duration, Instant};

/// The request object's name in a checkpoint location.
pub const REQUEST: &str = "savepoint-request.json";
/// The reply object's name in a checkpoint location.
pub const REPLY: &str = "savepoint-reply.json";

/// A savepoint request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointRequest {
    /// Identifies the request, so that its reply is not mistaken for an older one.
    pub id: String,
}

/// The reply to a [`SavepointRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointReply {
    /// The request answered.
    pub id: String,
    /// The savepoint's location, or why none was taken.
    pub outcome: std::result::Result<String, String>,
}

/// Asks the job checkpointing into `location` for a savepoint and waits up to
/// `timeout` for it; returns the savepoint's location.
pub fn request_savepoint(location: &str, timeout: Duration) -> Result<String> {
    let storage = Storage::open(location)?;
    let id = format!("{}-{}", std::process::id(), sluice_runtime::now_millis());
    let request = serde_json::to_vec(&SavepointRequest { id: id.clone() })
        .map_err(|e| Error::checkpoint(location, e.to_string()))?;
    storage.put(REQUEST, request)?;
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Some(bytes) = storage.get(REPLY)? {
            if let Ok(reply) = serde_json::from_slice::<SavepointReply>(&bytes) {
                if reply.id == id {
                    return reply.outcome.map_err(|message| Error::checkpoint(location, message));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error::checkpoint(
        location,
        format!("no savepoint within {timeout:?}: is a job with checkpoints in this location running?"),
    ))
}

/// Takes a pending request out of `storage`, if there is one.
pub(crate) fn take_request(storage: &Storage) -> Result<Option<SavepointRequest>> {
    let Some(bytes) = storage.get(REQUEST)? else { return Ok(None) };
    storage.delete(REQUEST)?;
    Ok(serde_json::from_slice(&bytes).ok())
}

/// Writes the reply to `request`.
pub(crate) fn reply(storage: &Storage, request: &SavepointRequest, outcome: &Result<String>) -> Result<()> {
    let reply = SavepointReply {
        id: request.id.clone(),
        outcome: match outcome {
            Ok(location) => Ok(location.clone()),
            Err(error) => Err(error.to_string()),
        },
    };
    let bytes = serde_json::to_vec(&reply).map_err(|e| Error::checkpoint(storage.location(), e.to_string()))?;
    storage.put(REPLY, bytes)
}
