//! `sql_connection`: SQLAlchemy database URLs, so that Diablo configurations work unchanged.
//!
//! The forms are SQLAlchemy's: `sqlite:////absolute/path`, `sqlite:///relative/path` (or a
//! plain path), and `<database>[+<driver>]://[user[:password]@][host][:port]/database[?k=v&...]`
//! for the servers. The Python driver named after `+` (`mysql+pymysql`, `postgresql+psycopg2`)
//! only has to be one SQLAlchemy knew for that database: the connection is made by this
//! program's own client either way. The user-info is split off at the first `@` as SQLAlchemy
//! splits it, so that a password with an unencoded `/` or `?` means the same here.
//!
//! Query parameters are checked: one this program does not act on is an error naming it,
//! rather than a setting silently ignored. Errors never repeat the password.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Dialect;

/// A parsed `sql_connection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `sqlite:////absolute`, `sqlite:///relative` (made absolute) or a plain path.
    Sqlite(PathBuf),
    /// `postgresql://`, `postgresql+psycopg2://` (and `postgres://`).
    Postgres(ServerUrl),
    /// `mysql://`, `mysql+mysqldb://`, `mysql+pymysql://` (MySQL and MariaDB).
    Mysql(ServerUrl),
}

/// Where a database server is and how to log in. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// User name, percent-decoded.
    pub user: Option<String>,
    /// Password, percent-decoded; never printed.
    pub password: Option<String>,
    /// Host name or address (None: the default, or the unix socket).
    pub host: Option<String>,
    /// Port (None: the backend's default).
    pub port: Option<u16>,
    /// Database name.
    pub database: String,
    /// Unix socket path (`?unix_socket=` for MySQL, `?host=/dir` for PostgreSQL).
    pub socket: Option<PathBuf>,
    /// The other query parameters, in order (`charset`, `sslmode`, ...).
    pub params: Vec<(String, String)>,
}

impl std::fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerUrl")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("socket", &self.socket)
            .field("params", &self.params)
            .finish()
    }
}

impl ServerUrl {
    /// The value of a query parameter (other than the socket one), if given.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `?connect_timeout=<seconds>`, which takes precedence over `sql_connect_timeout` (as it
    /// did for the Python drivers, which received it directly).
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.param("connect_timeout")
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
    }
}

/// The server databases, with the query parameters each accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Postgres,
    Mysql,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Postgres => "PostgreSQL",
            Server::Mysql => "MySQL",
        }
    }

    /// The query parameters this program acts on, sorted (for messages).
    fn params(self) -> &'static [&'static str] {
        match self {
            Server::Postgres => &["connect_timeout", "host", "sslmode", "sslrootcert"],
            Server::Mysql => &["charset", "connect_timeout", "unix_socket", "use_unicode"],
        }
    }
}

/// The SQLAlchemy database names and, for each, the drivers accepted after `+`.
const DATABASES: [(&str, &[&str]); 4] = [
    ("sqlite", &["pysqlite"]),
    ("postgresql", &["psycopg2"]),
    ("postgres", &["psycopg2"]),
    ("mysql", &["mysqldb", "pymysql"]),
];

/// PostgreSQL `sslmode` values (libpq's).
pub const PG_SSLMODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

impl DbUrl {
    /// Parses a `sql_connection` value. The error describes the problem without repeating
    /// the value (the caller shows it redacted).
    pub fn parse(url: &str) -> std::result::Result<DbUrl, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return sqlite_file(url).map(DbUrl::Sqlite);
        };
        let (database, driver) = match scheme.split_once('+') {
            Some((d, drv)) => (d, Some(drv)),
            None => (scheme, None),
        };
        let lower = database.to_ascii_lowercase();
        let Some((name, drivers)) = DATABASES.iter().find(|(n, _)| *n == lower) else {
            return Err(format!(
                "uses database '{database}', which is not supported \
                 (supported: sqlite, postgresql, mysql)"
            ));
        };
        if let Some(drv) = driver
            && !drivers.iter().any(|d| d.eq_ignore_ascii_case(drv))
        {
            let forms: Vec<String> = std::iter::once(format!("{name}://"))
                .chain(drivers.iter().map(|d| format!("{name}+{d}://")))
                .collect();
            return Err(format!(
                "uses the driver '{drv}' for {name}, which is not supported (supported: {})",
                forms.join(", ")
            ));
        }
        match *name {
            "sqlite" => sqlite_url(rest).map(DbUrl::Sqlite),
            "mysql" => server_url(rest, Server::Mysql).map(DbUrl::Mysql),
            _ => server_url(rest, Server::Postgres).map(DbUrl::Postgres),
        }
    }

    /// Which SQL the database speaks.
    pub fn dialect(&self) -> Dialect {
        match self {
            DbUrl::Sqlite(_) => Dialect::Sqlite,
            DbUrl::Postgres(_) => Dialect::Postgres,
            DbUrl::Mysql(_) => Dialect::Mysql,
        }
    }

    /// The URL for messages and logs: canonical form, the password shown as `***`.
    pub fn redacted(&self) -> String {
        match self {
            DbUrl::Sqlite(path) => format!("sqlite:///{}", path.display()),
            DbUrl::Postgres(s) => redacted_server("postgresql", "host", s),
            DbUrl::Mysql(s) => redacted_server("mysql", "unix_socket", s),
        }
    }

    /// The SQLite database file, if this is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            DbUrl::Sqlite(path) => Some(path),
            DbUrl::Postgres(_) | DbUrl::Mysql(_) => None,
        }
    }
}

