//! Our small HTTP/1.1 layer on `httparse` (see ../shared/DECISIONS.md for why not tiny_http).
//!
//! Handlers see only the types of this module: [`Request`] (method, path, query, headers and a
//! streaming body) and [`Response`] (status, headers and a body that is streamed, never
//! buffered whole unless it is small). The server underneath ([`server`]) owns sockets,
//! limits, keep-alive and the worker pool, so it can change without touching a handler.

mod body;
mod head;
mod poller;
mod pool;
mod range;
mod rate;
pub mod server;
mod write;

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

pub use range::ByteRange;
pub use server::{Server, ServerConfig, ShutdownHandle};

/// Something that answers requests. Implemented for plain functions and closures.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. The handler may read the request body (or not: the server then
    /// drains a small remainder or closes the connection).
    fn handle(&self, req: &mut Request<'_>) -> Response;

    /// True when a request with this method and (percent-decoded) path moves image data
    /// (a download): it then runs only on the workers not kept for metadata requests.
    /// Requests with a large body count as such without asking.
    fn moves_data(&self, _method: &str, _path: &str) -> bool {
        false
    }
}

impl<F> Handler for F
where
    F: Fn(&mut Request<'_>) -> Response + Send + Sync + 'static,
{
    fn handle(&self, req: &mut Request<'_>) -> Response {
        self(req)
    }
}

/// Request headers in arrival order. Lookups are case-insensitive and treat `-` and `_` in
/// names alike, because real Glance v1 clients send `x-image-meta-disk_format`.
#[derive(Debug, Clone, Default)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Builds a header list from name/value pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Headers {
        Headers(pairs)
    }

    /// The first value of the header `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| names_equal(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the header `name`, in order.
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.0
            .iter()
            .filter(move |(n, _)| names_equal(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// All headers as sent, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Adds a header (used by tests and by the server).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }
}

/// Header-name equality: ASCII case-insensitive, `-` equal to `_`.
pub fn names_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let norm = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            norm(x) == norm(y)
        })
}

/// One HTTP request as a handler sees it.
pub struct Request<'a> {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The percent-decoded path, without the query string.
    pub path: String,
    /// The raw query string (after `?`), empty when there was none.
    pub query: String,
    /// The request headers.
    pub headers: Headers,
    /// The client's address, when there is a socket.
    pub peer: Option<SocketAddr>,
    /// The server's address on this connection (the local address of the accepted socket:
    /// the interface the client reached, even when listening on `0.0.0.0`), when there is a
    /// socket. Handlers build absolute URLs from it rather than from the client's `Host`.
    pub local: Option<SocketAddr>,
    body: Box<dyn Read + Send + 'a>,
    has_body: bool,
}

impl<'a> Request<'a> {
    /// Builds a request around a body reader; used by the server.
    pub fn new(
        method: String,
        target: &str,
        headers: Headers,
        peer: Option<SocketAddr>,
        body: Box<dyn Read + Send + 'a>,
        has_body: bool,
    ) -> Request<'a> {
        let (raw_path, query) = match target.split_once('?') {
            Some((p, q)) => (p, q.to_string()),
            None => (target, String::new()),
        };
        Request {
            method,
            path: percent_decode(raw_path),
            query,
            headers,
            peer,
            local: None,
            body,
            has_body,
        }
    }

    /// A request without a socket, for unit tests of handlers.
    pub fn fake(
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Request<'static> {
        let mut h = Headers::default();
        for (n, v) in headers {
            h.push(*n, *v);
        }
        if !body.is_empty() && h.get("content-length").is_none() {
            h.push("Content-Length", body.len().to_string());
        }
        Request::new(
            method.to_string(),
            target,
            h,
            None,
            Box::new(Cursor::new(body.to_vec())),
            !body.is_empty(),
        )
    }

    /// A header value (see [`Headers::get`]).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// True when the request carries a body: `Transfer-Encoding` present or
    /// `Content-Length` > 0 (Glance's rule: `Content-Length: 0` means no data).
    pub fn has_body(&self) -> bool {
        self.has_body
    }

    /// The declared `Content-Length`, if any (the server has already validated it).
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// The body as a stream. The first read answers `Expect: 100-continue`.
    pub fn body(&mut self) -> &mut (dyn Read + Send + 'a) {
        &mut *self.body
    }

    /// Reads the whole body into memory, refusing more than `limit` bytes. Only for small
    /// bodies such as registry JSON; image data is always streamed.
    ///
    /// Too large a body is `FileTooLarge` (a 413 for callers), kept apart from the
    /// `InvalidData` of malformed chunked framing (a 400).
    pub fn read_body_limited(&mut self, limit: u64) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        (&mut self.body)
            .take(limit.saturating_add(1))
            .read_to_end(&mut buf)?;
        if buf.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("request body larger than {limit} bytes"),
            ));
        }
        Ok(buf)
    }

    /// Query parameters, percent-decoded, in order (`+` means space).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query)
    }
}

