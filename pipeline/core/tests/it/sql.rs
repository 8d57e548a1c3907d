//! Golden tests of the indicator SQL: every `pipeline/sql/indicators/*.slt` file (the directory
//! is listed, so a new file is picked up) runs through the `sqllogictest` runner over a fresh
//! DataFusion session of the pipeline (`query::session()`). The convention, also written in
//! `pipeline/sql/indicators/README.md`:
//!
//! - **Tables.** The session starts with the event tables (`sales`, `purchase`, `production`,
//!   `inventory`, `product_test`, `inspection`) and the reference tables (`enterprises`,
//!   `products`, `batches`) registered empty, with the column names and Arrow types the nightly
//!   job registers (`EventKind::lake_schema`, `ReferenceKind::schema`) but every column
//!   nullable. A file fills them with `INSERT INTO sales (enterprise_id, …) VALUES …` listing
//!   only the columns the indicator reads; the values are cast to the lake's types
//!   (`'2026-03-01'` to Date32, `'2026-03-01T09:00:00+08:00'` to the event timestamp). Before
//!   each indicator runs, the harness checks that the tables still have the lake's columns.
//! - **Indicator directive.** A `query` record whose text is
//!   `-- indicator: NAME from=YYYY-MM-DD [to=YYYY-MM-DD] [threshold=value …]` runs
//!   `pipeline/sql/indicators/NAME.sql` as the nightly job runs it for the business days
//!   `[from, to]` (`to` defaults to `from`): the thresholds are `Thresholds::default()` with the
//!   named fields set; the feature tables are rebuilt by `indicators::build_features`,
//!   `run_dates` is registered by `indicators::register_run_dates`, and the text is rendered by
//!   `indicators::render` — the functions the job calls. The rows must convert to hits
//!   (`indicators::batch_to_hits`); all nine columns are compared. The directive may continue
//!   on further `--` lines.
//! - **Anything else** is plain DataFusion SQL in the same session.
//! - **Values** print as `NULL` for null, `(empty)` for an empty string, floats in Rust's
//!   shortest round-trip form (`3`, `0.5`, `1.0714285714285714`), dates as `2026-03-01`, the
//!   rest as Arrow displays it. **Column types** are checked: `T` text, `I` integer, `R` float,
//!   any other letter (`D` for dates by convention) for any other type.
//!
//! The job runs the queries from an earlier day than `--from` when it trains the model
//! (`run_dates` stays `[from, to]`); the golden tests bind the plain run, `from` for both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use pharmwatch_core::indicators::{self, Thresholds};
use pharmwatch_core::{CoreError, query};
use pharmwatch_schemas::{EventKind, ReferenceKind};
use sqllogictest::{DB, DBOutput, DefaultColumnType, Runner, strict_column_validator};

/// The indicator SQL and its golden tests.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sql/indicators");

/// How the text of a query record that runs an indicator starts.
const DIRECTIVE: &str = "-- indicator:";

/// What goes wrong in a record; the runner prints it with the record's file and line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HarnessError {
    /// The indicator directive cannot be read.
    #[error("indicator directive: {0}")]
    Directive(String),
    /// A lake or reference table no longer has the columns the job registers.
    #[error("table {table}: {reason}")]
    Table { table: String, reason: String },
    /// Rendering, building the features or converting the rows to hits failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// DataFusion refused or failed the statement.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// A result column could not be cast or printed.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// The runtime the queries run on could not be started.
    #[error("tokio runtime")]
    Runtime(#[source] std::io::Error),
}

/// One indicator run asked for by a directive.
#[derive(Debug)]
struct IndicatorRun {
    /// File stem, e.g. `inventory`.
    name: String,
    /// The query text as compiled into the crate.
    sql: &'static str,
    from: NaiveDate,
    to: NaiveDate,
    thresholds: Thresholds,
}

