//! `'connector' = 'nexmark'`: the Nexmark benchmark's auction events, generated, in the
//! table layout of Flink's Nexmark connector: `event_type` (0 person, 1 auction, 2 bid)
//! and one `ROW` column per kind (`person`, `auction`, `bid`), of which the event's own
//! is set and the others are NULL.
//!
//! Fields are matched by name, in either case style (`dateTime` or `date_time`); only
//! the declared ones are built. Each worker generates every `parallelism`-th event, so
//! the rows are the same at any parallelism, and a checkpoint keeps where each worker
//! is in the sequence.

use super::{BoxedReader, Options, ScanSource};
use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, Int32Array, RecordBatch, StructArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Fields, SchemaRef, TimeUnit};
use sluice_api::Source;
use sluice_connectors::nexmark::{self as generator, Event, NexmarkReader, NexmarkSource};
use sluice_runtime::checkpoint::{StateReader, StateWriter};
use sluice_runtime::{SourcePoll, SourceReader};
use sluice_types::{Error, Record, Result};
use std::sync::Arc;
use std::time::Instant;

const OPTIONS: [&str; 6] =
    ["events.num", "first-event.rate", "next-event.rate", "person.proportion", "auction.proportion", "bid.proportion"];

pub(super) fn scan(schema: SchemaRef, mut options: Options) -> Result<Arc<dyn ScanSource>> {
    let mut config = generator::config();
    let events = options.parse::<u64>("events.num")?.unwrap_or(u64::MAX);
    let first_rate = options.parse::<usize>("first-event.rate")?;
    let next_rate = options.parse::<usize>("next-event.rate")?;
    if let Some(rate) = first_rate {
        config.first_rate = rate.max(1);
        config.next_rate = rate.max(1);
    }
    if let Some(rate) = next_rate {
        config.next_rate = rate.max(1);
    }
    for (key, slot) in [
        ("person.proportion", &mut config.person_proportion),
        ("auction.proportion", &mut config.auction_proportion),
        ("bid.proportion", &mut config.bid_proportion),
    ] {
        if let Some(value) = options.parse::<usize>(key)? {
            *slot = value;
        }
    }
    let columns = schema.fields().iter().map(|field| column_of(field, &options)).collect::<Result<Vec<_>>>()?;
    options.finish(&OPTIONS)?;
    // A rate given in the options is kept in wall-clock time too, as Flink's connector
    // does; without one the events come as fast as they can be made.
    let throttle = first_rate.or(next_rate).map(|rate| rate.max(1) as f64);
    Ok(Arc::new(NexmarkTable { source: NexmarkSource::new(events).config(config), schema, columns, throttle }))
}

/// One declared column, and how it is built from events.
#[derive(Clone)]
enum ColumnPlan {
    EventType,
    Kind { kind: u8, fields: Fields, builders: Vec<FieldOf> },
}

/// How one field is read off an event of its kind.
#[derive(Clone, Copy)]
enum FieldOf {
    Int(fn(&Event) -> Option<i64>),
    Text(fn(&Event) -> Option<&str>),
    Time(fn(&Event) -> Option<i64>),
}

