//! Input gates: the roots of chains fed by channels from other workers.

use crate::channel::ChannelReceiver;
use crate::checkpoint::{Alignment, Barrier};
use crate::executor::{Step, Task};
use crate::push::now_millis;
use crate::{Control, Message, Push, WatermarkTracker};
use crossbeam_channel::TryRecvError;
use sluice_types::{Error, Result};
use std::time::{Duration, Instant};

/// Messages a gate handles per step before letting its worker run other tasks.
const MESSAGES_PER_STEP: usize = 16;

/// What arrived on one channel of a gate with inputs of two types.
enum Arrived<L, R> {
    Left(L),
    Right(R),
}

/// A set of channels a gate reads, possibly of different record types.
trait Inputs: Send {
    type Data;
    fn len(&self) -> usize;
    fn try_recv(&self, i: usize) -> std::result::Result<Message<Self::Data>, TryRecvError>;
}

impl<B: Send> Inputs for Vec<ChannelReceiver<B>> {
    type Data = B;
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn try_recv(&self, i: usize) -> std::result::Result<Message<B>, TryRecvError> {
        self[i].try_recv()
    }
}

struct TwoInputs<L, R> {
    left: Vec<ChannelReceiver<L>>,
    right: Vec<ChannelReceiver<R>>,
}

fn lift<T, U>(message: Message<T>, wrap: impl FnOnce(T) -> U) -> Message<U> {
    match message {
        Message::Data(data) => Message::Data(wrap(data)),
        Message::Control(control) => Message::Control(control),
    }
}

impl<L: Send, R: Send> Inputs for TwoInputs<L, R> {
    type Data = Arrived<L, R>;
    fn len(&self) -> usize {
        self.left.len() + self.right.len()
    }
    fn try_recv(&self, i: usize) -> std::result::Result<Message<Arrived<L, R>>, TryRecvError> {
        let n = self.left.len();
        if i < n {
            self.left[i].try_recv().map(|m| lift(m, Arrived::Left))
        } else {
            self.right[i - n].try_recv().map(|m| lift(m, Arrived::Right))
        }
    }
}

/// The input side of a two-input operator (connect, joins).
pub trait TwoInputPush<L, R>: Send {
    /// A batch from the first input.
    fn push_left(&mut self, batch: L) -> Result<()>;
    /// A batch from the second input.
    fn push_right(&mut self, batch: R) -> Result<()>;
    /// A control signal of both inputs combined: their joint watermark, both idle,
    /// processing time, a barrier aligned on both, both ended.
    fn control(&mut self, control: Control) -> Result<()>;
    /// Whether the operator's output is backlogged.
    fn backlogged(&mut self) -> Result<bool>;
}

/// A two-input operator driven by a gate, as the chain of what arrived on either side.
struct TwoChain<L, R>(Box<dyn TwoInputPush<L, R>>);

impl<L, R> Push<Arrived<L, R>> for TwoChain<L, R> {
    fn push(&mut self, data: Arrived<L, R>) -> Result<()> {
        match data {
            Arrived::Left(batch) => self.0.push_left(batch),
            Arrived::Right(batch) => self.0.push_right(batch),
        }
    }
    fn control(&mut self, control: Control) -> Result<()> {
        self.0.control(control)
    }
    fn backlogged(&mut self) -> Result<bool> {
        self.0.backlogged()
    }
}

/// The barrier a gate is aligning, and which channels have delivered it.
struct Aligning {
    barrier: Barrier,
    arrived: Vec<bool>,
}

/// Reads channels until all have ended, merging their watermarks, and drives a target.
struct Gate<I, T> {
    name: String,
    inputs: I,
    target: T,
    tracker: WatermarkTracker,
    live: Vec<usize>,
    alignment: Alignment,
    aligning: Option<Aligning>,
    next_start: usize,
    tick_interval: Duration,
    last_tick: Instant,
    ended: bool,
}

impl<I: Inputs, T: Push<I::Data>> Gate<I, T> {
    fn new(name: String, inputs: I, target: T, tick_interval: Duration, alignment: Alignment) -> Self {
        let n = inputs.len();
        Gate {
            name,
            inputs,
            target,
            tracker: WatermarkTracker::new(n),
            live: (0..n).collect(),
            alignment,
            aligning: None,
            next_start: 0,
            tick_interval,
            last_tick: Instant::now(),
            ended: false,
        }
    }

    fn receive(&mut self) -> Result<Option<(usize, Message<I::Data>)>> {
        let n = self.live.len();
        for k in 0..n {
            let i = self.live[(self.next_start + k) % n];
            if self.blocked(i) {
                continue;
            }
            match self.inputs.try_recv(i) {
                Ok(message) => {
                    self.next_start = (self.next_start + k + 1) % n;
                    return Ok(Some((i, message)));
                }
                Err(TryRecvError::Empty) => {}
                // The sender's worker stopped without ending the stream: it failed.
                Err(TryRecvError::Disconnected) => return Err(Error::Cancelled),
            }
        }
        Ok(None)
    }

