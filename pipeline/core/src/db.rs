//! The store's database connection: SQLite (embedded, the default) or PostgreSQL (a province's
//! database server), behind one small API in the shape of the SQLite driver's — `execute`,
//! `query_row`, `prepare(…).query_map`, transactions — so that every caller runs on either.
//!
//! Where the store lives is given as a location: a file path (SQLite) or a
//! `postgres://user@host:port/db` URL (PostgreSQL); [`is_postgres`] tells them apart.
//!
//! Invariants:
//! - SQL is written once, in the dialect both databases share, with SQLite's numbered
//!   parameters (`?1`); on PostgreSQL they are rewritten to `$1` ([`pg_sql`]) and the few
//!   functions that differ are mapped (`group_concat` → `string_agg`).
//! - Values are dynamically typed as in SQLite ([`Value`]): on PostgreSQL a parameter is encoded
//!   for the type the server inferred (an integer bound to a `TEXT` parameter is sent as its
//!   decimal text), and a column is read by its type (`NUMERIC` — what `SUM` of a `BIGINT`
//!   gives — as an integer or a real).
//! - Writing transactions are serialised store-wide, the model the code was written for: on
//!   SQLite by `BEGIN IMMEDIATE`; on PostgreSQL by a transaction-scoped advisory lock
//!   ([`WRITER_LOCK`]) taken right after `BEGIN` at `READ COMMITTED`. Every read inside such a
//!   transaction therefore sees every commit before it, and no two writers interleave: notice
//!   numbers stay gap-free and an ownership epoch read in a transaction is still current at its
//!   commit, on one host or many.
//! - A PostgreSQL connection lost outside a transaction is re-opened and the statement tried
//!   again (at most [`PG_RECONNECTS`] times, logged and counted); inside a transaction the
//!   error is returned and the caller's whole transaction is rolled back by the server.

mod bulk;

pub use bulk::{Column, ROWS_PER_STATEMENT};

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Advisory-lock key that serialises the store's writing transactions on PostgreSQL
/// (`pg_advisory_xact_lock`; the bytes of "pharmwat").
pub const WRITER_LOCK: i64 = 0x7068_6172_6d77_6174;

/// Default file name of the SQLite store inside an output directory.
pub const STORE_FILE: &str = "pharmwatch.db";

/// How many times a statement outside a transaction re-opens a lost PostgreSQL connection.
pub const PG_RECONNECTS: u32 = 3;

/// Whether a store location is a PostgreSQL URL rather than a file path.
pub fn is_postgres(location: &Path) -> bool {
    location
        .to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

pub use crate::error::{DbError, DbResult, display_location};

/// A dynamically typed value, as SQLite has them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// NULL.
    Null,
    /// An integer (booleans are 0 and 1).
    Integer(i64),
    /// A real.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A value that can be bound as a parameter.
pub trait ToValue {
    /// The value to bind.
    fn to_value(&self) -> Value;
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_to_value!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToValue for f32 {
    fn to_value(&self) -> Value {
        Value::Real(f64::from(*self))
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}
impl<T: ToValue + ?Sized> ToValue for Box<T> {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// The parameters of a statement: `[]`, an array of one type, or [`params!`]'s slice.
pub trait Params {
    /// The values, in order.
    fn values(&self) -> Vec<Value>;
}

impl Params for [&dyn ToValue; 0] {
    fn values(&self) -> Vec<Value> {
        Vec::new()
    }
}
impl Params for &[&dyn ToValue] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl Params for Vec<Value> {
    fn values(&self) -> Vec<Value> {
        self.clone()
    }
}
impl Params for &[Value] {
    fn values(&self) -> Vec<Value> {
        self.to_vec()
    }
}
macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToValue> Params for [T; $n] {
            fn values(&self) -> Vec<Value> {
                self.iter().map(ToValue::to_value).collect()
            }
        }
        impl<T: ToValue> Params for &[T; $n] {
            fn values(&self) -> Vec<Value> {
                self.iter().map(ToValue::to_value).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);

/// Parameters of mixed types: `params![a, b, c]`.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::db::ToValue]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::db::ToValue),+] as &[&dyn $crate::db::ToValue]
    };
}
pub use crate::params;

/// A value read from a column.
pub trait FromValue: Sized {
    /// Converts the value of column `column`.
    fn from_value(v: &Value, column: usize) -> Result<Self, DbError>;
}

fn mismatch(column: usize, v: &Value, want: &str) -> DbError {
    let got = match v {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "bytes",
    };
    DbError::Conversion {
        column,
        reason: format!("{got} where {want} was expected"),
    }
}

macro_rules! int_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value, column: usize) -> Result<Self, DbError> {
                match v {
                    Value::Integer(i) => <$t>::try_from(*i).map_err(|_| DbError::Conversion {
                        column,
                        reason: format!("{i} is out of range for {}", stringify!($t)),
                    }),
                    Value::Real(r) if r.fract() == 0.0 => Ok(*r as $t),
                    _ => Err(mismatch(column, v, "an integer")),
                }
            }
        }
    )*};
}
int_from_value!(i8, i16, i32, i64, u8, u16, u32, u64, usize);

