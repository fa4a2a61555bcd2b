//! Torn last lines: output written straight through (at least once) that a crash cut
//! in the middle of a line.
//!
//! A file written straight through is visible while it is written, and its writer's
//! buffer reaches the disk in chunks, so a crash can leave half a line at its end.
//! Everything after the restored checkpoint is written again, so that half line is not
//! lost, but appended to, or left in the directory, it would be a line no reader can
//! parse. Before a resumed job writes, such a file is cut back to its last whole line.

use sluice_fs::FileSystem;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// How much of a file's end is read at a time when looking for its last line break.
const CHUNK: u64 = 64 << 10;

/// Cuts the local file `path` back to its last whole line, durably; a missing file or
/// one ending with a line break is left alone.
pub(super) fn trim_local(path: &Path) -> io::Result<()> {
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let length = file.metadata()?.len();
    let mut end = length;
    let mut chunk = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        chunk.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        if end == length && chunk.last() == Some(&b'\n') {
            return Ok(());
        }
        if let Some(at) = chunk.iter().rposition(|&b| b == b'\n') {
            file.set_len(start + at as u64 + 1)?;
            return file.sync_all();
        }
        end = start;
    }
    file.set_len(0)?;
    file.sync_all()
}

/// Cuts the file `name` of `dir`, read through `fs`, back to its last whole line: its
/// whole lines are written durably to a hidden file renamed over it.
pub(super) fn trim(fs: &dyn FileSystem, dir: &Path, name: &str) -> io::Result<()> {
    let path = dir.join(name);
    let bytes = fs.read(&path)?;
    if bytes.is_empty() || bytes.last() == Some(&b'\n') {
        return Ok(());
    }
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
    // Hidden and in progress: a crash before the rename leaves it to be deleted.
    let trimmed = dir.join(format!(".{name}.trim.inprogress"));
    sluice_fs::write_durably(fs, &trimmed, &bytes[..whole])?;
    fs.rename(&trimmed, &path)?;
    fs.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_cut_back_to_its_last_whole_line_and_a_whole_one_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        for (written, kept) in [
            ("{\"a\":1}\n{\"a\":2}\n{\"a\"", "{\"a\":1}\n{\"a\":2}\n"),
            ("{\"a\":1}\n", "{\"a\":1}\n"),
            ("{\"a\"", ""),
            ("", ""),
        ] {
            std::fs::write(&path, written).unwrap();
            trim_local(&path).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), kept, "local, from {written:?}");
            std::fs::write(&path, written).unwrap();
            trim(sluice_fs::local().as_ref(), dir.path(), "out.jsonl").unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), kept, "through the file system, from {written:?}");
        }
        // A last line longer than one chunk read.
        let long = format!("first\n{}", "x".repeat(3 * CHUNK as usize));
        std::fs::write(&path, &long).unwrap();
        trim_local(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\n");
        trim_local(&dir.path().join("missing")).unwrap();
    }
}
