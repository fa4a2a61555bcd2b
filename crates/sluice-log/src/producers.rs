//! What a partition remembers of each producer that gives an id: the sequence numbers
//! of its last batches, so that a retried batch is stored once, and its epochs, so
//! that a newer epoch fences the older ones and a transaction's marker is written once.
//!
//! A transactional producer takes a new epoch for each transaction (as Kafka does since
//! KIP-890): a transaction is one (producer id, epoch), its batches carry it, and its
//! marker closes it. Data of an epoch at or below the last one closed is refused.
//!
//! The states are rebuilt on open from the newest segment's batches, on top of a
//! snapshot written when that segment was started (`<base offset>.producers`).

use crate::batch::{Batch, ProducerInfo, CONTROL, TRANSACTIONAL};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;

/// How many of a producer's latest batches a retry is recognised among (Kafka's
/// `max.in.flight.requests.per.connection` limit for idempotence is the same).
const RECENT: usize = 5;

/// The file name of the snapshot taken when the segment starting at `base_offset` began.
pub(crate) fn snapshot_name(base_offset: u64) -> String {
    format!("{base_offset:020}.producers")
}

/// One batch a producer appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Appended {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: u64,
}

/// What a partition knows of one producer id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ProducerState {
    /// The epoch of its latest data.
    epoch: i16,
    /// Its latest batches in that epoch, oldest first.
    recent: VecDeque<Appended>,
    /// Epochs with transactional data here and no marker yet.
    open: BTreeSet<i16>,
    /// The highest epoch a marker closed: data at or below it is a zombie's.
    closed: Option<i16>,
}

/// What to do with a batch a producer appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Append it.
    Append,
    /// It was stored already, at this offset: do not append it again.
    Duplicate(u64),
    /// A marker for a transaction with nothing open here: it is not needed.
    Unneeded,
}

/// The producers of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerStates {
    by_id: BTreeMap<i64, ProducerState>,
}

fn refused(kind: io::ErrorKind, message: String) -> io::Error {
    io::Error::new(kind, message)
}

impl ProducerStates {
    /// Whether a batch of `count` records from `producer` with `attributes` is appended
    /// or was stored already; an error if it is a fenced producer's or out of order.
    pub(crate) fn check(&self, producer: ProducerInfo, attributes: u16, count: u32) -> io::Result<Check> {
        if producer.id < 0 {
            return Ok(Check::Append);
        }
        let Some(state) = self.by_id.get(&producer.id) else {
            // A marker for a transaction that wrote nothing here needs no place.
            return Ok(match attributes & CONTROL != 0 {
                true => Check::Unneeded,
                false => Check::Append,
            });
        };
        let who = format!("producer {} epoch {}", producer.id, producer.epoch);
        if attributes & CONTROL != 0 {
            // Written once: a second marker (a commit retried after a crash) is dropped.
            return Ok(match state.open.contains(&producer.epoch) {
                true => Check::Append,
                false => Check::Unneeded,
            });
        }
        if state.closed.is_some_and(|closed| producer.epoch <= closed) || producer.epoch < state.epoch {
            let message = format!("{who} is fenced: a newer epoch of it has written, or its transaction ended");
            return Err(refused(io::ErrorKind::PermissionDenied, message));
        }
        let last_sequence = producer.base_sequence.wrapping_add(count as i32 - 1);
        if producer.epoch > state.epoch {
            return match producer.base_sequence {
                0 => Ok(Check::Append),
                first => {
                    let message = format!("{who}: a new epoch must start at sequence 0, not {first}");
                    Err(refused(io::ErrorKind::InvalidInput, message))
                }
            };
        }
        if let Some(stored) =
            state.recent.iter().find(|a| a.first_sequence == producer.base_sequence && a.last_sequence == last_sequence)
        {
            return Ok(Check::Duplicate(stored.base_offset));
        }
        let expected = state.recent.back().map_or(0, |a| a.last_sequence.wrapping_add(1));
        if producer.base_sequence != expected {
            let message = format!("{who}: sequence {} where {expected} is next", producer.base_sequence);
            return Err(refused(io::ErrorKind::InvalidInput, message));
        }
        Ok(Check::Append)
    }

