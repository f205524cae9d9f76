//! Image membership routes (spec §5.8): who an image is shared with.
//!
//! Mutations need a writable context (else 403) and an owner id (else 401 `No authenticated
//! user`); the registry's "not sharable" (403/401) becomes 404, so that a member without
//! `can_share` learns nothing, as in Glance.

use serde_json::{Value, json};

use crate::api::ApiApp;
use crate::auth::Context;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::image::ImageId;
use crate::registry::parse_memberships;
use crate::rest::read_json;

/// GET /images/<id>/members.
pub fn list(app: &ApiApp, ctx: &Context, id: &ImageId) -> Result<Response> {
    // v1 shows Diablo's two fields; the v2 status and times stay out.
    let members: Vec<serde_json::Value> = app
        .registry
        .members(ctx, id)?
        .iter()
        .map(|m| json!({"member_id": m.member_id, "can_share": m.can_share}))
        .collect();
    Ok(Response::json(200, &json!({ "members": members })))
}

/// PUT /images/<id>/members/<member>, optional body `{"member": {"can_share": b}}`.
pub fn add(
    app: &ApiApp,
    req: &mut Request<'_>,
    ctx: &Context,
    id: &ImageId,
    member: &str,
) -> Result<Response> {
    check_can_mutate(ctx)?;
    let can_share = match read_json(req)? {
        None => None,
        Some(body) => match body.get("member").and_then(|m| m.get("can_share")) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(Error::bad_request(
                    "Invalid value for 'can_share': must be a boolean",
                ));
            }
        },
    };
    app.registry
        .add_member(ctx, id, member, can_share)
        .map_err(hide_refusal)?;
    Ok(Response::empty(204))
}

/// DELETE /images/<id>/members/<member>.
pub fn remove(app: &ApiApp, ctx: &Context, id: &ImageId, member: &str) -> Result<Response> {
    check_can_mutate(ctx)?;
    app.registry
        .delete_member(ctx, id, member)
        .map_err(hide_refusal)?;
    Ok(Response::empty(204))
}

/// PUT /images/<id>/members with a memberships body (three forms accepted).
pub fn replace(
    app: &ApiApp,
    req: &mut Request<'_>,
    ctx: &Context,
    id: &ImageId,
) -> Result<Response> {
    check_can_mutate(ctx)?;
    let body = read_json(req)?
        .ok_or_else(|| Error::bad_request("Request body must contain 'memberships'"))?;
    let specs = parse_memberships(&body)?;
    app.registry
        .replace_members(ctx, id, &specs)
        .map_err(hide_refusal)?;
    Ok(Response::empty(204))
}

/// GET /shared-images/<member>: for that member (the caller's owner id) or an admin;
/// anyone else gets 404, as for an invisible image (the registry decides).
pub fn shared_images(app: &ApiApp, ctx: &Context, member: &str) -> Result<Response> {
    let shared = app.registry.shared_images(ctx, member)?;
    Ok(Response::json(200, &json!({ "shared_images": shared })))
}

fn check_can_mutate(ctx: &Context) -> Result<()> {
    if ctx.read_only {
        return Err(Error::Forbidden("Read-only access".into()));
    }
    if ctx.owner().is_none() {
        return Err(Error::Unauthorized("No authenticated user".into()));
    }
    Ok(())
}

/// The registry's 401/403 on member mutations is answered as 404 (never leak existence).
fn hide_refusal(e: Error) -> Error {
    match e {
        Error::Forbidden(_) | Error::Unauthorized(_) => {
            Error::not_found("Image not found or not sharable by you")
        }
        other => other,
    }
}
