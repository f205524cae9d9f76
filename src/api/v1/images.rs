//! The images controller (spec §5.1–§5.7), named after Glance's steps: `reserve` a
//! `queued` record, `upload` the data into a store while hashing it, `activate` it, and
//! `kill` it when anything fails, so that no image is left `saving` and no partial data
//! stays behind.

use serde_json::{Value, json};

use crate::api::ApiApp;
use crate::api::v1::headers::{self, MetaHeaders};
use crate::auth::Context;
use crate::error::{Error, Result};
use crate::format::Rules;
use crate::http::{ByteRange, Request, Response};
use crate::image::{Image, ImageId, ImagePatch, Status};
use crate::notifier::image_payload;
use crate::registry::{LIST_PARAMS, ListQuery};
use crate::store::{ImageData, Location, redact_uri};

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
    let image = app.registry.get(ctx, id)?;
    Ok(with_image_headers(app, Response::empty(200), &image, req))
}

/// GET /images/<id>: metadata headers and the image bytes, streamed from the store, or
/// from the image cache when it is on (see [`crate::cache::download`]).
pub fn show(app: &ApiApp, req: &Request<'_>, ctx: &Context, id: &ImageId) -> Result<Response> {
    let mut image = app.registry.get(ctx, id)?;
    if !image.status.is_downloadable() {
        return Err(Error::not_found(format!("Image {id} is not active")));
    }
    let location = image
        .location
        .as_deref()
        .ok_or_else(|| Error::not_found(format!("Image {id} has no data")))?;
    let whole = req.header("range").is_none();
    let data = crate::cache::download(app.stores.cache(), &image, whole, || {
        app.stores.get(location)
    })?;
    if let ImageData::Stream(_, Some(remote_len)) = &data {
        image.size = *remote_len; // an http(s) location reports its own length
    }
    let known_size = data.len().is_some();
    let range = match known_size {
        true => ByteRange::parse(req.header("range"), image.size),
        false => ByteRange::Whole, // a stream of unknown length is sent whole
    };
    let resp = match range {
        ByteRange::Whole => Response::empty(200).with_body(data.into_body()),
        ByteRange::Part { start, len } => Response::empty(206)
            .with_body(data.range(start, len)?.into_body())
            .with_header("Content-Range", &range.content_range(image.size)),
        ByteRange::Unsatisfiable => {
            return Ok(Response::text(
                416,
                format!(
                    "416 Range Not Satisfiable\n\nThe image has {} bytes.\n",
                    image.size
                ),
            )
            .with_header("Content-Range", &range.content_range(image.size)));
        }
    };
    let resp = resp
        .with_header("Content-Type", "application/octet-stream")
        .with_header("Accept-Ranges", if known_size { "bytes" } else { "none" });
    Ok(with_image_headers(app, resp, &image, req))
}

/// POST /images: reserve, then upload the body or register the location.
pub fn create(app: &ApiApp, req: &mut Request<'_>, ctx: &Context) -> Result<Response> {
    check_writable(ctx)?;
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
        Some(prepare_upload(app, req, &meta)?)
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
    check_writable(ctx)?;
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
        Some(prepare_upload(app, req, &meta)?)
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
    check_writable(ctx)?;
    let image = app.registry.get(ctx, id)?;
    if !ctx.can_modify(&image) {
        return Err(Error::not_found(format!("Image {id} not found")));
    }
    if let Some(location) = &image.location {
        if app.opts.delayed_delete {
            set_status(app, ctx, id, Status::PendingDelete)?;
        } else {
            set_status(app, ctx, id, Status::Deleted)?;
            if let Err(e) = delete_data(app, location) {
                // Leave the data to glance-scrubber rather than fail half-way.
                log::error!(
                    "deleting data of image {id} at {}: {e}; left for glance-scrubber",
                    redact_uri(location)
                );
                set_status(app, ctx, id, Status::PendingDelete)?;
            }
        }
    }
    app.registry.delete(ctx, id)?;
    app.notifier.info("image.delete", Value::from(id.as_str()));
    Ok(Response::json(200, &Value::Null))
}

