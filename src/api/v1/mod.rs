//! The v1 route table: every images API route in one place (spec §5).
//!
//! Paths arrive with the version prefix already stripped. Unknown method/path combinations
//! are 404, as in Glance Diablo, except on `/shared-images/<member>`: 405 with `Allow`.
//! `/cached_images` (spec §5.9) exists only while the image cache is on, as Diablo's
//! `imagecache` filter; its routes are in `cached_images.rs`.

mod cached_images;
pub mod headers;
mod images;
mod members;

use crate::api::ApiApp;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::image::ImageId;
use crate::rest::{error_response, log_error};

/// Answers one v1 request.
pub fn handle(app: &ApiApp, req: &mut Request<'_>, path: &str) -> Response {
    route(app, req, path).unwrap_or_else(|e| {
        log_error(&e, req);
        error_response(e)
    })
}

fn route(app: &ApiApp, req: &mut Request<'_>, path: &str) -> Result<Response> {
    let ctx = app.auth.context(req)?;
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method.clone();
    // Ids are parsed here, once: an id that cannot be valid names no image (404).
    let image = ImageId::from_path;
    match (method.as_str(), segs.as_slice()) {
        ("GET" | "HEAD", [] | ["images"]) => images::index(app, req, &ctx, false),
        ("GET" | "HEAD", ["images", "detail"]) => images::index(app, req, &ctx, true),
        ("POST", ["images"]) => images::create(app, req, &ctx),
        ("HEAD", ["images", id]) => images::meta(app, req, &ctx, &image(id)?),
        ("GET", ["images", id]) => images::show(app, req, &ctx, &image(id)?),
        ("PUT", ["images", id]) => images::update(app, req, &ctx, &image(id)?),
        ("DELETE", ["images", id]) => images::delete(app, &ctx, &image(id)?),
        ("GET" | "HEAD", ["images", id, "members"]) => members::list(app, &ctx, &image(id)?),
        ("PUT", ["images", id, "members"]) => members::replace(app, req, &ctx, &image(id)?),
        ("PUT", ["images", id, "members", member]) => {
            members::add(app, req, &ctx, &image(id)?, member)
        }
        ("DELETE", ["images", id, "members", member]) => {
            members::remove(app, &ctx, &image(id)?, member)
        }
        ("GET" | "HEAD", ["shared-images", member]) => members::shared_images(app, &ctx, member),
        (_, ["cached_images", ..]) if app.stores.cache().is_some() => {
            cached_images::route(app, req, &ctx, &segs[1..])
        }
        // A listing only (Diablo answered any method with it); HEAD is GET without a body.
        (_, ["shared-images", _]) => Err(Error::MethodNotAllowed("GET, HEAD".into())),
        _ => Err(Error::not_found(format!(
            "The resource '{}' could not be found",
            req.path
        ))),
    }
}
