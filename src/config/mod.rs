//! Glance-style configuration: finding `glance-*.conf`, reading it, and turning it into the
//! typed settings each program needs.
//!
//! Every server takes the same command-line options ([`CliArgs`]); a flag overrides the
//! file. A program calls one loader ([`load_api`], [`load_registry`], [`load_scrubber`]),
//! which locates the file ([`locate`]: `--config-file`, else a positional path, else the
//! search path), parses it with our [`ini`] reader and reads every option it knows from
//! `[DEFAULT]`, failing on the first invalid value with `path:line: key: "value" problem`.
//! Options present in `[DEFAULT]` but read by no glance-rs program ([`known`]) are returned as
//! `warnings`, to be logged once logging is set up: operators bring Diablo configs full of
//! options we do not (yet) use, and a typo should be visible rather than silently ignored.
//!
//! Adding an option: one field in the config struct, one line in its `from_ini`, one line in
//! the matching `etc/*.conf` sample (a test checks that the sample lists every option read),
//! its name in [`known::KNOWN_OPTIONS`] (a test checks that too).

pub mod ini;
pub mod known;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::CacheOptions;
use crate::error::{Error, Result};
use crate::format::OnMismatch;
use crate::image::DISK_FORMATS;
use crate::registry::Quotas;
use crate::registry::sql::DbUrl;
use crate::store::netguard::AddressPolicy;
use crate::store::{
    Backend, BucketUrlFormat, HashAlgorithm, MB, S3Options, StoreOptions, SwiftAuthVersion,
    SwiftOptions, endpoint_interface,
};
pub use ini::{Ini, Origin, SectionView, Value};

/// Program name of the images API server (and its config file stem).
pub const API_APP: &str = "glance-api";
/// Program name of the registry server.
pub const REGISTRY_APP: &str = "glance-registry";
/// Program name of the scrubber.
pub const SCRUBBER_APP: &str = "glance-scrubber";

/// The allowed values of `auth_strategy`.
pub const AUTH_STRATEGIES: &[&str] = &["noauth", "keystone"];

/// How requests are authenticated (`auth_strategy`), parsed when the config is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStrategy {
    /// Diablo's default pipeline: identity headers trusted, no token means admin.
    NoAuth,
    /// Tokens validated against Keystone v3.
    Keystone,
}

impl AuthStrategy {
    /// The strategy of a name in [`AUTH_STRATEGIES`] (checked by the caller).
    fn from_name(name: &str) -> AuthStrategy {
        if name.eq_ignore_ascii_case("keystone") {
            AuthStrategy::Keystone
        } else {
            AuthStrategy::NoAuth
        }
    }

    /// The option value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStrategy::NoAuth => "noauth",
            AuthStrategy::Keystone => "keystone",
        }
    }
}

/// `notifier_strategy` values (`default` is Diablo's other name of `noop`).
pub const NOTIFIER_STRATEGIES: &[&str] = &["noop", "default", "logging", "rabbit"];

/// Where image notifications go (`notifier_strategy`), parsed when the config is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifierStrategy {
    /// Nowhere.
    Noop,
    /// The log.
    Logging,
    /// An AMQP broker (the `rabbit_*` options).
    Rabbit,
}

impl NotifierStrategy {
    /// The strategy of a name in [`NOTIFIER_STRATEGIES`] (checked by the caller).
    fn from_name(name: &str) -> NotifierStrategy {
        match name.to_ascii_lowercase().as_str() {
            "logging" => NotifierStrategy::Logging,
            "rabbit" => NotifierStrategy::Rabbit,
            _ => NotifierStrategy::Noop,
        }
    }
}

/// `image_format_mismatch` values.
pub const FORMAT_MISMATCH_CHOICES: &[&str] = &["reject", "warn"];

/// Default `log_date_format` (Glance's).
pub const DEFAULT_LOG_DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Default `sql_connection` of glance-api's embedded registry and of the scrubber.
pub const DEFAULT_SQL_CONNECTION: &str = "sqlite:////var/lib/glance/glance.sqlite";

/// Default `filesystem_store_datadir`.
pub const DEFAULT_DATADIR: &str = "/var/lib/glance/images/";

/// The section holding the Keystone options, named as keystonemiddleware names it.
pub const KEYSTONE_SECTION: &str = "keystone_authtoken";

// ---------------------------------------------------------------------------------------------
// Command line

/// A command-line override of one config option (for flags specific to one program, such as
/// `glance-manage --sql-connection` or `glance-scrubber --daemon`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliOverride {
    /// The config option, e.g. `sql_connection`.
    pub key: String,
    /// Its value, as config text (`True` for a flag).
    pub value: String,
    /// The flag, for messages, e.g. `--sql-connection`.
    pub flag: String,
}

/// The command-line options every server shares (Glance's common and logging options).
///
/// Values are kept as typed on the command line; the loaders apply them on top of the file,
/// so they are validated (and reported, naming the flag) exactly like file values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliArgs {
    /// `--config-file PATH`.
    pub config_file: Option<String>,
    /// `-v/--verbose`.
    pub verbose: bool,
    /// `-d/--debug`.
    pub debug: bool,
    /// `--log-config PATH` (a Python logging config: accepted, reported as unsupported).
    pub log_config: Option<String>,
    /// `--log-file PATH`.
    pub log_file: Option<String>,
    /// `--log-dir DIR`.
    pub log_dir: Option<String>,
    /// `--log-date-format FMT`.
    pub log_date_format: Option<String>,
    /// `--use-syslog` (accepted, reported as unsupported).
    pub use_syslog: bool,
    /// `-h/--help`: the program should print [`CliArgs::usage`] and exit 0.
    pub help: bool,
    /// `--version`: the program should print its version and exit 0.
    pub version: bool,
    /// Free arguments. The loaders take the first one as the config file when it is an
    /// existing file (`glance-api /etc/glance/glance-api.conf`); a program whose free
    /// arguments mean something else (glance-manage's command) clears this before loading.
    pub args: Vec<String>,
    /// Program-specific overrides, applied after the common flags.
    pub overrides: Vec<CliOverride>,
}

impl CliArgs {
    /// The shared getopts options. A program may add its own before parsing and then call
    /// [`CliArgs::from_matches`].
    pub fn options() -> getopts::Options {
        let mut o = getopts::Options::new();
        o.optopt("", "config-file", "configuration file to load", "PATH")
            .optflagmulti("v", "verbose", "log INFO messages")
            .optflagmulti("d", "debug", "log DEBUG messages")
            .optopt(
                "",
                "log-config",
                "Python logging config file (not supported: reported and ignored)",
                "PATH",
            )
            .optopt("", "log-file", "log to this file instead of stderr", "PATH")
            .optopt("", "log-dir", "directory of a relative --log-file", "DIR")
            .optopt(
                "",
                "log-date-format",
                "date format of log lines (default %Y-%m-%d %H:%M:%S)",
                "FMT",
            )
            .optflag("", "use-syslog", "log to syslog (not supported yet)")
            .optflag("h", "help", "print this help and exit")
            .optflag("", "version", "print the version and exit");
        o
    }

    /// Parses the arguments (without the program name) with the shared options only.
    pub fn parse(args: &[String]) -> Result<CliArgs> {
        let m = CliArgs::options()
            .parse(args)
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(CliArgs::from_matches(&m))
    }

