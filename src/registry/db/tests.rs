use super::*;
use crate::registry::conformance::{admin, exercise_registry, iid, tenant};

fn url(p: &Path) -> DbUrl {
    DbUrl::Sqlite(p.to_path_buf())
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("registry.db");
    (dir, path)
}

fn no_migrate() -> DbOptions {
    DbOptions {
        auto_migrate: false,
        ..DbOptions::default()
    }
}

#[test]
fn conformance_file() {
    let (_dir, path) = temp_db();
    let reg = SqlRegistry::open(&url(&path), DbOptions::default()).unwrap();
    exercise_registry(&reg);
}

#[test]
fn conformance_memory() {
    let reg = SqlRegistry::open_in_memory(DbOptions::default()).unwrap();
    exercise_registry(&reg);
}

#[test]
fn refuses_missing_and_unmigrated_databases() {
    let (_dir, path) = temp_db();
    let err = SqlRegistry::open(&url(&path), no_migrate()).unwrap_err();
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
    assert_eq!(db_sync(&url(&path), Some(1)).unwrap(), (0, 1));
    assert_eq!(db_version(&url(&path)).unwrap(), 1);
    let msg = SqlRegistry::open(&url(&path), no_migrate())
        .unwrap_err()
        .message();
    assert!(
        msg.contains(&format!(
            "is at schema version 1, this program needs {}",
            migrate::LATEST
        )),
        "{msg}"
    );
    assert_eq!(db_sync(&url(&path), None).unwrap(), (1, migrate::LATEST));
    assert_eq!(
        db_sync(&url(&path), None).unwrap(),
        (migrate::LATEST, migrate::LATEST)
    );
    let reg = SqlRegistry::open(&url(&path), no_migrate()).unwrap();
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
    db_sync(&url(&path), None).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", migrate::LATEST + 1)
        .unwrap();
    for opts in [no_migrate(), DbOptions::default()] {
        let err = SqlRegistry::open(&url(&path), opts).unwrap_err();
        assert!(matches!(err, Error::Config(_)));
        assert!(err.message().contains("newer than this program"), "{err}");
    }
    assert!(db_sync(&url(&path), None).is_err());
}

#[test]
fn auto_migrate_creates_and_upgrades() {
    let (_dir, path) = temp_db();
    SqlRegistry::open(&url(&path), DbOptions::default()).unwrap();
    assert_eq!(db_version(&url(&path)).unwrap(), migrate::LATEST);

    let (_dir2, old) = temp_db();
    db_sync(&url(&old), Some(migrate::LATEST - 1)).unwrap();
    SqlRegistry::open(&url(&old), DbOptions::default()).unwrap();
    assert_eq!(db_version(&url(&old)).unwrap(), migrate::LATEST);
}

#[test]
fn manage_helpers_report_errors() {
    let (dir, path) = temp_db();
    assert!(matches!(db_version(&url(&path)), Err(Error::Config(_))));
    assert!(!path.exists(), "db_version creates nothing");
    assert!(matches!(
        db_sync(&url(&path), Some(migrate::LATEST + 1)),
        Err(Error::Config(_))
    ));
    // A parent that is a file cannot become a directory.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = db_sync(&url(&blocker.join("registry.db")), None).unwrap_err();
    assert!(err.message().contains("cannot open database"), "{err}");
    assert!(err.message().contains("registry.db"), "{err}");
    // A directory that cannot be created is named.
    let err = db_sync(&url(&blocker.join("sub").join("registry.db")), None).unwrap_err();
    assert!(err.message().contains("database directory"), "{err}");
    // Downgrade refused.
    db_sync(&url(&path), None).unwrap();
    let err = db_sync(&url(&path), Some(1)).unwrap_err();
    assert!(err.message().contains("not supported"), "{err}");
}

