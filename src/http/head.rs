//! Reading and parsing a request head (request line and header fields) within limits.
//!
//! Lines are read one at a time with a byte limit each, so an endless request line or
//! header block costs at most the configured number of bytes (414/431) before httparse ever
//! sees it. Header names are kept exactly as sent: Glance clients send names like
//! `x-image-meta-disk_format`, and a layer that dropped or rewrote them would lose image
//! metadata.

use std::io::BufRead;
use std::mem::MaybeUninit;
use std::time::Instant;

use super::body::{self, Framing, Line, Refusal};
use super::{Headers, poller};

/// Empty lines tolerated before a request line (RFC 9112 §2.2: some clients send a stray
/// CRLF after a body).
const MAX_LEADING_EMPTY_LINES: usize = 4;

/// Limits on one request head.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Longest request line, without its CRLF (414 beyond).
    pub request_line: usize,
    /// Most bytes of header lines, CRLFs included (431 beyond).
    pub header_bytes: usize,
    /// Most header fields (431 beyond).
    pub headers: usize,
    /// The whole head must have arrived by then, so a client trickling bytes cannot hold a
    /// worker for a read timeout per line.
    pub deadline: Instant,
}

/// A parsed request head.
#[derive(Debug)]
pub(super) struct Head {
    /// The method, as sent.
    pub method: String,
    /// The request target in origin form (`/path?query`).
    pub target: String,
    /// The request was HTTP/1.0 (else 1.1).
    pub http10: bool,
    /// The header fields, names as sent.
    pub headers: Headers,
}

/// Why no request head could be read.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeadError {
    /// The client went away or stalled: close without an answer.
    Gone,
    /// Answer this status and close.
    Refuse(Refusal),
}

fn refuse(status: u16, message: &'static str) -> HeadError {
    HeadError::Refuse(Refusal { status, message })
}

impl Head {
    /// The path for logs: without the query string, which may carry filters or markers.
    pub(super) fn log_path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 only when asked.
    pub(super) fn wants_keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers
                .get_all("connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        !has("close") && (!self.http10 || has("keep-alive"))
    }

    /// The body framing and whether the client waits for `100 Continue` before sending the
    /// body. Any expectation other than `100-continue` is refused with 417; HTTP/1.0
    /// clients never wait, so for them it is ignored.
    pub(super) fn framing(&self) -> Result<(Framing, bool), Refusal> {
        let framing = body::framing(&self.headers, self.http10)?;
        let expect_continue = match self.headers.get("expect") {
            None => false,
            Some(v) if v.trim().eq_ignore_ascii_case("100-continue") => {
                !self.http10 && framing != Framing::None
            }
            Some(_) => {
                return Err(Refusal {
                    status: 417,
                    message: "only Expect: 100-continue is supported",
                });
            }
        };
        Ok((framing, expect_continue))
    }
}

/// Header slots parsed into on the stack; a configuration allowing more uses the heap.
const STACK_HEADERS: usize = 128;

/// Reads and parses one request head within `limits`.
pub(super) fn read_head(src: &mut dyn BufRead, limits: &Limits) -> Result<Head, HeadError> {
    if let Some(head) = buffered_head(src, limits) {
        return head;
    }
    let mut raw = Vec::with_capacity(1024);
    read_request_line(src, limits.request_line, &mut raw)?;
    read_header_lines(src, limits, &mut raw)?;
    parse_head(&raw, limits.headers)
}

/// The head parsed in place when it is already buffered whole (the poller hands
/// connections over that way) and within every limit, counted as the line reader counts:
/// no copy line by line. Anything else (a head still arriving, leading empty lines, a limit
/// passed) is left to the line reader, which gives the precise refusal.
fn buffered_head(src: &mut dyn BufRead, limits: &Limits) -> Option<Result<Head, HeadError>> {
    let buf = src.fill_buf().ok()?;
    let end = poller::head_end(buf, 0)?;
    // The request line with its line ending, and the blank line that ends the head.
    let line = buf.iter().position(|&b| b == b'\n')? + 1;
    let blank = if buf[end - 2] == b'\r' { 2 } else { 1 };
    let header_bytes = end.checked_sub(line + blank)?;
    let request_line = trim_eol(&buf[..line]).len();
    if request_line == 0 || request_line > limits.request_line || header_bytes > limits.header_bytes
    {
        return None;
    }
    let head = parse_head(&buf[..end], limits.headers);
    src.consume(end);
    Some(head)
}