    /// Builds the shared part from matches of [`CliArgs::options`] (possibly extended).
    pub fn from_matches(m: &getopts::Matches) -> CliArgs {
        CliArgs {
            config_file: m.opt_str("config-file"),
            verbose: m.opt_present("verbose"),
            debug: m.opt_present("debug"),
            log_config: m.opt_str("log-config"),
            log_file: m.opt_str("log-file"),
            log_dir: m.opt_str("log-dir"),
            log_date_format: m.opt_str("log-date-format"),
            use_syslog: m.opt_present("use-syslog"),
            help: m.opt_present("help"),
            version: m.opt_present("version"),
            args: m.free.clone(),
            overrides: Vec::new(),
        }
    }

    /// Adds a program-specific override: config option `key` reads as `value`.
    pub fn set(&mut self, key: &str, value: &str, flag: &str) {
        self.overrides.push(CliOverride {
            key: key.to_string(),
            value: value.to_string(),
            flag: flag.to_string(),
        });
    }

    /// Help text for the shared options: `Usage: <program> [options] [CONFIG_FILE]` and the
    /// option list.
    pub fn usage(program: &str) -> String {
        CliArgs::options().usage(&format!("Usage: {program} [options] [CONFIG_FILE]"))
    }

    /// Applies the flags to a parsed file as overrides.
    fn apply(&self, ini: &mut Ini) {
        if self.verbose {
            ini.set_override("verbose", "True", "-v/--verbose");
        }
        if self.debug {
            ini.set_override("debug", "True", "-d/--debug");
        }
        if self.use_syslog {
            ini.set_override("use_syslog", "True", "--use-syslog");
        }
        let opts = [
            ("log_config", &self.log_config, "--log-config"),
            ("log_file", &self.log_file, "--log-file"),
            ("log_dir", &self.log_dir, "--log-dir"),
            (
                "log_date_format",
                &self.log_date_format,
                "--log-date-format",
            ),
        ];
        for (key, value, flag) in opts {
            if let Some(v) = value {
                ini.set_override(key, v, flag);
            }
        }
        for o in &self.overrides {
            ini.set_override(&o.key, &o.value, &o.flag);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Locating the file

/// The places searched for `<app>.conf` when neither `--config-file` nor a positional path
/// names it: `./`, `~/.glance/`, `~/`, `/etc/glance/`, `/etc/` (`~` from `$HOME`; skipped
/// when unset).
pub fn search_path(app: &str) -> Vec<PathBuf> {
    let file = format!("{app}.conf");
    let mut v = vec![Path::new(".").join(&file)];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        v.push(home.join(".glance").join(&file));
        v.push(home.join(&file));
    }
    v.push(Path::new("/etc/glance").join(&file));
    v.push(Path::new("/etc").join(&file));
    v
}

/// Finds the config file of `app`: `explicit` (`--config-file`, which must exist), else
/// `positional` when it is an existing file, else the first existing file of
/// [`search_path`].
pub fn locate(app: &str, explicit: Option<&str>, positional: Option<&str>) -> Result<PathBuf> {
    locate_in(app, explicit, positional, &search_path(app))
}

/// [`locate`] with the search path given (for tests).
pub fn locate_in(
    app: &str,
    explicit: Option<&str>,
    positional: Option<&str>,
    search: &[PathBuf],
) -> Result<PathBuf> {
    if let Some(p) = explicit {
        let path = PathBuf::from(p);
        return match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(path),
            Ok(_) => Err(Error::Config(format!("--config-file {p}: not a file"))),
            Err(e) => Err(Error::Config(format!("--config-file {p}: {e}"))),
        };
    }
    if let Some(p) = positional {
        let path = PathBuf::from(p);
        if path.is_file() {
            return Ok(path);
        }
    }
    if let Some(found) = search.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let tried: Vec<String> = search.iter().map(|p| p.display().to_string()).collect();
    Err(Error::Config(format!(
        "Unable to locate any configuration file for {app}; tried: {}",
        tried.join(", ")
    )))
}

/// Locates and parses the file of `app` and applies the command line to it. Also returns
/// a warning when a positional argument was given but is not a file.
fn open(app: &str, cli: &CliArgs, search: &[PathBuf]) -> Result<(Ini, Vec<String>)> {
    let positional = cli.args.first().map(String::as_str);
    let path = locate_in(app, cli.config_file.as_deref(), positional, search)?;
    let mut warnings = Vec::new();
    if let (None, Some(p)) = (&cli.config_file, positional)
        && Path::new(p) != path
    {
        warnings.push(format!(
            "argument '{p}' is not a file; using configuration file {}",
            path.display()
        ));
    }
    let mut ini = Ini::load(&path)?;
    cli.apply(&mut ini);
    Ok((ini, warnings))
}

// ---------------------------------------------------------------------------------------------
// Typed configs

/// Largest `keepalive_timeout`, `client_header_timeout` and `min_rate_window`, in seconds (a
/// day): longer is surely a mistake, and keeps deadlines far from `Instant` overflow.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Largest `client_body_min_rate` and `send_min_rate`, in bytes/s (1 GiB/s).
pub const MAX_MIN_RATE: u64 = 1 << 30;

/// Default `send_buffer_size` (1 MiB).
pub const DEFAULT_SEND_BUFFER_SIZE: usize = 1 << 20;

/// Default `metadata_workers` for `workers` workers: a quarter of them, at least 1, and 0
/// with a single worker (which must be free to move image data).
pub fn default_metadata_workers(workers: usize) -> usize {
    if workers > 1 { (workers / 4).max(1) } else { 0 }
}

/// Options every server shares.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    /// Path of the config file that was loaded.
    pub config_path: PathBuf,
    /// Address to listen on (`bind_host`, default `0.0.0.0` for glance-api, `127.0.0.1`
    /// for glance-registry: an internal service).
    pub bind_host: String,
    /// Port to listen on (0 = any free port; default 9292 for the API, 9191 for the
    /// registry).
    pub bind_port: u16,
    /// Worker threads of the HTTP server (`workers`, default 16, at least 1).
    pub workers: usize,
    /// Workers kept for requests that move no image data (`metadata_workers`; default
    /// [`default_metadata_workers`]: a quarter of `workers`, at least 1, or 0 with one
    /// worker). Always less than `workers`; 0 = no reserve.
    pub metadata_workers: usize,
    /// Seconds an idle keep-alive connection is kept open (`keepalive_timeout`, default 60;
    /// 0 = close every connection after its response).
    pub keepalive_timeout: Duration,
    /// Seconds the whole request head may take to arrive (`client_header_timeout`, default
    /// 10, at least 1).
    pub client_header_timeout: Duration,
    /// Slowest accepted request body in bytes/s over `min_rate_window`
    /// (`client_body_min_rate`, default 1024; 0 = no minimum).
    pub client_body_min_rate: u64,
    /// Slowest accepted response body in bytes/s over `min_rate_window` (`send_min_rate`,
    /// default 1024; 0 = no minimum).
    pub send_min_rate: u64,
    /// Seconds the two minimum rates are averaged over (`min_rate_window`, default 30, at
    /// least 1).
    pub min_rate_window: Duration,
    /// Open connections beyond which new ones get 503 (`max_connections`, default 10000,
    /// at least 1).
    pub max_connections: usize,
    /// Open connections from one client address beyond which its new ones get 503
    /// (`max_connections_per_client`, default 256, at least 1).
    pub max_connections_per_client: usize,
    /// Send file-store image data with sendfile(2) (`sendfile`, default True: no copy
    /// through user space; see README's connection figures for the buffered copy).
    pub sendfile: bool,
    /// Buffer for file bodies when `sendfile` is off (`send_buffer_size`,
    /// bytes, default 1 MiB, 4 KiB to 64 MiB).
    pub send_buffer_size: usize,
    /// Log INFO (`verbose`, `-v`).
    pub verbose: bool,
    /// Log DEBUG (`debug`, `-d`).
    pub debug: bool,
    /// Log file (else stderr); see [`CommonOptions::log_path`].
    pub log_file: Option<PathBuf>,
    /// Directory for a relative log file.
    pub log_dir: Option<PathBuf>,
    /// strftime-style date format of log lines (`%Y %m %d %H %M %S` are understood).
    pub log_date_format: String,
    /// `use_syslog` was set: not supported yet (logging goes to stderr or the log file; a
    /// warning says so).
    pub use_syslog: bool,
    /// `log_config`/`--log-config`: a Python logging config file, which we cannot apply (a
    /// warning says so). It must exist.
    pub log_config: Option<PathBuf>,
    /// `auth_strategy`: `noauth` (default) or `keystone`.
    pub auth_strategy: AuthStrategy,
    /// Role name that makes a caller admin (`admin_role`, default `admin`).
    pub admin_role: String,
    /// Owner id is the tenant (else the user) (`owner_is_tenant`, default True).
    pub owner_is_tenant: bool,
    /// Under `keystone`, a request without a token is served as anonymous and read-only
    /// instead of 401 (`allow_anonymous_access`, default False).
    pub allow_anonymous_access: bool,
    /// The `[keystone_authtoken]` options (read always, required only under `keystone`).
    pub keystone: KeystoneOptions,
}