impl FromValue for bool {
    fn from_value(v: &Value, column: usize) -> Result<Self, DbError> {
        match v {
            Value::Integer(i) => Ok(*i != 0),
            _ => Err(mismatch(column, v, "a boolean")),
        }
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value, column: usize) -> Result<Self, DbError> {
        match v {
            Value::Real(r) => Ok(*r),
            Value::Integer(i) => Ok(*i as f64),
            _ => Err(mismatch(column, v, "a number")),
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value, column: usize) -> Result<Self, DbError> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(mismatch(column, v, "text")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value, column: usize) -> Result<Self, DbError> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            _ => Err(mismatch(column, v, "bytes")),
        }
    }
}
impl FromValue for Value {
    fn from_value(v: &Value, _column: usize) -> Result<Self, DbError> {
        Ok(v.clone())
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value, column: usize) -> Result<Self, DbError> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v, column).map(Some),
        }
    }
}

/// A column position (a `usize`; the one type, so that `get(0)` needs no annotation).
pub trait RowIndex {
    /// The position.
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One result row, read out of the driver.
#[derive(Debug, Clone)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    /// Column `idx` as `T` (`get::<_, T>(i)`, as the SQLite driver spells it).
    pub fn get<I: RowIndex, T: FromValue>(&self, idx: I) -> Result<T, DbError> {
        let i = idx.index();
        let v = self.values.get(i).ok_or_else(|| DbError::Conversion {
            column: i,
            reason: format!("the row has {} columns", self.values.len()),
        })?;
        T::from_value(v, i)
    }

    /// Column `idx` as it came.
    pub fn get_ref(&self, idx: usize) -> Option<&Value> {
        self.values.get(idx)
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// `query_row(…).optional()`: no row becomes `None`.
pub trait OptionalExtension<T> {
    /// `Ok(None)` for [`DbError::NoRows`].
    fn optional(self) -> Result<Option<T>, DbError>;
}

impl<T> OptionalExtension<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// How a transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionBehavior {
    /// Takes the store's writer lock at once (SQLite `BEGIN IMMEDIATE`; PostgreSQL's advisory
    /// lock [`WRITER_LOCK`]).
    Immediate,
    /// SQLite `BEGIN DEFERRED`: the write lock is taken at the first write. On PostgreSQL the
    /// writer lock is taken at once as for `Immediate` (the store cannot know whether the
    /// transaction will write).
    Deferred,
}

// --- SQLite ---------------------------------------------------------------------------------

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn sqlite_row(r: &rusqlite::Row<'_>, n: usize) -> Result<Row, DbError> {
    use rusqlite::types::ValueRef;
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        values.push(match r.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Integer(v),
            ValueRef::Real(v) => Value::Real(v),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    Ok(Row { values })
}

fn sqlite_query<T>(
    st: &mut rusqlite::Statement<'_>,
    values: &[Value],
    mut f: impl FnMut(&Row) -> Result<T, DbError>,
    limit: usize,
) -> Result<Vec<Result<T, DbError>>, DbError> {
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(values.iter()))?;
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(r) = rows.next()? else { break };
        let row = sqlite_row(r, n)?;
        out.push(f(&row));
    }
    Ok(out)
}

