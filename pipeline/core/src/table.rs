//! Tables for `pharmwatch model`: any CSV or Parquet file of numeric columns, read with
//! DataFusion into Arrow batches, turned into a row-major matrix for the models crate, and
//! written back out with score columns appended.
//!
//! Invariants: a column is a feature only if every value is numeric (integers, floats or
//! booleans; empty cells are missing values); any other column must be excluded by name, or
//! the read fails naming the column, its type and the first offending value. Output rows are
//! the input rows in input order.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionConfig, SessionContext};

use crate::error::{CoreError, Result};

/// A table read whole.
#[derive(Debug, Clone)]
pub struct Table {
    /// The file.
    pub path: PathBuf,
    /// All rows, one batch.
    pub batch: RecordBatch,
}

fn table_err(path: &Path, reason: impl Into<String>) -> CoreError {
    CoreError::Table {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a CSV (with a header row) or Parquet file, by extension.
pub async fn read_table(path: &Path) -> Result<Table> {
    if !path.exists() {
        return Err(table_err(path, "no such file"));
    }
    // One partition: the rows come back in file order (scores line up with input rows, and
    // a seeded fit sees the same rows in the same order every run).
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let name = path.to_string_lossy().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let df = match ext.as_str() {
        "parquet" => ctx
            .read_parquet(&name, ParquetReadOptions::default())
            .await
            .map_err(|e| table_err(path, format!("cannot read as Parquet: {e}")))?,
        "csv" | "txt" | "tsv" => {
            let delimiter = if ext == "tsv" { b'\t' } else { b',' };
            ctx.read_csv(
                &name,
                CsvReadOptions::new()
                    .has_header(true)
                    .delimiter(delimiter)
                    .file_extension(&format!(".{ext}"))
                    .schema_infer_max_records(usize::MAX),
            )
            .await
            .map_err(|e| table_err(path, format!("cannot read as CSV: {e}")))?
        }
        _ => {
            return Err(table_err(
                path,
                "unknown table format: use a .csv (header row) or .parquet file",
            ));
        }
    };
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df
        .collect()
        .await
        .map_err(|e| table_err(path, format!("cannot read: {e}")))?;
    let batch = concat_batches(&schema, &batches).map_err(|e| CoreError::arrow(&name, e))?;
    Ok(Table {
        path: path.to_path_buf(),
        batch,
    })
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean | DataType::Null)
}

impl Table {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Column names.
    pub fn columns(&self) -> Vec<String> {
        self.batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// One column as f64 (missing → NaN); fails naming the column when it is absent or not
    /// numeric.
    pub fn numeric(&self, column: &str) -> Result<Vec<f64>> {
        let schema = self.batch.schema();
        let Ok(idx) = schema.index_of(column) else {
            return Err(table_err(
                &self.path,
                format!(
                    "column '{column}' is missing (columns: {})",
                    self.columns().join(", ")
                ),
            ));
        };
        let array = self.batch.column(idx);
        let t = array.data_type();
        if !is_numeric(t) {
            let example = cast(array, &DataType::Utf8)
                .ok()
                .and_then(|a| {
                    a.as_any().downcast_ref::<StringArray>().and_then(|s| {
                        (0..s.len())
                            .find(|&i| s.is_valid(i))
                            .map(|i| (i, s.value(i).to_string()))
                    })
                })
                .map(|(i, v)| format!(", e.g. '{v}' in data row {}", i + 1))
                .unwrap_or_default();
            return Err(table_err(
                &self.path,
                format!(
                    "column '{column}' is not numeric (type {t}{example}); exclude it with --exclude-columns {column}"
                ),
            ));
        }
        let f = cast(array, &DataType::Float64)
            .map_err(|e| CoreError::arrow(format!("column {column}"), e))?;
        let f = f
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or_else(|| CoreError::Internal(format!("column {column} did not cast")))?;
        Ok((0..f.len())
            .map(|i| if f.is_valid(i) { f.value(i) } else { f64::NAN })
            .collect())
    }

    /// The feature columns: every column not in `exclude` (names checked to exist), in table
    /// order.
    pub fn feature_columns(&self, exclude: &[String]) -> Result<Vec<String>> {
        let cols = self.columns();
        for x in exclude {
            if !cols.contains(x) {
                return Err(table_err(
                    &self.path,
                    format!(
                        "excluded column '{x}' is missing (columns: {})",
                        cols.join(", ")
                    ),
                ));
            }
        }
        Ok(cols.into_iter().filter(|c| !exclude.contains(c)).collect())
    }

    /// Row-major matrix of `columns`.
    pub fn matrix(&self, columns: &[String]) -> Result<Vec<f64>> {
        let cols: Vec<Vec<f64>> = columns
            .iter()
            .map(|c| self.numeric(c))
            .collect::<Result<_>>()?;
        Ok(row_major(&cols, self.rows()))
    }
}

/// Interleaves columns into a row-major matrix.
pub fn row_major(cols: &[Vec<f64>], rows: usize) -> Vec<f64> {
    let d = cols.len();
    let mut out = vec![0.0; rows * d];
    for (j, c) in cols.iter().enumerate() {
        for (i, v) in c.iter().enumerate() {
            out[i * d + j] = *v;
        }
    }
    out
}

/// Writes `batch` plus extra float and text columns as CSV.
pub fn write_csv_with(
    path: &Path,
    batch: &RecordBatch,
    floats: Vec<(&str, Vec<f64>)>,
    texts: Vec<(&str, Vec<String>)>,
) -> Result<()> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (name, v) in floats {
        fields.push(Field::new(name, DataType::Float64, false));
        columns.push(Arc::new(Float64Array::from(v)));
    }
    for (name, v) in texts {
        fields.push(Field::new(name, DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from(v)));
    }
    let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| CoreError::arrow("scores", e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
    }
    let tmp = path.with_extension("csv.tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| CoreError::io(&tmp, e))?;
    let mut w = datafusion::arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(file);
    w.write(&out)
        .map_err(|e| CoreError::arrow(path.display().to_string(), e))?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))
}
