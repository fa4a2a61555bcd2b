//! Planning a job's queries with DataFusion: the job file's tables, as Arrow schemas,
//! its views, and DataFusion's function library, through its `ContextProvider`. A plan
//! is type checked (DataFusion's analyzer: type coercion) and rewritten by the
//! optimizer rules that hold for streams as well as for tables (expression
//! simplification, projection and filter push-down, common subexpressions); none
//! that needs the whole input (limits, sorts) or statistics.

use crate::ddl::{ColumnKind, TableDefinition};
use crate::dialect::FlinkDialect;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion_common::config::ConfigOptions;
use datafusion_common::{DFSchema, DataFusionError, Result, TableReference};
use datafusion_expr::planner::ContextProvider;
use datafusion_expr::{AggregateUDF, ExprSchemable, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF};
use datafusion_sql::planner::{PlannerContext, SqlToRel};
use std::collections::HashMap;
use std::sync::Arc;

/// A table or view of the job file.
#[derive(Clone, Debug)]
pub struct Table {
    /// Its columns: physical, metadata and computed.
    pub schema: SchemaRef,
    /// Its definition; `None` for a view.
    pub definition: Option<Arc<TableDefinition>>,
    /// A view's plan.
    pub view: Option<Arc<LogicalPlan>>,
}

/// A view as DataFusion's planner sees it: a table whose plan it inlines.
struct ViewSource {
    plan: Arc<LogicalPlan>,
    schema: SchemaRef,
}

impl TableSource for ViewSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn get_logical_plan(&self) -> Option<std::borrow::Cow<'_, LogicalPlan>> {
        Some(std::borrow::Cow::Borrowed(&self.plan))
    }
}

/// A table as DataFusion's planner sees it: its columns. Filters stay above the scan
/// (a connector takes none).
struct StreamTable {
    schema: SchemaRef,
}

impl TableSource for StreamTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// A window table function's result as DataFusion's planner sees it: the input table
/// with the window's three columns; the stream planner runs it.
#[derive(Debug)]
pub struct WindowSource {
    /// The call.
    pub tvf: crate::tvf::WindowTvf,
    /// The plan of its input table (a view inlined).
    pub input: Arc<LogicalPlan>,
    schema: SchemaRef,
}

impl WindowSource {
    /// Holds a call's name while its input is planned.
    fn placeholder(tvf: &crate::tvf::WindowTvf) -> Self {
        let empty = Arc::new(LogicalPlan::EmptyRelation(datafusion_expr::logical_plan::EmptyRelation {
            produce_one_row: false,
            schema: Arc::new(DFSchema::empty()),
        }));
        WindowSource { tvf: tvf.clone(), input: empty, schema: Arc::new(Schema::empty()) }
    }
}

impl TableSource for WindowSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// A table of a temporal join (`FOR SYSTEM_TIME AS OF`) as DataFusion's planner sees
/// it: the table's columns; the stream planner joins it as of the time.
#[derive(Debug)]
pub struct TemporalSource {
    /// The table, and the time it is read as of.
    pub temporal: crate::temporal::TemporalTable,
    /// Whether that time is a `PROCTIME()` of the other side, found when the query is
    /// planned (the optimizer may prune the column before the stream planner sees it).
    pub proctime: std::sync::OnceLock<bool>,
    schema: SchemaRef,
}

impl TableSource for TemporalSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The temporal join table under `plan`, through aliases and filters.
fn temporal_source(plan: &LogicalPlan) -> Option<&TemporalSource> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => temporal_source(&alias.input),
        LogicalPlan::Filter(filter) => temporal_source(&filter.input),
        LogicalPlan::TableScan(scan) => scan.source.as_ref().downcast_ref::<TemporalSource>(),
        _ => None,
    }
}

