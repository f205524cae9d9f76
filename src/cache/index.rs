//! The cache's index: what is cached, in which state, and how it is used, in a small SQLite
//! database (`<image_cache_datadir>/.index.sqlite`).
//!
//! Diablo kept this in extended attributes (`user.image_name`, `user.hits`, ...) and read the
//! recency from atime; both are lost or wrong on some filesystems (no `user_xattr`,
//! `noatime`), and neither can answer "how many bytes are cached" in one query or make the
//! claim of a fill atomic between glance-api and the cache programs. The index can: it is
//! opened by every process that uses the cache, in WAL mode with a busy timeout, and every
//! change that must be atomic (claiming a fill and making room for it) is one `IMMEDIATE`
//! transaction.
//!
//! The files stay the truth about data: a row without its file is dropped when found, and
//! a file without a valid row is never served (the pruner removes it). The name starts
//! with a dot, which no image id may, so it cannot collide with a cached image.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::error::Result;

/// File name of the index inside the cache directory.
pub const INDEX_FILE: &str = ".index.sqlite";

/// Version of the schema below (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    image_id      TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('incomplete', 'valid', 'invalid')),
    name          TEXT,
    expected_size INTEGER NOT NULL,
    size          INTEGER NOT NULL DEFAULT 0,
    checksum      TEXT NOT NULL,
    error         TEXT,
    hits          INTEGER NOT NULL DEFAULT 0,
    modified_at   INTEGER NOT NULL,
    accessed_at   INTEGER NOT NULL,
    fingerprint   TEXT,
    PRIMARY KEY (image_id, state)
);
CREATE INDEX IF NOT EXISTS entries_lru ON entries (state, accessed_at);
CREATE TABLE IF NOT EXISTS prefetch (
    image_id   TEXT PRIMARY KEY,
    name       TEXT,
    size       INTEGER NOT NULL,
    queued_at  INTEGER NOT NULL,
    started_at INTEGER
);
";

/// The state of a cache entry, which is also the directory its file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Being filled, in `incomplete/`.
    Incomplete,
    /// Complete and verified, in the cache directory itself: served on a hit.
    Valid,
    /// Failed verification (or a store error while filling), in `invalid/`: kept for
    /// inspection until the reaper removes it.
    Invalid,
}

impl State {
    /// The name stored in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Incomplete => "incomplete",
            State::Valid => "valid",
            State::Invalid => "invalid",
        }
    }
}

/// One row of `entries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The image id (also the file name).
    pub image_id: String,
    /// Its state.
    pub state: State,
    /// The image's name when it was cached.
    pub name: Option<String>,
    /// The size the registry gave.
    pub expected_size: u64,
    /// Bytes in the file (for `incomplete`, as of the claim: read the file for progress).
    pub size: u64,
    /// The registry's MD5 of the image.
    pub checksum: String,
    /// Why an `invalid` entry is invalid.
    pub error: Option<String>,
    /// Hits served from this entry.
    pub hits: u64,
    /// When the entry last changed state, in microseconds since the epoch.
    pub modified_at: i64,
    /// When the entry was last served (or created), in microseconds since the epoch.
    pub accessed_at: i64,
    /// What the file looked like when it became valid (see `fingerprint` in mod.rs).
    pub fingerprint: Option<String>,
}

/// One queued or running prefetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The image id.
    pub image_id: String,
    /// Its name when queued.
    pub name: Option<String>,
    /// Its size when queued.
    pub size: u64,
    /// When it was queued (µs since the epoch).
    pub queued_at: i64,
    /// When the prefetcher took it (µs since the epoch); `None` while queued.
    pub started_at: Option<i64>,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The fill is ours; the listed valid entries were evicted to make room (their files
    /// must be removed by the caller).
    Granted {
        /// Image ids whose valid files must be unlinked.
        evicted: Vec<String>,
    },
    /// The image became valid meanwhile: serve it.
    AlreadyValid,
    /// Caching it would take the cache past its maximum even after evicting every other
    /// entry not being filled.
    NoRoom,
}