// --- PostgreSQL -----------------------------------------------------------------------------

mod pg {
    use bytes::BytesMut;
    use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

    use super::Value;

    type BoxError = Box<dyn std::error::Error + Sync + Send>;

    impl ToSql for Value {
        fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
            match self {
                Value::Null => Ok(IsNull::Yes),
                Value::Integer(i) => match *ty {
                    Type::INT8 => i.to_sql(ty, out),
                    Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                    Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                    Type::BOOL => (*i != 0).to_sql(ty, out),
                    Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                    Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                    _ => i.to_string().to_sql(&Type::TEXT, out),
                },
                Value::Real(r) => match *ty {
                    Type::FLOAT8 => r.to_sql(ty, out),
                    Type::FLOAT4 => (*r as f32).to_sql(ty, out),
                    Type::INT8 if r.fract() == 0.0 => (*r as i64).to_sql(ty, out),
                    _ => r.to_string().to_sql(&Type::TEXT, out),
                },
                Value::Text(s) => match *ty {
                    Type::BYTEA => s.as_bytes().to_sql(ty, out),
                    Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                    _ => s.as_str().to_sql(&Type::TEXT, out),
                },
                Value::Blob(b) => match *ty {
                    Type::BYTEA => b.as_slice().to_sql(ty, out),
                    _ => std::str::from_utf8(b)?.to_sql(&Type::TEXT, out),
                },
            }
        }

        fn accepts(_: &Type) -> bool {
            true
        }

        to_sql_checked!();
    }

    /// A column read as a [`Value`].
    pub(super) struct Column(pub Value);

    impl<'a> FromSql<'a> for Column {
        fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
            Ok(Column(match *ty {
                Type::BOOL => Value::Integer(i64::from(bool::from_sql(ty, raw)?)),
                Type::INT2 => Value::Integer(i64::from(i16::from_sql(ty, raw)?)),
                Type::INT4 => Value::Integer(i64::from(i32::from_sql(ty, raw)?)),
                Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
                Type::OID => Value::Integer(i64::from(u32::from_sql(ty, raw)?)),
                Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
                Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
                Type::NUMERIC => numeric(raw)?,
                Type::BYTEA => Value::Blob(raw.to_vec()),
                _ => Value::Text(String::from_utf8(raw.to_vec())?),
            }))
        }

        fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
            Ok(Column(Value::Null))
        }

        fn accepts(_: &Type) -> bool {
            true
        }
    }

    /// A `NUMERIC` in its binary form (digit count, weight, sign, scale, base-10000 digits):
    /// an integer when it has no fraction and fits, a real otherwise.
    fn numeric(raw: &[u8]) -> Result<Value, BoxError> {
        let word = |i: usize| -> Result<u16, BoxError> {
            let b = raw.get(2 * i..2 * i + 2).ok_or("short NUMERIC")?;
            Ok(u16::from_be_bytes([b[0], b[1]]))
        };
        let (ndigits, weight, sign) = (word(0)?, word(1)? as i16, word(2)?);
        if sign == 0xC000 {
            return Ok(Value::Real(f64::NAN));
        }
        let negative = sign == 0x4000;
        let mut int: Option<i128> = Some(0);
        let mut fraction = false;
        let mut real = 0.0_f64;
        for i in 0..usize::from(ndigits) {
            let d = word(4 + i)?;
            let power = i32::from(weight) - i as i32;
            real += f64::from(d) * 10_000_f64.powi(power);
            if power < 0 {
                fraction |= d != 0;
            } else {
                int = int.and_then(|acc| {
                    10_000_i128
                        .checked_pow(power as u32)
                        .and_then(|p| acc.checked_add(i128::from(d) * p))
                });
            }
        }
        if !fraction && let Some(v) = int.and_then(|v| i64::try_from(v).ok()) {
            return Ok(Value::Integer(if negative { -v } else { v }));
        }
        Ok(Value::Real(if negative { -real } else { real }))
    }
}

