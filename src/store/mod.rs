//! Image stores: where image data lives, and the URIs that point at it.
//!
//! This mirrors Glance's `glance/store/`: a [`Store`] trait (Glance's `base.Store`), one file
//! per backend, an enum of parsed locations ([`Location`], Glance's `StoreLocation` classes)
//! and a scheme table that picks the backend for a URI. [`Stores`] is the registry the API
//! server builds once from its configuration.
//!
//! | store | schemes | add | get | delete |
//! |---|---|---|---|---|
//! | `file` ([`FilesystemStore`]) | `file`, `filesystem` | yes | yes | yes |
//! | `http` ([`HttpStore`]) | `http`, `https` | no (400) | yes | no-op (remote data left alone) |
//! | `swift` ([`SwiftStore`]) | `swift`, `swift+http`, `swift+https` | yes | yes | yes |
//! | `s3` ([`S3Store`]) | `s3`, `s3+http`, `s3+https` | yes | yes | yes |
//!
//! Two rules run through the whole module:
//!
//! * **Credentials never leave the server.** A location may embed `user:key@` (Swift, S3,
//!   HTTP basic auth). [`Location::uri`] gives the full URI for the registry only;
//!   [`Location::redacted`] and [`redact_uri`] give the form for clients and logs, and every
//!   error message, `Debug` and `Display` output uses that form.
//! * **Memory stays flat.** Data is moved with one fixed buffer ([`copy_and_hash`]), handed
//!   to the HTTP layer as a file or a reader ([`ImageData::into_body`]), or streamed part by
//!   part into an object store (`source.rs`); nothing reads a whole image into memory. (The
//!   one bounded exception: an S3 upload of unknown size holds one multipart part.)
//!
//! Adding a backend means one file implementing [`Store`] plus one line in `BACKENDS` (and
//! its options in [`StoreOptions`]); location parsing is here.

mod checksum;
mod filesystem;
mod http;
mod s3;
mod source;
mod swift;
#[cfg(test)]
mod test_services;

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

pub use checksum::Md5Sum;

use crate::error::{Error, Result};

pub use filesystem::{DIRECT_IO_MIN_BUFFER, FilesystemStore};
pub use http::HttpStore;
pub use s3::{BucketUrlFormat, S3Options, S3Store};
pub use swift::{MB, SwiftAuthVersion, SwiftOptions, SwiftStore, endpoint_interface};

/// Default size of the copy buffer. Glance streamed 64 KiB chunks; 1 MiB makes each write a
/// large sequential I/O, which direct I/O in the file store needs (bench/README.md), and
/// still keeps an upload to a few MiB of memory.
pub const DEFAULT_BUFFER_SIZE: usize = 1024 * 1024;

/// Smallest and largest copy buffer accepted; other values are clamped into this range.
const MIN_BUFFER_SIZE: usize = 4 * 1024;
const MAX_BUFFER_SIZE: usize = 16 * 1024 * 1024;

/// Longest location URI accepted.
const MAX_URI_LEN: usize = 4096;

/// Shown instead of a location that cannot be parsed well enough to redact it.
const MALFORMED: &str = "<malformed location>";

// ---------------------------------------------------------------------------------------
// Scheme table
// ---------------------------------------------------------------------------------------

/// The kinds of backend a location can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Http,
    Swift,
    S3,
}

impl Kind {
    /// The store name, as in `x-image-meta-store`/`default_store` and [`Store::name`].
    fn store_name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Http => "http",
            Kind::Swift => "swift",
            Kind::S3 => "s3",
        }
    }
}

/// Every scheme glance-rs understands, with the kind of store serving it. Lookups are by the
/// lower-cased scheme.
const SCHEMES: &[(&str, Kind)] = &[
    ("file", Kind::File),
    ("filesystem", Kind::File),
    ("http", Kind::Http),
    ("https", Kind::Http),
    ("swift", Kind::Swift),
    ("swift+http", Kind::Swift),
    ("swift+https", Kind::Swift),
    ("s3", Kind::S3),
    ("s3+http", Kind::S3),
    ("s3+https", Kind::S3),
];

/// Builds a store from the options. Stores with incomplete configuration must still build
/// (and refuse `add` with a clear error); an `Err` here is fatal at start-up.
type Constructor = fn(&StoreOptions) -> Result<Box<dyn Store>>;

/// The backends built into this server, in the order they are registered. A new backend is
/// one line here.
const BACKENDS: &[Constructor] = &[build_filesystem, build_http, build_swift, build_s3];

