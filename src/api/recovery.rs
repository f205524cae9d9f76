//! Crash reconciliation of glance-api on its embedded registry: an upload cut short by a
//! crash (kill -9, power loss) leaves its image `saving` forever and partial data in the
//! store. At start-up, once glance-api knows it is the only one uploading into this
//! database ([`UploadLock`]), every image still `saving` was left by a glance-api that
//! died: it becomes `killed` and its partial data is removed.

use crate::error::Result;
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
