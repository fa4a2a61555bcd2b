//! How a sleeping worker is woken when there is work for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

/// One per worker thread: rung when a batch arrives on one of its channels, or when a
/// channel it was waiting to send into has room again.
#[derive(Debug, Default)]
pub struct Doorbell {
    thread: OnceLock<Thread>,
    rung: AtomicBool,
}

impl Doorbell {
    /// Binds the doorbell to the calling thread, the worker it wakes.
    pub fn bind_current_thread(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Wakes the worker if it sleeps, or keeps it from sleeping next time.
    pub fn ring(&self) {
        if !self.rung.swap(true, Ordering::AcqRel) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
    }

    /// Sleeps until rung or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        if !self.rung.swap(false, Ordering::AcqRel) {
            std::thread::park_timeout(timeout);
            self.rung.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_ring_before_wait_is_not_lost() {
        let bell = Doorbell::default();
        bell.bind_current_thread();
        bell.ring();
        let started = Instant::now();
        bell.wait(Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn ring_wakes_a_sleeping_worker() {
        let bell = Arc::new(Doorbell::default());
        let worker_bell = bell.clone();
        let worker = std::thread::spawn(move || {
            worker_bell.bind_current_thread();
            worker_bell.wait(Duration::from_secs(30));
        });
        while bell.thread.get().is_none() {
            std::thread::yield_now();
        }
        bell.ring();
        worker.join().expect("worker wakes");
    }
}
