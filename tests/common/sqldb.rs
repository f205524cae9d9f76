//! Registry databases on the PostgreSQL and MariaDB servers of the test machine: a fresh,
//! uniquely named database per test (dropped afterwards), and a private PostgreSQL
//! instance that a test may stop and start (the machine's shared one must stay up for the
//! other tests).
//!
//! The servers come from `GLANCE_TEST_PG_URL` and `GLANCE_TEST_MYSQL_URL` (defaults:
//! `postgresql://postgres@127.0.0.1:5432/glance_test`, `mysql://root@127.0.0.1:3306/glance_test`;
//! `tests/services/sql.sh` sets them up). When a server does not answer, tests print why
//! and pass without running, unless `GLANCE_TEST_REQUIRE_SERVICES=1` (CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Mysql,
}

fn required() -> bool {
    std::env::var("GLANCE_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips (prints and returns `None`) or, under `GLANCE_TEST_REQUIRE_SERVICES=1`, fails.
fn skip<T>(test: &str, why: &str) -> Option<T> {
    assert!(
        !required(),
        "{test}: {why} (GLANCE_TEST_REQUIRE_SERVICES=1)"
    );
    eprintln!("SKIPPED {test}: {why}");
    None
}

/// The server's URL with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (head, tail) = url.split_at(url.rfind('/').unwrap_or(url.len()));
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{head}/{db}{query}")
}

impl Backend {
    /// The admin URL of the test server.
    pub fn url(self) -> String {
        let (var, default) = match self {
            Backend::Postgres => (
                "GLANCE_TEST_PG_URL",
                "postgresql://postgres@127.0.0.1:5432/glance_test",
            ),
            Backend::Mysql => (
                "GLANCE_TEST_MYSQL_URL",
                "mysql://root@127.0.0.1:3306/glance_test",
            ),
        };
        std::env::var(var).unwrap_or_else(|_| default.to_string())
    }

    /// Runs one statement as the admin.
    fn admin(self, sql: &str) -> Result<(), String> {
        let url = self.url();
        match self {
            Backend::Postgres => {
                let mut c = postgres::Client::connect(
                    &url.replacen("postgresql+psycopg2://", "postgresql://", 1),
                    postgres::NoTls,
                )
                .map_err(|e| e.to_string())?;
                c.batch_execute(sql).map_err(|e| e.to_string())
            }
            Backend::Mysql => {
                use mysql::prelude::Queryable;
                let opts = mysql::Opts::from_url(&url).map_err(|e| e.to_string())?;
                let mut c = mysql::Conn::new(opts).map_err(|e| e.to_string())?;
                c.query_drop(sql).map_err(|e| e.to_string())
            }
        }
    }
}

/// A fresh database on a test server, dropped when this is dropped.
pub struct ScratchDb {
    pub backend: Backend,
    pub name: String,
    /// Its `sql_connection`.
    pub url: String,
}

impl ScratchDb {
    /// Creates the database, or skips the test when the server does not answer.
    pub fn create(backend: Backend, test: &str) -> Option<ScratchDb> {
        let name = format!(
            "glance_t_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        if let Err(e) = backend.admin(&format!("CREATE DATABASE {name}")) {
            return skip(
                test,
                &format!("{backend:?} at {} unusable: {e}", backend.url()),
            );
        }
        Some(ScratchDb {
            backend,
            url: with_database(&backend.url(), &name),
            name,
        })
    }

    /// Runs a query as the admin in this database and returns the first column of each row
    /// as text (for checks behind the API's back).
    pub fn column(&self, sql: &str) -> Vec<String> {
        match self.backend {
            Backend::Postgres => {
                let mut c = postgres::Client::connect(&self.url, postgres::NoTls)
                    .unwrap_or_else(|e| panic!("{}: {e}", self.name));
                c.query(sql, &[])
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect()
            }
            Backend::Mysql => {
                use mysql::prelude::Queryable;
                let opts = mysql::Opts::from_url(&self.url).unwrap_or_else(|e| panic!("{e}"));
                let mut c = mysql::Conn::new(opts).unwrap_or_else(|e| panic!("{e}"));
                c.query::<String, _>(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let sql = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            Backend::Mysql => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        if let Err(e) = self.backend.admin(&sql) {
            eprintln!("dropping {}: {e}", self.name);
        }
    }
}

/// A PostgreSQL server of the test's own (initdb in a temp dir, trust auth, 127.0.0.1 on
/// an ephemeral port), which the test may stop and start. Stopped when dropped.
pub struct PrivatePg {
    _dir: TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

/// The PostgreSQL server programs (Debian: /usr/lib/postgresql/<version>/bin).
fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("pg_ctl").exists() && b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

/// Runs a PostgreSQL program as the `postgres` user when we are root (the server refuses
/// to run as root).
fn as_postgres(program: &Path, args: &[&str]) -> std::process::Output {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("free port: {e}"))
}

impl PrivatePg {
    /// Initialises and starts the server, or skips the test when PostgreSQL's programs are
    /// not installed.
    pub fn start(test: &str) -> Option<PrivatePg> {
        let Some(bin) = pg_bin() else {
            return skip(test, "PostgreSQL server programs not installed");
        };
        let dir = super::tempdir();
        // The server runs as `postgres`: it must own its directory.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let data = dir.path().join("data");
        let out = as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                &data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = PrivatePg {
            data,
            bin,
            port: free_port(),
            _dir: dir,
        };
        pg.start_again();
        Some(pg)
    }

    /// Its `sql_connection`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it answers.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log").display().to_string();
        let out = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &log,
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while postgres::Client::connect(&self.url(), postgres::NoTls).is_err() {
            assert!(
                Instant::now() < deadline,
                "private PostgreSQL did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (`fast`: sessions are cut, as on a restart).
    pub fn stop(&self) {
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}
