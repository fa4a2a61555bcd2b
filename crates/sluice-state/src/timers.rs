//! The timers of a keyed operator, in the configured backend.
//!
//! Timers fire in (time, key) order, so a queue must always know its earliest timer.
//! On the heap the queue is an ordered set. With the on-disk backend it keeps a head of
//! the earliest timers in memory, at most [`HEAD_CAPACITY`]: every timer due at or
//! before the head's horizon is in the head, every later one in the operator's on-disk
//! store, under a table of its own, keyed by time then key so that the store keeps them
//! in firing order. A timer registered beyond the horizon goes to the store; when the
//! head grows past its capacity its latest timers move there; when it runs empty the
//! next earliest timers are read back. Most jobs' timers are near (a window's end, a
//! record's timestamp) and never leave the head; a job with timers for millions of keys
//! keeps them on disk. Timers of one time move together (the store orders a time's
//! keys by their bytes, the head by their order), so a single time with more timers
//! than the head holds is read back whole.

use crate::disk::Kv;
use crate::Health;
use sluice_types::{Error, Key, Result, Timestamp, MAX_TIMESTAMP};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The most timers a queue on disk holds in memory.
pub const HEAD_CAPACITY: usize = 16 << 10;

/// Where the timers beyond the head are kept.
struct Spill {
    kv: Arc<dyn Kv>,
    health: Health,
    /// The table prefix of this queue's entries.
    prefix: [u8; 2],
    /// Timers written to the store and not read back or deleted since (at most: a
    /// timer registered twice counts twice).
    stored: usize,
}

/// A queue of timers, each a time and a key, fired in (time, key) order.
pub struct KeyedTimers<K> {
    /// Every timer due at or before `horizon`.
    head: BTreeSet<(Timestamp, K)>,
    horizon: Timestamp,
    /// `None`: on the heap, everything is in the head.
    spill: Option<Spill>,
}

impl<K: Ord> Default for KeyedTimers<K> {
    fn default() -> Self {
        KeyedTimers { head: BTreeSet::new(), horizon: MAX_TIMESTAMP, spill: None }
    }
}

/// A time as bytes that sort as the times do.
fn time_bytes(time: Timestamp) -> [u8; 8] {
    ((time as u64) ^ (1 << 63)).to_be_bytes()
}

impl<K: Key> KeyedTimers<K> {
    /// A queue whose timers beyond its head go to `kv`, under the table `table`, which
    /// no state of the store uses.
    pub(crate) fn on_disk(kv: Arc<dyn Kv>, health: Health, table: u16) -> Self {
        let prefix = table.to_be_bytes();
        kv.keep_ordered(prefix);
        KeyedTimers {
            head: BTreeSet::new(),
            horizon: MAX_TIMESTAMP,
            spill: Some(Spill { kv, health, prefix, stored: 0 }),
        }
    }

