//! From a DataFusion logical plan to a Sluice job graph.
//!
//! The plan is walked from its leaves: a table scan opens a *segment* (a chain of
//! operators one worker runs with direct calls) at a source; filters and projections
//! add steps to the open segment; an exchange (a `GROUP BY` on a key the input is not
//! partitioned by) ends it with a hash exchange and opens the next at a gate; a sink
//! ends it. Each segment becomes one root of the job graph, built once per worker.
//! Every operator is also recorded in the job's [`Topology`].

use super::aggregate::{AggregateCall, KeyPartitioner, WindowAggregate, WindowAggregateSpec};
use super::assign::{Assign, AssignSpec};
use super::calc::{Calc, CalcSpec};
use super::field_uses::FieldUses;
use super::group::{GroupAggregate, GroupAggregateSpec};
use super::join::{Interval, Join, JoinSpec};
use super::lookup::{LookupJoin, LookupSpec};
use super::over::{Frame, OverAggregate, OverSpec};
use super::rank::{Rank, RankSpec};
use super::retract::{RetractAggregate, RetractAggregateSpec, RetractCall, Retracting};
use super::session::{SessionAggregate, SessionAggregateSpec, SessionColumn};
use super::sliced::{SlicedAggregate, SlicedAggregateSpec};
use super::temporal_join::{TemporalJoin, TemporalJoinSpec};
use super::watermark::{WatermarkAssigner, WatermarkSpec};
use crate::changelog::ROW_KIND;
use crate::connectors::{self, BoxedWriter, ScanSource, TableSink};
use crate::ddl::{ColumnKind, TableDefinition};
use crate::plan::Catalog;
use crate::plan::{TemporalSource, WindowSource};
use crate::tvf::WindowKind;
use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use datafusion_common::tree_node::TreeNode;
use datafusion_common::{DFSchema, DFSchemaRef};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::logical_plan::{Aggregate, Filter, Projection, TableScan};
use datafusion_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion_optimizer::analyzer::type_coercion::TypeCoercionRewriter;
use datafusion_physical_expr::{create_physical_expr, PhysicalExpr};
use datafusion_sql::planner::{PlannerContext, SqlToRel};
use sluice_api::{BatchWriter, SinkContext, SinkNode};
use sluice_runtime::checkpoint::{CheckpointId, Committer, StateWriter};
use sluice_runtime::exchange::HashExchange;
use sluice_runtime::{
    BinaryGate, BuildContext, EdgeId, EdgeKind, JobGraph, Link, OperatorKind, OperatorNode, OperatorState, Output,
    Push, SideOutputs, SourceDriver, Task, Topology, TwoInputNode, UnaryGate,
};
use sluice_types::{Error, Result, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The first operator of a segment.
#[derive(Clone)]
enum Root {
    Source {
        operator: usize,
        source: Arc<dyn ScanSource>,
    },
    Gate {
        edge: EdgeId,
        name: String,
    },
    /// A two-input join behind the gate of its two exchanges.
    Join {
        operator: usize,
        left: EdgeId,
        right: EdgeId,
        spec: Arc<JoinSpec>,
    },
    /// A temporal join of a versioned table, likewise.
    Temporal {
        operator: usize,
        left: EdgeId,
        right: EdgeId,
        spec: Arc<TemporalJoinSpec>,
    },
}

/// An operator chained inside a segment.
#[derive(Clone)]
enum Step {
    Calc(Arc<CalcSpec>),
    Watermark(Arc<WatermarkSpec>),
    Assign(Arc<AssignSpec>),
    WindowAggregate(Arc<WindowAggregateSpec>),
    SessionAggregate(Arc<SessionAggregateSpec>),
    SlicedAggregate(Arc<SlicedAggregateSpec>),
    GroupAggregate(Arc<GroupAggregateSpec>),
    Rank(Arc<RankSpec>),
    Over(Arc<OverSpec>),
    Lookup(Arc<LookupSpec>),
    RetractAggregate(Arc<RetractAggregateSpec>),
}

/// The last operator of a segment.
#[derive(Clone)]
enum End {
    Sink { operator: usize, sink: Arc<dyn TableSink> },
    Exchange { operator: usize, edge: EdgeId, schema: SchemaRef, keys: usize },
}

/// What a column is to event time: Flink's time attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Time {
    /// A plain column.
    None,
    /// The row time (the table's `WATERMARK FOR` column).
    Rowtime,
    /// A window's start.
    WindowStart,
    /// A window's end.
    WindowEnd,
    /// A window's `window_time` (its end less a millisecond): a row time.
    WindowRowtime,
    /// The processing time (`PROCTIME()`).
    Proctime,
}

struct Segment {
    root: Root,
    steps: Vec<(usize, Step)>,
    end: End,
}

/// A stream being planned: the segment it is the end of so far, and its rows.
struct Open {
    root: Root,
    steps: Vec<(usize, Step)>,
    /// The operator producing the stream, and how the next one is linked to it.
    last: usize,
    link: Link,
    schema: DFSchemaRef,
    /// What each column is to event time.
    times: Vec<Time>,
    /// Whether its rows are updates (with a row kind column), not only inserts.
    updating: bool,
    /// The gap of a `SESSION` window whose columns are each row's own window, until a
    /// session window aggregation merges them.
    session: Option<i64>,
    /// Whether the window columns are of processing-time windows (over `PROCTIME()`).
    proctime: bool,
}

/// What a scan reads of its table: the table, its columns' types, the columns the
/// scan returns, and those it needs.
struct ScanColumns {
    definition: Arc<TableDefinition>,
    full: SchemaRef,
    output: Vec<usize>,
    needed: BTreeSet<usize>,
}

impl Open {
    /// A stream starting at `root`, produced by operator `last`, linked to the next by
    /// `link`: append-only rows of `schema` whose time attributes the caller sets.
    fn at(root: Root, last: usize, link: Link, schema: DFSchemaRef) -> Open {
        Open {
            root,
            steps: Vec::new(),
            last,
            link,
            schema,
            times: Vec::new(),
            updating: false,
            session: None,
            proctime: false,
        }
    }
}

/// Plans a job's inserts into one job graph.
pub struct StreamPlanner<'a> {
    catalog: &'a Catalog,
    topology: Topology,
    channels: Vec<EdgeKind>,
    segments: Vec<Segment>,
    committers: BTreeMap<usize, Arc<dyn Committer>>,
    props: ExecutionProps,
    /// After this long without rows a source is idle (`table.exec.source.idle-timeout`).
    pub idle_timeout: Option<Timestamp>,
    /// How long updating operators keep a key not updated (`table.exec.state.ttl`;
    /// `None` for ever, as Flink's `0`).
    pub state_ttl: Option<Timestamp>,
    /// The number of rows a filter above keeps of each `ROW_NUMBER()` window (by the
    /// window node's address in the plan): what makes it a Top-N.
    rank_limits: std::collections::HashMap<usize, usize>,
    /// The hopping window scans (by the scan node's address in the plan) whose rows the
    /// aggregation above takes by slices (`sliced.rs`), and the slice's length.
    to_slice: std::collections::HashMap<usize, i64>,
    /// Those of them whose rows were given slices (not windows of processing time).
    sliced: BTreeSet<usize>,
    /// The tables scanned more than once by the insert being planned, and the physical
    /// columns their scans read together.
    shared: std::collections::HashMap<String, Vec<usize>>,
    /// The shared sources made so far: operator, source and columns, by table.
    sources: std::collections::HashMap<String, (usize, Arc<dyn ScanSource>, SchemaRef)>,
    /// The fields of `ROW` columns the insert being planned reads.
    field_uses: FieldUses,
}

fn unsupported(what: impl std::fmt::Display) -> Error {
    Error::invalid_job(format!("not supported yet in streaming SQL: {what}"))
}

fn plan_error(e: impl std::fmt::Display) -> Error {
    Error::invalid_job(e.to_string())
}

impl<'a> StreamPlanner<'a> {
    /// A planner of queries against `catalog`.
    pub fn new(catalog: &'a Catalog) -> Self {
        StreamPlanner {
            catalog,
            topology: Topology::default(),
            channels: Vec::new(),
            segments: Vec::new(),
            committers: BTreeMap::new(),
            props: ExecutionProps::new(),
            idle_timeout: None,
            state_ttl: None,
            rank_limits: Default::default(),
            to_slice: Default::default(),
            sliced: Default::default(),
            shared: Default::default(),
            sources: Default::default(),
            field_uses: FieldUses::default(),
        }
    }

    /// Plans `plan` (an optimized query) writing into `sink`, whose rows have `schema`.
    pub fn add_insert(&mut self, plan: &LogicalPlan, table: &TableDefinition, schema: SchemaRef) -> Result<()> {
        let input = match plan {
            LogicalPlan::Dml(dml) => dml.input.as_ref(),
            other => other,
        };
        self.note_shared_scans(input)?;
        let open = self.translate(input)?;
        // Sources are shared within an insert: the next plans its own.
        self.shared.clear();
        self.sources.clear();
        unmerged_sessions(&open)?;
        let sink = connectors::sink(table, schema)?;
        if open.updating && !sink.accepts_updates() {
            return Err(Error::invalid_job(format!(
                "the query sends updates (its rows change as more input arrives), which table {} cannot take: its \
                 connector writes appends only. Write to a sink that takes updates (print, or a table with a PRIMARY \
                 KEY on an upsert connector), or make the query append-only (a window aggregation instead of a \
                 GROUP BY)",
                table.name
            )));
        }
        let state = match sink.committer() {
            Some(committer) => {
                let operator = self.topology.operators.len();
                self.committers.insert(operator, committer);
                OperatorState::Transactions
            }
            None => OperatorState::Stateless,
        };
        let operator =
            self.add_operator(&open, &format!("sink: {} ({})", table.name, sink.name()), OperatorKind::Sink, state);
        self.segments.push(Segment { root: open.root, steps: open.steps, end: End::Sink { operator, sink } });
        Ok(())
    }

    fn add_operator(&mut self, open: &Open, name: &str, kind: OperatorKind, state: OperatorState) -> usize {
        let operator = self.topology.add_operator(name, kind, state);
        self.topology.connect(open.last, operator, open.link, None);
        operator
    }

    /// Adds a chained step keeping keyed state (on the heap) to `open`.
    fn keyed_step(&mut self, open: &mut Open, name: &str, step: Step) {
        self.push_step(open, name, OperatorState::Keyed { backend: "heap".to_string() }, step);
    }

    /// Adds a chained step to `open`.
    fn push_step(&mut self, open: &mut Open, name: &str, state: OperatorState, step: Step) {
        let operator = self.add_operator(open, name, OperatorKind::Operator, state);
        open.steps.push((operator, step));
        open.last = operator;
        open.link = Link::Chained;
    }

