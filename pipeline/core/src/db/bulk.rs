//! Many rows per call: writes and keyed reads whose cost on a database server is a round trip
//! per statement, not per row.
//!
//! - [`Conn::insert_rows`] writes rows given column by column. On PostgreSQL the columns go up
//!   as arrays in one statement (`INSERT … SELECT * FROM unnest($1::bigint[], $2::text[]) …`,
//!   the arrays typed from the table's own column types); on SQLite, whose statements cost no
//!   round trip, one prepared single-row statement runs per row (multi-row `VALUES` measured
//!   slower there).
//! - [`Conn::select_keyed`] reads the rows matching a list of keys: on PostgreSQL in one
//!   statement (the keys unnested from arrays, each probing the table's index through a
//!   lateral subquery), on SQLite one indexed lookup per key.
//!
//! Invariants: the rows of one [`Conn::insert_rows`] call carry distinct conflict keys when the
//! conflict clause updates (PostgreSQL refuses to update a row twice in one statement; callers
//! merge first); the keys of one [`Conn::select_keyed`] call are distinct, and then its result
//! does not depend on the backend (the same rows, in no stated order); a table's column types
//! are read once per connection.

use std::collections::HashMap;

use super::{Conn, DbError, Inner, PgConn, Row, Value, pg_row, sqlite_query};

/// Most rows one PostgreSQL statement carries (bounds a statement's memory on both sides).
pub const ROWS_PER_STATEMENT: usize = 20_000;

/// A column of values to write, with its name.
pub type Column<'a> = (&'a str, Vec<Value>);

