//! The registry on a SQL database: SQLite (embedded, the default), PostgreSQL or
//! MySQL/MariaDB, chosen by `sql_connection` ([`DbUrl`]).
//!
//! [`SqlRegistry`] implements [`Registry`] with the rules of spec §5.1, §5.8, §7.3 and §8
//! and the deviations of DECISIONS.md, once, over the [`Conn`] of each backend. Connections
//! live in a bounded [`Pool`]. Every write runs in one transaction (SQLite: `IMMEDIATE`;
//! the servers lock the image row with `SELECT ... FOR UPDATE` before changing it), so a
//! failed operation leaves no half-written rows and concurrent writers of one image take
//! turns; every read runs in one transaction, so a listing (marker lookup, page,
//! properties) sees one snapshot.
//!
//! Behaviour the layers above rely on:
//!
//! - Deleted rows are invisible (`NotFound`, `Image <id> not found`); so are images the
//!   caller may not see or (for writes) modify: existence is never revealed.
//! - Killed images are never listed, but [`Registry::get`] returns them.
//! - A listing with `changes_since` also returns deleted images (as Glance did from Essex),
//!   so that a poller sees deletions; a deleted image's `updated_at` is its deletion time.
//! - Sorting treats NULL text values as `''` and NULL numbers as 0, both in `ORDER BY` and
//!   in the marker comparison, so marker paging never skips or repeats rows. Text sorts
//!   byte-wise on every backend.
//! - A read-only context gets `Forbidden` on every write before anything else is checked.
//! - `PublicFilter::Private` and `Any` are honoured for admins only; every other caller
//!   gets `VisibleToCaller`, however the query was built.
//! - Deleted images returned by a `changes_since` listing carry no properties (their
//!   property rows were soft-deleted with them).
//! - [`Registry::delete`] returns the record with `deleted = true` and the properties it
//!   had just before deletion (useful for notifications).
//! - Limits are checked here, where the API and the registry API both pass: property names
//!   and value sizes, the property quota (after a merge) and the member quota ([`Quotas`]);
//!   only non-admin callers with an owner id, and admins, may create images; only a member
//!   itself or an admin may list its shared images (else `NotFound`). Member and
//!   shared-images listings hold at most the larger of the member quota and the page cap.
//! - A lost database answers [`Error::Unavailable`] (503) and the pool reconnects by itself.
//!
//! The schema and its migrations are in [`super::migrate`]; `glance-manage` uses
//! [`db_version`], [`db_sync`], [`SqlRegistry::images_with_data`] and
//! [`SqlRegistry::find_any`]; `glance-scrubber` [`SqlRegistry::claim_pending_deletes`] and
//! [`SqlRegistry::finish_scrub`]; glance-api the upload leases
//! ([`SqlRegistry::renew_upload_lease`], [`SqlRegistry::expire_upload_leases`]).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::memo::{self, Memo};
use super::query::{MemberStatusFilter, V2Scope, VisibilityFilter};
use super::sql::pool::{Connector, Pool, PoolOptions};
use super::sql::sqlite::{SqliteConn, SqliteSettings};
use super::sql::wal_index::WalIndex;
use super::sql::{self, Conn, ConnectOptions, DbUrl, Dialect, Row, Value};
use super::{
    ListQuery, Member, MemberSpec, MemberStatus, PageLimits, PublicFilter, Quotas, Registry,
    SharedImage, migrate,
};
use crate::auth::Context;
use crate::error::{Error, Result};
use crate::image::{self, Image, ImageId, ImagePatch, Properties, Status, Visibility};
use crate::sql_args;
use crate::timeutil;

/// How to open a [`SqlRegistry`].
#[derive(Debug, Clone, Copy)]
pub struct DbOptions {
    /// How long one statement may wait for a lock or run (`sql_statement_timeout`): SQLite's busy
    /// timeout, the servers' statement and lock timeouts.
    pub busy_timeout: Duration,
    /// Create or migrate the schema on open (`db_auto_create`); otherwise a database that is
    /// not at [`migrate::LATEST`] is refused.
    pub auto_migrate: bool,
    /// Page-size limits; listings are clamped to `limits.max` here too.
    pub limits: PageLimits,
    /// Per-image property and member limits.
    pub quotas: Quotas,
    /// SQLite only: commits are on disk before they return (`sqlite_synchronous = FULL`,
    /// the default): an image is durably `active` before the client gets its 201. `NORMAL`
    /// may lose the last commits on power loss (not on a crash of the process).
    pub durable_commits: bool,
    /// Connection pool sizes and timeouts.
    pub pool: PoolOptions,
    /// How long a server connection attempt may take.
    pub connect_timeout: Duration,
}

impl DbOptions {
    /// The options of a server's database settings (`sql_statement_timeout`, `db_auto_create`, the
    /// pool options).
    pub fn from_config(db: &crate::config::DatabaseOptions, limits: PageLimits) -> DbOptions {
        DbOptions {
            busy_timeout: db.sql_statement_timeout,
            auto_migrate: db.db_auto_create,
            limits,
            quotas: Quotas::default(),
            durable_commits: db.sqlite_synchronous_full,
            pool: db.pool_options(),
            connect_timeout: db.connect_options().connect_timeout,
        }
    }

    /// The same options, without creating or migrating the schema (tools).
    pub fn no_migrate(self) -> DbOptions {
        DbOptions {
            auto_migrate: false,
            ..self
        }
    }

    fn sqlite(&self) -> SqliteSettings {
        SqliteSettings {
            busy_timeout: self.busy_timeout,
            durable_commits: self.durable_commits,
        }
    }

    fn connect(&self) -> ConnectOptions {
        ConnectOptions {
            connect_timeout: self.connect_timeout,
            statement_timeout: self.busy_timeout,
        }
    }
}

impl Default for DbOptions {
    fn default() -> DbOptions {
        DbOptions {
            busy_timeout: Duration::from_secs(30),
            auto_migrate: true,
            limits: PageLimits::default(),
            quotas: Quotas::default(),
            durable_commits: true,
            pool: PoolOptions::default(),
            connect_timeout: ConnectOptions::default().connect_timeout,
        }
    }
}

/// How this process names itself as the holder of upload and scrub leases:
/// `host/program/pid`, unique among the processes sharing one database.
pub fn lease_holder(program: &str) -> String {
    format!(
        "{}/{program}/{}",
        crate::notifier::hostname(),
        std::process::id()
    )
}

/// The image columns, in the order [`row_to_image`] reads them (table alias `i`).
const COLUMNS: &str = "i.id, i.name, i.disk_format, i.container_format, i.size, i.status, \
                       i.is_public, i.location, i.checksum, i.min_ram, i.min_disk, i.owner, \
                       i.created_at, i.updated_at, i.deleted_at, i.deleted, i.virtual_size, \
                       i.os_hash_algo, i.os_hash_value, i.visibility, i.protected, i.os_hidden";

/// The image columns a create or an update writes from the record, in the order of
/// [`record_args`].
const RECORD_COLUMNS: [&str; 17] = [
    "name",
    "disk_format",
    "container_format",
    "size",
    "status",
    "is_public",
    "location",
    "checksum",
    "min_ram",
    "min_disk",
    "owner",
    "virtual_size",
    "os_hash_algo",
    "os_hash_value",
    "visibility",
    "protected",
    "os_hidden",
];

/// The values of [`RECORD_COLUMNS`] for an image.
fn record_args(img: &Image) -> Result<Vec<Value>> {
    Ok(sql_args![
        &img.name,
        &img.disk_format,
        &img.container_format,
        to_i64("size", img.size)?,
        img.status.as_str(),
        img.is_public(),
        &img.location,
        &img.checksum,
        to_i64("min_ram", img.min_ram)?,
        to_i64("min_disk", img.min_disk)?,
        &img.owner,
        opt_i64("virtual_size", img.virtual_size)?,
        &img.os_hash_algo,
        &img.os_hash_value,
        img.visibility.as_str(),
        img.protected,
        img.os_hidden,
    ]
    .to_vec())
}

/// A registry whose records live in a SQL database.
#[derive(Debug)]
pub struct SqlRegistry {
    /// The database, for messages (password redacted).
    name: String,
    /// The SQLite file, if that is the backend.
    path: Option<PathBuf>,
    limits: PageLimits,
    quotas: Quotas,
    pool: Pool,
    /// Images read lately, for an embedded (SQLite) database only.
    memo: Option<Memo>,
    /// The SQLite file's WAL index, which validates the memo without a statement.
    wal: Option<WalIndex>,
}