    fn translate(&mut self, plan: &LogicalPlan) -> Result<Open> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::Projection(projection) => {
                let (mut open, filter) = match projection.input.as_ref() {
                    LogicalPlan::Filter(Filter { predicate, input, .. }) => {
                        self.note_rank_limit(predicate, input);
                        (self.translate(input)?, Some(predicate))
                    }
                    input => (self.translate(input)?, None),
                };
                self.calc(&mut open, filter, Some((&projection.expr, projection.schema.clone())))?;
                Ok(open)
            }
            LogicalPlan::Filter(filter) => {
                self.note_rank_limit(&filter.predicate, &filter.input);
                let mut open = self.translate(&filter.input)?;
                self.calc(&mut open, Some(&filter.predicate), None)?;
                Ok(open)
            }
            LogicalPlan::SubqueryAlias(alias) => {
                let mut open = self.translate(&alias.input)?;
                open.schema = alias.schema.clone();
                Ok(open)
            }
            LogicalPlan::Aggregate(aggregate) => self.aggregate(aggregate),
            LogicalPlan::Join(join) => self.join(join),
            LogicalPlan::Window(window) if is_over_aggregation(window) => self.over(window),
            LogicalPlan::Window(window) => self.rank(window),
            other => Err(unsupported(format!("{} (in the plan {})", other.display(), plan.display_indent()))),
        }
    }

    fn physical(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        // Simplified again: the physical planner takes only simplified expressions
        // (`arrow_cast` rewritten), and a projection the optimizer made after its
        // simplification pass may hold others.
        let context =
            datafusion_expr::simplify::SimplifyContext::builder().with_schema(Arc::new(schema.clone())).build();
        let expr = datafusion_optimizer::simplify_expressions::ExprSimplifier::new(context)
            .simplify(expr.clone())
            .map_err(plan_error)?;
        create_physical_expr(&expr, schema, &self.props, &Default::default()).map_err(plan_error)
    }

    /// Adds a filter and projection step: rows that meet `filter`, then `projections`.
    fn calc(
        &mut self,
        open: &mut Open,
        filter: Option<&Expr>,
        projections: Option<(&Vec<Expr>, DFSchemaRef)>,
    ) -> Result<()> {
        let input = open.schema.clone();
        let filter = filter.map(|f| self.physical(f, &input)).transpose()?;
        let mut name = String::new();
        if filter.is_some() {
            name.push_str("filter");
        }
        let projections = match projections {
            None => None,
            Some((exprs, schema)) => {
                let physical = exprs.iter().map(|e| self.physical(e, &input)).collect::<Result<Vec<_>>>()?;
                open.times = exprs.iter().map(|e| time_of(e, &input, &open.times)).collect();
                if !name.is_empty() {
                    name.push_str(", ");
                }
                name.push_str("project");
                open.schema = schema.clone();
                let mut fields: Vec<arrow_schema::FieldRef> = schema.as_arrow().fields().iter().cloned().collect();
                if open.updating {
                    fields.push(Arc::new(arrow_schema::Field::new(ROW_KIND, arrow_schema::DataType::Int8, false)));
                }
                Some((physical, Arc::new(Schema::new(fields))))
            }
        };
        let spec = CalcSpec { name: name.clone(), filter, projections, row_kind: open.updating, reads: None }
            .reading_first(input.as_arrow())?;
        self.push_step(open, &name, OperatorState::Stateless, Step::Calc(Arc::new(spec)));
        Ok(())
    }

    /// A table read: the source of the physical columns the scan needs; then the
    /// computed columns, the watermark, and the columns the scan returns.
    fn scan(&mut self, scan: &TableScan) -> Result<Open> {
        if let Some(window) = scan.source.as_ref().downcast_ref::<WindowSource>() {
            return self.window_scan(scan, window);
        }
        // A versioned table read as of a time is the table.
        let name = match scan.source.as_ref().downcast_ref::<TemporalSource>() {
            Some(temporal) => temporal.temporal.table.as_str(),
            None => scan.table_name.table(),
        };
        let ScanColumns { definition, full, output, needed } = self.scan_columns(name, scan)?;
        let columns = &definition.columns;
        let physical: Vec<usize> =
            needed.iter().copied().filter(|&i| columns[i].kind == ColumnKind::Physical).collect();
        let source_schema = Arc::new(Schema::new(physical.iter().map(|&i| full.field(i).clone()).collect::<Vec<_>>()));
        let qualified =
            |schema: &SchemaRef| DFSchema::try_from_qualified_schema(name, schema).map(Arc::new).map_err(plan_error);
        let mut open = self.source(name, &definition, &physical)?;
        // A shared source reads the columns of every scan of the table: this one's first.
        if open.schema.fields().len() != physical.len() {
            let exprs: Vec<Expr> = source_schema
                .fields()
                .iter()
                .map(|f| Expr::Column(datafusion_common::Column::new(Some(name), f.name())))
                .collect();
            self.calc(&mut open, None, Some((&exprs, qualified(&source_schema)?)))?;
        }
        open.times = vec![Time::None; source_schema.fields().len()];

        // The needed columns in table order, computed ones evaluated.
        let needed: Vec<usize> = needed.into_iter().collect();
        let computed = needed.iter().any(|&i| matches!(columns[i].kind, ColumnKind::Computed(_)));
        let mut computed_times = vec![Time::None; needed.len()];
        let needed_schema = Arc::new(Schema::new(needed.iter().map(|&i| full.field(i).clone()).collect::<Vec<_>>()));
        if computed {
            let exprs = needed
                .iter()
                .map(|&i| match &columns[i].kind {
                    ColumnKind::Computed(expression) => self.sql_expr(expression, &open.schema),
                    _ => Ok(Expr::Column(datafusion_common::Column::new(Some(name), &columns[i].name))),
                })
                .collect::<Result<Vec<_>>>()?;
            let schema = qualified(&needed_schema)?;
            let input = open.schema.clone();
            computed_times = exprs.iter().map(|e| time_of(e, &input, &[])).collect();
            let physical = exprs.iter().map(|e| self.physical(e, &input)).collect::<Result<Vec<_>>>()?;
            let spec = CalcSpec {
                name: format!("computed columns of {name}"),
                filter: None,
                projections: Some((physical, needed_schema.clone())),
                row_kind: false,
                reads: None,
            };
            self.push_step(
                &mut open,
                &format!("computed columns of {name}"),
                OperatorState::Stateless,
                Step::Calc(Arc::new(spec)),
            );
            open.schema = schema;
        }
        open.times = computed_times;
        if let Some(watermark) = &definition.watermark {
            let rowtime = needed.iter().position(|&i| columns[i].name == watermark.column).expect("invariant: needed");
            let expression = self.sql_expr(&watermark.expression, &open.schema)?;
            let delay = fixed_delay(&expression, &watermark.column);
            let expression = self.physical(&expression, &open.schema)?;
            let spec = WatermarkSpec {
                name: format!("watermark of {name}"),
                rowtime,
                expression,
                delay,
                idle_timeout: self.idle_timeout,
            };
            self.push_step(
                &mut open,
                &format!("watermark of {name}"),
                OperatorState::Instance,
                Step::Watermark(Arc::new(spec)),
            );
            open.times[rowtime] = Time::Rowtime;
        }
        // The columns the scan returns, if not all of those read.
        let returned: Vec<usize> =
            output.iter().map(|i| needed.iter().position(|n| n == i).expect("invariant")).collect();
        if returned != (0..needed.len()).collect::<Vec<_>>() {
            let exprs: Vec<Expr> = returned
                .iter()
                .map(|&i| Expr::Column(datafusion_common::Column::new(Some(name), needed_schema.field(i).name())))
                .collect();
            let schema = scan.projected_schema.clone();
            self.calc(&mut open, None, Some((&exprs, schema)))?;
        }
        open.schema = scan.projected_schema.clone();
        Ok(open)
    }

    /// The table `name` a scan reads, its columns' types, the columns the scan returns,
    /// and those it needs: those returned, the row time, and what they are computed from.
    fn scan_columns(&self, name: &str, scan: &TableScan) -> Result<ScanColumns> {
        let table = self.catalog.table(name).ok_or_else(|| Error::invalid_job(format!("there is no table {name}")))?;
        let definition = table.definition.clone().ok_or_else(|| Error::internal(format!("view {name} not inlined")))?;
        if !scan.filters.is_empty() {
            return Err(Error::internal("filters pushed into a scan"));
        }
        let columns = &definition.columns;
        let index_of = |column: &str| columns.iter().position(|c| c.name == column);
        let output: Vec<usize> = scan.projection.clone().unwrap_or_else(|| (0..columns.len()).collect());
        let mut needed: BTreeSet<usize> = output.iter().copied().collect();
        let mut wanted: Vec<&sqlparser::ast::Expr> = Vec::new();
        if let Some(watermark) = &definition.watermark {
            let rowtime = index_of(&watermark.column).ok_or_else(|| {
                Error::invalid_job(format!("table {name}: the WATERMARK column {} is not a column", watermark.column))
            })?;
            needed.insert(rowtime);
            wanted.push(&watermark.expression);
        }
        loop {
            for i in needed.clone() {
                if let ColumnKind::Computed(expression) = &columns[i].kind {
                    wanted.push(expression);
                }
            }
            let before = needed.len();
            for expression in wanted.drain(..) {
                for used in referenced_columns(expression) {
                    if let Some(i) = columns.iter().position(|c| c.name.eq_ignore_ascii_case(&used)) {
                        needed.insert(i);
                    }
                }
            }
            if needed.len() == before {
                break;
            }
        }
        for &i in &needed {
            if let ColumnKind::Metadata { .. } = columns[i].kind {
                return Err(unsupported(format!("metadata column {} of table {name}", columns[i].name)));
            }
        }
        Ok(ScanColumns { definition: definition.clone(), full: table.schema.clone(), output, needed })
    }

    /// The physical columns of table `name` that each of its scans in `plan` (and in
    /// the inputs of its window table functions) reads, for the tables scanned more
    /// than once: those are read by one shared source.
    fn note_shared_scans(&mut self, plan: &LogicalPlan) -> Result<()> {
        let mut scans: Vec<(String, BTreeSet<usize>)> = Vec::new();
        self.collect_scans(plan, &mut scans)?;
        self.field_uses = FieldUses::of(plan);
        let tables: BTreeSet<&String> = scans.iter().map(|(table, _)| table).collect();
        for table in tables {
            self.note_computed_field_uses(table);
        }
        let mut by_table: std::collections::HashMap<String, (usize, BTreeSet<usize>)> = Default::default();
        for (table, columns) in scans {
            let entry = by_table.entry(table).or_default();
            entry.0 += 1;
            entry.1.extend(columns);
        }
        for (table, (count, columns)) in by_table {
            if count > 1 && !self.sources.contains_key(&table) {
                self.shared.insert(table, columns.into_iter().collect());
            }
        }
        Ok(())
    }

    /// Adds the fields of `ROW` columns that the computed columns and watermark of
    /// `table` read; all of them when these cannot be planned (the error is the scan's to
    /// report).
    fn note_computed_field_uses(&mut self, name: &str) {
        let Some(table) = self.catalog.table(name) else { return };
        let Some(definition) = &table.definition else { return };
        let computed = definition.columns.iter().filter_map(|column| match &column.kind {
            ColumnKind::Computed(expression) => Some(expression.as_ref()),
            _ => None,
        });
        let expressions: Vec<&sqlparser::ast::Expr> =
            computed.chain(definition.watermark.as_ref().map(|w| &w.expression)).collect();
        let schema = DFSchema::try_from_qualified_schema(name, &table.schema);
        for expression in expressions {
            match schema.as_ref().map_err(plan_error).and_then(|schema| self.sql_expr(expression, schema)) {
                Ok(expr) => self.field_uses.add_expr(&expr),
                Err(_) => table.schema.fields().iter().for_each(|field| self.field_uses.add_whole(field.name())),
            }
        }
    }

    fn collect_scans(&self, plan: &LogicalPlan, scans: &mut Vec<(String, BTreeSet<usize>)>) -> Result<()> {
        if let LogicalPlan::TableScan(scan) = plan {
            if let Some(window) = scan.source.as_ref().downcast_ref::<WindowSource>() {
                return self.collect_scans(&window.input, scans);
            }
            // Lookup tables are read whole when the job starts, not by a source.
            let name = match scan.source.as_ref().downcast_ref::<TemporalSource>() {
                Some(temporal) if temporal.proctime.get() == Some(&true) => return Ok(()),
                Some(temporal) => temporal.temporal.table.clone(),
                None => scan.table_name.table().to_string(),
            };
            let ScanColumns { definition, needed, .. } = self.scan_columns(&name, scan)?;
            let physical = needed.into_iter().filter(|&i| definition.columns[i].kind == ColumnKind::Physical);
            scans.push((name, physical.collect()));
            return Ok(());
        }
        for input in plan.inputs() {
            self.collect_scans(input, scans)?;
        }
        Ok(())
    }

    /// A stream from the source of table `name` reading the physical columns `physical`:
    /// a new source, or, for a table scanned more than once, the shared one (reading
    /// the columns of every scan).
    fn source(&mut self, name: &str, definition: &TableDefinition, physical: &[usize]) -> Result<Open> {
        let full = self.catalog.table(name).map(|t| t.schema.clone()).expect("invariant: a table");
        let qualified =
            |schema: &SchemaRef| DFSchema::try_from_qualified_schema(name, schema).map(Arc::new).map_err(plan_error);
        let (operator, source, schema) = match self.sources.get(name) {
            Some(shared) => shared.clone(),
            None => {
                let read = self.shared.get(name).cloned().unwrap_or_else(|| physical.to_vec());
                let schema = Arc::new(Schema::new(read.iter().map(|&i| full.field(i).clone()).collect::<Vec<_>>()));
                let source = connectors::scan(definition, schema.clone(), self.field_uses.unread(&schema))?;
                let operator = self.topology.add_operator(
                    &format!("source: {name} ({})", source.name()),
                    OperatorKind::Source,
                    OperatorState::Positions,
                );
                if self.shared.contains_key(name) {
                    self.sources.insert(name.to_string(), (operator, source.clone(), schema.clone()));
                }
                (operator, source, schema)
            }
        };
        Ok(Open::at(Root::Source { operator, source }, operator, Link::Chained, qualified(&schema)?))
    }

    /// A window table function: its input, each row given its windows.
    fn window_scan(&mut self, scan: &TableScan, window: &WindowSource) -> Result<Open> {
        let tvf = &window.tvf;
        let mut open = self.translate(&window.input)?;
        let time = open
            .schema
            .fields()
            .iter()
            .position(|f| f.name() == &tvf.time)
            .ok_or_else(|| Error::invalid_job(format!("{} has no column {}", tvf.table, tvf.time)))?;
        let proctime = open.times[time] == Time::Proctime;
        if proctime && matches!(tvf.kind, WindowKind::Session { .. }) {
            return Err(unsupported("SESSION windows of processing time (PROCTIME())"));
        }
        if !proctime && !matches!(open.times[time], Time::Rowtime | Time::WindowRowtime) {
            return Err(Error::invalid_job(format!(
                "the window's time column {} of {} is not a time attribute: declare it with WATERMARK FOR {} AS ..., \
                 or compute it as PROCTIME()",
                tvf.time, tvf.table, tvf.time
            )));
        }
        let full = datafusion_expr::TableSource::schema(window);
        let mut name = format!("window {} of {}", window_kind_name(&tvf.kind), tvf.table);
        let mut kind = tvf.kind.clone();
        if let (Some(slice), WindowKind::Hop { offset, .. }, false) =
            (self.to_slice.remove(&(scan as *const TableScan as usize)), &tvf.kind, proctime)
        {
            // Each row once, into its slice: the aggregation above makes the windows.
            name = format!("{name} in slices of {slice} ms");
            kind = WindowKind::Tumble { size: slice, offset: *offset };
            self.sliced.insert(scan as *const TableScan as usize);
        }
        let spec = AssignSpec { name: name.clone(), kind, time, schema: full.clone() };
        self.push_step(&mut open, &name, OperatorState::Stateless, Step::Assign(Arc::new(spec)));
        open.times.extend([Time::WindowStart, Time::WindowEnd, Time::WindowRowtime]);
        if let WindowKind::Session { gap } = tvf.kind {
            open.session = Some(gap);
        }
        open.proctime = proctime;
        open.schema =
            DFSchema::try_from_qualified_schema(scan.table_name.clone(), &full).map(Arc::new).map_err(plan_error)?;
        if let Some(projection) = &scan.projection {
            if *projection != (0..full.fields().len()).collect::<Vec<_>>() {
                let exprs: Vec<Expr> = projection
                    .iter()
                    .map(|&i| {
                        Expr::Column(datafusion_common::Column::new(
                            Some(scan.table_name.clone()),
                            full.field(i).name(),
                        ))
                    })
                    .collect();
                self.calc(&mut open, None, Some((&exprs, scan.projected_schema.clone())))?;
            }
        }
        open.schema = scan.projected_schema.clone();
        Ok(open)
    }

    /// A `GROUP BY`: the group key and the aggregates' arguments computed, the rows
    /// exchanged by the key, and aggregated.
    fn aggregate(&mut self, aggregate: &Aggregate) -> Result<Open> {
        let hop = hop_to_slice(aggregate);
        if let Some(hop) = hop {
            self.to_slice.insert(hop.scan, SlicedAggregateSpec::slice(hop.slide, hop.size));
        }
        let mut open = self.translate(&aggregate.input)?;
        let hop = hop.filter(|hop| self.sliced.remove(&hop.scan));
        let input = open.schema.clone();
        let key_times: Vec<Time> = aggregate.group_expr.iter().map(|e| time_of(e, &input, &open.times)).collect();
        let window_end = key_times.iter().position(|t| *t == Time::WindowEnd);
        let updating = open.updating;
        if updating && window_end.is_some() {
            return Err(unsupported("a window aggregation of updating rows (of a GROUP BY without windows)"));
        }
        let session = match open.session {
            Some(_) if key_times.contains(&Time::WindowStart) && window_end.is_some() => {
                Some(session_layout(&aggregate.group_expr, &key_times))
            }
            Some(_) if window_end.is_some() || key_times.contains(&Time::WindowStart) => {
                return Err(Error::invalid_job(
                    "a SESSION window aggregation groups by both window_start and window_end",
                ));
            }
            _ if hop.is_some() => Some(session_layout(&aggregate.group_expr, &key_times)),
            _ => None,
        };
        // The input laid out as the aggregation reads it: keys, then each call's
        // arguments and filter. The key of a session, or of a hopping window's slice,
        // has the window last, as it is exchanged and kept by the rest.
        let key_exprs = match &session {
            Some((keys, _)) => keys.clone(),
            None => aggregate.group_expr.clone(),
        };
        let keys = key_exprs.len();
        let mut exprs: Vec<Expr> = Vec::new();
        for (i, key) in key_exprs.iter().enumerate() {
            exprs.push(key.clone().alias(format!("__key{i}")));
        }
        let mut calls = Vec::new();
        for (n, call) in aggregate.aggr_expr.iter().enumerate() {
            let Expr::AggregateFunction(function) = unalias(call) else {
                return Err(unsupported(format!("the aggregate {call}")));
            };
            if !function.params.order_by.is_empty() {
                return Err(unsupported(format!("ORDER BY inside the aggregate {call}")));
            }
            let mut args = Vec::new();
            for (a, arg) in function.params.args.iter().enumerate() {
                args.push(exprs.len());
                exprs.push(arg.clone().alias(format!("__arg{n}_{a}")));
            }
            let filter = function.params.filter.as_ref().map(|f| {
                exprs.push((**f).clone().alias(format!("__filter{n}")));
                exprs.len() - 1
            });
            calls.push((function.clone(), args, filter, call.schema_name().to_string()));
        }
        let laid_out = Projection::try_new(exprs.clone(), aggregate.input.clone()).map_err(plan_error)?;
        self.calc(&mut open, None, Some((&exprs, laid_out.schema.clone())))?;
        let laid_schema: SchemaRef = Arc::new(laid_out.schema.as_arrow().clone());
        if updating {
            return self.retracting_aggregate(aggregate, open, calls, laid_schema);
        }
        let calls = calls
            .into_iter()
            .map(|(function, args, filter, name)| {
                let physical: Vec<Arc<dyn PhysicalExpr>> = args
                    .iter()
                    .map(|&i| {
                        Arc::new(datafusion_physical_expr::expressions::Column::new(laid_schema.field(i).name(), i))
                            as Arc<dyn PhysicalExpr>
                    })
                    .collect();
                let built =
                    datafusion_physical_expr::aggregate::AggregateExprBuilder::new(function.func.clone(), physical)
                        .schema(laid_schema.clone())
                        .alias(name)
                        .with_distinct(function.params.distinct)
                        .build()
                        .map_err(plan_error)?;
                Ok(AggregateCall { function: Arc::new(built), args, filter })
            })
            .collect::<Result<Vec<_>>>()?;
        let output: SchemaRef = Arc::new(aggregate.schema.as_arrow().clone());
        let calls_named =
            aggregate.aggr_expr.iter().map(|e| e.schema_name().to_string()).collect::<Vec<_>>().join(", ");
        if let (Some((_, columns)), Some(Hop { slide, size, offset, .. })) = (&session, hop) {
            let mut open = self.through_group_key(open, laid_schema.clone(), keys - 2);
            let name = format!("sliced window aggregate ({calls_named})");
            let spec = SlicedAggregateSpec {
                name: name.clone(),
                keys: keys - 2,
                calls,
                columns: columns.clone(),
                schema: output,
                input: laid_schema,
                slide,
                size,
                offset,
            };
            spec.check()?;
            self.keyed_step(&mut open, &name, Step::SlicedAggregate(Arc::new(spec)));
            open.schema = aggregate.schema.clone();
            open.times =
                key_times.into_iter().chain(std::iter::repeat_n(Time::None, aggregate.aggr_expr.len())).collect();
            return Ok(open);
        }
        if let Some((_, columns)) = session {
            let mut open = self.through_group_key(open, laid_schema.clone(), keys - 2);
            let name = format!("session window aggregate ({calls_named})");
            let spec = SessionAggregateSpec {
                name: name.clone(),
                keys: keys - 2,
                calls,
                columns,
                schema: output,
                input: laid_schema,
            };
            spec.check()?;
            self.keyed_step(&mut open, &name, Step::SessionAggregate(Arc::new(spec)));
            open.schema = aggregate.schema.clone();
            open.times =
                key_times.into_iter().chain(std::iter::repeat_n(Time::None, aggregate.aggr_expr.len())).collect();
            return Ok(open);
        }
        let mut open = self.through_group_key(open, laid_schema.clone(), keys);
        open.schema = laid_out.schema.clone();
        let Some(window_end) = window_end else {
            // No window: results are updated as rows arrive.
            let name = format!("group aggregate ({calls_named})");
            let spec = GroupAggregateSpec {
                name: name.clone(),
                keys,
                calls,
                schema: output,
                input: laid_schema,
                ttl: self.state_ttl,
            };
            spec.check()?;
            self.keyed_step(&mut open, &name, Step::GroupAggregate(Arc::new(spec)));
            open.schema = aggregate.schema.clone();
            open.times = vec![Time::None; aggregate.schema.fields().len()];
            open.updating = true;
            return Ok(open);
        };
        let proctime = open.proctime;
        let name = match proctime {
            true => format!("processing-time window aggregate ({calls_named})"),
            false => format!("window aggregate ({calls_named})"),
        };
        let spec = WindowAggregateSpec {
            name: name.clone(),
            keys,
            window_end,
            calls,
            schema: output,
            input: laid_schema,
            proctime,
        };
        self.keyed_step(&mut open, &name, Step::WindowAggregate(Arc::new(spec)));
        open.schema = aggregate.schema.clone();
        // The window's start and end stay what they are, so that a GROUP BY or a join
        // on them downstream is a window aggregation or join again (as in Flink); not
        // those of processing time, which no watermark closes.
        open.times = match proctime {
            true => vec![Time::None; aggregate.schema.fields().len()],
            false => key_times.into_iter().chain(std::iter::repeat_n(Time::None, aggregate.aggr_expr.len())).collect(),
        };
        Ok(open)
    }

    /// Ends `open`'s segment with a hash exchange by `keys`: the rows laid out as the
    /// keys, then `between`, then `open`'s own columns. The edge, and the laid-out schema.
    fn exchange(
        &mut self,
        mut open: Open,
        keys: &[Expr],
        between: &[Expr],
        input: &Arc<LogicalPlan>,
    ) -> Result<(EdgeId, SchemaRef)> {
        let mut exprs: Vec<Expr> = keys.iter().enumerate().map(|(i, k)| k.clone().alias(format!("__key{i}"))).collect();
        exprs.extend(between.iter().enumerate().map(|(i, e)| e.clone().alias(format!("__by{i}"))));
        exprs.extend(
            open.schema.iter().map(|(qualifier, field)| {
                Expr::Column(datafusion_common::Column::new(qualifier.cloned(), field.name()))
            }),
        );
        let laid_out = Projection::try_new(exprs.clone(), input.clone()).map_err(plan_error)?;
        self.calc(&mut open, None, Some((&exprs, laid_out.schema.clone())))?;
        let schema: SchemaRef = Arc::new(laid_out.schema.as_arrow().clone());
        let exchange =
            self.add_operator(&open, "key by the join key", OperatorKind::Exchange, OperatorState::Stateless);
        self.channels.push(EdgeKind::Hash);
        let edge = self.channels.len() - 1;
        self.segments.push(Segment {
            root: open.root,
            steps: open.steps,
            end: End::Exchange { operator: exchange, edge, schema: schema.clone(), keys: keys.len() },
        });
        Ok((edge, schema))
    }

    /// A regular join (no time bound): both sides exchanged by the join key, into a
    /// join that keeps every row of both.
    fn join(&mut self, join: &datafusion_expr::logical_plan::Join) -> Result<Open> {
        use datafusion_common::NullEquality;
        use datafusion_expr::JoinType;
        if let Some((scan, temporal, filters)) = temporal_scan(&join.right) {
            return self.lookup_join(join, scan, temporal, filters);
        }
        let (left_outer, right_outer) = match join.join_type {
            JoinType::Inner => (false, false),
            JoinType::Left => (true, false),
            JoinType::Right => (false, true),
            JoinType::Full => (true, true),
            other => {
                return Err(unsupported(format!(
                    "{} joins (JOIN, LEFT, RIGHT and FULL JOIN ... ON are supported)",
                    other.to_string().to_uppercase()
                )))
            }
        };
        if join.on.is_empty() {
            return Err(unsupported(
                "a join without an equality between the two sides (a cross join): join ON a.key = b.key",
            ));
        }
        if join.null_equality != NullEquality::NullEqualsNothing {
            return Err(unsupported("a join whose keys match NULL with NULL (IS NOT DISTINCT FROM)"));
        }
        let left = self.translate(&join.left)?;
        let right = self.translate(&join.right)?;
        unmerged_sessions(&left)?;
        unmerged_sessions(&right)?;
        processing_time_windows(&left, "join")?;
        processing_time_windows(&right, "join")?;
        if left.updating || right.updating {
            return Err(unsupported(
                "a join of updating rows (of a GROUP BY without windows): join append-only inputs",
            ));
        }
        let (left_keys, right_keys): (Vec<Expr>, Vec<Expr>) = join.on.iter().cloned().unzip();
        same_key_types(&join.on, &left.schema, &right.schema)?;
        // Both sides' window ends among the keys: a window join.
        let window_end = left_keys.iter().zip(&right_keys).position(|(l, r)| {
            time_of(l, &left.schema, &left.times) == Time::WindowEnd
                && time_of(r, &right.schema, &right.times) == Time::WindowEnd
        });
        // A condition bounding both sides' row times by each other's: an interval join.
        let interval = match window_end {
            Some(_) => None,
            None => join.filter.as_ref().and_then(|f| interval_of(f, &left, &right)),
        };
        // Its output keeps both sides' row times, as Flink's does.
        let times: Vec<Time> = match interval {
            Some(_) => left.times.iter().chain(&right.times).copied().collect(),
            None => vec![Time::None; join.schema.fields().len()],
        };
        let interval = interval.map(|i| Interval {
            left_time: i.left_time + left_keys.len(),
            right_time: i.right_time + right_keys.len(),
            ..i
        });
        if window_end.is_some() && (left_outer || right_outer) {
            return Err(unsupported("outer window joins (an inner window join is supported)"));
        }
        // An outer join decides in the join what matches: its condition is evaluated there.
        let filter = match (&join.filter, left_outer || right_outer) {
            (Some(filter), true) => Some(self.physical(filter, &join.schema)?),
            _ => None,
        };
        let (left_edge, left_schema) = self.exchange(left, &left_keys, &[], &join.left)?;
        let left_exchange = self.topology.operators.len() - 1;
        let (right_edge, right_schema) = self.exchange(right, &right_keys, &[], &join.right)?;
        let right_exchange = self.topology.operators.len() - 1;
        let kind = match (window_end, interval) {
            (Some(_), _) => "window join",
            (None, Some(_)) => "interval join",
            (None, None) => "join",
        };
        let kind = match join.join_type {
            JoinType::Inner => kind.to_string(),
            outer => format!("{} outer {kind}", outer.to_string().to_lowercase()),
        };
        let on = join.on.iter().map(|(l, r)| format!("{l} = {r}")).collect::<Vec<_>>().join(" AND ");
        let name = format!("{kind} ({on})");
        let operator = self.two_input_operator(&name, left_exchange, right_exchange);
        let spec = JoinSpec {
            name: name.clone(),
            keys: join.on.len(),
            left: left_schema,
            right: right_schema,
            schema: Arc::new(join.schema.as_arrow().clone()),
            // An interval join's rows go with the watermark.
            ttl: self.state_ttl.filter(|_| interval.is_none()),
            window_end,
            interval,
            left_outer,
            right_outer,
            filter,
        };
        let updating = spec.updating();
        let mut open = Open {
            root: Root::Join { operator, left: left_edge, right: right_edge, spec: Arc::new(spec) },
            steps: Vec::new(),
            last: operator,
            link: Link::Chained,
            schema: join.schema.clone(),
            times: match updating {
                true => vec![Time::None; join.schema.fields().len()],
                false => times,
            },
            updating,
            session: None,
            proctime: false,
        };
        if let (Some(filter), false) = (&join.filter, left_outer || right_outer) {
            self.calc(&mut open, Some(filter), None)?;
        }
        Ok(open)
    }

    /// A join of a table `FOR SYSTEM_TIME AS OF` a `PROCTIME()` column: the table read
    /// whole, and joined where the probing rows are (`lookup.rs`).
    fn lookup_join(
        &mut self,
        join: &datafusion_expr::logical_plan::Join,
        scan: &TableScan,
        temporal: &TemporalSource,
        filters: Filters<'_>,
    ) -> Result<Open> {
        use datafusion_expr::JoinType;
        let table_name = &temporal.temporal.table;
        let left_outer = match join.join_type {
            JoinType::Inner => false,
            JoinType::Left => true,
            other => {
                return Err(unsupported(format!(
                    "{} temporal joins (JOIN or LEFT JOIN ... FOR SYSTEM_TIME AS OF)",
                    other.to_string().to_uppercase()
                )))
            }
        };
        if join.on.is_empty() {
            return Err(Error::invalid_job(format!(
                "the temporal join of {table_name} needs an equality between the two sides: ON a.key = {table_name}.key"
            )));
        }
        let mut open = self.translate(&join.left)?;
        unmerged_sessions(&open)?;
        processing_time_windows(&open, "temporal join")?;
        if open.updating {
            return Err(unsupported("a temporal join of updating rows (of a GROUP BY without windows)"));
        }
        // As of what: a processing time of the probing rows.
        let time = match &temporal.temporal.time {
            sqlparser::ast::Expr::Identifier(ident) => ident.value.clone(),
            sqlparser::ast::Expr::CompoundIdentifier(parts) => {
                parts.last().map(|p| p.value.clone()).unwrap_or_default()
            }
            other => {
                return Err(Error::invalid_job(format!(
                    "FOR SYSTEM_TIME AS OF {other}: the time must be a time attribute column of the other side"
                )))
            }
        };
        let at = open.schema.fields().iter().position(|f| *f.name() == time);
        match at.map(|i| open.times[i]) {
            _ if temporal.proctime.get() == Some(&true) => {}
            Some(Time::Proctime) => {}
            Some(Time::Rowtime | Time::WindowRowtime) => {
                let at = at.expect("invariant: matched a column");
                return self.versioned_join(join, temporal, open, at, left_outer);
            }
            _ => {
                return Err(Error::invalid_job(format!(
                    "FOR SYSTEM_TIME AS OF {time}: a temporal join is as of a PROCTIME() column of the other side \
                     (a lookup join), or as of its row time against a versioned table (one with a PRIMARY KEY and a \
                     WATERMARK), and this is neither"
                )))
            }
        }
        let table =
            self.catalog.table(table_name).ok_or_else(|| Error::invalid_job(format!("no table {table_name}")))?;
        let definition = table.definition.clone().ok_or_else(|| Error::internal("a view read as of a time"))?;
        let columns: Vec<usize> = scan.projection.clone().unwrap_or_else(|| (0..definition.columns.len()).collect());
        if let Some(&i) = columns.iter().find(|&&i| definition.columns[i].kind != ColumnKind::Physical) {
            return Err(unsupported(format!(
                "the computed or metadata column {} of a temporal join's table {table_name}",
                definition.columns[i].name
            )));
        }
        let right = Arc::new(Schema::new(columns.iter().map(|&i| table.schema.field(i).clone()).collect::<Vec<_>>()));
        let source = connectors::scan(&definition, right.clone(), self.field_uses.unread(&right))?;
        let right_schema = join.right.schema().clone();
        same_key_types(&join.on, &open.schema, &right_schema)?;
        let (mut left_keys, mut right_keys) = (Vec::new(), Vec::new());
        for (l, r) in &join.on {
            left_keys.push(self.physical(l, &open.schema)?);
            right_keys.push(self.physical(r, &right_schema)?);
        }
        let mut spec = LookupSpec::new(table_name.clone(), source, right, Arc::new(join.schema.as_arrow().clone()));
        spec.left_keys = left_keys;
        spec.right_keys = right_keys;
        spec.left_outer = left_outer;
        for (filter, schema) in filters {
            spec.filters.push(self.physical(filter, schema)?);
        }
        let name = format!(
            "lookup join of {table_name} ({})",
            join.on.iter().map(|(l, r)| format!("{l} = {r}")).collect::<Vec<_>>().join(" AND ")
        );
        spec.name = name.clone();
        self.push_step(&mut open, &name, OperatorState::Stateless, Step::Lookup(Arc::new(spec)));
        open.schema = join.schema.clone();
        open.times.extend(std::iter::repeat_n(Time::None, right_schema.fields().len()));
        if let Some(filter) = without_version_time(join, &temporal.temporal.table, self.catalog) {
            self.calc(&mut open, Some(&filter), None)?;
        }
        Ok(open)
    }

    /// A join of a versioned table `FOR SYSTEM_TIME AS OF` a row time of `left` (its
    /// column `time`): both sides exchanged by the key, into a temporal join
    /// (`temporal_join.rs`).
    fn versioned_join(
        &mut self,
        join: &datafusion_expr::logical_plan::Join,
        temporal: &TemporalSource,
        left: Open,
        time: usize,
        left_outer: bool,
    ) -> Result<Open> {
        let table_name = &temporal.temporal.table;
        let table =
            self.catalog.table(table_name).ok_or_else(|| Error::invalid_job(format!("no table {table_name}")))?;
        let definition = table.definition.clone().ok_or_else(|| Error::internal("a view read as of a time"))?;
        if definition.watermark.is_none() || definition.primary_key.is_empty() {
            return Err(Error::invalid_job(format!(
                "FOR SYSTEM_TIME AS OF a row time joins a versioned table, and {table_name} is not one: it needs a \
                 PRIMARY KEY (...) NOT ENFORCED and a WATERMARK (or join as of a PROCTIME() column, a lookup join)"
            )));
        }
        let right_keys: Vec<&str> = join
            .on
            .iter()
            .filter_map(|(_, r)| match unalias(r) {
                Expr::Column(c) => Some(c.name.as_str()),
                _ => None,
            })
            .collect();
        if let Some(missing) = definition.primary_key.iter().find(|k| !right_keys.contains(&k.as_str())) {
            return Err(Error::invalid_job(format!(
                "a temporal join of the versioned table {table_name} is ON its primary key, and {missing} is not \
                 among the join's keys"
            )));
        }
        let filter = without_version_time(join, table_name, self.catalog);
        if filter.is_some() && left_outer {
            return Err(unsupported(
                "a condition besides the keys' in a LEFT temporal join (put it in the WHERE clause, or an inner join)",
            ));
        }
        let right = self.translate(&join.right)?;
        let rowtime = &definition.watermark.as_ref().expect("invariant: checked").column;
        let right_time = right
            .schema
            .fields()
            .iter()
            .position(|f| f.name() == rowtime)
            .filter(|&i| right.times[i] == Time::Rowtime)
            .ok_or_else(|| Error::internal(format!("the row time {rowtime} of {table_name} was not kept")))?;
        let (left_keys, right_keys): (Vec<Expr>, Vec<Expr>) = join.on.iter().cloned().unzip();
        same_key_types(&join.on, &left.schema, &right.schema)?;
        let times: Vec<Time> =
            left.times.iter().copied().chain(std::iter::repeat_n(Time::None, right.times.len())).collect();
        let right_width = right.schema.fields().len();
        let (left_edge, left_schema) = self.exchange(left, &left_keys, &[], &join.left)?;
        let left_exchange = self.topology.operators.len() - 1;
        let (right_edge, right_schema) = self.exchange(right, &right_keys, &[], &join.right)?;
        let right_exchange = self.topology.operators.len() - 1;
        let keys = join.on.len();
        let on = join.on.iter().map(|(l, r)| format!("{l} = {r}")).collect::<Vec<_>>().join(" AND ");
        let kind = if left_outer { "left temporal join" } else { "temporal join" };
        let name = format!("{kind} of the versioned table {table_name} ({on})");
        let operator = self.two_input_operator(&name, left_exchange, right_exchange);
        let spec = TemporalJoinSpec {
            name,
            keys,
            left: left_schema,
            right: right_schema,
            left_time: keys + time,
            right_time: keys + right_time,
            right_output: (keys..keys + right_width).collect(),
            left_outer,
            schema: Arc::new(join.schema.as_arrow().clone()),
        };
        spec.check()?;
        let mut open = Open {
            root: Root::Temporal { operator, left: left_edge, right: right_edge, spec: Arc::new(spec) },
            steps: Vec::new(),
            last: operator,
            link: Link::Chained,
            schema: join.schema.clone(),
            times,
            updating: false,
            session: None,
            proctime: false,
        };
        if let Some(filter) = filter {
            self.calc(&mut open, Some(&filter), None)?;
        }
        Ok(open)
    }

    /// A keyed operator of two inputs, the exchanges `left` and `right`.
    fn two_input_operator(&mut self, name: &str, left: usize, right: usize) -> usize {
        let operator = self.topology.add_operator(
            name,
            OperatorKind::Operator,
            OperatorState::Keyed { backend: "heap".to_string() },
        );
        self.topology.connect(left, operator, Link::Channel(EdgeKind::Hash), None);
        self.topology.connect(right, operator, Link::Channel(EdgeKind::Hash), None);
        operator
    }

    /// Ends `open`'s segment with a hash exchange by its first `keys` columns (rows of
    /// `schema`) and opens the next segment at the gate behind it, its schema and time
    /// attributes for the caller to set.
    fn through_group_key(&mut self, open: Open, schema: SchemaRef, keys: usize) -> Open {
        let exchange =
            self.add_operator(&open, "key by the group key", OperatorKind::Exchange, OperatorState::Stateless);
        self.channels.push(EdgeKind::Hash);
        let edge = self.channels.len() - 1;
        let next_schema = open.schema.clone();
        self.segments.push(Segment {
            root: open.root,
            steps: open.steps,
            end: End::Exchange { operator: exchange, edge, schema, keys },
        });
        Open::at(
            Root::Gate { edge, name: "group key".to_string() },
            exchange,
            Link::Channel(EdgeKind::Hash),
            next_schema,
        )
    }

    /// A `GROUP BY` of updating rows, laid out in `open` as [`Self::aggregate`] lays
    /// them out: exchanged by the group key into a retracting aggregation.
    fn retracting_aggregate(
        &mut self,
        aggregate: &Aggregate,
        open: Open,
        calls: Vec<(datafusion_expr::expr::AggregateFunction, Vec<usize>, Option<usize>, String)>,
        laid_schema: SchemaRef,
    ) -> Result<Open> {
        let mut retracting = Vec::new();
        for (function, args, filter, name) in calls {
            let distinct = function.params.distinct;
            let supported =
                Retracting::of(function.func.name()).filter(|_| args.len() <= 1 && !(distinct && args.is_empty()));
            let Some(kind) = supported else {
                return Err(unsupported(format!(
                    "{name} over updating rows (of a GROUP BY without windows, or a Top-N): COUNT, SUM, AVG, MIN and \
                     MAX (with or without DISTINCT) take rows back"
                )));
            };
            retracting.push(RetractCall { function: kind, arg: args.first().copied(), filter, distinct });
        }
        let keys = aggregate.group_expr.len();
        let mut open = self.through_group_key(open, laid_schema.clone(), keys);
        open.schema = aggregate.schema.clone();
        open.times = vec![Time::None; aggregate.schema.fields().len()];
        open.updating = true;
        let name = format!(
            "retracting group aggregate ({})",
            aggregate.aggr_expr.iter().map(|e| e.schema_name().to_string()).collect::<Vec<_>>().join(", ")
        );
        let spec = RetractAggregateSpec {
            name: name.clone(),
            keys,
            calls: retracting,
            schema: Arc::new(aggregate.schema.as_arrow().clone()),
            input: laid_schema,
            ttl: self.state_ttl,
        };
        spec.check()?;
        self.keyed_step(&mut open, &name, Step::RetractAggregate(Arc::new(spec)));
        Ok(open)
    }

    /// Notes a filter keeping the first rows of a `ROW_NUMBER()` below it
    /// (`rownum <= N`, `rownum < N`, `rownum = 1`): that window is a Top-N.
    fn note_rank_limit(&mut self, predicate: &Expr, input: &LogicalPlan) {
        use datafusion_expr::{BinaryExpr, Operator};
        for conjunct in datafusion_expr::utils::split_conjunction(predicate) {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = conjunct else { continue };
            let (column, op, value) = match (unalias(left), unalias(right)) {
                (Expr::Column(c), Expr::Literal(v, _)) => (c, *op, v),
                (Expr::Literal(v, _), Expr::Column(c)) => match op.swap() {
                    Some(op) => (c, op, v),
                    None => continue,
                },
                _ => continue,
            };
            let Ok(datafusion_common::ScalarValue::Int64(Some(value))) = value.cast_to(&arrow_schema::DataType::Int64)
            else {
                continue;
            };
            let limit = match op {
                Operator::LtEq => value,
                Operator::Lt => value - 1,
                Operator::Eq if value == 1 => 1,
                _ => continue,
            };
            let Ok(index) = input.schema().index_of_column(column) else { continue };
            if let Some((window, 0)) = window_origin(input, index) {
                let limit = limit.max(0) as usize;
                let kept = self.rank_limits.entry(window as *const _ as usize).or_insert(limit);
                *kept = (*kept).min(limit);
            }
        }
    }

    /// `ROW_NUMBER() OVER (PARTITION BY ... ORDER BY ...)` under a filter keeping its
    /// first N rows: a Top-N, after an exchange by the partition key.
    fn rank(&mut self, window: &datafusion_expr::logical_plan::Window) -> Result<Open> {
        let [call] = window.window_expr.as_slice() else {
            return Err(unsupported("several window functions over one input"));
        };
        let Expr::WindowFunction(function) = unalias(call) else {
            return Err(unsupported(format!("the window expression {call}")));
        };
        let name = function.fun.name().to_string();
        if name != "row_number" {
            return Err(unsupported(format!(
                "{}() OVER (...); ROW_NUMBER() OVER (...) for Top-N and deduplication is supported",
                name.to_uppercase()
            )));
        }
        let Some(limit) = self.rank_limits.get(&(window as *const _ as usize)).copied() else {
            return Err(unsupported(
                "ROW_NUMBER() OVER (...) without a filter on it keeping the first rows (WHERE rownum <= N, Top-N)",
            ));
        };
        let params = &function.params;
        if params.order_by.is_empty() {
            return Err(Error::invalid_job("ROW_NUMBER() OVER (...) needs an ORDER BY"));
        }
        let open = self.translate(&window.input)?;
        unmerged_sessions(&open)?;
        processing_time_windows(&open, "Top-N")?;
        if open.updating {
            return Err(unsupported("Top-N over updating rows (of a GROUP BY without windows)"));
        }
        let times = open.times.clone();
        let key_times: Vec<Time> = params.partition_by.iter().map(|e| time_of(e, &open.schema, &times)).collect();
        let window_end = key_times.iter().position(|t| *t == Time::WindowEnd);
        // Without a partition, all rows are one partition, on one worker.
        let keys: Vec<Expr> = match params.partition_by.is_empty() {
            true => vec![datafusion_expr::lit(true)],
            false => params.partition_by.clone(),
        };
        let order: Vec<Expr> = params.order_by.iter().map(|sort| sort.expr.clone()).collect();
        let options: Vec<arrow_schema::SortOptions> = params
            .order_by
            .iter()
            .map(|sort| arrow_schema::SortOptions { descending: !sort.asc, nulls_first: sort.nulls_first })
            .collect();
        let (edge, laid_out) = self.exchange(open, &keys, &order, &window.input)?;
        let exchange = self.topology.operators.len() - 1;
        let label = if window_end.is_some() { "window Top-N" } else { "Top-N" };
        let name = format!(
            "{label} (first {limit} by {})",
            order.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
        );
        let spec = RankSpec {
            name: name.clone(),
            keys: keys.len(),
            order: options,
            limit,
            input: laid_out.clone(),
            schema: Arc::new(window.schema.as_arrow().clone()),
            window_end,
            ttl: self.state_ttl,
        };
        spec.check()?;
        let mut open = Open {
            root: Root::Gate { edge, name: "partition key".to_string() },
            steps: Vec::new(),
            last: exchange,
            link: Link::Channel(EdgeKind::Hash),
            schema: window.schema.clone(),
            times: Vec::new(),
            updating: window_end.is_none(),
            session: None,
            proctime: false,
        };
        self.keyed_step(&mut open, &name, Step::Rank(Arc::new(spec)));
        open.times = match window_end {
            Some(_) => times.into_iter().chain([Time::None]).collect(),
            None => vec![Time::None; window.schema.fields().len()],
        };
        Ok(open)
    }

    /// Aggregates `OVER (PARTITION BY ... ORDER BY rowtime frame)`: the rows exchanged
    /// by the partition key into an OVER aggregation (`over.rs`).
    fn over(&mut self, window: &datafusion_expr::logical_plan::Window) -> Result<Open> {
        use datafusion_expr::{WindowFrameBound, WindowFrameUnits};
        let mut functions = Vec::new();
        for expr in &window.window_expr {
            let Expr::WindowFunction(function) = unalias(expr) else {
                return Err(unsupported(format!("the window expression {expr}")));
            };
            let datafusion_expr::expr::WindowFunctionDefinition::AggregateUDF(aggregate) = &function.fun else {
                return Err(unsupported(format!(
                    "{}() OVER (...) beside OVER aggregations in one SELECT",
                    function.fun.name().to_uppercase()
                )));
            };
            functions.push((function, aggregate.clone(), expr.schema_name().to_string()));
        }
        let params = &functions[0].0.params;
        for (function, _, _) in &functions[1..] {
            let other = &function.params;
            if other.partition_by != params.partition_by
                || other.order_by != params.order_by
                || other.window_frame != params.window_frame
            {
                return Err(unsupported(
                    "OVER aggregations over different windows in one SELECT (as in Flink, they share one: use WINDOW                      w AS (...))",
                ));
            }
        }
        for (function, _, name) in &functions {
            if function.params.distinct || function.params.filter.is_some() {
                return Err(unsupported(format!("DISTINCT or FILTER in the OVER aggregation {name}")));
            }
        }
        let [order] = params.order_by.as_slice() else {
            return Err(Error::invalid_job(
                "an OVER aggregation is ordered by one time attribute: OVER (PARTITION BY ... ORDER BY rowtime ...)",
            ));
        };
        if !order.asc {
            return Err(Error::invalid_job("an OVER aggregation is ordered by its time attribute ascending"));
        }
        let open = self.translate(&window.input)?;
        unmerged_sessions(&open)?;
        processing_time_windows(&open, "OVER aggregation")?;
        if open.updating {
            return Err(unsupported("OVER aggregations of updating rows (of a GROUP BY without windows)"));
        }
        match time_of(&order.expr, &open.schema, &open.times) {
            Time::Rowtime | Time::WindowRowtime => {}
            Time::Proctime => return Err(unsupported("OVER aggregations ordered by processing time (PROCTIME())")),
            _ => {
                return Err(Error::invalid_job(format!(
                    "an OVER aggregation is ordered by a time attribute (a column with a WATERMARK), not {}",
                    order.expr
                )))
            }
        }
        let frame = &params.window_frame;
        if !matches!(frame.end_bound, WindowFrameBound::CurrentRow) {
            return Err(unsupported("an OVER window ending after the current row (Flink's end at CURRENT ROW)"));
        }
        let frame = match (&frame.units, &frame.start_bound) {
            (WindowFrameUnits::Rows, WindowFrameBound::Preceding(v)) if v.is_null() => Frame::UnboundedRows,
            (WindowFrameUnits::Range, WindowFrameBound::Preceding(v)) if v.is_null() => Frame::UnboundedRange,
            (WindowFrameUnits::Rows, WindowFrameBound::Preceding(v)) => {
                match v.cast_to(&arrow_schema::DataType::UInt64) {
                    Ok(datafusion_common::ScalarValue::UInt64(Some(n))) => Frame::Rows(n as usize),
                    _ => return Err(Error::invalid_job(format!("ROWS BETWEEN {v} PRECEDING: a number of rows"))),
                }
            }
            (WindowFrameUnits::Range, WindowFrameBound::Preceding(v)) => {
                match interval_millis(&Expr::Literal(v.clone(), None)) {
                    Some(length) => Frame::Range(length),
                    None => {
                        return Err(Error::invalid_job(format!(
                            "RANGE BETWEEN {v} PRECEDING: an INTERVAL of days, hours, minutes or seconds"
                        )))
                    }
                }
            }
            (WindowFrameUnits::Rows | WindowFrameUnits::Range, WindowFrameBound::CurrentRow) => Frame::Rows(0),
            (units, start) => return Err(unsupported(format!("the OVER window {units} BETWEEN {start}"))),
        };
        let times = open.times.clone();
        let keys: Vec<Expr> = match params.partition_by.is_empty() {
            true => vec![datafusion_expr::lit(true)],
            false => params.partition_by.clone(),
        };
        // Between the key and the row's own columns: the time, then every argument.
        let mut between = vec![order.expr.clone()];
        let mut positions = Vec::new();
        for (function, _, _) in &functions {
            let mut args = Vec::new();
            for arg in &function.params.args {
                args.push(keys.len() + between.len());
                between.push(arg.clone());
            }
            positions.push(args);
        }
        let values = between.len() - 1;
        let (edge, laid_out) = self.exchange(open, &keys, &between, &window.input)?;
        let exchange = self.topology.operators.len() - 1;
        let mut calls = Vec::new();
        for ((_, aggregate, name), args) in functions.iter().zip(positions) {
            let physical: Vec<Arc<dyn PhysicalExpr>> = args
                .iter()
                .map(|&i| {
                    Arc::new(datafusion_physical_expr::expressions::Column::new(laid_out.field(i).name(), i))
                        as Arc<dyn PhysicalExpr>
                })
                .collect();
            let built = datafusion_physical_expr::aggregate::AggregateExprBuilder::new(aggregate.clone(), physical)
                .schema(laid_out.clone())
                .alias(name)
                .build()
                .map_err(plan_error)?;
            calls.push(AggregateCall { function: Arc::new(built), args, filter: None });
        }
        let name = format!(
            "OVER aggregate ({})",
            functions.iter().map(|(_, _, name)| name.as_str()).collect::<Vec<_>>().join(", ")
        );
        let spec = OverSpec {
            name: name.clone(),
            keys: keys.len(),
            values,
            calls,
            frame,
            input: laid_out,
            schema: Arc::new(window.schema.as_arrow().clone()),
        };
        spec.check()?;
        let mut open = Open::at(
            Root::Gate { edge, name: "partition key".to_string() },
            exchange,
            Link::Channel(EdgeKind::Hash),
            window.schema.clone(),
        );
        self.keyed_step(&mut open, &name, Step::Over(Arc::new(spec)));
        // Rows leave in time order, with the watermark: they keep their row time.
        open.times = times.into_iter().chain(std::iter::repeat_n(Time::None, window.window_expr.len())).collect();
        Ok(open)
    }

    /// A column's or watermark's SQL expression over the columns of `schema`, type
    /// checked.
    fn sql_expr(&self, expression: &sqlparser::ast::Expr, schema: &DFSchema) -> Result<Expr> {
        let planner = SqlToRel::new(self.catalog);
        let mut expression = expression.clone();
        crate::rewrite::flink_expr_to_datafusion(&mut expression);
        let expr = planner.sql_to_expr(expression, schema, &mut PlannerContext::new()).map_err(plan_error)?;
        let expr = expr.rewrite(&mut TypeCoercionRewriter::new(schema)).map(|t| t.data).map_err(plan_error)?;
        // The physical planner takes simplified expressions (COALESCE and arrow_cast
        // rewritten), as the optimizer leaves them in queries.
        let context =
            datafusion_expr::simplify::SimplifyContext::builder().with_schema(Arc::new(schema.clone())).build();
        datafusion_optimizer::simplify_expressions::ExprSimplifier::new(context).simplify(expr).map_err(plan_error)
    }

    /// The job graph of every insert planned.
    pub fn finish(self) -> JobGraph {
        let mut graph = JobGraph::new(self.topology.clone());
        for kind in &self.channels {
            graph.add_channel(*kind);
        }
        for (operator, committer) in self.committers {
            graph.add_committer(operator, committer);
        }
        let topology = Arc::new(self.topology);
        // The segments starting at one shared source are built as one task: the source,
        // a tee, and each segment's chain.
        let mut groups: Vec<Vec<Segment>> = Vec::new();
        let mut at_source: std::collections::HashMap<usize, usize> = Default::default();
        for segment in self.segments {
            match segment.root {
                Root::Source { operator, .. } => match at_source.get(&operator) {
                    Some(&group) => groups[group].push(segment),
                    None => {
                        at_source.insert(operator, groups.len());
                        groups.push(vec![segment]);
                    }
                },
                _ => groups.push(vec![segment]),
            }
        }
        for group in groups {
            let topology = topology.clone();
            graph.add_root(Box::new(move |ctx| build_segments(&group, &topology, ctx)));
        }
        graph
    }
}