fn read_request_line(
    src: &mut dyn BufRead,
    max: usize,
    raw: &mut Vec<u8>,
) -> Result<(), HeadError> {
    for _ in 0..=MAX_LEADING_EMPTY_LINES {
        raw.clear();
        // +2 leaves room for the CRLF; the length check below is on the line alone.
        match body::read_line(src, max.saturating_add(2), raw) {
            Ok(Line::Complete) => {}
            Ok(Line::TooLong) => return Err(refuse(414, "request line too long")),
            Ok(Line::Eof) | Err(_) => return Err(HeadError::Gone),
        }
        let line = trim_eol(raw);
        if line.len() > max {
            return Err(refuse(414, "request line too long"));
        }
        if !line.is_empty() {
            return Ok(());
        }
    }
    Err(refuse(400, "no request line"))
}

/// Appends header lines to `raw` up to the empty line, counting bytes and fields.
fn read_header_lines(
    src: &mut dyn BufRead,
    limits: &Limits,
    raw: &mut Vec<u8>,
) -> Result<(), HeadError> {
    let too_large = || refuse(431, "request header block too large");
    let mut used = 0usize;
    for _ in 0..=limits.headers {
        let start = raw.len();
        let budget = (limits.header_bytes - used).saturating_add(2);
        match body::read_line(src, budget, raw) {
            Ok(Line::Complete) => {}
            Ok(Line::TooLong) => return Err(too_large()),
            Ok(Line::Eof) | Err(_) => return Err(HeadError::Gone),
        }
        if trim_eol(&raw[start..]).is_empty() {
            return Ok(());
        }
        used += raw.len() - start;
        if used > limits.header_bytes {
            return Err(too_large());
        }
        if Instant::now() > limits.deadline {
            return Err(HeadError::Gone);
        }
    }
    Err(refuse(431, "too many request headers"))
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parses a complete head with httparse.
fn parse_head(raw: &[u8], max_headers: usize) -> Result<Head, HeadError> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots = if max_headers <= STACK_HEADERS {
        &mut stack[..max_headers]
    } else {
        heap.resize_with(max_headers, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(raw, slots) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(refuse(400, "incomplete request")),
        Err(httparse::Error::Version) if names_a_version(raw) => {
            return Err(refuse(505, "only HTTP/1.0 and HTTP/1.1 are supported"));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(431, "too many request headers"));
        }
        Err(_) => return Err(refuse(400, "malformed request")),
    }
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value =
            std::str::from_utf8(h.value).map_err(|_| refuse(400, "header value is not UTF-8"))?;
        headers.push((h.name.to_string(), value.to_string()));
    }
    Ok(Head {
        method: req.method.unwrap_or_default().to_string(),
        target: origin_form(req.path.unwrap_or_default()),
        http10: req.version == Some(0),
        headers: Headers::new(headers),
    })
}

/// The target as a path: servers must accept the absolute form (`http://host/path`) too,
/// which some proxies send.
fn origin_form(target: &str) -> String {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let skip = if lower.starts_with("http://") {
        7
    } else if lower.starts_with("https://") {
        8
    } else {
        return target.to_string();
    };
    let rest = &target[skip..];
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => rest[i..].to_string(),
        Some(i) => format!("/{}", &rest[i..]),
        None => "/".to_string(),
    }
}

/// True when the request line is `METHOD TARGET HTTP/…`: a version we do not speak (505),
/// as opposed to a mangled line whose third word is not a version at all (400).
fn names_a_version(raw: &[u8]) -> bool {
    let line = raw.split(|&b| b == b'\n').next().map_or(&b""[..], trim_eol);
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    words.len() == 3 && words[2].starts_with(b"HTTP/")
}

#[cfg(test)]
mod tests;