/// Opens one connection to the database, creating a SQLite file (and its directory) when
/// `create`.
fn open_conn(url: &DbUrl, opts: &DbOptions, create: bool) -> Result<Box<dyn Conn>> {
    match url {
        DbUrl::Sqlite(path) => Ok(Box::new(SqliteConn::open(path, create, opts.sqlite())?)),
        server => sql::connect_server(server, opts.connect()),
    }
}

/// The database's name in messages: the SQLite path or the redacted URL.
pub fn display_name(url: &DbUrl) -> String {
    match url {
        DbUrl::Sqlite(path) => path.display().to_string(),
        other => other.redacted(),
    }
}

/// The schema version of the database (0 when it has no schema yet).
///
/// A missing SQLite file is a `Config` error; the file is never created.
pub fn db_version(url: &DbUrl) -> Result<u32> {
    let mut conn: Box<dyn Conn> = match url {
        DbUrl::Sqlite(path) => {
            if !path.exists() {
                return Err(Error::Config(format!(
                    "database {} does not exist",
                    path.display()
                )));
            }
            Box::new(SqliteConn::open_read_only(path)?)
        }
        server => sql::connect_server(server, ConnectOptions::default())?,
    };
    migrate::version(conn.as_mut()).map_err(|e| with_name(e, url))
}

/// Creates (a SQLite file with its directory) or migrates the database up to `target`
/// (default [`migrate::LATEST`]); returns `(from, to)` versions.
pub fn db_sync(url: &DbUrl, target: Option<u32>) -> Result<(u32, u32)> {
    let mut conn = open_conn(url, &DbOptions::default(), true)?;
    migrate::sync(conn.as_mut(), target).map_err(|e| with_name(e, url))
}

/// Puts a new database under version control at schema version 0 (`glance-manage
/// version_control`): creates the SQLite file, or the servers' `migrate_version` table.
/// A database already at a later version is refused.
pub fn db_version_control(url: &DbUrl) -> Result<()> {
    let mut conn = open_conn(url, &DbOptions::default(), true)?;
    let v = migrate::version(conn.as_mut()).map_err(|e| with_name(e, url))?;
    if v > 0 {
        return Err(Error::Config(format!(
            "database '{}' is already under migration control (schema version {v})",
            display_name(url)
        )));
    }
    migrate::version_control(conn.as_mut()).map_err(|e| with_name(e, url))
}

/// The tables `db_copy` moves, parents first, with their columns (child tables without
/// their generated `id`: the target numbers its rows itself) and the column that orders
/// them for paging.
const COPY_TABLES: [(&str, &str, &str); 4] = [
    (
        "images",
        "id, name, disk_format, container_format, size, status, is_public, location, \
         checksum, min_ram, min_disk, owner, created_at, updated_at, deleted_at, deleted, \
         virtual_size, os_hash_algo, os_hash_value, visibility, protected, os_hidden, \
         lease_owner, lease_expires_at",
        "id",
    ),
    (
        "image_properties",
        "image_id, name, value, created_at, updated_at, deleted_at, deleted",
        "id",
    ),
    (
        "image_members",
        "image_id, member, can_share, created_at, updated_at, deleted_at, deleted, status",
        "id",
    ),
    (
        "image_tags",
        "image_id, value, created_at, updated_at, deleted_at, deleted",
        "id",
    ),
];

/// Rows read from the source at a time.
const COPY_PAGE: i64 = 1000;