/// Microseconds since the epoch, for the index's times.
pub fn micros(t: SystemTime) -> i64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The time of an index value.
pub fn from_micros(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn now() -> i64 {
    micros(SystemTime::now())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn state_of(text: &str) -> State {
    match text {
        "valid" => State::Valid,
        "invalid" => State::Invalid,
        _ => State::Incomplete,
    }
}

const ENTRY_COLUMNS: &str = "image_id, state, name, expected_size, size, checksum, error, hits, \
                             modified_at, accessed_at, fingerprint";

fn entry(row: &Row<'_>) -> rusqlite::Result<Entry> {
    let state: String = row.get(1)?;
    let u = |i: usize| -> rusqlite::Result<u64> {
        row.get::<_, i64>(i).map(|n| u64::try_from(n).unwrap_or(0))
    };
    Ok(Entry {
        image_id: row.get(0)?,
        state: state_of(&state),
        name: row.get(2)?,
        expected_size: u(3)?,
        size: u(4)?,
        checksum: row.get(5)?,
        error: row.get(6)?,
        hits: u(7)?,
        modified_at: row.get(8)?,
        accessed_at: row.get(9)?,
        fingerprint: row.get(10)?,
    })
}

fn queued(row: &Row<'_>) -> rusqlite::Result<Queued> {
    Ok(Queued {
        image_id: row.get(0)?,
        name: row.get(1)?,
        size: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
        queued_at: row.get(3)?,
        started_at: row.get(4)?,
    })
}

/// An open index (one connection).
pub struct Index {
    conn: Connection,
}

impl Index {
    /// Opens (creating) the index at `path`.
    pub fn open(path: &Path) -> Result<Index> {
        let conn = Connection::open(path)?;
        // Short: the index is held under a mutex by the api, and every transaction on it is small.
        conn.busy_timeout(Duration::from_secs(10))?;
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        // The index describes files that can be re-read; losing its last commits on power
        // loss costs at most a refill (a valid file without its row is never served).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(Index { conn })
    }

    /// Opens a fresh index in memory (unit tests).
    #[cfg(test)]
    pub fn in_memory() -> Result<Index> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Index { conn })
    }

    /// The entry of `id` in `state`.
    pub fn get(&self, id: &str, state: State) -> Result<Option<Entry>> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE image_id = ?1 AND state = ?2");
        Ok(self
            .conn
            .query_row(&sql, params![id, state.as_str()], entry)
            .optional()?)
    }

    /// Every entry in `state`, least recently used first.
    pub fn list(&self, state: State) -> Result<Vec<Entry>> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE state = ?1 \
             ORDER BY accessed_at, image_id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params![state.as_str()], entry)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Counts a hit on the valid entry of `id`.
    pub fn hit(&self, id: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE entries SET hits = hits + 1, accessed_at = ?2 \
             WHERE image_id = ?1 AND state = 'valid'",
            params![id, now()],
        )?;
        Ok(())
    }

    /// Removes the entry of `id` in `state`; true when there was one.
    pub fn remove(&self, id: &str, state: State) -> Result<bool> {
        let n = self.conn.execute(
            "DELETE FROM entries WHERE image_id = ?1 AND state = ?2",
            params![id, state.as_str()],
        )?;
        Ok(n > 0)
    }

    /// Claims the fill of image `id` (`expected` bytes, MD5 `checksum`) for the caller, who
    /// holds the lock of its `incomplete/` file, so any `incomplete` row of `id` is a dead
    /// fill's and is replaced. Room is made within `max_size` counting valid entries and
    /// the expected sizes of fills in progress: least recently used valid entries are
    /// evicted (see [`plan_eviction`](super::lru::plan_eviction)).
    pub fn claim(
        &mut self,
        id: &str,
        name: Option<&str>,
        expected: u64,
        checksum: &str,
        max_size: u64,
    ) -> Result<Claim> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM entries WHERE image_id = ?1 AND state = 'incomplete'",
            params![id],
        )?;
        let valid: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM entries WHERE image_id = ?1 AND state = 'valid'",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        if valid.is_some() {
            tx.commit()?;
            return Ok(Claim::AlreadyValid);
        }
        let filling: i64 = tx.query_row(
            "SELECT COALESCE(SUM(expected_size), 0) FROM entries WHERE state = 'incomplete'",
            [],
            |r| r.get(0),
        )?;
        let lru: Vec<(String, u64)> = {
            let mut stmt = tx.prepare(
                "SELECT image_id, size FROM entries WHERE state = 'valid' \
                 ORDER BY accessed_at, image_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let filling = u64::try_from(filling).unwrap_or(0);
        let Some(evicted) = super::lru::plan_eviction(&lru, filling, expected, max_size) else {
            tx.commit()?; // the dead fill's row stays removed
            return Ok(Claim::NoRoom);
        };
        for victim in &evicted {
            tx.execute(
                "DELETE FROM entries WHERE image_id = ?1 AND state = 'valid'",
                params![victim],
            )?;
        }
        let t = now();
        tx.execute(
            "INSERT INTO entries (image_id, state, name, expected_size, size, checksum, \
             modified_at, accessed_at) VALUES (?1, 'incomplete', ?2, ?3, 0, ?4, ?5, ?5)",
            params![id, name, to_i64(expected), checksum, t],
        )?;
        tx.commit()?;
        Ok(Claim::Granted { evicted })
    }

    /// Turns the `incomplete` row of `id` into the valid entry (`size` bytes, the file's
    /// `fingerprint`). False when the row is gone (a reaper took it): the caller must
    /// remove the file it just moved into place.
    pub fn commit(&mut self, id: &str, size: u64, fingerprint: &str) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM entries WHERE image_id = ?1 AND state = 'valid'",
            params![id],
        )?;
        let t = now();
        let n = tx.execute(
            "UPDATE entries SET state = 'valid', size = ?2, fingerprint = ?3, \
             modified_at = ?4, accessed_at = ?4, error = NULL, hits = 0 \
             WHERE image_id = ?1 AND state = 'incomplete'",
            params![id, to_i64(size), fingerprint, t],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Records that the entry of `id` in `from` (`incomplete`, or a `valid` one found
    /// changed) is now `invalid`: `size` bytes, because of `error`. An older invalid entry
    /// of the same image is replaced, as its file was.
    pub fn invalidate(&mut self, id: &str, from: State, size: u64, error: &str) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM entries WHERE image_id = ?1 AND state = 'invalid'",
            params![id],
        )?;
        tx.execute(
            "UPDATE entries SET state = 'invalid', size = ?3, error = ?4, modified_at = ?5, \
             fingerprint = NULL WHERE image_id = ?1 AND state = ?2",
            params![id, from.as_str(), to_i64(size), error, now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Bytes held by valid entries and promised to fills in progress.
    pub fn used(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(CASE state WHEN 'valid' THEN size ELSE expected_size END), 0) \
             FROM entries WHERE state IN ('valid', 'incomplete')",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Queues a prefetch of `id`; false when it is already queued or running.
    pub fn enqueue(&self, id: &str, name: Option<&str>, size: u64) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO prefetch (image_id, name, size, queued_at) \
             VALUES (?1, ?2, ?3, ?4)",
            params![id, name, to_i64(size), now()],
        )?;
        Ok(n > 0)
    }

    /// The queued and running prefetches, oldest first.
    pub fn queue(&self) -> Result<Vec<Queued>> {
        let mut stmt = self.conn.prepare(
            "SELECT image_id, name, size, queued_at, started_at FROM prefetch \
             ORDER BY queued_at, image_id",
        )?;
        let rows = stmt.query_map([], queued)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The prefetch of `id`, if queued or running.
    pub fn queued(&self, id: &str) -> Result<Option<Queued>> {
        Ok(self
            .conn
            .query_row(
                "SELECT image_id, name, size, queued_at, started_at FROM prefetch \
                 WHERE image_id = ?1",
                params![id],
                queued,
            )
            .optional()?)
    }

    /// Takes the oldest queued prefetch (marks it running) and returns its id.
    pub fn start_next(&mut self) -> Result<Option<String>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let next: Option<String> = tx
            .query_row(
                "SELECT image_id FROM prefetch WHERE started_at IS NULL \
                 ORDER BY queued_at, image_id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = &next {
            tx.execute(
                "UPDATE prefetch SET started_at = ?2 WHERE image_id = ?1",
                params![id, now()],
            )?;
        }
        tx.commit()?;
        Ok(next)
    }

    /// Puts prefetches marked running back in the queue (a prefetcher that died left them).
    pub fn requeue_started(&self) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE prefetch SET started_at = NULL WHERE started_at IS NOT NULL",
            [],
        )?)
    }

    /// Drops the prefetch of `id` (done, or no longer wanted); true when there was one.
    pub fn dequeue(&self, id: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM prefetch WHERE image_id = ?1", params![id])?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        Index::in_memory().unwrap_or_else(|e| panic!("{e}"))
    }

    fn claim(ix: &mut Index, id: &str, size: u64, max: u64) -> Claim {
        ix.claim(id, Some("n"), size, "md5", max)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn valid(ix: &mut Index, id: &str, size: u64) {
        assert_eq!(
            claim(ix, id, size, u64::MAX),
            Claim::Granted { evicted: vec![] }
        );
        assert!(ix.commit(id, size, "fp").unwrap_or(false));
    }

    #[test]
    fn a_claim_becomes_valid_on_commit() {
        let mut ix = index();
        assert_eq!(
            claim(&mut ix, "a", 10, 100),
            Claim::Granted { evicted: vec![] }
        );
        assert_eq!(ix.used().ok(), Some(10), "a fill counts its expected size");
        let e = ix.get("a", State::Incomplete).ok().flatten();
        assert_eq!(e.map(|e| (e.expected_size, e.size)), Some((10, 0)));
        assert!(ix.commit("a", 10, "fp").unwrap_or(false));
        let e = ix.get("a", State::Valid).ok().flatten();
        assert_eq!(
            e.map(|e| (e.size, e.fingerprint, e.hits)),
            Some((10, Some("fp".into()), 0))
        );
        assert_eq!(ix.get("a", State::Incomplete).ok().flatten(), None);
        assert_eq!(claim(&mut ix, "a", 10, 100), Claim::AlreadyValid);
        ix.hit("a").ok();
        ix.hit("a").ok();
        let hits = ix.get("a", State::Valid).ok().flatten().map(|e| e.hits);
        assert_eq!(hits, Some(2));
    }

    #[test]
    fn a_commit_without_its_claim_is_refused() {
        let mut ix = index();
        assert_eq!(ix.commit("ghost", 1, "fp").ok(), Some(false));
        assert_eq!(ix.get("ghost", State::Valid).ok().flatten(), None);
    }

    #[test]
    fn claims_evict_the_least_recently_used() {
        let mut ix = index();
        valid(&mut ix, "old", 40);
        valid(&mut ix, "mid", 40);
        valid(&mut ix, "new", 10);
        ix.hit("old").ok(); // now the most recently used
        let got = claim(&mut ix, "x", 30, 100);
        assert_eq!(
            got,
            Claim::Granted {
                evicted: vec!["mid".into()]
            }
        );
        assert_eq!(ix.get("mid", State::Valid).ok().flatten(), None);
        assert_eq!(ix.used().ok(), Some(80));
        assert_eq!(claim(&mut ix, "huge", 101, 100), Claim::NoRoom);
        // Fills in progress are never evicted: with x (30) filling, 80 more cannot fit.
        assert_eq!(
            claim(&mut ix, "y", 80, 100),
            Claim::NoRoom,
            "x is being filled"
        );
        assert!(ix.get("old", State::Valid).ok().flatten().is_some());
    }

    #[test]
    fn a_dead_fill_is_replaced_and_invalid_entries_keep_one_per_image() {
        let mut ix = index();
        claim(&mut ix, "a", 10, 100);
        assert_eq!(
            claim(&mut ix, "a", 10, 100),
            Claim::Granted { evicted: vec![] }
        );
        assert_eq!(ix.used().ok(), Some(10));
        ix.invalidate("a", State::Incomplete, 7, "short").ok();
        claim(&mut ix, "a", 10, 100);
        ix.invalidate("a", State::Incomplete, 9, "md5").ok();
        let inv = ix.list(State::Invalid).unwrap_or_default();
        assert_eq!(inv.len(), 1);
        assert_eq!((inv[0].size, inv[0].error.as_deref()), (9, Some("md5")));
        assert_eq!(ix.used().ok(), Some(0), "invalid entries are not counted");
    }

    #[test]
    fn the_prefetch_queue_is_fifo_and_one_per_image() {
        let mut ix = index();
        assert!(ix.enqueue("a", None, 1).unwrap_or(false));
        std::thread::sleep(Duration::from_millis(2));
        assert!(ix.enqueue("b", Some("bee"), 2).unwrap_or(false));
        assert!(!ix.enqueue("a", None, 1).unwrap_or(true));
        assert_eq!(ix.start_next().ok().flatten().as_deref(), Some("a"));
        assert!(!ix.enqueue("a", None, 1).unwrap_or(true), "running counts");
        let q = ix.queue().unwrap_or_default();
        assert_eq!(q.len(), 2);
        assert!(q[0].started_at.is_some() && q[1].started_at.is_none());
        assert_eq!(ix.requeue_started().ok(), Some(1));
        assert!(ix.dequeue("a").unwrap_or(false));
        assert_eq!(ix.start_next().ok().flatten().as_deref(), Some("b"));
        assert_eq!(ix.start_next().ok().flatten(), None);
    }
}
