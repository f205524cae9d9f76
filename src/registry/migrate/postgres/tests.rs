//! The PostgreSQL schema, applied to fresh databases on the test server.

use std::collections::BTreeSet;

use super::MIGRATIONS;
use crate::error::Error;
use crate::registry::sql::{Conn, Value, testdb};
use crate::sql_args;

/// The SQLite schema at its latest version: (table, column) pairs and index names.
fn sqlite_schema() -> (BTreeSet<(String, String)>, BTreeSet<String>) {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    for m in &super::super::sqlite::MIGRATIONS {
        conn.execute_batch(m.sql).unwrap();
    }
    let mut st = conn
        .prepare(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table'",
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

fn apply(conn: &mut dyn Conn, versions: std::ops::RangeInclusive<u32>) {
    for m in MIGRATIONS.iter().filter(|m| versions.contains(&m.version)) {
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

#[test]
fn versions_are_numbered_in_order() {
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version as usize, i + 1);
    }
}

#[test]
fn all_versions_apply_and_mirror_sqlite() {
    let Some(db) = testdb::postgres("migrate::postgres::all_versions") else {
        return;
    };
    let mut c = db.connect();
    apply(c.as_mut(), 1..=6);

    // The same tables and columns as SQLite.
    let rows = c
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, collation_name::text \
             FROM information_schema.columns WHERE table_schema = 'public'",
            &[],
        )
        .unwrap();
    let columns: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.text(0).unwrap(), r.text(1).unwrap()))
        .collect();
    let (sqlite_columns, sqlite_indexes) = sqlite_schema();
    let extra: Vec<_> = columns.difference(&sqlite_columns).collect();
    assert!(extra.is_empty(), "{extra:?}");
    let missing: Vec<_> = sqlite_columns.difference(&columns).collect();
    assert!(missing.is_empty(), "{missing:?}");
    // Text compares byte-wise; flags are SMALLINT, never BOOLEAN.
    for r in &rows {
        let (table, column, ty) = (r.text(0).unwrap(), r.text(1).unwrap(), r.text(2).unwrap());
        if ty == "text" || ty == "character varying" {
            assert_eq!(
                r.opt_text(3).unwrap().as_deref(),
                Some("C"),
                "{table}.{column}"
            );
        }
        assert_ne!(ty, "boolean", "{table}.{column}");
        if [
            "deleted",
            "is_public",
            "protected",
            "os_hidden",
            "can_share",
        ]
        .contains(&column.as_str())
        {
            assert_eq!(ty, "smallint", "{table}.{column}");
        }
        if column.ends_with("_at") {
            assert_eq!(ty, "character varying", "{table}.{column}");
        }
    }

    // SQLite's index names, and version 6's.
    let indexes: BTreeSet<String> = c
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'",
            &[],
        )
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
    // A 64 KiB value that does not compress still fits the (name, value) index.
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

#[test]
fn version_5_derives_visibility() {
    let Some(db) = testdb::postgres("migrate::postgres::version_5") else {
        return;
    };
    let mut c = db.connect();
    apply(c.as_mut(), 1..=4);
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
    apply(c.as_mut(), 5..=6);
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
