//! Against the real MySQL/MariaDB test server (see [`crate::registry::sql::testdb`]).

use std::time::{Duration, Instant};

use super::*;
use crate::registry::sql::testdb::{self, DEFAULT_MYSQL_URL};
use crate::registry::sql::{DbUrl, connect_server};
use crate::sql_args;

fn my(url: &DbUrl, opts: ConnectOptions) -> Result<MysqlConn> {
    match url {
        DbUrl::Mysql(s) => MysqlConn::connect(s, opts),
        other => panic!("not MySQL: {other}"),
    }
}

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
    let n = c
        .execute(
            "INSERT INTO t (f, i, b, u, v, x, m, d) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        )
        .unwrap();
    assert_eq!(n, 1);
    c.execute(
        "INSERT INTO t (f, i, b, u, v, x, m, d) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        &vec![Value::Null; 8],
    )
    .unwrap();
    let rows = c
        .query("SELECT f, i, b, u, v, x, m, d FROM t ORDER BY id", &[])
        .unwrap();
    assert_eq!(
        rows[0].0,
        [
            Value::Int(1),
            Value::Int(-7),
            Value::Int(big),
            Value::Int(5),
            Value::Text("2024-01-02T03:04:05.000006".into()),
            Value::Text("h\u{e9}llo \u{1f600}".into()),
            Value::Text(long.clone()),
            Value::Int(12),
        ]
    );
    assert_eq!(rows[1].0, vec![Value::Null; 8]);
    let r = c
        .query_one(
            "SELECT COUNT(*), SUM(b), SUM(i) FROM t WHERE f = ? LIMIT ?",
            &sql_args![1i64, 10i64],
        )
        .unwrap();
    assert_eq!(r.0, [Value::Int(1), Value::Int(big), Value::Int(-7)]);
    let r = c
        .query_one("SELECT ?, ?", &sql_args!["x", Value::Null])
        .unwrap();
    assert_eq!(r.0, [Value::Text("x".into()), Value::Null]);

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
    let mut c = db.connect();
    let r = c
        .query_one("SELECT '?' || ?, 'it''s ?', ? || '?'", &sql_args!["a", "b"])
        .unwrap();
    assert_eq!(
        r.0,
        [
            Value::Text("?a".into()),
            Value::Text("it's ?".into()),
            Value::Text("b?".into())
        ]
    );
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
    assert_eq!(
        c.execute("UPDATE t SET v = ? WHERE id < ?", &sql_args!["same", 2i64])
            .unwrap(),
        2
    );
    assert_eq!(
        c.execute("DELETE FROM t WHERE id = ?", &sql_args![99i64])
            .unwrap(),
        0
    );
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
    let mut c = db.connect();
    c.batch("CREATE TABLE t (id VARCHAR(64) PRIMARY KEY) ENGINE=InnoDB")
        .unwrap();
    c.execute("INSERT INTO t (id) VALUES (?)", &sql_args!["a"])
        .unwrap();
    let e = c
        .execute("INSERT INTO t (id) VALUES (?)", &sql_args!["a"])
        .unwrap_err();
    assert!(matches!(e, Error::Duplicate(_)), "{e}");
    assert!(c.is_usable());
    let e = c.query("SELEC 1", &[]).unwrap_err();
    assert!(matches!(e, Error::Db(_)), "{e}");
    assert!(c.is_usable());
}

#[test]
fn refused_connections_are_unavailable_without_the_password() {
    let url = DbUrl::parse("mysql://glance:s3cret-pw@127.0.0.1:1/glance").unwrap();
    let t0 = Instant::now();
    let e = connect_server(&url, testdb::test_options()).err().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    let msg = e.to_string();
    assert!(matches!(e, Error::Unavailable(_)), "{msg}");
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    assert!(!msg.contains("s3cret-pw"), "{msg}");

    // A wrong password, refused by the real server.
    let Some(db) = testdb::mysql("mysql::refused_login") else {
        return;
    };
    let mut s = db.server().clone();
    s.password = Some("s3cret-pw".into());
    let e = MysqlConn::connect(&s, testdb::test_options())
        .err()
        .unwrap();
    let msg = e.to_string();
    assert!(matches!(e, Error::Unavailable(_)), "{msg}");
    assert!(msg.contains("Access denied"), "{msg}");
    assert!(!msg.contains("s3cret-pw"), "{msg}");
}