    /// Records a batch stored in the partition.
    pub(crate) fn record(&mut self, batch: &Batch<'_>) {
        let producer = batch.producer();
        if producer.id < 0 {
            return;
        }
        let state = self.by_id.entry(producer.id).or_default();
        if batch.attributes() & CONTROL != 0 {
            state.open.remove(&producer.epoch);
            state.closed = state.closed.max(Some(producer.epoch));
            return;
        }
        if producer.epoch != state.epoch {
            state.epoch = producer.epoch;
            state.recent.clear();
        }
        if batch.attributes() & TRANSACTIONAL != 0 {
            state.open.insert(producer.epoch);
        }
        let last_sequence = producer.base_sequence.wrapping_add(batch.count() as i32 - 1);
        state.recent.push_back(Appended {
            first_sequence: producer.base_sequence,
            last_sequence,
            base_offset: batch.base_offset(),
        });
        if state.recent.len() > RECENT {
            state.recent.pop_front();
        }
    }

    /// The transactions open here: producer id and epoch.
    pub(crate) fn open_transactions(&self) -> impl Iterator<Item = (i64, i16)> + '_ {
        self.by_id.iter().flat_map(|(id, state)| state.open.iter().map(move |epoch| (*id, *epoch)))
    }

    /// The snapshot's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("invariant: encoding into a Vec cannot fail")
    }

    /// A snapshot read back.
    pub(crate) fn decode(bytes: &[u8]) -> Result<ProducerStates, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;

    fn batch(base: u64, count: u32, attributes: u16, producer: ProducerInfo) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        for _ in 0..count {
            builder.push(0, None, b"v", &[]);
        }
        builder.finish(base, attributes, producer)
    }

    fn store(states: &mut ProducerStates, bytes: &[u8]) {
        states.record(&Batch::parse(bytes).unwrap().0);
    }

    #[test]
    fn a_retried_batch_is_recognised_and_a_gap_refused() {
        let mut states = ProducerStates::default();
        let first = ProducerInfo { id: 3, epoch: 0, base_sequence: 0 };
        assert_eq!(states.check(first, 0, 2).unwrap(), Check::Append);
        store(&mut states, &batch(10, 2, 0, first));
        assert_eq!(states.check(first, 0, 2).unwrap(), Check::Duplicate(10));
        let next = ProducerInfo { base_sequence: 2, ..first };
        assert_eq!(states.check(next, 0, 1).unwrap(), Check::Append);
        let gap = ProducerInfo { base_sequence: 4, ..first };
        assert!(states.check(gap, 0, 1).unwrap_err().to_string().contains("sequence 4 where 2 is next"));
        let decoded = ProducerStates::decode(&states.encode()).unwrap();
        assert_eq!(decoded, states);
    }

    #[test]
    fn a_marker_closes_its_epoch_once_and_fences_it() {
        let mut states = ProducerStates::default();
        let txn = ProducerInfo { id: 8, epoch: 4, base_sequence: 0 };
        store(&mut states, &batch(0, 1, TRANSACTIONAL, txn));
        assert_eq!(states.open_transactions().collect::<Vec<_>>(), vec![(8, 4)]);
        assert_eq!(states.check(txn, TRANSACTIONAL | CONTROL, 1).unwrap(), Check::Append);
        store(&mut states, &batch(1, 1, TRANSACTIONAL | CONTROL, txn));
        assert_eq!(states.open_transactions().count(), 0);
        assert_eq!(states.check(txn, TRANSACTIONAL | CONTROL, 1).unwrap(), Check::Unneeded);
        let zombie = ProducerInfo { base_sequence: 1, ..txn };
        assert_eq!(states.check(zombie, TRANSACTIONAL, 1).unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        let newer = ProducerInfo { epoch: 5, ..txn };
        assert_eq!(states.check(newer, TRANSACTIONAL, 1).unwrap(), Check::Append);
    }
}
