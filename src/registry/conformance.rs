//! A conformance run for any [`Registry`]: the behaviour of spec §5.1, §5.8, §7.3 and §8
//! and DECISIONS.md, checked only through the trait so that the SQLite registry and the
//! remote registry client can share it.
//!
//! [`exercise_registry`] expects an empty registry. Each section keeps to its own images
//! (a `section` property, a name or an owner tenant), so sections do not see each other.

use std::thread::sleep;
use std::time::Duration;

use super::{ListQuery, MemberSpec, PageLimits, Registry};
use crate::auth::{AuthOptions, Context};
use crate::error::Error;
use crate::image::{Image, ImageId, ImagePatch, Properties, Status};

/// A tenant (non-admin) caller.
pub(crate) fn tenant(t: &str) -> Context {
    Context::for_identity(
        Some("token".into()),
        Some(format!("user-{t}")),
        Some(t.into()),
        vec!["member".into()],
        &AuthOptions::default(),
    )
}

/// An admin caller with a tenant.
pub(crate) fn admin_of(t: &str) -> Context {
    Context::for_identity(
        Some("token".into()),
        Some(format!("user-{t}")),
        Some(t.into()),
        vec!["Admin".into()],
        &AuthOptions::default(),
    )
}

/// The noauth admin: no tenant.
pub(crate) fn admin() -> Context {
    Context::noauth_admin(&AuthOptions::default())
}

/// An anonymous read-only caller (Keystone shim without a confirmed identity).
pub(crate) fn anonymous() -> Context {
    Context {
        read_only: true,
        owner_is_tenant: true,
        ..Context::default()
    }
}

