//! The SQLite schema, version by version. Timestamps are text, flags 0/1 integers.

/// Every migration, in order; `MIGRATIONS[i].version == i + 1`.
pub(super) const MIGRATIONS: [super::Migration; 7] = [
    super::Migration {
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
    super::Migration {
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
    super::Migration {
        version: 3,
        sql: "ALTER TABLE images ADD COLUMN virtual_size INTEGER;",
    },
    // The multihash of an image's data (Glance's os_hash_algo, os_hash_value), computed by
    // every upload; NULL (unknown) for every image stored before.
    super::Migration {
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
    super::Migration {
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
    // Upload and scrub leases: the node that holds an image's upload (`saving`) or its
    // scrub (`pending_delete`), and when its claim lapses unless renewed, so that several
    // glance-api and glance-scrubber nodes can share one database.
    super::Migration {
        version: 6,
        sql: "
ALTER TABLE images ADD COLUMN lease_owner TEXT;
ALTER TABLE images ADD COLUMN lease_expires_at TEXT;
CREATE INDEX ix_images_status_lease ON images (status, lease_expires_at);
",
    },
    // A change counter that every write to an image, its properties or its tags moves, in
    // the writer's own transaction (triggers, so writes of any program count): a process
    // may keep images it has read while the counter stands still (`registry::memo`).
    super::Migration {
        version: 7,
        sql: "
CREATE TABLE registry_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n INTEGER NOT NULL
);
INSERT INTO registry_changes (id, n) VALUES (1, 0);
CREATE TRIGGER images_insert_counted AFTER INSERT ON images BEGIN UPDATE registry_changes SET n = n + 1; END;
CREATE TRIGGER images_update_counted AFTER UPDATE ON images BEGIN UPDATE registry_changes SET n = n + 1; END;
CREATE TRIGGER images_delete_counted AFTER DELETE ON images BEGIN UPDATE registry_changes SET n = n + 1; END;
CREATE TRIGGER image_properties_insert_counted AFTER INSERT ON image_properties BEGIN UPDATE registry_changes SET n = n + 1; END;
CREATE TRIGGER image_properties_update_counted AFTER UPDATE ON image_properties BEGIN UPDATE registry_changes SET n = n + 1; END;
CREATE TRIGGER image_properties_delete_counted AFTER DELETE ON image_properties BEGIN UPDATE registry_changes SET n = n + 1; END;
CREATE TRIGGER image_tags_insert_counted AFTER INSERT ON image_tags BEGIN UPDATE registry_changes SET n = n + 1; END;
CREATE TRIGGER image_tags_update_counted AFTER UPDATE ON image_tags BEGIN UPDATE registry_changes SET n = n + 1; END;
CREATE TRIGGER image_tags_delete_counted AFTER DELETE ON image_tags BEGIN UPDATE registry_changes SET n = n + 1; END;
",
    },
];
