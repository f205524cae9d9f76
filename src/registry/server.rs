//! The registry's JSON API (`glance-registry`, spec §8): one route table over a
//! [`Registry`], used by `glance-api` in remote mode.
//!
//! Replies are JSON (one `Content-Type: application/json; charset=UTF-8`); errors are the
//! crate's text replies. POST answers 200 (not 201) and DELETE 200 with `null`, as Diablo did.
//!
//! The registry is an internal service: it trusts the identity headers it is sent (under
//! `noauth` a request without a token is admin), so it must never be reachable by tenants.
//! It still checks the data: a `location` must parse as a store location, a `status` must
//! be `queued` or `active` on create and a legal transition on update (400 naming the
//! field), and listings show locations without credentials; only `GET /images/<id>`, which
//! glance-api reads before it touches data, returns the full location.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::auth::{Context, ContextSource};
use crate::error::{Error, Result};
use crate::http::{Handler, Request, Response};
use crate::image::{Image, ImageId, ImagePatch, Status};
use crate::registry::{
    IF_STATUS_HEADER, ListQuery, MemberStatus, PageLimits, Registry, parse_can_share,
    parse_memberships, query,
};
use crate::rest::{error_response, log_error, read_json};
use crate::store::{check_record, redact_uri};

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
        // Ids are parsed here, once: an id that cannot be valid names no image (404).
        let image = ImageId::from_path;
        match (method, segs.as_slice()) {
            ("GET", [] | ["images"]) => self.index(req, &ctx, false),
            ("POST", ["images"]) => self.create(req, &ctx),
            (_, []) => Err(not_allowed("GET, HEAD")),
            (_, ["images"]) => Err(not_allowed("GET, HEAD, POST")),
            ("GET", ["images", "detail"]) => self.index(req, &ctx, true),
            (_, ["images", "detail"]) => Err(not_allowed("GET, HEAD")),
            ("GET", ["images", id]) => self.show(&ctx, &image(id)?),
            ("PUT", ["images", id]) => self.update(req, &ctx, &image(id)?),
            ("DELETE", ["images", id]) => self.delete(&ctx, &image(id)?),
            (_, ["images", _]) => Err(not_allowed("GET, HEAD, PUT, DELETE")),
            ("GET", ["images", id, "members"]) => self.members(&ctx, &image(id)?),
            ("PUT", ["images", id, "members"]) => self.replace_members(req, &ctx, &image(id)?),
            (_, ["images", _, "members"]) => Err(not_allowed("GET, HEAD, PUT")),
            ("PUT", ["images", id, "members", member]) => {
                self.add_member(req, &ctx, &image(id)?, member)
            }
            ("DELETE", ["images", id, "members", member]) => {
                self.registry.delete_member(&ctx, &image(id)?, member)?;
                Ok(Response::empty(204))
            }
            (_, ["images", _, "members", _]) => Err(not_allowed("PUT, DELETE")),
            ("PUT", ["images", id, "members", member, "status"]) => {
                self.set_member_status(req, &ctx, &image(id)?, member)
            }
            (_, ["images", _, "members", _, "status"]) => Err(not_allowed("PUT")),
            ("GET", ["shared-images", member]) => {
                let shared = self.registry.shared_images(&ctx, member)?;
                Ok(Response::json(200, &json!({ "shared_images": shared })))
            }
            (_, ["shared-images", _]) => Err(not_allowed("GET, HEAD")),
            _ => Err(Error::not_found(format!(
                "The resource '{}' could not be found",
                req.path
            ))),
        }
    }

    /// Listings show locations redacted (`store::redact_uri`): glance-api never reads data
    /// through a listing (it fetches `GET /images/<id>` first), so store credentials need
    /// not travel with every page.
    fn index(&self, req: &Request<'_>, ctx: &Context, detail: bool) -> Result<Response> {
        let pairs = req.query_pairs();
        let query = if query::is_v2(&pairs) {
            ListQuery::parse_v2(&pairs, self.limits)?
        } else {
            ListQuery::parse(&pairs, ctx, self.limits)?
        };
        let images = self.registry.list(ctx, &query)?;
        let list: Vec<Value> = images
            .iter()
            .map(|i| {
                if detail {
                    let mut v = i.to_json(true);
                    if let Some(loc) = &i.location {
                        v["location"] = Value::from(redact_uri(loc));
                    }
                    v
                } else {
                    i.to_brief_json()
                }
            })
            .collect();
        Ok(Response::json(200, &json!({ "images": list })))
    }

    fn show(&self, ctx: &Context, id: &ImageId) -> Result<Response> {
        let image = self.registry.get(ctx, id)?;
        Ok(image_reply(&image))
    }

    fn create(&self, req: &mut Request<'_>, ctx: &Context) -> Result<Response> {
        let patch = image_patch_from_body(req)?;
        check_location(&patch)?;
        if let Some(status) = patch.status
            && !CREATE_STATUSES.contains(&status)
        {
            return Err(Error::bad_request(format!(
                "Invalid value for 'status': an image is created '{}' or '{}', not '{status}'",
                Status::Queued,
                Status::Active
            )));
        }
        let image = self.registry.create(ctx, &patch).map_err(|e| match e {
            Error::BadRequest(m) => {
                Error::BadRequest(format!("Failed to add image metadata. Got error: {m}"))
            }
            other => other,
        })?;
        Ok(image_reply(&image))
    }

    fn update(&self, req: &mut Request<'_>, ctx: &Context, id: &ImageId) -> Result<Response> {
        let purge = req
            .header("x-glance-registry-purge-props")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let expected = req
            .header(IF_STATUS_HEADER)
            .map(|v| v.trim().parse::<Status>())
            .transpose()?;
        let patch = image_patch_from_body(req)?;
        check_location(&patch)?;
        if let Some(next) = patch.status {
            // With `If-Status` the update applies only from that status: no need to read it.
            // Otherwise read first: a race with another update can at worst apply a
            // transition that was legal from the state read here.
            let current = match expected {
                Some(status) => status,
                None => self.registry.get(ctx, id)?.status,
            };
            if !current.can_transition_to(next) {
                return Err(Error::bad_request(format!(
                    "Invalid value for 'status': an image cannot go from '{current}' to \
                     '{next}'"
                )));
            }
        }
        let updated = match expected {
            Some(status) => self.registry.update_if(ctx, id, status, &patch, purge),
            None => self.registry.update(ctx, id, &patch, purge),
        };
        let image = updated.map_err(|e| match e {
            Error::BadRequest(m) => {
                Error::BadRequest(format!("Failed to update image metadata. Got error: {m}"))
            }
            other => other,
        })?;
        Ok(image_reply(&image))
    }

    fn delete(&self, ctx: &Context, id: &ImageId) -> Result<Response> {
        self.registry.delete(ctx, id)?;
        Ok(Response::json(200, &Value::Null))
    }

    fn members(&self, ctx: &Context, id: &ImageId) -> Result<Response> {
        let members = self.registry.members(ctx, id)?;
        Ok(Response::json(200, &json!({ "members": members })))
    }

    fn add_member(
        &self,
        req: &mut Request<'_>,
        ctx: &Context,
        id: &ImageId,
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

    /// `PUT /images/<id>/members/<member>/status` with `{"status": "accepted"}`.
    fn set_member_status(
        &self,
        req: &mut Request<'_>,
        ctx: &Context,
        id: &ImageId,
        member: &str,
    ) -> Result<Response> {
        let body = read_json(req)?.unwrap_or(Value::Null);
        let status: MemberStatus = body
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_request("Request body must contain a string 'status'"))?
            .parse()?;
        let m = self.registry.set_member_status(ctx, id, member, status)?;
        Ok(Response::json(200, &json!({ "member": m })))
    }

    fn replace_members(
        &self,
        req: &mut Request<'_>,
        ctx: &Context,
        id: &ImageId,
    ) -> Result<Response> {
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
            error_response(e)
        })
    }
}

/// Statuses an image may be created with: `queued` (what glance-api reserves) or `active`
/// (a registered location, and the registry's default).
const CREATE_STATUSES: [Status; 2] = [Status::Queued, Status::Active];

/// A location sent to the registry must be a store location it could later read or delete
/// (`store::check_record`); the registry trusts the caller's identity, not its data.
fn check_location(patch: &ImagePatch) -> Result<()> {
    match &patch.location {
        Some(Some(uri)) => check_record(uri),
        _ => Ok(()),
    }
}

fn not_allowed(allow: &str) -> Error {
    Error::MethodNotAllowed(allow.to_string())
}

fn image_reply(image: &Image) -> Response {
    Response::json(200, &json!({ "image": image.to_json(true) }))
}

fn image_patch_from_body(req: &mut Request<'_>) -> Result<ImagePatch> {
    let body = read_json(req)?
        .ok_or_else(|| Error::bad_request("Request body must contain an 'image' object"))?;
    let image = body
        .get("image")
        .ok_or_else(|| Error::bad_request("Request body must contain an 'image' object"))?;
    ImagePatch::from_json(image)
}
