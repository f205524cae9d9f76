//! The OpenStack Swift store (Glance's `glance/store/swift.py`), spoken directly over HTTP
//! with ureq (system OpenSSL for `https`).
//!
//! **Authentication.** Auth v1.0 (`GET <auth address>` with `X-Auth-User`/`X-Auth-Key`, as
//! Diablo's swift client did) by default; Keystone v3 password auth with
//! `swift_store_auth_version = 3` (`swift_store_user = project:user`, the storage URL taken
//! from the token's catalog). Tokens are cached and renewed shortly before they expire or
//! when Swift answers 401; request bodies are sent with `Expect: 100-continue`, so a 401
//! arrives before any image data was used up and the request can be repeated.
//!
//! **Uploads stream** from the request body straight into Swift through ureq's fixed buffer:
//! no temp file, no whole image or whole segment in memory.
//!
//! * Declared size below `swift_store_large_object_size`: one `PUT <container>/<id>` with
//!   that `Content-Length`. Swift's ETag must equal the MD5 computed on the way.
//! * Declared size at or above it: segments `<id>-00001`, `<id>-00002`, … of
//!   `swift_store_large_object_chunk_size`, each with its exact `Content-Length`, then a
//!   zero-byte manifest `<id>` with `X-Object-Manifest: <container>/<id>-` (a Swift "dynamic
//!   large object", the form Diablo wrote) and `X-Object-Meta-Glance-Segments: <count>`.
//! * Unknown size (a chunked request without `x-image-meta-size`): the body is streamed as
//!   chunk-sized segments with chunked transfer encoding, one byte read ahead to know whether
//!   another segment follows. If the whole image fitted into the first segment, Swift copies
//!   that segment to `<id>` on the server side (no data passes through glance-api again) and
//!   the segment is deleted, so small chunked uploads end up as ordinary objects, as they
//!   did in Diablo; larger ones stay segmented even if they are smaller than
//!   `swift_store_large_object_size` (their size was not known when writing started).
//!
//! Objects are never replaced: `If-None-Match: *` on the object and the manifest makes an
//! existing image a 409. A failed upload removes what it wrote (segments by their exact
//! names); what cannot be removed (Swift gone mid-way) is named in the error and the log.
//!
//! **Downloads stream.** A manifest is read with `?multipart-manifest=get` and its segments
//! are fetched one after another by their exact names (`<id>-` followed by digits, counted
//! by `X-Object-Meta-Glance-Segments` when present), not by Swift's prefix concatenation:
//! with client-chosen ids, another image named `<id>-x` in the same container would
//! otherwise be served as part of this one. **Delete** removes exactly those segments, then
//! the manifest (../shared/DECISIONS.md: never by prefix).
//!
//! **Locations** are `swift+http://` or `swift+https://` (from the scheme of
//! `swift_store_auth_address`; an address without a scheme means https) with the user and
//! key embedded (percent-encoded where needed), as Glance wrote them. The registry keeps
//! them; clients and logs only ever see [`Location::redacted`]. Reads and deletes use the
//! credentials in the location (as Glance did; the configured connection and its token are
//! reused when they are the same), so a changed `swift_store_key` does not reach images
//! stored before the change.

use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use log::{debug, error, info, warn};

mod client;

use super::pipeline::ImageBody;
use super::{ImageData, Location, Store, StoreOptions, SwiftLocation};
use crate::error::{Error, Result};
use crate::http::{percent_decode, percent_encode};
use crate::image::ImageId;
use client::*;

/// One megabyte as Glance's size options mean it (MiB).
pub const MB: u64 = 1024 * 1024;

/// Most segments an image may have: names carry five digits, and Swift lists names in
/// byte order, so `<id>-100000` would sort before `<id>-10001`.
const MAX_SEGMENTS: u64 = 99_999;

/// Largest object Swift accepts in one PUT by default (`max_file_size`).
const SWIFT_MAX_OBJECT: u64 = 5 * 1024 * MB;

/// Metadata on a manifest: how many segments it has.
const SEGMENTS_META: &str = "x-object-meta-glance-segments";

