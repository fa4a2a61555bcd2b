//! Flink's JSON functions, as DataFusion functions: `JSON_VALUE`, `JSON_QUERY` and
//! `JSON_EXISTS` in their two-argument forms, with Flink's defaults (NULL, or `FALSE`,
//! on empty and on error), `JSON_STRING` and `JSON_ARRAY` (`ABSENT ON NULL`, Flink's
//! default).
//!
//! A path is Flink's (SQL/JSON): `lax` (the default) or `strict`, then `$` and its
//! steps: `.name`, `."name"`, `['name']`, `.*`, `[n]`, `[*]`. In lax mode a missing
//! member is nothing and a member step on an array applies to its elements; in strict
//! mode either is an error. Values are found in the text itself, the members on the
//! path only: a document is never built whole.

use crate::functions::LastMade;
use arrow_array::builder::{BooleanBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use datafusion_common::{plan_err, Result};
use datafusion_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// The JSON functions, to register beside DataFusion's.
pub fn json_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(PathFunction::new(Lookup::Value))),
        Arc::new(ScalarUDF::from(PathFunction::new(Lookup::Query))),
        Arc::new(ScalarUDF::from(PathFunction::new(Lookup::Exists))),
        Arc::new(ScalarUDF::from(JsonString::default())),
        Arc::new(ScalarUDF::from(JsonArray::default())),
    ]
}

/// A path, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    strict: bool,
    steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Member(String),
    AnyMember,
    Element(usize),
    AnyElement,
}

impl Path {
    /// Parses Flink's path syntax; the error says what is wrong.
    pub fn parse(text: &str) -> std::result::Result<Path, String> {
        let trimmed = text.trim_start();
        let (strict, rest) = match trimmed.split_once(char::is_whitespace) {
            Some(("strict", rest)) => (true, rest.trim_start()),
            Some(("lax", rest)) => (false, rest.trim_start()),
            _ => (false, trimmed),
        };
        let mut chars = rest.strip_prefix('$').ok_or_else(|| format!("a JSON path starts with $: {text}"))?;
        let mut steps = Vec::new();
        let bad = |what: &str| format!("{what} in the JSON path {text}");
        loop {
            chars = chars.trim_start();
            if chars.is_empty() {
                break;
            }
            if let Some(after) = chars.strip_prefix(".*") {
                steps.push(Step::AnyMember);
                chars = after;
            } else if let Some(after) = chars.strip_prefix(".\"") {
                let end = after.find('"').ok_or_else(|| bad("an unclosed \""))?;
                steps.push(Step::Member(after[..end].to_string()));
                chars = &after[end + 1..];
            } else if let Some(after) = chars.strip_prefix('.') {
                let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')).unwrap_or(after.len());
                if end == 0 {
                    return Err(bad("a '.' without a member name"));
                }
                steps.push(Step::Member(after[..end].to_string()));
                chars = &after[end..];
            } else if let Some(after) = chars.strip_prefix('[') {
                let end = after.find(']').ok_or_else(|| bad("an unclosed ["))?;
                let inside = after[..end].trim();
                let quoted = |q: char| inside.strip_prefix(q).and_then(|s| s.strip_suffix(q));
                steps.push(match inside {
                    "*" => Step::AnyElement,
                    _ => match quoted('\'').or_else(|| quoted('"')) {
                        Some(name) => Step::Member(name.to_string()),
                        None => Step::Element(inside.parse().map_err(|_| bad(&format!("the subscript [{inside}]")))?),
                    },
                });
                chars = &after[end + 1..];
            } else {
                return Err(bad(&format!("'{chars}'")));
            }
        }
        Ok(Path { strict, steps })
    }

