//! The image cache (spec §13): glance-api keeps copies of the images it serves on local
//! disk, so that popular images are sent with `sendfile` at the disk's speed instead of
//! through Swift or S3 at theirs.
//!
//! Off unless `image_cache_enabled = True`. Data is cached on read, never on upload:
//!
//! * **hit**: a GET of an active image whose verified copy is in `image_cache_datadir` is
//!   served from that file (as file-store downloads are: `sendfile`, and ranges seek);
//! * **miss**: the store's stream is served to the client and, through a tee
//!   ([`fill`]), written into `incomplete/<id>`; the copy becomes valid only when its size
//!   and MD5 are the registry's (else it moves to `invalid/`, logged). One fill per image
//!   at a time: other readers of the image meanwhile stream from the store. A ranged GET
//!   on a miss is served from the store without a fill.
//!
//! The handler checks the registry before it asks the cache (so a deleted or deactivated
//! image is never served from it), and the cache checks the registry's size and checksum
//! against the copy's. A copy whose file changed after it was verified (its size, inode,
//! mtime or ctime differ from the fingerprint taken then, as a write to it would make them)
//! is moved to `invalid/` instead of being served. The one entry point of downloads, for
//! every API version, is [`download`].
//!
//! Layout of `image_cache_datadir` (Diablo's, with the metadata in an index instead of
//! extended attributes, see [`index`]):
//!
//! ```text
//! <datadir>/<image id>        valid copies
//! <datadir>/incomplete/<id>   fills in progress (each locked by its filler)
//! <datadir>/invalid/<id>      copies that failed verification, kept for inspection
//! <datadir>/.index.sqlite     the index: states, sizes, checksums, hits, last use,
//!                             fingerprints, the prefetch queue
//! ```
//!
//! Size: a fill that would take the cache past `image_cache_max_size_bytes` first evicts
//! the least recently used copies ([`lru`]); an image that cannot fit is not cached. The
//! maintenance programs (`glance-cache-prefetcher`, `-pruner`, `-reaper`, see [`tools`])
//! fetch queued images, prune, and remove invalid and stalled entries.

mod fill;
pub mod index;
pub mod lru;
pub mod tools;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fill::Fill;
pub use fill::Outcome;
use index::{Claim, Entry, Index, State};

use crate::error::{Error, Result};
use crate::image::Image;
use crate::store::ImageData;

/// Default `image_cache_datadir`.
pub const DEFAULT_DATADIR: &str = "/var/lib/glance/image-cache/";
/// Default `image_cache_max_size_bytes` (1 GiB, Diablo's pruner default).
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;
/// Default `image_cache_percent_extra_to_free` (a fraction: 0.05 = 5 %).
pub const DEFAULT_EXTRA_TO_FREE: f64 = 0.05;
/// Default `image_cache_stall_timeout`, seconds.
pub const DEFAULT_STALL_TIMEOUT: u64 = 86_400;
/// Default `image_cache_invalid_entry_grace_period`, seconds.
pub const DEFAULT_INVALID_GRACE: u64 = 3600;

/// Names inside the cache directory that are not cached images; an image with such an id
/// (client-chosen ids may be) is never cached.
const RESERVED: &[&str] = &["incomplete", "invalid"];

/// The `image_cache_*` options of glance-api.conf (also read by the cache programs).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheOptions {
    /// `image_cache_enabled` (default False): cache downloads, and serve the cache
    /// management API under `/v1/cached_images`.
    pub enabled: bool,
    /// `image_cache_datadir` (default `/var/lib/glance/image-cache/`).
    pub datadir: PathBuf,
    /// `image_cache_max_size_bytes` (default 1 GiB).
    pub max_size: u64,
    /// `image_cache_percent_extra_to_free`: the fraction of the maximum the pruner frees
    /// beyond the overage (default 0.05).
    pub extra_to_free: f64,
    /// `image_cache_stall_timeout`: an incomplete entry not written for this long is
    /// stalled, and reaped (default 86400 s).
    pub stall_timeout: Duration,
    /// `image_cache_invalid_entry_grace_period`: how long invalid entries are kept for
    /// inspection before the reaper removes them (default 3600 s).
    pub invalid_grace_period: Duration,
}

