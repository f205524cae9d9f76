//! Crash reconciliation of glance-api on its embedded registry: an upload cut short by a
//! crash (kill -9, power loss) leaves its image `saving` forever and partial data in the
//! store. At start-up, once glance-api knows it is the only one uploading into this
//! database ([`UploadLock`]), every image still `saving` was left by a glance-api that
//! died: it becomes `killed` and its partial data is removed.
//!
//! Several glance-api nodes on one database cannot know that: there [`UploadLeases`] let
//! any node kill an upload whose node stopped renewing its lease.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::image::ImageId;
use crate::registry::db::{SqlRegistry, UploadLock};
use crate::store::Stores;

/// Kills the images that interrupted uploads left `saving` and removes their partial data.
/// Returns the lock to hold for the life of the process, or `None` when another glance-api
/// holds it (then nothing is touched: its uploads may be running) or the database is in
/// memory.
pub fn reconcile_interrupted_uploads(
    registry: &SqlRegistry,
    stores: &Stores,
) -> Result<Option<UploadLock>> {
    let Some(path) = registry.path() else {
        return Ok(None);
    };
    let Some(lock) = UploadLock::try_acquire(path)? else {
        log::warn!(
            "another glance-api uses the database {}: images left 'saving' are not \
             reconciled by this one",
            path.display()
        );
        return Ok(None);
    };
    for id in registry.kill_interrupted_uploads()? {
        log::warn!("image {id} was left 'saving' by an interrupted upload: now killed");
        match ImageId::parse(&id) {
            Ok(id) => {
                if let Err(e) = stores.discard_partial(&id) {
                    log::error!("removing partial data of image {id}: {e}");
                }
            }
            Err(e) => log::error!("image {id}: {e}; partial data not removed"),
        }
    }
    Ok(Some(lock))
}

/// Upload leases (several glance-api nodes on one database): the node that takes an image
/// to `saving` records itself as the holder of its upload and renews the lease every third
/// of `upload_lease_timeout` while data streams; any node kills an image whose lease
/// lapsed (its node died, or was cut off from the database for that long) and removes its
/// partial data. Only with a database of our own (`sql_connection`), not a remote registry.
pub struct UploadLeases {
    registry: Arc<SqlRegistry>,
    holder: String,
    lease: Duration,
}

impl UploadLeases {
    /// Leases held as `holder` (see [`crate::registry::db::lease_holder`]) for `lease` at a time.
    pub fn new(registry: Arc<SqlRegistry>, holder: String, lease: Duration) -> UploadLeases {
        UploadLeases {
            registry,
            holder,
            lease,
        }
    }

    /// Takes or renews the lease of an upload this node holds in `saving`.
    pub fn renew(&self, id: &ImageId) -> Result<()> {
        self.registry
            .renew_upload_lease(id.as_str(), &self.holder, self.lease)
    }

    /// The image data of an upload, renewing its lease as it is read.
    pub fn reader<'a>(&'a self, id: &'a ImageId, inner: &'a mut dyn Read) -> LeasedReader<'a> {
        LeasedReader {
            leases: self,
            id,
            inner,
            renewed: Instant::now(),
        }
    }

    /// Starts the thread that kills the uploads whose lease lapsed, every half lease.
    pub fn spawn_reaper(self: Arc<Self>, stores: Arc<Stores>) -> Result<()> {
        std::thread::Builder::new()
            .name("upload-leases".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(self.lease / 2);
                    if let Err(e) = self.reap(&stores) {
                        log::warn!("checking upload leases: {e}");
                    }
                }
            })
            .map(|_| ())
            .map_err(|e| Error::io("starting the upload lease thread", e))
    }

    /// One pass of the reaper.
    pub fn reap(&self, stores: &Stores) -> Result<()> {
        for image in self.registry.expire_upload_leases()? {
            log::warn!(
                "image {}: its upload's lease lapsed (the node uploading it stopped): now killed",
                image.id
            );
            match ImageId::parse(&image.id) {
                Ok(id) => {
                    if let Err(e) = stores.discard_partial(&id) {
                        log::error!("removing partial data of image {id}: {e}");
                    }
                }
                Err(e) => log::error!("image {}: {e}; partial data not removed", image.id),
            }
        }
        Ok(())
    }
}

/// A body reader that renews its upload's lease every third of the lease. A renewal that
/// finds the upload taken away (killed by another node after a lapse) fails the read, so
/// the upload stops; one that cannot reach the database is logged and retried later.
pub struct LeasedReader<'a> {
    leases: &'a UploadLeases,
    id: &'a ImageId,
    inner: &'a mut dyn Read,
    renewed: Instant,
}

impl Read for LeasedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.renewed.elapsed() >= self.leases.lease / 3 {
            match self.leases.renew(self.id) {
                Ok(()) => self.renewed = Instant::now(),
                Err(Error::Conflict(m)) => {
                    return Err(std::io::Error::other(format!("upload lease lost: {m}")));
                }
                Err(e) => {
                    log::warn!("image {}: renewing the upload lease: {e}", self.id);
                    self.renewed = Instant::now();
                }
            }
        }
        self.inner.read(buf)
    }
}