    /// The values at the path in `json`, as their text; an error in strict mode when a
    /// step finds nothing, and for text that is not JSON.
    pub fn find<'a>(&self, json: &'a str) -> std::result::Result<Vec<&'a RawValue>, String> {
        let root: &RawValue = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut values = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for value in values {
                self.apply(step, value, &mut next)?;
            }
            values = next;
        }
        Ok(values)
    }

    fn apply<'a>(
        &self,
        step: &Step,
        value: &'a RawValue,
        out: &mut Vec<&'a RawValue>,
    ) -> std::result::Result<(), String> {
        let text = value.get();
        let before = out.len();
        match (step, text.as_bytes().first()) {
            (Step::Member(_) | Step::AnyMember, Some(b'{')) => {
                let mut parser = serde_json::Deserializer::from_str(text);
                parser.deserialize_map(Members { step, out }).map_err(|e| e.to_string())?;
                if self.strict && out.len() == before {
                    return Err(format!("no member {step:?} in {text}"));
                }
            }
            (Step::Member(_) | Step::AnyMember, Some(b'[')) if !self.strict => {
                // Lax: a member of an array is that member of each element.
                for element in elements(text)? {
                    self.apply(step, element, out)?;
                }
            }
            (Step::Element(_) | Step::AnyElement, Some(b'[')) => {
                let elements = elements(text)?;
                match step {
                    Step::Element(index) => match elements.get(*index) {
                        Some(element) => out.push(element),
                        None if self.strict => return Err(format!("no element {index} in {text}")),
                        None => {}
                    },
                    _ => out.extend(elements),
                }
            }
            // Lax: an element step on a value that is not an array takes it as one.
            (Step::Element(0) | Step::AnyElement, _) if !self.strict => out.push(value),
            _ if self.strict => return Err(format!("{step:?} does not apply to {text}")),
            _ => {}
        }
        Ok(())
    }
}

fn elements(text: &str) -> std::result::Result<Vec<&RawValue>, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// The members of an object a member step takes.
struct Members<'s, 'o, 'a> {
    step: &'s Step,
    out: &'o mut Vec<&'a RawValue>,
}

impl<'a> Visitor<'a> for Members<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'a, str>>()? {
            let wanted = match self.step {
                Step::Member(name) => *name == key,
                _ => true,
            };
            match wanted {
                true => self.out.push(map.next_value::<&'a RawValue>()?),
                false => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A JSON value's text as `JSON_VALUE` returns it: a string's contents, a number's or
/// boolean's text; `None` for `null`, and an error for an object or array.
fn scalar(value: &RawValue) -> std::result::Result<Option<Cow<'_, str>>, String> {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Cow<str>>(text).map(Some).map_err(|e| e.to_string()),
        Some(b'{' | b'[') => Err(format!("not a scalar: {text}")),
        _ if text == "null" => Ok(None),
        _ => Ok(Some(Cow::Borrowed(text))),
    }
}

