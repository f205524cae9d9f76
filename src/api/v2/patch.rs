//! `PATCH /v2/images/<id>`: the JSON-patch bodies of the images API v2 (media types
//! `application/openstack-images-v2.1-json-patch` and the older `…-v2.0-json-patch`),
//! parsed and turned into one registry [`ImagePatch`].
//!
//! Operations are `add`, `remove` and `replace` on one attribute each (`/name`, `/tags`,
//! `/os_distro` …; JSON pointers with `~0`/`~1` escapes). Read-only attributes are 403,
//! reserved ones 403, an unknown operation or a bad pointer 400, a `replace` or `remove` of
//! an additional property that does not exist 409 (as Glance answers).

use serde_json::Value;

use super::repr::{READ_ONLY, RESERVED};
use crate::error::{Error, Result};
use crate::image::{self, Image, ImagePatch, Properties, Status, Visibility};

/// The v2.1 JSON-patch media type.
pub const MEDIA_V2_1: &str = "application/openstack-images-v2.1-json-patch";
/// The v2.0 JSON-patch media type.
pub const MEDIA_V2_0: &str = "application/openstack-images-v2.0-json-patch";

/// One operation of a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Set (creating an additional property if needed).
    Add,
    /// Remove an additional property.
    Remove,
    /// Set an existing attribute.
    Replace,
}

/// One parsed change: the operation, the attribute it names, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What to do.
    pub op: Op,
    /// The attribute (the pointer's one segment, unescaped).
    pub attr: String,
    /// The value of `add` and `replace`.
    pub value: Option<Value>,
}

/// Checks the media type (415 otherwise) and parses the body into changes.
pub fn parse(content_type: Option<&str>, body: Option<&Value>) -> Result<Vec<Change>> {
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase());
    let v2_0 = match media.as_deref() {
        Some(MEDIA_V2_1) => false,
        Some(MEDIA_V2_0) => true,
        other => {
            return Err(Error::UnsupportedMediaType(format!(
                "Unsupported Content-Type '{}' for PATCH: use {MEDIA_V2_1} (or {MEDIA_V2_0})",
                other.unwrap_or("")
            )));
        }
    };
    let list = body.and_then(Value::as_array).ok_or_else(|| {
        Error::bad_request("Request body must be a JSON array of operation objects.")
    })?;
    list.iter().map(|c| parse_change(c, v2_0)).collect()
}

fn parse_change(c: &Value, v2_0: bool) -> Result<Change> {
    let obj = c
        .as_object()
        .ok_or_else(|| Error::bad_request("Operations must be JSON objects."))?;
    let (op, path) = if v2_0 {
        let found: Vec<&str> = ["add", "remove", "replace"]
            .into_iter()
            .filter(|k| obj.contains_key(*k))
            .collect();
        match found.as_slice() {
            [op] => (*op, obj.get(*op)),
            _ => {
                return Err(Error::bad_request(
                    "Operation objects must contain exactly one of \"add\", \"remove\", or \
                     \"replace\".",
                ));
            }
        }
    } else {
        let op = obj
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_request("Operation objects must contain \"op\"."))?;
        (op, obj.get("path"))
    };
    let op = match op {
        "add" => Op::Add,
        "remove" => Op::Remove,
        "replace" => Op::Replace,
        other => {
            return Err(Error::bad_request(format!(
                "Invalid operation: `{other}`. Valid operations: add, remove, replace."
            )));
        }
    };
    let path = path
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad_request("Unable to find `path` in the operation."))?;
    let attr = pointer_attribute(path)?;
    let value = match op {
        Op::Remove => None,
        Op::Add | Op::Replace => Some(
            obj.get("value")
                .cloned()
                .ok_or_else(|| Error::bad_request("Unable to find `value` in the operation."))?,
        ),
    };
    Ok(Change { op, attr, value })
}