/// Copies every row of the registry at `from` into the registry at `to` (`glance-manage
/// db_copy`: moving an embedded SQLite registry to PostgreSQL or MySQL). Both must be at
/// [`migrate::LATEST`] (the target is migrated first) and the target must hold no image.
/// The copy is one transaction on the target: it lands whole or not at all. Returns the
/// rows copied per table.
pub fn db_copy(from: &DbUrl, to: &DbUrl) -> Result<Vec<(&'static str, u64)>> {
    let mut src: Box<dyn Conn> = match from {
        DbUrl::Sqlite(path) if !path.exists() => {
            return Err(Error::Config(format!(
                "database {} does not exist",
                path.display()
            )));
        }
        DbUrl::Sqlite(path) => Box::new(SqliteConn::open_read_only(path)?),
        server => sql::connect_server(server, ConnectOptions::default())?,
    };
    let v = migrate::version(src.as_mut()).map_err(|e| with_name(e, from))?;
    if v != migrate::LATEST {
        return Err(version_error(&display_name(from), v));
    }
    let mut dst = open_conn(to, &DbOptions::default(), true)?;
    migrate::sync(dst.as_mut(), None).map_err(|e| with_name(e, to))?;
    if dst.query_opt("SELECT 1 FROM images", &[])?.is_some() {
        return Err(Error::Config(format!(
            "database {} already holds images: copy into an empty database",
            display_name(to)
        )));
    }
    dst.batch(dst.dialect().begin_write())?;
    let copied = copy_tables(src.as_mut(), dst.as_mut());
    match copied {
        Ok(counts) => {
            dst.batch("COMMIT")?;
            Ok(counts)
        }
        Err(e) => {
            let _ = dst.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The rows of every table, a page at a time.
fn copy_tables(src: &mut dyn Conn, dst: &mut dyn Conn) -> Result<Vec<(&'static str, u64)>> {
    let mut counts = Vec::new();
    for (table, columns, key) in COPY_TABLES {
        let width = columns.split(',').count();
        let insert = format!("INSERT INTO {table} ({columns}) VALUES ({})", marks(width));
        // Images page by their text id, the others by their integer id.
        let mut after = if table == "images" {
            Value::Text(String::new())
        } else {
            Value::Int(-1)
        };
        let mut n = 0u64;
        loop {
            let rows = src.query(
                &format!(
                    "SELECT {columns}, {key} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?"
                ),
                &[after.clone(), Value::Int(COPY_PAGE)],
            )?;
            let Some(last) = rows.last() else { break };
            after = last.0[width].clone();
            for mut row in rows {
                row.0.truncate(width);
                dst.execute(&insert, &row.0)?;
                n += 1;
            }
        }
        counts.push((table, n));
    }
    Ok(counts)
}

/// Prefixes a migration error with the database's name.
fn with_name(e: Error, url: &DbUrl) -> Error {
    let name = display_name(url);
    match e {
        Error::Config(m) => Error::Config(format!("{name}: {m}")),
        Error::Db(m) => Error::Db(format!("{name}: {m}")),
        other => other,
    }
}

/// The `Config` error for a database that is not at [`migrate::LATEST`].
fn version_error(name: &str, v: u32) -> Error {
    if v > migrate::LATEST {
        Error::Config(format!(
            "database {name} is at schema version {v}, newer than this program supports ({}): \
             upgrade glance-rs",
            migrate::LATEST
        ))
    } else {
        Error::Config(format!(
            "database {name} is at schema version {v}, this program needs {}: run \
             'glance-manage db_sync' (or set db_auto_create = True)",
            migrate::LATEST
        ))
    }
}

impl SqlRegistry {
    /// Opens the registry database at `url`.
    ///
    /// With `auto_migrate` the schema is created or migrated to [`migrate::LATEST`] (a
    /// SQLite file and its directory are created); without it, a missing, unmigrated or
    /// older database is a `Config` error telling to run `glance-manage db_sync`. A
    /// database newer than this program is always refused.
    pub fn open(url: &DbUrl, opts: DbOptions) -> Result<SqlRegistry> {
        let name = display_name(url);
        let path = match url {
            DbUrl::Sqlite(p) => Some(p.clone()),
            _ => None,
        };
        if let Some(p) = &path
            && !opts.auto_migrate
            && !p.exists()
        {
            return Err(version_error(&name, 0));
        }
        let mut first = open_conn(url, &opts, opts.auto_migrate)?;
        let v = migrate::version(first.as_mut()).map_err(|e| with_name(e, url))?;
        if v > migrate::LATEST || (v < migrate::LATEST && !opts.auto_migrate) {
            return Err(version_error(&name, v));
        }
        if v < migrate::LATEST {
            migrate::sync(first.as_mut(), None).map_err(|e| with_name(e, url))?;
        }
        let wal = path.as_deref().and_then(open_wal_index);
        let (url2, opts2) = (url.clone(), opts);
        let connect: Connector = Box::new(move || open_conn(&url2, &opts2, false));
        Ok(SqlRegistry {
            name,
            path,
            wal,
            limits: opts.limits,
            quotas: opts.quotas,
            memo: (url.dialect() == Dialect::Sqlite).then(Memo::default),
            pool: Pool::new(url.dialect(), opts.pool, connect, Some(first)),
        })
    }

    /// A registry in a private in-memory SQLite database, migrated (for tests and tools).
    /// Operations take turns on its single connection; `opts.auto_migrate` is ignored.
    pub fn open_in_memory(opts: DbOptions) -> Result<SqlRegistry> {
        let mut conn = SqliteConn::open_in_memory(opts.sqlite())?;
        migrate::sync(&mut conn, None)?;
        let connect: Connector = Box::new(|| {
            Err(Error::Internal(
                "an in-memory registry has exactly one connection".into(),
            ))
        });
        let pool = PoolOptions {
            max_size: 1,
            max_overflow: 0,
            idle_timeout: Duration::MAX,
            ..opts.pool
        };
        Ok(SqlRegistry {
            name: ":memory:".into(),
            path: None,
            limits: opts.limits,
            quotas: opts.quotas,
            memo: Some(Memo::default()),
            wal: None,
            pool: Pool::new(Dialect::Sqlite, pool, connect, Some(Box::new(conn))),
        })
    }

    /// The database in messages: its file, or its URL without the password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which database the registry is on.
    pub fn dialect(&self) -> Dialect {
        self.pool.dialect()
    }

    /// The SQLite database file, or `None` for an in-memory or server database.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// One page of the images whose stored data `glance-manage inspect --all` reads: not
    /// deleted, with a location, and `active`, `queued` or `killed` (an image still `saving`
    /// is being inspected by its upload). Ordered by `(created_at, id)`; a page starts after
    /// the `(created_at, id)` of the previous page's last image (`None`: from the first).
    /// Properties are not loaded.
    pub fn images_with_data(&self, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<Image>> {
        let (created_at, id) = after.unwrap_or(("", ""));
        self.pool.read(|c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM images i WHERE i.deleted = 0 \
                 AND i.status IN ('active', 'queued', 'killed') \
                 AND i.location IS NOT NULL AND i.location <> '' \
                 AND (i.created_at > ? OR (i.created_at = ? AND i.id > ?)) \
                 ORDER BY i.created_at, i.id LIMIT ?"
            );
            rows_to_images(c.query(
                &sql,
                &sql_args![created_at, created_at, id, i64::from(limit)],
            )?)
        })
    }

    /// The record of an image whatever its status, deleted or not, and without visibility
    /// rules (for admin tools: `glance-manage inspect` says why it cannot read an image).
    /// Properties are not loaded. `None` when no row has this id.
    pub fn find_any(&self, id: &str) -> Result<Option<Image>> {
        self.pool.read(|c| load(c, id, Load::ANY))
    }

    /// Kills every live image left `saving` and returns their ids: start-up reconciliation
    /// of the embedded database after a crash, when no upload can still be running against
    /// it (the caller makes sure of that; see [`UploadLock`]).
    pub fn kill_interrupted_uploads(&self) -> Result<Vec<String>> {
        self.pool.write(|c| {
            let ids = c
                .query(
                    &format!(
                        "SELECT id FROM images WHERE status = 'saving' AND deleted = 0{}",
                        c.dialect().for_update()
                    ),
                    &[],
                )?
                .iter()
                .map(|r| r.text(0))
                .collect::<Result<Vec<String>>>()?;
            let now = timeutil::now();
            for id in &ids {
                c.execute(
                    "UPDATE images SET status = 'killed', updated_at = ?, lease_owner = NULL, \
                     lease_expires_at = NULL WHERE id = ? AND status = 'saving'",
                    &sql_args![now.as_str(), id.as_str()],
                )?;
            }
            Ok(ids)
        })
    }

    /// Records that `node` holds the upload of a `saving` image until `lease` from now
    /// (the upload calls it when it starts and every few seconds while data streams).
    /// `Conflict` when the image is no longer `saving` or another node holds it.
    pub fn renew_upload_lease(&self, id: &str, node: &str, lease: Duration) -> Result<()> {
        let until = timeutil::format_stored(std::time::SystemTime::now() + lease);
        let n = self.pool.write(|c| {
            c.execute(
                "UPDATE images SET lease_owner = ?, lease_expires_at = ? \
                 WHERE id = ? AND status = 'saving' AND deleted = 0 \
                 AND (lease_owner IS NULL OR lease_owner = ?)",
                &sql_args![node, until.as_str(), id, node],
            )
        })?;
        if n == 0 {
            return Err(Error::Conflict(format!(
                "Image {id} is no longer being uploaded by this node"
            )));
        }
        Ok(())
    }

    /// Kills every `saving` image whose upload lease has lapsed (its node died or lost the
    /// database for longer than the lease) and returns them, so that their partial data
    /// can be removed. Each image is killed by exactly one caller: the status change is
    /// conditional on the lease still being the lapsed one.
    pub fn expire_upload_leases(&self) -> Result<Vec<Image>> {
        let now = timeutil::now();
        let lapsed = self.pool.read(|c| {
            rows_to_images(c.query(
                &format!(
                    "SELECT {COLUMNS} FROM images i WHERE i.status = 'saving' \
                     AND i.deleted = 0 AND i.lease_expires_at < ?"
                ),
                &sql_args![now.as_str()],
            )?)
        })?;
        let mut killed = Vec::new();
        for img in lapsed {
            let n = self.pool.write(|c| {
                c.execute(
                    "UPDATE images SET status = 'killed', updated_at = ?, lease_owner = NULL, \
                     lease_expires_at = NULL WHERE id = ? AND status = 'saving' \
                     AND lease_expires_at < ?",
                    &sql_args![now.as_str(), img.id.as_str(), now.as_str()],
                )
            })?;
            if n == 1 {
                killed.push(img);
            }
        }
        Ok(killed)
    }

    /// Soft-deleted images in `pending_delete` whose `deleted_at <= deleted_before` (a
    /// stored timestamp) and that no other scrubber holds, newest deletion first, each
    /// claimed for `node` for `lease` (so that scrubbers on several nodes never delete the
    /// same image's data twice; a scrubber that dies leaves its claims to lapse). At most
    /// `limit` images.
    pub fn claim_pending_deletes(
        &self,
        deleted_before: &str,
        node: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Image>> {
        let now = timeutil::now();
        let until = timeutil::format_stored(std::time::SystemTime::now() + lease);
        let due = self.pool.read(|c| {
            rows_to_images(c.query(
                &format!(
                    "SELECT {COLUMNS} FROM images i WHERE i.deleted = 1 \
                     AND i.status = 'pending_delete' AND i.deleted_at <= ? \
                     AND (i.lease_expires_at IS NULL OR i.lease_expires_at < ?) \
                     ORDER BY i.deleted_at DESC, i.id DESC LIMIT ?"
                ),
                &sql_args![deleted_before, now.as_str(), i64::from(limit)],
            )?)
        })?;
        let mut claimed = Vec::new();
        for img in due {
            let n = self.pool.write(|c| {
                c.execute(
                    "UPDATE images SET lease_owner = ?, lease_expires_at = ? \
                     WHERE id = ? AND deleted = 1 AND status = 'pending_delete' \
                     AND (lease_expires_at IS NULL OR lease_expires_at < ?)",
                    &sql_args![node, until.as_str(), img.id.as_str(), now.as_str()],
                )
            })?;
            if n == 1 {
                claimed.push(img);
            }
        }
        Ok(claimed)
    }

    /// Marks a claimed `pending_delete` image `deleted` once its data is gone. `Conflict`
    /// when `node` no longer holds its claim (it lapsed and another scrubber took it).
    pub fn finish_scrub(&self, id: &str, node: &str) -> Result<()> {
        let n = self.pool.write(|c| {
            c.execute(
                "UPDATE images SET status = 'deleted', updated_at = ?, lease_owner = NULL, \
                 lease_expires_at = NULL WHERE id = ? AND status = 'pending_delete' \
                 AND lease_owner = ?",
                &sql_args![timeutil::now(), id, node],
            )
        })?;
        if n == 0 {
            return Err(Error::Conflict(format!(
                "Image {id} is no longer claimed by this scrubber"
            )));
        }
        Ok(())
    }

    /// Gives up `node`'s claim on a `pending_delete` image (its data could not be deleted
    /// this time), so that the next pass of any scrubber tries again.
    pub fn release_scrub(&self, id: &str, node: &str) -> Result<()> {
        self.pool.write(|c| {
            c.execute(
                "UPDATE images SET lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = ? AND status = 'pending_delete' AND lease_owner = ?",
                &sql_args![id, node],
            )
        })?;
        Ok(())
    }

    /// Sets the status of an image, deleted or not, without any check (tests and tools).
    /// `updated_at` is set to now. Unknown id → `NotFound`.
    pub fn set_status_raw(&self, id: &str, status: Status) -> Result<()> {
        self.pool.write(|c| {
            let n = c.execute(
                "UPDATE images SET status = ?, updated_at = ? WHERE id = ?",
                &sql_args![status.as_str(), timeutil::now(), id],
            )?;
            if n == 0 {
                return Err(not_found(id));
            }
            Ok(())
        })
    }
}

/// The 404 of an image that is missing, deleted, or hidden from the caller.
fn not_found(id: &str) -> Error {
    Error::NotFound(format!("Image {id} not found"))
}

/// 403 for read-only callers.
fn check_writable(ctx: &Context) -> Result<()> {
    if ctx.read_only {
        return Err(Error::Forbidden(
            "Read-only access: this operation is not allowed".into(),
        ));
    }
    Ok(())
}

/// A count as a signed 64-bit integer; out of range is a client error naming the field.
fn to_i64(field: &str, v: u64) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| Error::bad_request(format!("Invalid value for '{field}': too large")))
}

fn opt_i64(field: &str, v: Option<u64>) -> Result<Option<i64>> {
    v.map(|v| to_i64(field, v)).transpose()
}

/// The checks of a create or update (the registry may be called directly, so it checks
/// everything itself): the record-level rules of the result, the names and value sizes of
/// the properties the patch sets (properties already stored are left alone, so that rows
/// from before a limit existed do not block unrelated updates), and the property quota,
/// counted on the result (after a merge) against `before` properties.
fn validate(img: &Image, patch: &ImagePatch, quotas: &Quotas, before: &Image) -> Result<()> {
    img.validate()?;
    for (name, value) in patch.properties.iter().flatten() {
        image::validate_property_key(name)?;
        image::validate_property_value(name, value.as_deref())?;
    }
    quotas.check_tags(before.tags.len(), img.tags.len())?;
    quotas.check_properties(before.properties.len(), img.properties.len())
}

/// Largest members or shared-images listing (neither is paged in API v1): the member quota,
/// or the page cap when larger, so that rows from before a lowered quota still show.
fn membership_listing_cap(quotas: &Quotas, limits: &PageLimits) -> i64 {
    i64::try_from(quotas.members.max(limits.max)).unwrap_or(i64::MAX)
}

/// Reads one image row selected with [`COLUMNS`] (properties empty).
fn row_to_image(row: &Row) -> Result<Image> {
    Ok(Image {
        id: row.text(0)?,
        name: row.opt_text(1)?,
        disk_format: row.opt_text(2)?,
        container_format: row.opt_text(3)?,
        size: row.count(4)?,
        virtual_size: row.opt_count(16)?,
        status: stored(row.text(5)?.parse::<Status>())?,
        visibility: stored(row.text(19)?.parse::<Visibility>())?,
        protected: row.flag(20)?,
        os_hidden: row.flag(21)?,
        location: row.opt_text(7)?,
        checksum: row.opt_text(8)?,
        os_hash_algo: row.opt_text(17)?,
        os_hash_value: row.opt_text(18)?,
        min_ram: row.count(9)?,
        min_disk: row.count(10)?,
        owner: row.opt_text(11)?,
        created_at: row.text(12)?,
        updated_at: row.opt_text(13)?,
        deleted_at: row.opt_text(14)?,
        deleted: row.flag(15)?,
        properties: Properties::new(),
        tags: Vec::new(),
    })
}

/// A stored value that does not parse is the database's fault (500), not the client's.
fn stored<T>(parsed: Result<T>) -> Result<T> {
    parsed.map_err(|e| Error::Db(format!("invalid value in the registry database: {e}")))
}

fn rows_to_images(rows: Vec<Row>) -> Result<Vec<Image>> {
    rows.iter().map(row_to_image).collect()
}

/// What [`load`] reads.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Deleted rows too.
    deleted: bool,
    /// Live properties and tags.
    props: bool,
    /// Lock the row until the write transaction ends (the servers; SQLite's write
    /// transaction holds the whole database already).
    lock: bool,
}

