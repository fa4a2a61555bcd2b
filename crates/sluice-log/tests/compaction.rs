//! Compaction of a changelog topic: the table a reader builds from it (the newest value
//! of each key, a tombstone deleting it) is the same before and after, offsets do not
//! change, aborted records go, and a reader in a segment being compacted reads on.

use proptest::prelude::*;
use sluice_log::{
    Consumer, ConsumerConfig, Isolation, Log, LogOptions, PartitionReader, Producer, ProducerConfig, ProducerRecord,
    TopicConfig,
};
use std::collections::BTreeMap;
use std::path::Path;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock after 1970").as_millis() as i64
}

/// A log whose segments roll every 512 bytes, with the compacted topic `table`.
fn compacted_log(dir: &Path) -> Log {
    let options = LogOptions { segment_bytes: 512, ..LogOptions::default() };
    let log = Log::open_with(sluice_fs::local(), dir, options).expect("log");
    log.create_topic("table", &TopicConfig { compact: true, ..TopicConfig::default() }).expect("topic");
    log
}

/// Every committed record of `table`: offset, key, value.
fn records(log: &Log) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let mut consumer = Consumer::subscribe(log, &["table"], &ConsumerConfig::default()).expect("consumer");
    let mut out = Vec::new();
    while let Some(fetched) = consumer.poll(1 << 20).expect("poll") {
        for record in fetched.records().expect("whole batches") {
            out.push((record.offset, record.key.unwrap_or_default().to_vec(), record.value.to_vec()));
        }
    }
    out
}

/// The table the records make: the newest value of each key; an empty value deletes.
fn table(records: &[(u64, Vec<u8>, Vec<u8>)]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut table = BTreeMap::new();
    for (_, key, value) in records {
        match value.is_empty() {
            true => table.remove(key),
            false => table.insert(key.clone(), value.clone()),
        };
    }
    table
}

/// One write: a key, its value (none: a tombstone), and a transaction that commits or
/// aborts (or none).
type Write = (u8, Option<u16>, Option<bool>);

fn write_all(log: &Log, writes: &[Write], timestamp: i64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut plain =
        Producer::new(log, ProducerConfig { batch_bytes: 1, ..ProducerConfig::default() }).expect("producer");
    let config =
        ProducerConfig { transactional_id: Some("writer".into()), batch_bytes: 1, ..ProducerConfig::default() };
    let mut transactional = Producer::new(log, config).expect("transactional producer");
    let mut model = BTreeMap::new();
    for (key, value, transaction) in writes {
        let key = vec![b'k', *key];
        let value = value.map(|v| format!("value {v}").into_bytes()).unwrap_or_default();
        let record = ProducerRecord {
            topic: "table",
            partition: Some(0),
            key: Some(&key),
            value: &value,
            headers: &[],
            timestamp,
        };
        match transaction {
            None => {
                plain.send(&record).expect("send");
                plain.flush().expect("flush");
            }
            Some(commit) => {
                transactional.begin().expect("begin");
                transactional.send(&record).expect("send");
                transactional.flush().expect("flush");
                match commit {
                    true => transactional.commit().expect("commit"),
                    false => transactional.abort().expect("abort"),
                }
            }
        }
        if transaction.is_none_or(|commit| commit) {
            match value.is_empty() {
                true => model.remove(&key),
                false => model.insert(key, value),
            };
        }
    }
    model
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn compaction_keeps_the_table_and_the_offsets(
        writes in proptest::collection::vec((0u8..6, proptest::option::weighted(0.8, 0u16..1000), proptest::option::weighted(0.3, proptest::bool::weighted(0.7))), 20..120),
        old_tombstones in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("dir");
        let log = compacted_log(dir.path());
        // Records an hour old keep their tombstones; a week old, the tombstones go.
        let timestamp = if old_tombstones { now() - 7 * 24 * 3600 * 1000 } else { now() - 3600 * 1000 };
        let model = write_all(&log, &writes, timestamp);
        let before = records(&log);
        prop_assert_eq!(table(&before), model.clone(), "the table the log makes");
        let rewritten = sluice_log::partition_compact(&log, "table", 0, now()).expect("compaction");
        let after = records(&log);
        prop_assert_eq!(table(&after), model, "the same table after compaction ({} segments rewritten)", rewritten);
        // Every record that stays is where it was, with what it had.
        for record in &after {
            prop_assert!(before.contains(record), "{:?} was not there before", record);
        }
        // Before the newest segment (never compacted), a key's older records are gone.
        let newest_base = std::fs::read_dir(dir.path().join("topics/table/0"))
            .expect("partition directory")
            .filter_map(|entry| sluice_log::segment::parse_file_name(&entry.expect("entry").file_name().to_string_lossy()))
            .max()
            .expect("a segment");
        for (i, (offset, key, _)) in after.iter().enumerate() {
            let superseded = after[i + 1..].iter().any(|(_, later, _)| later == key);
            prop_assert!(!superseded || *offset >= newest_base, "offset {} of a key written again stayed", offset);
        }
    }
}

#[test]
fn a_reader_in_a_segment_being_compacted_reads_on_without_repeating_or_failing() {
    let dir = tempfile::tempdir().expect("dir");
    let log = compacted_log(dir.path());
    let writes: Vec<Write> = (0..200).map(|i| ((i % 3) as u8, Some(i as u16), None)).collect();
    write_all(&log, &writes[..100], now());
    let mut reader =
        PartitionReader::with_isolation(log.fs().clone(), &dir.path().join("topics/table/0"), Isolation::ReadCommitted)
            .expect("reader");
    // Read a little: a batch or a few (compaction at each roll may have emptied some).
    let mut offsets: Vec<u64> = Vec::new();
    while offsets.is_empty() {
        let (from, bytes) = reader.poll(200).expect("a first poll");
        assert!(!bytes.is_empty(), "the reader finds records");
        offsets.extend(sluice_log::records_from(&bytes, from).expect("records").iter().map(|r| r.offset));
    }
    write_all(&log, &writes[100..], now());
    let rewritten = sluice_log::partition_compact(&log, "table", 0, now()).expect("compaction");
    assert!(rewritten > 0, "the segment the reader is in was rewritten");
    loop {
        let (from, bytes) = reader.poll(1 << 16).expect("the reader goes on");
        if bytes.is_empty() {
            break;
        }
        offsets.extend(sluice_log::records_from(&bytes, from).expect("records").iter().map(|r| r.offset));
    }
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets only go forward: {offsets:?}");
    assert_eq!(offsets.last(), Some(&199), "and reach the end");
}
