//! Writing responses: status line, headers, framing and the streamed body.
//!
//! The server, not the handler, owns `Content-Length`, `Transfer-Encoding`, `Connection` and
//! `Date`, because only the server knows the client's HTTP version, whether this is a HEAD
//! and whether the connection will be kept. Image bodies can be gigabytes, so a
//! [`Body::Reader`] or [`Body::File`] goes through one fixed buffer, never held whole; if
//! either ends early the connection is closed, so the client sees a short body
//! instead of a wrong one.
//!
//! Those two bodies also go through a [`RateGuard`] (`send_min_rate`): a client reading
//! slower than the rate is cut, the connection closed and the cut logged.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem;
use std::net::TcpStream;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::rate::RateGuard;
use super::{Body, Response, reason};

/// Room in front of each chunk for its size line (16 hex digits and CRLF).
const CHUNK_PREFIX: usize = 18;

/// How to frame one response.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    /// The request was HTTP/1.0 (no chunked responses; keep-alive must be announced).
    pub http10: bool,
    /// The request was HEAD: headers only.
    pub head_request: bool,
    /// The server means to keep the connection after this response.
    pub keep_alive: bool,
    /// Size of the buffer a streamed body goes through.
    pub buffer_size: usize,
    /// Slowest accepted sending of a reader or file body, in bytes/s averaged over
    /// `rate_window` of time spent in socket writes; 0 = no minimum.
    pub min_rate: u64,
    /// The window `min_rate` is averaged over.
    pub rate_window: Duration,
    /// Send file bodies with sendfile(2); else read and write them through one
    /// `file_buffer_size` buffer.
    pub sendfile: bool,
    /// Buffer for file bodies when `sendfile` is off (or the kernel refuses it); 0 means
    /// 1 MiB.
    pub file_buffer_size: usize,
}

/// What happened while sending.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outcome {
    /// The status sent (a handler's impossible status becomes 500).
    pub status: u16,
    /// Body bytes written (not counting headers or chunk framing).
    pub body_bytes: u64,
    /// Whether the connection may serve another request.
    pub keep_alive: bool,
}

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// No body may follow (1xx, 204, 304).
    Bodyless,
    Length(u64),
    Chunked,
    /// HTTP/1.0 with an unknown length: the body ends when the connection closes.
    CloseDelimited,
}

/// Sends `resp` on `stream` according to `plan`.
pub(super) fn send(stream: &TcpStream, resp: Response, plan: &Plan) -> Outcome {
    let status = checked_status(resp.status);
    let frame = frame_for(status, &resp, plan);
    let keep_alive = plan.keep_alive && frame != Frame::CloseDelimited;
    let mut head = HeadBuf::take();
    write_head(&mut head, status, &resp, frame, keep_alive, plan.http10);
    let mut out = stream;
    if plan.head_request || frame == Frame::Bodyless {
        let ok = out.write_all(&head).is_ok();
        return Outcome {
            status,
            body_bytes: 0,
            keep_alive: keep_alive && ok,
        };
    }
    let sent = match resp.body {
        Body::Empty => out.write_all(&head).map(|()| (0, true)),
        Body::Bytes(bytes) => {
            // One write for small bodies: no Nagle stall between head and body.
            head.extend_from_slice(&bytes);
            out.write_all(&head).map(|()| (bytes.len() as u64, true))
        }
        Body::Reader(reader, _) => out.write_all(&head).map(|()| {
            finished(stream_reader(
                &mut Sink::new(stream, plan),
                reader,
                frame,
                plan,
            ))
        }),
        Body::File(file, len) => out
            .write_all(&head)
            .map(|()| finished(stream_file(&mut Sink::new(stream, plan), file, len, plan))),
    };
    match sent {
        Ok((body_bytes, complete)) => Outcome {
            status,
            body_bytes,
            keep_alive: keep_alive && complete,
        },
        Err(e) => {
            log::debug!(target: super::server::LOG_TARGET, "writing response: {e}");
            Outcome {
                status,
                body_bytes: 0,
                keep_alive: false,
            }
        }
    }
}

