//! The bounded channels of the job's exchange edges.
//!
//! Every edge between two chains gets one bounded channel per (sending worker,
//! receiving worker) pair, so a receiver can tell its senders apart (each has its own
//! watermark) and a full channel blocks exactly one sender: backpressure.

use crate::{Doorbell, Message, OperatorMetrics};
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use sluice_types::{Error, Result};
use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The sending end of one channel. It never blocks: when the channel is full, messages
/// wait in order in a local queue until the receiver makes room, and the chain reports
/// itself backlogged so its worker stops feeding it.
pub struct ChannelSender<B> {
    sender: Sender<Message<B>>,
    /// Set while the sender has messages the full channel could not take; the receiver
    /// rings the sender's doorbell once the channel is half empty.
    waiting: Arc<AtomicBool>,
    pending: VecDeque<Message<B>>,
    receiver_bell: Arc<Doorbell>,
    metrics: Arc<OperatorMetrics>,
    blocked_since: Option<Instant>,
}

impl<B> ChannelSender<B> {
    /// Sends `message`, or queues it behind earlier ones if the channel is full.
    pub fn send(&mut self, message: Message<B>) -> Result<()> {
        if !self.pending.is_empty() {
            self.pending.push_back(message);
            return self.flush().map(|_| ());
        }
        match self.sender.try_send(message) {
            Ok(()) => {
                self.receiver_bell.ring();
                Ok(())
            }
            Err(TrySendError::Full(message)) => {
                self.pending.push_back(message);
                self.blocked_since.get_or_insert_with(Instant::now);
                self.waiting.store(true, Ordering::Release);
                // The receiver may have drained the channel before it saw the flag.
                self.flush().map(|_| ())
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::Cancelled),
        }
    }

    /// Sends queued messages while there is room; returns whether some still wait.
    pub fn flush(&mut self) -> Result<bool> {
        let mut sent = false;
        while let Some(message) = self.pending.pop_front() {
            match self.sender.try_send(message) {
                Ok(()) => sent = true,
                Err(TrySendError::Full(message)) => {
                    self.pending.push_front(message);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => return Err(Error::Cancelled),
            }
        }
        if sent {
            self.receiver_bell.ring();
        }
        if self.pending.is_empty() {
            self.waiting.store(false, Ordering::Release);
            if let Some(since) = self.blocked_since.take() {
                self.metrics.add_blocked(since.elapsed().as_nanos() as u64);
            }
            Ok(false)
        } else {
            self.blocked_since.get_or_insert_with(Instant::now);
            self.waiting.store(true, Ordering::Release);
            Ok(true)
        }
    }
}

/// The receiving end of one channel; it wakes a waiting sender once the channel is half
/// empty, so the sender refills it in one go rather than message by message.
pub struct ChannelReceiver<B> {
    receiver: Receiver<Message<B>>,
    waiting: Arc<AtomicBool>,
    sender_bell: Arc<Doorbell>,
}

impl<B> ChannelReceiver<B> {
    /// Takes the next message, if any.
    pub fn try_recv(&self) -> std::result::Result<Message<B>, TryRecvError> {
        let message = self.receiver.try_recv()?;
        if self.waiting.load(Ordering::Acquire)
            && self.receiver.capacity().is_none_or(|c| self.receiver.len() <= c / 2)
            && self.waiting.swap(false, Ordering::AcqRel)
        {
            self.sender_bell.ring();
        }
        Ok(message)
    }
}

/// Identifies an edge of the job graph.
pub type EdgeId = usize;

/// How records cross an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// Worker i to worker i, no repartitioning (union, rebalance-free joins).
    Forward,
    /// By key hash: each key goes to the worker owning its key group.
    Hash,
    /// Round robin over all workers, batch by batch.
    Rebalance,
    /// Every record to every worker.
    Broadcast,
}

struct EdgeSlot {
    kind: EdgeKind,
    channels: Option<Box<dyn Any + Send>>,
}

/// The channel matrix of one edge: `senders[from][to]` and `receivers[from][to]`.
struct Matrix<B> {
    senders: Vec<Vec<Option<SenderEnd<B>>>>,
    receivers: Vec<Vec<Option<ReceiverEnd<B>>>>,
}

/// A channel's sending end and its "sender is waiting" flag, before it is handed out.
type SenderEnd<B> = (Sender<Message<B>>, Arc<AtomicBool>);
/// A channel's receiving end and the same flag.
type ReceiverEnd<B> = (Receiver<Message<B>>, Arc<AtomicBool>);

