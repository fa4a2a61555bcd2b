//! Producers and consumers over a log: idempotent retries, transactions seen only once
//! committed, recovery of a crashed transactional producer, consumer groups, and the
//! sealed segments' index files.

use proptest::prelude::*;
use sluice_log::{
    BatchBuilder, Consumer, ConsumerConfig, Isolation, Log, OffsetReset, Partition, PartitionConfig, Producer,
    ProducerConfig, ProducerInfo, ProducerRecord, TopicConfig,
};
use std::collections::BTreeMap;
use std::path::Path;

fn log_in(dir: &Path) -> Log {
    Log::open(sluice_fs::local(), dir).expect("the log opens")
}

fn record<'a>(topic: &'a str, partition: u32, value: &'a [u8]) -> ProducerRecord<'a> {
    ProducerRecord { topic, partition: Some(partition), key: None, value, headers: &[], timestamp: 0 }
}

/// Every value a consumer of `topic` with `isolation` sees now, by partition.
fn values(log: &Log, topic: &str, isolation: Isolation) -> BTreeMap<u32, Vec<String>> {
    let config = ConsumerConfig { isolation, ..ConsumerConfig::default() };
    let mut consumer = Consumer::subscribe(log, &[topic], &config).expect("subscribe");
    let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    while let Some(fetched) = consumer.poll(1 << 16).expect("poll") {
        for record in fetched.records().expect("whole batches") {
            let value = String::from_utf8(record.value.to_vec()).expect("text values");
            out.entry(fetched.partition).or_default().push(value);
        }
    }
    out
}

fn flat(values: &BTreeMap<u32, Vec<String>>) -> Vec<String> {
    values.values().flatten().cloned().collect()
}

#[test]
fn a_batch_appended_again_with_its_sequence_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut partition = Partition::open(sluice_fs::local(), dir.path(), PartitionConfig::default()).unwrap();
    let producer = ProducerInfo { id: 42, epoch: 0, base_sequence: 0 };
    let mut batch = BatchBuilder::new();
    batch.push(1, None, b"a", &[]);
    batch.push(2, None, b"b", &[]);
    // `write` keeps the records, as a producer whose acknowledgement was lost does.
    let (first, _) = partition.write(&mut batch, 0, producer).unwrap();
    let (again, _) = partition.write(&mut batch, 0, producer).unwrap();
    assert_eq!((first, again), (0, 0), "the retry gets the offset of the stored batch");
    assert_eq!(partition.next_offset(), 2, "and is not stored twice");
    drop(partition);
    // The producer's state comes back on open: a retry after a restart is recognised.
    let mut reopened = Partition::open(sluice_fs::local(), dir.path(), PartitionConfig::default()).unwrap();
    assert_eq!(reopened.write(&mut batch, 0, producer).unwrap().0, 0);
    let gap = ProducerInfo { base_sequence: 5, ..producer };
    let error = reopened.append(&mut batch, 0, gap).unwrap_err().to_string();
    assert!(error.contains("sequence 5 where 2 is next"), "{error}");
}

#[test]
fn read_committed_consumers_see_a_transaction_only_once_committed_and_never_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path());
    log.create_topic("out", &TopicConfig { partitions: 2, ..TopicConfig::default() }).unwrap();
    log.create_topic("other", &TopicConfig::default()).unwrap();
    let config = ProducerConfig { transactional_id: Some("job-0".to_string()), ..ProducerConfig::default() };
    let mut transactional = Producer::new(&log, config).unwrap();
    let mut plain = Producer::new(&log, ProducerConfig::default()).unwrap();

    plain.send(&record("out", 0, b"before")).unwrap();
    plain.flush().unwrap();
    transactional.begin().unwrap();
    transactional.send(&record("out", 0, b"t1-a")).unwrap();
    transactional.send(&record("out", 1, b"t1-b")).unwrap();
    transactional.send(&record("other", 0, b"t1-c")).unwrap();
    transactional.flush().unwrap();
    plain.send(&record("out", 0, b"after")).unwrap();
    plain.flush().unwrap();
    // Written, but open: read-committed stops at it, even for the record after it.
    assert_eq!(flat(&values(&log, "out", Isolation::ReadUncommitted)), ["before", "t1-a", "after", "t1-b"]);
    assert_eq!(flat(&values(&log, "out", Isolation::ReadCommitted)), ["before"]);
    transactional.commit().unwrap();
    assert_eq!(flat(&values(&log, "out", Isolation::ReadCommitted)), ["before", "t1-a", "after", "t1-b"]);
    assert_eq!(flat(&values(&log, "other", Isolation::ReadCommitted)), ["t1-c"]);

    transactional.begin().unwrap();
    transactional.send(&record("out", 1, b"t2")).unwrap();
    transactional.flush().unwrap();
    transactional.abort().unwrap();
    transactional.begin().unwrap();
    transactional.send(&record("out", 1, b"t3")).unwrap();
    transactional.commit().unwrap();
    assert_eq!(values(&log, "out", Isolation::ReadCommitted)[&1], ["t1-b", "t3"]);
    assert_eq!(values(&log, "out", Isolation::ReadUncommitted)[&1], ["t1-b", "t2", "t3"]);
    let outside = plain.begin().unwrap_err().to_string();
    assert!(outside.contains("no transactional id"), "{outside}");
}

