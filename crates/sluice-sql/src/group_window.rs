//! Flink's older group window functions, rewritten into the window table functions
//! they are equivalent to:
//!
//! ```sql
//! SELECT bidder, SESSION_START(dateTime, INTERVAL '10' SECOND), COUNT(*)
//! FROM bid GROUP BY bidder, SESSION(dateTime, INTERVAL '10' SECOND)
//! -- is
//! SELECT bidder, window_start, COUNT(*)
//! FROM TABLE(SESSION(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND)) AS bid
//! GROUP BY bidder, window_start, window_end
//! ```
//!
//! `TUMBLE(t, size)`, `HOP(t, slide, size)` and `SESSION(t, gap)` in a `GROUP BY`
//! window the query's one table or subquery; `*_START`, `*_END` and `*_ROWTIME` are
//! the window's `window_start`, `window_end` and `window_time`.

use sqlparser::ast::{
    Expr, Function, GroupByExpr, Ident, ObjectName, Query, Select, SetExpr, TableAlias, TableFactor, VisitMut,
    VisitorMut,
};
use std::ops::ControlFlow;

/// Rewrites the group window functions of `statement`'s queries.
pub fn to_window_functions(statement: &mut impl VisitMut) -> Result<(), String> {
    let mut rewriter = Rewriter { error: None };
    let _ = statement.visit(&mut rewriter);
    rewriter.error.map_or(Ok(()), Err)
}

