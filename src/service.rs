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
    pub fn bind(name: &str, common: &CommonOptions, config: ServerConfig) -> Result<Service> {
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

/// The HTTP server settings of a program: worker count from the config, streaming buffer
/// of `buffer_size` bytes.
pub fn server_config(common: &CommonOptions, buffer_size: usize) -> ServerConfig {
    ServerConfig {
        workers: common.workers,
        backlog: common.workers.saturating_mul(4).max(16),
        buffer_size,
        ..ServerConfig::default()
    }
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
