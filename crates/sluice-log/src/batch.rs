//! Record batches: the unit a partition appends, checksums and reads back.
//!
//! A batch is a fixed header followed by its records, as Kafka lays them out (the
//! fields are the same; the encoding is Sluice's own, so Kafka's files cannot be read):
//!
//! ```text
//!  0  base offset       u64   offset of the first record
//!  8  length            u32   bytes after this field
//! 12  crc               u32   CRC-32 of every byte after this field
//! 16  magic             u8    1
//! 17  attributes        u16   bit 0: transactional; bit 1: a control batch
//! 19  last offset delta u32   offset of the last record - base offset
//! 23  first timestamp   i64   event time of the first record, ms
//! 31  max timestamp     i64   the highest event time in the batch
//! 39  producer id       i64   -1 without an idempotent producer
//! 47  producer epoch    i16
//! 49  base sequence     i32   the producer's sequence number of the first record
//! 53  record count      u32
//! 57  records           postcard: offset delta, timestamp delta, key, value, headers
//! ```
//!
//! Integers of the header are little-endian. A batch whose length runs past the end of
//! the data, or whose checksum fails, is torn or corrupt: readers stop before it.

use serde::{Deserialize, Serialize};

/// Bytes of a batch's header.
pub const HEADER: usize = 57;
/// Bytes of a batch's prefix that its `length` does not count.
const PREFIX: usize = 12;
const MAGIC: u8 = 1;

/// The batch belongs to a transaction.
pub const TRANSACTIONAL: u16 = 1;
/// The batch is a transaction marker (commit or abort), not data.
pub const CONTROL: u16 = 2;

/// One record as it is read back; it borrows the batch's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its offset in the partition.
    pub offset: u64,
    /// Its event time, in milliseconds since the epoch.
    pub timestamp: i64,
    /// Its key, if it has one.
    pub key: Option<&'a [u8]>,
    /// Its value.
    pub value: &'a [u8],
    /// Its headers, in order.
    pub headers: Vec<(&'a str, &'a [u8])>,
}

/// A record as stored inside a batch.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    offset_delta: u32,
    timestamp_delta: i64,
    #[serde(borrow)]
    key: Option<&'a [u8]>,
    value: &'a [u8],
    #[serde(borrow)]
    headers: Vec<(&'a str, &'a [u8])>,
}

/// Who wrote a batch, for idempotence and transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerInfo {
    /// The producer's id; -1 for none.
    pub id: i64,
    /// Its epoch: a newer one fences the older.
    pub epoch: i16,
    /// The sequence number of the batch's first record.
    pub base_sequence: i32,
}

impl ProducerInfo {
    /// No idempotent producer.
    pub const NONE: ProducerInfo = ProducerInfo { id: -1, epoch: -1, base_sequence: -1 };
}

/// Builds one batch, record by record.
pub struct BatchBuilder {
    bytes: Vec<u8>,
    count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder { bytes: vec![0; HEADER], count: 0, first_timestamp: 0, max_timestamp: i64::MIN }
    }
}

