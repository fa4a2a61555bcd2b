//! What the operators' unit tests share: an output that collects what is emitted.

use arrow_array::RecordBatch;
use sluice_runtime::{Control, Output, Push, SideOutputs};
use sluice_types::Result;
use std::sync::{Arc, Mutex};

/// What reaches the end of a chain.
#[derive(Clone, Default)]
pub struct Collected(Arc<Mutex<Vec<RecordBatch>>>);

impl Collected {
    /// An operator's output, and what it collects.
    pub fn output() -> (Output<RecordBatch>, Collected) {
        let collected = Collected::default();
        let next: Box<dyn Push<RecordBatch>> = Box::new(collected.clone());
        (Output::new(next, SideOutputs::default(), Default::default()), collected)
    }

    /// The batches emitted so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.0.lock().expect("not poisoned").clone()
    }
}

impl Push<RecordBatch> for Collected {
    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.0.lock().expect("not poisoned").push(batch);
        Ok(())
    }
    fn control(&mut self, _control: Control) -> Result<()> {
        Ok(())
    }
    fn backlogged(&mut self) -> Result<bool> {
        Ok(false)
    }
}
