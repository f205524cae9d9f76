//! The MySQL and MariaDB backend of [`super::Conn`], over the synchronous `mysql` crate.
//!
//! Statements run as server-side prepared statements, which the crate caches per
//! connection. Each session is set up so that the registry's statements mean what they
//! mean on SQLite and PostgreSQL:
//!
//! - `SET NAMES utf8mb4 COLLATE utf8mb4_bin`: all of Unicode, compared byte-wise;
//! - `sql_mode` strict (`STRICT_ALL_TABLES`: a value that does not fit is an error, never
//!   truncated), `NO_BACKSLASH_ESCAPES` (a backslash in a literal is a backslash, as in
//!   standard SQL) and `PIPES_AS_CONCAT` (`||` concatenates);
//! - `READ COMMITTED` as the session's isolation level, PostgreSQL's default: a write
//!   transaction sees rows committed since it began and locks only the rows it touches (the
//!   registry locks an image's row with `SELECT ... FOR UPDATE` before changing it), where
//!   REPEATABLE READ would add gap locks that make concurrent inserts wait or deadlock;
//! - the client flag `CLIENT_FOUND_ROWS`, so that an `UPDATE` reports the rows it matched,
//!   changed or not, like the other databases;
//! - `sql_statement_timeout` as `innodb_lock_wait_timeout` and as the statement time limit
//!   (`max_statement_time` on MariaDB, `max_execution_time` for MySQL's SELECTs). The
//!   socket's read timeout is a few seconds longer, a last resort for a server that stopped
//!   answering: the server's own timeouts fail the statement and keep the session.
//!
//! As MySQLdb did, a URL without a host or with `localhost` connects through the local
//! server's unix socket when there is one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mysql::consts::{CapabilityFlags, ColumnType};
use mysql::prelude::Queryable;
use mysql::{OptsBuilder, Params};

use super::url::ServerUrl;
use super::{Conn, ConnectOptions, Dialect, Row, Value};
use crate::error::{Error, Result};

/// Prepared statements kept per connection (see the PostgreSQL backend: a few dozen fixed
/// texts plus listings built from filters).
const STATEMENT_CACHE: usize = 512;

/// Where the local server's socket usually is (Debian's, Red Hat's, upstream's builds).
const SOCKETS: [&str; 3] = [
    "/var/run/mysqld/mysqld.sock",
    "/var/lib/mysql/mysql.sock",
    "/tmp/mysql.sock",
];

/// How much longer than `sql_statement_timeout` the client waits for an answer before it gives the
/// connection up: the server's own statement and lock timeouts should answer first.
const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// The session's `sql_mode` (see the module documentation).
const SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
                        ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,\
                        NO_BACKSLASH_ESCAPES,PIPES_AS_CONCAT";

/// A connection to a MySQL or MariaDB registry database.
pub struct MysqlConn {
    conn: mysql::Conn,
    /// False once a connection-level failure was seen.
    usable: bool,
}

impl std::fmt::Debug for MysqlConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConn")
            .field("id", &self.conn.connection_id())
            .field("usable", &self.usable)
            .finish()
    }
}

impl MysqlConn {
    /// Connects to the database and sets the session up. Any failure, a refused login
    /// included, is [`Error::Unavailable`]: the pool retries later, requests get 503.
    pub fn connect(server: &ServerUrl, opts: ConnectOptions) -> Result<MysqlConn> {
        let (builder, place) = options(server, opts);
        let unavailable = |e: &dyn std::fmt::Display| {
            Error::Unavailable(format!(
                "registry database unavailable: cannot connect to MySQL at {place}: {e}"
            ))
        };
        let mut conn = mysql::Conn::new(builder).map_err(|e| unavailable(&e))?;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .map_err(|e| unavailable(&e))?;
        let mariadb = version.is_some_and(|v| v.contains("MariaDB"));
        conn.query_drop(session_setup(opts.statement_timeout, mariadb))
            .map_err(|e| unavailable(&e))?;
        Ok(MysqlConn { conn, usable: true })
    }

    /// The server's id of this session (for `KILL`).
    pub fn connection_id(&self) -> u32 {
        self.conn.connection_id()
    }

    /// Maps a driver error, marking the connection unusable when the session is gone.
    fn failed(&mut self, e: mysql::Error) -> Error {
        let (err, lost) = map_error(&e);
        if lost {
            self.usable = false;
        }
        err
    }
}