impl Conn {
    /// Inserts rows into `table`, given column by column (equal lengths), followed by
    /// `conflict` (e.g. `ON CONFLICT (k) DO UPDATE SET v = excluded.v`, or empty); the number
    /// of rows written.
    pub fn insert_rows(
        &self,
        table: &str,
        columns: &[Column<'_>],
        conflict: &str,
    ) -> Result<usize, DbError> {
        let (n, names) = shape(table, columns)?;
        if n == 0 {
            return Ok(0);
        }
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut st = c.prepare_cached(&sqlite_insert(table, &names, conflict))?;
                let mut written = 0;
                for i in 0..n {
                    written += st.execute(rusqlite::params_from_iter(
                        columns.iter().map(|col| &col.1[i]),
                    ))?;
                }
                Ok(written)
            }
            Inner::Postgres(cell) => Self::pg(cell, |c| {
                let sql = c.unnest_insert(table, &names, conflict)?;
                let mut written = 0;
                for chunk in array_chunks(columns, n) {
                    written += c.execute_arrays(&sql, &chunk)?;
                }
                Ok(written)
            }),
        }
    }

    /// Inserts the rows (column by column) whose first column — a unique key of `table`, the
    /// keys distinct — is not on record yet, and skips the others; whether each row was
    /// inserted, in order. One statement on PostgreSQL (`ON CONFLICT DO NOTHING RETURNING`).
    pub fn insert_new(&self, table: &str, columns: &[Column<'_>]) -> Result<Vec<bool>, DbError> {
        let (n, names) = shape(table, columns)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        match &self.inner {
            Inner::Sqlite(c) => {
                let sql = sqlite_insert(table, &names, "ON CONFLICT DO NOTHING");
                let mut st = c.prepare_cached(&sql)?;
                (0..n)
                    .map(|i| {
                        let params =
                            rusqlite::params_from_iter(columns.iter().map(|col| &col.1[i]));
                        Ok(st.execute(params)? > 0)
                    })
                    .collect()
            }
            Inner::Postgres(cell) => {
                let rows = Self::pg(cell, |c| {
                    let tail = format!("ON CONFLICT DO NOTHING RETURNING {}", names[0]);
                    let sql = c.unnest_insert(table, &names, &tail)?;
                    let mut rows = Vec::new();
                    for chunk in array_chunks(columns, n) {
                        rows.extend(c.query_arrays(&sql, &chunk)?);
                    }
                    Ok::<_, DbError>(rows)
                })?;
                let mut inserted = std::collections::HashSet::with_capacity(rows.len());
                for r in &rows {
                    inserted.insert(key_text(pg_row(r)?.get_ref(0)));
                }
                Ok(columns[0]
                    .1
                    .iter()
                    .map(|k| inserted.contains(&key_text(Some(k))))
                    .collect())
            }
        }
    }

    /// Runs `UPDATE table SET assignments WHERE key_column = key` for each of `keys` (distinct),
    /// the assignments' parameters `?1…` bound from `params`; the rows changed. One statement
    /// on PostgreSQL (`= ANY` of the keys as an array).
    pub fn update_keyed(
        &self,
        table: &str,
        assignments: &str,
        params: &[Value],
        key_column: &str,
        keys: &[Value],
    ) -> Result<usize, DbError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let k = params.len() + 1;
        match &self.inner {
            Inner::Sqlite(c) => {
                let sql = format!("UPDATE {table} SET {assignments} WHERE {key_column} = ?{k}");
                let mut st = c.prepare_cached(&sql)?;
                let mut changed = 0;
                for key in keys {
                    changed += st.execute(rusqlite::params_from_iter(
                        params.iter().chain(std::iter::once(key)),
                    ))?;
                }
                Ok(changed)
            }
            Inner::Postgres(cell) => Self::pg(cell, |c| {
                let ty = c.column_types(table, &[key_column])?.remove(0);
                let sql = format!(
                    "UPDATE {table} SET {assignments} WHERE {key_column} = ANY(?{k}::{ty}[])"
                );
                let mut changed = 0;
                for chunk in keys.chunks(ROWS_PER_STATEMENT) {
                    let array = chunk.to_vec();
                    changed += c.run(|c| {
                        let st = c.statement(&sql, params)?;
                        let mut bound: Vec<&(dyn postgres::types::ToSql + Sync)> = params
                            .iter()
                            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
                            .collect();
                        bound.push(&array);
                        Ok(c.client()?.execute(&st, &bound)? as usize)
                    })?;
                }
                Ok(changed)
            }),
        }
    }

    /// The rows of `select` (a `SELECT … FROM table` without `WHERE`) whose `key_columns`
    /// equal one of `keys` (each a tuple of as many values), each mapped by `f`.
    pub fn select_keyed<T, F>(
        &self,
        select: &str,
        table: &str,
        key_columns: &[&str],
        keys: &[Vec<Value>],
        mut f: F,
    ) -> Result<Vec<T>, DbError>
    where
        F: FnMut(&Row) -> Result<T, DbError>,
    {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if keys.iter().any(|k| k.len() != key_columns.len()) {
            return Err(DbError::Conversion {
                column: 0,
                reason: format!("keyed read of {table}: a key of the wrong width"),
            });
        }
        match &self.inner {
            Inner::Sqlite(c) => {
                let cond: Vec<String> = key_columns
                    .iter()
                    .enumerate()
                    .map(|(i, k)| format!("{k} = ?{}", i + 1))
                    .collect();
                let sql = format!("{select} WHERE {}", cond.join(" AND "));
                let mut st = c.prepare_cached(&sql)?;
                let mut out = Vec::new();
                for k in keys {
                    for row in sqlite_query(&mut st, k, &mut f, usize::MAX)? {
                        out.push(row?);
                    }
                }
                Ok(out)
            }
            Inner::Postgres(cell) => {
                let rows = Self::pg(cell, |c| {
                    let types = c.column_types(table, key_columns)?;
                    // Each key probes the table through a lateral subquery that the planner may
                    // not flatten (`OFFSET 0`): an index lookup per key, whatever the key count.
                    // (`= ANY($1)` with thousands of keys is planned as a scan of the table.)
                    let names: Vec<String> =
                        (0..key_columns.len()).map(|i| format!("k{i}")).collect();
                    let cond: Vec<String> = key_columns
                        .iter()
                        .zip(&names)
                        .map(|(c, k)| format!("{table}.{c} = pw_keys.{k}"))
                        .collect();
                    let sql = format!(
                        "SELECT pw_rows.* FROM unnest({}) AS pw_keys({}) \
                         CROSS JOIN LATERAL ({select} WHERE {} OFFSET 0) AS pw_rows",
                        array_params(&types),
                        names.join(", "),
                        cond.join(" AND ")
                    );
                    let mut rows = Vec::new();
                    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
                        let arrays: Vec<Vec<Value>> = (0..key_columns.len())
                            .map(|j| chunk.iter().map(|k| k[j].clone()).collect())
                            .collect();
                        rows.extend(c.query_arrays(&sql, &arrays)?);
                    }
                    Ok::<_, DbError>(rows)
                })?;
                rows.iter()
                    .map(|r| pg_row(r).and_then(|row| f(&row)))
                    .collect()
            }
        }
    }
}

/// The row count and column names of a column-by-column write; columns of different lengths
/// are refused before anything is sent.
fn shape<'a>(table: &str, columns: &'a [Column<'_>]) -> Result<(usize, Vec<&'a str>), DbError> {
    let n = columns.first().map_or(0, |c| c.1.len());
    if columns.iter().any(|c| c.1.len() != n) {
        return Err(DbError::Conversion {
            column: 0,
            reason: format!("insert into {table}: columns of different lengths"),
        });
    }
    Ok((n, columns.iter().map(|c| c.0).collect()))
}

