//! Tests of locating and loading the typed configs, and of the samples in `etc/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Err(e) = fs::write(&p, text) {
        panic!("writing {}: {e}", p.display());
    }
    p
}

fn ini(text: &str) -> Ini {
    match Ini::parse(Path::new("glance-api.conf"), text) {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    }
}

fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn cli(args: &[&str]) -> CliArgs {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    match CliArgs::parse(&args) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn locate_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let explicit = write(d, "explicit.conf", "[DEFAULT]\n");
    let positional = write(d, "positional.conf", "[DEFAULT]\n");
    let s1 = d.join("first/glance-api.conf");
    let s2 = write(d, "second.conf", "[DEFAULT]\n");
    let search = vec![s1.clone(), s2.clone()];
    let ex = explicit.to_str().unwrap();
    let pos = positional.to_str().unwrap();

    // --config-file wins over everything.
    assert_eq!(
        locate_in("glance-api", Some(ex), Some(pos), &search).unwrap(),
        explicit
    );
    // Then the positional argument.
    assert_eq!(
        locate_in("glance-api", None, Some(pos), &search).unwrap(),
        positional
    );
    // A positional argument that is not a file falls through to the search path, which is
    // tried in order (the first entry does not exist).
    assert_eq!(
        locate_in("glance-api", None, Some("serve"), &search).unwrap(),
        s2
    );
    fs::create_dir_all(s1.parent().unwrap()).unwrap();
    write(s1.parent().unwrap(), "glance-api.conf", "");
    assert_eq!(locate_in("glance-api", None, None, &search).unwrap(), s1);

    // A missing --config-file is an error naming it, even when others exist.
    let missing = d.join("missing.conf");
    let e = err(locate_in(
        "glance-api",
        missing.to_str(),
        Some(pos),
        &search,
    ));
    assert!(
        e.starts_with(&format!("--config-file {}: ", missing.display())),
        "{e}"
    );
    let e = err(locate_in("glance-api", d.to_str(), None, &search));
    assert!(e.ends_with("not a file"), "{e}");

    // Nothing found: every tried path is listed.
    let none = vec![d.join("a/glance-api.conf"), d.join("b/glance-api.conf")];
    let e = err(locate_in("glance-api", None, None, &none));
    assert_eq!(
        e,
        format!(
            "Unable to locate any configuration file for glance-api; tried: {}, {}",
            none[0].display(),
            none[1].display()
        )
    );
}

#[test]
fn search_path_order() {
    let p = search_path("glance-registry");
    assert_eq!(p[0], Path::new("./glance-registry.conf"));
    let n = p.len();
    assert_eq!(p[n - 2], Path::new("/etc/glance/glance-registry.conf"));
    assert_eq!(p[n - 1], Path::new("/etc/glance-registry.conf"));
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        assert_eq!(p[1], home.join(".glance/glance-registry.conf"));
        assert_eq!(p[2], home.join("glance-registry.conf"));
    }
}

