//! The images controller (spec §5.1–§5.7), named after Glance's steps: `reserve` a
//! `queued` record, `upload` the data into a store while hashing it, `activate` it, and
//! `kill` it when anything fails, so that no image is left `saving` and no partial data
//! stays behind.

use serde_json::{Value, json};

use crate::api::v1::headers;
use crate::api::{ApiApp, data};
use crate::auth::Context;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::image::{Image, ImageId, ImagePatch, Status};
use crate::notifier::image_payload;
use crate::registry::{LIST_PARAMS, ListQuery};
use crate::store::{Location, redact_uri};

/// GET /images and /images/detail.
pub fn index(app: &ApiApp, req: &Request<'_>, ctx: &Context, detail: bool) -> Result<Response> {
    let pairs: Vec<(String, String)> = req
        .query_pairs()
        .into_iter()
        .filter(|(k, _)| LIST_PARAMS.contains(&k.as_str()) || k.starts_with("property-"))
        .collect();
    let query = ListQuery::parse(&pairs, ctx, app.opts.limits)?;
    let images = app.registry.list(ctx, &query)?;
    let list: Vec<Value> = images
        .iter()
        .map(|i| {
            if detail {
                i.to_json(false)
            } else {
                i.to_brief_json()
            }
        })
        .collect();
    Ok(Response::json(200, &json!({ "images": list })))
}

/// HEAD /images/<id>: all metadata as headers, any status.
pub fn meta(app: &ApiApp, req: &Request<'_>, ctx: &Context, id: &ImageId) -> Result<Response> {
    let image = app.registry.get_shared(ctx, id)?;
    let resp = Response::empty(200).with_shared_headers(app.image_headers.headers(&image));
    Ok(with_location_and_etag(app, resp, &image, req))
}

/// GET /images/<id>: metadata headers and the image bytes (see [`data::data_response`]).
pub fn show(app: &ApiApp, req: &Request<'_>, ctx: &Context, id: &ImageId) -> Result<Response> {
    let mut image = app.registry.get(ctx, id)?;
    data::check_downloadable(ctx, &image)?;
    let resp = data::data_response(app, req, &mut image)?;
    Ok(with_image_headers(app, resp, &image, req))
}

/// POST /images: reserve, then upload the body or register the location.
pub fn create(app: &ApiApp, req: &mut Request<'_>, ctx: &Context) -> Result<Response> {
    ctx.check_writable()?;
    ctx.check_can_create()?;
    let meta = headers::parse(&req.headers)?;
    check_disk_format(&app.opts.disk_formats, &meta.patch)?;
    let mut patch = meta.patch.clone();
    patch.status = Some(Status::Queued); // a client-sent status is ignored on create
    let location = patch.location.clone().flatten();
    let upload = if req.has_body() {
        if location.is_some() {
            return Err(Error::bad_request(
                "Supply either image data or x-image-meta-location, not both",
            ));
        }
        Some(plan_upload(app, req, &meta)?)
    } else {
        None
    };
    if let Some(uri) = &location {
        let loc = app.stores.check_client_location(uri)?;
        if patch.size.is_none() {
            patch.size = Some(remote_size(app, &loc)?);
        }
        patch.status = Some(Status::Active); // registered images are active at once
    }
    let image = reserve(app, ctx, &patch)?;
    let image = match upload {
        Some(plan) => {
            // A client-chosen id can be raced by a PUT upload into the new image: the step
            // out of `queued` is taken once, here as there.
            let saving = ImagePatch {
                status: Some(Status::Saving),
                ..ImagePatch::default()
            };
            let id = ImageId::parse(&image.id)?;
            let image = app
                .registry
                .update_if(ctx, &id, Status::Queued, &saving, false)
                .map_err(|e| claim_error(app, e))?;
            upload_and_activate(app, req, ctx, &id, image, plan)?
        }
        None => image,
    };
    Ok(image_json_reply(app, 201, &image, req))
}

