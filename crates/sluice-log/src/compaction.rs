//! Log compaction, for changelog topics (`compact`): sealed segments are rewritten to
//! keep, of each key, only its latest value, as Kafka's log cleaner does.
//!
//! - Offsets never change: a rewritten batch covers the same offsets as the one it
//!   replaces, with the records that stay at their own offsets (an emptied batch stays
//!   as a header), so positions, checkpoints and group offsets stay valid.
//! - A record stays if it has no key, or it is the newest visible record of its key in
//!   the whole partition (the newest segment included, which is never rewritten).
//! - A tombstone (a key with an empty value, Kafka's null) stays as the newest of its
//!   key until it is [`TOMBSTONE_RETENTION_MS`] old (by event time), so that readers
//!   behind see the deletion; then it goes too.
//! - Transactions: only segments wholly before the first undecided transaction (the
//!   last stable offset) are rewritten. Aborted records go; committed ones stay as
//!   plain records; markers go (what they decided is plain now).
//! - A segment is replaced whole (a new file renamed over the old, durably); a reader
//!   in it notices the change and finds its place again by offset.

use crate::batch::{Batch, BatchBuilder, ProducerInfo};
use crate::segment::{self, Segment};
use sluice_fs::FileSystem;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;

/// How long a tombstone is kept once it is the newest record of its key (Kafka's
/// `delete.retention.ms`): a day.
pub const TOMBSTONE_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Keys are remembered by a 128-bit hash: no key is held in memory.
fn key_hash(key: &[u8]) -> u128 {
    let mut low = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut low);
    let mut high = std::collections::hash_map::DefaultHasher::new();
    (key, 0x5eed_u32).hash(&mut high);
    (u128::from(high.finish()) << 64) | u128::from(low.finish())
}

/// What one scan of a partition found: the newest offset of each key among the
/// visible records, how each transaction ended, and the last stable offset.
pub(crate) struct Plan {
    newest: HashMap<u128, u64>,
    decisions: HashMap<(i64, i16), bool>,
    /// The first offset of the first transaction not decided yet (or the end).
    pub(crate) stable: u64,
}

fn each_batch(fs: &dyn FileSystem, segment: &Segment, mut visit: impl FnMut(&Batch<'_>)) -> io::Result<()> {
    segment::scan_batches(fs, segment.path(), 0, segment.size(), 1 << 20, |batch| {
        visit(batch);
        true
    })
    .map(|_| ())
}

/// Scans every segment of a partition (twice: transactions' outcomes, then keys).
pub(crate) fn plan(fs: &dyn FileSystem, segments: &[Segment]) -> io::Result<Plan> {
    let mut decisions = HashMap::new();
    let mut first_of: HashMap<(i64, i16), u64> = HashMap::new();
    for segment in segments {
        each_batch(fs, segment, |batch| {
            let producer = batch.producer();
            let transaction = (producer.id, producer.epoch);
            if batch.is_control() {
                decisions.insert(transaction, batch.commits());
            } else if batch.is_transactional_data() {
                first_of.entry(transaction).or_insert(batch.base_offset());
            }
        })?;
    }
    let end = segments.last().map_or(0, Segment::next_offset);
    let stable =
        first_of.iter().filter(|(t, _)| !decisions.contains_key(*t)).map(|(_, first)| *first).min().unwrap_or(end);
    let mut newest = HashMap::new();
    for segment in segments {
        let mut failed = None;
        each_batch(fs, segment, |batch| {
            let producer = batch.producer();
            let visible = !batch.is_control()
                && (!batch.is_transactional_data() || decisions.get(&(producer.id, producer.epoch)) == Some(&true));
            if !visible {
                return;
            }
            match batch.records() {
                Ok(records) => {
                    for record in records {
                        if let Some(key) = record.key {
                            newest.insert(key_hash(key), record.offset);
                        }
                    }
                }
                Err(why) => failed = Some(why),
            }
        })?;
        if let Some(why) = failed {
            let message = format!("{}: {why}", segment.path().display());
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
    }
    Ok(Plan { newest, decisions, stable })
}

/// The bytes of a sealed segment, compacted; `None` if nothing would change.
pub(crate) fn rewrite(bytes: &[u8], plan: &Plan, now: i64) -> io::Result<Option<Vec<u8>>> {
    let invalid = |why: crate::batch::Invalid| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut rest = bytes;
    let mut builder = BatchBuilder::new();
    while !rest.is_empty() {
        let (batch, after) = Batch::parse(rest).map_err(invalid)?;
        rest = after;
        let producer = batch.producer();
        let aborted =
            batch.is_transactional_data() && plan.decisions.get(&(producer.id, producer.epoch)) != Some(&true);
        let records = if batch.is_control() || aborted { Vec::new() } else { batch.records().map_err(invalid)? };
        let before = if batch.is_control() || aborted { usize::MAX } else { records.len() };
        let mut kept = 0;
        for record in &records {
            let stays = match record.key {
                None => true,
                Some(key) => {
                    plan.newest.get(&key_hash(key)) == Some(&record.offset)
                        && !(record.value.is_empty() && record.timestamp < now.saturating_sub(TOMBSTONE_RETENTION_MS))
                }
            };
            if stays {
                let delta = (record.offset - batch.base_offset()) as u32;
                builder.push_at(delta, record.timestamp, record.key, record.value, &record.headers);
                kept += 1;
            }
        }
        let transactional = batch.attributes() != 0;
        if kept == before && !transactional {
            // Nothing to drop: the batch stays as it is, producer and all.
            builder.clear();
            out.extend_from_slice(batch.bytes());
            continue;
        }
        changed = true;
        let last_delta = (batch.last_offset() - batch.base_offset()) as u32;
        out.extend(builder.finish_covering(batch.base_offset(), last_delta, 0, ProducerInfo::NONE));
    }
    Ok(changed.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_apart() {
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_eq!(key_hash(b"a"), key_hash(b"a"));
    }
}