#[test]
fn api_defaults_from_an_empty_file() {
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    assert_eq!(c.common.bind_host, "0.0.0.0");
    assert_eq!(c.common.bind_port, 9292);
    assert_eq!(c.common.workers, 16);
    assert!(!c.common.verbose && !c.common.debug && !c.common.use_syslog);
    assert_eq!(c.common.log_file, None);
    assert_eq!(c.common.log_path(), None);
    assert_eq!(c.common.log_date_format, "%Y-%m-%d %H:%M:%S");
    assert_eq!(c.common.auth_strategy, AuthStrategy::NoAuth);
    assert_eq!(c.common.admin_role, "admin");
    assert!(c.common.owner_is_tenant);
    assert_eq!(c.registry_host, None);
    assert_eq!(c.registry_port, 9191);
    assert_eq!(c.registry_client_timeout, Duration::from_secs(600));
    assert_eq!(c.db.sql_connection, DEFAULT_SQL_CONNECTION);
    assert_eq!(c.db.sqlite_path, Path::new("/var/lib/glance/glance.sqlite"));
    assert_eq!(c.db.sql_statement_timeout, Duration::from_secs(30));
    assert!(c.db.sqlite_synchronous_full);
    assert_eq!(c.db.sql_idle_timeout, Duration::from_secs(3600));
    assert_eq!((c.db.sql_max_pool_size, c.db.sql_max_overflow), (16, 16));
    assert_eq!(c.db.sql_pool_timeout, Duration::from_secs(30));
    assert_eq!(c.db.sql_connect_timeout, Duration::from_secs(5));
    assert!(!c.db.db_auto_create);
    assert_eq!((c.api_limit_max, c.limit_param_default), (1000, 25));
    assert_eq!(c.default_store, Backend::File);
    assert_eq!(
        c.filesystem_store_datadir,
        Path::new("/var/lib/glance/images/")
    );
    assert!(!c.delayed_delete);
    assert_eq!(c.image_size_cap, 1_099_511_627_776);
    assert_eq!(c.image_buffer_size, 1_048_576);
    assert!(c.filesystem_store_direct_io);
    assert_eq!(c.notifier_strategy, NotifierStrategy::Noop);
    assert_eq!(c.rabbit, RabbitOptions::default());
    assert_eq!(
        (c.rabbit.host.as_str(), c.rabbit.port, c.rabbit.use_ssl),
        ("localhost", 5672, false)
    );
    assert_eq!(
        (c.rabbit.userid.as_str(), c.rabbit.password.as_str()),
        ("guest", "guest")
    );
    assert_eq!(c.rabbit.virtual_host, "/");
    assert_eq!(c.rabbit.notification_topic, "glance_notifications");
    assert_eq!(c.quotas, crate::registry::Quotas::default());
    assert_eq!((c.quotas.properties, c.quotas.members), (128, 128));
    assert_eq!(c.public_endpoint, None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let r = RegistryConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    assert_eq!(r.common.bind_host, "127.0.0.1", "the registry is internal");
    assert_eq!(r.common.bind_port, 9191);
    assert_eq!((r.api_limit_max, r.limit_param_default), (1000, 25));
    assert_eq!((r.quotas.properties, r.quotas.members), (128, 128));

    let s = ScrubberConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    assert_eq!(s.scrub_time, Duration::ZERO);
    assert!(!s.daemon);
    assert_eq!(s.wakeup_time, Duration::from_secs(300));
}

#[test]
fn api_values_and_validation() {
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\n\
         bind_port = 0\n\
         workers = 2\n\
         auth_strategy = Keystone\n\
         owner_is_tenant = False\n\
         registry_host = 10.0.0.1\n\
         registry_port = 9999\n\
         image_buffer_size = 4096\n\
         filesystem_store_direct_io = False\n\
         log_dir = /var/log/glance\n\
         log_file = api.log\n\
         [keystone_authtoken]\n\
         auth_url = http://127.0.0.1:5000\n\
         username = glance\n\
         password = glance\n\
         project_name = service\n"))
    .unwrap();
    assert_eq!(c.common.bind_port, 0);
    assert_eq!(c.common.workers, 2);
    assert_eq!(c.common.auth_strategy, AuthStrategy::Keystone);
    assert!(!c.common.owner_is_tenant);
    assert_eq!(c.registry_host.as_deref(), Some("10.0.0.1"));
    assert_eq!(c.registry_port, 9999);
    assert_eq!(c.image_buffer_size, 4096);
    assert!(!c.filesystem_store_direct_io);
    assert_eq!(
        c.common.log_path(),
        Some(PathBuf::from("/var/log/glance/api.log"))
    );

    let e = err(ApiConfig::from_ini(&ini("[DEFAULT]\nworkers = 0\n")));
    assert_eq!(e, "glance-api.conf:2: workers: \"0\" must be at least 1");
    let e = err(ApiConfig::from_ini(&ini(
        "[DEFAULT]\nauth_strategy = ldap\n",
    )));
    assert_eq!(
        e,
        "glance-api.conf:2: auth_strategy: \"ldap\" is not one of: noauth, keystone"
    );
    let e = err(ApiConfig::from_ini(&ini(
        "[DEFAULT]\nimage_buffer_size = 100\n",
    )));
    assert_eq!(
        e,
        "glance-api.conf:2: image_buffer_size: \"100\" must be between 4096 and 16777216"
    );
    let e = err(ApiConfig::from_ini(&ini("[DEFAULT]\nbind_port = abc\n")));
    assert_eq!(
        e,
        "glance-api.conf:2: bind_port: \"abc\" is not a port number"
    );
}

#[test]
fn sql_connection_forms() {
    let db = |v: &str| {
        DatabaseOptions::from_ini(
            &ini(&format!("[DEFAULT]\nsql_connection = {v}\n")),
            DEFAULT_SQL_CONNECTION,
        )
    };
    let cwd = std::env::current_dir().unwrap();

    let abs = db("sqlite:////var/lib/glance/g.sqlite").unwrap();
    assert_eq!(abs.sqlite_path, Path::new("/var/lib/glance/g.sqlite"));
    assert_eq!(abs.sql_connection, "sqlite:////var/lib/glance/g.sqlite");

    let rel = db("sqlite:///glance.sqlite").unwrap();
    assert_eq!(rel.sqlite_path, cwd.join("glance.sqlite"));
    let rel = db("sqlite+pysqlite:///data/glance.sqlite").unwrap();
    assert_eq!(rel.sqlite_path, cwd.join("data/glance.sqlite"));

    assert_eq!(
        db("/srv/glance/registry.db").unwrap().sqlite_path,
        Path::new("/srv/glance/registry.db")
    );
    assert_eq!(db("reg.db").unwrap().sqlite_path, cwd.join("reg.db"));

    // Server databases parse; the password stays out of sql_connection and Debug.
    let pg = db("postgresql://glance:s3cret@db.example.com:5432/glance").unwrap();
    assert_eq!(pg.url.dialect(), crate::registry::sql::Dialect::Postgres);
    assert_eq!(pg.sqlite_path, PathBuf::new());
    assert_eq!(
        pg.sql_connection,
        "postgresql://glance:***@db.example.com:5432/glance"
    );
    assert!(!format!("{pg:?}").contains("s3cret"));
    let my = db("mysql+mysqldb://root:pw@localhost/glance?charset=utf8").unwrap();
    assert_eq!(my.url.dialect(), crate::registry::sql::Dialect::Mysql);
    assert_eq!(my.sqlite_path, PathBuf::new());
    assert_eq!(
        my.url.redacted(),
        "mysql://root:***@localhost/glance?charset=utf8"
    );
    let e = err(db("mysql+foo://root:pw@localhost/glance"));
    assert_eq!(
        e,
        "glance-api.conf:2: sql_connection: \"mysql+foo://root:***@localhost/glance\" uses the \
         driver 'foo' for mysql, which is not supported (supported: mysql://, mysql+mysqldb://, \
         mysql+pymysql://)"
    );
    let e = err(db("oracle://scott:tiger@h/orcl"));
    assert!(e.contains("'oracle', which is not supported"), "{e}");
    assert!(!e.contains("tiger"), "{e}");
    let e = err(db("postgresql://glance:s3cret@h/glance?application_name=x"));
    assert!(e.contains("'application_name'"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
    let e = err(db("sqlite://"));
    assert!(e.contains("sqlite:////absolute/path"), "{e}");
    let e = err(db("sqlite:///:memory:"));
    assert!(e.contains("in-memory"), "{e}");
    let e = err(db("sqlite:///x.db?timeout=3"));
    assert!(e.contains("query parameters"), "{e}");

    assert_eq!(redact_url("mysql://u@h/db"), "mysql://u:***@h/db");
    assert_eq!(redact_url("mysql://h/db"), "mysql://h/db");
    assert_eq!(redact_url("a:b@c"), "a:b@c");
}

#[test]
fn pool_and_connect_options() {
    let db = |text: &str| DatabaseOptions::from_ini(&ini(text), DEFAULT_SQL_CONNECTION);
    let o = db("[DEFAULT]\n\
                sql_connection = mysql://u:pw@h/g\n\
                sql_max_pool_size = 4\n\
                sql_max_overflow = 0\n\
                sql_pool_timeout = 7\n\
                sql_connect_timeout = 2\n\
                sql_idle_timeout = 60\n\
                sql_timeout = 8\n\
                sql_statement_timeout = 9\n")
    .unwrap();
    let p = o.pool_options();
    assert_eq!((p.max_size, p.max_overflow), (4, 0));
    assert_eq!(p.checkout_timeout, Duration::from_secs(7));
    assert_eq!(p.idle_timeout, Duration::from_secs(60));
    let c = o.connect_options();
    assert_eq!(c.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.statement_timeout, Duration::from_secs(9));

    // Diablo's sql_timeout is the old name of sql_idle_timeout (the new name wins).
    let o = db("[DEFAULT]\nsql_timeout = 120\n").unwrap();
    assert_eq!(o.pool_options().idle_timeout, Duration::from_secs(120));
    assert_eq!(
        o.connect_options().statement_timeout,
        Duration::from_secs(30)
    );

    // The URL's connect_timeout wins over sql_connect_timeout.
    let o = db("[DEFAULT]\nsql_connection = postgresql://h/g?connect_timeout=11\n").unwrap();
    assert_eq!(o.connect_options().connect_timeout, Duration::from_secs(11));

    let e = err(db("[DEFAULT]\nsql_max_pool_size = 0\n"));
    assert!(
        e.contains("sql_max_pool_size: \"0\" must be between 1 and"),
        "{e}"
    );
    let e = err(db("[DEFAULT]\nsql_connect_timeout = 0\n"));
    assert!(e.contains("sql_connect_timeout"), "{e}");
    let e = err(db("[DEFAULT]\nsql_pool_timeout = soon\n"));
    assert!(e.contains("whole number of seconds"), "{e}");

    // None of them warns as unknown, in any program's file.
    for key in [
        "sql_max_pool_size",
        "sql_max_overflow",
        "sql_pool_timeout",
        "sql_connect_timeout",
    ] {
        assert!(known::is_known(key), "{key}");
    }
}

#[test]
fn unknown_options_are_warnings() {
    // swift_store_key is glance-api's: known, so not reported by the registry.
    let c = RegistryConfig::from_ini(&ini("[DEFAULT]\n\
         verbose = True\n\
         swift_store_kye = secret\n\
         swift_store_key = secret\n\
         context_class = glance.registry.context.RequestContext\n\
         [pipeline:glance-registry]\n\
         pipeline = context registryapp\n\
         [app:registryapp]\n\
         paste.app_factory = glance.common.wsgi:app_factory\n\
         [filter:context]\n\
         context_class = glance.registry.context.RequestContext\n"))
    .unwrap();
    assert!(c.common.verbose);
    assert_eq!(
        c.warnings,
        [
            "unknown option 'swift_store_kye' in glance-api.conf:3, ignored",
            "unknown option 'context_class' in glance-api.conf:5, ignored",
        ]
    );
}

#[test]
fn syslog_and_log_config_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let logging = write(dir.path(), "logging.conf", "[loggers]\n");
    let c = RegistryConfig::from_ini(&ini(&format!(
        "[DEFAULT]\nuse_syslog = True\nlog_config = {}\n",
        logging.display()
    )))
    .unwrap();
    assert!(c.common.use_syslog);
    assert_eq!(c.common.log_config.as_deref(), Some(logging.as_path()));
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].starts_with("use_syslog is not supported yet; logging to stderr"));
    assert!(c.warnings[1].contains("not supported"));

    let e = err(RegistryConfig::from_ini(&ini(
        "[DEFAULT]\nlog_config = /nonexistent/logging.conf\n",
    )));
    assert_eq!(
        e,
        "glance-api.conf:2: log_config: \"/nonexistent/logging.conf\" does not name an existing file"
    );
}