/// PUT /images/<id>: update metadata (replacing properties unless
/// `x-glance-registry-purge-props: false`), and upload data into a queued image.
///
/// A body, or a new location, needs the image `queued`; the metadata change and the step
/// out of `queued` are one compare-and-set, so of two racing uploads (or registrations)
/// exactly one proceeds and the other gets 409 without changing anything.
pub fn update(
    app: &ApiApp,
    req: &mut Request<'_>,
    ctx: &Context,
    id: &ImageId,
) -> Result<Response> {
    ctx.check_writable()?;
    let image = app.registry.get(ctx, id)?;
    let has_body = req.has_body();
    if has_body && !image.status.accepts_upload() {
        return Err(Error::Conflict("Cannot upload to an unqueued image".into()));
    }
    let meta = headers::parse(&req.headers)?;
    check_disk_format(&app.opts.disk_formats, &meta.patch)?;
    let mut patch = meta.patch.clone();
    patch.id = None; // ids never change
    if let Some(next) = patch.status
        && !image.status.can_transition_to(next)
    {
        return Err(Error::bad_request(format!(
            "x-image-meta-status: an image cannot go from '{}' to '{next}'",
            image.status
        )));
    }
    let new_location = check_location_change(app, &image, &mut patch)?;
    if new_location.is_some() && has_body {
        return Err(Error::bad_request(
            "Supply either image data or x-image-meta-location, not both",
        ));
    }
    if let Some(loc) = &new_location {
        // A queued image given a location is registered, as later Glance v1 did and as
        // glanceclient's `image-update --location` expects (Diablo left it queued).
        patch.status = Some(Status::Active);
        if patch.size.is_none() {
            patch.size = Some(remote_size(app, loc)?);
        }
    }
    let upload = if has_body {
        patch.status = Some(Status::Saving);
        Some(plan_upload(app, req, &meta)?)
    } else {
        None
    };
    let purge = req
        .header("x-glance-registry-purge-props")
        .is_none_or(|v| !v.trim().eq_ignore_ascii_case("false"));
    let updated = if upload.is_some() || new_location.is_some() {
        app.registry
            .update_if(ctx, id, Status::Queued, &patch, purge)
            .map_err(|e| claim_error(app, e))?
    } else {
        app.registry
            .update(ctx, id, &patch, purge)
            .map_err(|e| update_error(app, e))?
    };
    let updated = match upload {
        Some(plan) => upload_and_activate(app, req, ctx, id, updated, plan)?,
        None => updated,
    };
    app.notifier.info("image.update", image_payload(&updated));
    Ok(image_json_reply(app, 200, &updated, req))
}

/// DELETE /images/<id>: remove the data (or leave it to the scrubber) and soft-delete.
pub fn delete(app: &ApiApp, ctx: &Context, id: &ImageId) -> Result<Response> {
    ctx.check_writable()?;
    data::delete_image(app, ctx, id)?;
    app.notifier.info("image.delete", Value::from(id.as_str()));
    Ok(Response::json(200, &Value::Null))
}

