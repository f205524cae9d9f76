//! The HTTP/1.1 server: one accept thread, a bounded queue and a fixed pool of workers.
//!
//! Why this shape: Glance is a blocking service whose requests stream image data for
//! minutes, so each worker owns one connection for its keep-alive life and the number of
//! open connections is capped at `workers + backlog`; beyond that a connection gets a short
//! 503 (tiny_http instead started a thread per connection, without limit). Every wait on a
//! client is bounded by a timeout, every size it sends by a limit, and nothing a client
//! sends can crash the process: a handler panic costs one request, a cut-off upload is an
//! error for the handler to see, never an abort.
//!
//! Shutdown: the accept thread blocks in `accept(2)`, and [`ShutdownHandle::shutdown`] sets
//! a flag and then connects to the listener's own address to wake it. We chose that over a
//! non-blocking listener polled in a sleep loop, because polling delays every new connection
//! by up to one poll interval and wakes an idle server many times a second. Workers wait for
//! the next keep-alive request in short slices, so they notice shutdown within
//! `IDLE_POLL` (100 ms) and close idle connections promptly, while in-flight requests finish.

use std::any::Any;
use std::io::{self, BufRead, BufReader, Read};
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::body::{BodyReader, BodyState, Framing, Refusal};
use super::head::{self, Head, HeadError, Limits};
use super::write::{self, Outcome, Plan};
use super::{Handler, Request, Response};

/// The `log` target of request lines and server events.
pub const LOG_TARGET: &str = "glance::http";

/// How often a worker waiting for the next keep-alive request looks at the shutdown flag.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// Read buffer of a connection (request heads; large body reads bypass it).
const READ_BUF: usize = 16 * 1024;

/// How long and how much we keep reading after deciding to close a connection whose
/// request body was not read, so that the client gets our response instead of a reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_POLL: Duration = Duration::from_millis(200);
const LINGER_BYTES: usize = 1024 * 1024;

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
    /// How long an idle keep-alive connection is kept (`keepalive_timeout`); shorter under
    /// pressure: at `max_connections` the oldest idle connection is closed for a new one.
    pub keepalive_timeout: Duration,
    /// The whole request head must arrive within this time from its first byte (or from
    /// the accept, for a new connection): 408 and close beyond (`client_header_timeout`).
    pub client_header_timeout: Duration,
    /// Slowest accepted request body, in bytes/s averaged over `min_rate_window`
    /// (`client_body_min_rate`; 0 = no minimum).
    pub client_body_min_rate: u64,
    /// Slowest accepted response body, in bytes/s averaged over `min_rate_window`
    /// (`send_min_rate`; 0 = no minimum).
    pub send_min_rate: u64,
    /// The window the two minimum rates are averaged over (`min_rate_window`).
    pub min_rate_window: Duration,
    /// Open connections beyond which a new one gets 503 and is closed (`max_connections`).
    pub max_connections: usize,
    /// Open connections from one peer address beyond which a new one from it gets 503
    /// (`max_connections_per_client`).
    pub max_connections_per_client: usize,
    /// Workers kept for requests that move no image data (`metadata_workers`): at most
    /// `workers - metadata_workers` requests stream image data at once.
    pub metadata_workers: usize,
    /// Send file bodies with sendfile(2) (`sendfile`); else through a `file_buffer_size`
    /// user-space buffer.
    pub sendfile: bool,
    /// Buffer for file bodies when `sendfile` is off (`send_buffer_size`).
    pub file_buffer_size: usize,
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
            keepalive_timeout: Duration::from_secs(60),
            client_header_timeout: Duration::from_secs(10),
            client_body_min_rate: 1024,
            send_min_rate: 1024,
            min_rate_window: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_client: 256,
            metadata_workers: 4,
            sendfile: true,
            file_buffer_size: 1024 * 1024,
            max_drain: 64 * 1024,
            buffer_size: 64 * 1024,
        }
    }
}

/// A bound HTTP server, not yet running.
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    stop: Arc<AtomicBool>,
}

/// Stops a running server from another thread (signal handler, tests).
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    wake: Option<SocketAddr>,
}