#[test]
fn cli_parsing() {
    let c = cli(&[
        "-v",
        "--debug",
        "--config-file",
        "/x.conf",
        "--log-file",
        "a.log",
        "--log-dir=/var/log",
        "--log-date-format",
        "%H:%M",
        "--log-config",
        "l.conf",
        "--use-syslog",
        "extra",
    ]);
    assert!(c.verbose && c.debug && c.use_syslog && !c.help && !c.version);
    assert_eq!(c.config_file.as_deref(), Some("/x.conf"));
    assert_eq!(c.log_file.as_deref(), Some("a.log"));
    assert_eq!(c.log_dir.as_deref(), Some("/var/log"));
    assert_eq!(c.log_date_format.as_deref(), Some("%H:%M"));
    assert_eq!(c.log_config.as_deref(), Some("l.conf"));
    assert_eq!(c.args, ["extra"]);
    assert!(cli(&["-h"]).help);
    assert!(cli(&["--version"]).version);
    assert!(cli(&["-v", "-v"]).verbose);
    let e = err(CliArgs::parse(&["--bogus".to_string()]));
    assert!(e.contains("bogus"), "{e}");
    let u = CliArgs::usage("glance-api");
    assert!(u.starts_with("Usage: glance-api [options] [CONFIG_FILE]"));
    assert!(u.contains("--config-file PATH"));
}

