//! Windows: tumbling, sliding and session, in event or processing time.
//!
//! ```
//! # use sluice_api::*;
//! # use sluice_api::window::{Tumbling, Count};
//! let env = StreamEnvironment::new().parallelism(2);
//! let out = CollectSink::new();
//! env.source(VecSource::timestamped(vec![(1_000, 'a'), (1_500, 'a'), (2_500, 'a'), (1_200, 'b')]))
//!     .with_watermarks(WatermarkStrategy::bounded_out_of_orderness(500))
//!     .key_by(|k| *k)
//!     .window(Tumbling::of(seconds(1)))
//!     .aggregate(Count)
//!     .map(|r| (r.key, r.window.start, r.value))
//!     .sink(out.clone());
//! env.execute().unwrap();
//! assert_eq!(out.sorted_values(), vec![('a', 1_000, 2), ('a', 2_000, 1), ('b', 1_000, 1)]);
//! ```

mod aggregate;
mod combine;
mod fixed;
mod panes;
mod session;

pub use aggregate::{AggregateFunction, Avg, Collect, Count, Max, Min, Reduce, Sum};

use crate::graph::keyed_state;
use crate::keyed::KeyedStream;
use crate::process::{OutputTag, TimeDomain};
use crate::Stream;
use combine::{MergePartials, PaneCombiner, Partial};
use fixed::FixedWindowOperator;
use session::SessionWindowOperator;
use sluice_types::{Data, Key, Timestamp};

/// A window: the half-open interval `[start, end)` of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Window {
    /// The first millisecond in the window.
    pub start: Timestamp,
    /// The first millisecond after it.
    pub end: Timestamp,
}

impl Window {
    /// The last timestamp in the window: results are stamped with it.
    pub fn max_timestamp(&self) -> Timestamp {
        self.end - 1
    }
}

/// Why a window result was emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum ResultKind {
    /// An early, partial result, before the window closed.
    Early,
    /// The result when the watermark passed the window's end.
    Final,
    /// A corrected result after a late record within the allowed lateness.
    Update,
}

/// The result of one window for one key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct WindowResult<K, V> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: Window,
    /// The aggregate.
    pub value: V,
    /// Early, final or updated.
    pub kind: ResultKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Fixed { size: i64, slide: i64, offset: i64 },
    Session { gap: i64 },
}

/// Which windows a record belongs to. Build one with [`Tumbling`], [`Sliding`] or
/// [`Session`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowAssigner {
    pub(crate) shape: Shape,
    pub(crate) domain: TimeDomain,
}

impl WindowAssigner {
    /// Assigns by the wall clock at arrival instead of event time.
    pub fn processing_time(mut self) -> Self {
        self.domain = TimeDomain::ProcessingTime;
        self
    }

    /// Shifts fixed windows by `offset` milliseconds (for example, for time zones).
    pub fn with_offset(mut self, offset: i64) -> Self {
        if let Shape::Fixed { size: _, slide, offset: o } = &mut self.shape {
            *o = offset.rem_euclid((*slide).max(1));
        }
        self
    }
}

/// Fixed-size, non-overlapping windows.
pub struct Tumbling;

impl Tumbling {
    /// Windows of `size` milliseconds.
    pub fn of(size: i64) -> WindowAssigner {
        let size = size.max(1);
        WindowAssigner { shape: Shape::Fixed { size, slide: size, offset: 0 }, domain: TimeDomain::EventTime }
    }
}

/// Fixed-size windows starting every `slide` milliseconds (hopping windows).
pub struct Sliding;

impl Sliding {
    /// Windows of `size` milliseconds, one starting every `slide`.
    pub fn of(size: i64, slide: i64) -> WindowAssigner {
        WindowAssigner {
            shape: Shape::Fixed { size: size.max(1), slide: slide.max(1), offset: 0 },
            domain: TimeDomain::EventTime,
        }
    }
}

/// Windows per key that close after `gap` milliseconds without a record.
pub struct Session;

impl Session {
    /// Sessions that end after `gap` milliseconds of inactivity.
    pub fn with_gap(gap: i64) -> WindowAssigner {
        WindowAssigner { shape: Shape::Session { gap: gap.max(1) }, domain: TimeDomain::EventTime }
    }
}

/// The error of an event-time window that receives a record without event time.
pub(crate) fn untimed_record() -> sluice_types::Error {
    sluice_types::Error::invalid_job(
        "an event-time window got a record without event time: assign timestamps with `with_watermarks(...)` \
         before the window, or use processing-time windows (`.processing_time()`)",
    )
}

