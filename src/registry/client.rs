//! [`Registry`] over HTTP: how `glance-api` talks to a remote `glance-registry`
//! (`registry_host`/`registry_port`).
//!
//! Every call forwards the caller's token and resolved identity (DECISIONS.md "identity
//! between api and registry"); the registry's statuses come back as the crate's errors:
//! 400 → BadRequest (with the registry's message), 401 → Unauthorized, 403 → Forbidden,
//! 404 → NotFound, 409 → Duplicate, unreachable → Unavailable (503).

use std::time::Duration;

use serde_json::{Value, json};
use ureq::Agent;

use crate::auth::Context;
use crate::error::{Error, Result};
use crate::http::percent_encode;
use crate::image::{Image, ImageId, ImagePatch, Status};
use crate::registry::{
    IF_STATUS_HEADER, ListQuery, Member, MemberSpec, MemberStatus, Registry, SharedImage,
};

/// Largest registry reply read into memory (listings of 1000 detailed images fit easily).
const MAX_REPLY: u64 = 64 * 1024 * 1024;

/// A client of a remote `glance-registry`.
pub struct RemoteRegistry {
    base: String,
    agent: Agent,
}

impl RemoteRegistry {
    /// A client of `http://host:port`, with a per-request timeout.
    pub fn new(host: &str, port: u16, timeout: Duration) -> RemoteRegistry {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]") // an IPv6 literal
        } else {
            host.to_string()
        };
        let agent: Agent = Agent::config_builder()
            .tls_config(crate::tls::native())
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        RemoteRegistry {
            base: format!("http://{host}:{port}"),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with the caller's identity; maps transport errors to 503 and error
    /// statuses to the crate's errors, and parses the JSON reply.
    fn call(
        &self,
        ctx: &Context,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Result<Value> {
        let url = self.url(path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in ctx.forward_headers() {
            builder = builder.header(k, v);
        }
        for (k, v) in extra {
            builder = builder.header(*k, *v);
        }
        let uri = if query.is_empty() {
            url.clone()
        } else {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                .collect();
            format!("{url}?{}", q.join("&"))
        };
        builder = builder.uri(uri);
        let payload = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        if body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let request = builder
            .body(payload)
            .map_err(|e| Error::Internal(format!("building registry request: {e}")))?;
        let mut resp = self.agent.run(request).map_err(|e| {
            Error::Unavailable(format!(
                "The image registry at {} could not be reached: {e}",
                self.base
            ))
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_REPLY)
            .read_to_string()
            .map_err(|e| Error::Unavailable(format!("Reading the registry reply failed: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(error_from_status(status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| Error::Internal(format!("registry reply is not JSON: {e}")))
    }

    fn image_path(id: &str) -> String {
        format!("/images/{}", percent_encode(id))
    }
}

/// Turns a registry error reply into the crate error, keeping the registry's detail line.
fn error_from_status(status: u16, body: &str) -> Error {
    let detail = crate::rest::detail_line(body);
    match status {
        400 => Error::BadRequest(detail),
        401 => Error::Unauthorized(detail),
        403 => Error::Forbidden(detail),
        404 => Error::NotFound(detail),
        409 => Error::Duplicate(detail),
        413 => Error::TooLarge(detail),
        503 => Error::Unavailable(detail),
        _ => Error::Internal(format!("registry answered {status}: {detail}")),
    }
}

fn image_of(v: &Value) -> Result<Image> {
    Image::from_json(v.get("image").unwrap_or(&Value::Null))
}

fn list_of<T: serde::de::DeserializeOwned>(v: &Value, key: &str) -> Result<Vec<T>> {
    serde_json::from_value(v.get(key).cloned().unwrap_or(Value::Array(vec![])))
        .map_err(|e| Error::Internal(format!("registry reply '{key}': {e}")))
}

impl Registry for RemoteRegistry {
    /// The registry shows locations redacted in listings; glance-api never needs one from a
    /// listing (data is read and deleted after [`Registry::get`], which has the full one).
    fn list(&self, ctx: &Context, query: &ListQuery) -> Result<Vec<Image>> {
        let v = self.call(ctx, "GET", "/images/detail", &query.to_pairs(), None, &[])?;
        let items = v
            .get("images")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        items.iter().map(Image::from_json).collect()
    }

    fn get(&self, ctx: &Context, id: &ImageId) -> Result<Image> {
        image_of(&self.call(ctx, "GET", &Self::image_path(id), &[], None, &[])?)
    }

    fn create(&self, ctx: &Context, patch: &ImagePatch) -> Result<Image> {
        let body = json!({ "image": patch.to_json() });
        image_of(&self.call(ctx, "POST", "/images", &[], Some(&body), &[])?)
    }

    fn update(
        &self,
        ctx: &Context,
        id: &ImageId,
        patch: &ImagePatch,
        purge_props: bool,
    ) -> Result<Image> {
        let body = json!({ "image": patch.to_json() });
        let purge = if purge_props { "true" } else { "false" };
        let extra = [("X-Glance-Registry-Purge-Props", purge)];
        image_of(&self.call(ctx, "PUT", &Self::image_path(id), &[], Some(&body), &extra)?)
    }

    fn update_if(
        &self,
        ctx: &Context,
        id: &ImageId,
        expected: Status,
        patch: &ImagePatch,
        purge_props: bool,
    ) -> Result<Image> {
        let body = json!({ "image": patch.to_json() });
        let purge = if purge_props { "true" } else { "false" };
        let extra = [
            ("X-Glance-Registry-Purge-Props", purge),
            (IF_STATUS_HEADER, expected.as_str()),
        ];
        image_of(&self.call(ctx, "PUT", &Self::image_path(id), &[], Some(&body), &extra)?)
    }

    fn delete(&self, ctx: &Context, id: &ImageId) -> Result<Image> {
        // The registry answers `null`; the record as deleted is read back first.
        let image = self.get(ctx, id)?;
        self.call(ctx, "DELETE", &Self::image_path(id), &[], None, &[])?;
        Ok(Image {
            deleted: true,
            ..image
        })
    }

    fn members(&self, ctx: &Context, id: &ImageId) -> Result<Vec<Member>> {
        let path = format!("{}/members", Self::image_path(id));
        list_of(&self.call(ctx, "GET", &path, &[], None, &[])?, "members")
    }

    fn add_member(
        &self,
        ctx: &Context,
        id: &ImageId,
        member: &str,
        can_share: Option<bool>,
    ) -> Result<()> {
        let path = format!(
            "{}/members/{}",
            Self::image_path(id),
            percent_encode(member)
        );
        let body = can_share.map(|c| json!({ "member": { "can_share": c } }));
        self.call(ctx, "PUT", &path, &[], body.as_ref(), &[])?;
        Ok(())
    }

    fn delete_member(&self, ctx: &Context, id: &ImageId, member: &str) -> Result<()> {
        let path = format!(
            "{}/members/{}",
            Self::image_path(id),
            percent_encode(member)
        );
        self.call(ctx, "DELETE", &path, &[], None, &[])?;
        Ok(())
    }

    fn replace_members(&self, ctx: &Context, id: &ImageId, members: &[MemberSpec]) -> Result<()> {
        let path = format!("{}/members", Self::image_path(id));
        let body = MemberSpec::memberships_body(members);
        self.call(ctx, "PUT", &path, &[], Some(&body), &[])?;
        Ok(())
    }

    fn shared_images(&self, ctx: &Context, member: &str) -> Result<Vec<SharedImage>> {
        let path = format!("/shared-images/{}", percent_encode(member));
        list_of(
            &self.call(ctx, "GET", &path, &[], None, &[])?,
            "shared_images",
        )
    }

    fn set_member_status(
        &self,
        ctx: &Context,
        id: &ImageId,
        member: &str,
        status: MemberStatus,
    ) -> Result<Member> {
        let path = format!(
            "{}/members/{}/status",
            Self::image_path(id),
            percent_encode(member)
        );
        let body = json!({ "status": status.as_str() });
        let reply = self.call(ctx, "PUT", &path, &[], Some(&body), &[])?;
        serde_json::from_value(reply.get("member").cloned().unwrap_or(Value::Null))
            .map_err(|e| Error::Internal(format!("registry reply: bad member: {e}")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn error_mapping_keeps_detail() {
        let body = "400 Bad Request\n\nThe server could not comply...\n\n Invalid disk format 'x' for image.\n";
        let e = error_from_status(400, body);
        assert_eq!(e.status(), 400);
        assert_eq!(e.message(), "Invalid disk format 'x' for image.");
        assert_eq!(error_from_status(404, "").status(), 404);
        assert_eq!(error_from_status(409, "dup").status(), 409);
        assert_eq!(error_from_status(502, "x").status(), 500);
    }

    /// Runs `check` through this client against a registry server (on an in-memory SQLite
    /// registry) on loopback.
    fn over_http(check: fn(&dyn Registry)) {
        use crate::registry::db::{DbOptions, SqlRegistry};
        let sqlite = SqlRegistry::open_in_memory(DbOptions::default());
        over_http_on(
            std::sync::Arc::new(sqlite.unwrap_or_else(|e| panic!("{e}"))),
            check,
        );
    }

    /// Runs `check` through this client against a registry server on `registry`.
    pub(crate) fn over_http_on(registry: std::sync::Arc<dyn Registry>, check: fn(&dyn Registry)) {
        use crate::auth::{AuthOptions, NoAuth};
        use crate::http::server::{Server, ServerConfig};
        use crate::registry::PageLimits;
        use crate::registry::server::RegistryApp;
        use std::sync::Arc;

        let auth = Arc::new(NoAuth(AuthOptions::default()));
        let app = RegistryApp::new(registry, auth, PageLimits::default());
        let server = Server::bind("127.0.0.1:0", ServerConfig::default());
        let server = server.unwrap_or_else(|e| panic!("{e}"));
        let port = server.local_addr().map(|a| a.port()).unwrap_or(0);
        let stop = server.shutdown_handle();
        let running = std::thread::spawn(move || server.run(Arc::new(app)));
        let reg = RemoteRegistry::new("127.0.0.1", port, Duration::from_secs(30));
        check(&reg);
        stop.shutdown();
        let _ = running.join();
    }

    /// `virtual_size` through this client and a registry server: the JSON both ways.
    #[test]
    fn virtual_size_over_http() {
        over_http(crate::registry::conformance::exercise_virtual_size);
    }

    /// `os_hash_algo` and `os_hash_value` through this client and a registry server.
    #[test]
    fn os_hash_over_http() {
        over_http(crate::registry::conformance::exercise_os_hash);
    }

    /// What the images API v2 needs (visibility, tags, member status, the v2 listing
    /// query) through this client and a registry server.
    #[test]
    fn v2_fields_and_listings_over_http() {
        over_http(crate::registry::conformance_v2::exercise_v2);
    }

    #[test]
    fn unreachable_registry_is_503() {
        // Port 1 on loopback refuses connections.
        let reg = RemoteRegistry::new("127.0.0.1", 1, Duration::from_secs(2));
        let ctx = Context::default();
        let err = reg
            .get(&ctx, &crate::registry::conformance::iid("x"))
            .err()
            .map(|e| e.status());
        assert_eq!(err, Some(503));
    }
}