impl BatchBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Its size in bytes so far.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Adds a record.
    pub fn push(&mut self, timestamp: i64, key: Option<&[u8]>, value: &[u8], headers: &[(&str, &[u8])]) {
        self.push_at(self.count, timestamp, key, value, headers);
    }

    /// Adds a record at `offset_delta` from the batch's first offset: compaction keeps
    /// each record's offset, with gaps where records were dropped. Deltas must grow.
    pub fn push_at(
        &mut self,
        offset_delta: u32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) {
        if self.count == 0 {
            self.first_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let stored = Stored {
            offset_delta,
            timestamp_delta: timestamp.wrapping_sub(self.first_timestamp),
            key,
            value,
            headers: headers.to_vec(),
        };
        let bytes = std::mem::take(&mut self.bytes);
        self.bytes = postcard::to_extend(&stored, bytes).expect("invariant: encoding into a Vec cannot fail");
        self.count += 1;
    }

    /// Empties it.
    pub fn clear(&mut self) {
        self.bytes.truncate(HEADER);
        self.count = 0;
        self.max_timestamp = i64::MIN;
    }

    /// Takes back the bytes [`Self::finish`] made, to append the same records again
    /// (with the same sequence numbers) or to empty them once stored.
    pub fn restore(&mut self, finished: Vec<u8>) {
        self.count = u32_at(&finished, 53);
        self.first_timestamp = u64_at(&finished, 23) as i64;
        self.max_timestamp = u64_at(&finished, 31) as i64;
        self.bytes = finished;
    }

    /// A transaction marker: one record whose key says whether it commits.
    pub fn marker(commit: bool, timestamp: i64) -> BatchBuilder {
        let mut builder = BatchBuilder::new();
        builder.push(timestamp, Some(&[0, u8::from(commit)]), &[], &[]);
        builder
    }

    /// The finished batch, its first record at `base_offset`; the builder is emptied.
    pub fn finish(&mut self, base_offset: u64, attributes: u16, producer: ProducerInfo) -> Vec<u8> {
        let last_offset_delta = self.count.saturating_sub(1);
        self.finish_covering(base_offset, last_offset_delta, attributes, producer)
    }

    /// [`Self::finish`] for a batch that covers the offsets `base_offset` to
    /// `base_offset + last_offset_delta`, whatever records it holds (none, even): a
    /// compacted batch takes the place of the one it was made from.
    pub fn finish_covering(
        &mut self,
        base_offset: u64,
        last_offset_delta: u32,
        attributes: u16,
        producer: ProducerInfo,
    ) -> Vec<u8> {
        let mut bytes = std::mem::replace(&mut self.bytes, vec![0; HEADER]);
        let count = std::mem::take(&mut self.count);
        let length = (bytes.len() - PREFIX) as u32;
        bytes[0..8].copy_from_slice(&base_offset.to_le_bytes());
        bytes[8..12].copy_from_slice(&length.to_le_bytes());
        bytes[16] = MAGIC;
        bytes[17..19].copy_from_slice(&attributes.to_le_bytes());
        bytes[19..23].copy_from_slice(&last_offset_delta.to_le_bytes());
        bytes[23..31].copy_from_slice(&self.first_timestamp.to_le_bytes());
        bytes[31..39].copy_from_slice(&std::mem::replace(&mut self.max_timestamp, i64::MIN).to_le_bytes());
        bytes[39..47].copy_from_slice(&producer.id.to_le_bytes());
        bytes[47..49].copy_from_slice(&producer.epoch.to_le_bytes());
        bytes[49..53].copy_from_slice(&producer.base_sequence.to_le_bytes());
        bytes[53..57].copy_from_slice(&count.to_le_bytes());
        let crc = crc32fast::hash(&bytes[16..]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        bytes
    }
}

/// Why bytes are not a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The data ends inside the batch: a write that did not finish.
    Torn,
    /// The batch is complete but wrong: its checksum, magic or records.
    Corrupt(String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Torn => f.write_str("the data ends inside a batch"),
            Invalid::Corrupt(why) => f.write_str(why),
        }
    }
}

/// A batch read from bytes, checked: its header's fields, and its records on demand.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    bytes: &'a [u8],
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("two bytes"))
}
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

impl<'a> Batch<'a> {
    /// The batch at the start of `bytes`, checked, and the bytes after it.
    pub fn parse(bytes: &'a [u8]) -> Result<(Batch<'a>, &'a [u8]), Invalid> {
        if bytes.len() < PREFIX {
            return Err(Invalid::Torn);
        }
        let length = u32_at(bytes, 8) as usize;
        if length < HEADER - PREFIX {
            return Err(Invalid::Corrupt(format!("a batch length of {length} bytes is shorter than its header")));
        }
        let Some(end) = PREFIX.checked_add(length).filter(|&end| end <= bytes.len()) else {
            return Err(Invalid::Torn);
        };
        let (batch, rest) = bytes.split_at(end);
        if crc32fast::hash(&batch[16..]) != u32_at(batch, 12) {
            return Err(Invalid::Corrupt("a batch fails its checksum".to_string()));
        }
        if batch[16] != MAGIC {
            return Err(Invalid::Corrupt(format!("a batch of unknown format {}", batch[16])));
        }
        let parsed = Batch { bytes: batch };
        let (delta, count) = (u64::from(u32_at(batch, 19)), u64::from(parsed.count()));
        if parsed.base_offset().checked_add(delta + 1).is_none() || count > delta + 1 {
            return Err(Invalid::Corrupt(format!("a batch of {count} records over {} offsets", delta + 1)));
        }
        // Each record takes at least one byte per field.
        if count as usize > (batch.len() - HEADER) / 5 + 1 {
            return Err(Invalid::Corrupt(format!("a batch of {count} records in {} bytes", batch.len())));
        }
        Ok((parsed, rest))
    }

    /// Its bytes, header included.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The offset of its first record.
    pub fn base_offset(&self) -> u64 {
        u64_at(self.bytes, 0)
    }

    /// The offset of its last record.
    pub fn last_offset(&self) -> u64 {
        self.base_offset() + u64::from(u32_at(self.bytes, 19))
    }

    /// The offset after its last record.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Its attributes ([`TRANSACTIONAL`], [`CONTROL`]).
    pub fn attributes(&self) -> u16 {
        u16_at(self.bytes, 17)
    }

    /// The highest event time of its records.
    pub fn max_timestamp(&self) -> i64 {
        u64_at(self.bytes, 31) as i64
    }