/// Swift auth protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwiftAuthVersion {
    /// Auth v1.0: `X-Auth-User`/`X-Auth-Key` (Diablo's; tempauth, swauth, and Keystone's
    /// s3token-less v1 shims).
    V1,
    /// Keystone v3 password authentication, storage URL from the catalog.
    V3,
}

impl SwiftAuthVersion {
    /// Parses `swift_store_auth_version`: `1`, `1.0`, `v1` or `3`, `v3`.
    pub fn parse(s: &str) -> Option<SwiftAuthVersion> {
        match s.trim().to_ascii_lowercase().trim_start_matches('v') {
            "1" | "1.0" => Some(SwiftAuthVersion::V1),
            "3" | "3.0" => Some(SwiftAuthVersion::V3),
            _ => None,
        }
    }
}

/// The Swift options of glance-api.conf (and glance-scrubber.conf). `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SwiftOptions {
    /// `swift_store_auth_address`: the auth URL (`http://host:8080/auth/v1.0`, or the
    /// Keystone v3 URL). Without a scheme, https is meant. Unset: uploads are refused.
    pub auth_address: Option<String>,
    /// `swift_store_user`: `account:user` (v1) or `project:user` (v3).
    pub user: Option<String>,
    /// `swift_store_key`: the password or key. Never logged.
    pub key: Option<String>,
    /// `swift_store_container` (default `glance`).
    pub container: String,
    /// `swift_store_create_container_on_put` (default False).
    pub create_container_on_put: bool,
    /// `swift_store_large_object_size` in bytes (configured in MB; default 5120 MB).
    pub large_object_size: u64,
    /// `swift_store_large_object_chunk_size` in bytes (configured in MB; default 200 MB).
    pub large_object_chunk_size: u64,
    /// `swift_store_auth_version` (default 1).
    pub auth_version: SwiftAuthVersion,
    /// `swift_store_user_domain_id` for v3 (default `default`).
    pub user_domain_id: String,
    /// `swift_store_project_domain_id` for v3 (default `default`).
    pub project_domain_id: String,
    /// `swift_store_region`: catalog region for v3 (default: the first object-store
    /// endpoint).
    pub region: Option<String>,
    /// `swift_store_endpoint_type` for v3: `public` (default), `internal` or `admin`
    /// (`publicURL`-style names are accepted).
    pub endpoint_type: String,
    /// `swift_enable_snet` (default False): use the storage URL's ServiceNet twin
    /// (`snet-` prepended to its host), as python-swiftclient did.
    pub enable_snet: bool,
}

impl Default for SwiftOptions {
    fn default() -> SwiftOptions {
        SwiftOptions {
            auth_address: None,
            user: None,
            key: None,
            container: "glance".into(),
            create_container_on_put: false,
            large_object_size: 5120 * MB,
            large_object_chunk_size: 200 * MB,
            auth_version: SwiftAuthVersion::V1,
            user_domain_id: "default".into(),
            project_domain_id: "default".into(),
            region: None,
            endpoint_type: "publicURL".into(),
            enable_snet: false,
        }
    }
}

impl fmt::Debug for SwiftOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwiftOptions")
            .field("auth_address", &self.auth_address)
            .field("user", &self.user)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("container", &self.container)
            .field("create_container_on_put", &self.create_container_on_put)
            .field("large_object_size", &self.large_object_size)
            .field("large_object_chunk_size", &self.large_object_chunk_size)
            .field("auth_version", &self.auth_version)
            .field("region", &self.region)
            .field("endpoint_type", &self.endpoint_type)
            .field("enable_snet", &self.enable_snet)
            .finish()
    }
}