/// Reads a directive; `None` when the text is not one.
fn parse_directive(text: &str) -> Result<Option<IndicatorRun>, HarnessError> {
    let Some(rest) = text.trim().strip_prefix(DIRECTIVE) else {
        return Ok(None);
    };
    let mut words = Vec::new();
    for (i, line) in rest.lines().enumerate() {
        let line = line.trim();
        let line = match line.strip_prefix("--") {
            Some(l) => l,
            None if i == 0 => line,
            None => {
                return Err(HarnessError::Directive(format!(
                    "continuation line `{line}` does not start with `--`"
                )));
            }
        };
        words.extend(line.split_whitespace());
    }
    let Some((name, args)) = words.split_first() else {
        return Err(HarnessError::Directive("no indicator name".into()));
    };
    let Some(sql) = indicators::QUERIES
        .iter()
        .find(|(file, _)| file.strip_suffix(".sql") == Some(*name))
        .map(|(_, sql)| *sql)
    else {
        let known: Vec<&str> = indicators::QUERIES
            .iter()
            .filter_map(|(f, _)| f.strip_suffix(".sql"))
            .collect();
        return Err(HarnessError::Directive(format!(
            "unknown indicator `{name}` (one of {})",
            known.join(", ")
        )));
    };
    let (mut from, mut to) = (None, None);
    let mut overrides = serde_json::Map::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(HarnessError::Directive(format!("`{arg}` is not key=value")));
        };
        match key {
            "from" => from = Some(date(key, value)?),
            "to" => to = Some(date(key, value)?),
            _ => {
                let v: serde_json::Value = serde_json::from_str(value).map_err(|e| {
                    HarnessError::Directive(format!("{key}: `{value}` is not a number ({e})"))
                })?;
                overrides.insert(key.to_string(), v);
            }
        }
    }
    let Some(from) = from else {
        return Err(HarnessError::Directive("from=YYYY-MM-DD is missing".into()));
    };
    let to = to.unwrap_or(from);
    if to < from {
        return Err(HarnessError::Directive(format!(
            "to={to} is before from={from}"
        )));
    }
    let thresholds: Thresholds = serde_json::from_value(serde_json::Value::Object(overrides))
        .map_err(|e| HarnessError::Directive(format!("thresholds: {e}")))?;
    Ok(Some(IndicatorRun {
        name: name.to_string(),
        sql,
        from,
        to,
        thresholds,
    }))
}

fn date(key: &str, value: &str) -> Result<NaiveDate, HarnessError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|e| {
        HarnessError::Directive(format!("{key}: `{value}` is not a YYYY-MM-DD date ({e})"))
    })
}

/// The tables the nightly job registers before the indicators, with their lake schemas.
fn lake_tables() -> Vec<(&'static str, SchemaRef)> {
    let events = EventKind::ALL.iter().map(|k| (k.as_str(), k.lake_schema()));
    let references = ReferenceKind::ALL.iter().map(|k| (k.as_str(), k.schema()));
    events.chain(references).collect()
}

/// A session with every lake and reference table registered empty, columns nullable.
pub(crate) fn lake_session() -> Result<SessionContext, HarnessError> {
    let ctx = query::session();
    for (name, schema) in lake_tables() {
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let table = MemTable::try_new(Arc::new(Schema::new(fields)), vec![Vec::new()])?;
        ctx.register_table(name, Arc::new(table))?;
    }
    Ok(ctx)
}

/// Checks that a file has not replaced a lake table by one with other columns.
async fn check_lake_tables(ctx: &SessionContext) -> Result<(), HarnessError> {
    for (name, want) in lake_tables() {
        let got = ctx.table_provider(name).await?.schema();
        let shape = |s: &Schema| -> Vec<(String, DataType)> {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        };
        if shape(&got) != shape(&want) {
            return Err(HarnessError::Table {
                table: name.to_string(),
                reason: format!("columns {:?}, the lake has {:?}", shape(&got), shape(&want)),
            });
        }
    }
    Ok(())
}

