//! The HTTP/1.1 server: a poller thread that holds connections between requests, a work
//! queue and a fixed pool of workers that serve one request at a time.
//!
//! Why this shape: Glance is a blocking service whose requests stream image data for
//! minutes, so a request is served by one worker with blocking I/O and fixed buffers. But a
//! connection that is idle between keep-alive requests, or whose head has not fully
//! arrived, must not hold a worker: it waits in the poller ([`super::poller`]), one epoll
//! set for all of them, until its head is complete. Requests that move image data may take
//! only `workers - metadata_workers` workers ([`super::pool`]), so metadata requests are
//! always answered. Every wait on a client is bounded (head deadline, idle deadline,
//! minimum body and send rates), every size it sends by a limit, connections in all and
//! per client by a limit, and nothing a client sends can crash the process: a handler
//! panic costs one request, a cut-off upload is an error for the handler to see.
//!
//! ```text
//!  accept ──► poller (epoll) ──complete head──► work queue ──► workers (blocking I/O)
//!               ▲   │ idle / half-sent heads          light │ bulk (≤ workers − reserve)
//!               │   └─ deadlines: 408, idle close           │
//!               └────────── keep-alive connection ◄─────────┘
//! ```
//!
//! Shutdown: [`ShutdownHandle::shutdown`] sets a flag and rings the poller's waker; the
//! poller closes the listener and every parked connection, and the workers finish the
//! requests that are queued or in flight, then `run` returns.

use std::any::Any;
use std::io::{self, BufRead, Read};
use std::mem;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Poll, Waker};

use super::body::{BodyReader, BodyState, Framing, Refusal};
use super::head::{self, Head, HeadError, Limits};
use super::poller::{self, LISTENER, Poller, WAKER};
use super::pool::{Conn, Job, Tracker, WorkQueue};
use super::write::{self, Outcome, Plan};
use super::{Handler, Request, Response};

/// The `log` target of request lines and server events.
pub const LOG_TARGET: &str = "glance::http";

/// Read buffer of a connection in a worker (request heads, chunk lines; large body reads
/// bypass it).
const READ_BUF: usize = 16 * 1024;

/// A request body larger than this moves image data (it is a bulk request), whatever the
/// handler says of its path.
const BULK_BODY: u64 = 64 * 1024;

/// How long and how much we keep reading after deciding to close a connection whose
/// request body was not read, so that the client gets our response instead of a reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_POLL: Duration = Duration::from_millis(200);
const LINGER_BYTES: usize = 1024 * 1024;

/// How long a worker that has just answered on a keep-alive connection waits for that
/// client's next request before giving the connection back to the poller, when no other
/// request waits for a worker. A client that sends its next request at once (a pooled HTTP
/// client polling an image, a load balancer's health check) is then served by the same
/// worker, without two thread wake-ups and two epoll changes per request; any other
/// connection waits in the poller as before. A request queued meanwhile waits at most this
/// long for this worker, and only when every worker is busy or waiting.
const NEXT_REQUEST_WAIT: Duration = Duration::from_millis(1);

/// Bytes read at a time while waiting for the next request (a head longer than this goes
/// to the poller to be completed).
const NEXT_REQUEST_READ: usize = 8 * 1024;

/// Limits and sizes of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Worker threads; each serves one request at a time.
    pub workers: usize,
    /// The listen(2) backlog: connections the kernel queues before we accept them.
    pub backlog: usize,
    /// Longest request line (414 beyond).
    pub max_request_line: usize,
    /// Largest header block in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
    /// Socket read timeout while a request is in progress (one read may wait this long).
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
            backlog: 1024,
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
    poll: Poll,
    waker: Arc<Waker>,
    config: ServerConfig,
    stop: Arc<AtomicBool>,
}

/// Stops a running server from another thread (signal handler, tests).
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Stop accepting, close idle connections, finish in-flight requests, then let `run`
    /// return.
    ///
    /// Returns at once; `run` returns when the last in-flight request is done. Calling it
    /// again, or before `run`, is harmless.
    pub fn shutdown(&self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.waker.wake() {
            log::warn!(target: LOG_TARGET, "waking the poller: {e}");
        }
    }
}

