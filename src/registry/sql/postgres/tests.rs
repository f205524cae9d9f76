//! Against the real PostgreSQL test server (see [`crate::registry::sql::testdb`]).

use std::time::Duration;

use super::*;
use crate::registry::sql::testdb::{self, DEFAULT_PG_URL};
use crate::registry::sql::{DbUrl, conn_tests};
use crate::sql_args;

#[test]
fn placeholders_are_numbered_outside_literals() {
    assert_eq!(
        number_placeholders("SELECT ? , '?', 'it''s ?', \"a?b\", ?").unwrap(),
        "SELECT $1 , '?', 'it''s ?', \"a?b\", $2"
    );
    assert_eq!(number_placeholders("SELECT 1").unwrap(), "SELECT 1");
    assert!(matches!(
        number_placeholders("SELECT ?1"),
        Err(Error::Internal(_))
    ));
}

#[test]
fn numeric_whole_numbers() {
    // ndigits, weight, sign, dscale, digits (base 10000).
    let n = |words: &[u16]| {
        let raw: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        numeric_to_i64(&raw)
    };
    assert_eq!(n(&[0, 0, 0, 0]).unwrap(), 0);
    assert_eq!(n(&[1, 0, 0, 0, 42]).unwrap(), 42);
    assert_eq!(n(&[2, 1, 0x4000, 0, 12, 3456]).unwrap(), -123_456);
    assert_eq!(n(&[1, 2, 0, 0, 7]).unwrap(), 700_000_000);
    assert!(n(&[2, 0, 0, 1, 1, 5000]).is_err(), "1.5 is not whole");
    assert!(n(&[0, 0, 0xC000, 0]).is_err(), "NaN");
    assert!(n(&[1, 5, 0, 0, 1]).is_err(), "10^20 is out of range");
    assert!(n(&[3, 0]).is_err(), "truncated");
}

#[test]
fn values_round_trip() {
    let Some(db) = testdb::postgres("postgres::values_round_trip") else {
        return;
    };
    let mut c = db.connect();
    assert_eq!(c.dialect(), Dialect::Postgres);
    c.batch(
        "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, s SMALLINT, i INTEGER, b BIGINT, \
         f BOOLEAN, x TEXT COLLATE \"C\", v VARCHAR(32), ch CHAR(3))",
    )
    .unwrap();
    let big = i64::MAX - 1;
    let rows = conn_tests::values_round_trip(
        c.as_mut(),
        "s, i, b, f, x, v, ch",
        &sql_args![
            1i64,
            -7i64,
            big,
            true,
            "h\u{e9}llo \u{1f600}",
            "2024-01-02T03:04:05.000006",
            "abc"
        ],
        &[
            Value::Int(1),
            Value::Int(-7),
            Value::Int(big),
            Value::Int(1),
            Value::Text("h\u{e9}llo \u{1f600}".into()),
            Value::Text("2024-01-02T03:04:05.000006".into()),
            Value::Text("abc".into()),
        ],
    );
    assert!(rows[0].flag(3).unwrap());

    // A flag compared with 0/1, a LIMIT, COUNT and SUM (NUMERIC).
    let r = c
        .query_one(
            "SELECT COUNT(*), SUM(b) FROM t WHERE s = ? LIMIT ?",
            &sql_args![1i64, 10i64],
        )
        .unwrap();
    assert_eq!(r.0, [Value::Int(1), Value::Int(big)]);
    assert_eq!(
        c.query_opt("SELECT id FROM t WHERE x = ?", &sql_args!["nope"])
            .unwrap(),
        None
    );

    // Mismatches are database errors naming the problem, not panics.
    let e = c
        .query("SELECT id FROM t WHERE s = ?", &sql_args![70_000i64])
        .unwrap_err();
    assert!(
        matches!(&e, Error::Db(m) if m.contains("out of range")),
        "{e}"
    );
    let e = c
        .query("SELECT id FROM t WHERE x = ?", &sql_args![5i64])
        .unwrap_err();
    assert!(matches!(&e, Error::Db(m) if m.contains("text")), "{e}");
    let e = c.query("SELECT 1.5::float8", &[]).unwrap_err();
    assert!(matches!(e, Error::Db(_)), "{e}");
    assert!(c.is_usable());
}

#[test]
fn placeholders_inside_literals() {
    let Some(db) = testdb::postgres("postgres::placeholders_inside_literals") else {
        return;
    };
    conn_tests::placeholders_inside_literals(db.connect().as_mut());
}

#[test]
fn execute_counts_matched_rows_and_statements_are_cached() {
    let Some(db) = testdb::postgres("postgres::execute_counts") else {
        return;
    };
    let mut c = PgConn::connect(db.server(), testdb::test_options()).unwrap();
    c.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    for i in 0..3i64 {
        c.execute("INSERT INTO t (id, v) VALUES (?, ?)", &sql_args![i, "same"])
            .unwrap();
    }
    conn_tests::execute_counts_matched_rows(&mut c);
    assert!(c.statements.contains_key("UPDATE t SET v = ? WHERE id < ?"));
    // A schema change starts the cache over; transaction control does not.
    c.batch("BEGIN").unwrap();
    c.batch("COMMIT").unwrap();
    assert!(!c.statements.is_empty());
    c.batch("ALTER TABLE t ADD COLUMN w TEXT").unwrap();
    assert!(c.statements.is_empty());
    assert_eq!(c.query("SELECT * FROM t", &[]).unwrap()[0].0.len(), 3);
}