fn window_kind_name(kind: &WindowKind) -> &'static str {
    match kind {
        WindowKind::Tumble { .. } => "TUMBLE",
        WindowKind::Hop { .. } => "HOP",
        WindowKind::Cumulate { .. } => "CUMULATE",
        WindowKind::Session { .. } => "SESSION",
    }
}

/// A temporal join's `ON` condition besides the keys', without the condition the
/// catalog added to keep both row times (`temporal.rs`).
fn without_version_time(join: &datafusion_expr::logical_plan::Join, table: &str, catalog: &Catalog) -> Option<Expr> {
    use datafusion_expr::{BinaryExpr, Operator};
    let filter = join.filter.as_ref()?;
    let rowtime =
        catalog.table(table)?.definition.as_ref().and_then(|d| d.watermark.as_ref()).map(|w| w.column.clone());
    let added = |e: &Expr| match (e, &rowtime) {
        (Expr::BinaryExpr(BinaryExpr { left, op: Operator::GtEq, right }), Some(rowtime)) => {
            matches!((unalias(left), unalias(right)), (Expr::Column(_), Expr::Column(r))
                if &r.name == rowtime && join.right.schema().has_column(r))
        }
        _ => false,
    };
    let kept: Vec<Expr> =
        datafusion_expr::utils::split_conjunction(filter).into_iter().filter(|e| !added(e)).cloned().collect();
    datafusion_expr::utils::conjunction(kept)
}