#[test]
fn a_crashed_transaction_is_aborted_and_a_prepared_one_waits_for_its_decision() {
    let dir = tempfile::tempdir().unwrap();
    let config = ProducerConfig { transactional_id: Some("sink-1".to_string()), ..ProducerConfig::default() };
    {
        let log = log_in(dir.path());
        log.create_topic("out", &TopicConfig::default()).unwrap();
        let mut producer = Producer::new(&log, config.clone()).unwrap();
        producer.begin().unwrap();
        producer.send(&record("out", 0, b"prepared")).unwrap();
        producer.prepare().unwrap();
        producer.begin().unwrap();
        producer.send(&record("out", 0, b"open")).unwrap();
        producer.flush().unwrap();
        // The process dies here: its log and producer go without another word.
    }
    let log = log_in(dir.path());
    assert_eq!(flat(&values(&log, "out", Isolation::ReadUncommitted)), ["prepared", "open"]);
    assert!(values(&log, "out", Isolation::ReadCommitted).is_empty(), "nothing is decided yet");
    let mut producer = Producer::new(&log, config).unwrap();
    let prepared = producer.prepared().unwrap();
    assert_eq!(prepared.len(), 1, "the prepared transaction survives; the open one was aborted");
    producer.commit_prepared(&prepared[0]).unwrap();
    producer.commit_prepared(&prepared[0]).unwrap();
    assert_eq!(flat(&values(&log, "out", Isolation::ReadCommitted)), ["prepared"]);
    // Its markers were written once each: one for the abort, one for the commit.
    let segment = dir.path().join("topics/out/0").join(sluice_log::segment::file_name(0));
    let bytes = std::fs::read(segment).unwrap();
    let mut markers = 0;
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let (batch, after) = sluice_log::Batch::parse(rest).unwrap();
        markers += usize::from(batch.is_control());
        rest = after;
    }
    assert_eq!(markers, 2);
}

#[test]
fn a_second_owner_of_a_transactional_id_or_a_partition_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let first = log_in(dir.path());
    first.create_topic("out", &TopicConfig::default()).unwrap();
    let config = ProducerConfig { transactional_id: Some("owner".to_string()), ..ProducerConfig::default() };
    let mut producer = Producer::new(&first, config.clone()).unwrap();
    producer.begin().unwrap();
    producer.send(&record("out", 0, b"x")).unwrap();
    producer.flush().unwrap();
    // Another process (another log over the same directory) cannot take either.
    let second = log_in(dir.path());
    let taken = Producer::new(&second, config.clone()).err().unwrap().to_string();
    assert!(taken.contains("transactional id owner is in use by another process"), "{taken}");
    let mut plain = Producer::new(&second, ProducerConfig::default()).unwrap();
    plain.send(&record("out", 0, b"y")).unwrap();
    let locked = plain.flush().unwrap_err().to_string();
    assert!(locked.contains("another writer"), "{locked}");
    // In the same process, a new producer with the id fences the old one.
    let mut newer = Producer::new(&first, config).unwrap();
    let fenced = producer.commit().unwrap_err().to_string();
    assert!(fenced.contains("fenced"), "{fenced}");
    newer.begin().unwrap();
    newer.send(&record("out", 0, b"z")).unwrap();
    newer.commit().unwrap();
    assert_eq!(flat(&values(&first, "out", Isolation::ReadCommitted)), ["z"]);
}