/// The one attribute a JSON pointer names (`/os_distro`; `~1` is `/`, `~0` is `~`).
fn pointer_attribute(path: &str) -> Result<String> {
    let bad = || Error::bad_request(format!("Invalid JSON pointer for this resource: '{path}'"));
    let rest = path.strip_prefix('/').ok_or_else(bad)?;
    if rest.is_empty() {
        return Err(bad());
    }
    if rest.contains('/') {
        // `/locations/0` and the like: nested paths are not served.
        let attr = rest.split('/').next().unwrap_or("");
        if attr == "locations" {
            return Err(Error::Forbidden(
                "Changing image locations is not allowed".into(),
            ));
        }
        return Err(bad());
    }
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err(bad()),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Turns the changes into one registry patch against `image` (as it is now). The patch
/// carries the whole resulting property set (update with `purge_props`).
pub fn to_image_patch(changes: &[Change], image: &Image, is_admin: bool) -> Result<ImagePatch> {
    let mut p = ImagePatch::default();
    let mut props: Properties = image.properties.clone();
    for c in changes {
        let attr = c.attr.as_str();
        if READ_ONLY.contains(&attr) || attr == "id" {
            return Err(Error::Forbidden(format!(
                "Attribute '{attr}' is read-only."
            )));
        }
        if RESERVED.contains(&attr) {
            return Err(Error::Forbidden(format!("Attribute '{attr}' is reserved.")));
        }
        if attr == "locations" {
            return Err(Error::Forbidden(
                "Changing image locations is not allowed".into(),
            ));
        }
        if set_base(&mut p, attr, c, image, is_admin)? {
            continue;
        }
        set_property(&mut props, attr, c)?;
    }
    if props != image.properties {
        p.properties = Some(props);
    }
    Ok(p)
}

/// Applies a change to a base attribute; false when `attr` is not one.
fn set_base(
    p: &mut ImagePatch,
    attr: &str,
    c: &Change,
    image: &Image,
    is_admin: bool,
) -> Result<bool> {
    const BASE: [&str; 10] = [
        "name",
        "visibility",
        "protected",
        "os_hidden",
        "min_disk",
        "min_ram",
        "container_format",
        "disk_format",
        "tags",
        "owner",
    ];
    if !BASE.contains(&attr) {
        return Ok(false);
    }
    let Some(value) = &c.value else {
        return Err(Error::Forbidden(format!(
            "Attribute '{attr}' is a base attribute and cannot be removed; replace it instead."
        )));
    };
    if matches!(attr, "container_format" | "disk_format") && image.status != Status::Queued {
        return Err(Error::Forbidden(format!(
            "Attribute {attr} can be only replaced for a queued image."
        )));
    }
    if attr == "owner" && !is_admin {
        return Err(Error::Forbidden(
            "Only an admin may change the owner of an image.".into(),
        ));
    }
    apply_base(p, attr, value)?;
    Ok(true)
}

/// Sets base attribute `attr` of a patch from a JSON value, type-checked (400 naming the
/// attribute). Shared by create and PATCH.
pub fn apply_base(p: &mut ImagePatch, attr: &str, value: &Value) -> Result<()> {
    match attr {
        "name" => {
            let name = opt_string(attr, value)?;
            if name.as_ref().is_some_and(|n| n.chars().count() > 255) {
                return Err(Error::bad_request(
                    "Invalid value for 'name': longer than 255 characters",
                ));
            }
            p.name = Some(name);
        }
        "visibility" => {
            let v = value.as_str().ok_or_else(|| {
                Error::bad_request("Invalid value for 'visibility': must be a string")
            })?;
            p.visibility = Some(v.parse::<Visibility>()?);
        }
        "protected" => p.protected = Some(boolean(attr, value)?),
        "os_hidden" => p.os_hidden = Some(boolean(attr, value)?),
        "min_disk" => p.min_disk = Some(count(attr, value)?),
        "min_ram" => p.min_ram = Some(count(attr, value)?),
        "container_format" => p.container_format = Some(opt_string(attr, value)?),
        "disk_format" => p.disk_format = Some(opt_string(attr, value)?),
        "owner" => p.owner = Some(opt_string(attr, value)?),
        "tags" => {
            let list = value.as_array().ok_or_else(|| {
                Error::bad_request("Invalid value for 'tags': must be a list of strings")
            })?;
            let tags = list
                .iter()
                .map(|t| {
                    let t = t.as_str().ok_or_else(|| {
                        Error::bad_request("Invalid value for 'tags': must be a list of strings")
                    })?;
                    image::validate_tag(t)?;
                    Ok(t.to_string())
                })
                .collect::<Result<Vec<String>>>()?;
            p.tags = Some(tags);
        }
        other => {
            return Err(Error::bad_request(format!(
                "Attribute '{other}' cannot be set"
            )));
        }
    }
    Ok(())
}

fn set_property(props: &mut Properties, attr: &str, c: &Change) -> Result<()> {
    image::validate_property_key(attr)?;
    let exists = props.get(attr).is_some_and(Option::is_some);
    match (c.op, &c.value) {
        (Op::Remove, _) | (Op::Replace, _) if !exists => {
            Err(Error::Conflict(format!("Property {attr} does not exist.")))
        }
        (Op::Remove, _) => {
            props.remove(attr);
            Ok(())
        }
        (_, Some(Value::String(s))) => {
            image::validate_property_value(attr, Some(s))?;
            props.insert(attr.to_string(), Some(s.clone()));
            Ok(())
        }
        _ => Err(Error::bad_request(format!(
            "Invalid value for additional property '{attr}': must be a string"
        ))),
    }
}

fn opt_string(attr: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(Error::bad_request(format!(
            "Invalid value for '{attr}': must be a string or null"
        ))),
    }
}

fn boolean(attr: &str, v: &Value) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| Error::bad_request(format!("Invalid value for '{attr}': must be a boolean")))
}