#[test]
fn cli_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "reg.conf",
        "[DEFAULT]\n\
         verbose = False\n\
         debug = False\n\
         log_file = /var/log/glance/registry.log\n\
         log_date_format = %Y\n\
         sql_connection = sqlite:////a.db\n",
    );
    let nowhere: Vec<PathBuf> = Vec::new();

    // Positional config path.
    let (i, w) = open(REGISTRY_APP, &cli(&[conf.to_str().unwrap()]), &nowhere).unwrap();
    assert!(w.is_empty());
    let c = RegistryConfig::from_ini(&i).unwrap();
    assert_eq!(c.common.config_path, conf);
    assert!(!c.common.verbose);
    assert_eq!(
        c.common.log_file,
        Some(PathBuf::from("/var/log/glance/registry.log"))
    );

    // Flags win over the file.
    let mut args = cli(&[
        "--config-file",
        conf.to_str().unwrap(),
        "-v",
        "-d",
        "--log-file",
        "other.log",
        "--log-dir",
        "/tmp/logs",
        "--log-date-format",
        "%H:%M:%S",
    ]);
    args.set("sql_connection", "sqlite:////b.db", "--sql-connection");
    let (i, w) = open(REGISTRY_APP, &args, &nowhere).unwrap();
    assert!(w.is_empty());
    let c = RegistryConfig::from_ini(&i).unwrap();
    assert!(c.common.verbose && c.common.debug);
    assert_eq!(
        c.common.log_path(),
        Some(PathBuf::from("/tmp/logs/other.log"))
    );
    assert_eq!(c.common.log_date_format, "%H:%M:%S");
    assert_eq!(c.db.sqlite_path, Path::new("/b.db"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // A bad override names the flag.
    let mut args = cli(&["--config-file", conf.to_str().unwrap()]);
    args.set("sql_connection", "mysql://u:pw@h/g?x=1", "--sql-connection");
    let (i, _) = open(REGISTRY_APP, &args, &nowhere).unwrap();
    let e = err(RegistryConfig::from_ini(&i));
    assert_eq!(
        e,
        "command line (--sql-connection): sql_connection: \"mysql://u:***@h/g?x=1\" has the \
         query parameter 'x', which is not supported for MySQL (supported: charset, \
         connect_timeout, unix_socket, use_unicode)"
    );

    // A positional argument that is not a file, with the file found on the search path.
    let search = vec![conf.clone()];
    let (_, w) = open(REGISTRY_APP, &cli(&["nonsense"]), &search).unwrap();
    assert_eq!(
        w,
        [format!(
            "argument 'nonsense' is not a file; using configuration file {}",
            conf.display()
        )]
    );
}

#[test]
fn rabbit_options() {
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\n\
         notifier_strategy = rabbit\n\
         rabbit_host = mq.example.com\n\
         rabbit_port = 5671\n\
         rabbit_use_ssl = True\n\
         rabbit_userid = glance\n\
         rabbit_password = s3cret-pw\n\
         rabbit_virtual_host = /openstack\n\
         rabbit_notification_topic = notifications\n"))
    .unwrap();
    assert_eq!(c.notifier_strategy, NotifierStrategy::Rabbit);
    let r = &c.rabbit;
    assert_eq!(
        (r.host.as_str(), r.port, r.use_ssl),
        ("mq.example.com", 5671, true)
    );
    assert_eq!(
        (r.userid.as_str(), r.password.as_str()),
        ("glance", "s3cret-pw")
    );
    assert_eq!(r.virtual_host, "/openstack");
    assert_eq!(r.notification_topic, "notifications");
    // A config dump never shows the password.
    let dump = format!("{c:?}");
    assert!(!dump.contains("s3cret-pw"), "{dump}");
    assert!(dump.contains("mq.example.com"), "{dump}");

    let e = err(ApiConfig::from_ini(&ini(
        "[DEFAULT]\nrabbit_port = 99999\n",
    )));
    assert_eq!(
        e,
        "glance-api.conf:2: rabbit_port: \"99999\" is not a port number"
    );
    let e = err(ApiConfig::from_ini(&ini(
        "[DEFAULT]\nrabbit_use_ssl = maybe\n",
    )));
    assert!(
        e.starts_with("glance-api.conf:2: rabbit_use_ssl: \"maybe\""),
        "{e}"
    );
    let long = "t".repeat(250);
    let e = err(ApiConfig::from_ini(&ini(&format!(
        "[DEFAULT]\nrabbit_notification_topic = {long}\n"
    ))));
    assert!(e.ends_with("is longer than 249 bytes"), "{e}");
}

/// Every sample in etc/ loads without warnings, and lists every option its program reads
/// (as `key = value` or `# key = value`, in the section the code reads it from: [DEFAULT] or
/// [keystone_authtoken]), so code and samples cannot drift.
#[test]
fn samples_match_the_code() {
    type Loader = fn(&Ini) -> Result<()>;
    let samples: [(&str, Loader); 3] = [
        ("glance-api.conf", |i| {
            ApiConfig::from_ini(i).map(|c| assert!(c.warnings.is_empty(), "{:?}", c.warnings))
        }),
        ("glance-registry.conf", |i| {
            RegistryConfig::from_ini(i).map(|c| assert!(c.warnings.is_empty(), "{:?}", c.warnings))
        }),
        ("glance-scrubber.conf", |i| {
            ScrubberConfig::from_ini(i).map(|c| assert!(c.warnings.is_empty(), "{:?}", c.warnings))
        }),
    ];
    for (name, load) in samples {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc").join(name);
        let ini = Ini::load(&path).unwrap_or_else(|e| panic!("{e}"));
        load(&ini).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = fs::read_to_string(&path).unwrap();
        let mut section = String::from("DEFAULT");
        let mut listed: Vec<(String, String)> = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix('[') {
                section = rest.trim_end().trim_end_matches(']').to_string();
                continue;
            }
            let l = l.strip_prefix('#').unwrap_or(l).trim_start();
            let Some((key, _)) = l.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if !key.is_empty() && !key.contains(' ') {
                listed.push((section.clone(), key.to_string()));
            }
        }
        let requested = ini.requested();
        for (section, key) in &requested {
            assert!(
                section == "DEFAULT" || section == KEYSTONE_SECTION,
                "{name}: the code reads [{section}] {key}"
            );
            assert!(
                listed.contains(&(section.clone(), key.clone())),
                "{name} does not list option '{key}' in [{section}], which the code reads"
            );
        }
        for (section, key) in &listed {
            assert!(
                requested.contains(&(section.clone(), key.clone())),
                "{name} lists option '{key}' in [{section}], which the code does not read there"
            );
        }
    }
}

/// The sample config `name` from etc/, parsed.
fn sample(name: &str) -> Ini {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc").join(name);
    Ini::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Each program's loader, returning its warnings.
type WarningsOf = fn(&Ini) -> Result<Vec<String>>;
const LOADERS: [(&str, WarningsOf); 3] = [
    (API_APP, |i| ApiConfig::from_ini(i).map(|c| c.warnings)),
    (REGISTRY_APP, |i| {
        RegistryConfig::from_ini(i).map(|c| c.warnings)
    }),
    (SCRUBBER_APP, |i| {
        ScrubberConfig::from_ini(i).map(|c| c.warnings)
    }),
];
const SAMPLES: [&str; 3] = [
    "glance-api.conf",
    "glance-registry.conf",
    "glance-scrubber.conf",
];

/// KNOWN_OPTIONS is sorted and is exactly what the three programs read, whichever sample
/// they load.
#[test]
fn known_options_are_what_the_programs_read() {
    let mut sorted = known::KNOWN_OPTIONS.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted,
        known::KNOWN_OPTIONS,
        "KNOWN_OPTIONS: keep it sorted, once each"
    );
    let mut read = std::collections::BTreeSet::new();
    for name in SAMPLES {
        for (program, load) in LOADERS {
            let ini = sample(name);
            load(&ini).unwrap_or_else(|e| panic!("{program} on {name}: {e}"));
            read.extend(ini.requested().into_iter().map(|(_, key)| key));
        }
    }
    for key in &read {
        assert!(known::is_known(key), "add '{key}' to KNOWN_OPTIONS");
    }
    for key in known::KNOWN_OPTIONS {
        assert!(
            read.contains(*key),
            "no program reads '{key}': drop it from KNOWN_OPTIONS"
        );
    }
}