impl CommonOptions {
    /// The defaults, for a server listening on `bind_port` (what an empty file gives).
    pub fn new(config_path: impl Into<PathBuf>, bind_port: u16) -> CommonOptions {
        CommonOptions {
            config_path: config_path.into(),
            bind_host: "0.0.0.0".to_string(),
            bind_port,
            workers: 16,
            metadata_workers: default_metadata_workers(16),
            keepalive_timeout: Duration::from_secs(60),
            client_header_timeout: Duration::from_secs(10),
            client_body_min_rate: 1024,
            send_min_rate: 1024,
            min_rate_window: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_client: 256,
            sendfile: true,
            send_buffer_size: DEFAULT_SEND_BUFFER_SIZE,
            verbose: false,
            debug: false,
            log_file: None,
            log_dir: None,
            log_date_format: DEFAULT_LOG_DATE_FORMAT.to_string(),
            use_syslog: false,
            log_config: None,
            auth_strategy: AuthStrategy::NoAuth,
            admin_role: "admin".to_string(),
            owner_is_tenant: true,
            allow_anonymous_access: false,
            keystone: KeystoneOptions::default(),
        }
    }

    /// Where to log: `log_file` joined onto `log_dir` when relative and `log_dir` is set;
    /// `None` means stderr.
    pub fn log_path(&self) -> Option<PathBuf> {
        let file = self.log_file.as_ref()?;
        match &self.log_dir {
            Some(dir) if file.is_relative() => Some(dir.join(file)),
            _ => Some(file.clone()),
        }
    }

    /// Reads the logging options (all programs).
    fn read_logging(&mut self, ini: &Ini, warnings: &mut Vec<String>) -> Result<()> {
        let d = ini.defaults();
        self.verbose = d.bool("verbose", false)?;
        self.debug = d.bool("debug", false)?;
        self.log_file = d.opt_path("log_file");
        self.log_dir = d.opt_path("log_dir");
        self.log_date_format = d.string("log_date_format", DEFAULT_LOG_DATE_FORMAT);
        self.use_syslog = d.bool("use_syslog", false)?;
        if self.use_syslog {
            let target = self
                .log_path()
                .map_or_else(|| "stderr".to_string(), |p| p.display().to_string());
            warnings.push(format!(
                "use_syslog is not supported yet; logging to {target} instead"
            ));
        }
        if let Some(v) = d.get("log_config") {
            let path = PathBuf::from(v.text);
            if !path.is_file() {
                return Err(v.error("log_config", "does not name an existing file"));
            }
            warnings.push(format!(
                "log_config {}: Python logging configuration files are not supported; \
                 using the log_* options instead",
                path.display()
            ));
            self.log_config = Some(path);
        }
        Ok(())
    }

    /// Reads the listening and request-context options (servers).
    fn read_server(&mut self, ini: &Ini) -> Result<()> {
        let d = ini.defaults();
        self.bind_host = d.string("bind_host", &self.bind_host);
        self.bind_port = d.port("bind_port", self.bind_port)?;
        self.workers = d.usize_in("workers", 16, 1..=usize::MAX)?;
        self.read_connections(ini)?;
        self.auth_strategy =
            AuthStrategy::from_name(&d.choice("auth_strategy", "noauth", AUTH_STRATEGIES)?);
        self.admin_role = d.string("admin_role", "admin");
        self.owner_is_tenant = d.bool("owner_is_tenant", true)?;
        self.allow_anonymous_access = d.bool("allow_anonymous_access", false)?;
        self.keystone = KeystoneOptions::from_ini(ini)?;
        if self.auth_strategy == AuthStrategy::Keystone {
            self.keystone.check_complete(ini)?;
        }
        Ok(())
    }

    /// Reads the connection options of the HTTP server (issue 13): deadlines, minimum
    /// rates, connection limits, the metadata reserve of the workers and how files are sent.
    /// `workers` must be read first.
    fn read_connections(&mut self, ini: &Ini) -> Result<()> {
        let d = ini.defaults();
        self.keepalive_timeout = d.seconds_in("keepalive_timeout", 60, 0..=MAX_TIMEOUT_SECS)?;
        self.client_header_timeout =
            d.seconds_in("client_header_timeout", 10, 1..=MAX_TIMEOUT_SECS)?;
        self.client_body_min_rate = d.u64_in("client_body_min_rate", 1024, 0..=MAX_MIN_RATE)?;
        self.send_min_rate = d.u64_in("send_min_rate", 1024, 0..=MAX_MIN_RATE)?;
        self.min_rate_window = d.seconds_in("min_rate_window", 30, 1..=MAX_TIMEOUT_SECS)?;
        self.max_connections = d.usize_in("max_connections", 10_000, 1..=usize::MAX)?;
        self.max_connections_per_client =
            d.usize_in("max_connections_per_client", 256, 1..=usize::MAX)?;
        self.metadata_workers = match d.get("metadata_workers") {
            None => default_metadata_workers(self.workers),
            Some(v) => {
                let n = d.usize("metadata_workers", 0)?;
                if n >= self.workers {
                    let problem = format!(
                        "must be less than workers ({}): at least one worker must be free \
                         to move image data",
                        self.workers
                    );
                    return Err(v.error("metadata_workers", &problem));
                }
                n
            }
        };
        self.sendfile = d.bool("sendfile", true)?;
        self.send_buffer_size = d.usize_in(
            "send_buffer_size",
            DEFAULT_SEND_BUFFER_SIZE,
            4096..=64 << 20,
        )?;
        Ok(())
    }

    /// Warnings about options in `[keystone_authtoken]` that were never read (only under
    /// `keystone`: a noauth config may carry a section it does not use).
    fn keystone_warnings(&self, ini: &Ini) -> Vec<String> {
        if self.auth_strategy == AuthStrategy::Keystone {
            ini.unknown_options_in(KEYSTONE_SECTION)
        } else {
            Vec::new()
        }
    }
}

