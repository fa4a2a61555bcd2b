//! Which operator a worker thread is running, so that a panic names it.
//!
//! Operators mark themselves as running once per call (per batch, watermark or
//! barrier), which costs one thread-local write. A panic unwinds without restoring the
//! mark, so the worker that catches it reads the innermost operator that was running.

use std::cell::Cell;

const NONE: usize = usize::MAX;

thread_local! {
    static RUNNING: Cell<usize> = const { Cell::new(NONE) };
}

/// Marks an operator as running on this thread until dropped.
#[must_use = "the operator counts as running only while this lives"]
pub struct Running {
    previous: usize,
}

impl Running {
    /// Marks `operator_id` as running.
    #[inline]
    pub fn enter(operator_id: usize) -> Running {
        Running { previous: RUNNING.replace(operator_id) }
    }
}

impl Drop for Running {
    #[inline]
    fn drop(&mut self) {
        // While unwinding, the panicking operator stays marked for the worker to read.
        if !std::thread::panicking() {
            RUNNING.set(self.previous);
        }
    }
}

/// The operator running on this thread when it panicked, if any; clears the mark.
pub(crate) fn take_running() -> Option<usize> {
    Some(RUNNING.replace(NONE)).filter(|&id| id != NONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_leaves_the_innermost_operator_marked() {
        let outcome = std::panic::catch_unwind(|| {
            let _outer = Running::enter(1);
            {
                let _inner = Running::enter(2);
            }
            let _inner = Running::enter(3);
            panic!("boom");
        });
        assert!(outcome.is_err());
        assert_eq!(take_running(), Some(3));
        assert_eq!(take_running(), None);
    }

    #[test]
    fn returning_restores_the_caller() {
        let _outer = Running::enter(7);
        drop(Running::enter(8));
        assert_eq!(RUNNING.get(), 7);
    }
}
