//! A bounded pool of registry database connections, SQLAlchemy-style.
//!
//! Up to `max_size` connections are kept open between uses; under load up to
//! `max_overflow` more are opened and closed again when returned. A caller that finds all
//! `max_size + max_overflow` in use waits up to `checkout_timeout`, then gets
//! [`Error::Unavailable`] (503). Connections idle longer than `idle_timeout` are closed
//! instead of reused (`sql_idle_timeout`: servers and firewalls drop idle sessions).
//!
//! Transactions are run through [`Pool::read`] and [`Pool::write`]. When the database
//! restarts, every pooled connection is dead: the first statement of a transaction (its
//! `BEGIN`) failing with a lost connection closes all idle connections and retries once on
//! a new one, so the first request after an outage does not fail for a stale connection.
//! During the outage requests get 503 within the connect timeout.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Conn, Dialect};
use crate::error::{Error, Result};

/// Opens a new connection.
pub type Connector = Box<dyn Fn() -> Result<Box<dyn Conn>> + Send + Sync>;

/// Pool sizes and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Connections kept open between uses (`sql_max_pool_size`).
    pub max_size: usize,
    /// Extra connections opened under load, closed when returned (`sql_max_overflow`).
    pub max_overflow: usize,
    /// Idle connections older than this are closed rather than reused (`sql_idle_timeout`).
    pub idle_timeout: Duration,
    /// How long a caller waits for a connection when all are in use (`sql_pool_timeout`).
    pub checkout_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> PoolOptions {
        PoolOptions {
            max_size: 16,
            max_overflow: 16,
            idle_timeout: Duration::from_secs(3600),
            checkout_timeout: Duration::from_secs(30),
        }
    }
}

struct State {
    /// Idle connections with the time they were returned; the newest last.
    idle: Vec<(Box<dyn Conn>, Instant)>,
    /// Connections open, idle or checked out.
    open: usize,
    /// Requests waiting for a connection: only then is a return signalled (a condition
    /// variable's signal is a system call even when nobody waits).
    waiting: usize,
}

/// A bounded connection pool (see the module documentation).
pub struct Pool {
    connect: Connector,
    dialect: Dialect,
    opts: PoolOptions,
    state: Mutex<State>,
    returned: Condvar,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("dialect", &self.dialect)
            .field("opts", &self.opts)
            .finish()
    }
}

/// A connection checked out of a [`Pool`]; returned when dropped.
pub struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Box<dyn Conn>>,
    /// Whether it came from the idle list (and so may have died while idle).
    reused: bool,
    /// Inside a transaction this guard started: rolled back when dropped.
    in_tx: bool,
}

impl Pooled<'_> {
    /// The connection.
    pub fn conn(&mut self) -> Result<&mut dyn Conn> {
        match self.conn.as_mut() {
            Some(c) => Ok(c.as_mut()),
            None => Err(Error::Internal("pooled connection already returned".into())),
        }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let clean = !self.in_tx || conn.batch("ROLLBACK").is_ok();
            self.pool.put(conn, clean);
        }
    }
}

impl Pool {
    /// A pool that opens connections with `connect`, starting with `first` (already open,
    /// e.g. the connection that checked the schema) when given.
    pub fn new(
        dialect: Dialect,
        opts: PoolOptions,
        connect: Connector,
        first: Option<Box<dyn Conn>>,
    ) -> Pool {
        let mut state = State {
            idle: Vec::new(),
            open: 0,
            waiting: 0,
        };
        if let Some(c) = first {
            state.idle.push((c, Instant::now()));
            state.open = 1;
        }
        Pool {
            connect,
            dialect,
            opts: PoolOptions {
                max_size: opts.max_size.max(1),
                ..opts
            },
            state: Mutex::new(state),
            returned: Condvar::new(),
        }
    }

    /// Idle connections in the pool.
    pub fn idle_count(&self) -> usize {
        self.lock().idle.len()
    }