fn count(attr: &str, v: &Value) -> Result<u64> {
    v.as_u64().ok_or_else(|| {
        Error::bad_request(format!(
            "Invalid value for '{attr}': must be a non-negative integer"
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn changes(media: &str, body: Value) -> Result<Vec<Change>> {
        parse(Some(media), Some(&body))
    }

    fn queued() -> Image {
        let mut img = Image::new("i".into());
        img.status = Status::Queued;
        img.properties
            .insert("os_distro".into(), Some("cirros".into()));
        img
    }

    #[test]
    fn both_media_types() {
        let a = changes(
            MEDIA_V2_1,
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
        );
        let b = changes(MEDIA_V2_0, json!([{"replace": "/name", "value": "x"}]));
        assert_eq!(a.ok(), b.ok());
        let e = parse(Some("application/json"), Some(&json!([]))).err();
        assert_eq!(e.map(|e| e.status()), Some(415));
        assert_eq!(
            parse(None, Some(&json!([]))).err().map(|e| e.status()),
            Some(415)
        );
    }

    #[test]
    fn bad_operations_and_pointers_are_400() {
        for body in [
            json!({"op": "add"}),
            json!([{"op": "move", "path": "/name", "from": "/x"}]),
            json!([{"op": "test", "path": "/name", "value": "x"}]),
            json!([{"op": "add", "path": "name", "value": "x"}]),
            json!([{"op": "add", "path": "/", "value": "x"}]),
            json!([{"op": "add", "path": "/a/b", "value": "x"}]),
            json!([{"op": "add", "path": "/a~2", "value": "x"}]),
            json!([{"op": "add", "path": "/name"}]),
            json!([{"path": "/name", "value": "x"}]),
            json!(["add"]),
        ] {
            let e = changes(MEDIA_V2_1, body.clone()).err();
            assert_eq!(e.map(|e| e.status()), Some(400), "{body}");
        }
        let c = changes(
            MEDIA_V2_1,
            json!([{"op": "add", "path": "/a~1b~0c", "value": "x"}]),
        );
        assert_eq!(c.ok().map(|c| c[0].attr.clone()).as_deref(), Some("a/b~c"));
    }

    #[test]
    fn rules_of_attributes() {
        let img = queued();
        let patch =
            |body: Value| changes(MEDIA_V2_1, body).and_then(|c| to_image_patch(&c, &img, false));
        let status = |body: Value| patch(body).err().map(|e| e.status());
        assert_eq!(
            status(json!([{"op": "replace", "path": "/status", "value": "active"}])),
            Some(403)
        );
        assert_eq!(
            status(json!([{"op": "replace", "path": "/id", "value": "x"}])),
            Some(403)
        );
        assert_eq!(
            status(json!([{"op": "add", "path": "/deleted", "value": "x"}])),
            Some(403)
        );
        assert_eq!(
            status(json!([{"op": "remove", "path": "/name"}])),
            Some(403)
        );
        assert_eq!(
            status(json!([{"op": "replace", "path": "/owner", "value": "x"}])),
            Some(403)
        );
        assert_eq!(
            status(json!([{"op": "replace", "path": "/nope", "value": "x"}])),
            Some(409)
        );
        assert_eq!(
            status(json!([{"op": "remove", "path": "/nope"}])),
            Some(409)
        );
        assert_eq!(
            status(json!([{"op": "add", "path": "/x", "value": 5}])),
            Some(400)
        );
        assert_eq!(
            status(json!([{"op": "replace", "path": "/min_ram", "value": -1}])),
            Some(400)
        );
        assert_eq!(
            status(json!([{"op": "replace", "path": "/protected", "value": "yes"}])),
            Some(400)
        );
        let p = patch(json!([
            {"op": "replace", "path": "/name", "value": "n"},
            {"op": "add", "path": "/hw_disk_bus", "value": "scsi"},
            {"op": "remove", "path": "/os_distro"},
            {"op": "replace", "path": "/tags", "value": ["a", "b"]},
            {"op": "replace", "path": "/visibility", "value": "community"},
        ]))
        .unwrap_or_default();
        assert_eq!(p.name, Some(Some("n".into())));
        assert_eq!(p.visibility, Some(Visibility::Community));
        assert_eq!(p.tags, Some(vec!["a".into(), "b".into()]));
        let props = p.properties.unwrap_or_default();
        assert_eq!(props.get("hw_disk_bus"), Some(&Some("scsi".into())));
        assert!(!props.contains_key("os_distro"));
        // Formats change only while queued.
        let mut active = queued();
        active.status = Status::Active;
        let c = changes(
            MEDIA_V2_1,
            json!([{"op": "replace", "path": "/disk_format", "value": "raw"}]),
        )
        .unwrap_or_default();
        let e = to_image_patch(&c, &active, true).err();
        assert_eq!(e.map(|e| e.status()), Some(403));
    }
}
