//! A partition on a real and on a simulated disk: appends read back, segments roll,
//! a torn tail is cut off, and a power cut at any write keeps every acknowledged record.

use sluice_fs::{FileSystem, SimulatedFs};
use sluice_log::{records_from, BatchBuilder, Durability, Partition, PartitionConfig, ProducerInfo};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

fn value(i: u64) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

/// Appends records `from..to` in batches of `per_batch`; returns how many were
/// acknowledged before an error, if any.
fn append(partition: &mut Partition, from: u64, to: u64, per_batch: u64) -> (u64, Option<std::io::Error>) {
    let mut builder = BatchBuilder::new();
    let mut acknowledged = from;
    let mut i = from;
    while i < to {
        let end = (i + per_batch).min(to);
        for j in i..end {
            builder.push(j as i64 * 10, Some(format!("k{}", j % 7).as_bytes()), &value(j), &[]);
        }
        match partition.append(&mut builder, 0, ProducerInfo::NONE) {
            Ok(base) => assert_eq!(base, i, "offsets are dense"),
            Err(error) => return (acknowledged, Some(error)),
        }
        i = end;
        acknowledged = end;
    }
    (acknowledged, None)
}

fn all_values(partition: &Partition) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = partition.start_offset();
    loop {
        let bytes = partition.read(offset, 64 << 10).expect("read");
        if bytes.is_empty() {
            return out;
        }
        for record in records_from(&bytes, offset).expect("whole batches") {
            out.push((record.offset, record.value.to_vec()));
            offset = record.offset + 1;
        }
    }
}

fn expected(to: u64) -> Vec<(u64, Vec<u8>)> {
    (0..to).map(|i| (i, value(i))).collect()
}

#[test]
fn appends_read_back_across_segments_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let fs = sluice_fs::local();
    let config =
        PartitionConfig { segment_bytes: 16 << 10, durability: Durability::OnSync, ..PartitionConfig::default() };
    let mut partition = Partition::open(fs.clone(), dir.path(), config).unwrap();
    assert_eq!(append(&mut partition, 0, 3_000, 37).0, 3_000);
    partition.sync().unwrap();
    assert!(partition.segment_count() > 5, "{} segments", partition.segment_count());
    assert_eq!(all_values(&partition), expected(3_000));
    // Reading from the middle of a batch starts at that record.
    let bytes = partition.read(1_234, 1).unwrap();
    assert_eq!(records_from(&bytes, 1_234).unwrap()[0].offset, 1_234);
    assert!(partition.offset_for_time(12_340) <= 1_234);
    drop(partition);
    let mut reopened = Partition::open(fs, dir.path(), config).unwrap();
    assert_eq!(reopened.next_offset(), 3_000);
    assert_eq!(append(&mut reopened, 3_000, 3_100, 10).0, 3_100);
    assert_eq!(all_values(&reopened), expected(3_100));
}

#[test]
fn a_torn_or_damaged_tail_is_cut_off_at_the_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let fs = sluice_fs::local();
    let config = PartitionConfig::default();
    let mut partition = Partition::open(fs.clone(), dir.path(), config).unwrap();
    append(&mut partition, 0, 100, 10);
    drop(partition);
    let segment = dir.path().join(sluice_log::segment::file_name(0));
    let whole = std::fs::read(&segment).unwrap();
    // Half of a new batch, as a crash in the middle of a write leaves it.
    let mut builder = BatchBuilder::new();
    builder.push(0, None, b"never acknowledged", &[]);
    let next = builder.finish(100, 0, ProducerInfo::NONE);
    let mut file = fs.append(&segment).unwrap();
    file.write_all(&next[..next.len() / 2]).unwrap();
    file.sync().unwrap();
    drop(file);
    let mut partition = Partition::open(fs.clone(), dir.path(), config).unwrap();
    assert_eq!(partition.next_offset(), 100, "the torn batch is gone");
    assert_eq!(std::fs::read(&segment).unwrap(), whole, "cut back to the last whole batch");
    assert_eq!(append(&mut partition, 100, 120, 10).0, 120);
    assert_eq!(all_values(&partition), expected(120));
    drop(partition);
    // A flipped bit in the last batch: it fails its checksum and goes too.
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 1;
    std::fs::write(&segment, &bytes).unwrap();
    let partition = Partition::open(fs, dir.path(), config).unwrap();
    assert_eq!(partition.next_offset(), 110);
    assert_eq!(all_values(&partition), expected(110));
}

