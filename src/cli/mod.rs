//! The `glance` command-line tool: Glance Diablo's `bin/glance` (spec §12.1) on the
//! client library ([`crate::client`]).
//!
//! [`main`] is all `src/bin/glance.rs` calls. It parses the command line with getopts
//! (options may appear anywhere), runs one command, and prints an error once, as
//! `glance: <message>` on stderr, with an exit status that tells usage errors (2) from
//! failures (1) and missing images (3). Results go to stdout; prompts, warnings and progress
//! bars to stderr. A closed stdout (`glance index | head`) ends the program quietly.
//!
//! The option and command tables ([`OPTIONS`], [`COMMANDS`]) are the single source of the
//! getopts definition and the help texts; a test checks that the man page covers them.

mod cache;
mod commands;
mod fields;
mod help;
mod login;
mod output;
mod progress;
mod term;

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use crate::client::{self, Client, Identity, SortDir};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: the server refused or failed, the connection failed, a local file could not
/// be read or written, or a confirmation was declined.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: the command line is wrong (unknown command or option, bad `field=value`,
/// missing argument), or a confirmation is needed but standard input is not a terminal.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the image does not exist (or is not visible to the caller).
pub const EXIT_NOT_FOUND: u8 = 3;

/// Default `--host` (as Diablo's `bin/glance`).
pub const DEFAULT_HOST: &str = "0.0.0.0";
/// Default page size of `index` and `details`.
pub const DEFAULT_LIMIT: u64 = 10;

/// One command-line option.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// Short name (one letter), or empty.
    pub short: &'static str,
    /// Long name (`--long`).
    pub long: &'static str,
    /// Value placeholder; empty for a flag.
    pub hint: &'static str,
    /// One-line description, with the default.
    pub desc: &'static str,
}

/// Every option `glance` accepts (the getopts definition is built from this table).
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        short: "H",
        long: "host",
        hint: "ADDRESS",
        desc: "address of the Glance API server (default: $GLANCE_HOST, else the catalog's, else 0.0.0.0)",
    },
    OptionSpec {
        short: "p",
        long: "port",
        hint: "PORT",
        desc: "port of the Glance API server (default: $GLANCE_PORT, else 9292)",
    },
    OptionSpec {
        short: "A",
        long: "auth_token",
        hint: "TOKEN",
        desc: "token sent as X-Auth-Token (default: $OS_AUTH_TOKEN, else a Keystone login)",
    },
    OptionSpec {
        short: "",
        long: "os-cloud",
        hint: "NAME",
        desc: "log in to Keystone as cloud NAME of clouds.yaml (default: $OS_CLOUD)",
    },
    OptionSpec {
        short: "",
        long: "os-image-url",
        hint: "URL",
        desc: "image API URL instead of the catalog's (default: $OS_IMAGE_URL)",
    },
    OptionSpec {
        short: "",
        long: "tenant",
        hint: "TENANT",
        desc: "noauth servers only: act as this tenant (sends identity headers)",
    },
    OptionSpec {
        short: "",
        long: "roles",
        hint: "ROLES",
        desc: "noauth servers only: comma-separated roles sent with --tenant",
    },
    OptionSpec {
        short: "v",
        long: "verbose",
        hint: "",
        desc: "print more (full metadata, each deletion, the time taken)",
    },
    OptionSpec {
        short: "d",
        long: "debug",
        hint: "",
        desc: "print the details of an error as well",
    },
    OptionSpec {
        short: "",
        long: "limit",
        hint: "N",
        desc: "page size of index and details (default: 10)",
    },
    OptionSpec {
        short: "",
        long: "marker",
        hint: "ID",
        desc: "index and details start after the image ID",
    },
    OptionSpec {
        short: "",
        long: "sort_key",
        hint: "KEY",
        desc: "sort index and details by KEY (default: created_at)",
    },
    OptionSpec {
        short: "",
        long: "sort_dir",
        hint: "DIR",
        desc: "sort direction: asc or desc (default: desc)",
    },
    OptionSpec {
        short: "f",
        long: "force",
        hint: "",
        desc: "do not ask for confirmation; fetch every page without asking",
    },
    OptionSpec {
        short: "",
        long: "dry-run",
        hint: "",
        desc: "print what would be done, change nothing",
    },
    OptionSpec {
        short: "",
        long: "can-share",
        hint: "",
        desc: "member-add, members-replace: the member may share the image further",
    },
    OptionSpec {
        short: "",
        long: "file",
        hint: "PATH",
        desc: "add, update: read image data from PATH; download: write it to PATH",
    },
    OptionSpec {
        short: "",
        long: "progress",
        hint: "",
        desc: "add, update, download: show progress on stderr (a terminal only)",
    },
    OptionSpec {
        short: "h",
        long: "help",
        hint: "",
        desc: "print help and exit",
    },
    OptionSpec {
        short: "",
        long: "version",
        hint: "",
        desc: "print the version and exit",
    },
];