/// Conditions, each over the columns of its schema.
type Filters<'a> = Vec<(&'a Expr, &'a DFSchemaRef)>;

/// The scan of a temporal join's table under `plan` (through aliases and the
/// conditions on its columns alone, which are returned).
fn temporal_scan(plan: &LogicalPlan) -> Option<(&TableScan, &TemporalSource, Filters<'_>)> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => temporal_scan(&alias.input),
        LogicalPlan::Filter(filter) => {
            let (scan, temporal, mut filters) = temporal_scan(&filter.input)?;
            filters.push((&filter.predicate, filter.input.schema()));
            Some((scan, temporal, filters))
        }
        LogicalPlan::TableScan(scan) => {
            let temporal = scan.source.as_ref().downcast_ref::<TemporalSource>()?;
            Some((scan, temporal, Vec::new()))
        }
        _ => None,
    }
}

/// Fails unless each pair of join keys `on` (over `left` and `right`) is of one type.
fn same_key_types(on: &[(Expr, Expr)], left: &DFSchema, right: &DFSchema) -> Result<()> {
    for (l, r) in on {
        let types = (l.get_type(left).map_err(plan_error)?, r.get_type(right).map_err(plan_error)?);
        if types.0 != types.1 {
            return Err(Error::invalid_job(format!(
                "the join keys {l} and {r} are of different types ({} and {}): CAST one to the other's",
                types.0, types.1
            )));
        }
    }
    Ok(())
}