#[test]
fn settings_applied_to_pooled_connections() {
    let (_dir, path) = temp_db();
    let reg = SqlRegistry::open(&url(&path), DbOptions::default()).unwrap();
    // Two connections checked out at once: the second is opened on demand.
    let mut held = vec![reg.pool.get().unwrap(), reg.pool.get().unwrap()];
    for p in &mut held {
        let c = p.conn().unwrap();
        let mode = c
            .query_one("PRAGMA journal_mode", &[])
            .unwrap()
            .text(0)
            .unwrap();
        let fk = c
            .query_one("PRAGMA foreign_keys", &[])
            .unwrap()
            .int(0)
            .unwrap();
        let sync = c
            .query_one("PRAGMA synchronous", &[])
            .unwrap()
            .int(0)
            .unwrap();
        assert_eq!((mode.as_str(), fk, sync), ("wal", 1, 2));
    }
    drop(held);
    assert_eq!(reg.pool.idle_count(), 2);
}

#[test]
fn failed_writes_roll_back() {
    let reg = SqlRegistry::open_in_memory(DbOptions::default()).unwrap();
    // A trigger makes the property insert fail after the image row was written.
    reg.pool
        .with_conn(|c| {
            c.batch(
                "CREATE TRIGGER boom BEFORE INSERT ON image_properties \
                 WHEN NEW.name = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            )
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
    let rows = reg
        .pool
        .read(|c| {
            c.query_one("SELECT count(*) FROM image_properties", &[])?
                .int(0)
        })
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
fn scrubber_claims() {
    exercise_scrubber_claims(&SqlRegistry::open_in_memory(DbOptions::default()).unwrap());
}

/// Scrubbers on several nodes: each due image is claimed by one, finished only by its
/// holder, released for a retry, and taken over once a claim lapses.
pub(crate) fn exercise_scrubber_claims(reg: &SqlRegistry) {
    let t = tenant("scrub");
    let id = |n: &str| format!("{n}-{}", uuid_tail());
    let (s1, s2, s3) = (id("s-1"), id("s-2"), id("s-3"));
    for id in [&s1, &s2, &s3] {
        let p = ImagePatch {
            id: Some(id.clone()),
            location: Some(Some(format!("file:///var/lib/glance/images/{id}"))),
            ..ImagePatch::default()
        };
        reg.create(&t, &p).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let pending = to_status(Status::PendingDelete);
    for id in [&s1, &s2] {
        reg.update(&t, &iid(id), &pending, false).unwrap();
        reg.delete(&t, &iid(id)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    reg.delete(&t, &iid(&s3)).unwrap();
    let mine = |v: Vec<Image>| -> Vec<String> {
        v.into_iter()
            .map(|i| i.id)
            .filter(|i| [&s1, &s2, &s3].contains(&i))
            .collect()
    };
    let lease = Duration::from_secs(600);
    assert!(
        mine(
            reg.claim_pending_deletes("2000-01-01T00:00:00.000000", "n1", lease, 100)
                .unwrap()
        )
        .is_empty()
    );
    let now = timeutil::now();
    let due = reg.claim_pending_deletes(&now, "n1", lease, 100).unwrap();
    assert!(due.iter().all(|i| i.deleted && i.location.is_some()));
    assert_eq!(mine(due), vec![s2.clone(), s1.clone()]);
    // Another node finds them taken.
    assert!(mine(reg.claim_pending_deletes(&now, "n2", lease, 100).unwrap()).is_empty());
    assert!(matches!(
        reg.finish_scrub(&s2, "n2"),
        Err(Error::Conflict(_))
    ));
    reg.finish_scrub(&s2, "n1").unwrap();
    assert_eq!(reg.find_any(&s2).unwrap().unwrap().status, Status::Deleted);
    assert!(matches!(
        reg.finish_scrub(&s2, "n1"),
        Err(Error::Conflict(_))
    ));
    // Released: the next pass of any scrubber retries it.
    reg.release_scrub(&s1, "n1").unwrap();
    assert_eq!(
        mine(
            reg.claim_pending_deletes(&now, "n2", Duration::ZERO, 100)
                .unwrap()
        ),
        vec![s1.clone()]
    );
    // n2's claim lapsed at once: n1 takes it over, and n2 can no longer finish it.
    std::thread::sleep(Duration::from_millis(5));
    let later = timeutil::now();
    assert_eq!(
        mine(reg.claim_pending_deletes(&later, "n1", lease, 100).unwrap()),
        vec![s1.clone()]
    );
    assert!(matches!(
        reg.finish_scrub(&s1, "n2"),
        Err(Error::Conflict(_))
    ));
    reg.finish_scrub(&s1, "n1").unwrap();
    assert!(matches!(
        reg.set_status_raw("nope", Status::Deleted),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn upload_leases() {
    exercise_upload_leases(&SqlRegistry::open_in_memory(DbOptions::default()).unwrap());
}

/// Upload leases: renewed by their holder only, ended by a status change, and a lapsed one
/// kills its image exactly once.
pub(crate) fn exercise_upload_leases(reg: &SqlRegistry) {
    let t = tenant("lease");
    let make = |name: &str| {
        let id = format!("{name}-{}", uuid_tail());
        reg.create(
            &t,
            &ImagePatch {
                id: Some(id.clone()),
                status: Some(Status::Queued),
                ..ImagePatch::default()
            },
        )
        .unwrap();
        id
    };
    let saving = to_status(Status::Saving);
    let (a, b) = (make("up-a"), make("up-b"));
    // Not saving yet: no lease.
    assert!(matches!(
        reg.renew_upload_lease(&a, "n1", Duration::from_secs(60)),
        Err(Error::Conflict(_))
    ));
    for id in [&a, &b] {
        reg.update_if(&t, &iid(id), Status::Queued, &saving, false)
            .unwrap();
    }
    reg.renew_upload_lease(&a, "n1", Duration::from_secs(60))
        .unwrap();
    reg.renew_upload_lease(&a, "n1", Duration::from_secs(60))
        .unwrap();
    assert!(matches!(
        reg.renew_upload_lease(&a, "n2", Duration::from_secs(60)),
        Err(Error::Conflict(_))
    ));
    reg.renew_upload_lease(&b, "n2", Duration::ZERO).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let expired: Vec<String> = reg
        .expire_upload_leases()
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .filter(|i| *i == a || *i == b)
        .collect();
    assert_eq!(expired, vec![b.clone()]);
    assert_eq!(reg.find_any(&b).unwrap().unwrap().status, Status::Killed);
    assert!(
        reg.expire_upload_leases()
            .unwrap()
            .iter()
            .all(|i| i.id != b)
    );
    // The holder of a killed upload cannot renew it, nor activate it.
    assert!(matches!(
        reg.renew_upload_lease(&b, "n2", Duration::from_secs(60)),
        Err(Error::Conflict(_))
    ));
    let active = to_status(Status::Active);
    assert!(matches!(
        reg.update_if(&t, &iid(&b), Status::Saving, &active, false),
        Err(Error::Conflict(_))
    ));
    // A live upload ends normally and its lease with it.
    reg.update_if(&t, &iid(&a), Status::Saving, &active, false)
        .unwrap();
    assert!(matches!(
        reg.renew_upload_lease(&a, "n1", Duration::from_secs(60)),
        Err(Error::Conflict(_))
    ));
}

/// A patch that only sets the status.
pub(crate) fn to_status(status: Status) -> ImagePatch {
    ImagePatch {
        status: Some(status),
        ..ImagePatch::default()
    }
}

/// A suffix that keeps ids of one test run apart from another's on a shared database.
fn uuid_tail() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

#[test]
fn inspect_helpers() {
    let reg = SqlRegistry::open_in_memory(DbOptions::default()).unwrap();
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
        reg.pool
            .write(|c| {
                c.execute(
                    "UPDATE images SET created_at = ? WHERE id = ?",
                    &crate::sql_args![created, id],
                )
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
    let reg = SqlRegistry::open(&url(&path), DbOptions::default()).unwrap();
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
    let reg = SqlRegistry::open_in_memory(DbOptions::default()).unwrap();
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
    let reg = SqlRegistry::open_in_memory(DbOptions::default()).unwrap();
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

#[test]
fn db_copy_moves_every_record() {
    let (_dir, path) = temp_db();
    let (_dir2, target) = temp_db();
    let src = SqlRegistry::open(&url(&path), DbOptions::default()).unwrap();
    exercise_db_copy(&src, &url(&path), &url(&target));
}

/// Fills `src` (the registry at `from`), copies it to `to` and compares every listing.
pub(crate) fn exercise_db_copy(src: &SqlRegistry, from: &DbUrl, to: &DbUrl) {
    let t = tenant("copy");
    for i in 0..2500 {
        let p = ImagePatch {
            name: Some(Some(format!("img-{i}"))),
            properties: Some(
                [("n".to_string(), Some(i.to_string()))]
                    .into_iter()
                    .collect(),
            ),
            tags: (i % 100 == 0).then(|| vec!["hundred".to_string()]),
            ..ImagePatch::default()
        };
        let img = src.create(&t, &p).unwrap();
        if i % 500 == 0 {
            src.add_member(&t, &iid(&img.id), "friend", Some(true))
                .unwrap();
        }
        if i % 1000 == 1 {
            src.delete(&t, &iid(&img.id)).unwrap();
        }
    }
    let counts = db_copy(from, to).unwrap();
    assert_eq!(
        counts,
        vec![
            ("images", 2500),
            ("image_properties", 2500),
            ("image_members", 5),
            ("image_tags", 25)
        ]
    );
    let dst = SqlRegistry::open(to, DbOptions::default().no_migrate()).unwrap();
    let all = |reg: &SqlRegistry| {
        let mut out: Vec<Image> = Vec::new();
        loop {
            let q = ListQuery {
                sort_key: "id",
                limit: 1000,
                public: PublicFilter::Any,
                marker: out.last().map(|i| i.id.clone()),
                ..ListQuery::default()
            };
            let page = reg.list(&admin(), &q).unwrap();
            if page.is_empty() {
                return out;
            }
            out.extend(page);
        }
    };
    let (a, b) = (all(src), all(&dst));
    assert_eq!(a.len(), 2497);
    assert_eq!(a, b);
    let shared = |reg: &SqlRegistry| reg.shared_images(&tenant("friend"), "friend").unwrap();
    assert_eq!(shared(src), shared(&dst));
    // Into a database that holds images: refused, nothing added.
    let err = db_copy(from, to).unwrap_err();
    assert!(err.message().contains("already holds images"), "{err}");
    assert_eq!(all(&dst).len(), 2497);
    // The target numbers new rows after the copied ones.
    dst.create(
        &t,
        &ImagePatch {
            properties: Some([("x".to_string(), None)].into_iter().collect()),
            ..ImagePatch::default()
        },
    )
    .unwrap();
}

/// Another program writing the database (here a plain SQLite connection, as an operator's
/// `sqlite3` would) moves the change counter: the images this registry kept are read again.
#[test]
fn images_kept_in_memory_follow_writes_of_other_programs() {
    let (_dir, path) = temp_db();
    let reg = SqlRegistry::open(&url(&path), DbOptions::default()).unwrap();
    assert!(
        reg.wal.is_some(),
        "a WAL-mode file is validated by its WAL index"
    );
    let owner = tenant("t1");
    let p = ImagePatch {
        id: Some("kept".into()),
        name: Some(Some("first".into())),
        properties: Some([("os".to_string(), Some("linux".to_string()))].into()),
        ..ImagePatch::default()
    };
    reg.create(&owner, &p).unwrap();
    let get = || reg.get(&owner, &iid("kept"));
    assert_eq!(get().unwrap().name.as_deref(), Some("first"));
    assert_eq!(
        get().unwrap().name.as_deref(),
        Some("first"),
        "served from memory"
    );

    let other = rusqlite::Connection::open(&path).unwrap();
    let exec = |sql: &str| other.execute(sql, []).unwrap();
    exec("UPDATE images SET name = 'second' WHERE id = 'kept'");
    assert_eq!(get().unwrap().name.as_deref(), Some("second"));
    exec("UPDATE image_properties SET value = 'bsd' WHERE image_id = 'kept'");
    let props = get().unwrap().properties;
    assert_eq!(props.get("os"), Some(&Some("bsd".to_string())));
    exec(
        "INSERT INTO image_tags (image_id, value, created_at) \
         VALUES ('kept', 'gold', '2026-01-01T00:00:00.000000')",
    );
    assert_eq!(get().unwrap().tags, vec!["gold".to_string()]);
    exec("DELETE FROM image_tags");
    assert!(get().unwrap().tags.is_empty());
    // Whether a caller may see the image is decided each time, not kept.
    assert!(matches!(
        reg.get(&tenant("t2"), &iid("kept")),
        Err(Error::NotFound(_))
    ));
    exec("UPDATE images SET deleted = 1 WHERE id = 'kept'");
    assert!(matches!(get(), Err(Error::NotFound(_))));
}
