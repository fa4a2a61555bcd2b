//! Flink's scalar functions that DataFusion lacks or defines otherwise, as DataFusion
//! functions under Flink's names: `SPLIT_INDEX`, `REGEXP_EXTRACT`, `DATE_FORMAT` and
//! `PROCTIME`.

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use datafusion_common::{exec_err, plan_err, Result};
use datafusion_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use std::sync::{Arc, Mutex};

/// Flink's functions, to register beside DataFusion's (they take precedence).
pub fn flink_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(SplitIndex::default())),
        Arc::new(ScalarUDF::from(RegexpExtract::default())),
        Arc::new(ScalarUDF::from(DateFormat::default())),
        Arc::new(ScalarUDF::from(ProcTime::default())),
    ]
}

/// The name of Flink's `PROCTIME()`, as the planner recognises it.
pub const PROCTIME: &str = "proctime";

/// Flink's `PROCTIME()`: the processing time at which a row is computed, a
/// `TIMESTAMP_LTZ(3)`. Volatile, so that planning never folds it into a constant.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ProcTime {
    signature: Signature,
}

impl Default for ProcTime {
    fn default() -> Self {
        ProcTime { signature: Signature::exact(Vec::new(), Volatility::Volatile) }
    }
}

impl ScalarUDFImpl for ProcTime {
    fn name(&self) -> &str {
        PROCTIME
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())))
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let now = sluice_runtime::now_millis();
        Ok(ColumnarValue::Scalar(datafusion_common::ScalarValue::TimestampMillisecond(Some(now), Some("UTC".into()))))
    }
}

fn user_defined() -> Signature {
    Signature::user_defined(Volatility::Immutable)
}

fn is_string(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null)
}

/// The arguments as arrays of one length (scalars repeated).
fn arrays(args: &ScalarFunctionArgs) -> Result<Vec<ArrayRef>> {
    ColumnarValue::values_to_arrays(&args.args)
}

/// What a function last made from a text argument (a compiled pattern), kept: such
/// arguments are nearly always literals. It takes no part in comparing functions,
/// which compare by their signatures.
#[derive(Debug)]
pub(crate) struct LastMade<T>(Mutex<Option<(String, T)>>);

impl<T> Default for LastMade<T> {
    fn default() -> Self {
        LastMade(Mutex::new(None))
    }
}