/// Runs an indicator as the nightly job does for `[from, to]`; returns the result's schema and
/// rows.
async fn run_indicator(
    ctx: &SessionContext,
    run: &IndicatorRun,
) -> Result<(SchemaRef, Vec<RecordBatch>), HarnessError> {
    check_lake_tables(ctx).await?;
    // The job binds one run per session; a file binds one per directive.
    for (feature, _) in indicators::FEATURES {
        ctx.deregister_table(*feature)?;
    }
    ctx.deregister_table("run_dates")?;
    indicators::build_features(ctx, run.from, run.to, &run.thresholds).await?;
    indicators::register_run_dates(ctx, run.from, run.to)?;
    let text = indicators::render(run.sql, run.from, run.to, &run.thresholds)?;
    let df = ctx.sql(&text).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    for b in &batches {
        indicators::batch_to_hits(&run.name, b)?;
    }
    Ok((schema, batches))
}

/// Runs plain SQL: statements report their row count, queries their rows.
async fn run_plain(
    ctx: &SessionContext,
    sql: &str,
) -> Result<DBOutput<DefaultColumnType>, HarnessError> {
    let df = ctx.sql(sql).await?;
    let dml = matches!(df.logical_plan(), LogicalPlan::Dml(_));
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    if dml {
        let mut count = 0;
        for b in &batches {
            let n = datafusion::arrow::compute::cast(b.column(0), &DataType::UInt64)?;
            count += n
                .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
                .iter()
                .flatten()
                .sum::<u64>();
        }
        return Ok(DBOutput::StatementComplete(count));
    }
    if schema.fields().is_empty() {
        return Ok(DBOutput::StatementComplete(0));
    }
    output(&schema, &batches)
}

/// The runner's view of a result: column types and printed values.
fn output(
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<DBOutput<DefaultColumnType>, HarnessError> {
    let types = schema
        .fields()
        .iter()
        .map(|f| column_type(f.data_type()))
        .collect();
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            let row = b
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(c, f)| cell(c.as_ref(), f, i))
                .collect();
            rows.push(row);
        }
    }
    Ok(DBOutput::Rows { types, rows })
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        t if t.is_integer() => DefaultColumnType::Integer,
        t if t.is_floating()
            || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
        {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Any,
    }
}

fn cell(array: &dyn Array, formatter: &ArrayFormatter<'_>, i: usize) -> String {
    if array.is_null(i) {
        return "NULL".into();
    }
    // Shortest round-trip text: `3` for 3.0, every digit a float needs and no more.
    match array.data_type() {
        DataType::Float64 => return array.as_primitive::<Float64Type>().value(i).to_string(),
        DataType::Float32 => return array.as_primitive::<Float32Type>().value(i).to_string(),
        _ => {}
    }
    let text = formatter.value(i).to_string();
    if text.is_empty() {
        "(empty)".into()
    } else {
        text
    }
}

/// The runner's database: a pipeline session and the runtime its queries run on.
struct Lake {
    ctx: SessionContext,
    runtime: tokio::runtime::Runtime,
}

impl Lake {
    fn open() -> Result<Self, HarnessError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(HarnessError::Runtime)?;
        Ok(Self {
            ctx: lake_session()?,
            runtime,
        })
    }
}

impl DB for Lake {
    type Error = HarnessError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, HarnessError> {
        let ctx = &self.ctx;
        self.runtime.block_on(async {
            match parse_directive(sql)? {
                Some(run) => {
                    let (schema, batches) = run_indicator(ctx, &run).await?;
                    output(&schema, &batches)
                }
                None => run_plain(ctx, sql).await,
            }
        })
    }

    fn engine_name(&self) -> &str {
        "datafusion"
    }
}

