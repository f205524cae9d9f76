//! The schema tests both servers run (PostgreSQL and MySQL), each on a fresh database on
//! its test server: the six migrations apply and give SQLite's tables, columns and indexes,
//! with byte-wise text, integer flags and text timestamps; rows go in as the registry
//! writes them; version 5 derives the visibility of existing images.
//!
//! What differs between the servers (type names, where columns, collations and indexes are
//! listed) is a [`ServerSchema`]; [`server_schema_tests!`] makes each backend's `#[test]`s.

use std::collections::BTreeSet;

use super::Migration;
use crate::error::Error;
use crate::registry::sql::testdb::ScratchDb;
use crate::registry::sql::{Conn, Value};
use crate::sql_args;

/// What the schema tests need to know of one server.
pub(super) struct ServerSchema {
    /// `postgres` or `mysql`, for the scratch databases' test names.
    pub(super) name: &'static str,
    /// Its migrations.
    pub(super) migrations: &'static [Migration],
    /// A new scratch database on its test server ([`crate::registry::sql::testdb`]).
    pub(super) scratch: fn(&str) -> Option<ScratchDb>,
    /// The database's columns: rows of table, column, data type and collation (text).
    pub(super) columns_sql: &'static str,
    /// The database's index names (text).
    pub(super) indexes_sql: &'static str,
    /// The data types of text columns, which must have `collation`.
    pub(super) text_types: &'static [&'static str],
    /// The byte-wise collation of text columns.
    pub(super) collation: &'static str,
    /// The data type of flags (`deleted`, `is_public`, ...).
    pub(super) flag_type: &'static str,
    /// The data type of timestamps (`*_at`).
    pub(super) time_type: &'static str,
    /// Data types no column may have.
    pub(super) never_types: &'static [&'static str],
}

/// The three schema tests of a backend, on its [`ServerSchema`] (a `const` in scope).
macro_rules! server_schema_tests {
    ($schema:expr) => {
        #[test]
        fn versions_are_numbered_in_order() {
            $crate::registry::migrate::server_tests::versions_are_numbered_in_order(&$schema);
        }

        #[test]
        fn all_versions_apply_and_mirror_sqlite() {
            $crate::registry::migrate::server_tests::all_versions_apply_and_mirror_sqlite(&$schema);
        }

        #[test]
        fn version_5_derives_visibility() {
            $crate::registry::migrate::server_tests::version_5_derives_visibility(&$schema);
        }
    };
}
pub(super) use server_schema_tests;

/// The SQLite schema at its latest version: (table, column) pairs and index names, but
/// `registry_changes`, the change counter only an embedded database has (version 7 is empty
/// on the servers).
fn sqlite_schema() -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    for m in &super::sqlite::MIGRATIONS {
        conn.execute_batch(m.sql).unwrap();
    }
    let mut st = conn
        .prepare(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name <> 'registry_changes'",
        )
        .unwrap();
    let columns = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut st = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        .unwrap();
    let indexes = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (columns, indexes)
}

fn apply(conn: &mut dyn Conn, migrations: &[Migration], versions: std::ops::RangeInclusive<u32>) {
    for m in migrations.iter().filter(|m| versions.contains(&m.version)) {
        if let Err(e) = conn.batch(m.sql) {
            panic!("migration {}: {e}", m.version);
        }
    }
}

fn insert_image(c: &mut dyn Conn, id: &str, name: &str, is_public: bool) {
    c.execute(
        "INSERT INTO images (id, name, status, is_public, created_at) VALUES (?, ?, ?, ?, ?)",
        &sql_args![id, name, "active", is_public, "2024-01-02T03:04:05.000006"],
    )
    .unwrap();
}

pub(super) fn versions_are_numbered_in_order(s: &ServerSchema) {
    for (i, m) in s.migrations.iter().enumerate() {
        assert_eq!(m.version as usize, i + 1);
    }
}

