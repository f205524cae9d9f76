//! `glance-registry`: the registry API (image metadata over JSON) on port 9191.

use std::process::ExitCode;
use std::sync::Arc;

use glance_rs::config::{self, CliArgs};
use glance_rs::registry::PageLimits;
use glance_rs::registry::db::{DbOptions, SqlRegistry};
use glance_rs::registry::server::RegistryApp;
use glance_rs::{Result, auth, log as glance_log, service};

const PROGRAM: &str = "glance-registry";

fn main() -> ExitCode {
    service::run_main(PROGRAM, run)
}

fn run(cli: &CliArgs) -> Result<()> {
    let cfg = config::load_registry(cli)?;
    let logs = glance_log::init_with_warnings(&cfg.common, PROGRAM, &cfg.warnings)?;
    let limits = PageLimits {
        default: cfg.limit_param_default,
        max: cfg.api_limit_max,
    };
    let registry = SqlRegistry::open(
        &cfg.db.url,
        DbOptions {
            quotas: cfg.quotas,
            ..DbOptions::from_config(&cfg.db, limits)
        },
    )?;
    let app = RegistryApp::new(
        Arc::new(registry),
        auth::context_source(&cfg.common)?,
        limits,
    );
    let service = service::Service::bind(
        PROGRAM,
        &cfg.common,
        service::server_config(&cfg.common, 64 * 1024),
    )?;
    let cli = cli.clone();
    let reload = service::reload_hook(logs, move || config::load_registry(&cli).map(|c| c.common));
    service.run(Arc::new(app), Some(reload))
}
