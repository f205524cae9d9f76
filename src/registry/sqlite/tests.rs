use super::*;
use crate::registry::conformance::{admin, exercise_registry, iid, tenant};

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("registry.db");
    (dir, path)
}

fn no_migrate() -> SqliteOptions {
    SqliteOptions {
        auto_migrate: false,
        ..SqliteOptions::default()
    }
}

#[test]
fn conformance_file() {
    let (_dir, path) = temp_db();
    let reg = SqliteRegistry::open(&path, SqliteOptions::default()).unwrap();
    exercise_registry(&reg);
}

#[test]
fn conformance_memory() {
    let reg = SqliteRegistry::open_in_memory(SqliteOptions::default()).unwrap();
    exercise_registry(&reg);
}

#[test]
fn refuses_missing_and_unmigrated_databases() {
    let (_dir, path) = temp_db();
    let err = SqliteRegistry::open(&path, no_migrate()).unwrap_err();
    let msg = err.message();
    assert!(matches!(err, Error::Config(_)), "{msg}");
    assert!(
        msg.contains("is at schema version 0, this program needs")
            && msg.contains("glance-manage db_sync")
            && msg.contains("db_auto_create = True")
            && msg.contains(&path.display().to_string()),
        "{msg}"
    );
    assert!(!path.exists(), "nothing created without auto_migrate");

    // An older schema is refused too, and then migrated by db_sync.
    assert_eq!(db_sync(&path, Some(1)).unwrap(), (0, 1));
    assert_eq!(db_version(&path).unwrap(), 1);
    let msg = SqliteRegistry::open(&path, no_migrate())
        .unwrap_err()
        .message();
    assert!(
        msg.contains(&format!(
            "is at schema version 1, this program needs {}",
            migrate::LATEST
        )),
        "{msg}"
    );
    assert_eq!(db_sync(&path, None).unwrap(), (1, migrate::LATEST));
    assert_eq!(
        db_sync(&path, None).unwrap(),
        (migrate::LATEST, migrate::LATEST)
    );
    let reg = SqliteRegistry::open(&path, no_migrate()).unwrap();
    let q = ListQuery {
        sort_key: "created_at",
        limit: 10,
        ..ListQuery::default()
    };
    assert!(reg.list(&admin(), &q).unwrap().is_empty());
}

#[test]
fn refuses_newer_database() {
    let (_dir, path) = temp_db();
    db_sync(&path, None).unwrap();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", migrate::LATEST + 1)
        .unwrap();
    for opts in [no_migrate(), SqliteOptions::default()] {
        let err = SqliteRegistry::open(&path, opts).unwrap_err();
        assert!(matches!(err, Error::Config(_)));
        assert!(err.message().contains("newer than this program"), "{err}");
    }
    assert!(db_sync(&path, None).is_err());
}

#[test]
fn auto_migrate_creates_and_upgrades() {
    let (_dir, path) = temp_db();
    SqliteRegistry::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(db_version(&path).unwrap(), migrate::LATEST);

    let (_dir2, old) = temp_db();
    db_sync(&old, Some(migrate::LATEST - 1)).unwrap();
    SqliteRegistry::open(&old, SqliteOptions::default()).unwrap();
    assert_eq!(db_version(&old).unwrap(), migrate::LATEST);
}

#[test]
fn manage_helpers_report_errors() {
    let (dir, path) = temp_db();
    assert!(matches!(db_version(&path), Err(Error::Config(_))));
    assert!(!path.exists(), "db_version creates nothing");
    assert!(matches!(
        db_sync(&path, Some(migrate::LATEST + 1)),
        Err(Error::Config(_))
    ));
    // A parent that is a file cannot become a directory.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = db_sync(&blocker.join("registry.db"), None).unwrap_err();
    assert!(err.message().contains("cannot open database"), "{err}");
    assert!(err.message().contains("registry.db"), "{err}");
    // A directory that cannot be created is named.
    let err = db_sync(&blocker.join("sub").join("registry.db"), None).unwrap_err();
    assert!(err.message().contains("database directory"), "{err}");
    // Downgrade refused.
    db_sync(&path, None).unwrap();
    let err = db_sync(&path, Some(1)).unwrap_err();
    assert!(err.message().contains("not supported"), "{err}");
}

#[test]
fn settings_applied_to_pooled_connections() {
    let (_dir, path) = temp_db();
    let reg = SqliteRegistry::open(&path, SqliteOptions::default()).unwrap();
    // Two connections checked out at once: the second is opened on demand.
    reg.with_conn(|c1| {
        reg.with_conn(|c2| {
            for c in [&*c1, &*c2] {
                let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                let fk: i64 = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
                let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                assert_eq!((mode.as_str(), fk, sync), ("wal", 1, 2));
            }
            Ok(())
        })
    })
    .unwrap();
    assert_eq!(reg.idle.lock().unwrap().len(), 2);
}

