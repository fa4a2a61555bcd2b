//! Where a checkpointing job starts from: the checkpoint to restore (checked against
//! the job), the next checkpoint id, and the transactions to publish before it runs.

use sluice_checkpoint::{CheckpointConfig, CheckpointStore, DeliveryGuarantee, LoadedCheckpoint};
use sluice_runtime::{JobGraph, RuntimeConfig};
use sluice_types::{Error, Result};
use std::collections::BTreeMap;

/// What a checkpointing job starts from.
pub(crate) struct CheckpointPlan {
    pub config: CheckpointConfig,
    pub store: CheckpointStore,
    pub restore: Option<LoadedCheckpoint>,
    pub first_id: u64,
}

impl CheckpointPlan {
    /// Opens the checkpoint location and finds the checkpoint to restore; `None` if the
    /// job does not checkpoint.
    pub fn new(config: Option<CheckpointConfig>, graph: &JobGraph, runtime: &RuntimeConfig) -> Result<Option<Self>> {
        let Some(config) = config else { return Ok(None) };
        if config.guarantee == DeliveryGuarantee::AtMostOnce {
            return Ok(None);
        }
        config.validate()?;
        let store = config.store()?;
        let restore = match &config.restore {
            Some(path) => Some(read_checkpoint(path)?),
            None => store.latest()?,
        };
        if let Some(loaded) = &restore {
            check_compatible(loaded, graph, runtime)?;
            check_fallback(&config, loaded, graph)?;
        }
        let first_id = store.newest_id()?.max(restore.as_ref().map_or(0, |l| l.manifest.id)) + 1;
        Ok(Some(CheckpointPlan { config, store, restore, first_id }))
    }
}

/// Checks that a checkpoint was taken by this job.
fn check_compatible(loaded: &LoadedCheckpoint, graph: &JobGraph, runtime: &RuntimeConfig) -> Result<()> {
    let manifest = &loaded.manifest;
    if manifest.max_parallelism != runtime.max_parallelism {
        return Err(Error::checkpoint(
            &loaded.location,
            format!(
                "it has {} key groups and the job {}: the maximum parallelism cannot change",
                manifest.max_parallelism, runtime.max_parallelism
            ),
        ));
    }
    let operators = graph.topology.operator_names();
    if manifest.operators != operators {
        return Err(Error::checkpoint(
            &loaded.location,
            format!(
                "it was taken by another job: its operators are {:?}, this job's are {:?}",
                manifest.operators, operators
            ),
        ));
    }
    Ok(())
}

/// Refuses to fall back past a complete checkpoint that is corrupt when the job's
/// output is exactly-once: that checkpoint's transactions may have been published, and
/// replaying from an older one would publish them again. Restoring the older
/// checkpoint explicitly accepts that.
fn check_fallback(config: &CheckpointConfig, loaded: &LoadedCheckpoint, graph: &JobGraph) -> Result<()> {
    let Some((newest, reason)) = loaded.skipped.first() else { return Ok(()) };
    let transactional = !graph.committers().is_empty();
    if config.guarantee != DeliveryGuarantee::ExactlyOnce || !transactional {
        return Ok(());
    }
    Err(Error::checkpoint(
        &config.location,
        format!(
            "checkpoint {newest} is complete but corrupt ({reason}); the newest intact one is {}, and restoring it \
             would publish again the output of the checkpoints after it. To accept duplicates, restore it \
             explicitly (--restore {}, or CheckpointConfig::restore)",
            loaded.manifest.id, loaded.location
        ),
    ))
}

/// Hands each transactional sink's committer what it pre-committed in the restored
/// checkpoint, by operator: it publishes those and aborts the rest.
pub(crate) fn recover_committers(graph: &JobGraph, committables: Option<&BTreeMap<usize, Vec<Vec<u8>>>>) -> Result<()> {
    for (operator, committer) in graph.committers() {
        let pending = committables.and_then(|c| c.get(operator)).map(Vec::as_slice).unwrap_or(&[]);
        committer.recover(pending)?;
    }
    Ok(())
}

/// Reads the checkpoint or savepoint directory `path`. A checkpoint is read from its
/// location (the parent directory), where the earlier files of its on-disk state are.
fn read_checkpoint(path: &str) -> Result<LoadedCheckpoint> {
    let trimmed = path.trim_end_matches('/');
    let loaded = match trimmed.rsplit_once('/') {
        Some((location, dir)) if dir.starts_with("chk-") => CheckpointStore::open(location)?.read(dir)?,
        _ => CheckpointStore::open(trimmed)?.read("")?,
    };
    loaded.ok_or_else(|| Error::checkpoint(path, "no manifest.json here: not a complete checkpoint or savepoint"))
}