impl Default for CacheOptions {
    fn default() -> CacheOptions {
        CacheOptions {
            enabled: false,
            datadir: PathBuf::from(DEFAULT_DATADIR),
            max_size: DEFAULT_MAX_SIZE,
            extra_to_free: DEFAULT_EXTRA_TO_FREE,
            stall_timeout: Duration::from_secs(DEFAULT_STALL_TIMEOUT),
            invalid_grace_period: Duration::from_secs(DEFAULT_INVALID_GRACE),
        }
    }
}

/// What the cache needs to know of an image: taken from the registry's record on each
/// request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    id: String,
    name: Option<String>,
    size: u64,
    checksum: String,
}

impl Key {
    /// The key of a cacheable image: it has data (size > 0) and a checksum to verify a copy
    /// against (an image registered by location has none and is not cached), and its id
    /// names no cache directory.
    fn of(image: &Image) -> Option<Key> {
        let checksum = image.checksum.as_deref()?.to_ascii_lowercase();
        if image.size == 0 || RESERVED.contains(&image.id.as_str()) || image.id.starts_with('.') {
            return None;
        }
        Some(Key {
            id: image.id.clone(),
            name: image.name.clone(),
            size: image.size,
            checksum,
        })
    }
}

/// What a file looked like when its copy was verified: device, inode, size, mtime and ctime
/// (with nanoseconds). Any write to the file, or a file put in its place, changes it; a
/// read does not.
fn fingerprint(m: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{}:{}:{}:{}.{:09}:{}.{:09}",
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// One entry as the management API lists it (Diablo's `cached_images` items).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    /// The image id.
    pub id: String,
    /// The file (absolute path).
    pub path: String,
    /// The image's name when cached (`UNKNOWN` without one, as Diablo).
    pub name: String,
    /// When the file was last written or changed state (`YYYY-MM-DDTHH:MM:SS[.ffffff]`).
    pub last_modified: String,
    /// When it was last served, or created.
    pub last_accessed: String,
    /// Bytes in the file (of an incomplete entry: so far).
    pub size: u64,
    /// The registry's size.
    pub expected_size: u64,
    /// Valid entries: times served from the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hits: Option<u64>,
    /// Invalid entries: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Prefetch entries: `queued` or `in-progress`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Which entries a listing or a reap is about (the API's `?status=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Valid (cached) images.
    Cached,
    /// Invalid entries.
    Invalid,
    /// Fills in progress.
    Incomplete,
    /// The prefetch queue, queued and in progress.
    Prefetching,
}

/// What [`ImageCache::prefetch_one`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefetched {
    /// The image was fetched; how the fill ended.
    Filled(Outcome),
    /// Already cached, or being filled by someone else, or too large: nothing fetched.
    Skipped(String),
}

/// The image cache of one `image_cache_datadir`, shared by the threads of a process.
pub struct ImageCache {
    opts: CacheOptions,
    index: Mutex<Index>,
}

impl std::fmt::Debug for ImageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageCache")
            .field("datadir", &self.opts.datadir)
            .field("max_size", &self.opts.max_size)
            .finish()
    }
}

/// The one download hook of the API versions: `open` gives the store's data of `image`
/// (which the caller found active in the registry); with a cache, a verified copy is served
/// instead, or a miss fills the cache while the client is served. `whole` is false for a
/// ranged request, which is never a fill. Cache trouble never fails a download: it is
/// logged and the store serves.
pub fn download(
    cache: Option<&Arc<ImageCache>>,
    image: &Image,
    whole: bool,
    open: impl FnOnce() -> Result<ImageData>,
) -> Result<ImageData> {
    match cache {
        None => open(),
        Some(c) if whole => c.serve_or_fill(image, open),
        Some(c) => c.serve_if_cached(image, open),
    }
}