fn build_filesystem(opts: &StoreOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(FilesystemStore::new(opts)))
}

fn build_http(opts: &StoreOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(HttpStore::new(opts)))
}

fn build_swift(opts: &StoreOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(SwiftStore::new(opts)))
}

fn build_s3(opts: &StoreOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(S3Store::new(opts)))
}

fn lookup_scheme(scheme: &str) -> Option<(&'static str, Kind)> {
    let lower = scheme.to_ascii_lowercase();
    SCHEMES
        .iter()
        .find(|(s, _)| *s == lower)
        .map(|(s, k)| (*s, *k))
}

fn known_schemes() -> String {
    SCHEMES
        .iter()
        .map(|(s, _)| *s)
        .collect::<Vec<_>>()
        .join(", ")
}

/// RFC 3986 scheme syntax: a letter, then letters, digits, `+`, `-`, `.` (at most 32 here).
fn valid_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && s.len() <= 32
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

// ---------------------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------------------

/// A user name and its secret, as embedded in a location URI (kept as written, i.e. still
/// percent-encoded where the URI was). `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// A `file://` (or `filesystem://`) location: an absolute path on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLocation {
    scheme: &'static str,
    path: String,
}

impl FileLocation {
    /// The absolute path of the image file.
    pub fn path(&self) -> &Path {
        Path::new(&self.path)
    }
}

/// An `http://` or `https://` location, optionally with `user:password@` for basic auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLocation {
    scheme: &'static str,
    creds: Option<Credentials>,
    /// `host[:port]` (IPv6 literals in brackets).
    host: String,
    /// Path and query as written (may be empty), without any fragment.
    path: String,
}

impl HttpLocation {
    /// The URL to request: the location without credentials (path `/` when empty).
    pub fn url(&self) -> String {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        format!("{}://{}{}", self.scheme, self.host, path)
    }

    /// `(user, password)` for basic auth, percent-decoded, if the location has them.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        self.creds.as_ref().map(|c| {
            (
                crate::http::percent_decode(&c.user),
                crate::http::percent_decode(&c.secret),
            )
        })
    }
}

/// A Swift location: `swift[+http|+https]://user:key@<auth host/path>/<container>/<object>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwiftLocation {
    scheme: &'static str,
    creds: Credentials,
    /// Auth host and path without a scheme, e.g. `127.0.0.1:8080/v1.0`.
    auth: String,
    container: String,
    object: String,
}

impl SwiftLocation {
    /// The auth URL: `swift://` and `swift+https://` mean HTTPS, `swift+http://` plain HTTP.
    pub fn auth_url(&self) -> String {
        let proto = if self.scheme == "swift+http" {
            "http"
        } else {
            "https"
        };
        format!("{proto}://{}", self.auth)
    }

    /// The user (`account:user` or `user`).
    pub fn user(&self) -> &str {
        &self.creds.user
    }

    /// The key (secret). Never log it.
    pub fn key(&self) -> &str {
        &self.creds.secret
    }

    /// The container name.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// The object name (the image id for objects Glance wrote).
    pub fn object(&self) -> &str {
        &self.object
    }
}

/// An S3 location: `s3[+http|+https]://[access:secret@]<service host[/path]>/<bucket>/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    scheme: &'static str,
    creds: Option<Credentials>,
    /// Service host and optional path, without a scheme.
    service: String,
    bucket: String,
    key: String,
}

impl S3Location {
    /// The service URL: only `s3+https://` is TLS; `s3://` means plain HTTP (as in Glance).
    pub fn service_url(&self) -> String {
        let proto = if self.scheme == "s3+https" {
            "https"
        } else {
            "http"
        };
        format!("{proto}://{}", self.service)
    }

    /// `(access key, secret key)` if the location has them. Never log the secret.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.creds
            .as_ref()
            .map(|c| (c.user.as_str(), c.secret.as_str()))
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key (the image id for objects Glance wrote).
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A parsed image location. `Debug` and `Display` show the redacted form only.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// `file://` / `filesystem://`: served by the filesystem store.
    File(FileLocation),
    /// `http://` / `https://`: served (read-only) by the HTTP store.
    Http(HttpLocation),
    /// `swift://`, `swift+http://`, `swift+https://`.
    Swift(SwiftLocation),
    /// `s3://`, `s3+http://`, `s3+https://`.
    S3(S3Location),
}

fn malformed(msg: impl fmt::Display) -> Error {
    Error::BadRequest(format!("Invalid location: {msg}"))
}

