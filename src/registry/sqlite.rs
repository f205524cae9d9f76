//! The embedded registry: image metadata in a SQLite database (rusqlite, bundled).
//!
//! [`SqliteRegistry`] implements [`Registry`] with the rules of spec §5.1, §5.8, §7.3 and §8
//! and the deviations of DECISIONS.md. The database runs in WAL mode with a busy timeout,
//! `foreign_keys = ON` and `synchronous = FULL`. Connections live in a small pool: a worker
//! thread checks one out per operation and returns it, new ones are opened on demand with
//! the same settings. Every write runs in one `IMMEDIATE` transaction, so a failed operation
//! leaves no half-written rows; every read runs in one transaction, so a listing (marker
//! lookup, page, properties) sees one snapshot.
//!
//! Behaviour the layers above rely on:
//!
//! - Deleted rows are invisible (`NotFound`, `Image <id> not found`); so are images the
//!   caller may not see or (for writes) modify: existence is never revealed.
//! - Killed images are never listed, but [`Registry::get`] returns them.
//! - A listing with `changes_since` also returns deleted images (as Glance did from Essex),
//!   so that a poller sees deletions; a deleted image's `updated_at` is its deletion time.
//! - Sorting treats NULL text values as `''` and NULL numbers as 0, both in `ORDER BY` and
//!   in the marker comparison, so marker paging never skips or repeats rows.
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
//!
//! The schema and its migrations are in [`super::migrate`]; `glance-manage` uses
//! [`db_version`], [`db_sync`], [`SqliteRegistry::images_with_data`] and
//! [`SqliteRegistry::find_any`], `glance-scrubber` [`SqliteRegistry::pending_deletes`] and
//! [`SqliteRegistry::set_status_raw`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::{Type, Value};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior, params,
    params_from_iter,
};

use super::query::{MemberStatusFilter, V2Scope, VisibilityFilter};
use super::{
    ListQuery, Member, MemberSpec, MemberStatus, PageLimits, PublicFilter, Quotas, Registry,
    SharedImage, migrate,
};
use crate::auth::Context;
use crate::error::{Error, Result};
use crate::image::{self, Image, ImageId, ImagePatch, Properties, Status, Visibility};
use crate::timeutil;

/// How to open a [`SqliteRegistry`].
#[derive(Debug, Clone, Copy)]
pub struct SqliteOptions {
    /// How long a connection waits for a lock held by another before failing
    /// (`sql_timeout`).
    pub busy_timeout: Duration,
    /// Create or migrate the schema on open (`db_auto_create`); otherwise a database that is
    /// not at [`migrate::LATEST`] is refused.
    pub auto_migrate: bool,
    /// Page-size limits; listings are clamped to `limits.max` here too.
    pub limits: PageLimits,
    /// Per-image property and member limits.
    pub quotas: Quotas,
    /// Commits are on disk before they return (`sqlite_synchronous = FULL`, the default):
    /// an image is durably `active` before the client gets its 201. `NORMAL` may lose the
    /// last commits on power loss (not on a crash of the process).
    pub durable_commits: bool,
}

impl SqliteOptions {
    fn settings(&self) -> ConnSettings {
        ConnSettings {
            busy_timeout: self.busy_timeout,
            durable_commits: self.durable_commits,
        }
    }
}

/// What every connection is set up with.
#[derive(Debug, Clone, Copy)]
struct ConnSettings {
    busy_timeout: Duration,
    durable_commits: bool,
}

impl SqliteOptions {
    /// The options of a server's database settings (`sql_timeout`, `db_auto_create`).
    pub fn from_config(db: &crate::config::DatabaseOptions, limits: PageLimits) -> SqliteOptions {
        SqliteOptions {
            busy_timeout: db.sql_timeout,
            auto_migrate: db.db_auto_create,
            limits,
            quotas: Quotas::default(),
            durable_commits: db.sqlite_synchronous_full,
        }
    }
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            busy_timeout: Duration::from_secs(30),
            auto_migrate: true,
            limits: PageLimits::default(),
            quotas: Quotas::default(),
            durable_commits: true,
        }
    }
}

/// Idle connections kept for reuse; more are closed when returned.
const MAX_IDLE: usize = 32;

/// The image columns, in the order [`row_to_image`] reads them (table alias `i`).
const COLUMNS: &str = "i.id, i.name, i.disk_format, i.container_format, i.size, i.status, \
                       i.is_public, i.location, i.checksum, i.min_ram, i.min_disk, i.owner, \
                       i.created_at, i.updated_at, i.deleted_at, i.deleted, i.virtual_size, \
                       i.os_hash_algo, i.os_hash_value, i.visibility, i.protected, i.os_hidden";