/// What the poller and every worker share.
pub(super) struct Shared {
    pub config: ServerConfig,
    handler: Arc<dyn Handler>,
    stop: Arc<AtomicBool>,
    pub tracker: Arc<Tracker>,
    pub queue: WorkQueue,
    /// Keep-alive connections going back to the poller, with the waker that tells it.
    returns: Sender<Conn>,
    waker: Arc<Waker>,
}

impl Shared {
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// True when the request whose head starts `buf` moves image data: the handler says
    /// so of its method and path, or its body is large or of unknown length.
    pub(super) fn moves_data(&self, buf: &[u8]) -> bool {
        let mut fields = [const { mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 64];
        let mut req = httparse::Request::new(&mut []);
        // An unparsable head is refused at once by the worker: a light job.
        if !matches!(
            req.parse_with_uninit_headers(buf, &mut fields),
            Ok(httparse::Status::Complete(_))
        ) {
            return false;
        }
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return false;
        };
        let raw_path = target.split('?').next().unwrap_or_default();
        let decoded;
        let path = if raw_path.contains('%') {
            decoded = super::percent_decode(raw_path);
            decoded.as_str()
        } else {
            raw_path
        };
        if self.handler.moves_data(method, path) {
            return true;
        }
        req.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                || (h.name.eq_ignore_ascii_case("content-length")
                    && std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .is_none_or(|n| n > BULK_BODY))
        })
    }

    /// Where a connection goes after a request it may keep. When its next head is
    /// buffered (pipelining) or arrives within [`NEXT_REQUEST_WAIT`] while no request waits
    /// for a worker, a request that moves no image data is returned, for this worker to
    /// serve; one that does goes to the queue. Otherwise the connection goes to the poller
    /// to wait.
    fn resume(&self, mut conn: Conn) -> Option<Job> {
        if self.stopping() {
            return None; // dropping it closes it
        }
        poller::strip_blank_lines(&mut conn.buf);
        if conn.buf.is_empty() && !self.queue.light_waiting() {
            match wait_for_next(&mut conn) {
                Next::Closed => return None,
                Next::Data | Next::Quiet => {}
            }
        }
        if poller::head_complete(&conn.buf, 0) {
            let bulk = self.moves_data(&conn.buf);
            let job = Job {
                conn,
                head_deadline: Instant::now() + self.config.client_header_timeout,
                bulk,
            };
            if bulk || self.queue.light_waiting() {
                self.queue.push(job);
                return None;
            }
            return Some(job);
        }
        let sent = self.returns.send(conn);
        // A closed channel means the poller has stopped: the connection is closed.
        if sent.is_ok()
            && let Err(e) = self.waker.wake()
        {
            log::warn!(target: LOG_TARGET, "waking the poller: {e}");
        }
        None
    }
}

/// What [`wait_for_next`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Bytes arrived (in the connection's buffer).
    Data,
    /// Nothing within the wait.
    Quiet,
    /// The client closed the connection, or it failed.
    Closed,
}

/// Waits up to [`NEXT_REQUEST_WAIT`] for the client's next bytes and reads what arrived
/// into the connection's buffer.
///
/// Each step is one read that does not wait, so a request already there costs one system
/// call. When the first read finds nothing, the thread lets the client's side run (on a
/// loaded host it is usually waiting for this CPU): its next request often arrives before
/// this thread runs again, and a second read then finds it, without sleeping on the socket
/// and being woken, which cost about a fifth of a HEAD's CPU time. Only then does the
/// thread wait on the socket.
fn wait_for_next(conn: &mut Conn) -> Next {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let seen = read_next(conn);
    if seen != Next::Quiet {
        return seen;
    }
    thread::yield_now();
    let seen = read_next(conn);
    if seen != Next::Quiet {
        return seen;
    }
    let wait = Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(NEXT_REQUEST_WAIT.subsec_nanos()),
    };
    let mut fds = [PollFd::new(&conn.stream, PollFlags::IN)];
    if !matches!(rustix::event::poll(&mut fds, Some(&wait)), Ok(1)) {
        return Next::Quiet;
    }
    read_next(conn)
}

