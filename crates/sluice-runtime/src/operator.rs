//! Operators, the nodes that wrap them in a chain, and their outputs.

use crate::checkpoint::{Barrier, Participant, StateReader, StateWriter};
use crate::{Batch, Control, OperatorMetrics, Push};
use sluice_types::{Result, Timestamp};
use std::any::Any;
use std::sync::Arc;

/// A one-input operator: the lifecycle hooks the runtime calls, batch in, batch out.
///
/// Associated types keep the per-record code monomorphic; the chain calls an operator
/// through [`Push`] once per batch.
pub trait Operator: Send + 'static {
    /// The batches it consumes.
    type In: Batch;
    /// The batches it emits on its main output.
    type Out: Batch;

    /// Processes one batch, emitting into `out`.
    fn process_batch(&mut self, batch: Self::In, out: &mut Output<Self::Out>) -> Result<()>;

    /// The event-time clock advanced: fire what is due. The runtime forwards the
    /// watermark downstream after this returns.
    fn on_watermark(&mut self, _watermark: Timestamp, _out: &mut Output<Self::Out>) -> Result<()> {
        Ok(())
    }

    /// Processing time advanced: fire processing-time timers.
    fn on_processing_time(&mut self, _now: Timestamp, _out: &mut Output<Self::Out>) -> Result<()> {
        Ok(())
    }

    /// The input ended (after the final watermark): release resources.
    fn close(&mut self, _out: &mut Output<Self::Out>) -> Result<()> {
        Ok(())
    }

    /// Writes the operator's state into a checkpoint. Keyed state goes in by key
    /// ([`StateWriter::keyed`]) so that it can be split by key group on restore.
    fn snapshot(&mut self, _state: &mut StateWriter) -> Result<()> {
        Ok(())
    }

    /// Restores the state written by [`Operator::snapshot`] (of the key groups this
    /// instance owns now), before any input arrives.
    fn restore(&mut self, _state: &StateReader) -> Result<()> {
        Ok(())
    }
}

/// A side output's downstream, type-erased so one operator can have several of
/// different types. Used only off the hot path (late records, alerts).
pub trait SidePort: Send {
    /// The buffer records are collected in, as `&mut Vec<T>`.
    fn buffer_any(&mut self) -> &mut dyn Any;
    /// Sends the buffered records downstream; returns how many.
    fn flush(&mut self) -> Result<usize>;
    /// Forwards a control signal.
    fn control(&mut self, control: Control) -> Result<()>;
    /// Whether the side output's downstream is backlogged.
    fn backlogged(&mut self) -> Result<bool>;
}

struct TypedSidePort<T> {
    buffer: Vec<T>,
    next: Box<dyn Push<Vec<T>>>,
}

impl<T: Send + 'static> SidePort for TypedSidePort<T> {
    fn buffer_any(&mut self) -> &mut dyn Any {
        &mut self.buffer
    }
    fn flush(&mut self) -> Result<usize> {
        if self.buffer.is_empty() {
            return Ok(0);
        }
        let batch = std::mem::take(&mut self.buffer);
        let n = batch.len();
        self.next.push(batch)?;
        Ok(n)
    }
    fn control(&mut self, control: Control) -> Result<()> {
        self.next.control(control)
    }
    fn backlogged(&mut self) -> Result<bool> {
        self.next.backlogged()
    }
}

/// The side outputs of one operator, in the order they were connected, by name.
#[derive(Default)]
pub struct SideOutputs {
    ports: Vec<(String, Box<dyn SidePort>)>,
}

impl SideOutputs {
    /// Connects the side output `name` to `next`; returns its index.
    pub fn connect<T: Send + 'static>(&mut self, name: &str, next: Box<dyn Push<Vec<T>>>) -> usize {
        self.ports.push((name.to_string(), Box::new(TypedSidePort { buffer: Vec::new(), next })));
        self.ports.len() - 1
    }

    /// The index of the side output `name`, if connected.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|(n, _)| n == name)
    }

    /// Emits one record on side output `index`. Records for an unconnected side output,
    /// or of the wrong type, are dropped: nobody consumes them.
    pub fn emit<T: Send + 'static>(&mut self, index: usize, record: T) {
        if let Some((_, port)) = self.ports.get_mut(index) {
            if let Some(buffer) = port.buffer_any().downcast_mut::<Vec<T>>() {
                buffer.push(record);
            }
        }
    }

    /// Emits one record on the side output `name`, if connected.
    pub fn emit_named<T: Send + 'static>(&mut self, name: &str, record: T) {
        if let Some(index) = self.index_of(name) {
            self.emit(index, record);
        }
    }

    fn ports(&mut self) -> impl Iterator<Item = &mut Box<dyn SidePort>> {
        self.ports.iter_mut().map(|(_, port)| port)
    }
}

/// Where an operator emits: its main output and its side outputs. Counts what leaves.
pub struct Output<B> {
    next: Box<dyn Push<B>>,
    sides: SideOutputs,
    metrics: Arc<OperatorMetrics>,
}

impl<B: Batch> Output<B> {
    /// An output feeding `next`, counting into `metrics`.
    pub fn new(next: Box<dyn Push<B>>, sides: SideOutputs, metrics: Arc<OperatorMetrics>) -> Self {
        Output { next, sides, metrics }
    }