/// Whether a window node holds aggregates (`SUM(x) OVER (...)`), not `ROW_NUMBER()`.
fn is_over_aggregation(window: &datafusion_expr::logical_plan::Window) -> bool {
    window.window_expr.iter().any(|e| {
        matches!(unalias(e), Expr::WindowFunction(f)
            if matches!(f.fun, datafusion_expr::expr::WindowFunctionDefinition::AggregateUDF(_)))
    })
}

/// Fails if `open`'s rows still have their own `SESSION` windows: only a window
/// aggregation merges them into sessions.
fn unmerged_sessions(open: &Open) -> Result<()> {
    let windowed = open.times.iter().any(|t| matches!(t, Time::WindowStart | Time::WindowEnd));
    if open.session.is_some() && windowed {
        return Err(unsupported(
            "a SESSION window other than under a window aggregation (GROUP BY window_start, window_end, ...)",
        ));
    }
    Ok(())
}

/// Fails if `open`'s rows have processing-time windows, which only a window
/// aggregation closes (a window join or Top-N goes by the watermark).
fn processing_time_windows(open: &Open, what: &str) -> Result<()> {
    let windowed = open.times.iter().any(|t| matches!(t, Time::WindowStart | Time::WindowEnd));
    match open.proctime && windowed {
        true => Err(unsupported(format!("a {what} of processing-time windows (over PROCTIME())"))),
        false => Ok(()),
    }
}