/// A status a client can parse; a handler bug must not put garbage on the wire.
fn checked_status(status: u16) -> u16 {
    if (100..=999).contains(&status) {
        status
    } else {
        log::error!(target: super::server::LOG_TARGET, "handler returned status {status}; sending 500");
        500
    }
}

fn frame_for(status: u16, resp: &Response, plan: &Plan) -> Frame {
    if status < 200 || status == 204 || status == 304 {
        return Frame::Bodyless;
    }
    // A HEAD handler may state the length of what a GET would send without producing it.
    let declared = if plan.head_request {
        resp.header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
    } else {
        None
    };
    match declared.or(resp.body.len()) {
        Some(n) => Frame::Length(n),
        None if plan.http10 => Frame::CloseDelimited,
        None => Frame::Chunked,
    }
}

/// Headers the server sets itself; a handler's copies would contradict the framing.
fn server_owned(name: &str) -> bool {
    [
        "content-length",
        "transfer-encoding",
        "connection",
        "date",
        "keep-alive",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

/// A whole small response that closes the connection (the poller's 408 and 503): the same
/// head as [`send`] writes, for a caller that must not block and sends it itself.
pub(super) fn closing_response(resp: &Response) -> Vec<u8> {
    let body: &[u8] = match &resp.body {
        Body::Bytes(b) => b,
        _ => &[],
    };
    let mut bytes = Vec::new();
    write_head(
        &mut bytes,
        resp.status,
        resp,
        Frame::Length(body.len() as u64),
        false,
        false,
    );
    bytes.extend_from_slice(body);
    bytes
}

/// Largest response-head buffer a worker keeps for its next response.
const KEPT_HEAD_BUF: usize = 64 * 1024;

thread_local! {
    /// Each worker's response-head buffer. Image metadata makes heads of a kilobyte or
    /// more, and a fresh allocation of that size per request also made glibc's malloc
    /// sweep its free lists (`malloc_consolidate`) every time.
    static HEAD_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// This thread's [`HEAD_BUF`], emptied; given back when dropped unless it grew large (a
/// small body is appended to the head).
struct HeadBuf(Vec<u8>);

impl HeadBuf {
    fn take() -> HeadBuf {
        let mut buf = HEAD_BUF.take();
        buf.clear();
        HeadBuf(buf)
    }
}

impl Drop for HeadBuf {
    fn drop(&mut self) {
        if self.0.capacity() <= KEPT_HEAD_BUF {
            HEAD_BUF.set(mem::take(&mut self.0));
        }
    }
}

impl Deref for HeadBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for HeadBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

/// Appends the response head to `h` (empty).
fn write_head(
    h: &mut Vec<u8>,
    status: u16,
    resp: &Response,
    frame: Frame,
    keep_alive: bool,
    http10: bool,
) {
    // Sized once: image metadata makes heads of a kilobyte or more.
    let fields: usize = resp.all_headers().map(|(k, v)| k.len() + v.len() + 4).sum();
    h.reserve(fields + 128);
    // Written into the buffer: writing to a Vec cannot fail.
    let _ = write!(h, "HTTP/1.1 {status} {}\r\nDate: ", reason(status));
    with_http_date(|date| push_str(h, date));
    push_str(h, "\r\n");
    for (name, value) in resp.all_headers() {
        if server_owned(name) || !is_token(name) {
            continue;
        }
        push_header(h, name, value);
    }
    match frame {
        Frame::Length(n) => {
            let _ = write!(h, "Content-Length: {n}\r\n");
        }
        Frame::Chunked => push_header(h, "Transfer-Encoding", "chunked"),
        Frame::Bodyless | Frame::CloseDelimited => {}
    }
    if !keep_alive {
        push_header(h, "Connection", "close");
    } else if http10 {
        push_header(h, "Connection", "keep-alive");
    }
    h.extend_from_slice(b"\r\n");
}

fn push_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(s.as_bytes());
}

/// Appends `name: value`, turning control characters in the value into spaces: values can
/// come from image properties set through JSON, and a CR or LF there would let a client
/// forge response headers (response splitting).
fn push_header(h: &mut Vec<u8>, name: &str, value: &str) {
    let control = |b: u8| b.is_ascii_control() && b != b'\t';
    push_str(h, name);
    h.extend_from_slice(b": ");
    if value.bytes().any(control) {
        h.extend(value.bytes().map(|b| if control(b) { b' ' } else { b }));
    } else {
        h.extend_from_slice(value.as_bytes());
    }
    h.extend_from_slice(b"\r\n");
}

/// RFC 9110 token characters: anything else cannot be a header name.
pub(super) fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar)
}

