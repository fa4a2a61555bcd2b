//! The embedded log's commands: `sluice topic`, `produce`, `consume` and `group`.

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use sluice::log::consumer::{group_offsets, groups};
use sluice::log::{
    Consumer, ConsumerConfig, Isolation, Log, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicConfig,
};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A mistake in what the user asked for: exits with the user's code.
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// The log's errors that a user causes (an unknown topic, a bad name, a lock another
/// process holds) become [`UserError`]s; the others (I/O) stay as they are.
fn classify(error: std::io::Error) -> anyhow::Error {
    use std::io::ErrorKind::*;
    match error.kind() {
        InvalidInput | NotFound | AlreadyExists | WouldBlock | PermissionDenied => UserError(error.to_string()).into(),
        _ => error.into(),
    }
}

/// Where the log lives.
#[derive(Args, Debug, Clone)]
pub struct DataDir {
    /// The log's directory.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "sluice-data", global = true)]
    data_dir: PathBuf,
}

impl DataDir {
    fn open(&self) -> anyhow::Result<Log> {
        Log::open(sluice::fs::local(), &self.data_dir)
            .with_context(|| format!("opening the log in {}", self.data_dir.display()))
    }
}

/// `sluice topic ...`
#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Creates a topic.
    Create {
        /// Its name: letters, digits, '.', '_' and '-'.
        name: String,
        /// How many partitions it has.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Keeps only the latest record of each key (a changelog).
        #[arg(long)]
        compact: bool,
        /// Deletes records older than a duration (7d, 12h) or beyond a size per
        /// partition (500MB, 2GiB).
        #[arg(long)]
        retention: Option<String>,
    },
    /// Lists the topics.
    List,
    /// Shows a topic's settings and, per partition, its offsets and size.
    Describe {
        /// The topic.
        name: String,
    },
    /// Deletes a topic and its records.
    Delete {
        /// The topic.
        name: String,
    },
}

/// `sluice produce TOPIC`
#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// The topic to write to.
    topic: String,
    /// Reads the JSON lines from this file (all of it in one transaction: a bad line
    /// writes nothing) instead of standard input (committed as it comes).
    #[arg(long)]
    file: Option<PathBuf>,
    /// The field of each line whose value is the record's key (its text for a
    /// string, its JSON otherwise); without it, records have no key.
    #[arg(long)]
    key_field: Option<String>,
    /// The field of each line holding its event time, in milliseconds since the epoch
    /// or as an RFC 3339 time; without it, the time it is produced.
    #[arg(long)]
    timestamp_field: Option<String>,
    /// Writes every record to this partition, instead of choosing by key.
    #[arg(long)]
    partition: Option<u32>,
    /// The largest line accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_record_bytes: usize,
}

/// Where `sluice consume` starts.
#[derive(Clone, Debug)]
enum Start {
    Earliest,
    Latest,
    Offset(u64),
    Time(i64),
}

fn parse_from(text: &str) -> Result<Start, String> {
    match text {
        "earliest" => Ok(Start::Earliest),
        "latest" => Ok(Start::Latest),
        _ if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().map(Start::Offset).map_err(|e| e.to_string()),
        _ => parse_rfc3339(text).map(Start::Time).ok_or_else(|| {
            format!("'{text}' is not earliest, latest, an offset or an RFC 3339 time (2026-12-01T10:00:00Z)")
        }),
    }
}

/// `sluice consume TOPIC`
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Where to start: earliest, latest, an offset (in every partition) or an RFC 3339
    /// time. With a group that has committed offsets, they win unless this is given.
    #[arg(long, value_parser = parse_from)]
    from: Option<Start>,
    /// Reads as this consumer group: starts at its committed offsets and commits
    /// where it stopped.
    #[arg(long)]
    group: Option<String>,
    /// Keeps reading new records as they are committed, until interrupted.
    #[arg(long)]
    follow: bool,
    /// Reads only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Stops after this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Prints each record's partition, offset, time and key before its value.
    #[arg(long)]
    verbose: bool,
    /// Also shows records of open and aborted transactions.
    #[arg(long)]
    read_uncommitted: bool,
}

/// `sluice group ...`
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Lists the consumer groups.
    List,
    /// Shows a group's committed offset and lag per partition.
    Describe {
        /// The group.
        name: String,
    },
}

