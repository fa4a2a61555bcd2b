//! `sluice run JOB.sql`: runs a job file of Flink SQL statements.
//!
//! Its `EXPLAIN` statements print their plans; its inserts (and queries by
//! themselves, which print their rows) run as one job. A bounded job ends when its
//! sources end; an unbounded one runs until Ctrl-C, which stops it with a savepoint
//! where it checkpoints (`--restore` resumes from it).

use crate::log::UserError;
use crate::progress::{self, ProgressMode};
use sluice::Job;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The arguments of `sluice run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The job file: SQL statements separated by `;`.
    file: PathBuf,
    /// Files of statements run first (tables, views, settings), as Flink's SQL client's
    /// `-i`; may be given more than once.
    #[arg(short, long)]
    init: Vec<PathBuf>,
    /// Workers (overrides the file's `parallelism.default`; default: one per core).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Where checkpoints go (overrides the file's `execution.checkpointing.dir`).
    #[arg(long)]
    checkpoint_dir: Option<String>,
    /// Resume from this checkpoint or savepoint directory.
    #[arg(long)]
    restore: Option<String>,
    /// Print the job's plan and operators, and exit without running it.
    #[arg(long)]
    explain: bool,
    /// When to show the progress line on standard error.
    #[arg(long, value_enum, default_value_t = ProgressMode::Never)]
    progress: ProgressMode,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    // The files one after another, each starting on a new line: an error's line is
    // mapped back to its file.
    let mut text = String::new();
    let mut starts: Vec<(u64, String)> = Vec::new();
    for path in args.init.iter().chain(std::iter::once(&args.file)) {
        let shown = path.display().to_string();
        let contents =
            std::fs::read_to_string(path).map_err(|e| UserError(format!("cannot read the job file {shown}: {e}")))?;
        starts.push((text.lines().count() as u64, shown));
        text.push_str(&contents);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    let compiled = sluice_sql::compile(&text, &sluice_sql::Functions::default()).map_err(|mut e| {
        let (start, file) = starts.iter().rev().find(|(start, _)| *start < e.line).cloned().unwrap_or_default();
        e.line -= start;
        UserError(format!("{file}: line {}, column {}: {}", e.line, e.column, e.message))
    })?;
    for explained in &compiled.explained {
        println!("{explained}");
    }
    let Some(graph) = compiled.graph else { return Ok(()) };
    let mut runtime = compiled.runtime;
    if let Some(parallelism) = args.parallelism {
        runtime.parallelism = parallelism.max(1);
    }
    if args.explain {
        print!("{}", graph.topology.explain(runtime.parallelism));
        return Ok(());
    }
    let mut checkpointing = compiled.checkpointing;
    if let Some(dir) = args.checkpoint_dir {
        match &mut checkpointing {
            Some(config) => config.location = dir,
            None => {
                return Err(UserError(
                    "--checkpoint-dir needs checkpointing on: SET 'execution.checkpointing.interval' in the job file"
                        .to_string(),
                )
                .into())
            }
        }
    }
    if let Some(restore) = args.restore {
        match &mut checkpointing {
            Some(config) => config.restore = Some(restore),
            None => return Err(UserError("--restore needs checkpointing on in the job file".to_string()).into()),
        }
    }
    let checkpoints = checkpointing.is_some();
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, interrupted.clone())?;
    let job = Job::new(graph, runtime).checkpointing(checkpointing).start()?;
    let watcher = job.control();
    let stopper = std::thread::spawn({
        let interrupted = interrupted.clone();
        move || {
            while !interrupted.load(Ordering::Relaxed) && !watcher.is_finished() {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !interrupted.load(Ordering::Relaxed) {
                return None;
            }
            let savepoint = checkpoints.then(|| watcher.savepoint());
            watcher.cancel();
            savepoint
        }
    });
    let result = progress::follow(job, args.progress);
    let savepoint = stopper.join().unwrap_or(None);
    match (result, savepoint) {
        (Err(sluice::Error::Cancelled), savepoint) => {
            match savepoint {
                Some(Ok(location)) => eprintln!("stopped with a savepoint: {location} (resume with --restore)"),
                Some(Err(error)) => eprintln!("stopped; the savepoint failed: {error}"),
                None => eprintln!("stopped"),
            }
            Ok(())
        }
        (Err(error), _) => Err(error.into()),
        (Ok(result), _) => {
            if args.progress != ProgressMode::Never {
                eprintln!("{}", progress::summary(&result));
            }
            Ok(())
        }
    }
}
