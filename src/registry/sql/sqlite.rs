//! The SQLite backend of [`super::Conn`]: an embedded database file (rusqlite, bundled).
//!
//! Every connection runs in WAL mode with a busy timeout (`sql_statement_timeout`),
//! `foreign_keys = ON` and `synchronous = FULL` (or `NORMAL` when asked). Statements are
//! prepared once per connection and cached: an image lookup runs on every HEAD and GET, and
//! preparing its statements anew cost about as much as running them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, params_from_iter};

use super::{Conn, Dialect, Row, Value};
use crate::error::{Error, Result};

/// How SQLite connections are set up.
#[derive(Debug, Clone, Copy)]
pub struct SqliteSettings {
    /// How long a connection waits for a lock held by another before failing.
    pub busy_timeout: Duration,
    /// `synchronous = FULL` (commits on disk before they return) rather than `NORMAL`.
    pub durable_commits: bool,
}

impl Default for SqliteSettings {
    fn default() -> SqliteSettings {
        SqliteSettings {
            busy_timeout: Duration::from_secs(30),
            durable_commits: true,
        }
    }
}

/// A connection to a SQLite registry database.
pub struct SqliteConn {
    conn: Connection,
}

impl std::fmt::Debug for SqliteConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConn")
            .field("path", &self.conn.path())
            .finish()
    }
}

impl SqliteConn {
    /// Opens the database file (creating it, and its directory, when `create`).
    pub fn open(path: &Path, create: bool, settings: SqliteSettings) -> Result<SqliteConn> {
        if create {
            create_parent(path)?;
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| Error::Db(format!("cannot open database {}: {e}", path.display())))?;
        configure(&conn, settings, true)
            .map_err(|e| Error::Db(format!("cannot set up database {}: {e}", path.display())))?;
        Ok(SqliteConn { conn })
    }

    /// Opens the database file read-only (`glance-manage db_version`).
    pub fn open_read_only(path: &Path) -> Result<SqliteConn> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::Db(format!("cannot open database {}: {e}", path.display())))?;
        Ok(SqliteConn { conn })
    }

    /// A private in-memory database (tests and tools): it lives as long as this connection.
    pub fn open_in_memory(settings: SqliteSettings) -> Result<SqliteConn> {
        let conn = Connection::open_in_memory()?;
        configure(&conn, settings, false)?;
        Ok(SqliteConn { conn })
    }

    /// The database file, if any.
    pub fn path(&self) -> Option<PathBuf> {
        self.conn
            .path()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    }

    /// The rusqlite connection (tests that set up old schemas by hand).
    #[cfg(test)]
    pub(crate) fn raw(&self) -> &Connection {
        &self.conn
    }
}

/// Applies the per-connection settings.
fn configure(conn: &Connection, settings: SqliteSettings, wal: bool) -> Result<()> {
    conn.busy_timeout(settings.busy_timeout)?;
    if wal {
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    }
    conn.pragma_update(None, "foreign_keys", true)?;
    // FULL: a commit (an image becoming active, say) is on disk before the client is told;
    // NORMAL in WAL mode may lose the last commits on power loss.
    let sync = if settings.durable_commits {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", sync)?;
    Ok(())
}

/// Creates the parent directory of a database file if needed.
pub fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::io(
                format!("cannot create the database directory {}", parent.display()),
                e,
            )
        })?;
    }
    Ok(())
}

/// rusqlite's binding of one argument.
fn to_sql(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(n) => rusqlite::types::Value::Integer(*n),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

/// One column read back.
fn from_sql(v: ValueRef<'_>) -> Result<Value> {
    match v {
        ValueRef::Null => Ok(Value::Null),
        ValueRef::Integer(n) => Ok(Value::Int(n)),
        ValueRef::Text(t) => Ok(Value::Text(String::from_utf8_lossy(t).into_owned())),
        ValueRef::Real(_) | ValueRef::Blob(_) => Err(Error::Db(
            "unexpected REAL or BLOB value in the registry database".into(),
        )),
    }
}

impl Conn for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let mut st = self.conn.prepare_cached(sql)?;
        let width = st.column_count();
        let mut rows = st.query(params_from_iter(args.iter().map(to_sql)))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(width);
            for i in 0..width {
                row.push(from_sql(r.get_ref(i)?)?);
            }
            out.push(Row(row));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64> {
        let n = self
            .conn
            .prepare_cached(sql)?
            .execute(params_from_iter(args.iter().map(to_sql)))?;
        Ok(n as u64)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql)?;
        Ok(())
    }

    fn is_usable(&self) -> bool {
        // A file that can no longer be read fails every statement; there is no connection
        // to lose. A connection left inside a transaction is rolled back by the pool.
        true
    }
}
