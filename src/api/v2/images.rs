//! The v2 images controller: create, show, list, update (JSON patch), delete, the
//! deactivate/reactivate actions and tags.

use serde_json::{Value, json};

use super::patch::{self, apply_base};
use super::repr::{self, READ_ONLY, RESERVED};
use crate::api::{ApiApp, data};
use crate::auth::Context;
use crate::error::{Error, Result};
use crate::http::{Request, Response, percent_encode};
use crate::image::{self, Image, ImageId, ImagePatch, Status, Visibility};
use crate::notifier::image_payload;
use crate::registry::ListQuery;
use crate::rest::read_json;

/// `GET /v2/images`: one page, with `first`, `schema` and (when the page is full) `next`.
pub fn index(app: &ApiApp, req: &Request<'_>, ctx: &Context) -> Result<Response> {
    let pairs = req.query_pairs();
    let query = ListQuery::parse_v2(&pairs, app.opts.limits)?;
    let images = app.registry.list(ctx, &query)?;
    let list: Vec<Value> = images
        .iter()
        .map(|i| repr::image(i, &app.opts.apis))
        .collect();
    let mut body = json!({
        "images": list,
        "first": first_link(&pairs),
        "schema": "/v2/schemas/images",
    });
    if let Some(last) = images.last()
        && query.limit > 0
        && images.len() as u64 >= query.limit
    {
        body["next"] = Value::from(next_link(&pairs, &last.id));
    }
    Ok(Response::json(200, &body))
}

