use super::*;
use crate::registry::sql::sqlite::{SqliteConn, SqliteSettings};

fn tables(conn: &SqliteConn) -> Vec<String> {
    let mut st = conn
        .raw()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<Vec<String>>>()
        .unwrap()
}

fn file_db() -> (tempfile::TempDir, SqliteConn) {
    let dir = tempfile::tempdir().unwrap();
    let conn = SqliteConn::open(
        &dir.path().join("registry.db"),
        true,
        SqliteSettings::default(),
    )
    .unwrap();
    (dir, conn)
}

#[test]
fn versions_are_consecutive() {
    for (i, m) in sqlite::MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version as usize, i + 1);
    }
    const { assert!(LATEST >= 2) };
}

#[test]
fn fresh_to_latest() {
    let (_dir, mut conn) = file_db();
    assert_eq!(version(&mut conn).unwrap(), 0);
    assert_eq!(sync(&mut conn, None).unwrap(), (0, LATEST));
    assert_eq!(version(&mut conn).unwrap(), LATEST);
    assert_eq!(
        tables(&conn),
        vec![
            "image_members",
            "image_properties",
            "image_tags",
            "images",
            "registry_changes"
        ]
    );
    // Idempotent.
    assert_eq!(sync(&mut conn, None).unwrap(), (LATEST, LATEST));
}

#[test]
fn previous_to_latest_keeps_data() {
    let (_dir, mut conn) = file_db();
    assert_eq!(sync(&mut conn, Some(LATEST - 1)).unwrap(), (0, LATEST - 1));
    assert_eq!(version(&mut conn).unwrap(), LATEST - 1);
    conn.raw().execute(
        "INSERT INTO images (id, status, created_at) VALUES ('a', 'active', '2011-09-21T00:00:00.000000')",
        [],
    )
    .unwrap();
    conn.raw().execute(
        "INSERT INTO image_properties (image_id, name, value, created_at) VALUES ('a', 'os', 'linux', '2011-09-21T00:00:00.000000')",
        [],
    )
    .unwrap();
    assert_eq!(sync(&mut conn, None).unwrap(), (LATEST - 1, LATEST));
    let n: i64 = conn
        .raw()
        .query_row(
            "SELECT count(*) FROM images i JOIN image_properties p ON p.image_id = i.id",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
    conn.raw().execute(
        "INSERT INTO image_members (image_id, member, created_at) VALUES ('a', 't', '2011-09-21T00:00:00.000000')",
        [],
    )
    .unwrap();
}

#[test]
fn migration_3_adds_an_unknown_virtual_size() {
    let (_dir, mut conn) = file_db();
    assert_eq!(sync(&mut conn, Some(2)).unwrap(), (0, 2));
    conn.raw().execute(
        "INSERT INTO images (id, status, created_at) VALUES ('a', 'active', '2011-09-21T00:00:00.000000')",
        [],
    )
    .unwrap();
    assert_eq!(sync(&mut conn, Some(3)).unwrap(), (2, 3));
    let v: Option<i64> = conn
        .raw()
        .query_row("SELECT virtual_size FROM images WHERE id = 'a'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(v, None);
    conn.raw()
        .execute("UPDATE images SET virtual_size = 1073741824", [])
        .unwrap();
}

#[test]
fn migration_4_adds_an_unknown_multihash() {
    let (_dir, mut conn) = file_db();
    assert_eq!(sync(&mut conn, Some(3)).unwrap(), (0, 3));
    conn.raw().execute(
        "INSERT INTO images (id, status, checksum, created_at, virtual_size) VALUES ('a', 'active', 'd41d8cd98f00b204e9800998ecf8427e', '2011-09-21T00:00:00.000000', 7)",
        [],
    )
    .unwrap();
    assert_eq!(sync(&mut conn, Some(4)).unwrap(), (3, 4));
    let row: (Option<String>, Option<String>, Option<String>, Option<i64>) = conn
        .raw()
        .query_row(
            "SELECT os_hash_algo, os_hash_value, checksum, virtual_size FROM images WHERE id = 'a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let md5 = Some("d41d8cd98f00b204e9800998ecf8427e".to_string());
    assert_eq!(row, (None, None, md5, Some(7)));
    conn.raw()
        .execute(
            "UPDATE images SET os_hash_algo = 'sha512', os_hash_value = 'cf83'",
            [],
        )
        .unwrap();
}

#[test]
fn one_step_at_a_time() {
    let (_dir, mut conn) = file_db();
    for v in 1..=LATEST {
        assert_eq!(sync(&mut conn, Some(v)).unwrap(), (v - 1, v));
    }
}

#[test]
fn refuses_unknown_target_and_downgrade() {
    let (_dir, mut conn) = file_db();
    let err = sync(&mut conn, Some(LATEST + 1)).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert_eq!(version(&mut conn).unwrap(), 0);
    sync(&mut conn, None).unwrap();
    let err = sync(&mut conn, Some(1)).unwrap_err();
    assert!(err.message().contains("not supported"), "{err}");
    assert_eq!(version(&mut conn).unwrap(), LATEST);
}

#[test]
fn refuses_newer_database() {
    let (_dir, mut conn) = file_db();
    conn.raw()
        .pragma_update(None, "user_version", LATEST + 1)
        .unwrap();
    let err = sync(&mut conn, None).unwrap_err();
    assert!(err.message().contains("newer"), "{err}");
}

#[test]
fn failed_migration_rolls_back() {
    let (_dir, mut conn) = file_db();
    // A clashing table makes migration 1 fail half-way (after `images` is created).
    conn.raw()
        .execute_batch("CREATE TABLE image_properties (x INTEGER)")
        .unwrap();
    let err = sync(&mut conn, None).unwrap_err();
    assert!(matches!(err, Error::Db(_)), "{err}");
    assert_eq!(version(&mut conn).unwrap(), 0);
    assert_eq!(tables(&conn), vec!["image_properties"]);
}

#[test]
fn migration_5_derives_visibility_and_keeps_members() {
    let (_dir, mut conn) = file_db();
    assert_eq!(sync(&mut conn, Some(4)).unwrap(), (0, 4));
    let t = "'2011-09-21T00:00:00.000000'";
    for (id, public) in [("pub", 1), ("priv", 0), ("shared", 0), ("was-shared", 0)] {
        conn.raw()
            .execute(
                &format!(
                    "INSERT INTO images (id, status, is_public, created_at) \
                 VALUES ('{id}', 'active', {public}, {t})"
                ),
                [],
            )
            .unwrap();
    }
    for (image, deleted) in [("shared", 0), ("was-shared", 1)] {
        conn.raw()
            .execute(
                &format!(
                    "INSERT INTO image_members (image_id, member, created_at, deleted) \
                 VALUES ('{image}', 'm', {t}, {deleted})"
                ),
                [],
            )
            .unwrap();
    }
    assert_eq!(sync(&mut conn, None).unwrap(), (4, LATEST));
    let vis = |id: &str| -> String {
        conn.raw()
            .query_row("SELECT visibility FROM images WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    };
    assert_eq!(vis("pub"), "public");
    assert_eq!(vis("priv"), "private");
    assert_eq!(vis("shared"), "shared");
    assert_eq!(vis("was-shared"), "private");
    let (protected, hidden, status): (i64, i64, String) = conn
        .raw()
        .query_row(
            "SELECT i.protected, i.os_hidden, m.status FROM images i \
             JOIN image_members m ON m.image_id = i.id WHERE i.id = 'shared'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((protected, hidden, status.as_str()), (0, 0, "pending"));
}