impl Location {
    /// Parses a location URI (spec §9). Errors are [`Error::BadRequest`] naming the problem;
    /// they never repeat credentials or any part of the URI that could hold them.
    pub fn parse(uri: &str) -> Result<Location> {
        if uri.len() > MAX_URI_LEN {
            return Err(malformed(format!("longer than {MAX_URI_LEN} characters")));
        }
        if uri.chars().any(char::is_control) {
            return Err(malformed("contains control characters"));
        }
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(malformed("not a URI of the form scheme://..."));
        };
        if !valid_scheme(scheme) {
            return Err(malformed("not a URI of the form scheme://..."));
        }
        let Some((scheme, kind)) = lookup_scheme(scheme) else {
            return Err(malformed(format!(
                "unknown scheme '{}' (known schemes: {})",
                scheme.to_ascii_lowercase(),
                known_schemes()
            )));
        };
        if kind != Kind::File && rest.chars().any(char::is_whitespace) {
            return Err(malformed(format!("{scheme} URI contains whitespace")));
        }
        match kind {
            Kind::File => parse_file(scheme, rest),
            Kind::Http => parse_http(scheme, rest),
            Kind::Swift => parse_swift(scheme, uri, rest),
            Kind::S3 => parse_s3(scheme, uri, rest),
        }
    }

    /// The scheme, lower-cased (`file`, `filesystem`, `http`, `swift+https`, ...).
    pub fn scheme(&self) -> &'static str {
        match self {
            Location::File(l) => l.scheme,
            Location::Http(l) => l.scheme,
            Location::Swift(l) => l.scheme,
            Location::S3(l) => l.scheme,
        }
    }

    /// The name of the store that serves this location (`file`, `http`, `swift`, `s3`).
    pub fn store_name(&self) -> &'static str {
        self.kind().store_name()
    }

    fn kind(&self) -> Kind {
        match self {
            Location::File(_) => Kind::File,
            Location::Http(_) => Kind::Http,
            Location::Swift(_) => Kind::Swift,
            Location::S3(_) => Kind::S3,
        }
    }

    /// The full URI, credentials included: for the registry only, never for clients or logs.
    pub fn uri(&self) -> String {
        self.format(true)
    }

    /// The URI with user-info removed (`swift://host/v1/glance/42`, `http://host/path`), and
    /// the values of secret-looking query parameters of an HTTP location masked (a
    /// presigned URL: `?temp_url_sig=***`): the form for clients, logs and error messages.
    pub fn redacted(&self) -> String {
        self.format(false)
    }

    fn format(&self, with_creds: bool) -> String {
        let creds = |c: Option<&Credentials>| match c {
            Some(c) if with_creds => format!("{}:{}@", c.user, c.secret),
            _ => String::new(),
        };
        match self {
            Location::File(l) => format!("{}://{}", l.scheme, l.path),
            Location::Http(l) => format!(
                "{}://{}{}{}",
                l.scheme,
                creds(l.creds.as_ref()),
                l.host,
                if with_creds {
                    l.path.clone()
                } else {
                    mask_query_secrets(&l.path)
                }
            ),
            Location::Swift(l) => format!(
                "{}://{}{}/{}/{}",
                l.scheme,
                creds(Some(&l.creds)),
                l.auth,
                l.container,
                l.object
            ),
            Location::S3(l) => format!(
                "{}://{}{}/{}/{}",
                l.scheme,
                creds(l.creds.as_ref()),
                l.service,
                l.bucket,
                l.key
            ),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({})", self.redacted())
    }
}

/// `file://<path>`: the path (Glance's netloc + path) must be absolute.
fn parse_file(scheme: &'static str, rest: &str) -> Result<Location> {
    if rest.is_empty() {
        return Err(malformed(format!("{scheme} URI has no path")));
    }
    if !rest.starts_with('/') {
        return Err(malformed(format!(
            "{scheme} URI must hold an absolute path ({scheme}:///path/to/file)"
        )));
    }
    Ok(Location::File(FileLocation {
        scheme,
        path: rest.to_string(),
    }))
}

/// Splits `user:secret`; `what` names the pair in messages (`user:password`, ...).
fn split_creds(creds: &str, scheme: &str, what: &str) -> Result<Credentials> {
    match creds.split_once(':') {
        Some((user, secret)) if !user.is_empty() => Ok(Credentials {
            user: user.to_string(),
            secret: secret.to_string(),
        }),
        _ => Err(malformed(format!(
            "{scheme} credentials must be {what} (a bare user name is not accepted)"
        ))),
    }
}