/// One RFC 9110 `tchar` (also used to check chunk extensions and trailers).
pub(super) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// [`is_tchar`] of every byte, built once: every header name of every response is checked.
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// The payload bytes sent, and `Ok` when the whole body went out.
type Sent = (u64, io::Result<()>);

/// The response-log view of [`Sent`]: an incomplete body is noted here (a rate cut was
/// logged louder where it happened) and closes the connection.
fn finished((sent, result): Sent) -> (u64, bool) {
    if let Err(e) = &result {
        log::debug!(target: super::server::LOG_TARGET, "response body incomplete after {sent} bytes: {e}");
    }
    (sent, result.is_ok())
}

fn short_body() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "response body shorter than its length",
    )
}

/// The client's side of a body being sent: its socket, and the rate it must keep up.
struct Sink<'a> {
    stream: &'a TcpStream,
    guard: RateGuard,
    /// The socket is non-blocking (sendfile): waits for room are `poll`s.
    nonblocking: bool,
}

impl<'a> Sink<'a> {
    fn new(stream: &'a TcpStream, plan: &Plan) -> Self {
        Sink {
            stream,
            guard: RateGuard::new("response body", plan.min_rate, plan.rate_window),
            nonblocking: false,
        }
    }

    /// Writes all of `buf`. Each `write` blocks at most `write_timeout` (`SO_SNDTIMEO`,
    /// then a partial count or `EAGAIN`), and the guard is checked after each.
    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let started = Instant::now();
            let result = (&mut &*self.stream).write(buf);
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    self.account(n, started)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Only while the socket is non-blocking (a sendfile that fell back).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.nonblocking => {
                    self.wait_writable()?;
                }
                Err(e) => return Err(self.failed(e, started)),
            }
        }
        Ok(())
    }

    /// One sendfile(2) of up to `want` bytes from the file's position; 0 at its end.
    ///
    /// The socket is non-blocking meanwhile (see [`stream_file`]): a blocking sendfile
    /// moves its data through a pipe in pieces and may wait `SO_SNDTIMEO` for each, so
    /// against a client that stopped reading one call can last many timeouts (seen: 6 s
    /// with a 2 s timeout) and the rate check would come too late. Here sendfile takes what
    /// the socket buffer has room for, and the wait for room is a `poll` of at most the
    /// write timeout, counted by the guard.
    fn sendfile(&mut self, file: &File, want: usize) -> io::Result<usize> {
        loop {
            let started = Instant::now();
            match rustix::fs::sendfile(self.stream, file, None, want) {
                Ok(n) => {
                    self.account(n, started)?;
                    return Ok(n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => self.wait_writable()?,
                Err(e) => return Err(self.failed(e.into(), started)),
            }
        }
    }

    /// Waits until the socket takes more data, at most the write timeout.
    fn wait_writable(&mut self) -> io::Result<()> {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let started = Instant::now();
        let limit = self.stream.write_timeout().ok().flatten();
        let limit = limit.map(|d| Timespec {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: d.subsec_nanos().into(),
        });
        let mut fds = [PollFd::new(self.stream, PollFlags::OUT)];
        loop {
            match rustix::event::poll(&mut fds, limit.as_ref()) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "client stopped reading");
                    return Err(self.failed(e, started));
                }
                Ok(_) => return self.account(0, started),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn account(&mut self, n: usize, started: Instant) -> io::Result<()> {
        let result = self.guard.account(n as u64, started.elapsed());
        result.map_err(|cut| self.cut(cut))
    }

    /// A failed socket call: a timeout (`EAGAIN` after `write_timeout`) is a cut as
    /// before, named by the guard when the stall also put the body below the rate.
    fn failed(&mut self, e: io::Error, started: Instant) -> io::Error {
        let timeout = matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        if !timeout {
            return e;
        }
        match self.guard.account(0, started.elapsed()) {
            Err(cut) => self.cut(cut),
            Ok(()) => e,
        }
    }

    fn cut(&self, cut: io::Error) -> io::Error {
        let peer = self.stream.peer_addr();
        let peer = peer.map_or_else(|_| "-".to_string(), |p| p.to_string());
        log::warn!(target: super::server::LOG_TARGET, "closing the connection to {peer}: {cut}");
        cut
    }
}

/// Streams a reader body.
fn stream_reader(
    sink: &mut Sink<'_>,
    mut reader: Box<dyn Read + Send>,
    frame: Frame,
    plan: &Plan,
) -> Sent {
    let size = plan.buffer_size.max(1);
    let len = match frame {
        Frame::Length(n) => n,
        Frame::CloseDelimited => u64::MAX,
        Frame::Chunked => return copy_chunked(sink, &mut reader, size),
        Frame::Bodyless => return (0, Ok(())),
    };
    copy_exact(sink, &mut reader, len, &mut vec![0u8; size])
}

/// Copies `len` bytes (or to the end when `len` is `u64::MAX`) through `buf`, reused for
/// every read and write.
fn copy_exact(sink: &mut Sink<'_>, reader: &mut dyn Read, len: u64, buf: &mut [u8]) -> Sent {
    let size = buf.len();
    let mut sent = 0u64;
    while sent < len {
        let want = usize::try_from(len - sent).map_or(size, |left| left.min(size));
        let n = match read_retrying(reader, &mut buf[..want]) {
            Ok(0) if len == u64::MAX => return (sent, Ok(())),
            Ok(0) => return (sent, Err(short_body())),
            Ok(n) => n,
            Err(e) => return (sent, Err(e)),
        };
        if let Err(e) = sink.write_all(&buf[..n]) {
            return (sent, Err(e));
        }
        sent += n as u64;
    }
    (sent, Ok(()))
}

/// Sends a body of unknown length as chunks. Each chunk's size line and CRLF are written
/// into the same buffer around the data, so a chunk is one `write` and one buffer serves
/// the whole body.
fn copy_chunked(sink: &mut Sink<'_>, reader: &mut dyn Read, size: usize) -> Sent {
    let mut buf = vec![0u8; CHUNK_PREFIX + size + 2];
    let mut sent = 0u64;
    loop {
        let n = match read_retrying(reader, &mut buf[CHUNK_PREFIX..CHUNK_PREFIX + size]) {
            Ok(0) => return (sent, sink.write_all(b"0\r\n\r\n")),
            Ok(n) => n,
            // No terminating chunk: the client sees an incomplete body, as it should.
            Err(e) => return (sent, Err(e)),
        };
        let line = format!("{n:x}\r\n");
        let start = CHUNK_PREFIX - line.len();
        buf[start..CHUNK_PREFIX].copy_from_slice(line.as_bytes());
        buf[CHUNK_PREFIX + n..CHUNK_PREFIX + n + 2].copy_from_slice(b"\r\n");
        if let Err(e) = sink.write_all(&buf[start..CHUNK_PREFIX + n + 2]) {
            return (sent, Err(e));
        }
        sent += n as u64;
    }
}

fn read_retrying(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!(target: super::server::LOG_TARGET, "response body failed: {e}");
                return Err(e);
            }
            ok => return ok,
        }
    }
}