/// A session window aggregation's key as it is laid out: the group key without the
/// window (a constant if that leaves nothing, so that all rows are one key), then the
/// window's start and end; and where each of the group key's columns comes from.
fn session_layout(group: &[Expr], times: &[Time]) -> (Vec<Expr>, Vec<SessionColumn>) {
    let mut keys: Vec<Expr> = Vec::new();
    let mut columns = Vec::new();
    let (mut start, mut end) = (None, None);
    for (key, time) in group.iter().zip(times) {
        columns.push(match time {
            Time::WindowStart => {
                start.get_or_insert(key.clone());
                SessionColumn::Start
            }
            Time::WindowEnd => {
                end.get_or_insert(key.clone());
                SessionColumn::End
            }
            Time::WindowRowtime => SessionColumn::Time,
            _ => {
                keys.push(key.clone());
                SessionColumn::Key(keys.len() - 1)
            }
        });
    }
    if keys.is_empty() {
        keys.push(datafusion_expr::lit(true));
    }
    keys.extend(start.into_iter().chain(end));
    (keys, columns)
}

/// The hopping window scan below `aggregate` whose rows it can aggregate by slices
/// (`sliced.rs`): the scan's address, and the window's slide, size and offset. The
/// scan is reached through projections and filters that pass its window columns on
/// untouched, the aggregation groups by `window_start`, `window_end` and some other
/// key, and reads the window's columns nowhere else.
fn hop_to_slice(aggregate: &Aggregate) -> Option<Hop> {
    let (names, hop) = window_columns(&aggregate.input)?;
    let (mut windows, mut others) = (BTreeSet::new(), false);
    for key in &aggregate.group_expr {
        match window_column_of(key, &names) {
            Some(time) => {
                windows.insert(time as u8);
            }
            None if refers_to(key, &names) => return None,
            None => others = true,
        }
    }
    let both = windows.contains(&(Time::WindowStart as u8)) && windows.contains(&(Time::WindowEnd as u8));
    let reads = aggregate.aggr_expr.iter().any(|call| refers_to(call, &names));
    (others && both && !reads).then_some(hop)
}