fn normalized(name: &str) -> String {
    name.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

macro_rules! of {
    ($variant:ident, $kind:ident, |$e:ident| $value:expr) => {
        FieldOf::$kind(|event| match event {
            Event::$variant($e) => Some($value),
            _ => None,
        })
    };
}

fn person_field(name: &str) -> Option<FieldOf> {
    Some(match name {
        "id" => of!(Person, Int, |p| p.id as i64),
        "name" => of!(Person, Text, |p| p.name.as_str()),
        "emailaddress" => of!(Person, Text, |p| p.email_address.as_str()),
        "creditcard" => of!(Person, Text, |p| p.credit_card.as_str()),
        "city" => of!(Person, Text, |p| p.city.as_str()),
        "state" => of!(Person, Text, |p| p.state.as_str()),
        "datetime" => of!(Person, Time, |p| p.date_time as i64),
        "extra" => of!(Person, Text, |p| p.extra.as_str()),
        _ => return None,
    })
}

fn auction_field(name: &str) -> Option<FieldOf> {
    Some(match name {
        "id" => of!(Auction, Int, |a| a.id as i64),
        "itemname" => of!(Auction, Text, |a| a.item_name.as_str()),
        "description" => of!(Auction, Text, |a| a.description.as_str()),
        "initialbid" => of!(Auction, Int, |a| a.initial_bid as i64),
        "reserve" => of!(Auction, Int, |a| a.reserve as i64),
        "datetime" => of!(Auction, Time, |a| a.date_time as i64),
        "expires" => of!(Auction, Time, |a| a.expires as i64),
        "seller" => of!(Auction, Int, |a| a.seller as i64),
        "category" => of!(Auction, Int, |a| a.category as i64),
        "extra" => of!(Auction, Text, |a| a.extra.as_str()),
        _ => return None,
    })
}

fn bid_field(name: &str) -> Option<FieldOf> {
    Some(match name {
        "auction" => of!(Bid, Int, |b| b.auction as i64),
        "bidder" => of!(Bid, Int, |b| b.bidder as i64),
        "price" => of!(Bid, Int, |b| b.price as i64),
        "channel" => of!(Bid, Text, |b| b.channel.as_str()),
        "url" => of!(Bid, Text, |b| b.url.as_str()),
        "datetime" => of!(Bid, Time, |b| b.date_time as i64),
        "extra" => of!(Bid, Text, |b| b.extra.as_str()),
        _ => return None,
    })
}

fn column_of(field: &Field, options: &Options) -> Result<ColumnPlan> {
    let name = normalized(field.name());
    if name == "eventtype" {
        return Ok(ColumnPlan::EventType);
    }
    let (kind, lookup): (u8, fn(&str) -> Option<FieldOf>) = match name.as_str() {
        "person" => (0, person_field),
        "auction" => (1, auction_field),
        "bid" => (2, bid_field),
        _ => {
            return Err(options.error(format!(
                "the nexmark connector has no column '{}' (its columns: event_type, person, auction, bid)",
                field.name()
            )))
        }
    };
    let DataType::Struct(fields) = field.data_type() else {
        return Err(options.error(format!("column '{}' must be a ROW<...> of the event's fields", field.name())));
    };
    let builders = fields
        .iter()
        .map(|f| {
            lookup(&normalized(f.name()))
                .ok_or_else(|| options.error(format!("the nexmark {} event has no field '{}'", field.name(), f.name())))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ColumnPlan::Kind { kind, fields: fields.clone(), builders })
}

fn kind_of(event: &Event) -> u8 {
    match event {
        Event::Person(_) => 0,
        Event::Auction(_) => 1,
        Event::Bid(_) => 2,
    }
}

fn build_field(of: FieldOf, field: &Field, events: &[Record<Event>]) -> Result<ArrayRef> {
    let array: ArrayRef = match of {
        FieldOf::Int(get) => {
            let mut builder = Int64Builder::with_capacity(events.len());
            builder.extend(events.iter().map(|r| get(&r.value)));
            Arc::new(builder.finish())
        }
        FieldOf::Text(get) => {
            let mut builder = StringBuilder::with_capacity(events.len(), events.len() * 8);
            for record in events {
                builder.append_option(get(&record.value));
            }
            Arc::new(builder.finish())
        }
        FieldOf::Time(get) => {
            let values: TimestampMillisecondArray = events.iter().map(|r| get(&r.value)).collect();
            match field.data_type() {
                DataType::Timestamp(TimeUnit::Millisecond, zone) => Arc::new(values.with_timezone_opt(zone.clone())),
                _ => Arc::new(values),
            }
        }
    };
    if array.data_type() == field.data_type() {
        return Ok(array);
    }
    arrow_cast::cast(&array, field.data_type()).map_err(|e| {
        Error::invalid_job(format!("nexmark field '{}' cannot be read as {}: {e}", field.name(), field.data_type()))
    })
}

fn to_batch(schema: &SchemaRef, columns: &[ColumnPlan], events: &[Record<Event>]) -> Result<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (column, field) in columns.iter().zip(schema.fields()) {
        let array: ArrayRef = match column {
            ColumnPlan::EventType => {
                let kinds: Int32Array = events.iter().map(|r| Some(kind_of(&r.value) as i32)).collect();
                arrow_cast::cast(&kinds, field.data_type()).map_err(|e| Error::invalid_job(e.to_string()))?
            }
            ColumnPlan::Kind { kind, fields, builders } => {
                let children = builders
                    .iter()
                    .zip(fields.iter())
                    .map(|(of, f)| build_field(*of, f, events))
                    .collect::<Result<Vec<_>>>()?;
                let valid: arrow_buffer::NullBuffer = events.iter().map(|r| kind_of(&r.value) == *kind).collect();
                Arc::new(
                    StructArray::try_new(fields.clone(), children, Some(valid))
                        .map_err(|e| Error::internal(format!("nexmark row: {e}")))?,
                )
            }
        };
        arrays.push(array);
    }
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(events.len()));
    RecordBatch::try_new_with_options(schema.clone(), arrays, &options)
        .map_err(|e| Error::internal(format!("nexmark batch: {e}")))
}

