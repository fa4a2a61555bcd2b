//! Input gates: the roots of chains fed by channels from other workers.

use crate::executor::Task;
use crate::push::now_millis;
use crate::{Message, Push, WatermarkTracker};
use crossbeam_channel::{Receiver, Select, TryRecvError};
use sluice_types::{Error, Result, Timestamp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What arrived on one channel of a gate with inputs of two types.
enum Arrived<L, R> {
    Left(L),
    Right(R),
}

/// A set of channels a gate reads, possibly of different record types.
trait Inputs {
    type Data;
    fn len(&self) -> usize;
    fn try_recv(&self, i: usize) -> std::result::Result<Message<Self::Data>, TryRecvError>;
    fn select(
        &self,
        live: &[usize],
        timeout: Duration,
    ) -> Option<std::result::Result<(usize, Message<Self::Data>), usize>>;
}

impl<B> Inputs for Vec<Receiver<Message<B>>> {
    type Data = B;
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn try_recv(&self, i: usize) -> std::result::Result<Message<B>, TryRecvError> {
        self[i].try_recv()
    }
    fn select(&self, live: &[usize], timeout: Duration) -> Option<std::result::Result<(usize, Message<B>), usize>> {
        let mut select = Select::new();
        for &i in live {
            select.recv(&self[i]);
        }
        let operation = select.select_timeout(timeout).ok()?;
        let i = live[operation.index()];
        Some(operation.recv(&self[i]).map(|m| (i, m)).map_err(|_| i))
    }
}

struct TwoInputs<L, R> {
    left: Vec<Receiver<Message<L>>>,
    right: Vec<Receiver<Message<R>>>,
}

fn lift<T, U>(message: Message<T>, wrap: impl FnOnce(T) -> U) -> Message<U> {
    match message {
        Message::Data(data) => Message::Data(wrap(data)),
        Message::Watermark(w) => Message::Watermark(w),
        Message::Idle => Message::Idle,
        Message::End => Message::End,
    }
}

impl<L, R> Inputs for TwoInputs<L, R> {
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
    fn select(
        &self,
        live: &[usize],
        timeout: Duration,
    ) -> Option<std::result::Result<(usize, Message<Arrived<L, R>>), usize>> {
        let n = self.left.len();
        let mut select = Select::new();
        for &i in live {
            if i < n {
                select.recv(&self.left[i]);
            } else {
                select.recv(&self.right[i - n]);
            }
        }
        let operation = select.select_timeout(timeout).ok()?;
        let i = live[operation.index()];
        Some(if i < n {
            operation.recv(&self.left[i]).map(|m| (i, lift(m, Arrived::Left))).map_err(|_| i)
        } else {
            operation.recv(&self.right[i - n]).map(|m| (i, lift(m, Arrived::Right))).map_err(|_| i)
        })
    }
}

/// What a gate drives: one chain, or a two-input operator.
trait GateTarget<D> {
    fn data(&mut self, data: D) -> Result<()>;
    fn control(&mut self) -> &mut dyn ControlPush;
}

/// The control half of [`Push`], shared by one- and two-input targets.
trait ControlPush {
    fn watermark(&mut self, watermark: Timestamp) -> Result<()>;
    fn idle(&mut self) -> Result<()>;
    fn tick(&mut self, now: Timestamp) -> Result<()>;
    fn end(&mut self) -> Result<()>;
}

struct Chain<B>(Box<dyn Push<B>>);

impl<B> ControlPush for Chain<B> {
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.0.watermark(watermark)
    }
    fn idle(&mut self) -> Result<()> {
        self.0.idle()
    }
    fn tick(&mut self, now: Timestamp) -> Result<()> {
        self.0.tick(now)
    }
    fn end(&mut self) -> Result<()> {
        self.0.end()
    }
}

impl<B> GateTarget<B> for Chain<B> {
    fn data(&mut self, data: B) -> Result<()> {
        self.0.push(data)
    }
    fn control(&mut self) -> &mut dyn ControlPush {
        self
    }
}

/// The input side of a two-input operator (connect, joins).
pub trait TwoInputPush<L, R>: Send {
    /// A batch from the first input.
    fn push_left(&mut self, batch: L) -> Result<()>;
    /// A batch from the second input.
    fn push_right(&mut self, batch: R) -> Result<()>;
    /// The combined event-time clock of both inputs advanced.
    fn watermark(&mut self, watermark: Timestamp) -> Result<()>;
    /// Both inputs are idle.
    fn idle(&mut self) -> Result<()>;
    /// Processing time advanced.
    fn tick(&mut self, now: Timestamp) -> Result<()>;
    /// Both inputs ended.
    fn end(&mut self) -> Result<()>;
}

struct TwoChain<L, R>(Box<dyn TwoInputPush<L, R>>);

impl<L, R> ControlPush for TwoChain<L, R> {
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.0.watermark(watermark)
    }
    fn idle(&mut self) -> Result<()> {
        self.0.idle()
    }
    fn tick(&mut self, now: Timestamp) -> Result<()> {
        self.0.tick(now)
    }
    fn end(&mut self) -> Result<()> {
        self.0.end()
    }
}