/// One read of what the client sent, without waiting, into the connection's buffer.
fn read_next(conn: &mut Conn) -> Next {
    use rustix::net::RecvFlags;
    // Not zeroed first: recv tells how much it wrote, and only that is copied.
    let mut scratch = [mem::MaybeUninit::<u8>::uninit(); NEXT_REQUEST_READ];
    match rustix::net::recv(&conn.stream, &mut scratch[..], RecvFlags::DONTWAIT) {
        Ok((([], _), _)) => Next::Closed,
        Ok(((read, _), _)) => {
            conn.buf.extend_from_slice(read);
            poller::strip_blank_lines(&mut conn.buf);
            Next::Data
        }
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Next::Quiet,
        Err(_) => Next::Closed,
    }
}

impl Server {
    /// Binds a listener (`host:port`; port 0 picks a free port).
    pub fn bind(addr: &str, config: ServerConfig) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        // std listens with a backlog of 128; a burst of clients deserves more room.
        let backlog = i32::try_from(config.backlog.max(1)).unwrap_or(i32::MAX);
        rustix::net::listen(&listener, backlog)?;
        listener.set_nonblocking(true)?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let fd = listener.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)?;
        Ok(Server {
            listener,
            poll,
            waker,
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
            waker: Arc::clone(&self.waker),
        }
    }

    /// Serves until shut down. The calling thread becomes the poller thread.
    pub fn run(self, handler: Arc<dyn Handler>) -> io::Result<()> {
        let workers = self.config.workers.max(1);
        let reserved = self.config.metadata_workers.min(workers - 1);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            handler,
            stop: Arc::clone(&self.stop),
            tracker: Arc::new(Tracker::default()),
            queue: WorkQueue::new(workers, reserved),
            returns: tx,
            waker: Arc::clone(&self.waker),
        });
        let mut threads = Vec::new();
        for i in 0..workers {
            let mine = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("http-worker-{i}"))
                .spawn(move || worker_loop(&mine));
            match spawned {
                Ok(worker) => threads.push(worker),
                Err(e) => {
                    self.stop.store(true, Ordering::SeqCst);
                    shared.queue.close();
                    join_all(threads);
                    return Err(e);
                }
            }
        }
        Poller::new(self.poll, self.listener, Arc::clone(&shared), rx).run();
        // Queued and in-flight requests are served; then the workers end.
        shared.queue.close();
        join_all(threads);
        log::info!(target: LOG_TARGET, "server stopped");
        Ok(())
    }
}

fn join_all(workers: Vec<thread::JoinHandle<()>>) {
    for worker in workers {
        if worker.join().is_err() {
            log::error!(target: LOG_TARGET, "an HTTP worker thread panicked");
        }
    }
}

fn worker_loop(shared: &Shared) {
    while let Some((job, permit)) = shared.queue.take() {
        // Handler panics are caught per request; this guards against our own bugs, so that
        // one bad connection cannot shrink the pool.
        let served = panic::catch_unwind(AssertUnwindSafe(|| {
            let kept = Exchange::serve(job, shared);
            // A bulk job's place is free before the connection's next request, which
            // this worker serves only if it moves no image data.
            drop(permit);
            let mut next = kept.and_then(|conn| shared.resume(conn));
            while let Some(job) = next {
                next = Exchange::serve(job, shared).and_then(|conn| shared.resume(conn));
            }
        }));
        if let Err(p) = served {
            log::error!(target: LOG_TARGET, "connection handling panicked: {}", panic_message(&*p));
        }
    }
}

