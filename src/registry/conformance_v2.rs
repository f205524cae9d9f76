//! The conformance run of what the images API v2 needs from a [`Registry`]: visibility,
//! `protected`, `os_hidden`, tags, member status and the v2 listing query. Shared by the
//! SQLite registry and the remote registry client, like [`super::conformance`].

use super::conformance::{admin, iid, tenant};
use super::{ListQuery, MemberStatus, PageLimits, Registry};
use crate::auth::Context;
use crate::error::Error;
use crate::image::{Image, ImagePatch, Properties, Visibility};

fn section(s: &str) -> Properties {
    [("section".to_string(), Some(s.to_string()))]
        .into_iter()
        .collect()
}

fn make(reg: &dyn Registry, ctx: &Context, id: &str, sect: &str, p: ImagePatch) -> Image {
    let p = ImagePatch {
        id: Some(id.into()),
        properties: Some(section(sect)),
        ..p
    };
    reg.create(ctx, &p)
        .unwrap_or_else(|e| panic!("create {id}: {e}"))
}

fn v2_ids(reg: &dyn Registry, ctx: &Context, q: &str) -> Vec<String> {
    let pairs = crate::http::parse_query(q);
    let query = ListQuery::parse_v2(&pairs, PageLimits::default())
        .unwrap_or_else(|e| panic!("query {q}: {e}"));
    let mut ids: Vec<String> = reg
        .list(ctx, &query)
        .unwrap_or_else(|e| panic!("list {q}: {e}"))
        .into_iter()
        .map(|i| i.id)
        .collect();
    if !q.contains("sort") {
        ids.sort();
    }
    ids
}

/// Runs every v2 section; expects no images with the sections' ids yet.
pub(crate) fn exercise_v2(reg: &dyn Registry) {
    fields_round_trip(reg);
    v1_visibility_maps_to_v2(reg);
    member_status(reg);
    listing_scope(reg);
    listing_filters_and_sorting(reg);
}

