//! Images recently read from an embedded (SQLite) registry, kept in memory while the
//! database does not change.
//!
//! A HEAD or GET of an image is the commonest request (compute hosts poll images, clients
//! check them before use), and on SQLite most of its cost is the database: two statements,
//! each taking and dropping the file's shared lock. The memo keeps images under a stamp of
//! the database's last commit, and serves one only while the stamp stands. The stamp is,
//! whichever program writes (glance-api, glance-registry, the scrubber, `glance-manage`,
//! an operator's `sqlite3`):
//!
//! - in WAL mode, the WAL index header ([`crate::registry::sql::wal_index`]): one `pread`,
//!   no statement and no lock;
//! - otherwise (an in-memory database, a file system without shared memory), the counter in
//!   `registry_changes`, which triggers move in the same transaction as every write to an
//!   image, its properties or its tags: one small statement.
//!
//! Why the stamp is read first: an image loaded after reading stamp `n` is at least as new
//! as `n`, so keeping it under `n` can only keep something newer than needed, never older;
//! the next read sees the stamp moved and starts over. Whether the caller may see the image
//! is decided on every request (members are read each time for a shared image), so the
//! memo holds no decision about callers.
//!
//! Concurrent readers share counter reads: a request may use a value whose read began after
//! the request did (it reflects every write that ended before), so under load most requests
//! wait a moment for a read in progress instead of each taking SQLite's locks (whose
//! process-wide mutex the workers would otherwise queue on).
//!
//! Bounded: at most [`CAPACITY`] images; when full, the memo starts over. A database
//! server (several nodes) is read every time: there is no memo for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::error::Result;
use crate::image::Image;

/// Most images kept.
pub const CAPACITY: usize = 1024;

/// The statement that reads the change counter.
pub const COUNTER_SQL: &str = "SELECT n FROM registry_changes WHERE id = 1";

/// Images by id, valid for one value of the database's change stamp.
#[derive(Debug, Default)]
pub struct Memo {
    inner: Mutex<Kept>,
    /// The last counter read, and when it began; held while a read is in progress.
    last_read: Mutex<Option<(Instant, u128)>>,
}

#[derive(Debug, Default)]
struct Kept {
    counter: u128,
    images: HashMap<String, Arc<Image>>,
}

impl Memo {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The change counter for a request that `arrived` then: the last value read if that
    /// read began later, else a new one from `read`.
    pub fn counter(&self, arrived: Instant, read: impl FnOnce() -> Result<i64>) -> Result<u128> {
        let mut last = self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((began, value)) = *last
            && began > arrived
        {
            return Ok(value);
        }
        let began = Instant::now();
        // The counter only grows from 0; a negative value (a hand-edited table) still
        // differs from every other.
        let value = read()? as u64 as u128;
        *last = Some((began, value));
        Ok(value)
    }

    /// The image kept under `counter`, the change stamp just read. A different value drops
    /// everything kept.
    pub fn get(&self, counter: u128, id: &str) -> Option<Arc<Image>> {
        let mut kept = self.lock();
        if kept.counter != counter {
            kept.counter = counter;
            kept.images.clear();
            return None;
        }
        kept.images.get(id).cloned()
    }

    /// Keeps `image`, loaded after the stamp read `counter`; ignored when another request
    /// has seen the stamp move since.
    pub fn put(&self, counter: u128, image: &Arc<Image>) {
        let mut kept = self.lock();
        if kept.counter != counter {
            return;
        }
        if kept.images.len() >= CAPACITY {
            kept.images.clear();
        }
        kept.images.insert(image.id.clone(), Arc::clone(image));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, name: &str) -> Image {
        let mut img = Image::new(id.to_string());
        img.name = Some(name.to_string());
        img
    }

    #[test]
    fn kept_only_while_the_counter_stands() {
        let memo = Memo::default();
        assert!(memo.get(0, "a").is_none());
        memo.put(0, &Arc::new(image("a", "one")));
        assert_eq!(
            memo.get(0, "a").and_then(|i| i.name.clone()).as_deref(),
            Some("one")
        );
        // A write moved the counter: nothing kept is served.
        assert!(memo.get(1, "a").is_none());
        assert!(memo.get(0, "a").is_none());
    }

    #[test]
    fn an_image_read_before_the_counter_moved_is_not_kept() {
        let memo = Memo::default();
        assert!(memo.get(3, "a").is_none());
        // Another request saw the counter at 4 while this one loaded under 3.
        assert!(memo.get(4, "b").is_none());
        memo.put(3, &Arc::new(image("a", "old")));
        assert!(memo.get(4, "a").is_none());
    }

    #[test]
    fn a_counter_read_serves_requests_that_arrived_before_it_began() {
        let memo = Memo::default();
        let early = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(memo.counter(Instant::now(), || Ok(7)).unwrap(), 7);
        // Arrived before that read began: its value will do.
        assert_eq!(memo.counter(early, || panic!("read again")).unwrap(), 7);
        // Arrived after: reads anew, and failures are the caller's.
        let late = Instant::now();
        assert_eq!(memo.counter(late, || Ok(8)).unwrap(), 8);
        let later = Instant::now();
        let err = memo.counter(later, || Err(crate::error::Error::Db("gone".into())));
        assert!(err.is_err());
        assert_eq!(memo.counter(early, || Ok(9)).unwrap(), 8);
    }

    #[test]
    fn bounded() {
        let memo = Memo::default();
        assert!(memo.get(0, "x").is_none());
        for i in 0..=CAPACITY {
            memo.put(0, &Arc::new(image(&format!("id-{i}"), "n")));
        }
        let kept = (0..=CAPACITY)
            .filter(|i| memo.get(0, &format!("id-{i}")).is_some())
            .count();
        assert!((1..=CAPACITY).contains(&kept), "{kept}");
    }
}