/// Parses `a=1&b=x+y` into decoded pairs; a key without `=` gets an empty value.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Decodes `%XX` escapes; invalid escapes are kept literally, invalid UTF-8 replaced.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a string for use in a URL path segment or query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A response body. Readers are streamed through one fixed buffer, files with sendfile(2);
/// only `Bytes` is held in memory.
pub enum Body {
    /// No body (`Content-Length: 0`).
    Empty,
    /// A small body held in memory (JSON, error text).
    Bytes(Vec<u8>),
    /// A streamed body; with a known length it is sent with `Content-Length`, else chunked.
    Reader(Box<dyn Read + Send>, Option<u64>),
    /// A file region of a known length, from the file's current position, sent with
    /// sendfile(2) (see `write.rs`).
    File(File, u64),
}

impl Body {
    /// The body's length when known in advance.
    pub fn len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Reader(_, len) => *len,
            Body::File(_, len) => Some(*len),
        }
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// One HTTP response.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers to send; the server adds `Content-Length`/`Transfer-Encoding`, `Date` and
    /// `Connection` itself. Names are mostly literals: borrowing them saves an allocation
    /// per header on every response (a HEAD of an image has two dozen).
    pub headers: Vec<(Cow<'static, str>, String)>,
    /// Headers sent before `headers`, shared with other responses instead of copied into
    /// each (the metadata headers of an image that is asked for again and again).
    pub shared_headers: Option<SharedHeaders>,
    /// The body.
    pub body: Body,
}

/// A list of headers rendered once and sent in many responses.
pub type SharedHeaders = Arc<[(Cow<'static, str>, String)]>;

impl Response {
    /// An empty response with this status.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            shared_headers: None,
            body: Body::Empty,
        }
    }

    /// A JSON response with one `Content-Type: application/json; charset=UTF-8`.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(bytes) => Response {
                status,
                headers: vec![(
                    "Content-Type".into(),
                    "application/json; charset=UTF-8".into(),
                )],
                shared_headers: None,
                body: Body::Bytes(bytes),
            },
            // Only a map with non-string keys fails to serialise: our bug, not the client's.
            Err(e) => Response::text(
                500,
                format!("500 {}\n\nserialising reply: {e}\n", reason(500)),
            ),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=UTF-8".into())],
            shared_headers: None,
            body: Body::Bytes(body.into().into_bytes()),
        }
    }

    /// A streamed response of `application/octet-stream`.
    pub fn stream(status: u16, reader: Box<dyn Read + Send>, len: Option<u64>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            shared_headers: None,
            body: Body::Reader(reader, len),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Response {
        self.headers.push((Cow::Borrowed(name), value.to_string()));
        self
    }

    /// Adds headers shared with other responses (sent before the others).
    pub fn with_shared_headers(mut self, headers: SharedHeaders) -> Response {
        self.shared_headers = Some(headers);
        self
    }

    /// Every header in the order sent: the shared ones, then the response's own.
    pub fn all_headers(&self) -> impl Iterator<Item = &(Cow<'static, str>, String)> {
        self.shared_headers
            .iter()
            .flat_map(|h| h.iter())
            .chain(&self.headers)
    }

    /// Sets the body, keeping status and headers.
    pub fn with_body(mut self, body: Body) -> Response {
        self.body = body;
        self
    }

    /// The first value of a response header (case-insensitive), for tests and logging.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all_headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads a streamed or in-memory body into bytes (tests only: may be large).
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self.body {
            Body::Empty => Ok(Vec::new()),
            Body::Bytes(b) => Ok(b),
            Body::Reader(mut r, _) => {
                let mut v = Vec::new();
                r.read_to_end(&mut v)?;
                Ok(v)
            }
            Body::File(f, len) => {
                let mut v = Vec::new();
                f.take(len).read_to_end(&mut v)?;
                Ok(v)
            }
        }
    }
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_treat_dash_and_underscore_alike() {
        let mut h = Headers::default();
        h.push("x-image-meta-disk_format", "raw");
        assert_eq!(h.get("X-Image-Meta-Disk-Format"), Some("raw"));
        assert!(h.get("x-image-meta-diskformat").is_none());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn query_parsing() {
        let q = parse_query("name=a+b&property-x=%41&flag&&limit=");
        assert_eq!(
            q,
            vec![
                ("name".into(), "a b".into()),
                ("property-x".into(), "A".into()),
                ("flag".into(), "".into()),
                ("limit".into(), "".into()),
            ]
        );
    }

    #[test]
    fn fake_request_body() {
        let mut r = Request::fake("PUT", "/images/x?a=1", &[], b"hello");
        assert_eq!(r.path, "/images/x");
        assert_eq!(r.query, "a=1");
        assert!(r.has_body());
        assert_eq!(r.content_length(), Some(5));
        assert_eq!(r.read_body_limited(10).unwrap_or_default(), b"hello");
        // Too large is its own kind, apart from the InvalidData of bad chunked framing.
        let mut r = Request::fake("PUT", "/images/x", &[], b"hello");
        let kind = r.read_body_limited(4).err().map(|e| e.kind());
        assert_eq!(kind, Some(io::ErrorKind::FileTooLarge));
    }
}