/// One command.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Its name.
    pub name: &'static str,
    /// Its arguments, for the usage line.
    pub args: &'static str,
    /// One-line summary.
    pub summary: &'static str,
}

/// Every command (`image-download` is an alias of `download`).
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "help",
        args: "[COMMAND]",
        summary: "print help, or the help of COMMAND",
    },
    CommandSpec {
        name: "add",
        args: "FIELD=VALUE... [--file PATH | < FILE]",
        summary: "add a new image (data from --file, stdin, or a location=)",
    },
    CommandSpec {
        name: "update",
        args: "ID [FIELD=VALUE...] [--file PATH]",
        summary: "change an image's metadata; upload data into a queued image",
    },
    CommandSpec {
        name: "delete",
        args: "ID",
        summary: "delete an image and its data",
    },
    CommandSpec {
        name: "index",
        args: "[FILTER=VALUE...]",
        summary: "list images, one per line",
    },
    CommandSpec {
        name: "details",
        args: "[FILTER=VALUE...]",
        summary: "list images with all their metadata",
    },
    CommandSpec {
        name: "show",
        args: "ID",
        summary: "show one image's metadata",
    },
    CommandSpec {
        name: "download",
        args: "ID [--file PATH]",
        summary: "download an image's data (alias: image-download)",
    },
    CommandSpec {
        name: "clear",
        args: "",
        summary: "delete every image you can list",
    },
    CommandSpec {
        name: "image-members",
        args: "ID",
        summary: "list the members an image is shared with",
    },
    CommandSpec {
        name: "member-images",
        args: "MEMBER",
        summary: "list the images shared with a member",
    },
    CommandSpec {
        name: "member-add",
        args: "ID MEMBER [--can-share]",
        summary: "share an image with a member",
    },
    CommandSpec {
        name: "member-delete",
        args: "ID MEMBER",
        summary: "stop sharing an image with a member",
    },
    CommandSpec {
        name: "members-replace",
        args: "ID MEMBER [--can-share]",
        summary: "make MEMBER the only member of an image",
    },
    // The image cache (admins, servers with image_cache_enabled): cli/cache.rs.
    CommandSpec {
        name: "cache-index",
        args: "",
        summary: "list the images in the server's image cache",
    },
    CommandSpec {
        name: "cache-invalid",
        args: "",
        summary: "list cache entries that failed verification",
    },
    CommandSpec {
        name: "cache-incomplete",
        args: "",
        summary: "list images being written into the cache",
    },
    CommandSpec {
        name: "cache-prefetching",
        args: "",
        summary: "list images queued or being prefetched into the cache",
    },
    CommandSpec {
        name: "cache-prefetch",
        args: "ID...",
        summary: "queue images for prefetching into the cache",
    },
    CommandSpec {
        name: "cache-purge",
        args: "ID",
        summary: "remove an image from the cache",
    },
    CommandSpec {
        name: "cache-clear",
        args: "",
        summary: "remove every image from the cache",
    },
    CommandSpec {
        name: "cache-reap-invalid",
        args: "",
        summary: "remove the invalid cache entries now",
    },
    CommandSpec {
        name: "cache-reap-stalled",
        args: "",
        summary: "remove stalled incomplete cache entries",
    },
];

/// What went wrong, with the exit status it calls for.
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// The image (or member list) does not exist (exit 3).
    NotFound(String),
    /// Anything else (exit 1); the optional second part is printed with `--debug`.
    Failed(String, Option<String>),
    /// Stdout was closed by the reader: stop quietly (exit 0).
    BrokenPipe,
}

impl CliError {
    /// The exit status.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::NotFound(_) => EXIT_NOT_FOUND,
            CliError::Failed(..) => EXIT_FAILURE,
            CliError::BrokenPipe => EXIT_OK,
        }
    }

    fn failed(msg: impl Into<String>) -> CliError {
        CliError::Failed(msg.into(), None)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::NotFound(m) | CliError::Failed(m, _) => f.write_str(m),
            CliError::BrokenPipe => f.write_str("broken pipe"),
        }
    }
}