/// A socket timeout; zero means none (the OS refuses a zero timeout).
fn timeout(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// The read and write timeouts of a connection's socket, set once when it is accepted.
pub(super) fn socket_timeouts(cfg: &ServerConfig) -> (Option<Duration>, Option<Duration>) {
    (timeout(body_read_timeout(cfg)), timeout(send_timeout(cfg)))
}

/// How long one read of a request body may block: a read that waits a whole rate window
/// for nothing is below any minimum rate, so the rate check gets to run at least once a
/// window.
fn body_read_timeout(cfg: &ServerConfig) -> Duration {
    within_window(
        cfg.read_timeout,
        cfg.client_body_min_rate,
        cfg.min_rate_window,
    )
}

/// How long one write of a response may block (see [`body_read_timeout`]).
fn send_timeout(cfg: &ServerConfig) -> Duration {
    within_window(cfg.write_timeout, cfg.send_min_rate, cfg.min_rate_window)
}

fn within_window(limit: Duration, rate: u64, window: Duration) -> Duration {
    if rate == 0 || window.is_zero() || (!limit.is_zero() && limit <= window) {
        limit
    } else {
        window
    }
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

/// The buffered read side of a connection in a worker. It starts with the bytes the
/// poller already read (the head) and gives back what it read past the request, so that
/// a pipelined next request is not lost when the connection returns to the poller.
struct ConnReader<'s> {
    stream: &'s TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl<'s> ConnReader<'s> {
    fn new(stream: &'s TcpStream, buf: Vec<u8>) -> Self {
        ConnReader {
            stream,
            buf,
            pos: 0,
        }
    }

    /// The bytes read and not yet consumed.
    fn buffer(&self) -> &[u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    /// The bytes read but not consumed; an empty buffer is freed, so that an idle
    /// connection costs no buffer.
    fn into_leftover(mut self) -> Vec<u8> {
        if self.pos >= self.buf.len() {
            return Vec::new();
        }
        self.buf.drain(..self.pos);
        self.buf
    }
}

impl Read for ConnReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Large reads of an empty buffer go straight to the socket (image bodies).
        if self.pos >= self.buf.len() && out.len() >= READ_BUF {
            return (&mut &*self.stream).read(out);
        }
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ConnReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.buf.len() {
            self.buf.resize(READ_BUF, 0);
            self.pos = 0;
            let n = match (&mut &*self.stream).read(&mut self.buf) {
                Ok(n) => n,
                Err(e) => {
                    self.buf.clear();
                    return Err(e);
                }
            };
            self.buf.truncate(n);
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

/// One request on one connection, served by one worker.
struct Exchange<'s> {
    stream: &'s TcpStream,
    reader: ConnReader<'s>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    shared: &'s Shared,
}

impl<'s> Exchange<'s> {
    /// Serves the request whose head is buffered in `job`; returns the connection when it
    /// can carry another request, else closes it.
    fn serve(job: Job, shared: &Shared) -> Option<Conn> {
        let Job {
            conn,
            head_deadline,
            ..
        } = job;
        let Conn {
            stream,
            buf,
            peer,
            local,
            slot,
        } = conn;
        let mut exchange = Exchange {
            stream: &stream,
            reader: ConnReader::new(&stream, buf),
            peer: Some(peer),
            local,
            shared,
        };
        match exchange.serve_request(head_deadline) {
            After::KeepAlive => {
                let buf = exchange.reader.into_leftover();
                Some(Conn {
                    stream,
                    buf,
                    peer,
                    local,
                    slot,
                })
            }
            After::Close { unread } => {
                exchange.close(unread);
                None
            }
        }
    }

    /// Reads one request and answers it.
    ///
    /// The poller hands over a connection once a blank line has arrived, so the head is
    /// normally all buffered; a head longer than the poller buffers is read on under the
    /// same head deadline.
    fn serve_request(&mut self, head_deadline: Instant) -> After {
        let started = Instant::now();
        let cfg = &self.shared.config;
        let limits = Limits {
            request_line: cfg.max_request_line,
            header_bytes: cfg.max_header_bytes,
            headers: cfg.max_headers,
            deadline: head_deadline,
        };
        let head = if poller::head_complete(self.reader.buffer(), 0) {
            head::read_head(&mut self.reader, &limits)
        } else {
            // The socket's read timeout is the body's: bounded by the head deadline here.
            let left = head_deadline.saturating_duration_since(started);
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let head = head::read_head(&mut self.reader, &limits);
            let _ = self
                .stream
                .set_read_timeout(timeout(body_read_timeout(cfg)));
            head
        };
        let mut head = match head {
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
        let mut state = BodyState::new(framing, expect_continue, cfg.max_header_bytes)
            .with_min_rate(cfg.client_body_min_rate, cfg.min_rate_window);
        let response = self.call_handler(head, &mut state);
        let body_finished = self.finish_body(&mut state);
        let plan = Plan {
            http10: head.http10,
            head_request: head.method == "HEAD",
            keep_alive: client_keeps
                && body_finished
                && !cfg.keepalive_timeout.is_zero()
                && !self.shared.stopping(),
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
    fn close(&mut self, unread: bool) {
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
        if !log::log_enabled!(target: LOG_TARGET, log::Level::Info) {
            return;
        }
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
