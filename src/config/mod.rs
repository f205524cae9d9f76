//! STUB (typed configs to come); the INI reader lives in [`ini`].

pub mod ini;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;

/// Options every server shares.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    /// Path of the config file that was loaded.
    pub config_path: PathBuf,
    /// Address to listen on.
    pub bind_host: String,
    /// Port to listen on (0 = any free port).
    pub bind_port: u16,
    /// Worker threads of the HTTP server.
    pub workers: usize,
    /// Log INFO.
    pub verbose: bool,
    /// Log DEBUG.
    pub debug: bool,
    /// Log file (else stderr).
    pub log_file: Option<PathBuf>,
    /// Directory for the log file.
    pub log_dir: Option<PathBuf>,
    /// strftime-style date format of log lines.
    pub log_date_format: String,
    /// Auth strategy: `noauth` or `keystone`.
    pub auth_strategy: String,
    /// Role name that makes a caller admin.
    pub admin_role: String,
    /// Owner id is the tenant (else the user).
    pub owner_is_tenant: bool,
}

/// `sql_connection` and friends.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// Raw `sql_connection` value.
    pub sql_connection: String,
    /// SQLite database path parsed from it.
    pub sqlite_path: PathBuf,
    /// Busy timeout.
    pub sql_timeout: Duration,
    /// Apply migrations at start-up instead of refusing an old schema.
    pub db_auto_create: bool,
}

/// glance-registry.conf.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Shared options.
    pub common: CommonOptions,
    /// Database.
    pub db: DatabaseOptions,
    /// Largest page.
    pub api_limit_max: u64,
    /// Default page.
    pub limit_param_default: u64,
}

/// Loads glance-registry.conf (stub).
pub fn load_registry(_args: &[String]) -> Result<RegistryConfig> {
    Err(crate::Error::Config("not implemented".into()))
}
