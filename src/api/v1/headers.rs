//! `x-image-meta-*` headers ⇄ image fields (spec §3.2, §3.3).
//!
//! Request side: `x-image-meta-<field>` sets a field, `x-image-meta-property-<key>` a
//! property (key lower-cased, `-` → `_`); `-` and `_` in names are the same; an empty value
//! means null. Response side: every field as `x-image-meta-<field>` (null → empty, booleans
//! `True`/`False`), properties as `x-image-meta-property-<key>`, the location without
//! credentials. `x-image-meta-virtual_size`, `x-image-meta-os_hash_algo` and
//! `x-image-meta-os_hash_value` are only ever response headers: glance computes them from
//! the image data, so a request carrying one is refused.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::http::{Headers, SharedHeaders};
use crate::image::{
    Image, ImagePatch, Properties, parse_count, validate_id, validate_property_key,
};
use crate::store::redact_uri;
use crate::timeutil;

const META: &str = "x-image-meta-";
const PROPERTY: &str = "property-";

/// What the `x-image-meta-*` headers of one request say.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MetaHeaders {
    /// Field and property changes (status included as sent; callers decide).
    pub patch: ImagePatch,
    /// `x-image-meta-store`: the store to upload into.
    pub store: Option<String>,
}

/// Parses the `x-image-meta-*` headers; a malformed value is a 400 naming the header.
pub fn parse(headers: &Headers) -> Result<MetaHeaders> {
    let mut meta = MetaHeaders::default();
    let mut props = Properties::new();
    let mut saw_property = false;
    for (name, value) in headers.iter() {
        let lower = name.to_ascii_lowercase().replace('_', "-");
        let Some(field) = lower.strip_prefix(META) else {
            continue;
        };
        let value = value.trim();
        let nullable = (!value.is_empty()).then(|| value.to_string());
        if let Some(key) = field.strip_prefix(PROPERTY) {
            let key = key.replace('-', "_");
            validate_property_key(&key)?;
            props.insert(key, nullable);
            saw_property = true;
            continue;
        }
        let p = &mut meta.patch;
        match field {
            "id" => {
                validate_id(value)?;
                p.id = Some(value.to_string());
            }
            "name" => p.name = Some(nullable),
            "disk-format" => p.disk_format = Some(nullable),
            "container-format" => p.container_format = Some(nullable),
            "location" => p.location = Some(nullable),
            "checksum" => p.checksum = Some(nullable.map(|c| c.to_ascii_lowercase())),
            "owner" => p.owner = Some(nullable),
            "store" => meta.store = nullable,
            "is-public" => p.is_public = Some(value.eq_ignore_ascii_case("true")),
            "size" => p.size = count(&lower, value)?,
            "virtual-size" => return Err(read_only("virtual_size")),
            "os-hash-algo" => return Err(read_only("os_hash_algo")),
            "os-hash-value" => return Err(read_only("os_hash_value")),
            "min-ram" => p.min_ram = count(&lower, value)?,
            "min-disk" => p.min_disk = count(&lower, value)?,
            "status" if !value.is_empty() => {
                p.status = Some(value.parse().map_err(|e: Error| {
                    Error::bad_request(format!("x-image-meta-status: {}", e.message()))
                })?)
            }
            // created_at, updated_at, deleted_at, deleted and unknown names: ignored, as
            // Diablo's registry did.
            _ => {}
        }
    }
    if saw_property {
        meta.patch.properties = Some(props);
    }
    if let Some(Some(c)) = &meta.patch.checksum
        && (c.len() != 32 || !c.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(Error::bad_request(
            "x-image-meta-checksum must be 32 hexadecimal digits (an MD5)",
        ));
    }
    Ok(meta)
}

/// The 400 of a request that tries to set `field` (`virtual_size`, `os_hash_algo`,
/// `os_hash_value`), whatever the value (even empty: there is nothing a client may say
/// about it).
fn read_only(field: &str) -> Error {
    Error::bad_request(format!(
        "x-image-meta-{field} is read-only: glance computes it from the image data"
    ))
}

fn count(header: &str, value: &str) -> Result<Option<u64>> {
    if value.is_empty() {
        return Ok(None);
    }
    parse_count(header, value).map(Some)
}

