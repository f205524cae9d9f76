//! The registry's JSON API (`glance-registry`, spec §8): one route table over a
//! [`Registry`], used by `glance-api` in remote mode.
//!
//! Replies are JSON (one `Content-Type: application/json; charset=UTF-8`); errors are the
//! crate's text replies. POST answers 200 (not 201) and DELETE 200 with `null`, as Diablo did.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::auth::{Context, ContextSource};
use crate::error::{Error, Result};
use crate::http::{Handler, Request, Response};
use crate::image::{Image, ImagePatch};
use crate::registry::{ListQuery, MemberSpec, PageLimits, Registry};

/// Largest JSON request body the registry accepts.
pub const MAX_JSON_BODY: u64 = 1024 * 1024;

/// The registry API application.
pub struct RegistryApp {
    registry: Arc<dyn Registry>,
    auth: Arc<dyn ContextSource>,
    limits: PageLimits,
}

impl RegistryApp {
    /// An app serving `registry`, with contexts from `auth` and page limits `limits`.
    pub fn new(
        registry: Arc<dyn Registry>,
        auth: Arc<dyn ContextSource>,
        limits: PageLimits,
    ) -> RegistryApp {
        RegistryApp {
            registry,
            auth,
            limits,
        }
    }

    fn route(&self, req: &mut Request<'_>) -> Result<Response> {
        let ctx = self.auth.context(req)?;
        let path = req.path.trim_end_matches('/').to_string();
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // HEAD is answered like GET; the server drops the body.
        let method = match req.method.as_str() {
            "HEAD" => "GET",
            m => m,
        };
        match (method, segs.as_slice()) {
            ("GET", [] | ["images"]) => self.index(req, &ctx, false),
            ("POST", ["images"]) => self.create(req, &ctx),
            (_, []) => Err(not_allowed("GET, HEAD")),
            (_, ["images"]) => Err(not_allowed("GET, HEAD, POST")),
            ("GET", ["images", "detail"]) => self.index(req, &ctx, true),
            (_, ["images", "detail"]) => Err(not_allowed("GET, HEAD")),
            ("GET", ["images", id]) => self.show(&ctx, id),
            ("PUT", ["images", id]) => self.update(req, &ctx, id),
            ("DELETE", ["images", id]) => self.delete(&ctx, id),
            (_, ["images", _]) => Err(not_allowed("GET, HEAD, PUT, DELETE")),
            ("GET", ["images", id, "members"]) => self.members(&ctx, id),
            ("PUT", ["images", id, "members"]) => self.replace_members(req, &ctx, id),
            (_, ["images", _, "members"]) => Err(not_allowed("GET, HEAD, PUT")),
            ("PUT", ["images", id, "members", member]) => self.add_member(req, &ctx, id, member),
            ("DELETE", ["images", id, "members", member]) => {
                self.registry.delete_member(&ctx, id, member)?;
                Ok(Response::empty(204))
            }
            (_, ["images", _, "members", _]) => Err(not_allowed("PUT, DELETE")),
            (_, ["shared-images", member]) => {
                let shared = self.registry.shared_images(&ctx, member)?;
                Ok(Response::json(200, &json!({ "shared_images": shared })))
            }
            _ => Err(Error::not_found(format!(
                "The resource '{}' could not be found",
                req.path
            ))),
        }
    }

    fn index(&self, req: &Request<'_>, ctx: &Context, detail: bool) -> Result<Response> {
        let query = ListQuery::parse(&req.query_pairs(), ctx, self.limits)?;
        let images = self.registry.list(ctx, &query)?;
        let list: Vec<Value> = images
            .iter()
            .map(|i| {
                if detail {
                    i.to_json(true)
                } else {
                    i.to_brief_json()
                }
            })
            .collect();
        Ok(Response::json(200, &json!({ "images": list })))
    }

    fn show(&self, ctx: &Context, id: &str) -> Result<Response> {
        let image = self.registry.get(ctx, id)?;
        Ok(image_reply(&image))
    }

    fn create(&self, req: &mut Request<'_>, ctx: &Context) -> Result<Response> {
        let patch = image_patch_from_body(req)?;
        let image = self.registry.create(ctx, &patch).map_err(|e| match e {
            Error::BadRequest(m) => {
                Error::BadRequest(format!("Failed to add image metadata. Got error: {m}"))
            }
            other => other,
        })?;
        Ok(image_reply(&image))
    }

    fn update(&self, req: &mut Request<'_>, ctx: &Context, id: &str) -> Result<Response> {
        let purge = req
            .header("x-glance-registry-purge-props")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let patch = image_patch_from_body(req)?;
        let image = self
            .registry
            .update(ctx, id, &patch, purge)
            .map_err(|e| match e {
                Error::BadRequest(m) => {
                    Error::BadRequest(format!("Failed to update image metadata. Got error: {m}"))
                }
                other => other,
            })?;
        Ok(image_reply(&image))
    }

    fn delete(&self, ctx: &Context, id: &str) -> Result<Response> {
        self.registry.delete(ctx, id)?;
        Ok(Response::json(200, &Value::Null))
    }

    fn members(&self, ctx: &Context, id: &str) -> Result<Response> {
        let members = self.registry.members(ctx, id)?;
        Ok(Response::json(200, &json!({ "members": members })))
    }