/// The buffer of a file body when the plan gives none (`file_buffer_size`'s default).
const DEFAULT_FILE_BUFFER: usize = 1024 * 1024;

/// Smallest and largest sendfile(2) call, and the time one call should take: small enough
/// for the rate guard to look at a slow client often, large enough that a fast one costs
/// few system calls (8 MiB is about 3 ms on loopback).
const MIN_PIECE: usize = 64 * 1024;
const MAX_PIECE: usize = 8 * 1024 * 1024;
const PIECE_TIME: Duration = Duration::from_millis(250);

/// The size of the next sendfile(2) call after one moved `n` bytes in `spent`: what the
/// client took in [`PIECE_TIME`] at that speed, within the bounds.
fn next_piece(n: usize, spent: Duration) -> usize {
    let nanos = spent.as_nanos().max(1);
    let fits = (n as u128).saturating_mul(PIECE_TIME.as_nanos()) / nanos;
    usize::try_from(fits).map_or(MAX_PIECE, |p| p.clamp(MIN_PIECE, MAX_PIECE))
}

/// Sends `len` bytes of `file`, from its position, with sendfile(2) (or through one
/// `file_buffer_size` buffer when the plan says so).
///
/// sendfile: the kernel copies page-cache pages to the socket, with no user-space buffer
/// and no per-chunk system call pair. Not `std::io::copy`: since Rust 1.70 std's copy
/// specialisation refuses sendfile from a regular file into a socket (pages still queued in
/// the socket would show later writes to the file), and falls back to an 8 KiB loop. That
/// hazard does not apply here: image files are written once into a temp file and renamed
/// into place, never modified afterwards, and an unlink keeps the open inode alive.
/// rustix's `sendfile` is a safe wrapper, so the crate stays free of `unsafe`. If the
/// kernel refuses (EINVAL/ENOSYS on an odd filesystem), the body is streamed through the
/// buffer instead.
///
/// One sendfile call is not bounded by `SO_SNDTIMEO` as a whole (the kernel moves it a
/// pipe-full at a time, each with a wait of its own), so calls are sized to what the client took in about
/// [`PIECE_TIME`] and the rate is checked between them.
fn stream_file(sink: &mut Sink<'_>, file: File, len: u64, plan: &Plan) -> Sent {
    // The file is read front to back once: Linux doubles the read-ahead for it. Only
    // advice, so a refusal changes nothing.
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
    if !plan.sendfile {
        return copy_file(sink, &file, len, plan);
    }
    if let Err(e) = sink.stream.set_nonblocking(true) {
        return (0, Err(e));
    }
    sink.nonblocking = true;
    let result = sendfile_all(sink, &file, len, plan);
    sink.nonblocking = false;
    // The connection may carry another request, read with blocking reads.
    match (result, sink.stream.set_nonblocking(false)) {
        ((sent, Ok(())), Err(e)) => (sent, Err(e)),
        (result, _) => result,
    }
}

