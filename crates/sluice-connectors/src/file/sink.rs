//! Writes records as JSON lines: to one file shared by all workers, or to a directory
//! of part files, exactly-once.
//!
//! In a directory, each worker writes its own part files. When the job checkpoints
//! exactly-once, a part file is written hidden (`.part-….inprogress`), closed and
//! synced when a checkpoint barrier arrives (pre-commit), and renamed to its final name
//! once that checkpoint is complete (commit), so readers of the directory only ever see
//! output that a checkpoint covers. A restart publishes what the restored checkpoint
//! pre-committed and deletes every other in-progress file.
//!
//! At least once, parts (and the single file) are written straight through, and a
//! checkpoint records which part files its writer may open after it: a resumed job cuts
//! those, and the single file, back to their last whole line ([`super::torn`]).

use serde::Serialize;
use sluice_api::{Sink, SinkContext, SinkWriter, FINAL_CHECKPOINT};
use sluice_fs::{FileSystem, WritableFile};
use sluice_runtime::checkpoint::{decode, CheckpointId, Committer, StateWriter};
use sluice_types::{Error, Record, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Where a [`JsonLinesSink`] writes.
#[derive(Clone)]
enum Target {
    /// One file, appended to by every worker under a short lock; opened by the first
    /// writer, when the sink knows whether the job starts afresh or resumes.
    File(Arc<OnceLock<SharedFile>>),
    /// A directory of part files, one writer per worker, written through `fs`.
    Directory(Arc<dyn FileSystem>),
}

type SharedFile = Arc<Mutex<BufWriter<File>>>;

/// A sink writing each record's value as one JSON line.
pub struct JsonLinesSink<T> {
    files: LineFiles,
    _type: PhantomData<fn(T)>,
}

/// Where lines of any format go: one file, or a directory of part files written
/// exactly-once. [`JsonLinesSink`] writes through one; so do the SQL layer's file
/// sinks, which encode their own lines.
#[derive(Clone)]
pub struct LineFiles {
    path: PathBuf,
    target: Target,
    /// The extension of the part files (`jsonl`, `csv`).
    extension: &'static str,
}

fn io_error(path: &Path, error: std::io::Error) -> Error {
    Error::io(path.display().to_string(), error)
}

impl<T> JsonLinesSink<T> {
    /// As [`LineFiles::file`].
    pub fn new(path: impl AsRef<Path>) -> Result<Self> {
        Ok(JsonLinesSink { files: LineFiles::file(path)?, _type: PhantomData })
    }

    /// As [`LineFiles::directory`].
    pub fn directory(path: impl AsRef<Path>) -> Result<Self> {
        Ok(JsonLinesSink { files: LineFiles::directory(path, "jsonl")?, _type: PhantomData })
    }

    /// As [`LineFiles::directory_on`].
    pub fn directory_on(path: impl AsRef<Path>, fs: Arc<dyn FileSystem>) -> Result<Self> {
        Ok(JsonLinesSink { files: LineFiles::directory_on(path, "jsonl", fs)?, _type: PhantomData })
    }
}

impl LineFiles {
    /// Writes the file `path`, shared by all workers: created afresh (truncated) when
    /// the job starts, appended to when it resumes from a checkpoint (at-least-once: the
    /// lines written after that checkpoint are written again; a line a crash cut in
    /// half is removed first). It cannot be written exactly-once: use
    /// [`LineFiles::directory`] for that.
    pub fn file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        // Fail early on a path that cannot be written, before the job starts.
        std::fs::OpenOptions::new().append(true).create(true).open(&path).map_err(|e| io_error(&path, e))?;
        Ok(LineFiles { path, target: Target::File(Arc::default()), extension: "jsonl" })
    }

    /// Writes part files named `*.{extension}` into the directory `path` (created if
    /// missing): exactly-once when the job checkpoints exactly-once, straight through
    /// otherwise.
    pub fn directory(path: impl AsRef<Path>, extension: &'static str) -> Result<Self> {
        Self::directory_on(path, extension, sluice_fs::local())
    }

    /// As [`LineFiles::directory`], written through the file system `fs` (tests pass a
    /// [`sluice_fs::SimulatedFs`] to cut the power at any write).
    pub fn directory_on(path: impl AsRef<Path>, extension: &'static str, fs: Arc<dyn FileSystem>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        sluice_fs::create_dir_all_durably(fs.as_ref(), &path).map_err(|e| io_error(&path, e))?;
        Ok(LineFiles { path, target: Target::Directory(fs), extension })
    }

    /// The shared file, opened once for all workers.
    fn shared_file(&self, file: &OnceLock<SharedFile>, restored: bool) -> Result<SharedFile> {
        if let Some(open) = file.get() {
            return Ok(open.clone());
        }
        let mut options = std::fs::OpenOptions::new();
        match restored {
            true => options.append(true).create(true),
            false => options.write(true).create(true).truncate(true),
        };
        if restored {
            // Lines after the checkpoint are written again; half of one must not stay.
            super::torn::trim_local(&self.path).map_err(|e| io_error(&self.path, e))?;
        }
        let opened = options.open(&self.path).map_err(|e| io_error(&self.path, e))?;
        // The file's name must be durable too, not only what is synced into it.
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            sluice_fs::LocalFs.sync_dir(parent).map_err(|e| io_error(parent, e))?;
        }
        Ok(file.get_or_init(|| Arc::new(Mutex::new(BufWriter::with_capacity(1 << 20, opened)))).clone())
    }
}

