//! The Swift HTTP client of the Swift store: authentication (v1.0 and Keystone v3), token
//! caching and renewal, and the requests the store makes (Glance kept this in
//! python-swiftclient, apart from `glance/store/swift.py`).

use std::fmt;
use std::io::Read;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::SwiftAuthVersion;
use crate::error::{Error, Result};
use crate::http::percent_encode;
use crate::store::netguard;

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for a reply after the body was sent (a server-side copy of a segment can take a
/// while).
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);
/// Any single read or write on the connection.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest listing page or auth reply read from the operator's Swift (a page of 10000
/// names of up to 1024 bytes each, with their metadata, fits).
pub(super) const MAX_LISTING_PAGE: u64 = 32 << 20;
/// Most listing pages read from the operator's Swift in one listing.
pub(super) const MAX_LISTING_PAGES: usize = 100;
/// Most listing pages read from a client-supplied account: enough for the segments of the
/// largest image (`MAX_SEGMENTS`, 99999 names) and a few other names.
pub(super) const MAX_GUARDED_PAGES: usize = 12;
/// A token this close to its expiry is renewed before use.
pub(super) const TOKEN_MARGIN: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// Connection: authentication and requests
// ---------------------------------------------------------------------------------------

/// Who to authenticate as, and how. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Auth {
    /// The auth URL, with scheme.
    pub(super) url: String,
    /// `account:user` (v1) or `project:user` (v3), decoded.
    pub(super) user: String,
    pub(super) key: String,
    pub(super) version: SwiftAuthVersion,
    pub(super) user_domain_id: String,
    pub(super) project_domain_id: String,
    pub(super) region: Option<String>,
    pub(super) interface: &'static str,
    pub(super) snet: bool,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Auth({} as {}, {:?})", self.url, self.user, self.version)
    }
}

/// A token and the storage URL it is good for.
#[derive(Clone)]
pub(super) struct Session {
    pub(super) storage_url: String,
    pub(super) token: String,
    pub(super) expires: Option<Instant>,
}

impl Session {
    pub(super) fn fresh(&self) -> bool {
        self.expires
            .is_none_or(|t| t.saturating_duration_since(Instant::now()) > TOKEN_MARGIN)
    }
}

pub(super) type Response = ureq::http::Response<ureq::Body>;

/// What a request sends.
pub(super) enum Payload<'r, 'p> {
    None,
    Bytes(&'r [u8]),
    /// A streamed body, with its length when known (else chunked).
    Reader(&'r mut (dyn Read + 'p), Option<u64>),
}

/// An authenticated connection to one Swift account (shared by the download readers).
pub(super) struct Conn {
    pub(super) agent: ureq::Agent,
    pub(super) auth: Auth,
    pub(super) session: Mutex<Option<Session>>,
    /// True for an account named by a client-supplied location: `agent` is the location
    /// policy's (for the auth request and for every request to the storage URL the auth
    /// server hands out), answers are bounded more tightly, and failures map to the fixed
    /// 400/502/504 replies.
    pub(super) guarded: bool,
}

pub(super) fn agent() -> ureq::Agent {
    crate::store::netguard::operator_agent(CONNECT_TIMEOUT, RESPONSE_TIMEOUT, IO_TIMEOUT)
}

/// Maps a transport failure: the store cannot be reached (503), or it broke off (500).
pub(super) fn transport_error(what: &str, e: &ureq::Error) -> Error {
    match e {
        ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound
        | ureq::Error::Timeout(_)
        | ureq::Error::Io(_) => Error::Unavailable(format!("Swift is unreachable ({what}): {e}")),
        _ => Error::Store(format!("Swift request failed ({what}): {e}")),
    }
}

/// A short, single-line excerpt of an error body (Swift answers in small HTML pages).
pub(super) fn snippet(resp: &mut Response) -> String {
    let buf = match netguard::read_small(resp, 512) {
        Ok(Some(b)) => b,
        Ok(None) => return "<long body>".into(),
        Err(_) => return String::new(),
    };
    let text = String::from_utf8_lossy(&buf);
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(if c.is_control() { ' ' } else { c }),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    words.join(" ").chars().take(200).collect()
}

/// Reads and drops a (small) body so the connection can be reused.
pub(super) fn drain(resp: &mut Response) {
    netguard::drain(resp);
}

/// Reads a JSON body of at most `limit` bytes (within [`netguard::SMALL_BODY_DEADLINE`]).
pub(super) fn read_json(resp: &mut Response, limit: u64) -> std::result::Result<Value, String> {
    let bytes = netguard::read_small(resp, limit)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("longer than {limit} bytes"))?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

pub(super) fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

