//! The poller: one thread that accepts connections and holds every connection that is not
//! in a request.
//!
//! ```text
//!  accept ──► poller (epoll) ──complete head──► work queue ──► workers (blocking I/O)
//!               ▲   │ idle / half-sent heads          light │ bulk (≤ workers − reserve)
//!               │   └─ deadlines: 408, idle close           │
//!               └────────── keep-alive connection ◄─────────┘
//! ```
//!
//! A connection costs a worker only while a request is served: a client that opens a
//! socket and says nothing, sends its head a byte at a time, or keeps a pooled connection
//! idle waits here, in one epoll set, at the price of a table entry (its buffer is
//! allocated only once bytes arrive). Heads are read with non-blocking `recv` into the
//! connection's buffer; when the blank line ending the head has arrived (or the buffer holds
//! more than any valid head) the connection leaves the epoll set and goes to the work
//! queue. Workers give keep-alive connections back through a channel and a [`Waker`].
//!
//! Deadlines are kept in two queues ordered by construction (each kind of deadline has one
//! fixed length, so later entries never expire earlier), with a generation number per
//! entry so that a connection that moved on is skipped in O(1) instead of searched for.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::net::{RecvFlags, SendFlags};

use super::Response;
use super::pool::{Conn, Job, OverLimit, Slot};
use super::server::{LOG_TARGET, Shared};
use super::write::closing_response;

/// The listener's token.
pub(super) const LISTENER: Token = Token(0);
/// The token of the [`mio::Waker`] that workers and the shutdown handle ring.
pub(super) const WAKER: Token = Token(1);
/// Connection `i` of the table has token `FIRST + i`.
const FIRST: usize = 2;

/// Bytes read from a socket at a time while a head arrives.
const SCRATCH: usize = 8 * 1024;

/// After a failing `accept` (out of descriptors), how long to wait before the next try.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// How long a connection that got a 503 or 408 is kept after the reply, reading and
/// dropping what the client still sends: closing at once would answer that data with a
/// reset, and a client that is still writing its request would see a broken pipe instead
/// of the reply (Apache's and nginx's "lingering close").
const LINGER: Duration = Duration::from_secs(2);

/// Most connections lingering at once; beyond, refused connections are closed at once, so
/// that a flood of refused connections cannot hold descriptors.
const MAX_LINGERING: usize = 1024;

/// Most bytes read and dropped from one lingering connection.
const LINGER_BYTES: usize = 64 * 1024;

/// What a parked connection waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// A new connection, no byte yet: closed silently at its head deadline.
    New,
    /// Between keep-alive requests, no byte yet: closed silently at its idle deadline.
    Idle,
    /// Part of a head has arrived: 408 at the head deadline.
    Head,
    /// Answered (503 or 408) and shut down for writing: what arrives is dropped until the
    /// client closes or the linger time ends.
    Closing,
}

struct Entry {
    conn: Conn,
    waiting: Waiting,
    deadline: Instant,
    generation: u64,
    /// Bytes dropped while `Closing`.
    dropped: usize,
}

/// A deadline queue entry: when, which table slot, and which life of that slot.
type Timer = (Instant, usize, u64);

/// Refusals are logged at most once a second, with a count: a flood of connections must
/// not become a flood of log lines.
struct RefusalLog {
    since: Instant,
    count: u64,
    last_reason: &'static str,
}

impl RefusalLog {
    fn note(&mut self, now: Instant, peer: SocketAddr, reason: &'static str) {
        self.count += 1;
        self.last_reason = reason;
        if now.duration_since(self.since) >= Duration::from_secs(1) {
            log::warn!(
                target: LOG_TARGET,
                "refused {} new connection(s) with 503 in the last {} s (latest {peer}: {reason})",
                self.count,
                now.duration_since(self.since).as_secs().max(1)
            );
            self.since = now;
            self.count = 0;
        }
    }
}