fn fields_round_trip(reg: &dyn Registry) {
    let a = tenant("v2-a");
    let img = make(
        reg,
        &a,
        "v2-fields",
        "v2-fields",
        ImagePatch {
            visibility: Some(Visibility::Community),
            protected: Some(true),
            os_hidden: Some(true),
            tags: Some(vec!["b".into(), "a".into(), "a".into()]),
            ..ImagePatch::default()
        },
    );
    assert_eq!(img.visibility, Visibility::Community);
    assert!(img.protected && img.os_hidden);
    assert_eq!(img.tags, vec!["a".to_string(), "b".to_string()]);
    let got = reg
        .get(&a, &iid("v2-fields"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, img);
    // Protected: no delete, by anyone.
    for ctx in [&a, &admin()] {
        let e = reg.delete(ctx, &iid("v2-fields")).err();
        assert!(matches!(e, Some(Error::Forbidden(_))), "{e:?}");
    }
    let tags = ImagePatch {
        tags: Some(vec!["c".into()]),
        protected: Some(false),
        ..ImagePatch::default()
    };
    let img = reg.update(&a, &iid("v2-fields"), &tags, false);
    let img = img.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(img.tags, vec!["c".to_string()]);
    // Properties are untouched by a tag change.
    assert_eq!(img.properties, section("v2-fields"));
    // A community image is visible to every tenant by id.
    assert!(reg.get(&tenant("v2-z"), &iid("v2-fields")).is_ok());
    assert!(reg.delete(&a, &iid("v2-fields")).is_ok());
    // Bad tags are refused; no half-written image is left.
    let bad = ImagePatch {
        tags: Some(vec![String::new()]),
        ..ImagePatch::default()
    };
    let e = reg.create(
        &a,
        &ImagePatch {
            id: Some("v2-bad-tag".into()),
            ..bad
        },
    );
    assert!(matches!(e, Err(Error::BadRequest(_))), "{e:?}");
    assert!(reg.get(&admin(), &iid("v2-bad-tag")).is_err());
}

fn v1_visibility_maps_to_v2(reg: &dyn Registry) {
    let a = tenant("v2-b");
    let img = make(
        reg,
        &a,
        "v2-v1pub",
        "v2-v1",
        ImagePatch {
            is_public: Some(true),
            ..ImagePatch::default()
        },
    );
    assert_eq!(img.visibility, Visibility::Public);
    assert!(img.is_public());
    // A v1 client shares it, then un-publishes it: it becomes shared, not private.
    reg.add_member(&a, &iid("v2-v1pub"), "v2-m", None)
        .unwrap_or_else(|e| panic!("{e}"));
    let unpub = ImagePatch {
        is_public: Some(false),
        ..ImagePatch::default()
    };
    let img = reg.update(&a, &iid("v2-v1pub"), &unpub, false);
    assert_eq!(img.map(|i| i.visibility).ok(), Some(Visibility::Shared));
    // Sharing a private image (v1 knows no visibility) makes it shared.
    let img = make(reg, &a, "v2-v1priv", "v2-v1", ImagePatch::default());
    assert_eq!(img.visibility, Visibility::Private);
    assert!(reg.get(&tenant("v2-m"), &iid("v2-v1priv")).is_err());
    reg.add_member(&a, &iid("v2-v1priv"), "v2-m", None)
        .unwrap_or_else(|e| panic!("{e}"));
    let img = reg.get(&tenant("v2-m"), &iid("v2-v1priv"));
    assert_eq!(img.map(|i| i.visibility).ok(), Some(Visibility::Shared));
    // A v2 client making it private again hides it from the member.
    let private = ImagePatch {
        visibility: Some(Visibility::Private),
        ..ImagePatch::default()
    };
    assert!(reg.update(&a, &iid("v2-v1priv"), &private, false).is_ok());
    assert!(reg.get(&tenant("v2-m"), &iid("v2-v1priv")).is_err());
}

fn member_status(reg: &dyn Registry) {
    let a = tenant("v2-c");
    let shared = ImagePatch {
        visibility: Some(Visibility::Shared),
        ..ImagePatch::default()
    };
    make(reg, &a, "v2-ms", "v2-ms", shared);
    reg.add_member(&a, &iid("v2-ms"), "v2-cm", None)
        .unwrap_or_else(|e| panic!("{e}"));
    let members = reg.members(&a, &iid("v2-ms")).unwrap_or_default();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].status, MemberStatus::Pending);
    assert!(!members[0].created_at.is_empty());
    // Only the member itself (or an admin) sets its status.
    let e = reg.set_member_status(&a, &iid("v2-ms"), "v2-cm", MemberStatus::Accepted);
    assert!(matches!(e, Err(Error::Forbidden(_))), "{e:?}");
    let m = tenant("v2-cm");
    let got = reg.set_member_status(&m, &iid("v2-ms"), "v2-cm", MemberStatus::Accepted);
    assert_eq!(got.map(|m| m.status).ok(), Some(MemberStatus::Accepted));
    let e = reg.set_member_status(
        &tenant("v2-x"),
        &iid("v2-ms"),
        "v2-x",
        MemberStatus::Accepted,
    );
    assert!(matches!(e, Err(Error::NotFound(_))), "{e:?}");
    // Adding again keeps the status; removing and adding starts over.
    reg.add_member(&a, &iid("v2-ms"), "v2-cm", Some(true))
        .unwrap_or_else(|e| panic!("{e}"));
    let status = |reg: &dyn Registry| reg.members(&a, &iid("v2-ms")).unwrap_or_default()[0].status;
    assert_eq!(status(reg), MemberStatus::Accepted);
    reg.delete_member(&a, &iid("v2-ms"), "v2-cm")
        .unwrap_or_else(|e| panic!("{e}"));
    reg.add_member(&a, &iid("v2-ms"), "v2-cm", None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status(reg), MemberStatus::Pending);
}