#[test]
fn damage_before_the_newest_segment_is_an_error_not_a_silent_loss() {
    let dir = tempfile::tempdir().unwrap();
    let fs = sluice_fs::local();
    let config =
        PartitionConfig { segment_bytes: 4 << 10, durability: Durability::EveryAppend, ..PartitionConfig::default() };
    let mut partition = Partition::open(fs.clone(), dir.path(), config).unwrap();
    append(&mut partition, 0, 500, 10);
    drop(partition);
    let first = dir.path().join(sluice_log::segment::file_name(0));
    let mut bytes = std::fs::read(&first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&first, &bytes).unwrap();
    // A sealed segment opens from its index, unread: the damage is found when read.
    let partition = Partition::open(fs.clone(), dir.path(), config).unwrap();
    let read = (0..500).find_map(|offset| partition.read(offset, 1 << 20).err());
    let error = read.expect("a read of the damaged batch fails").to_string();
    assert!(error.contains("fails its checksum") && error.contains(&sluice_log::segment::file_name(0)), "{error}");
    drop(partition);
    // Without its index the segment is scanned on open, which refuses it.
    std::fs::remove_file(dir.path().join(sluice_log::segment::index_file_name(0))).unwrap();
    let error = Partition::open(fs, dir.path(), config).err().expect("refused").to_string();
    assert!(error.contains("damaged before the newest"), "{error}");
}

/// Cuts the power at `cut` writes from the start of a run of appends, restarts, and
/// checks that what was acknowledged is there, whole, and that appending goes on.
fn power_cut_at(cut: u64) -> bool {
    let fs = SimulatedFs::new();
    let shared: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let dir = Path::new("log/p0");
    let config =
        PartitionConfig { segment_bytes: 8 << 10, durability: Durability::EveryAppend, ..PartitionConfig::default() };
    fs.cut_power_after(cut);
    let acknowledged = match Partition::open(shared.clone(), dir, config) {
        Ok(mut partition) => append(&mut partition, 0, 400, 13).0,
        Err(_) => 0,
    };
    let happened = fs.is_cut();
    fs.restart();
    let mut partition = Partition::open(shared, dir, config).expect("a partition opens after any power cut");
    let found = all_values(&partition);
    assert!(found.len() as u64 >= acknowledged, "cut {cut}: {} records of {acknowledged} acknowledged", found.len());
    assert_eq!(found, expected(found.len() as u64), "cut {cut}: records in order, whole");
    let next = partition.next_offset();
    assert_eq!(append(&mut partition, next, next + 20, 7).0, next + 20, "cut {cut}: appends go on");
    happened
}

#[test]
fn a_power_cut_at_any_write_keeps_every_acknowledged_record() {
    // How many writes a whole run makes, to spread the cuts over it.
    let fs = SimulatedFs::new();
    let config =
        PartitionConfig { segment_bytes: 8 << 10, durability: Durability::EveryAppend, ..PartitionConfig::default() };
    let mut partition = Partition::open(Arc::new(fs.clone()), Path::new("log/p0"), config).unwrap();
    append(&mut partition, 0, 400, 13);
    let writes = fs.writes();
    assert!(writes > 50, "{writes} writes");
    let cuts: Vec<u64> = (1..writes).collect();
    let happened = cuts.iter().filter(|&&cut| power_cut_at(cut)).count();
    assert_eq!(happened, cuts.len(), "every cut fell inside the run");
}

/// Every record a reader polls until it has `count`, checking that offsets follow.
fn read_all(reader: &mut sluice_log::PartitionReader, count: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let started = std::time::Instant::now();
    while (out.len() as u64) < count {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{} of {count} read", out.len());
        let (from, bytes) = reader.poll(16 << 10).expect("poll");
        if bytes.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        for record in records_from(&bytes, from).expect("whole batches") {
            assert_eq!(record.offset, out.len() as u64, "offsets follow");
            out.push((record.offset, record.value.to_vec()));
        }
    }
    out
}

#[test]
fn a_reader_follows_a_writer_across_segments_and_a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fs = sluice_fs::local();
    let config =
        PartitionConfig { segment_bytes: 8 << 10, durability: Durability::OnSync, ..PartitionConfig::default() };
    let mut partition = Partition::open(fs.clone(), dir.path(), config).unwrap();
    let second = Partition::open(fs.clone(), dir.path(), config).err().expect("refused");
    assert_eq!(second.kind(), std::io::ErrorKind::WouldBlock);
    assert!(second.to_string().contains("another writer"), "{second}");
    let mut reader = sluice_log::PartitionReader::open(fs.clone(), dir.path()).unwrap();
    let writer = std::thread::spawn(move || {
        for start in (0..2_000).step_by(50) {
            append(&mut partition, start, start + 50, 7);
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        partition.segment_count()
    });
    let read = read_all(&mut reader, 2_000);
    assert!(writer.join().unwrap() > 5, "the writer rolled segments while the reader read");
    assert_eq!(read, expected(2_000));
    assert!(reader.poll(1 << 20).unwrap().1.is_empty(), "caught up");
    reader.seek(1_500).unwrap();
    let (from, bytes) = reader.poll(1).unwrap();
    assert_eq!(records_from(&bytes, from).unwrap()[0].offset, 1_500, "seek by offset");
}

