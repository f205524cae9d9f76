//! Image data as both API versions move it: the upload that takes a `saving` image to
//! `active` (or `killed`), the download with `Range`, and the removal of data on delete.
//! v1 and v2 differ in their routes, headers and messages, not here: every byte goes
//! through [`crate::store::Stores`] on this one path.

use serde_json::Value;

use crate::api::ApiApp;
use crate::auth::Context;
use crate::error::{Error, Result};
use crate::format::Rules;
use crate::http::{ByteRange, Request, Response};
use crate::image::{Image, ImageId, ImagePatch, Status};
use crate::notifier::image_payload;
use crate::store::{ImageData, redact_uri};

/// The store and expected size of an upload, checked before anything is reserved.
pub struct UploadPlan {
    store: &'static str,
    expected: Option<u64>,
}

/// Checks an upload before the image is claimed: the body's length against a `declared`
/// size (400 when they differ), and the store (`store` names one, else the default) against
/// the size cap and what the store accepts.
pub fn plan_upload(
    app: &ApiApp,
    req: &Request<'_>,
    store: Option<&str>,
    declared: Option<u64>,
) -> Result<UploadPlan> {
    let length = req
        .content_length()
        .filter(|_| req.header("transfer-encoding").is_none());
    if let (Some(len), Some(size)) = (length, declared)
        && len != size
    {
        return Err(Error::bad_request(format!(
            "x-image-meta-size ({size}) does not match the Content-Length ({len})"
        )));
    }
    let expected = length.or(declared);
    let store = app.stores.check_upload(store, expected)?;
    Ok(UploadPlan { store, expected })
}

/// Whether the request body is declared `application/octet-stream` (parameters ignored):
/// what both APIs require of image data.
pub fn is_octet_stream(req: &Request<'_>) -> bool {
    req.header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/octet-stream"))
}

/// Streams the body of an image this request holds in `saving` into the store and
/// activates it; on any failure the image is killed (only while this upload still holds
/// it), partial data removed, and an `image.upload` error notification sent.
pub fn upload_and_activate(
    app: &ApiApp,
    req: &mut Request<'_>,
    ctx: &Context,
    id: &ImageId,
    image: Image,
    plan: UploadPlan,
) -> Result<Image> {
    let rules = Rules {
        disk_format: image.disk_format.clone(),
        container_format: image.container_format.clone(),
        on_mismatch: app.opts.format_mismatch,
    };
    let added = match app.leases.as_deref() {
        Some(leases) => match leases.renew(id) {
            Ok(()) => {
                let mut body = leases.reader(id, req.body());
                app.stores
                    .add(Some(plan.store), id, &mut body, plan.expected, rules)
            }
            Err(e) => Err(e),
        },
        None => app
            .stores
            .add(Some(plan.store), id, req.body(), plan.expected, rules),
    };
    let stored = match added {
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
pub fn kill(app: &ApiApp, ctx: &Context, id: &ImageId) {
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

/// Only `active` images have data to download; a `deactivated` one is forbidden to all but
/// admins (as later Glance answered, in v1 and v2 alike).
pub fn check_downloadable(ctx: &Context, image: &Image) -> Result<()> {
    match image.status {
        Status::Deactivated if ctx.is_admin => Ok(()),
        Status::Deactivated => Err(Error::Forbidden(format!(
            "Image {} is deactivated: downloading its data is forbidden",
            image.id
        ))),
        st if st.is_downloadable() => Ok(()),
        _ => Err(Error::not_found(format!(
            "Image {} is not active",
            image.id
        ))),
    }
}

/// The data of a downloadable image as a 200, a 206 for a satisfiable `Range`, or a 416,
/// streamed from its store, or from the image cache when it is on (see
/// [`crate::cache::download`]). An http(s) location reports its own length, which replaces
/// `image.size`.
pub fn data_response(app: &ApiApp, req: &Request<'_>, image: &mut Image) -> Result<Response> {
    let location = image
        .location
        .as_deref()
        .ok_or_else(|| Error::not_found(format!("Image {} has no data", image.id)))?;
    let whole = req.header("range").is_none();
    let data = crate::cache::download(app.stores.cache(), image, whole, || {
        app.stores.get(location)
    })?;
    if let ImageData::Stream(_, Some(remote_len)) = &data {
        image.size = *remote_len;
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
    Ok(resp
        .with_header("Content-Type", "application/octet-stream")
        .with_header("Accept-Ranges", if known_size { "bytes" } else { "none" }))
}

/// Deletes an image the caller may modify: its data removed (or left to the scrubber with
/// `delayed_delete`, or when removing fails), then the record soft-deleted. Returns the
/// deleted record (the caller notifies, in its API's form).
pub fn delete_image(app: &ApiApp, ctx: &Context, id: &ImageId) -> Result<Image> {
    let image = app.registry.get(ctx, id)?;
    if !ctx.can_modify(&image) {
        return Err(Error::not_found(format!("Image {id} not found")));
    }
    if image.protected {
        return Err(Error::Forbidden(format!(
            "Image {id} is protected and cannot be deleted"
        )));
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
    app.registry.delete(ctx, id)
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

/// Sets an image's status through the registry's rules.
pub fn set_status(app: &ApiApp, ctx: &Context, id: &ImageId, status: Status) -> Result<Image> {
    let patch = ImagePatch {
        status: Some(status),
        ..ImagePatch::default()
    };
    app.registry.update(ctx, id, &patch, false)
}
