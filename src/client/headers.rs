//! `x-image-meta-*` headers on the client side: the mirror of the server's
//! [`api::v1::headers`](crate::api::v1::headers).
//!
//! Requests carry an [`ImagePatch`] as `x-image-meta-<field>` headers with the underscore
//! spelling Glance's own client used (`x-image-meta-disk_format`), booleans as
//! `True`/`False`, null as an empty value, and properties as
//! `x-image-meta-property-<key>`. Replies to HEAD and GET carry the whole record the same
//! way; [`image_from_headers`] reads it back into an [`Image`].

use crate::http::percent_decode;
use crate::image::{Image, ImagePatch, Properties, Status, Visibility};
use crate::timeutil;

use super::error::{Error, Result};

const META: &str = "x-image-meta-";
const PROPERTY: &str = "property-";

/// The request headers that set the fields of `patch` (POST and PUT).
///
/// Property keys must be header tokens (letters, digits, `_`, `-` …): the server lower-cases
/// them and turns `-` into `_`. Values must not contain control characters. A
/// `virtual_size` is sent as set; the server refuses it (glance computes it from the data).
pub fn patch_to_headers(patch: &ImagePatch) -> Result<Vec<(String, String)>> {
    let mut h: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| h.push((format!("{META}{k}"), v));
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    if let Some(id) = &patch.id {
        put("id", id.clone());
    }
    if let Some(v) = &patch.name {
        put("name", opt(v));
    }
    if let Some(v) = &patch.disk_format {
        put("disk_format", opt(v));
    }
    if let Some(v) = &patch.container_format {
        put("container_format", opt(v));
    }
    if let Some(v) = patch.size {
        put("size", v.to_string());
    }
    if let Some(v) = patch.virtual_size {
        put("virtual_size", v.map(|n| n.to_string()).unwrap_or_default());
    }
    if let Some(v) = patch.status {
        put("status", v.as_str().to_string());
    }
    if let Some(v) = patch.is_public {
        put("is_public", py_bool(v).to_string());
    }
    if let Some(v) = &patch.location {
        put("location", opt(v));
    }
    if let Some(v) = &patch.checksum {
        put("checksum", opt(v));
    }
    if let Some(v) = patch.min_ram {
        put("min_ram", v.to_string());
    }
    if let Some(v) = patch.min_disk {
        put("min_disk", v.to_string());
    }
    if let Some(v) = &patch.owner {
        put("owner", opt(v));
    }
    if let Some(props) = &patch.properties {
        for (k, v) in props {
            check_property_key(k)?;
            put(&format!("{PROPERTY}{k}"), v.clone().unwrap_or_default());
        }
    }
    for (name, value) in &h {
        check_value(name, value)?;
    }
    Ok(h)
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// A property key must be usable in a header name.
fn check_property_key(k: &str) -> Result<()> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if k.is_empty() || !k.chars().all(token) {
        return Err(Error::InvalidInput(format!(
            "property name '{k}' cannot be sent: use letters, digits and _ - . only"
        )));
    }
    Ok(())
}

/// Header values may not hold line breaks or other control characters.
fn check_value(name: &str, value: &str) -> Result<()> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Error::InvalidInput(format!(
            "{name}: the value contains control characters (line breaks?)"
        )));
    }
    Ok(())
}

