//! The commit stamp of a SQLite database in WAL mode, read from its WAL index (the
//! `-shm` file) without a statement or a lock.
//!
//! Why: the registry memo ([`crate::registry::db`]) must learn on every HEAD or GET whether
//! any program has committed since it kept an image. A statement does that but takes and
//! drops SQLite's read locks (`fcntl` calls and a process-wide mutex that all workers queue
//! on), which was the largest single cost of a HEAD. The WAL index header answers the same
//! question with one `pread` of 96 bytes.
//!
//! The format is SQLite's documented, stable file format (<https://sqlite.org/walformat.html>,
//! unchanged since 3.7.0): the file starts with two copies of a 48-byte header. Every commit
//! rewrites them (the second copy first, then the first), moving `mxFrame` (the last valid
//! WAL frame) and the frame checksums; restarting the WAL after a checkpoint moves the
//! salts. SQLite's own readers trust the header only when both copies agree, and so do we;
//! when they do not (a commit in progress), the caller falls back to reading the database.
//!
//! The `-shm` file must stay the one SQLite uses. SQLite deletes or truncates it only when
//! the last connection to the database closes (or a first one finds nobody else attached),
//! so [`WalIndex`] keeps a connection of its own open for as long as it lives, and a read
//! stays valid whatever the pool does with its connections.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// Size of one copy of the WAL index header.
const HEADER: usize = 48;

/// The WAL index format version SQLite writes (`WALINDEX_MAX_VERSION`).
const FORMAT_VERSION: u32 = 3_007_000;

/// A database's WAL index, open for reading commit stamps.
pub struct WalIndex {
    shm: File,
    path: PathBuf,
    /// Keeps SQLite from deleting or re-creating the `-shm` file; never used otherwise
    /// (the mutex only makes it shareable between threads).
    _anchor: Mutex<Connection>,
}

impl std::fmt::Debug for WalIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalIndex")
            .field("path", &self.path)
            .finish()
    }
}

impl WalIndex {
    /// Opens the WAL index of the database file `db`; `None` when the database is not in
    /// WAL mode (its file system cannot share memory, say), or its index cannot be read.
    pub fn open(db: &Path) -> Result<Option<WalIndex>> {
        let fail = |e: rusqlite::Error| Error::Db(format!("cannot open {}: {e}", db.display()));
        let anchor = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail)?;
        let mode: String = anchor
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(None);
        }
        // A first read attaches the connection to the WAL index (and creates it).
        anchor
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(fail)?;
        let mut path = db.as_os_str().to_owned();
        path.push("-shm");
        let path = PathBuf::from(path);
        let Ok(shm) = File::open(&path) else {
            return Ok(None);
        };
        let index = WalIndex {
            shm,
            path,
            _anchor: Mutex::new(anchor),
        };
        Ok(index.stamp().is_some().then_some(index))
    }

    /// The stamp of the last commit: it differs after any commit by any program. `None`
    /// when the header is being rewritten at this moment or cannot be read.
    pub fn stamp(&self) -> Option<u128> {
        let mut buf = [0u8; 2 * HEADER];
        match self.shm.read_at(&mut buf, 0) {
            Ok(n) if n == buf.len() => parse(&buf),
            _ => None,
        }
    }
}

/// The stamp in a WAL index's first 96 bytes: the salts, the change counter and the last
/// frame, when both header copies agree and the index is initialised.
fn parse(buf: &[u8; 2 * HEADER]) -> Option<u128> {
    let (first, second) = buf.split_at(HEADER);
    if first != second {
        return None;
    }
    // The WAL index is in the host's byte order.
    let word = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&first[at..at + 4]);
        u32::from_ne_bytes(w)
    };
    let (version, change, initialised, last_frame) = (word(0), word(8), first[12], word(16));
    if version != FORMAT_VERSION || initialised == 0 {
        return None;
    }
    let (salt0, salt1) = (word(32), word(36));
    Some(
        u128::from(salt0) << 96
            | u128::from(salt1) << 64
            | u128::from(change) << 32
            | u128::from(last_frame),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(change: u32, last_frame: u32, salts: (u32, u32)) -> [u8; 2 * HEADER] {
        let mut h = [0u8; HEADER];
        h[0..4].copy_from_slice(&FORMAT_VERSION.to_ne_bytes());
        h[8..12].copy_from_slice(&change.to_ne_bytes());
        h[12] = 1;
        h[16..20].copy_from_slice(&last_frame.to_ne_bytes());
        h[32..36].copy_from_slice(&salts.0.to_ne_bytes());
        h[36..40].copy_from_slice(&salts.1.to_ne_bytes());
        let mut both = [0u8; 2 * HEADER];
        both[..HEADER].copy_from_slice(&h);
        both[HEADER..].copy_from_slice(&h);
        both
    }

    #[test]
    fn a_commit_or_a_wal_restart_moves_the_stamp() {
        let a = parse(&header(1, 10, (5, 77))).unwrap();
        assert_ne!(a, parse(&header(2, 12, (5, 77))).unwrap());
        // Restarted WAL: frames count from zero again, under new salts.
        assert_ne!(a, parse(&header(1, 10, (6, 91))).unwrap());
        assert_eq!(a, parse(&header(1, 10, (5, 77))).unwrap());
    }

    #[test]
    fn a_header_being_rewritten_or_uninitialised_gives_no_stamp() {
        let mut torn = header(1, 10, (5, 77));
        torn[HEADER + 16] = 11; // the second copy already holds the next commit
        assert_eq!(parse(&torn), None);
        let mut fresh = header(1, 10, (5, 77));
        fresh[12] = 0;
        fresh[HEADER + 12] = 0;
        assert_eq!(parse(&fresh), None);
        assert_eq!(parse(&[0u8; 2 * HEADER]), None);
    }

    #[test]
    fn every_commit_of_another_connection_moves_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.sqlite");
        let writer = Connection::open(&db).unwrap();
        let _: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        writer.execute("CREATE TABLE t (n INTEGER)", []).unwrap();
        let index = WalIndex::open(&db).unwrap().expect("a WAL index");
        let mut seen = vec![index.stamp().unwrap()];
        for n in 0..5 {
            writer.execute("INSERT INTO t VALUES (?1)", [n]).unwrap();
            let stamp = index.stamp().unwrap();
            assert!(
                !seen.contains(&stamp),
                "commit {n} left the stamp as it was"
            );
            seen.push(stamp);
        }
        // A checkpoint that restarts the WAL changes no data, but the next commit after it
        // must still move the stamp.
        let _: (i64, i64, i64) = writer
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        writer.execute("INSERT INTO t VALUES (9)", []).unwrap();
        assert!(!seen.contains(&index.stamp().unwrap()));
        // Reads move nothing.
        let before = index.stamp();
        let _: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(index.stamp(), before);
    }

    #[test]
    fn a_database_not_in_wal_mode_has_no_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.sqlite");
        let c = Connection::open(&db).unwrap();
        c.execute("CREATE TABLE t (n INTEGER)", []).unwrap();
        assert!(WalIndex::open(&db).unwrap().is_none());
    }
}
