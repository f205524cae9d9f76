//! The PostgreSQL backend of [`super::Conn`], over the synchronous `postgres` crate.
//!
//! Statements are written with `?` placeholders for all three databases; they are numbered
//! `$1..$n` here, prepared once per connection and cached (an image lookup runs on every
//! HEAD and GET: preparing it anew would double its round trips). Arguments adapt to the
//! parameter types the server inferred ([`Arg`]), so one [`Value::Int`] binds to a
//! SMALLINT flag, an INTEGER or a BIGINT size alike.
//!
//! Each session runs with `statement_timeout` and `lock_timeout` set to `sql_statement_timeout`, so a
//! stuck statement or a lock held too long fails (503) instead of holding a request and a
//! pooled connection. TLS follows libpq's `sslmode` (default `prefer`): `disable`; `allow`
//! and `prefer` (TLS when the server offers it, certificate not checked, as libpq does);
//! `require` (TLS, certificate checked against `sslrootcert` when one is given, else not);
//! `verify-ca` (chain checked, against `sslrootcert` or the system roots); `verify-full`
//! (chain and host name checked). `allow` tries TLS first where libpq tries without first;
//! either way the session is encrypted exactly when the server wants or offers it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use super::url::ServerUrl;
use super::{Conn, ConnectOptions, Dialect, Row, Value};
use crate::error::{Error, Result};

/// Prepared statements kept per connection. The registry's statements are a few dozen
/// fixed texts plus listing queries built from the filters given; past this many the
/// cache starts over rather than growing without bound.
const STATEMENT_CACHE: usize = 512;

/// Where libpq looks for the server's socket when no host is given (Debian's and Red Hat's
/// builds; upstream's default is `/tmp`).
const SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// A connection to a PostgreSQL registry database.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// False once a connection-level failure was seen.
    usable: bool,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("statements", &self.statements.len())
            .field("usable", &self.usable)
            .finish()
    }
}

impl PgConn {
    /// Connects to the database and sets the session up. Any failure, a refused login
    /// included, is [`Error::Unavailable`]: the pool retries later, requests get 503.
    pub fn connect(server: &ServerUrl, opts: ConnectOptions) -> Result<PgConn> {
        let (config, place) = config(server, opts);
        let unavailable = |e: &dyn std::fmt::Display| {
            Error::Unavailable(format!(
                "registry database unavailable: cannot connect to PostgreSQL at {place}: {e}"
            ))
        };
        let sslmode = server.param("sslmode").unwrap_or("prefer");
        let mut client = if sslmode == "disable" {
            config.connect(NoTls)
        } else {
            let root = server.param("sslrootcert").map(Path::new);
            let tls = tls_connector(sslmode, root).map_err(|e| unavailable(&e))?;
            config.connect(tls)
        }
        .map_err(|e| unavailable(&error_text(&e)))?;

        let timeout = opts.statement_timeout.as_millis();
        client
            .batch_execute(&format!(
                "SET statement_timeout = {timeout}; SET lock_timeout = {timeout}; \
                 SET client_encoding = 'UTF8'"
            ))
            .map_err(|e| unavailable(&error_text(&e)))?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            usable: true,
        })
    }

    /// The cached prepared statement of `sql`, preparing it on first use.
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let numbered = number_placeholders(sql)?;
        let st = self.client.prepare(&numbered).map_err(|e| self.failed(e))?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    /// Maps a driver error, marking the connection unusable when the session is gone.
    fn failed(&mut self, e: postgres::Error) -> Error {
        let (err, lost) = map_error(&e);
        if lost {
            self.usable = false;
        }
        err
    }
}

