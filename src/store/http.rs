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
//! auth; the URL given to the client library carries none, so no error or log line can
//! reveal them.
//!
//! Every location here was supplied by a client, so every request goes through the
//! location policy's agent ([`netguard::guarded_agent`]): forbidden addresses are refused
//! after DNS resolution, redirects are not followed (a 3xx is a 502), and every wait is
//! bounded ([`netguard::IO_TIMEOUT`] per read: a stalled server must not hold a worker),
//! but not the whole body, which may be many gigabytes, up to `image_size_cap`. Clients see
//! fixed texts (400, 502, 504); what the remote said goes to the log only.

use log::debug;

use super::netguard::{self, CappedReader};
use super::{HttpLocation, ImageBody, ImageData, Location, Store, StoreOptions};
use crate::error::{Error, Result};
use crate::image::ImageId;

/// The HTTP(S) store (name `http`, schemes `http` and `https`; read-only).
pub struct HttpStore {
    agent: ureq::Agent,
    size_cap: u64,
}

impl std::fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpStore")
    }
}

impl HttpStore {
    /// Builds the store with its HTTP client (connections are pooled and reused), which
    /// applies `location_allowed_hosts`.
    pub fn new(opts: &StoreOptions) -> HttpStore {
        HttpStore {
            agent: netguard::guarded_agent(&opts.location_allowed_hosts),
            size_cap: opts.size_cap,
        }
    }

    /// Sends `method` (GET or HEAD) to the location and checks the status: 2xx is the data,
    /// 404/410 is 404, anything else (3xx included) a 502.
    fn request(&self, method: &str, loc: &Location) -> Result<ureq::http::Response<ureq::Body>> {
        let Location::Http(h) = loc else {
            return Err(Error::BadRequest(format!(
                "The http store cannot serve {} locations",
                loc.scheme()
            )));
        };
        let shown = loc.redacted();
        let what = format!("{method} {shown}");
        let mut req = ureq::http::Request::builder().method(method).uri(h.url());
        if let Some(a) = authorization(h) {
            req = req.header("Authorization", a);
        }
        let req = req
            .body(())
            .map_err(|e| netguard::location_error(format!("{what}: {e}")))?;
        // The URL holds no credentials, so neither does the client library's message.
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| netguard::transport_error(&what, &e))?;
        let status = resp.status().as_u16();
        debug!("{what}: {status}");
        match status {
            200..=299 => Ok(resp),
            404 | 410 => {
                netguard::drain(&mut resp);
                Err(Error::NotFound(format!(
                    "Image data not found at {shown} (remote server answered {status})"
                )))
            }
            _ => {
                let excerpt = netguard::excerpt(&mut resp);
                Err(Error::BadGateway(format!(
                    "{what}: remote server answered {status}{excerpt}"
                )))
            }
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

    fn add(&self, _id: &ImageId, _body: &mut ImageBody<'_>) -> Result<String> {
        Err(Error::BadRequest(
            "the http store is read-only: images cannot be uploaded to it".into(),
        ))
    }

    fn get(&self, loc: &Location) -> Result<ImageData> {
        let resp = self.request("GET", loc)?;
        let len = content_length(&resp);
        if let Some(n) = len
            && n > self.size_cap
        {
            return Err(Error::BadGateway(format!(
                "GET {}: remote Content-Length {n} exceeds image_size_cap",
                loc.redacted()
            )));
        }
        let reader = CappedReader::new(resp.into_body().into_reader(), self.size_cap);
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

    /// The remote `Content-Length`. Sizing is part of registering a location, so every
    /// failure but a 404 is a 400 ([`Error::BadLocation`]).
    fn size(&self, loc: &Location) -> Result<u64> {
        let resp = self.request("HEAD", loc).map_err(netguard::when_sizing)?;
        content_length(&resp).ok_or_else(|| {
            Error::BadLocation(format!(
                "HEAD {}: the remote server gave no Content-Length",
                loc.redacted()
            ))
        })
    }

    fn writable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
