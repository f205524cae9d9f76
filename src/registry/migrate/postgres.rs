//! The registry schema on PostgreSQL: the same six versions as on SQLite, step for step.
//!
//! Type choices, so that every statement of the registry means the same as on SQLite:
//!
//! - Text columns are `COLLATE "C"`: byte order, as SQLite compares, whatever the
//!   database's default collation (listings sorted by name, and `=` on ids, owners and
//!   property names, must not depend on the server's locale).
//! - Image ids are `VARCHAR(64)` (ids are at most 64 characters). Timestamps are
//!   `VARCHAR(32)` text, `YYYY-MM-DDTHH:MM:SS.ffffff`, never `TIMESTAMP`: text order is time
//!   order, and the registry reads and writes them as text on every backend.
//! - Flags (`is_public`, `deleted`, `protected`, `os_hidden`, `can_share`) are `SMALLINT` 0/1,
//!   never `BOOLEAN`: the registry compares them with `= 0` and binds integers.
//! - Sizes and the other numbers are `BIGINT` (SQLite's INTEGER is 64 bits).
//! - Names, owners, members, tags, property names: `VARCHAR(255)` (the API's limits);
//!   statuses `VARCHAR(30)`; the image name, its location and property values (up to
//!   65536 bytes) are `TEXT`.
//! - Row ids of properties, members and tags are `BIGSERIAL PRIMARY KEY` (SQLite's
//!   `INTEGER PRIMARY KEY`).
//! - Indexes have SQLite's names. The (name, value) index of properties holds the first 255
//!   characters of the value: a B-tree entry is limited to about 2.7 kB, and a value may be
//!   64 kB; lookups by name (and value) still use it. The unique constraints, unnamed on
//!   SQLite, get PostgreSQL's own default names (`<table>_<columns>_key`).
//!
//! Statements are separated by `;`. DDL is transactional on PostgreSQL: run in one
//! transaction (as one multi-statement query is), a migration applies whole or not at all.