impl Load {
    /// A live image with its properties.
    const LIVE: Load = Load {
        deleted: false,
        props: true,
        lock: false,
    };
    /// A live image with its properties, locked for a change.
    const LIVE_LOCKED: Load = Load {
        lock: true,
        ..Load::LIVE
    };
    /// A live image's record only.
    const RECORD: Load = Load {
        deleted: false,
        props: false,
        lock: false,
    };
    /// Any row with this id, record only.
    const ANY: Load = Load {
        deleted: true,
        props: false,
        lock: false,
    };
}

/// The properties and tags of the image whose id is bound twice, as rows `(kind, key,
/// value)`: kind 0 a property, 1 a tag (key = the tag). Joined to the image row on
/// PostgreSQL, so that an image read is one statement: one round trip and one snapshot, in
/// or out of a transaction (HEAD: 2.1 times the requests per second of four round trips).
/// Not on SQLite, in process, nor MariaDB, which spend more on the joined statement (it
/// materializes the union) than on a second one (bench/registry.sh).
const EXTRAS_JOIN: &str = "LEFT JOIN (\
     SELECT 0 AS kind, name AS k, value AS v FROM image_properties \
     WHERE deleted = 0 AND image_id = ? \
     UNION ALL \
     SELECT 1, value, NULL FROM image_tags WHERE deleted = 0 AND image_id = ?) x ON 1 = 1";

/// One image row, per `how`.
fn load(c: &mut dyn Conn, id: &str, how: Load) -> Result<Option<Image>> {
    let live = if how.deleted {
        ""
    } else {
        " AND i.deleted = 0"
    };
    if how.props && !how.lock && c.dialect() == Dialect::Postgres {
        let sql = format!(
            "SELECT {COLUMNS}, x.kind, x.k, x.v FROM images i {EXTRAS_JOIN} \
             WHERE i.id = ?{live} ORDER BY x.kind, x.k"
        );
        let rows = c.query(&sql, &sql_args![id, id, id])?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut img = row_to_image(first)?;
        let width = COLUMNS.split(',').count();
        for row in &rows {
            match row.opt_int(width)? {
                Some(0) => {
                    img.properties
                        .insert(row.text(width + 1)?, row.opt_text(width + 2)?);
                }
                Some(_) => img.tags.push(row.text(width + 1)?),
                None => {}
            }
        }
        return Ok(Some(img));
    }
    let lock = if how.lock {
        c.dialect().for_update()
    } else {
        ""
    };
    let sql = format!("SELECT {COLUMNS} FROM images i WHERE i.id = ?{live}{lock}");
    let Some(row) = c.query_opt(&sql, &sql_args![id])? else {
        return Ok(None);
    };
    let mut img = row_to_image(&row)?;
    if how.props {
        load_extras(c, &[id])?.fill(&mut img);
    }
    Ok(Some(img))
}

/// `?, ?, ...` for `n` arguments.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The live properties and tags of some images, by image id.
#[derive(Debug, Default)]
struct Extras {
    properties: HashMap<String, Properties>,
    tags: HashMap<String, Vec<String>>,
}

impl Extras {
    /// Fills in an image's properties and tags (tags sorted).
    fn fill(&mut self, img: &mut Image) {
        img.properties = self.properties.remove(&img.id).unwrap_or_default();
        img.tags = self.tags.remove(&img.id).unwrap_or_default();
    }
}