/// The endpoint interface named by `swift_store_endpoint_type`, if valid.
pub fn endpoint_interface(s: &str) -> Option<&'static str> {
    match s.trim().to_ascii_lowercase().trim_end_matches("url") {
        "public" => Some("public"),
        "internal" => Some("internal"),
        "admin" => Some("admin"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Segments
// ---------------------------------------------------------------------------------------

/// The name of segment `n` (1-based) of object `id`.
fn segment_name(id: &str, n: u64) -> String {
    format!("{id}-{n:05}")
}

/// True for names `<id>-<digits>`: the segments Glance writes for image `id`.
fn is_segment_of(name: &str, id: &str) -> bool {
    name.strip_prefix(id)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|n| n.len() >= 5 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Where the segments of a manifest live, from its `X-Object-Manifest` value
/// (`<container>/<prefix>`), and how many there are, if the manifest says.
struct Manifest {
    container: String,
    count: Option<u64>,
}

fn manifest_of(resp: &Response, default_container: &str) -> Option<Manifest> {
    let value = header(resp, "x-object-manifest")?;
    let value = percent_decode(&value);
    let container = match value.split_once('/') {
        Some((c, _)) if !c.is_empty() => c.to_string(),
        _ => default_container.to_string(),
    };
    let count = header(resp, SEGMENTS_META).and_then(|v| v.parse().ok());
    Some(Manifest { container, count })
}

/// The segments of manifest `object`, by exact name, with their sizes. With a count from
/// the manifest, the names are `<object>-00001..count`, and when `strict` all must be
/// there (reading); without (deleting what is left) missing ones are skipped.
fn segments(conn: &Conn, m: &Manifest, object: &str, strict: bool) -> Result<Vec<(String, u64)>> {
    let listed: Vec<(String, u64)> = conn
        .list(&m.container, &format!("{object}-"))?
        .into_iter()
        .filter(|(name, _)| is_segment_of(name, object))
        .collect();
    let Some(count) = m.count else {
        return Ok(listed);
    };
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for n in 1..=count {
        let name = segment_name(object, n);
        match listed.iter().find(|(l, _)| *l == name) {
            Some(found) => out.push(found.clone()),
            None if !strict => {}
            None => {
                return Err(Error::Store(format!(
                    "Segment {}/{name} of image {object} is missing in Swift",
                    m.container
                )));
            }
        }
    }
    Ok(out)
}

/// Reads the segments of a large object one after another, each with its own GET.
struct SegmentReader {
    conn: Arc<Conn>,
    container: String,
    segments: std::vec::IntoIter<(String, u64)>,
    current: Option<(String, u64, Box<dyn Read + Send>)>,
}

impl SegmentReader {
    fn open_next(&mut self) -> io::Result<bool> {
        let Some((name, size)) = self.segments.next() else {
            return Ok(false);
        };
        let what = format!("GET {}/{name}", self.container);
        let mut resp = self
            .conn
            .request("GET", Some(&self.container), Some(&name), "", &[], &what)
            .map_err(|e| io::Error::other(e.message()))?;
        if !(200..=299).contains(&resp.status().as_u16()) {
            return Err(io::Error::other(status_error(&what, &mut resp).message()));
        }
        let reader = resp.into_body().into_reader();
        self.current = Some((name, size, Box::new(reader)));
        Ok(true)
    }
}

impl Read for SegmentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(0);
            }
            let Some((name, left, reader)) = self.current.as_mut() else {
                return Ok(0);
            };
            let n = reader.read(buf)?;
            if n > 0 {
                *left = left.saturating_sub(n as u64);
                return Ok(n);
            }
            if *left > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("segment {name} ended {left} bytes early"),
                ));
            }
            self.current = None;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------

/// The Swift store (name `swift`, schemes `swift`, `swift+http`, `swift+https`).
pub struct SwiftStore {
    opts: SwiftOptions,
    /// The configured account; `Err` holds why uploads are refused.
    conn: std::result::Result<Arc<Conn>, String>,
    /// `swift+http` or `swift+https`, and the auth address without its scheme.
    location_prefix: String,
}

impl fmt::Debug for SwiftStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwiftStore")
            .field("opts", &self.opts)
            .finish()
    }
}