pub(super) fn all_versions_apply_and_mirror_sqlite(s: &ServerSchema) {
    let Some(db) = (s.scratch)(&format!("migrate::{}::all_versions", s.name)) else {
        return;
    };
    let mut c = db.connect();
    apply(c.as_mut(), s.migrations, 1..=super::LATEST);

    // The same tables and columns as SQLite.
    let rows = c.query(s.columns_sql, &[]).unwrap();
    let columns: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.text(0).unwrap(), r.text(1).unwrap()))
        .collect();
    let (sqlite_columns, sqlite_indexes) = sqlite_schema();
    let extra: Vec<_> = columns.difference(&sqlite_columns).collect();
    assert!(extra.is_empty(), "{extra:?}");
    let missing: Vec<_> = sqlite_columns.difference(&columns).collect();
    assert!(missing.is_empty(), "{missing:?}");
    // Text compares byte-wise; flags are small integers, never BOOLEAN; timestamps text.
    for r in &rows {
        let (table, column, ty) = (r.text(0).unwrap(), r.text(1).unwrap(), r.text(2).unwrap());
        if s.text_types.contains(&ty.as_str()) {
            assert_eq!(
                r.opt_text(3).unwrap().as_deref(),
                Some(s.collation),
                "{table}.{column}"
            );
        }
        for never in s.never_types {
            assert_ne!(ty, *never, "{table}.{column}");
        }
        if [
            "deleted",
            "is_public",
            "protected",
            "os_hidden",
            "can_share",
        ]
        .contains(&column.as_str())
        {
            assert_eq!(ty, s.flag_type, "{table}.{column}");
        }
        if column.ends_with("_at") {
            assert_eq!(ty, s.time_type, "{table}.{column}");
        }
    }

    // SQLite's index names, and version 6's.
    let indexes: BTreeSet<String> = c
        .query(s.indexes_sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect();
    let missing: Vec<_> = sqlite_indexes.difference(&indexes).collect();
    assert!(missing.is_empty(), "{missing:?} of {indexes:?}");
    assert!(indexes.contains("ix_images_status_lease"));

    // Rows as the registry writes them.
    insert_image(c.as_mut(), "img-1", "a", true);
    insert_image(c.as_mut(), "img-2", "B", false);
    // A 64 KiB value that does not compress (more than a MySQL TEXT holds) still fits the
    // (name, value) index, which holds the value's first 255 characters.
    let mut x: u32 = 1;
    let value: String = (0..65_536)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(b'!' + ((x >> 16) % 90) as u8)
        })
        .collect();
    c.execute(
        "INSERT INTO image_properties (image_id, name, value, created_at) VALUES (?, ?, ?, ?)",
        &sql_args!["img-1", "big", value.as_str(), "2024-01-02T03:04:05.000006"],
    )
    .unwrap();
    let r = c
        .query_one(
            "SELECT value FROM image_properties WHERE name = ? AND image_id = ?",
            &sql_args!["big", "img-1"],
        )
        .unwrap();
    assert_eq!(r.text(0).unwrap(), value);
    let e = c
        .execute(
            "INSERT INTO image_properties (image_id, name, value, created_at) VALUES (?, ?, ?, ?)",
            &sql_args!["img-1", "big", "again", "2024-01-02T03:04:05.000006"],
        )
        .unwrap_err();
    assert!(matches!(e, Error::Duplicate(_)), "{e}");
    for (sql, arg) in [
        (
            "INSERT INTO image_members (image_id, member, created_at) VALUES (?, ?, ?)",
            "tenant",
        ),
        (
            "INSERT INTO image_tags (image_id, value, created_at) VALUES (?, ?, ?)",
            "tag",
        ),
    ] {
        c.execute(sql, &sql_args!["img-1", arg, "2024-01-02T03:04:05.000006"])
            .unwrap();
        let e = c
            .execute(sql, &sql_args!["img-1", arg, "2024-01-02T03:04:05.000006"])
            .unwrap_err();
        assert!(matches!(e, Error::Duplicate(_)), "{sql}: {e}");
        let e = c
            .execute(
                sql,
                &sql_args!["no-such-image", arg, "2024-01-02T03:04:05.000006"],
            )
            .unwrap_err();
        assert!(matches!(e, Error::Db(_)), "{sql}: {e}");
    }
    let r = c
        .query_one(
            "SELECT m.status, m.can_share, i.visibility, i.protected, i.os_hidden, i.lease_owner \
             FROM images i JOIN image_members m ON m.image_id = i.id WHERE i.id = ?",
            &sql_args!["img-1"],
        )
        .unwrap();
    assert_eq!(
        r.0,
        [
            Value::Text("pending".into()),
            Value::Int(0),
            Value::Text("private".into()),
            Value::Int(0),
            Value::Int(0),
            Value::Null
        ]
    );
    // Byte order: 'B' (0x42) before 'a' (0x61), whatever the server's locale.
    let names: Vec<String> = c
        .query("SELECT name FROM images ORDER BY name", &[])
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect();
    assert_eq!(names, ["B", "a"]);
}

pub(super) fn version_5_derives_visibility(s: &ServerSchema) {
    let Some(db) = (s.scratch)(&format!("migrate::{}::version_5", s.name)) else {
        return;
    };
    let mut c = db.connect();
    apply(c.as_mut(), s.migrations, 1..=4);
    insert_image(c.as_mut(), "public", "p", true);
    insert_image(c.as_mut(), "shared", "s", false);
    insert_image(c.as_mut(), "unshared", "u", false);
    insert_image(c.as_mut(), "private", "v", false);
    for (image, deleted) in [("shared", 0i64), ("unshared", 1)] {
        c.execute(
            "INSERT INTO image_members (image_id, member, created_at, deleted) \
             VALUES (?, ?, ?, ?)",
            &sql_args![image, "tenant", "2024-01-02T03:04:05.000006", deleted],
        )
        .unwrap();
    }
    apply(c.as_mut(), s.migrations, 5..=6);
    let got: Vec<(String, String)> = c
        .query("SELECT id, visibility FROM images ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.text(0).unwrap(), r.text(1).unwrap()))
        .collect();
    let want = [
        ("private", "private"),
        ("public", "public"),
        ("shared", "shared"),
        ("unshared", "private"),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
}