    fn add_member(
        &self,
        req: &mut Request<'_>,
        ctx: &Context,
        id: &str,
        member: &str,
    ) -> Result<Response> {
        let body = read_json(req)?;
        let can_share = match &body {
            None => None,
            Some(v) => parse_can_share(v.get("member").unwrap_or(&Value::Null))?,
        };
        self.registry.add_member(ctx, id, member, can_share)?;
        Ok(Response::empty(204))
    }

    fn replace_members(&self, req: &mut Request<'_>, ctx: &Context, id: &str) -> Result<Response> {
        let body = read_json(req)?
            .ok_or_else(|| Error::bad_request("Request body must contain 'memberships'"))?;
        let specs = parse_memberships(&body)?;
        self.registry.replace_members(ctx, id, &specs)?;
        Ok(Response::empty(204))
    }
}

impl Handler for RegistryApp {
    fn handle(&self, req: &mut Request<'_>) -> Response {
        self.route(req).unwrap_or_else(|e| {
            log_error(&e, req);
            e.into_response()
        })
    }
}

/// Logs an error answer: 5xx at error level with context, 4xx at info.
pub fn log_error(e: &Error, req: &Request<'_>) {
    if e.status() >= 500 {
        log::error!("{} {}: {}", req.method, req.path, e.message());
    } else {
        log::info!(
            "{} {}: {} {}",
            req.method,
            req.path,
            e.status(),
            e.message()
        );
    }
}

fn not_allowed(allow: &str) -> Error {
    Error::MethodNotAllowed(allow.to_string())
}

fn image_reply(image: &Image) -> Response {
    Response::json(200, &json!({ "image": image.to_json(true) }))
}

/// Reads a JSON body of at most [`MAX_JSON_BODY`] bytes; `None` when there is no body.
pub fn read_json(req: &mut Request<'_>) -> Result<Option<Value>> {
    if !req.has_body() {
        return Ok(None);
    }
    if req.content_length().is_some_and(|n| n > MAX_JSON_BODY) {
        return Err(Error::TooLarge(format!(
            "Request body is larger than {MAX_JSON_BODY} bytes"
        )));
    }
    let bytes = req.read_body_limited(MAX_JSON_BODY).map_err(|e| {
        if e.kind() == std::io::ErrorKind::FileTooLarge {
            Error::TooLarge(format!("Request body is larger than {MAX_JSON_BODY} bytes"))
        } else {
            Error::bad_request(format!("Could not read the request body: {e}"))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&bytes)?))
}

fn image_patch_from_body(req: &mut Request<'_>) -> Result<ImagePatch> {
    let body = read_json(req)?
        .ok_or_else(|| Error::bad_request("Request body must contain an 'image' object"))?;
    let image = body
        .get("image")
        .ok_or_else(|| Error::bad_request("Request body must contain an 'image' object"))?;
    ImagePatch::from_json(image)
}

/// `can_share` of a member body: absent/null → None, else a boolean.
fn parse_can_share(member: &Value) -> Result<Option<bool>> {
    match member.get("can_share") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Error::bad_request(
            "Invalid value for 'can_share': must be a boolean",
        )),
    }
}

/// Parses the three body forms of replace-members (spec §5.8): `{"memberships": [...]}`,
/// a bare list, or one membership object.
pub fn parse_memberships(body: &Value) -> Result<Vec<MemberSpec>> {
    let list: Vec<&Value> = match body {
        Value::Object(o) if o.contains_key("memberships") => match &o["memberships"] {
            Value::Array(a) => a.iter().collect(),
            _ => return Err(Error::bad_request("'memberships' must be a list")),
        },
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) if o.contains_key("member_id") => vec![body],
        _ => {
            return Err(Error::bad_request(
                "Request body must contain 'memberships'",
            ));
        }
    };
    list.into_iter()
        .map(|m| {
            let member_id = m
                .get("member_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    Error::bad_request("Each membership needs a non-empty string 'member_id'")
                })?;
            Ok(MemberSpec {
                member_id: member_id.to_string(),
                can_share: parse_can_share(m)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_body_forms() {
        let wrapped =
            json!({"memberships": [{"member_id": "a", "can_share": true}, {"member_id": "b"}]});
        let specs = parse_memberships(&wrapped).unwrap_or_default();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].can_share, Some(true));
        assert_eq!(specs[1].can_share, None);
        let bare = json!([{"member_id": "a"}]);
        assert_eq!(parse_memberships(&bare).map(|v| v.len()).ok(), Some(1));
        let single = json!({"member_id": "a", "can_share": false});
        assert_eq!(
            parse_memberships(&single).ok(),
            Some(vec![MemberSpec {
                member_id: "a".into(),
                can_share: Some(false)
            }])
        );
        assert!(parse_memberships(&json!({"memberships": []})).is_ok_and(|v| v.is_empty()));
        for bad in [
            json!({}),
            json!({"memberships": "x"}),
            json!([{"member_id": ""}]),
            json!([{"member_id": 5}]),
            json!([{"member_id": "a", "can_share": "yes"}]),
        ] {
            assert!(parse_memberships(&bad).is_err(), "{bad} accepted");
        }
    }
}