/// `http://…` → (`swift+http`, `…`); `https://…` or no scheme → (`swift+https`, `…`).
fn split_auth_address(address: &str) -> (&'static str, String, String) {
    let address = address.trim().trim_end_matches('/');
    let lower = address.to_ascii_lowercase();
    if lower.starts_with("http://") {
        let rest = &address["http://".len()..];
        ("swift+http", format!("http://{rest}"), rest.to_string())
    } else if lower.starts_with("https://") {
        let rest = &address["https://".len()..];
        ("swift+https", format!("https://{rest}"), rest.to_string())
    } else {
        (
            "swift+https",
            format!("https://{address}"),
            address.to_string(),
        )
    }
}

/// Percent-encodes what cannot stand in a location's user-info (`@`, `:`, `/`, `%`, ...)
/// but keeps the `account:user` colon of Swift users.
fn encode_user(user: &str) -> String {
    user.split(':')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join(":")
}

impl SwiftStore {
    /// Builds the store. Missing `swift_store_auth_address`, `swift_store_user` or
    /// `swift_store_key` leave it registered with uploads refused (and a warning when the
    /// store is the default one); nothing is contacted at start-up.
    pub fn new(opts: &StoreOptions) -> SwiftStore {
        let o = opts.swift.clone();
        let (scheme, url, rest) = split_auth_address(o.auth_address.as_deref().unwrap_or(""));
        let missing: Vec<&str> = [
            ("swift_store_auth_address", o.auth_address.is_none()),
            ("swift_store_user", o.user.is_none()),
            ("swift_store_key", o.key.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| *n)
        .collect();
        let conn = if missing.is_empty() {
            let auth = Auth {
                url,
                user: o.user.clone().unwrap_or_default(),
                key: o.key.clone().unwrap_or_default(),
                version: o.auth_version,
                user_domain_id: o.user_domain_id.clone(),
                project_domain_id: o.project_domain_id.clone(),
                region: o.region.clone(),
                interface: endpoint_interface(&o.endpoint_type).unwrap_or("public"),
                snet: o.enable_snet,
            };
            Ok(Arc::new(Conn::new(auth)))
        } else {
            let why = format!(
                "The swift store is not configured: set {} in the configuration file",
                missing.join(", ")
            );
            if opts.default_store == "swift" {
                warn!("{why}; uploads to the swift store will fail");
            }
            Err(why)
        };
        let location_prefix = format!(
            "{scheme}://{}:{}@{rest}",
            encode_user(o.user.as_deref().unwrap_or("")),
            percent_encode(o.key.as_deref().unwrap_or(""))
        );
        SwiftStore {
            opts: o,
            conn,
            location_prefix,
        }
    }

    fn configured(&self) -> Result<&Arc<Conn>> {
        self.conn.as_ref().map_err(|why| Error::Store(why.clone()))
    }

    /// The connection for a location: the configured one (with its cached token) when the
    /// location names the configured auth address, user and key, else one built from the
    /// location's own credentials. (Never the configured key for a location that does not
    /// carry it: a client could register a location naming another image's object.)
    fn conn_for(&self, loc: &SwiftLocation) -> Arc<Conn> {
        let user = loc
            .user()
            .split(':')
            .map(percent_decode)
            .collect::<Vec<_>>()
            .join(":");
        let key = percent_decode(loc.key());
        let url = loc.auth_url();
        if let Ok(conn) = &self.conn
            && conn.auth.url.eq_ignore_ascii_case(&url)
            && conn.auth.user == user
            && conn.auth.key == key
        {
            return Arc::clone(conn);
        }
        let version = if url.trim_end_matches('/').ends_with("/v3") {
            SwiftAuthVersion::V3
        } else {
            SwiftAuthVersion::V1
        };
        Arc::new(Conn::new(Auth {
            url,
            user,
            key,
            version,
            user_domain_id: self.opts.user_domain_id.clone(),
            project_domain_id: self.opts.project_domain_id.clone(),
            region: self.opts.region.clone(),
            interface: endpoint_interface(&self.opts.endpoint_type).unwrap_or("public"),
            snet: self.opts.enable_snet,
        }))
    }

    fn swift_location<'l>(&self, loc: &'l Location) -> Result<&'l SwiftLocation> {
        match loc {
            Location::Swift(l) => Ok(l),
            other => Err(Error::BadRequest(format!(
                "The swift store cannot serve {} locations",
                other.scheme()
            ))),
        }
    }

    /// Makes sure the container exists, creating it when configured to.
    fn ensure_container(&self, conn: &Conn) -> Result<()> {
        let c = &self.opts.container;
        let what = format!("HEAD {c}");
        let mut resp = conn.request("HEAD", Some(c), None, "", &[], &what)?;
        match resp.status().as_u16() {
            200..=299 => return Ok(()),
            404 => {}
            _ => return Err(status_error(&what, &mut resp)),
        }
        if !self.opts.create_container_on_put {
            return Err(Error::Store(format!(
                "The Swift container {c} does not exist: create it, or set \
                 swift_store_create_container_on_put = True"
            )));
        }
        let what = format!("PUT {c}");
        let mut resp = conn.request("PUT", Some(c), None, "", &[], &what)?;
        match resp.status().as_u16() {
            200..=299 => {
                info!("created Swift container {c}");
                Ok(())
            }
            _ => Err(status_error(&what, &mut resp)),
        }
    }

    /// PUTs one object whose body comes from the source: `len` bytes exactly, or (with
    /// `None`) up to `max` bytes chunked. Returns Swift's ETag and the bytes sent.
    #[allow(clippy::too_many_arguments)]
    fn put_streamed(
        &self,
        conn: &Conn,
        object: &str,
        src: &mut ImageBody<'_>,
        len: Option<u64>,
        max: u64,
        extra: &[(&str, &str)],
    ) -> Result<(String, u64)> {
        let c = &self.opts.container;
        let what = format!("PUT {c}/{object}");
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/octet-stream")];
        headers.extend_from_slice(extra);
        let mut renew = false;
        loop {
            let s = conn.session(renew)?;
            let mut part = src.part(len.unwrap_or(max), len.is_some());
            let result = conn.send(
                &s,
                "PUT",
                Some(c),
                Some(object),
                "",
                &headers,
                &mut Payload::Reader(&mut part, len),
            );
            let sent = part.sent();
            let mut resp = match result {
                Ok(resp) => resp,
                Err(e) => return Err(src.blame(|| transport_error(&what, &e))),
            };
            let status = resp.status().as_u16();
            if let Some(e) = src.take_failure() {
                // Swift may even have answered (e.g. 499) after the client broke off.
                drain(&mut resp);
                return Err(e);
            }
            match status {
                201 | 202 => {
                    let etag = header(&resp, "etag")
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_ascii_lowercase();
                    drain(&mut resp);
                    return Ok((etag, sent));
                }
                401 if !renew && sent == 0 => {
                    drain(&mut resp);
                    renew = true;
                }
                412 => {
                    drain(&mut resp);
                    return Err(duplicate(object));
                }
                404 => {
                    drain(&mut resp);
                    return Err(Error::Store(format!(
                        "The Swift container {c} disappeared during the upload ({what}: 404)"
                    )));
                }
                _ => return Err(status_error(&what, &mut resp)),
            }
        }
    }

    /// PUTs a zero-byte object (an empty image, or a manifest).
    fn put_empty(&self, conn: &Conn, object: &str, extra: &[(&str, &str)]) -> Result<()> {
        let c = &self.opts.container;
        let what = format!("PUT {c}/{object}");
        let mut headers: Vec<(&str, &str)> = vec![
            ("Content-Type", "application/octet-stream"),
            ("If-None-Match", "*"),
        ];
        headers.extend_from_slice(extra);
        let mut resp = conn.request("PUT", Some(c), Some(object), "", &headers, &what)?;
        let status = resp.status().as_u16();
        drain(&mut resp);
        match status {
            201 | 202 => Ok(()),
            412 => Err(duplicate(object)),
            _ => Err(status_error(&what, &mut resp)),
        }
    }

    /// Removes segments `1..=count` of `id` after a failed upload. Returns a note for the
    /// error message when some could not be removed (they are also logged).
    fn remove_segments(&self, conn: &Conn, id: &str, count: u64) -> String {
        let c = &self.opts.container;
        let mut left = Vec::new();
        for n in 1..=count {
            let name = segment_name(id, n);
            if let Err(e) = conn.delete_object(c, &name) {
                debug!("could not remove segment {c}/{name}: {e}");
                left.push(name);
            }
        }
        if left.is_empty() {
            if count > 0 {
                debug!("removed {count} segments of failed upload {id} from Swift");
            }
            return String::new();
        }
        error!(
            "{} segments of the failed upload of image {id} could not be removed from the \
             Swift container {c}: {}",
            left.len(),
            left.join(", ")
        );
        format!(
            "; {} of its segments could not be removed from the Swift container {c} \
             ({}{})",
            left.len(),
            left[0],
            if left.len() > 1 { ", ..." } else { "" }
        )
    }

    /// Deletes leftovers of an earlier failed upload of the same id: objects named like our
    /// segments that say they are segments of `id`. (A manifest would otherwise pick them
    /// up; an object merely named like one, say a client-chosen image id `<id>-00001`,
    /// is left alone.)
    fn remove_stale_segments(&self, conn: &Conn, id: &str) -> Result<()> {
        let c = &self.opts.container;
        for (name, _) in conn.list(c, &format!("{id}-"))? {
            if !is_segment_of(&name, id) {
                continue;
            }
            let owner = conn
                .head_object(c, &name)?
                .and_then(|r| header(&r, "x-object-meta-glance-segment-of"));
            if owner.as_deref() == Some(id) {
                warn!("removing stale segment {c}/{name} of an earlier upload of image {id}");
                conn.delete_object(c, &name)?;
            } else {
                return Err(Error::Store(format!(
                    "The Swift container {c} holds an object {name} that is not a segment of \
                     image {id}; its segments cannot be written there"
                )));
            }
        }
        Ok(())
    }

    /// Writes the data as segments; on failure removes those written. Returns the count.
    fn put_segments(&self, conn: &Conn, id: &str, src: &mut ImageBody<'_>) -> Result<u64> {
        let chunk = self.opts.large_object_chunk_size;
        let expected = src.expected();
        if let Some(total) = expected {
            let count = total.div_ceil(chunk);
            if count > MAX_SEGMENTS {
                return Err(Error::Store(format!(
                    "Image of {total} bytes would need {count} Swift segments, more than \
                     {MAX_SEGMENTS}; raise swift_store_large_object_chunk_size"
                )));
            }
        }
        self.remove_stale_segments(conn, id)?;
        let meta = [("X-Object-Meta-Glance-Segment-Of", id)];
        let mut count = 0u64;
        loop {
            if src.at_eof().map_err(|e| self.failed(conn, id, count, e))? {
                break;
            }
            if count == MAX_SEGMENTS {
                let e = Error::Store(format!(
                    "Image needs more than {MAX_SEGMENTS} Swift segments; raise \
                     swift_store_large_object_chunk_size"
                ));
                return Err(self.failed(conn, id, count, e));
            }
            count += 1;
            let name = segment_name(id, count);
            let len = expected.map(|total| chunk.min(total.saturating_sub(src.consumed())));
            let (_, sent) = self
                .put_streamed(conn, &name, src, len, chunk, &meta)
                .map_err(|e| self.failed(conn, id, count, e))?;
            debug!("wrote segment {}/{name}: {sent} bytes", self.opts.container);
            if sent < chunk {
                break;
            }
        }
        src.finish().map_err(|e| self.failed(conn, id, count, e))?;
        Ok(count)
    }

    /// Cleans up `count` segments after `e` and returns `e` with a note on leftovers.
    fn failed(&self, conn: &Conn, id: &str, count: u64, e: Error) -> Error {
        let note = self.remove_segments(conn, id, count);
        if note.is_empty() {
            e
        } else {
            with_note(e, &note)
        }
    }

    fn location(&self, id: &str) -> String {
        format!("{}/{}/{id}", self.location_prefix, self.opts.container)
    }

    fn add_data(&self, conn: &Conn, id: &str, src: &mut ImageBody<'_>) -> Result<()> {
        let c = &self.opts.container;
        match src.expected() {
            Some(n) if n < self.opts.large_object_size => {
                if n > SWIFT_MAX_OBJECT {
                    warn!(
                        "writing image {id} of {n} bytes as one Swift object; Swift's default \
                         limit is {SWIFT_MAX_OBJECT} (lower swift_store_large_object_size)"
                    );
                }
                let (etag, _) =
                    self.put_streamed(conn, id, src, Some(n), n, &[("If-None-Match", "*")])?;
                let verdict = src.finish().and_then(|()| {
                    let sum = src.checksum()?;
                    if etag == sum {
                        Ok(())
                    } else {
                        Err(Error::Store(format!(
                            "Swift stored {c}/{id} with MD5 {etag}, but {sum} was sent"
                        )))
                    }
                });
                if let Err(e) = verdict {
                    if let Err(de) = conn.delete_object(c, id) {
                        error!("could not remove {c}/{id} after a failed upload: {de}");
                    }
                    return Err(e);
                }
                Ok(())
            }
            None if src.at_eof()? => self.put_empty(conn, id, &[]),
            expected => {
                let count = self.put_segments(conn, id, src)?;
                if expected.is_none() && count == 1 {
                    // It all fitted into one segment: make it an ordinary object.
                    self.copy_object(conn, &segment_name(id, 1), id)
                        .map_err(|e| self.failed(conn, id, count, e))?;
                    self.remove_segments(conn, id, count);
                    return Ok(());
                }
                let manifest = format!("{c}/{id}-");
                let count_text = count.to_string();
                self.put_empty(
                    conn,
                    id,
                    &[
                        ("X-Object-Manifest", manifest.as_str()),
                        ("X-Object-Meta-Glance-Segments", count_text.as_str()),
                    ],
                )
                .map_err(|e| self.failed(conn, id, count, e))?;
                debug!("wrote manifest {c}/{id} for {count} segments");
                Ok(())
            }
        }
    }

    /// Server-side copy of `from` to `to` in the container (`to` must not exist: checked
    /// before the upload began; Swift's copy does not take `If-None-Match`).
    fn copy_object(&self, conn: &Conn, from: &str, to: &str) -> Result<()> {
        let c = &self.opts.container;
        let what = format!("PUT {c}/{to} (copy of {from})");
        let source = format!("/{}/{}", percent_encode(c), percent_encode(from));
        let headers = [("X-Copy-From", source.as_str())];
        let mut resp = conn.request("PUT", Some(c), Some(to), "", &headers, &what)?;
        match resp.status().as_u16() {
            201 | 202 => {
                drain(&mut resp);
                Ok(())
            }
            _ => Err(status_error(&what, &mut resp)),
        }
    }
}