#[test]
fn failed_writes_roll_back() {
    let reg = SqliteRegistry::open_in_memory(SqliteOptions::default()).unwrap();
    // A trigger makes the property insert fail after the image row was written.
    reg.with_conn(|c| {
        c.execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON image_properties \
             WHEN NEW.name = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )?;
        Ok(())
    })
    .unwrap();
    let t = tenant("rb");
    let mut p = ImagePatch {
        id: Some("rb-1".into()),
        properties: Some(
            [
                ("a".to_string(), Some("1".to_string())),
                ("boom".to_string(), None),
            ]
            .into_iter()
            .collect(),
        ),
        ..ImagePatch::default()
    };
    assert!(matches!(reg.create(&t, &p), Err(Error::Db(_))));
    assert!(matches!(
        reg.get(&admin(), &iid("rb-1")),
        Err(Error::NotFound(_))
    ));
    let rows: i64 = reg
        .with_conn(|c| Ok(c.query_row("SELECT count(*) FROM image_properties", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(rows, 0);

    // Update: the image row change is undone with the failed property write.
    p.properties = None;
    let before = reg.create(&t, &p).unwrap();
    let bad = ImagePatch {
        name: Some(Some("renamed".into())),
        properties: Some([("boom".to_string(), None)].into_iter().collect()),
        ..ImagePatch::default()
    };
    assert!(reg.update(&t, &iid("rb-1"), &bad, false).is_err());
    assert_eq!(reg.get(&t, &iid("rb-1")).unwrap(), before);
    // The connection is still usable afterwards.
    assert!(
        reg.update(&t, &iid("rb-1"), &ImagePatch::default(), false)
            .is_ok()
    );
}

#[test]
fn scrubber_helpers() {
    let reg = SqliteRegistry::open_in_memory(SqliteOptions::default()).unwrap();
    let t = tenant("scrub");
    for id in ["s-1", "s-2", "s-3"] {
        let p = ImagePatch {
            id: Some(id.into()),
            location: Some(Some(format!("file:///var/lib/glance/images/{id}"))),
            ..ImagePatch::default()
        };
        reg.create(&t, &p).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let pending = ImagePatch {
        status: Some(Status::PendingDelete),
        ..ImagePatch::default()
    };
    for id in ["s-1", "s-2"] {
        reg.update(&t, &iid(id), &pending, false).unwrap();
        reg.delete(&t, &iid(id)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    reg.delete(&t, &iid("s-3")).unwrap();
    let now = timeutil::now();
    let due = reg.pending_deletes(&now).unwrap();
    assert_eq!(ids(&due), vec!["s-2", "s-1"]);
    assert!(due.iter().all(|i| i.deleted && i.location.is_some()));
    assert!(
        reg.pending_deletes("2000-01-01T00:00:00.000000")
            .unwrap()
            .is_empty()
    );

    reg.set_status_raw("s-2", Status::Deleted).unwrap();
    assert_eq!(ids(&reg.pending_deletes(&now).unwrap()), vec!["s-1"]);
    assert!(matches!(
        reg.set_status_raw("nope", Status::Deleted),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn inspect_helpers() {
    let reg = SqliteRegistry::open_in_memory(SqliteOptions::default()).unwrap();
    let a = admin();
    // (id, created_at, status, location): the statuses and rows --all must skip, and a
    // created_at tie broken by id.
    let rows = [
        ("i-late", "2020-01-03T00:00:00.000000", Status::Active, true),
        ("i-b", "2020-01-02T00:00:00.000000", Status::Killed, true),
        ("i-a", "2020-01-02T00:00:00.000000", Status::Queued, true),
        (
            "i-first",
            "2020-01-01T00:00:00.000000",
            Status::Active,
            true,
        ),
        (
            "x-saving",
            "2020-01-01T00:00:00.000000",
            Status::Saving,
            true,
        ),
        (
            "x-nodata",
            "2020-01-01T00:00:00.000000",
            Status::Active,
            false,
        ),
        (
            "x-queued",
            "2020-01-01T00:00:00.000000",
            Status::Queued,
            false,
        ),
        (
            "x-deleted",
            "2020-01-01T00:00:00.000000",
            Status::Active,
            true,
        ),
    ];
    for (id, created, status, with_location) in rows {
        let p = ImagePatch {
            id: Some(id.into()),
            location: with_location.then(|| Some(format!("file:///var/lib/glance/images/{id}"))),
            ..ImagePatch::default()
        };
        reg.create(&a, &p).unwrap();
        reg.set_status_raw(id, status).unwrap();
        reg.write(|tx| {
            tx.execute(
                "UPDATE images SET created_at = ?2 WHERE id = ?1",
                params![id, created],
            )?;
            Ok(())
        })
        .unwrap();
    }
    reg.delete(&a, &iid("x-deleted")).unwrap();

    let all = reg.images_with_data(None, 100).unwrap();
    assert_eq!(ids(&all), vec!["i-first", "i-a", "i-b", "i-late"]);
    assert!(all.iter().all(|i| i.location.is_some() && !i.deleted));

    // Paging by (created_at, id) sees every row once, ties included.
    let mut paged = Vec::new();
    let mut after: Option<(String, String)> = None;
    for _ in 0..10 {
        let cursor = after.as_ref().map(|(c, i)| (c.as_str(), i.as_str()));
        let page = reg.images_with_data(cursor, 1).unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.created_at.clone(), last.id.clone()));
        paged.extend(page);
    }
    assert_eq!(ids(&paged), ids(&all));

    // find_any: live, killed and deleted rows alike; None for an unknown id.
    assert_eq!(reg.find_any("i-b").unwrap().unwrap().status, Status::Killed);
    let gone = reg.find_any("x-deleted").unwrap().unwrap();
    assert!(gone.deleted);
    assert!(reg.find_any("nope").unwrap().is_none());
}

fn ids(v: &[Image]) -> Vec<&str> {
    v.iter().map(|i| i.id.as_str()).collect()
}

#[test]
fn concurrent_creates_and_lists() {
    let (_dir, path) = temp_db();
    let reg = SqliteRegistry::open(&path, SqliteOptions::default()).unwrap();
    std::thread::scope(|s| {
        for w in 0..4 {
            let reg = &reg;
            s.spawn(move || {
                let t = tenant(&format!("w{w}"));
                for i in 0..25 {
                    let p = ImagePatch {
                        id: Some(format!("w{w}-{i}")),
                        properties: Some(
                            [("n".to_string(), Some(i.to_string()))]
                                .into_iter()
                                .collect(),
                        ),
                        ..ImagePatch::default()
                    };
                    reg.create(&t, &p).unwrap();
                    let mine = reg
                        .list(
                            &t,
                            &ListQuery {
                                sort_key: "created_at",
                                limit: 1000,
                                ..ListQuery::default()
                            },
                        )
                        .unwrap();
                    assert_eq!(mine.len(), i + 1);
                    assert!(mine.iter().all(|m| m.properties.len() == 1));
                }
            });
        }
    });
    let all = reg
        .list(
            &admin(),
            &ListQuery {
                sort_key: "id",
                public: PublicFilter::Any,
                limit: 1000,
                ..ListQuery::default()
            },
        )
        .unwrap();
    assert_eq!(all.len(), 100);
}

#[test]
fn public_filter_is_admin_only_and_delete_keeps_properties() {
    let reg = SqliteRegistry::open_in_memory(SqliteOptions::default()).unwrap();
    let other = tenant("other");
    let p = ImagePatch {
        id: Some("hidden".into()),
        properties: Some(
            [("os".to_string(), Some("linux".to_string()))]
                .into_iter()
                .collect(),
        ),
        ..ImagePatch::default()
    };
    reg.create(&other, &p).unwrap();
    let q = ListQuery {
        sort_key: "created_at",
        limit: 10,
        public: PublicFilter::Any,
        ..ListQuery::default()
    };
    assert!(reg.list(&tenant("me"), &q).unwrap().is_empty());
    assert_eq!(reg.list(&admin(), &q).unwrap().len(), 1);
    let del = reg.delete(&other, &iid("hidden")).unwrap();
    assert!(del.deleted);
    assert_eq!(del.properties.len(), 1, "properties as before the delete");
}

#[test]
fn unsupported_sort_key_and_filter_are_bad_requests() {
    let reg = SqliteRegistry::open_in_memory(SqliteOptions::default()).unwrap();
    let q = ListQuery {
        sort_key: "location",
        ..ListQuery::default()
    };
    assert!(matches!(reg.list(&admin(), &q), Err(Error::BadRequest(_))));
    let q = ListQuery {
        sort_key: "name",
        equals: vec![("location", "x".into())],
        ..ListQuery::default()
    };
    assert!(matches!(reg.list(&admin(), &q), Err(Error::BadRequest(_))));
    let q = ListQuery {
        sort_key: "name",
        limit: 5000,
        ..ListQuery::default()
    };
    assert!(reg.list(&admin(), &q).unwrap().is_empty());
}