/// A configured secret (a password): shown as `***` by `Debug`, never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Token validation against Keystone v3 (`auth_strategy = keystone`), configured in
/// `[keystone_authtoken]` with keystonemiddleware's option names. The section falls back
/// to `[DEFAULT]`, as every section does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoneOptions {
    /// The public Identity endpoint told to clients in `WWW-Authenticate: Keystone uri="…"`
    /// (`www_authenticate_uri`, or the deprecated `auth_uri`; default: `auth_url`).
    pub www_authenticate_uri: Option<String>,
    /// Where tokens are validated (`auth_url`, e.g. `http://127.0.0.1:5000` or
    /// `http://127.0.0.1:5000/v3`). Required under `keystone`.
    pub auth_url: Option<String>,
    /// `auth_type`: only `password` (the default) is supported.
    pub auth_type: String,
    /// The service user that validates tokens (`username`). Required under `keystone`.
    pub username: Option<String>,
    /// Its password (`password`). Required under `keystone`.
    pub password: Option<Secret>,
    /// The project the service token is scoped to (`project_name`). Required under
    /// `keystone`.
    pub project_name: Option<String>,
    /// Domain of the service user (`user_domain_name`, default `Default`).
    pub user_domain_name: String,
    /// Domain of the service project (`project_domain_name`, default `Default`).
    pub project_domain_name: String,
    /// How long a validated token is trusted without asking Keystone again
    /// (`token_cache_time`, seconds, default 300; 0 or -1 = no cache). Never beyond the
    /// token's own expiry; failures are never cached.
    pub token_cache_time: Duration,
    /// Seconds to wait for a connection to Keystone (`http_connect_timeout`, default 3).
    pub http_connect_timeout: Duration,
    /// Seconds a whole Keystone request may take (`http_request_timeout`, default 10).
    pub http_request_timeout: Duration,
}

impl Default for KeystoneOptions {
    fn default() -> KeystoneOptions {
        KeystoneOptions {
            www_authenticate_uri: None,
            auth_url: None,
            auth_type: "password".to_string(),
            username: None,
            password: None,
            project_name: None,
            user_domain_name: "Default".to_string(),
            project_domain_name: "Default".to_string(),
            token_cache_time: Duration::from_secs(300),
            http_connect_timeout: Duration::from_secs(3),
            http_request_timeout: Duration::from_secs(10),
        }
    }
}

impl KeystoneOptions {
    /// Reads `[keystone_authtoken]` (with `[DEFAULT]` fallback).
    fn from_ini(ini: &Ini) -> Result<KeystoneOptions> {
        let k = ini.section(KEYSTONE_SECTION);
        let url = |key: &str| -> Result<Option<String>> {
            match k.get(key) {
                None => Ok(None),
                Some(v) => {
                    let lower = v.text.to_ascii_lowercase();
                    if v.text.contains(|c: char| c.is_whitespace() || c == '"') {
                        Err(v.error(key, "must not contain spaces or quotes"))
                    } else if lower.starts_with("http://") || lower.starts_with("https://") {
                        Ok(Some(v.text.trim_end_matches('/').to_string()))
                    } else {
                        Err(v.error(key, "is not an http:// or https:// URL"))
                    }
                }
            }
        };
        let www = url("www_authenticate_uri")?;
        let www = match www {
            Some(u) => Some(u),
            None => url("auth_uri")?,
        };
        let token_cache_time = match k.get("token_cache_time") {
            None => Duration::from_secs(300),
            Some(v) => match v.text.parse::<i64>() {
                Ok(n) if n <= 0 => Duration::ZERO,
                Ok(n) => Duration::from_secs(n.unsigned_abs()),
                Err(_) => {
                    return Err(v.error(
                        "token_cache_time",
                        "is not a whole number of seconds (-1 or 0 = no cache)",
                    ));
                }
            },
        };
        let auth_type = k.choice("auth_type", "password", &["password"])?;
        let positive = |key: &str, default: u64| -> Result<Duration> {
            let d = k.seconds(key, default)?;
            match k.get(key) {
                Some(v) if d.is_zero() => Err(v.error(key, "must be at least 1 second")),
                _ => Ok(d),
            }
        };
        Ok(KeystoneOptions {
            www_authenticate_uri: www,
            auth_url: url("auth_url")?,
            auth_type,
            username: k.opt_string("username"),
            password: k.opt_string("password").map(Secret),
            project_name: k.opt_string("project_name"),
            user_domain_name: k.string("user_domain_name", "Default"),
            project_domain_name: k.string("project_domain_name", "Default"),
            token_cache_time,
            http_connect_timeout: positive("http_connect_timeout", 3)?,
            http_request_timeout: positive("http_request_timeout", 10)?,
        })
    }

    /// Under `keystone` the service credentials must all be given.
    fn check_complete(&self, ini: &Ini) -> Result<()> {
        let missing: Vec<&str> = [
            ("auth_url", self.auth_url.is_none()),
            ("username", self.username.is_none()),
            ("password", self.password.is_none()),
            ("project_name", self.project_name.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(k, _)| *k)
        .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{}: auth_strategy = keystone needs {} in [{KEYSTONE_SECTION}]",
            ini.path().display(),
            missing.join(", ")
        )))
    }

    /// The URI clients are sent to in `WWW-Authenticate` (`www_authenticate_uri`, else
    /// `auth_url`).
    pub fn challenge_uri(&self) -> &str {
        self.www_authenticate_uri
            .as_deref()
            .or(self.auth_url.as_deref())
            .unwrap_or("")
    }
}

/// `sql_connection` and friends.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// `sql_connection` as given, with its password replaced by `***` (for messages; the
    /// password is only in [`DatabaseOptions::url`], whose `Debug` hides it too).
    pub sql_connection: String,
    /// The parsed `sql_connection`: a SQLite file, or a PostgreSQL or MySQL server.
    pub url: DbUrl,
    /// The SQLite database path (absolute), or empty for a server database.
    pub sqlite_path: PathBuf,
    /// How long one statement may run or wait for a lock (`sql_statement_timeout`, default
    /// 30 s):
    /// SQLite's busy timeout, the servers' statement and lock timeouts.
    pub sql_statement_timeout: Duration,
    /// Pooled connections idle longer than this are closed rather than reused
    /// (`sql_idle_timeout`, default 3600 s; Glance's pool recycle time; Diablo's
    /// `sql_timeout` is its old name).
    pub sql_idle_timeout: Duration,
    /// Connections kept open in the pool (`sql_max_pool_size`, default 16, at least 1).
    pub sql_max_pool_size: usize,
    /// Extra connections opened under load (`sql_max_overflow`, default 16).
    pub sql_max_overflow: usize,
    /// How long a request waits for a free connection before a 503 (`sql_pool_timeout`,
    /// default 30 s).
    pub sql_pool_timeout: Duration,
    /// How long opening a server connection may take before the database counts as
    /// unavailable (`sql_connect_timeout`, default 5 s; a `connect_timeout` in the URL wins).
    pub sql_connect_timeout: Duration,
    /// Apply migrations at start-up (`db_auto_create = True`) instead of refusing a
    /// database whose schema is not the latest.
    pub db_auto_create: bool,
    /// `sqlite_synchronous`: `FULL` (default; every commit on disk before it returns) or
    /// `NORMAL` (faster writes; the last commits may be lost on power loss).
    pub sqlite_synchronous_full: bool,
}