    /// Whether channel `i` waits for the others' barriers (aligned checkpoints only).
    fn blocked(&self, i: usize) -> bool {
        self.alignment == Alignment::Aligned && self.aligning.as_ref().is_some_and(|a| a.arrived[i])
    }

    fn on_barrier(&mut self, i: usize, barrier: Barrier) -> Result<()> {
        match &self.aligning {
            // A barrier of an abandoned checkpoint, overtaken by a newer one.
            Some(current) if barrier.id < current.barrier.id => return Ok(()),
            Some(current) if barrier.id == current.barrier.id => {}
            _ => self.aligning = Some(Aligning { barrier, arrived: vec![false; self.inputs.len()] }),
        }
        if let Some(aligning) = &mut self.aligning {
            aligning.arrived[i] = true;
        }
        self.complete_alignment()
    }

    /// Forwards the barrier being aligned once every live channel has delivered it.
    fn complete_alignment(&mut self) -> Result<()> {
        let Some(aligning) = &self.aligning else { return Ok(()) };
        if self.live.iter().all(|&j| aligning.arrived[j]) {
            let barrier = aligning.barrier;
            self.aligning = None;
            self.target.control(Control::Barrier(barrier))?;
        }
        Ok(())
    }

    fn handle(&mut self, i: usize, message: Message<I::Data>) -> Result<()> {
        let control = match message {
            Message::Data(data) => {
                self.tracker.on_data(i);
                return self.target.push(data);
            }
            Message::Control(control) => control,
        };
        match control {
            Control::Watermark(w) => match self.tracker.on_watermark(i, w) {
                Some(advanced) => self.target.control(Control::Watermark(advanced)),
                None => Ok(()),
            },
            Control::Idle => {
                let (advanced, became_idle) = self.tracker.on_idle(i);
                if let Some(advanced) = advanced {
                    self.target.control(Control::Watermark(advanced))?;
                }
                if became_idle {
                    self.target.control(Control::Idle)?;
                }
                Ok(())
            }
            Control::End => {
                self.live.retain(|&j| j != i);
                self.next_start = 0;
                if let Some(advanced) = self.tracker.on_end(i) {
                    self.target.control(Control::Watermark(advanced))?;
                }
                self.complete_alignment()
            }
            Control::Barrier(barrier) => self.on_barrier(i, barrier),
            // Each worker ticks its own chains; a tick never crosses a channel.
            Control::Tick(_) => Ok(()),
        }
    }

    fn step(&mut self) -> Result<Step> {
        if self.target.backlogged()? {
            return Ok(Step::Waiting);
        }
        if self.ended {
            return Ok(Step::Done);
        }
        let mut handled = 0;
        while handled < MESSAGES_PER_STEP && !self.live.is_empty() {
            let Some((i, message)) = self.receive()? else { break };
            self.handle(i, message)?;
            handled += 1;
            if self.target.backlogged()? {
                break;
            }
        }
        if self.last_tick.elapsed() >= self.tick_interval {
            self.last_tick = Instant::now();
            self.target.control(Control::Tick(now_millis()))?;
        }
        if self.live.is_empty() {
            self.ended = true;
            self.target.control(Control::End)?;
            return Ok(if self.target.backlogged()? { Step::Waiting } else { Step::Done });
        }
        Ok(if handled > 0 { Step::Busy } else { Step::Waiting })
    }
}

/// The root of a chain fed by channels of one record type (a keyed input, a union).
pub struct UnaryGate<B> {
    gate: Gate<Vec<ChannelReceiver<B>>, Box<dyn Push<B>>>,
}

impl<B: Send + 'static> UnaryGate<B> {
    /// A gate reading `inputs` into `next`, aligning barriers as `alignment` says.
    pub fn new(
        name: String,
        inputs: Vec<ChannelReceiver<B>>,
        next: Box<dyn Push<B>>,
        tick_interval: Duration,
        alignment: Alignment,
    ) -> Self {
        UnaryGate { gate: Gate::new(name, inputs, next, tick_interval, alignment) }
    }
}

impl<B: Send + 'static> Task for UnaryGate<B> {
    fn name(&self) -> &str {
        &self.gate.name
    }
    fn step(&mut self) -> Result<Step> {
        self.gate.step()
    }
}

/// The root of a two-input operator fed by two sets of channels.
pub struct BinaryGate<L, R> {
    gate: Gate<TwoInputs<L, R>, TwoChain<L, R>>,
}

impl<L: Send + 'static, R: Send + 'static> BinaryGate<L, R> {
    /// A gate reading `left` and `right` into `target`.
    pub fn new(
        name: String,
        left: Vec<ChannelReceiver<L>>,
        right: Vec<ChannelReceiver<R>>,
        target: Box<dyn TwoInputPush<L, R>>,
        tick_interval: Duration,
        alignment: Alignment,
    ) -> Self {
        BinaryGate { gate: Gate::new(name, TwoInputs { left, right }, TwoChain(target), tick_interval, alignment) }
    }
}