/// Checks `host[:port]` (IPv6 literals in brackets). Messages never echo the value: when a
/// secret contains `/`, its tail can end up here.
fn check_host(hostport: &str, scheme: &str) -> Result<()> {
    if hostport.is_empty() {
        return Err(malformed(format!("{scheme} URI has no host")));
    }
    let (host_ok, port) = if let Some(inner) = hostport.strip_prefix('[') {
        match inner.split_once(']') {
            Some((addr, after)) => {
                let ok = !addr.is_empty()
                    && addr
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
                match after {
                    "" => (ok, None),
                    p => match p.strip_prefix(':') {
                        Some(port) => (ok, Some(port)),
                        None => (false, None),
                    },
                }
            }
            None => (false, None),
        }
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        let ok = !host.is_empty()
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
            });
        (ok, port)
    };
    if !host_ok {
        return Err(malformed(format!("{scheme} URI has an invalid host")));
    }
    if let Some(port) = port
        && (port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(malformed(format!("{scheme} URI has an invalid port")));
    }
    Ok(())
}

/// `http[s]://[user:password@]host[:port][/path][?query]`; a fragment is dropped.
fn parse_http(scheme: &'static str, rest: &str) -> Result<Location> {
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (creds, hostport) = match authority.rfind('@') {
        Some(i) => (
            Some(split_creds(&authority[..i], scheme, "user:password")?),
            &authority[i + 1..],
        ),
        None => (None, authority),
    };
    check_host(hostport, scheme)?;
    // Refused here (400 when a client registers it) rather than by the HTTP client at
    // download time.
    if !path
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b))
    {
        return Err(malformed(format!(
            "{scheme} URI path contains characters that must be percent-encoded"
        )));
    }
    Ok(Location::Http(HttpLocation {
        scheme,
        creds,
        host: hostport.to_string(),
        path: path.to_string(),
    }))
}

/// `swift[+http|+https]://user:key@<auth host[/path]>/<container>/<object>` (Glance's
/// `swift.StoreLocation.parse_uri`, with `account:user:key` for three colon parts).
fn parse_swift(scheme: &'static str, uri: &str, rest: &str) -> Result<Location> {
    if uri.matches("://").count() != 1 {
        return Err(malformed(
            "a swift URI cannot contain more than one '://'; instead of embedding http:// or \
             https://, use swift+http://user:key@host/... or swift+https://user:key@host/...",
        ));
    }
    let (creds, after) = match rest.matches('@').count() {
        0 => {
            return Err(malformed(
                "swift URI needs user:key@ credentials (swift://user:key@host/container/object)",
            ));
        }
        1 => rest.split_once('@').unwrap_or((rest, "")),
        _ => return Err(malformed("swift URI contains more than one '@'")),
    };
    let parts: Vec<&str> = creds.split(':').collect();
    let (user, key) = match parts.as_slice() {
        [user, key] => (user.to_string(), *key),
        [account, user, key] => (format!("{account}:{user}"), *key),
        _ => {
            return Err(malformed(
                "swift credentials must be user:key or account:user:key",
            ));
        }
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(malformed(
            "swift credentials must be user:key or account:user:key",
        ));
    }
    let (host, path) = after.split_once('/').unwrap_or((after, ""));
    check_host(host, scheme)?;
    let mut segments: Vec<&str> = path.split('/').collect();
    let object = segments.pop().unwrap_or("");
    let container = segments.pop().unwrap_or("");
    if object.is_empty() || container.is_empty() {
        return Err(malformed(
            "swift URI must name <auth host>/<container>/<object>",
        ));
    }
    let mut auth = host.to_string();
    for s in segments {
        auth.push('/');
        auth.push_str(s);
    }
    Ok(Location::Swift(SwiftLocation {
        scheme,
        creds: Credentials {
            user,
            secret: key.to_string(),
        },
        auth,
        container: container.to_string(),
        object: object.to_string(),
    }))
}