/// An open PostgreSQL session with its prepared statements.
struct PgConn {
    /// The session (`None` only while it is being dropped, see `Drop`).
    client: Option<postgres::Client>,
    config: postgres::Config,
    statements: HashMap<String, postgres::Statement>,
    /// Statements whose parameters are typed from their values (see [`PgConn::statement`]).
    typed: std::collections::HashSet<String>,
    /// The column types of the tables written or read in bulk (see `bulk`), by table.
    column_types: HashMap<String, HashMap<String, String>>,
    in_transaction: bool,
}

/// Most prepared statements a PostgreSQL connection keeps (the store's SQL is a fixed set; a
/// caller that formats SQL at run time must not grow it for ever).
const PG_STATEMENTS: usize = 512;

impl Drop for PgConn {
    /// Closing a session blocks on the network like every other call: off the runtime's
    /// threads.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            blocking(move || drop(client));
        }
    }
}

impl PgConn {
    fn client(&mut self) -> Result<&mut postgres::Client, DbError> {
        self.client.as_mut().ok_or(DbError::Closed)
    }

    /// A new session. The store's statements are short and indexed: the server's JIT
    /// compiler (on by default) only adds milliseconds of compilation to the bulk ones.
    fn connect(config: &postgres::Config) -> Result<postgres::Client, DbError> {
        let mut client = config.connect(postgres::NoTls)?;
        client.batch_execute("SET jit = off")?;
        Ok(client)
    }

