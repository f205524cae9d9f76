//! Against the real MySQL/MariaDB test server (see [`crate::registry::sql::testdb`]).

use std::time::Duration;

use super::*;
use crate::registry::sql::testdb::{self, DEFAULT_MYSQL_URL};
use crate::registry::sql::{DbUrl, conn_tests};
use crate::sql_args;

/// The session's isolation level (`transaction_isolation` on MySQL 8 and MariaDB 11.1+,
/// `tx_isolation` before).
fn isolation(c: &mut dyn Conn) -> String {
    c.query_one("SELECT @@transaction_isolation", &[])
        .or_else(|_| c.query_one("SELECT @@tx_isolation", &[]))
        .unwrap()
        .text(0)
        .unwrap()
}

#[test]
fn statements_split_outside_literals_and_comments() {
    assert_eq!(
        split_statements(
            "CREATE TABLE a (x TEXT DEFAULT ';');\n-- a; comment\nSELECT `a;b`, \"c;\" ;  \n"
        ),
        [
            "CREATE TABLE a (x TEXT DEFAULT ';')",
            "\n-- a; comment\nSELECT `a;b`, \"c;\" "
        ]
    );
    assert_eq!(split_statements("SELECT 1"), ["SELECT 1"]);
    assert!(split_statements(" ; ;\n").is_empty());
}

#[test]
fn decimals_and_session_text() {
    assert_eq!(decimal_to_i64(b"123").unwrap(), 123);
    assert_eq!(decimal_to_i64(b"-5.000").unwrap(), -5);
    assert!(decimal_to_i64(b"1.5").is_err());
    assert!(decimal_to_i64(b"99999999999999999999").is_err());
    let s = session_setup(Duration::from_millis(1500), true);
    assert!(s.contains("innodb_lock_wait_timeout = 1;"), "{s}");
    assert!(s.contains("max_statement_time = 1.500"), "{s}");
    let s = session_setup(Duration::from_secs(30), false);
    assert!(s.contains("max_execution_time = 30000"), "{s}");
    let s = session_setup(Duration::ZERO, true);
    assert!(!s.contains("timeout") && !s.contains("max_"), "{s}");
}

