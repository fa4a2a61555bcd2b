//! Stateless record-at-a-time operators: map, filter, flat_map, branch.

use crate::graph::Batch;
use sluice_runtime::{Operator, Output};
use sluice_types::{Record, Result};
use std::marker::PhantomData;

pub(crate) struct Map<T, U, F> {
    pub f: F,
    pub _types: PhantomData<fn(T) -> U>,
}

impl<T: Send + 'static, U: Send + 'static, F: Fn(T) -> U + Send + 'static> Operator for Map<T, U, F> {
    type In = Batch<T>;
    type Out = Batch<U>;
    fn process_batch(&mut self, batch: Batch<T>, out: &mut Output<Batch<U>>) -> Result<()> {
        let f = &self.f;
        out.emit(batch.into_iter().map(|r| Record { timestamp: r.timestamp, value: f(r.value) }).collect())
    }
}

pub(crate) struct Filter<T, F> {
    pub f: F,
    pub _types: PhantomData<fn(T)>,
}

impl<T: Send + 'static, F: Fn(&T) -> bool + Send + 'static> Operator for Filter<T, F> {
    type In = Batch<T>;
    type Out = Batch<T>;
    fn process_batch(&mut self, mut batch: Batch<T>, out: &mut Output<Batch<T>>) -> Result<()> {
        let f = &self.f;
        batch.retain(|r| f(&r.value));
        out.emit(batch)
    }
}

pub(crate) struct FlatMap<T, U, F> {
    pub f: F,
    pub _types: PhantomData<fn(T) -> U>,
}

impl<T, U, I, F> Operator for FlatMap<T, U, F>
where
    T: Send + 'static,
    U: Send + 'static,
    I: IntoIterator<Item = U>,
    F: Fn(T) -> I + Send + 'static,
{
    type In = Batch<T>;
    type Out = Batch<U>;
    fn process_batch(&mut self, batch: Batch<T>, out: &mut Output<Batch<U>>) -> Result<()> {
        let mut emitted = Vec::with_capacity(batch.len());
        for record in batch {
            let timestamp = record.timestamp;
            emitted.extend((self.f)(record.value).into_iter().map(|value| Record { timestamp, value }));
        }
        out.emit(emitted)
    }
}

pub(crate) struct FilterMap<T, U, F> {
    pub f: F,
    pub _types: PhantomData<fn(T) -> U>,
}

impl<T: Send + 'static, U: Send + 'static, F: Fn(T) -> Option<U> + Send + 'static> Operator for FilterMap<T, U, F> {
    type In = Batch<T>;
    type Out = Batch<U>;
    fn process_batch(&mut self, batch: Batch<T>, out: &mut Output<Batch<U>>) -> Result<()> {
        let mut emitted = Vec::with_capacity(batch.len());
        for record in batch {
            if let Some(value) = (self.f)(record.value) {
                emitted.push(Record { timestamp: record.timestamp, value });
            }
        }
        out.emit(emitted)
    }
}

/// Routes each record to one of several outputs: 0 is the main output, `i > 0` the
/// side output connected with index `i - 1`.
pub(crate) struct Branch<T, F> {
    pub route: F,
    pub _types: PhantomData<fn(T)>,
}

impl<T: Send + 'static, F: Fn(&T) -> usize + Send + 'static> Operator for Branch<T, F> {
    type In = Batch<T>;
    type Out = Batch<T>;
    fn process_batch(&mut self, batch: Batch<T>, out: &mut Output<Batch<T>>) -> Result<()> {
        let mut main = Vec::with_capacity(batch.len());
        for record in batch {
            match (self.route)(&record.value) {
                0 => main.push(record),
                i => out.emit_side(i - 1, record),
            }
        }
        out.emit(main)
    }
}
