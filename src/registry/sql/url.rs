//! `sql_connection`: SQLAlchemy database URLs, so that Diablo configurations work unchanged.

use std::path::PathBuf;

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

impl DbUrl {
    /// Parses a `sql_connection` value. The error describes the problem without repeating
    /// the value (the caller shows it redacted).
    pub fn parse(url: &str) -> std::result::Result<DbUrl, String> {
        let _ = url;
        Err("not implemented".into())
    }

    /// The URL for messages, the password replaced by `***`.
    pub fn redacted(&self) -> String {
        format!("{self:?}")
    }

    /// Which SQL the database speaks.
    pub fn dialect(&self) -> Dialect {
        match self {
            DbUrl::Sqlite(_) => Dialect::Sqlite,
            DbUrl::Postgres(_) => Dialect::Postgres,
            DbUrl::Mysql(_) => Dialect::Mysql,
        }
    }
}
