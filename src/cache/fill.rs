//! Filling the cache on a miss: the store's stream goes to the client through a [`Tee`]
//! that also writes it into `incomplete/<id>` and hashes it; the entry becomes valid only
//! when the bytes seen are exactly the registry's size and MD5.
//!
//! A fill ends one of three ways ([`Outcome`]):
//!
//! * **committed**: size and MD5 match; the file is flushed to disk, renamed into the cache
//!   directory and recorded with its fingerprint. This happens on the read that delivers
//!   the last byte, before the client gets it, so a download that completed has made the
//!   next one a hit;
//! * **invalid**: the size or MD5 differ, or the store failed mid-stream; the file moves to
//!   `invalid/` with the reason, which is logged (the reaper removes it after
//!   `image_cache_invalid_entry_grace_period`);
//! * **dropped**: the cache file could not be written (a full disk), or the client went
//!   away before the end; the file is removed. The client is still served from the store.
//!
//! The fill holds an exclusive lock (`flock`) on its `incomplete/` file for its whole life:
//! that is what makes it the one fill of its image, across threads and processes, and what
//! tells a live fill from one whose process died.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::index::State;
use super::{ImageCache, Key, fingerprint};
use crate::store::{ImageData, Md5Sum};

/// How a fill ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The entry is valid.
    Committed,
    /// The data did not match the registry (or the store failed); kept in `invalid/`.
    Invalid(String),
    /// Nothing kept (disk full, client gone, the cache changed under the fill).
    Dropped(String),
}

/// A fill in progress: the locked `incomplete/` file, what was written and its MD5.
pub(super) struct Fill {
    cache: Arc<ImageCache>,
    key: Key,
    file: File,
    /// Device and inode of the locked `incomplete/` file.
    inode: (u64, u64),
    md5: Md5Sum,
    written: u64,
    outcome: Option<Outcome>,
}

impl Fill {
    /// A fill of `key` into `file` (already locked and claimed in the index).
    pub(super) fn new(cache: Arc<ImageCache>, key: Key, file: File) -> Fill {
        use std::os::unix::fs::MetadataExt;
        let inode = file.metadata().map_or((0, 0), |m| (m.dev(), m.ino()));
        Fill {
            cache,
            key,
            file,
            inode,
            md5: Md5Sum::new(),
            written: 0,
            outcome: None,
        }
    }

    /// The image being filled.
    pub(super) fn key(&self) -> &Key {
        &self.key
    }

    /// Puts the fill between `data` and its reader.
    pub(super) fn tee(self, data: ImageData) -> ImageData {
        let len = data.len();
        ImageData::Stream(Box::new(self.into_tee(data)), len)
    }

    fn into_tee(self, data: ImageData) -> Tee {
        let inner: Box<dyn Read + Send> = match data {
            ImageData::File(f, n) => Box::new(f.take(n)),
            ImageData::Stream(r, _) => r,
        };
        Tee {
            inner,
            fill: Some(self),
        }
    }

    /// Records `data`, which the client is about to get; ends the fill when it completes
    /// the image or goes past it.
    fn consume(&mut self, data: &[u8]) {
        if self.outcome.is_some() {
            return;
        }
        self.written += data.len() as u64;
        if self.written > self.key.size {
            let why = format!(
                "the store sent more than the registry's {} bytes",
                self.key.size
            );
            return self.end(Outcome::Invalid(why));
        }
        if let Err(e) = self.file.write_all(data) {
            return self.end(Outcome::Dropped(format!("writing the cache file: {e}")));
        }
        self.md5.update(data);
        if self.written == self.key.size {
            let outcome = self.verify();
            self.end(outcome);
        }
    }

    /// The stream ended (`Ok`) or failed (`Err`) before the image was complete.
    fn stream_ended(&mut self, error: Option<&io::Error>) {
        if self.outcome.is_some() {
            return;
        }
        let why = match error {
            Some(e) => format!(
                "reading from the store failed after {} bytes: {e}",
                self.written
            ),
            None => format!(
                "the store sent {} of the registry's {} bytes",
                self.written, self.key.size
            ),
        };
        self.end(Outcome::Invalid(why));
    }

    /// Compares the MD5 with the registry's.
    fn verify(&mut self) -> Outcome {
        match self.md5.hex() {
            Ok(md5) if md5 == self.key.checksum => Outcome::Committed,
            Ok(md5) => Outcome::Invalid(format!(
                "MD5 {md5} differs from the registry's checksum {}",
                self.key.checksum
            )),
            Err(e) => Outcome::Dropped(format!("hashing: {e}")),
        }
    }

    /// Carries out `outcome` on disk and in the index, and logs it.
    fn end(&mut self, outcome: Outcome) {
        let id = &self.key.id;
        let outcome = match outcome {
            Outcome::Committed => match self.commit() {
                Ok(()) => Outcome::Committed,
                Err(why) => self.drop_file(why),
            },
            Outcome::Invalid(why) => {
                self.invalidate(&why);
                Outcome::Invalid(why)
            }
            Outcome::Dropped(why) => self.drop_file(why),
        };
        match &outcome {
            Outcome::Committed => log::info!("image {id}: cached ({} bytes)", self.written),
            Outcome::Invalid(why) => {
                log::warn!("image {id}: cached copy is invalid, moved to invalid/: {why}")
            }
            Outcome::Dropped(why) => log::warn!("image {id}: not cached: {why}"),
        }
        self.outcome = Some(outcome);
    }