    /// The prepared statement of `sql`. A parameter whose type the server cannot infer (one
    /// that only meets `IS NULL`, say) is typed from the value bound to it (a NULL as text).
    fn statement(&mut self, sql: &str, values: &[Value]) -> Result<postgres::Statement, DbError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let translated = pg_sql(sql);
        if !self.typed.contains(sql) {
            match self.client()?.prepare(&translated) {
                Ok(st) => {
                    self.remember(sql.to_string(), &st);
                    return Ok(st);
                }
                Err(e) if e.code().is_some_and(|c| c.code() == "42P08") => {
                    self.typed.insert(sql.to_string());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let key = typed_key(sql, values);
        if let Some(st) = self.statements.get(&key) {
            return Ok(st.clone());
        }
        let types: Vec<postgres::types::Type> = values.iter().map(value_type).collect();
        let st = self.client()?.prepare_typed(&translated, &types)?;
        self.remember(key, &st);
        Ok(st)
    }

    fn remember(&mut self, key: String, st: &postgres::Statement) {
        if self.statements.len() >= PG_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(key, st.clone());
    }

    /// Runs `f` on the session; outside a transaction a lost connection is re-opened and `f`
    /// tried again (bounded).
    fn run<T>(
        &mut self,
        mut f: impl FnMut(&mut PgConn) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut attempt = 0;
        loop {
            match f(self) {
                Err(DbError::Postgres(e))
                    if e.is_closed() && !self.in_transaction && attempt < PG_RECONNECTS =>
                {
                    attempt += 1;
                    crate::metrics::store_retry("connection_lost");
                    tracing::warn!(attempt, error = %e, "store connection lost; reconnecting");
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                    match Self::connect(&self.config) {
                        Ok(c) => {
                            self.client = Some(c);
                            self.statements.clear();
                            self.typed.clear();
                            self.column_types.clear();
                        }
                        Err(e) => tracing::warn!(attempt, error = %e, "store reconnect failed"),
                    }
                }
                other => return other,
            }
        }
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> Result<Vec<postgres::Row>, DbError> {
        self.run(|c| {
            let st = c.statement(sql, values)?;
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values
                .iter()
                .map(|v| v as &(dyn postgres::types::ToSql + Sync))
                .collect();
            Ok(c.client()?.query(&st, &params)?)
        })
    }

    fn execute(&mut self, sql: &str, values: &[Value]) -> Result<usize, DbError> {
        self.run(|c| {
            let st = c.statement(sql, values)?;
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values
                .iter()
                .map(|v| v as &(dyn postgres::types::ToSql + Sync))
                .collect();
            Ok(c.client()?.execute(&st, &params)? as usize)
        })
    }
}

/// The type a value is bound as where the server cannot infer it.
fn value_type(v: &Value) -> postgres::types::Type {
    use postgres::types::Type;
    match v {
        Value::Integer(_) => Type::INT8,
        Value::Real(_) => Type::FLOAT8,
        Value::Blob(_) => Type::BYTEA,
        Value::Null | Value::Text(_) => Type::TEXT,
    }
}

/// The cache key of a statement prepared with the types of its values.
fn typed_key(sql: &str, values: &[Value]) -> String {
    let mut key = format!("{sql}\u{0}");
    for v in values {
        key.push_str(value_type(v).name());
        key.push(',');
    }
    key
}

fn pg_row(r: &postgres::Row) -> Result<Row, DbError> {
    let mut values = Vec::with_capacity(r.len());
    for i in 0..r.len() {
        values.push(r.try_get::<_, pg::Column>(i)?.0);
    }
    Ok(Row { values })
}

/// SQL in the shared dialect made PostgreSQL's: `?N` → `$N`, a bare `?` → the next `$N`,
/// `group_concat(` → `string_agg(`; string literals, quoted names and `--` comments are left
/// alone.
pub fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.char_indices().peekable();
    let mut next = 1;
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek().is_some_and(|(_, d)| *d == '-') => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                    digits.push(d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str(&format!("${next}"));
                    next += 1;
                } else {
                    out.push('$');
                    out.push_str(&digits);
                }
            }
            'g' | 'G'
                if sql[i..].len() >= 13 && sql[i..i + 13].eq_ignore_ascii_case("group_concat(") =>
            {
                out.push_str("string_agg(");
                for _ in 0..12 {
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Runs `f`, which blocks on the network, where blocking is allowed: inside a multi-threaded
/// async runtime the worker is handed back first; inside a single-threaded one `f` runs on a
/// scoped thread (the blocking PostgreSQL client refuses to run on a runtime's thread).
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        Ok(_) => std::thread::scope(|s| s.spawn(f).join().expect("store call panicked")),
        Err(_) => f(),
    }
}

// --- the connection -------------------------------------------------------------------------

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(Box<RefCell<PgConn>>),
}

/// A connection to the store's database.
pub struct Conn {
    inner: Inner,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("backend", &self.backend())
            .finish()
    }
}

impl Conn {
    /// Opens the database at `location`: a SQLite file (created if missing) or a
    /// `postgres://` URL.
    pub fn open(location: &Path) -> Result<Self, DbError> {
        if is_postgres(location) {
            let url = location.to_string_lossy();
            let mut config: postgres::Config = url.parse()?;
            if config.get_application_name().is_none() {
                config.application_name("pharmwatch");
            }
            let client = blocking(|| PgConn::connect(&config))?;
            Ok(Self {
                inner: Inner::Postgres(Box::new(RefCell::new(PgConn {
                    client: Some(client),
                    config,
                    statements: HashMap::new(),
                    typed: Default::default(),
                    column_types: HashMap::new(),
                    in_transaction: false,
                }))),
            })
        } else {
            Ok(Self {
                inner: Inner::Sqlite(rusqlite::Connection::open(location)?),
            })
        }
    }

