//! Planning a job's queries with DataFusion: the job file's tables, as Arrow schemas,
//! and DataFusion's function library, through its `ContextProvider`.

use crate::ddl::{ColumnKind, TableDefinition};
use crate::dialect::FlinkDialect;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{DFSchema, DataFusionError, Result, TableReference};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::planner::ContextProvider;
use datafusion_expr::{AggregateUDF, ExprSchemable, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF};
use datafusion_sql::planner::{PlannerContext, SqlToRel};
use std::collections::HashMap;
use std::sync::Arc;

/// The tables and functions a job's queries are planned against.
pub struct Catalog {
    tables: HashMap<String, SchemaRef>,
    scalar: HashMap<String, Arc<ScalarUDF>>,
    aggregate: HashMap<String, Arc<AggregateUDF>>,
    window: HashMap<String, Arc<WindowUDF>>,
    options: ConfigOptions,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `functions` by their names and aliases, lower-cased.
fn by_name<F>(functions: Vec<Arc<F>>, names: impl Fn(&F) -> Vec<String>) -> HashMap<String, Arc<F>> {
    let mut map = HashMap::new();
    for function in functions {
        for name in names(&function) {
            map.insert(name.to_ascii_lowercase(), function.clone());
        }
    }
    map
}

impl Catalog {
    /// An empty catalog with DataFusion's scalar, aggregate and window functions.
    pub fn new() -> Self {
        let names = |name: &str, aliases: &[String]| {
            std::iter::once(name.to_string()).chain(aliases.iter().cloned()).collect::<Vec<_>>()
        };
        Catalog {
            tables: HashMap::new(),
            scalar: by_name(datafusion_functions::all_default_functions(), |f: &ScalarUDF| {
                names(f.name(), f.aliases())
            }),
            aggregate: by_name(
                datafusion_functions_aggregate::all_default_aggregate_functions(),
                |f: &AggregateUDF| names(f.name(), f.aliases()),
            ),
            window: by_name(datafusion_functions_window::all_default_window_functions(), |f: &WindowUDF| {
                names(f.name(), f.aliases())
            }),
            options: ConfigOptions::default(),
        }
    }

    /// Adds a table: its physical and metadata columns as declared, its computed
    /// columns typed by their expressions over the columns before them.
    pub fn add_table(&mut self, table: &TableDefinition) -> Result<SchemaRef> {
        let mut fields: Vec<Field> = Vec::with_capacity(table.columns.len());
        for column in &table.columns {
            let field = match (&column.kind, &column.sql_type) {
                (ColumnKind::Computed(expression), _) => {
                    let schema = DFSchema::try_from(Schema::new(fields.clone()))?;
                    let planner = SqlToRel::new(self);
                    let expr = planner.sql_to_expr((**expression).clone(), &schema, &mut PlannerContext::new())?;
                    let (_, field) = expr.to_field(&schema)?;
                    Field::new(&column.name, field.data_type().clone(), field.is_nullable())
                }
                (_, Some(sql_type)) => Field::new(&column.name, sql_type.data_type.clone(), sql_type.nullable),
                (_, None) => return Err(DataFusionError::Plan(format!("column {} has no type", column.name))),
            };
            fields.push(field);
        }
        if let Some(watermark) = &table.watermark {
            let column = fields.iter().find(|f| f.name().eq_ignore_ascii_case(&watermark.column));
            if !column.is_some_and(|f| matches!(f.data_type(), DataType::Timestamp(_, _))) {
                return Err(DataFusionError::Plan(format!(
                    "table {}: the WATERMARK column {} must be a TIMESTAMP(3) or TIMESTAMP_LTZ(3) column",
                    table.name, watermark.column
                )));
            }
        }
        let schema = Arc::new(Schema::new(fields));
        self.tables.insert(table.name.to_ascii_lowercase(), schema.clone());
        Ok(schema)
    }

    /// The logical plan of a query or insert.
    pub fn plan(&self, statement: &sqlparser::ast::Statement) -> Result<LogicalPlan> {
        SqlToRel::new(self).sql_statement_to_plan(statement.clone())
    }

    /// The logical plan of a query given as text (for tests and `EXPLAIN`).
    pub fn plan_sql(&self, sql: &str) -> Result<LogicalPlan> {
        let statement = sqlparser::parser::Parser::new(&FlinkDialect)
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_statement())
            .map_err(|e| DataFusionError::Plan(e.to_string()))?;
        self.plan(&statement)
    }
}

impl ContextProvider for Catalog {
    fn get_table_source(&self, name: TableReference) -> Result<Arc<dyn TableSource>> {
        let table = name.table().to_ascii_lowercase();
        match self.tables.get(&table) {
            Some(schema) => Ok(Arc::new(LogicalTableSource::new(schema.clone()))),
            None => {
                let mut known: Vec<&String> = self.tables.keys().collect();
                known.sort();
                Err(DataFusionError::Plan(format!("there is no table {name} (the job file creates {known:?})")))
            }
        }
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.scalar.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.aggregate.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.window.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.scalar.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.aggregate.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.window.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{parse_script, Statement};

    fn catalog(ddl: &str) -> Catalog {
        let mut catalog = Catalog::new();
        for statement in parse_script(ddl).expect("the DDL parses") {
            if let Statement::CreateTable(table) = statement {
                catalog.add_table(&table).expect("the table is valid");
            }
        }
        catalog
    }

    const BID: &str = "CREATE TABLE bid (
        auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
        date_time TIMESTAMP(3), extra STRING,
        euro AS price * 0.908,
        WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
    ) WITH ('connector' = 'nexmark')";

    #[test]
    fn queries_are_planned_against_the_job_files_tables() {
        let catalog = catalog(BID);
        let schema = catalog.tables["bid"].clone();
        assert_eq!(schema.field_with_name("euro").map(|f| f.data_type().clone()).ok(), Some(DataType::Float64));
        let plan = catalog
            .plan_sql("SELECT auction, UPPER(channel) AS channel, euro FROM bid WHERE price > 10 AND channel LIKE 'a%'")
            .expect("the query plans");
        let shown = plan.display_indent().to_string();
        assert!(shown.contains("Filter: bid.price > Int64(10)") && shown.contains("TableScan: bid"), "{shown}");
        let counted = catalog
            .plan_sql("SELECT auction, COUNT(*) AS bids, MAX(price) FROM bid GROUP BY auction HAVING COUNT(*) > 2")
            .expect("an aggregate plans");
        assert!(counted.display_indent().to_string().contains("Aggregate"), "{}", counted.display_indent());
    }

    #[test]
    fn planning_errors_name_what_is_wrong() {
        let catalog = catalog(BID);
        let unknown_column = catalog.plan_sql("SELECT nope FROM bid").unwrap_err().to_string();
        assert!(unknown_column.contains("nope"), "{unknown_column}");
        let unknown_table = catalog.plan_sql("SELECT * FROM person").unwrap_err().to_string();
        assert!(unknown_table.contains("there is no table person"), "{unknown_table}");
        // Type errors (`channel + 1`) are found by DataFusion's analyzer, which the
        // planner does not run yet.
        let mut bad = Catalog::new();
        let Statement::CreateTable(table) =
            parse_script("CREATE TABLE t (a INT, ts BIGINT, WATERMARK FOR ts AS ts - 1) WITH ('connector' = 'print')")
                .unwrap()
                .remove(0)
        else {
            unreachable!()
        };
        let error = bad.add_table(&table).unwrap_err().to_string();
        assert!(error.contains("must be a TIMESTAMP(3)"), "{error}");
    }
}