/// Loads the live properties and tags of several images in one statement per 500 images:
/// an image read (every HEAD and GET) costs one round trip to the database for both.
fn load_extras(c: &mut dyn Conn, ids: &[&str]) -> Result<Extras> {
    let mut out = Extras::default();
    for chunk in ids.chunks(500) {
        let list = marks(chunk.len());
        let sql = format!(
            "SELECT 0, image_id, name, value FROM image_properties \
             WHERE deleted = 0 AND image_id IN ({list}) \
             UNION ALL \
             SELECT 1, image_id, value, NULL FROM image_tags \
             WHERE deleted = 0 AND image_id IN ({list}) \
             ORDER BY 1, 3"
        );
        let args: Vec<Value> = chunk.iter().chain(chunk).map(|&i| Value::from(i)).collect();
        for row in c.query(&sql, &args)? {
            let id = row.text(1)?;
            if row.int(0)? == 0 {
                out.properties
                    .entry(id)
                    .or_default()
                    .insert(row.text(2)?, row.opt_text(3)?);
            } else {
                out.tags.entry(id).or_default().push(row.text(2)?);
            }
        }
    }
    Ok(out)
}

/// Makes the live tags of an image exactly `tags` (soft-deleting the others).
fn sync_tags(
    c: &mut dyn Conn,
    image_id: &str,
    old: &[String],
    tags: &[String],
    now: &str,
) -> Result<()> {
    for gone in old.iter().filter(|t| !tags.contains(t)) {
        c.execute(
            "UPDATE image_tags SET deleted = 1, deleted_at = ?, updated_at = ? \
             WHERE image_id = ? AND value = ? AND deleted = 0",
            &sql_args![now, now, image_id, gone],
        )?;
    }
    for new in tags.iter().filter(|t| !old.contains(t)) {
        let revived = c.execute(
            "UPDATE image_tags SET deleted = 0, deleted_at = NULL, updated_at = ? \
             WHERE image_id = ? AND value = ?",
            &sql_args![now, image_id, new],
        )?;
        if revived == 0 {
            c.execute(
                "INSERT INTO image_tags (image_id, value, created_at, deleted) \
                 VALUES (?, ?, ?, 0)",
                &sql_args![image_id, new, now],
            )?;
        }
    }
    Ok(())
}

/// `Some(can_share)` when `member` holds a live membership of the image.
fn membership(c: &mut dyn Conn, image_id: &str, member: &str) -> Result<Option<bool>> {
    c.query_opt(
        "SELECT can_share FROM image_members \
         WHERE image_id = ? AND member = ? AND deleted = 0",
        &sql_args![image_id, member],
    )?
    .map(|r| r.flag(0))
    .transpose()
}

/// The live members of an image.
fn live_members(c: &mut dyn Conn, image_id: &str) -> Result<Vec<String>> {
    c.query(
        "SELECT member FROM image_members WHERE image_id = ? AND deleted = 0",
        &sql_args![image_id],
    )?
    .iter()
    .map(|r| r.text(0))
    .collect()
}

/// The caller's own live membership of an image: `Some(can_share)` or `None`.
fn caller_membership(c: &mut dyn Conn, ctx: &Context, image_id: &str) -> Result<Option<bool>> {
    match ctx.owner() {
        Some(me) => membership(c, image_id, me),
        None => Ok(None),
    }
}

/// Whether the caller may see an image (spec §7.3), looking up its membership if needed:
/// memberships count on `shared` images only.
fn visible(c: &mut dyn Conn, ctx: &Context, img: &Image) -> Result<bool> {
    if ctx.can_see(img, false) {
        return Ok(true);
    }
    Ok(img.visibility == Visibility::Shared && caller_membership(c, ctx, &img.id)?.is_some())
}

/// A live image the caller can see, with properties, else `NotFound`.
fn load_visible(c: &mut dyn Conn, ctx: &Context, id: &str, how: Load) -> Result<Image> {
    let img = load(c, id, how)?;
    only_visible(c, ctx, id, img)
}

/// `img` (owned or kept in the memo) if there is one and the caller can see it, else
/// `NotFound`.
fn only_visible<T: Borrow<Image>>(
    c: &mut dyn Conn,
    ctx: &Context,
    id: &str,
    img: Option<T>,
) -> Result<T> {
    match img {
        Some(img) if visible(c, ctx, img.borrow())? => Ok(img),
        _ => Err(not_found(id)),
    }
}

/// The WAL index of a SQLite registry file, if it has one; without it the memo is
/// validated by the change counter (a statement).
fn open_wal_index(path: &Path) -> Option<WalIndex> {
    WalIndex::open(path).unwrap_or_else(|e| {
        log::warn!("registry memo: reading changes by statement: {e}");
        None
    })
}

/// [`load_visible`] of a live image with properties, through the memo, for `stamp`: the
/// database's change stamp, read before the image (see [`super::memo`] for why this order
/// is safe without a transaction).
fn load_remembered(
    c: &mut dyn Conn,
    memo: &Memo,
    stamp: u128,
    ctx: &Context,
    id: &str,
) -> Result<Arc<Image>> {
    let img = match memo.get(stamp, id) {
        Some(img) => Some(img),
        None => {
            let img = load(c, id, Load::LIVE)?.map(Arc::new);
            if let Some(img) = &img {
                memo.put(stamp, img);
            }
            img
        }
    };
    only_visible(c, ctx, id, img)
}

/// The SQL sort expression of a sort key (NULLs as `''` or 0), from a fixed table.
fn sort_expr(key: &str) -> Result<&'static str> {
    Ok(match key {
        "name" => "COALESCE(i.name, '')",
        "status" => "i.status",
        "container_format" => "COALESCE(i.container_format, '')",
        "disk_format" => "COALESCE(i.disk_format, '')",
        "size" => "COALESCE(i.size, 0)",
        "id" => "i.id",
        "created_at" => "i.created_at",
        "updated_at" => "COALESCE(i.updated_at, '')",
        "virtual_size" => "COALESCE(i.virtual_size, 0)",
        "min_disk" => "i.min_disk",
        "min_ram" => "i.min_ram",
        "owner" => "COALESCE(i.owner, '')",
        "visibility" => "i.visibility",
        "protected" => "i.protected",
        "os_hidden" => "i.os_hidden",
        other => {
            return Err(Error::bad_request(format!(
                "Unsupported sort_key '{other}'. Acceptable values: {}",
                super::query::V2_SORT_KEYS.join(", ")
            )));
        }
    })
}

/// An equality filter as (SQL column, bound value), from a fixed table.
fn equals_filter(col: &str, value: &str) -> Result<(&'static str, Value)> {
    let text = |c: &'static str| Ok((c, Value::Text(value.to_string())));
    match col {
        "name" => text("i.name"),
        "status" => text("i.status"),
        "container_format" => text("i.container_format"),
        "disk_format" => text("i.disk_format"),
        "owner" => text("i.owner"),
        "id" => text("i.id"),
        "protected" => Ok((
            "i.protected",
            Value::Int(i64::from(value.eq_ignore_ascii_case("true"))),
        )),
        "min_ram" | "min_disk" => {
            let n = image::parse_count(col, value)?;
            let column = if col == "min_ram" {
                "i.min_ram"
            } else {
                "i.min_disk"
            };
            Ok((column, Value::Int(to_i64(col, n)?)))
        }
        other => Err(Error::bad_request(format!("Unsupported filter '{other}'"))),
    }
}

/// The columns [`row_to_member`] reads.
const MEMBER_COLUMNS: &str = "member, can_share, status, created_at, updated_at";

/// Reads one membership row selected with [`MEMBER_COLUMNS`].
fn row_to_member(r: &Row) -> Result<Member> {
    Ok(Member {
        member_id: r.text(0)?,
        can_share: r.flag(1)?,
        status: stored(r.text(2)?.parse::<MemberStatus>())?,
        created_at: r.text(3)?,
        updated_at: r.opt_text(4)?,
    })
}

/// A v1 client sharing a `private` image makes it `shared` (v1 has no visibility of its
/// own: a private image with members is what v2 calls shared).
fn share_if_private(c: &mut dyn Conn, img: &Image, now: &str) -> Result<()> {
    if img.visibility == Visibility::Private {
        c.execute(
            "UPDATE images SET visibility = 'shared', updated_at = ? WHERE id = ?",
            &sql_args![now, img.id.as_str()],
        )?;
    }
    Ok(())
}