/// Any program may load any program's sample (glance-manage reads glance-api.conf in the
/// embedded-registry layout) without a warning; a name no program knows is still reported,
/// once.
#[test]
fn another_programs_options_are_not_unknown() {
    for name in SAMPLES {
        for (program, load) in LOADERS {
            let warnings = load(&sample(name)).unwrap_or_else(|e| panic!("{e}"));
            assert!(warnings.is_empty(), "{program} on {name}: {warnings:?}");
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc").join(name);
            let text = fs::read_to_string(&path).unwrap_or_default();
            let typo = text.replacen("[DEFAULT]\n", "[DEFAULT]\nfilesystem_store_datdir = x\n", 1);
            let warnings = load(&ini(&typo)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                warnings,
                ["unknown option 'filesystem_store_datdir' in glance-api.conf:10, ignored"],
                "{program} on {name}"
            );
        }
    }
}

#[test]
fn keystone_options() {
    // Defaults (noauth does not need the section).
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    assert!(!c.common.allow_anonymous_access);
    let k = &c.common.keystone;
    assert_eq!(k.auth_url, None);
    assert_eq!(k.auth_type, "password");
    assert_eq!(k.user_domain_name, "Default");
    assert_eq!(k.project_domain_name, "Default");
    assert_eq!(k.token_cache_time, Duration::from_secs(300));
    assert_eq!(k.http_connect_timeout, Duration::from_secs(3));
    assert_eq!(k.http_request_timeout, Duration::from_secs(10));

    let full = "[DEFAULT]\nauth_strategy = keystone\nallow_anonymous_access = True\n\
                [keystone_authtoken]\nauth_url = http://127.0.0.1:5000/v3/\n\
                username = glance\npassword = s3cret\nproject_name = service\n\
                user_domain_name = users\nproject_domain_name = projects\n\
                token_cache_time = 60\nmemcached_servers = 127.0.0.1:11211\n";
    let c = RegistryConfig::from_ini(&ini(full)).unwrap();
    assert_eq!(c.common.auth_strategy, AuthStrategy::Keystone);
    assert!(c.common.allow_anonymous_access);
    let k = &c.common.keystone;
    assert_eq!(k.auth_url.as_deref(), Some("http://127.0.0.1:5000/v3"));
    assert_eq!(k.challenge_uri(), "http://127.0.0.1:5000/v3");
    assert_eq!(k.username.as_deref(), Some("glance"));
    assert_eq!(k.password.as_ref().map(Secret::expose), Some("s3cret"));
    assert_eq!(
        (k.user_domain_name.as_str(), k.project_domain_name.as_str()),
        ("users", "projects")
    );
    assert_eq!(k.token_cache_time, Duration::from_secs(60));
    // The password never shows in Debug output.
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cret") && dbg.contains("***"), "{dbg}");
    // Unknown options of the section are reported under keystone.
    assert_eq!(
        c.warnings,
        ["unknown option 'memcached_servers' in [keystone_authtoken] glance-api.conf:12, ignored"]
    );
    // www_authenticate_uri (or the old auth_uri) names the challenge URI.
    let c = ApiConfig::from_ini(&ini(&format!("{full}auth_uri = http://public:5000\n"))).unwrap();
    assert_eq!(c.common.keystone.challenge_uri(), "http://public:5000");
    let c = ApiConfig::from_ini(&ini(&format!(
        "{full}auth_uri = http://old:5000\nwww_authenticate_uri = http://new:5000\n"
    )))
    .unwrap();
    assert_eq!(c.common.keystone.challenge_uri(), "http://new:5000");
    // token_cache_time -1 or 0: no cache.
    for off in ["-1", "0"] {
        let c = ApiConfig::from_ini(&ini(&format!("{full}token_cache_time = {off}\n"))).unwrap();
        assert_eq!(c.common.keystone.token_cache_time, Duration::ZERO);
    }

    // Under keystone the credentials are required; noauth does not care.
    let e = err(ApiConfig::from_ini(&ini(
        "[DEFAULT]\nauth_strategy = keystone\n[keystone_authtoken]\nusername = glance\n",
    )));
    assert_eq!(
        e,
        "glance-api.conf: auth_strategy = keystone needs auth_url, password, project_name \
         in [keystone_authtoken]"
    );
    assert!(ApiConfig::from_ini(&ini("[keystone_authtoken]\nusername = glance\n")).is_ok());
    // Bad values name the line.
    for (line, want) in [
        (
            "auth_url = 127.0.0.1:5000",
            "is not an http:// or https:// URL",
        ),
        ("auth_url = http://a b", "must not contain spaces or quotes"),
        (
            "token_cache_time = soon",
            "is not a whole number of seconds",
        ),
        ("auth_type = v3token", "is not one of: password"),
        ("http_request_timeout = 0", "must be at least 1 second"),
    ] {
        let e = err(ApiConfig::from_ini(&ini(&format!(
            "[DEFAULT]\nauth_strategy = keystone\n[keystone_authtoken]\n{line}\n"
        ))));
        assert!(e.starts_with("glance-api.conf:4: "), "{e}");
        assert!(e.contains(want), "{e}");
    }
    assert!(
        err(ApiConfig::from_ini(&ini(
            "[DEFAULT]\nauth_strategy = ldap\n"
        )))
        .contains("ldap")
    );
}

