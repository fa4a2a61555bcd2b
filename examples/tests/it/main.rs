//! Integration tests of the examples: small hand-checked inputs at parallelism 1, 2 and
//! 4, and the generated sample data end to end through files and the binaries.

mod fraud;
mod orders;
mod sample_data;
mod stdio;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Every pipeline test runs at these parallelisms...
pub const PARALLELISMS: [usize; 3] = [1, 2, 4];
/// ...and these batch sizes: one record per batch makes the sources send a watermark
/// after every record, so operators see many more watermark steps.
pub const BATCH_SIZES: [usize; 2] = [1, 1024];

/// 2026-01-01T00:00:00Z, the start of an hour, as the tests' time origin.
pub const T0: i64 = 1_767_225_600_000;

/// `seconds` after [`T0`] (fractions allowed down to the millisecond).
pub fn at(seconds: f64) -> i64 {
    T0 + (seconds * 1000.0).round() as i64
}

/// A fresh, empty directory under the system's temporary directory, removed when
/// dropped, so a failing test leaves nothing behind either.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("sluice-examples-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the temporary directory can be created");
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
