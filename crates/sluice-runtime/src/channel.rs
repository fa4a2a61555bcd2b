//! The bounded channels of the job's exchange edges.
//!
//! Every edge between two chains gets one bounded channel per (sending worker,
//! receiving worker) pair, so a receiver can tell its senders apart (each has its own
//! watermark) and a full channel blocks exactly one sender: backpressure.

use crate::Message;
use crossbeam_channel::{Receiver, Sender};
use sluice_types::{Error, Result};
use std::any::Any;

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
    senders: Vec<Vec<Option<Sender<Message<B>>>>>,
    receivers: Vec<Vec<Option<Receiver<Message<B>>>>>,
}

/// All edges of a job and their channels, handed out once to each sender and receiver.
pub struct Edges {
    parallelism: usize,
    capacity: usize,
    slots: Vec<EdgeSlot>,
}

impl Edges {
    /// No edges yet, for `parallelism` workers and channels of `capacity` batches.
    pub fn new(parallelism: usize, capacity: usize) -> Self {
        Edges { parallelism, capacity, slots: Vec::new() }
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
        let slot = self
            .slots
            .get_mut(edge)
            .ok_or_else(|| Error::invalid_job(format!("internal: edge {edge} was never declared")))?;
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
                        row_tx.push(Some(tx));
                        row_rx.push(Some(rx));
                    }
                }
                senders.push(row_tx);
                receivers.push(row_rx);
            }
            Box::new(Matrix { senders, receivers })
        });
        channels
            .downcast_mut::<Matrix<B>>()
            .ok_or_else(|| Error::invalid_job(format!("internal: edge {edge} used with two record types")))
    }

    /// The senders of worker `from` on `edge`, one per receiving worker (just one for a
    /// forward edge).
    pub fn take_senders<B: Send + 'static>(&mut self, edge: EdgeId, from: usize) -> Result<Vec<Sender<Message<B>>>> {
        let matrix = self.matrix::<B>(edge)?;
        let row =
            matrix.senders.get_mut(from).ok_or_else(|| Error::invalid_job(format!("internal: no worker {from}")))?;
        let senders: Vec<_> = row.iter_mut().filter_map(Option::take).collect();
        if senders.is_empty() {
            return Err(Error::invalid_job(format!("internal: senders of edge {edge} taken twice")));
        }
        Ok(senders)
    }

    /// The receivers of worker `to` on `edge`, one per sending worker.
    pub fn take_receivers<B: Send + 'static>(&mut self, edge: EdgeId, to: usize) -> Result<Vec<Receiver<Message<B>>>> {
        let matrix = self.matrix::<B>(edge)?;
        let receivers: Vec<_> =
            matrix.receivers.iter_mut().filter_map(|row| row.get_mut(to).and_then(Option::take)).collect();
        if receivers.is_empty() {
            return Err(Error::invalid_job(format!("internal: receivers of edge {edge} taken twice")));
        }
        Ok(receivers)
    }
}
