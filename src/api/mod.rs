//! The images API server (`glance-api`, spec §4–§6).
//!
//! [`ApiApp`] holds what every request needs (registry, stores, auth, notifier, options).
//! Each request first goes through version negotiation ([`negotiate`]): `/` and unknown
//! versions get the 300 versions document (`/versions` the same document with 200), `/v1…` and `Accept:
//! application/vnd.openstack.images-v1` reach the v1 routes in [`v1`], `/v2…` and `Accept:
//! application/vnd.openstack.images-v2` the v2 routes in [`v2`]. Both versions keep image
//! data on the one path of [`data`].

pub mod data;
pub mod recovery;
pub mod v1;
pub mod v2;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;

use crate::auth::ContextSource;
use crate::config::ApiVersions;
use crate::format::OnMismatch;
use crate::http::{Handler, Request, Response};
use crate::notifier::Notifier;
use crate::registry::{PageLimits, Registry};
use crate::store::Stores;

/// Options of the images API that handlers consult.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// The configured `bind_host` (for [`ApiOptions::base_url`] without a socket).
    pub bind_host: String,
    /// The bound port (for [`ApiOptions::base_url`] without a socket).
    pub bind_port: u16,
    /// DELETE leaves data for `glance-scrubber` (`pending_delete`).
    pub delayed_delete: bool,
    /// Listing page sizes.
    pub limits: PageLimits,
    /// Largest image accepted, in bytes (`image_size_cap`).
    pub size_cap: u64,
    /// `public_endpoint`, already validated and without a trailing slash.
    pub public_endpoint: Option<String>,
    /// `disk_formats`: the disk formats a client may declare on create and update (all
    /// known to the registry; the registry itself accepts every known one).
    pub disk_formats: Vec<String>,
    /// `image_format_mismatch`: what an upload whose data is not in its declared
    /// `disk_format` gets.
    pub format_mismatch: OnMismatch,
    /// The APIs served (`enable_v1_api`, `enable_v2_api`) and v2's location options.
    pub apis: ApiVersions,
}

impl ApiOptions {
    /// The base URL of absolute links (`Location` headers, the versions document):
    /// `public_endpoint` when set, else `http://` and the local address of the connection
    /// the request came in on, i.e. the address the client reached (IPv4-mapped IPv6
    /// addresses shown as IPv4). Never the client's `Host` header, which anyone can set.
    /// Without a socket (unit tests) the configured `bind_host:bind_port`, with the
    /// wildcards `0.0.0.0`/`::` as `127.0.0.1`/`::1`.
    pub fn base_url(&self, req: &Request<'_>) -> String {
        if let Some(endpoint) = &self.public_endpoint {
            return endpoint.clone();
        }
        if let Some(local) = req.local {
            return local_base_url(local);
        }
        let host = match self.bind_host.trim_start_matches('[').trim_end_matches(']') {
            "" | "0.0.0.0" => "127.0.0.1".to_string(),
            "::" => "[::1]".to_string(),
            h if h.contains(':') => format!("[{h}]"),
            h => h.to_string(),
        };
        format!("http://{host}:{}", self.bind_port)
    }
}

/// `http://` and the address a client reached, remembered per thread: formatting the
/// address was a twentieth of a HEAD's CPU time, and a worker sees few addresses.
fn local_base_url(local: SocketAddr) -> String {
    thread_local! {
        static LAST: RefCell<Option<(SocketAddr, String)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((addr, url)) = last
            && *addr == local
        {
            return url.clone();
        }
        let addr = SocketAddr::new(local.ip().to_canonical(), local.port());
        let url = format!("http://{addr}");
        *last = Some((local, url.clone()));
        url
    })
}

/// The images API application.
pub struct ApiApp {
    /// Image metadata.
    pub registry: Arc<dyn Registry>,
    /// Image data.
    pub stores: Arc<Stores>,
    /// Who is calling.
    pub auth: Arc<dyn ContextSource>,
    /// Image events.
    pub notifier: Arc<dyn Notifier>,
    /// Options.
    pub opts: ApiOptions,
    /// Upload leases, with a database of our own (not a remote registry).
    pub leases: Option<Arc<recovery::UploadLeases>>,
    /// The rendered metadata headers of images answered recently (HEAD).
    pub image_headers: v1::headers::HeaderCache,
}

/// Where version negotiation sends a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Answer with the versions document (300).
    Versions,
    /// `/versions`: the versions document, 200 (as current Glance answers).
    VersionList,
    /// Serve with the v1 routes at this path.
    V1(String),
    /// Serve with the v2 routes at this path.
    V2(String),
}

