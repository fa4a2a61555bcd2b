//! Temporal joins' tables, `JOIN side FOR SYSTEM_TIME AS OF b.p_time AS s`, taken out of
//! a statement before DataFusion plans it (its planner ignores `FOR SYSTEM_TIME`): each
//! such table is renamed `__temporal_N`, and described by a [`TemporalTable`]. The
//! catalog plans it as the table's columns; the stream planner joins it as of the
//! time given.

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, JoinConstraint, JoinOperator, ObjectName, Query, SetExpr, TableAlias, TableFactor,
    TableVersion, VisitMut, VisitorMut,
};
use std::ops::ControlFlow;

/// One table read `FOR SYSTEM_TIME AS OF` a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemporalTable {
    /// The name it was given.
    pub name: String,
    /// The table.
    pub table: String,
    /// The time it is read as of: a time attribute of the other side of the join.
    pub time: Expr,
    /// The name its columns are read under (its alias, or its own name).
    pub alias: Ident,
}

/// Renames the temporal tables of `statement`, numbered from `first`; returns them.
pub fn take_temporal_tables(statement: &mut impl VisitMut, first: usize) -> Vec<TemporalTable> {
    let mut taker = Taker { next: first, tables: Vec::new() };
    let _ = statement.visit(&mut taker);
    taker.tables
}

struct Taker {
    next: usize,
    tables: Vec<TemporalTable>,
}

impl VisitorMut for Taker {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, alias, version, .. } = factor else { return ControlFlow::Continue(()) };
        let Some(TableVersion::ForSystemTimeAsOf(time)) = version.take() else { return ControlFlow::Continue(()) };
        let table = name.to_string();
        let renamed = format!("__temporal_{}", self.next);
        self.next += 1;
        // Unaliased, it keeps the table's name for qualified columns.
        if alias.is_none() {
            let last = name.0.last().and_then(|p| p.as_ident()).cloned().unwrap_or_else(|| Ident::new(&table));
            *alias = Some(TableAlias { explicit: true, name: last, columns: Vec::new(), at: None });
        }
        *name = ObjectName::from(vec![Ident::new(&renamed)]);
        let alias = alias.as_ref().expect("invariant: set above").name.clone();
        self.tables.push(TemporalTable { name: renamed, table, time, alias });
        ControlFlow::Continue(())
    }
}

/// Adds to the `ON` condition of each join of a versioned table (`renamed` to the row
/// time column of each) that the other side's time is at or after the version's:
/// what a temporal join means anyway, and a condition on both sides' times, so that
/// the optimizer keeps both columns for the stream planner, which takes it out again.
pub fn require_times(statement: &mut impl VisitMut, rowtimes: &[(TemporalTable, String)]) {
    let _ = statement.visit(&mut Requirer { rowtimes });
}

struct Requirer<'a> {
    rowtimes: &'a [(TemporalTable, String)],
}

impl VisitorMut for Requirer<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else { return ControlFlow::Continue(()) };
        for from in &mut select.from {
            for join in &mut from.joins {
                let TableFactor::Table { name, .. } = &join.relation else { continue };
                let name = name.to_string();
                let Some((temporal, rowtime)) = self.rowtimes.iter().find(|(t, _)| t.name == name) else { continue };
                let constraint = match &mut join.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::Left(c)
                    | JoinOperator::LeftOuter(c) => c,
                    _ => continue,
                };
                if let JoinConstraint::On(on) = constraint {
                    let version = Expr::CompoundIdentifier(vec![temporal.alias.clone(), Ident::new(rowtime)]);
                    let at_or_after = Expr::BinaryOp {
                        left: Box::new(temporal.time.clone()),
                        op: BinaryOperator::GtEq,
                        right: Box::new(version),
                    };
                    *on = Expr::BinaryOp {
                        left: Box::new(Expr::Nested(Box::new(on.clone()))),
                        op: BinaryOperator::And,
                        right: Box::new(at_or_after),
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }
}