/// The statements that set a new session up (one round trip).
fn session_setup(timeout: Duration, mariadb: bool) -> String {
    let mut sql = format!(
        "SET NAMES utf8mb4 COLLATE utf8mb4_bin; \
         SET SESSION sql_mode = '{SQL_MODE}'; \
         SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
    );
    // 0 is no limit (as PostgreSQL's statement_timeout = 0); the servers' defaults apply.
    if !timeout.is_zero() {
        // Whole seconds, at least 1 (the variable's minimum).
        let lock_secs = timeout.as_secs().max(1);
        sql.push_str(&format!(
            "; SET SESSION innodb_lock_wait_timeout = {lock_secs}"
        ));
        if mariadb {
            sql.push_str(&format!(
                "; SET SESSION max_statement_time = {:.3}",
                timeout.as_secs_f64()
            ));
        } else {
            sql.push_str(&format!(
                "; SET SESSION max_execution_time = {}",
                timeout.as_millis()
            ));
        }
    }
    sql
}

/// The driver's options, and where it connects to (for messages: no password).
fn options(server: &ServerUrl, opts: ConnectOptions) -> (OptsBuilder, String) {
    let port = server.port.unwrap_or(3306);
    let local = server
        .host
        .as_deref()
        .is_none_or(|h| h.eq_ignore_ascii_case("localhost"));
    let socket: Option<PathBuf> = server.socket.clone().or_else(|| {
        local
            .then(|| SOCKETS.iter().map(Path::new).find(|p| p.exists()))
            .flatten()
            .map(Path::to_path_buf)
    });
    let timeout = server.connect_timeout().unwrap_or(opts.connect_timeout);
    let read_timeout =
        (!opts.statement_timeout.is_zero()).then(|| opts.statement_timeout + READ_TIMEOUT_MARGIN);
    let mut builder = OptsBuilder::new()
        .user(server.user.as_deref())
        .pass(server.password.as_deref())
        .db_name(Some(&server.database))
        .tcp_port(port)
        // We choose the socket ourselves (above); the crate's own choice would reconnect
        // after asking the server where its socket is.
        .prefer_socket(false)
        .tcp_connect_timeout(Some(timeout))
        .read_timeout(read_timeout)
        .write_timeout(read_timeout)
        // A server that vanished is noticed within about a minute.
        .tcp_keepalive_time_ms(Some(30_000))
        .tcp_keepalive_probe_interval_secs(Some(10))
        .tcp_keepalive_probe_count(Some(3))
        .stmt_cache_size(STATEMENT_CACHE)
        .additional_capabilities(CapabilityFlags::CLIENT_FOUND_ROWS);
    let place = match &socket {
        Some(path) => {
            builder = builder.socket(Some(path.display().to_string()));
            path.display().to_string()
        }
        None => {
            let host = server.host.clone().unwrap_or_else(|| "localhost".into());
            let place = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            builder = builder.ip_or_hostname(Some(host));
            place
        }
    };
    (builder, place)
}

/// Maps a driver error, and tells whether the session is lost.
fn map_error(e: &mysql::Error) -> (Error, bool) {
    let unavailable = |lost| {
        (
            Error::Unavailable(format!("registry database unavailable: {e}")),
            lost,
        )
    };
    match e {
        mysql::Error::MySqlError(m) => match m.code {
            // ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME.
            1062 | 1586 => (Error::Duplicate(m.message.clone()), false),
            // ER_LOCK_DEADLOCK: the transaction lost a race (and was rolled back).
            1213 => (Error::Conflict(format!("{}; try again", m.message)), false),
            // ER_LOCK_WAIT_TIMEOUT, ER_QUERY_INTERRUPTED, MariaDB's ER_STATEMENT_TIMEOUT,
            // MySQL's ER_QUERY_TIMEOUT: the database is too busy; the session survives.
            1205 | 1317 | 1969 | 3024 => unavailable(false),
            // ER_CON_COUNT_ERROR, ER_SERVER_SHUTDOWN, MariaDB's ER_CONNECTION_KILLED,
            // CR_SERVER_GONE_ERROR, CR_SERVER_LOST, MySQL's ER_CLIENT_INTERACTION_TIMEOUT:
            // the session is gone.
            1040 | 1053 | 1927 | 2006 | 2013 | 4031 => unavailable(true),
            _ => (Error::Db(e.to_string()), false),
        },
        // Programming errors: the statement and its arguments do not agree.
        mysql::Error::DriverError(
            mysql::DriverError::MismatchedStmtParams(..)
            | mysql::DriverError::Params(_)
            | mysql::DriverError::MixedParams,
        ) => (Error::Db(e.to_string()), false),
        // I/O, protocol and TLS failures leave the session in an unknown state.
        mysql::Error::IoError(_)
        | mysql::Error::CodecError(_)
        | mysql::Error::DriverError(_)
        | mysql::Error::TlsError(_) => unavailable(true),
        mysql::Error::UrlError(_)
        | mysql::Error::FromValueError(_)
        | mysql::Error::FromRowError(_) => (Error::Db(e.to_string()), false),
    }
}

