//! Session window aggregation: `GROUP BY window_start, window_end, ...` over the
//! `SESSION` window table function (or the group window `SESSION(ts, gap)`). A row at
//! time `t` opens the window `[t, t + gap)`, which the window assigner gives it; here
//! the windows of one key that touch merge into one session, as in Flink (two windows
//! merge when one starts no later than the other ends). A session's results leave
//! once the watermark passes its end: append-only, one row per key and session.
//!
//! Rows arrive keyed by the group key without the window (a session's extent is not
//! known before its rows are): the key's columns first, then the row's own
//! `window_start` and `window_end`, then the aggregates' arguments and filters. A
//! session keeps its rows' values in arrow-row's byte encoding until it closes, and is
//! aggregated then by DataFusion's group accumulators, every closed session of a
//! watermark in one pass. Checkpoints hold each key's open sessions, one entry per key.

use super::aggregate::{key_converter, results_batch, AggregateCall};
use crate::stream::watermark::millis;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, TimestampMillisecondArray};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, SchemaRef};
use datafusion_expr::EmitTo;
use rustc_hash::FxHashMap;
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{Operator, Output};
use sluice_types::{Error, Result, Timestamp, MIN_TIMESTAMP};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Where an output column of the group key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionColumn {
    /// The key's column `i`.
    Key(usize),
    /// The session's start.
    Start,
    /// The session's end.
    End,
    /// The session's `window_time`: its end less a millisecond.
    Time,
}

/// What a session window aggregation computes.
#[derive(Debug)]
pub struct SessionAggregateSpec {
    /// The operator's name.
    pub name: String,
    /// How many leading input columns are the key sessions are kept by; the row's own
    /// window start and end follow them.
    pub keys: usize,
    /// The aggregates; their arguments and filters are input columns after the window's.
    pub calls: Vec<AggregateCall>,
    /// The output's group key columns, in the output's order; the aggregates follow.
    pub columns: Vec<SessionColumn>,
    /// The output.
    pub schema: SchemaRef,
    /// The input's schema.
    pub input: SchemaRef,
}

impl SessionAggregateSpec {
    /// The first input column of the values a session keeps.
    fn values(&self) -> usize {
        self.keys + 2
    }

    fn value_converter(&self) -> Result<Option<RowConverter>> {
        let fields: Vec<SortField> =
            self.input.fields()[self.values()..].iter().map(|f| SortField::new(f.data_type().clone())).collect();
        if fields.is_empty() {
            return Ok(None);
        }
        RowConverter::new(fields)
            .map(Some)
            .map_err(|e| Error::invalid_job(format!("cannot keep these aggregates' arguments: {e}")))
    }

    /// Fails if the key or the values cannot be kept: checked when the job is planned.
    pub fn check(&self) -> Result<()> {
        key_converter(&self.input, self.keys)?;
        self.value_converter()?;
        Ok(())
    }
}

/// One session of one key: its extent, and its rows' values.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Session {
    start: Timestamp,
    end: Timestamp,
    rows: u32,
    /// The values of its rows, one arrow-row after the other (empty without values).
    values: Vec<u8>,
    /// Where each row's values end in `values`.
    ends: Vec<u32>,
}

impl Session {
    fn push(&mut self, values: Option<&[u8]>) {
        self.rows += 1;
        if let Some(values) = values {
            self.values.extend_from_slice(values);
            self.ends.push(self.values.len() as u32);
        }
    }

    fn absorb(&mut self, other: Session) {
        self.start = self.start.min(other.start);
        self.end = self.end.max(other.end);
        self.rows += other.rows;
        let base = self.values.len() as u32;
        self.values.extend_from_slice(&other.values);
        self.ends.extend(other.ends.iter().map(|e| e + base));
    }

    fn value_rows(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(from, to)| &self.values[from as usize..to as usize])
    }
}

/// The open sessions of one key, in order of start, none touching another.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Sessions(Vec<Session>);

impl Sessions {
    /// Adds a row whose own window is `[start, end)`, merging the sessions it touches;
    /// returns the end of the session it is in if that end is new.
    fn add(&mut self, start: Timestamp, end: Timestamp, values: Option<&[u8]>) -> Option<Timestamp> {
        let sessions = &mut self.0;
        let touching = |s: &Session| s.start <= end && s.end >= start;
        let first = sessions.iter().position(touching);
        let Some(first) = first else {
            let at = sessions.partition_point(|s| s.start < start);
            let mut session = Session { start, end, ..Default::default() };
            session.push(values);
            sessions.insert(at, session);
            return Some(end);
        };
        let before = sessions[first].end;
        sessions[first].start = sessions[first].start.min(start);
        sessions[first].end = sessions[first].end.max(end);
        while first + 1 < sessions.len() && touching(&sessions[first + 1]) {
            let next = sessions.remove(first + 1);
            sessions[first].absorb(next);
        }
        sessions[first].push(values);
        (sessions[first].end != before).then_some(sessions[first].end)
    }