#[test]
fn object_store_options() {
    // Defaults (Glance's), sizes in bytes.
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    assert_eq!(c.swift, SwiftOptions::default());
    assert_eq!(c.swift.container, "glance");
    assert_eq!(c.swift.large_object_size, 5120 * MB);
    assert_eq!(c.swift.large_object_chunk_size, 200 * MB);
    assert_eq!(c.s3, S3Options::default());
    assert_eq!(c.s3.large_object_chunk_size, 10 * MB);

    let text = "[DEFAULT]\n\
         swift_store_auth_address = http://127.0.0.1:8080/auth/v1.0\n\
         swift_store_user = test:tester\n\
         swift_store_key = TOPSECRET-swift\n\
         swift_store_container = images\n\
         swift_store_create_container_on_put = True\n\
         swift_store_large_object_size = 5\n\
         swift_store_large_object_chunk_size = 1\n\
         swift_store_auth_version = 3\n\
         swift_store_endpoint_type = internalURL\n\
         swift_store_region = RegionTwo\n\
         s3_store_host = http://127.0.0.1:8080\n\
         s3_store_access_key = test:tester\n\
         s3_store_secret_key = TOPSECRET-s3\n\
         s3_store_bucket = glance\n\
         s3_store_create_bucket_on_put = true\n\
         s3_store_bucket_url_format = Path\n\
         s3_store_large_object_size = 8\n\
         s3_store_large_object_chunk_size = 5\n";
    let c = ApiConfig::from_ini(&ini(text)).unwrap();
    assert_eq!(
        c.swift.auth_address.as_deref(),
        Some("http://127.0.0.1:8080/auth/v1.0")
    );
    assert_eq!(c.swift.container, "images");
    assert!(c.swift.create_container_on_put);
    assert_eq!(c.swift.large_object_size, 5 * MB);
    assert_eq!(c.swift.large_object_chunk_size, MB);
    assert_eq!(c.swift.auth_version, SwiftAuthVersion::V3);
    assert_eq!(c.swift.region.as_deref(), Some("RegionTwo"));
    assert_eq!(c.s3.bucket_url_format, BucketUrlFormat::Path);
    assert!(c.s3.create_bucket_on_put);
    assert_eq!(c.s3.large_object_size, 8 * MB);
    assert_eq!(c.s3.large_object_chunk_size, 5 * MB);
    // Secrets never show in Debug output.
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("TOPSECRET"), "{dbg}");
    // The scrubber reads the same options.
    let s = ScrubberConfig::from_ini(&ini(text)).unwrap();
    assert_eq!(s.swift, c.swift);
    assert_eq!(s.s3, c.s3);

    for (line, want) in [
        (
            "swift_store_auth_version = 2",
            "swift_store_auth_version: \"2\" is not a supported",
        ),
        (
            "swift_store_endpoint_type = dmz",
            "swift_store_endpoint_type: \"dmz\" is not one of",
        ),
        (
            "swift_store_container = a/b",
            "swift_store_container: \"a/b\" must not contain",
        ),
        (
            "swift_store_large_object_chunk_size = 0",
            "must be between 1 and 5120",
        ),
        (
            "s3_store_large_object_chunk_size = 4",
            "must be between 5 and 5120",
        ),
        (
            "s3_store_bucket_url_format = dns",
            "is not one of: auto, path, virtual",
        ),
        (
            "swift_store_create_container_on_put = maybe",
            "is not a boolean",
        ),
    ] {
        let e = err(ApiConfig::from_ini(&ini(&format!("[DEFAULT]\n{line}\n"))));
        assert!(e.contains(want), "{line}: {e}");
    }
}

#[test]
fn quota_options() {
    let text = "[DEFAULT]\nimage_property_quota = 5\nimage_member_quota = 0\n";
    let c = ApiConfig::from_ini(&ini(text)).unwrap();
    assert_eq!((c.quotas.properties, c.quotas.members), (5, 0));
    let r = RegistryConfig::from_ini(&ini(text)).unwrap();
    assert_eq!((r.quotas.properties, r.quotas.members), (5, 0));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let e = err(RegistryConfig::from_ini(&ini(
        "[DEFAULT]\nimage_member_quota = -1\n",
    )));
    assert!(
        e.starts_with("glance-api.conf:2: image_member_quota: \"-1\""),
        "{e}"
    );
    let e = err(ApiConfig::from_ini(&ini(
        "[DEFAULT]\nimage_property_quota = many\n",
    )));
    assert!(e.contains("image_property_quota"), "{e}");
}