struct NexmarkTable {
    source: NexmarkSource,
    schema: SchemaRef,
    columns: Vec<ColumnPlan>,
    throttle: Option<f64>,
}

impl NexmarkTable {
    fn boxed(&self, events: NexmarkReader, parallelism: usize) -> BoxedReader {
        Box::new(NexmarkBatches {
            events,
            schema: self.schema.clone(),
            columns: self.columns.clone(),
            rate: self.throttle.map(|rate| (rate / parallelism.max(1) as f64, Instant::now())),
            generated: 0,
        })
    }
}

impl ScanSource for NexmarkTable {
    fn name(&self) -> String {
        "nexmark".to_string()
    }

    fn reader(&self, worker: usize, parallelism: usize) -> Result<BoxedReader> {
        Ok(self.boxed(self.source.reader(worker, parallelism)?, parallelism))
    }

    fn restore_reader(&self, worker: usize, parallelism: usize, state: &StateReader) -> Result<BoxedReader> {
        Ok(self.boxed(self.source.restore_reader(worker, parallelism, state)?, parallelism))
    }
}

/// One worker's generator, its events turned into record batches.
struct NexmarkBatches {
    events: NexmarkReader,
    schema: SchemaRef,
    columns: Vec<ColumnPlan>,
    /// Events per second for this worker, and when it started.
    rate: Option<(f64, Instant)>,
    generated: u64,
}

impl SourceReader for NexmarkBatches {
    type Batch = RecordBatch;

    fn poll(&mut self, max_records: usize) -> Result<SourcePoll<RecordBatch>> {
        let mut allowed = max_records;
        if let Some((rate, started)) = self.rate {
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            allowed = allowed.min(due.saturating_sub(self.generated) as usize);
            if allowed == 0 {
                return Ok(SourcePoll::Pending);
            }
        }
        match self.events.poll(allowed)? {
            SourcePoll::Batch(events) => {
                self.generated += events.len() as u64;
                Ok(SourcePoll::Batch(to_batch(&self.schema, &self.columns, &events)?))
            }
            SourcePoll::Pending => Ok(SourcePoll::Pending),
            SourcePoll::Idle => Ok(SourcePoll::Idle),
            SourcePoll::Finished => Ok(SourcePoll::Finished),
        }
    }

    fn position(&self) -> u64 {
        self.events.position()
    }

    fn snapshot(&self, state: &mut StateWriter) -> Result<()> {
        self.events.snapshot(state)
    }
}