/// Where connections come from.
#[derive(Debug)]
enum Target {
    /// A database file.
    File(PathBuf),
    /// One private in-memory database: a single connection, shared in turn.
    Memory,
}

/// A registry whose records live in a SQLite database.
#[derive(Debug)]
pub struct SqliteRegistry {
    target: Target,
    settings: ConnSettings,
    limits: PageLimits,
    quotas: Quotas,
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

/// Returns a checked-out connection to the pool when dropped (also on panic).
struct Checkout<'a> {
    reg: &'a SqliteRegistry,
    conn: Option<Connection>,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.reg.checkin(conn);
        }
    }
}

/// Opens a connection to a database file with the registry's settings.
fn connect(path: &Path, create: bool, settings: ConnSettings) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::Db(format!("cannot open database {}: {e}", path.display())))?;
    configure(&conn, settings, true)
        .map_err(|e| Error::Db(format!("cannot set up database {}: {e}", path.display())))?;
    Ok(conn)
}

/// Applies the per-connection settings.
fn configure(conn: &Connection, settings: ConnSettings, wal: bool) -> Result<()> {
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
fn create_parent(path: &Path) -> Result<()> {
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

/// The schema version of the database at `path` (0 when it has no schema yet).
///
/// A missing file is a `Config` error; the file is never created.
pub fn db_version(path: &Path) -> Result<u32> {
    if !path.exists() {
        return Err(Error::Config(format!(
            "database {} does not exist",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Db(format!("cannot open database {}: {e}", path.display())))?;
    migrate::version(&conn)
}

/// Creates (with its directory) or migrates the database at `path` up to `target` (default
/// [`migrate::LATEST`]); returns `(from, to)` versions.
pub fn db_sync(path: &Path, target: Option<u32>) -> Result<(u32, u32)> {
    create_parent(path)?;
    let mut conn = connect(path, true, SqliteOptions::default().settings())?;
    migrate::sync(&mut conn, target).map_err(|e| with_path(e, path))
}

/// Prefixes a migration error with the database path.
fn with_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
        Error::Db(m) => Error::Db(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// The `Config` error for a database that is not at [`migrate::LATEST`].
fn version_error(path: &Path, v: u32) -> Error {
    if v > migrate::LATEST {
        Error::Config(format!(
            "database {} is at schema version {v}, newer than this program supports ({}): \
             upgrade glance-rs",
            path.display(),
            migrate::LATEST
        ))
    } else {
        Error::Config(format!(
            "database {} is at schema version {v}, this program needs {}: run \
             'glance-manage db_sync' (or set db_auto_create = True)",
            path.display(),
            migrate::LATEST
        ))
    }
}

impl SqliteRegistry {
    /// Opens the registry database at `path`.
    ///
    /// With `auto_migrate` the file (and its directory) is created and the schema migrated to
    /// [`migrate::LATEST`]; without it, a missing, unmigrated or older database is a
    /// `Config` error telling to run `glance-manage db_sync`. A database newer than this
    /// program is always refused.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteRegistry> {
        let mut conn = if opts.auto_migrate {
            create_parent(path)?;
            connect(path, true, opts.settings())?
        } else if path.exists() {
            connect(path, false, opts.settings())?
        } else {
            return Err(version_error(path, 0));
        };
        let v = migrate::version(&conn)?;
        if v > migrate::LATEST || (v < migrate::LATEST && !opts.auto_migrate) {
            return Err(version_error(path, v));
        }
        if v < migrate::LATEST {
            migrate::sync(&mut conn, None).map_err(|e| with_path(e, path))?;
        }
        Ok(SqliteRegistry {
            target: Target::File(path.to_path_buf()),
            settings: opts.settings(),
            limits: opts.limits,
            quotas: opts.quotas,
            idle: Mutex::new(vec![conn]),
            returned: Condvar::new(),
        })
    }

    /// A registry in a private in-memory database, migrated (for tests and tools).
    /// Operations take turns on its single connection; `opts.auto_migrate` is ignored.
    pub fn open_in_memory(opts: SqliteOptions) -> Result<SqliteRegistry> {
        let mut conn = Connection::open_in_memory()?;
        configure(&conn, opts.settings(), false)?;
        migrate::sync(&mut conn, None)?;
        Ok(SqliteRegistry {
            target: Target::Memory,
            settings: opts.settings(),
            limits: opts.limits,
            quotas: opts.quotas,
            idle: Mutex::new(vec![conn]),
            returned: Condvar::new(),
        })
    }

    /// Soft-deleted images in `pending_delete` whose `deleted_at <= deleted_before` (a
    /// stored timestamp), newest deletion first: the scrubber's work list.
    pub fn pending_deletes(&self, deleted_before: &str) -> Result<Vec<Image>> {
        self.read(|tx| {
            let sql = format!(
                "SELECT {COLUMNS} FROM images i WHERE i.deleted = 1 \
                 AND i.status = 'pending_delete' AND i.deleted_at <= ?1 \
                 ORDER BY i.deleted_at DESC, i.id DESC"
            );
            let mut st = tx.prepare(&sql)?;
            let images = st
                .query_map([deleted_before], row_to_image)?
                .collect::<rusqlite::Result<Vec<Image>>>()?;
            Ok(images)
        })
    }

    /// One page of the images whose stored data `glance-manage inspect --all` reads: not
    /// deleted, with a location, and `active`, `queued` or `killed` (an image still `saving`
    /// is being inspected by its upload). Ordered by `(created_at, id)`; a page starts after
    /// the `(created_at, id)` of the previous page's last image (`None`: from the first).
    /// Properties are not loaded.
    pub fn images_with_data(&self, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<Image>> {
        let (created_at, id) = after.unwrap_or(("", ""));
        self.read(|tx| {
            let sql = format!(
                "SELECT {COLUMNS} FROM images i WHERE i.deleted = 0 \
                 AND i.status IN ('active', 'queued', 'killed') \
                 AND i.location IS NOT NULL AND i.location <> '' \
                 AND (i.created_at, i.id) > (?1, ?2) \
                 ORDER BY i.created_at, i.id LIMIT ?3"
            );
            let mut st = tx.prepare(&sql)?;
            let images = st
                .query_map(params![created_at, id, limit], row_to_image)?
                .collect::<rusqlite::Result<Vec<Image>>>()?;
            Ok(images)
        })
    }

    /// The record of an image whatever its status, deleted or not, and without visibility
    /// rules (for admin tools: `glance-manage inspect` says why it cannot read an image).
    /// Properties are not loaded. `None` when no row has this id.
    pub fn find_any(&self, id: &str) -> Result<Option<Image>> {
        self.read(|tx| load(tx, id, true, false))
    }

    /// Kills every live image left `saving` and returns their ids: start-up reconciliation
    /// after a crash, when no upload can still be running against this database (the
    /// caller makes sure of that; see [`UploadLock`]).
    pub fn kill_interrupted_uploads(&self) -> Result<Vec<String>> {
        self.write(|tx| {
            let now = timeutil::now();
            let mut stmt = tx.prepare(
                "UPDATE images SET status = 'killed', updated_at = ?1 \
                 WHERE status = 'saving' AND deleted = 0 RETURNING id",
            )?;
            let ids = stmt
                .query_map([now], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ids)
        })
    }

    /// The database file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::File(p) => Some(p),
            Target::Memory => None,
        }
    }

    /// Sets the status of an image, deleted or not, without any check (the scrubber moves
    /// `pending_delete` to `deleted`). `updated_at` is set to now. Unknown id → `NotFound`.
    pub fn set_status_raw(&self, id: &str, status: Status) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE images SET status = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, status.as_str(), timeutil::now()],
            )?;
            if n == 0 {
                return Err(not_found(id));
            }
            Ok(())
        })
    }

    /// Takes a connection from the pool, opening one if none is idle (file databases) or
    /// waiting for the one connection (in-memory databases).
    fn checkout(&self) -> Result<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(conn) = idle.pop() {
                return Ok(conn);
            }
            match &self.target {
                Target::File(path) => {
                    drop(idle);
                    return connect(path, false, self.settings);
                }
                Target::Memory => {
                    idle = self
                        .returned
                        .wait(idle)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    /// Returns a connection to the pool. One left inside a transaction is rolled back, and
    /// closed if that fails (file databases only: the in-memory one is the database).
    fn checkin(&self, conn: Connection) {
        let memory = matches!(self.target, Target::Memory);
        if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() && !memory {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if memory || idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        drop(idle);
        self.returned.notify_one();
    }

    /// Runs `f` on a pooled connection.
    fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut guard = Checkout {
            reg: self,
            conn: Some(self.checkout()?),
        };
        match guard.conn.as_mut() {
            Some(conn) => f(conn),
            None => Err(Error::Internal("registry connection pool is empty".into())),
        }
    }

    /// Runs `f` in one read transaction (one snapshot).
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Runs `f` in one `IMMEDIATE` write transaction: committed when `f` succeeds, rolled
    /// back when it fails.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
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

/// A count as SQLite's signed integer; out of range is a client error naming the field.
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

/// Reads a non-negative integer column.
fn count(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

/// Reads a nullable non-negative integer column.
fn opt_count(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = row.get(idx)?;
    v.map(|v| u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v)))
        .transpose()
}

/// Reads one image row selected with [`COLUMNS`] (properties empty).
fn row_to_image(row: &Row<'_>) -> rusqlite::Result<Image> {
    let status: String = row.get(5)?;
    let status = status
        .parse::<Status>()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, Type::Text, Box::new(e)))?;
    let visibility: String = row.get(19)?;
    let visibility = visibility
        .parse::<Visibility>()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(19, Type::Text, Box::new(e)))?;
    Ok(Image {
        id: row.get(0)?,
        name: row.get(1)?,
        disk_format: row.get(2)?,
        container_format: row.get(3)?,
        size: count(row, 4)?,
        virtual_size: opt_count(row, 16)?,
        status,
        visibility,
        protected: row.get(20)?,
        os_hidden: row.get(21)?,
        location: row.get(7)?,
        checksum: row.get(8)?,
        os_hash_algo: row.get(17)?,
        os_hash_value: row.get(18)?,
        min_ram: count(row, 9)?,
        min_disk: count(row, 10)?,
        owner: row.get(11)?,
        created_at: row.get(12)?,
        updated_at: row.get(13)?,
        deleted_at: row.get(14)?,
        deleted: row.get(15)?,
        properties: Properties::new(),
        tags: Vec::new(),
    })
}