impl ShutdownHandle {
    /// Stop accepting, finish in-flight requests, then let `run` return.
    ///
    /// Returns at once; `run` returns when the last in-flight request is done. Calling it
    /// again, or before `run`, is harmless.
    pub fn shutdown(&self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        let Some(addr) = self.wake else { return };
        // The accept loop checks the flag after each accepted connection; ours wakes it.
        if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            log::warn!(target: LOG_TARGET, "waking the accept loop at {addr}: {e}");
        }
    }
}

/// Where to connect to reach our own listener: a wildcard address is not a destination.
fn wake_address(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    addr
}

/// What every worker shares.
struct Shared {
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    stop: Arc<AtomicBool>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

impl Server {
    /// Binds a listener (`host:port`; port 0 picks a free port).
    pub fn bind(addr: &str, config: ServerConfig) -> io::Result<Server> {
        Ok(Server {
            listener: TcpListener::bind(addr)?,
            config,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops this server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: Arc::clone(&self.stop),
            wake: self.listener.local_addr().ok().map(wake_address),
        }
    }

    /// Serves until shut down. The calling thread becomes the accept thread.
    pub fn run(self, handler: Arc<dyn Handler>) -> io::Result<()> {
        let (tx, rx) = mpsc::sync_channel::<TcpStream>(self.config.backlog);
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            handler,
            stop: Arc::clone(&self.stop),
        });
        let mut workers = Vec::new();
        for i in 0..self.config.workers.max(1) {
            let (rx, shared) = (Arc::clone(&rx), Arc::clone(&shared));
            let spawned = thread::Builder::new()
                .name(format!("http-worker-{i}"))
                .spawn(move || worker_loop(&rx, &shared));
            match spawned {
                Ok(worker) => workers.push(worker),
                Err(e) => {
                    self.stop.store(true, Ordering::SeqCst);
                    drop(tx);
                    join_all(workers);
                    return Err(e);
                }
            }
        }
        self.accept_loop(&tx, &shared);
        // Closing the queue lets each worker finish its connection, then exit.
        drop(tx);
        join_all(workers);
        log::info!(target: LOG_TARGET, "server stopped");
        Ok(())
    }

    fn accept_loop(&self, tx: &SyncSender<TcpStream>, shared: &Shared) {
        while !shared.stopping() {
            match self.listener.accept() {
                Ok((stream, _)) if shared.stopping() => drop(stream),
                Ok((stream, peer)) => match tx.try_send(stream) {
                    Ok(()) => {}
                    Err(TrySendError::Full(stream)) => refuse_busy(stream, peer),
                    Err(TrySendError::Disconnected(_)) => return,
                },
                Err(e) => accept_failed(&e),
            }
        }
    }
}

fn join_all(workers: Vec<thread::JoinHandle<()>>) {
    for worker in workers {
        if worker.join().is_err() {
            log::error!(target: LOG_TARGET, "an HTTP worker thread panicked");
        }
    }
}

