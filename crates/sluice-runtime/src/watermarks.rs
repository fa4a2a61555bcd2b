//! The event-time clock of an operator with several input channels.

use sluice_types::{Timestamp, MAX_TIMESTAMP, MIN_TIMESTAMP};

#[derive(Clone, Copy, Debug)]
struct ChannelClock {
    watermark: Timestamp,
    idle: bool,
    ended: bool,
}

/// Tracks each input channel's watermark; the operator's watermark is the minimum over
/// the channels that are neither idle nor ended, and it never goes back.
#[derive(Debug)]
pub struct WatermarkTracker {
    channels: Vec<ChannelClock>,
    current: Timestamp,
    all_idle: bool,
}

impl WatermarkTracker {
    /// A tracker over `channels` inputs, all at the minimum timestamp.
    pub fn new(channels: usize) -> Self {
        WatermarkTracker {
            channels: vec![ChannelClock { watermark: MIN_TIMESTAMP, idle: false, ended: false }; channels],
            current: MIN_TIMESTAMP,
            all_idle: false,
        }
    }

    /// The operator's current watermark.
    pub fn current(&self) -> Timestamp {
        self.current
    }

    /// Whether every live input is idle.
    pub fn is_idle(&self) -> bool {
        self.all_idle
    }

    /// Whether channel `i` has ended.
    pub fn is_ended(&self, i: usize) -> bool {
        self.channels.get(i).is_some_and(|c| c.ended)
    }

    /// Data arrived on channel `i`: it is active again.
    pub fn on_data(&mut self, i: usize) {
        if let Some(channel) = self.channels.get_mut(i) {
            channel.idle = false;
        }
        self.all_idle = false;
    }

    /// Channel `i` sent a watermark; returns the operator's new watermark if it advanced.
    pub fn on_watermark(&mut self, i: usize, watermark: Timestamp) -> Option<Timestamp> {
        if let Some(channel) = self.channels.get_mut(i) {
            channel.idle = false;
            channel.watermark = channel.watermark.max(watermark);
        }
        self.all_idle = false;
        self.advance()
    }

    /// Channel `i` went idle; returns the new watermark if the others can now advance it,
    /// and whether all live channels are now idle.
    pub fn on_idle(&mut self, i: usize) -> (Option<Timestamp>, bool) {
        if let Some(channel) = self.channels.get_mut(i) {
            channel.idle = true;
        }
        let advanced = self.advance();
        let all_idle = self.channels.iter().all(|c| c.idle || c.ended);
        let became_idle = all_idle && !self.all_idle;
        self.all_idle = all_idle;
        (advanced, became_idle)
    }

    /// Channel `i` ended; returns the new watermark if it advanced.
    pub fn on_end(&mut self, i: usize) -> Option<Timestamp> {
        if let Some(channel) = self.channels.get_mut(i) {
            channel.ended = true;
        }
        self.advance()
    }

    fn advance(&mut self) -> Option<Timestamp> {
        let live = self.channels.iter().filter(|c| !c.ended);
        let mut any_active = false;
        let mut minimum = MAX_TIMESTAMP;
        for channel in live {
            if !channel.idle {
                any_active = true;
                minimum = minimum.min(channel.watermark);
            }
        }
        let all_ended = self.channels.iter().all(|c| c.ended);
        let candidate = if all_ended {
            MAX_TIMESTAMP
        } else if any_active {
            minimum
        } else {
            return None;
        };
        if candidate > self.current {
            self.current = candidate;
            Some(candidate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_minimum_over_channels() {
        let mut tracker = WatermarkTracker::new(2);
        assert_eq!(tracker.on_watermark(0, 10), None);
        assert_eq!(tracker.on_watermark(1, 5), Some(5));
        assert_eq!(tracker.on_watermark(1, 20), Some(10));
    }

    #[test]
    fn idle_channel_does_not_hold_back() {
        let mut tracker = WatermarkTracker::new(2);
        tracker.on_watermark(0, 10);
        assert_eq!(tracker.on_idle(1), (Some(10), false));
        assert_eq!(tracker.on_watermark(0, 30), Some(30));
        // Back from idle with an old watermark: the clock never goes back.
        assert_eq!(tracker.on_watermark(1, 12), None);
        assert_eq!(tracker.current(), 30);
    }

    #[test]
    fn all_idle_is_reported_once() {
        let mut tracker = WatermarkTracker::new(2);
        assert_eq!(tracker.on_idle(0), (None, false));
        assert_eq!(tracker.on_idle(1), (None, true));
        assert_eq!(tracker.on_idle(1), (None, false));
    }

    #[test]
    fn ended_channels_release_the_clock() {
        let mut tracker = WatermarkTracker::new(2);
        tracker.on_watermark(0, 10);
        assert_eq!(tracker.on_end(1), Some(10));
        assert_eq!(tracker.on_end(0), Some(MAX_TIMESTAMP));
    }
}
