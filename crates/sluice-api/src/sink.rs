//! Sinks of the typed API, and the two-phase commit that makes them exactly-once.
//!
//! A transactional sink writes each checkpoint's records into a transaction its readers
//! cannot see yet (an in-progress file, a Kafka transaction). When the barrier of
//! checkpoint `n` reaches the writer it *pre-commits*: it closes the transaction and
//! hands a description of it (a committable) to the checkpoint. Once checkpoint `n` is
//! complete the coordinator gives the committable to the sink's [`Committer`], which
//! publishes it. On restore, the committer publishes what the restored checkpoint
//! pre-committed and aborts everything written after it.

use crate::graph::Batch;
use sluice_runtime::checkpoint::{Barrier, CheckpointId, Committer, Participant, StateWriter};
use sluice_runtime::{Control, OperatorMetrics, Push};
use sluice_types::{Result, Timestamp};
use std::sync::Arc;

/// The checkpoint id a writer pre-commits its last transaction under, at the end of
/// its input; the job's final checkpoint holds it.
pub const FINAL_CHECKPOINT: CheckpointId = CheckpointId::MAX;

/// What a sink's writer knows about the job it runs in.
#[derive(Clone, Copy, Debug)]
pub struct SinkContext {
    /// The worker the writer runs on.
    pub worker: usize,
    /// The job's number of workers.
    pub parallelism: usize,
    /// Whether the job takes checkpoints.
    pub checkpointing: bool,
    /// Whether its checkpoints are exactly-once (aligned).
    pub exactly_once: bool,
    /// Whether the job resumes from a checkpoint: what the sink wrote before it is
    /// kept (a sink must not start its output afresh).
    pub restored: bool,
}

impl SinkContext {
    /// The context of the writer being built for the worker of `ctx`.
    pub fn of(ctx: &sluice_runtime::BuildContext) -> Self {
        SinkContext {
            worker: ctx.worker,
            parallelism: ctx.config.parallelism,
            checkpointing: ctx.checkpoints.enabled(),
            exactly_once: ctx.checkpoints.alignment() == sluice_runtime::checkpoint::Alignment::Aligned,
            restored: ctx.checkpoints.restores(),
        }
    }

    /// Whether the writer must write in transactions committed by checkpoints: the job
    /// checkpoints, exactly-once. Otherwise it writes straight through.
    pub fn transactional(&self) -> bool {
        self.checkpointing && self.exactly_once
    }
}

/// One worker's writer of a sink.
pub trait SinkWriter<T>: Send {
    /// Writes one batch.
    fn write_batch(&mut self, batch: Batch<T>) -> Result<()>;
    /// The event-time clock advanced (sinks that roll files or commit on time use it).
    fn on_watermark(&mut self, _watermark: Timestamp) -> Result<()> {
        Ok(())
    }
    /// Everything written so far belongs to checkpoint `checkpoint`: a transactional
    /// writer closes its transaction and adds it with [`StateWriter::committable`];
    /// others flush. Also called after [`SinkWriter::close`] with
    /// [`FINAL_CHECKPOINT`], for what was written after the last barrier.
    fn pre_commit(&mut self, _checkpoint: CheckpointId, _state: &mut StateWriter) -> Result<()> {
        Ok(())
    }
    /// The input ended: flush everything.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A sink: it hands each worker a writer.
pub trait Sink<T>: 'static {
    /// The per-worker writer.
    type Writer: SinkWriter<T> + 'static;
    /// The display name.
    fn name(&self) -> String;
    /// The writer for one worker.
    fn writer(&self, context: &SinkContext) -> Result<Self::Writer>;
    /// What publishes the writers' pre-committed transactions; `None` for sinks that
    /// write straight through.
    fn committer(&self) -> Option<Arc<dyn Committer>> {
        None
    }
}

/// A writer of batches of any batch type: every [`SinkWriter`] of the typed API, and
/// the SQL layer's writers of Arrow record batches. [`SinkNode`] drives one.
pub trait BatchWriter<B>: Send {
    /// Writes one batch.
    fn write(&mut self, batch: B) -> Result<()>;
    /// As [`SinkWriter::on_watermark`].
    fn on_watermark(&mut self, _watermark: Timestamp) -> Result<()> {
        Ok(())
    }
    /// As [`SinkWriter::pre_commit`].
    fn pre_commit(&mut self, _checkpoint: CheckpointId, _state: &mut StateWriter) -> Result<()> {
        Ok(())
    }
    /// As [`SinkWriter::close`].
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<T, W: SinkWriter<T>> BatchWriter<Batch<T>> for W {
    fn write(&mut self, batch: Batch<T>) -> Result<()> {
        self.write_batch(batch)
    }
    fn on_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        SinkWriter::on_watermark(self, watermark)
    }
    fn pre_commit(&mut self, checkpoint: CheckpointId, state: &mut StateWriter) -> Result<()> {
        SinkWriter::pre_commit(self, checkpoint, state)
    }
    fn close(&mut self) -> Result<()> {
        SinkWriter::close(self)
    }
}

/// The chain end that feeds a sink writer, counts what it writes and takes part in
/// checkpoints.
pub struct SinkNode<W> {
    writer: W,
    metrics: Arc<OperatorMetrics>,
    participant: Participant,
}

impl<W> SinkNode<W> {
    /// Feeds `writer`, counting into `metrics`, checkpointing as `participant`.
    pub fn new(writer: W, metrics: Arc<OperatorMetrics>, participant: Participant) -> Self {
        SinkNode { writer, metrics, participant }
    }

    fn pre_commit<B>(&mut self, barrier: Option<Barrier>) -> Result<Option<sluice_runtime::checkpoint::InstanceState>>
    where
        W: BatchWriter<B>,
    {
        if !self.participant.enabled() {
            return Ok(None);
        }
        let mut state = self.participant.writer(barrier);
        self.writer.pre_commit(barrier.map_or(FINAL_CHECKPOINT, |b| b.id), &mut state)?;
        Ok(Some(state.finish()))
    }
}

impl<B: sluice_runtime::Batch, W: BatchWriter<B>> Push<B> for SinkNode<W> {
    fn push(&mut self, batch: B) -> Result<()> {
        let _running = self.metrics.enter();
        self.metrics.add_in(batch.len());
        self.writer.write(batch)
    }
    fn control(&mut self, control: Control) -> Result<()> {
        let _running = self.metrics.enter();
        match control {
            Control::Watermark(watermark) => {
                self.metrics.set_watermark(watermark);
                self.writer.on_watermark(watermark)
            }
            Control::Idle | Control::Tick(_) => Ok(()),
            Control::End => {
                self.writer.close()?;
                if let Some(state) = self.pre_commit::<B>(None)? {
                    self.participant.finished(state);
                }
                Ok(())
            }
            Control::Barrier(barrier) => {
                let started = std::time::Instant::now();
                if let Some(state) = self.pre_commit::<B>(Some(barrier))? {
                    self.participant.ack(barrier.id, state, started.elapsed());
                }
                Ok(())
            }
        }
    }
    fn backlogged(&mut self) -> Result<bool> {
        Ok(false)
    }
}
