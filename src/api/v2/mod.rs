//! The images API v2 route table (Images API v2 reference; Glance 33 where it leaves a
//! detail open). Paths arrive with the version prefix stripped.
//!
//! v2 shares everything below the routes with v1: the caller's [`Context`], the registry
//! (the same records: see [`repr`] for how a record looks in v2), the data path of
//! [`crate::api::data`] and the notifier.

mod image_data;
mod images;
mod members;
mod patch;
pub mod repr;
pub mod schemas;

use serde_json::json;

use crate::api::ApiApp;
use crate::error::{Error, Result};
use crate::http::{Request, Response};
use crate::image::ImageId;
use crate::rest::{error_response, json_error_response, log_error};

/// Answers one v2 request. Errors are Glance's JSON error document when the client accepts
/// JSON (`{"message", "code", "title"}`), else the text reply v1 sends.
pub fn handle(app: &ApiApp, req: &mut Request<'_>, path: &str) -> Response {
    route(app, req, path).unwrap_or_else(|e| {
        log_error(&e, req);
        let json = req
            .header("accept")
            .is_some_and(|a| a.contains("application/json"));
        if json {
            json_error_response(e)
        } else {
            error_response(e)
        }
    })
}

fn route(app: &ApiApp, req: &mut Request<'_>, path: &str) -> Result<Response> {
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method.clone();
    // Everything under /v2, schemas included, needs a caller (as behind Glance's auth
    // middleware).
    let ctx = app.auth.context(req)?;
    let image = ImageId::from_path;
    match (method.as_str(), segs.as_slice()) {
        ("GET" | "HEAD", ["schemas", name]) => schemas::serve(app, name),
        ("GET" | "HEAD", ["info", "import"]) => Ok(import_info()),
        ("GET" | "HEAD", ["info", "stores"]) => Ok(stores_info(app)),
        ("GET" | "HEAD", ["images"]) => images::index(app, req, &ctx),
        ("POST", ["images"]) => images::create(app, req, &ctx),
        (_, ["images"]) => Err(not_allowed("GET, HEAD, POST")),
        ("GET" | "HEAD", ["images", id]) => images::show(app, req, &ctx, &image(id)?),
        ("PATCH", ["images", id]) => images::update(app, req, &ctx, &image(id)?),
        ("DELETE", ["images", id]) => images::delete(app, &ctx, &image(id)?),
        (_, ["images", _]) => Err(not_allowed("GET, HEAD, PATCH, DELETE")),
        ("PUT", ["images", id, "file"]) => image_data::upload(app, req, &ctx, &image(id)?),
        ("GET" | "HEAD", ["images", id, "file"]) => {
            image_data::download(app, req, &ctx, &image(id)?)
        }
        (_, ["images", _, "file"]) => Err(not_allowed("GET, HEAD, PUT")),
        ("POST", ["images", id, "actions", action]) => {
            images::action(app, &ctx, &image(id)?, action)
        }
        (_, ["images", _, "actions", _]) => Err(not_allowed("POST")),
        ("PUT", ["images", id, "tags", tag]) => images::add_tag(app, &ctx, &image(id)?, tag),
        ("DELETE", ["images", id, "tags", tag]) => images::remove_tag(app, &ctx, &image(id)?, tag),
        (_, ["images", _, "tags", _]) => Err(not_allowed("PUT, DELETE")),
        ("GET" | "HEAD", ["images", id, "members"]) => members::index(app, &ctx, &image(id)?),
        ("POST", ["images", id, "members"]) => members::create(app, req, &ctx, &image(id)?),
        (_, ["images", _, "members"]) => Err(not_allowed("GET, HEAD, POST")),
        ("GET" | "HEAD", ["images", id, "members", member]) => {
            members::show(app, &ctx, &image(id)?, member)
        }
        ("PUT", ["images", id, "members", member]) => {
            members::update(app, req, &ctx, &image(id)?, member)
        }
        ("DELETE", ["images", id, "members", member]) => {
            members::delete(app, &ctx, &image(id)?, member)
        }
        (_, ["images", _, "members", _]) => Err(not_allowed("GET, HEAD, PUT, DELETE")),
        _ => Err(Error::not_found(format!(
            "The resource '{}' could not be found",
            req.path
        ))),
    }
}

fn not_allowed(allow: &str) -> Error {
    Error::MethodNotAllowed(allow.to_string())
}

/// `/v2/info/import`: the import methods served. glance-rs has no image import (data is
/// uploaded with `PUT /v2/images/<id>/file`), so the list is empty.
fn import_info() -> Response {
    Response::json(
        200,
        &json!({"import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": []
        }}),
    )
}

/// `/v2/info/stores`: the stores an upload may go to, the default marked.
fn stores_info(app: &ApiApp) -> Response {
    let default = app.stores.default_store();
    let stores: Vec<serde_json::Value> = app
        .stores
        .writable_stores()
        .into_iter()
        .map(|name| {
            if name == default {
                json!({"id": name, "default": true})
            } else {
                json!({"id": name})
            }
        })
        .collect();
    Response::json(200, &json!({ "stores": stores }))
}
