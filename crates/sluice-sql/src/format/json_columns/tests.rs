use super::*;
use crate::format::json::Json;
use crate::format::lines::LinesDecoder;
use arrow_array::{Array, Int64Array, StringArray, StructArray};
use arrow_schema::{Fields as ArrowFields, Schema, TimeUnit};
use proptest::prelude::*;
use std::sync::Arc;

fn schema() -> SchemaRef {
    let bid = ArrowFields::from(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("url", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(vec![
        Field::new("Bid", DataType::Struct(bid), true),
        Field::new("name", DataType::Utf8, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("score", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("n", DataType::Int32, true),
    ]))
}

fn decode<D: LineDecoder<Batch = RecordBatch>>(
    decoder: &mut D,
    lines: &[String],
) -> Result<(RecordBatch, Vec<Rejected>)> {
    lines.iter().for_each(|line| decoder.decode(line.as_bytes()));
    decoder.take()
}

fn columns(lines: &[&str], errors: ParseErrors, unread: &Unread) -> Result<(RecordBatch, Vec<Rejected>)> {
    let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    decode(&mut ColumnsDecoder::new(schema(), errors, unread)?, &lines)
}

fn tape(lines: &[String]) -> RecordBatch {
    decode(&mut LinesDecoder::new(Json, schema(), ParseErrors::DeadLetter).expect("decoder"), lines).expect("rows").0
}

fn bid_column(batch: &RecordBatch, field: &str) -> ArrayRef {
    let bids = batch.column(0).as_any().downcast_ref::<StructArray>().expect("a struct");
    bids.column_by_name(field).expect("a field").clone()
}

#[test]
fn rows_read_as_arrow_json_reads_them() {
    let lines: Vec<String> = [
        r#"{"Bid": {"auction": 1, "price": "20", "url": "http://a\"b"}, "name": 7, "ok": true, "score": 2.5, "ts": 1000, "n": "12"}"#,
        r#"{"Bid": null, "name": "Zoë", "ok": null, "ts": "2026-01-01 00:00:00.123", "extra": {"a": [1, 2]}}"#,
        r#"{"n": 3, "Bid": {"price": 5, "other": "x"}, "score": 4}"#,
        r#"{}"#,
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    let (batch, rejected) =
        decode(&mut ColumnsDecoder::new(schema(), ParseErrors::DeadLetter, &Unread::default()).unwrap(), &lines)
            .unwrap();
    assert!(rejected.is_empty());
    assert_eq!(batch.num_rows(), 4);
    assert_eq!(batch, tape(&lines));
}

#[test]
fn a_bad_line_is_rejected_with_the_field_named_and_the_others_kept() {
    let lines = [
        r#"{"Bid": {"auction": 1, "price": 2}, "n": 1}"#,
        r#"{"Bid": {"auction": 2, "price": "many"}, "n": 2}"#,
        r#"{"Bid": {"auction": 3"#,
        r#"[1, 2]"#,
        r#"{"Bid": {"auction": 4, "price": 5}, "n": 4} trailing"#,
        r#"{"Bid": {"auction": 6, "price": 7}, "n": 6}"#,
    ];
    let (batch, rejected) = columns(&lines, ParseErrors::DeadLetter, &Unread::default()).unwrap();
    assert_eq!(batch.num_rows(), 2);
    let auctions = bid_column(&batch, "auction");
    assert_eq!(auctions.as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec(), vec![1, 6]);
    assert_eq!(rejected.iter().map(|r| r.index).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(
        rejected[0].reason.contains("Bid.price") && rejected[0].reason.contains("\"many\""),
        "{}",
        rejected[0].reason
    );
    assert!(rejected[2].reason.contains("a JSON object"), "{}", rejected[2].reason);
    assert_eq!(rejected[1].line, lines[2].as_bytes());
}

#[test]
fn ignoring_parse_errors_reads_a_wrong_type_as_null_and_drops_what_is_not_json() {
    let lines = [r#"{"Bid": {"auction": 1, "price": "many"}, "ok": [true], "n": {"a": 1}}"#, r#"{"Bid": "#];
    let (batch, rejected) = columns(&lines, ParseErrors::Ignore, &Unread::default()).unwrap();
    assert!(rejected.is_empty());
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(bid_column(&batch, "auction").null_count(), 0);
    assert_eq!(bid_column(&batch, "price").null_count(), 1);
    assert_eq!((batch.column(2).null_count(), batch.column(5).null_count()), (1, 1));
}

#[test]
fn failing_on_parse_errors_fails_with_the_line() {
    let error =
        columns(&[r#"{"n": 1}"#, r#"{"n": true}"#], ParseErrors::Fail, &Unread::default()).err().expect("an error");
    let text = error.to_string();
    assert!(text.contains("n: boolean `true` where an INT was expected") && text.contains(r#"{"n": true}"#), "{text}");
}

#[test]
fn an_object_or_array_read_into_a_string_is_its_compact_json_text() {
    let lines = [r#"{"name": {"b": [1, 2.5, "x\"y"], "a": null, "c": {"d": true}}, "Bid": {"url": [ ]}}"#];
    let (batch, rejected) = columns(&lines, ParseErrors::DeadLetter, &Unread::default()).unwrap();
    assert!(rejected.is_empty(), "{}", rejected[0].reason);
    let names = batch.column(1).as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(names.value(0), r#"{"b":[1,2.5,"x\"y"],"a":null,"c":{"d":true}}"#);
    let urls = bid_column(&batch, "url");
    assert_eq!(urls.as_any().downcast_ref::<StringArray>().unwrap().value(0), "[]");
}

#[test]
fn the_last_of_a_field_given_twice_wins() {
    let lines = [r#"{"Bid": {"price": 1, "url": "a"}, "Bid": {"price": 2}, "n": 1, "n": 2}"#];
    let (batch, _) = columns(&lines, ParseErrors::DeadLetter, &Unread::default()).unwrap();
    let prices = bid_column(&batch, "price");
    assert_eq!(prices.as_any().downcast_ref::<Int64Array>().unwrap().value(0), 2);
    assert_eq!(bid_column(&batch, "url").null_count(), 1);
    assert_eq!(batch.column(5).as_any().downcast_ref::<arrow_array::Int32Array>().unwrap().value(0), 2);
}

#[test]
fn unread_fields_are_read_past_and_come_out_null() {
    let unread = Unread::new([("Bid".to_string(), "url".to_string()), ("Bid".to_string(), "price".to_string())].into());
    // Even a value of the wrong type: nothing reads it.
    let lines = [r#"{"Bid": {"auction": 1, "price": "many", "url": {"deep": ["x"]}}}"#];
    let (batch, rejected) = columns(&lines, ParseErrors::DeadLetter, &unread).unwrap();
    assert!(rejected.is_empty());
    assert_eq!(bid_column(&batch, "auction").null_count(), 0);
    assert_eq!((bid_column(&batch, "price").null_count(), bid_column(&batch, "url").null_count()), (1, 1));
    assert_eq!(batch.schema(), schema(), "the columns keep their declared types");
}

#[test]
fn a_not_null_column_missing_or_null_rejects_its_line() {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let mut decoder = ColumnsDecoder::new(schema, ParseErrors::DeadLetter, &Unread::default()).unwrap();
    for line in [r#"{"id": 1}"#, r#"{}"#, r#"{"id": null}"#] {
        decoder.decode(line.as_bytes());
    }
    let (batch, rejected) = decoder.take().unwrap();
    assert_eq!(batch.num_rows(), 1);
    assert_eq!(rejected.len(), 2);
    assert!(rejected[0].reason.contains("id is NULL, and the column is NOT NULL"), "{}", rejected[0].reason);
}

/// A field's value as JSON text, or `None` to leave the field out.
fn value(kind: u8, n: i64) -> Option<String> {
    match kind % 4 {
        0 => None,
        1 => Some("null".to_string()),
        2 => Some(n.to_string()),
        _ => Some(format!("\"{n}\"")),
    }
}

/// A time's value as JSON text: a number of milliseconds, or Flink's text.
fn time(kind: u8, n: i64) -> Option<String> {
    match kind % 4 {
        3 => Some(format!(
            "\"2026-01-{:02} 10:{:02}:00.{:03}\"",
            n.rem_euclid(28) + 1,
            n.rem_euclid(60),
            n.rem_euclid(1000)
        )),
        _ => value(kind, n),
    }
}

fn line(fields: &[(&str, Option<String>)]) -> String {
    let present: Vec<String> =
        fields.iter().filter_map(|(name, value)| value.as_ref().map(|v| format!("\"{name}\": {v}"))).collect();
    format!("{{{}}}", present.join(", "))
}

proptest! {
    /// Any mix of missing fields, NULLs, numbers, numbers in strings, nested rows
    /// and fields of no column reads as arrow-json's decoder reads it.
    #[test]
    fn any_rows_read_as_arrow_json_reads_them(rows in proptest::collection::vec(
        (any::<[u8; 8]>(), any::<i32>(), "[a-zé\"\\\\ ]{0,6}", any::<i16>()), 0..40)) {
        let lines: Vec<String> = rows.iter().map(|(kinds, n, text, m)| {
            let (n, m) = (i64::from(*n), i64::from(*m));
            let bid = match kinds[0] % 3 {
                0 => None,
                1 => Some("null".to_string()),
                _ => Some(line(&[("auction", value(kinds[1], n)), ("price", value(kinds[2], m)),
                    ("url", (kinds[3] % 2 == 0).then(|| serde_json::to_string(text).unwrap())), ("more", value(kinds[4], n))])),
            };
            let name = match kinds[5] % 3 {
                0 => None,
                1 => Some(serde_json::to_string(text).unwrap()),
                _ => Some(m.to_string()),
            };
            let ok = [None, Some("true".to_string()), Some("false".to_string()), Some("null".to_string())][usize::from(kinds[6] % 4)].clone();
            let score = (kinds[7] % 2 == 0).then(|| format!("{}", m as f64 / 8.0));
            line(&[("Bid", bid), ("name", name), ("ok", ok), ("score", score), ("ts", time(kinds[1] / 4, n)), ("n", value(kinds[2] / 4, m))])
        }).collect();
        let (batch, rejected) = decode(&mut ColumnsDecoder::new(schema(), ParseErrors::DeadLetter, &Unread::default()).unwrap(), &lines).unwrap();
        prop_assert!(rejected.is_empty(), "{}", rejected[0].reason);
        prop_assert_eq!(batch, tape(&lines));
    }
}
