//! Flink's window table functions, `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))` and
//! `HOP`, `CUMULATE`, `SESSION`, taken out of a statement before DataFusion plans it
//! (its planner has no table functions of tables): each call is replaced by a table
//! named `__window_N`, and described by a [`WindowTvf`]. The catalog plans those
//! tables as the input table with Flink's three window columns added
//! (`window_start`, `window_end`, `window_time`), and the stream planner runs them.

use sqlparser::ast::{
    DateTimeField, Expr, FunctionArg, FunctionArgExpr, FunctionArgOperator, FunctionArguments, Ident, ObjectName,
    Query, TableFactor, Value, VisitMut, VisitorMut,
};
use std::ops::ControlFlow;

/// The kind of a window table function, with its lengths in milliseconds: a window's
/// `size`, how far apart windows start (`slide`), how much longer each cumulating
/// window of a period is than the one before (`step`), how far windows are shifted from
/// the epoch (`offset`), and the longest pause inside a session (`gap`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum WindowKind {
    /// `TUMBLE(data, timecol, size [, offset])`.
    Tumble { size: i64, offset: i64 },
    /// `HOP(data, timecol, slide, size [, offset])`.
    Hop { slide: i64, size: i64, offset: i64 },
    /// `CUMULATE(data, timecol, step, size [, offset])`.
    Cumulate { step: i64, size: i64, offset: i64 },
    /// `SESSION(data [PARTITION BY keys], timecol, gap)`.
    Session { gap: i64 },
}

/// One window table function call of a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowTvf {
    /// The name of the table that replaced it.
    pub name: String,
    /// The table or view it windows (for a query, its alias or `a subquery`).
    pub table: String,
    /// The query it windows, when not a table: what a group window function's `FROM`
    /// subquery becomes.
    pub query: Option<Box<Query>>,
    /// The time column (`DESCRIPTOR(col)`).
    pub time: String,
    /// Its kind and lengths.
    pub kind: WindowKind,
}

/// Replaces the window table function calls of `statement` by tables, numbered from
/// `first`; returns their descriptions.
pub fn take_windows(statement: &mut impl VisitMut, first: usize) -> Result<Vec<WindowTvf>, String> {
    let mut taker = Taker { next: first, windows: Vec::new(), error: None };
    let _ = statement.visit(&mut taker);
    match taker.error {
        Some(error) => Err(error),
        None => Ok(taker.windows),
    }
}

struct Taker {
    next: usize,
    windows: Vec<WindowTvf>,
    error: Option<String>,
}

impl VisitorMut for Taker {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::TableFunction { expr: Expr::Function(function), alias } = factor else {
            return ControlFlow::Continue(());
        };
        let kind = function.name.to_string().to_ascii_uppercase();
        if !matches!(kind.as_str(), "TUMBLE" | "HOP" | "CUMULATE" | "SESSION") {
            return ControlFlow::Continue(());
        }
        let name = format!("__window_{}", self.next);
        let label = alias.as_ref().map(|a| a.name.value.clone());
        match window(&kind, &function.args, &name, label) {
            Ok(window) => {
                self.next += 1;
                self.windows.push(window);
                *factor = TableFactor::Table {
                    name: ObjectName::from(vec![Ident::new(&name)]),
                    alias: alias.take(),
                    args: None,
                    with_hints: Vec::new(),
                    version: None,
                    with_ordinality: false,
                    partitions: Vec::new(),
                    json_path: None,
                    sample: None,
                    index_hints: Vec::new(),
                };
                ControlFlow::Continue(())
            }
            Err(error) => {
                self.error = Some(error);
                ControlFlow::Break(())
            }
        }
    }
}

/// The arguments in Flink's order, named ones (`DATA => ...`) put in their place.
fn ordered(args: &FunctionArguments, names: &[&str]) -> Result<Vec<Option<Expr>>, String> {
    let FunctionArguments::List(list) = args else { return Err("expects arguments".to_string()) };
    let mut slots: Vec<Option<Expr>> = vec![None; names.len()];
    for (i, arg) in list.args.iter().enumerate() {
        let (slot, expr) = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (i, e),
            FunctionArg::Named { name, arg: FunctionArgExpr::Expr(e), operator: FunctionArgOperator::RightArrow } => {
                let at = names.iter().position(|n| n.eq_ignore_ascii_case(&name.value));
                (at.ok_or_else(|| format!("has no argument {} (it takes {})", name.value, names.join(", ")))?, e)
            }
            other => return Err(format!("cannot take the argument {other}")),
        };
        if slot >= slots.len() {
            return Err(format!("takes at most {} arguments ({})", names.len(), names.join(", ")));
        }
        slots[slot] = Some(expr.clone());
    }
    Ok(slots)
}