impl<T: Serialize + Send + 'static> Sink<T> for JsonLinesSink<T> {
    type Writer = JsonLinesWriter<T>;

    fn name(&self) -> String {
        "json-lines-sink".to_string()
    }

    fn writer(&self, context: &SinkContext) -> Result<JsonLinesWriter<T>> {
        Ok(JsonLinesWriter { lines: self.files.writer(context)?, buffer: Vec::new(), _type: PhantomData })
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        self.files.committer()
    }
}

impl LineFiles {
    /// The writer of one worker.
    pub fn writer(&self, context: &SinkContext) -> Result<LineWriter> {
        self.writer_in(context, Path::new(""))
    }

    /// The writer of one worker into the subdirectory `partition` of the directory
    /// (`dt=2026-01-01/hour=10`, created if missing), published by the same committer.
    pub fn partition_writer(&self, context: &SinkContext, partition: &Path) -> Result<LineWriter> {
        let Target::Directory(fs) = &self.target else {
            return Err(Error::invalid_job(format!(
                "{} is a single file, which has no partitions: write to a directory",
                self.path.display()
            )));
        };
        let dir = self.path.join(partition);
        sluice_fs::create_dir_all_durably(fs.as_ref(), &dir).map_err(|e| io_error(&dir, e))?;
        self.writer_in(context, partition)
    }

    fn writer_in(&self, context: &SinkContext, partition: &Path) -> Result<LineWriter> {
        let output = match &self.target {
            Target::File(_) if context.transactional() => {
                return Err(Error::invalid_job(format!(
                    "{} is a single file, which cannot be written exactly-once: write to a directory, or run \
                     at-least-once",
                    self.path.display()
                )))
            }
            Target::File(file) => Output::Shared(self.shared_file(file, context.restored)?),
            Target::Directory(fs) => Output::Parts(PartWriter {
                fs: fs.clone(),
                dir: self.path.join(partition),
                partition: partition.to_path_buf(),
                extension: self.extension,
                worker: context.worker,
                transactional: context.transactional(),
                run: sluice_runtime::now_millis(),
                sequence: 0,
                open: None,
            }),
        };
        Ok(LineWriter { path: self.path.clone(), output })
    }

    /// What publishes the part files pre-committed by checkpoints (none for one file).
    pub fn committer(&self) -> Option<Arc<dyn Committer>> {
        match &self.target {
            Target::Directory(fs) => {
                Some(Arc::new(PartCommitter { fs: fs.clone(), dir: self.path.clone(), extension: self.extension }))
            }
            Target::File(_) => None,
        }
    }
}

/// A part file being written.
struct OpenPart {
    path: PathBuf,
    file: BufWriter<Box<dyn WritableFile>>,
}

/// One worker's part files.
struct PartWriter {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// The subdirectory of the sink's directory `dir` is (empty for the directory).
    partition: PathBuf,
    extension: &'static str,
    worker: usize,
    transactional: bool,
    /// When this run started: names of files written straight through are unique.
    run: i64,
    sequence: u64,
    open: Option<OpenPart>,
}

/// What a pre-commit hands to the checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
enum PartCommittable {
    /// Exactly once: the file to publish, and its final name.
    Publish { in_progress: String, published: String },
    /// At least once: the part files the writer may open after the checkpoint, named
    /// [`PartWriter::straight_name`] of `worker` and `run` with a sequence from `from`
    /// on. After a crash the last line of one may be torn.
    MayFollow { worker: usize, run: i64, from: u64 },
    /// As `MayFollow`, in the subdirectory `partition` of the sink's directory.
    MayFollowIn { partition: String, worker: usize, run: i64, from: u64 },
}