    /// Opens the database at `location` for reading only (a SQLite file is not created; a
    /// PostgreSQL session is opened as usual).
    pub fn open_read_only(location: &Path) -> Result<Self, DbError> {
        if is_postgres(location) {
            return Self::open(location);
        }
        Ok(Self {
            inner: Inner::Sqlite(rusqlite::Connection::open_with_flags(
                location,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?),
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (`None` on PostgreSQL).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    fn pg<T: Send>(cell: &RefCell<PgConn>, f: impl FnOnce(&mut PgConn) -> T + Send) -> T {
        let mut c = cell.borrow_mut();
        let c: &mut PgConn = &mut c;
        let started = Instant::now();
        let out = blocking(|| f(c));
        crate::metrics::store_latency(started.elapsed());
        out
    }

    /// Sets a SQLite pragma (nothing on PostgreSQL, whose settings are the server's).
    pub fn pragma_update(&self, name: &str, value: impl rusqlite::ToSql) -> Result<(), DbError> {
        if let Inner::Sqlite(c) = &self.inner {
            c.pragma_update(None, name, value)?;
        }
        Ok(())
    }

    /// How long a statement waits for a lock held by another writer before failing
    /// (SQLite's busy timeout; PostgreSQL's `lock_timeout`).
    pub fn busy_timeout(&self, wait: Duration) -> Result<(), DbError> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.busy_timeout(wait)?),
            Inner::Postgres(c) => Self::pg(c, |c| {
                let sql = format!("SET lock_timeout = {}", wait.as_millis());
                c.run(|c| Ok(c.client()?.batch_execute(&sql)?))
            }),
        }
    }

    /// Runs `sql` (several statements, no parameters), as written: migrations are written per
    /// database.
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => Self::pg(c, |c| c.run(|c| Ok(c.client()?.batch_execute(sql)?))),
        }
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize, DbError> {
        let values = params.values();
        match &self.inner {
            Inner::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(values.iter()))?),
            Inner::Postgres(c) => Self::pg(c, |c| c.execute(sql, &values)),
        }
    }

    /// The first row of a query mapped by `f`; [`DbError::NoRows`] when there is none.
    pub fn query_row<T, F>(&self, sql: &str, params: impl Params, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&Row) -> Result<T, DbError>,
    {
        let values = params.values();
        let row = match &self.inner {
            Inner::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                sqlite_query(&mut st, &values, |r| Ok(r.clone()), 1)?.pop()
            }
            Inner::Postgres(c) => Self::pg(c, |c| c.query(sql, &values))?.first().map(pg_row),
        };
        match row {
            Some(r) => f(&r?),
            None => Err(DbError::NoRows),
        }
    }

    /// A statement to run several times or to read many rows from.
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>, DbError> {
        self.prepare_cached(sql)
    }

    /// A statement kept prepared on the connection.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>, DbError> {
        if let Inner::Sqlite(c) = &self.inner {
            // Checked now, as the driver does, so that a bad statement fails at prepare.
            c.prepare_cached(sql)?;
        }
        Ok(Statement {
            conn: self,
            sql: sql.to_string(),
        })
    }

    /// Begins a transaction that takes the writer lock at once.
    pub fn transaction(&mut self) -> Result<Transaction<'_>, DbError> {
        self.transaction_with_behavior(TransactionBehavior::Immediate)
    }

    /// Begins a transaction (see [`TransactionBehavior`]).
    pub fn transaction_with_behavior(
        &mut self,
        behavior: TransactionBehavior,
    ) -> Result<Transaction<'_>, DbError> {
        match &self.inner {
            Inner::Sqlite(c) => c.execute_batch(match behavior {
                TransactionBehavior::Immediate => "BEGIN IMMEDIATE",
                TransactionBehavior::Deferred => "BEGIN DEFERRED",
            })?,
            Inner::Postgres(c) => Self::pg(c, |c| {
                c.run(|c| {
                    c.client()?.batch_execute(&format!(
                        "BEGIN ISOLATION LEVEL READ COMMITTED; \
                         SELECT pg_advisory_xact_lock({WRITER_LOCK})"
                    ))?;
                    Ok(())
                })?;
                c.in_transaction = true;
                Ok::<_, DbError>(())
            })?,
        }
        Ok(Transaction {
            conn: self,
            open: true,
        })
    }

    fn end(&self, sql: &'static str) -> Result<(), DbError> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => Self::pg(c, |c| {
                c.in_transaction = false;
                Ok(c.client()?.batch_execute(sql)?)
            }),
        }
    }
}

/// A prepared statement.
pub struct Statement<'c> {
    conn: &'c Conn,
    sql: String,
}