#[test]
fn values_round_trip_and_session_settings() {
    let Some(db) = testdb::mysql("mysql::values_round_trip") else {
        return;
    };
    let mut c = db.connect();
    assert_eq!(c.dialect(), Dialect::Mysql);
    c.batch(
        "CREATE TABLE t (id BIGINT AUTO_INCREMENT PRIMARY KEY, f TINYINT, i INT, b BIGINT, \
         u BIGINT UNSIGNED, v VARCHAR(32), x TEXT, m MEDIUMTEXT, d DECIMAL(20, 2)) \
         ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    )
    .unwrap();
    let big = i64::MAX - 1;
    let long = "x".repeat(65_536);
    conn_tests::values_round_trip(
        c.as_mut(),
        "f, i, b, u, v, x, m, d",
        &sql_args![
            true,
            -7i64,
            big,
            5i64,
            "2024-01-02T03:04:05.000006",
            "h\u{e9}llo \u{1f600}",
            long.as_str(),
            "12"
        ],
        &[
            Value::Int(1),
            Value::Int(-7),
            Value::Int(big),
            Value::Int(5),
            Value::Text("2024-01-02T03:04:05.000006".into()),
            Value::Text("h\u{e9}llo \u{1f600}".into()),
            Value::Text(long.clone()),
            Value::Int(12),
        ],
    );
    let r = c
        .query_one(
            "SELECT COUNT(*), SUM(b), SUM(i) FROM t WHERE f = ? LIMIT ?",
            &sql_args![1i64, 10i64],
        )
        .unwrap();
    assert_eq!(r.0, [Value::Int(1), Value::Int(big), Value::Int(-7)]);

    // Strict mode: a value that does not fit is an error, not truncated.
    let e = c
        .execute("INSERT INTO t (v) VALUES (?)", &sql_args!["y".repeat(33)])
        .unwrap_err();
    assert!(matches!(e, Error::Db(_)), "{e}");
    let e = c.query("SELECT 1.5e0", &[]).unwrap_err();
    assert!(matches!(e, Error::Db(_)), "{e}");
    assert!(c.is_usable());

    // Byte-wise comparison, literal backslashes, || concatenates, READ COMMITTED.
    let r = c
        .query_one("SELECT 'a' = 'A', 'a\\b', 'a' || 'b'", &[])
        .unwrap();
    assert_eq!(
        r.0,
        [
            Value::Int(0),
            Value::Text("a\\b".into()),
            Value::Text("ab".into()),
        ]
    );
    assert_eq!(isolation(c.as_mut()), "READ-COMMITTED");
}

#[test]
fn placeholders_inside_literals() {
    let Some(db) = testdb::mysql("mysql::placeholders_inside_literals") else {
        return;
    };
    conn_tests::placeholders_inside_literals(db.connect().as_mut());
}

#[test]
fn execute_counts_matched_rows_even_when_nothing_changes() {
    let Some(db) = testdb::mysql("mysql::execute_counts") else {
        return;
    };
    let mut c = db.connect();
    // A multi-statement script, as the migrations are.
    c.batch(
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10));\n\
         INSERT INTO t VALUES (0, 'same'), (1, 'same');\n\
         INSERT INTO t VALUES (2, 'same');\n",
    )
    .unwrap();
    conn_tests::execute_counts_matched_rows(c.as_mut());
    // A failing statement in a script stops it.
    let e = c
        .batch("INSERT INTO t VALUES (3, 'x'); INSERT INTO nope VALUES (1); INSERT INTO t VALUES (4, 'x')")
        .unwrap_err();
    assert!(matches!(e, Error::Db(_)), "{e}");
    let r = c.query_one("SELECT COUNT(*) FROM t", &[]).unwrap();
    assert_eq!(r.0, [Value::Int(4)]);
}

#[test]
fn unique_violation_is_duplicate() {
    let Some(db) = testdb::mysql("mysql::unique_violation_is_duplicate") else {
        return;
    };
    conn_tests::unique_violation_is_duplicate(
        db.connect().as_mut(),
        "CREATE TABLE t (id VARCHAR(64) PRIMARY KEY) ENGINE=InnoDB",
    );
}

#[test]
fn refused_connections_are_unavailable_without_the_password() {
    // Nothing listens on port 1.
    conn_tests::refused_connection_is_unavailable("mysql://glance:s3cret-pw@127.0.0.1:1/glance");

    // A wrong password, refused by the real server.
    let Some(db) = testdb::mysql("mysql::refused_login") else {
        return;
    };
    conn_tests::refused_login_is_unavailable(db.server(), MysqlConn::connect, "Access denied");
}

#[test]
fn killed_connection_is_unavailable_and_unusable() {
    let Some(db) = testdb::mysql("mysql::killed_connection") else {
        return;
    };
    let mut victim = MysqlConn::connect(db.server(), testdb::test_options()).unwrap();
    let id = i64::from(victim.connection_id());
    let r = victim.query_one("SELECT CONNECTION_ID()", &[]).unwrap();
    assert_eq!(r.0, [Value::Int(id)]);
    let mut killer = db.connect();
    killer.batch(&format!("KILL {id}")).unwrap();
    // The very next statement fails.
    conn_tests::killed_session_is_unavailable(&mut victim, killer.as_mut(), Duration::ZERO);
}

#[test]
fn statement_timeout_is_unavailable_and_keeps_the_session() {
    let Some(db) = testdb::mysql("mysql::statement_timeout") else {
        return;
    };
    let opts = conn_tests::statement_timeout(Duration::from_millis(300));
    let mut c = MysqlConn::connect(db.server(), opts).unwrap();
    conn_tests::statement_timeout_keeps_the_session(&mut c, "SELECT SLEEP(5)");
}

