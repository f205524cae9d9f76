//! The registry on the PostgreSQL and MariaDB test servers: the same conformance runs as on
//! SQLite (directly and through a glance-registry over HTTP), the leases and claims, the
//! races several nodes make, migrations and `db_copy`. Each test works in a scratch
//! database of its own ([`testdb`]); skipped with a printed reason when the server does not
//! answer, unless `GLANCE_TEST_REQUIRE_SERVICES=1`.

use std::sync::Arc;

use super::tests::{exercise_db_copy, exercise_scrubber_claims, exercise_upload_leases, to_status};
use super::*;
use crate::registry::client::tests::over_http_on;
use crate::registry::conformance::{
    admin, exercise_os_hash, exercise_registry, exercise_virtual_size, iid, tenant,
};
use crate::registry::conformance_v2::exercise_v2;
use crate::registry::sql::testdb::{self, ScratchDb};

fn open(db: &ScratchDb) -> SqlRegistry {
    SqlRegistry::open(db.url(), DbOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Eight racers take one image from `queued` to `saving`: exactly one wins, on every try.
fn racing_upload_claims(reg: &SqlRegistry) {
    let t = tenant("race");
    for _ in 0..10 {
        let img = reg.create(&t, &to_status(Status::Queued)).unwrap();
        let saving = to_status(Status::Saving);
        let wins = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        reg.update_if(&t, &iid(&img.id), Status::Queued, &saving, false)
                            .is_ok()
                    })
                })
                .collect();
            racers
                .into_iter()
                .filter_map(|r| r.join().ok())
                .filter(|won| *won)
                .count()
        });
        assert_eq!(wins, 1);
    }
}

/// Creates of one id racing: one 201, the others `Duplicate`, never a 500.
fn racing_duplicate_creates(reg: &SqlRegistry) {
    let id = uuid::Uuid::new_v4().to_string();
    let results: Vec<Result<Image>> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    reg.create(
                        &admin(),
                        &ImagePatch {
                            id: Some(id.clone()),
                            ..ImagePatch::default()
                        },
                    )
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().unwrap_or_else(|_| panic!("racer panicked")))
            .collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, Error::Duplicate(_)), "{r}");
    }
}

/// Migrations: step by step from an empty database, the same versions as SQLite; a newer
/// schema and a foreign one refused; `version_control` on a new database.
fn migrations(db: &ScratchDb) {
    assert_eq!(db_version(db.url()).unwrap(), 0);
    db_version_control(db.url()).unwrap();
    assert_eq!(db_version(db.url()).unwrap(), 0);
    let err = SqlRegistry::open(db.url(), DbOptions::default().no_migrate()).unwrap_err();
    assert!(err.message().contains("glance-manage db_sync"), "{err}");
    for v in 1..=migrate::LATEST {
        assert_eq!(db_sync(db.url(), Some(v)).unwrap(), (v - 1, v));
    }
    assert!(db_version_control(db.url()).is_err());
    assert_eq!(
        db_sync(db.url(), None).unwrap(),
        (migrate::LATEST, migrate::LATEST)
    );
    assert!(db_sync(db.url(), Some(1)).is_err(), "no downgrade");
    let mut c = db.connect();
    c.execute(
        "UPDATE migrate_version SET version = ?",
        &crate::sql_args![i64::from(migrate::LATEST) + 1],
    )
    .unwrap();
    let err = SqlRegistry::open(db.url(), DbOptions::default()).unwrap_err();
    assert!(err.message().contains("newer than this program"), "{err}");
    c.execute(
        "UPDATE migrate_version SET repository_id = 'Glance Migrations'",
        &[],
    )
    .unwrap();
    let err = db_version(db.url()).unwrap_err();
    assert!(err.message().contains("another program's schema"), "{err}");
}

/// A second registry (another node) opening the database while the first migrates it.
fn concurrent_migrations(db: &ScratchDb) {
    let results: Vec<Result<(u32, u32)>> = std::thread::scope(|s| {
        let all: Vec<_> = (0..4)
            .map(|_| s.spawn(|| db_sync(db.url(), None)))
            .collect();
        all.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("migrator panicked")))
            .collect()
    });
    for r in &results {
        assert_eq!(r.as_ref().map(|v| v.1).ok(), Some(migrate::LATEST), "{r:?}");
    }
}

macro_rules! backend_tests {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            fn scratch(test: &str) -> Option<ScratchDb> {
                testdb::$backend(test)
            }

            #[test]
            fn conformance() {
                let Some(db) = scratch("conformance") else {
                    return;
                };
                exercise_registry(&open(&db));
            }

            #[test]
            fn conformance_v2() {
                let Some(db) = scratch("conformance_v2") else {
                    return;
                };
                exercise_v2(&open(&db));
            }

            /// Through a glance-registry: the image fields both ways (the v1 suite's state
            /// rules differ there: the registry API checks status transitions).
            #[test]
            fn fields_over_http() {
                let Some(db) = scratch("fields_over_http") else {
                    return;
                };
                let reg: Arc<dyn Registry> = Arc::new(open(&db));
                over_http_on(Arc::clone(&reg), exercise_virtual_size);
                over_http_on(reg, exercise_os_hash);
            }

            #[test]
            fn conformance_v2_over_http() {
                let Some(db) = scratch("conformance_v2_over_http") else {
                    return;
                };
                over_http_on(Arc::new(open(&db)), exercise_v2);
            }

            #[test]
            fn scrubber_claims() {
                let Some(db) = scratch("scrubber_claims") else {
                    return;
                };
                exercise_scrubber_claims(&open(&db));
            }

            #[test]
            fn upload_leases() {
                let Some(db) = scratch("upload_leases") else {
                    return;
                };
                exercise_upload_leases(&open(&db));
            }

            #[test]
            fn races() {
                let Some(db) = scratch("races") else { return };
                let reg = open(&db);
                racing_upload_claims(&reg);
                racing_duplicate_creates(&reg);
            }

            #[test]
            fn migrations() {
                let Some(db) = scratch("migrations") else {
                    return;
                };
                super::migrations(&db);
            }

            #[test]
            fn concurrent_migrations() {
                let Some(db) = scratch("concurrent_migrations") else {
                    return;
                };
                super::concurrent_migrations(&db);
            }

            #[test]
            fn db_copy_from_sqlite() {
                let Some(db) = scratch("db_copy_from_sqlite") else {
                    return;
                };
                let dir = tempfile::tempdir().unwrap();
                let from = DbUrl::Sqlite(dir.path().join("old.sqlite"));
                let src = SqlRegistry::open(&from, DbOptions::default()).unwrap();
                exercise_db_copy(&src, &from, db.url());
            }
        }
    };
}

backend_tests!(postgres);
backend_tests!(mysql);