impl DatabaseOptions {
    /// Reads the database options, with `default_connection` when `sql_connection` is unset.
    fn from_ini(ini: &Ini, default_connection: &str) -> Result<DatabaseOptions> {
        let d = ini.defaults();
        let (sql_connection, url) = match d.get("sql_connection") {
            Some(v) => {
                let shown = redact_url(v.text);
                let url = DbUrl::parse(v.text)
                    .map_err(|p| v.error_showing("sql_connection", &shown, &p))?;
                (shown, url)
            }
            None => (
                redact_url(default_connection),
                DbUrl::parse(default_connection).map_err(Error::Config)?,
            ),
        };
        let sqlite_path = url.sqlite_path().map(Path::to_path_buf).unwrap_or_default();
        // Bounded so that deadlines computed from them cannot overflow an Instant.
        const DAY: u64 = 86_400;
        Ok(DatabaseOptions {
            sql_connection,
            url,
            sqlite_path,
            sql_statement_timeout: d.seconds_in("sql_statement_timeout", 30, 0..=DAY)?,
            // Diablo's `sql_timeout` is the old name of `sql_idle_timeout`.
            sql_idle_timeout: match (d.get("sql_timeout"), d.get("sql_idle_timeout")) {
                (Some(_), None) => d.seconds_in("sql_timeout", 3600, 0..=365 * DAY)?,
                _ => d.seconds_in("sql_idle_timeout", 3600, 0..=365 * DAY)?,
            },
            sql_max_pool_size: d.usize_in("sql_max_pool_size", 16, 1..=10_000)?,
            sql_max_overflow: d.usize_in("sql_max_overflow", 16, 0..=10_000)?,
            sql_pool_timeout: d.seconds_in("sql_pool_timeout", 30, 0..=DAY)?,
            sql_connect_timeout: d.seconds_in("sql_connect_timeout", 5, 1..=3600)?,
            db_auto_create: d.bool("db_auto_create", false)?,
            sqlite_synchronous_full: d
                .choice("sqlite_synchronous", "FULL", &["FULL", "NORMAL"])?
                .eq_ignore_ascii_case("FULL"),
        })
    }

    /// The connection pool's sizes and timeouts.
    pub fn pool_options(&self) -> crate::registry::sql::pool::PoolOptions {
        crate::registry::sql::pool::PoolOptions {
            max_size: self.sql_max_pool_size,
            max_overflow: self.sql_max_overflow,
            idle_timeout: self.sql_idle_timeout,
            checkout_timeout: self.sql_pool_timeout,
        }
    }

    /// How server connections are opened: `sql_connect_timeout` (or the URL's
    /// `connect_timeout`), and `sql_statement_timeout` as the statement and lock timeout.
    pub fn connect_options(&self) -> crate::registry::sql::ConnectOptions {
        let url_timeout = match &self.url {
            DbUrl::Postgres(s) | DbUrl::Mysql(s) => s.connect_timeout(),
            DbUrl::Sqlite(_) => None,
        };
        crate::registry::sql::ConnectOptions {
            connect_timeout: url_timeout.unwrap_or(self.sql_connect_timeout),
            statement_timeout: self.sql_statement_timeout,
        }
    }
}

/// The URL with the password of its user-info replaced by `***`
/// (`mysql://glance:***@db/glance`), so that it can appear in messages. The user-info is
/// found as `sql_connection` is parsed (see [`crate::registry::sql::url::redact`]).
pub fn redact_url(url: &str) -> String {
    crate::registry::sql::url::redact(url)
}

/// Collects the warnings of a loaded file: parse warnings, then unknown options. An option
/// this program does not read but another one does ([`known::is_known`]) is not unknown: the
/// file may be another program's, or shared.
fn finish_warnings(ini: &Ini, mut warnings: Vec<String>) -> Vec<String> {
    let mut all: Vec<String> = ini.parse_warnings().to_vec();
    all.append(&mut warnings);
    all.extend(ini.unknown_options_except(known::is_known));
    all
}

/// Reads the `swift_*` and `s3_store_*` options (glance-api and glance-scrubber, which
/// deletes data from these stores). Sizes are configured in MB (MiB) and kept in bytes.
fn read_object_stores(ini: &Ini) -> Result<(SwiftOptions, S3Options)> {
    let d = ini.defaults();
    let defaults = SwiftOptions::default();
    let container = d.string("swift_store_container", &defaults.container);
    if let Some(v) = d.get("swift_store_container")
        && container.contains('/')
    {
        return Err(v.error("swift_store_container", "must not contain '/'"));
    }
    let auth_version = match d.get("swift_store_auth_version") {
        None => SwiftAuthVersion::V1,
        Some(v) => SwiftAuthVersion::parse(v.text).ok_or_else(|| {
            v.error(
                "swift_store_auth_version",
                "is not a supported auth version (1 for v1.0, 3 for Keystone v3)",
            )
        })?,
    };
    let endpoint_type = d.string("swift_store_endpoint_type", "publicURL");
    if endpoint_interface(&endpoint_type).is_none()
        && let Some(v) = d.get("swift_store_endpoint_type")
    {
        return Err(v.error(
            "swift_store_endpoint_type",
            "is not one of: publicURL, internalURL, adminURL",
        ));
    }
    let swift = SwiftOptions {
        auth_address: d.opt_string("swift_store_auth_address"),
        user: d.opt_string("swift_store_user"),
        key: d.opt_string("swift_store_key"),
        container,
        create_container_on_put: d.bool("swift_store_create_container_on_put", false)?,
        large_object_size: d.u64_in("swift_store_large_object_size", 5120, 1..=(u64::MAX / MB))?
            * MB,
        large_object_chunk_size: d.u64_in("swift_store_large_object_chunk_size", 200, 1..=5120)?
            * MB,
        auth_version,
        user_domain_id: d.string("swift_store_user_domain_id", "default"),
        project_domain_id: d.string("swift_store_project_domain_id", "default"),
        region: d.opt_string("swift_store_region"),
        endpoint_type,
        enable_snet: d.bool("swift_enable_snet", false)?,
    };
    let bucket_url_format = d.choice(
        "s3_store_bucket_url_format",
        "auto",
        &["auto", "path", "virtual"],
    )?;
    let s3 = S3Options {
        host: d.opt_string("s3_store_host"),
        access_key: d.opt_string("s3_store_access_key"),
        secret_key: d.opt_string("s3_store_secret_key"),
        bucket: d.opt_string("s3_store_bucket"),
        create_bucket_on_put: d.bool("s3_store_create_bucket_on_put", false)?,
        bucket_url_format: BucketUrlFormat::parse(&bucket_url_format)
            .unwrap_or(BucketUrlFormat::Auto),
        region_name: d.string("s3_store_region_name", "us-east-1"),
        large_object_size: d.u64_in("s3_store_large_object_size", 100, 1..=(u64::MAX / MB))? * MB,
        large_object_chunk_size: d.u64_in("s3_store_large_object_chunk_size", 10, 5..=5120)? * MB,
    };
    Ok((swift, s3))
}

