//! Aggregate functions for windows, and the common ones.

use sluice_types::Data;
use std::ops::Add;

/// An incremental aggregation: records are added to an accumulator as they arrive, so a
/// window keeps one accumulator per key, not its records.
pub trait AggregateFunction<T>: Clone + Send + 'static {
    /// The running state (kept in checkpoints, hence serializable).
    type Acc: Data;
    /// The result.
    type Out: Clone + Send + 'static;
    /// A fresh accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds a record.
    fn add(&self, acc: &mut Self::Acc, value: &T);
    /// Merges another accumulator in (session windows merge).
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result of an accumulator.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// Counts records.
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;

impl<T> AggregateFunction<T> for Count {
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _value: &T) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Sums a field.
#[derive(Clone)]
pub struct Sum<F> {
    field: F,
}

impl Sum<()> {
    /// Sums `field` of each record.
    pub fn of<T, N, F: Fn(&T) -> N>(field: F) -> Sum<F> {
        Sum { field }
    }
}

impl<T, N, F> AggregateFunction<T> for Sum<F>
where
    N: Add<Output = N> + Default + Copy + Data,
    F: Fn(&T) -> N + Clone + Send + 'static,
{
    type Acc = N;
    type Out = N;
    fn create(&self) -> N {
        N::default()
    }
    fn add(&self, acc: &mut N, value: &T) {
        *acc = *acc + (self.field)(value);
    }
    fn merge(&self, acc: &mut N, other: N) {
        *acc = *acc + other;
    }
    fn result(&self, acc: &N) -> N {
        *acc
    }
}

/// The largest value of a field.
#[derive(Clone)]
pub struct Max<F> {
    field: F,
}

impl Max<()> {
    /// The largest `field` of the window's records.
    pub fn of<T, N, F: Fn(&T) -> N>(field: F) -> Max<F> {
        Max { field }
    }
}

impl<T, N, F> AggregateFunction<T> for Max<F>
where
    N: PartialOrd + Copy + Data,
    F: Fn(&T) -> N + Clone + Send + 'static,
{
    type Acc = Option<N>;
    type Out = Option<N>;
    fn create(&self) -> Option<N> {
        None
    }
    fn add(&self, acc: &mut Option<N>, value: &T) {
        let v = (self.field)(value);
        if acc.is_none_or(|a| v > a) {
            *acc = Some(v);
        }
    }
    fn merge(&self, acc: &mut Option<N>, other: Option<N>) {
        if let Some(v) = other {
            if acc.is_none_or(|a| v > a) {
                *acc = Some(v);
            }
        }
    }
    fn result(&self, acc: &Option<N>) -> Option<N> {
        *acc
    }
}

/// The smallest value of a field.
#[derive(Clone)]
pub struct Min<F> {
    field: F,
}

impl Min<()> {
    /// The smallest `field` of the window's records.
    pub fn of<T, N, F: Fn(&T) -> N>(field: F) -> Min<F> {
        Min { field }
    }
}

impl<T, N, F> AggregateFunction<T> for Min<F>
where
    N: PartialOrd + Copy + Data,
    F: Fn(&T) -> N + Clone + Send + 'static,
{
    type Acc = Option<N>;
    type Out = Option<N>;
    fn create(&self) -> Option<N> {
        None
    }
    fn add(&self, acc: &mut Option<N>, value: &T) {
        let v = (self.field)(value);
        if acc.is_none_or(|a| v < a) {
            *acc = Some(v);
        }
    }
    fn merge(&self, acc: &mut Option<N>, other: Option<N>) {
        if let Some(v) = other {
            if acc.is_none_or(|a| v < a) {
                *acc = Some(v);
            }
        }
    }
    fn result(&self, acc: &Option<N>) -> Option<N> {
        *acc
    }
}

/// The mean of a field.
#[derive(Clone)]
pub struct Avg<F> {
    field: F,
}

impl Avg<()> {
    /// The mean of `field` over the window's records.
    pub fn of<T, F: Fn(&T) -> f64>(field: F) -> Avg<F> {
        Avg { field }
    }
}

impl<T, F: Fn(&T) -> f64 + Clone + Send + 'static> AggregateFunction<T> for Avg<F> {
    type Acc = (f64, u64);
    type Out = f64;
    fn create(&self) -> (f64, u64) {
        (0.0, 0)
    }
    fn add(&self, acc: &mut (f64, u64), value: &T) {
        acc.0 += (self.field)(value);
        acc.1 += 1;
    }
    fn merge(&self, acc: &mut (f64, u64), other: (f64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn result(&self, acc: &(f64, u64)) -> f64 {
        if acc.1 == 0 {
            0.0
        } else {
            acc.0 / acc.1 as f64
        }
    }
}

/// Combines records pairwise.
#[derive(Clone)]
pub struct Reduce<F> {
    f: F,
}

impl<F> Reduce<F> {
    /// Reduces with `f`.
    pub fn new(f: F) -> Self {
        Reduce { f }
    }
}

impl<T: Data, F: Fn(&T, &T) -> T + Clone + Send + 'static> AggregateFunction<T> for Reduce<F> {
    type Acc = Option<T>;
    type Out = T;
    fn create(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: &T) {
        *acc = Some(match acc.as_ref() {
            Some(current) => (self.f)(current, value),
            None => value.clone(),
        });
    }
    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(other) = other {
            self.add(acc, &other);
        }
    }
    fn result(&self, acc: &Option<T>) -> T {
        acc.clone().expect("invariant: a window result exists only after a record was added")
    }
}

/// Keeps every record of the window (for functions over the whole window).
#[derive(Clone, Copy, Debug, Default)]
pub struct Collect;

impl<T: Data> AggregateFunction<T> for Collect {
    type Acc = Vec<T>;
    type Out = Vec<T>;
    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<T>, value: &T) {
        acc.push(value.clone());
    }
    fn merge(&self, acc: &mut Vec<T>, other: Vec<T>) {
        acc.extend(other);
    }
    fn result(&self, acc: &Vec<T>) -> Vec<T> {
        acc.clone()
    }
}
