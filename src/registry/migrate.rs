//! Numbered SQL migrations of the registry database, the same versions on every backend.
//!
//! Version 0 is an empty database; migration `n` takes the schema from `n - 1` to `n`, in
//! each backend's own SQL ([`sqlite`], [`postgres`], [`mysql`]). Downgrades are not
//! supported. The schema follows Glance's tables (spec §2): `images`, `image_properties`,
//! `image_members` and `image_tags`, with soft-delete columns on each. Timestamps are
//! stored as `YYYY-MM-DDTHH:MM:SS.ffffff` text (see [`crate::timeutil`]), so text order is
//! time order.
//!
//! Where the version is kept, and how two processes migrating at once are kept apart:
//!
//! - SQLite: `PRAGMA user_version`; each step runs in its own `IMMEDIATE` transaction
//!   together with the version bump, and re-reads the version inside it.
//! - PostgreSQL: table `migrate_version` (sqlalchemy-migrate's, with repository
//!   `glance-rs`); each step runs in one transaction (PostgreSQL's DDL is transactional)
//!   holding an advisory lock.
//! - MySQL/MariaDB: the same table; the steps run under a named lock (`GET_LOCK`). MySQL
//!   commits each schema statement by itself, so a step that fails half-way leaves its
//!   first statements applied: the error says so.
//!
//! A Python Glance database (its `migrate_version` names another repository) is refused:
//! its schema is not this one; README.md explains how to move images over.

mod mysql;
mod postgres;
mod sqlite;

use super::sql::{Conn, Dialect};
use crate::error::{Error, Result};
use crate::sql_args;

/// One migration: the version it produces and the SQL that gets there from the one before
/// (statements separated by `;`).
pub(super) struct Migration {
    pub(super) version: u32,
    pub(super) sql: &'static str,
}

/// The schema version this program needs (and the highest it knows).
pub const LATEST: u32 = sqlite::MIGRATIONS.len() as u32;

// Every backend knows every version.
const _: () = assert!(postgres::MIGRATIONS.len() == sqlite::MIGRATIONS.len());
const _: () = assert!(mysql::MIGRATIONS.len() == sqlite::MIGRATIONS.len());

/// The repository name in `migrate_version`.
const REPOSITORY: &str = "glance-rs";

/// The advisory lock (PostgreSQL) and named lock (MySQL) taken while migrating.
const PG_LOCK_KEY: i64 = 0x676c_616e_6365; // "glance"
const MYSQL_LOCK: &str = "glance_rs_migrate";

fn steps(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Sqlite => &sqlite::MIGRATIONS,
        Dialect::Postgres => &postgres::MIGRATIONS,
        Dialect::Mysql => &mysql::MIGRATIONS,
    }
}

/// The database's schema version (0 for a fresh database).
pub fn version(conn: &mut dyn Conn) -> Result<u32> {
    let v = match conn.dialect() {
        Dialect::Sqlite => conn.query_one("PRAGMA user_version", &[])?.int(0)?,
        Dialect::Postgres | Dialect::Mysql => {
            if !has_version_table(conn)? {
                return Ok(0);
            }
            let rows = conn.query("SELECT repository_id, version FROM migrate_version", &[])?;
            match rows
                .iter()
                .find(|r| r.text(0).is_ok_and(|n| n == REPOSITORY))
            {
                Some(r) => r.int(1)?,
                None => match rows.first() {
                    Some(r) => {
                        return Err(Error::Config(format!(
                            "the database holds another program's schema ('{}' version {}, \
                             a Python Glance database?): glance-rs needs a database of its \
                             own; see README.md on moving images over",
                            r.text(0)?,
                            r.int(1)?
                        )));
                    }
                    None => 0,
                },
            }
        }
    };
    u32::try_from(v).map_err(|_| Error::Db(format!("invalid schema version {v} in database")))
}

/// Whether `migrate_version` exists (servers).
fn has_version_table(conn: &mut dyn Conn) -> Result<bool> {
    let schema = match conn.dialect() {
        Dialect::Postgres => "current_schema()",
        _ => "DATABASE()",
    };
    Ok(conn
        .query_opt(
            &format!(
                "SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = {schema} AND table_name = 'migrate_version'"
            ),
            &[],
        )?
        .is_some())
}