/// The location policy options (glance-api, and glance-scrubber, which deletes data at
/// client-supplied locations): `known_stores` (comma-separated store names; unset = every
/// store the options set up) and `location_allowed_hosts` (comma-separated host names,
/// addresses and CIDR networks). Invalid entries are fatal at start-up.
fn read_location_policy(ini: &Ini) -> Result<(Option<Vec<String>>, Arc<AddressPolicy>)> {
    let d = ini.defaults();
    let list = |text: &str| -> Vec<String> {
        text.split(',')
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect()
    };
    let known = match d.get("known_stores") {
        None => None,
        Some(v) => {
            let names: Vec<String> = list(v.text)
                .into_iter()
                .map(|n| n.to_ascii_lowercase())
                .collect();
            if let Some(bad) = names
                .iter()
                .find(|n| !["file", "http", "swift", "s3"].contains(&n.as_str()))
            {
                return Err(v.error(
                    "known_stores",
                    &format!("names an unknown store '{bad}' (stores: file, http, swift, s3)"),
                ));
            }
            Some(names)
        }
    };
    let allowed = match d.get("location_allowed_hosts") {
        None => AddressPolicy::default(),
        Some(v) => AddressPolicy::parse(&list(v.text))
            .map_err(|why| v.error("location_allowed_hosts", &format!("is invalid: {why}")))?,
    };
    Ok((known, Arc::new(allowed)))
}

/// Reads `disk_formats`: a comma-separated list of known disk formats (any case; repeats
/// dropped). Set but empty, or naming an unknown format, is an error: an API that accepts no
/// format, or a typo that silently narrows the list, is never what the operator meant.
fn read_disk_formats(ini: &Ini) -> Result<Vec<String>> {
    const KEY: &str = "disk_formats";
    let Some(v) = ini.get(ini::DEFAULT, KEY) else {
        return Ok(DISK_FORMATS.iter().map(|f| f.to_string()).collect());
    };
    let mut formats: Vec<String> = Vec::new();
    for entry in v.text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let known = DISK_FORMATS.iter().find(|f| f.eq_ignore_ascii_case(entry));
        let Some(known) = known else {
            return Err(v.error(
                KEY,
                &format!(
                    "names an unknown disk format '{entry}' (known: {})",
                    DISK_FORMATS.join(", ")
                ),
            ));
        };
        if !formats.iter().any(|f| f == known) {
            formats.push(known.to_string());
        }
    }
    if formats.is_empty() {
        return Err(v.error(
            KEY,
            &format!("lists no disk format (known: {})", DISK_FORMATS.join(", ")),
        ));
    }
    Ok(formats)
}

/// glance-registry.conf.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Shared options (`bind_port` defaults to 9191).
    pub common: CommonOptions,
    /// Database (`sql_connection` defaults to [`DEFAULT_SQL_CONNECTION`]).
    pub db: DatabaseOptions,
    /// Largest page (`api_limit_max`, default 1000).
    pub api_limit_max: u64,
    /// Default page (`limit_param_default`, default 25).
    pub limit_param_default: u64,
    /// `image_property_quota` and `image_member_quota` (default 128 each).
    pub quotas: Quotas,
    /// Messages to log once logging is up (unknown options, unsupported settings).
    pub warnings: Vec<String>,
}

/// Default `bind_host` of glance-registry: loopback, because the registry API trusts what it
/// is sent (under `noauth` a request without a token is admin) and must not be reachable by
/// tenants.
pub const REGISTRY_BIND_HOST: &str = "127.0.0.1";

/// Reads `image_property_quota`, `image_member_quota` and `image_tag_quota` (glance-api and
/// glance-registry).
fn read_quotas(ini: &Ini) -> Result<Quotas> {
    let d = ini.defaults();
    let def = Quotas::default();
    Ok(Quotas {
        properties: d.u64("image_property_quota", def.properties)?,
        members: d.u64("image_member_quota", def.members)?,
        tags: d.u64("image_tag_quota", def.tags)?,
    })
}

/// The images APIs glance-api serves beside each other, and what v2 shows of locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersions {
    /// `enable_v1_api` (default True).
    pub v1: bool,
    /// `enable_v2_api` (default True).
    pub v2: bool,
    /// `v1_api_deprecated` (default False): the versions document lists v1 as `DEPRECATED`
    /// rather than `SUPPORTED`.
    pub v1_deprecated: bool,
    /// `show_image_direct_url` (default False): v2 images show `direct_url`, the store
    /// location (credentials removed).
    pub show_direct_url: bool,
    /// `show_multiple_locations` (default False): v2 images show `locations`.
    pub show_locations: bool,
}

impl Default for ApiVersions {
    fn default() -> ApiVersions {
        ApiVersions {
            v1: true,
            v2: true,
            v1_deprecated: false,
            show_direct_url: false,
            show_locations: false,
        }
    }
}

impl ApiVersions {
    fn from_ini(ini: &Ini) -> Result<ApiVersions> {
        let d = ini.defaults();
        let v = ApiVersions {
            v1: d.bool("enable_v1_api", true)?,
            v2: d.bool("enable_v2_api", true)?,
            v1_deprecated: d.bool("v1_api_deprecated", false)?,
            show_direct_url: d.bool("show_image_direct_url", false)?,
            show_locations: d.bool("show_multiple_locations", false)?,
        };
        if !v.v1 && !v.v2 {
            return Err(Error::Config(
                "enable_v1_api and enable_v2_api are both False: glance-api would serve no API"
                    .into(),
            ));
        }
        Ok(v)
    }
}

impl RegistryConfig {
    /// Reads the settings from a parsed file (command-line overrides already applied).
    pub fn from_ini(ini: &Ini) -> Result<RegistryConfig> {
        let mut warnings = Vec::new();
        let mut common = CommonOptions::new(ini.path(), 9191);
        common.bind_host = REGISTRY_BIND_HOST.to_string();
        common.read_logging(ini, &mut warnings)?;
        common.read_server(ini)?;
        let db = DatabaseOptions::from_ini(ini, DEFAULT_SQL_CONNECTION)?;
        let d = ini.defaults();
        let api_limit_max = d.u64_in("api_limit_max", 1000, 1..=u64::MAX)?;
        let limit_param_default = d.u64_in("limit_param_default", 25, 1..=u64::MAX)?;
        warnings.extend(common.keystone_warnings(ini));
        Ok(RegistryConfig {
            common,
            db,
            api_limit_max,
            limit_param_default,
            quotas: read_quotas(ini)?,
            warnings: finish_warnings(ini, warnings),
        })
    }
}

