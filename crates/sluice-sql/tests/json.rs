//! The `json` format as a query reads it (only the nested fields it uses, an object in
//! a `STRING` column as its JSON text), and Flink's JSON functions.

use serde_json::{json, Value};
use sluice_job::Job;

/// Runs `insert` over table `input` of `columns`, a JSON lines file of `lines`, into
/// table `out` of `out_columns`; the rows written, in order of their first column.
fn run(columns: &str, lines: &[&str], out_columns: &str, insert: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let input = dir.path().join("input.jsonl");
    std::fs::write(&input, lines.join("\n")).expect("the input");
    let out = dir.path().join("out");
    let job = format!(
        "CREATE TABLE input ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
         CREATE TABLE out ({out_columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
         {insert}",
        input.display(),
        out.display()
    );
    let compiled = sluice_sql::compile(&job, &sluice_sql::Functions::default()).unwrap_or_else(|e| panic!("{e}"));
    Job::new(compiled.graph.expect("an insert"), compiled.runtime).execute().expect("the job runs");
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(&out).expect("the sink's directory") {
        let text = std::fs::read_to_string(entry.expect("a part").path()).expect("readable");
        rows.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).expect("JSON")));
    }
    rows.sort_by_key(|row| row[0].to_string());
    rows
}

#[test]
fn a_query_decodes_only_the_nested_fields_it_reads() {
    let lines = [
        r#"{"id": 1, "bid": {"auction": 10, "price": 5, "url": "http://x", "extra": ""}}"#,
        // A field no query reads is read past: even of the wrong type, it rejects nothing.
        r#"{"id": 2, "bid": {"auction": 20, "price": 7, "url": {"not": "a string"}, "extra": [1]}}"#,
        r#"{"id": 3, "bid": null}"#,
        // A field the query reads, of the wrong type: the line goes to the dead letters.
        r#"{"id": 4, "bid": {"auction": "twenty", "price": 1}}"#,
    ];
    let rows = run(
        "id BIGINT, bid ROW<auction BIGINT, price BIGINT, url STRING, extra STRING>",
        &lines,
        "id BIGINT, auction BIGINT, doubled BIGINT, has_bid BOOLEAN",
        "INSERT INTO out SELECT id, bid.auction, bid.price * 2, bid IS NOT NULL FROM input",
    );
    let expected = vec![
        json!({"id": 1, "auction": 10, "doubled": 10, "has_bid": true}),
        json!({"id": 2, "auction": 20, "doubled": 14, "has_bid": true}),
        json!({"id": 3, "auction": null, "doubled": null, "has_bid": false}),
    ];
    assert_eq!(rows, expected);
}

#[test]
fn a_row_read_whole_decodes_every_field() {
    let lines = [r#"{"id": 1, "bid": {"auction": 10, "url": "http://x"}}"#];
    let rows = run(
        "id BIGINT, bid ROW<auction BIGINT, url STRING>",
        &lines,
        "id BIGINT, bid ROW<auction BIGINT, url STRING>",
        "INSERT INTO out SELECT id, bid FROM input",
    );
    assert_eq!(rows, vec![json!({"id": 1, "bid": {"auction": 10, "url": "http://x"}})]);
}

#[test]
fn json_functions_find_values_by_path_and_write_json() {
    let lines = [
        r#"{"id": 1, "doc": {"customer": {"name": "Ann", "vip": true}, "items": [{"sku": "a"}, {"sku": "b"}]}}"#,
        r#"{"id": 2, "doc": "{\"customer\": {\"name\": \"Bo\"}, \"items\": []}"}"#,
        r#"{"id": 3, "doc": "not json"}"#,
    ];
    let rows = run(
        "id BIGINT, doc STRING",
        &lines,
        "id BIGINT, name STRING, second_sku STRING, customer STRING, vip BOOLEAN, has_items BOOLEAN, id_json STRING, \
         array_json STRING",
        "INSERT INTO out SELECT id, JSON_VALUE(doc, '$.customer.name'), JSON_VALUE(doc, 'lax $.items[1].sku'), \
         JSON_QUERY(doc, '$.customer'), JSON_EXISTS(doc, '$.customer.vip'), JSON_EXISTS(doc, 'strict $.items[0]'), \
         JSON_STRING(id), JSON_ARRAY(id, 'x', CAST(NULL AS STRING), JSON_VALUE(doc, '$.customer.name')) FROM input",
    );
    let expected = vec![
        json!({"id": 1, "name": "Ann", "second_sku": "b", "customer": r#"{"name":"Ann","vip":true}"#, "vip": true,
               "has_items": true, "id_json": "1", "array_json": r#"[1,"x","Ann"]"#}),
        json!({"id": 2, "name": "Bo", "second_sku": null, "customer": r#"{"name":"Bo"}"#, "vip": false,
               "has_items": false, "id_json": "2", "array_json": r#"[2,"x","Bo"]"#}),
        json!({"id": 3, "name": null, "second_sku": null, "customer": null, "vip": false, "has_items": false,
               "id_json": "3", "array_json": r#"[3,"x"]"#}),
    ];
    assert_eq!(rows, expected);
}