/// A JSON value's text without the white space between its tokens.
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') | (false, _, '"') => in_string = !in_string,
            (false, _, c) if c.is_whitespace() => continue,
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Which of the path functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Lookup {
    /// `JSON_VALUE`: the scalar at the path, as a `STRING`.
    Value,
    /// `JSON_QUERY`: the object or array at the path, as JSON text.
    Query,
    /// `JSON_EXISTS`: whether the path finds anything.
    Exists,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct PathFunction {
    query: Lookup,
    signature: Signature,
    /// The last path parsed.
    parsed: LastMade<std::result::Result<Path, String>>,
}

impl PathFunction {
    fn new(query: Lookup) -> Self {
        PathFunction { query, signature: Signature::user_defined(Volatility::Immutable), parsed: LastMade::default() }
    }

    /// The function's answer for one document, `None` for NULL.
    fn answer(&self, path: &Path, json: &str) -> Option<Answer> {
        let found = path.find(json);
        match self.query {
            Lookup::Exists => Some(Answer::Boolean(found.is_ok_and(|values| !values.is_empty()))),
            Lookup::Value => match found.ok()?.as_slice() {
                [value] => scalar(value).ok().flatten().map(|text| Answer::Text(text.into_owned())),
                _ => None,
            },
            Lookup::Query => match found.ok()?.as_slice() {
                [value] if matches!(value.get().as_bytes().first(), Some(b'{' | b'[')) => {
                    Some(Answer::Text(compact(value.get())))
                }
                _ => None,
            },
        }
    }
}

enum Answer {
    Text(String),
    Boolean(bool),
}

impl ScalarUDFImpl for PathFunction {
    fn name(&self) -> &str {
        match self.query {
            Lookup::Value => "json_value",
            Lookup::Query => "json_query",
            Lookup::Exists => "json_exists",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.query {
            Lookup::Exists => DataType::Boolean,
            _ => DataType::Utf8,
        })
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [json, path] if is_string(json) && is_string(path) => Ok(vec![DataType::Utf8, DataType::Utf8]),
            _ => plan_err!(
                "{} takes (STRING, STRING path), not {arg_types:?}; the RETURNING, ON EMPTY, ON ERROR and WRAPPER \
                 clauses are not supported yet (CAST the result instead)",
                self.name().to_uppercase()
            ),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (documents, paths) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let mut parsed = self.parsed.lock();
        let mut texts = StringBuilder::with_capacity(documents.len(), documents.len() * 8);
        let mut booleans = BooleanBuilder::with_capacity(documents.len());
        for row in 0..documents.len() {
            let answer = match (documents.is_valid(row), paths.is_valid(row)) {
                (true, true) => {
                    let text = paths.value(row);
                    if parsed.as_ref().is_none_or(|(p, _)| p != text) {
                        *parsed = Some((text.to_string(), Path::parse(text)));
                    }
                    match parsed.as_ref().map(|(_, path)| path) {
                        Some(Ok(path)) => self.answer(path, documents.value(row)),
                        // A path that does not parse: an error, so the ON ERROR default.
                        _ => (self.query == Lookup::Exists).then_some(Answer::Boolean(false)),
                    }
                }
                _ => None,
            };
            match (self.query, answer) {
                (Lookup::Exists, Some(Answer::Boolean(found))) => booleans.append_value(found),
                (Lookup::Exists, _) => booleans.append_null(),
                (_, Some(Answer::Text(text))) => texts.append_value(text),
                (_, _) => texts.append_null(),
            }
        }
        let array: ArrayRef = match self.query {
            Lookup::Exists => Arc::new(booleans.finish()),
            _ => Arc::new(texts.finish()),
        };
        Ok(ColumnarValue::Array(array))
    }
}

fn is_string(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null)
}

/// Whether `data_type` is written as a JSON number or boolean (else as a string).
fn is_json_literal(data_type: &DataType) -> bool {
    data_type.is_numeric() || *data_type == DataType::Boolean
}

/// A value of a column as JSON text, appended to `out`: numbers and booleans as they
/// are, anything else as a JSON string of its text.
fn write_json(column: &ArrayRef, texts: &arrow_array::StringArray, row: usize, out: &mut String) {
    let text = texts.value(row);
    match is_json_literal(column.data_type()) {
        true => out.push_str(text),
        false => out.push_str(&serde_json::to_string(text).unwrap_or_default()),
    }
}

/// The columns as text, to write as JSON.
fn as_texts(arrays: &[ArrayRef]) -> Result<Vec<ArrayRef>> {
    arrays.iter().map(|a| arrow_cast::cast(a, &DataType::Utf8).map_err(Into::into)).collect()
}

/// `JSON_STRING(value)`: the value as JSON text (`1`, `"text"`, `true`); NULL for NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonString {
    signature: Signature,
}