impl ImageCache {
    /// Opens the cache in `opts.datadir`, creating it, its `incomplete/` and `invalid/`
    /// directories and its index when missing.
    pub fn open(opts: &CacheOptions) -> Result<Arc<ImageCache>> {
        for dir in ["incomplete", "invalid"] {
            let path = opts.datadir.join(dir);
            fs::create_dir_all(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        let index = Index::open(&opts.datadir.join(index::INDEX_FILE))?;
        Ok(Arc::new(ImageCache {
            opts: opts.clone(),
            index: Mutex::new(index),
        }))
    }

    /// The options it was opened with.
    pub fn options(&self) -> &CacheOptions {
        &self.opts
    }

    fn valid_path(&self, id: &str) -> PathBuf {
        self.opts.datadir.join(id)
    }

    fn incomplete_path(&self, id: &str) -> PathBuf {
        self.opts.datadir.join("incomplete").join(id)
    }

    fn invalid_path(&self, id: &str) -> PathBuf {
        self.opts.datadir.join("invalid").join(id)
    }

    fn path_of(&self, id: &str, state: State) -> PathBuf {
        match state {
            State::Valid => self.valid_path(id),
            State::Incomplete => self.incomplete_path(id),
            State::Invalid => self.invalid_path(id),
        }
    }

    /// Runs `f` on the index (a poisoned lock is taken over: the index is a database, its
    /// state is not in our memory).
    fn with_index<T>(&self, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let mut guard: MutexGuard<'_, Index> =
            self.index.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    // -----------------------------------------------------------------------------------
    // Serving

    /// A hit, or `open()` with the cache filled on the way.
    pub fn serve_or_fill(
        self: &Arc<Self>,
        image: &Image,
        open: impl FnOnce() -> Result<ImageData>,
    ) -> Result<ImageData> {
        let Some(key) = Key::of(image) else {
            return open();
        };
        if let Some(hit) = self.lookup(&key) {
            return Ok(hit);
        }
        let data = open()?;
        if data.len() != Some(key.size) {
            log::info!(
                "image {}: the store reports {:?} bytes, the registry {}; not caching",
                key.id,
                data.len(),
                key.size
            );
            return Ok(data);
        }
        match self.begin_fill(key) {
            Some(fill) => Ok(fill.tee(data)),
            None => Ok(data),
        }
    }

    /// A hit, or `open()` (a ranged request: no fill).
    pub fn serve_if_cached(
        &self,
        image: &Image,
        open: impl FnOnce() -> Result<ImageData>,
    ) -> Result<ImageData> {
        match Key::of(image).and_then(|key| self.lookup(&key)) {
            Some(hit) => Ok(hit),
            None => open(),
        }
    }

    /// The verified copy of `key`, opened, with its hit counted; `None` on a miss. A copy
    /// that no longer matches the registry is dropped; one whose file changed is moved to
    /// `invalid/`.
    fn lookup(&self, key: &Key) -> Option<ImageData> {
        let entry = self.logged(|| self.with_index(|ix| ix.get(&key.id, State::Valid)))??;
        if entry.checksum != key.checksum || entry.size != key.size {
            log::info!(
                "image {}: cached copy is stale (the registry's data changed); dropped",
                key.id
            );
            self.remove_entry(&key.id, State::Valid);
            return None;
        }
        let file = match File::open(self.valid_path(&key.id)) {
            Ok(f) => f,
            Err(e) => {
                if e.kind() == io::ErrorKind::NotFound {
                    let _ = self.with_index(|ix| ix.remove(&key.id, State::Valid));
                } else {
                    log::warn!("image {}: opening the cached copy: {e}", key.id);
                }
                return None;
            }
        };
        let fp = file.metadata().ok().map(|m| fingerprint(&m));
        if fp.is_none() || fp != entry.fingerprint && !self.refingerprinted(&key.id, fp.as_deref())
        {
            self.quarantine(&key.id, entry.size);
            return None;
        }
        self.logged(|| self.with_index(|ix| ix.hit(&key.id)));
        log::debug!("image {}: cache hit", key.id);
        Some(ImageData::File(file, entry.size))
    }

    /// True when the index now records `fp` for `id` (a refill replaced the file between
    /// our read of the index and our open).
    fn refingerprinted(&self, id: &str, fp: Option<&str>) -> bool {
        let now = self
            .with_index(|ix| ix.get(id, State::Valid))
            .ok()
            .flatten();
        now.and_then(|e| e.fingerprint).as_deref() == fp
    }

    /// Moves a valid copy whose file changed to `invalid/`, and logs it.
    fn quarantine(&self, id: &str, size: u64) {
        let why = "the file changed on disk after it was verified";
        log::warn!("image {id}: cached copy is invalid, moved to invalid/: {why}");
        if let Err(e) = fs::rename(self.valid_path(id), self.invalid_path(id)) {
            log::warn!("image {id}: moving the cached copy to invalid/: {e}");
            self.remove_entry(id, State::Valid);
            return;
        }
        self.logged(|| self.with_index(|ix| ix.invalidate(id, State::Valid, size, why)));
    }

    /// Starts the one fill of `key`: locks `incomplete/<id>` and claims the fill in the
    /// index, evicting old entries to make room. `None` when another fill of the image is
    /// running, the image became valid, it cannot fit, or the cache fails (logged).
    fn begin_fill(self: &Arc<Self>, key: Key) -> Option<Fill> {
        let path = self.incomplete_path(&key.id);
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                log::warn!("image {}: cannot start a cache fill: {e}", key.id);
                return None;
            }
        };
        if file.try_lock().is_err() {
            log::debug!("image {}: being cached by another download", key.id);
            return None;
        }
        if !same_file(&path, &file) {
            // The file was moved into place (or removed) between our open and our lock: a
            // fill just ended; this download is served from the store.
            return None;
        }
        let max = self.opts.max_size;
        let claim = self.logged(|| {
            self.with_index(|ix| {
                ix.claim(&key.id, key.name.as_deref(), key.size, &key.checksum, max)
            })
        });
        match claim {
            Some(Claim::Granted { evicted }) => {
                self.unlink_evicted(&evicted);
                if let Err(e) = file.set_len(0) {
                    log::warn!("image {}: cannot start a cache fill: {e}", key.id);
                    self.remove_entry(&key.id, State::Incomplete);
                    return None;
                }
                log::debug!("image {}: cache miss, filling", key.id);
                Some(Fill::new(Arc::clone(self), key, file))
            }
            Some(Claim::NoRoom) => {
                log::info!(
                    "image {}: {} bytes do not fit in the cache (image_cache_max_size_bytes = {}); not caching",
                    key.id,
                    key.size,
                    max
                );
                let _ = fs::remove_file(&path);
                None
            }
            Some(Claim::AlreadyValid) | None => {
                // Still ours (checked under the lock above): no other fill can be there.
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    fn unlink_evicted(&self, ids: &[String]) {
        for id in ids {
            log::info!("image {id}: evicted from the cache (least recently used)");
            remove_file_logged(&self.valid_path(id));
        }
    }

    /// Removes the file and the row of an entry.
    fn remove_entry(&self, id: &str, state: State) {
        remove_file_logged(&self.path_of(id, state));
        self.logged(|| self.with_index(|ix| ix.remove(id, state)));
    }

    /// Runs a cache operation on the request path: an error is logged and becomes `None`.
    fn logged<T>(&self, f: impl FnOnce() -> Result<T>) -> Option<T> {
        match f() {
            Ok(v) => Some(v),
            Err(e) => {
                log::warn!("image cache {}: {e}", self.opts.datadir.display());
                None
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Management (the cache API and the maintenance programs)

    /// The entries of one kind, least recently used first.
    pub fn list(&self, which: Which) -> Result<Vec<Listed>> {
        match which {
            Which::Cached => self.list_state(State::Valid),
            Which::Invalid => self.list_state(State::Invalid),
            Which::Incomplete => self.list_state(State::Incomplete),
            Which::Prefetching => self.list_queue(),
        }
    }

    fn list_state(&self, state: State) -> Result<Vec<Listed>> {
        let entries = self.with_index(|ix| ix.list(state))?;
        Ok(entries.iter().map(|e| self.listed(e)).collect())
    }

    fn listed(&self, e: &Entry) -> Listed {
        let path = self.path_of(&e.image_id, e.state);
        let meta = fs::metadata(&path).ok();
        let (size, modified) = match (e.state, &meta) {
            // A fill in progress: what the file holds so far, and when it was last written.
            (State::Incomplete, Some(m)) => (m.len(), m.modified().ok().map(index::micros)),
            _ => (e.size, None),
        };
        Listed {
            id: e.image_id.clone(),
            path: absolute(&path),
            name: e.name.clone().unwrap_or_else(|| "UNKNOWN".into()),
            last_modified: shown(modified.unwrap_or(e.modified_at)),
            last_accessed: shown(e.accessed_at),
            size,
            expected_size: e.expected_size,
            hits: (e.state == State::Valid).then_some(e.hits),
            error: (e.state == State::Invalid).then(|| e.error.clone().unwrap_or_default()),
            status: None,
        }
    }

    fn list_queue(&self) -> Result<Vec<Listed>> {
        let queue = self.with_index(|ix| ix.queue())?;
        Ok(queue
            .into_iter()
            .map(|q| Listed {
                path: absolute(&self.valid_path(&q.image_id)),
                name: q.name.unwrap_or_else(|| "UNKNOWN".into()),
                last_modified: shown(q.started_at.unwrap_or(q.queued_at)),
                last_accessed: shown(q.queued_at),
                size: 0,
                expected_size: q.size,
                hits: None,
                error: None,
                status: Some(
                    if q.started_at.is_some() {
                        "in-progress"
                    } else {
                        "queued"
                    }
                    .into(),
                ),
                id: q.image_id,
            })
            .collect())
    }

    /// Removes the cached copy of `id`; true when there was one.
    pub fn purge(&self, id: &str) -> Result<bool> {
        let had = self.with_index(|ix| ix.remove(id, State::Valid))?;
        let file = remove_file(&self.valid_path(id))?;
        if had || file {
            log::info!("image {id}: purged from the cache");
        }
        Ok(had || file)
    }

    /// Removes every cached copy; returns how many.
    pub fn clear(&self) -> Result<usize> {
        let entries = self.with_index(|ix| ix.list(State::Valid))?;
        let mut n = 0;
        for e in &entries {
            if self.purge(&e.image_id)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes invalid entries older than `grace` (all with `None`); returns how many.
    pub fn reap_invalid(&self, grace: Option<Duration>) -> Result<usize> {
        let entries = self.with_index(|ix| ix.list(State::Invalid))?;
        let mut n = 0;
        for e in entries {
            let path = self.invalid_path(&e.image_id);
            let age = age_of(&path).unwrap_or(Duration::MAX);
            if grace.is_some_and(|g| age <= g) {
                continue;
            }
            remove_file(&path)?;
            self.with_index(|ix| ix.remove(&e.image_id, State::Invalid))?;
            n += 1;
        }
        log::info!("reaped {n} invalid cache entries");
        Ok(n)
    }

    /// Removes incomplete entries not written for `image_cache_stall_timeout`, and those
    /// whose filler died (its lock is free); a live fill is left to finish or fail.
    /// Returns how many.
    pub fn reap_stalled(&self) -> Result<usize> {
        let entries = self.with_index(|ix| ix.list(State::Incomplete))?;
        let mut n = 0;
        for e in entries {
            let path = self.incomplete_path(&e.image_id);
            let file = match File::open(&path) {
                Ok(f) => Some(f),
                Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                Err(err) => return Err(Error::io(format!("opening {}", path.display()), err)),
            };
            if let Some(f) = &file {
                if f.try_lock().is_err() {
                    continue; // a live fill
                }
                let age = age_of(&path).unwrap_or(Duration::MAX);
                if age <= self.opts.stall_timeout {
                    // A dead fill that is not old yet: the next download takes it over.
                    continue;
                }
                remove_file(&path)?;
            }
            self.with_index(|ix| ix.remove(&e.image_id, State::Incomplete))?;
            n += 1;
        }
        log::info!("reaped {n} stalled cache entries");
        Ok(n)
    }

    /// Removes the fills whose process died (glance-api at start-up); returns how many.
    pub fn recover(&self) -> Result<usize> {
        let entries = self.with_index(|ix| ix.list(State::Incomplete))?;
        let mut n = 0;
        for e in entries {
            let path = self.incomplete_path(&e.image_id);
            match File::open(&path) {
                Ok(f) if f.try_lock().is_err() => continue,
                Ok(_) => {
                    remove_file(&path)?;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(format!("opening {}", path.display()), err)),
            }
            self.with_index(|ix| ix.remove(&e.image_id, State::Incomplete))?;
            n += 1;
        }
        if n > 0 {
            log::info!("removed {n} cache fills interrupted by a crash");
        }
        Ok(n)
    }

    /// Queues `image` for the prefetcher. [`Error::BadRequest`] when it is already cached,
    /// queued or being prefetched, or cannot be cached.
    pub fn queue_prefetch(&self, image: &Image) -> Result<()> {
        let id = &image.id;
        let Some(key) = Key::of(image) else {
            return Err(Error::bad_request(format!(
                "Image {id} cannot be cached (no data or no checksum)"
            )));
        };
        if self.with_index(|ix| ix.get(id, State::Valid))?.is_some() {
            return Err(Error::bad_request(format!("Image {id} is already cached")));
        }
        let fresh = self.with_index(|ix| ix.enqueue(id, key.name.as_deref(), key.size))?;
        if !fresh {
            return Err(Error::bad_request(format!(
                "Image {id} is already queued for prefetching"
            )));
        }
        log::info!("image {id}: queued for prefetching");
        Ok(())
    }

    /// Puts prefetches a dead prefetcher left running back in the queue.
    pub fn requeue_started(&self) -> Result<usize> {
        self.with_index(|ix| ix.requeue_started())
    }

    /// Takes the next queued prefetch; `None` when the queue is empty.
    pub fn next_prefetch(&self) -> Result<Option<String>> {
        self.with_index(|ix| ix.start_next())
    }

    /// Drops a prefetch from the queue.
    pub fn dequeue(&self, id: &str) -> Result<bool> {
        self.with_index(|ix| ix.dequeue(id))
    }

    /// Fetches `image` into the cache now, through `open`, unless it is cached or being
    /// filled (the prefetcher's one step).
    pub fn prefetch_one(
        self: &Arc<Self>,
        image: &Image,
        open: impl FnOnce() -> Result<ImageData>,
    ) -> Result<Prefetched> {
        let Some(key) = Key::of(image) else {
            return Ok(Prefetched::Skipped("no data or no checksum".into()));
        };
        if self.lookup_quietly(&key) {
            return Ok(Prefetched::Skipped("already cached".into()));
        }
        let Some(fill) = self.begin_fill(key) else {
            return Ok(Prefetched::Skipped(
                "being cached already, or too large for the cache".into(),
            ));
        };
        let data = open()?;
        if data.len().is_some_and(|n| n != fill.key().size) {
            return Ok(Prefetched::Skipped(format!(
                "the store reports {:?} bytes, the registry {}",
                data.len(),
                fill.key().size
            )));
        }
        Ok(Prefetched::Filled(fill.run(data)))
    }

    /// True when `key` has a verified copy (checked as a hit is, without counting one).
    fn lookup_quietly(&self, key: &Key) -> bool {
        let entry = self
            .with_index(|ix| ix.get(&key.id, State::Valid))
            .ok()
            .flatten();
        let Some(entry) = entry else { return false };
        let fp = fs::metadata(self.valid_path(&key.id))
            .ok()
            .map(|m| fingerprint(&m));
        entry.checksum == key.checksum && entry.size == key.size && fp == entry.fingerprint
    }

    /// The pruner's pass: removes the copies `keep` rejects (deleted images; `keep` is
    /// asked per valid entry and errs on the side of keeping), files in the cache
    /// directory the index does not know, then prunes least recently used copies when the
    /// cache is over its maximum. Returns the entries removed.
    pub fn prune(&self, keep: impl Fn(&str, &str) -> bool) -> Result<usize> {
        let mut removed = 0;
        for e in self.with_index(|ix| ix.list(State::Valid))? {
            if !keep(&e.image_id, &e.checksum) {
                log::info!(
                    "image {}: no longer active in the registry; removed from the cache",
                    e.image_id
                );
                self.purge(&e.image_id)?;
                removed += 1;
            }
        }
        removed += self.remove_strays()?;
        let lru: Vec<(String, u64)> = self
            .with_index(|ix| ix.list(State::Valid))?
            .into_iter()
            .map(|e| (e.image_id, e.size))
            .collect();
        let filling: u64 = self
            .with_index(|ix| ix.list(State::Incomplete))?
            .iter()
            .map(|e| e.expected_size)
            .sum();
        let victims = lru::plan_prune(&lru, filling, self.opts.max_size, self.opts.extra_to_free);
        for id in &victims {
            log::info!("image {id}: pruned from the cache (least recently used)");
            self.purge(id)?;
        }
        let used = self.with_index(|ix| ix.used())?;
        log::info!(
            "pruned {} cache entries; {used} of {} bytes in use",
            removed + victims.len(),
            self.opts.max_size
        );
        Ok(removed + victims.len())
    }

    /// Removes regular files in the cache directory without a valid entry (left by a crash
    /// between a file's move into place and its record, or put there by hand) once they
    /// are an hour old, so that a commit in progress is never taken for one.
    fn remove_strays(&self) -> Result<usize> {
        let dir = &self.opts.datadir;
        let listing =
            fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let mut n = 0;
        for item in listing.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let is_file = item.file_type().is_ok_and(|t| t.is_file());
            if !is_file || name.starts_with('.') {
                continue;
            }
            if self.with_index(|ix| ix.get(&name, State::Valid))?.is_some() {
                continue;
            }
            if age_of(&item.path()).is_some_and(|a| a > Duration::from_secs(3600)) {
                log::info!("{}: not in the cache index; removed", item.path().display());
                remove_file(&item.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Bytes held by valid entries and promised to fills in progress.
    pub fn used(&self) -> Result<u64> {
        self.with_index(|ix| ix.used())
    }
}

/// True when `path` names the file open as `file` (same device and inode).
fn same_file(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), file.metadata()) {
        (Ok(p), Ok(f)) => (p.dev(), p.ino()) == (f.dev(), f.ino()),
        _ => false,
    }
}

/// How long ago `path` was last modified; `None` when it cannot be told.
fn age_of(path: &Path) -> Option<Duration> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    Some(
        SystemTime::now()
            .duration_since(modified)
            .unwrap_or(Duration::ZERO),
    )
}

/// Removes a file; true when it existed.
fn remove_file(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

fn remove_file_logged(path: &Path) {
    if let Err(e) = remove_file(path) {
        log::warn!("image cache: {e}");
    }
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// An index time as the API shows times.
fn shown(us: i64) -> String {
    crate::timeutil::display(&crate::timeutil::format_stored(index::from_micros(us)))
}

#[cfg(test)]
mod tests;
