//! `PUT` and `GET /v2/images/<id>/file`: v2's routes onto the one data path of
//! [`crate::api::data`] (the same stores, size cap, inspection and failure rules as v1).

use crate::api::{ApiApp, data};
use crate::auth::Context;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::image::{ImageId, ImagePatch, Status};
use crate::notifier::image_payload;

/// `PUT /v2/images/<id>/file`: 204 once the image is `active`; 409 unless it is `queued`;
/// 415 unless the body is `application/octet-stream`.
pub fn upload(
    app: &ApiApp,
    req: &mut Request<'_>,
    ctx: &Context,
    id: &ImageId,
) -> Result<Response> {
    ctx.check_writable()?;
    let image = app.registry.get(ctx, id)?;
    if !ctx.can_modify(&image) {
        return Err(Error::Forbidden(format!(
            "You are not permitted to upload data to image {id}."
        )));
    }
    if !data::is_octet_stream(req) {
        return Err(Error::UnsupportedMediaType(
            "Image data must be sent as Content-Type: application/octet-stream".into(),
        ));
    }
    if image.status != Status::Queued {
        return Err(Error::Conflict(format!(
            "Image {id} is {}: data can only be uploaded to a queued image",
            image.status
        )));
    }
    let unset = |f: &Option<String>| f.as_deref().is_none_or(str::is_empty);
    if unset(&image.disk_format) || unset(&image.container_format) {
        return Err(Error::bad_request(
            "Properties disk_format, container_format must be set prior to saving data.",
        ));
    }
    let plan = data::plan_upload(app, req, None, None)?;
    let saving = ImagePatch {
        status: Some(Status::Saving),
        ..ImagePatch::default()
    };
    let image = app
        .registry
        .update_if(ctx, id, Status::Queued, &saving, false)
        .map_err(|e| match e {
            Error::Conflict(m) => Error::Conflict(format!(
                "The image is no longer queued: another upload took it first ({m})"
            )),
            other => other,
        })?;
    let active = data::upload_and_activate(app, req, ctx, id, image, plan)?;
    app.notifier.info("image.activate", image_payload(&active));
    Ok(Response::empty(204))
}

/// `GET /v2/images/<id>/file`: 200 (206 with `Range`) with `Content-MD5`; 204 when the
/// image has no data yet; 403 for a deactivated image unless admin.
pub fn download(app: &ApiApp, req: &Request<'_>, ctx: &Context, id: &ImageId) -> Result<Response> {
    let mut image = app.registry.get(ctx, id)?;
    if matches!(
        image.status,
        Status::Queued | Status::Saving | Status::Killed
    ) || image.location.is_none()
    {
        return Ok(Response::empty(204));
    }
    data::check_downloadable(ctx, &image)?;
    let resp = data::data_response(app, req, &mut image)?;
    Ok(match &image.checksum {
        Some(sum) if resp.status != 416 => resp.with_header("Content-MD5", sum),
        _ => resp,
    })
}