/// Records `v` as the schema version, inside the step's transaction where there is one.
fn set_version(conn: &mut dyn Conn, v: u32) -> Result<()> {
    match conn.dialect() {
        Dialect::Sqlite => conn.batch(&format!("PRAGMA user_version = {v}")),
        Dialect::Postgres | Dialect::Mysql => {
            if conn.execute(
                "UPDATE migrate_version SET version = ? WHERE repository_id = ?",
                &sql_args![i64::from(v), REPOSITORY],
            )? == 0
            {
                conn.execute(
                    "INSERT INTO migrate_version (repository_id, repository_path, version) \
                     VALUES (?, ?, ?)",
                    &sql_args![REPOSITORY, "glance-rs", i64::from(v)],
                )?;
            }
            Ok(())
        }
    }
}

/// Migrates the database up to `target` (default [`LATEST`]); returns `(from, to)`.
///
/// A target above [`LATEST`], or below the current version (a downgrade), is a `Config`
/// error; so is a database already newer than this program.
pub fn sync(conn: &mut dyn Conn, target: Option<u32>) -> Result<(u32, u32)> {
    let target = target.unwrap_or(LATEST);
    if target > LATEST {
        return Err(Error::Config(format!(
            "unknown schema version {target}: this program knows versions 0 to {LATEST}"
        )));
    }
    let from = version(conn)?;
    if from > LATEST {
        return Err(Error::Config(format!(
            "database is at schema version {from}, newer than this program supports \
             ({LATEST}): upgrade glance-rs"
        )));
    }
    if target < from {
        return Err(Error::Config(format!(
            "database is at schema version {from}: downgrading to {target} is not supported"
        )));
    }
    if from == target {
        return Ok((from, from));
    }
    match conn.dialect() {
        Dialect::Sqlite | Dialect::Postgres => {
            for m in steps(conn.dialect())
                .iter()
                .filter(|m| m.version > from && m.version <= target)
            {
                step_in_transaction(conn, m)?;
            }
        }
        Dialect::Mysql => {
            let got = conn
                .query_one("SELECT GET_LOCK(?, 60)", &sql_args![MYSQL_LOCK])?
                .opt_int(0)?;
            if got != Some(1) {
                return Err(Error::Unavailable(
                    "another process is migrating the database (lock not granted in 60 s)".into(),
                ));
            }
            let out = mysql_steps(conn, target);
            let _ = conn.query("SELECT RELEASE_LOCK(?)", &sql_args![MYSQL_LOCK]);
            out?;
        }
    }
    Ok((from, version(conn)?))
}

/// Records schema version 0 in a database without a version (`glance-manage
/// version_control`): nothing to do on SQLite, whose version is always there.
pub fn version_control(conn: &mut dyn Conn) -> Result<()> {
    if conn.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    ensure_version_table(conn)?;
    if version(conn)? == 0 {
        set_version(conn, 0)?;
    }
    Ok(())
}

/// One step and its version bump in one transaction that also keeps other migrating
/// processes out; skipped when another process applied it while this one waited.
fn step_in_transaction(conn: &mut dyn Conn, m: &Migration) -> Result<()> {
    conn.batch(conn.dialect().begin_write())?;
    let out = (|| {
        if conn.dialect() == Dialect::Postgres {
            conn.execute("SELECT pg_advisory_xact_lock(?)", &sql_args![PG_LOCK_KEY])?;
            ensure_version_table(conn)?;
        }
        if version(conn)? >= m.version {
            return Ok(());
        }
        conn.batch(m.sql)
            .map_err(|e| Error::Db(format!("schema migration {} failed: {e}", m.version)))?;
        set_version(conn, m.version)
    })();
    match out {
        Ok(()) => conn.batch("COMMIT"),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// MySQL's steps under the named lock, each followed by its version bump.
fn mysql_steps(conn: &mut dyn Conn, target: u32) -> Result<()> {
    ensure_version_table(conn)?;
    let from = version(conn)?;
    for m in steps(Dialect::Mysql)
        .iter()
        .filter(|m| m.version > from && m.version <= target)
    {
        conn.batch(m.sql).map_err(|e| {
            Error::Db(format!(
                "schema migration {} failed (MySQL applies schema changes one statement at \
                 a time: the database may hold part of it; restore the backup taken before \
                 the upgrade): {e}",
                m.version
            ))
        })?;
        set_version(conn, m.version)?;
    }
    Ok(())
}

/// Creates `migrate_version` if missing (servers).
fn ensure_version_table(conn: &mut dyn Conn) -> Result<()> {
    if has_version_table(conn)? {
        return Ok(());
    }
    let suffix = match conn.dialect() {
        Dialect::Mysql => " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        _ => "",
    };
    conn.batch(&format!(
        "CREATE TABLE migrate_version (repository_id VARCHAR(250) NOT NULL PRIMARY KEY, \
         repository_path TEXT, version INTEGER){suffix}"
    ))
}

#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;