pub(super) fn content_length(resp: &Response) -> Option<u64> {
    header(resp, "content-length").and_then(|v| v.parse().ok())
}

/// Maps an unexpected Swift status to an error naming the request.
pub(super) fn status_error(what: &str, resp: &mut Response) -> Error {
    let status = resp.status().as_u16();
    let detail = snippet(resp);
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    match status {
        401 => Error::Store(format!(
            "Swift refused the token ({what}, 401){detail}; check swift_store_user and \
             swift_store_key"
        )),
        403 => Error::Forbidden(format!("Swift denied {what} (403){detail}")),
        404 => Error::NotFound(format!("{what}: not found in Swift (404)")),
        413 => Error::Store(format!(
            "Swift refused {what} as too large (413){detail}; lower \
             swift_store_large_object_size / swift_store_large_object_chunk_size"
        )),
        507 => Error::Store(format!("Swift is out of space ({what}, 507)")),
        502..=504 => Error::Unavailable(format!("Swift is unavailable ({what}, {status}){detail}")),
        _ => Error::Store(format!("Swift answered {status} to {what}{detail}")),
    }
}

impl Conn {
    /// A connection to the operator's Swift (trusted).
    pub(super) fn new(auth: Auth) -> Conn {
        Conn {
            agent: agent(),
            auth,
            session: Mutex::new(None),
            guarded: false,
        }
    }

    /// A connection for a client-supplied location, over the location policy's `agent`.
    pub(super) fn guarded(auth: Auth, agent: ureq::Agent) -> Conn {
        Conn {
            agent,
            auth,
            session: Mutex::new(None),
            guarded: true,
        }
    }

    /// Maps a transport failure of this connection.
    pub(super) fn transport_error(&self, what: &str, e: &ureq::Error) -> Error {
        if self.guarded {
            netguard::transport_error(what, e)
        } else {
            transport_error(what, e)
        }
    }

    /// The largest auth reply or listing page read from this account.
    fn small_body_limit(&self) -> u64 {
        if self.guarded {
            netguard::MAX_SMALL_BODY
        } else {
            MAX_LISTING_PAGE
        }
    }

    /// A usable session: the cached one unless it is stale or `renew` is set.
    pub(super) fn session(&self, renew: bool) -> Result<Session> {
        let mut cached = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if !renew
            && let Some(s) = cached.as_ref()
            && s.fresh()
        {
            return Ok(s.clone());
        }
        let s = match self.auth.version {
            SwiftAuthVersion::V1 => self.auth_v1()?,
            SwiftAuthVersion::V3 => self.auth_v3()?,
        };
        let s = if self.auth.snet { snet(s) } else { s };
        *cached = Some(s.clone());
        Ok(s)
    }

    pub(super) fn auth_failed(&self, status: u16, hint: &str) -> Error {
        Error::Store(format!(
            "Swift authentication failed at {} ({status}): {hint}",
            self.auth.url
        ))
    }

    pub(super) fn auth_unreachable(&self, e: &ureq::Error) -> Error {
        if self.guarded {
            return netguard::transport_error(&format!("Swift auth at {}", self.auth.url), e);
        }
        Error::Unavailable(format!(
            "Swift authentication service at {} is unreachable: {e}",
            self.auth.url
        ))
    }

