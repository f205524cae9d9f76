//! Image locations: the URIs in the registry that say where an image's data lives
//! (Glance's `glance/store/location.py` and the `StoreLocation` classes of its backends).
//!
//! [`Location::parse`] is the only parser of location URIs in the crate; [`Location::uri`]
//! gives the full form for the registry, [`Location::redacted`] and [`redact_uri`] the form
//! for clients and logs (no user-info, presigned signatures masked).

use std::fmt;
use std::path::Path;

use crate::error::{Error, Result};

/// Longest location URI accepted.
const MAX_URI_LEN: usize = 4096;

/// Shown instead of a location that cannot be parsed well enough to redact it.
const MALFORMED: &str = "<malformed location>";

// ---------------------------------------------------------------------------------------
// Scheme table
// ---------------------------------------------------------------------------------------

/// The store backends: what `default_store`, `x-image-meta-store` and a location's scheme
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The filesystem store (`file`).
    File,
    /// The read-only HTTP(S) store (`http`).
    Http,
    /// The Swift store (`swift`).
    Swift,
    /// The S3 store (`s3`).
    S3,
}

impl Backend {
    /// The backend a store name (`file`, `swift`, ...) or one of its schemes (`filesystem`,
    /// `swift+https`, ...) names, case-insensitively.
    pub fn parse(name: &str) -> Option<Backend> {
        let lower = name.trim().to_ascii_lowercase();
        SCHEMES
            .iter()
            .find(|(s, b)| *s == lower || b.store_name() == lower)
            .map(|(_, b)| *b)
    }

    /// The store name, as in `x-image-meta-store`/`default_store` and [`Store::name`].
    pub fn store_name(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Http => "http",
            Backend::Swift => "swift",
            Backend::S3 => "s3",
        }
    }
}

/// Every scheme glance-rs understands, with the kind of store serving it. Lookups are by the
/// lower-cased scheme.
const SCHEMES: &[(&str, Backend)] = &[
    ("file", Backend::File),
    ("filesystem", Backend::File),
    ("http", Backend::Http),
    ("https", Backend::Http),
    ("swift", Backend::Swift),
    ("swift+http", Backend::Swift),
    ("swift+https", Backend::Swift),
    ("s3", Backend::S3),
    ("s3+http", Backend::S3),
    ("s3+https", Backend::S3),
];

pub(super) fn lookup_scheme(scheme: &str) -> Option<(&'static str, Backend)> {
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
        if kind != Backend::File && rest.chars().any(char::is_whitespace) {
            return Err(malformed(format!("{scheme} URI contains whitespace")));
        }
        match kind {
            Backend::File => parse_file(scheme, rest),
            Backend::Http => parse_http(scheme, rest),
            Backend::Swift => parse_swift(scheme, uri, rest),
            Backend::S3 => parse_s3(scheme, uri, rest),
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

    pub(super) fn kind(&self) -> Backend {
        match self {
            Location::File(_) => Backend::File,
            Location::Http(_) => Backend::Http,
            Location::Swift(_) => Backend::Swift,
            Location::S3(_) => Backend::S3,
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

/// Checks a location the registry is asked to record: it must parse as a store location
/// (the registry API's check; glance-api applies the location policy before it sends one).
/// The error is a 400 naming the `location` field.
pub fn check_record(uri: &str) -> Result<()> {
    Location::parse(uri).map(|_| ()).map_err(|e| {
        let m = e.message();
        if m.to_ascii_lowercase().contains("location") {
            Error::BadRequest(m)
        } else {
            Error::bad_request(format!("Invalid value for 'location': {m}"))
        }
    })
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

pub(super) fn redact_fallback(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) if valid_scheme(scheme) => {
            let rest = match rest.rfind('@') {
                Some(i) => &rest[i + 1..],
                None => rest,
            };
            let rest = mask_authority_secret(rest);
            let rest: String = mask_query_secrets(&rest)
                .chars()
                .take(512)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            format!("{}://{rest}", scheme.to_ascii_lowercase())
        }
        _ => MALFORMED.to_string(),
    }
}

/// An unparsable authority `user:secret` without `@` (`http://user:secret/path`) would show
/// the secret where a port belongs: anything after the last `:` of the authority that is
/// not a port number is masked.
fn mask_authority_secret(rest: &str) -> String {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.ends_with(']') {
        return rest.to_string(); // an IPv6 literal without a port
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{host}:***{tail}")
        }
        _ => rest.to_string(),
    }
}

/// Parses a location read from the registry: a parse failure there is the server's data
/// being bad, not the client's request, so it becomes [`Error::Store`].
pub(super) fn parse_stored(uri: &str) -> Result<Location> {
    Location::parse(uri).map_err(|e| {
        Error::Store(format!(
            "The stored image location {} cannot be used: {}",
            redact_fallback(uri),
            e.message()
        ))
    })
}

#[cfg(test)]
mod tests;
