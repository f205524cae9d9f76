use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;
use crate::registry::sql::{Row, Value};

/// A connection that records nothing and fails like a lost one while `down` is set.
struct Fake {
    down: Arc<AtomicBool>,
    dead: bool,
}

impl Conn for Fake {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn query(&mut self, _sql: &str, _args: &[Value]) -> Result<Vec<Row>> {
        self.batch("SELECT 1")?;
        Ok(vec![Row(vec![Value::Int(1)])])
    }
    fn execute(&mut self, _sql: &str, _args: &[Value]) -> Result<u64> {
        self.batch("UPDATE")?;
        Ok(1)
    }
    fn batch(&mut self, _sql: &str) -> Result<()> {
        if self.dead || self.down.load(Ordering::SeqCst) {
            self.dead = true;
            return Err(Error::Unavailable("connection lost".into()));
        }
        Ok(())
    }
    fn is_usable(&self) -> bool {
        !self.dead
    }
}

fn pool(opts: PoolOptions) -> (Pool, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let down = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let (d, o) = (down.clone(), opened.clone());
    let connect: Connector = Box::new(move || {
        if d.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("connection refused".into()));
        }
        o.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(Fake {
            down: d.clone(),
            dead: false,
        }) as Box<dyn Conn>)
    });
    (
        Pool::new(Dialect::Postgres, opts, connect, None),
        down,
        opened,
    )
}

#[test]
fn reuses_idle_connections() {
    let (pool, _down, opened) = pool(PoolOptions::default());
    for _ in 0..10 {
        pool.read(|c| c.query("SELECT 1", &[])).unwrap();
    }
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}

#[test]
fn waits_then_gives_503_when_all_are_busy() {
    let (pool, _down, _) = pool(PoolOptions {
        max_size: 1,
        max_overflow: 1,
        checkout_timeout: Duration::from_millis(100),
        ..PoolOptions::default()
    });
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    let started = Instant::now();
    let err = pool.get().err().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(err.status(), 503, "{err}");
    assert!(
        err.message()
            .contains("all 2 registry database connections are busy")
    );
    drop(a);
    // The overflow connection is closed on return, the other kept.
    drop(b);
    assert_eq!(pool.lock().idle.len(), 1);
    assert_eq!(pool.lock().open, 1);
    pool.get().unwrap();
}

#[test]
fn outage_gives_503_and_recovers_without_a_stale_failure() {
    let (pool, down, opened) = pool(PoolOptions::default());
    // Four connections in the pool.
    let held: Vec<_> = (0..4).map(|_| pool.get().unwrap()).collect();
    drop(held);
    assert_eq!(pool.lock().idle.len(), 4);
    down.store(true, Ordering::SeqCst);
    let err = pool.read(|c| c.query("SELECT 1", &[])).unwrap_err();
    assert_eq!(err.status(), 503);
    down.store(false, Ordering::SeqCst);
    // The first request after the outage succeeds: stale connections are dropped.
    pool.read(|c| c.query("SELECT 1", &[])).unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 5);
    assert_eq!(pool.lock().open, 1);
}

#[test]
fn failed_transactions_are_rolled_back_and_returned() {
    let (pool, _down, opened) = pool(PoolOptions::default());
    let err = pool
        .write(|_| -> Result<()> { Err(Error::bad_request("no")) })
        .unwrap_err();
    assert_eq!(err.status(), 400);
    pool.write(|c| c.execute("UPDATE", &[])).unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}

#[test]
fn idle_connections_past_the_idle_timeout_are_replaced() {
    let (pool, _down, opened) = pool(PoolOptions {
        idle_timeout: Duration::ZERO,
        ..PoolOptions::default()
    });
    pool.read(|c| c.query("SELECT 1", &[])).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    pool.read(|c| c.query("SELECT 1", &[])).unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 2);
    assert_eq!(pool.lock().open, 1);
}

#[test]
fn autocommit_reads_retry_once_after_an_outage() {
    let (pool, down, opened) = pool(PoolOptions::default());
    let held: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    drop(held);
    down.store(true, Ordering::SeqCst);
    let err = pool
        .read_autocommit(|c| c.query("SELECT 1", &[]))
        .unwrap_err();
    assert_eq!(err.status(), 503);
    down.store(false, Ordering::SeqCst);
    // The stale connections are dropped and the read succeeds at once.
    pool.read_autocommit(|c| c.query("SELECT 1", &[])).unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 4);
}