/// How a window operator is configured, shared by the fixed and session operators.
#[derive(Clone, Debug)]
pub(crate) struct WindowSettings {
    pub domain: TimeDomain,
    pub allowed_lateness: i64,
    pub late_tag: Option<String>,
    pub early_interval: Option<i64>,
}

/// A keyed stream grouped into windows; finish with an aggregation.
pub struct WindowedStream<K, T, KF> {
    keyed: KeyedStream<K, T, KF>,
    assigner: WindowAssigner,
    settings: WindowSettings,
}

impl<K, T, KF> WindowedStream<K, T, KF>
where
    K: Key,
    T: Clone + Send + 'static,
    KF: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(keyed: KeyedStream<K, T, KF>, assigner: WindowAssigner) -> Self {
        let settings =
            WindowSettings { domain: assigner.domain, allowed_lateness: 0, late_tag: None, early_interval: None };
        WindowedStream { keyed, assigner, settings }
    }

    /// Keeps windows open for `lateness` milliseconds after they fire: late records
    /// within it update the result (emitted with [`ResultKind::Update`]).
    pub fn allowed_lateness(mut self, lateness: i64) -> Self {
        self.settings.allowed_lateness = lateness.max(0);
        self
    }

    /// Sends records that arrive after their windows expired to the side output `tag`
    /// (read it with [`Stream::side_output`] on the result) instead of dropping them.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.settings.late_tag = Some(tag.name().to_string());
        self
    }

    /// Also emits early, partial results of open windows each time the watermark
    /// crosses a multiple of `interval` (Flink's continuous event-time trigger).
    pub fn early_results(mut self, interval: i64) -> Self {
        self.settings.early_interval = Some(interval.max(1));
        self
    }

    /// Aggregates each window's records with `function`.
    pub fn aggregate<A: AggregateFunction<T>>(&self, function: A) -> Stream<WindowResult<K, A::Out>> {
        let key = self.keyed.key.clone();
        let settings = self.settings.clone();
        let backend = self.keyed.stream.backend.clone();
        match self.assigner.shape {
            // Late records must reach the late output one by one: no combining then.
            Shape::Fixed { size, slide, offset }
                if settings.domain == TimeDomain::EventTime && settings.late_tag.is_none() =>
            {
                let combine_key = key.clone();
                let combine_function = function.clone();
                // Early results need every record downstream at each early firing.
                let hold = settings.early_interval.is_none();
                let partials = self.keyed.stream.chain_stateful("combine", move || {
                    PaneCombiner::new(combine_key.clone(), combine_function.clone(), size, slide, offset, hold)
                });
                let merge = MergePartials::new(function);
                partials.key_by(|p: &Partial<K, A::Acc>| p.key.clone()).keyed_operator(
                    "window",
                    keyed_state(&backend),
                    move || {
                        let key = |p: &Partial<K, A::Acc>| p.key.clone();
                        FixedWindowOperator::new(key, merge.clone(), size, slide, offset, settings.clone(), &backend)
                    },
                )
            }
            Shape::Fixed { size, slide, offset } => {
                self.keyed.keyed_operator("window", keyed_state(&backend), move || {
                    FixedWindowOperator::new(
                        key.clone(),
                        function.clone(),
                        size,
                        slide,
                        offset,
                        settings.clone(),
                        &backend,
                    )
                })
            }
            Shape::Session { gap } => self.keyed.keyed_operator("session_window", keyed_state(&backend), move || {
                SessionWindowOperator::new(key.clone(), function.clone(), gap, settings.clone(), &backend)
            }),
        }
    }

    /// Reduces each window's records with `f`.
    pub fn reduce(&self, f: impl Fn(&T, &T) -> T + Clone + Send + Sync + 'static) -> Stream<WindowResult<K, T>>
    where
        T: Data,
    {
        self.aggregate(Reduce::new(f))
    }

    /// Counts each window's records.
    pub fn count(&self) -> Stream<WindowResult<K, u64>> {
        self.aggregate(Count)
    }

    /// Calls `f` with all records of each window (buffered until it fires).
    pub fn process<O: Clone + Send + 'static>(
        &self,
        f: impl Fn(&K, &Window, &[T]) -> Vec<O> + Clone + Send + 'static,
    ) -> Stream<O>
    where
        T: Data,
    {
        self.aggregate(Collect).flat_map(move |r: WindowResult<K, Vec<T>>| f(&r.key, &r.window, &r.value))
    }
}
