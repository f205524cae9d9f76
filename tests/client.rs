//! The client library (`glance_rs::client`) against a real `glance-api` (embedded SQLite
//! registry, filesystem store): every call, and the error each failure maps to.

mod common;

use std::io::Read;

use common::Server;
use glance_rs::client::{
    Client, Error, Filters, Identity, ImageBody, ImagePatch, MemberSpec, Sort, SortDir,
};
use glance_rs::image::Status;
use md5::{Digest, Md5};

fn api() -> Server {
    common::embedded_api()
}

fn client(s: &Server) -> Client {
    Client::new("127.0.0.1", s.port())
}

fn tenant(s: &Server, t: &str) -> Client {
    client(s).with_identity(Identity {
        tenant: Some(t.into()),
        user: None,
        roles: vec!["member".into()],
    })
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn named(name: &str) -> ImagePatch {
    ImagePatch {
        name: Some(Some(name.into())),
        disk_format: Some(Some("raw".into())),
        container_format: Some(Some("bare".into())),
        is_public: Some(true),
        ..ImagePatch::default()
    }
}

fn ok<T>(r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| panic!("client call failed: {e} ({e:?})"))
}

#[test]
fn upload_download_round_trip() {
    let s = api();
    let c = client(&s);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut meta = named("sized");
    meta.properties = Some([("distro".to_string(), Some("debian".to_string()))].into());
    let img = ok(c.add_image(&meta, Some(ImageBody::from_bytes(&data))));
    assert_eq!(img.status, Status::Active);
    assert_eq!(img.size, data.len() as u64);
    assert_eq!(img.checksum.as_deref(), Some(md5_hex(&data).as_str()));
    assert_eq!(
        img.properties.get("distro"),
        Some(&Some("debian".to_string()))
    );

    // Chunked (unknown length).
    let chunked = ok(c.add_image(&named("chunked"), Some(ImageBody::chunked(&data[..]))));
    assert_eq!(chunked.size, data.len() as u64);
    assert_eq!(chunked.checksum, img.checksum);

    let (meta2, mut reader) = ok(c.get_image(&img.id));
    assert_eq!(meta2.id, img.id);
    assert_eq!(meta2.name.as_deref(), Some("sized"));
    let mut back = Vec::new();
    ok(reader.read_to_end(&mut back).map_err(Error::Io));
    assert_eq!(back, data);

    let head = ok(c.get_image_meta(&img.id));
    assert_eq!(head.size, data.len() as u64);
    assert!(head.is_public());
    assert_eq!(head.disk_format.as_deref(), Some("raw"));
    assert_eq!(
        head.properties.get("distro"),
        Some(&Some("debian".to_string()))
    );
    assert!(head.location.is_some());

    // A file: its length is sent ahead.
    let dir = common::tempdir();
    let path = dir.path().join("img");
    ok(std::fs::write(&path, &data).map_err(Error::Io));
    let file = ok(std::fs::File::open(&path).map_err(Error::Io));
    let body = ok(ImageBody::from_file(file).map_err(Error::Io));
    assert_eq!(body.size(), Some(data.len() as u64));
    let from_file = ok(c.add_image(&named("file"), Some(body)));
    assert_eq!(from_file.checksum, img.checksum);
}

#[test]
fn reserve_then_upload_and_update_properties() {
    let s = api();
    let c = client(&s);
    let mut meta = named("queued");
    meta.properties = Some(
        [
            ("a".to_string(), Some("1".to_string())),
            ("b".to_string(), Some("2".to_string())),
        ]
        .into(),
    );
    let img = ok(c.add_image(&meta, None));
    assert_eq!(img.status, Status::Queued);

    // Properties None: left alone.
    let p = ImagePatch {
        min_ram: Some(256),
        ..ImagePatch::default()
    };
    let up = ok(c.update_image(&img.id, &p, None));
    assert_eq!(up.min_ram, 256);
    assert_eq!(up.properties.len(), 2);

    // Properties Some: replaced.
    let p = ImagePatch {
        properties: Some([("c".to_string(), Some("3".to_string()))].into()),
        ..ImagePatch::default()
    };
    let up = ok(c.update_image(&img.id, &p, None));
    assert_eq!(up.properties.keys().collect::<Vec<_>>(), ["c"]);

    // Upload into the queued image.
    let up = ok(c.update_image(
        &img.id,
        &ImagePatch::default(),
        Some(ImageBody::from_bytes(b"hello")),
    ));
    assert_eq!(up.status, Status::Active);
    assert_eq!(up.size, 5);

    // A second upload: 409 → Duplicate.
    let e = c.update_image(
        &img.id,
        &ImagePatch::default(),
        Some(ImageBody::from_bytes(b"again")),
    );
    assert!(matches!(e, Err(Error::Duplicate(_))), "{e:?}");
}

