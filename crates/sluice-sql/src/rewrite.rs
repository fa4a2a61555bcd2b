//! Flink's SQL where it differs from DataFusion's, rewritten on the syntax tree
//! before DataFusion plans it:
//!
//! - a select item reading a field of a row (`person.id`) is named after the field
//!   (`id`), as Flink names it;
//! - Flink's functions that DataFusion has under another name or form:
//!   `MOD(a, b)` is `a % b`; `HOUR(t)`, `MINUTE(t)`, `SECOND(t)`, `YEAR(t)`,
//!   `MONTH(t)`, `DAYOFMONTH(t)` are `date_part`; `TO_TIMESTAMP_LTZ(n, 3)` (0: seconds)
//!   is the timestamp `n` milliseconds after the epoch, in UTC.

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, Query,
    SelectItem, SetExpr, Statement, Value, VisitMut, VisitorMut,
};
use std::ops::ControlFlow;

/// Rewrites `statement` from Flink's SQL into DataFusion's.
pub fn flink_to_datafusion(statement: &mut Statement) {
    let _ = statement.visit(&mut FlinkRewriter);
}

/// As [`flink_to_datafusion`], for an expression (a computed column, a watermark).
pub fn flink_expr_to_datafusion(expr: &mut Expr) {
    let _ = expr.visit(&mut FlinkRewriter);
}

struct FlinkRewriter;

impl VisitorMut for FlinkRewriter {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        name_field_reads(&mut query.body);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            if let Some(rewritten) = rewrite_function(function) {
                *expr = rewritten;
            }
        }
        ControlFlow::Continue(())
    }
}

fn name_field_reads(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) = item {
                    if let Some(last) = parts.last().cloned() {
                        *item =
                            SelectItem::ExprWithAlias { expr: Expr::CompoundIdentifier(parts.clone()), alias: last };
                    }
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            name_field_reads(left);
            name_field_reads(right);
        }
        _ => {}
    }
}

/// A call's arguments, if all are plain (unnamed) expressions.
pub(crate) fn arguments(function: &Function) -> Option<Vec<Expr>> {
    let FunctionArguments::List(list) = &function.args else { return None };
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The call `name(args...)`.
pub(crate) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

fn text(value: &str) -> Expr {
    Expr::value(Value::SingleQuotedString(value.to_string()))
}

fn rewrite_function(function: &Function) -> Option<Expr> {
    if function.over.is_some() || function.filter.is_some() {
        return None;
    }
    let name = function.name.to_string().to_ascii_uppercase();
    let args = arguments(function)?;
    Some(match (name.as_str(), args.as_slice()) {
        ("MOD", [a, b]) => Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(a.clone()),
            op: BinaryOperator::Modulo,
            right: Box::new(b.clone()),
        })),
        ("HOUR" | "MINUTE" | "SECOND" | "YEAR" | "MONTH" | "DAYOFMONTH" | "DAYOFYEAR" | "QUARTER", [t]) => {
            let part = match name.as_str() {
                "DAYOFMONTH" => "day",
                "DAYOFYEAR" => "doy",
                other => other,
            };
            let part = call("date_part", vec![text(&part.to_ascii_lowercase()), t.clone()]);
            // Flink's are integers; date_part's are doubles.
            Expr::Cast {
                kind: sqlparser::ast::CastKind::Cast,
                expr: Box::new(part),
                data_type: sqlparser::ast::DataType::BigInt(None),
                array: false,
                format: None,
            }
        }
        ("TO_TIMESTAMP_LTZ", [n, precision]) => {
            // The number is an instant since the epoch: taken as one as it is (a cast
            // from a time zone-less timestamp would look the zone up for each value).
            let count = Expr::Cast {
                kind: sqlparser::ast::CastKind::Cast,
                expr: Box::new(n.clone()),
                data_type: sqlparser::ast::DataType::BigInt(None),
                array: false,
                format: None,
            };
            let millis = text(r#"Timestamp(ms, "UTC")"#);
            match precision {
                Expr::Value(v) if v.value == Value::Number("0".into(), false) => {
                    let seconds = call("arrow_cast", vec![count, text(r#"Timestamp(s, "UTC")"#)]);
                    call("arrow_cast", vec![seconds, millis])
                }
                _ => call("arrow_cast", vec![count, millis]),
            }
        }
        _ => return None,
    })
}