#[test]
fn a_group_resumes_from_its_committed_offsets_and_follows_its_reset_policy() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(dir.path());
    log.create_topic("events", &TopicConfig { partitions: 3, ..TopicConfig::default() }).unwrap();
    let mut producer = Producer::new(&log, ProducerConfig::default()).unwrap();
    for i in 0..30u32 {
        let value = format!("e{i}");
        let key = i.to_le_bytes();
        let keyed = ProducerRecord { key: Some(&key), partition: None, ..record("events", 0, value.as_bytes()) };
        producer.send(&keyed).unwrap();
    }
    producer.flush().unwrap();
    let grouped = ConsumerConfig { group: Some("readers".to_string()), ..ConsumerConfig::default() };
    let mut consumer = Consumer::subscribe(&log, &["events"], &grouped).unwrap();
    let fetched = consumer.poll(1 << 16).unwrap().unwrap();
    let first_part = fetched.records().unwrap().len();
    assert!(first_part > 0);
    consumer.commit().unwrap();
    drop(consumer);
    let mut resumed = Consumer::subscribe(&log, &["events"], &grouped).unwrap();
    let mut rest = 0;
    while let Some(fetched) = resumed.poll(1 << 16).unwrap() {
        rest += fetched.records().unwrap().len();
    }
    assert_eq!(first_part + rest, 30, "the group resumes where it committed");
    assert!(resumed.lag().unwrap().iter().all(|(_, _, lag)| *lag == 0));

    let latest =
        ConsumerConfig { group: Some("new".to_string()), reset: OffsetReset::Latest, ..ConsumerConfig::default() };
    assert!(Consumer::subscribe(&log, &["events"], &latest).unwrap().poll(1 << 16).unwrap().is_none());
    let fail =
        ConsumerConfig { group: Some("strict".to_string()), reset: OffsetReset::Fail, ..ConsumerConfig::default() };
    let error = Consumer::subscribe(&log, &["events"], &fail).err().unwrap().to_string();
    assert!(error.contains("consumer group strict has no offset for events/0"), "{error}");
    let offsets = sluice_log::consumer::group_offsets(&log, "readers").unwrap();
    assert_eq!(offsets["events"].len(), 3);
}

#[test]
fn sealed_segments_open_from_their_index_and_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = PartitionConfig { segment_bytes: 4 << 10, ..PartitionConfig::default() };
    let mut partition = Partition::open(sluice_fs::local(), dir.path(), config).unwrap();
    let mut batch = BatchBuilder::new();
    for i in 0..400i64 {
        batch.push(i * 1000, None, format!("value {i} {}", "x".repeat(40)).as_bytes(), &[]);
        if i % 10 == 9 {
            partition.append(&mut batch, 0, ProducerInfo::NONE).unwrap();
        }
    }
    let segments = partition.segment_count();
    assert!(segments > 3, "{segments} segments");
    let by_time = partition.offset_for_time(250_000);
    drop(partition);
    let indexes: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "index"))
        .collect();
    assert_eq!(indexes.len(), segments - 1, "every sealed segment has its index");
    let reopened = Partition::open(sluice_fs::local(), dir.path(), config).unwrap();
    assert_eq!((reopened.next_offset(), reopened.offset_for_time(250_000)), (400, by_time));
    drop(reopened);
    // A damaged index is ignored: the segment is scanned instead.
    std::fs::write(&indexes[0], b"garbage").unwrap();
    std::fs::remove_file(&indexes[1]).unwrap();
    let rescanned = Partition::open(sluice_fs::local(), dir.path(), config).unwrap();
    assert_eq!((rescanned.next_offset(), rescanned.offset_for_time(250_000)), (400, by_time));
    let mut reader = sluice_log::PartitionReader::open(sluice_fs::local(), dir.path()).unwrap();
    reader.seek_to_time(250_000).unwrap();
    assert_eq!(reader.next_offset(), 250, "the first record at or after the time");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any interleaving of transactional producers (committing or aborting) and a
    /// plain one: a read-committed consumer sees exactly the plain records and the
    /// committed ones, in the order they were written.
    #[test]
    fn read_committed_sees_exactly_the_committed_records_in_order(
        steps in proptest::collection::vec((0usize..3, 0u8..4), 1..60),
        partitions in 1u32..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = log_in(dir.path());
        log.create_topic("t", &TopicConfig { partitions, ..TopicConfig::default() }).unwrap();
        let mut producers: Vec<Producer> = (0..2)
            .map(|i| {
                let config = ProducerConfig { transactional_id: Some(format!("p{i}")), ..ProducerConfig::default() };
                Producer::new(&log, config).unwrap()
            })
            .collect();
        producers.push(Producer::new(&log, ProducerConfig::default()).unwrap());
        let mut open: Vec<Vec<(u32, String)>> = vec![Vec::new(), Vec::new()];
        // Per partition, in write order: (value, who, transaction number).
        let mut written: BTreeMap<u32, Vec<(String, usize, usize)>> = BTreeMap::new();
        let mut transaction = [0usize; 2];
        let mut in_transaction = [false; 2];
        let mut committed: Vec<(usize, usize)> = Vec::new();
        for (n, (who, action)) in steps.iter().enumerate() {
            let partition = (n as u32) % partitions;
            let value = format!("v{n}");
            match (*who, action) {
                (2, _) | (_, 0 | 1) => {
                    if *who < 2 && !in_transaction[*who] {
                        producers[*who].begin().unwrap();
                        in_transaction[*who] = true;
                    }
                    producers[*who].send(&record("t", partition, value.as_bytes())).unwrap();
                    producers[*who].flush().unwrap();
                    written.entry(partition).or_default().push((value.clone(), *who, transaction.get(*who).copied().unwrap_or(0)));
                    if *who < 2 {
                        open[*who].push((partition, value));
                    }
                }
                (_, 2) if !open[*who].is_empty() => {
                    producers[*who].commit().unwrap();
                    committed.push((*who, transaction[*who]));
                    open[*who].clear();
                    transaction[*who] += 1;
                    in_transaction[*who] = false;
                }
                (_, _) if !open[*who].is_empty() => {
                    producers[*who].abort().unwrap();
                    open[*who].clear();
                    transaction[*who] += 1;
                    in_transaction[*who] = false;
                }
                _ => {}
            }
        }
        // Everything still open is aborted by a new owner of its id.
        drop(producers);
        for i in 0..2 {
            let config = ProducerConfig { transactional_id: Some(format!("p{i}")), ..ProducerConfig::default() };
            Producer::new(&log, config).unwrap();
        }
        let seen = values(&log, "t", Isolation::ReadCommitted);
        for partition in 0..partitions {
            let expected: Vec<String> = written
                .get(&partition)
                .into_iter()
                .flatten()
                .filter(|(_, who, txn)| *who == 2 || committed.contains(&(*who, *txn)))
                .map(|(value, _, _)| value.clone())
                .collect();
            prop_assert_eq!(seen.get(&partition).cloned().unwrap_or_default(), expected);
        }
    }
}