fn window(kind: &str, args: &FunctionArguments, name: &str, alias: Option<String>) -> Result<WindowTvf, String> {
    let names: &[&str] = match kind {
        "TUMBLE" => &["DATA", "TIMECOL", "SIZE", "OFFSET"],
        "HOP" => &["DATA", "TIMECOL", "SLIDE", "SIZE", "OFFSET"],
        "CUMULATE" => &["DATA", "TIMECOL", "STEP", "SIZE", "OFFSET"],
        _ => &["DATA", "TIMECOL", "GAP"],
    };
    let fail = |e: String| format!("{kind}: {e}");
    let slots = ordered(args, names).map_err(fail)?;
    let required = |i: usize| slots[i].clone().ok_or_else(|| fail(format!("needs the argument {}", names[i])));
    let (table, query) = match required(0)? {
        Expr::Subquery(query) => (alias.unwrap_or_else(|| "a subquery".to_string()), Some(query)),
        data => (table_argument(&data).map_err(fail)?, None),
    };
    let time = descriptor(&required(1)?).map_err(fail)?;
    let length = |i: usize| -> Result<i64, String> { interval_millis(&required(i)?).map_err(fail) };
    let offset = |i: usize| -> Result<i64, String> {
        slots.get(i).cloned().flatten().map_or(Ok(0), |e| interval_millis(&e).map_err(fail))
    };
    let kind = match kind {
        "TUMBLE" => WindowKind::Tumble { size: length(2)?, offset: offset(3)? },
        "HOP" => {
            let (slide, size) = (length(2)?, length(3)?);
            if size % slide != 0 {
                return Err(fail(format!("the size ({size} ms) must be a multiple of the slide ({slide} ms)")));
            }
            WindowKind::Hop { slide, size, offset: offset(4)? }
        }
        "CUMULATE" => {
            let (step, size) = (length(2)?, length(3)?);
            if size % step != 0 {
                return Err(fail(format!("the size ({size} ms) must be a multiple of the step ({step} ms)")));
            }
            WindowKind::Cumulate { step, size, offset: offset(4)? }
        }
        _ => WindowKind::Session { gap: length(2)? },
    };
    Ok(WindowTvf { name: name.to_string(), table, query, time, kind })
}

/// `TABLE t` (read by the dialect as the call `TABLE(t)`, its `PARTITION BY` keys as
/// further arguments), or a bare name. A session is kept per key of the aggregation
/// over it, so the partition keys are not needed.
fn table_argument(expr: &Expr) -> Result<String, String> {
    match expr {
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("TABLE") => match &f.args {
            FunctionArguments::List(list) => match list.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(e)), ..] => table_argument(e),
                _ => Err("TABLE takes one table name".to_string()),
            },
            _ => Err("TABLE takes one table name".to_string()),
        },
        Expr::Identifier(ident) => Ok(ident.value.clone()),
        Expr::CompoundIdentifier(parts) => Ok(parts.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join(".")),
        other => Err(format!("the first argument must be TABLE name, not {other} (a subquery: make it a view)")),
    }
}

fn descriptor(expr: &Expr) -> Result<String, String> {
    match expr {
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") => match &f.args {
            FunctionArguments::List(list) => match list.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(column)))] => Ok(column.value.clone()),
                _ => Err("DESCRIPTOR takes one column".to_string()),
            },
            _ => Err("DESCRIPTOR takes one column".to_string()),
        },
        other => Err(format!("the time column is given as DESCRIPTOR(column), not {other}")),
    }
}

/// An interval literal (`INTERVAL '10' SECOND`) in milliseconds.
pub fn interval_millis(expr: &Expr) -> Result<i64, String> {
    let Expr::Interval(interval) = expr else { return Err(format!("expected an INTERVAL, found {expr}")) };
    let text = match interval.value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
            other => return Err(format!("an INTERVAL of {other}")),
        },
        other => return Err(format!("an INTERVAL of {other}")),
    };
    let unit = match &interval.leading_field {
        None => {
            // INTERVAL '10 SECOND'
            let mut words = text.split_whitespace();
            let (Some(n), Some(unit)) = (words.next(), words.next()) else {
                return Err(format!("INTERVAL '{text}' has no unit"));
            };
            return Ok(
                n.parse::<i64>().map_err(|_| format!("INTERVAL '{text}'"))? * unit_millis(&unit.to_ascii_uppercase())?
            );
        }
        Some(field) => match field {
            DateTimeField::Millisecond | DateTimeField::Milliseconds => 1,
            DateTimeField::Second | DateTimeField::Seconds => 1000,
            DateTimeField::Minute | DateTimeField::Minutes => 60_000,
            DateTimeField::Hour | DateTimeField::Hours => 3_600_000,
            DateTimeField::Day | DateTimeField::Days => 86_400_000,
            other => {
                return Err(format!("an INTERVAL in {other} has no fixed length: use DAY, HOUR, MINUTE or SECOND"))
            }
        },
    };
    let value: f64 = text.trim().parse().map_err(|_| format!("INTERVAL '{text}' is not a number"))?;
    Ok((value * unit as f64).round() as i64)
}

fn unit_millis(unit: &str) -> Result<i64, String> {
    Ok(match unit.trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        other => return Err(format!("unknown interval unit {other}")),
    })
}