/// One image row, live only unless `include_deleted`; live properties loaded when `props`.
fn load(conn: &Connection, id: &str, include_deleted: bool, props: bool) -> Result<Option<Image>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM images i WHERE i.id = ?1{}",
        if include_deleted {
            ""
        } else {
            " AND i.deleted = 0"
        }
    );
    // Cached statements: an image lookup runs on every HEAD and GET, and preparing its
    // statements anew cost about as much as running them.
    let mut img = match conn
        .prepare_cached(&sql)?
        .query_row([id], row_to_image)
        .optional()?
    {
        Some(img) => img,
        None => return Ok(None),
    };
    if props {
        img.properties = load_properties(conn, &[id])?.remove(id).unwrap_or_default();
        img.tags = load_tags(conn, &[id])?.remove(id).unwrap_or_default();
    }
    Ok(Some(img))
}

/// Live tags of several images, by image id, each list sorted.
fn load_tags(conn: &Connection, ids: &[&str]) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT image_id, value FROM image_tags \
             WHERE deleted = 0 AND image_id IN ({placeholders}) ORDER BY value"
        );
        let mut st = conn.prepare_cached(&sql)?;
        let mut rows = st.query(params_from_iter(chunk.iter()))?;
        while let Some(row) = rows.next()? {
            let image_id: String = row.get(0)?;
            out.entry(image_id).or_default().push(row.get(1)?);
        }
    }
    Ok(out)
}