fn duplicate(object: &str) -> Error {
    Error::Duplicate(format!("Image {object} already exists in the swift store"))
}

/// Appends a note to an error's message, keeping its kind.
fn with_note(e: Error, note: &str) -> Error {
    let msg = format!("{}{note}", e.message());
    match e {
        Error::NotFound(_) => Error::NotFound(msg),
        Error::Duplicate(_) => Error::Duplicate(msg),
        Error::Forbidden(_) => Error::Forbidden(msg),
        Error::BadRequest(_) => Error::BadRequest(msg),
        Error::TooLarge(_) => Error::TooLarge(msg),
        Error::Unavailable(_) => Error::Unavailable(msg),
        _ => Error::Store(msg),
    }
}

/// The data behind a location: a plain object, or a manifest and its segments.
enum Found {
    Object(Response),
    Manifest(Manifest, Vec<(String, u64)>),
}

impl SwiftStore {
    /// GETs (`get = true`) or HEADs an object without following a manifest, and lists the
    /// segments of a manifest (all of them must exist when `strict`).
    fn find(&self, conn: &Conn, l: &SwiftLocation, get: bool, strict: bool) -> Result<Found> {
        let (c, o) = (l.container(), l.object());
        let method = if get { "GET" } else { "HEAD" };
        let what = format!("{method} {c}/{o}");
        let mut resp = conn.request(
            method,
            Some(c),
            Some(o),
            "multipart-manifest=get",
            &[],
            &what,
        )?;
        match resp.status().as_u16() {
            200..=299 => {}
            404 => {
                drain(&mut resp);
                return Err(Error::NotFound(format!(
                    "Image data {c}/{o} not found in the swift store"
                )));
            }
            _ => return Err(status_error(&what, &mut resp)),
        }
        match manifest_of(&resp, c) {
            Some(m) => {
                drain(&mut resp);
                let segs = segments(conn, &m, o, strict)?;
                Ok(Found::Manifest(m, segs))
            }
            None => Ok(Found::Object(resp)),
        }
    }
}

