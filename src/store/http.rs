//! The read-only HTTP(S) store (Glance's `glance/store/http.py`): images registered at an
//! external `http://` or `https://` location are fetched from there on each download.
//!
//! * `get` streams the remote body (never buffered) with the remote `Content-Length`.
//! * `size` asks with `HEAD` and reads `Content-Length`.
//! * `add` is refused: 400 `the http store is read-only`.
//! * `delete` does nothing and succeeds: deleting such an image removes its metadata only
//!   and leaves the remote data alone (../shared/DECISIONS.md; Diablo answered 500 here).
//!
//! Credentials in the location (`http://user:password@host/...`) are sent as HTTP basic
//! auth; the URL given to the client library carries none, so no error, log line or
//! redirect can reveal them (and ureq drops `Authorization` on redirects).
//!
//! Timeouts: 10 s to connect, 60 s for the response headers, 5 min for any single read of
//! the body (a stalled server must not hold a worker forever), but no limit on the whole
//! body, which may be many gigabytes.

use std::time::Duration;

use log::debug;

use super::{HttpLocation, ImageData, Location, Store, StoreOptions, Stored};
use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The HTTP(S) store (name `http`, schemes `http` and `https`; read-only).
pub struct HttpStore {
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpStore")
    }
}

impl HttpStore {
    /// Builds the store with its HTTP client (connections are pooled and reused).
    pub fn new(_opts: &StoreOptions) -> HttpStore {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .user_agent(concat!("glance-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        HttpStore { agent }
    }

    /// Sends `method` (GET or HEAD) to the location and checks the status.
    fn request(&self, method: &str, loc: &Location) -> Result<ureq::http::Response<ureq::Body>> {
        let Location::Http(h) = loc else {
            return Err(Error::BadRequest(format!(
                "The http store cannot serve {} locations",
                loc.scheme()
            )));
        };
        let shown = loc.redacted();
        let url = h.url();
        let auth = authorization(h);
        let result = if method == "HEAD" {
            let mut req = self.agent.head(&url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        } else {
            let mut req = self.agent.get(&url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        };
        let resp = result.map_err(|e| {
            // The URL holds no credentials, so neither does the client library's message.
            Error::Store(format!("Cannot fetch image data from {shown}: {e}"))
        })?;
        let status = resp.status().as_u16();
        debug!("{method} {shown}: {status}");
        match status {
            200..=299 => Ok(resp),
            404 | 410 => Err(Error::NotFound(format!(
                "Image data not found at {shown} (remote server answered {status})"
            ))),
            _ => Err(Error::Store(format!(
                "Cannot fetch image data from {shown}: remote server answered {status}"
            ))),
        }
    }
}

/// The `Authorization: Basic ...` value for a location with credentials.
fn authorization(h: &HttpLocation) -> Option<String> {
    h.basic_auth()
        .map(|(user, pass)| format!("Basic {}", base64(format!("{user}:{pass}").as_bytes())))
}

/// Standard base64 with padding (RFC 4648), for basic auth.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn content_length(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    resp.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

impl Store for HttpStore {
    fn name(&self) -> &'static str {
        "http"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["http", "https"]
    }

    fn add(
        &self,
        _id: &str,
        _data: &mut dyn std::io::Read,
        _expected_size: Option<u64>,
    ) -> Result<Stored> {
        Err(Error::BadRequest(
            "the http store is read-only: images cannot be uploaded to it".into(),
        ))
    }

    fn get(&self, loc: &Location) -> Result<ImageData> {
        let resp = self.request("GET", loc)?;
        let len = content_length(&resp);
        let reader = resp.into_body().into_reader();
        Ok(ImageData::Stream(Box::new(reader), len))
    }

    /// Leaves the remote data alone: the http store is read-only, and deleting an image
    /// registered at an external URL deletes its metadata only.
    fn delete(&self, loc: &Location) -> Result<()> {
        debug!(
            "not deleting {}: the http store is read-only, remote data left alone",
            loc.redacted()
        );
        Ok(())
    }

    fn size(&self, loc: &Location) -> Result<u64> {
        let resp = self.request("HEAD", loc)?;
        content_length(&resp).ok_or_else(|| {
            Error::Store(format!(
                "The remote server gave no Content-Length for {}",
                loc.redacted()
            ))
        })
    }

    fn writable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::thread;

    use super::super::read_all;
    use super::*;

    const BODY: &[u8] = b"remote image bytes, not very many of them";
    /// `user:p@ss` as sent in the `Authorization` header.
    const AUTH: &str = "Basic dXNlcjpwQHNz";

    /// Answers one request: `/image` 200 with BODY, `/private` 200 only with AUTH (else
    /// 401), `/chunked` 200 without a length, `/nolength` HEAD without Content-Length,
    /// `/error` 500, anything else 404.
    fn answer(mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let mut auth = None;
        for _ in 0..100 {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case("authorization")
            {
                auth = Some(v.trim().to_string());
            }
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("");
        let head = method == "HEAD";
        let (status, body, length): (&str, &[u8], bool) = match path {
            "/image" => ("200 OK", BODY, true),
            "/private" if auth.as_deref() == Some(AUTH) => ("200 OK", BODY, true),
            "/private" => ("401 Unauthorized", b"no", true),
            "/chunked" => ("200 OK", BODY, false),
            "/nolength" => ("200 OK", b"", false),
            "/error" => ("500 Internal Server Error", b"oops", true),
            _ => ("404 Not Found", b"not here", true),
        };
        let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        if length {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        } else if path == "/chunked" {
            out.push_str("Transfer-Encoding: chunked\r\n");
        }
        out.push_str("\r\n");
        stream.write_all(out.as_bytes())?;
        if !head {
            if path == "/chunked" {
                for piece in body.chunks(10) {
                    stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                    stream.write_all(piece)?;
                    stream.write_all(b"\r\n")?;
                }
                stream.write_all(b"0\r\n\r\n")?;
            } else {
                stream.write_all(body)?;
            }
        }
        stream.flush()
    }

    /// A tiny HTTP server on loopback that answers up to 50 connections.
    fn serve() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            for _ in 0..50 {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = answer(s);
                    }
                    Err(_) => return,
                }
            }
        });
        addr
    }

    fn loc(s: &str) -> Location {
        Location::parse(s).expect("location")
    }

    fn store() -> HttpStore {
        HttpStore::new(&StoreOptions::default())
    }

    #[test]
    fn get_and_size() {
        let addr = serve();
        let store = store();
        let l = loc(&format!("http://{addr}/image"));
        let data = store.get(&l).expect("get");
        assert_eq!(data.len(), Some(BODY.len() as u64));
        assert_eq!(read_all(data), BODY);
        assert_eq!(store.size(&l).expect("size"), BODY.len() as u64);

        let chunked = store
            .get(&loc(&format!("http://{addr}/chunked")))
            .expect("get chunked");
        assert_eq!(chunked.len(), None);
        assert_eq!(read_all(chunked), BODY);

        match store.size(&loc(&format!("http://{addr}/nolength"))) {
            Err(Error::Store(m)) => assert!(m.contains("Content-Length"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn basic_auth_from_the_location() {
        let addr = serve();
        let store = store();
        let with = loc(&format!("http://user:p%40ss@{addr}/private"));
        assert_eq!(read_all(store.get(&with).expect("get with auth")), BODY);
        let wrong = loc(&format!("http://user:WRONGPASS@{addr}/private"));
        match store.get(&wrong) {
            Err(Error::Store(m)) => {
                assert!(m.contains("401"), "{m}");
                assert!(!m.contains("WRONGPASS") && !m.contains("user"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn remote_errors() {
        let addr = serve();
        let store = store();
        let missing = loc(&format!("http://user:SECRETPW@{addr}/missing"));
        match store.get(&missing) {
            Err(Error::NotFound(m)) => assert!(!m.contains("SECRETPW"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(store.size(&missing), Err(Error::NotFound(_))));
        assert!(matches!(
            store.get(&loc(&format!("http://{addr}/error"))),
            Err(Error::Store(_))
        ));

        // A closed port: connection refused.
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let refused = loc(&format!("http://user:SECRETPW@{closed}/image"));
        match store.get(&refused) {
            Err(Error::Store(m)) => {
                assert!(m.contains(&format!("http://{closed}/image")), "{m}");
                assert!(!m.contains("SECRETPW") && !m.contains("user"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn read_only() {
        let store = store();
        assert!(!store.writable());
        assert_eq!(store.name(), "http");
        match store.add("x", &mut &b"abc"[..], None) {
            Err(Error::BadRequest(m)) => assert!(m.contains("the http store is read-only")),
            other => panic!("{other:?}"),
        }
        // Delete leaves remote data alone and succeeds, without any request.
        store
            .delete(&loc("http://user:pw@127.0.0.1:1/x"))
            .expect("delete is a no-op");
        assert!(matches!(
            store.get(&loc("file:///x")),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn base64_encoding() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("user:p@ss", "dXNlcjpwQHNz"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc, "{plain}");
        }
    }
}