/// Checks a `public_endpoint` value and returns it without trailing slashes: an
/// `http://` or `https://` URL with a host, optionally a port and a path prefix; no
/// user-info (it would be sent to every client), query or fragment, no spaces or quotes.
/// The error is a problem description.
pub fn public_endpoint(text: &str) -> std::result::Result<String, String> {
    let lower = text.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &text["http://".len()..]
    } else if lower.starts_with("https://") {
        &text["https://".len()..]
    } else {
        return Err("is not an http:// or https:// URL".into());
    };
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | '\\'))
    {
        return Err("must not contain spaces, quotes or control characters".into());
    }
    if text.contains(['?', '#']) {
        return Err("must not have a query or fragment".into());
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err("must not contain user-info (user:password@)".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if let Some(port) = authority
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.contains(']'))
        && !matches!(port.parse::<u16>(), Ok(n) if n != 0)
    {
        return Err("has an invalid port".into());
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// glance-api.conf.
///
/// Store, notifier and registry options of glance-api; the auth options are in
/// [`CommonOptions`].
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Shared options (`bind_port` defaults to 9292).
    pub common: CommonOptions,
    /// `registry_host`: a remote glance-registry; unset = the embedded SQLite registry
    /// described by `db`.
    pub registry_host: Option<String>,
    /// `registry_port` (default 9191).
    pub registry_port: u16,
    /// `registry_client_timeout` (default 600 s).
    pub registry_client_timeout: Duration,
    /// `upload_lease_timeout` (default 300 s, 3 s to a day): how long an upload's node may
    /// go without renewing its lease (every third of it while data streams) before any
    /// node sharing the database marks the image `killed` and removes its partial data.
    pub upload_lease_timeout: Duration,
    /// Database of the embedded registry.
    pub db: DatabaseOptions,
    /// Largest page (`api_limit_max`, default 1000).
    pub api_limit_max: u64,
    /// Default page (`limit_param_default`, default 25).
    pub limit_param_default: u64,
    /// `image_property_quota` and `image_member_quota` (default 128 each), enforced by the
    /// embedded registry; with `registry_host` the registry's own settings apply.
    pub quotas: Quotas,
    /// `public_endpoint`: the base URL clients reach this API at (e.g.
    /// `https://images.example.com:9292`, no trailing slash), used in `Location` headers and
    /// the versions document; unset = the address the client connected to.
    pub public_endpoint: Option<String>,
    /// Store used for uploads (`default_store`, default `file`).
    pub default_store: Backend,
    /// `filesystem_store_datadir` (default `/var/lib/glance/images/`).
    pub filesystem_store_datadir: PathBuf,
    /// `delayed_delete` (default False): DELETE leaves `pending_delete` for the scrubber.
    pub delayed_delete: bool,
    /// `image_size_cap`: largest image accepted, in bytes (default 1 TiB).
    pub image_size_cap: u64,
    /// `image_buffer_size`: bytes per read/write when streaming image data (default 1 MiB,
    /// 4096 to 16 MiB).
    pub image_buffer_size: usize,
    /// `filesystem_store_direct_io` (default True): the file store writes uploads with
    /// `O_DIRECT` where the filesystem allows it.
    pub filesystem_store_direct_io: bool,
    /// `disk_formats`: the disk formats clients may declare on create and update, in the
    /// configured order (default: every format in [`DISK_FORMATS`], in that order).
    pub disk_formats: Vec<String>,
    /// `image_format_mismatch` (default `reject`).
    pub image_format_mismatch: OnMismatch,
    /// Which images APIs are served, and what v2 shows.
    pub apis: ApiVersions,
    /// `hashing_algorithm` (default `sha512`; `sha256`, `sha384` or `sha512`, any case): the
    /// algorithm of every upload's `os_hash_value`.
    pub hashing_algorithm: HashAlgorithm,
    /// `notifier_strategy`: `noop` (default), `logging` or `rabbit`.
    pub notifier_strategy: NotifierStrategy,
    /// Broker of `notifier_strategy = rabbit` (the `rabbit_*` options; read whatever the
    /// strategy).
    pub rabbit: RabbitOptions,
    /// The `swift_*` options.
    pub swift: SwiftOptions,
    /// The `s3_store_*` options.
    pub s3: S3Options,
    /// `known_stores`: the stores registered, by name (`None`: every store the options set
    /// up).
    pub known_stores: Option<Vec<String>>,
    /// `location_allowed_hosts`: special addresses client-supplied locations may reach.
    pub location_allowed_hosts: Arc<AddressPolicy>,
    /// The `image_cache_*` options (glance-api and the cache programs).
    pub cache: CacheOptions,
    /// Messages to log once logging is up (unknown options, unsupported settings).
    pub warnings: Vec<String>,
}

/// Reads the `image_cache_*` options: `image_cache_percent_extra_to_free` is a fraction
/// from 0 to 1, as in Diablo's sample (0.20 = 20 %).
fn read_cache(ini: &Ini) -> Result<CacheOptions> {
    let d = ini.defaults();
    let extra_key = "image_cache_percent_extra_to_free";
    let extra_to_free = match d.get(extra_key) {
        None => crate::cache::DEFAULT_EXTRA_TO_FREE,
        Some(v) => match v.text.trim().parse::<f64>() {
            Ok(f) if (0.0..=1.0).contains(&f) => f,
            _ => return Err(v.error(extra_key, "is not a fraction from 0 to 1 (0.05 = 5%)")),
        },
    };
    Ok(CacheOptions {
        enabled: d.bool("image_cache_enabled", false)?,
        datadir: d.path("image_cache_datadir", crate::cache::DEFAULT_DATADIR),
        max_size: d.u64("image_cache_max_size_bytes", crate::cache::DEFAULT_MAX_SIZE)?,
        extra_to_free,
        stall_timeout: d.seconds(
            "image_cache_stall_timeout",
            crate::cache::DEFAULT_STALL_TIMEOUT,
        )?,
        invalid_grace_period: d.seconds(
            "image_cache_invalid_entry_grace_period",
            crate::cache::DEFAULT_INVALID_GRACE,
        )?,
    })
}

impl ApiConfig {
    /// The stores' options: what glance-api serves with, and what `glance-manage inspect`
    /// reads through.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            default_store: self.default_store,
            filesystem_store_datadir: self.filesystem_store_datadir.clone(),
            buffer_size: self.image_buffer_size,
            direct_io: self.filesystem_store_direct_io,
            size_cap: self.image_size_cap,
            hashing_algorithm: self.hashing_algorithm,
            swift: self.swift.clone(),
            s3: self.s3.clone(),
            known_stores: self.known_stores.clone(),
            location_allowed_hosts: self.location_allowed_hosts.clone(),
        }
    }

    /// Reads the settings from a parsed file (command-line overrides already applied).
    pub fn from_ini(ini: &Ini) -> Result<ApiConfig> {
        let mut warnings = Vec::new();
        let mut common = CommonOptions::new(ini.path(), 9292);
        common.read_logging(ini, &mut warnings)?;
        common.read_server(ini)?;
        let db = DatabaseOptions::from_ini(ini, DEFAULT_SQL_CONNECTION)?;
        warnings.extend(common.keystone_warnings(ini));
        let (swift, s3) = read_object_stores(ini)?;
        let (known_stores, location_allowed_hosts) = read_location_policy(ini)?;
        let d = ini.defaults();
        Ok(ApiConfig {
            common,
            registry_host: d.opt_string("registry_host"),
            registry_port: d.port("registry_port", 9191)?,
            registry_client_timeout: d.seconds("registry_client_timeout", 600)?,
            upload_lease_timeout: d.seconds_in("upload_lease_timeout", 300, 3..=86_400)?,
            db,
            api_limit_max: d.u64_in("api_limit_max", 1000, 1..=u64::MAX)?,
            limit_param_default: d.u64_in("limit_param_default", 25, 1..=u64::MAX)?,
            quotas: read_quotas(ini)?,
            public_endpoint: match d.get("public_endpoint") {
                None => None,
                Some(v) => Some(
                    public_endpoint(v.text)
                        .map_err(|p| v.error_showing("public_endpoint", &redact_url(v.text), &p))?,
                ),
            },
            default_store: match d.get("default_store") {
                None => Backend::File,
                Some(v) => Backend::parse(v.text).ok_or_else(|| {
                    v.error(
                        "default_store",
                        "is not a store (file, http, swift, s3, or one of their schemes)",
                    )
                })?,
            },
            filesystem_store_datadir: d.path("filesystem_store_datadir", DEFAULT_DATADIR),
            delayed_delete: d.bool("delayed_delete", false)?,
            image_size_cap: d.u64("image_size_cap", 1 << 40)?,
            image_buffer_size: d.usize_in(
                "image_buffer_size",
                crate::store::DEFAULT_BUFFER_SIZE,
                4096..=16 << 20,
            )?,
            filesystem_store_direct_io: d.bool("filesystem_store_direct_io", true)?,
            disk_formats: read_disk_formats(ini)?,
            apis: ApiVersions::from_ini(ini)?,
            image_format_mismatch: OnMismatch::from_name(&d.choice(
                "image_format_mismatch",
                OnMismatch::default().as_str(),
                FORMAT_MISMATCH_CHOICES,
            )?),
            hashing_algorithm: HashAlgorithm::from_name(&d.choice(
                "hashing_algorithm",
                HashAlgorithm::default().name(),
                HashAlgorithm::NAMES,
            )?)
            .unwrap_or_default(),
            notifier_strategy: NotifierStrategy::from_name(&d.choice(
                "notifier_strategy",
                "noop",
                NOTIFIER_STRATEGIES,
            )?),
            rabbit: RabbitOptions::from_ini(ini)?,
            swift,
            s3,
            known_stores,
            location_allowed_hosts,
            cache: read_cache(ini)?,
            warnings: finish_warnings(ini, warnings),
        })
    }
}

