//! The chain ends that send records to other workers.

pub use crate::channel::ChannelSender;
use crate::{Control, Message, OperatorMetrics, Push};
use sluice_types::{key_group_for_hash, worker_for_key_group, Result};
use std::sync::Arc;

fn broadcast<B>(outputs: &mut [ChannelSender<B>], message: impl Fn() -> Message<B>) -> Result<()> {
    outputs.iter_mut().try_for_each(|o| o.send(message()))
}

fn flush_all<B>(outputs: &mut [ChannelSender<B>]) -> Result<bool> {
    let mut backlogged = false;
    for output in outputs {
        backlogged |= output.flush()?;
    }
    Ok(backlogged)
}

/// The control half of every exchange: watermarks, idleness, barriers and end-of-stream
/// go to every worker (each receiver tracks each sender's clock); processing time stays
/// with the sending worker.
fn control_to_every_worker<B>(
    outputs: &mut [ChannelSender<B>],
    metrics: &OperatorMetrics,
    control: Control,
) -> Result<()> {
    match control {
        Control::Tick(_) => Ok(()),
        Control::Watermark(watermark) => {
            metrics.set_watermark(watermark);
            broadcast(outputs, || Message::Control(control))
        }
        _ => broadcast(outputs, || Message::Control(control)),
    }
}

/// Maps key hashes to workers: hash -> key group -> the worker owning the group.
#[derive(Clone, Copy, Debug)]
pub struct KeyRouter {
    max_parallelism: u16,
    targets: usize,
}

impl KeyRouter {
    /// A router over `targets` workers and `max_parallelism` key groups.
    pub fn new(max_parallelism: u16, targets: usize) -> Self {
        KeyRouter { max_parallelism, targets }
    }

    /// The number of workers.
    pub fn targets(&self) -> usize {
        self.targets
    }

    /// The worker that owns the key with this hash.
    pub fn target(&self, hash: u64) -> usize {
        worker_for_key_group(key_group_for_hash(hash, self.max_parallelism), self.max_parallelism, self.targets)
    }
}

/// Splits a batch by key for a [`HashExchange`]. The typed API splits `Vec`s of records
/// ([`VecPartitioner`]); the SQL layer splits Arrow record batches by key columns.
pub trait Partitioner<B>: Send {
    /// One batch per target worker, in worker order (empty ones are not sent).
    fn partition(&mut self, batch: B, router: &KeyRouter) -> Result<Vec<B>>;
}

/// Splits a `Vec` of records by the hash of each record's key.
pub struct VecPartitioner<H> {
    hash: H,
}

impl<H> VecPartitioner<H> {
    /// Partitions by `hash`, the stable hash of a record's key.
    pub fn new(hash: H) -> Self {
        VecPartitioner { hash }
    }
}

impl<T: Send, H: Fn(&T) -> u64 + Send> Partitioner<Vec<T>> for VecPartitioner<H> {
    fn partition(&mut self, batch: Vec<T>, router: &KeyRouter) -> Result<Vec<Vec<T>>> {
        let targets = router.targets();
        let expected = batch.len() / targets.max(1) + 16;
        let mut parts: Vec<Vec<T>> = (0..targets).map(|_| Vec::with_capacity(expected)).collect();
        for record in batch {
            parts[router.target((self.hash)(&record))].push(record);
        }
        Ok(parts)
    }
}

/// Sends each record to the worker that owns its key's key group.
pub struct HashExchange<B, P> {
    outputs: Vec<ChannelSender<B>>,
    partitioner: P,
    router: KeyRouter,
    metrics: Arc<OperatorMetrics>,
}

impl<B, P> HashExchange<B, P> {
    /// An exchange over `outputs` (one per worker, in worker order) splitting batches
    /// with `partitioner`.
    pub fn new(
        outputs: Vec<ChannelSender<B>>,
        partitioner: P,
        max_parallelism: u16,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        let router = KeyRouter::new(max_parallelism, outputs.len());
        HashExchange { outputs, partitioner, router, metrics }
    }
}

impl<B: crate::Batch, P: Partitioner<B>> Push<B> for HashExchange<B, P> {
    fn push(&mut self, batch: B) -> Result<()> {
        let _running = self.metrics.enter();
        self.metrics.add_in(batch.len());
        if self.outputs.len() == 1 {
            self.metrics.add_out(batch.len());
            return self.outputs[0].send(Message::Data(batch));
        }
        let parts = self.partitioner.partition(batch, &self.router)?;
        for (output, part) in self.outputs.iter_mut().zip(parts) {
            if !part.is_empty() {
                self.metrics.add_out(part.len());
                output.send(Message::Data(part))?;
            }
        }
        Ok(())
    }
    fn control(&mut self, control: Control) -> Result<()> {
        control_to_every_worker(&mut self.outputs, &self.metrics, control)
    }
    fn backlogged(&mut self) -> Result<bool> {
        flush_all(&mut self.outputs)
    }
}

/// Sends whole batches to one worker (forward) or to each worker in turn (rebalance).
pub struct BatchExchange<B> {
    outputs: Vec<ChannelSender<B>>,
    next: usize,
    metrics: Arc<OperatorMetrics>,
}

impl<B> BatchExchange<B> {
    /// An exchange over `outputs`; with one output it forwards, with several it
    /// rebalances round robin.
    pub fn new(outputs: Vec<ChannelSender<B>>, metrics: Arc<OperatorMetrics>) -> Self {
        BatchExchange { outputs, next: 0, metrics }
    }
}

impl<B: crate::Batch> Push<B> for BatchExchange<B> {
    fn push(&mut self, batch: B) -> Result<()> {
        self.metrics.add_in(batch.len());
        self.metrics.add_out(batch.len());
        let target = self.next % self.outputs.len().max(1);
        self.next = self.next.wrapping_add(1);
        match self.outputs.get_mut(target) {
            Some(output) => output.send(Message::Data(batch)),
            None => Ok(()),
        }
    }
    fn control(&mut self, control: Control) -> Result<()> {
        control_to_every_worker(&mut self.outputs, &self.metrics, control)
    }
    fn backlogged(&mut self) -> Result<bool> {
        flush_all(&mut self.outputs)
    }
}

/// Sends every batch to every worker.
pub struct BroadcastExchange<B> {
    outputs: Vec<ChannelSender<B>>,
    metrics: Arc<OperatorMetrics>,
}

impl<B> BroadcastExchange<B> {
    /// A broadcast over `outputs`.
    pub fn new(outputs: Vec<ChannelSender<B>>, metrics: Arc<OperatorMetrics>) -> Self {
        BroadcastExchange { outputs, metrics }
    }
}

impl<B: crate::Batch + Clone> Push<B> for BroadcastExchange<B> {
    fn push(&mut self, batch: B) -> Result<()> {
        self.metrics.add_in(batch.len());
        self.metrics.add_out(batch.len() * self.outputs.len());
        broadcast(&mut self.outputs, || Message::Data(batch.clone()))
    }
    fn control(&mut self, control: Control) -> Result<()> {
        control_to_every_worker(&mut self.outputs, &self.metrics, control)
    }
    fn backlogged(&mut self) -> Result<bool> {
        flush_all(&mut self.outputs)
    }
}
