//! What the SQL tests share: reading back a debezium-json changelog.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The rows the debezium-json changelog in `dir` materializes, as JSON text, with how
/// many rows were retracted: a multiset, every retraction taking back a row it holds.
/// The part files sort in the order they were written, and a key's changes are all in
/// the part files of the one worker that owns it.
pub fn materialize_changelog(dir: &Path) -> (Vec<String>, usize) {
    let mut parts: Vec<_> =
        std::fs::read_dir(dir).expect("the sink's directory").map(|e| e.expect("a part").path()).collect();
    parts.sort();
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    let mut retracted = 0;
    for part in parts {
        for line in std::fs::read_to_string(part).expect("readable").lines() {
            let change: Value = serde_json::from_str(line).expect("a JSON change");
            match change["op"].as_str().expect("an op") {
                "c" => *held.entry(change["after"].to_string()).or_default() += 1,
                _ => {
                    let row = change["before"].to_string();
                    let count = held.get_mut(&row).unwrap_or_else(|| panic!("a retraction of a row not held: {row}"));
                    *count -= 1;
                    if *count == 0 {
                        held.remove(&row);
                    }
                    retracted += 1;
                }
            }
        }
    }
    (held.into_iter().flat_map(|(row, n)| std::iter::repeat_n(row, n)).collect(), retracted)
}
