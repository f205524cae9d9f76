//! The images API server (`glance-api`, spec §4–§6).
//!
//! [`ApiApp`] holds what every request needs (registry, stores, auth, notifier, options).
//! Each request first goes through version negotiation ([`negotiate`]): `/versions` and
//! unknown versions get the 300 versions document, `/v1…` and `Accept:
//! application/vnd.openstack.images-v1` reach the v1 routes in [`v1`].

pub mod data;
pub mod recovery;
pub mod v1;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::json;

use crate::auth::ContextSource;
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
            let addr = SocketAddr::new(local.ip().to_canonical(), local.port());
            return format!("http://{addr}");
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
}

/// Where version negotiation sends a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Answer with the versions document (300).
    Versions,
    /// Serve with the v1 routes at this path.
    V1(String),
}

/// Version negotiation, spec §4: path prefix first, then the `Accept` header.
pub fn negotiate(path: &str, accept: Option<&str>) -> Route {
    let trimmed = path.trim_start_matches('/');
    let (first, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, ""),
    };
    if first == "versions" {
        return Route::Versions;
    }
    if let Some(version) = parse_version(first) {
        return if version == (1, 0) {
            Route::V1(if rest.is_empty() { "/" } else { rest }.to_string())
        } else {
            Route::Versions
        };
    }
    const MEDIA: &str = "application/vnd.openstack.images-";
    match accept.and_then(|a| a.strip_prefix(MEDIA)) {
        Some(v) => match parse_version(v) {
            Some((1, 0)) | None => Route::V1(path.to_string()),
            Some(_) => Route::Versions,
        },
        None => Route::Versions,
    }
}

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
    /// The 300 versions document, with hrefs from [`ApiOptions::base_url`].
    fn versions(&self, req: &Request<'_>) -> Response {
        let href = format!("{}/v1/", self.opts.base_url(req));
        let doc = json!({"versions": [
            {"id": "v1.1", "status": "CURRENT", "links": [{"rel": "self", "href": href}]},
            {"id": "v1.0", "status": "SUPPORTED", "links": [{"rel": "self", "href": href}]},
        ]});
        Response::json(300, &doc)
    }
}

impl Handler for ApiApp {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        match negotiate(&req.path, req.header("accept")) {
            Route::Versions => self.versions(req),
            Route::V1(path) => v1::handle(self, req, &path),
        }
    }

    /// Downloads (`GET /v1/images/<id>`) stream image data; uploads are told apart by
    /// their body, which the server sees itself.
    fn moves_data(&self, method: &str, path: &str) -> bool {
        method == "GET" && moves_data(path)
    }
}

/// True when a GET of `path` is an image download. The `Accept` header is not looked at:
/// a path without a version that would reach v1 through it is rare enough to be served
/// as light.
fn moves_data(path: &str) -> bool {
    let Route::V1(path) = negotiate(path, None) else {
        return false;
    };
    let mut parts = path.trim_matches('/').split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("images"), Some(id), None) if id != "detail"
    )
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
        for p in [
            "/v1.1/images",
            "/v1.2/images",
            "/v2/versions",
            "/V1/images",
            "/va.1/images",
        ] {
            assert_eq!(route(p, None), Route::Versions, "{p}");
        }
        assert_eq!(route("/versions", None), Route::Versions);
        assert_eq!(route("/versions/foo", None), Route::Versions);
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