impl From<io::Error> for CliError {
    /// Output errors: a closed pipe ends quietly, anything else is a failure.
    fn from(e: io::Error) -> CliError {
        if e.kind() == io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::failed(format!("writing output: {e}"))
        }
    }
}

/// Result of the CLI's functions.
pub type CliResult<T = ()> = Result<T, CliError>;

/// The parsed global options.
#[derive(Debug, Clone)]
pub struct Settings {
    /// API host.
    pub host: String,
    /// API port.
    pub port: u16,
    /// `X-Auth-Token`.
    pub auth_token: Option<String>,
    /// `--os-cloud`: the clouds.yaml entry to log in with.
    pub os_cloud: Option<String>,
    /// `--os-image-url` or `OS_IMAGE_URL`.
    pub image_url: Option<String>,
    /// Whether `-H`/`-p` (or `GLANCE_HOST`/`GLANCE_PORT`) name the server.
    pub host_given: bool,
    /// The client of a server given by URL (`OS_IMAGE_URL`, the Keystone catalog).
    pub api: Option<Client>,
    /// Identity headers for noauth servers.
    pub identity: Option<Identity>,
    /// `-v`.
    pub verbose: bool,
    /// `-d`.
    pub debug: bool,
    /// Page size.
    pub limit: u64,
    /// Listing marker.
    pub marker: Option<String>,
    /// Sort key.
    pub sort_key: Option<String>,
    /// Sort direction.
    pub sort_dir: Option<SortDir>,
    /// `-f`.
    pub force: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--can-share`.
    pub can_share: bool,
    /// `--file`.
    pub file: Option<String>,
    /// `--progress`.
    pub progress: bool,
}

impl Settings {
    /// The API client these settings describe.
    pub fn client(&self) -> Client {
        let mut c = match &self.api {
            Some(api) => api.clone(),
            None => Client::new(&self.host, self.port),
        };
        if let Some(t) = &self.auth_token {
            c = c.with_auth_token(t);
        }
        if let Some(id) = &self.identity {
            c = c.with_identity(id.clone());
        }
        c
    }
}

/// The getopts definition, built from [`OPTIONS`].
pub fn options() -> getopts::Options {
    let mut opts = getopts::Options::new();
    for o in OPTIONS {
        if o.hint.is_empty() {
            opts.optflag(o.short, o.long, o.desc);
        } else {
            opts.optopt(o.short, o.long, o.desc, o.hint);
        }
    }
    opts
}

/// Runs `glance` with the process's arguments and returns its exit status.
pub fn main() -> ExitCode {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(bad) => {
                eprintln!("glance: argument {bad:?} is not valid UTF-8");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = run(&args, &env, &mut out).and_then(|()| out.flush().map_err(CliError::from));
    match result {
        Ok(()) | Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            eprintln!("glance: {e}");
            if let CliError::Failed(_, Some(detail)) = &e
                && args.iter().any(|a| a == "-d" || a == "--debug")
            {
                eprintln!("glance: debug: {detail}");
            }
            ExitCode::from(e.code())
        }
    }
}

/// Runs one `glance` command line: `args` without the program name, `env` to read the
/// environment, results written to `out`.
pub fn run(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> CliResult {
    let started = Instant::now();
    let m = options()
        .parse(args)
        .map_err(|e| CliError::Usage(format!("{e} (see 'glance help')")))?;
    if m.opt_present("version") {
        writeln!(
            out,
            "glance {} (glance-rs, images API v1)",
            env!("CARGO_PKG_VERSION")
        )?;
        return Ok(());
    }
    let mut free = m.free.clone();
    if m.opt_present("help") || free.is_empty() {
        // `glance --help add` is `glance help add`.
        if free.first().map(String::as_str) == Some("help") {
            free.remove(0);
        }
        return commands::help(out, free.first().map(String::as_str));
    }
    let mut settings = settings(&m, env)?;
    let command = free.remove(0);
    login::connect(&mut settings, &command, env)?;
    let result = commands::dispatch(&settings, &command, &free, out);
    if settings.verbose && result.is_ok() {
        eprintln!("Completed in {:.4} sec.", started.elapsed().as_secs_f64());
    }
    result
}

fn settings(m: &getopts::Matches, env: &dyn Fn(&str) -> Option<String>) -> CliResult<Settings> {
    let usage = |m: String| CliError::Usage(m);
    let host = m
        .opt_str("host")
        .or_else(|| env("GLANCE_HOST"))
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
        return Err(usage(format!(
            "--host '{host}' is not a host name or address"
        )));
    }
    let port = match m.opt_str("port").or_else(|| env("GLANCE_PORT")) {
        None => client::DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| usage(format!("--port '{p}' is not a port number (1-65535)")))?,
    };
    let limit = match m.opt_str("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<u64>()
            .ok()
            .filter(|l| *l > 0)
            .ok_or_else(|| usage(format!("--limit '{l}' is not a positive integer")))?,
    };
    let sort_key = m.opt_str("sort_key");
    if let Some(k) = &sort_key
        && !crate::registry::SORT_KEYS.contains(&k.as_str())
    {
        return Err(usage(format!(
            "--sort_key '{k}' is not one of {}",
            crate::registry::SORT_KEYS.join(", ")
        )));
    }
    let sort_dir = match m.opt_str("sort_dir") {
        None => None,
        Some(d) => Some(
            d.parse::<SortDir>()
                .map_err(|_| usage(format!("--sort_dir '{d}' is not asc or desc")))?,
        ),
    };
    let identity = match (m.opt_str("tenant"), m.opt_str("roles")) {
        (None, None) => None,
        (tenant, roles) => Some(Identity {
            tenant,
            user: None,
            roles: roles
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect(),
        }),
    };
    let host_given = ["host", "port"].iter().any(|o| m.opt_present(o))
        || ["GLANCE_HOST", "GLANCE_PORT"]
            .iter()
            .any(|v| env(v).is_some());
    Ok(Settings {
        host,
        port,
        auth_token: m.opt_str("auth_token").or_else(|| env("OS_AUTH_TOKEN")),
        os_cloud: m.opt_str("os-cloud"),
        image_url: m.opt_str("os-image-url").or_else(|| env("OS_IMAGE_URL")),
        host_given,
        api: None,
        identity,
        verbose: m.opt_present("verbose"),
        debug: m.opt_present("debug"),
        limit,
        marker: m.opt_str("marker"),
        sort_key,
        sort_dir,
        force: m.opt_present("force"),
        dry_run: m.opt_present("dry-run"),
        can_share: m.opt_present("can-share"),
        file: m.opt_str("file"),
        progress: m.opt_present("progress"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> CliResult<Settings> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let m = options()
            .parse(&args)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings(&m, &|k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_environment_and_options() {
        let s = parse(&["index"], &[]).ok();
        let s = s.as_ref();
        assert_eq!(s.map(|s| s.host.as_str()), Some("0.0.0.0"));
        assert_eq!(s.map(|s| s.port), Some(9292));
        assert_eq!(s.map(|s| s.limit), Some(10));
        assert_eq!(s.and_then(|s| s.auth_token.clone()), None);
        let env = [
            ("GLANCE_HOST", "img.example.com"),
            ("GLANCE_PORT", "8080"),
            ("OS_AUTH_TOKEN", "tok"),
        ];
        let s = parse(&["index"], &env).ok();
        assert_eq!(
            s.as_ref().map(|s| (s.host.as_str(), s.port)),
            Some(("img.example.com", 8080))
        );
        assert_eq!(s.and_then(|s| s.auth_token), Some("tok".to_string()));
        // Options win over the environment.
        let s = parse(&["-H", "h", "--port", "1", "-A", "x", "index"], &env).ok();
        assert_eq!(
            s.map(|s| (s.host, s.port, s.auth_token)),
            Some(("h".to_string(), 1, Some("x".to_string())))
        );
        let s = parse(
            &["index", "--tenant", "t1", "--roles", "admin, member"],
            &[],
        )
        .ok();
        assert_eq!(
            s.and_then(|s| s.identity),
            Some(Identity {
                tenant: Some("t1".into()),
                user: None,
                roles: vec!["admin".into(), "member".into()]
            })
        );
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--port", "99999", "index"][..],
            &["--port", "x", "index"],
            &["--limit", "0", "index"],
            &["--limit", "-3", "index"],
            &["--sort_key", "colour", "index"],
            &["--sort_dir", "up", "index"],
            &["-H", "http://x/", "index"],
            &["--bogus", "index"],
        ] {
            let e = parse(args, &[]).err().map(|e| e.code());
            assert_eq!(e, Some(EXIT_USAGE), "{args:?}");
        }
    }
}