    /// Removes the sessions that end at or before `watermark + 1` into `closed`.
    fn close(&mut self, watermark: Timestamp, closed: &mut Vec<Session>) {
        let open = self.0.iter().position(|s| s.end - 1 > watermark).unwrap_or(self.0.len());
        closed.extend(self.0.drain(..open));
    }
}

/// One worker's session window aggregation.
pub struct SessionAggregate {
    spec: Arc<SessionAggregateSpec>,
    keys: RowConverter,
    values: Option<RowConverter>,
    by_key: FxHashMap<Box<[u8]>, Sessions>,
    /// The end of each key's sessions, to find those the watermark closes; an entry
    /// may be out of date (the session grew, or closed), which the key's sessions tell.
    ends: BTreeSet<(Timestamp, Box<[u8]>)>,
    watermark: Timestamp,
}

impl SessionAggregate {
    /// An aggregation with no session open.
    pub fn new(spec: Arc<SessionAggregateSpec>) -> Result<Self> {
        Ok(SessionAggregate {
            keys: key_converter(&spec.input, spec.keys)?,
            values: spec.value_converter()?,
            spec,
            by_key: FxHashMap::default(),
            ends: BTreeSet::new(),
            watermark: MIN_TIMESTAMP,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Operator { operator: self.spec.name.clone(), message: e.to_string() }
    }

    /// The results of the closed sessions, each given with its key.
    fn results(&self, closed: &[(Box<[u8]>, Session)]) -> Result<RecordBatch> {
        let parser = self.keys.parser();
        let key_columns =
            self.keys.convert_rows(closed.iter().map(|(key, _)| parser.parse(key))).map_err(|e| self.error(e))?;
        // Every closed session's rows, the group of each its session's number.
        let mut groups = Vec::new();
        for (group, (_, session)) in closed.iter().enumerate() {
            groups.extend(std::iter::repeat_n(group, session.rows as usize));
        }
        let values: Vec<ArrayRef> = match &self.values {
            Some(converter) => {
                let parser = converter.parser();
                let rows = closed.iter().flat_map(|(_, s)| s.value_rows()).map(|row| parser.parse(row));
                converter.convert_rows(rows).map_err(|e| self.error(e))?
            }
            None => Vec::new(),
        };
        let first = self.spec.values();
        let mut aggregates = Vec::with_capacity(self.spec.calls.len());
        for call in &self.spec.calls {
            let mut accumulator = call.accumulator()?;
            let args: Vec<ArrayRef> = call.args.iter().map(|&i| values[i - first].clone()).collect();
            let filter = call.filter.and_then(|i| values[i - first].as_any().downcast_ref::<BooleanArray>().cloned());
            accumulator.update_batch(&args, &groups, filter.as_ref(), closed.len()).map_err(|e| self.error(e))?;
            aggregates.push(accumulator.evaluate(EmitTo::All).map_err(|e| self.error(e))?);
        }
        let zone = |i: usize| match self.spec.schema.field(i).data_type() {
            DataType::Timestamp(_, zone) => zone.clone(),
            _ => None,
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.spec.schema.fields().len());
        for (i, column) in self.spec.columns.iter().enumerate() {
            columns.push(match column {
                SessionColumn::Key(k) => key_columns[*k].clone(),
                SessionColumn::Start => Arc::new(
                    TimestampMillisecondArray::from_iter_values(closed.iter().map(|(_, s)| s.start))
                        .with_timezone_opt(zone(i)),
                ),
                SessionColumn::End => Arc::new(
                    TimestampMillisecondArray::from_iter_values(closed.iter().map(|(_, s)| s.end))
                        .with_timezone_opt(zone(i)),
                ),
                SessionColumn::Time => Arc::new(
                    TimestampMillisecondArray::from_iter_values(closed.iter().map(|(_, s)| s.end - 1))
                        .with_timezone_opt(zone(i)),
                ),
            });
        }
        columns.extend(aggregates);
        results_batch(&self.spec.schema, columns, closed.len()).map_err(|e| self.error(e))
    }
}

impl Operator for SessionAggregate {
    type In = RecordBatch;
    type Out = RecordBatch;

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output<RecordBatch>) -> Result<()> {
        let keys = self.keys.convert_columns(&batch.columns()[..self.spec.keys]).map_err(|e| self.error(e))?;
        let values = match &self.values {
            Some(converter) => {
                Some(converter.convert_columns(&batch.columns()[self.spec.values()..]).map_err(|e| self.error(e))?)
            }
            None => None,
        };
        let starts = millis(batch.column(self.spec.keys))?;
        let ends = millis(batch.column(self.spec.keys + 1))?;
        let mut late = 0;
        for row in 0..batch.num_rows() {
            let (Some(start), Some(end)) = (starts[row], ends[row]) else { continue };
            // A row whose own window the watermark has passed is late: dropped, as
            // Flink drops it.
            if end - 1 <= self.watermark {
                late += 1;
                continue;
            }
            let key = keys.row(row);
            let sessions = match self.by_key.get_mut(key.data()) {
                Some(sessions) => sessions,
                None => self.by_key.entry(Box::from(key.data())).or_default(),
            };
            if let Some(end) = sessions.add(start, end, values.as_ref().map(|v| v.row(row).data())) {
                self.ends.insert((end, Box::from(key.data())));
            }
        }
        if late > 0 {
            tracing::debug!(operator = %self.spec.name, late, "late rows dropped");
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Output<RecordBatch>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let mut closed = Vec::new();
        let mut sessions = Vec::new();
        while let Some((end, _)) = self.ends.first() {
            if end - 1 > self.watermark {
                break;
            }
            let (_, key) = self.ends.pop_first().expect("invariant: not empty");
            let Some(open) = self.by_key.get_mut(&key) else { continue };
            open.close(self.watermark, &mut sessions);
            if open.0.is_empty() {
                self.by_key.remove(&key);
            }
            closed.extend(sessions.drain(..).map(|session| (key.clone(), session)));
        }
        if !closed.is_empty() {
            out.emit(self.results(&closed)?)?;
        }
        Ok(())
    }

    fn snapshot(&mut self, state: &mut StateWriter) -> Result<()> {
        for (key, sessions) in &self.by_key {
            state.keyed(&key.to_vec(), sessions)?;
        }
        state.clock(&self.watermark)
    }

    fn restore(&mut self, state: &StateReader) -> Result<()> {
        self.watermark = state.clocks::<Timestamp>()?.into_iter().min().unwrap_or(MIN_TIMESTAMP);
        state.for_each_keyed(|key: Vec<u8>, sessions: Sessions| {
            let key: Box<[u8]> = key.into();
            for session in &sessions.0 {
                self.ends.insert((session.end, key.clone()));
            }
            self.by_key.insert(key, sessions);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extents(sessions: &Sessions) -> Vec<(i64, i64, u32)> {
        sessions.0.iter().map(|s| (s.start, s.end, s.rows)).collect()
    }

    #[test]
    fn windows_that_touch_merge_into_one_session() {
        let gap = 10;
        let mut sessions = Sessions::default();
        assert_eq!(sessions.add(0, gap, Some(b"a")), Some(10));
        assert_eq!(sessions.add(5, 5 + gap, Some(b"b")), Some(15), "the session grows");
        assert_eq!(sessions.add(3, 3 + gap, Some(b"c")), None, "inside it: its end is the same");
        assert_eq!(sessions.add(40, 40 + gap, Some(b"d")), Some(50), "a session of its own");
        assert_eq!(extents(&sessions), vec![(0, 15, 3), (40, 50, 1)]);
        // A row between them joins both: they touch its window at both ends.
        assert_eq!(sessions.add(25, 25 + gap, Some(b"e")), Some(35));
        assert_eq!(extents(&sessions), vec![(0, 15, 3), (25, 35, 1), (40, 50, 1)]);
        assert_eq!(sessions.add(15, 15 + gap, Some(b"f")), Some(35));
        assert_eq!(extents(&sessions), vec![(0, 35, 5), (40, 50, 1)]);
        let values: Vec<&[u8]> = sessions.0[0].value_rows().collect();
        assert_eq!(values, vec![b"a" as &[u8], b"b", b"c", b"e", b"f"], "every row's values kept, in order");
        // Out of order: an earlier row before the first session.
        assert_eq!(sessions.add(-30, -30 + gap, None), Some(-20));
        assert_eq!(extents(&sessions)[0], (-30, -20, 1));

        let mut closed = Vec::new();
        sessions.close(34, &mut closed);
        assert_eq!(closed.iter().map(|s| (s.start, s.end)).collect::<Vec<_>>(), vec![(-30, -20), (0, 35)]);
        assert_eq!(extents(&sessions), vec![(40, 50, 1)], "the session the watermark has not passed stays");
    }
}