    /// Emits a batch on the main output. Empty batches are not sent.
    pub fn emit(&mut self, batch: B) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.metrics.add_out(batch.len());
        self.next.push(batch)
    }

    /// Emits one record on side output `index`; it is sent when the current call ends.
    pub fn emit_side<T: Send + 'static>(&mut self, index: usize, record: T) {
        self.sides.emit(index, record);
    }

    /// The side outputs.
    pub fn sides(&mut self) -> &mut SideOutputs {
        &mut self.sides
    }

    /// Counts records sent to the dead-letter output.
    pub fn count_dead_letters(&self, n: usize) {
        self.metrics.add_dead_letters(n);
    }

    /// The operator's counters.
    pub fn metrics(&self) -> &Arc<OperatorMetrics> {
        &self.metrics
    }

    /// Sends what side outputs buffered.
    pub fn flush_sides(&mut self) -> Result<()> {
        let mut sent = 0;
        for port in self.sides.ports() {
            sent += port.flush()?;
        }
        self.metrics.add_out(sent);
        Ok(())
    }

    /// Forwards a control signal to the side outputs and the main output; a watermark
    /// is also the operator's own, for its counters.
    pub fn control(&mut self, control: Control) -> Result<()> {
        if let Control::Watermark(watermark) = control {
            self.metrics.set_watermark(watermark);
        }
        for port in self.sides.ports() {
            port.control(control)?;
        }
        self.next.control(control)
    }

    /// Whether anything downstream of the main or a side output is backlogged.
    pub fn backlogged(&mut self) -> Result<bool> {
        let mut backlogged = self.next.backlogged()?;
        for port in self.sides.ports() {
            backlogged |= port.backlogged()?;
        }
        Ok(backlogged)
    }
}

/// An operator in a chain: counts its input, runs its hooks, forwards control.
pub struct OperatorNode<O: Operator> {
    operator: O,
    out: Output<O::Out>,
    participant: Option<Participant>,
}

impl<O: Operator> OperatorNode<O> {
    /// Wraps a stateless `operator` so it can be chained.
    pub fn new(operator: O, out: Output<O::Out>) -> Self {
        OperatorNode { operator, out, participant: None }
    }

    /// Wraps a stateful `operator`: it restores from the job's checkpoint, if any, and
    /// snapshots at every barrier.
    pub fn stateful(mut operator: O, out: Output<O::Out>, participant: Participant) -> Result<Self> {
        if let Some(state) = participant.restored() {
            operator.restore(&state)?;
        }
        Ok(OperatorNode { operator, out, participant: Some(participant) })
    }

    fn snapshot(&mut self, barrier: Option<Barrier>) -> Result<Option<(Participant, StateWriter)>> {
        let Some(participant) = self.participant.as_ref().filter(|p| p.enabled()) else { return Ok(None) };
        let mut state = participant.writer(barrier);
        self.operator.snapshot(&mut state)?;
        Ok(Some((participant.clone(), state)))
    }
}

impl<O: Operator> Push<O::In> for OperatorNode<O> {
    fn push(&mut self, batch: O::In) -> Result<()> {
        let _running = self.out.metrics.enter();
        self.out.metrics.add_in(batch.len());
        self.operator.process_batch(batch, &mut self.out)?;
        self.out.flush_sides()
    }

    fn control(&mut self, control: Control) -> Result<()> {
        let _running = self.out.metrics.enter();
        match control {
            Control::Watermark(watermark) => self.operator.on_watermark(watermark, &mut self.out)?,
            Control::Tick(now) => self.operator.on_processing_time(now, &mut self.out)?,
            Control::Idle => {}
            Control::Barrier(barrier) => {
                let started = std::time::Instant::now();
                if let Some((participant, state)) = self.snapshot(Some(barrier))? {
                    participant.ack_writer(barrier.id, state, started.elapsed());
                }
            }
            Control::End => {
                self.operator.close(&mut self.out)?;
                if let Some((participant, state)) = self.snapshot(None)? {
                    participant.finished_writer(state);
                }
            }
        }
        self.out.flush_sides()?;
        self.out.control(control)
    }

    fn backlogged(&mut self) -> Result<bool> {
        self.out.backlogged()
    }
}

/// Sends every batch to several downstream chains (a stream consumed more than once).
pub struct Tee<B> {
    outputs: Vec<Box<dyn Push<B>>>,
}

impl<B> Tee<B> {
    /// A tee over `outputs`.
    pub fn new(outputs: Vec<Box<dyn Push<B>>>) -> Self {
        Tee { outputs }
    }
}

impl<B: Clone + Send> Push<B> for Tee<B> {
    fn push(&mut self, batch: B) -> Result<()> {
        if let Some((last, rest)) = self.outputs.split_last_mut() {
            for output in rest {
                output.push(batch.clone())?;
            }
            last.push(batch)?;
        }
        Ok(())
    }
    fn control(&mut self, control: Control) -> Result<()> {
        self.outputs.iter_mut().try_for_each(|o| o.control(control))
    }
    fn backlogged(&mut self) -> Result<bool> {
        let mut backlogged = false;
        for output in &mut self.outputs {
            backlogged |= output.backlogged()?;
        }
        Ok(backlogged)
    }
}

/// A chain end that drops everything: a stream nobody consumes.
pub struct Discard;

impl<B: Send> Push<B> for Discard {
    fn push(&mut self, _batch: B) -> Result<()> {
        Ok(())
    }
    fn control(&mut self, _control: Control) -> Result<()> {
        Ok(())
    }
    fn backlogged(&mut self) -> Result<bool> {
        Ok(false)
    }
}