impl Statement<'_> {
    /// Runs it; the number of rows changed.
    pub fn execute(&mut self, params: impl Params) -> Result<usize, DbError> {
        self.conn.execute(&self.sql, params)
    }

    /// Every row mapped by `f` (read at once; the store's queries are bounded).
    pub fn query_map<T, F>(
        &mut self,
        params: impl Params,
        f: F,
    ) -> Result<std::vec::IntoIter<Result<T, DbError>>, DbError>
    where
        F: FnMut(&Row) -> Result<T, DbError>,
    {
        Ok(self.rows(params, f, usize::MAX)?.into_iter())
    }

    /// The first row mapped by `f`; [`DbError::NoRows`] when there is none.
    pub fn query_row<T, F>(&mut self, params: impl Params, f: F) -> Result<T, DbError>
    where
        F: FnMut(&Row) -> Result<T, DbError>,
    {
        self.rows(params, f, 1)?
            .pop()
            .unwrap_or(Err(DbError::NoRows))
    }

    /// Whether the query returns a row.
    pub fn exists(&mut self, params: impl Params) -> Result<bool, DbError> {
        Ok(!self.rows(params, |_| Ok(()), 1)?.is_empty())
    }

    /// Every row, to walk with [`Rows::next`].
    pub fn query(&mut self, params: impl Params) -> Result<Rows, DbError> {
        let rows = self.rows(params, |r| Ok(r.clone()), usize::MAX)?;
        Ok(Rows {
            rows: rows.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter(),
            current: None,
        })
    }

    fn rows<T, F>(
        &mut self,
        params: impl Params,
        mut f: F,
        limit: usize,
    ) -> Result<Vec<Result<T, DbError>>, DbError>
    where
        F: FnMut(&Row) -> Result<T, DbError>,
    {
        let values = params.values();
        match &self.conn.inner {
            Inner::Sqlite(c) => {
                let mut st = c.prepare_cached(&self.sql)?;
                sqlite_query(&mut st, &values, f, limit)
            }
            Inner::Postgres(c) => {
                let rows = Conn::pg(c, |c| c.query(&self.sql, &values))?;
                Ok(rows
                    .iter()
                    .take(limit)
                    .map(|r| pg_row(r).and_then(|row| f(&row)))
                    .collect())
            }
        }
    }
}

/// Rows of [`Statement::query`].
pub struct Rows {
    rows: std::vec::IntoIter<Row>,
    current: Option<Row>,
}

impl Rows {
    /// The next row, if any.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<&Row>, DbError> {
        self.current = self.rows.next();
        Ok(self.current.as_ref())
    }
}

/// An open transaction: rolled back when dropped without [`Transaction::commit`]. It derefs to
/// the connection, so statements run on it as on a connection.
pub struct Transaction<'c> {
    conn: &'c Conn,
    open: bool,
}

impl Transaction<'_> {
    /// Commits.
    pub fn commit(mut self) -> Result<(), DbError> {
        self.open = false;
        self.conn.end("COMMIT")
    }

    /// Rolls back.
    pub fn rollback(mut self) -> Result<(), DbError> {
        self.open = false;
        self.conn.end("ROLLBACK")
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open
            && let Err(e) = self.conn.end("ROLLBACK")
        {
            tracing::warn!(error = %e, "store transaction rollback failed");
        }
    }
}

/// The variable naming a PostgreSQL server for the tests (an administrator's URL, e.g.
/// `postgres://postgres@127.0.0.1:5433/postgres`; `scripts/test.sh` starts one and sets it).
pub const TEST_POSTGRES_ENV: &str = "PHARMWATCH_TEST_POSTGRES";

/// The variable that puts the tests' stores on that server (`postgres`) instead of in files:
/// `scripts/test.sh` runs the store tests once without it and once with it.
pub const TEST_STORE_ENV: &str = "PHARMWATCH_TEST_STORE";