/// Version negotiation, spec §4: path prefix first, then the `Accept` header.
pub fn negotiate(path: &str, accept: Option<&str>) -> Route {
    let trimmed = path.trim_start_matches('/');
    let (first, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, ""),
    };
    if first == "versions" {
        return Route::VersionList;
    }
    if let Some(version) = parse_version(first) {
        let rest = if rest.is_empty() { "/" } else { rest }.to_string();
        return match version {
            (1, 0) => Route::V1(rest),
            (2, minor) if minor <= V2_NEWEST_MINOR => Route::V2(rest),
            _ => Route::Versions,
        };
    }
    const MEDIA: &str = "application/vnd.openstack.images-";
    match accept.and_then(|a| a.strip_prefix(MEDIA)) {
        Some(v) => match parse_version(v) {
            Some((1, 0)) | None => Route::V1(path.to_string()),
            Some((2, minor)) if minor <= V2_NEWEST_MINOR => Route::V2(path.to_string()),
            Some(_) => Route::Versions,
        },
        None => Route::Versions,
    }
}

/// The newest v2 minor version served: v2.0 … v2.7 (2.7 brought `os_hidden` and the
/// multihash; image import, 2.6, is not served: `/v2/info/import` lists no method).
pub const V2_NEWEST_MINOR: u64 = 7;

/// Matches `^v(\d+)\.?(\d+)?` and returns (major, minor); a missing minor is 0.
fn parse_version(s: &str) -> Option<(u64, u64)> {
    let rest = s.strip_prefix('v')?;
    let major_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if major_len == 0 {
        return None;
    }
    let major = rest[..major_len].parse().ok()?;
    let after = rest[major_len..]
        .strip_prefix('.')
        .unwrap_or(&rest[major_len..]);
    let minor_len = after.bytes().take_while(u8::is_ascii_digit).count();
    let minor = if minor_len == 0 {
        0
    } else {
        after[..minor_len].parse().ok()?
    };
    Some((major, minor))
}

impl ApiApp {
    /// The 300 versions document, with hrefs from [`ApiOptions::base_url`]: the v2 minor
    /// versions served, newest first and `CURRENT`, then v1.1 and v1.0 (`CURRENT` when v2
    /// is off, else `SUPPORTED`, or `DEPRECATED` with `v1_api_deprecated`).
    fn versions(&self, req: &Request<'_>, status: u16) -> Response {
        let base = self.opts.base_url(req);
        let apis = &self.opts.apis;
        let entry = |id: String, status: &str, href: &str| json!({"id": id, "status": status, "links": [{"rel": "self", "href": href}]});
        let mut list = Vec::new();
        if apis.v2 {
            let href = format!("{base}/v2/");
            for minor in (0..=V2_NEWEST_MINOR).rev() {
                let status = if minor == V2_NEWEST_MINOR {
                    "CURRENT"
                } else {
                    "SUPPORTED"
                };
                list.push(entry(format!("v2.{minor}"), status, &href));
            }
        }
        if apis.v1 {
            let href = format!("{base}/v1/");
            let status = match (apis.v2, apis.v1_deprecated) {
                (_, true) => "DEPRECATED",
                (true, false) => "SUPPORTED",
                (false, false) => "CURRENT",
            };
            list.push(entry("v1.1".into(), status, &href));
            let old = if apis.v1_deprecated {
                "DEPRECATED"
            } else {
                "SUPPORTED"
            };
            list.push(entry("v1.0".into(), old, &href));
        }
        Response::json(status, &json!({ "versions": list }))
    }
}

impl Handler for ApiApp {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        match negotiate(&req.path, req.header("accept")) {
            Route::V1(path) if self.opts.apis.v1 => v1::handle(self, req, &path),
            Route::V2(path) if self.opts.apis.v2 => v2::handle(self, req, &path),
            Route::VersionList => self.versions(req, 200),
            _ => self.versions(req, 300),
        }
    }

    /// Downloads (`GET /v1/images/<id>`) stream image data; uploads are told apart by
    /// their body, which the server sees itself.
    fn moves_data(&self, method: &str, path: &str) -> bool {
        method == "GET" && moves_data(path)
    }
}