/// What checkpoints written before [`PartCommittable`] hold: a part to publish.
#[derive(serde::Serialize, serde::Deserialize)]
struct EarlierPendingPart {
    in_progress: String,
    published: String,
}

impl PartCommittable {
    /// Decodes a committable, also of a checkpoint written before this type: those
    /// start with the length of a part's name, never a valid variant (0 or 1).
    fn decode(bytes: &[u8]) -> Result<Self> {
        decode::<PartCommittable>(bytes).or_else(|error| match decode::<EarlierPendingPart>(bytes) {
            Ok(EarlierPendingPart { in_progress, published }) => {
                Ok(PartCommittable::Publish { in_progress, published })
            }
            Err(_) => Err(error),
        })
    }
}

impl PartWriter {
    fn in_progress_name(&self) -> String {
        format!(".part-w{:03}-{}-{}.inprogress", self.worker, self.run, self.sequence)
    }

    /// The name of a part file written straight through.
    fn straight_name(worker: usize, run: i64, sequence: u64, extension: &str) -> String {
        format!("part-w{worker:03}-{run}-{sequence:06}.{extension}")
    }

    fn published_name(&self, checkpoint: CheckpointId) -> String {
        let extension = self.extension;
        if !self.transactional {
            return Self::straight_name(self.worker, self.run, self.sequence, extension);
        }
        match checkpoint {
            FINAL_CHECKPOINT => format!("part-final-w{:03}.{extension}", self.worker),
            id => format!("part-{id:010}-w{:03}.{extension}", self.worker),
        }
    }

    fn file(&mut self) -> Result<&mut BufWriter<Box<dyn WritableFile>>> {
        if self.open.is_none() {
            let name = if self.transactional { self.in_progress_name() } else { self.published_name(0) };
            let path = self.dir.join(name);
            let file = self.fs.create(&path).map_err(|e| io_error(&path, e))?;
            self.open = Some(OpenPart { path, file: BufWriter::with_capacity(1 << 20, file) });
        }
        Ok(&mut self.open.as_mut().expect("invariant: opened above").file)
    }

    /// Closes the open part, durably: its data, then its name in the directory (a
    /// checkpoint that completes must find the file it pre-committed after a power cut).
    /// Returns its path.
    fn close_part(&mut self) -> Result<Option<PathBuf>> {
        let Some(mut part) = self.open.take() else { return Ok(None) };
        part.file.flush().map_err(|e| io_error(&part.path, e))?;
        part.file.get_mut().sync().map_err(|e| io_error(&part.path, e))?;
        self.fs.sync_dir(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        self.sequence += 1;
        Ok(Some(part.path))
    }
}

enum Output {
    Shared(Arc<Mutex<BufWriter<File>>>),
    Parts(PartWriter),
}

/// One worker's writer of a [`JsonLinesSink`].
pub struct JsonLinesWriter<T> {
    lines: LineWriter,
    buffer: Vec<u8>,
    _type: PhantomData<fn(T)>,
}

/// One worker's writer of [`LineFiles`]: it writes whole lines, already encoded.
pub struct LineWriter {
    path: PathBuf,
    output: Output,
}

pub(crate) fn encode<T: Serialize>(batch: &[Record<T>], buffer: &mut Vec<u8>) -> Result<()> {
    for record in batch {
        serde_json::to_writer(&mut *buffer, &record.value)
            .map_err(|e| Error::Operator { operator: "json-lines-sink".into(), message: e.to_string() })?;
        buffer.push(b'\n');
    }
    Ok(())
}

impl<T: Serialize + Send + 'static> SinkWriter<T> for JsonLinesWriter<T> {
    fn write_batch(&mut self, batch: Vec<Record<T>>) -> Result<()> {
        self.buffer.clear();
        encode(&batch, &mut self.buffer)?;
        self.lines.write(&self.buffer)
    }

    fn pre_commit(&mut self, checkpoint: CheckpointId, state: &mut StateWriter) -> Result<()> {
        self.lines.pre_commit(checkpoint, state)
    }

    fn close(&mut self) -> Result<()> {
        self.lines.close()
    }
}

