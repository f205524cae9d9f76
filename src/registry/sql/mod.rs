//! The registry's SQL layer: one registry over three databases.
//!
//! [`Conn`] is what the registry needs of a database connection: run a statement with `?`
//! placeholders and [`Value`] arguments, get rows of [`Value`]s back, and tell whether the
//! connection is still usable. Each backend implements it over its own client crate:
//! [`sqlite`] (rusqlite, embedded), [`postgres`] (the `postgres` crate) and [`mysql`] (the
//! `mysql` crate, MySQL and MariaDB). The schema is the same on all three: timestamps are
//! `YYYY-MM-DDTHH:MM:SS.ffffff` text (text order is time order), flags are 0/1 integers,
//! text compares byte-wise (`COLLATE "C"` on PostgreSQL, `utf8mb4_bin` on MySQL), so that
//! every statement means the same thing everywhere.
//!
//! Errors are mapped by the backends: a unique-key violation is [`Error::Duplicate`], a
//! lost or refused connection (and a timeout) is [`Error::Unavailable`] (HTTP 503, and the
//! connection is marked unusable so the [`pool::Pool`] drops it), everything else
//! [`Error::Db`]. Messages never carry the connection password.

#[cfg(test)]
mod conn_tests;
pub mod mysql;
pub mod pool;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod testdb;
pub mod url;
pub mod wal_index;

use crate::error::{Error, Result};

pub use url::DbUrl;

/// A value bound to a statement or read from a row. Flags are stored as `Int` 0/1 and
/// timestamps as `Text`, on every backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (BIGINT, INTEGER, SMALLINT, TINYINT, BOOLEAN).
    Int(i64),
    /// Text (TEXT, VARCHAR).
    Text(String),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::Text(s.clone())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Int(i64::from(b))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<&Option<String>> for Value {
    fn from(v: &Option<String>) -> Value {
        v.as_deref().into()
    }
}

/// The arguments of a statement, from a list of anything that converts into [`Value`].
#[macro_export]
macro_rules! sql_args {
    ($($v:expr),* $(,)?) => {
        [$($crate::registry::sql::Value::from($v)),*]
    };
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| Error::Db(format!("result row has no column {i}")))
    }

    fn mismatch(&self, i: usize, want: &str) -> Error {
        Error::Db(format!(
            "column {i} of a result row is {:?}, expected {want}",
            self.0.get(i)
        ))
    }

    /// A non-null text column.
    pub fn text(&self, i: usize) -> Result<String> {
        match self.at(i)? {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    /// A nullable text column.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            _ => Err(self.mismatch(i, "text or null")),
        }
    }

    /// A non-null integer column.
    pub fn int(&self, i: usize) -> Result<i64> {
        match self.at(i)? {
            Value::Int(n) => Ok(*n),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    /// A nullable integer column.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(n) => Ok(Some(*n)),
            _ => Err(self.mismatch(i, "an integer or null")),
        }
    }

    /// A non-negative integer column (sizes, counts).
    pub fn count(&self, i: usize) -> Result<u64> {
        let n = self.int(i)?;
        u64::try_from(n).map_err(|_| Error::Db(format!("column {i} is negative: {n}")))
    }

    /// A nullable non-negative integer column.
    pub fn opt_count(&self, i: usize) -> Result<Option<u64>> {
        self.opt_int(i)?
            .map(|n| {
                u64::try_from(n).map_err(|_| Error::Db(format!("column {i} is negative: {n}")))
            })
            .transpose()
    }

    /// A 0/1 flag column.
    pub fn flag(&self, i: usize) -> Result<bool> {
        Ok(self.int(i)? != 0)
    }
}

/// Which SQL the database speaks, where the backends differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite 3 (embedded).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl Dialect {
    /// The name operators know the database by, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
            Dialect::Mysql => "MySQL",
        }
    }

    /// Starts a transaction that reads one snapshot.
    pub fn begin_read(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN DEFERRED",
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            // Sessions run in READ COMMITTED (narrow row locks for writes), under which a
            // consistent snapshot is not one: a read transaction asks for REPEATABLE READ.
            Dialect::Mysql => {
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
                 START TRANSACTION WITH CONSISTENT SNAPSHOT"
            }
        }
    }

    /// Starts a write transaction. SQLite takes the database's write lock at once; the
    /// servers lock rows as they go ([`Dialect::for_update`]).
    pub fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
            Dialect::Mysql => "START TRANSACTION",
        }
    }

    /// What a `SELECT` of the row a write transaction is about to change ends with, so that
    /// concurrent writers of one image take turns (SQLite's write lock already does that).
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres | Dialect::Mysql => " FOR UPDATE",
        }
    }
}

/// A connection to the registry database.
///
/// Statements use `?` placeholders (never inside string literals), one per argument in
/// order; the PostgreSQL backend numbers them. Several statements in one string are only
/// allowed in [`Conn::batch`].
pub trait Conn: Send {
    /// The SQL this connection speaks.
    fn dialect(&self) -> Dialect;

    /// Runs a statement and returns its rows.
    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>>;

    /// Runs a statement and returns how many rows it matched (MySQL counts found rows,
    /// not only changed ones, like the others).
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64>;

    /// Runs statements without arguments (transaction control, schema changes).
    fn batch(&mut self, sql: &str) -> Result<()>;

    /// False once a connection-level failure was seen: the pool closes such a connection
    /// instead of reusing it.
    fn is_usable(&self) -> bool;

    /// The first row of a statement, if any.
    fn query_opt(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row of a statement, which must have one.
    fn query_one(&mut self, sql: &str, args: &[Value]) -> Result<Row> {
        self.query_opt(sql, args)?
            .ok_or_else(|| Error::Db(format!("statement returned no row: {sql}")))
    }
}

/// Options every server connection is opened with.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// The longest a connection attempt may take before the database counts as unavailable.
    pub connect_timeout: std::time::Duration,
    /// The longest one statement may run or wait for a lock (`sql_statement_timeout`); past it the
    /// statement fails and the request answers 503.
    pub statement_timeout: std::time::Duration,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            connect_timeout: std::time::Duration::from_secs(5),
            statement_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// Opens one connection to a PostgreSQL or MySQL database (SQLite connections are opened by
/// [`sqlite`], which also sets up the file).
pub fn connect_server(url: &DbUrl, opts: ConnectOptions) -> Result<Box<dyn Conn>> {
    match url {
        DbUrl::Postgres(server) => Ok(Box::new(postgres::PgConn::connect(server, opts)?)),
        DbUrl::Mysql(server) => Ok(Box::new(mysql::MysqlConn::connect(server, opts)?)),
        DbUrl::Sqlite(path) => Err(Error::Internal(format!(
            "connect_server called for the SQLite database {}",
            path.display()
        ))),
    }
}