    /// Flushes the file, moves it into place and records it as valid.
    fn commit(&self) -> Result<(), String> {
        let id = &self.key.id;
        let cache = &self.cache;
        self.file
            .sync_data()
            .map_err(|e| format!("flushing the cache file: {e}"))?;
        if !self.still_ours() {
            return Err("its incomplete file was removed meanwhile".into());
        }
        let valid = cache.valid_path(id);
        fs::rename(cache.incomplete_path(id), &valid)
            .map_err(|e| format!("moving the cache file into place: {e}"))?;
        let fp = self.file.metadata().map(|m| fingerprint(&m));
        let recorded = match fp {
            Ok(fp) => cache.with_index(|ix| ix.commit(id, self.written, &fp)),
            Err(e) => Err(crate::Error::io("reading the cache file", e)),
        };
        match recorded {
            Ok(true) => Ok(()),
            Ok(false) => {
                let _ = fs::remove_file(&valid);
                Err("its claim was removed meanwhile (reaped)".into())
            }
            Err(e) => {
                let _ = fs::remove_file(&valid);
                Err(format!("recording it in the index: {e}"))
            }
        }
    }

    /// True while `incomplete/<id>` is still the file this fill writes.
    fn still_ours(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let path = self.cache.incomplete_path(&self.key.id);
        fs::metadata(path).is_ok_and(|p| (p.dev(), p.ino()) == self.inode)
    }

    /// Makes the fill write into `file` instead (tests: `/dev/full` for a full disk).
    #[cfg(test)]
    pub(super) fn writing_to(mut self, file: File) -> Fill {
        self.file = file;
        self
    }

    /// Moves the file to `invalid/` and records why.
    fn invalidate(&self, why: &str) {
        let id = &self.key.id;
        let cache = &self.cache;
        if !self.still_ours() {
            return;
        }
        if let Err(e) = fs::rename(cache.incomplete_path(id), cache.invalid_path(id)) {
            log::warn!("image {id}: moving the cache file to invalid/: {e}");
            let _ = fs::remove_file(cache.incomplete_path(id));
            let _ = cache.with_index(|ix| ix.remove(id, State::Incomplete));
            return;
        }
        let size = self.written.min(self.key.size);
        if let Err(e) = cache.with_index(|ix| ix.invalidate(id, State::Incomplete, size, why)) {
            log::warn!("image {id}: recording an invalid cache entry: {e}");
        }
    }

    /// Removes the file and the claim; returns the outcome to record.
    fn drop_file(&self, why: String) -> Outcome {
        let id = &self.key.id;
        if self.still_ours() {
            // Free the space first (the file stays open until the fill is dropped): on a
            // full disk the index needs room for its own write.
            let _ = self.file.set_len(0);
            let _ = fs::remove_file(self.cache.incomplete_path(id));
            if let Err(e) = self.cache.with_index(|ix| ix.remove(id, State::Incomplete)) {
                log::warn!("image {id}: removing a dropped cache fill from the index: {e}");
            }
        }
        Outcome::Dropped(why)
    }

    /// How the fill ended; `None` while it goes on.
    pub(super) fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
}

impl Drop for Fill {
    /// A fill that did not end (the client went away, the store could not be opened) leaves
    /// nothing behind.
    fn drop(&mut self) {
        if self.outcome.is_none() {
            let why = format!(
                "the download stopped after {} of {} bytes",
                self.written, self.key.size
            );
            let id = &self.key.id;
            log::debug!("image {id}: cache fill abandoned: {why}");
            self.drop_file(why);
        }
    }
}

/// The reader the client is served from on a miss: the store's stream, with every byte
/// also given to the fill.
pub(super) struct Tee {
    inner: Box<dyn Read + Send>,
    fill: Option<Fill>,
}

impl Tee {
    /// How the fill ended (`None` while it goes on, or when there is none).
    pub(super) fn outcome(&self) -> Option<&Outcome> {
        self.fill.as_ref().and_then(Fill::outcome)
    }
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        if let Some(fill) = self.fill.as_mut() {
            match &result {
                Ok(0) => fill.stream_ended(None),
                Ok(n) => fill.consume(&buf[..*n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => fill.stream_ended(Some(e)),
            }
        }
        result
    }
}

impl Fill {
    /// Fills the cache from `data` with no client (the prefetcher): reads it to its end
    /// and returns how the fill ended (a store failure is an [`Outcome::Invalid`]).
    pub(super) fn run(self, data: ImageData) -> Outcome {
        let mut tee = self.into_tee(data);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match tee.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        tee.outcome()
            .cloned()
            .unwrap_or_else(|| Outcome::Dropped("the store stream did not end".into()))
    }
}
