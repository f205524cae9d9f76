//! Numbered SQL migrations of the registry database, tracked in `PRAGMA user_version`.
//!
//! Version 0 is an empty (or foreign) database; migration `n` takes the schema from `n - 1`
//! to `n`. Each migration runs in its own `IMMEDIATE` transaction together with the
//! `user_version` bump, so a failed migration leaves the database at the previous version
//! and two processes migrating at once do not apply a step twice (the version is re-read
//! inside the transaction). Downgrades are not supported.
//!
//! The schema follows Glance's tables (spec §2): `images`, `image_properties` and
//! `image_members`, with soft-delete columns on each. Timestamps are stored as
//! `YYYY-MM-DDTHH:MM:SS.ffffff` text (see [`crate::timeutil`]), so text order is time order.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

mod mysql;
mod postgres;

/// One migration: the version it produces and the SQL that gets there from the one before.
struct Migration {
    version: u32,
    sql: &'static str,
}

/// Every migration, in order; `MIGRATIONS[i].version == i + 1`.
const MIGRATIONS: [Migration; 5] = [
    Migration {
        version: 1,
        sql: "
CREATE TABLE images (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT,
    disk_format TEXT,
    container_format TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    is_public INTEGER NOT NULL DEFAULT 0,
    location TEXT,
    checksum TEXT,
    min_ram INTEGER NOT NULL DEFAULT 0,
    min_disk INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    deleted_at TEXT,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE image_properties (
    id INTEGER PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id),
    name TEXT NOT NULL,
    value TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    deleted_at TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (image_id, name)
);
",
    },
    Migration {
        version: 2,
        sql: "
CREATE TABLE image_members (
    id INTEGER PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id),
    member TEXT NOT NULL,
    can_share INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    deleted_at TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (image_id, member)
);
CREATE INDEX ix_images_deleted_status ON images (deleted, status);
CREATE INDEX ix_images_created_at ON images (created_at);
CREATE INDEX ix_images_updated_at ON images (updated_at);
CREATE INDEX ix_images_is_public ON images (is_public);
CREATE INDEX ix_images_owner ON images (owner);
CREATE INDEX ix_image_properties_name_value ON image_properties (name, value);
CREATE INDEX ix_image_members_member ON image_members (member);
",
    },
    // The size of the disk an image's data describes, learned by inspecting the data;
    // NULL (unknown) for every image stored before.
    Migration {
        version: 3,
        sql: "ALTER TABLE images ADD COLUMN virtual_size INTEGER;",
    },
    // The multihash of an image's data (Glance's os_hash_algo, os_hash_value), computed by
    // every upload; NULL (unknown) for every image stored before.
    Migration {
        version: 4,
        sql: "
ALTER TABLE images ADD COLUMN os_hash_algo TEXT;
ALTER TABLE images ADD COLUMN os_hash_value TEXT;
",
    },
    // What the images API v2 needs: visibility (public images stay public; a private image
    // with live members becomes `shared`, the others `private`, as Glance's own migration
    // did), protected, os_hidden, member status and tags. `is_public` stays, kept equal to
    // `visibility = 'public'` by every write. The (deleted, created_at, id) index serves the
    // default listing order of both APIs from the index, LIMIT rows at a time, instead of
    // sorting every live image (a page of 100 of 10,000 images: 16 ms to 0.3 ms).
    Migration {
        version: 5,
        sql: "
ALTER TABLE images ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private';
UPDATE images SET visibility = 'public' WHERE is_public = 1;
UPDATE images SET visibility = 'shared' WHERE is_public = 0 AND EXISTS (
    SELECT 1 FROM image_members m WHERE m.image_id = images.id AND m.deleted = 0);
ALTER TABLE images ADD COLUMN protected INTEGER NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN os_hidden INTEGER NOT NULL DEFAULT 0;
ALTER TABLE image_members ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
CREATE TABLE image_tags (
    id INTEGER PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id),
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    deleted_at TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (image_id, value)
);
CREATE INDEX ix_image_tags_value ON image_tags (value);
CREATE INDEX ix_images_visibility ON images (visibility);
CREATE INDEX ix_images_deleted_created_at_id ON images (deleted, created_at, id);
",
    },
];

/// The schema version this program needs (and the highest it knows).
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// The database's schema version (`PRAGMA user_version`; 0 for a fresh database).
pub fn version(conn: &Connection) -> Result<u32> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    u32::try_from(v).map_err(|_| Error::Db(format!("invalid schema version {v} in database")))
}

/// Migrates the database up to `target` (default [`LATEST`]); returns `(from, to)`.
///
/// A target above [`LATEST`], or below the current version (a downgrade), is a `Config`
/// error; so is a database already newer than this program.
pub fn sync(conn: &mut Connection, target: Option<u32>) -> Result<(u32, u32)> {
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
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > from && m.version <= target)
    {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have applied this step while we waited for the lock.
        if version(&tx)? >= m.version {
            continue;
        }
        tx.execute_batch(m.sql)
            .map_err(|e| Error::Db(format!("schema migration {} failed: {e}", m.version)))?;
        tx.pragma_update(None, "user_version", m.version)?;
        tx.commit()?;
    }
    Ok((from, version(conn)?))
}

#[cfg(test)]
mod tests;