#[test]
fn killed_connection_is_unavailable_and_unusable() {
    let Some(db) = testdb::mysql("mysql::killed_connection") else {
        return;
    };
    let mut victim = my(db.url(), testdb::test_options()).unwrap();
    let id = i64::from(victim.connection_id());
    let r = victim.query_one("SELECT CONNECTION_ID()", &[]).unwrap();
    assert_eq!(r.0, [Value::Int(id)]);
    let mut killer = db.connect();
    killer.batch(&format!("KILL {id}")).unwrap();
    let e = victim.query("SELECT 1", &[]).unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e}");
    assert!(!victim.is_usable());
    assert!(killer.is_usable());
}

#[test]
fn statement_timeout_is_unavailable_and_keeps_the_session() {
    let Some(db) = testdb::mysql("mysql::statement_timeout") else {
        return;
    };
    let opts = ConnectOptions {
        statement_timeout: Duration::from_millis(300),
        ..testdb::test_options()
    };
    let mut c = my(db.url(), opts).unwrap();
    let t0 = Instant::now();
    let e = c.query("SELECT SLEEP(5)", &[]).unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, Error::Unavailable(_)), "{e}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(c.is_usable());
    assert_eq!(c.query_one("SELECT 1", &[]).unwrap().0, [Value::Int(1)]);
}

#[test]
fn lock_wait_is_unavailable_and_deadlock_is_conflict() {
    let Some(db) = testdb::mysql("mysql::lock_wait") else {
        return;
    };
    let mut a = db.connect();
    a.batch("CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; INSERT INTO t VALUES (1, 0), (2, 0)")
        .unwrap();
    let opts = ConnectOptions {
        statement_timeout: Duration::from_secs(1),
        ..testdb::test_options()
    };
    let mut b = my(db.url(), opts).unwrap();

    // B waits for A's row lock past innodb_lock_wait_timeout.
    a.batch("START TRANSACTION").unwrap();
    a.query("SELECT v FROM t WHERE id = ? FOR UPDATE", &sql_args![1i64])
        .unwrap();
    b.batch("START TRANSACTION").unwrap();
    let t0 = Instant::now();
    let e = b
        .query("SELECT v FROM t WHERE id = ? FOR UPDATE", &sql_args![1i64])
        .unwrap_err();
    assert!(matches!(e, Error::Unavailable(_)), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(b.is_usable());
    b.batch("ROLLBACK").unwrap();
    a.batch("ROLLBACK").unwrap();

    // A deadlock: one of the two is told to try again.
    let mut b = db.connect();
    a.batch("START TRANSACTION").unwrap();
    b.batch("START TRANSACTION").unwrap();
    a.execute("UPDATE t SET v = 1 WHERE id = ?", &sql_args![1i64])
        .unwrap();
    b.execute("UPDATE t SET v = 1 WHERE id = ?", &sql_args![2i64])
        .unwrap();
    let other = std::thread::spawn(move || {
        let r = b.execute("UPDATE t SET v = 2 WHERE id = ?", &sql_args![1i64]);
        let _ = b.batch("ROLLBACK");
        r
    });
    std::thread::sleep(Duration::from_millis(200));
    let mine = a.execute("UPDATE t SET v = 2 WHERE id = ?", &sql_args![2i64]);
    let _ = a.batch("ROLLBACK");
    let theirs = other.join().unwrap();
    let conflicts = [&mine, &theirs]
        .iter()
        .filter(|r| matches!(r, Err(Error::Conflict(m)) if m.contains("try again")))
        .count();
    assert_eq!(conflicts, 1, "{mine:?} {theirs:?}");
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