/// Makes the live tags of an image exactly `tags` (soft-deleting the others).
fn sync_tags(
    conn: &Connection,
    image_id: &str,
    old: &[String],
    tags: &[String],
    now: &str,
) -> Result<()> {
    for gone in old.iter().filter(|t| !tags.contains(t)) {
        conn.execute(
            "UPDATE image_tags SET deleted = 1, deleted_at = ?3, updated_at = ?3 \
             WHERE image_id = ?1 AND value = ?2 AND deleted = 0",
            params![image_id, gone, now],
        )?;
    }
    for new in tags.iter().filter(|t| !old.contains(t)) {
        conn.execute(
            "INSERT INTO image_tags (image_id, value, created_at, deleted) \
             VALUES (?1, ?2, ?3, 0) \
             ON CONFLICT (image_id, value) DO UPDATE SET \
               deleted = 0, deleted_at = NULL, updated_at = ?3",
            params![image_id, new, now],
        )?;
    }
    Ok(())
}

/// Live properties of several images, by image id.
fn load_properties(conn: &Connection, ids: &[&str]) -> Result<HashMap<String, Properties>> {
    let mut out: HashMap<String, Properties> = HashMap::new();
    for chunk in ids.chunks(500) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT image_id, name, value FROM image_properties \
             WHERE deleted = 0 AND image_id IN ({placeholders})"
        );
        let mut st = conn.prepare_cached(&sql)?;
        let mut rows = st.query(params_from_iter(chunk.iter()))?;
        while let Some(row) = rows.next()? {
            let image_id: String = row.get(0)?;
            out.entry(image_id)
                .or_default()
                .insert(row.get(1)?, row.get(2)?);
        }
    }
    Ok(out)
}