#[test]
fn a_reader_waits_at_a_torn_tail_without_changing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let fs = sluice_fs::local();
    let mut partition = Partition::open(fs.clone(), dir.path(), PartitionConfig::default()).unwrap();
    append(&mut partition, 0, 100, 10);
    drop(partition);
    let segment = dir.path().join(sluice_log::segment::file_name(0));
    let mut builder = BatchBuilder::new();
    builder.push(0, None, b"half written", &[]);
    let next = builder.finish(100, 0, ProducerInfo::NONE);
    std::fs::OpenOptions::new().append(true).open(&segment).unwrap().write_all(&next[..20]).unwrap();
    let torn = std::fs::read(&segment).unwrap();
    let mut reader = sluice_log::PartitionReader::open(fs.clone(), dir.path()).unwrap();
    assert_eq!(read_all(&mut reader, 100), expected(100));
    assert!(reader.poll(1 << 20).unwrap().1.is_empty(), "the torn batch is not read");
    assert_eq!(std::fs::read(&segment).unwrap(), torn, "a reader changes nothing");
    // A writer cuts the tail off and appends: the reader goes on from where it was.
    let mut partition = Partition::open(fs, dir.path(), PartitionConfig::default()).unwrap();
    append(&mut partition, 100, 130, 10);
    let (from, bytes) = reader.poll(1 << 20).unwrap();
    let offsets: Vec<u64> = records_from(&bytes, from).unwrap().iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (100..130).collect::<Vec<_>>());
}

#[test]
fn retention_deletes_the_oldest_sealed_segments_by_time_and_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let fs = sluice_fs::local();
    let config = PartitionConfig { segment_bytes: 4 << 10, ..PartitionConfig::default() };
    let mut partition = Partition::open(fs.clone(), dir.path(), config).unwrap();
    // Event times 10 ms apart, the last one now.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut builder = BatchBuilder::new();
    for j in 0..600u64 {
        builder.push(now - (599 - j as i64) * 10, None, &value(j), &[]);
        if j % 10 == 9 {
            partition.append(&mut builder, 0, ProducerInfo::NONE).unwrap();
        }
    }
    let segments = partition.segment_count();
    assert!(segments >= 5, "{segments} segments");
    let mut reader = sluice_log::PartitionReader::open(fs.clone(), dir.path()).unwrap();
    drop(partition);
    // Keep the last 3 seconds (300 offsets): opening the partition applies it.
    let by_time = PartitionConfig { retention_ms: Some(3_000), ..config };
    let mut partition = Partition::open(fs.clone(), dir.path(), by_time).unwrap();
    assert!(partition.segment_count() > 1 && partition.segment_count() < segments, "some segments deleted");
    assert_eq!(partition.enforce_retention(now).unwrap(), 0, "and no more at the same time");
    let start = partition.start_offset();
    assert!(start > 0 && start <= 300, "the segments wholly older than 3 s are gone: start {start}");
    assert_eq!(partition.next_offset(), 600, "the newest segment always stays");
    // A reader that was at the beginning goes on at the oldest record kept.
    let (from, bytes) = reader.poll(1 << 20).unwrap();
    let first = records_from(&bytes, from).unwrap()[0].offset;
    assert_eq!(first, start);
    drop(partition);
    let by_size = PartitionConfig { retention_bytes: Some(6 << 10), ..config };
    let partition = Partition::open(fs, dir.path(), by_size).unwrap();
    let kept: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    assert!((6 << 10..11 << 10).contains(&kept), "about the size kept: {kept} bytes");
    assert!(partition.start_offset() > start);
}

mod garbage {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The fuzz targets' harnesses (`fuzz/`) on random bytes: errors, never panics.
        #[test]
        fn garbage_segments_indexes_and_snapshots_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            sluice_log::fuzzing::open_and_read_segment(&bytes);
            sluice_log::fuzzing::open_with_index(&bytes);
        }

        /// A valid segment cut anywhere or with a byte changed: errors or a shorter log.
        #[test]
        fn damaged_valid_segments_never_panic(cut in 0usize..4096, flip in 0usize..4096, bit in 0u8..8) {
            let mut builder = sluice_log::BatchBuilder::new();
            let mut bytes = Vec::new();
            for i in 0..20u64 {
                builder.push(i as i64, Some(b"k"), &[i as u8; 150], &[("h", b"v")]);
                bytes.extend(builder.finish(i, 0, sluice_log::ProducerInfo::NONE));
            }
            let at = flip % bytes.len();
            bytes[at] ^= 1 << bit;
            bytes.truncate(cut.min(bytes.len()));
            sluice_log::fuzzing::open_and_read_segment(&bytes);
        }
    }
}