/// The request's own parameters without `marker`, URL-encoded.
fn params_without_marker(pairs: &[(String, String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k != "marker")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect()
}

/// The `first` link: the same listing from its start.
fn first_link(pairs: &[(String, String)]) -> String {
    let params = params_without_marker(pairs);
    if params.is_empty() {
        "/v2/images".to_string()
    } else {
        format!("/v2/images?{}", params.join("&"))
    }
}

/// The `next` link: the request's own parameters with `marker` set to the page's last id.
fn next_link(pairs: &[(String, String)], last: &str) -> String {
    let mut params = params_without_marker(pairs);
    params.push(format!("marker={}", percent_encode(last)));
    format!("/v2/images?{}", params.join("&"))
}

/// `GET /v2/images/<id>`.
pub fn show(app: &ApiApp, _req: &Request<'_>, ctx: &Context, id: &ImageId) -> Result<Response> {
    let image = app.registry.get(ctx, id)?;
    Ok(Response::json(200, &repr::image(&image, &app.opts.apis)))
}

/// `POST /v2/images`: a `queued` image (default visibility `shared`, as Glance), 201 with
/// `Location`.
pub fn create(app: &ApiApp, req: &mut Request<'_>, ctx: &Context) -> Result<Response> {
    ctx.check_writable()?;
    ctx.check_can_create()?;
    let body = read_json(req)?.unwrap_or(Value::Null);
    let mut p = create_patch(&body, ctx)?;
    check_publicize(ctx, p.visibility)?;
    check_disk_format(app, &p)?;
    p.visibility.get_or_insert(Visibility::Shared);
    p.status = Some(Status::Queued);
    let image = app.registry.create(ctx, &p)?;
    app.notifier.info("image.create", image_payload(&image));
    let location = format!("{}{}", app.opts.base_url(req), repr::image_path(&image.id));
    Ok(
        Response::json(201, &repr::image(&image, &app.opts.apis))
            .with_header("Location", &location),
    )
}

/// The registry patch of a create request body (a JSON object of attributes).
fn create_patch(body: &Value, ctx: &Context) -> Result<ImagePatch> {
    let obj = body
        .as_object()
        .ok_or_else(|| Error::bad_request("Request body must be a JSON object of attributes"))?;
    let mut p = ImagePatch::default();
    let mut props = image::Properties::new();
    for (k, v) in obj {
        let k = k.as_str();
        if RESERVED.contains(&k) {
            return Err(Error::Forbidden(format!("Attribute '{k}' is reserved.")));
        }
        if READ_ONLY.contains(&k) || k == "locations" {
            return Err(Error::Forbidden(format!("Attribute '{k}' is read-only.")));
        }
        match k {
            "id" => {
                // v2 ids are UUIDs, as in Glance (v1 still takes DECISIONS.md's wider ids).
                let id = v
                    .as_str()
                    .and_then(|s| uuid::Uuid::parse_str(s).ok())
                    .ok_or_else(|| {
                        Error::bad_request(format!("Invalid value for 'id': {v} is not a UUID"))
                    })?;
                p.id = Some(id.hyphenated().to_string());
            }
            "owner" => {
                apply_base(&mut p, k, v)?;
                let mine = ctx.owner().map(str::to_string);
                if !ctx.is_admin && p.owner.as_ref().is_some_and(|o| *o != mine) {
                    return Err(Error::Forbidden(
                        "You are not permitted to create images owned by another project.".into(),
                    ));
                }
            }
            "name" | "visibility" | "protected" | "os_hidden" | "min_disk" | "min_ram"
            | "container_format" | "disk_format" | "tags" => apply_base(&mut p, k, v)?,
            _ => {
                image::validate_property_key(k)?;
                let s = v.as_str().ok_or_else(|| {
                    Error::bad_request(format!(
                        "Invalid value for additional property '{k}': must be a string"
                    ))
                })?;
                image::validate_property_value(k, Some(s))?;
                props.insert(k.to_string(), Some(s.to_string()));
            }
        }
    }
    if !props.is_empty() {
        p.properties = Some(props);
    }
    Ok(p)
}

/// Making an image public is for admins (Glance's `publicize_image` default policy);
/// `community` is allowed to owners.
fn check_publicize(ctx: &Context, v: Option<Visibility>) -> Result<()> {
    if v == Some(Visibility::Public) && !ctx.is_admin {
        return Err(Error::Forbidden(
            "You are not authorized to complete publicize_image action.".into(),
        ));
    }
    Ok(())
}

/// A declared `disk_format` must be one of the configured `disk_formats`.
fn check_disk_format(app: &ApiApp, p: &ImagePatch) -> Result<()> {
    match &p.disk_format {
        Some(Some(d)) if !app.opts.disk_formats.iter().any(|a| a == d) => {
            Err(Error::bad_request(format!(
                "Invalid disk format '{d}' for image. Valid values: {}",
                app.opts.disk_formats.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

/// The image, when the caller may change it: 404 when it cannot see it, 403 when it can
/// see but not change it.
fn modifiable(app: &ApiApp, ctx: &Context, id: &ImageId) -> Result<Image> {
    ctx.check_writable()?;
    let image = app.registry.get(ctx, id)?;
    if !ctx.can_modify(&image) {
        return Err(Error::Forbidden(format!(
            "You are not permitted to modify image {id}."
        )));
    }
    Ok(image)
}

/// `PATCH /v2/images/<id>` with a JSON-patch body.
pub fn update(
    app: &ApiApp,
    req: &mut Request<'_>,
    ctx: &Context,
    id: &ImageId,
) -> Result<Response> {
    let image = modifiable(app, ctx, id)?;
    let content_type = req.header("content-type").map(str::to_string);
    let body = read_json(req)?;
    let changes = patch::parse(content_type.as_deref(), body.as_ref())?;
    let p = patch::to_image_patch(&changes, &image, ctx.is_admin)?;
    if p.visibility != Some(image.visibility) {
        check_publicize(ctx, p.visibility)?;
    }
    check_disk_format(app, &p)?;
    let purge = p.properties.is_some();
    let updated = app.registry.update(ctx, id, &p, purge)?;
    app.notifier.info("image.update", image_payload(&updated));
    Ok(Response::json(200, &repr::image(&updated, &app.opts.apis)))
}

/// `DELETE /v2/images/<id>`: 204; 403 when protected.
pub fn delete(app: &ApiApp, ctx: &Context, id: &ImageId) -> Result<Response> {
    modifiable(app, ctx, id)?;
    let deleted = data::delete_image(app, ctx, id)?;
    app.notifier.info("image.delete", image_payload(&deleted));
    Ok(Response::empty(204))
}

/// `POST /v2/images/<id>/actions/deactivate|reactivate` (admin only): 204.
pub fn action(app: &ApiApp, ctx: &Context, id: &ImageId, action: &str) -> Result<Response> {
    let (from, to) = match action {
        "deactivate" => (Status::Active, Status::Deactivated),
        "reactivate" => (Status::Deactivated, Status::Active),
        _ => {
            return Err(Error::not_found(format!(
                "The resource '/v2/images/{id}/actions/{action}' could not be found"
            )));
        }
    };
    ctx.check_writable()?;
    let image = app.registry.get(ctx, id)?;
    if !ctx.is_admin {
        return Err(Error::Forbidden(format!(
            "You are not authorized to complete {action} action."
        )));
    }
    if image.status == to {
        return Ok(Response::empty(204));
    }
    if image.status != from {
        return Err(Error::Forbidden(format!(
            "Not allowed to {action} image in status '{}'",
            image.status
        )));
    }
    let patch = ImagePatch {
        status: Some(to),
        ..ImagePatch::default()
    };
    let updated = app.registry.update_if(ctx, id, from, &patch, false)?;
    app.notifier.info("image.update", image_payload(&updated));
    Ok(Response::empty(204))
}

/// `PUT /v2/images/<id>/tags/<tag>`: 204 (also when the tag is already there).
pub fn add_tag(app: &ApiApp, ctx: &Context, id: &ImageId, tag: &str) -> Result<Response> {
    let image = modifiable(app, ctx, id)?;
    image::validate_tag(tag)?;
    if !image.tags.iter().any(|t| t == tag) {
        let mut tags = image.tags.clone();
        tags.push(tag.to_string());
        set_tags(app, ctx, id, tags)?;
    }
    Ok(Response::empty(204))
}

/// `DELETE /v2/images/<id>/tags/<tag>`: 204; 404 when the image has no such tag.
pub fn remove_tag(app: &ApiApp, ctx: &Context, id: &ImageId, tag: &str) -> Result<Response> {
    let image = modifiable(app, ctx, id)?;
    if !image.tags.iter().any(|t| t == tag) {
        return Err(Error::not_found(format!(
            "Tag {tag} not found on image {id}"
        )));
    }
    let tags = image.tags.iter().filter(|t| *t != tag).cloned().collect();
    set_tags(app, ctx, id, tags)?;
    Ok(Response::empty(204))
}

fn set_tags(app: &ApiApp, ctx: &Context, id: &ImageId, tags: Vec<String>) -> Result<()> {
    let patch = ImagePatch {
        tags: Some(tags),
        ..ImagePatch::default()
    };
    let updated = app.registry.update(ctx, id, &patch, false)?;
    app.notifier.info("image.update", image_payload(&updated));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthOptions;

    fn tenant() -> Context {
        Context::for_identity(
            None,
            None,
            Some("t".into()),
            vec![],
            &AuthOptions::default(),
        )
    }

    #[test]
    fn create_bodies() {
        let p = create_patch(
            &json!({"name": "n", "disk_format": "raw", "tags": ["a"], "os_distro": "x",
                    "id": "6E5A1A2C-3D4B-4C5D-8E6F-7A8B9C0D1E2F"}),
            &tenant(),
        )
        .unwrap_or_default();
        assert_eq!(
            p.id.as_deref(),
            Some("6e5a1a2c-3d4b-4c5d-8e6f-7a8b9c0d1e2f")
        );
        assert_eq!(p.tags, Some(vec!["a".to_string()]));
        assert_eq!(
            p.properties.unwrap_or_default().get("os_distro"),
            Some(&Some("x".to_string()))
        );
        let status = |b: Value| create_patch(&b, &tenant()).err().map(|e| e.status());
        assert_eq!(status(json!([])), Some(400));
        assert_eq!(status(json!({"status": "active"})), Some(403));
        assert_eq!(status(json!({"size": 5})), Some(403));
        assert_eq!(status(json!({"deleted": true})), Some(403));
        assert_eq!(status(json!({"location": "file:///etc/passwd"})), Some(403));
        assert_eq!(status(json!({"os_distro": 5})), Some(400));
        assert_eq!(status(json!({"min_ram": "lots"})), Some(400));
        assert_eq!(status(json!({"visibility": "everyone"})), Some(400));
        assert_eq!(status(json!({"id": "../x"})), Some(400));
        assert_eq!(status(json!({"id": "not-a-uuid"})), Some(400));
        assert_eq!(status(json!({"owner": "someone-else"})), Some(403));
        assert!(create_patch(&json!({"owner": "t"}), &tenant()).is_ok());
    }

    #[test]
    fn next_links_keep_the_query() {
        let pairs = crate::http::parse_query("limit=2&marker=old&tag=a%20b");
        assert_eq!(
            next_link(&pairs, "new"),
            "/v2/images?limit=2&tag=a%20b&marker=new"
        );
        assert_eq!(first_link(&pairs), "/v2/images?limit=2&tag=a%20b");
        assert_eq!(first_link(&[]), "/v2/images");
    }
}