#[test]
fn connection_options() {
    // Defaults, the same for both servers (and the scrubber, which does not read them).
    let a = ApiConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    let r = RegistryConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    let s = ScrubberConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    for c in [&a.common, &r.common, &s.common] {
        assert_eq!(c.keepalive_timeout, Duration::from_secs(60));
        assert_eq!(c.client_header_timeout, Duration::from_secs(10));
        assert_eq!((c.client_body_min_rate, c.send_min_rate), (1024, 1024));
        assert_eq!(c.min_rate_window, Duration::from_secs(30));
        assert_eq!(
            (c.max_connections, c.max_connections_per_client),
            (10_000, 256)
        );
        assert_eq!(c.metadata_workers, 4, "a quarter of the 16 workers");
        assert!(c.sendfile);
        assert_eq!(c.send_buffer_size, 1_048_576);
    }

    // Values, read by both servers.
    let text = "[DEFAULT]\n\
         workers = 3\n\
         metadata_workers = 2\n\
         keepalive_timeout = 0\n\
         client_header_timeout = 86400\n\
         client_body_min_rate = 0\n\
         send_min_rate = 1073741824\n\
         min_rate_window = 1\n\
         max_connections = 1\n\
         max_connections_per_client = 1\n\
         sendfile = True\n\
         send_buffer_size = 4096\n";
    let a = ApiConfig::from_ini(&ini(text)).unwrap();
    let r = RegistryConfig::from_ini(&ini(text)).unwrap();
    for (c, warnings) in [(&a.common, &a.warnings), (&r.common, &r.warnings)] {
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((c.workers, c.metadata_workers), (3, 2));
        assert_eq!(c.keepalive_timeout, Duration::ZERO);
        assert_eq!(c.client_header_timeout, Duration::from_secs(86_400));
        assert_eq!((c.client_body_min_rate, c.send_min_rate), (0, 1 << 30));
        assert_eq!(c.min_rate_window, Duration::from_secs(1));
        assert_eq!((c.max_connections, c.max_connections_per_client), (1, 1));
        assert!(c.sendfile);
        assert_eq!(c.send_buffer_size, 4096);
    }

    // The default reserve follows workers: a quarter, at least 1, none with one worker.
    let reserve = |workers: usize| {
        let text = format!("[DEFAULT]\nworkers = {workers}\n");
        RegistryConfig::from_ini(&ini(&text))
            .unwrap()
            .common
            .metadata_workers
    };
    assert_eq!(
        [1, 2, 3, 4, 7, 8, 16, 100].map(reserve),
        [0, 1, 1, 1, 1, 2, 4, 25]
    );
    assert_eq!(default_metadata_workers(0), 0);
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\nworkers = 1\nmetadata_workers = 0\n")).unwrap();
    assert_eq!(c.common.metadata_workers, 0);
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\nworkers = 8\nmetadata_workers = 0\n")).unwrap();
    assert_eq!(c.common.metadata_workers, 0, "0 = no reserve");

    // Bad values name the option, for both servers.
    for (text, message) in [
        (
            "keepalive_timeout = -1",
            "keepalive_timeout: \"-1\" is not a whole number of seconds",
        ),
        (
            "keepalive_timeout = 86401",
            "keepalive_timeout: \"86401\" must be between 0 and 86400",
        ),
        (
            "client_header_timeout = 0",
            "client_header_timeout: \"0\" must be between 1 and 86400",
        ),
        (
            "client_header_timeout = 1.5",
            "client_header_timeout: \"1.5\" is not a whole number of seconds",
        ),
        (
            "client_body_min_rate = fast",
            "client_body_min_rate: \"fast\" is not a non-negative whole number",
        ),
        (
            "send_min_rate = 1073741825",
            "send_min_rate: \"1073741825\" must be between 0 and 1073741824",
        ),
        (
            "min_rate_window = 0",
            "min_rate_window: \"0\" must be between 1 and 86400",
        ),
        (
            "max_connections = 0",
            "max_connections: \"0\" must be at least 1",
        ),
        (
            "max_connections_per_client = 0",
            "max_connections_per_client: \"0\" must be at least 1",
        ),
        (
            "metadata_workers = -1",
            "metadata_workers: \"-1\" is not a non-negative whole number",
        ),
        (
            "metadata_workers = 16",
            "metadata_workers: \"16\" must be less than workers (16): at least one worker \
             must be free to move image data",
        ),
        (
            "sendfile = maybe",
            "sendfile: \"maybe\" is not a boolean (use True or False)",
        ),
        (
            "send_buffer_size = 4095",
            "send_buffer_size: \"4095\" must be between 4096 and 67108864",
        ),
        (
            "send_buffer_size = 67108865",
            "send_buffer_size: \"67108865\" must be between 4096 and 67108864",
        ),
    ] {
        let text = format!("[DEFAULT]\n{text}\n");
        let expected = format!("glance-api.conf:2: {message}");
        assert_eq!(err(ApiConfig::from_ini(&ini(&text))), expected);
        assert_eq!(err(RegistryConfig::from_ini(&ini(&text))), expected);
    }
    // The reserve is checked against the workers configured, wherever they are set.
    let e = err(RegistryConfig::from_ini(&ini(
        "[DEFAULT]\nmetadata_workers = 1\nworkers = 1\n",
    )));
    assert!(
        e.starts_with("glance-api.conf:2: metadata_workers: \"1\" must be less than workers (1)"),
        "{e}"
    );
}

#[test]
fn registry_bind_host_can_be_set() {
    let r = RegistryConfig::from_ini(&ini("[DEFAULT]\nbind_host = 10.0.0.5\n")).unwrap();
    assert_eq!(r.common.bind_host, "10.0.0.5");
}

#[test]
fn public_endpoint_is_validated() {
    let load = |v: &str| {
        ApiConfig::from_ini(&ini(&format!("[DEFAULT]\npublic_endpoint = {v}\n")))
            .map(|c| c.public_endpoint.unwrap_or_default())
    };
    for (given, kept) in [
        (
            "https://images.example.com:9292",
            "https://images.example.com:9292",
        ),
        (
            "https://images.example.com:9292/",
            "https://images.example.com:9292",
        ),
        ("http://10.0.0.1", "http://10.0.0.1"),
        (
            "HTTPS://Images.example.com/image/",
            "HTTPS://Images.example.com/image",
        ),
        ("http://[fd00::1]:9292", "http://[fd00::1]:9292"),
        ("http://[fd00::1]", "http://[fd00::1]"),
    ] {
        assert_eq!(load(given).ok().as_deref(), Some(kept), "{given}");
    }
    for (bad, problem) in [
        (
            "images.example.com:9292",
            "is not an http:// or https:// URL",
        ),
        (
            "ftp://images.example.com",
            "is not an http:// or https:// URL",
        ),
        (
            "https://user:pw@images.example.com",
            "must not contain user-info",
        ),
        (
            "https://images.example.com/?a=b",
            "must not have a query or fragment",
        ),
        (
            "https://images.example.com/#top",
            "must not have a query or fragment",
        ),
        ("https://", "has no host"),
        ("https://:9292", "has no host"),
        ("https://images.example.com:99999", "has an invalid port"),
        ("https://images.example.com:", "has an invalid port"),
        ("https://images.example.com/a\"b", "must not contain spaces"),
    ] {
        let e = err(load(bad));
        assert!(
            e.starts_with("glance-api.conf:2: public_endpoint:") && e.contains(problem),
            "{bad}: {e}"
        );
    }
    // The password of a rejected user-info never shows in the message.
    let e = err(load("https://user:s3cret@images.example.com"));
    assert!(e.contains("user-info") && !e.contains("s3cret"), "{e}");
}

#[test]
fn sqlite_synchronous_option() {
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\nsqlite_synchronous = normal\n")).unwrap();
    assert!(!c.db.sqlite_synchronous_full);
    let e = err(ApiConfig::from_ini(&ini(
        "[DEFAULT]\nsqlite_synchronous = OFF\n",
    )));
    assert!(e.contains("sqlite_synchronous"), "{e}");
}

#[test]
fn strategies_and_default_store_are_parsed_at_load() {
    for (text, needle) in [
        ("notifier_strategy = carrier-pigeon", "notifier_strategy"),
        ("default_store = tape", "default_store"),
        ("auth_strategy = ldap", "auth_strategy"),
    ] {
        let e = err(ApiConfig::from_ini(&ini(&format!("[DEFAULT]\n{text}\n"))));
        assert!(
            e.contains(needle) && e.contains(text.split(" = ").nth(1).unwrap_or("")),
            "{e}"
        );
    }
    let c = ApiConfig::from_ini(&ini(
        "[DEFAULT]\nnotifier_strategy = Logging\ndefault_store = swift+https\n",
    ))
    .unwrap();
    assert_eq!(c.notifier_strategy, NotifierStrategy::Logging);
    assert_eq!(c.default_store, Backend::Swift);
}

