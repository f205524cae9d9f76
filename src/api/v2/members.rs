//! v2 image members: the same records as v1's, with a status the member sets.
//!
//! Only `shared` images have members. The owner (or an admin) adds and removes them; a
//! member sees and sets only its own membership (`pending`, `accepted`, `rejected`).

use serde_json::{Value, json};

use super::repr;
use crate::api::ApiApp;
use crate::auth::Context;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::image::{Image, ImageId, Visibility};
use crate::registry::{Member, MemberStatus};
use crate::rest::read_json;

/// The image, which must be `shared` (403 otherwise).
fn shared_image(app: &ApiApp, ctx: &Context, id: &ImageId) -> Result<Image> {
    let image = app.registry.get(ctx, id)?;
    if image.visibility != Visibility::Shared {
        return Err(Error::Forbidden(format!(
            "Only shared images have members (image {id} is {}).",
            image.visibility
        )));
    }
    Ok(image)
}

/// Owners and admins see every membership; anyone else only its own.
fn may_see(ctx: &Context, image: &Image, member: &str) -> bool {
    ctx.can_modify(image) || ctx.owner() == Some(member)
}

fn find(app: &ApiApp, ctx: &Context, id: &ImageId, member: &str) -> Result<Member> {
    app.registry
        .members(ctx, id)?
        .into_iter()
        .find(|m| m.member_id == member)
        .ok_or_else(|| Error::not_found(format!("Member {member} of image {id} not found")))
}

/// `GET /v2/images/<id>/members`.
pub fn index(app: &ApiApp, ctx: &Context, id: &ImageId) -> Result<Response> {
    let image = shared_image(app, ctx, id)?;
    let list: Vec<Value> = app
        .registry
        .members(ctx, id)?
        .iter()
        .filter(|m| may_see(ctx, &image, &m.member_id))
        .map(|m| repr::member(id, m))
        .collect();
    Ok(Response::json(
        200,
        &json!({"members": list, "schema": "/v2/schemas/members"}),
    ))
}

/// `POST /v2/images/<id>/members` with `{"member": "<project>"}`: 200 with the new
/// membership (`pending`); 409 when it exists.
pub fn create(
    app: &ApiApp,
    req: &mut Request<'_>,
    ctx: &Context,
    id: &ImageId,
) -> Result<Response> {
    ctx.check_writable()?;
    let image = shared_image(app, ctx, id)?;
    if !ctx.can_modify(&image) {
        return Err(Error::Forbidden(format!(
            "You are not permitted to add members to image {id}."
        )));
    }
    let body = read_json(req)?.unwrap_or(Value::Null);
    let member = body
        .get("member")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty() && m.chars().count() <= 255)
        .ok_or_else(|| Error::bad_request("Request body must be {\"member\": \"<project id>\"}"))?;
    if app
        .registry
        .members(ctx, id)?
        .iter()
        .any(|m| m.member_id == member)
    {
        return Err(Error::Conflict(format!(
            "Member {member} already exists for image {id}."
        )));
    }
    app.registry.add_member(ctx, id, member, None)?;
    let m = find(app, ctx, id, member)?;
    let v = repr::member(id, &m);
    app.notifier.info("image.member.create", v.clone());
    Ok(Response::json(200, &v))
}

/// `GET /v2/images/<id>/members/<member>`.
pub fn show(app: &ApiApp, ctx: &Context, id: &ImageId, member: &str) -> Result<Response> {
    let image = shared_image(app, ctx, id)?;
    if !may_see(ctx, &image, member) {
        return Err(Error::not_found(format!(
            "Member {member} of image {id} not found"
        )));
    }
    let m = find(app, ctx, id, member)?;
    Ok(Response::json(200, &repr::member(id, &m)))
}

/// `PUT /v2/images/<id>/members/<member>` with `{"status": …}`: the member itself only.
pub fn update(
    app: &ApiApp,
    req: &mut Request<'_>,
    ctx: &Context,
    id: &ImageId,
    member: &str,
) -> Result<Response> {
    ctx.check_writable()?;
    let image = shared_image(app, ctx, id)?;
    if !may_see(ctx, &image, member) {
        return Err(Error::not_found(format!(
            "Member {member} of image {id} not found"
        )));
    }
    let body = read_json(req)?.unwrap_or(Value::Null);
    let status: MemberStatus = body
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_request("Request body must be {\"status\": \"<status>\"}"))?
        .parse()?;
    if ctx.owner() != Some(member) && !ctx.is_admin {
        return Err(Error::Forbidden(
            "Only the member itself may change the status of its membership.".into(),
        ));
    }
    let m = app.registry.set_member_status(ctx, id, member, status)?;
    let v = repr::member(id, &m);
    app.notifier.info("image.member.update", v.clone());
    Ok(Response::json(200, &v))
}

/// `DELETE /v2/images/<id>/members/<member>`: the owner (or an admin) only; 204.
pub fn delete(app: &ApiApp, ctx: &Context, id: &ImageId, member: &str) -> Result<Response> {
    ctx.check_writable()?;
    let image = shared_image(app, ctx, id)?;
    if !ctx.can_modify(&image) {
        return Err(Error::Forbidden(format!(
            "You are not permitted to remove members of image {id}."
        )));
    }
    let m = find(app, ctx, id, member)?;
    app.registry.delete_member(ctx, id, member)?;
    app.notifier
        .info("image.member.delete", repr::member(id, &m));
    Ok(Response::empty(204))
}