/// `s3[+http|+https]://[access:secret@]<service host[/path]>/<bucket>/<key>` (Glance's
/// `s3.StoreLocation.parse_uri`); the secret may contain `/`, so the split is at the `@`.
fn parse_s3(scheme: &'static str, uri: &str, rest: &str) -> Result<Location> {
    if uri.matches("://").count() != 1 {
        return Err(malformed(
            "an s3 URI cannot contain more than one '://'; instead of embedding https://, \
             use s3+https://access:secret@host/bucket/key",
        ));
    }
    let (creds, path) = match rest.matches('@').count() {
        0 => (None, rest),
        1 => {
            let (c, p) = rest.split_once('@').unwrap_or(("", rest));
            (Some(split_creds(c, scheme, "access_key:secret_key")?), p)
        }
        _ => return Err(malformed("s3 URI contains more than one '@'")),
    };
    let mut segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let key = segments.pop().unwrap_or("");
    let bucket = segments.pop().unwrap_or("");
    if key.is_empty() || bucket.is_empty() || segments.is_empty() {
        return Err(malformed(
            "s3 URI must name <service host>/<bucket>/<key> (missing service URL, bucket or key)",
        ));
    }
    check_host(segments[0], scheme)?;
    Ok(Location::S3(S3Location {
        scheme,
        creds,
        service: segments.join("/"),
        bucket: bucket.to_string(),
        key: key.to_string(),
    }))
}

/// The client- and log-safe form of any stored location string: [`Location::redacted`] when
/// it parses; otherwise `scheme://` plus whatever follows the last `@` (so no user-info
/// survives), or `<malformed location>` when it is not even `scheme://...`.
pub fn redact_uri(uri: &str) -> String {
    match Location::parse(uri) {
        Ok(loc) => loc.redacted(),
        Err(_) => redact_fallback(uri),
    }
}

/// Query parameter names (lower case) whose values are credentials wherever they appear in
/// the name: signatures of presigned S3, Swift temp and Azure SAS URLs, tokens, keys,
/// passwords.
const SECRET_PARAMS: &[&str] = &[
    "sig",
    "token",
    "key",
    "pass",
    "secret",
    "credential",
    "auth",
    "session",
];

/// `path?query` with the value of every parameter named like a credential replaced by
/// `***` (names and other values stay, so the location still says what it is).
fn mask_query_secrets(path: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if is_secret_param(name) => format!("{name}=***"),
            _ => param.to_string(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

fn redact_fallback(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) if valid_scheme(scheme) => {
            let rest = match rest.rfind('@') {
                Some(i) => &rest[i + 1..],
                None => rest,
            };
            let rest: String = mask_query_secrets(rest)
                .chars()
                .take(512)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            format!("{}://{rest}", scheme.to_ascii_lowercase())
        }
        _ => MALFORMED.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// The store interface
// ---------------------------------------------------------------------------------------

/// What a successful [`Store::add`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Full location URI (may hold credentials: store it in the registry, show it only
    /// through [`redact_uri`]).
    pub location: String,
    /// Bytes stored.
    pub size: u64,
    /// MD5 of the bytes, lower-case hex.
    pub checksum: String,
}

/// Image data ready to be sent.
pub enum ImageData {
    /// A local file of this length: the HTTP layer sends it with `sendfile`.
    File(File, u64),
    /// A stream, with its length when known (remote `Content-Length`).
    Stream(Box<dyn Read + Send>, Option<u64>),
}

impl ImageData {
    /// The length when known.
    pub fn len(&self) -> Option<u64> {
        match self {
            ImageData::File(_, len) => Some(*len),
            ImageData::Stream(_, len) => *len,
        }
    }

    /// True when the data is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The response body for this data.
    pub fn into_body(self) -> crate::http::Body {
        match self {
            ImageData::File(f, len) => crate::http::Body::File(f, len),
            ImageData::Stream(r, len) => crate::http::Body::Reader(r, len),
        }
    }
}

impl fmt::Debug for ImageData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageData::File(_, len) => write!(f, "ImageData::File({len} bytes)"),
            ImageData::Stream(_, len) => write!(f, "ImageData::Stream({len:?} bytes)"),
        }
    }
}

/// One image store backend (Glance's `glance.store.base.Store`).
///
/// Errors: [`Error::NotFound`] for missing data, [`Error::Duplicate`] for data that already
/// exists, [`Error::BadRequest`] for bad locations and client-side upload failures (size
/// mismatch, client disconnect), [`Error::TooLarge`] above `image_size_cap`,
/// [`Error::Forbidden`] for permission errors and [`Error::Store`] for backend failures.
/// No message contains credentials.
pub trait Store: Send + Sync {
    /// The store name (`file`, `http`), as used by `x-image-meta-store`/`default_store`.
    fn name(&self) -> &'static str;