/// The `rabbit_*` options of glance-api.conf: where `notifier_strategy = rabbit` publishes.
///
/// `Debug` shows the password as `***`: a config dump must not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct RabbitOptions {
    /// `rabbit_host` (default `localhost`).
    pub host: String,
    /// `rabbit_port` (default 5672). Glance read it but never used it; we honour it.
    pub port: u16,
    /// `rabbit_use_ssl` (default False): AMQP over TLS (system OpenSSL, certificate checked
    /// against the system's trusted roots).
    pub use_ssl: bool,
    /// `rabbit_userid` (default `guest`).
    pub userid: String,
    /// `rabbit_password` (default `guest`). Never logged.
    pub password: String,
    /// `rabbit_virtual_host` (default `/`).
    pub virtual_host: String,
    /// `rabbit_notification_topic` (default `glance_notifications`): messages of priority P
    /// go to the exchange and queue `<topic>.<P>`.
    pub notification_topic: String,
}

impl Default for RabbitOptions {
    fn default() -> RabbitOptions {
        RabbitOptions {
            host: "localhost".to_string(),
            port: 5672,
            use_ssl: false,
            userid: "guest".to_string(),
            password: "guest".to_string(),
            virtual_host: "/".to_string(),
            notification_topic: "glance_notifications".to_string(),
        }
    }
}

impl std::fmt::Debug for RabbitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("use_ssl", &self.use_ssl)
            .field("userid", &self.userid)
            .field("password", &"***")
            .field("virtual_host", &self.virtual_host)
            .field("notification_topic", &self.notification_topic)
            .finish()
    }
}

impl RabbitOptions {
    /// Reads the `rabbit_*` options (an empty value means the default).
    fn from_ini(ini: &Ini) -> Result<RabbitOptions> {
        let d = ini.defaults();
        let def = RabbitOptions::default();
        let topic = d.string("rabbit_notification_topic", &def.notification_topic);
        // Queue and exchange names are AMQP short strings (at most 255 bytes) and get
        // ".ERROR" appended.
        if topic.len() > 249
            && let Some(v) = d.get("rabbit_notification_topic")
        {
            return Err(v.error("rabbit_notification_topic", "is longer than 249 bytes"));
        }
        Ok(RabbitOptions {
            host: d.string("rabbit_host", &def.host),
            port: d.port("rabbit_port", def.port)?,
            use_ssl: d.bool("rabbit_use_ssl", def.use_ssl)?,
            userid: d.string("rabbit_userid", &def.userid),
            password: d.string("rabbit_password", &def.password),
            virtual_host: d.string("rabbit_virtual_host", &def.virtual_host),
            notification_topic: topic,
        })
    }
}

/// glance-scrubber.conf.
#[derive(Debug, Clone)]
pub struct ScrubberConfig {
    /// Shared options; only the logging ones are read from the file (the scrubber does not
    /// listen), the others keep their defaults.
    pub common: CommonOptions,
    /// The registry database whose `pending_delete` images are scrubbed.
    pub db: DatabaseOptions,
    /// `scrub_time`: how long a deleted image waits before its data is removed (default 0).
    pub scrub_time: Duration,
    /// `daemon` (default False): loop every `wakeup_time` instead of one pass.
    pub daemon: bool,
    /// `wakeup_time` (default 300 s).
    pub wakeup_time: Duration,
    /// `filesystem_store_datadir` (default `/var/lib/glance/images/`).
    pub filesystem_store_datadir: PathBuf,
    /// The `swift_*` options (to delete Swift data).
    pub swift: SwiftOptions,
    /// The `s3_store_*` options (to delete S3 data).
    pub s3: S3Options,
    /// `known_stores`, as in glance-api.conf.
    pub known_stores: Option<Vec<String>>,
    /// `location_allowed_hosts`, as in glance-api.conf (the scrubber deletes data at
    /// client-supplied Swift and S3 locations).
    pub location_allowed_hosts: Arc<AddressPolicy>,
    /// Messages to log once logging is up (unknown options, unsupported settings).
    pub warnings: Vec<String>,
}

impl ScrubberConfig {
    /// Reads the settings from a parsed file (command-line overrides already applied).
    pub fn from_ini(ini: &Ini) -> Result<ScrubberConfig> {
        let mut warnings = Vec::new();
        let mut common = CommonOptions::new(ini.path(), 0);
        common.read_logging(ini, &mut warnings)?;
        let db = DatabaseOptions::from_ini(ini, DEFAULT_SQL_CONNECTION)?;
        let (swift, s3) = read_object_stores(ini)?;
        let (known_stores, location_allowed_hosts) = read_location_policy(ini)?;
        let d = ini.defaults();
        Ok(ScrubberConfig {
            common,
            db,
            scrub_time: d.seconds("scrub_time", 0)?,
            daemon: d.bool("daemon", false)?,
            wakeup_time: d.seconds("wakeup_time", 300)?,
            filesystem_store_datadir: d.path("filesystem_store_datadir", DEFAULT_DATADIR),
            swift,
            s3,
            known_stores,
            location_allowed_hosts,
            warnings: finish_warnings(ini, warnings),
        })
    }
}

/// Loads glance-registry.conf (located as [`locate`] says) with the command line applied.
pub fn load_registry(cli: &CliArgs) -> Result<RegistryConfig> {
    let (ini, pre) = open(REGISTRY_APP, cli, &search_path(REGISTRY_APP))?;
    let mut cfg = RegistryConfig::from_ini(&ini)?;
    cfg.warnings.splice(0..0, pre);
    Ok(cfg)
}

/// Loads glance-api.conf (located as [`locate`] says) with the command line applied.
pub fn load_api(cli: &CliArgs) -> Result<ApiConfig> {
    let (ini, pre) = open(API_APP, cli, &search_path(API_APP))?;
    let mut cfg = ApiConfig::from_ini(&ini)?;
    cfg.warnings.splice(0..0, pre);
    Ok(cfg)
}

/// Loads glance-scrubber.conf (located as [`locate`] says) with the command line applied.
pub fn load_scrubber(cli: &CliArgs) -> Result<ScrubberConfig> {
    let (ini, pre) = open(SCRUBBER_APP, cli, &search_path(SCRUBBER_APP))?;
    let mut cfg = ScrubberConfig::from_ini(&ini)?;
    cfg.warnings.splice(0..0, pre);
    Ok(cfg)
}

#[cfg(test)]
mod tests;