/// The `n` rows of `columns` as arrays, one per column, at most [`ROWS_PER_STATEMENT`] rows a
/// chunk.
fn array_chunks<'a>(
    columns: &'a [Column<'_>],
    n: usize,
) -> impl Iterator<Item = Vec<Vec<Value>>> + 'a {
    (0..n).step_by(ROWS_PER_STATEMENT).map(move |start| {
        let end = (start + ROWS_PER_STATEMENT).min(n);
        columns.iter().map(|c| c.1[start..end].to_vec()).collect()
    })
}

/// SQLite's single-row insert into `names` of `table`, then `conflict`.
fn sqlite_insert(table: &str, names: &[&str], conflict: &str) -> String {
    let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) {conflict}",
        names.join(", "),
        marks.join(", ")
    )
}

/// Arrays as the parameters of a statement.
fn bound(arrays: &[Vec<Value>]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    arrays
        .iter()
        .map(|a| a as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// `$1::type1[], $2::type2[], …`: one array parameter per type.
fn array_params(types: &[String]) -> String {
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    arrays.join(", ")
}

/// A key value as text, to match the keys a statement returns with the keys sent.
fn key_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Text(s)) => s.clone(),
        Some(Value::Integer(i)) => i.to_string(),
        Some(Value::Real(r)) => r.to_string(),
        Some(Value::Blob(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::Null) | None => String::new(),
    }
}

impl PgConn {
    /// `INSERT INTO table (names) SELECT * FROM unnest($1::type[], …) tail`, each column an
    /// array parameter of its column's type.
    fn unnest_insert(
        &mut self,
        table: &str,
        names: &[&str],
        tail: &str,
    ) -> Result<String, DbError> {
        let types = self.column_types(table, names)?;
        Ok(format!(
            "INSERT INTO {table} ({}) SELECT * FROM unnest({}) {tail}",
            names.join(", "),
            array_params(&types)
        ))
    }

