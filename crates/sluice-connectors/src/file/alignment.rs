//! Keeps the readers of one file source together in the input.
//!
//! Each reader reads its own blocks at its own pace. Left alone, a faster worker runs
//! ahead of a slower one, and since a keyed operator's watermark is the least of its
//! inputs', every record the faster one reads waits in keyed state (a buffered
//! transaction, an open window) until the slower one catches up: the state grows with
//! the distance between them, not with the job. Input files are usually in time order
//! (logs, exports), so keeping the readers close in the file keeps their event times
//! close. A reader does not open a block that starts more than one round of blocks
//! beyond the block of the reader furthest behind; it reports itself pending instead,
//! and the worker runs its other tasks, or sleeps until a reader behind moves on and
//! wakes it. The reader furthest behind is never held, so the job always moves on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Thread;

/// Where each reader of a source is: the input position (bytes before its file, plus
/// the offset in it) of the block it reads or opens next, or `u64::MAX` once done.
pub(super) struct Alignment {
    positions: Vec<AtomicU64>,
    claimed: Vec<AtomicBool>,
    /// How far beyond the reader furthest behind a reader may open a block.
    slack: u64,
    /// The threads of readers held back, woken when a reader moves on.
    waiting: Mutex<Vec<Thread>>,
    /// Whether `waiting` may have threads: moving on costs no lock otherwise.
    anyone_waiting: AtomicBool,
}

impl Alignment {
    /// Whether the reader of `worker` may open the block at `position`; records that it
    /// is there.
    /// When it may not, its thread is woken (unparked: a worker sleeps parked) once
    /// another reader moves on.
    pub(super) fn may_open(&self, worker: usize, position: u64) -> bool {
        self.move_to(worker, position);
        if position <= self.behind().saturating_add(self.slack) {
            return true;
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.push(std::thread::current());
        self.anyone_waiting.store(true, Ordering::SeqCst);
        // A reader may have moved on since: look again, now that it would wake us.
        position <= self.behind().saturating_add(self.slack)
    }

    /// The reader of `worker` has nothing more to read.
    pub(super) fn done(&self, worker: usize) {
        self.move_to(worker, u64::MAX);
    }

    fn behind(&self) -> u64 {
        self.positions.iter().map(|p| p.load(Ordering::SeqCst)).min().unwrap_or(u64::MAX)
    }

    fn move_to(&self, worker: usize, position: u64) {
        if self.positions[worker].swap(position, Ordering::SeqCst) == position {
            return;
        }
        if self.anyone_waiting.swap(false, Ordering::SeqCst) {
            let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|e| e.into_inner()));
            waiting.iter().for_each(Thread::unpark);
        }
    }
}

/// Hands the readers of one run of a job the same [`Alignment`]: the first reader of
/// each worker joins the current one, and a worker's second reader (the job was
/// started again) starts a new one.
#[derive(Clone, Default)]
pub(super) struct Aligner {
    current: Arc<Mutex<Option<Arc<Alignment>>>>,
}

impl Aligner {
    pub(super) fn join(&self, worker: usize, parallelism: usize, block_size: u64) -> Arc<Alignment> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(alignment) = current.as_ref().filter(|a| a.positions.len() == parallelism) {
            if !alignment.claimed[worker].swap(true, Ordering::Relaxed) {
                return alignment.clone();
            }
        }
        let alignment = Arc::new(Alignment {
            positions: (0..parallelism).map(|_| AtomicU64::new(0)).collect(),
            claimed: (0..parallelism).map(|w| AtomicBool::new(w == worker)).collect(),
            slack: block_size.saturating_mul(parallelism as u64),
            waiting: Mutex::default(),
            anyone_waiting: AtomicBool::new(false),
        });
        *current = Some(alignment.clone());
        alignment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_waits_for_the_one_furthest_behind_and_that_one_never_waits() {
        let aligner = Aligner::default();
        let (a, b) = (aligner.join(0, 2, 100), aligner.join(1, 2, 100));
        assert!(Arc::ptr_eq(&a, &b), "one run's readers share one alignment");
        assert!(a.may_open(0, 0));
        assert!(b.may_open(1, 100));
        assert!(b.may_open(1, 200), "one round ahead");
        assert!(!b.may_open(1, 300), "more than a round ahead of worker 0");
        assert!(a.may_open(0, 150), "the reader furthest behind goes on");
        assert!(b.may_open(1, 300));
        a.done(0);
        assert!(b.may_open(1, 10_000), "a reader that is done holds nobody back");
        let again = aligner.join(0, 2, 100);
        assert!(!Arc::ptr_eq(&a, &again), "a new run starts a new alignment");
    }
}