    /// The location schemes this store serves.
    fn schemes(&self) -> &'static [&'static str];

    /// Stores the data of image `id`, reading `data` to its end through a fixed buffer and
    /// computing its MD5. With `expected_size` given, a different byte count is an
    /// [`Error::BadRequest`] and nothing is kept. On any error nothing is left behind.
    fn add(&self, id: &str, data: &mut dyn Read, expected_size: Option<u64>) -> Result<Stored>;

    /// Opens the data at `loc` for sending.
    fn get(&self, loc: &Location) -> Result<ImageData>;

    /// Deletes the data at `loc`. A read-only store leaves the data alone and answers `Ok`
    /// (see [`Store::writable`]).
    fn delete(&self, loc: &Location) -> Result<()>;

    /// The size of the data at `loc`.
    fn size(&self, loc: &Location) -> Result<u64>;

    /// False for read-only stores (http): `add` always fails and `delete` is a no-op.
    fn writable(&self) -> bool;
}

/// Buffers of `buf_size` bytes in flight between the copying and the hashing thread.
const PIPELINE_BUFFERS: usize = 4;

/// Alignment of the copy buffers: a page, so that a store can hand them straight to
/// `O_DIRECT` writes (the file store does).
pub(crate) const BUFFER_ALIGN: usize = 4096;

/// A zeroed buffer whose first byte sits on a [`BUFFER_ALIGN`] boundary, carved out of a
/// slightly larger `Vec` (an aligned allocation proper would need `unsafe`).
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + BUFFER_ALIGN];
        // Always possible for bytes; should it ever not be, the buffer is merely unaligned
        // and writers that need alignment fall back to ordinary writes.
        let start = raw.as_ptr().align_offset(BUFFER_ALIGN).min(BUFFER_ALIGN);
        AlignedBuf { raw, start, len }
    }

    fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// Copies `reader` to `writer` through buffers of `buf_size` bytes (clamped to 4 KiB–16 MiB),
/// computing the MD5 on the way. Returns the byte count and the lower-case hex MD5.
///
/// MD5 runs on a second thread: an upload costs about as much CPU in MD5 as in copying, and
/// one thread doing both tops out well below a fast disk (see bench/README.md). The copying
/// thread fills a buffer from the reader and writes it; each filled buffer then goes to the
/// hasher and comes back for reuse, so memory stays at `PIPELINE_BUFFERS` (4) buffers whatever
/// the image size.
///
/// Every write but the last is a whole buffer starting on a 4 KiB (`BUFFER_ALIGN`) boundary, so a
/// writer can pass them to the disk without copying (`O_DIRECT`) when `buf_size` is a
/// multiple of the alignment.
///
/// Stops with [`Error::TooLarge`] as soon as more than `limit` bytes arrive (nothing beyond
/// the limit is written). Read errors are the client's (the reader is a request body):
/// [`Error::BadRequest`] saying whether the client disconnected, timed out or sent a broken
/// body. Write errors are the store's: [`Error::Forbidden`] for permissions, else
/// [`Error::Store`].
pub fn copy_and_hash<R, W>(
    reader: &mut R,
    writer: &mut W,
    buf_size: usize,
    limit: u64,
) -> Result<(u64, String)>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
{
    let size = buf_size.clamp(MIN_BUFFER_SIZE, MAX_BUFFER_SIZE);
    let (to_hasher, filled) = mpsc::sync_channel::<(AlignedBuf, usize)>(PIPELINE_BUFFERS);
    let (to_copier, emptied) = mpsc::sync_channel::<AlignedBuf>(PIPELINE_BUFFERS);
    std::thread::scope(|scope| {
        let hashing = scope.spawn(move || {
            let mut hasher = Md5Sum::new();
            for (buf, n) in filled {
                hasher.update(&buf.as_slice()[..n]);
                // The copier may be gone (error or end): the buffer is simply dropped.
                let _ = to_copier.send(buf);
            }
            hasher.hex()
        });
        let copied = copy_pipelined(reader, writer, size, limit, &to_hasher, &emptied);
        drop(to_hasher); // ends the hasher's loop
        let checksum = hashing
            .join()
            .map_err(|_| Error::Internal("the MD5 thread of an upload panicked".into()))??;
        copied.map(|total| (total, checksum))
    })
}