    fn stored_key(prefix: [u8; 2], time: Timestamp, key: &K) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(24);
        bytes.extend_from_slice(&prefix);
        bytes.extend_from_slice(&time_bytes(time));
        postcard::to_extend(key, bytes).map_err(|e| Error::checkpoint("timers", e.to_string()))
    }

    fn parse_stored(stored: &[u8]) -> Result<(Timestamp, K)> {
        let time = stored.get(2..10).ok_or_else(|| Error::checkpoint("timers", "a stored timer is too short"))?;
        let time = (u64::from_be_bytes(time.try_into().expect("invariant: 8 bytes")) ^ (1 << 63)) as Timestamp;
        let key = postcard::from_bytes(&stored[10..]).map_err(|e| Error::checkpoint("timers", e.to_string()))?;
        Ok((time, key))
    }

    /// Registers a timer; registering the same one twice keeps one.
    pub fn register(&mut self, time: Timestamp, key: K) {
        if time <= self.horizon {
            self.head.insert((time, key));
            if self.spill.is_some() && self.head.len() > HEAD_CAPACITY {
                self.spill_latest();
            }
            return;
        }
        if let Some(spill) = &mut self.spill {
            let written = Self::stored_key(spill.prefix, time, &key).and_then(|stored| spill.kv.put(&stored, &[]));
            if spill.health.ok(written).is_some() {
                spill.stored += 1;
            }
        }
    }

    /// Removes a timer, if registered.
    pub fn delete(&mut self, time: Timestamp, key: &K)
    where
        K: Clone,
    {
        if time <= self.horizon {
            self.head.remove(&(time, key.clone()));
        } else if let Some(spill) = &mut self.spill {
            let deleted = Self::stored_key(spill.prefix, time, key).and_then(|stored| spill.kv.delete(&stored));
            spill.health.ok(deleted);
        }
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<(Timestamp, K)> {
        if self.head.is_empty() && self.spill.as_ref().is_some_and(|s| s.stored > 0) {
            self.read_back();
        }
        match self.head.first() {
            Some((time, _)) if *time <= now => self.head.pop_first(),
            _ => None,
        }
    }

    /// Moves the latest half of the head to the store, whole times at once, and lowers
    /// the horizon below them.
    fn spill_latest(&mut self) {
        let Some(spill) = &mut self.spill else { return };
        let mut lowest_moved = None;
        while let Some((time, _)) = self.head.last() {
            if self.head.len() <= HEAD_CAPACITY / 2 && lowest_moved != Some(*time) {
                break;
            }
            let (time, key) = self.head.pop_last().expect("invariant: not empty");
            let written = Self::stored_key(spill.prefix, time, &key).and_then(|stored| spill.kv.put(&stored, &[]));
            if spill.health.ok(written).is_some() {
                spill.stored += 1;
            }
            lowest_moved = Some(time);
        }
        if let Some(time) = lowest_moved {
            self.horizon = time.saturating_sub(1);
        }
    }

    /// Reads the earliest timers back from the store into the empty head, whole times at
    /// once, and raises the horizon to the last of them.
    fn read_back(&mut self) {
        let Some(spill) = &mut self.spill else { return };
        let mut read: Vec<(Vec<u8>, Timestamp, K)> = Vec::new();
        let mut exhausted = true;
        let scanned = spill.kv.scan_prefix(&spill.prefix, &mut |stored, _| {
            let (time, key) = Self::parse_stored(stored)?;
            if read.len() >= HEAD_CAPACITY / 2 && read.last().is_some_and(|(_, last, _)| *last != time) {
                exhausted = false;
                return Ok(false);
            }
            read.push((stored.to_vec(), time, key));
            Ok(true)
        });
        if spill.health.ok(scanned).is_none() {
            return;
        }
        self.horizon = match (exhausted, read.last()) {
            (false, Some((_, time, _))) => *time,
            _ => MAX_TIMESTAMP,
        };
        spill.stored = match exhausted {
            true => 0,
            false => spill.stored.saturating_sub(read.len()).max(1),
        };
        for (stored, time, key) in read {
            spill.health.ok(spill.kv.delete(&stored));
            self.head.insert((time, key));
        }
    }

    /// Calls `f` with every pending timer, the head's in firing order, then the
    /// store's.
    pub fn for_each(&self, mut f: impl FnMut(Timestamp, &K) -> Result<()>) -> Result<()> {
        for (time, key) in &self.head {
            f(*time, key)?;
        }
        if let Some(spill) = &self.spill {
            spill.kv.scan_prefix(&spill.prefix, &mut |stored, _| {
                let (time, key) = Self::parse_stored(stored)?;
                f(time, &key)?;
                Ok(true)
            })?;
        }
        Ok(())
    }

    /// How many timers are in memory.
    pub fn in_memory(&self) -> usize {
        self.head.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty() && self.spill.as_ref().is_none_or(|s| s.stored == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DiskBackend;

    fn drain(timers: &mut KeyedTimers<u64>, now: Timestamp) -> Vec<(Timestamp, u64)> {
        std::iter::from_fn(|| timers.pop_due(now)).collect()
    }

    #[test]
    fn timers_on_disk_fire_in_the_order_of_the_heap_and_only_the_head_stays_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let kv = DiskBackend::new(dir.path()).memory_budget(8 << 20).open().unwrap();
        let mut disk = KeyedTimers::on_disk(kv, Health::default(), 0xFF00);
        let mut heap = KeyedTimers::default();
        // Times in scrambled order, many keys at equal times, some timers twice.
        for i in 0..100_000u64 {
            let time = ((i * 7_919) % 20_011) as Timestamp - 10_000;
            for timers in [&mut disk, &mut heap] {
                timers.register(time, i % 997);
            }
        }
        for i in (0..100_000u64).step_by(10) {
            let time = ((i * 7_919) % 20_011) as Timestamp - 10_000;
            disk.delete(time, &(i % 997));
            heap.delete(time, &(i % 997));
        }
        assert!(disk.in_memory() <= HEAD_CAPACITY, "{} timers in memory", disk.in_memory());
        assert!(disk.spill.as_ref().unwrap().stored > HEAD_CAPACITY, "timers went to the store");
        let mut snapshot = Vec::new();
        disk.for_each(|time, key| {
            snapshot.push((time, *key));
            Ok(())
        })
        .unwrap();
        snapshot.sort_unstable();
        let expected: Vec<(Timestamp, u64)> = heap.head.iter().copied().collect();
        assert_eq!(snapshot, expected, "the snapshot holds every pending timer once");
        assert_eq!(drain(&mut disk, -5_000), drain(&mut heap, -5_000));
        // Registered after some fired: before, inside and beyond the head.
        for (time, key) in [(-6_000, 1), (-4_000, 2), (9_000, 3)] {
            disk.register(time, key);
            heap.register(time, key);
        }
        let (from_disk, from_heap) = (drain(&mut disk, MAX_TIMESTAMP), drain(&mut heap, MAX_TIMESTAMP));
        assert!(from_heap.len() > 50_000);
        assert_eq!(from_disk, from_heap);
        assert!(disk.is_empty());
    }
}