#[test]
fn unique_violation_is_duplicate() {
    let Some(db) = testdb::postgres("postgres::unique_violation_is_duplicate") else {
        return;
    };
    conn_tests::unique_violation_is_duplicate(
        db.connect().as_mut(),
        "CREATE TABLE t (id VARCHAR(64) PRIMARY KEY)",
    );
}

#[test]
fn refused_connections_are_unavailable_without_the_password() {
    // Nothing listens on port 1.
    conn_tests::refused_connection_is_unavailable(
        "postgresql://glance:s3cret-pw@127.0.0.1:1/glance",
    );

    // A login the server refuses (no such role), on the real server.
    let Some(db) = testdb::postgres("postgres::refused_login") else {
        return;
    };
    let mut s = db.server().clone();
    s.user = Some("glance_no_such_role".into());
    conn_tests::refused_login_is_unavailable(&s, PgConn::connect, "glance_no_such_role");
}

#[test]
fn killed_connection_is_unavailable_and_unusable() {
    let Some(db) = testdb::postgres("postgres::killed_connection") else {
        return;
    };
    let mut victim = db.connect();
    let pid = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .int(0)
        .unwrap();
    let mut killer = db.connect();
    let r = killer
        .query_one("SELECT pg_terminate_backend(?)", &sql_args![pid])
        .unwrap();
    assert_eq!(r.0, [Value::Int(1)]);
    // The backend takes a moment to go.
    conn_tests::killed_session_is_unavailable(
        victim.as_mut(),
        killer.as_mut(),
        Duration::from_secs(10),
    );
}

#[test]
fn statement_timeout_is_unavailable_and_keeps_the_session() {
    let Some(db) = testdb::postgres("postgres::statement_timeout") else {
        return;
    };
    let opts = conn_tests::statement_timeout(Duration::from_millis(300));
    let mut c = PgConn::connect(db.server(), opts).unwrap();
    let e = conn_tests::statement_timeout_keeps_the_session(&mut c, "SELECT pg_sleep(5)");
    assert!(
        matches!(&e, Error::Unavailable(m) if m.contains("statement timeout")),
        "{e}"
    );
}

#[test]
fn lock_wait_is_unavailable_and_deadlock_is_conflict() {
    let Some(db) = testdb::postgres("postgres::lock_wait") else {
        return;
    };
    let mut a = db.connect();
    a.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        .unwrap();
    a.batch("INSERT INTO t VALUES (1, 0), (2, 0)").unwrap();
    let opts = conn_tests::statement_timeout(Duration::from_millis(500));
    let mut b = PgConn::connect(db.server(), opts).unwrap();

    // B waits for A's row lock past lock_timeout.
    conn_tests::lock_wait_is_unavailable(a.as_mut(), &mut b);

    // A deadlock: one of the two is told to try again.
    conn_tests::deadlock_is_conflict(a.as_mut(), db.connect());
}

#[test]
fn socket_and_tls_connections() {
    let Some(db) = testdb::postgres("postgres::socket_and_tls") else {
        return;
    };
    let s = db.server();
    if s.host.as_deref() != Some("127.0.0.1") {
        eprintln!("SKIPPED postgres::socket_and_tls: the test server is not on 127.0.0.1");
        return;
    }
    // The unix socket, by directory (as libpq's `host=/dir`).
    if std::path::Path::new("/var/run/postgresql/.s.PGSQL.5432").exists() && s.port == Some(5432) {
        let mut local = s.clone();
        local.host = None;
        local.socket = Some("/var/run/postgresql".into());
        let mut c = PgConn::connect(&local, testdb::test_options()).unwrap();
        let r = c.query_one("SELECT current_database()", &[]).unwrap();
        assert_eq!(r.text(0).unwrap(), db.name());
    }
    // TLS when the server offers it (sslmode=prefer, the default); plain text with disable.
    let ssl_on = {
        let mut c = db.connect();
        c.query_one("SHOW ssl", &[]).unwrap().text(0).unwrap() == "on"
    };
    for (mode, want) in [("disable", false), ("prefer", ssl_on), ("require", true)] {
        if want && !ssl_on {
            continue;
        }
        let mut t = s.clone();
        t.params = vec![("sslmode".into(), mode.into())];
        let mut c = PgConn::connect(&t, testdb::test_options()).unwrap();
        let r = c
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .unwrap();
        assert_eq!(r.flag(0).unwrap(), want, "sslmode={mode}");
    }
    // verify-full against the system roots refuses the test server's self-signed
    // certificate (and says so, as unavailable).
    if ssl_on {
        let mut t = s.clone();
        t.params = vec![("sslmode".into(), "verify-full".into())];
        let e = PgConn::connect(&t, testdb::test_options()).err().unwrap();
        assert!(matches!(e, Error::Unavailable(_)), "{e}");
    }
}

#[test]
fn default_test_url_parses() {
    assert!(matches!(
        DbUrl::parse(DEFAULT_PG_URL),
        Ok(DbUrl::Postgres(_))
    ));
}