/// Runs transactions of 10 records over two partitions on a simulated disk whose power
/// is cut at write `cut`; returns how many commits returned, and which transactions a
/// read-committed reader sees after the restart, in order.
fn transactions_cut_at(cut: u64) -> (usize, Vec<usize>, bool) {
    use sluice_fs::{FileSystem, SimulatedFs};
    use std::sync::Arc;
    let fs = SimulatedFs::new();
    let shared: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let dir = Path::new("data");
    let config = ProducerConfig { transactional_id: Some("cut".to_string()), ..ProducerConfig::default() };
    let mut acknowledged = 0;
    {
        let log = Log::open(shared.clone(), dir).expect("a fresh log");
        log.create_topic("t", &TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("topic");
        fs.cut_power_after(cut);
        if let Ok(mut producer) = Producer::new(&log, config.clone()) {
            for transaction in 0..8 {
                let sent = producer.begin().and_then(|()| {
                    (0..10).try_for_each(|i| {
                        let value = format!("{transaction}-{i}");
                        producer.send(&record("t", i % 2, value.as_bytes())).map(|_| ())
                    })
                });
                if sent.and_then(|()| producer.commit()).is_err() {
                    break;
                }
                acknowledged += 1;
            }
        }
    }
    let happened = fs.is_cut();
    fs.restart();
    let log = Log::open(shared, dir).expect("the log opens after any power cut");
    // The next owner of the id finishes or aborts what the cut left.
    Producer::new(&log, config).expect("the transactional id opens after any power cut");
    let seen = values(&log, "t", Isolation::ReadCommitted);
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for value in flat(&seen) {
        let transaction: usize = value.split('-').next().and_then(|t| t.parse().ok()).expect("a value of ours");
        *counts.entry(transaction).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 10), "cut {cut}: a transaction is seen whole or not at all: {counts:?}");
    (acknowledged, counts.into_keys().collect(), happened)
}

#[test]
fn a_power_cut_at_any_write_keeps_every_committed_transaction_whole_and_no_other_half() {
    let mut cuts_that_happened = 0;
    for cut in 1..400 {
        let (acknowledged, seen, happened) = transactions_cut_at(cut);
        cuts_that_happened += usize::from(happened);
        assert!(seen.len() >= acknowledged, "cut {cut}: {acknowledged} commits returned, {seen:?} seen");
        assert_eq!(seen, (0..seen.len()).collect::<Vec<_>>(), "cut {cut}: transactions in order, none skipped");
        if !happened {
            assert_eq!(acknowledged, 8, "without a cut every transaction commits");
            break;
        }
    }
    assert!(cuts_that_happened > 20, "the power was cut during the run {cuts_that_happened} times");
}