/// Every migration, in order; `MIGRATIONS[i].version == i + 1`.
// Read by the tests only until migrate.rs runs the server migrations.
pub(super) const MIGRATIONS: [super::Migration; 7] = [
    super::Migration {
        version: 1,
        sql: r#"
CREATE TABLE images (
    id VARCHAR(64) COLLATE "C" PRIMARY KEY NOT NULL,
    name TEXT COLLATE "C",
    disk_format VARCHAR(64) COLLATE "C",
    container_format VARCHAR(64) COLLATE "C",
    size BIGINT NOT NULL DEFAULT 0,
    status VARCHAR(30) COLLATE "C" NOT NULL,
    is_public SMALLINT NOT NULL DEFAULT 0,
    location TEXT COLLATE "C",
    checksum VARCHAR(255) COLLATE "C",
    min_ram BIGINT NOT NULL DEFAULT 0,
    min_disk BIGINT NOT NULL DEFAULT 0,
    owner VARCHAR(255) COLLATE "C",
    created_at VARCHAR(32) COLLATE "C" NOT NULL,
    updated_at VARCHAR(32) COLLATE "C",
    deleted_at VARCHAR(32) COLLATE "C",
    deleted SMALLINT NOT NULL DEFAULT 0
);
CREATE TABLE image_properties (
    id BIGSERIAL PRIMARY KEY,
    image_id VARCHAR(64) COLLATE "C" NOT NULL REFERENCES images(id),
    name VARCHAR(255) COLLATE "C" NOT NULL,
    value TEXT COLLATE "C",
    created_at VARCHAR(32) COLLATE "C" NOT NULL,
    updated_at VARCHAR(32) COLLATE "C",
    deleted_at VARCHAR(32) COLLATE "C",
    deleted SMALLINT NOT NULL DEFAULT 0,
    CONSTRAINT image_properties_image_id_name_key UNIQUE (image_id, name)
);
"#,
    },
    super::Migration {
        version: 2,
        sql: r#"
CREATE TABLE image_members (
    id BIGSERIAL PRIMARY KEY,
    image_id VARCHAR(64) COLLATE "C" NOT NULL REFERENCES images(id),
    member VARCHAR(255) COLLATE "C" NOT NULL,
    can_share SMALLINT NOT NULL DEFAULT 0,
    created_at VARCHAR(32) COLLATE "C" NOT NULL,
    updated_at VARCHAR(32) COLLATE "C",
    deleted_at VARCHAR(32) COLLATE "C",
    deleted SMALLINT NOT NULL DEFAULT 0,
    CONSTRAINT image_members_image_id_member_key UNIQUE (image_id, member)
);
CREATE INDEX ix_images_deleted_status ON images (deleted, status);
CREATE INDEX ix_images_created_at ON images (created_at);
CREATE INDEX ix_images_updated_at ON images (updated_at);
CREATE INDEX ix_images_is_public ON images (is_public);
CREATE INDEX ix_images_owner ON images (owner);
CREATE INDEX ix_image_properties_name_value ON image_properties (name, left(value, 255));
CREATE INDEX ix_image_members_member ON image_members (member);
"#,
    },
    super::Migration {
        version: 3,
        sql: "ALTER TABLE images ADD COLUMN virtual_size BIGINT;",
    },
    super::Migration {
        version: 4,
        sql: r#"
ALTER TABLE images ADD COLUMN os_hash_algo VARCHAR(64) COLLATE "C";
ALTER TABLE images ADD COLUMN os_hash_value VARCHAR(128) COLLATE "C";
"#,
    },
    super::Migration {
        version: 5,
        sql: r#"
ALTER TABLE images ADD COLUMN visibility VARCHAR(30) COLLATE "C" NOT NULL DEFAULT 'private';
UPDATE images SET visibility = 'public' WHERE is_public = 1;
UPDATE images SET visibility = 'shared' WHERE is_public = 0 AND EXISTS (
    SELECT 1 FROM image_members m WHERE m.image_id = images.id AND m.deleted = 0);
ALTER TABLE images ADD COLUMN protected SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN os_hidden SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE image_members ADD COLUMN status VARCHAR(30) COLLATE "C" NOT NULL DEFAULT 'pending';
CREATE TABLE image_tags (
    id BIGSERIAL PRIMARY KEY,
    image_id VARCHAR(64) COLLATE "C" NOT NULL REFERENCES images(id),
    value VARCHAR(255) COLLATE "C" NOT NULL,
    created_at VARCHAR(32) COLLATE "C" NOT NULL,
    updated_at VARCHAR(32) COLLATE "C",
    deleted_at VARCHAR(32) COLLATE "C",
    deleted SMALLINT NOT NULL DEFAULT 0,
    CONSTRAINT image_tags_image_id_value_key UNIQUE (image_id, value)
);
CREATE INDEX ix_image_tags_value ON image_tags (value);
CREATE INDEX ix_images_visibility ON images (visibility);
CREATE INDEX ix_images_deleted_created_at_id ON images (deleted, created_at, id);
"#,
    },
    // The node holding an image's upload (status saving) or scrub (status pending_delete),
    // and when its lease lapses, so that another node can take over a lapsed one.
    super::Migration {
        version: 6,
        sql: r#"
ALTER TABLE images ADD COLUMN lease_owner VARCHAR(255) COLLATE "C";
ALTER TABLE images ADD COLUMN lease_expires_at VARCHAR(32) COLLATE "C";
CREATE INDEX ix_images_status_lease ON images (status, lease_expires_at);
"#,
    },
    // Nothing: version 7 adds SQLite's change counter, which only an embedded database
    // needs (`registry::memo`); nodes sharing a database server read it each time.
    super::Migration {
        version: 7,
        sql: "",
    },
];

#[cfg(test)]
mod tests;