impl std::fmt::Display for DbUrl {
    /// The redacted form ([`DbUrl::redacted`]), so that formatting a URL can never leak its
    /// password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The text of a URL that may not parse, with the password of its user-info replaced by
/// `***` (`mysql://glance:***@db/glance`), for messages. The user-info is found as
/// [`DbUrl::parse`] finds it, so whatever the parser would take for a password is hidden.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match split_userinfo(rest) {
        (Some(userinfo), host) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        (None, _) => url.to_string(),
    }
}

/// Splits `user[:password]@` off the part after `://`, as SQLAlchemy's URL pattern does: the
/// user-info ends at the first `@`, and its user name (up to the first `:`) holds no `/`.
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    if let Some((userinfo, after)) = rest.split_once('@') {
        let user = userinfo.split(':').next().unwrap_or("");
        if !user.contains('/') {
            return (Some(userinfo), after);
        }
    }
    (None, rest)
}

/// The path of `sqlite://<rest>`: `<rest>` is `/<path>` (the host part must be empty).
fn sqlite_url(rest: &str) -> std::result::Result<PathBuf, String> {
    if rest.contains('?') {
        return Err("has query parameters, which are not supported".to_string());
    }
    match rest.strip_prefix('/') {
        Some(path) => sqlite_file(path),
        None => Err("must be sqlite:////absolute/path or sqlite:///relative/path".to_string()),
    }
}

/// A SQLite database file, made absolute against the current directory.
fn sqlite_file(path: &str) -> std::result::Result<PathBuf, String> {
    if path.is_empty() || path == ":memory:" {
        return Err(
            "names an in-memory database, which each connection would see empty; \
             give a file path"
                .to_string(),
        );
    }
    std::path::absolute(path).map_err(|e| format!("cannot be made absolute: {e}"))
}

/// The part of a server URL after `://`.
fn server_url(rest: &str, server: Server) -> std::result::Result<ServerUrl, String> {
    let (userinfo, rest) = split_userinfo(rest);
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let user = decode(user).ok_or("has a user name that is not UTF-8 once decoded")?;
            let password = password
                .map(decode)
                .map(|p| p.ok_or("has a password that is not UTF-8 once decoded"))
                .transpose()?;
            (non_empty(user), password.and_then(non_empty))
        }
    };

    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hostport, rest) = rest.split_at(end);
    let (host, port) = host_port(hostport)?;

    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let database = path
        .strip_prefix('/')
        .map(|d| decode(d).ok_or("has a database name that is not UTF-8 once decoded"))
        .transpose()?
        .unwrap_or_default();
    if database.is_empty() {
        return Err(format!(
            "names no database: give it after the host ({}://user:password@host/DATABASE)",
            match server {
                Server::Postgres => "postgresql",
                Server::Mysql => "mysql",
            }
        ));
    }

    let mut url = ServerUrl {
        user,
        password,
        host: None,
        port,
        database,
        socket: None,
        params: Vec::new(),
    };
    // libpq takes a host that is a path as the socket directory
    // (`postgresql://%2Fvar%2Frun%2Fpostgresql/glance`).
    match host {
        Some(h) if server == Server::Postgres && h.starts_with('/') => {
            url.socket = Some(PathBuf::from(h));
        }
        h => url.host = h,
    }
    if let Some(query) = query {
        query_params(query, server, &mut url)?;
    }
    Ok(url)
}

