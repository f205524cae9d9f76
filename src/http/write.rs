//! Writing responses: status line, headers, framing and the streamed body.
//!
//! The server, not the handler, owns `Content-Length`, `Transfer-Encoding`, `Connection` and
//! `Date`, because only the server knows the client's HTTP version, whether this is a HEAD
//! and whether the connection will be kept. Image bodies can be gigabytes, so a
//! [`Body::Reader`] or [`Body::File`] goes through one fixed buffer, never held whole; if
//! either ends early the connection is closed, so the client sees a short body
//! instead of a wrong one.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{SystemTime, UNIX_EPOCH};

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
    let mut head = head_bytes(status, &resp.headers, frame, keep_alive, plan.http10);
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
        Body::Reader(reader, _) => out
            .write_all(&head)
            .map(|()| stream_reader(stream, reader, frame, plan.buffer_size)),
        Body::File(file, len) => out
            .write_all(&head)
            .map(|()| stream_file(stream, file, len, plan.buffer_size)),
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

fn head_bytes(
    status: u16,
    headers: &[(String, String)],
    frame: Frame,
    keep_alive: bool,
    http10: bool,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(256);
    push_str(&mut h, &format!("HTTP/1.1 {status} {}\r\n", reason(status)));
    push_header(&mut h, "Date", &http_date(SystemTime::now()));
    for (name, value) in headers {
        if server_owned(name) || !is_token(name) {
            continue;
        }
        push_header(&mut h, name, value);
    }
    match frame {
        Frame::Length(n) => push_header(&mut h, "Content-Length", &n.to_string()),
        Frame::Chunked => push_header(&mut h, "Transfer-Encoding", "chunked"),
        Frame::Bodyless | Frame::CloseDelimited => {}
    }
    if !keep_alive {
        push_header(&mut h, "Connection", "close");
    } else if http10 {
        push_header(&mut h, "Connection", "keep-alive");
    }
    h.extend_from_slice(b"\r\n");
    h
}

fn push_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(s.as_bytes());
}

/// Appends `name: value`, turning control characters in the value into spaces: values can
/// come from image properties set through JSON, and a CR or LF there would let a client
/// forge response headers (response splitting).
fn push_header(h: &mut Vec<u8>, name: &str, value: &str) {
    push_str(h, name);
    h.extend_from_slice(b": ");
    h.extend(value.bytes().map(|b| {
        if b.is_ascii_control() && b != b'\t' {
            b' '
        } else {
            b
        }
    }));
    h.extend_from_slice(b"\r\n");
}

/// RFC 9110 token characters: anything else cannot be a header name.
pub(super) fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar)
}

/// One RFC 9110 `tchar` (also used to check chunk extensions and trailers).
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Streams a reader body; returns the payload bytes sent and whether the body was complete.
fn stream_reader(
    stream: &TcpStream,
    mut reader: Box<dyn Read + Send>,
    frame: Frame,
    buffer_size: usize,
) -> (u64, bool) {
    let size = buffer_size.max(1);
    match frame {
        Frame::Length(n) => copy_exact(stream, &mut reader, n, size),
        Frame::Chunked => copy_chunked(stream, &mut reader, size),
        Frame::CloseDelimited => copy_exact(stream, &mut reader, u64::MAX, size),
        Frame::Bodyless => (0, true),
    }
}

/// Copies `len` bytes (or to the end when `len` is `u64::MAX`) through one buffer.
fn copy_exact(stream: &TcpStream, reader: &mut dyn Read, len: u64, size: usize) -> (u64, bool) {
    let mut buf = vec![0u8; size];
    let mut out = stream;
    let mut sent = 0u64;
    while sent < len {
        let want = usize::try_from(len - sent).map_or(size, |left| left.min(size));
        let n = match read_retrying(reader, &mut buf[..want]) {
            Ok(0) => return (sent, len == u64::MAX),
            Ok(n) => n,
            Err(_) => return (sent, false),
        };
        if out.write_all(&buf[..n]).is_err() {
            return (sent, false);
        }
        sent += n as u64;
    }
    (sent, true)
}

/// Sends a body of unknown length as chunks. Each chunk's size line and CRLF are written
/// into the same buffer around the data, so a chunk is one `write` and one buffer serves
/// the whole body.
fn copy_chunked(stream: &TcpStream, reader: &mut dyn Read, size: usize) -> (u64, bool) {
    let mut buf = vec![0u8; CHUNK_PREFIX + size + 2];
    let mut out = stream;
    let mut sent = 0u64;
    loop {
        let n = match read_retrying(reader, &mut buf[CHUNK_PREFIX..CHUNK_PREFIX + size]) {
            Ok(0) => return (sent, out.write_all(b"0\r\n\r\n").is_ok()),
            Ok(n) => n,
            // No terminating chunk: the client sees an incomplete body, as it should.
            Err(_) => return (sent, false),
        };
        let line = format!("{n:x}\r\n");
        let start = CHUNK_PREFIX - line.len();
        buf[start..CHUNK_PREFIX].copy_from_slice(line.as_bytes());
        buf[CHUNK_PREFIX + n..CHUNK_PREFIX + n + 2].copy_from_slice(b"\r\n");
        if out.write_all(&buf[start..CHUNK_PREFIX + n + 2]).is_err() {
            return (sent, false);
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

/// Sends `len` bytes of `file` with sendfile(2): the kernel copies page-cache pages to the
/// socket, with no user-space buffer and no per-chunk system call pair.
///
/// Not `std::io::copy`: since Rust 1.70 std's copy specialisation refuses sendfile from a
/// regular file into a socket (pages still queued in the socket would show later writes to
/// the file), and falls back to an 8 KiB loop. That hazard does not apply here: image files
/// are written once into a temp file and renamed into place, never modified afterwards, and
/// an unlink keeps the open inode alive. rustix's `sendfile` is a safe wrapper, so the crate
/// stays free of `unsafe`. If the kernel refuses (EINVAL/ENOSYS on an odd filesystem), the
/// rest is streamed through the fixed buffer.
fn stream_file(stream: &TcpStream, mut file: File, len: u64, size: usize) -> (u64, bool) {
    let mut sent = 0u64;
    while sent < len {
        let want = usize::try_from(len - sent).map_or(1 << 30, |left| left.min(1 << 30));
        match rustix::fs::sendfile(stream, &file, None, want) {
            Ok(0) => return (sent, false), // the file is shorter than its record says
            Ok(n) => sent += n as u64,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) if sent == 0 => {
                return copy_exact(stream, &mut file, len, size.max(1));
            }
            // EAGAIN here is the socket's write timeout (SO_SNDTIMEO) running out.
            Err(_) => return (sent, false),
        }
    }
    (sent, true)
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An RFC 1123 date (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP requires in `Date`.
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