/// The driver's form of the arguments.
fn params(args: &[Value]) -> Params {
    if args.is_empty() {
        return Params::Empty;
    }
    Params::Positional(
        args.iter()
            .map(|v| match v {
                Value::Null => mysql::Value::NULL,
                Value::Int(n) => mysql::Value::Int(*n),
                Value::Text(s) => mysql::Value::Bytes(s.clone().into_bytes()),
            })
            .collect(),
    )
}

/// One column read back; `ty` tells a DECIMAL (what `SUM` returns) from text.
fn from_mysql(v: &mysql::Value, ty: ColumnType) -> Result<Value> {
    match v {
        mysql::Value::NULL => Ok(Value::Null),
        mysql::Value::Int(n) => Ok(Value::Int(*n)),
        mysql::Value::UInt(n) => i64::try_from(*n)
            .map(Value::Int)
            .map_err(|_| Error::Db(format!("value {n} out of range of a BIGINT"))),
        mysql::Value::Bytes(b)
            if matches!(
                ty,
                ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL
            ) =>
        {
            decimal_to_i64(b).map(Value::Int)
        }
        mysql::Value::Bytes(b) => String::from_utf8(b.clone())
            .map(Value::Text)
            .map_err(|_| Error::Db("a text column of the registry database is not UTF-8".into())),
        other => Err(Error::Db(format!(
            "unexpected value {other:?} in the registry database"
        ))),
    }
}

/// A DECIMAL holding a whole number (`123`, `-5`, `42.000`).
fn decimal_to_i64(text: &[u8]) -> Result<i64> {
    let bad = || {
        Error::Db(format!(
            "DECIMAL {:?} is not a whole number",
            String::from_utf8_lossy(text)
        ))
    };
    let s = std::str::from_utf8(text).map_err(|_| bad())?;
    let whole = match s.split_once('.') {
        Some((w, frac)) if frac.bytes().all(|b| b == b'0') => w,
        Some(_) => return Err(bad()),
        None => s,
    };
    whole.parse::<i64>().map_err(|_| bad())
}

/// Splits statements at the `;`s outside quoted literals, identifiers and comments: the
/// migrations' scripts, for servers or proxies that refuse several statements in one query.
fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote: Option<u8> = None;
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'\'' | b'"' | b'`' => quote = Some(b),
                b'-' if bytes.get(i + 1) == Some(&b'-') => {
                    // A comment runs to the end of the line.
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b';' => {
                    out.push(&sql[start..i]);
                    start = i + 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    out.push(&sql[start..]);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

impl Conn for MysqlConn {
    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let rows: Vec<mysql::Row> = self
            .conn
            .exec(sql, params(args))
            .map_err(|e| self.failed(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let columns = r.columns_ref();
            let mut row = Vec::with_capacity(r.len());
            for (i, column) in columns.iter().enumerate() {
                let v = r
                    .as_ref(i)
                    .ok_or_else(|| Error::Db(format!("result row has no column {i}")))?;
                row.push(from_mysql(v, column.column_type())?);
            }
            out.push(Row(row));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64> {
        self.conn
            .exec_drop(sql, params(args))
            .map_err(|e| self.failed(e))?;
        Ok(self.conn.affected_rows())
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        // One statement at a time, so that a script of several (a migration) runs whatever
        // a server's or a proxy's stance on several statements in one query.
        for statement in split_statements(sql) {
            self.conn
                .query_drop(statement)
                .map_err(|e| self.failed(e))?;
        }
        Ok(())
    }

    fn is_usable(&self) -> bool {
        self.usable
    }
}

#[cfg(test)]
mod tests;