/// `host[:port]`, `[v6]:port`, `:port` or nothing.
fn host_port(text: &str) -> std::result::Result<(Option<String>, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (addr, after) = bracketed
            .split_once(']')
            .ok_or("has an IPv6 address without its closing ']'")?;
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("has '[{addr}]', which is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            a => Some(
                a.strip_prefix(':')
                    .ok_or("has text after the IPv6 address other than ':port'")?,
            ),
        };
        (addr.to_string(), port)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (text.to_string(), None),
        }
    };
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "has port '{p}', which is not a number between 1 and 65535 \
                 (an IPv6 address goes in brackets: [::1]:5432)"
            )),
        })
        .transpose()?;
    let host = decode(&host).ok_or("has a host that is not UTF-8 once decoded")?;
    Ok((non_empty(host), port))
}

/// Checks the query parameters and files them into `url`.
fn query_params(
    query: &str,
    server: Server,
    url: &mut ServerUrl,
) -> std::result::Result<(), String> {
    let mut seen: Vec<String> = Vec::new();
    for item in query.split('&').filter(|i| !i.is_empty()) {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        let key = decode_query(key).ok_or("has a query parameter name that is not UTF-8")?;
        let value = decode_query(value)
            .ok_or_else(|| format!("has a value of '{key}' that is not UTF-8 once decoded"))?;
        if !server.params().contains(&key.as_str()) {
            return Err(format!(
                "has the query parameter '{key}', which is not supported for {} \
                 (supported: {})",
                server.name(),
                server.params().join(", ")
            ));
        }
        if seen.contains(&key) {
            return Err(format!("gives the query parameter '{key}' twice"));
        }
        seen.push(key.clone());
        if value.is_empty() {
            return Err(format!("gives the query parameter '{key}' no value"));
        }
        let value = match key.as_str() {
            "charset" => {
                if !["utf8", "utf8mb4", "utf8mb3"]
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(&value))
                {
                    return Err(format!(
                        "has charset '{value}': only utf8 and utf8mb4 are supported \
                         (connections always use utf8mb4)"
                    ));
                }
                value.to_ascii_lowercase()
            }
            "use_unicode" => {
                // MySQLdb's choice of returning str or bytes: text is always decoded here.
                if !["0", "1", "true", "false"]
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(&value))
                {
                    return Err(format!("has use_unicode '{value}', which is not 0 or 1"));
                }
                value
            }
            "connect_timeout" => match value.parse::<u64>() {
                Ok(n) if (1..=3600).contains(&n) => value,
                _ => {
                    return Err(format!(
                        "has connect_timeout '{value}', which is not a whole number of \
                         seconds between 1 and 3600"
                    ));
                }
            },
            "sslmode" => {
                let lower = value.to_ascii_lowercase();
                if !PG_SSLMODES.contains(&lower.as_str()) {
                    return Err(format!(
                        "has sslmode '{value}', which is not one of: {}",
                        PG_SSLMODES.join(", ")
                    ));
                }
                lower
            }
            "unix_socket" | "host" => {
                if key == "host" && !value.starts_with('/') {
                    return Err(format!(
                        "has host '{value}' in its query: only a socket directory (an \
                         absolute path) may be given there; put a host name before the \
                         database"
                    ));
                }
                // The socket wins over a host in the authority, as the query parameter
                // overrode it for the Python drivers.
                url.socket = Some(PathBuf::from(value));
                url.host = None;
                continue;
            }
            _ => value,
        };
        url.params.push((key, value));
    }
    Ok(())
}

/// `Some(s)` unless empty.
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Percent-decodes (a `%` not followed by two hex digits stays as it is, as Python's
/// `unquote` leaves it); None if the result is not UTF-8.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A query-string component: `+` is a space (as `parse_qsl` reads it), then percent-decoded.
fn decode_query(s: &str) -> Option<String> {
    decode(&s.replace('+', " "))
}

/// Percent-encodes everything but unreserved characters and `keep`.
fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://user:***@host:port/database?params` from its parts.
fn redacted_server(scheme: &str, socket_param: &str, s: &ServerUrl) -> String {
    let mut out = format!("{scheme}://");
    if let Some(user) = &s.user {
        out.push_str(&encode(user, b""));
    }
    if s.password.is_some() {
        out.push_str(":***");
    }
    if s.user.is_some() || s.password.is_some() {
        out.push('@');
    }
    match &s.host {
        Some(h) if h.contains(':') => out.push_str(&format!("[{h}]")),
        Some(h) => out.push_str(&encode(h, b"")),
        None => {}
    }
    if let Some(port) = s.port {
        out.push_str(&format!(":{port}"));
    }
    out.push('/');
    out.push_str(&encode(&s.database, b""));
    let socket = s
        .socket
        .as_ref()
        .map(|p| (socket_param.to_string(), p.display().to_string()));
    let params: Vec<String> = socket
        .iter()
        .chain(s.params.iter())
        .map(|(k, v)| format!("{}={}", encode(k, b""), encode(v, b"/")))
        .collect();
    if !params.is_empty() {
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests;