    /// The SQL types of `columns` of `table` (`bigint`, `text`, …), read from the catalogue
    /// once per connection.
    fn column_types(&mut self, table: &str, columns: &[&str]) -> Result<Vec<String>, DbError> {
        if !self.column_types.contains_key(table) {
            let rows = self.query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = to_regclass(?1) AND attnum > 0 AND NOT attisdropped",
                &[Value::Text(table.to_string())],
            )?;
            let mut types = HashMap::new();
            for r in &rows {
                let row = pg_row(r)?;
                types.insert(row.get::<_, String>(0)?, row.get::<_, String>(1)?);
            }
            self.column_types.insert(table.to_string(), types);
        }
        let types = &self.column_types[table];
        columns
            .iter()
            .map(|c| {
                types.get(*c).cloned().ok_or_else(|| DbError::Conversion {
                    column: 0,
                    reason: format!("table {table} has no column {c}"),
                })
            })
            .collect()
    }

    /// Runs `sql` with each of `arrays` bound as one array parameter.
    fn execute_arrays(&mut self, sql: &str, arrays: &[Vec<Value>]) -> Result<usize, DbError> {
        self.run(|c| {
            let st = c.statement(sql, &[])?;
            Ok(c.client()?.execute(&st, &bound(arrays))? as usize)
        })
    }

    /// The rows of `sql` with each of `arrays` bound as one array parameter.
    fn query_arrays(
        &mut self,
        sql: &str,
        arrays: &[Vec<Value>],
    ) -> Result<Vec<postgres::Row>, DbError> {
        self.run(|c| {
            let st = c.statement(sql, &[])?;
            Ok(c.client()?.query(&st, &bound(arrays))?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{OptionalExtension, scratch_store};

    fn text(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    #[test]
    fn rows_written_and_read_by_key_are_the_same_on_either_backend() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Conn::open(&scratch_store(dir.path())).unwrap();
        conn.execute_batch(
            "DROP TABLE IF EXISTS bulk_probe;
             CREATE TABLE bulk_probe (a TEXT NOT NULL, b BIGINT NOT NULL, v DOUBLE PRECISION,
                 note TEXT, PRIMARY KEY (a, b))",
        )
        .unwrap();
        let n = 2 * 1_000 + 7;
        let col = |f: &dyn Fn(usize) -> Value| (0..n).map(f).collect::<Vec<_>>();
        let tx = conn.transaction().unwrap();
        let written = tx
            .insert_rows(
                "bulk_probe",
                &[
                    ("a", col(&|i| text(&format!("k{}", i % 3)))),
                    ("b", col(&|i| Value::Integer(i as i64))),
                    ("v", col(&|i| Value::Real(i as f64 / 4.0))),
                    (
                        "note",
                        col(&|i| {
                            if i % 2 == 0 { Value::Null } else { text("odd") }
                        }),
                    ),
                ],
                "",
            )
            .unwrap();
        assert_eq!(written, n);
        // An upsert over existing and new keys, then a conflict that is skipped.
        let up = tx
            .insert_rows(
                "bulk_probe",
                &[
                    ("a", vec![text("k1"), text("new")]),
                    ("b", vec![Value::Integer(1), Value::Integer(-5)]),
                    ("v", vec![Value::Real(99.5), Value::Null]),
                    ("note", vec![text("changed"), text("fresh")]),
                ],
                "ON CONFLICT (a, b) DO UPDATE SET v = excluded.v, note = excluded.note",
            )
            .unwrap();
        assert_eq!(up, 2);
        let skipped = tx
            .insert_rows(
                "bulk_probe",
                &[
                    ("a", vec![text("k1")]),
                    ("b", vec![Value::Integer(1)]),
                    ("v", vec![Value::Real(0.0)]),
                    ("note", vec![Value::Null]),
                ],
                "ON CONFLICT DO NOTHING",
            )
            .unwrap();
        assert_eq!(skipped, 0);
        tx.commit().unwrap();

        // Two key columns: (k1, 1) updated, (new, -5) inserted, (k2, 999999) absent.
        let keys = vec![
            vec![text("k1"), Value::Integer(1)],
            vec![text("new"), Value::Integer(-5)],
            vec![text("k2"), Value::Integer(999_999)],
            vec![text("k0"), Value::Integer(3)],
        ];
        let mut found = conn
            .select_keyed(
                "SELECT a, b, v, note FROM bulk_probe",
                "bulk_probe",
                &["a", "b"],
                &keys,
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<f64>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .unwrap();
        found.sort_by(|x, y| (&x.0, x.1).cmp(&(&y.0, y.1)));
        assert_eq!(
            found,
            vec![
                ("k0".into(), 3, Some(0.75), Some("odd".into())),
                ("k1".into(), 1, Some(99.5), Some("changed".into())),
                ("new".into(), -5, None, Some("fresh".into())),
            ]
        );
        // One key column.
        let count = conn
            .select_keyed(
                "SELECT b FROM bulk_probe",
                "bulk_probe",
                &["a"],
                &[vec![text("k2")], vec![text("new")]],
                |r| r.get::<_, i64>(0),
            )
            .unwrap();
        assert_eq!(count.len(), n / 3 + 1, "every k2 row and the new one");
        let total: i64 = conn
            .query_row("SELECT COUNT(*) FROM bulk_probe", [], |r| r.get(0))
            .unwrap();
        assert_eq!(total, n as i64 + 1);
        let none: Option<i64> = conn
            .query_row("SELECT b FROM bulk_probe WHERE a = 'zz'", [], |r| r.get(0))
            .optional()
            .unwrap();
        assert_eq!(none, None);
        // Only the new keys are inserted; each row says whether it was.
        let tx = conn.transaction().unwrap();
        tx.execute_batch(
            "DROP TABLE IF EXISTS bulk_codes;
             CREATE TABLE bulk_codes (code TEXT PRIMARY KEY, n BIGINT NOT NULL)",
        )
        .unwrap();
        tx.execute("INSERT INTO bulk_codes VALUES ('b', 1)", [])
            .unwrap();
        let inserted = tx
            .insert_new(
                "bulk_codes",
                &[
                    ("code", vec![text("a"), text("b"), text("c")]),
                    (
                        "n",
                        vec![Value::Integer(10), Value::Integer(20), Value::Integer(30)],
                    ),
                ],
            )
            .unwrap();
        assert_eq!(inserted, vec![true, false, true]);
        let b: i64 = tx
            .query_row("SELECT n FROM bulk_codes WHERE code = 'b'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(b, 1, "a key on record keeps its row");
        tx.commit().unwrap();
        // An update by keys, with a parameter of its own.
        let changed = conn
            .update_keyed(
                "bulk_codes",
                "n = n + ?1",
                &[Value::Integer(100)],
                "code",
                &[text("a"), text("c"), text("zz")],
            )
            .unwrap();
        assert_eq!(changed, 2);
        let sum: i64 = conn
            .query_row("SELECT SUM(n) FROM bulk_codes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sum, 1 + 110 + 130);
        // Unequal columns are refused before anything is sent.
        assert!(
            conn.insert_rows("bulk_probe", &[("a", vec![text("x")]), ("b", vec![])], "")
                .is_err()
        );
    }
}