    /// The SQL the pool's connections speak.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks out a connection: an idle one, else a new one while under the limit, else
    /// waits for one to be returned.
    pub fn get(&self) -> Result<Pooled<'_>> {
        let deadline = Instant::now() + self.opts.checkout_timeout;
        let limit = self.opts.max_size + self.opts.max_overflow;
        let mut state = self.lock();
        loop {
            while let Some((conn, since)) = state.idle.pop() {
                if since.elapsed() <= self.opts.idle_timeout && conn.is_usable() {
                    return Ok(self.pooled(conn, true));
                }
                // Too old, or dead: close it (outside the lock would be nicer, but closing
                // is a socket shutdown at most).
                state.open -= 1;
                drop(conn);
            }
            if state.open < limit {
                state.open += 1;
                drop(state);
                return match (self.connect)() {
                    Ok(conn) => Ok(self.pooled(conn, false)),
                    Err(e) => {
                        let mut state = self.lock();
                        state.open -= 1;
                        self.signal(state, false);
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Unavailable(format!(
                    "all {limit} registry database connections are busy; try again later"
                )));
            }
            state.waiting += 1;
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        }
    }

    fn pooled(&self, conn: Box<dyn Conn>, reused: bool) -> Pooled<'_> {
        Pooled {
            pool: self,
            conn: Some(conn),
            reused,
            in_tx: false,
        }
    }

    /// Takes a connection back; `clean` is false when it could not be rolled back.
    fn put(&self, conn: Box<dyn Conn>, clean: bool) {
        let mut state = self.lock();
        if clean && conn.is_usable() && state.idle.len() < self.opts.max_size {
            state.idle.push((conn, Instant::now()));
        } else {
            state.open -= 1;
            drop(conn);
        }
        self.signal(state, false);
    }

    /// Wakes one waiting request (all with `all`), if any waits, and unlocks.
    fn signal(&self, state: MutexGuard<'_, State>, all: bool) {
        let waiting = state.waiting > 0;
        drop(state);
        match (waiting, all) {
            (false, _) => {}
            (true, false) => self.returned.notify_one(),
            (true, true) => self.returned.notify_all(),
        }
    }

    /// Closes every idle connection (after one was found dead: the others are likely dead
    /// too, e.g. after a database restart).
    fn close_idle(&self) {
        let mut state = self.lock();
        let n = state.idle.len();
        state.idle.clear();
        state.open -= n;
        self.signal(state, true);
    }

    /// A connection inside a new transaction started with `begin`, retried once on a new
    /// connection when a reused one turns out to be dead.
    fn begin(&self, begin: &str) -> Result<Pooled<'_>> {
        let mut pooled = self.get()?;
        match pooled.conn()?.batch(begin) {
            Ok(()) => {}
            Err(Error::Unavailable(_)) if pooled.reused => {
                drop(pooled);
                self.close_idle();
                pooled = self.get()?;
                pooled.conn()?.batch(begin)?;
            }
            Err(e) => return Err(e),
        }
        pooled.in_tx = true;
        Ok(pooled)
    }

    /// Runs `f` in a transaction started with `begin`: committed when `f` succeeds, rolled
    /// back when it fails.
    fn transaction<T>(&self, begin: &str, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        let mut pooled = self.begin(begin)?;
        let conn = pooled.conn()?;
        let out = f(conn)?;
        conn.batch("COMMIT")?;
        pooled.in_tx = false;
        Ok(out)
    }

    /// Runs `f` in one read transaction (one snapshot).
    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        self.transaction(self.dialect.begin_read(), f)
    }

    /// Runs `f` in one write transaction (see [`Dialect::begin_write`]).
    pub fn write<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        self.transaction(self.dialect.begin_write(), f)
    }

    /// Runs `f`, which only reads, outside a transaction: each statement sees the database
    /// as of its own start. For a read that is one statement (an image with its properties
    /// and tags) that is one snapshot, without the round trips of `BEGIN` and `COMMIT`.
    /// Retried once on a new connection when a reused one turns out to be dead.
    pub fn read_autocommit<T>(&self, f: impl Fn(&mut dyn Conn) -> Result<T>) -> Result<T> {
        let mut pooled = self.get()?;
        match f(pooled.conn()?) {
            Err(Error::Unavailable(_)) if pooled.reused => {
                drop(pooled);
                self.close_idle();
                let mut fresh = self.get()?;
                f(fresh.conn()?)
            }
            other => other,
        }
    }

    /// Runs `f` on a connection outside any transaction (schema migrations manage their
    /// own).
    pub fn with_conn<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        let mut pooled = self.get()?;
        f(pooled.conn()?)
    }
}

#[cfg(test)]
mod tests;
