//! The cache management API (spec §5.9, Diablo's `glance/api/cached_images.py`), routed
//! only while the image cache is on, and for admins only (Diablo let anyone who reached it
//! list and purge).
//!
//! | route | effect | reply |
//! |---|---|---|
//! | `GET /cached_images[?status=invalid\|incomplete\|prefetching]` | list | `{"cached_images": [...]}` |
//! | `DELETE /cached_images/<id>` | purge one copy | 200 `null` |
//! | `DELETE /cached_images` | clear every copy | `{"num_purged": n}` |
//! | `DELETE /cached_images?status=invalid` | remove invalid entries now | `{"num_reaped": n}` |
//! | `DELETE /cached_images?status=incomplete` | remove stalled fills | `{"num_reaped": n}` |
//! | `PUT /cached_images/<id>` | queue a prefetch of an active image | 200 `null`; 404 unless active; 400 if cached or queued |

use serde_json::{Value, json};

use crate::api::ApiApp;
use crate::auth::Context;
use crate::cache::{ImageCache, Which};
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::image::ImageId;

/// Answers `/cached_images[/<id>]`; `rest` is the path after `cached_images`.
pub fn route(app: &ApiApp, req: &Request<'_>, ctx: &Context, rest: &[&str]) -> Result<Response> {
    let cache = app
        .stores
        .cache()
        .ok_or_else(|| Error::not_found("The image cache is not enabled"))?;
    if !ctx.is_admin {
        return Err(Error::Forbidden(
            "The image cache API is for admins only".into(),
        ));
    }
    match (req.method.as_str(), rest) {
        ("GET" | "HEAD", []) => list(cache, req),
        ("DELETE", []) => delete_collection(cache, req),
        ("DELETE", [id]) => {
            cache.purge(ImageId::from_path(id)?.as_str())?;
            Ok(Response::json(200, &Value::Null))
        }
        ("PUT", [id]) => queue_prefetch(app, ctx, cache, &ImageId::from_path(id)?),
        (_, []) => Err(Error::MethodNotAllowed("GET, HEAD, DELETE".into())),
        (_, [_]) => Err(Error::MethodNotAllowed("PUT, DELETE".into())),
        _ => Err(Error::not_found(format!(
            "The resource '{}' could not be found",
            req.path
        ))),
    }
}

/// The `status` query parameter: `None` when absent or empty.
fn status_param(req: &Request<'_>) -> Option<String> {
    req.query_pairs()
        .into_iter()
        .find(|(k, _)| k == "status")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn bad_status(got: &str, allowed: &str) -> Error {
    Error::bad_request(format!("status: '{got}' is not one of {allowed}"))
}

/// GET /cached_images.
fn list(cache: &ImageCache, req: &Request<'_>) -> Result<Response> {
    let which = match status_param(req).as_deref() {
        None => Which::Cached,
        Some("invalid") => Which::Invalid,
        Some("incomplete") => Which::Incomplete,
        Some("prefetching") => Which::Prefetching,
        Some(other) => return Err(bad_status(other, "invalid, incomplete, prefetching")),
    };
    let entries = cache.list(which)?;
    Ok(Response::json(200, &json!({ "cached_images": entries })))
}

/// DELETE /cached_images.
fn delete_collection(cache: &ImageCache, req: &Request<'_>) -> Result<Response> {
    let body = match status_param(req).as_deref() {
        None => json!({ "num_purged": cache.clear()? }),
        Some("invalid") => json!({ "num_reaped": cache.reap_invalid(None)? }),
        Some("incomplete") => json!({ "num_reaped": cache.reap_stalled()? }),
        Some(other) => return Err(bad_status(other, "invalid, incomplete")),
    };
    Ok(Response::json(200, &body))
}

/// PUT /cached_images/<id>: the image must be active (and visible to the caller).
fn queue_prefetch(
    app: &ApiApp,
    ctx: &Context,
    cache: &ImageCache,
    id: &ImageId,
) -> Result<Response> {
    let image = app.registry.get(ctx, id)?;
    if !image.status.is_downloadable() {
        return Err(Error::not_found(format!("Image {id} is not active")));
    }
    cache.queue_prefetch(&image)?;
    Ok(Response::json(200, &Value::Null))
}
