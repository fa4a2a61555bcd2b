//! A job file compiled into one Sluice job: its tables and views into the catalog, its
//! `SET` statements into the job's configuration, and all its inserts (and queries,
//! which print their rows) planned into one job graph.

use crate::ddl::TableDefinition;
use crate::plan::Catalog;
use crate::script::{parse_script_positioned, Position, Statement};
use crate::stream::StreamPlanner;
use crate::SqlError;
use datafusion_expr::{LogicalPlan, ScalarUDF};
use sluice_api::{CheckpointConfig, DeliveryGuarantee};
use sluice_runtime::{JobGraph, RuntimeConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Functions written in Rust that a job file may register with `CREATE FUNCTION name
/// AS 'identifier'`, by identifier. It starts with the Nexmark benchmark's `count_char`,
/// under the identifier of Flink's Nexmark jar (`com.github.nexmark.flink.udf.CountChar`),
/// so that the benchmark's query files run unchanged.
#[derive(Clone)]
pub struct Functions {
    scalar: HashMap<String, Arc<ScalarUDF>>,
}

impl Default for Functions {
    fn default() -> Self {
        let nexmark = ("com.github.nexmark.flink.udf.CountChar".to_string(), Arc::new(crate::functions::count_char()));
        Functions { scalar: HashMap::from([nexmark]) }
    }
}

impl Functions {
    /// Makes `function` available under `identifier`.
    pub fn scalar(mut self, identifier: &str, function: ScalarUDF) -> Self {
        self.scalar.insert(identifier.to_string(), Arc::new(function));
        self
    }
}

/// A job file, compiled.
pub struct CompiledJob {
    /// What its `EXPLAIN` statements print, in order.
    pub explained: Vec<String>,
    /// The job of its inserts and queries; `None` if it has none.
    pub graph: Option<JobGraph>,
    /// Workers and batches (`parallelism.default`).
    pub runtime: RuntimeConfig,
    /// Checkpoints, if `execution.checkpointing.interval` is set.
    pub checkpointing: Option<CheckpointConfig>,
    /// `table.exec.state.ttl`: how long idle state is kept.
    pub state_ttl: Option<Duration>,
}

/// The `SET` keys a job file may set (Flink's names).
pub const SETTINGS: [&str; 10] = [
    "parallelism.default",
    "execution.checkpointing.interval",
    "execution.checkpointing.mode",
    "execution.checkpointing.dir",
    "execution.checkpointing.timeout",
    "execution.checkpointing.min-pause",
    "execution.checkpointing.num-retained",
    "execution.runtime-mode",
    "table.exec.state.ttl",
    "table.exec.source.idle-timeout",
];

/// Flink settings that tune Flink's own planner or client, with nothing to do here.
const IGNORED_PREFIXES: [&str; 5] =
    ["table.exec.mini-batch.", "table.optimizer.", "sql-client.", "pipeline.", "table.local-time-zone"];

#[derive(Default)]
struct Settings {
    parallelism: Option<usize>,
    interval: Option<Duration>,
    exactly_once: bool,
    dir: Option<String>,
    timeout: Option<Duration>,
    min_pause: Option<Duration>,
    retained: Option<usize>,
    state_ttl: Option<Duration>,
    idle_timeout: Option<Duration>,
}

pub(crate) fn duration(value: &str) -> Result<Duration, String> {
    // Flink writes durations as `10s`, `10 s`, `1 min`, `500 ms`.
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let compact = compact.to_ascii_lowercase();
    let compact = compact.strip_suffix("sec").map(|s| format!("{s}s")).unwrap_or(compact);
    sluice_api::parse_duration(&compact).map_err(|e| e.to_string())
}

impl Settings {
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = |v: &str| v.trim().parse::<usize>().map_err(|_| format!("'{key}' must be a number, not '{v}'"));
        match key {
            "parallelism.default" => self.parallelism = Some(number(value)?.max(1)),
            "execution.checkpointing.interval" => self.interval = Some(duration(value)?),
            "execution.checkpointing.mode" => {
                self.exactly_once = match value.to_ascii_uppercase().as_str() {
                    "EXACTLY_ONCE" => true,
                    "AT_LEAST_ONCE" => false,
                    other => return Err(format!("'{key}' is EXACTLY_ONCE or AT_LEAST_ONCE, not '{other}'")),
                }
            }
            "execution.checkpointing.dir" | "state.checkpoints.dir" => self.dir = Some(value.to_string()),
            "execution.checkpointing.timeout" => self.timeout = Some(duration(value)?),
            "execution.checkpointing.min-pause" => self.min_pause = Some(duration(value)?),
            "execution.checkpointing.num-retained" | "state.checkpoints.num-retained" => {
                self.retained = Some(number(value)?.max(1))
            }
            "execution.runtime-mode" => match value.to_ascii_lowercase().as_str() {
                // A bounded source ends its job either way.
                "streaming" | "batch" | "automatic" => {}
                other => return Err(format!("'{key}' is streaming, batch or automatic, not '{other}'")),
            },
            "table.exec.state.ttl" => self.state_ttl = Some(duration(value)?),
            "table.exec.source.idle-timeout" => self.idle_timeout = Some(duration(value)?),
            _ if IGNORED_PREFIXES.iter().any(|p| key.starts_with(p)) => {
                tracing::info!(key, "setting of Flink's own planner or client, ignored");
            }
            _ => return Err(format!("there is no setting '{key}' (the settings: {})", SETTINGS.join(", "))),
        }
        Ok(())
    }
}