/// A declared `disk_format` must be one of the configured `disk_formats` (a narrower set
/// than the registry's known formats, which the registry checks in any case).
fn check_disk_format(allowed: &[String], patch: &ImagePatch) -> Result<()> {
    match &patch.disk_format {
        Some(Some(d)) if !allowed.iter().any(|a| a == d) => Err(Error::bad_request(format!(
            "Invalid disk format '{d}' for image. Valid values: {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// A new or changed location must be one a client may register (returned parsed), and only
/// on a `queued` image (later Glance v1's rule: the data of an active image, which others
/// may be using, cannot be swapped); an unchanged one (as the client saw it, redacted) is
/// dropped from the patch.
fn check_location_change(
    app: &ApiApp,
    image: &Image,
    patch: &mut ImagePatch,
) -> Result<Option<Location>> {
    let Some(Some(uri)) = &patch.location else {
        return Ok(None);
    };
    let current = image.location.as_deref();
    if current == Some(uri.as_str()) || current.map(redact_uri).as_deref() == Some(uri.as_str()) {
        patch.location = None;
        return Ok(None);
    }
    if image.status != Status::Queued {
        return Err(Error::bad_request(format!(
            "x-image-meta-location: the location of an image can only be set while it is \
             queued (image {} is {})",
            image.id, image.status
        )));
    }
    app.stores.check_client_location(uri).map(Some)
}

/// The size of data at an external location, learned with a HEAD (0 when unknown). A
/// location that cannot be used (refused by the location policy, or answering badly) is a
/// 400, as registering it fails.
fn remote_size(app: &ApiApp, loc: &Location) -> Result<u64> {
    match app.stores.remote_size(loc) {
        Ok(n) => Ok(n),
        Err(e @ Error::BadLocation(_)) => Err(e),
        Err(e) => {
            log::warn!("size of {}: {e}", loc.redacted());
            Ok(0)
        }
    }
}

/// The registry create of spec §5.4 step 3, with Glance's messages.
fn reserve(app: &ApiApp, ctx: &Context, patch: &ImagePatch) -> Result<Image> {
    app.registry.create(ctx, patch).map_err(|e| match e {
        Error::BadRequest(m) => {
            Error::BadRequest(format!("Failed to reserve image. Got error: {m}"))
        }
        Error::Forbidden(_) | Error::Unauthorized(_) => {
            Error::Forbidden("Not authorized to reserve image.".into())
        }
        other => other,
    })
}

fn update_error(app: &ApiApp, e: Error) -> Error {
    match e {
        Error::NotFound(m) => {
            let msg = format!("Failed to find image to update: {m}");
            app.notifier.info("image.update", Value::from(msg.clone()));
            Error::NotFound(msg)
        }
        Error::BadRequest(m) => {
            let msg = format!("Failed to update image metadata. Got error: {m}");
            app.notifier.error("image.update", Value::from(msg.clone()));
            Error::BadRequest(msg)
        }
        other => other,
    }
}

/// The store and size of an upload, from the `x-image-meta-store` and `x-image-meta-size`
/// headers.
fn plan_upload(
    app: &ApiApp,
    req: &Request<'_>,
    meta: &headers::MetaHeaders,
) -> Result<data::UploadPlan> {
    data::plan_upload(app, req, meta.store.as_deref(), meta.patch.size)
}

/// v1's upload: the body must be `application/octet-stream`, else the image is killed
/// first (spec §5.6); then the shared path of [`data::upload_and_activate`].
fn upload_and_activate(
    app: &ApiApp,
    req: &mut Request<'_>,
    ctx: &Context,
    id: &ImageId,
    image: Image,
    plan: data::UploadPlan,
) -> Result<Image> {
    if !data::is_octet_stream(req) {
        data::kill(app, ctx, id);
        return Err(Error::bad_request(
            "Content-Type must be application/octet-stream",
        ));
    }
    data::upload_and_activate(app, req, ctx, id, image, plan)
}

/// The reply when the compare-and-set out of `queued` fails: another request took the image
/// first (409, nothing changed).
fn claim_error(app: &ApiApp, e: Error) -> Error {
    match e {
        Error::Conflict(m) => Error::Conflict(format!(
            "The image is no longer queued: another upload or location change took it first \
             ({m})"
        )),
        other => update_error(app, other),
    }
}

/// `{"image": …}` with the location's credentials removed, plus `Location` and `ETag`.
fn image_json_reply(app: &ApiApp, status: u16, image: &Image, req: &Request<'_>) -> Response {
    let mut v = image.to_json(true);
    if let Some(loc) = &image.location {
        v["location"] = Value::from(redact_uri(loc));
    }
    let resp = Response::json(status, &json!({ "image": v }));
    with_location_and_etag(app, resp, image, req)
}

fn with_image_headers(
    app: &ApiApp,
    mut resp: Response,
    image: &Image,
    req: &Request<'_>,
) -> Response {
    for (k, v) in headers::to_headers(image) {
        resp.headers.push((k, v));
    }
    with_location_and_etag(app, resp, image, req)
}

/// `Location` from [`crate::api::ApiOptions::base_url`] (never the client's `Host`).
fn with_location_and_etag(
    app: &ApiApp,
    resp: Response,
    image: &Image,
    req: &Request<'_>,
) -> Response {
    let mut url = app.opts.base_url(req);
    url.push_str("/v1/images/");
    url.push_str(&crate::http::percent_encode(&image.id));
    let resp = resp.with_header("Location", &url);
    match &image.checksum {
        Some(sum) => resp.with_header("ETag", sum),
        None => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_disk_formats_must_be_configured() {
        let allowed = ["raw".to_string(), "qcow2".to_string()];
        let declare = |d: Option<&str>| ImagePatch {
            disk_format: Some(d.map(str::to_string)),
            ..ImagePatch::default()
        };
        assert!(check_disk_format(&allowed, &declare(Some("qcow2"))).is_ok());
        assert!(
            check_disk_format(&allowed, &declare(None)).is_ok(),
            "cleared"
        );
        assert!(check_disk_format(&allowed, &ImagePatch::default()).is_ok());
        let e = check_disk_format(&allowed, &declare(Some("vmdk"))).err();
        assert_eq!(
            e.map(|e| (e.status(), e.message())),
            Some((
                400,
                "Invalid disk format 'vmdk' for image. Valid values: raw, qcow2".to_string()
            ))
        );
    }
}