impl Default for JsonString {
    fn default() -> Self {
        JsonString { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for JsonString {
    fn name(&self) -> &str {
        "json_string"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = as_texts(&arrays)?;
        let texts = texts[0].as_string::<i32>();
        let mut out = StringBuilder::with_capacity(texts.len(), texts.len() * 8);
        let mut value = String::new();
        for row in 0..texts.len() {
            if arrays[0].is_null(row) {
                out.append_null();
                continue;
            }
            value.clear();
            write_json(&arrays[0], texts, row, &mut value);
            out.append_value(&value);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `JSON_ARRAY(value, ...)`: a JSON array of the values, NULLs left out (Flink's
/// default `ABSENT ON NULL`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonArray {
    signature: Signature,
}

impl Default for JsonArray {
    fn default() -> Self {
        JsonArray { signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for JsonArray {
    fn name(&self) -> &str {
        "json_array"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = as_texts(&arrays)?;
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        let mut value = String::new();
        for row in 0..rows {
            value.clear();
            value.push('[');
            for (column, text) in arrays.iter().zip(&texts) {
                if column.is_valid(row) {
                    if value.len() > 1 {
                        value.push(',');
                    }
                    write_json(column, text.as_string::<i32>(), row, &mut value);
                }
            }
            value.push(']');
            out.append_value(&value);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str, path: &str) -> Option<String> {
        match PathFunction::new(Lookup::Value).answer(&Path::parse(path).unwrap(), json) {
            Some(Answer::Text(text)) => Some(text),
            _ => None,
        }
    }

    fn query(json: &str, path: &str) -> Option<String> {
        match PathFunction::new(Lookup::Query).answer(&Path::parse(path).unwrap(), json) {
            Some(Answer::Text(text)) => Some(text),
            _ => None,
        }
    }

    fn exists(json: &str, path: &str) -> bool {
        matches!(
            PathFunction::new(Lookup::Exists).answer(&Path::parse(path).unwrap(), json),
            Some(Answer::Boolean(true))
        )
    }

    const ORDER: &str = r#"{"id": 7, "customer": {"name": "Zoë \"Z\"", "vip": true},
        "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}], "note": null, "total": 12.50}"#;

    #[test]
    fn json_value_finds_a_scalar_as_text() {
        assert_eq!(value(ORDER, "$.id").as_deref(), Some("7"));
        assert_eq!(value(ORDER, "$.customer.name").as_deref(), Some("Zoë \"Z\""));
        assert_eq!(value(ORDER, "lax $.customer.vip").as_deref(), Some("true"));
        assert_eq!(value(ORDER, "$.items[1].sku").as_deref(), Some("b"));
        assert_eq!(value(ORDER, "$['total']").as_deref(), Some("12.50"));
        assert_eq!(value(ORDER, "$.\"id\"").as_deref(), Some("7"));
        // NULL for null, nothing, objects, several values, and text that is not JSON.
        assert_eq!(value(ORDER, "$.note"), None);
        assert_eq!(value(ORDER, "$.missing"), None);
        assert_eq!(value(ORDER, "$.customer"), None);
        assert_eq!(value(ORDER, "$.items[*].sku"), None);
        assert_eq!(value("{not json", "$.id"), None);
    }

    #[test]
    fn json_query_finds_an_object_or_array_as_compact_text() {
        assert_eq!(query(ORDER, "$.customer").as_deref(), Some(r#"{"name":"Zoë \"Z\"","vip":true}"#));
        assert_eq!(query(ORDER, "$.items[0]").as_deref(), Some(r#"{"sku":"a","qty":2}"#));
        assert_eq!(query(ORDER, "$").map(|t| t.len()), Some(compact(ORDER).len()));
        assert_eq!(query(ORDER, "$.id"), None, "a scalar, without an array wrapper");
    }

    #[test]
    fn json_exists_in_lax_and_strict_modes() {
        assert!(exists(ORDER, "$.items[0].qty"));
        assert!(exists(ORDER, "$.note"), "a member holding null exists");
        assert!(!exists(ORDER, "$.missing"));
        // Lax: a member step on an array applies to its elements.
        assert!(exists(ORDER, "lax $.items.sku"));
        assert!(!exists(ORDER, "strict $.items.sku"));
        assert!(!exists(ORDER, "strict $.missing"));
        assert!(!exists("[1, 2", "$"));
    }

    #[test]
    fn paths_that_do_not_parse_say_why() {
        assert!(Path::parse("id").unwrap_err().contains("starts with $"));
        assert!(Path::parse("$.items[x]").unwrap_err().contains("[x]"));
        assert!(Path::parse("$.").unwrap_err().contains("member name"));
        assert_eq!(Path::parse("strict $.a[2]").unwrap().steps, vec![Step::Member("a".into()), Step::Element(2)]);
    }
}