/// `Some(can_share)` when `member` holds a live membership of the image.
fn membership(conn: &Connection, image_id: &str, member: &str) -> Result<Option<bool>> {
    Ok(conn
        .prepare_cached(
            "SELECT can_share FROM image_members \
             WHERE image_id = ?1 AND member = ?2 AND deleted = 0",
        )?
        .query_row([image_id, member], |r| r.get(0))
        .optional()?)
}

/// The live members of an image.
fn live_members(conn: &Connection, image_id: &str) -> Result<Vec<String>> {
    let mut st = conn
        .prepare_cached("SELECT member FROM image_members WHERE image_id = ?1 AND deleted = 0")?;
    let members = st
        .query_map([image_id], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(members)
}

/// The caller's own live membership of an image: `Some(can_share)` or `None`.
fn caller_membership(conn: &Connection, ctx: &Context, image_id: &str) -> Result<Option<bool>> {
    match ctx.owner() {
        Some(me) => membership(conn, image_id, me),
        None => Ok(None),
    }
}

/// Whether the caller may see an image (spec §7.3), looking up its membership if needed:
/// memberships count on `shared` images only.
fn visible(conn: &Connection, ctx: &Context, img: &Image) -> Result<bool> {
    if ctx.can_see(img, false) {
        return Ok(true);
    }
    Ok(img.visibility == Visibility::Shared && caller_membership(conn, ctx, &img.id)?.is_some())
}

/// A live image the caller can see, with properties, else `NotFound`.
fn load_visible(conn: &Connection, ctx: &Context, id: &str) -> Result<Image> {
    match load(conn, id, false, true)? {
        Some(img) if visible(conn, ctx, &img)? => Ok(img),
        _ => Err(not_found(id)),
    }
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
            Value::Integer(i64::from(value.eq_ignore_ascii_case("true"))),
        )),
        "min_ram" | "min_disk" => {
            let n = image::parse_count(col, value)?;
            let column = if col == "min_ram" {
                "i.min_ram"
            } else {
                "i.min_disk"
            };
            Ok((column, Value::Integer(to_i64(col, n)?)))
        }
        other => Err(Error::bad_request(format!("Unsupported filter '{other}'"))),
    }
}

/// The columns [`row_to_member`] reads.
const MEMBER_COLUMNS: &str = "member, can_share, status, created_at, updated_at";

/// Reads one membership row selected with [`MEMBER_COLUMNS`].
fn row_to_member(r: &Row<'_>) -> rusqlite::Result<Member> {
    let status: String = r.get(2)?;
    Ok(Member {
        member_id: r.get(0)?,
        can_share: r.get(1)?,
        status: status
            .parse::<MemberStatus>()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, Type::Text, Box::new(e)))?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

/// A v1 client sharing a `private` image makes it `shared` (v1 has no visibility of its
/// own: a private image with members is what v2 calls shared).
fn share_if_private(conn: &Connection, img: &Image, now: &str) -> Result<()> {
    if img.visibility == Visibility::Private {
        conn.execute(
            "UPDATE images SET visibility = 'shared', updated_at = ?2 WHERE id = ?1",
            params![img.id, now],
        )?;
    }
    Ok(())
}

/// Inserts or revives a membership; `can_share` None keeps an existing row's flag (a new
/// row gets false).
fn upsert_member(
    conn: &Connection,
    image_id: &str,
    member: &str,
    can_share: Option<bool>,
    now: &str,
) -> Result<()> {
    if member.is_empty() {
        return Err(Error::bad_request("Invalid member: must not be empty"));
    }
    conn.execute(
        "INSERT INTO image_members (image_id, member, can_share, created_at, deleted) \
         VALUES (?1, ?2, COALESCE(?3, 0), ?4, 0) \
         ON CONFLICT (image_id, member) DO UPDATE SET \
           can_share = COALESCE(?3, image_members.can_share), \
           status = CASE WHEN image_members.deleted = 1 THEN 'pending' \
                         ELSE image_members.status END, \
           deleted = 0, deleted_at = NULL, updated_at = ?4",
        params![image_id, member, can_share, now],
    )?;
    Ok(())
}

/// Sets (inserts or revives) one property row.
fn upsert_property(
    conn: &Connection,
    image_id: &str,
    name: &str,
    value: Option<&str>,
    now: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO image_properties (image_id, name, value, created_at, deleted) \
         VALUES (?1, ?2, ?3, ?4, 0) \
         ON CONFLICT (image_id, name) DO UPDATE SET \
           value = ?3, deleted = 0, deleted_at = NULL, updated_at = ?4",
        params![image_id, name, value, now],
    )?;
    Ok(())
}