    /// Auth v1.0: the token and storage URL come back in headers.
    pub(super) fn auth_v1(&self) -> Result<Session> {
        let mut resp = self
            .agent
            .get(&self.auth.url)
            .header("X-Auth-User", &self.auth.user)
            .header("X-Auth-Key", &self.auth.key)
            .call()
            .map_err(|e| self.auth_unreachable(&e))?;
        let status = resp.status().as_u16();
        drain(&mut resp);
        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(self.auth_failed(
                    status,
                    "wrong user or key; check swift_store_user and swift_store_key",
                ));
            }
            404 => {
                return Err(self.auth_failed(
                    status,
                    "no auth service at this URL; check swift_store_auth_address",
                ));
            }
            _ => return Err(self.auth_failed(status, "unexpected reply")),
        }
        // Exact header names: X-Auth-Token-Expires must not be taken for the token.
        let token = header(&resp, "x-auth-token").or_else(|| header(&resp, "x-storage-token"));
        let storage_url = header(&resp, "x-storage-url");
        let (Some(token), Some(storage_url)) = (token, storage_url) else {
            return Err(self.auth_failed(status, "the reply lacks X-Auth-Token or X-Storage-Url"));
        };
        let expires = header(&resp, "x-auth-token-expires")
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Instant::now() + Duration::from_secs_f64(s.min(1e9)));
        Ok(Session {
            storage_url,
            token,
            expires,
        })
    }

    /// Keystone v3 password auth scoped to `project:user`'s project; the storage URL is the
    /// catalog's object-store endpoint.
    pub(super) fn auth_v3(&self) -> Result<Session> {
        let Some((project, user)) = self.auth.user.split_once(':') else {
            return Err(Error::Store(
                "swift_store_user must be project:user with swift_store_auth_version = 3".into(),
            ));
        };
        let base = self.auth.url.trim_end_matches('/');
        let url = if base.ends_with("/auth/tokens") {
            base.to_string()
        } else {
            format!("{base}/auth/tokens")
        };
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user,
                "domain": {"id": self.auth.user_domain_id},
                "password": self.auth.key,
            }}},
            "scope": {"project": {
                "name": project,
                "domain": {"id": self.auth.project_domain_id},
            }},
        }});
        let mut resp = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .map_err(|e| self.auth_unreachable(&e))?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => {}
            401 => {
                drain(&mut resp);
                return Err(self.auth_failed(
                    status,
                    "Keystone refused the credentials; check swift_store_user (project:user), \
                     swift_store_key and the domain options",
                ));
            }
            404 => {
                drain(&mut resp);
                return Err(self.auth_failed(
                    status,
                    "no Keystone v3 at this URL; check swift_store_auth_address",
                ));
            }
            _ => {
                let detail = snippet(&mut resp);
                return Err(self.auth_failed(status, &detail));
            }
        }
        let token = header(&resp, "x-subject-token");
        let doc = read_json(&mut resp, self.small_body_limit())
            .map_err(|e| self.auth_failed(status, &format!("unreadable token reply: {e}")))?;
        let Some(token) = token else {
            return Err(self.auth_failed(status, "the reply lacks X-Subject-Token"));
        };
        let storage_url = catalog_url(
            &doc["token"]["catalog"],
            self.auth.interface,
            self.auth.region.as_deref(),
        )
        .ok_or_else(|| {
            self.auth_failed(
                status,
                &format!(
                    "the token's catalog has no object-store endpoint (interface {}{}); check \
                     swift_store_region and swift_store_endpoint_type",
                    self.auth.interface,
                    self.auth
                        .region
                        .as_deref()
                        .map(|r| format!(", region {r}"))
                        .unwrap_or_default()
                ),
            )
        })?;
        let expires = doc["token"]["expires_at"]
            .as_str()
            .and_then(crate::timeutil::parse)
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .map(|d| Instant::now() + d);
        Ok(Session {
            storage_url,
            token,
            expires,
        })
    }

    /// The URL of the account, a container or an object, with an optional query.
    pub(super) fn url(
        s: &Session,
        container: Option<&str>,
        object: Option<&str>,
        query: &str,
    ) -> String {
        let mut url = s.storage_url.trim_end_matches('/').to_string();
        if let Some(c) = container {
            url.push('/');
            url.push_str(&percent_encode(c));
        }
        if let Some(o) = object {
            url.push('/');
            url.push_str(&percent_encode(o));
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// Sends one request with the session's token; the caller sees every status.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send(
        &self,
        s: &Session,
        method: &str,
        container: Option<&str>,
        object: Option<&str>,
        query: &str,
        headers: &[(&str, &str)],
        body: &mut Payload<'_, '_>,
    ) -> std::result::Result<Response, ureq::Error> {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(Conn::url(s, container, object, query))
            .header("X-Auth-Token", &s.token);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        match body {
            Payload::None => self.agent.run(b.body(())?),
            Payload::Bytes(bytes) => self.agent.run(b.body(*bytes)?),
            Payload::Reader(reader, len) => {
                if let Some(n) = len {
                    b = b.header("Content-Length", n.to_string());
                }
                b = b.header("Expect", "100-continue");
                self.agent
                    .run(b.body(ureq::SendBody::from_reader(&mut **reader))?)
            }
        }
    }

    /// Sends a request without a body (a PUT with an empty one: Swift wants a
    /// `Content-Length` on object PUTs), renewing the token once on 401.
    pub(super) fn request(
        &self,
        method: &str,
        container: Option<&str>,
        object: Option<&str>,
        query: &str,
        headers: &[(&str, &str)],
        what: &str,
    ) -> Result<Response> {
        let mut renew = false;
        loop {
            let s = self.session(renew)?;
            let mut payload = if method == "PUT" {
                Payload::Bytes(&[])
            } else {
                Payload::None
            };
            let resp = self
                .send(&s, method, container, object, query, headers, &mut payload)
                .map_err(|e| self.transport_error(what, &e))?;
            if resp.status().as_u16() == 401 && !renew {
                renew = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// HEAD of an object without following a manifest: `None` when it does not exist.
    pub(super) fn head_object(&self, container: &str, object: &str) -> Result<Option<Response>> {
        let what = format!("HEAD {container}/{object}");
        let mut resp = self.request(
            "HEAD",
            Some(container),
            Some(object),
            "multipart-manifest=get",
            &[],
            &what,
        )?;
        match resp.status().as_u16() {
            200..=299 => Ok(Some(resp)),
            404 => Ok(None),
            _ => Err(status_error(&what, &mut resp)),
        }
    }

    /// Deletes an object; `Ok(false)` when it was not there.
    pub(super) fn delete_object(&self, container: &str, object: &str) -> Result<bool> {
        let what = format!("DELETE {container}/{object}");
        let mut resp = self.request("DELETE", Some(container), Some(object), "", &[], &what)?;
        let status = resp.status().as_u16();
        drain(&mut resp);
        match status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error(&what, &mut resp)),
        }
    }

    /// Names and sizes of the objects named `<prefix>...` in a container for which `keep`
    /// is true, in name order. Bounded: pages of at most [`MAX_LISTING_PAGE`] bytes
    /// ([`netguard::MAX_SMALL_BODY`] for a client-supplied account), at most
    /// [`MAX_LISTING_PAGES`] pages ([`MAX_GUARDED_PAGES`]), more than `max_kept` names kept
    /// is an error.
    pub(super) fn list(
        &self,
        container: &str,
        prefix: &str,
        keep: impl Fn(&str) -> bool,
        max_kept: usize,
    ) -> Result<Vec<(String, u64)>> {
        let what = format!("GET {container}?prefix={prefix}");
        let mut out: Vec<(String, u64)> = Vec::new();
        let mut marker: Option<String> = None;
        let max_pages = if self.guarded {
            MAX_GUARDED_PAGES
        } else {
            MAX_LISTING_PAGES
        };
        for page_number in 1..=max_pages {
            let mut query = format!("format=json&prefix={}", percent_encode(prefix));
            if let Some(last) = &marker {
                query.push_str(&format!("&marker={}", percent_encode(last)));
            }
            let mut resp = self.request("GET", Some(container), None, &query, &[], &what)?;
            let status = resp.status().as_u16();
            if status == 204 {
                break;
            }
            if !(200..=299).contains(&status) {
                return Err(status_error(&what, &mut resp));
            }
            let page = read_json(&mut resp, self.small_body_limit()).map_err(|e| {
                Error::Store(format!("Swift sent an unreadable listing ({what}): {e}"))
            })?;
            let Some(items) = page.as_array() else {
                return Err(Error::Store(format!(
                    "Swift sent an unreadable listing ({what})"
                )));
            };
            let mut last = None;
            for item in items {
                let Some(name) = item["name"].as_str() else {
                    continue;
                };
                last = Some(name);
                if let Some(bytes) = item["bytes"].as_u64()
                    && keep(name)
                {
                    if out.len() >= max_kept {
                        return Err(Error::Store(format!(
                            "Swift listed more than {max_kept} matching objects ({what})"
                        )));
                    }
                    out.push((name.to_string(), bytes));
                }
            }
            // Swift pages hold up to 10000 names; a shorter page is the last. A marker that
            // does not move on would repeat the same page.
            let Some(last) = last.map(str::to_string) else {
                break;
            };
            if items.len() < 10_000 || marker.as_deref() >= Some(last.as_str()) {
                break;
            }
            if page_number == max_pages {
                return Err(Error::Store(format!(
                    "Swift listing has more than {max_pages} pages ({what})"
                )));
            }
            marker = Some(last);
        }
        Ok(out)
    }
}

/// The ServiceNet twin of a storage URL: `snet-` before its host.
pub(super) fn snet(mut s: Session) -> Session {
    if let Some((scheme, rest)) = s.storage_url.split_once("://") {
        s.storage_url = format!("{scheme}://snet-{rest}");
    }
    s
}

/// The object-store endpoint of a Keystone v3 catalog.
pub(super) fn catalog_url(
    catalog: &Value,
    interface: &str,
    region: Option<&str>,
) -> Option<String> {
    catalog
        .as_array()?
        .iter()
        .filter(|svc| svc["type"] == "object-store")
        .flat_map(|svc| svc["endpoints"].as_array().into_iter().flatten())
        .find(|ep| {
            ep["interface"] == interface
                && region.is_none_or(|r| ep["region_id"] == r || ep["region"] == r)
        })
        .and_then(|ep| ep["url"].as_str())
        .map(str::to_string)
}