/// A store location for a test or a benchmark: a database on the test server
/// ([`scratch_postgres`]) when [`TEST_STORE_ENV`] is `postgres`, else `dir/pharmwatch.db`.
pub fn scratch_store(dir: &Path) -> std::path::PathBuf {
    if std::env::var(TEST_STORE_ENV).is_ok_and(|v| v == "postgres") {
        scratch_postgres(dir)
    } else {
        dir.join(STORE_FILE)
    }
}

/// A new, empty database on the server named by [`TEST_POSTGRES_ENV`], remembered in `dir`
/// (a second call for the same directory gives the same database).
///
/// # Panics
/// When the server is not named, cannot be reached or refuses the new database: the message
/// says how to start one.
pub fn scratch_postgres(dir: &Path) -> std::path::PathBuf {
    let Some(admin) = std::env::var(TEST_POSTGRES_ENV)
        .ok()
        .filter(|v| !v.is_empty())
    else {
        panic!(
            "{TEST_POSTGRES_ENV} is not set: this test needs a PostgreSQL 15 server. Run \
             scripts/test.sh, or start one with `scripts/pg_test_server.sh start DIR` (Debian \
             postgresql-15) and set {TEST_POSTGRES_ENV} to the URL it prints"
        );
    };
    let remembered = dir.join(".scratch-store-url");
    if let Ok(url) = std::fs::read_to_string(&remembered) {
        return std::path::PathBuf::from(url.trim());
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "pw_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000_000
    );
    let conn = Conn::open(Path::new(&admin)).unwrap_or_else(|e| {
        panic!(
            "{TEST_POSTGRES_ENV}={admin}: cannot connect ({e}); start a throwaway server with \
             `scripts/pg_test_server.sh start DIR` (Debian postgresql-15) or unset the variable"
        )
    });
    conn.execute_batch(&format!("CREATE DATABASE {name} TEMPLATE template0"))
        .unwrap_or_else(|e| panic!("{TEST_POSTGRES_ENV}: create database {name}: {e}"));
    let mut url = url::Url::parse(&admin).expect("the test server's URL");
    url.set_path(&name);
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&remembered, url.as_str()))
        .unwrap_or_else(|e| panic!("{}: {e}", remembered.display()));
    std::path::PathBuf::from(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_and_functions_are_rewritten_for_postgres_outside_literals() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
        assert_eq!(pg_sql("VALUES (?, ?)"), "VALUES ($1, $2)");
        assert_eq!(
            pg_sql("-- the workbench's ?1\nSELECT ?1, 'it''s'"),
            "-- the workbench's ?1\nSELECT $1, 'it''s'"
        );
        assert_eq!(
            pg_sql("SELECT GROUP_CONCAT(x, '; ') FROM \"group_concat(\""),
            "SELECT string_agg(x, '; ') FROM \"group_concat(\""
        );
    }

    #[test]
    fn a_url_is_postgres_and_its_password_is_not_shown() {
        let url = Path::new("postgres://pw:secret@127.0.0.1:5432/pharmwatch");
        assert!(is_postgres(url));
        assert!(!is_postgres(Path::new("out/pharmwatch.db")));
        let shown = display_location(url);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("127.0.0.1:5432/pharmwatch"), "{shown}");
    }

    #[test]
    fn sqlite_values_round_trip_and_a_missing_row_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Conn::open(&dir.path().join("t.db")).unwrap();
        c.execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c REAL, d BLOB)")
            .unwrap();
        let tx = c.transaction().unwrap();
        tx.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
            params![7_i64, "x", 1.5_f64, vec![1_u8, 2]],
        )
        .unwrap();
        tx.commit().unwrap();
        let (a, b, cc, d): (i64, String, f64, Vec<u8>) = c
            .query_row("SELECT a, b, c, d FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!((a, b.as_str(), cc, d), (7, "x", 1.5, vec![1, 2]));
        let none: Option<i64> = c
            .query_row("SELECT a FROM t WHERE a = ?1", [8_i64], |r| r.get(0))
            .optional()
            .unwrap();
        assert_eq!(none, None);
        {
            let _tx = c.transaction().unwrap();
            _tx.execute("DELETE FROM t", []).unwrap();
        }
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "a dropped transaction rolls back");
    }
}
