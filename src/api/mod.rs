//! The images API server (`glance-api`, spec §4–§6).
//!
//! [`ApiApp`] holds what every request needs (registry, stores, auth, notifier, options).
//! Each request first goes through version negotiation ([`negotiate`]): `/versions` and
//! unknown versions get the 300 versions document, `/v1…` and `Accept:
//! application/vnd.openstack.images-v1` reach the v1 routes in [`v1`].

pub mod recovery;
pub mod v1;

use std::sync::Arc;

use serde_json::json;

use crate::auth::ContextSource;
use crate::http::{Handler, Request, Response};
use crate::notifier::Notifier;
use crate::registry::{PageLimits, Registry};
use crate::store::Stores;

/// Options of the images API that handlers consult.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Host shown in the versions document (`bind_host`).
    pub bind_host: String,
    /// Port shown in the versions document (the bound port).
    pub bind_port: u16,
    /// DELETE leaves data for `glance-scrubber` (`pending_delete`).
    pub delayed_delete: bool,
    /// Listing page sizes.
    pub limits: PageLimits,
    /// Largest image accepted, in bytes (`image_size_cap`).
    pub size_cap: u64,
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
    /// The 300 versions document, with hrefs from the configured address.
    fn versions(&self) -> Response {
        let href = format!("http://{}:{}/v1/", self.opts.bind_host, self.opts.bind_port);
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
            Route::Versions => self.versions(),
            Route::V1(path) => v1::handle(self, req, &path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, accept: Option<&str>) -> Route {
        negotiate(path, accept)
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
