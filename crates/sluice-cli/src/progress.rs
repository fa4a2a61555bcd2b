//! The live progress line of a running job, and its closing summary.

use sluice::{JobHandle, JobResult, JobSnapshot, OperatorKind, MIN_TIMESTAMP};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// When to show the progress line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// On a terminal, redrawn in place.
    Auto,
    /// Always, one line every 200 ms and a last one at the end (for logs and tests).
    Always,
    /// Never.
    Never,
}

/// Waits for `job`, showing its progress on standard error as `mode` says.
pub fn follow(job: JobHandle, mode: ProgressMode) -> sluice::Result<JobResult> {
    let terminal = std::io::stderr().is_terminal();
    let redraw = mode == ProgressMode::Auto && terminal;
    let lines = mode == ProgressMode::Always;
    let mut last = (Instant::now(), 0u64);
    let mut show = |snapshot: &JobSnapshot, elapsed: Duration| {
        let now = Instant::now();
        let read = snapshot.source_records();
        let rate = read.saturating_sub(last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, read);
        if redraw {
            eprint!("\r\x1b[2K{}", line(snapshot, rate, elapsed));
        } else if lines {
            eprintln!("{}", line(snapshot, rate, elapsed));
        }
        let _ = std::io::stderr().flush();
    };
    while !job.wait_timeout(Duration::from_millis(200)) {
        show(&job.snapshot(), job.elapsed());
    }
    if redraw {
        eprint!("\r\x1b[2K");
    }
    let result = job.join()?;
    if lines {
        show(&result.metrics, result.elapsed);
    }
    Ok(result)
}

/// Waits for every one of `jobs`, showing a progress line per job (its name first) on
/// standard error as `mode` says, and stops a job (see [`JobHandle::stop`]) once
/// `stop_now` says so for it; returns their results in order.
pub fn follow_all(
    jobs: Vec<(String, JobHandle)>,
    mode: ProgressMode,
    mut stop_now: impl FnMut(usize, &JobHandle) -> bool,
) -> Vec<sluice::Result<JobResult>> {
    let terminal = std::io::stderr().is_terminal();
    let redraw = mode == ProgressMode::Auto && terminal;
    let lines = mode == ProgressMode::Always;
    let width = jobs.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let names: Vec<String> = jobs.iter().map(|(name, _)| name.clone()).collect();
    let mut running: Vec<Option<JobHandle>> = jobs.into_iter().map(|(_, job)| Some(job)).collect();
    let mut results: Vec<Option<sluice::Result<JobResult>>> = names.iter().map(|_| None).collect();
    let mut shown: Vec<String> = names.iter().map(|_| String::new()).collect();
    let mut last: Vec<(Instant, u64)> = names.iter().map(|_| (Instant::now(), 0)).collect();
    let mut drawn = false;
    loop {
        for i in 0..running.len() {
            let Some(job) = &running[i] else { continue };
            let now = Instant::now();
            let snapshot = job.snapshot();
            let read = snapshot.source_records();
            let rate = read.saturating_sub(last[i].1) as f64 / now.duration_since(last[i].0).as_secs_f64().max(1e-9);
            last[i] = (now, read);
            shown[i] = line(&snapshot, rate, job.elapsed());
            if job.is_finished() || stop_now(i, job) {
                let job = running[i].take().expect("invariant: checked above");
                let stop = !job.is_finished();
                let result = if stop { job.stop() } else { job.join() };
                shown[i] = match &result {
                    Ok(result) => format!("{}  done", line(&result.metrics, 0.0, result.elapsed)),
                    Err(error) => format!("failed: {error}"),
                };
                results[i] = Some(result);
            }
        }
        if redraw || lines {
            if redraw && drawn {
                eprint!("\x1b[{}A", names.len());
            }
            for (name, shown) in names.iter().zip(&shown) {
                let clear = if redraw { "\r\x1b[2K" } else { "" };
                eprintln!("{clear}{name:<width$}  {shown}");
            }
            drawn = true;
            let _ = std::io::stderr().flush();
        }
        if running.iter().all(Option::is_none) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    results.into_iter().map(|result| result.expect("invariant: every job ended")).collect()
}

/// One line: records in and out, rate, watermark, dead letters.
pub fn line(snapshot: &JobSnapshot, rate: f64, elapsed: Duration) -> String {
    format!(
        "{:>6.1}s  in {}  out {}  {}/s  watermark {}  dead letters {}",
        elapsed.as_secs_f64(),
        count(snapshot.source_records()),
        count(snapshot.sink_records()),
        count(rate as u64),
        watermark(snapshot.sink_watermark()),
        snapshot.dead_letters(),
    )
}

/// The closing summary of a finished job.
pub fn summary(result: &JobResult) -> String {
    let read = result.metrics.source_records();
    let seconds = result.elapsed.as_secs_f64().max(1e-9);
    let operators = result.metrics.operators.iter().filter(|o| o.kind == OperatorKind::Operator).count();
    format!(
        "done: {} events in {:.2}s ({}/s), {} results, {} dead letters, {} operators",
        count(read),
        seconds,
        count((read as f64 / seconds) as u64),
        count(result.metrics.sink_records()),
        result.metrics.dead_letters(),
        operators,
    )
}

fn count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

fn watermark(w: i64) -> String {
    match w {
        MIN_TIMESTAMP => "-".to_string(),
        i64::MAX => "end".to_string(),
        _ => {
            let seconds = w.div_euclid(1000);
            let (h, m, s) = ((seconds / 3600) % 24, (seconds / 60) % 60, seconds % 60);
            format!("{h:02}:{m:02}:{s:02}.{:03}", w.rem_euclid(1000))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_short() {
        assert_eq!(count(12), "12");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(count(12_345_678), "12.35M");
        assert_eq!(count(2_000_000), "2.00M");
    }

    #[test]
    fn watermark_shows_time_of_day() {
        assert_eq!(watermark(MIN_TIMESTAMP), "-");
        assert_eq!(watermark(3_723_004), "01:02:03.004");
    }
}
