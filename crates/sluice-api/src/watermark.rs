//! Watermark strategies and the operator that applies them.

use crate::graph::Batch;
use sluice_runtime::checkpoint::{Barrier, InstanceState, Participant};
use sluice_runtime::{Control, Output, Push};
use sluice_types::{Result, Timestamp, MIN_TIMESTAMP};
use std::marker::PhantomData;

/// Reads a record's event time.
pub trait TimestampAssigner<T>: Clone + Send + 'static {
    /// The event time of `value`; `current` is the timestamp the record already has.
    fn timestamp(&self, value: &T, current: Timestamp) -> Timestamp;
}

/// Keeps the timestamp the source gave each record.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeepTimestamp;

impl<T> TimestampAssigner<T> for KeepTimestamp {
    fn timestamp(&self, _value: &T, current: Timestamp) -> Timestamp {
        current
    }
}

impl<T, F: Fn(&T) -> Timestamp + Clone + Send + 'static> TimestampAssigner<T> for F {
    fn timestamp(&self, value: &T, _current: Timestamp) -> Timestamp {
        self(value)
    }
}

/// How event time is read and how far the watermark trails it.
///
/// ```
/// # use sluice_api::*;
/// #[derive(Clone)]
/// struct Tx { time: i64 }
/// let strategy = WatermarkStrategy::bounded_out_of_orderness(seconds(30))
///     .with_timestamp(|tx: &Tx| tx.time)
///     .with_idleness(seconds(5));
/// ```
pub struct WatermarkStrategy<T, A = KeepTimestamp> {
    max_out_of_orderness: i64,
    idleness: Option<i64>,
    assigner: A,
    _type: PhantomData<fn(&T)>,
}

impl<T, A: Clone> Clone for WatermarkStrategy<T, A> {
    fn clone(&self) -> Self {
        WatermarkStrategy {
            max_out_of_orderness: self.max_out_of_orderness,
            idleness: self.idleness,
            assigner: self.assigner.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> WatermarkStrategy<T> {
    /// Records may arrive up to `delay` milliseconds behind the newest one seen; the
    /// watermark is the highest timestamp seen minus `delay` minus one.
    pub fn bounded_out_of_orderness(delay: i64) -> Self {
        WatermarkStrategy {
            max_out_of_orderness: delay.max(0),
            idleness: None,
            assigner: KeepTimestamp,
            _type: PhantomData,
        }
    }

    /// Timestamps never go back.
    pub fn monotonous() -> Self {
        Self::bounded_out_of_orderness(0)
    }
}

impl<T, A> WatermarkStrategy<T, A> {
    /// Reads event time from the record with `assigner`.
    pub fn with_timestamp<B: TimestampAssigner<T>>(self, assigner: B) -> WatermarkStrategy<T, B> {
        WatermarkStrategy {
            max_out_of_orderness: self.max_out_of_orderness,
            idleness: self.idleness,
            assigner,
            _type: PhantomData,
        }
    }

    /// Marks the input idle after `timeout` milliseconds (processing time) without a
    /// record, so it does not hold back the watermark of operators downstream.
    pub fn with_idleness(mut self, timeout: i64) -> Self {
        self.idleness = Some(timeout);
        self
    }
}

/// Assigns timestamps and emits watermarks, record-exact: whenever a record is at or
/// behind the watermark its predecessors imply, that watermark is emitted before it, so
/// which records are late does not depend on how the input was batched.
pub(crate) struct WatermarkAssigner<T, A> {
    strategy: WatermarkStrategy<T, A>,
    out: Output<Batch<T>>,
    max_timestamp: Timestamp,
    emitted: Timestamp,
    last_record_at: Timestamp,
    idle: bool,
    participant: Participant,
}

impl<T: Send + 'static, A: TimestampAssigner<T>> WatermarkAssigner<T, A> {
    /// An assigner that restores the highest timestamp seen from the job's checkpoint,
    /// so that it resumes with the watermark it had (and records late before a crash
    /// are late after it).
    pub fn new(strategy: WatermarkStrategy<T, A>, out: Output<Batch<T>>, participant: Participant) -> Result<Self> {
        let max_timestamp = match participant.restored() {
            // The lowest of the assigners taken over: no record is late that was not.
            Some(state) => state.clocks::<Timestamp>()?.into_iter().min().unwrap_or(MIN_TIMESTAMP),
            None => MIN_TIMESTAMP,
        };
        Ok(WatermarkAssigner {
            strategy,
            out,
            max_timestamp,
            emitted: MIN_TIMESTAMP,
            last_record_at: MIN_TIMESTAMP,
            idle: false,
            participant,
        })
    }

    fn snapshot(&self, barrier: Option<Barrier>) -> Result<Option<InstanceState>> {
        if !self.participant.enabled() {
            return Ok(None);
        }
        let mut state = self.participant.writer(barrier);
        state.clock(&self.max_timestamp)?;
        Ok(Some(state.finish()))
    }

    fn implied(&self) -> Timestamp {
        if self.max_timestamp == MIN_TIMESTAMP {
            MIN_TIMESTAMP
        } else {
            self.max_timestamp.saturating_sub(self.strategy.max_out_of_orderness).saturating_sub(1)
        }
    }

    fn emit_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        if watermark > self.emitted {
            self.emitted = watermark;
            self.out.control(Control::Watermark(watermark))?;
        }
        Ok(())
    }
}

impl<T: Send + 'static, A: TimestampAssigner<T>> Push<Batch<T>> for WatermarkAssigner<T, A> {
    fn push(&mut self, mut batch: Batch<T>) -> Result<()> {
        let _running = self.out.metrics().enter();
        self.out.metrics().add_in(batch.len());
        self.idle = false;
        self.last_record_at = MIN_TIMESTAMP;
        // Timestamps are set in place; the batch is cut only before a record that is at
        // or behind the watermark its predecessors imply (rare with a fitting bound).
        let mut i = 0;
        while i < batch.len() {
            let record = &mut batch[i];
            let timestamp = self.strategy.assigner.timestamp(&record.value, record.timestamp);
            record.timestamp = timestamp;
            let implied = self.implied();
            if timestamp <= implied && implied > self.emitted {
                let rest = batch.split_off(i);
                self.out.emit(std::mem::replace(&mut batch, rest))?;
                self.emit_watermark(implied)?;
                i = 0;
            }
            self.max_timestamp = self.max_timestamp.max(timestamp);
            i += 1;
        }
        self.out.emit(batch)?;
        let implied = self.implied();
        self.emit_watermark(implied)
    }