/// Reads an image record from the `x-image-meta-*` headers of a HEAD or GET reply.
///
/// Header names are compared case-insensitively and `-`/`_` alike; an empty value is null;
/// `True` (any case) is true; property keys are percent-decoded (the server encodes keys
/// that are not header tokens).
pub fn image_from_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Image> {
    let mut id = None;
    let mut status = None;
    let mut image = Image::new(String::new());
    image.created_at = String::new();
    let mut props = Properties::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        let Some(field) = lower.strip_prefix(META) else {
            continue;
        };
        let value = value.trim();
        if let Some(key) = field.strip_prefix(PROPERTY) {
            let v = (!value.is_empty()).then(|| value.to_string());
            props.insert(percent_decode(key), v);
            continue;
        }
        let nullable = (!value.is_empty()).then(|| value.to_string());
        let count = |v: &str| -> Result<u64> {
            if v.is_empty() {
                return Ok(0);
            }
            v.parse()
                .map_err(|_| Error::InvalidResponse(format!("{name}: '{v}' is not a number")))
        };
        let flag = value.eq_ignore_ascii_case("true");
        let time = || nullable.as_deref().and_then(timeutil::normalise);
        match field.replace('-', "_").as_str() {
            "id" => id = nullable,
            "name" => image.name = nullable,
            "status" => {
                status = Some(value.parse::<Status>().map_err(|_| {
                    Error::InvalidResponse(format!("{name}: unknown status '{value}'"))
                })?)
            }
            "size" => image.size = count(value)?,
            "virtual_size" => image.virtual_size = nullable.as_deref().map(count).transpose()?,
            "disk_format" => image.disk_format = nullable,
            "container_format" => image.container_format = nullable,
            "checksum" => image.checksum = nullable,
            // v1 tells public from not; a not-public image reads as private.
            "is_public" => {
                image.visibility = if flag {
                    Visibility::Public
                } else {
                    Visibility::Private
                }
            }
            "location" => image.location = nullable,
            "owner" => image.owner = nullable,
            "min_ram" => image.min_ram = count(value)?,
            "min_disk" => image.min_disk = count(value)?,
            "created_at" => image.created_at = time().unwrap_or_default(),
            "updated_at" => image.updated_at = time(),
            "deleted_at" => image.deleted_at = time(),
            "deleted" => image.deleted = flag,
            _ => {}
        }
    }
    image.id = id.ok_or_else(|| Error::InvalidResponse("reply without x-image-meta-id".into()))?;
    image.status =
        status.ok_or_else(|| Error::InvalidResponse("reply without x-image-meta-status".into()))?;
    image.properties = props;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::v1::headers as server;
    use crate::http::Headers;

    fn patch() -> ImagePatch {
        ImagePatch {
            id: Some("my-id".into()),
            name: Some(Some("Ubuntu 24.04".into())),
            disk_format: Some(Some("qcow2".into())),
            container_format: Some(Some("bare".into())),
            size: Some(12),
            is_public: Some(true),
            location: Some(None),
            checksum: Some(Some("0123456789abcdef0123456789abcdef".into())),
            min_ram: Some(512),
            min_disk: Some(2),
            owner: Some(Some("tenant1".into())),
            properties: Some(
                [
                    ("distro".to_string(), Some("ubuntu".to_string())),
                    ("kernel_id".to_string(), None),
                ]
                .into(),
            ),
            ..ImagePatch::default()
        }
    }

    #[test]
    fn the_server_reads_what_the_client_sends() {
        let sent = patch();
        let pairs = patch_to_headers(&sent).unwrap_or_default();
        assert!(pairs.iter().any(|(n, _)| n == "x-image-meta-disk_format"));
        let got = server::parse(&Headers::new(pairs)).map(|m| m.patch).ok();
        assert_eq!(got, Some(sent));
        let false_public = ImagePatch {
            is_public: Some(false),
            ..ImagePatch::default()
        };
        let pairs = patch_to_headers(&false_public).unwrap_or_default();
        assert_eq!(
            pairs,
            vec![("x-image-meta-is_public".into(), "False".into())]
        );
    }

    #[test]
    fn unsendable_input_is_refused() {
        let mut p = ImagePatch {
            name: Some(Some("two\nlines".into())),
            ..ImagePatch::default()
        };
        assert!(matches!(patch_to_headers(&p), Err(Error::InvalidInput(_))));
        p.name = None;
        p.properties = Some([("has space".to_string(), None)].into());
        assert!(matches!(patch_to_headers(&p), Err(Error::InvalidInput(_))));
    }

    #[test]
    fn the_client_reads_what_the_server_sends() {
        let mut img = Image::new("abc".into());
        img.name = Some("n".into());
        img.visibility = Visibility::Public;
        img.size = 42;
        img.min_ram = 3;
        img.virtual_size = Some(1 << 30);
        img.owner = Some("t".into());
        img.checksum = Some("0123456789abcdef0123456789abcdef".into());
        img.location = Some("file:///var/lib/glance/images/abc".into());
        img.updated_at = Some(img.created_at.clone());
        img.properties
            .insert("distro".into(), Some("debian".into()));
        img.properties.insert("empty".into(), None);
        img.properties.insert("with space".into(), Some("x".into()));
        let sent = server::to_headers(&img);
        // On the wire names are case-insensitive; send them title-cased as WebOb did.
        let titled: Vec<(String, String)> = sent
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
            .collect();
        let got = image_from_headers(titled.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(got.ok(), Some(img));
    }

    #[test]
    fn an_unknown_virtual_size_reads_back_as_none() {
        let img = Image::new("abc".into());
        let sent = server::to_headers(&img);
        let got = image_from_headers(sent.iter().map(|(k, v)| (k.as_ref(), v.as_str())));
        assert_eq!(got.ok().map(|i| i.virtual_size), Some(None));
        let bad = image_from_headers([
            ("x-image-meta-id", "x"),
            ("x-image-meta-status", "active"),
            ("x-image-meta-virtual_size", "big"),
        ]);
        assert!(matches!(bad, Err(Error::InvalidResponse(_))));
    }

    #[test]
    fn replies_without_id_or_status_are_invalid() {
        let e = image_from_headers([("x-image-meta-status", "active")]);
        assert!(matches!(e, Err(Error::InvalidResponse(_))));
        let e = image_from_headers([("x-image-meta-id", "x"), ("x-image-meta-status", "dancing")]);
        assert!(matches!(e, Err(Error::InvalidResponse(_))));
    }
}
