//! `glance-api`: the images APIs on port 9292, with a registry database of its own
//! (`sql_connection`: embedded SQLite by default, or PostgreSQL or MySQL shared by several
//! nodes) or a remote `glance-registry` (`registry_host`).

use std::process::ExitCode;
use std::sync::Arc;

use glance_rs::api::recovery::{UploadLeases, reconcile_interrupted_uploads};
use glance_rs::api::{ApiApp, ApiOptions};
use glance_rs::cache::ImageCache;
use glance_rs::config::{self, ApiConfig, CliArgs};
use glance_rs::registry::client::RemoteRegistry;
use glance_rs::registry::db::{DbOptions, SqlRegistry, UploadLock, lease_holder};
use glance_rs::registry::{PageLimits, Registry};
use glance_rs::store::Stores;
use glance_rs::{Result, auth, log as glance_log, notifier, service};

const PROGRAM: &str = "glance-api";

fn main() -> ExitCode {
    service::run_main(PROGRAM, run)
}

fn run(cli: &CliArgs) -> Result<()> {
    let cfg = config::load_api(cli)?;
    let logs = glance_log::init_with_warnings(&cfg.common, PROGRAM, &cfg.warnings)?;
    let limits = PageLimits {
        default: cfg.limit_param_default,
        max: cfg.api_limit_max,
    };
    let mut stores = Stores::new(&cfg.store_options())?;
    if cfg.cache.enabled {
        let cache = ImageCache::open(&cfg.cache)?;
        cache.recover()?;
        log::info!("image cache in {}", cfg.cache.datadir.display());
        stores.set_cache(cache);
    }
    // Held until the process ends: while it is, no other glance-api reconciles this
    // database under our running uploads.
    let (registry, database, _upload_lock) = open_registry(&cfg, limits, &stores)?;
    let stores = Arc::new(stores);
    let leases = match database {
        Some(db) => {
            let leases = Arc::new(UploadLeases::new(
                db,
                lease_holder(PROGRAM),
                cfg.upload_lease_timeout,
            ));
            Arc::clone(&leases).spawn_reaper(Arc::clone(&stores))?;
            Some(leases)
        }
        None => None,
    };
    let notifier: Arc<dyn notifier::Notifier> =
        Arc::from(notifier::from_strategy(cfg.notifier_strategy, &cfg.rabbit)?);
    let auth = auth::context_source(&cfg.common)?;
    let service = service::Service::bind(
        PROGRAM,
        &cfg.common,
        service::server_config(&cfg.common, cfg.image_buffer_size),
    )?;
    let app = ApiApp {
        registry,
        stores,
        auth,
        notifier,
        opts: ApiOptions {
            bind_host: cfg.common.bind_host.clone(),
            bind_port: service.local_addr().port(),
            delayed_delete: cfg.delayed_delete,
            limits,
            size_cap: cfg.image_size_cap,
            public_endpoint: cfg.public_endpoint.clone(),
            disk_formats: cfg.disk_formats.clone(),
            format_mismatch: cfg.image_format_mismatch,
            apis: cfg.apis,
        },
        leases,
        image_headers: Default::default(),
    };
    let cli = cli.clone();
    let reload = service::reload_hook(logs, move || config::load_api(&cli).map(|c| c.common));
    service.run(Arc::new(app), Some(reload))
}

/// The registry and, with a database of our own, that database (for upload leases).
type Registries = (
    Arc<dyn Registry>,
    Option<Arc<SqlRegistry>>,
    Option<UploadLock>,
);

/// The remote registry when `registry_host` is set, else the database of `sql_connection`,
/// after reconciling the uploads a crash interrupted on an embedded SQLite database (with
/// the lock that makes that safe).
fn open_registry(cfg: &ApiConfig, limits: PageLimits, stores: &Stores) -> Result<Registries> {
    if let Some(host) = &cfg.registry_host {
        log::info!("using the registry at {host}:{}", cfg.registry_port);
        let remote = RemoteRegistry::new(host, cfg.registry_port, cfg.registry_client_timeout);
        return Ok((Arc::new(remote), None, None));
    }
    let registry = SqlRegistry::open(
        &cfg.db.url,
        DbOptions {
            quotas: cfg.quotas,
            ..DbOptions::from_config(&cfg.db, limits)
        },
    )?;
    log::info!("registry database {}", registry.name());
    let lock = reconcile_interrupted_uploads(&registry, stores)?;
    let registry = Arc::new(registry);
    Ok((
        Arc::clone(&registry) as Arc<dyn Registry>,
        Some(registry),
        lock,
    ))
}
