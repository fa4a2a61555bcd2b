//! Unreadable lines of a JSON lines file go to the dead letters, with the reason.

use serde::Deserialize;
use sluice::connectors::DeadLetter;
use sluice::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct Reading {
    id: u32,
    sensor: String,
    celsius: i32,
}

/// A line of the input file, and what reading it should give.
enum Line {
    Good(Reading),
    /// Bad, with a piece of the reason it must be rejected for.
    Bad(&'static str, &'static str),
    Blank(&'static str),
}

fn good(id: u32, sensor: &str, celsius: i32) -> Line {
    Line::Good(Reading { id, sensor: sensor.to_string(), celsius })
}

fn lines() -> Vec<Line> {
    let mut lines = vec![
        good(1, "north", 20),
        good(2, "south", -3),
        Line::Blank(""),
        Line::Bad(r#"{"id": 3, "sensor": "east", "celsius": "#, "EOF while parsing"),
        Line::Bad(r#"{"id": 4, "sensor": "west"}"#, "missing field `celsius`"),
        Line::Blank("   \t"),
        good(5, "north", 21),
        Line::Bad("<not json>", "expected value"),
        Line::Bad(r#"{"id": "six", "sensor": "south", "celsius": 1}"#, "invalid type: string \"six\", expected u32"),
    ];
    for id in 7..40 {
        lines.push(good(id, ["north", "south", "east", "west"][id as usize % 4], id as i32 - 20));
        if id % 9 == 0 {
            lines.push(Line::Blank(""));
        }
    }
    lines.push(Line::Bad(r#"{"id": 40, "sensor": "north", "celsius": 1} trailing"#, "trailing characters"));
    lines
}

fn text(line: &Line) -> String {
    match line {
        Line::Good(r) => format!(r#"{{"id": {}, "sensor": "{}", "celsius": {}}}"#, r.id, r.sensor, r.celsius),
        Line::Bad(text, _) | Line::Blank(text) => text.to_string(),
    }
}

/// Writes the lines (one of them ending in CRLF, the last without a newline) and returns
/// each line's byte offset.
fn write_file(path: &Path, lines: &[Line]) -> Vec<u64> {
    let mut content = String::new();
    let mut offsets = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        offsets.push(content.len() as u64);
        content.push_str(&text(line));
        if i == 1 {
            content.push('\r');
        }
        if i + 1 < lines.len() {
            content.push('\n');
        }
    }
    std::fs::write(path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    offsets
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("sluice-it-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn bad_lines_go_to_the_dead_letters_and_good_ones_arrive_once() {
    let dir = TempDir::new("dead-letters");
    let path = dir.0.join("readings.jsonl");
    let lines = lines();
    let offsets = write_file(&path, &lines);
    let file_length = std::fs::metadata(&path).map(|m| m.len()).unwrap_or_else(|e| panic!("{e}"));
    let mut expected: Vec<Reading> =
        lines.iter().filter_map(|l| if let Line::Good(r) = l { Some(r.clone()) } else { None }).collect();
    expected.sort();
    let bad: Vec<(u64, String, &str)> = lines
        .iter()
        .zip(&offsets)
        .filter_map(
            |(l, offset)| {
                if let Line::Bad(text, reason) = l {
                    Some((*offset, text.to_string(), *reason))
                } else {
                    None
                }
            },
        )
        .collect();
    let non_blank = lines.iter().filter(|l| !matches!(l, Line::Blank(_))).count() as u64;

    for (workers, block_size) in [(1, 16), (1, 4 << 20), (2, 16), (2, 53), (2, 1)] {
        let at = format!("{workers} workers, blocks of {block_size} bytes");
        let dead_letters = DeadLetters::memory();
        let source = JsonLinesSource::<Reading>::new(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
            .block_size(block_size)
            .dead_letters(dead_letters.clone());
        let env = StreamEnvironment::new().parallelism(workers).batch_size(4);
        let out = CollectSink::new();
        env.source(source).sink(out.clone());
        let metrics = env.execute().unwrap_or_else(|error| panic!("{at}: the job failed: {error}")).metrics;

        assert_eq!(out.sorted_values(), expected, "{at}: every good line arrives exactly once");

        let mut letters: Vec<DeadLetter> = dead_letters.collected();
        letters.sort_by(|a, b| a.position.cmp(&b.position));
        assert_eq!(letters.len(), bad.len(), "{at}: one dead letter per bad line: {letters:#?}");
        for (offset, text, reason) in &bad {
            let position = format!("byte {offset}");
            let letter = letters
                .iter()
                .find(|l| l.position == position)
                .unwrap_or_else(|| panic!("{at}: no dead letter for the line at {position}: {text}"));
            assert_eq!(&letter.input, text, "{at}: the dead letter keeps the line's text");
            assert!(letter.reason.contains(reason), "{at}: {text:?} rejected for {:?}, not {reason:?}", letter.reason);
            assert_eq!(letter.source, path.display().to_string(), "{at}");
        }

        let source = metrics.operator("json-lines-source").unwrap_or_else(|| panic!("{at}: no source counters"));
        assert_eq!(source.instances, workers, "{at}");
        assert_eq!(source.dead_letters, bad.len() as u64, "{at}: the source counts its dead letters");
        assert_eq!(source.records_out, expected.len() as u64, "{at}: the source counts its records");
        assert_eq!(source.records_out + source.dead_letters, non_blank, "{at}: read = processed + dead-lettered");
        assert_eq!(source.position, file_length, "{at}: every byte is read once");
        assert_eq!(metrics.sink_records(), expected.len() as u64, "{at}");
        assert_eq!(metrics.dead_letters(), bad.len() as u64, "{at}");
    }
}
