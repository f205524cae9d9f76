//! How a registry record looks in the images API v2, and which of its attributes a client
//! may set.
//!
//! One model for both APIs: v1's `is_public = true` is `visibility: public`; v1's
//! properties are v2's additional properties (string values; a property set to null in v1
//! is not shown); the statuses are the same words, `deactivated` included (v1 shows it too,
//! and refuses its data to non-admins). Base attributes win over a v1 property of the same
//! name, which v2 does not show.

use serde_json::{Map, Value};

use crate::config::ApiVersions;
use crate::http::percent_encode;
use crate::image::{Image, Status};
use crate::registry::Member;
use crate::store::redact_uri;

/// Attributes of the v2 image representation, in the order served.
pub const BASE_ATTRIBUTES: [&str; 24] = [
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "min_disk",
    "min_ram",
    "container_format",
    "disk_format",
    "created_at",
    "updated_at",
    "tags",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
];

/// Attributes only the service sets: a client naming one gets 403.
pub const READ_ONLY: [&str; 12] = [
    "status",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
];

/// Attributes Glance keeps for itself (403 "reserved").
pub const RESERVED: [&str; 4] = ["deleted", "deleted_at", "location", "stores"];

/// Whether `name` is a base attribute (or reserved), i.e. not an additional property.
pub fn is_base(name: &str) -> bool {
    BASE_ATTRIBUTES.contains(&name) || RESERVED.contains(&name)
}

/// The path of an image (`/v2/images/<id>`).
pub fn image_path(id: &str) -> String {
    format!("/v2/images/{}", percent_encode(id))
}

/// A stored timestamp in v2's form: ISO 8601, whole seconds, `Z`.
pub fn time(stored: &str) -> String {
    let whole = stored.split('.').next().unwrap_or(stored);
    format!("{whole}Z")
}

/// The v2 representation of an image.
pub fn image(img: &Image, apis: &ApiVersions) -> Value {
    let mut m = Map::new();
    let s = |v: &Option<String>| v.clone().map_or(Value::Null, Value::from);
    m.insert("id".into(), Value::from(img.id.clone()));
    m.insert("name".into(), s(&img.name));
    m.insert("status".into(), Value::from(img.status.as_str()));
    m.insert("visibility".into(), Value::from(img.visibility.as_str()));
    m.insert("protected".into(), Value::from(img.protected));
    m.insert("os_hidden".into(), Value::from(img.os_hidden));
    m.insert("checksum".into(), s(&img.checksum));
    m.insert("os_hash_algo".into(), s(&img.os_hash_algo));
    m.insert("os_hash_value".into(), s(&img.os_hash_value));
    m.insert("owner".into(), s(&img.owner));
    m.insert("size".into(), size(img));
    m.insert(
        "virtual_size".into(),
        img.virtual_size.map_or(Value::Null, Value::from),
    );
    m.insert("min_disk".into(), Value::from(img.min_disk));
    m.insert("min_ram".into(), Value::from(img.min_ram));
    m.insert("container_format".into(), s(&img.container_format));
    m.insert("disk_format".into(), s(&img.disk_format));
    m.insert("created_at".into(), Value::from(time(&img.created_at)));
    let updated = img.updated_at.as_deref().unwrap_or(&img.created_at);
    m.insert("updated_at".into(), Value::from(time(updated)));
    m.insert("tags".into(), Value::from(img.tags.clone()));
    let path = image_path(&img.id);
    m.insert("self".into(), Value::from(path.clone()));
    m.insert("file".into(), Value::from(format!("{path}/file")));
    m.insert("schema".into(), Value::from("/v2/schemas/image"));
    let location = img.location.as_deref().filter(|l| !l.is_empty());
    if apis.show_direct_url
        && let Some(loc) = location
    {
        m.insert("direct_url".into(), Value::from(redact_uri(loc)));
    }
    if apis.show_locations {
        let list: Vec<Value> = location
            .map(|loc| serde_json::json!({"url": redact_uri(loc), "metadata": {}}))
            .into_iter()
            .collect();
        m.insert("locations".into(), Value::from(list));
    }
    for (k, v) in &img.properties {
        if let Some(v) = v
            && !is_base(k)
        {
            m.insert(k.clone(), Value::from(v.clone()));
        }
    }
    Value::Object(m)
}

/// `size` is null until the image has data.
fn size(img: &Image) -> Value {
    let has_data = img.location.is_some()
        || !matches!(img.status, Status::Queued | Status::Saving | Status::Killed)
        || img.size > 0;
    if has_data {
        Value::from(img.size)
    } else {
        Value::Null
    }
}

/// The v2 representation of a membership.
pub fn member(image_id: &str, m: &Member) -> Value {
    let created = if m.created_at.is_empty() {
        Value::Null
    } else {
        Value::from(time(&m.created_at))
    };
    let updated = m
        .updated_at
        .as_deref()
        .map_or(created.clone(), |t| Value::from(time(t)));
    serde_json::json!({
        "created_at": created,
        "image_id": image_id,
        "member_id": m.member_id,
        "schema": "/v2/schemas/member",
        "status": m.status.as_str(),
        "updated_at": updated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Visibility;

    #[test]
    fn images_look_as_in_glance() {
        let mut img = Image::new("abc".into());
        img.created_at = "2024-01-02T03:04:05.123456".into();
        img.status = Status::Queued;
        img.visibility = Visibility::Shared;
        img.properties
            .insert("os_distro".into(), Some("cirros".into()));
        img.properties.insert("gone".into(), None);
        img.properties.insert("visibility".into(), Some("x".into()));
        img.location = Some("swift+https://user:key@swift.example.com/v1/c/abc".into());
        let apis = ApiVersions::default();
        let v = image(&img, &apis);
        assert_eq!(v["created_at"], "2024-01-02T03:04:05Z");
        assert_eq!(v["updated_at"], "2024-01-02T03:04:05Z");
        assert_eq!(v["visibility"], "shared");
        assert_eq!(v["os_distro"], "cirros");
        assert_eq!(v["self"], "/v2/images/abc");
        assert_eq!(v["file"], "/v2/images/abc/file");
        assert!(v.get("gone").is_none());
        assert!(v.get("direct_url").is_none() && v.get("locations").is_none());
        let shown = ApiVersions {
            show_direct_url: true,
            show_locations: true,
            ..apis
        };
        let v = image(&img, &shown);
        let url = v["direct_url"].as_str().unwrap_or_default();
        assert!(!url.contains("key"), "{url}");
        assert_eq!(v["locations"][0]["url"], url);
        img.location = None;
        assert_eq!(image(&img, &apis)["size"], Value::Null);
    }
}