/// All edges of a job and their channels, handed out once to each sender and receiver.
pub struct Edges {
    parallelism: usize,
    capacity: usize,
    slots: Vec<EdgeSlot>,
    doorbells: Vec<Arc<Doorbell>>,
}

impl Edges {
    /// No edges yet, for `parallelism` workers and channels of `capacity` batches.
    pub fn new(parallelism: usize, capacity: usize) -> Self {
        let doorbells = (0..parallelism).map(|_| Arc::new(Doorbell::default())).collect();
        Edges { parallelism, capacity, slots: Vec::new(), doorbells }
    }

    /// The doorbell of each worker.
    pub fn doorbells(&self) -> &[Arc<Doorbell>] {
        &self.doorbells
    }

    /// Declares an edge; its channels are made when first asked for.
    pub fn declare(&mut self, kind: EdgeKind) -> EdgeId {
        self.slots.push(EdgeSlot { kind, channels: None });
        self.slots.len() - 1
    }

    /// The kind of an edge.
    pub fn kind(&self, edge: EdgeId) -> Option<EdgeKind> {
        self.slots.get(edge).map(|s| s.kind)
    }

    fn matrix<B: Send + 'static>(&mut self, edge: EdgeId) -> Result<&mut Matrix<B>> {
        let (parallelism, capacity) = (self.parallelism, self.capacity);
        let slot =
            self.slots.get_mut(edge).ok_or_else(|| Error::internal(format!("edge {edge} was never declared")))?;
        let forward = slot.kind == EdgeKind::Forward;
        let channels = slot.channels.get_or_insert_with(|| {
            let mut senders = Vec::with_capacity(parallelism);
            let mut receivers = Vec::with_capacity(parallelism);
            for from in 0..parallelism {
                let mut row_tx = Vec::with_capacity(parallelism);
                let mut row_rx = Vec::with_capacity(parallelism);
                for to in 0..parallelism {
                    if forward && from != to {
                        row_tx.push(None);
                        row_rx.push(None);
                    } else {
                        let (tx, rx) = crossbeam_channel::bounded::<Message<B>>(capacity);
                        let waiting = Arc::new(AtomicBool::new(false));
                        row_tx.push(Some((tx, waiting.clone())));
                        row_rx.push(Some((rx, waiting)));
                    }
                }
                senders.push(row_tx);
                receivers.push(row_rx);
            }
            Box::new(Matrix { senders, receivers })
        });
        channels
            .downcast_mut::<Matrix<B>>()
            .ok_or_else(|| Error::internal(format!("edge {edge} used with two record types")))
    }

    /// The senders of worker `from` on `edge`, one per receiving worker in worker order
    /// (just one for a forward edge), counting blocked time into `metrics`.
    pub fn take_senders<B: Send + 'static>(
        &mut self,
        edge: EdgeId,
        from: usize,
        metrics: &Arc<OperatorMetrics>,
    ) -> Result<Vec<ChannelSender<B>>> {
        let doorbells = self.doorbells.clone();
        let matrix = self.matrix::<B>(edge)?;
        let row = matrix.senders.get_mut(from).ok_or_else(|| Error::internal(format!("no worker {from}")))?;
        let senders: Vec<_> = row
            .iter_mut()
            .enumerate()
            .filter_map(|(to, sender)| sender.take().map(|sender| (to, sender)))
            .map(|(to, (sender, waiting))| ChannelSender {
                sender,
                waiting,
                pending: VecDeque::new(),
                receiver_bell: doorbells[to].clone(),
                metrics: metrics.clone(),
                blocked_since: None,
            })
            .collect();
        if senders.is_empty() {
            return Err(Error::internal(format!("senders of edge {edge} taken twice")));
        }
        Ok(senders)
    }

    /// The receivers of worker `to` on `edge`, one per sending worker.
    pub fn take_receivers<B: Send + 'static>(&mut self, edge: EdgeId, to: usize) -> Result<Vec<ChannelReceiver<B>>> {
        let doorbells = self.doorbells.clone();
        let matrix = self.matrix::<B>(edge)?;
        let receivers: Vec<_> = matrix
            .receivers
            .iter_mut()
            .enumerate()
            .filter_map(|(from, row)| row.get_mut(to).and_then(Option::take).map(|r| (from, r)))
            .map(|(from, (receiver, waiting))| ChannelReceiver {
                receiver,
                waiting,
                sender_bell: doorbells[from].clone(),
            })
            .collect();
        if receivers.is_empty() {
            return Err(Error::internal(format!("receivers of edge {edge} taken twice")));
        }
        Ok(receivers)
    }
}