/// The tables and functions a job's queries are planned against.
pub struct Catalog {
    tables: HashMap<String, Table>,
    /// The window table function calls of the statements planned so far, by the name
    /// of the table each became.
    windows: std::cell::RefCell<HashMap<String, Arc<WindowSource>>>,
    /// The temporal joins' tables of the statements planned so far, likewise.
    temporals: std::cell::RefCell<HashMap<String, Arc<TemporalSource>>>,
    scalar: HashMap<String, Arc<ScalarUDF>>,
    aggregate: HashMap<String, Arc<AggregateUDF>>,
    window: HashMap<String, Arc<WindowUDF>>,
    /// How DataFusion plans the syntax its function library gives meaning to: field
    /// access (`person.id`), `EXTRACT`, `POSITION`, `SUBSTRING`, `COUNT(*)`, ...
    planners: Vec<Arc<dyn datafusion_expr::planner::ExprPlanner>>,
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

/// DataFusion's options set to Flink's rules: identifiers keep their case (Flink's
/// names are case sensitive), and decimal literals are decimals.
fn flink_options() -> ConfigOptions {
    let mut options = ConfigOptions::default();
    options.sql_parser.enable_ident_normalization = false;
    // `0.908` is a DECIMAL(3, 3) in Flink, not a double.
    options.sql_parser.parse_float_as_decimal = true;
    options
}

impl Catalog {
    /// An empty catalog with DataFusion's scalar, aggregate and window functions.
    pub fn new() -> Self {
        let names = |name: &str, aliases: &[String]| {
            std::iter::once(name.to_string()).chain(aliases.iter().cloned()).collect::<Vec<_>>()
        };
        Catalog {
            tables: HashMap::new(),
            windows: Default::default(),
            temporals: Default::default(),
            // Flink's functions last: where a name is DataFusion's too, Flink's wins.
            scalar: by_name(
                datafusion_functions::all_default_functions()
                    .into_iter()
                    .chain(crate::functions::flink_functions())
                    .chain(crate::json_functions::json_functions())
                    .collect(),
                |f: &ScalarUDF| names(f.name(), f.aliases()),
            ),
            aggregate: by_name(
                datafusion_functions_aggregate::all_default_aggregate_functions(),
                |f: &AggregateUDF| names(f.name(), f.aliases()),
            ),
            window: by_name(datafusion_functions_window::all_default_window_functions(), |f: &WindowUDF| {
                names(f.name(), f.aliases())
            }),
            planners: vec![
                Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
                Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
                Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
                Arc::new(datafusion_functions_aggregate::planner::AggregateFunctionPlanner),
                Arc::new(datafusion_functions_window::planner::WindowFunctionPlanner),
            ],
            options: flink_options(),
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
                    let mut expression = (**expression).clone();
                    crate::rewrite::flink_expr_to_datafusion(&mut expression);
                    let expr = planner.sql_to_expr(expression, &schema, &mut PlannerContext::new())?;
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
        let entry = Table { schema: schema.clone(), definition: Some(Arc::new(table.clone())), view: None };
        self.insert(&table.name, entry)?;
        Ok(schema)
    }

    fn insert(&mut self, name: &str, table: Table) -> Result<()> {
        match self.tables.entry(name.to_ascii_lowercase()) {
            std::collections::hash_map::Entry::Occupied(_) => {
                Err(DataFusionError::Plan(format!("there is already a table or view named {name}")))
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(table);
                Ok(())
            }
        }
    }

    /// Adds a view: `query`, planned now, and inlined where the view is read.
    pub fn add_view(&mut self, name: &str, query: &sqlparser::ast::Query) -> Result<SchemaRef> {
        let statement = sqlparser::ast::Statement::Query(Box::new(query.clone()));
        let plan = self.plan(&statement)?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        self.insert(name, Table { schema: schema.clone(), definition: None, view: Some(Arc::new(plan)) })?;
        Ok(schema)
    }

    /// The table or view `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(&name.to_ascii_lowercase())
    }

    /// Registers a scalar function under `name`.
    pub fn add_scalar_function(&mut self, name: &str, function: Arc<ScalarUDF>) {
        self.scalar.insert(name.to_ascii_lowercase(), function);
    }