/// Compiles a job file.
pub fn compile(script: &str, functions: &Functions) -> Result<CompiledJob, SqlError> {
    let statements = parse_script_positioned(script)?;
    let mut catalog = Catalog::new();
    let mut settings = Settings { exactly_once: true, ..Settings::default() };
    let mut explained = Vec::new();
    // Inserts and queries, planned once every table is known.
    let mut runs: Vec<(LogicalPlan, Option<Arc<TableDefinition>>, Position)> = Vec::new();
    let plan_error = |at: &Position, e: &dyn std::fmt::Display| at.error(e);
    for (statement, at) in &statements {
        match statement {
            Statement::CreateTable(table) => {
                // The connector is named where the table is declared; its options are
                // checked where the table is read or written.
                crate::connectors::check_connector(table).map_err(|e| plan_error(at, &e))?;
                catalog.add_table(table).map_err(|e| plan_error(at, &e))?;
            }
            Statement::CreateView { name, query } => {
                catalog.add_view(name, query).map_err(|e| plan_error(at, &e))?;
            }
            Statement::CreateFunction { name, identifier } => {
                let function = functions.scalar.get(identifier).ok_or_else(|| {
                    let mut known: Vec<&String> = functions.scalar.keys().collect();
                    known.sort();
                    at.error(format!("no function is registered as '{identifier}' (registered: {known:?})"))
                })?;
                catalog.add_scalar_function(name, function.clone());
            }
            Statement::Set { key, value } => settings.set(key, value).map_err(|e| at.error(e))?,
            Statement::Insert(insert) => runs.push(insert_plan(&catalog, insert, at)?),
            Statement::StatementSet(inserts) => {
                for insert in inserts {
                    runs.push(insert_plan(&catalog, insert, at)?);
                }
            }
            Statement::Query(query) => {
                let statement = sqlparser::ast::Statement::Query(query.clone());
                let plan = catalog.optimized(&statement).map_err(|e| plan_error(at, &e))?;
                runs.push((plan, None, *at));
            }
            Statement::Explain(inner) => explained.push(explain(&catalog, inner, at)?),
        }
    }
    let mut planner = StreamPlanner::new(&catalog);
    planner.idle_timeout = settings.idle_timeout.map(|d| d.as_millis() as i64);
    planner.state_ttl = settings.state_ttl.map(|d| d.as_millis() as i64).filter(|ttl| *ttl > 0);
    for (plan, table, at) in &runs {
        let (table, schema) = match table {
            Some(table) => {
                let schema =
                    catalog.table(&table.name).map(|t| t.schema.clone()).expect("invariant: planned against it");
                (table.clone(), schema)
            }
            None => (Arc::new(print_table(at)), Arc::new(plan.schema().as_arrow().clone())),
        };
        planner.add_insert(plan, &table, schema).map_err(|e| at.error(e))?;
    }
    let graph = (!runs.is_empty()).then(|| planner.finish());
    let mut runtime = RuntimeConfig::default();
    if let Some(parallelism) = settings.parallelism {
        runtime.parallelism = parallelism;
    }
    let checkpointing = match settings.interval {
        None => None,
        Some(interval) => {
            let Some(dir) = settings.dir.clone() else {
                let at = statements.first().map(|(_, at)| *at).unwrap_or(Position { statement: 1, line: 1, column: 1 });
                return Err(at.error(
                    "checkpointing is on ('execution.checkpointing.interval'), but there is no \
                     'execution.checkpointing.dir' to keep checkpoints in",
                ));
            };
            let mut config = CheckpointConfig::new(dir, interval);
            if !settings.exactly_once {
                config.guarantee = DeliveryGuarantee::AtLeastOnce;
            }
            if let Some(timeout) = settings.timeout {
                config.timeout = timeout;
            }
            if let Some(pause) = settings.min_pause {
                config.min_pause = pause;
            }
            if let Some(retained) = settings.retained {
                config.retained = retained;
            }
            Some(config)
        }
    };
    Ok(CompiledJob { explained, graph, runtime, checkpointing, state_ttl: settings.state_ttl })
}