/// The copying half of [`copy_and_hash`]: fill, write, hand the buffer to the hasher.
fn copy_pipelined<R, W>(
    reader: &mut R,
    writer: &mut W,
    size: usize,
    limit: u64,
    to_hasher: &mpsc::SyncSender<(AlignedBuf, usize)>,
    emptied: &mpsc::Receiver<AlignedBuf>,
) -> Result<u64>
where
    R: Read + ?Sized,
    W: Write + ?Sized,
{
    let hasher_gone = || Error::Internal("the MD5 thread of an upload stopped".into());
    let mut unallocated = PIPELINE_BUFFERS;
    let mut total: u64 = 0;
    loop {
        let mut buf = match emptied.try_recv() {
            Ok(buf) => buf,
            Err(_) if unallocated > 0 => {
                unallocated -= 1;
                AlignedBuf::new(size)
            }
            Err(_) => emptied.recv().map_err(|_| hasher_gone())?,
        };
        let n = fill(reader, buf.as_mut_slice(), total)?;
        if n == 0 {
            break;
        }
        total = total.saturating_add(n as u64);
        if total > limit {
            return Err(Error::TooLarge(format!(
                "Image data exceeds the maximum allowed size of {limit} bytes (image_size_cap)"
            )));
        }
        writer
            .write_all(&buf.as_slice()[..n])
            .map_err(|e| write_error(&e))?;
        to_hasher.send((buf, n)).map_err(|_| hasher_gone())?;
        if n < size {
            break; // the reader is at its end
        }
    }
    writer.flush().map_err(|e| write_error(&e))?;
    Ok(total)
}

/// Reads into `buf` until it is full or the reader ends; `before` is the byte count of the
/// earlier buffers, for error messages.
fn fill<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8], before: u64) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(&e, before + filled as u64)),
        }
    }
    Ok(filled)
}

fn read_error(e: &io::Error, got: u64) -> Error {
    use io::ErrorKind as K;
    let msg = match e.kind() {
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
            format!("Client disconnected after sending {got} bytes of image data")
        }
        K::TimedOut | K::WouldBlock => {
            format!("Timed out waiting for image data from the client after {got} bytes")
        }
        _ => format!("Error reading image data from the request after {got} bytes: {e}"),
    };
    Error::BadRequest(msg)
}

/// Maps an error writing into a store's own storage.
fn write_error(e: &io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            Error::Forbidden("Permission denied writing image data".into())
        }
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            Error::Store("No space left in the image store".into())
        }
        _ => Error::Store(format!("Error writing image data: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// The registry of stores
// ---------------------------------------------------------------------------------------

/// Store options from glance-api.conf.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Store for uploads without `x-image-meta-store` (default `file`).
    pub default_store: String,
    /// Directory of the filesystem store (default `/var/lib/glance/images/`); created at
    /// start-up if missing.
    pub filesystem_store_datadir: PathBuf,
    /// Copy buffer size in bytes (default 1 MiB; clamped to 4 KiB–16 MiB).
    pub buffer_size: usize,
    /// Let the file store write with `O_DIRECT` (`filesystem_store_direct_io`, default
    /// true); it does so only with buffers of [`DIRECT_IO_MIN_BUFFER`] or more.
    pub direct_io: bool,
    /// Largest image accepted, in bytes (`image_size_cap`, default 1 TiB).
    pub size_cap: u64,
    /// The `swift_store_*` options.
    pub swift: SwiftOptions,
    /// The `s3_store_*` options.
    pub s3: S3Options,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            default_store: "file".into(),
            filesystem_store_datadir: PathBuf::from("/var/lib/glance/images/"),
            buffer_size: DEFAULT_BUFFER_SIZE,
            direct_io: true,
            size_cap: 1 << 40,
            swift: SwiftOptions::default(),
            s3: S3Options::default(),
        }
    }
}

/// Every store of this server, chosen by name for uploads and by scheme for locations
/// (Glance's `glance/store/__init__.py`).
pub struct Stores {
    stores: Vec<Box<dyn Store>>,
    default_store: &'static str,
    size_cap: u64,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores")
            .field(
                "stores",
                &self.stores.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("default_store", &self.default_store)
            .field("size_cap", &self.size_cap)
            .finish()
    }
}

impl Stores {
    /// Builds every backend. A store that cannot be fully configured stays registered and
    /// refuses uploads with a clear error (it logs a warning now). Fails only when
    /// `default_store` names no writable store.
    pub fn new(opts: &StoreOptions) -> Result<Stores> {
        let stores = BACKENDS
            .iter()
            .map(|build| build(opts))
            .collect::<Result<Vec<_>>>()?;
        let mut s = Stores {
            stores,
            default_store: "",
            size_cap: opts.size_cap,
        };
        let default = s
            .by_name(&opts.default_store)
            .filter(|st| st.writable())
            .map(|st| st.name())
            .ok_or_else(|| {
                Error::Config(format!(
                    "default_store = {}: not a writable store on this server (available: {})",
                    sanitize(&opts.default_store),
                    s.writable_names()
                ))
            })?;
        s.default_store = default;
        Ok(s)
    }