#[test]
fn lock_wait_is_unavailable_and_deadlock_is_conflict() {
    let Some(db) = testdb::mysql("mysql::lock_wait") else {
        return;
    };
    let mut a = db.connect();
    a.batch("CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; INSERT INTO t VALUES (1, 0), (2, 0)")
        .unwrap();
    let opts = conn_tests::statement_timeout(Duration::from_secs(1));
    let mut b = MysqlConn::connect(db.server(), opts).unwrap();

    // B waits for A's row lock past innodb_lock_wait_timeout.
    let waited = conn_tests::lock_wait_is_unavailable(a.as_mut(), &mut b);
    assert!(waited < Duration::from_secs(4), "{waited:?}");

    // A deadlock: one of the two is told to try again.
    conn_tests::deadlock_is_conflict(a.as_mut(), db.connect());
}

/// Under the session's READ COMMITTED, `START TRANSACTION WITH CONSISTENT SNAPSHOT` alone
/// reads each statement's own snapshot; a read transaction that must see one snapshot sets
/// REPEATABLE READ for itself first.
#[test]
fn read_transactions_need_repeatable_read_for_one_snapshot() {
    let Some(db) = testdb::mysql("mysql::read_snapshot") else {
        return;
    };
    let mut reader = db.connect();
    let mut writer = db.connect();
    writer
        .batch("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO t VALUES (1)")
        .unwrap();
    let count = |c: &mut Box<dyn Conn>| {
        c.query_one("SELECT COUNT(*) FROM t", &[])
            .unwrap()
            .int(0)
            .unwrap()
    };

    reader
        .batch("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .unwrap();
    assert_eq!(count(&mut reader), 1);
    writer.batch("INSERT INTO t VALUES (2)").unwrap();
    assert_eq!(count(&mut reader), 2, "READ COMMITTED sees the new row");
    reader.batch("COMMIT").unwrap();

    reader
        .batch(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
             START TRANSACTION WITH CONSISTENT SNAPSHOT",
        )
        .unwrap();
    assert_eq!(count(&mut reader), 2);
    writer.batch("INSERT INTO t VALUES (3)").unwrap();
    assert_eq!(count(&mut reader), 2, "one snapshot");
    reader.batch("COMMIT").unwrap();
    // SET TRANSACTION applied to that transaction only.
    assert_eq!(isolation(reader.as_mut()), "READ-COMMITTED");
}

#[test]
fn socket_connections() {
    let Some(db) = testdb::mysql("mysql::socket_connections") else {
        return;
    };
    let s = db.server();
    let sock = std::path::Path::new(SOCKETS[0]);
    if s.host.as_deref() != Some("127.0.0.1") || !sock.exists() {
        eprintln!("SKIPPED mysql::socket_connections: no local server socket at {SOCKETS:?}");
        return;
    }
    // Given as unix_socket, and found by itself for `localhost` (as MySQLdb did).
    let mut given = s.clone();
    given.socket = Some(sock.to_path_buf());
    given.host = None;
    let mut localhost = s.clone();
    localhost.host = Some("localhost".into());
    for server in [given, localhost] {
        let mut c = MysqlConn::connect(&server, testdb::test_options()).unwrap();
        let r = c
            .query_one("SELECT DATABASE(), @@socket, @@version_comment", &[])
            .unwrap();
        assert_eq!(r.text(0).unwrap(), db.name());
        // The session came through the socket: the server reports no TCP peer.
        let via = c
            .query_one(
                "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
                &[],
            )
            .unwrap();
        assert_eq!(via.text(0).unwrap(), "localhost", "{server:?}");
    }
}

#[test]
fn default_test_url_parses() {
    assert!(matches!(
        DbUrl::parse(DEFAULT_MYSQL_URL),
        Ok(DbUrl::Mysql(_))
    ));
}