    fn control(&mut self, control: Control) -> Result<()> {
        match control {
            // Only the final watermark of a bounded source passes: upstream watermarks
            // are replaced by the ones this strategy generates.
            Control::Watermark(watermark) => {
                if watermark == sluice_types::MAX_TIMESTAMP {
                    self.emit_watermark(watermark)?;
                }
                return Ok(());
            }
            Control::Idle => self.idle = true,
            Control::Tick(now) => {
                if let Some(timeout) = self.strategy.idleness {
                    if self.last_record_at == MIN_TIMESTAMP {
                        self.last_record_at = now;
                    } else if !self.idle && now - self.last_record_at >= timeout {
                        self.idle = true;
                        self.out.control(Control::Idle)?;
                    }
                }
            }
            Control::End => {
                if let Some(state) = self.snapshot(None)? {
                    self.participant.finished(state);
                }
            }
            Control::Barrier(barrier) => {
                let started = std::time::Instant::now();
                if let Some(state) = self.snapshot(Some(barrier))? {
                    self.participant.ack(barrier.id, state, started.elapsed());
                }
            }
        }
        self.out.control(control)
    }

    fn backlogged(&mut self) -> Result<bool> {
        self.out.backlogged()
    }
}

/// Watermarks generated per split (a partition of the log or of Kafka) inside a source
/// reader that holds several: each split's watermark trails its own highest event
/// time, and the reader's is the lowest over the splits that are not idle. One split
/// that runs ahead cannot make the others' records late, as it would if the splits
/// were mixed before one watermark was generated downstream.
///
/// A reader calls [`SplitWatermarks::cuts_before`] before handing out each record and
/// ends its batch there when it says so, then [`SplitWatermarks::observe`]; the
/// driver reads [`SplitWatermarks::advance`] after each poll.
pub struct SplitWatermarks<T, A = KeepTimestamp> {
    strategy: WatermarkStrategy<T, A>,
    splits: Vec<SplitClock>,
    emitted: Timestamp,
}

#[derive(Clone, Copy, Debug)]
struct SplitClock {
    max_timestamp: Timestamp,
    last_record: std::time::Instant,
    idle: bool,
}

impl<T, A: TimestampAssigner<T>> SplitWatermarks<T, A> {
    /// The clocks of splits whose highest event times so far are `max_timestamps`
    /// (from a checkpoint; [`MIN_TIMESTAMP`] for a new split).
    pub fn new(strategy: WatermarkStrategy<T, A>, max_timestamps: &[Timestamp]) -> Self {
        let now = std::time::Instant::now();
        let splits = max_timestamps
            .iter()
            .map(|&max_timestamp| SplitClock { max_timestamp, last_record: now, idle: false })
            .collect();
        SplitWatermarks { strategy, splits, emitted: MIN_TIMESTAMP }
    }

