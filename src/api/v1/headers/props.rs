//! Property-based tests of `x-image-meta-*` header parsing (quick and long runs: see
//! `crate::props`).

use super::*;
use crate::image::{DISK_FORMATS, Status};
use crate::props::{assert_client_error, props};
use proptest::prelude::*;

/// Header names around the `x-image-meta-` prefix, spelt in the ways clients do.
fn meta_name() -> impl Strategy<Value = String> {
    let field = proptest::sample::select(vec![
        "id",
        "name",
        "disk_format",
        "container-format",
        "location",
        "checksum",
        "owner",
        "store",
        "is_public",
        "size",
        "virtual_size",
        "os_hash_algo",
        "os-hash-value",
        "min_ram",
        "min-disk",
        "status",
        "created_at",
        "deleted",
        "property-",
        "property-kernel_id",
        "",
    ]);
    (
        proptest::sample::select(vec!["x-image-meta-", "X-Image-Meta-", "x_image_meta_", ""]),
        field,
        "(?s).{0,6}",
    )
        .prop_map(|(prefix, field, tail)| format!("{prefix}{field}{tail}"))
}

/// A value as a client could send it (any text), or a plausible one.
fn meta_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "(?s).{0,24}",
        "[0-9]{0,22}",
        "[0-9a-fA-F]{30,34}",
        proptest::sample::select(Status::ALL.map(|s| s.as_str()).to_vec()).prop_map(String::from),
        Just(String::new()),
    ]
}

/// A field value that survives the trim: no surrounding whitespace.
fn text() -> impl Strategy<Value = String> {
    "[!-~é]([ -~é]{0,20}[!-~é])?"
}

/// `name` with random case and `-`/`_` swaps, as clients spell header names.
fn spell(name: &str, seed: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            let bit = (seed >> (i % 64)) & 1 == 1;
            match c {
                '-' | '_' if bit => {
                    if c == '-' {
                        '_'
                    } else {
                        '-'
                    }
                }
                c if bit => c.to_ascii_uppercase(),
                c => c,
            }
        })
        .collect()
}

/// RFC 9110 `tchar`: what a header name may consist of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Fields set through headers, and the patch they must give.
#[derive(Debug, Clone)]
struct Fields {
    id: String,
    name: Option<String>,
    disk_format: Option<String>,
    size: u64,
    min_ram: u64,
    is_public: bool,
    checksum: String,
    owner: Option<String>,
    properties: Properties,
    store: Option<String>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}",
        proptest::option::of(text()),
        proptest::option::of(proptest::sample::select(DISK_FORMATS.to_vec())),
        (any::<u64>(), any::<u64>(), any::<bool>()),
        "[0-9a-fA-F]{32}",
        proptest::option::of(text()),
        proptest::collection::btree_map("[a-z0-9_]{1,12}", proptest::option::of(text()), 0..5),
        proptest::option::of("[a-z]{1,8}"),
    )
        .prop_map(
            |(id, name, disk, (size, min_ram, is_public), checksum, owner, properties, store)| {
                Fields {
                    id,
                    name,
                    disk_format: disk.map(String::from),
                    size,
                    min_ram,
                    is_public,
                    checksum,
                    owner,
                    properties,
                    store,
                }
            },
        )
}

props! {
    cases = 2000;

    /// Any headers: a parse or a 4xx, never a panic or a 5xx.
    fn prop_meta_headers_any(pairs in proptest::collection::vec((meta_name(), meta_value()), 0..12)) {
        let mut h = Headers::default();
        for (n, v) in pairs {
            h.push(n, v);
        }
        if let Err(e) = parse(&h) {
            assert_client_error(&e)?;
        }
    }

    /// Well-formed headers, however their names are spelt, give back the fields sent.
    fn prop_meta_headers_round_trip(f in fields(), seed in any::<u64>()) {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let mut sent = vec![
            ("x-image-meta-id".to_string(), f.id.clone()),
            ("x-image-meta-name".into(), opt(&f.name)),
            ("x-image-meta-disk_format".into(), opt(&f.disk_format)),
            ("x-image-meta-size".into(), f.size.to_string()),
            ("x-image-meta-min_ram".into(), f.min_ram.to_string()),
            ("x-image-meta-is_public".into(), if f.is_public { "True" } else { "false" }.into()),
            ("x-image-meta-checksum".into(), f.checksum.clone()),
            ("x-image-meta-owner".into(), opt(&f.owner)),
            ("x-image-meta-store".into(), opt(&f.store)),
        ];
        for (k, v) in &f.properties {
            sent.push((format!("x-image-meta-property-{k}"), opt(v)));
        }
        let mut h = Headers::default();
        for (i, (n, v)) in sent.into_iter().enumerate() {
            h.push(spell(&n, seed.rotate_left(i as u32 * 7)), v);
        }
        let meta = match parse(&h) {
            Ok(m) => m,
            Err(e) => return Err(TestCaseError::fail(e.message())),
        };
        let want = ImagePatch {
            id: Some(f.id),
            name: Some(f.name),
            disk_format: Some(f.disk_format),
            size: Some(f.size),
            min_ram: Some(f.min_ram),
            is_public: Some(f.is_public),
            checksum: Some(Some(f.checksum.to_ascii_lowercase())),
            owner: Some(f.owner),
            properties: (!f.properties.is_empty()).then_some(f.properties),
            ..ImagePatch::default()
        };
        prop_assert_eq!(meta.patch, want);
        prop_assert_eq!(meta.store, f.store);
    }

    /// Response headers are always well-formed: names are tokens and values carry no
    /// control characters, whatever the record holds (no response splitting).
    fn prop_response_headers_are_safe(
        name in proptest::option::of("(?s).{0,16}"),
        props in proptest::collection::btree_map("(?s).{1,10}", proptest::option::of("(?s).{0,10}"), 0..5),
        location in proptest::option::of("(?s).{0,30}"),
    ) {
        let mut image = Image::new("id".into());
        image.name = name;
        image.properties = props;
        image.location = location;
        for (n, v) in to_headers(&image) {
            prop_assert!(!n.is_empty() && n.bytes().all(is_tchar), "{:?}", n);
            prop_assert!(!v.chars().any(char::is_control), "{:?}", v);
        }
    }
}