/// Parses "7d", "12h" (a duration) or "500MB", "2GiB" (a size) as retention.
fn parse_retention(text: &str) -> anyhow::Result<(Option<u64>, Option<u64>)> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bytes_per_unit: Option<u64> = match unit.to_ascii_lowercase().as_str() {
        "b" => Some(1),
        "kb" => Some(1_000),
        "mb" => Some(1_000_000),
        "gb" => Some(1_000_000_000),
        "tb" => Some(1_000_000_000_000),
        "kib" => Some(1 << 10),
        "mib" => Some(1 << 20),
        "gib" => Some(1 << 30),
        "tib" => Some(1 << 40),
        _ => None,
    };
    match bytes_per_unit {
        Some(per_unit) => {
            let n: u64 = number.parse().map_err(|_| UserError(format!("'{text}' is not a size")))?;
            Ok((None, Some(n.saturating_mul(per_unit))))
        }
        None => {
            let duration = sluice::parse_duration(text).map_err(|_| {
                UserError(format!("--retention '{text}' is neither a duration (7d, 12h, 30m) nor a size (500MB, 2GiB)"))
            })?;
            Ok((Some(duration.as_millis() as u64), None))
        }
    }
}

/// Runs `sluice topic ...`.
pub fn topic(data: &DataDir, command: TopicCommand) -> anyhow::Result<()> {
    let log = data.open()?;
    match command {
        TopicCommand::Create { name, partitions, compact, retention } => {
            let (retention_ms, retention_bytes) =
                retention.as_deref().map(parse_retention).transpose()?.unwrap_or_default();
            let config = TopicConfig { partitions, compact, retention_ms, retention_bytes };
            log.create_topic(&name, &config).map_err(classify)?;
            println!("created topic {name} with {partitions} partition{}", plural(partitions.into()));
        }
        TopicCommand::List => {
            for name in log.topics()? {
                let config = log.describe(&name)?;
                println!("{name}\t{} partition{}", config.partitions, plural(config.partitions.into()));
            }
        }
        TopicCommand::Describe { name } => {
            let config = log.describe(&name).map_err(classify)?;
            println!("topic {name}");
            println!("  partitions  {}", config.partitions);
            println!("  compact     {}", config.compact);
            let retention = match (config.retention_ms, config.retention_bytes) {
                (None, None) => "forever".to_string(),
                (Some(ms), _) => format!("{} s", ms / 1000),
                (_, Some(bytes)) => format!("{bytes} bytes per partition"),
            };
            println!("  retention   {retention}");
            println!("  partition  start offset  end offset  bytes");
            for partition in 0..config.partitions {
                let mut reader = log.reader(&name, partition, Isolation::ReadUncommitted)?;
                let (start, end) = (reader.start_offset()?, reader.end_offset()?);
                let bytes = partition_bytes(&log, &name, partition)?;
                println!("  {partition:>9}  {start:>12}  {end:>10}  {bytes}");
            }
        }
        TopicCommand::Delete { name } => {
            log.delete_topic(&name).map_err(classify)?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

fn partition_bytes(log: &Log, topic: &str, partition: u32) -> anyhow::Result<u64> {
    let dir = log.dir().join("topics").join(topic).join(partition.to_string());
    let mut total = 0;
    for entry in log.fs().list(&dir)? {
        if entry.name.ends_with(".log") {
            total += log.fs().size(&dir.join(&entry.name))?;
        }
    }
    Ok(total)
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Milliseconds since the epoch of an RFC 3339 time (`2026-12-01T10:00:00Z`,
/// `2026-12-01T10:00:00.250+01:00`).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |from: usize, len: usize| -> Option<i64> {
        let digits = text.get(from..from + len)?;
        digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())?
    };
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 2)?, number(8, 2)?);
    let (hour, minute, second) = (number(11, 2)?, number(14, 2)?, number(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if bytes.get(at) == Some(&b'.') {
        let digits = text[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let fraction = &text[at + 1..at + 1 + digits];
        millis = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
        at += 1 + digits;
    }
    let offset_minutes = match text.get(at..)? {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && matches!(zone.as_bytes()[0], b'+' | b'-') && zone.as_bytes()[3] == b':' => {
            let minutes = number(at + 1, 2)? * 60 + number(at + 4, 2)?;
            if zone.starts_with('-') {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    // Days from 1970-01-01 of a proleptic Gregorian date.
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One line checked and taken apart: its key and event time.
fn parse_line(line: &str, args: &ProduceArgs) -> Result<(Option<Vec<u8>>, i64), String> {
    if line.len() > args.max_record_bytes {
        return Err(format!("a record of {} bytes is over the limit of {} bytes", line.len(), args.max_record_bytes));
    }
    if args.key_field.is_none() && args.timestamp_field.is_none() {
        serde_json::from_str::<serde::de::IgnoredAny>(line).map_err(|e| format!("not JSON: {e}"))?;
        return Ok((None, now_millis()));
    }
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let field = |name: &str| value.get(name).ok_or_else(|| format!("it has no field '{name}'"));
    let key = match &args.key_field {
        None => None,
        Some(name) => Some(match field(name)? {
            serde_json::Value::String(text) => text.as_bytes().to_vec(),
            other => other.to_string().into_bytes(),
        }),
    };
    let timestamp = match &args.timestamp_field {
        None => now_millis(),
        Some(name) => match field(name)? {
            serde_json::Value::Number(n) => {
                n.as_i64().ok_or_else(|| format!("field '{name}' is not a whole number"))?
            }
            serde_json::Value::String(text) => {
                parse_rfc3339(text).ok_or_else(|| format!("field '{name}' is not an RFC 3339 time: {text:?}"))?
            }
            _ => return Err(format!("field '{name}' is neither milliseconds nor an RFC 3339 time")),
        },
    };
    Ok((key, timestamp))
}

/// A progress line on standard error, when it is a terminal.
struct Progress {
    on: bool,
    started: Instant,
    shown: Instant,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress { on: std::io::stderr().is_terminal(), started: now, shown: now }
    }

    fn show(&mut self, verb: &str, records: u64, bytes: u64) {
        if self.on && self.shown.elapsed() >= Duration::from_millis(200) {
            self.shown = Instant::now();
            let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
            eprint!(
                "\r\x1b[2K{verb} {records} records, {:.1} MB ({:.0} records/s)",
                bytes as f64 / 1e6,
                records as f64 / seconds
            );
        }
    }

    fn done(&self) {
        if self.on {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Runs `sluice produce`: every line is checked before it is sent; from a file, all
/// lines are one transaction, from standard input a transaction is committed whenever
/// the input pauses (or every 10 000 lines).
pub fn produce(data: &DataDir, args: ProduceArgs) -> anyhow::Result<()> {
    let log = data.open()?;
    let partitions = log.describe(&args.topic).map_err(classify)?.partitions;
    if let Some(partition) = args.partition.filter(|p| *p >= partitions) {
        return Err(
            UserError(format!("topic {} has no partition {partition} (it has {partitions})", args.topic)).into()
        );
    }
    let config = ProducerConfig {
        transactional_id: Some(format!("sluice-produce.{}", args.topic)),
        max_record_bytes: args.max_record_bytes,
        ..ProducerConfig::default()
    };
    let mut producer = Producer::new(&log, config).map_err(classify)?;
    let (lines, whole) = read_lines(args.file.as_deref())?;
    let (mut written, mut bytes, mut in_transaction, mut committed) = (0u64, 0u64, 0u64, 0u64);
    let mut progress = Progress::new();
    producer.begin()?;
    let mut number = 0u64;
    loop {
        let line = match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => Some(line?),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let Some(line) = line else {
            if !whole && in_transaction > 0 {
                producer.commit()?;
                producer.begin()?;
                committed += in_transaction;
                in_transaction = 0;
            }
            continue;
        };
        number += 1;
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        let (key, timestamp) = match parse_line(line, &args) {
            Ok(parsed) => parsed,
            Err(why) => {
                producer.abort()?;
                progress.done();
                let kept = match whole {
                    true => "nothing was written".to_string(),
                    false => format!("the {committed} records before the last pause were written, none after"),
                };
                return Err(UserError(format!("line {number}: {why}; {kept}")).into());
            }
        };
        let record = ProducerRecord {
            topic: &args.topic,
            partition: args.partition,
            key: key.as_deref(),
            value: line.as_bytes(),
            headers: &[],
            timestamp,
        };
        producer.send(&record).map_err(classify)?;
        written += 1;
        in_transaction += 1;
        bytes += line.len() as u64;
        if !whole && in_transaction >= 10_000 {
            producer.commit()?;
            producer.begin()?;
            committed += in_transaction;
            in_transaction = 0;
        }
        progress.show("produced", written, bytes);
    }
    producer.commit()?;
    progress.done();
    eprintln!("produced {written} record{} to {}", plural(written), args.topic);
    Ok(())
}

type Lines = std::sync::mpsc::Receiver<std::io::Result<String>>;

/// The lines of `file`, or of standard input, read on a thread of their own so that a
/// pause in the input can be noticed; and whether they are a whole file.
fn read_lines(file: Option<&Path>) -> anyhow::Result<(Lines, bool)> {
    let input: Box<dyn BufRead + Send> = match file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).map_err(|e| UserError(format!("cannot read {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let (send, receive) = std::sync::mpsc::sync_channel(4096);
    std::thread::spawn(move || {
        for line in input.lines() {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    Ok((receive, file.is_some()))
}

/// Runs `sluice consume`.
pub fn consume(data: &DataDir, args: ConsumeArgs) -> anyhow::Result<()> {
    let log = data.open()?;
    // Transactions of producers that died would hold read-committed readers back.
    sluice::log::transaction::finish_abandoned(&log)?;
    let partitions = log.describe(&args.topic).map_err(classify)?.partitions;
    let assigned: Vec<(String, u32)> = match args.partition {
        Some(p) if p >= partitions => {
            return Err(UserError(format!("topic {} has no partition {p} (it has {partitions})", args.topic)).into())
        }
        Some(p) => vec![(args.topic.clone(), p)],
        None => (0..partitions).map(|p| (args.topic.clone(), p)).collect(),
    };
    let isolation = if args.read_uncommitted { Isolation::ReadUncommitted } else { Isolation::ReadCommitted };
    let reset = match args.from {
        Some(Start::Latest) => OffsetReset::Latest,
        _ => OffsetReset::Earliest,
    };
    let config = ConsumerConfig { group: args.group.clone(), reset, isolation };
    let mut consumer = Consumer::assign(&log, &assigned, &config).map_err(classify)?;
    match args.from {
        Some(Start::Earliest) => assigned.iter().try_for_each(|(t, p)| consumer.seek(t, *p, 0))?,
        Some(Start::Latest) => consumer.seek_to_end()?,
        Some(Start::Offset(offset)) => assigned.iter().try_for_each(|(t, p)| consumer.seek(t, *p, offset))?,
        Some(Start::Time(timestamp)) => consumer.seek_to_time(timestamp)?,
        None => {}
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut progress = Progress::new();
    let mut last_commit = Instant::now();
    let limit = args.max_records.unwrap_or(u64::MAX);
    'read: while count < limit {
        let Some(fetched) = consumer.poll(1 << 20)? else {
            if !args.follow {
                break;
            }
            out.flush()?;
            if args.group.is_some() && last_commit.elapsed() >= Duration::from_secs(1) {
                consumer.commit()?;
                last_commit = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let records = fetched.records().map_err(|e| anyhow!("{}/{}: {e}", fetched.topic, fetched.partition))?;
        for record in records {
            if count >= limit {
                // Stop after the last record printed: the group resumes from there.
                consumer.seek(&fetched.topic, fetched.partition, record.offset)?;
                break 'read;
            }
            if args.verbose {
                let key = record.key.map(String::from_utf8_lossy).unwrap_or_default();
                write!(out, "{}\t{}\t{}\t{key}\t", fetched.partition, record.offset, record.timestamp)?;
            }
            out.write_all(record.value)?;
            out.write_all(b"\n")?;
            count += 1;
            bytes += record.value.len() as u64;
        }
        progress.show("consumed", count, bytes);
    }
    out.flush()?;
    progress.done();
    if args.group.is_some() {
        consumer.commit()?;
    }
    Ok(())
}

/// Runs `sluice group ...`.
pub fn group(data: &DataDir, command: GroupCommand) -> anyhow::Result<()> {
    let log = data.open()?;
    match command {
        GroupCommand::List => {
            for name in groups(&log)? {
                println!("{name}");
            }
        }
        GroupCommand::Describe { name } => {
            let offsets = group_offsets(&log, &name).map_err(classify)?;
            println!("group {name}");
            println!("  topic  partition  committed  end  lag");
            for (topic, partitions) in &offsets {
                for (partition, committed) in partitions {
                    let end = match log.reader(topic, *partition, Isolation::ReadUncommitted) {
                        Ok(mut reader) => reader.end_offset()?,
                        Err(_) => continue,
                    };
                    println!("  {topic}  {partition}  {committed}  {end}  {}", end.saturating_sub(*committed));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-12-01T10:00:00Z"), Some(1_796_119_200_000));
        assert_eq!(parse_rfc3339("2026-12-01T11:00:00.25+01:00"), Some(1_796_119_200_250));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(parse_rfc3339("2026-13-01T10:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn retention_is_a_duration_or_a_size() {
        assert_eq!(parse_retention("7d").unwrap(), (Some(7 * 86_400_000), None));
        assert_eq!(parse_retention("2GiB").unwrap(), (None, Some(2 << 30)));
        assert_eq!(parse_retention("500MB").unwrap(), (None, Some(500_000_000)));
        assert!(parse_retention("7 weeks").unwrap_err().to_string().contains("neither a duration"));
    }
}
