//! STUB (to be replaced): listener, bounded worker pool, keep-alive, limits, timeouts.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use super::Handler;

/// Limits and sizes of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Worker threads; each serves one connection at a time for its keep-alive life.
    pub workers: usize,
    /// Accepted connections waiting for a worker, beyond which new ones are refused (503).
    pub backlog: usize,
    /// Longest request line (414 beyond).
    pub max_request_line: usize,
    /// Largest header block in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
    /// Socket read timeout while a request is in progress.
    pub read_timeout: Duration,
    /// Socket write timeout.
    pub write_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub keepalive_timeout: Duration,
    /// Largest unread request-body remainder drained to keep a connection; beyond it the
    /// connection is closed.
    pub max_drain: u64,
    /// Buffer size for streaming bodies.
    pub buffer_size: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            workers: 16,
            backlog: 64,
            max_request_line: 8192,
            max_header_bytes: 16384,
            max_headers: 100,
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(30),
            max_drain: 64 * 1024,
            buffer_size: 64 * 1024,
        }
    }
}

/// A bound HTTP server, not yet running.
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
}

/// Stops a running server from another thread (signal handler, tests).
#[derive(Clone)]
pub struct ShutdownHandle {}

impl ShutdownHandle {
    /// Stop accepting, finish in-flight requests, then let `run` return.
    pub fn shutdown(&self) {}
}

impl Server {
    /// Binds a listener (`host:port`; port 0 picks a free port).
    pub fn bind(addr: &str, config: ServerConfig) -> io::Result<Server> {
        Ok(Server {
            listener: TcpListener::bind(addr)?,
            config,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops this server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {}
    }

    /// Serves until shut down.
    pub fn run(self, handler: Arc<dyn Handler>) -> io::Result<()> {
        let _ = (&self.config, handler);
        Ok(())
    }
}