    /// The logical plan of a query or insert, type checked, not optimized.
    pub fn plan(&self, statement: &sqlparser::ast::Statement) -> Result<LogicalPlan> {
        let mut statement = statement.clone();
        crate::rewrite::flink_to_datafusion(&mut statement);
        crate::group_window::to_window_functions(&mut statement).map_err(DataFusionError::Plan)?;
        let first = self.temporals.borrow().len();
        let temporals = crate::temporal::take_temporal_tables(&mut statement, first);
        let rowtimes: Vec<(crate::temporal::TemporalTable, String)> = temporals
            .iter()
            .filter_map(|t| {
                let watermark = self.table(&t.table)?.definition.as_ref()?.watermark.as_ref()?;
                Some((t.clone(), watermark.column.clone()))
            })
            .collect();
        crate::temporal::require_times(&mut statement, &rowtimes);
        for temporal in temporals {
            let table = self.table(&temporal.table).filter(|t| t.definition.is_some()).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "FOR SYSTEM_TIME AS OF reads a table, and there is no table {} (a view cannot be versioned)",
                    temporal.table
                ))
            })?;
            let source = TemporalSource { schema: table.schema.clone(), temporal, proctime: Default::default() };
            self.temporals.borrow_mut().insert(source.temporal.name.clone(), Arc::new(source));
        }
        let first = self.windows.borrow().len();
        let tvfs = crate::tvf::take_windows(&mut statement, first).map_err(DataFusionError::Plan)?;
        // Reserved before their inputs are planned: a subquery's own windows are
        // numbered after them.
        for tvf in &tvfs {
            self.windows.borrow_mut().insert(tvf.name.clone(), Arc::new(WindowSource::placeholder(tvf)));
        }
        for tvf in tvfs {
            let window = self.window_source(tvf)?;
            self.windows.borrow_mut().insert(window.tvf.name.clone(), Arc::new(window));
        }
        let plan = SqlToRel::new(self).sql_statement_to_plan(statement)?;
        let plan = datafusion_optimizer::Analyzer::new().execute_and_check(plan, &self.options, |_, _| {})?;
        self.note_temporal_times(&plan)?;
        Ok(plan)
    }

    /// Notes, for each temporal join of `plan`, whether it is as of a processing time.
    fn note_temporal_times(&self, plan: &LogicalPlan) -> Result<()> {
        use datafusion_common::tree_node::{TreeNode, TreeNodeRecursion};
        plan.apply(|node| {
            if let LogicalPlan::Join(join) = node {
                if let Some(temporal) = temporal_source(&join.right) {
                    let time = match &temporal.temporal.time {
                        sqlparser::ast::Expr::Identifier(ident) => Some(ident.value.clone()),
                        sqlparser::ast::Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.clone()),
                        _ => None,
                    };
                    let at = time.and_then(|t| join.left.schema().fields().iter().position(|f| *f.name() == t));
                    let _ = temporal.proctime.set(at.is_some_and(|i| self.is_proctime(&join.left, i)));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(())
    }

    /// Whether column `index` of `plan` is a `PROCTIME()`, read through projections.
    fn is_proctime(&self, plan: &LogicalPlan, index: usize) -> bool {
        let mut expr = match plan {
            LogicalPlan::SubqueryAlias(alias) => return self.is_proctime(&alias.input, index),
            LogicalPlan::Filter(filter) => return self.is_proctime(&filter.input, index),
            LogicalPlan::Projection(projection) => match projection.expr.get(index) {
                Some(expr) => expr,
                None => return false,
            },
            LogicalPlan::TableScan(scan) => {
                let column = scan.projection.as_ref().map_or(Some(index), |p| p.get(index).copied());
                let table = self.table(scan.table_name.table()).and_then(|t| t.definition.clone());
                return match (table, column) {
                    (Some(table), Some(column)) => match &table.columns[column].kind {
                        ColumnKind::Computed(expr) => {
                            matches!(&**expr, sqlparser::ast::Expr::Function(f)
                                if f.name.to_string().eq_ignore_ascii_case(crate::functions::PROCTIME))
                        }
                        _ => false,
                    },
                    _ => false,
                };
            }
            _ => return false,
        };
        while let datafusion_expr::Expr::Alias(alias) = expr {
            expr = &alias.expr;
        }
        match expr {
            datafusion_expr::Expr::ScalarFunction(call) => call.func.name() == crate::functions::PROCTIME,
            datafusion_expr::Expr::Column(column) => match plan {
                LogicalPlan::Projection(projection) => projection
                    .input
                    .schema()
                    .index_of_column(column)
                    .is_ok_and(|i| self.is_proctime(&projection.input, i)),
                _ => false,
            },
            _ => false,
        }
    }

    /// The table a window table function call becomes.
    fn window_source(&self, tvf: crate::tvf::WindowTvf) -> Result<WindowSource> {
        let input = match &tvf.query {
            // Optimized now: the statement's optimizer does not see inside the window.
            Some(query) => self.optimize(self.plan(&sqlparser::ast::Statement::Query(query.clone()))?)?,
            None => {
                let reference = TableReference::bare(tvf.table.clone());
                datafusion_expr::LogicalPlanBuilder::scan(reference.clone(), self.get_table_source(reference)?, None)?
                    .build()?
            }
        };
        let arrow = input.schema().as_arrow();
        let time = arrow.field_with_name(&tvf.time).map_err(|_| {
            DataFusionError::Plan(format!("the window's time column {} is not a column of {}", tvf.time, tvf.table))
        })?;
        let DataType::Timestamp(_, zone) = time.data_type() else {
            return Err(DataFusionError::Plan(format!(
                "the window's time column {} is a {}, not a TIMESTAMP(3) time attribute",
                tvf.time,
                time.data_type()
            )));
        };
        let window_type = DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, zone.clone());
        let mut fields: Vec<Field> = arrow.fields().iter().map(|f| f.as_ref().clone()).collect();
        for name in ["window_start", "window_end", "window_time"] {
            fields.push(Field::new(name, window_type.clone(), false));
        }
        Ok(WindowSource { tvf, input: Arc::new(input), schema: Arc::new(Schema::new(fields)) })
    }

    /// The plan of a query or insert as it runs: type checked and optimized.
    pub fn optimized(&self, statement: &sqlparser::ast::Statement) -> Result<LogicalPlan> {
        self.optimize(self.plan(statement)?)
    }

    /// `plan` rewritten by the optimizer rules that hold for streams.
    fn optimize(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        use datafusion_optimizer::{
            common_subexpr_eliminate::CommonSubexprEliminate, eliminate_cross_join::EliminateCrossJoin,
            eliminate_filter::EliminateFilter, eliminate_outer_join::EliminateOuterJoin,
            extract_equijoin_predicate::ExtractEquijoinPredicate, extract_leaf_expressions::ExtractLeafExpressions,
            extract_leaf_expressions::PushDownLeafProjections, optimize_projections::OptimizeProjections,
            push_down_filter::PushDownFilter, simplify_expressions::SimplifyExpressions, Optimizer, OptimizerContext,
            OptimizerRule,
        };
        let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![
            Arc::new(SimplifyExpressions::new()),
            // Joins: equalities between the two sides become the join's keys, and
            // `FROM a, b WHERE a.k = b.k` an inner join.
            Arc::new(ExtractEquijoinPredicate::new()),
            Arc::new(EliminateFilter::new()),
            Arc::new(EliminateCrossJoin::new()),
            Arc::new(EliminateOuterJoin::new()),
            Arc::new(PushDownFilter::new()),
            Arc::new(CommonSubexprEliminate::new()),
            Arc::new(ExtractLeafExpressions::new()),
            Arc::new(PushDownLeafProjections::new()),
            Arc::new(OptimizeProjections::new()),
        ];
        // Without a start time, `NOW()` and the like stay functions of the time they
        // are evaluated at, as in a stream they must.
        let context = OptimizerContext::new_with_config_options(Arc::new(self.options.clone()))
            .without_query_execution_start_time();
        Optimizer::with_rules(rules).optimize(plan, &context, |_, _| {})
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
        if let Some(window) = self.windows.borrow().get(name.table()) {
            return Ok(window.clone());
        }
        if let Some(temporal) = self.temporals.borrow().get(name.table()) {
            return Ok(temporal.clone());
        }
        let table = name.table().to_ascii_lowercase();
        match self.tables.get(&table) {
            Some(Table { view: Some(plan), schema, .. }) => {
                Ok(Arc::new(ViewSource { plan: plan.clone(), schema: schema.clone() }))
            }
            Some(Table { schema, .. }) => Ok(Arc::new(StreamTable { schema: schema.clone() })),
            None => {
                let mut known: Vec<&String> = self.tables.keys().collect();
                known.sort();
                Err(DataFusionError::Plan(format!("there is no table {name} (the job file creates {known:?})")))
            }
        }
    }

    fn get_expr_planners(&self) -> &[Arc<dyn datafusion_expr::planner::ExprPlanner>] {
        &self.planners
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
        let schema = catalog.tables["bid"].schema.clone();
        assert_eq!(
            schema.field_with_name("euro").map(|f| f.data_type().clone()).ok(),
            Some(DataType::Decimal128(24, 3)),
            "a decimal literal times a BIGINT is a DECIMAL"
        );
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