impl Store for SwiftStore {
    fn name(&self) -> &'static str {
        "swift"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["swift", "swift+http", "swift+https"]
    }

    fn add(&self, id: &ImageId, body: &mut ImageBody<'_>) -> Result<String> {
        let conn = self.configured()?;
        self.ensure_container(conn)?;
        if conn.head_object(&self.opts.container, id)?.is_some() {
            return Err(duplicate(id));
        }
        self.add_data(conn, id, body)?;
        debug!(
            "stored image {id} in Swift container {}: {} bytes",
            self.opts.container,
            body.total()
        );
        Ok(self.location(id))
    }

    /// Removes the segments of `id` an interrupted upload left, and its object or manifest if
    /// it was written but the image never became active.
    fn discard_partial(&self, id: &ImageId) -> Result<()> {
        let Ok(conn) = self.configured() else {
            return Ok(()); // not set up: nothing can have been written
        };
        self.remove_stale_segments(conn, id)?;
        if conn.delete_object(&self.opts.container, id)? {
            warn!("removed the object of image {id}, whose upload was interrupted");
        }
        Ok(())
    }

    fn get(&self, loc: &Location) -> Result<ImageData> {
        let l = self.swift_location(loc)?;
        let conn = self.conn_for(l);
        match self.find(&conn, l, true, true)? {
            Found::Object(resp) => {
                let len = content_length(&resp);
                Ok(ImageData::Stream(
                    Box::new(resp.into_body().into_reader()),
                    len,
                ))
            }
            Found::Manifest(m, segs) => {
                let total = segs.iter().map(|(_, n)| n).sum();
                Ok(ImageData::Stream(
                    Box::new(SegmentReader {
                        conn,
                        container: m.container,
                        segments: segs.into_iter(),
                        current: None,
                    }),
                    Some(total),
                ))
            }
        }
    }

    fn delete(&self, loc: &Location) -> Result<()> {
        let l = self.swift_location(loc)?;
        let conn = self.conn_for(l);
        let (c, o) = (l.container(), l.object());
        // Deleting removes whatever is left of a partly deleted image.
        if let Found::Manifest(m, segs) = self.find(&conn, l, false, false)? {
            for (name, _) in &segs {
                conn.delete_object(&m.container, name)?;
            }
            debug!("deleted {} segments of {c}/{o}", segs.len());
        }
        if !conn.delete_object(c, o)? {
            return Err(Error::NotFound(format!(
                "Image data {c}/{o} not found in the swift store"
            )));
        }
        debug!("deleted {} from the swift store", loc.redacted());
        Ok(())
    }

    fn size(&self, loc: &Location) -> Result<u64> {
        let l = self.swift_location(loc)?;
        let conn = self.conn_for(l);
        match self.find(&conn, l, false, true)? {
            Found::Object(resp) => content_length(&resp).ok_or_else(|| {
                Error::Store(format!(
                    "Swift gave no Content-Length for {}",
                    loc.redacted()
                ))
            }),
            Found::Manifest(_, segs) => Ok(segs.iter().map(|(_, n)| n).sum()),
        }
    }

    fn writable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
