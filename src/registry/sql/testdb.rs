//! Scratch databases on the test PostgreSQL and MySQL servers, one per test, so that tests
//! run in parallel without seeing each other's rows.
//!
//! The servers come from `GLANCE_TEST_PG_URL` (default
//! `postgresql://postgres@127.0.0.1:5432/glance_test`) and `GLANCE_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/glance_test`), as set up by `tests/services/sql.sh`; the
//! user must be allowed to create databases. [`postgres`] and [`mysql`] create a database
//! `glance_t_<pid>_<n>` and return a guard that drops it; databases left by test processes
//! that died are dropped by the next run. When a server does not answer, the test prints
//! `SKIPPED` and passes, unless `GLANCE_TEST_REQUIRE_SERVICES=1` (CI), which makes it fail.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::url::ServerUrl;
use super::{Conn, ConnectOptions, DbUrl, Dialect, connect_server};

/// The default PostgreSQL test server.
pub(crate) const DEFAULT_PG_URL: &str = "postgresql://postgres@127.0.0.1:5432/glance_test";
/// The default MySQL/MariaDB test server.
pub(crate) const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/glance_test";

static NEXT: AtomicU32 = AtomicU32::new(0);
/// Dialects whose leftover scratch databases were already dropped by this process.
static SWEPT: Mutex<Vec<Dialect>> = Mutex::new(Vec::new());

/// A scratch database, dropped (with its tables) when this is dropped.
pub(crate) struct ScratchDb {
    url: DbUrl,
    admin: DbUrl,
    name: String,
}

impl std::fmt::Debug for ScratchDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchDb")
            .field("url", &self.url.redacted())
            .finish()
    }
}

/// A new scratch database on the PostgreSQL test server, or None (after printing why) when
/// it does not answer.
pub(crate) fn postgres(test: &str) -> Option<ScratchDb> {
    scratch(test, "GLANCE_TEST_PG_URL", DEFAULT_PG_URL)
}

/// A new scratch database on the MySQL/MariaDB test server, or None (after printing why)
/// when it does not answer.
pub(crate) fn mysql(test: &str) -> Option<ScratchDb> {
    scratch(test, "GLANCE_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
}

/// The test server's URL (from `var`, else `default`).
pub(crate) fn server_url(var: &str, default: &str) -> DbUrl {
    let text = std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string());
    match DbUrl::parse(&text) {
        Ok(u @ (DbUrl::Postgres(_) | DbUrl::Mysql(_))) => u,
        Ok(u) => panic!("{var} must name a PostgreSQL or MySQL server, not {u}"),
        Err(e) => panic!("{var} {e}"),
    }
}

/// Short timeouts: a test should not hang on a server that is not there.
pub(crate) fn test_options() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(30),
    }
}

fn server(url: &DbUrl) -> &ServerUrl {
    match url {
        DbUrl::Postgres(s) | DbUrl::Mysql(s) => s,
        DbUrl::Sqlite(_) => unreachable!("server_url returns servers only"),
    }
}

fn with_database(url: &DbUrl, database: &str) -> DbUrl {
    let mut s = server(url).clone();
    s.database = database.to_string();
    match url {
        DbUrl::Postgres(_) => DbUrl::Postgres(s),
        _ => DbUrl::Mysql(s),
    }
}

/// A connection for administration: to the configured database, else to one that always
/// exists (the configured one may not have been created yet).
fn admin_connection(url: &DbUrl) -> Result<(Box<dyn Conn>, DbUrl), String> {
    let fallback = match url.dialect() {
        Dialect::Postgres => "postgres",
        _ => "information_schema",
    };
    match connect_server(url, test_options()) {
        Ok(c) => Ok((c, url.clone())),
        Err(first) => {
            let other = with_database(url, fallback);
            match connect_server(&other, test_options()) {
                Ok(c) => Ok((c, other)),
                Err(_) => Err(first.to_string()),
            }
        }
    }
}

fn scratch(test: &str, var: &str, default: &str) -> Option<ScratchDb> {
    let url = server_url(var, default);
    let (mut admin, admin_url) = match admin_connection(&url) {
        Ok(c) => c,
        Err(problem) => {
            let required = std::env::var("GLANCE_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{test}: {} is required (GLANCE_TEST_REQUIRE_SERVICES=1) but {problem}; start \
                 it with `bash tests/services/sql.sh start && bash tests/services/sql.sh setup`",
                url.redacted()
            );
            eprintln!(
                "SKIPPED {test}: {problem} (start it with `bash tests/services/sql.sh start`; \
                 set GLANCE_TEST_REQUIRE_SERVICES=1 to make this a failure)"
            );
            return None;
        }
    };
    sweep(admin.as_mut());
    let name = format!(
        "glance_t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let create = match url.dialect() {
        // template0: nobody is ever connected to it, so parallel creations do not trip
        // over each other; UTF8 with C collation whatever the cluster's default.
        Dialect::Postgres => format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' \
             LC_CTYPE 'C'"
        ),
        _ => format!("CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
    };
    if let Err(e) = admin.batch(&create) {
        panic!("{test}: cannot create the scratch database {name}: {e}");
    }
    Some(ScratchDb {
        url: with_database(&url, &name),
        admin: admin_url,
        name,
    })
}

/// Drops the scratch databases of test processes that are gone (once per process and
/// server).
fn sweep(admin: &mut dyn Conn) {
    let dialect = admin.dialect();
    let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
    if swept.contains(&dialect) {
        return;
    }
    swept.push(dialect);
    let list = match dialect {
        Dialect::Postgres => "SELECT datname FROM pg_database",
        _ => "SELECT schema_name FROM information_schema.schemata",
    };
    let Ok(rows) = admin.query(list, &[]) else {
        return;
    };
    for row in rows {
        let Ok(name) = row.text(0) else { continue };
        let Some(pid) = name
            .strip_prefix("glance_t_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = admin.batch(&drop_statement(dialect, &name));
        }
    }
}

fn drop_statement(dialect: Dialect, name: &str) -> String {
    match dialect {
        // FORCE: a connection a failed test left open must not keep the database.
        Dialect::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        _ => format!("DROP DATABASE IF EXISTS {name}"),
    }
}

impl ScratchDb {
    /// The scratch database's URL (what `sql_connection` would be).
    pub(crate) fn url(&self) -> &DbUrl {
        &self.url
    }

    /// The scratch database's server, user and name.
    pub(crate) fn server(&self) -> &ServerUrl {
        server(&self.url)
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to it.
    pub(crate) fn connect(&self) -> Box<dyn Conn> {
        match connect_server(&self.url, test_options()) {
            Ok(c) => c,
            Err(e) => panic!("cannot connect to {}: {e}", self.url),
        }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        match connect_server(&self.admin, test_options()) {
            Ok(mut admin) => {
                if let Err(e) = admin.batch(&drop_statement(admin.dialect(), &self.name)) {
                    eprintln!("cannot drop the scratch database {}: {e}", self.name);
                }
            }
            Err(e) => eprintln!("cannot drop the scratch database {}: {e}", self.name),
        }
    }
}