/// Longest member id (a tenant or user id; the servers' column holds 255 bytes).
const MAX_MEMBER_BYTES: usize = 255;

/// Inserts or revives a membership; `can_share` None keeps an existing row's flag (a new
/// row gets false). The image row is locked by the caller, so no other transaction adds
/// the same membership in between.
fn upsert_member(
    c: &mut dyn Conn,
    image_id: &str,
    member: &str,
    can_share: Option<bool>,
    now: &str,
) -> Result<()> {
    if member.is_empty() || member.len() > MAX_MEMBER_BYTES {
        return Err(Error::bad_request(format!(
            "Invalid member: must be 1-{MAX_MEMBER_BYTES} bytes"
        )));
    }
    // `status` before `deleted`: MySQL assigns left to right and would see the new value.
    let mut sql = String::from(
        "UPDATE image_members SET status = CASE WHEN deleted = 1 THEN 'pending' \
         ELSE status END, deleted = 0, deleted_at = NULL, updated_at = ?",
    );
    let mut args = vec![Value::from(now)];
    if let Some(flag) = can_share {
        sql.push_str(", can_share = ?");
        args.push(flag.into());
    }
    sql.push_str(" WHERE image_id = ? AND member = ?");
    args.extend(sql_args![image_id, member]);
    if c.execute(&sql, &args)? == 0 {
        c.execute(
            "INSERT INTO image_members (image_id, member, can_share, created_at, deleted) \
             VALUES (?, ?, ?, ?, 0)",
            &sql_args![image_id, member, can_share.unwrap_or(false), now],
        )?;
    }
    Ok(())
}

/// Sets (inserts or revives) one property row.
fn upsert_property(
    c: &mut dyn Conn,
    image_id: &str,
    name: &str,
    value: Option<&str>,
    now: &str,
) -> Result<()> {
    let n = c.execute(
        "UPDATE image_properties SET value = ?, deleted = 0, deleted_at = NULL, \
         updated_at = ? WHERE image_id = ? AND name = ?",
        &sql_args![value, now, image_id, name],
    )?;
    if n == 0 {
        c.execute(
            "INSERT INTO image_properties (image_id, name, value, created_at, deleted) \
             VALUES (?, ?, ?, ?, 0)",
            &sql_args![image_id, name, value, now],
        )?;
    }
    Ok(())
}

/// The checks of a membership change (spec §5.8, §7.3): writable, authenticated, image
/// visible (else 404), sharable (else 403). Returns the image, locked.
fn check_sharable(c: &mut dyn Conn, ctx: &Context, id: &str) -> Result<Image> {
    check_writable(ctx)?;
    if ctx.owner().is_none() {
        return Err(Error::Unauthorized("No authenticated user".into()));
    }
    let how = Load {
        lock: true,
        ..Load::RECORD
    };
    let Some(img) = load(c, id, how)? else {
        return Err(not_found(id));
    };
    let mine = caller_membership(c, ctx, id)?;
    if !ctx.can_see(&img, mine.is_some()) {
        return Err(not_found(id));
    }
    if !ctx.can_share(&img, mine.unwrap_or(false)) {
        return Err(Error::Forbidden(format!(
            "No permission to share image {id}"
        )));
    }
    Ok(img)
}

/// The column filters of a listing (both APIs): equality, `in:`, sizes, properties, tags,
/// times and `changes-since`.
fn push_filters(sql: &mut String, args: &mut Vec<Value>, query: &ListQuery) -> Result<()> {
    for (col, value) in &query.equals {
        let (column, v) = equals_filter(col, value)?;
        let _ = write!(sql, " AND {column} = ?");
        args.push(v);
    }
    for (col, values) in &query.any_of {
        let (column, _) = equals_filter(col, "")?;
        let _ = write!(sql, " AND {column} IN ({})", marks(values.len()));
        args.extend(values.iter().map(Value::from));
    }
    if query.v2.is_some() && (query.size_min.is_some() || query.size_max.is_some()) {
        // v2 shows the size of an image without data as null, which no bound matches.
        sql.push_str(
            " AND NOT (i.status IN ('queued', 'saving', 'killed') AND i.location IS NULL \
             AND i.size = 0)",
        );
    }
    if let Some(n) = query.size_min {
        sql.push_str(" AND i.size >= ?");
        args.push(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    if let Some(n) = query.size_max {
        sql.push_str(" AND i.size <= ?");
        args.push(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    for (name, value) in &query.properties {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM image_properties p WHERE p.image_id = i.id \
             AND p.deleted = 0 AND p.name = ? AND p.value = ?)",
        );
        args.extend(sql_args![name, value]);
    }
    for tag in &query.tags {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = i.id \
             AND t.deleted = 0 AND t.value = ?)",
        );
        args.push(tag.into());
    }
    for (col, op, t) in &query.times {
        let column = match *col {
            "created_at" => "i.created_at",
            // Never updated: v2 shows (and so compares) the creation time.
            _ => "COALESCE(i.updated_at, i.created_at)",
        };
        let _ = write!(sql, " AND {column} {} ?", op.sql());
        args.push(t.into());
    }
    if let Some(t) = &query.changes_since {
        sql.push_str(" AND (i.created_at >= ? OR i.updated_at >= ? OR i.deleted_at >= ?)");
        args.extend(sql_args![t, t, t]);
    }
    Ok(())
}

/// The v1 visibility rules (spec §5.1): public, own, or a member of a shared image;
/// `is_public` is an admin-only parameter, whoever built the query.
fn push_v1_scope(sql: &mut String, args: &mut Vec<Value>, ctx: &Context, public: PublicFilter) {
    let public = if ctx.is_admin {
        public
    } else {
        PublicFilter::VisibleToCaller
    };
    match public {
        PublicFilter::VisibleToCaller => match ctx.owner() {
            Some(me) => {
                sql.push_str(
                    " AND (i.visibility = 'public' OR i.owner = ? OR (i.visibility = 'shared' \
                     AND EXISTS (SELECT 1 FROM image_members m WHERE m.image_id = i.id \
                     AND m.member = ? AND m.deleted = 0)))",
                );
                args.extend(sql_args![me, me]);
            }
            None => sql.push_str(" AND i.visibility = 'public'"),
        },
        PublicFilter::Private => sql.push_str(" AND i.visibility <> 'public'"),
        PublicFilter::Any => {}
    }
}

/// The v2 visibility rules ([`V2Scope`]).
fn push_v2_scope(sql: &mut String, args: &mut Vec<Value>, ctx: &Context, scope: &V2Scope) {
    let _ = write!(sql, " AND i.os_hidden = {}", i64::from(scope.os_hidden));
    if !ctx.is_admin {
        let community = matches!(
            scope.visibility,
            Some(VisibilityFilter::All | VisibilityFilter::Only(Visibility::Community))
        );
        let mut any = vec!["i.visibility = 'public'".to_string()];
        if community {
            any.push("i.visibility = 'community'".into());
        }
        if let Some(me) = ctx.owner() {
            any.push("i.owner = ?".into());
            args.extend(sql_args![me, me]);
            let status = match scope.member_status {
                MemberStatusFilter::All => "",
                MemberStatusFilter::Only(st) => {
                    args.push(st.as_str().into());
                    " AND m.status = ?"
                }
            };
            any.push(format!(
                "(i.visibility = 'shared' AND EXISTS (SELECT 1 FROM image_members m \
                 WHERE m.image_id = i.id AND m.member = ? AND m.deleted = 0{status}))"
            ));
        }
        let _ = write!(sql, " AND ({})", any.join(" OR "));
    }
    if let Some(VisibilityFilter::Only(v)) = scope.visibility {
        let _ = write!(sql, " AND i.visibility = '{}'", v.as_str());
    }
}

/// Keyset paging: rows strictly after the marker in `order` (the last key is the id).
fn push_after_marker(
    c: &mut dyn Conn,
    sql: &mut String,
    args: &mut Vec<Value>,
    order: &[(&str, bool)],
    marker: &str,
) -> Result<()> {
    let exprs: Vec<&str> = order.iter().map(|(e, _)| *e).collect();
    let row = c.query_one(
        &format!("SELECT {} FROM images i WHERE i.id = ?", exprs.join(", ")),
        &sql_args![marker],
    )?;
    let values = row.0;
    // (k1 > m1) OR (k1 = m1 AND k2 > m2) OR … for each key's own direction.
    let mut any = Vec::new();
    for (n, (expr, asc)) in order.iter().enumerate() {
        let mut all: Vec<String> = Vec::new();
        for (e, v) in exprs[..n].iter().zip(&values) {
            all.push(format!("{e} = ?"));
            args.push(v.clone());
        }
        all.push(format!("{expr} {} ?", if *asc { ">" } else { "<" }));
        args.push(values[n].clone());
        any.push(format!("({})", all.join(" AND ")));
    }
    let _ = write!(sql, " AND ({})", any.join(" OR "));
    Ok(())
}

