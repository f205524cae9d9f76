//! The cache's maintenance programs, Diablo's `glance-cache-prefetcher`,
//! `glance-cache-pruner` and `glance-cache-reaper`: one pass each, run by systemd timers
//! (or cron). Each `src/bin/` program is one call of [`main`].
//!
//! They read glance-api.conf (searched as glance-api searches it, or `--config-file`): the
//! cache options, and for the prefetcher and the pruner the registry (`sql_connection`, or
//! `registry_host`) and the stores, so that the cache and what fills it are configured in
//! one place. With `image_cache_enabled = False` they do nothing and succeed, so that the
//! installed timers are harmless on an API node without a cache.

use std::fs::OpenOptions;
use std::process::ExitCode;
use std::sync::Arc;

use super::{ImageCache, Prefetched};
use crate::auth::Context;
use crate::config::{self, ApiConfig, CliArgs};
use crate::error::{Error, Result};
use crate::image::{ImageId, Status};
use crate::registry::Registry;
use crate::registry::client::RemoteRegistry;
use crate::registry::db::{DbOptions, SqlRegistry};
use crate::store::Stores;
use crate::{log as glance_log, service};

/// The three programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `glance-cache-prefetcher`: fetch the queued images, one at a time.
    Prefetcher,
    /// `glance-cache-pruner`: drop copies of deleted images, then least recently used
    /// copies down to the maximum minus the extra fraction.
    Pruner,
    /// `glance-cache-reaper`: remove invalid entries past their grace period and stalled
    /// fills.
    Reaper,
}

impl Tool {
    /// The program name.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Prefetcher => "glance-cache-prefetcher",
            Tool::Pruner => "glance-cache-pruner",
            Tool::Reaper => "glance-cache-reaper",
        }
    }
}

/// Runs `tool` with the process's arguments (the common server options; the config file
/// is glance-api.conf) and returns its exit status: 0 on success, 1 on failure.
pub fn main(tool: Tool) -> ExitCode {
    service::run_main(tool.program(), |cli| run(tool, cli))
}

fn run(tool: Tool, cli: &CliArgs) -> Result<()> {
    let cfg = config::load_api(cli)?;
    glance_log::init_with_warnings(&cfg.common, tool.program(), &cfg.warnings)?;
    if !cfg.cache.enabled {
        log::info!(
            "image_cache_enabled is False in {}: nothing to do",
            cfg.common.config_path.display()
        );
        return Ok(());
    }
    let cache = ImageCache::open(&cfg.cache)?;
    match tool {
        Tool::Prefetcher => prefetch(&cfg, &cache),
        Tool::Pruner => prune(&cfg, &cache),
        Tool::Reaper => reap(&cache),
    }
}

/// The registry glance-api uses: remote with `registry_host`, else its SQLite database.
fn open_registry(cfg: &ApiConfig) -> Result<Arc<dyn Registry>> {
    if let Some(host) = &cfg.registry_host {
        let remote = RemoteRegistry::new(host, cfg.registry_port, cfg.registry_client_timeout);
        return Ok(Arc::new(remote));
    }
    let registry = SqlRegistry::open(
        &cfg.db.url,
        DbOptions {
            busy_timeout: cfg.db.sql_statement_timeout,
            auto_migrate: false,
            ..DbOptions::default()
        },
    )?;
    Ok(Arc::new(registry))
}

/// The caller the programs act as: an admin (they see every image).
fn admin() -> Context {
    Context {
        is_admin: true,
        ..Context::default()
    }
}

/// Fetches every queued image, oldest first, one at a time. Only one prefetcher runs at
/// once (a lock in the cache directory); another one finds it and exits.
fn prefetch(cfg: &ApiConfig, cache: &Arc<ImageCache>) -> Result<()> {
    let lock_path = cfg.cache.datadir.join(".prefetcher.lock");
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
    if lock.try_lock().is_err() {
        log::info!("another glance-cache-prefetcher is running; nothing to do");
        return Ok(());
    }
    let requeued = cache.requeue_started()?;
    if requeued > 0 {
        log::info!("{requeued} prefetches interrupted earlier are queued again");
    }
    let registry = open_registry(cfg)?;
    let stores = Stores::new(&cfg.store_options())?;
    let mut done = 0;
    while let Some(id) = cache.next_prefetch()? {
        prefetch_image(cache, registry.as_ref(), &stores, &id);
        cache.dequeue(&id)?;
        done += 1;
    }
    log::info!("prefetched {done} images");
    Ok(())
}

/// One queued image: fetched when it is still active; problems are logged, and the image
/// leaves the queue either way (as in Diablo).
fn prefetch_image(cache: &Arc<ImageCache>, registry: &dyn Registry, stores: &Stores, id: &str) {
    let image = ImageId::parse(id).and_then(|iid| registry.get(&admin(), &iid));
    let image = match image {
        Ok(i) if i.status == Status::Active => i,
        Ok(i) => {
            log::warn!("image {id}: {} (not active); not prefetched", i.status);
            return;
        }
        Err(e) => {
            log::warn!("image {id}: {e}; not prefetched");
            return;
        }
    };
    let Some(location) = image.location.clone() else {
        log::warn!("image {id}: has no data; not prefetched");
        return;
    };
    match cache.prefetch_one(&image, || stores.get(&location)) {
        Ok(Prefetched::Filled(outcome)) => log::info!("image {id}: prefetched: {outcome:?}"),
        Ok(Prefetched::Skipped(why)) => log::info!("image {id}: not prefetched: {why}"),
        Err(e) => log::warn!("image {id}: prefetch failed: {e}"),
    }
}

/// Removes copies of images that are gone from the registry (or whose data changed), then
/// prunes to the maximum.
fn prune(cfg: &ApiConfig, cache: &Arc<ImageCache>) -> Result<()> {
    let registry = open_registry(cfg)?;
    let keep = |id: &str, checksum: &str| -> bool {
        let image = ImageId::parse(id).and_then(|iid| registry.get(&admin(), &iid));
        match image {
            Ok(i) => i.status == Status::Active && i.checksum.as_deref() == Some(checksum),
            Err(Error::NotFound(_)) => false,
            Err(e) => {
                log::warn!("image {id}: cannot ask the registry ({e}); kept");
                true
            }
        }
    };
    cache.prune(keep).map(drop)
}

/// Removes invalid entries past the grace period and stalled fills.
fn reap(cache: &Arc<ImageCache>) -> Result<()> {
    let grace = cache.options().invalid_grace_period;
    cache.reap_invalid(Some(grace))?;
    cache.reap_stalled()?;
    Ok(())
}
