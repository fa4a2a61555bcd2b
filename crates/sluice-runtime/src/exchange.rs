//! The chain ends that send records to other workers.

pub use crate::channel::ChannelSender;
use crate::{Message, OperatorMetrics, Push};
use sluice_types::{key_group_for_hash, worker_for_key_group, Result, Timestamp};
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

/// Sends each record to the worker that owns its key's key group.
pub struct HashExchange<T, H> {
    outputs: Vec<ChannelSender<Vec<T>>>,
    buffers: Vec<Vec<T>>,
    hash: H,
    max_parallelism: u16,
    metrics: Arc<OperatorMetrics>,
}

impl<T, H: Fn(&T) -> u64> HashExchange<T, H> {
    /// An exchange over `outputs` (one per worker, in worker order) routing by `hash`.
    pub fn new(
        outputs: Vec<ChannelSender<Vec<T>>>,
        hash: H,
        max_parallelism: u16,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        let buffers = outputs.iter().map(|_| Vec::new()).collect();
        HashExchange { outputs, buffers, hash, max_parallelism, metrics }
    }
}

impl<T: Send + 'static, H: Fn(&T) -> u64 + Send> Push<Vec<T>> for HashExchange<T, H> {
    fn push(&mut self, batch: Vec<T>) -> Result<()> {
        self.metrics.add_in(batch.len());
        let targets = self.outputs.len();
        if targets == 1 {
            self.metrics.add_out(batch.len());
            return self.outputs[0].send(Message::Data(batch));
        }
        let expected = batch.len() / targets + 16;
        for buffer in &mut self.buffers {
            if buffer.capacity() == 0 {
                buffer.reserve(expected);
            }
        }
        for record in batch {
            let group = key_group_for_hash((self.hash)(&record), self.max_parallelism);
            let target = worker_for_key_group(group, self.max_parallelism, targets);
            self.buffers[target].push(record);
        }
        for (output, buffer) in self.outputs.iter_mut().zip(self.buffers.iter_mut()) {
            if !buffer.is_empty() {
                let batch = std::mem::take(buffer);
                self.metrics.add_out(batch.len());
                output.send(Message::Data(batch))?;
            }
        }
        Ok(())
    }
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.metrics.set_watermark(watermark);
        broadcast(&mut self.outputs, || Message::Watermark(watermark))
    }
    fn idle(&mut self) -> Result<()> {
        broadcast(&mut self.outputs, || Message::Idle)
    }
    fn tick(&mut self, _now: Timestamp) -> Result<()> {
        Ok(())
    }
    fn end(&mut self) -> Result<()> {
        broadcast(&mut self.outputs, || Message::End)
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
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.metrics.set_watermark(watermark);
        broadcast(&mut self.outputs, || Message::Watermark(watermark))
    }
    fn idle(&mut self) -> Result<()> {
        broadcast(&mut self.outputs, || Message::Idle)
    }
    fn tick(&mut self, _now: Timestamp) -> Result<()> {
        Ok(())
    }
    fn end(&mut self) -> Result<()> {
        broadcast(&mut self.outputs, || Message::End)
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
    fn watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.metrics.set_watermark(watermark);
        broadcast(&mut self.outputs, || Message::Watermark(watermark))
    }
    fn idle(&mut self) -> Result<()> {
        broadcast(&mut self.outputs, || Message::Idle)
    }
    fn tick(&mut self, _now: Timestamp) -> Result<()> {
        Ok(())
    }
    fn end(&mut self) -> Result<()> {
        broadcast(&mut self.outputs, || Message::End)
    }
    fn backlogged(&mut self) -> Result<bool> {
        flush_all(&mut self.outputs)
    }
}