    /// The store for an upload: `requested` (`x-image-meta-store`, a store or scheme name
    /// such as `file`) or `default_store`. Unknown or unconfigured → 400 `Requested store
    /// <x> not available on this Glance server`; a read-only store → 400.
    pub fn for_upload(&self, requested: Option<&str>) -> Result<&dyn Store> {
        let name = match requested.map(str::trim) {
            Some(n) if !n.is_empty() => n,
            _ => self.default_store,
        };
        let store = self.by_name(name).ok_or_else(|| {
            Error::BadRequest(format!(
                "Requested store {} not available on this Glance server",
                sanitize(name)
            ))
        })?;
        if !store.writable() {
            return Err(Error::BadRequest(format!(
                "The {} store is read-only: images cannot be uploaded to it",
                store.name()
            )));
        }
        Ok(store)
    }

    /// The store serving `loc`, by scheme. A known scheme whose backend is not built into
    /// this server → [`Error::Store`].
    pub fn for_location(&self, loc: &Location) -> Result<&dyn Store> {
        self.by_name(loc.store_name()).ok_or_else(|| {
            Error::Store(format!(
                "The {} store is not configured on this Glance server",
                loc.store_name()
            ))
        })
    }

    /// Validates a location a client wants to register (`x-image-meta-location`): it must
    /// parse, must not be `file://`/`filesystem://` (only uploads create file locations, so
    /// nothing can point into the data directory or elsewhere on this host), and its store
    /// must be available. Every refusal is a 400.
    pub fn check_client_location(&self, uri: &str) -> Result<Location> {
        let loc = Location::parse(uri)?;
        if loc.kind() == Kind::File {
            return Err(Error::BadRequest(format!(
                "Invalid location: {}:// locations cannot be registered by clients; \
                 upload the image data instead",
                loc.scheme()
            )));
        }
        if self.by_name(loc.store_name()).is_none() {
            return Err(Error::BadRequest(format!(
                "Invalid location: the {} store is not available on this Glance server",
                loc.store_name()
            )));
        }
        Ok(loc)
    }

    /// Opens the data at a stored location (as kept in the registry).
    pub fn get(&self, uri: &str) -> Result<ImageData> {
        let loc = parse_stored(uri)?;
        self.for_location(&loc)?.get(&loc)
    }

    /// Deletes the data at a stored location. For read-only stores (http) this leaves the
    /// remote data alone and answers `Ok`.
    pub fn delete(&self, uri: &str) -> Result<()> {
        let loc = parse_stored(uri)?;
        self.for_location(&loc)?.delete(&loc)
    }

    /// The size of the data at a stored location.
    pub fn size(&self, uri: &str) -> Result<u64> {
        let loc = parse_stored(uri)?;
        self.for_location(&loc)?.size(&loc)
    }

    /// The configured `image_size_cap`, to refuse a too large `Content-Length` before reading.
    pub fn size_cap(&self) -> u64 {
        self.size_cap
    }

    /// The name of the default store.
    pub fn default_store(&self) -> &'static str {
        self.default_store
    }

    /// Finds a registered store by store name or by one of its schemes.
    fn by_name(&self, name: &str) -> Option<&dyn Store> {
        let lower = name.to_ascii_lowercase();
        let wanted = lookup_scheme(&lower)
            .map(|(_, k)| k.store_name())
            .unwrap_or(lower.as_str());
        self.stores
            .iter()
            .map(|s| s.as_ref())
            .find(|s| s.name() == wanted || s.schemes().contains(&wanted))
    }

    fn writable_names(&self) -> String {
        self.stores
            .iter()
            .filter(|s| s.writable())
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Parses a location read from the registry: a parse failure there is the server's data
/// being bad, not the client's request, so it becomes [`Error::Store`].
fn parse_stored(uri: &str) -> Result<Location> {
    Location::parse(uri).map_err(|e| {
        Error::Store(format!(
            "The stored image location {} cannot be used: {}",
            redact_fallback(uri),
            e.message()
        ))
    })
}

/// A client-supplied name made safe to echo: printable ASCII, at most 64 characters.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests;