impl SqlRegistry {
    /// [`Registry::update`], and [`Registry::update_if`] with `expected`: the status check
    /// and the update run in one transaction on the locked row, so of two racing requests
    /// exactly one sees the expected status. A status change ends any upload lease.
    fn update_where(
        &self,
        ctx: &Context,
        id: &str,
        expected: Option<Status>,
        patch: &ImagePatch,
        purge_props: bool,
    ) -> Result<Image> {
        check_writable(ctx)?;
        let mut patch = patch.clone();
        patch.id = None;
        if !ctx.is_admin {
            patch.owner = None;
        }
        if let Some(owner) = &mut patch.owner
            && owner.as_deref() == Some("")
        {
            *owner = None;
        }
        self.pool.write(|c| {
            let old = match load(c, id, Load::LIVE_LOCKED)? {
                Some(img) if ctx.can_modify(&img) => img,
                _ => return Err(not_found(id)),
            };
            if let Some(expected) = expected
                && old.status != expected
            {
                return Err(Error::Conflict(format!(
                    "Image {id} is {}, not {expected}: another request changed it first",
                    old.status
                )));
            }
            let mut img = old.clone();
            img.apply(&patch, purge_props);
            // v1 un-publishing an image that has members makes it `shared`, not `private`.
            if patch.visibility.is_none()
                && img.visibility == Visibility::Private
                && old.visibility != Visibility::Private
                && !live_members(c, id)?.is_empty()
            {
                img.visibility = Visibility::Shared;
            }
            validate(&img, &patch, &self.quotas, &old)?;
            let now = timeutil::now();
            let lease = if img.status != old.status {
                ", lease_owner = NULL, lease_expires_at = NULL"
            } else {
                ""
            };
            let sets: Vec<String> = RECORD_COLUMNS.iter().map(|c| format!("{c} = ?")).collect();
            let mut args = record_args(&img)?;
            args.extend(sql_args![now.as_str(), id]);
            c.execute(
                &format!(
                    "UPDATE images SET {}, updated_at = ?{lease} WHERE id = ?",
                    sets.join(", ")
                ),
                &args,
            )?;
            sync_tags(c, id, &old.tags, &img.tags, &now)?;
            for name in old.properties.keys() {
                if !img.properties.contains_key(name) {
                    c.execute(
                        "UPDATE image_properties SET deleted = 1, deleted_at = ?, \
                         updated_at = ? WHERE image_id = ? AND name = ? AND deleted = 0",
                        &sql_args![now.as_str(), now.as_str(), id, name],
                    )?;
                }
            }
            for (name, value) in &img.properties {
                if old.properties.get(name) != Some(value) {
                    upsert_property(c, id, name, value.as_deref(), &now)?;
                }
            }
            load(c, id, Load::LIVE)?.ok_or_else(|| not_found(id))
        })
    }
}