    /// The event time of `value`, whose source gave it `current`.
    pub fn timestamp(&self, value: &T, current: Timestamp) -> Timestamp {
        self.strategy.assigner.timestamp(value, current)
    }

    /// The reader's watermark now: the lowest of the active splits'.
    pub fn current(&self) -> Timestamp {
        let delay = self.strategy.max_out_of_orderness;
        self.splits
            .iter()
            .filter(|split| !split.idle)
            .map(|split| match split.max_timestamp {
                MIN_TIMESTAMP => MIN_TIMESTAMP,
                max => max.saturating_sub(delay).saturating_sub(1),
            })
            .min()
            .unwrap_or(self.emitted)
    }

    /// Whether a batch must end before a record at `timestamp`: the watermark the
    /// records handed out so far imply is at or past it and was not sent yet. Sent
    /// first, it makes the record late whatever the batching (a record can only be
    /// late if it is further behind its own split's newest than the strategy allows,
    /// or its split was idle).
    pub fn cuts_before(&self, timestamp: Timestamp) -> bool {
        let now = self.current();
        now > self.emitted && timestamp <= now
    }

    /// A record of `split` at `timestamp` was handed out.
    pub fn observe(&mut self, split: usize, timestamp: Timestamp) {
        let clock = &mut self.splits[split];
        clock.max_timestamp = clock.max_timestamp.max(timestamp);
        clock.last_record = std::time::Instant::now();
        clock.idle = false;
    }

    /// Marks splits without a record for the strategy's idleness timeout idle (they stop
    /// holding the watermark back); returns whether every split is idle.
    pub fn check_idleness(&mut self) -> bool {
        if let Some(timeout) = self.strategy.idleness {
            let timeout = std::time::Duration::from_millis(timeout.max(0) as u64);
            for split in &mut self.splits {
                split.idle |= split.last_record.elapsed() >= timeout;
            }
        }
        !self.splits.is_empty() && self.splits.iter().all(|split| split.idle)
    }

    /// The watermark to send on, if it advanced since the last one sent.
    pub fn advance(&mut self) -> Option<Timestamp> {
        let current = self.current();
        (current > self.emitted).then(|| {
            self.emitted = current;
            current
        })
    }

    /// The watermark `split` alone implies (its newest event time less the bound).
    pub fn split_watermark(&self, split: usize) -> Timestamp {
        match self.splits[split].max_timestamp {
            MIN_TIMESTAMP => MIN_TIMESTAMP,
            max => max.saturating_sub(self.strategy.max_out_of_orderness).saturating_sub(1),
        }
    }

    /// The watermark a record at `timestamp` would make its split imply.
    pub fn implied_by(&self, timestamp: Timestamp) -> Timestamp {
        timestamp.saturating_sub(self.strategy.max_out_of_orderness).saturating_sub(1)
    }

    /// Whether `split` is idle.
    pub fn is_idle(&self, split: usize) -> bool {
        self.splits[split].idle
    }

    /// The highest event time of `split` so far, for a checkpoint.
    pub fn max_timestamp(&self, split: usize) -> Timestamp {
        self.splits[split].max_timestamp
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn the_watermark_is_the_lowest_of_the_active_splits_and_an_idle_one_stops_holding_it() {
        let strategy = WatermarkStrategy::<u32>::bounded_out_of_orderness(10).with_idleness(0);
        let mut clocks = SplitWatermarks::new(strategy, &[MIN_TIMESTAMP, 500]);
        assert_eq!(clocks.advance(), None, "a split with no record yet holds it at the start");
        clocks.observe(0, 1_000);
        assert!(clocks.cuts_before(400), "a record behind the new watermark waits for it to be sent");
        assert!(!clocks.cuts_before(2_000));
        assert_eq!(clocks.advance(), Some(489), "the lower split's, restored from a checkpoint");
        assert!(!clocks.cuts_before(400), "once sent, the record goes out after it, late");
        // With a zero timeout both splits go idle at once; a record wakes its split.
        assert!(clocks.check_idleness());
        clocks.observe(0, 2_000);
        assert_eq!(clocks.advance(), Some(1_989), "split 1 is idle: split 0 alone");
        assert_eq!(clocks.max_timestamp(1), 500);
    }
}