impl<L: Send + 'static, R: Send + 'static> Task for BinaryGate<L, R> {
    fn name(&self) -> &str {
        &self.gate.name
    }
    fn step(&mut self) -> Result<Step> {
        self.gate.step()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::BarrierKind;
    use crate::{ChannelSender, EdgeKind, Edges, OperatorMetrics};
    use std::sync::{Arc, Mutex};

    /// What reached the chain, in order.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Data(u32),
        Barrier(u64),
    }

    struct Recorder(Arc<Mutex<Vec<Seen>>>);

    impl Push<u32> for Recorder {
        fn push(&mut self, batch: u32) -> Result<()> {
            self.0.lock().expect("lock").push(Seen::Data(batch));
            Ok(())
        }
        fn control(&mut self, control: Control) -> Result<()> {
            if let Control::Barrier(barrier) = control {
                self.0.lock().expect("lock").push(Seen::Barrier(barrier.id));
            }
            Ok(())
        }
        fn backlogged(&mut self) -> Result<bool> {
            Ok(false)
        }
    }

    /// A gate, the senders into it from workers 0 and 1, and what its chain saw.
    type Fixture = (UnaryGate<u32>, ChannelSender<u32>, ChannelSender<u32>, Arc<Mutex<Vec<Seen>>>);

    /// A gate on worker 0 reading from workers 0 and 1, and the senders into it.
    fn gate(alignment: Alignment) -> Fixture {
        let mut edges = Edges::new(2, 16);
        let edge = edges.declare(EdgeKind::Hash);
        let metrics = Arc::new(OperatorMetrics::default());
        let from0 = edges.take_senders::<u32>(edge, 0, &metrics).expect("senders").remove(0);
        let from1 = edges.take_senders::<u32>(edge, 1, &metrics).expect("senders").remove(0);
        let receivers = edges.take_receivers::<u32>(edge, 0).expect("receivers");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let chain = Box::new(Recorder(seen.clone()));
        let gate = UnaryGate::new("gate".into(), receivers, chain, Duration::from_secs(60), alignment);
        (gate, from0, from1, seen)
    }

    fn barrier(id: u64) -> Message<u32> {
        Message::Control(Control::Barrier(Barrier { id, kind: BarrierKind::Checkpoint }))
    }

    fn drain(gate: &mut UnaryGate<u32>) {
        for _ in 0..10 {
            gate.step().expect("step");
        }
    }

    #[test]
    fn an_aligned_gate_holds_a_channel_back_from_its_barrier_until_every_channel_has_it() {
        let (mut gate, mut from0, mut from1, seen) = gate(Alignment::Aligned);
        for message in [Message::Data(1), barrier(1), Message::Data(2)] {
            from0.send(message).expect("send");
        }
        from1.send(Message::Data(10)).expect("send");
        drain(&mut gate);
        assert_eq!(*seen.lock().expect("lock"), vec![Seen::Data(1), Seen::Data(10)], "2 waits behind the barrier");
        from1.send(barrier(1)).expect("send");
        from1.send(Message::Data(11)).expect("send");
        drain(&mut gate);
        let seen = seen.lock().expect("lock");
        assert_eq!(seen[..3], [Seen::Data(1), Seen::Data(10), Seen::Barrier(1)]);
        assert!(seen[3..].contains(&Seen::Data(2)) && seen[3..].contains(&Seen::Data(11)), "{seen:?}");
    }

    #[test]
    fn an_ended_channel_counts_as_aligned() {
        let (mut gate, mut from0, mut from1, seen) = gate(Alignment::Aligned);
        from0.send(barrier(3)).expect("send");
        drain(&mut gate);
        assert!(seen.lock().expect("lock").is_empty());
        from1.send(Message::Control(Control::End)).expect("send");
        drain(&mut gate);
        assert_eq!(*seen.lock().expect("lock"), vec![Seen::Barrier(3)]);
    }

    #[test]
    fn an_unaligned_gate_keeps_reading_and_forwards_the_last_barrier() {
        let (mut gate, mut from0, mut from1, seen) = gate(Alignment::Unaligned);
        for message in [barrier(1), Message::Data(2)] {
            from0.send(message).expect("send");
        }
        drain(&mut gate);
        assert_eq!(*seen.lock().expect("lock"), vec![Seen::Data(2)], "not held back");
        from1.send(barrier(1)).expect("send");
        drain(&mut gate);
        assert_eq!(*seen.lock().expect("lock"), vec![Seen::Data(2), Seen::Barrier(1)]);
    }

    #[test]
    fn a_newer_barrier_overtakes_an_abandoned_one() {
        let (mut gate, mut from0, mut from1, seen) = gate(Alignment::Aligned);
        from0.send(barrier(1)).expect("send");
        from1.send(barrier(2)).expect("send");
        drain(&mut gate);
        from0.send(barrier(2)).expect("send");
        drain(&mut gate);
        assert_eq!(*seen.lock().expect("lock"), vec![Seen::Barrier(2)]);
    }
}