impl<L, R> GateTarget<Arrived<L, R>> for TwoChain<L, R> {
    fn data(&mut self, data: Arrived<L, R>) -> Result<()> {
        match data {
            Arrived::Left(batch) => self.0.push_left(batch),
            Arrived::Right(batch) => self.0.push_right(batch),
        }
    }
    fn control(&mut self) -> &mut dyn ControlPush {
        self
    }
}

/// Reads every channel until all have ended, merging watermarks, and drives `target`.
fn run_gate<I: Inputs, T: GateTarget<I::Data>>(
    inputs: I,
    target: &mut T,
    cancel: &AtomicBool,
    tick_interval: Duration,
) -> Result<()> {
    let n = inputs.len();
    let mut tracker = WatermarkTracker::new(n);
    let mut live: Vec<usize> = (0..n).collect();
    let mut next_start = 0;
    let mut last_tick = Instant::now();
    while !live.is_empty() {
        let mut arrived = None;
        for k in 0..live.len() {
            let i = live[(next_start + k) % live.len()];
            match inputs.try_recv(i) {
                Ok(message) => {
                    arrived = Some((i, message));
                    next_start = (next_start + k + 1) % live.len();
                    break;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return Err(upstream_failed(cancel)),
            }
        }
        if arrived.is_none() {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            match inputs.select(&live, tick_interval) {
                Some(Ok(message)) => arrived = Some(message),
                Some(Err(_)) => return Err(upstream_failed(cancel)),
                None => {}
            }
        }
        if let Some((i, message)) = arrived {
            match message {
                Message::Data(data) => {
                    tracker.on_data(i);
                    target.data(data)?;
                }
                Message::Watermark(w) => {
                    if let Some(advanced) = tracker.on_watermark(i, w) {
                        target.control().watermark(advanced)?;
                    }
                }
                Message::Idle => {
                    let (advanced, became_idle) = tracker.on_idle(i);
                    if let Some(advanced) = advanced {
                        target.control().watermark(advanced)?;
                    }
                    if became_idle {
                        target.control().idle()?;
                    }
                }
                Message::End => {
                    live.retain(|&j| j != i);
                    if let Some(advanced) = tracker.on_end(i) {
                        target.control().watermark(advanced)?;
                    }
                    next_start = 0;
                }
            }
        }
        if last_tick.elapsed() >= tick_interval {
            last_tick = Instant::now();
            target.control().tick(now_millis())?;
        }
    }
    target.control().end()
}

fn upstream_failed(cancel: &AtomicBool) -> Error {
    cancel.store(true, Ordering::Relaxed);
    Error::Cancelled
}

/// The root of a chain fed by channels of one record type (a keyed input, a union).
pub struct UnaryGate<B> {
    name: String,
    inputs: Vec<Receiver<Message<B>>>,
    next: Box<dyn Push<B>>,
    cancel: Arc<AtomicBool>,
    tick_interval: Duration,
}

impl<B> UnaryGate<B> {
    /// A gate reading `inputs` into `next`.
    pub fn new(
        name: String,
        inputs: Vec<Receiver<Message<B>>>,
        next: Box<dyn Push<B>>,
        cancel: Arc<AtomicBool>,
        tick_interval: Duration,
    ) -> Self {
        UnaryGate { name, inputs, next, cancel, tick_interval }
    }
}

impl<B: Send + 'static> Task for UnaryGate<B> {
    fn name(&self) -> &str {
        &self.name
    }
    fn run(self: Box<Self>) -> Result<()> {
        let UnaryGate { inputs, next, cancel, tick_interval, .. } = *self;
        run_gate(inputs, &mut Chain(next), &cancel, tick_interval)
    }
}

/// The root of a two-input operator fed by two sets of channels.
pub struct BinaryGate<L, R> {
    name: String,
    left: Vec<Receiver<Message<L>>>,
    right: Vec<Receiver<Message<R>>>,
    target: Box<dyn TwoInputPush<L, R>>,
    cancel: Arc<AtomicBool>,
    tick_interval: Duration,
}

impl<L, R> BinaryGate<L, R> {
    /// A gate reading `left` and `right` into `target`.
    pub fn new(
        name: String,
        left: Vec<Receiver<Message<L>>>,
        right: Vec<Receiver<Message<R>>>,
        target: Box<dyn TwoInputPush<L, R>>,
        cancel: Arc<AtomicBool>,
        tick_interval: Duration,
    ) -> Self {
        BinaryGate { name, left, right, target, cancel, tick_interval }
    }
}

impl<L: Send + 'static, R: Send + 'static> Task for BinaryGate<L, R> {
    fn name(&self) -> &str {
        &self.name
    }
    fn run(self: Box<Self>) -> Result<()> {
        let BinaryGate { left, right, target, cancel, tick_interval, .. } = *self;
        run_gate(TwoInputs { left, right }, &mut TwoChain(target), &cancel, tick_interval)
    }
}
