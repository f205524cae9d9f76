//! What both server backends' tests check the same way, on a connection to the real test
//! server ([`super::testdb`]): the backends' `tests` modules open the connections, do what
//! only their server does (killing a session, the statement that sleeps, the tables'
//! types) and call these.

use std::time::{Duration, Instant};

use super::url::ServerUrl;
use super::{Conn, ConnectOptions, DbUrl, Row, Value, connect_server, testdb};
use crate::error::{Error, Result};
use crate::sql_args;

/// The test options with a shorter statement timeout.
pub(super) fn statement_timeout(timeout: Duration) -> ConnectOptions {
    ConnectOptions {
        statement_timeout: timeout,
        ..testdb::test_options()
    }
}

/// Writes `values` into `columns` of a table `t` (whose `id` orders the rows as they went
/// in), then a row of NULLs, and reads both back: `want`, then NULLs. An untyped parameter
/// and a NULL one come back as given. Returns the two rows.
pub(super) fn values_round_trip(
    c: &mut dyn Conn,
    columns: &str,
    values: &[Value],
    want: &[Value],
) -> Vec<Row> {
    let insert = format!(
        "INSERT INTO t ({columns}) VALUES ({})",
        vec!["?"; values.len()].join(", ")
    );
    assert_eq!(c.execute(&insert, values).unwrap(), 1);
    c.execute(&insert, &vec![Value::Null; values.len()])
        .unwrap();
    let rows = c
        .query(&format!("SELECT {columns} FROM t ORDER BY id"), &[])
        .unwrap();
    assert_eq!(rows[0].0, want);
    assert_eq!(rows[1].0, vec![Value::Null; values.len()]);
    let r = c
        .query_one("SELECT ?, ?", &sql_args!["x", Value::Null])
        .unwrap();
    assert_eq!(r.0, [Value::Text("x".into()), Value::Null]);
    rows
}

/// `?` inside string literals is text, not a placeholder.
pub(super) fn placeholders_inside_literals(c: &mut dyn Conn) {
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

/// On a table `t` of rows (0, 1 and 2, `'same'`): rows an UPDATE matches count even when
/// nothing changes.
pub(super) fn execute_counts_matched_rows(c: &mut dyn Conn) {
    // Nothing changes, yet both rows count (as on every backend).
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
}

/// A second row with the same key, in a table `t (id VARCHAR(64) PRIMARY KEY)` made by
/// `create`, is a duplicate; a syntax error is a database error; neither costs the session.
pub(super) fn unique_violation_is_duplicate(c: &mut dyn Conn, create: &str) {
    c.batch(create).unwrap();
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

/// `url` (a server on port 1 of 127.0.0.1, where nothing listens, with the password
/// `s3cret-pw`) is unavailable at once, and the message names the address, not the password.
pub(super) fn refused_connection_is_unavailable(url: &str) {
    let url = DbUrl::parse(url).unwrap();
    let t0 = Instant::now();
    let e = connect_server(&url, testdb::test_options()).err().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    let msg = e.to_string();
    assert!(matches!(e, Error::Unavailable(_)), "{msg}");
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    assert!(!msg.contains("s3cret-pw"), "{msg}");
}

/// `server` with the password `s3cret-pw`, which the real server refuses: `connect` (the
/// backend's) fails as unavailable, saying `says`, without the password.
pub(super) fn refused_login_is_unavailable<C>(
    server: &ServerUrl,
    connect: fn(&ServerUrl, ConnectOptions) -> Result<C>,
    says: &str,
) {
    let mut s = server.clone();
    s.password = Some("s3cret-pw".into());
    let e = connect(&s, testdb::test_options()).err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, Error::Unavailable(_)), "{msg}");
    assert!(msg.contains(says), "{msg}");
    assert!(!msg.contains("s3cret-pw"), "{msg}");
}

/// `victim`'s session, just killed from `killer`: its statements fail as unavailable within
/// `grace` (zero: the very next one does) and it is no longer usable; the killer still is.
pub(super) fn killed_session_is_unavailable(
    victim: &mut dyn Conn,
    killer: &mut dyn Conn,
    grace: Duration,
) {
    let deadline = Instant::now() + grace;
    let e = loop {
        match victim.query("SELECT 1", &[]) {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(_) => panic!("the terminated session still answers"),
        }
    };
    assert!(matches!(e, Error::Unavailable(_)), "{e}");
    assert!(!victim.is_usable());
    assert!(killer.is_usable());
}

/// `c`, opened with a 300 ms statement timeout, runs `sleep` (a five-second statement): it
/// fails as unavailable after about 300 ms and the session goes on. Returns the error.
pub(super) fn statement_timeout_keeps_the_session(c: &mut dyn Conn, sleep: &str) -> Error {
    let t0 = Instant::now();
    let e = c.query(sleep, &[]).unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, Error::Unavailable(_)), "{e}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(c.is_usable());
    assert_eq!(c.query_one("SELECT 1", &[]).unwrap().0, [Value::Int(1)]);
    e
}

/// On a table `t (id, v)` of rows (1, 0) and (2, 0): `b` (opened with a short statement
/// timeout) waits for `a`'s row lock past its lock timeout, fails as unavailable and stays
/// usable. Returns how long `b` waited.
pub(super) fn lock_wait_is_unavailable(a: &mut dyn Conn, b: &mut dyn Conn) -> Duration {
    let begin = a.dialect().begin_write();
    a.batch(begin).unwrap();
    a.query("SELECT v FROM t WHERE id = ? FOR UPDATE", &sql_args![1i64])
        .unwrap();
    b.batch(begin).unwrap();
    let t0 = Instant::now();
    let e = b
        .query("SELECT v FROM t WHERE id = ? FOR UPDATE", &sql_args![1i64])
        .unwrap_err();
    let waited = t0.elapsed();
    assert!(matches!(e, Error::Unavailable(_)), "{e}");
    assert!(b.is_usable());
    b.batch("ROLLBACK").unwrap();
    a.batch("ROLLBACK").unwrap();
    waited
}

/// A deadlock between `a` and `b` on that table: one of the two is told to try again.
pub(super) fn deadlock_is_conflict(a: &mut dyn Conn, mut b: Box<dyn Conn>) {
    let begin = a.dialect().begin_write();
    a.batch(begin).unwrap();
    b.batch(begin).unwrap();
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