    /// Who wrote it.
    pub fn producer(&self) -> ProducerInfo {
        ProducerInfo {
            id: u64_at(self.bytes, 39) as i64,
            epoch: u16_at(self.bytes, 47) as i16,
            base_sequence: u32_at(self.bytes, 49) as i32,
        }
    }

    /// How many records it holds.
    pub fn count(&self) -> u32 {
        u32_at(self.bytes, 53)
    }

    /// Whether it is a transaction marker ([`CONTROL`]).
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL != 0
    }

    /// Whether its records belong to a transaction ([`TRANSACTIONAL`], and not a marker).
    pub fn is_transactional_data(&self) -> bool {
        self.attributes() & (TRANSACTIONAL | CONTROL) == TRANSACTIONAL
    }

    /// For a marker, whether it commits its transaction (else it aborts it).
    pub fn commits(&self) -> bool {
        self.records().ok().and_then(|records| records.first().and_then(|r| r.key.map(|k| k.get(1) == Some(&1))))
            == Some(true)
    }

    /// Its records, in order; an error if they do not decode (the checksum passed, so
    /// only a bug or a different writer gets there).
    pub fn records(&self) -> Result<Vec<Record<'a>>, Invalid> {
        let first_timestamp = u64_at(self.bytes, 23) as i64;
        let mut rest = &self.bytes[HEADER..];
        let mut records = Vec::with_capacity(self.count() as usize);
        for _ in 0..self.count() {
            let (stored, tail) = postcard::take_from_bytes::<Stored<'a>>(rest)
                .map_err(|e| Invalid::Corrupt(format!("a record does not decode: {e}")))?;
            let offset = self
                .base_offset()
                .checked_add(u64::from(stored.offset_delta))
                .filter(|&offset| offset <= self.last_offset())
                .ok_or_else(|| Invalid::Corrupt("a record's offset lies outside its batch".to_string()))?;
            records.push(Record {
                offset,
                timestamp: first_timestamp.wrapping_add(stored.timestamp_delta),
                key: stored.key,
                value: stored.value,
                headers: stored.headers,
            });
            rest = tail;
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_batch_reads_back_its_records_and_header() {
        let mut builder = BatchBuilder::new();
        builder.push(1_000, Some(b"k1"), b"v1", &[("trace", b"abc")]);
        builder.push(990, None, b"v2", &[]);
        let producer = ProducerInfo { id: 7, epoch: 2, base_sequence: 40 };
        let bytes = builder.finish(100, TRANSACTIONAL, producer);
        let (batch, rest) = Batch::parse(&bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!((batch.base_offset(), batch.last_offset(), batch.count()), (100, 101, 2));
        assert_eq!((batch.attributes(), batch.max_timestamp(), batch.producer()), (TRANSACTIONAL, 1_000, producer));
        let records = batch.records().unwrap();
        assert_eq!(
            records[0],
            Record { offset: 100, timestamp: 1_000, key: Some(b"k1"), value: b"v1", headers: vec![("trace", b"abc")] }
        );
        assert_eq!(records[1], Record { offset: 101, timestamp: 990, key: None, value: b"v2", headers: vec![] });
        assert!(builder.is_empty(), "finish empties the builder");
    }

    #[test]
    fn a_cut_batch_is_torn_and_a_flipped_bit_is_corrupt() {
        let mut builder = BatchBuilder::new();
        builder.push(5, Some(b"key"), &[9; 300], &[]);
        let bytes = builder.finish(0, 0, ProducerInfo::NONE);
        for cut in 0..bytes.len() {
            assert_eq!(Batch::parse(&bytes[..cut]).unwrap_err(), Invalid::Torn, "cut at {cut}");
        }
        for at in 12..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(matches!(Batch::parse(&flipped), Err(Invalid::Corrupt(_))), "bit flipped at {at}");
        }
    }

    proptest! {
        #[test]
        fn any_records_round_trip(
            records in proptest::collection::vec(
                (any::<i64>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                 proptest::collection::vec(any::<u8>(), 0..200)),
                1..50),
            base in 0u64..u64::MAX / 2,
        ) {
            let mut builder = BatchBuilder::new();
            for (timestamp, key, value) in &records {
                builder.push(*timestamp, key.as_deref(), value, &[]);
            }
            let bytes = builder.finish(base, 0, ProducerInfo::NONE);
            let (batch, _) = Batch::parse(&bytes).unwrap();
            let read = batch.records().unwrap();
            prop_assert_eq!(read.len(), records.len());
            for (i, (record, (timestamp, key, value))) in read.iter().zip(&records).enumerate() {
                prop_assert_eq!(record.offset, base + i as u64);
                prop_assert_eq!(record.timestamp, *timestamp);
                prop_assert_eq!(record.key, key.as_deref());
                prop_assert_eq!(record.value, value.as_slice());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok((batch, _)) = Batch::parse(&bytes) {
                let _ = batch.records();
            }
        }
    }
}