fn sendfile_all(sink: &mut Sink<'_>, file: &File, len: u64, plan: &Plan) -> Sent {
    let mut sent = 0u64;
    let mut piece = MAX_PIECE / 8;
    while sent < len {
        let want = usize::try_from(len - sent).map_or(piece, |left| left.min(piece));
        let started = Instant::now();
        match sink.sendfile(file, want) {
            Ok(0) => return (sent, Err(short_body())), // shorter than its record says
            Ok(n) => {
                sent += n as u64;
                piece = next_piece(n, started.elapsed());
            }
            Err(e) if sent == 0 && kernel_refused(&e) => return copy_file(sink, file, len, plan),
            Err(e) => return (sent, Err(e)),
        }
    }
    (sent, Ok(()))
}

/// sendfile(2) does not work for this file or socket (EINVAL/ENOSYS).
fn kernel_refused(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(e), Some(Errno::INVAL | Errno::NOSYS))
}

/// Sends `len` bytes of `file` through one `file_buffer_size` buffer: one read and one
/// write per buffer-full, no allocation after the first.
fn copy_file(sink: &mut Sink<'_>, mut file: &File, len: u64, plan: &Plan) -> Sent {
    let size = match plan.file_buffer_size {
        0 => DEFAULT_FILE_BUFFER,
        n => n,
    };
    let mut buf = vec![0u8; size];
    copy_exact(sink, &mut file, len, &mut buf)
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An RFC 1123 date (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP requires in `Date`.
/// Calls `f` with the `Date` header value of now. The text changes once a second, so each
/// thread keeps the last one it formatted.
fn with_http_date(f: impl FnOnce(&str)) {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            *last = (secs, http_date(now));
        }
        f(&last.1);
    });
}

pub(super) fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (y, m, d) = crate::timeutil::civil_from_days(days as i64);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    format!(
        "{weekday}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        MONTHS[(m - 1) as usize],
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests;