impl LineWriter {
    /// Writes `lines`, whole lines each ending in a newline.
    pub fn write(&mut self, lines: &[u8]) -> Result<()> {
        match &mut self.output {
            Output::Shared(file) => {
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                file.write_all(lines).map_err(|e| io_error(&self.path, e))
            }
            Output::Parts(parts) => {
                let file = parts.file()?;
                file.write_all(lines).map_err(|e| io_error(&self.path, e))
            }
        }
    }

    /// As [`SinkWriter::pre_commit`]: closes the part into the checkpoint (exactly
    /// once), or makes what was written durable.
    pub fn pre_commit(&mut self, checkpoint: CheckpointId, state: &mut StateWriter) -> Result<()> {
        match &mut self.output {
            Output::Shared(file) => {
                // What the checkpoint covers must be on disk once it completes.
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                file.flush().map_err(|e| io_error(&self.path, e))?;
                file.get_ref().sync_data().map_err(|e| io_error(&self.path, e))
            }
            Output::Parts(parts) => {
                let published = parts.published_name(checkpoint);
                let closed = parts.close_part()?;
                let partition = parts.partition.to_string_lossy().into_owned();
                if !parts.transactional {
                    let (worker, run, from) = (parts.worker, parts.run, parts.sequence);
                    return match partition.is_empty() {
                        true => state.committable(&PartCommittable::MayFollow { worker, run, from }),
                        false => state.committable(&PartCommittable::MayFollowIn { partition, worker, run, from }),
                    };
                }
                if let Some(path) = closed {
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    // Names relative to the sink's directory.
                    let in_partition = |name: &str| parts.partition.join(name).to_string_lossy().into_owned();
                    let (in_progress, published) = (in_partition(&name), in_partition(&published));
                    state.committable(&PartCommittable::Publish { in_progress, published })?;
                }
                Ok(())
            }
        }
    }

    /// As [`SinkWriter::close`].
    pub fn close(&mut self) -> Result<()> {
        match &mut self.output {
            Output::Shared(file) => {
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                file.flush().map_err(|e| io_error(&self.path, e))
            }
            // A transactional part stays open for the final pre-commit.
            Output::Parts(parts) if parts.transactional => Ok(()),
            Output::Parts(parts) => parts.close_part().map(|_| ()),
        }
    }
}

/// Publishes pre-committed part files by renaming them.
struct PartCommitter {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    extension: &'static str,
}

impl PartCommitter {
    /// Cuts the straight-through parts `worker` opened in `run` from sequence `from` on
    /// in `dir` back to their last whole line.
    fn trim_parts_after(&self, dir: &Path, worker: usize, run: i64, from: u64) -> Result<()> {
        let prefix = format!("part-w{worker:03}-{run}-");
        for entry in self.fs.list(dir).map_err(|e| io_error(dir, e))? {
            let sequence =
                entry.name.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(self.extension)?.strip_suffix('.'));
            if sequence.and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= from) {
                super::torn::trim(self.fs.as_ref(), dir, &entry.name)
                    .map_err(|e| io_error(&dir.join(&entry.name), e))?;
            }
        }
        Ok(())
    }

    /// Deletes the in-progress parts under `dir` (of partitions too): written after the
    /// restored checkpoint, they will be written again.
    fn remove_in_progress(&self, dir: &Path) -> Result<()> {
        for entry in self.fs.list(dir).map_err(|e| io_error(dir, e))? {
            let path = dir.join(&entry.name);
            if entry.is_dir {
                self.remove_in_progress(&path)?;
            } else if entry.name.starts_with(".part-") && entry.name.ends_with(".inprogress") {
                self.fs.remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
        }
        Ok(())
    }
}

impl Committer for PartCommitter {
    /// Renames the part to its published name and syncs the directory: once this
    /// returns, the output is published for good, power cut or not.
    fn commit(&self, committable: &[u8]) -> Result<()> {
        let PartCommittable::Publish { in_progress, published } = PartCommittable::decode(committable)? else {
            return Ok(());
        };
        let from = self.dir.join(&in_progress);
        let to = self.dir.join(&published);
        match self.fs.rename(&from, &to) {
            Ok(()) => {}
            // Committed before a crash: the rename already happened.
            Err(_) if !self.fs.exists(&from) && self.fs.exists(&to) => {}
            Err(e) => return Err(io_error(&from, e)),
        }
        let dir = to.parent().unwrap_or(&self.dir);
        self.fs.sync_dir(dir).map_err(|e| io_error(dir, e))
    }