/// The image as response headers (HEAD and GET).
pub fn to_headers(image: &Image) -> Vec<(Cow<'static, str>, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let time = |v: &Option<String>| v.as_deref().map(timeutil::display).unwrap_or_default();
    let py_bool = |b: bool| if b { "True" } else { "False" }.to_string();
    // Names spelt out whole: a HEAD is the commonest request, and these are most of it.
    let fields = [
        ("x-image-meta-id", image.id.clone()),
        ("x-image-meta-name", opt(&image.name)),
        ("x-image-meta-status", image.status.as_str().to_string()),
        ("x-image-meta-size", image.size.to_string()),
        (
            "x-image-meta-virtual_size",
            image
                .virtual_size
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ),
        ("x-image-meta-disk_format", opt(&image.disk_format)),
        (
            "x-image-meta-container_format",
            opt(&image.container_format),
        ),
        ("x-image-meta-checksum", opt(&image.checksum)),
        ("x-image-meta-os_hash_algo", opt(&image.os_hash_algo)),
        ("x-image-meta-os_hash_value", opt(&image.os_hash_value)),
        ("x-image-meta-is_public", py_bool(image.is_public())),
        (
            "x-image-meta-location",
            image
                .location
                .as_deref()
                .map(redact_uri)
                .unwrap_or_default(),
        ),
        ("x-image-meta-owner", opt(&image.owner)),
        ("x-image-meta-min_ram", image.min_ram.to_string()),
        ("x-image-meta-min_disk", image.min_disk.to_string()),
        (
            "x-image-meta-created_at",
            timeutil::display(&image.created_at),
        ),
        ("x-image-meta-updated_at", time(&image.updated_at)),
        ("x-image-meta-deleted_at", time(&image.deleted_at)),
        ("x-image-meta-deleted", py_bool(image.deleted)),
    ];
    let mut h = Vec::with_capacity(fields.len() + image.properties.len() + 2);
    h.extend(
        fields
            .into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), safe_value(v))),
    );
    for (k, v) in &image.properties {
        h.push((
            Cow::Owned(format!("x-image-meta-property-{}", safe_name(k))),
            safe_value(v.clone().unwrap_or_default()),
        ));
    }
    h
}

/// Most images a [`HeaderCache`] holds: beyond it, it starts again empty.
const CACHED_IMAGES: usize = 128;

/// The response headers of images answered recently, rendered once per version of an
/// image: a fleet of compute hosts polling the same images asks for them many times a
/// second, and rendering two dozen headers was a tenth of a HEAD's CPU time.
///
/// An image is known by its shared copy from the registry's memo ([`Arc`] identity): a
/// change to the image gives a new copy, so a cached rendering is never stale. The cache
/// holds that copy, so its address cannot be reused by another image meanwhile. A copy that
/// nobody else holds (a registry without a memo makes one per request) is rendered and not
/// kept: it cannot come back.
#[derive(Debug, Default)]
pub struct HeaderCache {
    images: Mutex<HashMap<String, (Arc<Image>, SharedHeaders)>>,
}

impl HeaderCache {
    /// The headers of `image` (see [`to_headers`]).
    pub fn headers(&self, image: &Arc<Image>) -> SharedHeaders {
        let images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, headers)) = images.get(&image.id)
            && Arc::ptr_eq(seen, image)
        {
            return Arc::clone(headers);
        }
        drop(images);
        let headers: SharedHeaders = to_headers(image).into();
        if Arc::strong_count(image) > 1 {
            let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
            if images.len() >= CACHED_IMAGES && !images.contains_key(&image.id) {
                images.clear();
            }
            images.insert(image.id.clone(), (Arc::clone(image), Arc::clone(&headers)));
        }
        headers
    }
}

