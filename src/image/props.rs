//! Property-based tests of the registry's image JSON (quick and long runs: see
//! `crate::props`).

use super::*;
use crate::props::{assert_client_error, json, props};
use proptest::prelude::*;

/// The keys the parsers look at, so that random objects reach their branches.
const KEYS: &[&str] = &[
    "id",
    "name",
    "disk_format",
    "container_format",
    "location",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "size",
    "virtual_size",
    "min_ram",
    "min_disk",
    "is_public",
    "status",
    "properties",
    "created_at",
    "updated_at",
    "deleted_at",
    "deleted",
    "image",
];

fn status() -> impl Strategy<Value = Status> {
    proptest::sample::select(Status::ALL.to_vec())
}

/// A property key [`validate_property_key`] accepts: 1-255 characters, no controls.
fn property_key() -> impl Strategy<Value = String> {
    "[^\\x00-\\x1f\\x7f-\\x9f]{1,12}"
}

fn properties() -> impl Strategy<Value = Properties> {
    proptest::collection::btree_map(property_key(), proptest::option::of("(?s).{0,12}"), 0..5)
}

fn nullable() -> impl Strategy<Value = Option<Option<String>>> {
    proptest::option::of(proptest::option::of("(?s).{0,12}"))
}

fn patch() -> impl Strategy<Value = ImagePatch> {
    (
        proptest::option::of("[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}"),
        (nullable(), nullable(), nullable(), nullable(), nullable()),
        proptest::option::of(proptest::option::of("(?s).{1,12}")),
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(proptest::option::of(any::<u64>())),
        ),
        proptest::option::of(status()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(properties()),
        (nullable(), nullable()),
    )
        .prop_map(
            |(
                id,
                (name, disk, container, location, checksum),
                owner,
                counts,
                st,
                public,
                props,
                (os_hash_algo, os_hash_value),
            )| {
                ImagePatch {
                    id,
                    name,
                    disk_format: disk,
                    container_format: container,
                    size: counts.0,
                    virtual_size: counts.3,
                    status: st,
                    is_public: public,
                    location,
                    checksum,
                    os_hash_algo,
                    os_hash_value,
                    min_ram: counts.1,
                    min_disk: counts.2,
                    owner,
                    properties: props,
                    ..ImagePatch::default()
                }
            },
        )
}

/// A timestamp in stored form, anywhere in 0001-9999.
fn stored_time() -> impl Strategy<Value = String> {
    (
        1i64..=9999,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        0u32..1_000_000,
    )
        .prop_map(|(y, mo, d, h, mi, s, us)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}")
        })
}

fn image() -> impl Strategy<Value = Image> {
    (
        "(?s).{0,16}",
        (nullable(), nullable(), nullable(), nullable(), nullable()),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
        ),
        (status(), any::<bool>(), any::<bool>()),
        (
            stored_time(),
            proptest::option::of(stored_time()),
            proptest::option::of(stored_time()),
        ),
        properties(),
        (nullable(), nullable()),
    )
        .prop_map(
            |(
                id,
                (name, disk, container, location, checksum),
                counts,
                flags,
                times,
                props,
                (os_hash_algo, os_hash_value),
            )| {
                Image {
                    id,
                    name: name.flatten(),
                    disk_format: disk.flatten(),
                    container_format: container.flatten(),
                    size: counts.0,
                    virtual_size: counts.3,
                    status: flags.0,
                    visibility: if flags.1 {
                        Visibility::Public
                    } else {
                        Visibility::Private
                    },
                    protected: flags.1,
                    os_hidden: !flags.1,
                    location: location.flatten(),
                    checksum: checksum.flatten(),
                    os_hash_algo: os_hash_algo.flatten(),
                    os_hash_value: os_hash_value.flatten(),
                    min_ram: counts.1,
                    min_disk: counts.2,
                    owner: None,
                    created_at: times.0,
                    updated_at: times.1,
                    deleted_at: times.2,
                    deleted: flags.2,
                    properties: props,
                    tags: Vec::new(),
                }
            },
        )
}

props! {
    cases = 2000;

    /// Any JSON as a registry request's image: a patch or a 4xx.
    fn prop_image_patch_any_json(v in json(KEYS)) {
        if let Err(e) = ImagePatch::from_json(&v) {
            assert_client_error(&e)?;
        }
    }

    /// An object of known keys with random values: a patch or a 4xx.
    fn prop_image_patch_known_keys(
        m in proptest::collection::btree_map(
            proptest::sample::select(KEYS).prop_map(str::to_string), json(KEYS), 0..8),
    ) {
        let v = serde_json::Value::Object(m.into_iter().collect());
        if let Err(e) = ImagePatch::from_json(&v) {
            assert_client_error(&e)?;
        }
    }

    /// A patch survives the remote registry client's encoding.
    fn prop_image_patch_round_trip(p in patch()) {
        let back = ImagePatch::from_json(&p.to_json());
        prop_assert_eq!(back.map_err(|e| e.message()), Ok(p));
    }

    /// Any JSON as a registry reply: a record or an error that is the server side's (a
    /// 500: a malformed reply is not the API client's fault), never a panic.
    fn prop_image_reply_any_json(v in json(KEYS)) {
        if let Err(e) = Image::from_json(&v) {
            prop_assert_eq!(e.status(), 500, "{}", e.message());
        }
    }

    /// A record survives the registry's reply encoding, timestamps included.
    fn prop_image_reply_round_trip(img in image()) {
        let back = Image::from_json(&img.to_json(true));
        prop_assert_eq!(back.map_err(|e| e.message()), Ok(img));
    }
}