/// The checks of a membership change (spec §5.8, §7.3): writable, authenticated, image
/// visible (else 404), sharable (else 403). Returns the image.
fn check_sharable(conn: &Connection, ctx: &Context, id: &str) -> Result<Image> {
    check_writable(ctx)?;
    if ctx.owner().is_none() {
        return Err(Error::Unauthorized("No authenticated user".into()));
    }
    let img = match load(conn, id, false, false)? {
        Some(img) => img,
        None => return Err(not_found(id)),
    };
    let mine = caller_membership(conn, ctx, id)?;
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
        let marks = vec!["?"; values.len()].join(", ");
        let _ = write!(sql, " AND {column} IN ({marks})");
        args.extend(values.iter().map(|v| Value::Text(v.clone())));
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
        args.push(Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    if let Some(n) = query.size_max {
        sql.push_str(" AND i.size <= ?");
        args.push(Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    for (name, value) in &query.properties {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM image_properties p WHERE p.image_id = i.id \
             AND p.deleted = 0 AND p.name = ? AND p.value = ?)",
        );
        args.push(Value::Text(name.clone()));
        args.push(Value::Text(value.clone()));
    }
    for tag in &query.tags {
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = i.id \
             AND t.deleted = 0 AND t.value = ?)",
        );
        args.push(Value::Text(tag.clone()));
    }
    for (col, op, t) in &query.times {
        let column = match *col {
            "created_at" => "i.created_at",
            // Never updated: v2 shows (and so compares) the creation time.
            _ => "COALESCE(i.updated_at, i.created_at)",
        };
        let _ = write!(sql, " AND {column} {} ?", op.sql());
        args.push(Value::Text(t.clone()));
    }
    if let Some(t) = &query.changes_since {
        sql.push_str(" AND (i.created_at >= ? OR i.updated_at >= ? OR i.deleted_at >= ?)");
        for _ in 0..3 {
            args.push(Value::Text(t.clone()));
        }
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
                args.push(Value::Text(me.to_string()));
                args.push(Value::Text(me.to_string()));
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
            args.push(Value::Text(me.to_string()));
            args.push(Value::Text(me.to_string()));
            let status = match scope.member_status {
                MemberStatusFilter::All => "",
                MemberStatusFilter::Only(st) => {
                    args.push(Value::Text(st.as_str().to_string()));
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
    tx: &Transaction<'_>,
    sql: &mut String,
    args: &mut Vec<Value>,
    order: &[(&str, bool)],
    marker: &str,
) -> Result<()> {
    let exprs: Vec<&str> = order.iter().map(|(e, _)| *e).collect();
    let values: Vec<Value> = tx.query_row(
        &format!("SELECT {} FROM images i WHERE i.id = ?1", exprs.join(", ")),
        [marker],
        |r| (0..exprs.len()).map(|n| r.get(n)).collect(),
    )?;
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

impl SqliteRegistry {
    /// [`Registry::update`], and [`Registry::update_if`] with `expected`: the status check
    /// and the update run in one `IMMEDIATE` transaction, so of two racing requests exactly
    /// one sees the expected status.
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
        self.write(|tx| {
            let old = match load(tx, id, false, true)? {
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
                && !live_members(tx, id)?.is_empty()
            {
                img.visibility = Visibility::Shared;
            }
            validate(&img, &patch, &self.quotas, &old)?;
            let now = timeutil::now();
            tx.execute(
                "UPDATE images SET name = ?2, disk_format = ?3, container_format = ?4, \
                 size = ?5, status = ?6, is_public = ?7, location = ?8, checksum = ?9, \
                 min_ram = ?10, min_disk = ?11, owner = ?12, updated_at = ?13, \
                 virtual_size = ?14, os_hash_algo = ?15, os_hash_value = ?16, \
                 visibility = ?17, protected = ?18, os_hidden = ?19 WHERE id = ?1",
                params![
                    id,
                    img.name,
                    img.disk_format,
                    img.container_format,
                    to_i64("size", img.size)?,
                    img.status.as_str(),
                    img.is_public(),
                    img.location,
                    img.checksum,
                    to_i64("min_ram", img.min_ram)?,
                    to_i64("min_disk", img.min_disk)?,
                    img.owner,
                    now,
                    opt_i64("virtual_size", img.virtual_size)?,
                    img.os_hash_algo,
                    img.os_hash_value,
                    img.visibility.as_str(),
                    img.protected,
                    img.os_hidden,
                ],
            )?;
            sync_tags(tx, id, &old.tags, &img.tags, &now)?;
            for name in old.properties.keys() {
                if !img.properties.contains_key(name) {
                    tx.execute(
                        "UPDATE image_properties SET deleted = 1, deleted_at = ?3, \
                         updated_at = ?3 WHERE image_id = ?1 AND name = ?2 AND deleted = 0",
                        params![id, name, now],
                    )?;
                }
            }
            for (name, value) in &img.properties {
                if old.properties.get(name) != Some(value) {
                    upsert_property(tx, id, name, value.as_deref(), &now)?;
                }
            }
            load(tx, id, false, true)?.ok_or_else(|| not_found(id))
        })
    }
}

impl Registry for SqliteRegistry {
    fn list(&self, ctx: &Context, query: &ListQuery) -> Result<Vec<Image>> {
        let mut order = vec![(sort_expr(query.sort_key)?, query.sort_asc)];
        for (key, asc) in &query.then_by {
            order.push((sort_expr(key)?, *asc));
        }
        // The id breaks ties, in the direction of the first key.
        order.push(("i.id", query.sort_asc));
        let limit = query.limit.min(self.limits.max);
        let with_deleted = query.changes_since.is_some();
        self.read(|tx| {
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
                let found = match load(tx, marker, with_deleted, false)? {
                    Some(img) => visible(tx, ctx, &img)?,
                    None => false,
                };
                if !found {
                    return Err(Error::bad_request(
                        "Invalid marker. Image could not be found.",
                    ));
                }
                push_after_marker(tx, &mut sql, &mut args, &order, marker)?;
            }
            let by: Vec<String> = order
                .iter()
                .map(|(e, asc)| format!("{e} {}", if *asc { "ASC" } else { "DESC" }))
                .collect();
            let _ = write!(sql, " ORDER BY {} LIMIT ?", by.join(", "));
            args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));

            let mut st = tx.prepare(&sql)?;
            let mut images = st
                .query_map(params_from_iter(args.iter()), row_to_image)?
                .collect::<rusqlite::Result<Vec<Image>>>()?;
            let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
            let mut props = load_properties(tx, &ids)?;
            let mut tags = load_tags(tx, &ids)?;
            for img in &mut images {
                img.properties = props.remove(&img.id).unwrap_or_default();
                img.tags = tags.remove(&img.id).unwrap_or_default();
            }
            Ok(images)
        })
    }

    fn get(&self, ctx: &Context, id: &ImageId) -> Result<Image> {
        let id = id.as_str();
        self.read(|tx| load_visible(tx, ctx, id))
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
        let size = to_i64("size", img.size)?;
        let min_ram = to_i64("min_ram", img.min_ram)?;
        let min_disk = to_i64("min_disk", img.min_disk)?;
        let virtual_size = opt_i64("virtual_size", img.virtual_size)?;
        self.write(|tx| {
            let exists = tx
                .query_row("SELECT 1 FROM images WHERE id = ?1", [&img.id], |_| Ok(()))
                .optional()?
                .is_some();
            if exists {
                return Err(Error::Duplicate(format!(
                    "An image with identifier {} already exists",
                    img.id
                )));
            }
            tx.execute(
                "INSERT INTO images (id, name, disk_format, container_format, size, status, \
                 is_public, location, checksum, min_ram, min_disk, owner, created_at, \
                 updated_at, deleted_at, deleted, virtual_size, os_hash_algo, os_hash_value, \
                 visibility, protected, os_hidden) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, NULL, NULL, 0, \
                 ?14, ?15, ?16, ?17, ?18, ?19)",
                params![
                    img.id,
                    img.name,
                    img.disk_format,
                    img.container_format,
                    size,
                    img.status.as_str(),
                    img.is_public(),
                    img.location,
                    img.checksum,
                    min_ram,
                    min_disk,
                    img.owner,
                    img.created_at,
                    virtual_size,
                    img.os_hash_algo,
                    img.os_hash_value,
                    img.visibility.as_str(),
                    img.protected,
                    img.os_hidden,
                ],
            )?;
            sync_tags(tx, &img.id, &[], &img.tags, &img.created_at)?;
            for (name, value) in &img.properties {
                upsert_property(tx, &img.id, name, value.as_deref(), &img.created_at)?;
            }
            load(tx, &img.id, false, true)?.ok_or_else(|| not_found(&img.id))
        })
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
        self.write(|tx| {
            let old = match load(tx, id, false, true)? {
                Some(img) if ctx.can_modify(&img) => img,
                _ => return Err(not_found(id)),
            };
            if old.protected {
                return Err(Error::Forbidden(format!(
                    "Image {id} is protected and cannot be deleted"
                )));
            }
            let now = timeutil::now();
            tx.execute(
                "UPDATE images SET deleted = 1, deleted_at = ?2, updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            for table in ["image_properties", "image_members", "image_tags"] {
                tx.execute(
                    &format!(
                        "UPDATE {table} SET deleted = 1, deleted_at = ?2, updated_at = ?2 \
                         WHERE image_id = ?1 AND deleted = 0"
                    ),
                    params![id, now],
                )?;
            }
            let mut img = load(tx, id, true, false)?.ok_or_else(|| not_found(id))?;
            img.properties = old.properties;
            img.tags = old.tags;
            Ok(img)
        })
    }

    fn members(&self, ctx: &Context, id: &ImageId) -> Result<Vec<Member>> {
        let id = id.as_str();
        self.read(|tx| {
            load_visible(tx, ctx, id)?;
            let mut st = tx.prepare(&format!(
                "SELECT {MEMBER_COLUMNS} FROM image_members \
                 WHERE image_id = ?1 AND deleted = 0 ORDER BY member LIMIT ?2"
            ))?;
            let cap = membership_listing_cap(&self.quotas, &self.limits);
            let members = st
                .query_map(params![id, cap], row_to_member)?
                .collect::<rusqlite::Result<Vec<Member>>>()?;
            Ok(members)
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
        self.write(|tx| {
            let img = check_sharable(tx, ctx, id)?;
            if membership(tx, id, member)?.is_none() {
                let live: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM image_members WHERE image_id = ?1 AND deleted = 0",
                    [id],
                    |r| r.get(0),
                )?;
                let live = usize::try_from(live).unwrap_or(usize::MAX);
                self.quotas.check_members(live, live.saturating_add(1))?;
            }
            let now = timeutil::now();
            share_if_private(tx, &img, &now)?;
            upsert_member(tx, id, member, can_share, &now)
        })
    }

    fn delete_member(&self, ctx: &Context, id: &ImageId, member: &str) -> Result<()> {
        let id = id.as_str();
        self.write(|tx| {
            check_sharable(tx, ctx, id)?;
            tx.execute(
                "UPDATE image_members SET deleted = 1, deleted_at = ?3, updated_at = ?3 \
                 WHERE image_id = ?1 AND member = ?2 AND deleted = 0",
                params![id, member, timeutil::now()],
            )?;
            Ok(())
        })
    }

    fn replace_members(&self, ctx: &Context, id: &ImageId, members: &[MemberSpec]) -> Result<()> {
        let id = id.as_str();
        self.write(|tx| {
            let img = check_sharable(tx, ctx, id)?;
            let now = timeutil::now();
            if !members.is_empty() {
                share_if_private(tx, &img, &now)?;
            }
            let keep: BTreeMap<&str, Option<bool>> = members
                .iter()
                .map(|m| (m.member_id.as_str(), m.can_share))
                .collect();
            let live = live_members(tx, id)?;
            self.quotas.check_members(live.len(), keep.len())?;
            for member in live.iter().filter(|m| !keep.contains_key(m.as_str())) {
                tx.execute(
                    "UPDATE image_members SET deleted = 1, deleted_at = ?3, updated_at = ?3 \
                     WHERE image_id = ?1 AND member = ?2",
                    params![id, member, now],
                )?;
            }
            for m in members {
                upsert_member(tx, id, &m.member_id, m.can_share, &now)?;
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
        self.read(|tx| {
            let mut st = tx.prepare(
                "SELECT m.image_id, m.can_share FROM image_members m \
                 JOIN images i ON i.id = m.image_id \
                 WHERE m.member = ?1 AND m.deleted = 0 AND i.deleted = 0 \
                 ORDER BY m.image_id LIMIT ?2",
            )?;
            let cap = membership_listing_cap(&self.quotas, &self.limits);
            let shared = st
                .query_map(params![member, cap], |r| {
                    Ok(SharedImage {
                        image_id: r.get(0)?,
                        can_share: r.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<SharedImage>>>()?;
            Ok(shared)
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
        self.write(|tx| {
            load_visible(tx, ctx, id)?;
            let n = tx.execute(
                "UPDATE image_members SET status = ?3, updated_at = ?4 \
                 WHERE image_id = ?1 AND member = ?2 AND deleted = 0",
                params![id, member, status.as_str(), timeutil::now()],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!(
                    "Member {member} of image {id} not found"
                )));
            }
            let m = tx.query_row(
                &format!(
                    "SELECT {MEMBER_COLUMNS} FROM image_members \
                     WHERE image_id = ?1 AND member = ?2 AND deleted = 0"
                ),
                params![id, member],
                row_to_member,
            )?;
            Ok(m)
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
mod tests;