/// A runner over a fresh session, checking column types strictly.
fn runner() -> Runner<Lake, impl FnMut() -> std::future::Ready<Result<Lake, HarnessError>>> {
    let mut runner = Runner::new(|| std::future::ready(Lake::open()));
    runner.with_column_validator(strict_column_validator);
    runner
}

/// The `.slt` files beside the indicator SQL, sorted.
fn slt_files() -> Vec<PathBuf> {
    let dir = std::fs::canonicalize(DIR).unwrap_or_else(|e| panic!("{DIR}: {e}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_indicator_file_passes_its_golden_tests() {
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files in {DIR}");
    let mut failures = Vec::new();
    for file in &files {
        if let Err(e) = runner().run_file(file) {
            failures.push(format!("{}", e.display(false)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} .slt files failed:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_indicator_query_has_golden_tests_that_run_it() {
    for (file, _) in indicators::QUERIES {
        let slt = Path::new(DIR).join(file).with_extension("slt");
        let text = std::fs::read_to_string(&slt)
            .unwrap_or_else(|e| panic!("{file} has no golden tests at {}: {e}", slt.display()));
        let stem = file.trim_end_matches(".sql");
        assert!(
            text.contains(&format!("{DIRECTIVE} {stem} ")),
            "{} never runs `{DIRECTIVE} {stem} …`",
            slt.display()
        );
    }
}

/// A small inventory case whose one hit is 35 against an expected 40 (a gap of 5, the
/// default smallest gap).
const SELF_TEST: &str = "
statement ok
INSERT INTO inventory (enterprise_id, product_id, biz_date, quantity) VALUES
    ('E1', 'P1', '2026-03-01', 50), ('E1', 'P1', '2026-03-02', 35)

statement ok
INSERT INTO sales (enterprise_id, product_id, biz_date, quantity) VALUES ('E1', 'P1', '2026-03-02', 10)

query TTDTDDRRT
-- indicator: inventory from=2026-03-02
----
E1 P1 2026-03-02 inventory_mismatch 2026-03-02 2026-03-02 35 EXPECTED opening=50;inflow=0;sold=10
";

#[test]
fn the_harness_compares_values_and_binds_thresholds() {
    runner()
        .run_script(&SELF_TEST.replace("EXPECTED", "40"))
        .unwrap_or_else(|e| panic!("{}", e.display(false)));
    let wrong = runner()
        .run_script(&SELF_TEST.replace("EXPECTED", "41"))
        .expect_err("a wrong expected value passed");
    assert!(wrong.to_string().contains("41"), "{wrong}");
    // A gap of 5 is no longer a mismatch when the smallest counted gap is 6.
    let raised = SELF_TEST
        .replace("from=2026-03-02", "from=2026-03-02 mismatch_min=6")
        .replace("EXPECTED", "40");
    let err = runner()
        .run_script(&raised)
        .expect_err("mismatch_min=6 was not bound");
    assert!(err.to_string().contains("inventory_mismatch"), "{err}");
}

#[test]
fn directives_name_a_query_and_known_thresholds() {
    let d = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    let run =
        parse_directive("-- indicator: price from=2026-03-02 to=2026-03-04\n-- price_ratio=0.4")
            .unwrap()
            .unwrap();
    assert_eq!((run.name.as_str(), run.from), ("price", d));
    assert_eq!(run.to, NaiveDate::from_ymd_opt(2026, 3, 4).unwrap());
    assert_eq!(run.thresholds.price_ratio, 0.4);
    assert_eq!(run.thresholds.stop_days, Thresholds::default().stop_days);
    assert!(parse_directive("SELECT 1").unwrap().is_none());
    for bad in [
        "-- indicator: prices from=2026-03-02",
        "-- indicator: price",
        "-- indicator: price from=2026-03-02 price_ration=0.4",
        "-- indicator: price from=2026-03-02 to=2026-03-01",
        "-- indicator: price from=2026-03-02\nprice_ratio=0.4",
    ] {
        assert!(parse_directive(bad).is_err(), "{bad}");
    }
}