/// The driver configuration, and where it connects to (for messages: no password).
fn config(server: &ServerUrl, opts: ConnectOptions) -> (postgres::Config, String) {
    let mut cfg = postgres::Config::new();
    if let Some(user) = &server.user {
        cfg.user(user);
    }
    if let Some(password) = &server.password {
        cfg.password(password);
    }
    cfg.dbname(&server.database);
    let port = server.port.unwrap_or(5432);
    cfg.port(port);
    let place = match (&server.socket, &server.host) {
        (Some(dir), _) => {
            cfg.host_path(dir);
            format!("{}/.s.PGSQL.{port}", dir.display())
        }
        (None, Some(host)) => {
            cfg.host(host);
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
        (None, None) => {
            // libpq's default: the local server's socket.
            let dir = SOCKET_DIRS
                .iter()
                .map(PathBuf::from)
                .find(|d| d.join(format!(".s.PGSQL.{port}")).exists())
                .unwrap_or_else(|| PathBuf::from(SOCKET_DIRS[0]));
            cfg.host_path(&dir);
            format!("{}/.s.PGSQL.{port}", dir.display())
        }
    };
    let timeout = server.connect_timeout().unwrap_or(opts.connect_timeout);
    cfg.connect_timeout(timeout)
        .application_name("glance-rs")
        // A server that vanished (host down, network cut) is noticed within about a
        // minute instead of the kernel's two hours.
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    let sslmode = server.param("sslmode").unwrap_or("prefer");
    cfg.ssl_mode(match sslmode {
        "disable" => postgres::config::SslMode::Disable,
        "allow" | "prefer" => postgres::config::SslMode::Prefer,
        _ => postgres::config::SslMode::Require,
    });
    (cfg, place)
}

/// The TLS connector for an `sslmode` other than `disable` (see the module documentation).
fn tls_connector(
    sslmode: &str,
    root: Option<&Path>,
) -> std::result::Result<postgres_native_tls::MakeTlsConnector, String> {
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(path) = root {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            format!(
                "sslrootcert {} is not a PEM certificate: {e}",
                path.display()
            )
        })?;
        builder.add_root_certificate(cert);
    }
    match sslmode {
        "verify-full" => {}
        "verify-ca" => {
            builder.danger_accept_invalid_hostnames(true);
        }
        "require" if root.is_some() => {
            builder.danger_accept_invalid_hostnames(true);
        }
        // allow, prefer, require without a root: encryption without authentication, as
        // libpq does.
        _ => {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
    }
    let connector = builder
        .build()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    Ok(postgres_native_tls::MakeTlsConnector::new(connector))
}

/// The driver's error with its cause (`db error: FATAL: ...`, `error connecting to server:
/// Connection refused`); the driver never puts the password in it.
fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.to_string(),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Maps a driver error, and tells whether the session is lost.
fn map_error(e: &postgres::Error) -> (Error, bool) {
    let text = error_text(e);
    let unavailable = |lost| {
        (
            Error::Unavailable(format!("registry database unavailable: {text}")),
            lost,
        )
    };
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return match code {
            "23505" => (Error::Duplicate(db.message().to_string()), false),
            // serialization_failure, deadlock_detected: the transaction lost a race.
            "40001" | "40P01" => (
                Error::Conflict(format!("{}; try again", db.message())),
                false,
            ),
            // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections,
            // and the connection_exception class: the session is gone.
            "57P01" | "57P02" | "57P03" | "53300" => unavailable(true),
            c if c.starts_with("08") => unavailable(true),
            // query_canceled (statement_timeout), lock_not_available (lock_timeout): the
            // database is too busy; the session survives (its transaction is rolled back).
            "57014" | "55P03" => unavailable(false),
            _ => (Error::Db(text), false),
        };
    }
    let io = std::error::Error::source(e).is_some_and(|c| c.is::<std::io::Error>());
    if e.is_closed() || io {
        return unavailable(true);
    }
    (Error::Db(text), false)
}

/// `?` placeholders numbered `$1..$n`, outside quoted literals and identifiers. A `?`
/// followed by a digit (SQLite's `?1`) is refused: it would silently become `$11`.
fn number_placeholders(sql: &str) -> Result<String> {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0u32;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            // A doubled quote inside a literal closes it and opens it again: same result.
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    out.push(c);
                }
                '?' => {
                    if chars.peek().is_some_and(char::is_ascii_digit) {
                        return Err(Error::Internal(format!(
                            "numbered placeholder in a statement for PostgreSQL: {sql}"
                        )));
                    }
                    n += 1;
                    let _ = write!(out, "${n}");
                }
                _ => out.push(c),
            },
        }
    }
    Ok(out)
}

/// One argument, bound as the type the server inferred for its parameter.
#[derive(Debug)]
struct Arg<'a>(&'a Value);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) => {
                let n = *n;
                if *ty == Type::INT8 {
                    n.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(n)
                        .map_err(|_| format!("{n} is out of range for an INTEGER"))?
                        .to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(n)
                        .map_err(|_| format!("{n} is out of range for a SMALLINT"))?
                        .to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    match n {
                        0 => false.to_sql(ty, out),
                        1 => true.to_sql(ty, out),
                        _ => Err(format!("{n} is not a boolean (0 or 1)").into()),
                    }
                } else {
                    Err(format!("an integer cannot be bound to a {ty} parameter").into())
                }
            }
            Value::Text(s) => {
                if [
                    Type::TEXT,
                    Type::VARCHAR,
                    Type::BPCHAR,
                    Type::NAME,
                    Type::UNKNOWN,
                ]
                .contains(ty)
                {
                    s.as_str().to_sql(ty, out)
                } else {
                    Err(format!("text cannot be bound to a {ty} parameter").into())
                }
            }
        }
    }

    // Any type: NULL binds to all, and the other values check the type in to_sql, with a
    // message naming it.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One column read back.