/// Deletes image data from its store; missing data is not an error (already gone).
pub fn delete_data(app: &ApiApp, location: &str) -> Result<()> {
    match app.stores.delete(location) {
        Ok(()) => Ok(()),
        Err(Error::NotFound(m)) => {
            log::warn!("data at {} already gone: {m}", redact_uri(location));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn check_writable(ctx: &Context) -> Result<()> {
    if ctx.read_only {
        return Err(Error::Forbidden("Read-only access".into()));
    }
    Ok(())
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

/// The store and expected size of an upload, checked before anything is reserved.
struct UploadPlan {
    store: &'static str,
    expected: Option<u64>,
}

fn prepare_upload(app: &ApiApp, req: &Request<'_>, meta: &MetaHeaders) -> Result<UploadPlan> {
    let length = req
        .content_length()
        .filter(|_| req.header("transfer-encoding").is_none());
    let declared = meta.patch.size;
    if let (Some(len), Some(size)) = (length, declared)
        && len != size
    {
        return Err(Error::bad_request(format!(
            "x-image-meta-size ({size}) does not match the Content-Length ({len})"
        )));
    }
    let expected = length.or(declared);
    let store = app.stores.check_upload(meta.store.as_deref(), expected)?;
    Ok(UploadPlan { store, expected })
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

/// Streams the body of an image this request holds in `saving` into the store and
/// activates it; on any failure the image is killed (only while this upload still holds
/// it), partial data removed, and an `image.upload` error notification sent.
fn upload_and_activate(
    app: &ApiApp,
    req: &mut Request<'_>,
    ctx: &Context,
    id: &ImageId,
    image: Image,
    plan: UploadPlan,
) -> Result<Image> {
    let content_type_ok = req
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/octet-stream"));
    if !content_type_ok {
        // Spec §5.6: the image is killed first.
        kill(app, ctx, id);
        return Err(Error::bad_request(
            "Content-Type must be application/octet-stream",
        ));
    }
    let rules = Rules {
        disk_format: image.disk_format.clone(),
        container_format: image.container_format.clone(),
        on_mismatch: app.opts.format_mismatch,
    };
    let stored = match app
        .stores
        .add(Some(plan.store), id, req.body(), plan.expected, rules)
    {
        Ok(stored) => stored,
        Err(e) => {
            if let Error::ImageRefused(why) = &e {
                log::warn!(
                    "refused the upload of image {id} (owner {}): {why}",
                    image.owner.as_deref().unwrap_or("-")
                );
            }
            return Err(upload_failed(app, ctx, id, None, upload_error(e)));
        }
    };
    if let Some(warning) = &stored.inspection.warning {
        log::warn!(
            "image {id} (owner {}) accepted under image_format_mismatch = warn: {warning}",
            image.owner.as_deref().unwrap_or("-")
        );
    }
    if let Some(want) = &image.checksum
        && !want.eq_ignore_ascii_case(&stored.checksum)
    {
        let e = Error::bad_request(format!(
            "Checksum verification failed: x-image-meta-checksum is {want}, the data received \
             has MD5 {}",
            stored.checksum
        ));
        return Err(upload_failed(app, ctx, id, Some(&stored.location), e));
    }
    // Spec §10: the payload is the image as it was before the upload, i.e. `queued` (this
    // request took it from there).
    let before = Image {
        status: Status::Queued,
        ..image.clone()
    };
    app.notifier.info("image.upload", image_payload(&before));
    let activate = ImagePatch {
        status: Some(Status::Active),
        location: Some(Some(stored.location.clone())),
        checksum: Some(Some(stored.checksum.clone())),
        size: Some(stored.size),
        virtual_size: Some(Some(stored.inspection.virtual_size)),
        os_hash_algo: Some(Some(stored.os_hash_algo.name().to_string())),
        os_hash_value: Some(Some(stored.os_hash_value.clone())),
        ..ImagePatch::default()
    };
    app.registry
        .update_if(ctx, id, Status::Saving, &activate, false)
        .map_err(|e| upload_failed(app, ctx, id, Some(&stored.location), e))
}

/// Maps a store failure to the reply of spec §5.6.
fn upload_error(e: Error) -> Error {
    match e {
        Error::Duplicate(m) => Error::Duplicate(format!("Attempt to upload duplicate image: {m}")),
        Error::Forbidden(m) => Error::Forbidden(format!("Unauthorized upload attempt: {m}")),
        Error::BadRequest(m) => Error::BadRequest(format!("Error uploading image: {m}")),
        Error::Store(m) => Error::Store(format!("Error uploading image: {m}")),
        other => other,
    }
}

/// Cleans up after a failed upload and returns the error to answer with.
fn upload_failed(
    app: &ApiApp,
    ctx: &Context,
    id: &ImageId,
    stored_at: Option<&str>,
    e: Error,
) -> Error {
    if let Some(location) = stored_at
        && let Err(de) = delete_data(app, location)
    {
        log::error!("removing data of failed upload {id}: {de}");
    }
    kill(app, ctx, id);
    app.notifier.error("image.upload", Value::from(e.message()));
    e
}

/// `_safe_kill`: marks the image `killed` if this upload still holds it in `saving`,
/// logging (not raising) a failure to do so.
fn kill(app: &ApiApp, ctx: &Context, id: &ImageId) {
    let patch = ImagePatch {
        status: Some(Status::Killed),
        ..ImagePatch::default()
    };
    if let Err(e) = app
        .registry
        .update_if(ctx, id, Status::Saving, &patch, false)
    {
        log::error!("could not mark image {id} killed: {e}");
    }
}

fn set_status(app: &ApiApp, ctx: &Context, id: &ImageId, status: Status) -> Result<Image> {
    let patch = ImagePatch {
        status: Some(status),
        ..ImagePatch::default()
    };
    app.registry.update(ctx, id, &patch, false)
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
    let url = format!(
        "{}/v1/images/{}",
        app.opts.base_url(req),
        crate::http::percent_encode(&image.id)
    );
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
