//! Which fields of its `ROW` columns a query reads, so that a table's decoder can read
//! past the others (the Nexmark events are read through `Bid.auction`, `Bid.price`,
//! ..., and most queries need two or three of a bid's seven fields).
//!
//! Columns are matched by name across the whole plan, whichever table or subquery a
//! reference is qualified by: a name used as a whole anywhere counts for every `ROW`
//! column of that name. A column counts as read whole unless each use of it is a
//! field access (`Bid.price`), a NULL test (`Bid IS NOT NULL`), or a projection
//! passing it on under its own name (whose uses above are then looked at by name);
//! the query's own output, and the inputs of a `UNION` (which renames columns by
//! position), read theirs whole.

use crate::format::Unread;
use crate::plan::WindowSource;
use arrow_schema::{DataType, Schema};
use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion_common::ScalarValue;
use datafusion_expr::{Expr, LogicalPlan};
use std::collections::{BTreeSet, HashMap};

/// The fields read of each column, by the column's name: `None` when it is read whole.
#[derive(Debug, Default)]
pub struct FieldUses(HashMap<String, Option<BTreeSet<String>>>);

impl FieldUses {
    /// The uses in `plan`, a query whose output is read whole.
    pub fn of(plan: &LogicalPlan) -> Self {
        let mut uses = FieldUses::default();
        uses.plan(plan);
        uses.schema(plan.schema().as_arrow());
        uses
    }

    /// Adds the uses in `expr`, an expression evaluated on a table's rows (a computed
    /// column, a watermark).
    pub fn add_expr(&mut self, expr: &Expr) {
        self.expr(expr);
    }

    /// Counts the column named `column` as read whole.
    pub fn add_whole(&mut self, column: &str) {
        self.whole(column);
    }

    /// The fields of the `ROW` columns of `schema` that no use reads.
    pub fn unread(&self, schema: &Schema) -> Unread {
        let mut unread = BTreeSet::new();
        for field in schema.fields() {
            if let (DataType::Struct(children), Some(Some(read))) = (field.data_type(), self.0.get(field.name())) {
                for child in children.iter().filter(|child| !read.contains(child.name())) {
                    unread.insert((field.name().clone(), child.name().clone()));
                }
            }
        }
        Unread::new(unread)
    }

    fn plan(&mut self, plan: &LogicalPlan) {
        match plan {
            LogicalPlan::TableScan(scan) => {
                if let Some(window) = scan.source.as_ref().downcast_ref::<WindowSource>() {
                    self.plan(&window.input);
                    self.schema(window.input.schema().as_arrow());
                }
            }
            LogicalPlan::Projection(projection) => {
                for expr in &projection.expr {
                    if !matches!(expr, Expr::Column(_)) {
                        self.expr(expr);
                    }
                }
            }
            LogicalPlan::Union(union) => {
                for input in &union.inputs {
                    self.schema(input.schema().as_arrow());
                }
            }
            other => {
                for expr in other.expressions() {
                    self.expr(&expr);
                }
            }
        }
        for input in plan.inputs() {
            self.plan(input);
        }
    }

    fn schema(&mut self, schema: &Schema) {
        for field in schema.fields() {
            self.whole(field.name());
        }
    }

    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::ScalarFunction(call) if call.func.name() == "get_field" => {
                if let [Expr::Column(column), Expr::Literal(ScalarValue::Utf8(Some(field)), _)] = call.args.as_slice() {
                    self.field(&column.name, field);
                    return;
                }
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                if let Expr::Column(column) = inner.as_ref() {
                    self.0.entry(column.name.clone()).or_insert_with(|| Some(BTreeSet::new()));
                    return;
                }
            }
            Expr::Column(column) => return self.whole(&column.name),
            Expr::OuterReferenceColumn(_, column) => return self.whole(&column.name),
            Expr::ScalarSubquery(subquery) => self.subquery(&subquery.subquery),
            Expr::Exists(exists) => self.subquery(&exists.subquery.subquery),
            Expr::InSubquery(in_subquery) => self.subquery(&in_subquery.subquery.subquery),
            _ => {}
        }
        let _ = expr.apply_children(|child| {
            self.expr(child);
            Ok(TreeNodeRecursion::Continue)
        });
    }

    fn subquery(&mut self, plan: &LogicalPlan) {
        self.plan(plan);
        self.schema(plan.schema().as_arrow());
    }

    fn field(&mut self, column: &str, field: &str) {
        if let Some(fields) = self.0.entry(column.to_string()).or_insert_with(|| Some(BTreeSet::new())) {
            fields.insert(field.to_string());
        }
    }

    fn whole(&mut self, column: &str) {
        self.0.insert(column.to_string(), None);
    }
}