/// An image id of the tests (valid by construction).
pub(crate) fn iid(s: &str) -> ImageId {
    ImageId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn props(pairs: &[(&str, &str)]) -> Properties {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect()
}

fn patch(id: &str, section: &str) -> ImagePatch {
    ImagePatch {
        id: Some(id.into()),
        properties: Some(props(&[("section", section)])),
        ..ImagePatch::default()
    }
}

fn query(ctx: &Context, s: &str) -> ListQuery {
    ListQuery::parse(&crate::http::parse_query(s), ctx, PageLimits::default())
        .unwrap_or_else(|e| panic!("query {s}: {e}"))
}

fn list(reg: &dyn Registry, ctx: &Context, s: &str) -> Vec<Image> {
    reg.list(ctx, &query(ctx, s))
        .unwrap_or_else(|e| panic!("list {s}: {e}"))
}

fn ids(images: &[Image]) -> Vec<String> {
    images.iter().map(|i| i.id.clone()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn create(reg: &dyn Registry, ctx: &Context, p: ImagePatch) -> Image {
    let id = p.id.clone().unwrap_or_default();
    reg.create(ctx, &p)
        .unwrap_or_else(|e| panic!("create {id}: {e}"))
}

/// Lets the clock move so that successive creates get distinct `created_at` values.
fn tick() {
    sleep(Duration::from_millis(2));
}

fn assert_not_found<T: std::fmt::Debug>(r: crate::error::Result<T>, what: &str) {
    match r {
        Err(Error::NotFound(m)) => assert!(m.contains("not found"), "{what}: {m}"),
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// Runs every check against an empty registry; panics on the first failure.
pub(crate) fn exercise_registry(reg: &dyn Registry) {
    crud(reg);
    exercise_virtual_size(reg);
    exercise_os_hash(reg);
    create_ownership(reg);
    update_ownership(reg);
    diablo_paging(reg);
    diablo_sorting(reg);
    null_sort_values_page_cleanly(reg);
    filters(reg);
    killed_and_deleted(reg);
    visibility(reg);
    markers(reg);
    members(reg);
    duplicates(reg);
    failed_create_leaves_nothing(reg);
    changes_since(reg);
    read_only(reg);
    upload_states_are_compare_and_set(reg);
    limits(reg);
    creating_needs_a_project(reg);
    super::conformance_v2::exercise_v2(reg);
}

fn crud(reg: &dyn Registry) {
    let a = tenant("crud-a");
    let b = tenant("crud-b");
    let mut p = patch("crud-1", "crud");
    p.name = Some(Some("one".into()));
    p.disk_format = Some(Some("raw".into()));
    p.container_format = Some(Some("bare".into()));
    p.size = Some(10);
    p.min_ram = Some(512);
    p.properties = Some(props(&[
        ("section", "crud"),
        ("os", "linux"),
        ("arch", "x86"),
    ]));
    let img = create(reg, &a, p);
    assert_eq!(img.id, "crud-1");
    assert_eq!(img.status, Status::Active, "registry default status");
    assert!(!img.is_public() && !img.deleted);
    assert_eq!(img.owner.as_deref(), Some("crud-a"));
    assert_eq!((img.size, img.min_ram, img.min_disk), (10, 512, 0));
    assert!(img.updated_at.is_none() && img.deleted_at.is_none());
    assert_eq!(img.created_at.len(), "2011-09-21T20:33:05.123456".len());
    assert_eq!(img.properties.get("os"), Some(&Some("linux".into())));

    assert_eq!(reg.get(&a, &iid("crud-1")).ok(), Some(img.clone()));
    assert_eq!(reg.get(&admin(), &iid("crud-1")).ok(), Some(img.clone()));
    assert_not_found(
        reg.get(&b, &iid("crud-1")),
        "private image of another tenant",
    );
    assert_not_found(reg.get(&a, &iid("crud-missing")), "unknown id");

    // Generated id.
    let gen_id = create(reg, &a, ImagePatch::default());
    assert_eq!(gen_id.id.len(), 36, "uuid: {}", gen_id.id);

    // Purging update replaces the property set; a null value is kept as null.
    let mut p = ImagePatch {
        name: Some(Some("one-b".into())),
        ..ImagePatch::default()
    };
    let mut new_props = props(&[("section", "crud"), ("os", "windows")]);
    new_props.insert("empty".into(), None);
    p.properties = Some(new_props.clone());
    let up = reg
        .update(&a, &iid("crud-1"), &p, true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(up.name.as_deref(), Some("one-b"));
    assert_eq!(up.properties, new_props);
    assert!(up.updated_at.is_some());
    assert_eq!(up.created_at, img.created_at);
    assert_eq!(reg.get(&a, &iid("crud-1")).ok(), Some(up.clone()));

    // Merging update.
    let p = ImagePatch {
        properties: Some(props(&[("extra", "x")])),
        ..ImagePatch::default()
    };
    let up = reg
        .update(&a, &iid("crud-1"), &p, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(up.properties.len(), 4);
    assert_eq!(up.properties.get("extra"), Some(&Some("x".into())));
    assert_eq!(up.name.as_deref(), Some("one-b"));

    // Re-setting a removed property revives it with the new value.
    let p = ImagePatch {
        properties: Some(props(&[("section", "crud")])),
        ..ImagePatch::default()
    };
    let up = reg
        .update(&a, &iid("crud-1"), &p, true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(up.properties, props(&[("section", "crud")]));
    let p = ImagePatch {
        properties: Some(props(&[("os", "plan9")])),
        ..ImagePatch::default()
    };
    let up = reg
        .update(&a, &iid("crud-1"), &p, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        up.properties,
        props(&[("section", "crud"), ("os", "plan9")])
    );

    // An id in the patch changes nothing.
    let p = ImagePatch {
        id: Some("crud-renamed".into()),
        ..ImagePatch::default()
    };
    let up = reg
        .update(&a, &iid("crud-1"), &p, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(up.id, "crud-1");
    assert_not_found(reg.get(&admin(), &iid("crud-renamed")), "id not changed");

    // Invalid update: 400, nothing changed.
    let before = reg
        .get(&a, &iid("crud-1"))
        .unwrap_or_else(|e| panic!("{e}"));
    let p = ImagePatch {
        name: Some(Some("changed".into())),
        disk_format: Some(Some("floppy".into())),
        properties: Some(Properties::new()),
        ..ImagePatch::default()
    };
    assert!(matches!(
        reg.update(&a, &iid("crud-1"), &p, true),
        Err(Error::BadRequest(_))
    ));
    assert_eq!(reg.get(&a, &iid("crud-1")).ok(), Some(before));

    // Status is stored as given.
    let p = ImagePatch {
        status: Some(Status::Queued),
        ..ImagePatch::default()
    };
    let up = reg
        .update(&a, &iid("crud-1"), &p, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(up.status, Status::Queued);

    // Others cannot modify or delete (404, not 403).
    assert_not_found(
        reg.update(&b, &iid("crud-1"), &p, false),
        "update by other tenant",
    );
    assert_not_found(reg.delete(&b, &iid("crud-1")), "delete by other tenant");
    assert_not_found(
        reg.update(&a, &iid("crud-missing"), &p, false),
        "update unknown",
    );

    // Delete.
    let del = reg
        .delete(&a, &iid("crud-1"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(del.deleted && del.deleted_at.is_some());
    assert_eq!(del.status, Status::Queued, "status untouched by delete");
    assert_not_found(reg.get(&a, &iid("crud-1")), "deleted image");
    assert_not_found(reg.get(&admin(), &iid("crud-1")), "deleted image, admin");
    assert_not_found(reg.delete(&a, &iid("crud-1")), "delete twice");
    assert_not_found(reg.update(&a, &iid("crud-1"), &p, false), "update deleted");
    assert!(list(reg, &admin(), "is_public=none&property-section=crud").is_empty());
    assert!(list(reg, &admin(), "is_public=none&name=one-b").is_empty());
}

/// `virtual_size` is unknown (None) until an update sets it, reads back through get and the
/// detailed listing, survives updates that do not name it, and can be made unknown again.
/// Also run alone through the remote registry client (the other sections rely on the raw
/// trait's freedoms, which the registry API narrows, such as any status change).
pub(crate) fn exercise_virtual_size(reg: &dyn Registry) {
    let t = tenant("vsize");
    let mut p = patch("vsize-1", "vsize");
    p.status = Some(Status::Queued);
    let img = create(reg, &t, p);
    assert_eq!(img.virtual_size, None);
    assert_eq!(
        reg.get(&t, &iid("vsize-1")).ok().map(|i| i.virtual_size),
        Some(None)
    );
    let listed = |reg: &dyn Registry| -> Vec<Option<u64>> {
        let found = list(reg, &t, "property-section=vsize");
        found.iter().map(|i| i.virtual_size).collect()
    };
    assert_eq!(listed(reg), vec![None]);

    // Set with the step out of `queued`, as an upload's activation does.
    let activate = ImagePatch {
        status: Some(Status::Active),
        virtual_size: Some(Some(10 << 30)),
        ..ImagePatch::default()
    };
    let up = reg
        .update_if(&t, &iid("vsize-1"), Status::Queued, &activate, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(up.virtual_size, Some(10 << 30));
    assert_eq!(reg.get(&t, &iid("vsize-1")).ok(), Some(up));
    assert_eq!(listed(reg), vec![Some(10 << 30)]);

    // An update that does not name it leaves it; a plain update sets and clears it.
    let rename = ImagePatch {
        name: Some(Some("renamed".into())),
        ..ImagePatch::default()
    };
    let up = reg.update(&t, &iid("vsize-1"), &rename, false);
    assert_eq!(up.ok().map(|i| i.virtual_size), Some(Some(10 << 30)));
    let set = |v: Option<u64>| ImagePatch {
        virtual_size: Some(v),
        ..ImagePatch::default()
    };
    let up = reg.update(&t, &iid("vsize-1"), &set(Some(1)), false);
    assert_eq!(up.ok().map(|i| i.virtual_size), Some(Some(1)));
    let up = reg.update(&t, &iid("vsize-1"), &set(None), false);
    assert_eq!(up.ok().map(|i| i.virtual_size), Some(None));
    assert_eq!(listed(reg), vec![None]);

    // Beyond what the database stores: refused, nothing changed.
    let e = reg.update(&t, &iid("vsize-1"), &set(Some(u64::MAX)), false);
    assert!(matches!(e, Err(Error::BadRequest(_))), "{e:?}");
    assert_eq!(listed(reg), vec![None]);
}

/// `os_hash_algo` and `os_hash_value` are unknown (None) until an update sets them, read
/// back through get and the detailed listing, survive updates that do not name them, and
/// can be made unknown again; values wider than Glance's columns are refused. Also run
/// alone through the remote registry client, as [`exercise_virtual_size`] is.
pub(crate) fn exercise_os_hash(reg: &dyn Registry) {
    let t = tenant("oshash");
    let mut p = patch("oshash-1", "oshash");
    p.status = Some(Status::Queued);
    let img = create(reg, &t, p);
    assert_eq!((img.os_hash_algo, img.os_hash_value), (None, None));
    let listed = |reg: &dyn Registry| -> Vec<(Option<String>, Option<String>)> {
        let found = list(reg, &t, "property-section=oshash");
        found
            .into_iter()
            .map(|i| (i.os_hash_algo, i.os_hash_value))
            .collect()
    };
    assert_eq!(listed(reg), vec![(None, None)]);

    // Set with the step out of `queued`, as an upload's activation does.
    let sha = "ab".repeat(64);
    let known = (Some("sha512".to_string()), Some(sha.clone()));
    let activate = ImagePatch {
        status: Some(Status::Active),
        os_hash_algo: Some(Some("sha512".into())),
        os_hash_value: Some(Some(sha.clone())),
        ..ImagePatch::default()
    };
    let up = reg
        .update_if(&t, &iid("oshash-1"), Status::Queued, &activate, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((up.os_hash_algo.clone(), up.os_hash_value.clone()), known);
    assert_eq!(reg.get(&t, &iid("oshash-1")).ok(), Some(up));
    assert_eq!(listed(reg), vec![known.clone()]);

    // An update that does not name them leaves them; a plain update sets and clears them.
    let rename = ImagePatch {
        name: Some(Some("renamed".into())),
        ..ImagePatch::default()
    };
    let up = reg.update(&t, &iid("oshash-1"), &rename, false);
    let hashes = |i: Image| (i.os_hash_algo, i.os_hash_value);
    assert_eq!(up.ok().map(hashes), Some(known));
    let set = |algo: Option<&str>, value: Option<&str>| ImagePatch {
        os_hash_algo: Some(algo.map(str::to_string)),
        os_hash_value: Some(value.map(str::to_string)),
        ..ImagePatch::default()
    };
    let up = reg.update(
        &t,
        &iid("oshash-1"),
        &set(Some("sha256"), Some("cd")),
        false,
    );
    let sha256 = (Some("sha256".to_string()), Some("cd".to_string()));
    assert_eq!(up.ok().map(hashes), Some(sha256));
    let up = reg.update(&t, &iid("oshash-1"), &set(None, None), false);
    assert_eq!(up.ok().map(hashes), Some((None, None)));
    assert_eq!(listed(reg), vec![(None, None)]);

    // Wider than Glance's columns (64 and 128 characters): refused, nothing changed.
    let long_algo = "x".repeat(65);
    let e = reg.update(&t, &iid("oshash-1"), &set(Some(&long_algo), None), false);
    assert!(matches!(e, Err(Error::BadRequest(_))), "{e:?}");
    let long_value = "f".repeat(129);
    let e = reg.update(&t, &iid("oshash-1"), &set(None, Some(&long_value)), false);
    assert!(matches!(e, Err(Error::BadRequest(_))), "{e:?}");
    assert_eq!(listed(reg), vec![(None, None)]);
}

fn create_ownership(reg: &dyn Registry) {
    let a = tenant("own-a");
    let owner = |p: ImagePatch, ctx: &Context| create(reg, ctx, p).owner;
    let with_owner = |id: &str, o: Option<&str>| ImagePatch {
        owner: Some(o.map(str::to_string)),
        ..patch(id, "own")
    };
    assert_eq!(
        owner(with_owner("own-1", Some("someone")), &a).as_deref(),
        Some("own-a"),
        "non-admin owner ignored"
    );
    assert_eq!(
        owner(with_owner("own-2", Some("someone")), &admin_of("own-x")).as_deref(),
        Some("someone")
    );
    assert_eq!(
        owner(with_owner("own-3", Some("")), &admin_of("own-x")),
        None
    );
    assert_eq!(owner(with_owner("own-4", None), &admin_of("own-x")), None);
    assert_eq!(
        owner(patch("own-5", "own"), &admin_of("own-x")).as_deref(),
        Some("own-x")
    );
    assert_eq!(owner(patch("own-6", "own"), &admin()), None);
}

fn update_ownership(reg: &dyn Registry) {
    let a = tenant("uown-a");
    create(reg, &a, patch("uown-1", "uown"));
    let to = |o: Option<&str>| ImagePatch {
        owner: Some(o.map(str::to_string)),
        ..ImagePatch::default()
    };
    let up = reg.update(&a, &iid("uown-1"), &to(Some("uown-b")), false);
    assert_eq!(up.ok().and_then(|i| i.owner).as_deref(), Some("uown-a"));
    let up = reg.update(&admin(), &iid("uown-1"), &to(Some("uown-b")), false);
    assert_eq!(up.ok().and_then(|i| i.owner).as_deref(), Some("uown-b"));
    assert_not_found(
        reg.update(&a, &iid("uown-1"), &ImagePatch::default(), false),
        "former owner",
    );
    let up = reg.update(&admin(), &iid("uown-1"), &to(Some("")), false);
    assert_eq!(up.ok().map(|i| i.owner), Some(None));
    // Null-owner images are visible to tenants but not mutable by them.
    assert!(reg.get(&a, &iid("uown-1")).is_ok());
    assert_not_found(reg.delete(&a, &iid("uown-1")), "null-owner image");
}

fn diablo_paging(reg: &dyn Registry) {
    let t = tenant("pg");
    for i in 1..=3 {
        create(reg, &t, patch(&format!("pg-{i}"), "pg"));
        tick();
    }
    let l = |s: &str| ids(&list(reg, &t, &format!("property-section=pg&{s}")));
    assert_eq!(l(""), strings(&["pg-3", "pg-2", "pg-1"]));
    assert_eq!(l("limit=2"), strings(&["pg-3", "pg-2"]));
    assert_eq!(l("marker=pg-3"), strings(&["pg-2", "pg-1"]));
    assert_eq!(l("limit=1&marker=pg-2"), strings(&["pg-1"]));
    assert_eq!(l("marker=pg-1"), Vec::<String>::new());
    assert_eq!(l("limit=0"), Vec::<String>::new());
    assert_eq!(l("sort_dir=asc"), strings(&["pg-1", "pg-2", "pg-3"]));
    assert_eq!(l("sort_dir=asc&marker=pg-1"), strings(&["pg-2", "pg-3"]));
    assert_eq!(
        l("sort_key=id&sort_dir=desc&limit=2&marker=pg-3"),
        strings(&["pg-2", "pg-1"])
    );
}

fn diablo_sorting(reg: &dyn Registry) {
    let t = tenant("srt");
    for (i, name) in ["Image1", "ASDF", "XYZ"].iter().enumerate() {
        let mut p = patch(&format!("srt-n{i}"), "srt-names");
        p.name = Some(Some(name.to_string()));
        create(reg, &t, p);
    }
    let names: Vec<String> = list(
        reg,
        &t,
        "property-section=srt-names&sort_key=name&sort_dir=asc",
    )
    .into_iter()
    .filter_map(|i| i.name)
    .collect();
    assert_eq!(names, strings(&["ASDF", "Image1", "XYZ"]));

    let mut id19 = String::new();
    for (i, size) in [19u64, 2, 5].iter().enumerate() {
        let mut p = patch(&format!("srt-s{i}"), "srt-sizes");
        p.size = Some(*size);
        let img = create(reg, &t, p);
        if *size == 19 {
            id19 = img.id;
        }
    }
    let sizes: Vec<u64> = list(
        reg,
        &t,
        &format!("property-section=srt-sizes&sort_key=size&sort_dir=desc&marker={id19}"),
    )
    .iter()
    .map(|i| i.size)
    .collect();
    assert_eq!(sizes, vec![5, 2]);
    let sizes: Vec<u64> = list(
        reg,
        &t,
        "property-section=srt-sizes&sort_key=size&sort_dir=asc",
    )
    .iter()
    .map(|i| i.size)
    .collect();
    assert_eq!(sizes, vec![2, 5, 19]);
}

/// Pages through a listing two at a time with markers; returns every id seen, in order.
fn page_all(reg: &dyn Registry, ctx: &Context, base: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..100 {
        let s = match &marker {
            Some(m) => format!("{base}&limit=2&marker={m}"),
            None => format!("{base}&limit=2"),
        };
        let page = ids(&list(reg, ctx, &s));
        match page.last() {
            Some(last) => marker = Some(last.clone()),
            None => return seen,
        }
        seen.extend(page);
    }
    panic!("paging did not end: {seen:?}");
}

fn null_sort_values_page_cleanly(reg: &dyn Registry) {
    let t = tenant("nul");
    let names = [None, Some("b"), None, Some("a"), None, Some(""), None];
    for (i, name) in names.iter().enumerate() {
        let mut p = patch(&format!("nul-{i}"), "nul");
        p.name = Some(name.map(str::to_string));
        create(reg, &t, p);
    }
    // Some images updated (updated_at set), the rest keep updated_at NULL.
    for i in [1, 4] {
        reg.update(&t, &iid(&format!("nul-{i}")), &ImagePatch::default(), false)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for key in [
        "name",
        "updated_at",
        "disk_format",
        "size",
        "created_at",
        "id",
    ] {
        for dir in ["asc", "desc"] {
            let base = format!("property-section=nul&sort_key={key}&sort_dir={dir}");
            let full = ids(&list(reg, &t, &base));
            assert_eq!(full.len(), names.len(), "{base}");
            let paged = page_all(reg, &t, &base);
            assert_eq!(paged, full, "{base}: paging must neither skip nor repeat");
        }
    }
    // NULL names sort as the empty string, before every other name, ties broken by id.
    let asc = ids(&list(
        reg,
        &t,
        "property-section=nul&sort_key=name&sort_dir=asc",
    ));
    assert_eq!(
        asc,
        strings(&[
            "nul-0", "nul-2", "nul-4", "nul-5", "nul-6", "nul-3", "nul-1"
        ])
    );
}

fn filters(reg: &dyn Registry) {
    let t = tenant("flt");
    let mut p = patch("flt-1", "flt");
    p.name = Some(Some("Alpha".into()));
    p.disk_format = Some(Some("raw".into()));
    p.container_format = Some(Some("bare".into()));
    p.size = Some(100);
    p.min_ram = Some(512);
    p.properties = Some(props(&[("section", "flt"), ("os", "linux")]));
    create(reg, &t, p);
    let mut p = patch("flt-2", "flt");
    p.name = Some(Some("alpha".into()));
    p.disk_format = Some(Some("qcow2".into()));
    p.size = Some(200);
    p.properties = Some(props(&[("section", "flt"), ("os", "windows")]));
    create(reg, &t, p);
    let mut p = patch("flt-3", "flt");
    p.size = Some(300);
    p.min_disk = Some(10);
    p.status = Some(Status::Queued);
    create(reg, &t, p);

    let l = |s: &str| sorted(ids(&list(reg, &t, &format!("property-section=flt&{s}"))));
    assert_eq!(l(""), strings(&["flt-1", "flt-2", "flt-3"]));
    assert_eq!(l("name=Alpha"), strings(&["flt-1"]), "case-sensitive");
    assert_eq!(l("name="), Vec::<String>::new(), "empty name is not NULL");
    assert_eq!(l("disk_format=qcow2"), strings(&["flt-2"]));
    assert_eq!(l("container_format=bare"), strings(&["flt-1"]));
    assert_eq!(l("status=queued"), strings(&["flt-3"]));
    assert_eq!(l("min_ram=512"), strings(&["flt-1"]));
    assert_eq!(l("min_disk=10"), strings(&["flt-3"]));
    assert_eq!(l("size_min=150"), strings(&["flt-2", "flt-3"]));
    assert_eq!(l("size_max=150"), strings(&["flt-1"]));
    assert_eq!(l("size_min=150&size_max=250"), strings(&["flt-2"]));
    assert_eq!(l("size_min=100&size_max=100"), strings(&["flt-1"]));
    assert_eq!(l("property-os=linux"), strings(&["flt-1"]));
    assert_eq!(l("property-os=linux&name=alpha"), Vec::<String>::new());
    assert_eq!(l("property-os=mac"), Vec::<String>::new());

    // A removed property no longer matches (DECISIONS: Diablo bug fixed).
    reg.update(&t, &iid("flt-1"), &patch("flt-1", "flt"), true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l("property-os=linux"), Vec::<String>::new());
    let p = ImagePatch {
        properties: Some(props(&[("os", "linux")])),
        ..ImagePatch::default()
    };
    reg.update(&t, &iid("flt-1"), &p, false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l("property-os=linux"), strings(&["flt-1"]));
}

fn killed_and_deleted(reg: &dyn Registry) {
    let t = tenant("kd");
    create(reg, &t, patch("kd-1", "kd"));
    create(reg, &t, patch("kd-2", "kd"));
    create(reg, &t, patch("kd-3", "kd"));
    let p = ImagePatch {
        status: Some(Status::Killed),
        ..ImagePatch::default()
    };
    reg.update(&t, &iid("kd-2"), &p, false)
        .unwrap_or_else(|e| panic!("{e}"));
    reg.delete(&t, &iid("kd-3"))
        .unwrap_or_else(|e| panic!("{e}"));
    let l =
        |ctx: &Context, s: &str| sorted(ids(&list(reg, ctx, &format!("property-section=kd&{s}"))));
    assert_eq!(l(&t, ""), strings(&["kd-1"]));
    assert_eq!(l(&t, "status=killed"), Vec::<String>::new());
    assert_eq!(l(&admin(), "is_public=none"), strings(&["kd-1"]));
    assert_eq!(
        l(&admin(), "is_public=none&status=killed"),
        Vec::<String>::new()
    );
    assert_eq!(
        reg.get(&t, &iid("kd-2")).ok().map(|i| i.status),
        Some(Status::Killed),
        "get returns killed images"
    );
    assert_not_found(reg.get(&t, &iid("kd-3")), "deleted");
}

fn visibility(reg: &dyn Registry) {
    let va = tenant("va");
    let vb = tenant("vb");
    let mk = |id: &str, ctx: &Context, public: bool| {
        let mut p = patch(id, "vis");
        p.is_public = Some(public);
        create(reg, ctx, p);
    };
    mk("vis-pub", &va, true);
    mk("vis-priv-a", &va, false);
    mk("vis-priv-b", &vb, false);
    mk("vis-null", &admin(), false);
    mk("vis-null-pub", &admin(), true);
    mk("vis-shared", &vb, false);
    reg.add_member(&vb, &iid("vis-shared"), "va", None)
        .unwrap_or_else(|e| panic!("{e}"));

    let l =
        |ctx: &Context, s: &str| sorted(ids(&list(reg, ctx, &format!("property-section=vis&{s}"))));
    let a_sees = strings(&["vis-null-pub", "vis-priv-a", "vis-pub", "vis-shared"]);
    assert_eq!(l(&va, ""), a_sees);
    assert_eq!(l(&va, "is_public=false"), a_sees, "ignored for non-admins");
    assert_eq!(l(&va, "is_public=none"), a_sees, "ignored for non-admins");
    assert_eq!(
        l(&vb, ""),
        strings(&["vis-null-pub", "vis-priv-b", "vis-pub", "vis-shared"])
    );
    assert_eq!(l(&admin(), ""), strings(&["vis-null-pub", "vis-pub"]));
    assert_eq!(
        l(&admin_of("va"), ""),
        a_sees,
        "admin with tenant: like the tenant"
    );
    assert_eq!(
        l(&admin(), "is_public=false"),
        strings(&["vis-null", "vis-priv-a", "vis-priv-b", "vis-shared"])
    );
    assert_eq!(
        l(&admin(), "is_public=true"),
        strings(&["vis-null-pub", "vis-pub"])
    );
    assert_eq!(l(&admin(), "is_public=none").len(), 6);
    assert_eq!(l(&anonymous(), ""), strings(&["vis-null-pub", "vis-pub"]));

    // By id: owner-null images are visible to everyone, shared ones to members.
    for id in [
        "vis-pub",
        "vis-priv-a",
        "vis-null",
        "vis-null-pub",
        "vis-shared",
    ] {
        assert!(reg.get(&va, &iid(id)).is_ok(), "va sees {id}");
    }
    assert_not_found(
        reg.get(&va, &iid("vis-priv-b")),
        "other tenant's private image",
    );
    assert!(reg.get(&anonymous(), &iid("vis-null")).is_ok());
    assert_not_found(
        reg.get(&anonymous(), &iid("vis-priv-a")),
        "anonymous, private",
    );
    assert!(reg.get(&admin(), &iid("vis-priv-b")).is_ok());

    // Owner-id mode user: the membership is keyed by the owner id.
    let user_mode = Context::for_identity(
        None,
        Some("va".into()),
        Some("other".into()),
        vec![],
        &AuthOptions {
            owner_is_tenant: false,
            ..AuthOptions::default()
        },
    );
    assert!(reg.get(&user_mode, &iid("vis-shared")).is_ok());

    // A membership removed: no longer visible.
    reg.delete_member(&vb, &iid("vis-shared"), "va")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_not_found(reg.get(&va, &iid("vis-shared")), "membership removed");
    assert!(!l(&va, "").contains(&"vis-shared".to_string()));
}

fn markers(reg: &dyn Registry) {
    let t = tenant("mk");
    create(reg, &t, patch("mk-1", "mk"));
    create(reg, &tenant("mk-other"), patch("mk-hidden", "mk"));
    create(reg, &t, patch("mk-gone", "mk"));
    reg.delete(&t, &iid("mk-gone"))
        .unwrap_or_else(|e| panic!("{e}"));
    for marker in ["mk-hidden", "mk-gone", "mk-never"] {
        let q = query(&t, &format!("marker={marker}"));
        match reg.list(&t, &q) {
            Err(Error::BadRequest(m)) => {
                assert_eq!(m, "Invalid marker. Image could not be found.", "{marker}")
            }
            other => panic!("marker {marker}: expected 400, got {other:?}"),
        }
    }
    // The admin sees the hidden one, so it is a valid marker for it.
    assert!(
        reg.list(&admin(), &query(&admin(), "marker=mk-hidden"))
            .is_ok()
    );
    // A visible marker outside the filtered set still positions the page.
    assert!(reg.list(&t, &query(&t, "marker=mk-1&name=nothing")).is_ok());
}

fn members(reg: &dyn Registry) {
    let ma = tenant("ma");
    let mb = tenant("mb");
    let mc = tenant("mc");
    let stranger = tenant("mz");
    create(reg, &ma, patch("mem-1", "mem"));
    let members_of = |ctx: &Context| -> Vec<(String, bool)> {
        reg.members(ctx, &iid("mem-1"))
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|m| (m.member_id, m.can_share))
            .collect()
    };
    let m = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
        v.iter().map(|(s, b)| (s.to_string(), *b)).collect()
    };
    assert_eq!(members_of(&ma), m(&[]));
    assert_not_found(
        reg.members(&stranger, &iid("mem-1")),
        "members of invisible image",
    );
    assert_not_found(
        reg.members(&ma, &iid("mem-missing")),
        "members of unknown image",
    );

    let ok = |r: crate::error::Result<()>| r.unwrap_or_else(|e| panic!("{e}"));
    ok(reg.add_member(&ma, &iid("mem-1"), "mb", None));
    assert_eq!(members_of(&ma), m(&[("mb", false)]));
    ok(reg.add_member(&ma, &iid("mem-1"), "mb", Some(true)));
    assert_eq!(members_of(&ma), m(&[("mb", true)]));
    ok(reg.add_member(&ma, &iid("mem-1"), "mb", None));
    assert_eq!(members_of(&ma), m(&[("mb", true)]), "None keeps can_share");

    // A member with can_share may share further; one without may not (403).
    assert_eq!(members_of(&mb), m(&[("mb", true)]));
    ok(reg.add_member(&mb, &iid("mem-1"), "mc", Some(false)));
    assert!(matches!(
        reg.add_member(&mc, &iid("mem-1"), "md", None),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        reg.delete_member(&mc, &iid("mem-1"), "mb"),
        Err(Error::Forbidden(_))
    ));
    assert_not_found(
        reg.add_member(&stranger, &iid("mem-1"), "mz", None),
        "invisible",
    );
    assert!(matches!(
        reg.add_member(&admin(), &iid("mem-1"), "x", None),
        Err(Error::Unauthorized(m)) if m == "No authenticated user"
    ));
    assert!(matches!(
        reg.replace_members(&admin(), &iid("mem-1"), &[]),
        Err(Error::Unauthorized(_))
    ));
    assert!(matches!(
        reg.add_member(&anonymous(), &iid("mem-1"), "x", None),
        Err(Error::Forbidden(_))
    ));
    ok(reg.add_member(&admin_of("adm"), &iid("mem-1"), "me", Some(true)));
    assert_not_found(
        reg.add_member(&ma, &iid("mem-missing"), "mb", None),
        "unknown image",
    );

    // Delete (no error for non-members) and revive.
    ok(reg.delete_member(&ma, &iid("mem-1"), "me"));
    ok(reg.delete_member(&ma, &iid("mem-1"), "nobody"));
    assert_eq!(members_of(&ma), m(&[("mb", true), ("mc", false)]));
    ok(reg.add_member(&ma, &iid("mem-1"), "me", None));
    assert_eq!(
        members_of(&ma),
        m(&[("mb", true), ("mc", false), ("me", true)]),
        "revived without a body, flag kept"
    );

    // Shared images: listed for the member itself and admins; hidden (404) from others.
    for who in [&mb, &admin(), &admin_of("adm")] {
        let shared = reg
            .shared_images(who, "mb")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            shared
                .iter()
                .map(|s| (s.image_id.as_str(), s.can_share))
                .collect::<Vec<_>>(),
            vec![("mem-1", true)]
        );
    }
    assert_not_found(
        reg.shared_images(&stranger, "mb"),
        "another tenant's shares",
    );
    assert_not_found(
        reg.shared_images(&ma, "mb"),
        "the owner asking for a member",
    );
    assert_not_found(reg.shared_images(&anonymous(), "mb"), "anonymous");

    // Replace: unlisted removed, listed kept (flag unless given), new ones added.
    let spec = |id: &str, cs: Option<bool>| MemberSpec {
        member_id: id.into(),
        can_share: cs,
    };
    ok(reg.replace_members(
        &ma,
        &iid("mem-1"),
        &[spec("mb", None), spec("mc", Some(true)), spec("mf", None)],
    ));
    assert_eq!(
        members_of(&ma),
        m(&[("mb", true), ("mc", true), ("mf", false)])
    );
    ok(reg.replace_members(&ma, &iid("mem-1"), &[spec("me", None)]));
    assert_eq!(
        members_of(&ma),
        m(&[("me", true)]),
        "revived with its old flag"
    );
    assert_not_found(reg.members(&mb, &iid("mem-1")), "no longer a member");
    assert!(reg.shared_images(&mb, "mb").is_ok_and(|v| v.is_empty()));
    ok(reg.replace_members(&ma, &iid("mem-1"), &[]));
    assert_eq!(members_of(&ma), m(&[]));

    // Deleting the image removes its memberships.
    ok(reg.add_member(&ma, &iid("mem-1"), "mb", None));
    reg.delete(&ma, &iid("mem-1"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(reg.shared_images(&mb, "mb").is_ok_and(|v| v.is_empty()));
    assert_not_found(reg.members(&ma, &iid("mem-1")), "deleted image");
    assert_not_found(
        reg.add_member(&ma, &iid("mem-1"), "mb", None),
        "deleted image",
    );
}

fn duplicates(reg: &dyn Registry) {
    let t = tenant("dup");
    create(reg, &t, patch("dup-1", "dup"));
    for when in ["live", "deleted"] {
        match reg.create(&t, &patch("dup-1", "dup")) {
            Err(Error::Duplicate(m)) => {
                assert_eq!(m, "An image with identifier dup-1 already exists", "{when}")
            }
            other => panic!("{when}: expected Duplicate, got {other:?}"),
        }
        if when == "live" {
            reg.delete(&t, &iid("dup-1"))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // Ids are global: another tenant gets the same 409.
    assert!(matches!(
        reg.create(&tenant("dup-other"), &patch("dup-1", "dup")),
        Err(Error::Duplicate(_))
    ));
}

fn failed_create_leaves_nothing(reg: &dyn Registry) {
    let t = tenant("bad");
    let mut p = patch("bad-1", "bad");
    p.disk_format = Some(Some("ami".into()));
    p.container_format = Some(Some("bare".into()));
    assert!(matches!(reg.create(&t, &p), Err(Error::BadRequest(_))));
    assert_not_found(reg.get(&admin(), &iid("bad-1")), "rejected create");
    assert!(list(reg, &admin(), "is_public=none&property-section=bad").is_empty());
    let mut p = patch("bad-1", "bad");
    p.disk_format = Some(Some("iso".into()));
    assert_eq!(create(reg, &t, p).disk_format.as_deref(), Some("iso"));
    let mut p = patch("bad-2", "bad");
    p.properties = Some(props(&[("", "empty name")]));
    assert!(matches!(reg.create(&t, &p), Err(Error::BadRequest(_))));
    assert_not_found(reg.get(&admin(), &iid("bad-2")), "rejected create");
}

/// `update_if` is a compare-and-set: of racing claims of a queued image exactly one wins,
/// and a stale holder cannot kill or activate an image another request moved on.
fn upload_states_are_compare_and_set(reg: &dyn Registry) {
    let t = tenant("cas");
    let mut p = patch("cas-1", "cas");
    p.status = Some(Status::Queued);
    create(reg, &t, p);
    let to = |status| ImagePatch {
        status: Some(status),
        ..ImagePatch::default()
    };
    let wins = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (t, claim) = (&t, to(Status::Saving));
                scope.spawn(move || reg.update_if(t, &iid("cas-1"), Status::Queued, &claim, false))
            })
            .collect();
        racers
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("racer panicked")))
            .filter(|r| match r {
                Ok(img) => img.status == Status::Saving,
                Err(Error::Conflict(_)) => false,
                Err(e) => panic!("claim: {e}"),
            })
            .count()
    });
    assert_eq!(wins, 1, "exactly one claim of a queued image wins");
    // A stale request that thinks the image is still queued changes nothing.
    let mut stale = to(Status::Active);
    stale.name = Some(Some("stale".into()));
    assert!(matches!(
        reg.update_if(&t, &iid("cas-1"), Status::Queued, &stale, false),
        Err(Error::Conflict(_))
    ));
    let img = reg.get(&t, &iid("cas-1")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(img.status, Status::Saving);
    assert_ne!(img.name.as_deref(), Some("stale"));
    // The holder activates; a kill meant for `saving` then no longer applies.
    reg.update_if(
        &t,
        &iid("cas-1"),
        Status::Saving,
        &to(Status::Active),
        false,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        reg.update_if(
            &t,
            &iid("cas-1"),
            Status::Saving,
            &to(Status::Killed),
            false
        ),
        Err(Error::Conflict(_))
    ));
    let img = reg.get(&t, &iid("cas-1")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(img.status, Status::Active);
    // Others' images are still hidden behind 404, not revealed by a 409.
    assert_not_found(
        reg.update_if(
            &tenant("cas-other"),
            &iid("cas-1"),
            Status::Queued,
            &to(Status::Saving),
            false,
        ),
        "another tenant's claim",
    );
}

fn changes_since(reg: &dyn Registry) {
    let t = tenant("cs");
    let mk = |id: &str| {
        let mut p = patch(id, "cs");
        p.name = Some(Some("cs-image".into()));
        create(reg, &t, p);
    };
    mk("cs-old");
    tick();
    let t0 = crate::timeutil::now();
    tick();
    mk("cs-new");
    mk("cs-gone");
    reg.delete(&t, &iid("cs-gone"))
        .unwrap_or_else(|e| panic!("{e}"));
    let q = |s: &str| format!("name=cs-image&{s}");
    assert_eq!(
        sorted(ids(&list(reg, &t, &q("")))),
        strings(&["cs-new", "cs-old"])
    );
    let changed = list(reg, &t, &q(&format!("changes-since={t0}")));
    assert_eq!(sorted(ids(&changed)), strings(&["cs-gone", "cs-new"]));
    assert!(changed.iter().any(|i| i.id == "cs-gone" && i.deleted));
    // Updating the old one brings it in.
    reg.update(&t, &iid("cs-old"), &ImagePatch::default(), false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(list(reg, &t, &q(&format!("changes-since={t0}"))).len(), 3);
    assert!(list(reg, &t, &q("changes-since=2999-01-01T00:00:00")).is_empty());
}

fn read_only(reg: &dyn Registry) {
    let ro = anonymous();
    assert!(matches!(
        reg.create(&ro, &patch("ro-1", "ro")),
        Err(Error::Forbidden(_))
    ));
    create(reg, &admin(), patch("ro-2", "ro"));
    assert!(reg.get(&ro, &iid("ro-2")).is_ok());
    assert!(matches!(
        reg.update(&ro, &iid("ro-2"), &ImagePatch::default(), false),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        reg.delete(&ro, &iid("ro-2")),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        reg.replace_members(&ro, &iid("ro-2"), &[]),
        Err(Error::Forbidden(_))
    ));
}

/// Property and member limits with the default quotas (128 each): names ≤ 255 bytes, values
/// ≤ 64 KiB (400 naming the property); counts past a quota are 413 naming the option,
/// counted after a merge; an image already at the quota can still be updated.
fn limits(reg: &dyn Registry) {
    let t = tenant("lim");
    let many = |n: usize, prefix: &str| -> Properties {
        (0..n)
            .map(|i| (format!("{prefix}{i}"), Some("v".to_string())))
            .collect()
    };
    let mut p = patch("lim-1", "lim");
    p.properties = Some(many(129, "p"));
    match reg.create(&t, &p) {
        Err(Error::TooLarge(m)) => assert_eq!(
            m,
            "Too many image properties: 129 given, image_property_quota is 128"
        ),
        other => panic!("129 properties: {other:?}"),
    }
    assert_not_found(reg.get(&admin(), &iid("lim-1")), "refused create");
    p.properties = Some(many(128, "p"));
    let img = create(reg, &t, p);
    assert_eq!(img.properties.len(), 128);
    // A merge may not grow past the quota; replacing or not touching properties may.
    let grow = ImagePatch {
        properties: Some(many(1, "extra")),
        ..ImagePatch::default()
    };
    assert!(matches!(
        reg.update(&t, &iid("lim-1"), &grow, false),
        Err(Error::TooLarge(_))
    ));
    let rename = ImagePatch {
        name: Some(Some("renamed".into())),
        ..ImagePatch::default()
    };
    assert!(reg.update(&t, &iid("lim-1"), &rename, false).is_ok());
    let same = ImagePatch {
        properties: Some(many(2, "p")),
        ..ImagePatch::default()
    };
    assert!(
        reg.update(&t, &iid("lim-1"), &same, false).is_ok(),
        "overwrites"
    );
    assert!(
        reg.update(&t, &iid("lim-1"), &grow, true).is_ok(),
        "purge to one"
    );

    // Sizes of names and values.
    let one = |k: String, v: String| ImagePatch {
        properties: Some([(k, Some(v))].into()),
        ..ImagePatch::default()
    };
    let long_key = "k".repeat(256);
    assert!(matches!(
        reg.update(&t, &iid("lim-1"), &one(long_key, "v".into()), false),
        Err(Error::BadRequest(_))
    ));
    // 255 bytes is the limit, not 255 characters.
    assert!(matches!(
        reg.update(&t, &iid("lim-1"), &one("é".repeat(128), "v".into()), false),
        Err(Error::BadRequest(_))
    ));
    assert!(
        reg.update(
            &t,
            &iid("lim-1"),
            &one("k".repeat(255), "v".repeat(65536)),
            false
        )
        .is_ok()
    );
    match reg.update(
        &t,
        &iid("lim-1"),
        &one("big".into(), "v".repeat(65537)),
        false,
    ) {
        Err(Error::BadRequest(m)) => assert!(m.contains("'big'") && m.contains("65536"), "{m}"),
        other => panic!("65537-byte value: {other:?}"),
    }

    // Members: add and replace.
    let specs: Vec<MemberSpec> = (0..129)
        .map(|i| MemberSpec {
            member_id: format!("m{i}"),
            can_share: None,
        })
        .collect();
    match reg.replace_members(&t, &iid("lim-1"), &specs) {
        Err(Error::TooLarge(m)) => assert_eq!(
            m,
            "Too many image members: 129 given, image_member_quota is 128"
        ),
        other => panic!("129 members: {other:?}"),
    }
    assert!(
        reg.members(&t, &iid("lim-1")).is_ok_and(|m| m.is_empty()),
        "nothing kept"
    );
    reg.replace_members(&t, &iid("lim-1"), &specs[..128])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        reg.add_member(&t, &iid("lim-1"), "m128", None),
        Err(Error::TooLarge(_))
    ));
    // Re-adding an existing member does not count twice.
    assert!(reg.add_member(&t, &iid("lim-1"), "m5", Some(true)).is_ok());
    assert_eq!(
        reg.members(&t, &iid("lim-1")).map(|m| m.len()).ok(),
        Some(128)
    );
}

/// A non-admin caller without an owner id (no project) cannot create images; an admin can.
fn creating_needs_a_project(reg: &dyn Registry) {
    let unscoped = Context::for_identity(
        Some("token".into()),
        Some("user-x".into()),
        None,
        vec!["member".into()],
        &AuthOptions::default(),
    );
    match reg.create(&unscoped, &patch("np-1", "np")) {
        Err(Error::Forbidden(m)) => assert!(m.contains("project-scoped token"), "{m}"),
        other => panic!("create without a project: {other:?}"),
    }
    assert_not_found(reg.get(&admin(), &iid("np-1")), "refused create");
    assert!(reg.create(&admin(), &patch("np-2", "np")).is_ok());
}