struct Col(Value);

impl<'a> FromSql<'a> for Col {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Col, BoxError> {
        let v = if *ty == Type::INT8 {
            Value::Int(i64::from_sql(ty, raw)?)
        } else if *ty == Type::INT4 {
            Value::Int(i64::from(i32::from_sql(ty, raw)?))
        } else if *ty == Type::INT2 {
            Value::Int(i64::from(i16::from_sql(ty, raw)?))
        } else if *ty == Type::BOOL {
            Value::Int(i64::from(bool::from_sql(ty, raw)?))
        } else if *ty == Type::NUMERIC {
            Value::Int(numeric_to_i64(raw)?)
        } else {
            Value::Text(<&str>::from_sql(ty, raw)?.to_string())
        };
        Ok(Col(v))
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Col, BoxError> {
        Ok(Col(Value::Null))
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT8,
            Type::INT4,
            Type::INT2,
            Type::BOOL,
            Type::NUMERIC,
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
        ]
        .contains(ty)
    }
}

/// A NUMERIC holding a whole number (what `SUM` of a BIGINT column returns), from its
/// binary form: digit count, weight, sign, scale, then base-10000 digits.
fn numeric_to_i64(raw: &[u8]) -> std::result::Result<i64, BoxError> {
    let word = |i: usize| -> std::result::Result<u16, BoxError> {
        raw.get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated NUMERIC value".into())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let mut value: i128 = 0;
    for i in 0..ndigits {
        let digit = i128::from(word(4 + i)?);
        // Digit i stands for digit * 10000^(weight - i).
        let power = weight - i as i64;
        if power < 0 {
            if digit != 0 {
                return Err("NUMERIC value is not a whole number".into());
            }
            continue;
        }
        let scale = 10_000i128
            .checked_pow(u32::try_from(power)?)
            .ok_or("NUMERIC value out of range")?;
        value = digit
            .checked_mul(scale)
            .and_then(|d| value.checked_add(d))
            .ok_or("NUMERIC value out of range")?;
    }
    let value = match sign {
        0x0000 => value,
        0x4000 => -value,
        _ => return Err("NUMERIC value is NaN or infinite".into()),
    };
    Ok(i64::try_from(value)?)
}

/// The arguments as the driver takes them.
fn bind(args: &[Value]) -> Vec<Arg<'_>> {
    args.iter().map(Arg).collect()
}

/// Whether a batch only controls transactions (and so leaves the schema, and the prepared
/// statements, as they were).
fn is_transaction_control(sql: &str) -> bool {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches(';')
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "BEGIN" | "START" | "COMMIT" | "ROLLBACK" | "END" | "SAVEPOINT" | "RELEASE" | "SET"
    )
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let st = self.statement(sql)?;
        let bound = bind(args);
        let params: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let rows = self
            .client
            .query(&st, &params)
            .map_err(|e| self.failed(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut row = Vec::with_capacity(r.len());
            for i in 0..r.len() {
                let col: Col = r.try_get(i).map_err(|e| {
                    Error::Db(format!(
                        "column {i} ({}) of a registry query: {}",
                        r.columns()[i].type_(),
                        error_text(&e)
                    ))
                })?;
                row.push(col.0);
            }
            out.push(Row(row));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64> {
        let st = self.statement(sql)?;
        let bound = bind(args);
        let params: Vec<&(dyn ToSql + Sync)> =
            bound.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.client
            .execute(&st, &params)
            .map_err(|e| self.failed(e))
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        // A schema change can invalidate prepared statements ("cached plan must not change
        // result type"): start the cache over after anything but transaction control.
        if !is_transaction_control(sql) {
            self.statements.clear();
        }
        self.client.batch_execute(sql).map_err(|e| self.failed(e))
    }

    fn is_usable(&self) -> bool {
        self.usable && !self.client.is_closed()
    }
}

#[cfg(test)]
mod tests;