/// True when a GET of `path` is an image download (v1 `/images/<id>`, v2
/// `/images/<id>/file`). The `Accept` header is not looked at: a path without a version
/// that would reach an API through it is rare enough to be served as light.
fn moves_data(path: &str) -> bool {
    let (path, v2) = match negotiate(path, None) {
        Route::V1(p) => (p, false),
        Route::V2(p) => (p, true),
        Route::Versions | Route::VersionList => return false,
    };
    let mut parts = path.trim_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("images"), Some(id), None, None) => !v2 && id != "detail",
        (Some("images"), Some(_), Some("file"), None) => v2,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, accept: Option<&str>) -> Route {
        negotiate(path, accept)
    }

    #[test]
    fn downloads_are_told_apart_from_metadata_requests() {
        assert!(moves_data("/v1/images/abc"));
        assert!(moves_data("/v1/images/abc/"));
        assert!(!moves_data("/v1/images/detail"));
        assert!(!moves_data("/v1/images"));
        assert!(!moves_data("/v1/images/abc/members"));
        assert!(!moves_data("/versions"));
        assert!(!moves_data("/images/abc"));
        assert!(moves_data("/v2/images/abc/file"));
        assert!(moves_data("/v2.1/images/abc/file/"));
        assert!(!moves_data("/v2/images/abc"));
        assert!(!moves_data("/v2/images"));
        assert!(!moves_data("/v1/images/abc/file"));
    }

    #[test]
    fn version_negotiation_by_path() {
        let v1 = |p: &str| Route::V1(p.to_string());
        assert_eq!(route("/v1/images", None), v1("/images"));
        assert_eq!(route("/v1.0/images", None), v1("/images"));
        assert_eq!(route("/v1.a/images", None), v1("/images"));
        assert_eq!(route("/v1abc/images", None), v1("/images"));
        assert_eq!(route("/v1", None), v1("/"));
        assert_eq!(route("/v1/", None), v1("/"));
        let v2 = |p: &str| Route::V2(p.to_string());
        assert_eq!(route("/v2/images", None), v2("/images"));
        assert_eq!(route("/v2.7/images", None), v2("/images"));
        assert_eq!(route("/v2", None), v2("/"));
        for p in [
            "/v1.1/images",
            "/v1.2/images",
            "/v2.99/images",
            "/v3/images",
            "/V1/images",
            "/va.1/images",
        ] {
            assert_eq!(route(p, None), Route::Versions, "{p}");
        }
        assert_eq!(route("/versions", None), Route::VersionList);
        assert_eq!(route("/versions/foo", None), Route::VersionList);
        assert_eq!(route("/", None), Route::Versions);
    }

    fn opts(bind_host: &str, public_endpoint: Option<&str>) -> ApiOptions {
        ApiOptions {
            bind_host: bind_host.into(),
            bind_port: 9292,
            delayed_delete: false,
            limits: PageLimits::default(),
            size_cap: 1,
            public_endpoint: public_endpoint.map(str::to_string),
            disk_formats: vec!["raw".into()],
            format_mismatch: OnMismatch::Reject,
            apis: ApiVersions::default(),
        }
    }

    #[test]
    fn base_url_never_comes_from_the_host_header() {
        let mut req = Request::fake("GET", "/v1/images", &[("Host", "evil.example")], b"");
        let o = opts("0.0.0.0", None);
        assert_eq!(o.base_url(&req), "http://127.0.0.1:9292");
        assert_eq!(opts("::", None).base_url(&req), "http://[::1]:9292");
        assert_eq!(
            opts("fd00::5", None).base_url(&req),
            "http://[fd00::5]:9292"
        );
        assert_eq!(
            opts("glance.local", None).base_url(&req),
            "http://glance.local:9292"
        );
        req.local = "10.1.2.3:9393".parse().ok();
        assert_eq!(o.base_url(&req), "http://10.1.2.3:9393");
        req.local = "[::ffff:10.1.2.3]:9393".parse().ok();
        assert_eq!(o.base_url(&req), "http://10.1.2.3:9393");
        req.local = "[fe80::1]:9393".parse().ok();
        assert_eq!(o.base_url(&req), "http://[fe80::1]:9393");
        let public = opts("0.0.0.0", Some("https://images.example.com:9292"));
        assert_eq!(public.base_url(&req), "https://images.example.com:9292");
    }

    #[test]
    fn version_negotiation_by_accept() {
        let v1 = |p: &str| Route::V1(p.to_string());
        let a = |s| Some(s);
        assert_eq!(
            route("/images", a("application/vnd.openstack.images-v1")),
            v1("/images")
        );
        assert_eq!(
            route("/images", a("application/vnd.openstack.images-foo")),
            v1("/images")
        );
        assert_eq!(
            route("/images", a("application/vnd.openstack.images-v1, */*")),
            v1("/images")
        );
        assert_eq!(
            route("/images", a("application/vnd.openstack.images-v1.1")),
            Route::Versions
        );
        assert_eq!(
            route("/images", a("application/vnd.openstack.images-v2")),
            Route::V2("/images".into())
        );
        assert_eq!(
            route(
                "/images",
                a("text/html, application/vnd.openstack.images-v1")
            ),
            Route::Versions
        );
        assert_eq!(route("/images", a("application/json")), Route::Versions);
        assert_eq!(route("/images", None), Route::Versions);
    }
}