/// The poller thread's state.
pub(super) struct Poller {
    poll: Poll,
    listener: TcpListener,
    shared: Arc<Shared>,
    returns: Receiver<Conn>,
    table: Vec<Option<Entry>>,
    free: Vec<usize>,
    idle_timers: VecDeque<Timer>,
    head_timers: VecDeque<Timer>,
    linger_timers: VecDeque<Timer>,
    lingering: usize,
    generation: u64,
    accept_paused: Option<Instant>,
    refusals: RefusalLog,
}

impl Poller {
    /// A poller over `listener` (already registered with `poll` as [`LISTENER`]).
    pub(super) fn new(
        poll: Poll,
        listener: TcpListener,
        shared: Arc<Shared>,
        returns: Receiver<Conn>,
    ) -> Poller {
        Poller {
            poll,
            listener,
            shared,
            returns,
            table: Vec::new(),
            free: Vec::new(),
            idle_timers: VecDeque::new(),
            head_timers: VecDeque::new(),
            linger_timers: VecDeque::new(),
            lingering: 0,
            generation: 0,
            accept_paused: None,
            refusals: RefusalLog {
                since: Instant::now(),
                count: 0,
                last_reason: "",
            },
        }
    }

    /// Runs until the server stops, then closes every parked connection.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.shared.stopping() {
            let timeout = self.next_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!(target: LOG_TARGET, "epoll_wait failed: {e}");
                    std::thread::sleep(ACCEPT_PAUSE);
                }
                continue;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(t) => self.on_readable(t - FIRST),
                }
            }
            self.take_returns();
            self.expire(Instant::now());
        }
        let parked = self.table.iter().flatten().count();
        log::info!(target: LOG_TARGET, "closing {parked} idle connection(s)");
        self.table.clear();
    }

    /// How long epoll may sleep: until the earliest deadline.
    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        [
            self.idle_timers.front().map(|t| t.0),
            self.head_timers.front().map(|t| t.0),
            self.linger_timers.front().map(|t| t.0),
            self.accept_paused,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|when| when.saturating_duration_since(now) + Duration::from_millis(1))
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    // Out of descriptors: edge-triggered epoll will not tell again about
                    // the connections still waiting, so try again after a pause; an idle
                    // connection makes room meanwhile.
                    log::warn!(target: LOG_TARGET, "accept failed: {e}");
                    self.evict_idle();
                    self.accept_paused = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Counts a new connection in and parks it, or refuses it with 503 when a limit is
    /// reached. At `max_connections` the oldest idle keep-alive connection is closed first,
    /// so that a new client is not refused for the sake of an idle one.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let cfg = &self.shared.config;
        let (max, per_client) = (cfg.max_connections, cfg.max_connections_per_client);
        let tracker = &self.shared.tracker;
        let mut admitted = tracker.admit(peer.ip(), max, per_client);
        if admitted.as_ref().err() == Some(&OverLimit::Total) && self.evict_idle() {
            admitted = self.shared.tracker.admit(peer.ip(), max, per_client);
        }
        match admitted {
            Ok(slot) => self.park_new(stream, peer, slot),
            Err(over) => {
                let reason = match over {
                    OverLimit::Total => "max_connections reached",
                    OverLimit::PerClient => "max_connections_per_client reached",
                };
                self.refusals.note(Instant::now(), peer, reason);
                refuse_now(&stream, 503, "too many connections, try again\n");
                if self.lingering < MAX_LINGERING {
                    let conn = Conn {
                        stream,
                        buf: Vec::new(),
                        peer,
                        local: None,
                        slot: None,
                    };
                    self.insert(conn, Waiting::Closing, Instant::now() + LINGER);
                }
            }
        }
    }

    fn park_new(&mut self, stream: TcpStream, peer: SocketAddr, slot: Slot) {
        // Socket options are set once per connection, not per request: the poller reads
        // with MSG_DONTWAIT whatever the timeouts, and workers find them set.
        let _ = stream.set_nodelay(true);
        let (read, write) = super::server::socket_timeouts(&self.shared.config);
        let _ = stream.set_read_timeout(read);
        let _ = stream.set_write_timeout(write);
        let conn = Conn {
            local: stream.local_addr().ok(),
            stream,
            buf: Vec::new(),
            peer,
            slot: Some(slot),
        };
        let deadline = Instant::now() + self.shared.config.client_header_timeout;
        self.insert(conn, Waiting::New, deadline);
    }

    /// Takes back the keep-alive connections that workers finished with.
    fn take_returns(&mut self) {
        while let Ok(conn) = self.returns.try_recv() {
            let now = Instant::now();
            let cfg = &self.shared.config;
            let (waiting, deadline) = if conn.buf.is_empty() {
                (Waiting::Idle, now + cfg.keepalive_timeout)
            } else {
                (Waiting::Head, now + cfg.client_header_timeout)
            };
            self.insert(conn, waiting, deadline);
        }
    }

    /// Puts a connection into the table and the epoll set, with its deadline.
    fn insert(&mut self, conn: Conn, waiting: Waiting, deadline: Instant) {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.table.push(None);
            self.table.len() - 1
        });
        let fd = conn.stream.as_raw_fd();
        // Adding a socket that already holds data reports it at once: nothing is missed
        // between a worker's last read and this registration.
        let registered = self.poll.registry().register(
            &mut SourceFd(&fd),
            Token(idx + FIRST),
            Interest::READABLE,
        );
        if let Err(e) = registered {
            log::warn!(target: LOG_TARGET, "cannot watch connection from {}: {e}", conn.peer);
            self.free.push(idx);
            return;
        }
        self.generation += 1;
        self.table[idx] = Some(Entry {
            conn,
            waiting,
            deadline,
            generation: self.generation,
            dropped: 0,
        });
        if waiting == Waiting::Closing {
            self.lingering += 1;
        }
        self.push_timer(idx, waiting, deadline);
    }

    fn push_timer(&mut self, idx: usize, waiting: Waiting, deadline: Instant) {
        let timer = (deadline, idx, self.generation);
        match waiting {
            Waiting::Idle => self.idle_timers.push_back(timer),
            Waiting::New | Waiting::Head => self.head_timers.push_back(timer),
            Waiting::Closing => self.linger_timers.push_back(timer),
        }
    }

    /// Reads what arrived on connection `idx` until the socket is drained or a head is
    /// complete.
    fn on_readable(&mut self, idx: usize) {
        let cap = head_capacity(&self.shared);
        let mut scratch = [0u8; SCRATCH];
        loop {
            let Some(Some(entry)) = self.table.get_mut(idx) else {
                return;
            };
            if entry.waiting == Waiting::Closing {
                return self.drop_input(idx, &mut scratch);
            }
            let room = (cap + 1).saturating_sub(entry.conn.buf.len()).min(SCRATCH);
            match rustix::net::recv(
                &entry.conn.stream,
                &mut scratch[..room],
                RecvFlags::DONTWAIT,
            ) {
                Ok((0, _)) => return self.close(idx),
                Ok((n, _)) => {
                    if self.received(idx, &scratch[..n], cap) {
                        return;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => return self.close(idx),
            }
        }
    }

    /// Reads and drops what a lingering connection sends; closes it at its end, on an
    /// error, or past [`LINGER_BYTES`].
    fn drop_input(&mut self, idx: usize, scratch: &mut [u8]) {
        loop {
            let Some(Some(entry)) = self.table.get_mut(idx) else {
                return;
            };
            match rustix::net::recv(&entry.conn.stream, &mut *scratch, RecvFlags::DONTWAIT) {
                Ok((0, _)) => return self.close(idx),
                Ok((n, _)) => {
                    entry.dropped += n;
                    if entry.dropped > LINGER_BYTES {
                        return self.close(idx);
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => return self.close(idx),
            }
        }
    }

    /// Adds bytes to a connection's head buffer; true when the connection left the table
    /// (dispatched).
    fn received(&mut self, idx: usize, bytes: &[u8], cap: usize) -> bool {
        let Some(Some(entry)) = self.table.get_mut(idx) else {
            return true;
        };
        let searched = entry.conn.buf.len().saturating_sub(3);
        entry.conn.buf.extend_from_slice(bytes);
        let searched = if strip_blank_lines(&mut entry.conn.buf) {
            0
        } else {
            searched
        };
        if entry.conn.buf.is_empty() {
            return false;
        }
        if entry.waiting == Waiting::Idle {
            // The head deadline runs from its first byte; the idle timer entry goes stale.
            entry.waiting = Waiting::Head;
            entry.deadline = Instant::now() + self.shared.config.client_header_timeout;
            self.generation += 1;
            entry.generation = self.generation;
            let deadline = entry.deadline;
            self.push_timer(idx, Waiting::Head, deadline);
        } else if entry.waiting == Waiting::New {
            entry.waiting = Waiting::Head;
        }
        let Some(Some(entry)) = self.table.get(idx) else {
            return true;
        };
        if head_complete(&entry.conn.buf, searched) || entry.conn.buf.len() > cap {
            self.dispatch(idx);
            return true;
        }
        false
    }

    /// Hands connection `idx` to the workers: its head is in its buffer.
    fn dispatch(&mut self, idx: usize) {
        let Some(entry) = self.table.get_mut(idx).and_then(Option::take) else {
            return;
        };
        self.free.push(idx);
        let fd = entry.conn.stream.as_raw_fd();
        if let Err(e) = self.poll.registry().deregister(&mut SourceFd(&fd)) {
            log::warn!(target: LOG_TARGET, "cannot unwatch connection from {}: {e}", entry.conn.peer);
            return;
        }
        let bulk = self.shared.moves_data(&entry.conn.buf);
        let job = Job {
            conn: entry.conn,
            head_deadline: entry.deadline,
            bulk,
        };
        // A closed queue means we are stopping: the connection is closed.
        self.shared.queue.push(job);
    }

    /// Closes connection `idx` (closing the socket also takes it out of the epoll set).
    fn close(&mut self, idx: usize) {
        if let Some(place) = self.table.get_mut(idx)
            && let Some(entry) = place.take()
        {
            if entry.waiting == Waiting::Closing {
                self.lingering -= 1;
            }
            self.free.push(idx);
        }
    }

    /// Turns connection `idx`, just answered with an error, into a lingering one.
    fn linger(&mut self, idx: usize) {
        if self.lingering >= MAX_LINGERING {
            return self.close(idx);
        }
        let Some(Some(entry)) = self.table.get_mut(idx) else {
            return;
        };
        self.generation += 1;
        self.lingering += 1;
        entry.waiting = Waiting::Closing;
        entry.deadline = Instant::now() + LINGER;
        entry.generation = self.generation;
        let deadline = entry.deadline;
        self.push_timer(idx, Waiting::Closing, deadline);
    }

    /// Closes the connections whose deadline has passed: 408 for a half-sent head.
    fn expire(&mut self, now: Instant) {
        while let Some((idx, generation)) = due(&mut self.head_timers, now) {
            if let Some(entry) = self.live(idx, generation) {
                if entry.waiting == Waiting::Head {
                    let peer = entry.conn.peer;
                    log::info!(
                        target: LOG_TARGET,
                        "- - 408 0 client_header_timeout: request head incomplete {peer}"
                    );
                    refuse_now(
                        &entry.conn.stream,
                        408,
                        "request head not received in time\n",
                    );
                    self.linger(idx);
                } else {
                    self.close(idx);
                }
            }
        }
        while let Some((idx, generation)) = due(&mut self.linger_timers, now) {
            self.close_if_live(idx, generation);
        }
        while let Some((idx, generation)) = due(&mut self.idle_timers, now) {
            self.close_if_live(idx, generation);
        }
        if self.accept_paused.is_some_and(|t| t <= now) {
            self.accept_paused = None;
            self.accept_all();
        }
    }

    fn close_if_live(&mut self, idx: usize, generation: u64) {
        if self.live(idx, generation).is_some() {
            self.close(idx);
        }
    }

    /// The entry at `idx` if it is still the life that `generation` names.
    fn live(&self, idx: usize, generation: u64) -> Option<&Entry> {
        self.table
            .get(idx)
            .and_then(Option::as_ref)
            .filter(|e| e.generation == generation)
    }

    /// Closes the longest-idle keep-alive connection; false when there is none.
    fn evict_idle(&mut self) -> bool {
        while let Some((_, idx, generation)) = self.idle_timers.pop_front() {
            if self
                .live(idx, generation)
                .is_some_and(|e| e.waiting == Waiting::Idle)
            {
                self.close(idx);
                return true;
            }
        }
        false
    }
}

/// Pops the first timer of `timers` if it is due.
fn due(timers: &mut VecDeque<Timer>, now: Instant) -> Option<(usize, u64)> {
    let &(when, idx, generation) = timers.front()?;
    if when > now {
        return None;
    }
    timers.pop_front();
    Some((idx, generation))
}

/// The most head bytes a connection may buffer here; beyond, the worker's head reader
/// answers 414 or 431 from what is buffered.
fn head_capacity(shared: &Shared) -> usize {
    let cfg = &shared.config;
    cfg.max_request_line
        .saturating_add(cfg.max_header_bytes)
        .saturating_add(8)
}

/// Drops empty lines before a request line (allowed by RFC 9112 §2.2, e.g. a stray CRLF
/// after a body), so that they cannot look like the blank line that ends a head. True when
/// something was dropped.
pub(super) fn strip_blank_lines(buf: &mut Vec<u8>) -> bool {
    let blank = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    buf.drain(..blank);
    blank > 0
}

/// True when `buf` holds a blank line (the end of a head), looking from `from` on.
pub(super) fn head_complete(buf: &[u8], from: usize) -> bool {
    head_end(buf, from).is_some()
}

/// Where the head in `buf` ends, just past its blank line (`\n\n` or `\n\r\n`), looking
/// from `from`.
pub(super) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.min(buf.len());
    buf[start..]
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .find_map(|(i, _)| match &buf[start + i + 1..] {
            [b'\n', ..] => Some(start + i + 2),
            [b'\r', b'\n', ..] => Some(start + i + 3),
            _ => None,
        })
}

/// Answers a connection from the poller, which must never block: the reply fits any send
/// buffer and is sent without waiting; what the client already sent is read so that
/// closing sends FIN, not a reset that could destroy the reply before the client reads it.
pub(super) fn refuse_now(stream: &TcpStream, status: u16, message: &str) {
    let mut resp = Response::text(status, message);
    if status == 503 {
        resp = resp.with_header("Retry-After", "1");
    }
    let reply = closing_response(&resp);
    let _ = rustix::net::send(stream, &reply, SendFlags::DONTWAIT);
    let mut sink = [0u8; 4096];
    let _ = rustix::net::recv(stream, &mut sink[..], RecvFlags::DONTWAIT);
    let _ = stream.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_is_found_with_either_line_ending() {
        assert!(head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0));
        assert!(head_complete(b"GET / HTTP/1.1\nHost: a\n\n", 0));
        assert!(head_complete(b"GET / HTTP/1.0\r\n\r\n", 0));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n", 0));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0));
        // The search starts a few bytes before the new data, so a split blank line counts.
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(head_complete(buf, buf.len() - 4));
        assert_eq!(head_end(buf, 0), Some(buf.len()));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nbody", 0), Some(24));
    }
}