impl<T> PartialEq for LastMade<T> {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl<T> Eq for LastMade<T> {}

impl<T> std::hash::Hash for LastMade<T> {
    fn hash<H: std::hash::Hasher>(&self, _state: &mut H) {}
}

impl<T> LastMade<T> {
    /// The kept (text, value), if any; a panic elsewhere leaves it usable.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Option<(String, T)>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Nexmark's `count_char(string, char)`: how many times `char` (its first character)
/// occurs in `string`.
pub fn count_char() -> ScalarUDF {
    ScalarUDF::from(CountChar { signature: user_defined() })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CountChar {
    signature: Signature,
}

impl ScalarUDFImpl for CountChar {
    fn name(&self) -> &str {
        "count_char"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [s, c] if is_string(s) && is_string(c) => Ok(vec![DataType::Utf8, DataType::Utf8]),
            _ => plan_err!("count_char takes (STRING, STRING), not {arg_types:?}"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let (strings, chars) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let counts: arrow_array::Int64Array = (0..strings.len())
            .map(|row| {
                // As Nexmark's: a NULL string has no such character.
                let c = chars.is_valid(row).then(|| chars.value(row).chars().next()).flatten()?;
                let string = if strings.is_valid(row) { strings.value(row) } else { "" };
                Some(string.chars().filter(|x| *x == c).count() as i64)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(counts)))
    }
}

/// `SPLIT_INDEX(string, delimiter, index)`: the `index`-th (from 0) part of `string`
/// split at `delimiter`, NULL if there is no such part.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SplitIndex {
    signature: Signature,
}

impl Default for SplitIndex {
    fn default() -> Self {
        SplitIndex { signature: user_defined() }
    }
}

impl ScalarUDFImpl for SplitIndex {
    fn name(&self) -> &str {
        "split_index"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [s, d, i] if is_string(s) && is_string(d) && (i.is_integer() || *i == DataType::Null) => {
                Ok(vec![DataType::Utf8, DataType::Utf8, DataType::Int64])
            }
            _ => plan_err!("SPLIT_INDEX takes (STRING, STRING, INT), not {arg_types:?}"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let (strings, delimiters) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let indices = arrays[2].as_primitive::<Int64Type>();
        let mut out = StringBuilder::with_capacity(strings.len(), strings.len() * 8);
        for row in 0..strings.len() {
            if strings.is_null(row) || delimiters.is_null(row) || indices.is_null(row) {
                out.append_null();
                continue;
            }
            let (string, delimiter, index) = (strings.value(row), delimiters.value(row), indices.value(row));
            let part = match (usize::try_from(index), delimiter.is_empty()) {
                (Ok(index), false) => string.split(delimiter).nth(index),
                (Ok(0), true) => Some(string),
                _ => None,
            };
            out.append_option(part);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `REGEXP_EXTRACT(string, regex[, group])`: the text of match group `group` (0 the
/// whole match, the default) of the first match of `regex`, NULL without a match, a
/// valid regex or such a group.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpExtract {
    signature: Signature,
    /// The last pattern compiled.
    compiled: LastMade<Option<regex::Regex>>,
}

impl Default for RegexpExtract {
    fn default() -> Self {
        RegexpExtract { signature: user_defined(), compiled: LastMade::default() }
    }
}

impl ScalarUDFImpl for RegexpExtract {
    fn name(&self) -> &str {
        "regexp_extract"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [s, r] if is_string(s) && is_string(r) => Ok(vec![DataType::Utf8, DataType::Utf8]),
            [s, r, i] if is_string(s) && is_string(r) && (i.is_integer() || *i == DataType::Null) => {
                Ok(vec![DataType::Utf8, DataType::Utf8, DataType::Int64])
            }
            _ => plan_err!("REGEXP_EXTRACT takes (STRING, STRING[, INT]), not {arg_types:?}"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let (strings, patterns) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let groups = arrays.get(2).map(|a| a.as_primitive::<Int64Type>());
        let mut compiled = self.compiled.lock();
        let mut out = StringBuilder::with_capacity(strings.len(), strings.len() * 8);
        for row in 0..strings.len() {
            let group = groups.map_or(Some(0), |g| (!g.is_null(row)).then(|| g.value(row)));
            let (Some(group), false, false) = (group, strings.is_null(row), patterns.is_null(row)) else {
                out.append_null();
                continue;
            };
            let pattern = patterns.value(row);
            if compiled.as_ref().is_none_or(|(p, _)| p != pattern) {
                *compiled = Some((pattern.to_string(), regex::Regex::new(pattern).ok()));
            }
            let regex = compiled.as_ref().and_then(|(_, r)| r.as_ref());
            let found = regex
                .and_then(|r| r.captures(strings.value(row)))
                .and_then(|c| usize::try_from(group).ok().and_then(|g| c.get(g)))
                .map(|m| m.as_str());
            out.append_option(found);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `DATE_FORMAT(timestamp, format)`: the timestamp as text in a Java
/// `SimpleDateFormat` pattern (`yyyy-MM-dd HH:mm:ss`), in UTC.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateFormat {
    signature: Signature,
    /// The last pattern converted to chrono's.
    converted: LastMade<String>,
}

impl Default for DateFormat {
    fn default() -> Self {
        DateFormat { signature: user_defined(), converted: LastMade::default() }
    }
}

impl ScalarUDFImpl for DateFormat {
    fn name(&self) -> &str {
        "date_format"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null, f] if is_string(f) => {
                Ok(vec![DataType::Timestamp(TimeUnit::Millisecond, None), DataType::Utf8])
            }
            _ => plan_err!("DATE_FORMAT takes (TIMESTAMP, STRING), not {arg_types:?}"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = arrays(&args)?;
        let times = arrays[0].as_primitive::<TimestampMillisecondType>();
        let formats = arrays[1].as_string::<i32>();
        let mut converted = self.converted.lock();
        let mut out = StringBuilder::with_capacity(times.len(), times.len() * 10);
        let mut text = String::new();
        for row in 0..times.len() {
            if times.is_null(row) || formats.is_null(row) {
                out.append_null();
                continue;
            }
            let format = formats.value(row);
            if converted.as_ref().is_none_or(|(f, _)| f != format) {
                *converted = Some((format.to_string(), chrono_format(format)));
            }
            let Some(time) = chrono::DateTime::from_timestamp_millis(times.value(row)) else {
                return exec_err!("DATE_FORMAT: {} ms is out of range", times.value(row));
            };
            text.clear();
            let pattern = &converted.as_ref().expect("invariant: converted").1;
            use std::fmt::Write;
            if write!(text, "{}", time.naive_utc().format(pattern)).is_err() {
                return exec_err!("DATE_FORMAT: cannot format with '{format}'");
            }
            out.append_value(&text);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// A Java `SimpleDateFormat` pattern as a chrono format string.
fn chrono_format(java: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = java.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        if c == '\'' {
            // Quoted text, in which '' is a quote; '' alone is a quote too.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            let mut j = i + 1;
            while j < chars.len() {
                if chars[j] == '\'' {
                    if chars.get(j + 1) == Some(&'\'') {
                        out.push('\'');
                        j += 2;
                        continue;
                    }
                    break;
                }
                if chars[j] == '%' {
                    out.push('%');
                }
                out.push(chars[j]);
                j += 1;
            }
            i = j + 1;
            continue;
        }
        let spec = match (c, run) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('D', _) => "%j",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('h', 1) => "%-I",
            ('h', _) => "%I",
            ('m', 1) => "%-M",
            ('m', _) => "%M",
            ('s', 1) => "%-S",
            ('s', _) => "%S",
            ('S', 1..=3) => "%3f",
            ('S', 6) => "%6f",
            ('S', _) => "%9f",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('a', _) => "%p",
            ('Z', _) | ('X', _) => "+0000",
            ('%', _) => "%%",
            _ => {
                out.extend(std::iter::repeat_n(c, run));
                i += run;
                continue;
            }
        };
        out.push_str(spec);
        i += run;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chrono_format;

    #[test]
    fn java_date_patterns_become_chrono_formats() {
        assert_eq!(chrono_format("yyyy-MM-dd"), "%Y-%m-%d");
        assert_eq!(chrono_format("yyyy-MM-dd HH:mm:ss.SSS"), "%Y-%m-%d %H:%M:%S.%3f");
        assert_eq!(chrono_format("HH:mm 'o''clock'"), "%H:%M o'clock");
        assert_eq!(chrono_format("d/M/yy"), "%-d/%-m/%y");
    }
}