/// Logs a failed `accept`. Running out of descriptors fails at once on every call, so we
/// pause instead of spinning; an aborted handshake is the client's business.
fn accept_failed(e: &io::Error) {
    match e.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted => {}
        _ => {
            log::warn!(target: LOG_TARGET, "accept failed: {e}");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Answers a connection the queue has no room for, from the accept thread: it must not
/// block, so the socket is non-blocking and the answer fits any send buffer.
fn refuse_busy(stream: TcpStream, peer: SocketAddr) {
    log::warn!(target: LOG_TARGET, "refusing {peer}: all workers busy and the queue is full");
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let plan = Plan {
        http10: false,
        head_request: false,
        keep_alive: false,
        buffer_size: 0,
        min_rate: 0,
        rate_window: Duration::ZERO,
        sendfile: false,
        file_buffer_size: 0,
    };
    let resp = Response::text(503, "server busy, try again\n").with_header("Retry-After", "1");
    write::send(&stream, resp, &plan);
    // Whatever request already arrived is read so that closing sends FIN, not a reset
    // that could destroy the 503 before the client reads it.
    let mut sink = [0u8; 4096];
    let _ = (&stream).read(&mut sink);
    let _ = stream.shutdown(Shutdown::Write);
}

fn worker_loop(rx: &Mutex<Receiver<TcpStream>>, shared: &Shared) {
    loop {
        // The guard is dropped at the end of this statement, before the connection is served.
        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(stream) = next else { return };
        if shared.stopping() {
            refuse_stopping(&stream);
            continue;
        }
        // Handler panics are caught per request; this guards against our own bugs, so that
        // one bad connection cannot shrink the pool.
        let served = panic::catch_unwind(AssertUnwindSafe(|| Conn::serve(&stream, shared)));
        if let Err(p) = served {
            log::error!(target: LOG_TARGET, "connection handling panicked: {}", panic_message(&*p));
        }
    }
}

fn refuse_stopping(stream: &TcpStream) {
    let plan = Plan {
        http10: false,
        head_request: false,
        keep_alive: false,
        buffer_size: 0,
        min_rate: 0,
        rate_window: Duration::ZERO,
        sendfile: false,
        file_buffer_size: 0,
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    write::send(stream, Response::text(503, "server shutting down\n"), &plan);
}

/// A socket timeout; zero means none (the OS refuses a zero timeout).
fn timeout(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// What to do with a connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    KeepAlive,
    /// Close; `unread` when the client may still be sending a body we did not read.
    Close {
        unread: bool,
    },
}

/// One client connection, served by one worker for its keep-alive life.
struct Conn<'s> {
    stream: &'s TcpStream,
    reader: BufReader<&'s TcpStream>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    shared: &'s Shared,
}

impl<'s> Conn<'s> {
    /// Serves requests until the connection closes, idles out or the server stops.
    fn serve(stream: &'s TcpStream, shared: &'s Shared) {
        let cfg = &shared.config;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(timeout(cfg.write_timeout));
        let mut conn = Conn {
            stream,
            reader: BufReader::with_capacity(READ_BUF, stream),
            peer: stream.peer_addr().ok(),
            local: stream.local_addr().ok(),
            shared,
        };
        let mut idle = cfg.read_timeout;
        while conn.wait_for_request(idle) {
            let _ = stream.set_read_timeout(timeout(cfg.read_timeout));
            match conn.serve_request() {
                After::KeepAlive => idle = cfg.keepalive_timeout,
                After::Close { unread } => return conn.close(unread),
            }
        }
    }

    /// Waits up to `limit` for the first byte of a request, in slices short enough to
    /// notice shutdown. False when the connection should be closed instead.
    fn wait_for_request(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if !self.reader.buffer().is_empty() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.shared.stopping() || left.is_zero() {
                return false;
            }
            let _ = self.stream.set_read_timeout(Some(left.min(IDLE_POLL)));
            match self.reader.fill_buf() {
                Ok(buf) => return !buf.is_empty(),
                Err(e) if is_timeout(&e) => {}
                Err(_) => return false,
            }
        }
    }

    /// Reads one request and answers it.
    fn serve_request(&mut self) -> After {
        let started = Instant::now();
        let cfg = &self.shared.config;
        let limits = Limits {
            request_line: cfg.max_request_line,
            header_bytes: cfg.max_header_bytes,
            headers: cfg.max_headers,
            deadline: started + cfg.read_timeout,
        };
        let mut head = match head::read_head(&mut self.reader, &limits) {
            Ok(head) => head,
            Err(HeadError::Gone) => return After::Close { unread: false },
            Err(HeadError::Refuse(r)) => return self.refuse(None, r, started),
        };
        match head.framing() {
            Ok((framing, expect_continue)) => {
                self.answer(&mut head, framing, expect_continue, started)
            }
            Err(r) => self.refuse(Some(&head), r, started),
        }
    }

    /// Runs the handler, settles the request body and sends the response.
    fn answer(
        &mut self,
        head: &mut Head,
        framing: Framing,
        expect_continue: bool,
        started: Instant,
    ) -> After {
        let cfg = &self.shared.config;
        let client_keeps = head.wants_keep_alive();
        let mut state = BodyState::new(framing, expect_continue, cfg.max_header_bytes);
        let response = self.call_handler(head, &mut state);
        let body_finished = self.finish_body(&mut state);
        let plan = Plan {
            http10: head.http10,
            head_request: head.method == "HEAD",
            keep_alive: client_keeps && body_finished && !self.shared.stopping(),
            buffer_size: cfg.buffer_size,
            min_rate: cfg.send_min_rate,
            rate_window: cfg.min_rate_window,
            sendfile: cfg.sendfile,
            file_buffer_size: cfg.file_buffer_size,
        };
        let outcome = write::send(self.stream, response, &plan);
        self.log(&head.method, head.log_path(), &outcome, started);
        if outcome.keep_alive {
            After::KeepAlive
        } else {
            After::Close {
                unread: !body_finished,
            }
        }
    }

    /// Answers a request we will not hand to the handler, then closes the connection: a
    /// body may follow that we cannot delimit.
    fn refuse(&self, head: Option<&Head>, r: Refusal, started: Instant) -> After {
        let plan = Plan {
            http10: head.is_some_and(|h| h.http10),
            head_request: false,
            keep_alive: false,
            buffer_size: 0,
            min_rate: 0,
            rate_window: Duration::ZERO,
            sendfile: false,
            file_buffer_size: 0,
        };
        let resp = Response::text(r.status, format!("{}\n", r.message));
        let outcome = write::send(self.stream, resp, &plan);
        let (method, path) = head.map_or(("-", "-"), |h| (h.method.as_str(), h.log_path()));
        self.log(method, path, &outcome, started);
        After::Close { unread: true }
    }

    /// Runs the handler under `catch_unwind`: a panic is logged and answered with 500.
    fn call_handler(&mut self, head: &mut Head, state: &mut BodyState) -> Response {
        let has_body = !state.is_done();
        let mut out = self.stream;
        let body = BodyReader::new(&mut self.reader, &mut out, state);
        let headers = mem::take(&mut head.headers);
        let method = head.method.clone();
        let mut req = Request::new(
            method,
            &head.target,
            headers,
            self.peer,
            Box::new(body),
            has_body,
        );
        req.local = self.local;
        let handler = &self.shared.handler;
        let result = panic::catch_unwind(AssertUnwindSafe(|| handler.handle(&mut req)));
        drop(req);
        result.unwrap_or_else(|p| {
            let (method, path, why) = (&head.method, head.log_path(), panic_message(&*p));
            log::error!(target: LOG_TARGET, "handler panicked on {method} {path}: {why}");
            Response::text(500, "internal server error\n")
        })
    }

    /// After the handler: true when the body has been consumed, so the connection can carry
    /// another request. A known remainder up to `max_drain` is drained, an unknown (chunked)
    /// one up to `max_drain` payload bytes. A client still waiting for `100 Continue` may or
    /// may not send its body, so that connection cannot be reused.
    fn finish_body(&mut self, state: &mut BodyState) -> bool {
        let max_drain = self.shared.config.max_drain;
        if state.is_done() {
            return true;
        }
        if state.is_failed() || state.continue_pending() {
            return false;
        }
        let limit = match state.known_remaining() {
            Some(n) if n > max_drain => return false,
            Some(n) => n,
            None => max_drain,
        };
        let mut out = self.stream;
        BodyReader::new(&mut self.reader, &mut out, state).drain(limit)
    }

    /// Closes the connection. When the client may still be sending a body we did not read,
    /// keep reading for a moment after our FIN (a "lingering close", as Apache and nginx
    /// do): closing with unread data makes the kernel send a reset, which can destroy the
    /// response before the client has read it.
    fn close(mut self, unread: bool) {
        let _ = self.stream.shutdown(Shutdown::Write);
        if !unread {
            return;
        }
        let _ = self.stream.set_read_timeout(Some(LINGER_POLL));
        let deadline = Instant::now() + LINGER_TIME;
        let mut buf = [0u8; 8192];
        let mut budget = LINGER_BYTES;
        while budget > 0 && Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    }

    /// The request log line: method, path, status, body bytes sent, duration, peer.
    fn log(&self, method: &str, path: &str, outcome: &Outcome, started: Instant) {
        let ms = started.elapsed().as_millis();
        let (status, bytes) = (outcome.status, outcome.body_bytes);
        let peer = self.peer.map_or_else(|| "-".to_string(), |p| p.to_string());
        log::info!(target: LOG_TARGET, "{method} {path} {status} {bytes} {ms}ms {peer}");
    }
}

fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

#[cfg(test)]
mod tests;