struct Rewriter {
    error: Option<String>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            if let Err(error) = rewrite_select(select) {
                self.error = Some(error);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// The group window function of a `GROUP BY` item, by its name's upper case.
fn group_window(expr: &Expr) -> Option<(String, &Function)> {
    let Expr::Function(function) = expr else { return None };
    let name = function.name.to_string().to_ascii_uppercase();
    matches!(name.as_str(), "TUMBLE" | "HOP" | "SESSION").then_some((name, function))
}

fn rewrite_select(select: &mut Select) -> Result<(), String> {
    let GroupByExpr::Expressions(keys, _) = &mut select.group_by else { return Ok(()) };
    let Some(at) = keys.iter().position(|k| group_window(k).is_some()) else { return Ok(()) };
    let (kind, function) = group_window(&keys[at]).expect("invariant: found");
    let fail = |what: &str| format!("the group window {}: {what}", keys[at]);
    let args = crate::rewrite::arguments(function).ok_or_else(|| fail("takes its arguments in order"))?;
    let arity = if kind == "HOP" { 3 } else { 2 };
    if args.len() != arity {
        return Err(fail(&format!("takes {arity} arguments")));
    }
    let time = match &args[0] {
        Expr::Identifier(ident) => ident.clone(),
        Expr::CompoundIdentifier(parts) => parts.last().cloned().expect("invariant: parts"),
        other => return Err(fail(&format!("its time attribute must be a column, not {other}"))),
    };
    if keys.iter().filter(|k| group_window(k).is_some()).count() > 1 {
        return Err(fail("a query has one group window"));
    }
    let [from] = select.from.as_mut_slice() else {
        return Err(fail("the query reads one table or subquery (a join: make it a view)"));
    };
    if !from.joins.is_empty() {
        return Err(fail("the query reads one table or subquery (a join: make it a view)"));
    }
    let (data, alias) = match &mut from.relation {
        TableFactor::Table { name, alias, args: None, .. } => {
            // Unaliased, the window keeps the table's name for qualified columns.
            let alias = alias.take().or_else(|| {
                name.0.last().and_then(|p| p.as_ident()).map(|i| TableAlias {
                    explicit: true,
                    name: i.clone(),
                    columns: Vec::new(),
                    at: None,
                })
            });
            (
                crate::rewrite::call(crate::dialect::TABLE_ARGUMENT, vec![Expr::CompoundIdentifier(ident_parts(name))]),
                alias,
            )
        }
        TableFactor::Derived { subquery, alias, .. } => (Expr::Subquery(subquery.clone()), alias.take()),
        other => return Err(fail(&format!("it cannot window {other}"))),
    };
    let descriptor = crate::rewrite::call("DESCRIPTOR", vec![Expr::Identifier(time)]);
    let window_args = std::iter::once(data).chain([descriptor]).chain(args[1..].iter().cloned()).collect();
    from.relation = TableFactor::TableFunction { expr: crate::rewrite::call(&kind, window_args), alias };

    // The window's columns for the group window's auxiliary functions.
    let mut auxiliary = Auxiliary { kind: kind.clone(), rowtime: false };
    for item in &mut select.projection {
        let _ = item.visit(&mut auxiliary);
    }
    if let Some(having) = &mut select.having {
        let _ = having.visit(&mut auxiliary);
    }
    let GroupByExpr::Expressions(keys, _) = &mut select.group_by else { unreachable!("matched above") };
    let mut window: Vec<Expr> =
        ["window_start", "window_end"].iter().map(|c| Expr::Identifier(Ident::new(*c))).collect();
    if auxiliary.rowtime {
        window.push(Expr::Identifier(Ident::new("window_time")));
    }
    keys.splice(at..=at, window);
    Ok(())
}

fn ident_parts(name: &ObjectName) -> Vec<Ident> {
    name.0.iter().filter_map(|p| p.as_ident().cloned()).collect()
}

/// Replaces `KIND_START(...)`, `KIND_END(...)` and `KIND_ROWTIME(...)` by the window's
/// columns.
struct Auxiliary {
    kind: String,
    rowtime: bool,
}

impl VisitorMut for Auxiliary {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            let name = function.name.to_string().to_ascii_uppercase();
            let column = match name.strip_prefix(&self.kind).and_then(|rest| rest.strip_prefix('_')) {
                Some("START") => "window_start",
                Some("END") => "window_end",
                Some("ROWTIME") => {
                    self.rowtime = true;
                    "window_time"
                }
                _ => return ControlFlow::Continue(()),
            };
            *expr = Expr::Identifier(Ident::new(column));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::FlinkDialect;

    fn rewritten(sql: &str) -> String {
        let mut statement = sqlparser::parser::Parser::parse_sql(&FlinkDialect, sql).expect("parses").remove(0);
        to_window_functions(&mut statement).expect("rewrites");
        statement.to_string()
    }

    #[test]
    fn group_windows_become_window_table_functions() {
        assert_eq!(
            rewritten(
                "SELECT B.bidder, SESSION_START(B.dateTime, INTERVAL '10' SECOND) AS s, COUNT(*) FROM bid B \
                 GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND)"
            ),
            "SELECT B.bidder, window_start AS s, COUNT(*) FROM TABLE(SESSION(TABLE(bid), DESCRIPTOR(dateTime), \
             INTERVAL '10' SECOND)) B GROUP BY B.bidder, window_start, window_end"
        );
        assert_eq!(
            rewritten(
                "SELECT TUMBLE_ROWTIME(t, INTERVAL '1' MINUTE), HOP_END(t, INTERVAL '1' MINUTE) FROM (SELECT * FROM \
                 bid) GROUP BY TUMBLE(t, INTERVAL '1' MINUTE)"
            ),
            "SELECT window_time, HOP_END(t, INTERVAL '1' MINUTE) FROM TABLE(TUMBLE((SELECT * FROM bid), \
             DESCRIPTOR(t), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end, window_time",
            "HOP_END is not TUMBLE's: left for DataFusion to name as unknown"
        );
    }

    #[test]
    fn a_group_window_over_a_join_is_refused() {
        let mut statement = sqlparser::parser::Parser::parse_sql(
            &FlinkDialect,
            "SELECT COUNT(*) FROM a JOIN b ON a.k = b.k GROUP BY TUMBLE(a.t, INTERVAL '1' SECOND)",
        )
        .expect("parses")
        .remove(0);
        let error = to_window_functions(&mut statement).unwrap_err();
        assert!(error.contains("make it a view"), "{error}");
    }
}
