//! The manifest: the file that makes a checkpoint complete.
//!
//! A checkpoint directory holds one state file per participant and, written last, a
//! manifest listing them with their sizes and CRC-32 checksums. No manifest means the
//! checkpoint is incomplete and is never used. The manifest carries a checksum of its
//! own body, so a truncated or altered manifest is detected too.

use serde::{Deserialize, Serialize};
use sluice_runtime::checkpoint::{BarrierKind, CheckpointId, ParticipantId};
use sluice_types::{Error, Result};

/// The manifest's file name inside a checkpoint directory.
pub const MANIFEST: &str = "manifest.json";

/// The layout version this code writes and reads.
const VERSION: u32 = 2;

/// One state file of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Whose state it is.
    pub participant: ParticipantId,
    /// Its path, relative to the checkpoint directory.
    pub path: String,
    /// Its length in bytes.
    pub size: u64,
    /// CRC-32 of its bytes.
    pub crc32: u32,
    /// For the changes of an on-disk store: the earlier files this one applies on top
    /// of, oldest (the base) first, by path from the checkpoint location.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainFile>,
}

/// An earlier state file a state is rebuilt from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainFile {
    /// Its path from the checkpoint location, e.g. `chk-0000000040/o7-w1.state`.
    pub path: String,
    /// Its length in bytes.
    pub size: u64,
    /// CRC-32 of its bytes.
    pub crc32: u32,
}

/// What a complete checkpoint contains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The layout version.
    pub version: u32,
    /// The checkpoint id.
    pub id: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: BarrierKind,
    /// The job's parallelism when it was taken.
    pub parallelism: usize,
    /// The number of key groups; a job restores only with the same number.
    pub max_parallelism: u16,
    /// The job's operators, by graph index: a restore checks the job is the same.
    pub operators: Vec<String>,
    /// When it completed, in milliseconds since the epoch.
    pub completed_at: i64,
    /// Whether the job had finished: every source exhausted, every result committed.
    pub finished: bool,
    /// The state files.
    pub files: Vec<StateFile>,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    body: Manifest,
    crc32: u32,
}

impl Manifest {
    /// A manifest of the current layout version.
    pub fn new(id: CheckpointId, kind: BarrierKind, parallelism: usize, max_parallelism: u16) -> Self {
        Manifest {
            version: VERSION,
            id,
            kind,
            parallelism,
            max_parallelism,
            operators: Vec::new(),
            completed_at: 0,
            finished: false,
            files: Vec::new(),
        }
    }

    /// The manifest as stored: its body and the body's checksum.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self).map_err(|e| Error::checkpoint("manifest", e.to_string()))?;
        let sealed = Sealed { body: self.clone(), crc32: crc32fast::hash(&body) };
        serde_json::to_vec_pretty(&sealed).map_err(|e| Error::checkpoint("manifest", e.to_string()))
    }

    /// Reads a stored manifest, checking its checksum and version.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Self> {
        let sealed: Sealed = serde_json::from_slice(bytes)
            .map_err(|e| Error::checkpoint(location, format!("unreadable manifest (truncated?): {e}")))?;
        let body = serde_json::to_vec(&sealed.body).map_err(|e| Error::checkpoint(location, e.to_string()))?;
        if crc32fast::hash(&body) != sealed.crc32 {
            return Err(Error::checkpoint(location, "manifest checksum mismatch"));
        }
        if sealed.body.version != VERSION {
            return Err(Error::checkpoint(
                location,
                format!("manifest version {} is not supported (expected {VERSION})", sealed.body.version),
            ));
        }
        Ok(sealed.body)
    }
}

/// The directory of checkpoint `id` under a checkpoint location.
pub fn checkpoint_dir(id: CheckpointId) -> String {
    format!("chk-{id:010}")
}

/// The checkpoint id of a directory name, if it is a checkpoint directory.
pub fn parse_checkpoint_dir(name: &str) -> Option<CheckpointId> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// The directory of the savepoints under a checkpoint location.
pub const SAVEPOINTS: &str = "savepoints";

/// The directory of savepoint `id` under a checkpoint location.
pub fn savepoint_dir(id: CheckpointId) -> String {
    format!("{SAVEPOINTS}/sp-{id:010}")
}

/// The savepoint id of a directory name under [`SAVEPOINTS`], if it is one.
pub fn parse_savepoint_dir(name: &str) -> Option<CheckpointId> {
    name.strip_prefix("sp-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new(7, BarrierKind::Checkpoint, 2, 128);
        m.operators = vec!["source".into(), "window".into()];
        m.files.push(StateFile {
            participant: ParticipantId { operator: 1, worker: 0 },
            path: "o1-w0.state".into(),
            size: 10,
            crc32: 42,
            chain: Vec::new(),
        });
        m
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode().unwrap(), "x").unwrap(), m);
    }

    #[test]
    fn truncated_or_altered_manifests_are_rejected() {
        let bytes = sample().encode().unwrap();
        assert!(Manifest::decode(&bytes[..bytes.len() / 2], "x").is_err());
        let altered = String::from_utf8(bytes).unwrap().replace("\"size\": 10", "\"size\": 11");
        let error = Manifest::decode(altered.as_bytes(), "x").unwrap_err().to_string();
        assert!(error.contains("checksum"), "{error}");
    }

    #[test]
    fn directory_names() {
        assert_eq!(checkpoint_dir(42), "chk-0000000042");
        assert_eq!(parse_checkpoint_dir("chk-0000000042"), Some(42));
        assert_eq!(parse_checkpoint_dir("savepoints"), None);
    }
}
