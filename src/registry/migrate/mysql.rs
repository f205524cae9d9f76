//! The registry schema on MySQL and MariaDB: the same six versions as on SQLite, step for
//! step.
//!
//! Type choices, so that every statement of the registry means the same as on SQLite:
//!
//! - Tables are `ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`: transactions
//!   and row locks, all of Unicode, and byte-wise comparison as on SQLite (MySQL's default
//!   collations ignore case and trailing spaces, which would make `Image` and `image` one
//!   property name, and sort unlike the other databases).
//! - Image ids are `VARCHAR(64)` (ids are at most 64 characters). Timestamps are
//!   `VARCHAR(32)` text, `YYYY-MM-DDTHH:MM:SS.ffffff`, never `DATETIME`: text order is time
//!   order, and the registry reads and writes them as text on every backend.
//! - Flags (`is_public`, `deleted`, `protected`, `os_hidden`, `can_share`) are `TINYINT` 0/1.
//! - Sizes and the other numbers are `BIGINT` (SQLite's INTEGER is 64 bits).
//! - Names, owners, members, tags, property names: `VARCHAR(255)` (the API's limits);
//!   statuses `VARCHAR(30)`; the image name and its location are `TEXT`; property values
//!   are `MEDIUMTEXT`, as they may hold 65536 bytes, one more than `TEXT` holds.
//! - Row ids of properties, members and tags are `BIGINT AUTO_INCREMENT PRIMARY KEY`.
//! - Indexes have SQLite's names. The (name, value) index of properties indexes the first
//!   255 characters of the value (a `MEDIUMTEXT` can only be indexed by a prefix). The
//!   unique constraints, unnamed on SQLite, are named as on PostgreSQL
//!   (`<table>_<columns>_key`).
//!
//! Statements are separated by `;`. DDL commits implicitly on MySQL: a migration that
//! fails half-way leaves the statements before the failure applied.

/// Every migration, in order; `MIGRATIONS[i].version == i + 1`.
// Read by the tests only until migrate.rs runs the server migrations.
pub(super) const MIGRATIONS: [super::Migration; 7] = [
    super::Migration {
        version: 1,
        sql: "
CREATE TABLE images (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    name TEXT,
    disk_format VARCHAR(64),
    container_format VARCHAR(64),
    size BIGINT NOT NULL DEFAULT 0,
    status VARCHAR(30) NOT NULL,
    is_public TINYINT NOT NULL DEFAULT 0,
    location TEXT,
    checksum VARCHAR(255),
    min_ram BIGINT NOT NULL DEFAULT 0,
    min_disk BIGINT NOT NULL DEFAULT 0,
    owner VARCHAR(255),
    created_at VARCHAR(32) NOT NULL,
    updated_at VARCHAR(32),
    deleted_at VARCHAR(32),
    deleted TINYINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE image_properties (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    image_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    value MEDIUMTEXT,
    created_at VARCHAR(32) NOT NULL,
    updated_at VARCHAR(32),
    deleted_at VARCHAR(32),
    deleted TINYINT NOT NULL DEFAULT 0,
    CONSTRAINT image_properties_image_id_name_key UNIQUE (image_id, name),
    FOREIGN KEY (image_id) REFERENCES images(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
",
    },
    super::Migration {
        version: 2,
        sql: "
CREATE TABLE image_members (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    image_id VARCHAR(64) NOT NULL,
    member VARCHAR(255) NOT NULL,
    can_share TINYINT NOT NULL DEFAULT 0,
    created_at VARCHAR(32) NOT NULL,
    updated_at VARCHAR(32),
    deleted_at VARCHAR(32),
    deleted TINYINT NOT NULL DEFAULT 0,
    CONSTRAINT image_members_image_id_member_key UNIQUE (image_id, member),
    FOREIGN KEY (image_id) REFERENCES images(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX ix_images_deleted_status ON images (deleted, status);
CREATE INDEX ix_images_created_at ON images (created_at);
CREATE INDEX ix_images_updated_at ON images (updated_at);
CREATE INDEX ix_images_is_public ON images (is_public);
CREATE INDEX ix_images_owner ON images (owner);
CREATE INDEX ix_image_properties_name_value ON image_properties (name, value(255));
CREATE INDEX ix_image_members_member ON image_members (member);
",
    },
    super::Migration {
        version: 3,
        sql: "ALTER TABLE images ADD COLUMN virtual_size BIGINT;",
    },
    super::Migration {
        version: 4,
        sql: "
ALTER TABLE images ADD COLUMN os_hash_algo VARCHAR(64);
ALTER TABLE images ADD COLUMN os_hash_value VARCHAR(128);
",
    },
    // MySQL refuses a subquery on the table being updated (error 1093), not one on another
    // table such as image_members: the second UPDATE is the same as on SQLite.
    super::Migration {
        version: 5,
        sql: "
ALTER TABLE images ADD COLUMN visibility VARCHAR(30) NOT NULL DEFAULT 'private';
UPDATE images SET visibility = 'public' WHERE is_public = 1;
UPDATE images SET visibility = 'shared' WHERE is_public = 0 AND EXISTS (
    SELECT 1 FROM image_members m WHERE m.image_id = images.id AND m.deleted = 0);
ALTER TABLE images ADD COLUMN protected TINYINT NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN os_hidden TINYINT NOT NULL DEFAULT 0;
ALTER TABLE image_members ADD COLUMN status VARCHAR(30) NOT NULL DEFAULT 'pending';
CREATE TABLE image_tags (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    image_id VARCHAR(64) NOT NULL,
    value VARCHAR(255) NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    updated_at VARCHAR(32),
    deleted_at VARCHAR(32),
    deleted TINYINT NOT NULL DEFAULT 0,
    CONSTRAINT image_tags_image_id_value_key UNIQUE (image_id, value),
    FOREIGN KEY (image_id) REFERENCES images(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX ix_image_tags_value ON image_tags (value);
CREATE INDEX ix_images_visibility ON images (visibility);
CREATE INDEX ix_images_deleted_created_at_id ON images (deleted, created_at, id);
",
    },
    // The node holding an image's upload (status saving) or scrub (status pending_delete),
    // and when its lease lapses, so that another node can take over a lapsed one.
    super::Migration {
        version: 6,
        sql: "
ALTER TABLE images ADD COLUMN lease_owner VARCHAR(255);
ALTER TABLE images ADD COLUMN lease_expires_at VARCHAR(32);
CREATE INDEX ix_images_status_lease ON images (status, lease_expires_at);
",
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
