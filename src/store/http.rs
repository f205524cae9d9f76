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

use super::{HttpLocation, ImageBody, ImageData, Location, Store, StoreOptions};
use crate::error::{Error, Result};
use crate::image::ImageId;

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

    fn add(&self, _id: &ImageId, _body: &mut ImageBody<'_>) -> Result<String> {
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
mod tests;