fn listing_scope(reg: &dyn Registry) {
    let a = tenant("v2-d");
    let b = tenant("v2-e");
    let vis = |v: Visibility| ImagePatch {
        visibility: Some(v),
        ..ImagePatch::default()
    };
    make(reg, &a, "v2-s-pub", "v2-s", vis(Visibility::Public));
    make(reg, &a, "v2-s-priv", "v2-s", vis(Visibility::Private));
    make(reg, &a, "v2-s-shr", "v2-s", vis(Visibility::Shared));
    make(reg, &a, "v2-s-com", "v2-s", vis(Visibility::Community));
    let hidden = ImagePatch {
        os_hidden: Some(true),
        ..vis(Visibility::Public)
    };
    make(reg, &a, "v2-s-hid", "v2-s", hidden);
    make(reg, &b, "v2-s-bown", "v2-s", vis(Visibility::Private));
    reg.add_member(&a, &iid("v2-s-shr"), "v2-e", None)
        .unwrap_or_else(|e| panic!("{e}"));
    let s = |ids: &[&str]| ids.iter().map(|i| format!("v2-s-{i}")).collect::<Vec<_>>();

    assert_eq!(v2_ids(reg, &b, "section=v2-s"), s(&["bown", "pub"]));
    assert_eq!(
        v2_ids(reg, &b, "section=v2-s&member_status=pending"),
        s(&["bown", "pub", "shr"])
    );
    reg.set_member_status(&b, &iid("v2-s-shr"), "v2-e", MemberStatus::Accepted)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v2_ids(reg, &b, "section=v2-s"), s(&["bown", "pub", "shr"]));
    assert_eq!(
        v2_ids(reg, &b, "section=v2-s&visibility=community"),
        s(&["com"])
    );
    assert_eq!(
        v2_ids(reg, &b, "section=v2-s&visibility=all"),
        s(&["bown", "com", "pub", "shr"])
    );
    assert_eq!(
        v2_ids(reg, &b, "section=v2-s&visibility=shared"),
        s(&["shr"])
    );
    assert_eq!(
        v2_ids(reg, &b, "section=v2-s&visibility=private"),
        s(&["bown"])
    );
    assert_eq!(v2_ids(reg, &b, "section=v2-s&os_hidden=true"), s(&["hid"]));
    // The owner lists its own, whatever their visibility (community included).
    assert_eq!(
        v2_ids(reg, &a, "section=v2-s"),
        s(&["com", "priv", "pub", "shr"])
    );
    // An admin lists everything.
    assert_eq!(
        v2_ids(reg, &admin(), "section=v2-s"),
        s(&["bown", "com", "priv", "pub", "shr"])
    );
    // v1 listings: shared images of any member status, no community of others.
    let v1 = ListQuery::parse(
        &crate::http::parse_query("property-section=v2-s"),
        &b,
        PageLimits::default(),
    )
    .unwrap_or_default();
    let mut got: Vec<String> = reg
        .list(&b, &v1)
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.id)
        .collect();
    got.sort();
    assert_eq!(got, s(&["bown", "hid", "pub", "shr"]));
}

fn listing_filters_and_sorting(reg: &dyn Registry) {
    let a = tenant("v2-f");
    for (id, name, size, tags) in [
        ("v2-f-1", "alpha", 30, vec!["x", "y"]),
        ("v2-f-2", "beta", 10, vec!["x"]),
        ("v2-f-3", "beta", 20, vec![]),
        ("v2-f-4", "gamma,delta", 20, vec!["y"]),
    ] {
        make(
            reg,
            &a,
            id,
            "v2-f",
            ImagePatch {
                name: Some(Some(name.into())),
                size: Some(size),
                tags: Some(tags.into_iter().map(str::to_string).collect()),
                ..ImagePatch::default()
            },
        );
    }
    let q = |s: &str| v2_ids(reg, &a, &format!("section=v2-f&{s}"));
    assert_eq!(q("tag=x"), vec!["v2-f-1", "v2-f-2"]);
    assert_eq!(q("tag=x&tag=y"), vec!["v2-f-1"]);
    assert_eq!(
        q("name=in:alpha,%22gamma,delta%22"),
        vec!["v2-f-1", "v2-f-4"]
    );
    assert_eq!(q("id=in:v2-f-2,v2-f-3"), vec!["v2-f-2", "v2-f-3"]);
    assert_eq!(q("size_min=15&size_max=25"), vec!["v2-f-3", "v2-f-4"]);
    assert_eq!(
        q("created_at=lt:2000-01-01T00:00:00Z"),
        Vec::<String>::new()
    );
    assert_eq!(q("created_at=gte:2000-01-01T00:00:00Z").len(), 4);
    assert_eq!(
        q("sort=name:asc,size:desc"),
        vec!["v2-f-1", "v2-f-3", "v2-f-2", "v2-f-4"]
    );
    assert_eq!(
        q("sort_key=size&sort_key=name&sort_dir=asc&sort_dir=desc"),
        vec!["v2-f-2", "v2-f-4", "v2-f-3", "v2-f-1"]
    );
    // Paging through a two-key sort, one image at a time, sees each image once in order.
    let mut seen = Vec::new();
    let mut marker = String::new();
    loop {
        let m = if marker.is_empty() {
            String::new()
        } else {
            format!("&marker={marker}")
        };
        let page = q(&format!("sort=name:asc,size:desc&limit=1{m}"));
        match page.as_slice() {
            [id] => {
                seen.push(id.clone());
                marker = id.clone();
            }
            [] => break,
            more => panic!("page of {more:?}"),
        }
    }
    assert_eq!(seen, vec!["v2-f-1", "v2-f-3", "v2-f-2", "v2-f-4"]);
}