/// The print table a query by itself writes its rows to.
fn print_table(at: &Position) -> TableDefinition {
    TableDefinition {
        name: format!("query of statement {}", at.statement),
        columns: Vec::new(),
        watermark: None,
        primary_key: Vec::new(),
        partitioned_by: Vec::new(),
        options: vec![("connector".to_string(), "print".to_string())],
        if_not_exists: false,
        temporary: true,
    }
}

fn insert_plan(
    catalog: &Catalog,
    insert: &sqlparser::ast::Statement,
    at: &Position,
) -> Result<(LogicalPlan, Option<Arc<TableDefinition>>, Position), SqlError> {
    let plan = catalog.optimized(insert).map_err(|e| at.error(e))?;
    let LogicalPlan::Dml(dml) = &plan else {
        return Err(at.error("expected INSERT INTO"));
    };
    let name = dml.table_name.table();
    let table = catalog
        .table(name)
        .and_then(|t| t.definition.clone())
        .ok_or_else(|| at.error(format!("{name} is a view: INSERT INTO writes to a table")))?;
    Ok((plan, Some(table), *at))
}

fn explain(catalog: &Catalog, statement: &Statement, at: &Position) -> Result<String, SqlError> {
    let plans: Vec<sqlparser::ast::Statement> = match statement {
        Statement::Insert(insert) => vec![(**insert).clone()],
        Statement::StatementSet(inserts) => inserts.clone(),
        Statement::Query(query) => vec![sqlparser::ast::Statement::Query(query.clone())],
        _ => return Err(at.error("EXPLAIN explains a query, an INSERT INTO or a statement set")),
    };
    let mut text = String::new();
    let mut planner = StreamPlanner::new(catalog);
    for statement in &plans {
        let plan = catalog.optimized(statement).map_err(|e| at.error(e))?;
        text.push_str("== Optimized logical plan ==\n");
        text.push_str(&plan.display_indent().to_string());
        text.push('\n');
        let (table, schema) = match &plan {
            LogicalPlan::Dml(dml) => {
                let table = catalog.table(dml.table_name.table()).expect("invariant: planned against it");
                (table.definition.clone().expect("invariant: a table"), table.schema.clone())
            }
            _ => (Arc::new(print_table(at)), Arc::new(plan.schema().as_arrow().clone())),
        };
        planner.add_insert(&plan, &table, schema).map_err(|e| at.error(e))?;
    }
    let graph = planner.finish();
    text.push_str("\n== Streaming job ==\n");
    text.push_str(&graph.topology.explain(RuntimeConfig::default().parallelism));
    Ok(text)
}