    fn recover(&self, committables: &[Vec<u8>]) -> Result<()> {
        for committable in committables {
            match PartCommittable::decode(committable)? {
                PartCommittable::Publish { .. } => self.commit(committable)?,
                PartCommittable::MayFollow { worker, run, from } => {
                    self.trim_parts_after(&self.dir, worker, run, from)?
                }
                PartCommittable::MayFollowIn { partition, worker, run, from } => {
                    self.trim_parts_after(&self.dir.join(partition), worker, run, from)?
                }
            }
        }
        self.remove_in_progress(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_job_cuts_the_part_a_crash_tore_back_to_its_last_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonLinesSink::<u32>::directory(dir.path()).unwrap();
        let context =
            SinkContext { worker: 0, parallelism: 1, checkpointing: true, exactly_once: false, restored: false };
        let mut writer = sink.writer(&context).unwrap();
        writer.write_batch(vec![Record::new(0, 1), Record::new(0, 2)]).unwrap();
        let mut state = StateWriter::new(128);
        writer.pre_commit(1, &mut state).unwrap();
        let committables = state.finish().committables;
        let PartCommittable::MayFollow { worker, run, from } = decode(&committables[0]).unwrap() else {
            panic!("at least once, a checkpoint records the parts that may follow it")
        };
        // The crash: the next part got a line and a half to disk.
        let checkpointed = dir.path().join(PartWriter::straight_name(worker, run, from - 1, "jsonl"));
        let torn = dir.path().join(PartWriter::straight_name(worker, run, from, "jsonl"));
        std::fs::write(&torn, "3\n4").unwrap();
        sink.committer().unwrap().recover(&committables).unwrap();
        assert_eq!(std::fs::read_to_string(&torn).unwrap(), "3\n", "cut back to its last whole line");
        assert_eq!(std::fs::read_to_string(&checkpointed).unwrap(), "1\n2\n", "what the checkpoint covers is kept");
    }

    #[test]
    fn parts_of_a_partition_are_published_in_its_directory_and_strays_removed_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let files = LineFiles::directory(dir.path(), "csv").unwrap();
        let context =
            SinkContext { worker: 0, parallelism: 1, checkpointing: true, exactly_once: true, restored: false };
        let mut writer = files.partition_writer(&context, Path::new("dt=1/hm=2")).unwrap();
        writer.write(b"a,b\n").unwrap();
        let mut state = StateWriter::new(128);
        writer.pre_commit(7, &mut state).unwrap();
        let committables = state.finish().committables;
        // Written after the checkpoint, then the crash.
        writer.write(b"c,d\n").unwrap();
        writer.pre_commit(8, &mut StateWriter::new(128)).unwrap();
        let partition = dir.path().join("dt=1/hm=2");
        assert_eq!(std::fs::read_dir(&partition).unwrap().count(), 2, "two parts in progress");
        files.committer().unwrap().recover(&committables).unwrap();
        let names: Vec<String> =
            std::fs::read_dir(&partition).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(names, vec!["part-0000000007-w000.csv".to_string()], "published, and the later part removed");
        assert_eq!(std::fs::read_to_string(partition.join(&names[0])).unwrap(), "a,b\n");
    }

    #[test]
    fn a_part_pre_committed_by_a_checkpoint_of_the_earlier_format_is_still_published() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonLinesSink::<u32>::directory(dir.path()).unwrap();
        std::fs::write(dir.path().join(".part-w000-1-0.inprogress"), "1\n").unwrap();
        let earlier = EarlierPendingPart {
            in_progress: ".part-w000-1-0.inprogress".into(),
            published: "part-0000000001-w000.jsonl".into(),
        };
        let committable = sluice_runtime::checkpoint::encode(&earlier).unwrap();
        sink.committer().unwrap().recover(&[committable]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("part-0000000001-w000.jsonl")).unwrap(), "1\n");
    }

    #[test]
    fn a_resumed_job_cuts_the_single_file_back_to_its_last_whole_line_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "1\n2\n3").unwrap();
        let sink = JsonLinesSink::<u32>::new(&path).unwrap();
        let context =
            SinkContext { worker: 0, parallelism: 1, checkpointing: true, exactly_once: false, restored: true };
        let mut writer = sink.writer(&context).unwrap();
        writer.write_batch(vec![Record::new(0, 3)]).unwrap();
        writer.close().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n2\n3\n");
    }
}