#[test]
fn errors_are_typed() {
    let s = api();
    let c = client(&s);
    let e = c.get_image_meta("no-such-image").err();
    assert!(matches!(e, Some(Error::NotFound(_))), "{e:?}");
    assert!(
        c.get_image("no-such-image")
            .err()
            .is_some_and(|e| e.is_not_found())
    );
    assert!(matches!(
        c.delete_image("no-such-image"),
        Err(Error::NotFound(_))
    ));

    let mut bad = named("bad");
    bad.disk_format = Some(Some("floppy".into()));
    match c.add_image(&bad, None) {
        Err(Error::BadRequest(m)) => assert!(m.contains("Invalid disk format"), "{m}"),
        other => panic!("expected BadRequest, got {other:?}"),
    }

    let mut first = named("dup");
    first.id = Some("my-chosen-id".into());
    ok(c.add_image(&first, None));
    assert!(matches!(
        c.add_image(&first, None),
        Err(Error::Duplicate(_))
    ));

    // Member changes without a tenant: 401.
    let e = c.add_member("my-chosen-id", "t2", None);
    assert!(matches!(e, Err(Error::Unauthorized(_))), "{e:?}");

    // Nobody listening.
    let down = Client::new("127.0.0.1", 1);
    let e = down.get_images(&Filters::new(), &Sort::default(), None, None);
    assert!(e.as_ref().err().is_some_and(Error::is_connect), "{e:?}");

    // Input that cannot be sent.
    let mut p = named("x");
    p.properties = Some([("bad key".to_string(), None)].into());
    assert!(matches!(c.add_image(&p, None), Err(Error::InvalidInput(_))));
}

#[test]
fn delete_removes_the_image() {
    let s = api();
    let c = client(&s);
    let img = ok(c.add_image(&named("gone"), Some(ImageBody::from_bytes(b"xyz"))));
    ok(c.delete_image(&img.id));
    assert!(matches!(c.get_image_meta(&img.id), Err(Error::NotFound(_))));
}

#[test]
fn listing_filters_sort_and_pages() {
    let s = api();
    // Through a URL and a token (ignored by a noauth server without identity status).
    let c = ok(Client::from_url(&format!("{}/", s.base), Some("tok")));
    let mut ids = Vec::new();
    for (name, size, distro) in [
        ("Image1", 19usize, "debian"),
        ("ASDF", 2, "ubuntu"),
        ("XYZ", 5, "debian"),
    ] {
        let mut meta = named(name);
        meta.properties = Some([("distro".to_string(), Some(distro.to_string()))].into());
        let data = vec![b'x'; size];
        ids.push(ok(c.add_image(&meta, Some(ImageBody::from_bytes(&data)))).id);
    }
    let all = ok(c.get_images(&Filters::new(), &Sort::default(), None, None));
    let names: Vec<_> = all.iter().filter_map(|i| i.name.clone()).collect();
    assert_eq!(names, ["XYZ", "ASDF", "Image1"]); // newest first

    let by_name = Sort::by("name", SortDir::Asc);
    let page = ok(c.get_images(&Filters::new(), &by_name, Some(2), None));
    let names: Vec<_> = page.iter().filter_map(|i| i.name.clone()).collect();
    assert_eq!(names, ["ASDF", "Image1"]);
    let next = ok(c.get_images(&Filters::new(), &by_name, Some(2), Some(&page[1].id)));
    let names: Vec<_> = next.iter().filter_map(|i| i.name.clone()).collect();
    assert_eq!(names, ["XYZ"]);

    let debian = Filters::new().property("distro", "debian");
    let found = ok(c.get_images(&debian, &by_name, None, None));
    assert_eq!(found.len(), 2);
    let small = Filters::new().size_max(5).size_min(3);
    let found = ok(c.get_images(&small, &Sort::default(), None, None));
    assert_eq!(found.iter().map(|i| i.size).collect::<Vec<_>>(), [5]);
    let named_filter = Filters::new().name("ASDF");
    let found = ok(c.get_images_detailed(&named_filter, &Sort::default(), None, None));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, ids[1]);
    assert_eq!(
        found[0].properties.get("distro"),
        Some(&Some("ubuntu".to_string()))
    );
    assert!(found[0].location.is_none()); // the detail listing hides locations

    let e = c.get_images(
        &Filters::new(),
        &Sort::default(),
        None,
        Some("no-such-marker"),
    );
    assert!(matches!(e, Err(Error::BadRequest(_))), "{e:?}");
}

#[test]
fn members() {
    let s = api();
    let a = tenant(&s, "A");
    let b = tenant(&s, "B");
    let mut meta = named("private");
    meta.is_public = Some(false);
    let img = ok(a.add_image(&meta, None));
    assert_eq!(img.owner.as_deref(), Some("A"));
    assert!(b.get_image_meta(&img.id).is_err_and(|e| e.is_not_found()));

    ok(a.add_member(&img.id, "B", None));
    ok(a.add_member(&img.id, "C", Some(true)));
    let members = ok(a.get_image_members(&img.id));
    let flat: Vec<_> = members
        .iter()
        .map(|m| (m.member_id.as_str(), m.can_share))
        .collect();
    assert_eq!(flat, [("B", false), ("C", true)]);
    assert_eq!(ok(b.get_image_meta(&img.id)).id, img.id);
    let shared = ok(b.get_member_images("B"));
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].image_id, img.id);
    // Only B itself (or an admin) may list what is shared with B.
    assert!(a.get_member_images("B").is_err_and(|e| e.is_not_found()));

    // B may not share further: the server answers 404.
    assert!(matches!(
        b.add_member(&img.id, "D", None),
        Err(Error::NotFound(_))
    ));

    ok(a.delete_member(&img.id, "B"));
    ok(a.replace_members(
        &img.id,
        &[MemberSpec {
            member_id: "E".into(),
            can_share: None,
        }],
    ));
    let members = ok(a.get_image_members(&img.id));
    let flat: Vec<_> = members
        .iter()
        .map(|m| (m.member_id.as_str(), m.can_share))
        .collect();
    assert_eq!(flat, [("E", false)]);
    assert!(ok(b.get_member_images("B")).is_empty());
}