/// A hopping window table function's scan: its address in the plan, and its windows.
#[derive(Clone, Copy)]
struct Hop {
    scan: usize,
    slide: i64,
    size: i64,
    offset: i64,
}

/// The columns of a plan's output that are a window's, by name.
type WindowNames = HashMap<String, Time>;

/// The window columns of a hopping window scan as they are named in `plan`'s output
/// (reached through projections and filters that pass them on untouched), and the
/// scan.
fn window_columns(plan: &LogicalPlan) -> Option<(WindowNames, Hop)> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let window = scan.source.as_ref().downcast_ref::<WindowSource>()?;
            let WindowKind::Hop { slide, size, offset } = window.tvf.kind else { return None };
            if slide >= size {
                return None;
            }
            let times = [("window_start", Time::WindowStart), ("window_end", Time::WindowEnd)];
            let names = times
                .into_iter()
                .chain([("window_time", Time::WindowRowtime)])
                .filter(|(name, _)| scan.projected_schema.fields().iter().any(|f| f.name() == name))
                .map(|(name, time)| (name.to_string(), time))
                .collect();
            Some((names, Hop { scan: scan as *const TableScan as usize, slide, size, offset }))
        }
        LogicalPlan::Projection(projection) => {
            let (names, hop) = window_columns(&projection.input)?;
            let mut out = HashMap::new();
            for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
                match window_column_of(expr, &names) {
                    Some(time) => {
                        out.insert(field.name().clone(), time);
                    }
                    None if refers_to(expr, &names) => return None,
                    None => {}
                }
            }
            Some((out, hop))
        }
        LogicalPlan::Filter(filter) => {
            let found = window_columns(&filter.input)?;
            (!refers_to(&filter.predicate, &found.0)).then_some(found)
        }
        LogicalPlan::SubqueryAlias(alias) => window_columns(&alias.input),
        _ => None,
    }
}

/// Which window column `expr` is, if it is one (maybe renamed).
fn window_column_of(expr: &Expr, names: &WindowNames) -> Option<Time> {
    match unalias(expr) {
        Expr::Column(column) => names.get(&column.name).copied(),
        _ => None,
    }
}

fn refers_to(expr: &Expr, names: &WindowNames) -> bool {
    expr.column_refs().iter().any(|column| names.contains_key(&column.name))
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}

/// The window node and window expression that column `index` of `plan` is, read
/// through aliases and projections.
fn window_origin(plan: &LogicalPlan, index: usize) -> Option<(&datafusion_expr::logical_plan::Window, usize)> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => window_origin(&alias.input, index),
        LogicalPlan::Filter(filter) => window_origin(&filter.input, index),
        LogicalPlan::Projection(projection) => match unalias(projection.expr.get(index)?) {
            Expr::Column(column) => {
                window_origin(&projection.input, projection.input.schema().index_of_column(column).ok()?)
            }
            _ => None,
        },
        LogicalPlan::Window(window) => {
            let inputs = window.input.schema().fields().len();
            match index.checked_sub(inputs) {
                Some(at) => Some((window, at)),
                None => window_origin(&window.input, index),
            }
        }
        _ => None,
    }
}

/// What `expr` over `schema` (whose columns are `times`) is to event time: a column
/// read as it is keeps what it is; anything computed is a plain value.
fn time_of(expr: &Expr, schema: &DFSchema, times: &[Time]) -> Time {
    match unalias(expr) {
        Expr::Column(column) => {
            schema.index_of_column(column).ok().and_then(|i| times.get(i).copied()).unwrap_or(Time::None)
        }
        Expr::ScalarFunction(call) if call.func.name() == crate::functions::PROCTIME => Time::Proctime,
        _ => Time::None,
    }
}

/// An interval literal's length in milliseconds (without months, which have none).
fn interval_millis(expr: &Expr) -> Option<i64> {
    use datafusion_common::ScalarValue;
    match unalias(expr) {
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            Some(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds))
        }
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            Some(i64::from(v.days) * 86_400_000 + v.nanoseconds.div_euclid(1_000_000))
        }
        _ => None,
    }
}