impl Registry for SqlRegistry {
    fn list(&self, ctx: &Context, query: &ListQuery) -> Result<Vec<Image>> {
        let mut order = vec![(sort_expr(query.sort_key)?, query.sort_asc)];
        for (key, asc) in &query.then_by {
            order.push((sort_expr(key)?, *asc));
        }
        // The id breaks ties, in the direction of the first key.
        order.push(("i.id", query.sort_asc));
        let limit = query.limit.min(self.limits.max);
        let with_deleted = query.changes_since.is_some();
        self.pool.read(|c| {
            let mut sql = format!("SELECT {COLUMNS} FROM images i WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            // v1 never lists killed images; v2 lists every live one.
            if query.v2.is_none() {
                sql.push_str(" AND i.status != 'killed'");
            }
            if !with_deleted {
                sql.push_str(" AND i.deleted = 0");
            }
            push_filters(&mut sql, &mut args, query)?;
            match &query.v2 {
                Some(scope) => push_v2_scope(&mut sql, &mut args, ctx, scope),
                None => push_v1_scope(&mut sql, &mut args, ctx, query.public),
            }
            if let Some(marker) = &query.marker {
                let how = Load {
                    deleted: with_deleted,
                    ..Load::RECORD
                };
                let found = match load(c, marker, how)? {
                    Some(img) => visible(c, ctx, &img)?,
                    None => false,
                };
                if !found {
                    return Err(Error::bad_request(
                        "Invalid marker. Image could not be found.",
                    ));
                }
                push_after_marker(c, &mut sql, &mut args, &order, marker)?;
            }
            let by: Vec<String> = order
                .iter()
                .map(|(e, asc)| format!("{e} {}", if *asc { "ASC" } else { "DESC" }))
                .collect();
            let _ = write!(sql, " ORDER BY {} LIMIT ?", by.join(", "));
            args.push(Value::Int(i64::try_from(limit).unwrap_or(i64::MAX)));

            let mut images = rows_to_images(c.query(&sql, &args)?)?;
            let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
            let mut extras = load_extras(c, &ids)?;
            for img in &mut images {
                extras.fill(img);
            }
            Ok(images)
        })
    }

    fn get(&self, ctx: &Context, id: &ImageId) -> Result<Image> {
        self.get_shared(ctx, id).map(Arc::unwrap_or_clone)
    }

    fn get_shared(&self, ctx: &Context, id: &ImageId) -> Result<Arc<Image>> {
        let id = id.as_str();
        let arrived = Instant::now();
        let fresh = |c: &mut dyn Conn| load_visible(c, ctx, id, Load::LIVE).map(Arc::new);
        // No transaction. On SQLite in WAL mode, an image the memo holds under the WAL
        // index's stamp and the caller may see costs no statement; otherwise two statements
        // (the image, then its properties and tags), plus the change counter when there is no
        // WAL index. PostgreSQL and MySQL take one or two. A shared image adds its membership.
        let Some(memo) = &self.memo else {
            return self.pool.read_autocommit(fresh);
        };
        let Some(wal) = &self.wal else {
            return self.pool.read_autocommit(|c| {
                let counter =
                    memo.counter(arrived, || c.query_one(memo::COUNTER_SQL, &[])?.int(0))?;
                load_remembered(c, memo, counter, ctx, id)
            });
        };
        match wal.stamp() {
            Some(stamp) => {
                if let Some(img) = memo.get(stamp, id)
                    && ctx.can_see(&img, false)
                {
                    return Ok(img);
                }
                self.pool
                    .read_autocommit(|c| load_remembered(c, memo, stamp, ctx, id))
            }
            // A commit is rewriting the index this moment: read the database.
            None => self.pool.read_autocommit(fresh),
        }
    }

    fn create(&self, ctx: &Context, patch: &ImagePatch) -> Result<Image> {
        check_writable(ctx)?;
        ctx.check_can_create()?;
        let id = match &patch.id {
            Some(id) => {
                image::validate_id(id)?;
                id.clone()
            }
            None => image::new_id(),
        };
        let mut img = Image::new(id);
        img.apply(patch, false);
        img.owner = if ctx.is_admin {
            match &patch.owner {
                Some(owner) => owner.clone().filter(|o| !o.is_empty()),
                None => ctx.owner().map(str::to_string),
            }
        } else {
            ctx.owner().map(str::to_string)
        };
        img.created_at = timeutil::now();
        img.updated_at = None;
        validate(&img, patch, &self.quotas, &Image::new(String::new()))?;
        let mut args = sql_args![img.id.as_str(), img.created_at.as_str()].to_vec();
        args.extend(record_args(&img)?);
        let duplicate = || {
            Error::Duplicate(format!(
                "An image with identifier {} already exists",
                img.id
            ))
        };
        let created = self.pool.write(|c| {
            if c.query_opt(
                "SELECT 1 FROM images WHERE id = ?",
                &sql_args![img.id.as_str()],
            )?
            .is_some()
            {
                return Err(duplicate());
            }
            c.execute(
                &format!(
                    "INSERT INTO images (id, created_at, deleted, {}) VALUES (?, ?, 0, {})",
                    RECORD_COLUMNS.join(", "),
                    marks(RECORD_COLUMNS.len())
                ),
                &args,
            )?;
            sync_tags(c, &img.id, &[], &img.tags, &img.created_at)?;
            for (name, value) in &img.properties {
                upsert_property(c, &img.id, name, value.as_deref(), &img.created_at)?;
            }
            load(c, &img.id, Load::LIVE)?.ok_or_else(|| not_found(&img.id))
        });
        match created {
            // Two creates of one id raced past the check: the key tells.
            Err(Error::Duplicate(_)) => Err(duplicate()),
            other => other,
        }
    }

    fn update(
        &self,
        ctx: &Context,
        id: &ImageId,
        patch: &ImagePatch,
        purge_props: bool,
    ) -> Result<Image> {
        self.update_where(ctx, id, None, patch, purge_props)
    }

    fn update_if(
        &self,
        ctx: &Context,
        id: &ImageId,
        expected: Status,
        patch: &ImagePatch,
        purge_props: bool,
    ) -> Result<Image> {
        self.update_where(ctx, id, Some(expected), patch, purge_props)
    }

    fn delete(&self, ctx: &Context, id: &ImageId) -> Result<Image> {
        let id = id.as_str();
        check_writable(ctx)?;
        self.pool.write(|c| {
            let old = match load(c, id, Load::LIVE_LOCKED)? {
                Some(img) if ctx.can_modify(&img) => img,
                _ => return Err(not_found(id)),
            };
            if old.protected {
                return Err(Error::Forbidden(format!(
                    "Image {id} is protected and cannot be deleted"
                )));
            }
            let now = timeutil::now();
            c.execute(
                "UPDATE images SET deleted = 1, deleted_at = ?, updated_at = ?, \
                 lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                &sql_args![now.as_str(), now.as_str(), id],
            )?;
            for table in ["image_properties", "image_members", "image_tags"] {
                c.execute(
                    &format!(
                        "UPDATE {table} SET deleted = 1, deleted_at = ?, updated_at = ? \
                         WHERE image_id = ? AND deleted = 0"
                    ),
                    &sql_args![now.as_str(), now.as_str(), id],
                )?;
            }
            let mut img = load(c, id, Load::ANY)?.ok_or_else(|| not_found(id))?;
            img.properties = old.properties;
            img.tags = old.tags;
            Ok(img)
        })
    }

    fn members(&self, ctx: &Context, id: &ImageId) -> Result<Vec<Member>> {
        let id = id.as_str();
        let cap = membership_listing_cap(&self.quotas, &self.limits);
        self.pool.read(|c| {
            load_visible(c, ctx, id, Load::RECORD)?;
            c.query(
                &format!(
                    "SELECT {MEMBER_COLUMNS} FROM image_members \
                     WHERE image_id = ? AND deleted = 0 ORDER BY member LIMIT ?"
                ),
                &sql_args![id, cap],
            )?
            .iter()
            .map(row_to_member)
            .collect()
        })
    }

    fn add_member(
        &self,
        ctx: &Context,
        id: &ImageId,
        member: &str,
        can_share: Option<bool>,
    ) -> Result<()> {
        let id = id.as_str();
        self.pool.write(|c| {
            let img = check_sharable(c, ctx, id)?;
            if membership(c, id, member)?.is_none() {
                let live = c
                    .query_one(
                        "SELECT COUNT(*) FROM image_members WHERE image_id = ? AND deleted = 0",
                        &sql_args![id],
                    )?
                    .count(0)?;
                let live = usize::try_from(live).unwrap_or(usize::MAX);
                self.quotas.check_members(live, live.saturating_add(1))?;
            }
            let now = timeutil::now();
            share_if_private(c, &img, &now)?;
            upsert_member(c, id, member, can_share, &now)
        })
    }

    fn delete_member(&self, ctx: &Context, id: &ImageId, member: &str) -> Result<()> {
        let id = id.as_str();
        self.pool.write(|c| {
            check_sharable(c, ctx, id)?;
            let now = timeutil::now();
            c.execute(
                "UPDATE image_members SET deleted = 1, deleted_at = ?, updated_at = ? \
                 WHERE image_id = ? AND member = ? AND deleted = 0",
                &sql_args![now.as_str(), now.as_str(), id, member],
            )?;
            Ok(())
        })
    }

    fn replace_members(&self, ctx: &Context, id: &ImageId, members: &[MemberSpec]) -> Result<()> {
        let id = id.as_str();
        self.pool.write(|c| {
            let img = check_sharable(c, ctx, id)?;
            let now = timeutil::now();
            if !members.is_empty() {
                share_if_private(c, &img, &now)?;
            }
            let keep: BTreeMap<&str, Option<bool>> = members
                .iter()
                .map(|m| (m.member_id.as_str(), m.can_share))
                .collect();
            let live = live_members(c, id)?;
            self.quotas.check_members(live.len(), keep.len())?;
            for member in live.iter().filter(|m| !keep.contains_key(m.as_str())) {
                c.execute(
                    "UPDATE image_members SET deleted = 1, deleted_at = ?, updated_at = ? \
                     WHERE image_id = ? AND member = ?",
                    &sql_args![now.as_str(), now.as_str(), id, member],
                )?;
            }
            for m in members {
                upsert_member(c, id, &m.member_id, m.can_share, &now)?;
            }
            Ok(())
        })
    }

    fn shared_images(&self, ctx: &Context, member: &str) -> Result<Vec<SharedImage>> {
        if !ctx.can_list_shared_images(member) {
            // Hidden like an invisible image: 404, never 403 (spec §7.3).
            return Err(Error::NotFound(format!(
                "Shared images of member {member} not found"
            )));
        }
        let cap = membership_listing_cap(&self.quotas, &self.limits);
        self.pool.read(|c| {
            c.query(
                "SELECT m.image_id, m.can_share FROM image_members m \
                 JOIN images i ON i.id = m.image_id \
                 WHERE m.member = ? AND m.deleted = 0 AND i.deleted = 0 \
                 ORDER BY m.image_id LIMIT ?",
                &sql_args![member, cap],
            )?
            .iter()
            .map(|r| {
                Ok(SharedImage {
                    image_id: r.text(0)?,
                    can_share: r.flag(1)?,
                })
            })
            .collect()
        })
    }

    fn set_member_status(
        &self,
        ctx: &Context,
        id: &ImageId,
        member: &str,
        status: MemberStatus,
    ) -> Result<Member> {
        let id = id.as_str();
        check_writable(ctx)?;
        if !ctx.is_admin && ctx.owner() != Some(member) {
            return Err(Error::Forbidden(
                "Only the member itself may change the status of its membership".into(),
            ));
        }
        self.pool.write(|c| {
            let how = Load {
                lock: true,
                ..Load::RECORD
            };
            load_visible(c, ctx, id, how)?;
            let n = c.execute(
                "UPDATE image_members SET status = ?, updated_at = ? \
                 WHERE image_id = ? AND member = ? AND deleted = 0",
                &sql_args![status.as_str(), timeutil::now(), id, member],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!(
                    "Member {member} of image {id} not found"
                )));
            }
            row_to_member(&c.query_one(
                &format!(
                    "SELECT {MEMBER_COLUMNS} FROM image_members \
                     WHERE image_id = ? AND member = ? AND deleted = 0"
                ),
                &sql_args![id, member],
            )?)
        })
    }
}

/// An exclusive lock on `<database>.uploads.lock`, held by a glance-api for its whole life.
/// Whoever gets it knows that no other glance-api is uploading into the same embedded
/// database, so the images it finds `saving` were left by a glance-api that died, and can
/// be killed.
#[derive(Debug)]
pub struct UploadLock {
    _file: std::fs::File,
}

impl UploadLock {
    /// Takes the lock without waiting: `Ok(None)` when another process holds it.
    pub fn try_acquire(db: &Path) -> Result<Option<UploadLock>> {
        let mut name = db.as_os_str().to_owned();
        name.push(".uploads.lock");
        let path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(UploadLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", path.display()), e))
            }
        }
    }
}

#[cfg(test)]
mod servers;
#[cfg(test)]
pub(crate) mod tests;
