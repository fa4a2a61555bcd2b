//! Temporal joins' tables, `JOIN side FOR SYSTEM_TIME AS OF b.p_time AS s`, taken out of
//! a statement before DataFusion plans it (its planner ignores `FOR SYSTEM_TIME`): each
//! such table is renamed `__temporal_N`, and described by a [`TemporalTable`]. The
//! catalog plans it as the table's columns; the stream planner joins it as of the
//! time given.

use sqlparser::ast::{Expr, Ident, ObjectName, TableAlias, TableFactor, TableVersion, VisitMut, VisitorMut};
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
        self.tables.push(TemporalTable { name: renamed, table, time });
        ControlFlow::Continue(())
    }
}