/// The time bounds of a join condition over `left` and `right`: conjuncts comparing
/// a row time of one side, plus or minus an interval, with a row time of the other's
/// (`BETWEEN` too). Both bounds are needed: with one, rows could join for ever.
fn interval_of(filter: &Expr, left: &Open, right: &Open) -> Option<Interval> {
    use datafusion_expr::{BinaryExpr, Operator};
    // A side's row time column plus an offset, and which side: `true` for the left.
    let term = |expr: &Expr| -> Option<(bool, usize, i64)> {
        let (column, offset) = match unalias(expr) {
            Expr::Column(c) => (c, 0),
            Expr::BinaryExpr(BinaryExpr { left: c, op, right: i }) => match (unalias(c), op) {
                (Expr::Column(c), Operator::Plus) => (c, interval_millis(i)?),
                (Expr::Column(c), Operator::Minus) => (c, -interval_millis(i)?),
                _ => return None,
            },
            _ => return None,
        };
        let is_rowtime = |t: Time| matches!(t, Time::Rowtime | Time::WindowRowtime);
        if let Ok(i) = left.schema.index_of_column(column) {
            return is_rowtime(left.times[i]).then_some((true, i, offset));
        }
        let i = right.schema.index_of_column(column).ok()?;
        is_rowtime(right.times[i]).then_some((false, i, offset))
    };
    let mut comparisons: Vec<(Expr, Operator, Expr)> = Vec::new();
    for conjunct in datafusion_expr::utils::split_conjunction(filter) {
        match conjunct {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => comparisons.push((*left.clone(), *op, *right.clone())),
            Expr::Between(between) if !between.negated => {
                comparisons.push((*between.expr.clone(), Operator::GtEq, *between.low.clone()));
                comparisons.push((*between.expr.clone(), Operator::LtEq, *between.high.clone()));
            }
            _ => {}
        }
    }
    let (mut lower, mut upper): (Option<i64>, Option<i64>) = (None, None);
    let mut times: Option<(usize, usize)> = None;
    for (a, op, b) in comparisons {
        let (Some(a), Some(b)) = (term(&a), term(&b)) else { continue };
        // As `l + x op r + y`: then `r - l op' x - y`.
        let ((l, x), (r, y), op) = match (a.0, b.0) {
            (true, false) => ((a.1, a.2), (b.1, b.2), op),
            (false, true) => ((b.1, b.2), (a.1, a.2), op.swap()?),
            _ => continue,
        };
        if times.is_some_and(|t| t != (l, r)) {
            continue;
        }
        times = Some((l, r));
        match op {
            // l + x <= r + y: r - l >= x - y.
            Operator::Lt | Operator::LtEq => lower = Some(lower.map_or(x - y, |v: i64| v.max(x - y))),
            Operator::Gt | Operator::GtEq => upper = Some(upper.map_or(x - y, |v: i64| v.min(x - y))),
            Operator::Eq => {
                lower = Some(x - y);
                upper = Some(x - y);
            }
            _ => {}
        }
    }
    let ((left_time, right_time), lower, upper) = (times?, lower?, upper?);
    Some(Interval { left_time, right_time, lower, upper })
}

/// How far behind the row time `column` a watermark expression is, when it is the
/// column itself or the column less a fixed interval of days, hours, seconds or less.
fn fixed_delay(expr: &Expr, column: &str) -> Option<i64> {
    use datafusion_expr::{BinaryExpr, Operator};
    let is_rowtime = |e: &Expr| matches!(unalias(e), Expr::Column(c) if c.name == column);
    match unalias(expr) {
        e if is_rowtime(e) => Some(0),
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Minus, right }) if is_rowtime(left) => interval_millis(right),
        _ => None,
    }
}

/// The names of the columns an SQL expression reads.
fn referenced_columns(expression: &sqlparser::ast::Expr) -> Vec<String> {
    use sqlparser::ast::{visit_expressions, Expr as Sql};
    let mut names = Vec::new();
    let _ = visit_expressions(expression, |e| {
        match e {
            Sql::Identifier(ident) => names.push(ident.value.clone()),
            Sql::CompoundIdentifier(parts) => {
                if let Some(first) = parts.first() {
                    names.push(first.value.clone());
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    names
}

/// A table sink's writer as the sink node drives it.
struct SqlWriter(BoxedWriter);

impl BatchWriter<RecordBatch> for SqlWriter {
    fn write(&mut self, batch: RecordBatch) -> Result<()> {
        self.0.write(batch)
    }
    fn on_watermark(&mut self, watermark: Timestamp) -> Result<()> {
        self.0.on_watermark(watermark)
    }
    fn pre_commit(&mut self, checkpoint: CheckpointId, state: &mut StateWriter) -> Result<()> {
        self.0.pre_commit(checkpoint, state)
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

/// The task of a two-input operator (`operator`, behind the exchanges `left` and
/// `right`) sending to `next`.
fn two_input_task<O>(
    task: &str,
    join: O,
    (operator, left, right): (usize, EdgeId, EdgeId),
    next: Box<dyn Push<RecordBatch>>,
    topology: &Topology,
    ctx: &mut BuildContext,
) -> Result<Box<dyn Task>>
where
    O: sluice_runtime::TwoInputOperator<Left = RecordBatch, Right = RecordBatch, Out = RecordBatch> + 'static,
{
    let metrics = ctx.metrics.register(operator, topology.name(operator), OperatorKind::Operator);
    let participant = ctx.checkpoints.register(operator, ctx.worker);
    let out = Output::new(next, SideOutputs::default(), metrics);
    let node = TwoInputNode::new(join, out, participant)?;
    let left = ctx.edges.take_receivers::<RecordBatch>(left, ctx.worker)?;
    let right = ctx.edges.take_receivers::<RecordBatch>(right, ctx.worker)?;
    let alignment = ctx.checkpoints.alignment();
    let task = format!("{task}-w{}", ctx.worker);
    Ok(Box::new(BinaryGate::new(task, left, right, Box::new(node), ctx.config.tick_interval, alignment)))
}

/// Builds one worker's instance of segments of one root: each segment's chain, behind
/// a tee when there are several, then the root that drives them.
fn build_segments(segments: &[Segment], topology: &Topology, ctx: &mut BuildContext) -> Result<Box<dyn Task>> {
    let mut chains = segments.iter().map(|segment| build_chain(segment, topology, ctx)).collect::<Result<Vec<_>>>()?;
    let next: Box<dyn Push<RecordBatch>> = match chains.len() {
        1 => chains.pop().expect("invariant: one chain"),
        _ => Box::new(sluice_runtime::Tee::new(chains)),
    };
    build_root(&segments[0].root, next, topology, ctx)
}

/// Builds one worker's chain of a segment: its end first, then each step around the
/// next.
fn build_chain(segment: &Segment, topology: &Topology, ctx: &mut BuildContext) -> Result<Box<dyn Push<RecordBatch>>> {
    let name = |operator: usize| topology.name(operator).to_string();
    let mut next: Box<dyn Push<RecordBatch>> = match &segment.end {
        End::Sink { operator, sink } => {
            let context = SinkContext::of(ctx);
            let writer = SqlWriter(sink.writer(&context)?);
            let metrics = ctx.metrics.register(*operator, &name(*operator), OperatorKind::Sink);
            let participant = ctx.checkpoints.register(*operator, ctx.worker);
            Box::new(SinkNode::new(writer, metrics, participant))
        }
        End::Exchange { operator, edge, schema, keys } => {
            let metrics = ctx.metrics.register(*operator, &name(*operator), OperatorKind::Exchange);
            let senders = ctx.edges.take_senders::<RecordBatch>(*edge, ctx.worker, &metrics)?;
            let partitioner = KeyPartitioner::new(schema, *keys)?;
            Box::new(HashExchange::new(senders, partitioner, ctx.config.max_parallelism, metrics))
        }
    };
    for (operator, step) in segment.steps.iter().rev() {
        let metrics = ctx.metrics.register(*operator, &name(*operator), OperatorKind::Operator);
        let out = Output::new(next, SideOutputs::default(), metrics);
        next = match step {
            Step::Calc(spec) => Box::new(OperatorNode::new(Calc { spec: spec.clone() }, out)),
            Step::Watermark(spec) => {
                let participant = ctx.checkpoints.register(*operator, ctx.worker);
                Box::new(WatermarkAssigner::new(spec.clone(), out, participant)?)
            }
            Step::Assign(spec) => Box::new(OperatorNode::new(Assign { spec: spec.clone() }, out)),
            Step::WindowAggregate(spec) => {
                let participant = ctx.checkpoints.register(*operator, ctx.worker);
                let aggregate = WindowAggregate::new(spec.clone(), ctx.config.max_parallelism)?;
                Box::new(OperatorNode::stateful(aggregate, out, participant)?)
            }
            Step::SessionAggregate(spec) => {
                let participant = ctx.checkpoints.register(*operator, ctx.worker);
                Box::new(OperatorNode::stateful(SessionAggregate::new(spec.clone())?, out, participant)?)
            }
            Step::SlicedAggregate(spec) => {
                let participant = ctx.checkpoints.register(*operator, ctx.worker);
                let aggregate = SlicedAggregate::new(spec.clone(), ctx.config.max_parallelism)?;
                Box::new(OperatorNode::stateful(aggregate, out, participant)?)
            }
            Step::GroupAggregate(spec) => {
                let participant = ctx.checkpoints.register(*operator, ctx.worker);
                let aggregate = GroupAggregate::new(spec.clone())?;
                Box::new(OperatorNode::stateful(aggregate, out, participant)?)
            }
            Step::Lookup(spec) => Box::new(OperatorNode::new(LookupJoin::new(spec.clone())?, out)),
            Step::Over(spec) => {
                let participant = ctx.checkpoints.register(*operator, ctx.worker);
                let over = OverAggregate::new(spec.clone(), ctx.config.max_parallelism)?;
                Box::new(OperatorNode::stateful(over, out, participant)?)
            }
            Step::Rank(spec) => {
                let participant = ctx.checkpoints.register(*operator, ctx.worker);
                Box::new(OperatorNode::stateful(Rank::new(spec.clone())?, out, participant)?)
            }
            Step::RetractAggregate(spec) => {
                let participant = ctx.checkpoints.register(*operator, ctx.worker);
                Box::new(OperatorNode::stateful(RetractAggregate::new(spec.clone())?, out, participant)?)
            }
        };
    }
    Ok(next)
}

/// Builds one worker's root of a segment, driving `next`.
fn build_root(
    root: &Root,
    next: Box<dyn Push<RecordBatch>>,
    topology: &Topology,
    ctx: &mut BuildContext,
) -> Result<Box<dyn Task>> {
    let name = |operator: usize| topology.name(operator).to_string();
    match root {
        Root::Source { operator, source } => {
            let participant = ctx.checkpoints.register(*operator, ctx.worker);
            let (worker, parallelism) = (ctx.worker, ctx.config.parallelism);
            let reader = match participant.restored() {
                Some(state) => source.restore_reader(worker, parallelism, &state)?,
                None => source.reader(worker, parallelism)?,
            };
            let metrics = ctx.metrics.register(*operator, &name(*operator), OperatorKind::Source);
            let task = format!("{}-w{worker}", name(*operator));
            Ok(Box::new(
                SourceDriver::new(task, reader, next, metrics, ctx.config.batch_size, ctx.config.tick_interval)
                    .with_checkpoints(participant),
            ))
        }
        Root::Join { operator, left, right, spec } => {
            let join = Join::new(spec.clone(), ctx.config.max_parallelism)?;
            two_input_task("join", join, (*operator, *left, *right), next, topology, ctx)
        }
        Root::Temporal { operator, left, right, spec } => {
            let join = TemporalJoin::new(spec.clone())?;
            two_input_task("temporal-join", join, (*operator, *left, *right), next, topology, ctx)
        }
        Root::Gate { edge, name } => {
            let receivers = ctx.edges.take_receivers::<RecordBatch>(*edge, ctx.worker)?;
            let alignment = ctx.checkpoints.alignment();
            let task = format!("{name}-w{}", ctx.worker);
            Ok(Box::new(UnaryGate::new(task, receivers, next, ctx.config.tick_interval, alignment)))
        }
    }
}