#[test]
fn location_policy_options() {
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    assert_eq!(c.known_stores, None);
    assert!(c.location_allowed_hosts.is_empty());
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\nknown_stores = file, S3 ,swift\n\
         location_allowed_hosts = 127.0.0.1, localhost, 10.0.0.0/8, [::1], fd00::/8\n"))
    .unwrap();
    assert_eq!(
        c.known_stores.as_deref(),
        Some(&["file".to_string(), "s3".into(), "swift".into()][..])
    );
    assert!(!c.location_allowed_hosts.is_empty());
    let s = ScrubberConfig::from_ini(&ini(
        "[DEFAULT]\nknown_stores = file\nlocation_allowed_hosts = 127.0.0.1\n",
    ))
    .unwrap();
    assert_eq!(s.known_stores.as_deref(), Some(&["file".to_string()][..]));
    assert!(!s.location_allowed_hosts.is_empty());
    for (text, needle) in [
        ("known_stores = file, tape", "unknown store 'tape'"),
        ("location_allowed_hosts = 10.0.0.0/33", "prefix length"),
        ("location_allowed_hosts = http://x", "is invalid"),
        ("location_allowed_hosts = 127.0.0.1, host:80", "'host:80'"),
    ] {
        let e = err(ApiConfig::from_ini(&ini(&format!("[DEFAULT]\n{text}\n"))));
        assert!(e.contains(needle), "{text}: {e}");
        assert!(e.contains(text.split_once(" = ").unwrap().0), "{e}");
    }
}

#[test]
fn disk_formats_option() {
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    assert_eq!(
        c.disk_formats.join(","),
        "ami,ari,aki,vhd,vhdx,vmdk,raw,qcow2,vdi,iso,ploop"
    );
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\ndisk_formats = raw, QCOW2,,raw ,vhdx\n")).unwrap();
    assert_eq!(c.disk_formats, ["raw", "qcow2", "vhdx"]);
    let e = err(ApiConfig::from_ini(&ini(
        "[DEFAULT]\ndisk_formats = raw,floppy\n",
    )));
    assert!(
        e.contains("glance-api.conf:2: disk_formats: \"raw,floppy\"")
            && e.contains("unknown disk format 'floppy'")
            && e.contains("known: ami, ari, aki, vhd, vhdx, vmdk, raw, qcow2, vdi, iso, ploop"),
        "{e}"
    );
    for empty in ["disk_formats =", "disk_formats = , ,"] {
        let e = err(ApiConfig::from_ini(&ini(&format!("[DEFAULT]\n{empty}\n"))));
        assert!(
            e.contains("disk_formats") && e.contains("lists no disk format"),
            "{empty}: {e}"
        );
    }
}

#[test]
fn image_format_mismatch_option() {
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    assert_eq!(c.image_format_mismatch, OnMismatch::Reject);
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\nimage_format_mismatch = Warn\n")).unwrap();
    assert_eq!(c.image_format_mismatch, OnMismatch::Warn);
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\nimage_format_mismatch = reject\n")).unwrap();
    assert_eq!(c.image_format_mismatch, OnMismatch::Reject);
    let e = err(ApiConfig::from_ini(&ini(
        "[DEFAULT]\nimage_format_mismatch = ignore\n",
    )));
    assert!(
        e.contains("image_format_mismatch: \"ignore\" is not one of: reject, warn"),
        "{e}"
    );
}

#[test]
fn hashing_algorithm_option() {
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\n")).unwrap();
    assert_eq!(c.hashing_algorithm, HashAlgorithm::Sha512);
    assert_eq!(c.store_options().hashing_algorithm, HashAlgorithm::Sha512);
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\nhashing_algorithm = SHA256\n")).unwrap();
    assert_eq!(c.hashing_algorithm, HashAlgorithm::Sha256);
    assert_eq!(c.store_options().hashing_algorithm, HashAlgorithm::Sha256);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\nhashing_algorithm = sha384\n")).unwrap();
    assert_eq!(c.hashing_algorithm, HashAlgorithm::Sha384);
    for bad in ["md5", "sha3_512", "sha-512"] {
        let text = format!("[DEFAULT]\nhashing_algorithm = {bad}\n");
        let e = err(ApiConfig::from_ini(&ini(&text)));
        assert!(
            e.contains(&format!(
                "hashing_algorithm: \"{bad}\" is not one of: sha256, sha384, sha512"
            )),
            "{e}"
        );
    }
}

/// The image cache options: Diablo's names and defaults; the extra fraction from 0 to 1.
#[test]
fn image_cache_options() {
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\n"))
        .map(|c| c.cache)
        .ok();
    assert_eq!(c, Some(crate::cache::CacheOptions::default()));
    let c = ApiConfig::from_ini(&ini("[DEFAULT]\nimage_cache_enabled = True\n\
         image_cache_datadir = /srv/cache\nimage_cache_max_size_bytes = 2048\n\
         image_cache_percent_extra_to_free = 0.20\nimage_cache_stall_timeout = 60\n\
         image_cache_invalid_entry_grace_period = 5\n"))
    .map(|c| c.cache)
    .ok();
    let c = c.unwrap_or_default();
    assert!(c.enabled);
    assert_eq!(c.datadir, Path::new("/srv/cache"));
    assert_eq!((c.max_size, c.extra_to_free), (2048, 0.20));
    assert_eq!(c.stall_timeout, Duration::from_secs(60));
    assert_eq!(c.invalid_grace_period, Duration::from_secs(5));
    for bad in ["1.5", "-0.1", "20%", "x"] {
        let e = err(ApiConfig::from_ini(&ini(&format!(
            "[DEFAULT]\nimage_cache_percent_extra_to_free = {bad}\n"
        ))));
        assert!(e.contains("image_cache_percent_extra_to_free"), "{e}");
        assert!(
            e.ends_with("is not a fraction from 0 to 1 (0.05 = 5%)"),
            "{e}"
        );
    }
    let e = err(ApiConfig::from_ini(&ini(
        "[DEFAULT]\nimage_cache_max_size_bytes = lots\n",
    )));
    assert!(e.contains("image_cache_max_size_bytes"), "{e}");
}
