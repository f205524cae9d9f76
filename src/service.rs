//! The life cycle of a server process: bind, announce, serve, stop on a signal.
//!
//! SIGTERM and SIGINT stop accepting, let in-flight requests finish and exit 0; SIGHUP runs
//! the program's reload hook (reopen log files). Readiness is announced twice: a first
//! stdout line `listening on HOST:PORT` (tests and humans read it; with `bind_port = 0` it
//! is the only way to learn the port) and `READY=1` to systemd's `$NOTIFY_SOCKET` when
//! started as a `Type=notify` unit.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use std::process::ExitCode;

use crate::config::{CliArgs, CommonOptions};
use crate::error::{Error, Result};
use crate::http::{Handler, Server, ServerConfig};

/// Something to do on SIGHUP (e.g. reopen the log file).
pub type ReloadHook = Box<dyn Fn() + Send + 'static>;

/// A bound server, ready to run; binding first lets callers learn the address.
pub struct Service {
    name: String,
    server: Server,
    addr: SocketAddr,
}

impl Service {
    /// Binds `bind_host:bind_port` with the worker count of `common`.
    ///
    /// First raises the soft open-files limit to fit `config.max_connections` (see
    /// [`raise_nofile_limit`]).
    pub fn bind(name: &str, common: &CommonOptions, config: ServerConfig) -> Result<Service> {
        raise_nofile_limit(name, config.max_connections);
        let host = if common.bind_host.contains(':') && !common.bind_host.starts_with('[') {
            format!("[{}]", common.bind_host)
        } else {
            common.bind_host.clone()
        };
        let addr = format!("{host}:{}", common.bind_port);
        let server = Server::bind(&addr, config)
            .map_err(|e| Error::Config(format!("{name}: cannot listen on {addr}: {e}")))?;
        let addr = server
            .local_addr()
            .map_err(|e| Error::io("reading the bound address", e))?;
        Ok(Service {
            name: name.to_string(),
            server,
            addr,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until SIGTERM/SIGINT; runs `reload` on SIGHUP.
    pub fn run(self, handler: Arc<dyn Handler>, reload: Option<ReloadHook>) -> Result<()> {
        let shutdown = self.server.shutdown_handle();
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
            .map_err(|e| Error::io("installing signal handlers", e))?;
        let signal_handle = signals.handle();
        let name = self.name.clone();
        let signal_thread = thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if sig == SIGHUP {
                        log::info!("{name}: SIGHUP received, reloading");
                        notify_systemd("RELOADING=1");
                        if let Some(hook) = &reload {
                            hook();
                        }
                        notify_systemd("READY=1");
                    } else {
                        log::info!("{name}: signal {sig} received, stopping");
                        notify_systemd("STOPPING=1");
                        shutdown.shutdown();
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("starting the signal thread", e))?;

        announce(&self.name, self.addr);
        let result = self.server.run(handler);
        signal_handle.close();
        let _ = signal_thread.join();
        log::info!("{}: stopped", self.name);
        result.map_err(|e| Error::io("serving", e))
    }
}

/// The `main` of a server program: parses the shared command line, answers `--help` and
/// `--version`, runs `body`, and turns an error into `<program>: ERROR: <message>` on stderr
/// with exit status 1.
pub fn run_main(program: &str, body: impl FnOnce(&CliArgs) -> Result<()>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = CliArgs::parse(&args).and_then(|cli| {
        if cli.help {
            print!("{}", CliArgs::usage(program));
            return Ok(());
        }
        if cli.version {
            println!("{program} {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        body(&cli)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("{program}: ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The HTTP server settings of a program: workers, deadlines, minimum rates, connection
/// limits and file sending from the config, streaming buffer of `buffer_size` bytes.
pub fn server_config(common: &CommonOptions, buffer_size: usize) -> ServerConfig {
    ServerConfig {
        workers: common.workers,
        keepalive_timeout: common.keepalive_timeout,
        client_header_timeout: common.client_header_timeout,
        client_body_min_rate: common.client_body_min_rate,
        send_min_rate: common.send_min_rate,
        min_rate_window: common.min_rate_window,
        max_connections: common.max_connections,
        max_connections_per_client: common.max_connections_per_client,
        metadata_workers: common.metadata_workers,
        sendfile: common.sendfile,
        file_buffer_size: common.send_buffer_size,
        buffer_size,
        ..ServerConfig::default()
    }
}

/// File descriptors wanted beyond `max_connections`: the listener, image files being read
/// or written, the database, log files, connections to the registry, Swift, S3 and the
/// AMQP broker.
pub const NOFILE_MARGIN: u64 = 1024;

/// Raises the soft `RLIMIT_NOFILE` to `max_connections + NOFILE_MARGIN`, or to the hard
/// limit if that is lower, and says so at INFO; warns when the hard limit is lower (the
/// operator should raise it: `LimitNOFILE=` of the systemd unit). Never fails: the server
/// runs with the limit it has, and an `accept` beyond it is refused by the kernel.
///
/// `setrlimit` goes through `prlimit64(2)` (rustix), which systemd's `@system-service`
/// filter allows even with `~@resources`, whose `setrlimit(2)` our units deny.
pub fn raise_nofile_limit(name: &str, max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let wanted = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(NOFILE_MARGIN);
    let limit = getrlimit(Resource::Nofile);
    let plan = nofile_plan(limit.current, limit.maximum, wanted);
    if let Some(soft) = plan.raise_to {
        let new = rustix::process::Rlimit {
            current: Some(soft),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, new) {
            Ok(()) => log::info!(
                "{name}: open files limit (RLIMIT_NOFILE) raised from {} to {soft} for \
                 max_connections = {max_connections}",
                show_limit(limit.current)
            ),
            Err(e) => log::warn!(
                "{name}: cannot raise the open files limit (RLIMIT_NOFILE) from {} to {soft}: \
                 {e}",
                show_limit(limit.current)
            ),
        }
    } else {
        log::debug!(
            "{name}: open files limit (RLIMIT_NOFILE) {} is enough for max_connections = \
             {max_connections}",
            show_limit(limit.current)
        );
    }
    if plan.hard_short {
        log::warn!(
            "{name}: the hard open files limit (RLIMIT_NOFILE) is {}, below max_connections + \
             {NOFILE_MARGIN} = {wanted}: connections beyond the limit will be refused; raise \
             it (LimitNOFILE= in the systemd unit) or lower max_connections",
            show_limit(limit.maximum)
        );
    }
}

/// What [`raise_nofile_limit`] does about limits `soft` and `hard` (`None` = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NofilePlan {
    /// The new soft limit, when it must be raised.
    raise_to: Option<u64>,
    /// The hard limit is below what is wanted.
    hard_short: bool,
}

fn nofile_plan(soft: Option<u64>, hard: Option<u64>, wanted: u64) -> NofilePlan {
    let hard_short = hard.is_some_and(|h| h < wanted);
    let raise_to = match soft {
        Some(s) if s < wanted => Some(hard.map_or(wanted, |h| h.min(wanted))).filter(|&t| t > s),
        _ => None,
    };
    NofilePlan {
        raise_to,
        hard_short,
    }
}

fn show_limit(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

/// The SIGHUP hook of a server: re-reads the config with `load`, applies the logging
/// options (level, reopened log file: logrotate without copytruncate) and says that other
/// changes need a restart. An unreadable config keeps the running one.
pub fn reload_hook<F>(logs: crate::log::LogHandle, load: F) -> ReloadHook
where
    F: Fn() -> Result<CommonOptions> + Send + 'static,
{
    Box::new(move || match load() {
        Ok(common) => {
            if let Err(e) = logs.apply(&common) {
                log::error!("reload: {e}");
            }
            log::warn!(
                "configuration re-read from {}: logging options applied; other changes take \
                 effect on restart",
                common.config_path.display()
            );
        }
        Err(e) => {
            log::error!("reload: {e}; keeping the running configuration");
            if let Err(e) = logs.reopen() {
                log::error!("reopening the log file: {e}");
            }
        }
    })
}

/// Prints the first stdout line and tells systemd we are ready.
fn announce(name: &str, addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
    log::info!("{name}: listening on {addr}");
    notify_systemd("READY=1");
}

/// Sends one state line to `$NOTIFY_SOCKET` (sd_notify protocol); silent when unset.
pub fn notify_systemd(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET")
        && let Err(e) = notify_to(&path, state)
    {
        log::warn!("sd_notify {state}: {e}");
    }
}

/// Sends `state` to a notify socket path (`@name` = Linux abstract socket).
fn notify_to(path: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    if let Some(abstract_name) = path.as_encoded_bytes().strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn nofile_plan_raises_the_soft_limit_up_to_the_hard_one() {
        let plan = |soft, hard| {
            let p = nofile_plan(soft, hard, 11_024);
            (p.raise_to, p.hard_short)
        };
        // Raised to what is wanted when the hard limit allows it.
        assert_eq!(plan(Some(1024), Some(524_288)), (Some(11_024), false));
        assert_eq!(plan(Some(1024), None), (Some(11_024), false));
        // Only up to the hard limit, with a warning.
        assert_eq!(plan(Some(1024), Some(4096)), (Some(4096), true));
        // Soft already at a short hard limit: nothing to set, still a warning.
        assert_eq!(plan(Some(4096), Some(4096)), (None, true));
        // Enough already (the systemd units' LimitNOFILE=65536), or unlimited: untouched.
        assert_eq!(plan(Some(65_536), Some(65_536)), (None, false));
        assert_eq!(plan(Some(11_024), Some(11_024)), (None, false));
        assert_eq!(plan(None, None), (None, false));
    }

    #[test]
    fn server_config_maps_every_connection_option() {
        let mut c = CommonOptions::new("test.conf", 0);
        c.workers = 8;
        c.metadata_workers = 3;
        c.keepalive_timeout = std::time::Duration::from_secs(5);
        c.client_header_timeout = std::time::Duration::from_secs(6);
        c.client_body_min_rate = 7;
        c.send_min_rate = 8;
        c.min_rate_window = std::time::Duration::from_secs(9);
        c.max_connections = 10;
        c.max_connections_per_client = 11;
        c.sendfile = false;
        c.send_buffer_size = 12 * 1024;
        let s = server_config(&c, 64 * 1024);
        assert_eq!((s.workers, s.metadata_workers), (8, 3));
        assert_eq!(s.keepalive_timeout.as_secs(), 5);
        assert_eq!(s.client_header_timeout.as_secs(), 6);
        assert_eq!((s.client_body_min_rate, s.send_min_rate), (7, 8));
        assert_eq!(s.min_rate_window.as_secs(), 9);
        assert_eq!((s.max_connections, s.max_connections_per_client), (10, 11));
        assert!(!s.sendfile);
        assert_eq!((s.file_buffer_size, s.buffer_size), (12 * 1024, 64 * 1024));
        assert_eq!(s.backlog, ServerConfig::default().backlog);

        // The config defaults are the server's.
        let c = CommonOptions::new("test.conf", 0);
        let (s, d) = (server_config(&c, 1), ServerConfig::default());
        assert_eq!(s.keepalive_timeout, d.keepalive_timeout);
        assert_eq!(s.client_header_timeout, d.client_header_timeout);
        assert_eq!(s.client_body_min_rate, d.client_body_min_rate);
        assert_eq!(s.send_min_rate, d.send_min_rate);
        assert_eq!(s.min_rate_window, d.min_rate_window);
        assert_eq!(s.max_connections, d.max_connections);
        assert_eq!(s.max_connections_per_client, d.max_connections_per_client);
        assert_eq!(s.metadata_workers, d.metadata_workers);
        assert_eq!(s.sendfile, d.sendfile);
        assert_eq!(s.file_buffer_size, d.file_buffer_size);
    }

    #[test]
    fn notify_reaches_a_socket() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind: {e}"));
        notify_to(path.as_os_str(), "READY=1").unwrap_or_else(|e| panic!("send: {e}"));
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap_or(0);
        assert_eq!(&buf[..n], b"READY=1");
    }
}