/// Header values cannot carry control characters (response splitting): replace them.
fn safe_value(v: String) -> String {
    // The common case, checked byte by byte: printable ASCII needs no copy.
    if v.bytes().all(|b| (0x20..0x7f).contains(&b)) || !v.chars().any(char::is_control) {
        return v;
    }
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Header names are tokens: property keys with other characters are percent-encoded. `%` is
/// a token character but counts as one to encode, so that a name with a `%` in it is always
/// an encoded one (a key spelt `a%20b` would otherwise look like the key `a b`).
fn safe_name(k: &str) -> String {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$&'*+-.^_`|~".contains(c);
    if k.chars().all(token) {
        k.to_string()
    } else {
        crate::http::percent_encode(k)
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Status;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (n, v) in pairs {
            h.push(*n, *v);
        }
        h
    }

    #[test]
    fn fields_and_properties() {
        let m = parse(&headers(&[
            ("X-Image-Meta-Name", "img"),
            ("x-image-meta-disk_format", "qcow2"),
            ("X-Image-Meta-Container-Format", "bare"),
            ("x-image-meta-is_public", "True"),
            ("X-Image-Meta-Size", "42"),
            ("X-Image-Meta-Property-Kernel-Id", "k1"),
            ("x-image-meta-property-os_distro", "ubuntu"),
            ("x-image-meta-property-empty", ""),
            ("x-image-meta-store", "file"),
            ("x-image-meta-created_at", "2000-01-01"),
            ("x-image-meta-owner", ""),
            ("Content-Type", "application/octet-stream"),
        ]))
        .unwrap_or_default();
        let p = &m.patch;
        assert_eq!(p.name, Some(Some("img".into())));
        assert_eq!(p.disk_format, Some(Some("qcow2".into())));
        assert_eq!(p.container_format, Some(Some("bare".into())));
        assert_eq!(p.is_public, Some(true));
        assert_eq!(p.size, Some(42));
        assert_eq!(p.owner, Some(None));
        let props = p.properties.clone().unwrap_or_default();
        assert_eq!(props.get("kernel_id"), Some(&Some("k1".into())));
        assert_eq!(props.get("os_distro"), Some(&Some("ubuntu".into())));
        assert_eq!(props.get("empty"), Some(&None));
        assert_eq!(m.store.as_deref(), Some("file"));
    }

    #[test]
    fn is_public_only_literal_true() {
        for (v, want) in [("true", true), ("TRUE", true), ("1", false), ("yes", false)] {
            let m = parse(&headers(&[("x-image-meta-is-public", v)])).unwrap_or_default();
            assert_eq!(m.patch.is_public, Some(want), "{v}");
        }
    }

    #[test]
    fn malformed_values_are_400_naming_the_header() {
        for (h, v) in [
            ("x-image-meta-size", "-1"),
            ("x-image-meta-size", "+5"),
            ("x-image-meta-size", "1.5"),
            ("x-image-meta-min-ram", "lots"),
            ("x-image-meta-id", "a/b"),
            ("x-image-meta-status", "dancing"),
            ("x-image-meta-checksum", "xyz"),
        ] {
            let err = parse(&headers(&[(h, v)]))
                .err()
                .map(|e| (e.status(), e.message()));
            let (status, msg) = err.unwrap_or((0, String::new()));
            assert_eq!(status, 400, "{h}: {v}");
            let field = h.trim_start_matches("x-image-meta-").replace('-', "_");
            assert!(
                msg.contains(&field) || msg.contains(&h.replace('_', "-")) || msg.contains("id"),
                "{h}: {msg}"
            );
        }
    }

    #[test]
    fn virtual_size_is_read_only() {
        for (name, value) in [
            ("x-image-meta-virtual_size", "1024"),
            ("X-Image-Meta-Virtual-Size", ""),
            ("x_image_meta_virtual_size", "lots"),
        ] {
            let err = parse(&headers(&[("x-image-meta-name", "n"), (name, value)]))
                .err()
                .map(|e| (e.status(), e.message()));
            assert_eq!(
                err,
                Some((
                    400,
                    "x-image-meta-virtual_size is read-only: glance computes it from the \
                     image data"
                        .to_string()
                )),
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn os_hash_is_read_only() {
        for (name, value, field) in [
            ("x-image-meta-os_hash_algo", "sha512", "os_hash_algo"),
            ("X-Image-Meta-Os-Hash-Algo", "", "os_hash_algo"),
            ("x-image-meta-os_hash_value", "cf83", "os_hash_value"),
            ("x_image_meta_os_hash_value", "", "os_hash_value"),
        ] {
            let err = parse(&headers(&[("x-image-meta-name", "n"), (name, value)]))
                .err()
                .map(|e| (e.status(), e.message()));
            let want = format!(
                "x-image-meta-{field} is read-only: glance computes it from the image data"
            );
            assert_eq!(err, Some((400, want)), "{name}: {value}");
        }
    }

    #[test]
    fn property_names_that_are_not_tokens() {
        for (key, shown) in [
            ("plain_key.v1", "plain_key.v1"),
            ("a b", "a%20b"),
            ("a%20b", "a%2520b"),
            ("50%", "50%25"),
            ("caf\u{e9}", "caf%C3%A9"),
        ] {
            assert_eq!(safe_name(key), shown, "{key}");
        }
    }

    #[test]
    fn response_headers() {
        let mut img = Image::new("abc".into());
        img.status = Status::Active;
        img.location = Some("swift+https://acct:secret@host/v1/glance/abc".into());
        img.properties
            .insert("distro".into(), Some("line\r\nbreak".into()));
        let h = to_headers(&img);
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("x-image-meta-is_public").as_deref(), Some("False"));
        assert_eq!(get("x-image-meta-updated_at").as_deref(), Some(""));
        assert_eq!(get("x-image-meta-virtual_size").as_deref(), Some(""));
        assert_eq!(get("x-image-meta-os_hash_algo").as_deref(), Some(""));
        assert_eq!(get("x-image-meta-os_hash_value").as_deref(), Some(""));
        img.virtual_size = Some(41943040);
        let known = to_headers(&img);
        assert!(known.contains(&("x-image-meta-virtual_size".into(), "41943040".into())));
        img.os_hash_algo = Some("sha512".into());
        img.os_hash_value = Some("cf83".into());
        let known = to_headers(&img);
        assert!(known.contains(&("x-image-meta-os_hash_algo".into(), "sha512".into())));
        assert!(known.contains(&("x-image-meta-os_hash_value".into(), "cf83".into())));
        let loc = get("x-image-meta-location").unwrap_or_default();
        assert!(!loc.contains("secret"), "{loc}");
        assert_eq!(
            get("x-image-meta-property-distro").as_deref(),
            Some("line  break")
        );
    }

    #[test]
    fn control_characters_of_any_kind_become_spaces() {
        assert_eq!(safe_value("plain ascii".into()), "plain ascii");
        assert_eq!(safe_value("caf\u{e9}".into()), "caf\u{e9}");
        assert_eq!(safe_value("a\x7fb\tc".into()), "a b c");
        assert_eq!(safe_value("next\u{85}line".into()), "next line");
    }

    /// A cached image: `memo` stands for the registry's memo, which holds the same copy.
    fn shared(img: &Image) -> (Arc<Image>, Arc<Image>) {
        let memo = Arc::new(img.clone());
        (Arc::clone(&memo), memo)
    }

    #[test]
    fn the_header_cache_renders_each_version_of_an_image_once() {
        let cache = HeaderCache::default();
        let mut img = Image::new("abc".into());
        img.name = Some("first".into());
        let (v1, _memo) = shared(&img);
        let first = cache.headers(&v1);
        assert_eq!(&first[..], &to_headers(&img)[..]);
        assert!(Arc::ptr_eq(&first, &cache.headers(&v1)), "rendered again");
        // An update gives the memo a new copy: never the old rendering.
        img.name = Some("second".into());
        let (v2, _memo2) = shared(&img);
        let second = cache.headers(&v2);
        assert!(second.contains(&("x-image-meta-name".into(), "second".into())));
        assert!(!Arc::ptr_eq(&first, &second));
        // Equal contents in another copy are rendered anew, not matched by value.
        let (v2b, _memo3) = shared(&img);
        assert!(!Arc::ptr_eq(&second, &cache.headers(&v2b)));
    }

    #[test]
    fn the_header_cache_keeps_no_unshared_copy_and_stays_bounded() {
        let cache = HeaderCache::default();
        let lone = Arc::new(Image::new("lone".into()));
        let h = cache.headers(&lone);
        assert_eq!(&h[..], &to_headers(&lone)[..]);
        assert_eq!(
            Arc::strong_count(&lone),
            1,
            "a copy nobody else holds was kept"
        );
        let mut held = Vec::new();
        for n in 0..(CACHED_IMAGES * 2 + 3) {
            let (img, memo) = shared(&Image::new(format!("img-{n}")));
            cache.headers(&img);
            held.push(memo);
        }
        let kept = cache.images.lock().unwrap().len();
        assert!((1..=CACHED_IMAGES).contains(&kept), "{kept} images kept");
    }
}
