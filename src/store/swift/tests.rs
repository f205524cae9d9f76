//! Swift store tests: option handling offline, then everything else against the real Swift
//! of `tests/services/swift-s3.sh` (skipped with a printed reason when it is not running).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use super::super::Stored;
use super::super::test_services::{self, Services};
use super::super::tests::FailingReader;
use super::super::tests::md5_hex;
use super::super::tests::{add_capped, add_to};
use super::super::tests::{exercise_store, read_all};
use super::*;
use serde_json::{Value, json};

/// Deterministic test data.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + i / 251) % 256) as u8).collect()
}

/// A store on a fresh container; the container and everything in it is removed on drop.
struct Fixture {
    store: SwiftStore,
    container: String,
}

impl Fixture {
    fn new(svc: &Services, tweak: impl FnOnce(&mut SwiftOptions)) -> Fixture {
        let container = test_services::unique("glance-unit");
        let mut swift = SwiftOptions {
            auth_address: Some(svc.auth_url.clone()),
            user: Some(svc.user.clone()),
            key: Some(svc.key.clone()),
            container: container.clone(),
            create_container_on_put: true,
            ..SwiftOptions::default()
        };
        tweak(&mut swift);
        let store = SwiftStore::new(&StoreOptions {
            swift,
            ..StoreOptions::default()
        });
        Fixture { store, container }
    }

    /// A second handle with the admin connection of the fixture's account (for checks).
    fn conn(&self) -> Arc<Conn> {
        Arc::clone(self.store.configured().expect("configured"))
    }

    /// Every object name in the container (empty when the container does not exist).
    fn objects(&self) -> Vec<String> {
        match self.conn().list(&self.container, "") {
            Ok(v) => v.into_iter().map(|(n, _)| n).collect(),
            Err(Error::NotFound(_)) => Vec::new(),
            Err(e) => panic!("listing {}: {e}", self.container),
        }
    }

    fn loc(&self, stored: &Stored) -> Location {
        Location::parse(&stored.location).expect("location parses")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let conn = self.conn();
        if let Ok(objects) = conn.list(&self.container, "") {
            for (name, _) in objects {
                let _ = conn.delete_object(&self.container, &name);
            }
        }
        let _ = conn.request("DELETE", Some(&self.container), None, "", &[], "cleanup");
    }
}

#[test]
fn options_and_unconfigured_store() {
    assert_eq!(SwiftAuthVersion::parse("1.0"), Some(SwiftAuthVersion::V1));
    assert_eq!(SwiftAuthVersion::parse("v3"), Some(SwiftAuthVersion::V3));
    assert_eq!(SwiftAuthVersion::parse("2"), None);
    assert_eq!(endpoint_interface("publicURL"), Some("public"));
    assert_eq!(endpoint_interface("internal"), Some("internal"));
    assert_eq!(endpoint_interface("bogus"), None);

    let store = SwiftStore::new(&StoreOptions::default());
    match add_to(&store, "x", &mut &b"x"[..], Some(1)) {
        Err(Error::Store(m)) => {
            for opt in [
                "swift_store_auth_address",
                "swift_store_user",
                "swift_store_key",
            ] {
                assert!(m.contains(opt), "{m}");
            }
        }
        other => panic!("{other:?}"),
    }
    // Debug output never shows the key.
    let opts = SwiftOptions {
        key: Some("TOPSECRET".into()),
        ..SwiftOptions::default()
    };
    assert!(!format!("{opts:?}").contains("TOPSECRET"));
    let store = SwiftStore::new(&StoreOptions {
        swift: SwiftOptions {
            auth_address: Some("http://h/auth/v1.0".into()),
            user: Some("a:u".into()),
            key: Some("TOPSECRET".into()),
            ..SwiftOptions::default()
        },
        ..StoreOptions::default()
    });
    assert!(!format!("{store:?}").contains("TOPSECRET"));
}

#[test]
fn location_form() {
    let store = SwiftStore::new(&StoreOptions {
        swift: SwiftOptions {
            auth_address: Some("http://127.0.0.1:8080/auth/v1.0/".into()),
            user: Some("test:tester".into()),
            key: Some("p@ss:w/rd".into()),
            ..SwiftOptions::default()
        },
        ..StoreOptions::default()
    });
    let uri = store.location("img-1");
    assert_eq!(
        uri,
        "swift+http://test:tester:p%40ss%3Aw%2Frd@127.0.0.1:8080/auth/v1.0/glance/img-1"
    );
    let loc = Location::parse(&uri).expect("parses");
    assert_eq!(
        loc.redacted(),
        "swift+http://127.0.0.1:8080/auth/v1.0/glance/img-1"
    );
    let Location::Swift(l) = &loc else {
        panic!("{loc:?}")
    };
    assert_eq!(l.auth_url(), "http://127.0.0.1:8080/auth/v1.0");
    assert_eq!(percent_decode(l.key()), "p@ss:w/rd");
    // Its own location maps to the configured connection (token reused).
    let conn = store.conn_for(l);
    assert!(Arc::ptr_eq(&conn, store.configured().expect("configured")));

    // https and scheme-less addresses give swift+https.
    for address in ["https://auth.example.com/v1.0", "auth.example.com/v1.0"] {
        let store = SwiftStore::new(&StoreOptions {
            swift: SwiftOptions {
                auth_address: Some(address.into()),
                user: Some("u".into()),
                key: Some("k".into()),
                ..SwiftOptions::default()
            },
            ..StoreOptions::default()
        });
        assert_eq!(
            store.location("1"),
            "swift+https://u:k@auth.example.com/v1.0/glance/1"
        );
    }
}

#[test]
fn segment_names() {
    assert_eq!(segment_name("abc", 1), "abc-00001");
    assert_eq!(segment_name("abc", 99_999), "abc-99999");
    assert!(is_segment_of("abc-00001", "abc"));
    assert!(is_segment_of("abc-123456", "abc"));
    assert!(!is_segment_of("abc-0001", "abc"));
    assert!(!is_segment_of("abc-x0001", "abc"));
    assert!(!is_segment_of("abcd-00001", "abc"));
    assert!(!is_segment_of("abc", "abc"));
}

#[test]
fn catalog_lookup() {
    let catalog = json!([
        {"type": "identity", "endpoints": [{"interface": "public", "url": "http://k"}]},
        {"type": "object-store", "endpoints": [
            {"interface": "internal", "region_id": "One", "url": "http://internal"},
            {"interface": "public", "region_id": "One", "url": "http://one"},
            {"interface": "public", "region_id": "Two", "url": "http://two"},
        ]},
    ]);
    assert_eq!(
        catalog_url(&catalog, "public", None).as_deref(),
        Some("http://one")
    );
    assert_eq!(
        catalog_url(&catalog, "public", Some("Two")).as_deref(),
        Some("http://two")
    );
    assert_eq!(
        catalog_url(&catalog, "internal", None).as_deref(),
        Some("http://internal")
    );
    assert_eq!(catalog_url(&catalog, "admin", None), None);
    assert_eq!(catalog_url(&catalog, "public", Some("Three")), None);
}

#[test]
fn conformance() {
    let Some(svc) = test_services::swift("swift conformance") else {
        return;
    };
    let f = Fixture::new(&svc, |_| {});
    exercise_store(&f.store);
    assert!(f.objects().is_empty(), "{:?}", f.objects());
}

#[test]
fn large_objects_known_and_unknown_size() {
    let Some(svc) = test_services::swift("swift large objects") else {
        return;
    };
    let f = Fixture::new(&svc, |o| {
        o.large_object_size = 300_000;
        o.large_object_chunk_size = 100_000;
    });
    let c = f.container.clone();
    // (declared size?, length, expected objects)
    let cases: [(bool, usize, &[&str]); 7] = [
        // Below the threshold with a known size: one object.
        (true, 299_999, &["a"]),
        // At the threshold: 3 segments and the manifest.
        (true, 300_000, &["b", "b-00001", "b-00002", "b-00003"]),
        (true, 250_003, &["c"]),
        (true, 1_000_001, &[]),
        // Unknown size: segments of the chunk size; one segment becomes a plain object.
        (false, 250_003, &["e", "e-00001", "e-00002", "e-00003"]),
        (false, 99_999, &["f"]),
        (false, 200_000, &["g", "g-00001", "g-00002"]),
    ];
    let ids = ["a", "b", "c", "d", "e", "f", "g"];
    for (i, (declared, len, objects)) in cases.iter().enumerate() {
        let id = ids[i];
        let data = pattern(*len);
        let size = declared.then_some(*len as u64);
        let stored = add_to(&f.store, id, &mut &data[..], size).expect(id);
        assert_eq!(stored.size, *len as u64, "{id}");
        assert_eq!(stored.checksum, md5_hex(&data), "{id}");
        let loc = f.loc(&stored);
        assert_eq!(f.store.size(&loc).expect("size"), *len as u64, "{id}");
        let got = f.store.get(&loc).expect("get");
        assert_eq!(got.len(), Some(*len as u64), "{id}");
        assert!(read_all(got) == data, "{id}: data differs");
        let mut have: Vec<String> = f
            .objects()
            .into_iter()
            .filter(|n| n == id || n.starts_with(&format!("{id}-")))
            .collect();
        have.sort();
        if !objects.is_empty() {
            assert_eq!(have, *objects, "{id}");
        } else {
            assert_eq!(have.len(), 12, "{id}: 11 segments + manifest: {have:?}");
        }
        if *len >= 300_000 {
            let head = f.conn().head_object(&c, id).expect("head").expect("exists");
            assert_eq!(
                header(&head, "x-object-manifest").as_deref(),
                Some(format!("{c}/{id}-").as_str())
            );
        }
    }
    // Another image's object named like a segment is neither served nor deleted with b.
    let foreign = pattern(10);
    add_to(&f.store, "b-00004", &mut &foreign[..], Some(10))
        .expect("an image whose id looks like a segment");
    let b = Location::parse(&f.store.location("b")).expect("loc");
    assert_eq!(read_all(f.store.get(&b).expect("get")).len(), 300_000);
    for id in ids {
        let loc = Location::parse(&f.store.location(id)).expect("loc");
        f.store.delete(&loc).expect(id);
        assert!(matches!(f.store.get(&loc), Err(Error::NotFound(_))), "{id}");
    }
    assert_eq!(f.objects(), ["b-00004"]);
}

#[test]
fn failed_uploads_leave_nothing() {
    let Some(svc) = test_services::swift("swift failed uploads") else {
        return;
    };
    let f = Fixture::new(&svc, |o| {
        o.large_object_size = 300_000;
        o.large_object_chunk_size = 100_000;
    });
    // The client disconnects in the middle of the third segment.
    for declared in [Some(500_000), None] {
        let mut r = FailingReader {
            good: 250_000,
            kind: io::ErrorKind::ConnectionReset,
        };
        match add_to(&f.store, "cut", &mut r, declared) {
            Err(Error::BadRequest(m)) => assert!(m.contains("disconnected"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(f.objects().is_empty(), "{:?}", f.objects());
    }
    // Fewer or more bytes than declared, small and segmented.
    for (declared, len) in [
        (10u64, 5usize),
        (10, 15),
        (400_000, 350_000),
        (400_000, 450_000),
    ] {
        let data = pattern(len);
        match add_to(&f.store, "size", &mut &data[..], Some(declared)) {
            Err(Error::BadRequest(m)) => assert!(m.contains("Size mismatch"), "{m}"),
            other => panic!("{declared}/{len}: {other:?}"),
        }
        assert!(
            f.objects().is_empty(),
            "{declared}/{len}: {:?}",
            f.objects()
        );
    }
    // Past image_size_cap while streaming.
    let capped = SwiftStore::new(&StoreOptions {
        size_cap: 150_000,
        swift: f.store.opts.clone(),
        ..StoreOptions::default()
    });
    let data = pattern(200_000);
    assert!(matches!(
        add_capped(&capped, "cap", &mut &data[..], None, 150_000),
        Err(Error::TooLarge(_))
    ));
    assert!(f.objects().is_empty(), "{:?}", f.objects());
    // A duplicate is refused and the first image stays intact.
    let data = pattern(1000);
    let stored = add_to(&f.store, "dup", &mut &data[..], None).expect("first");
    match add_to(&f.store, "dup", &mut &data[..], Some(1000)) {
        Err(Error::Duplicate(m)) => assert!(m.contains("dup"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(read_all(f.store.get(&f.loc(&stored)).expect("get")), data);
}

#[test]
fn stale_segments_of_an_earlier_upload_are_replaced() {
    let Some(svc) = test_services::swift("swift stale segments") else {
        return;
    };
    let f = Fixture::new(&svc, |o| {
        o.large_object_size = 300_000;
        o.large_object_chunk_size = 100_000;
    });
    // Left behind by an upload whose cleanup failed: five segments of image "s".
    let conn = f.conn();
    f.store.ensure_container(&conn).expect("container");
    for n in 1..=5 {
        let data = pattern(100_000);
        let mut body = &data[..];
        let mut src = ImageBody::new(&mut body, Some(100_000), u64::MAX);
        f.store
            .put_streamed(
                &conn,
                &segment_name("s", n),
                &mut src,
                Some(100_000),
                100_000,
                &[("X-Object-Meta-Glance-Segment-Of", "s")],
            )
            .expect("stale segment");
    }
    let data = pattern(300_000);
    let stored = add_to(&f.store, "s", &mut &data[..], Some(300_000)).expect("add");
    assert!(read_all(f.store.get(&f.loc(&stored)).expect("get")) == data);
    f.store.delete(&f.loc(&stored)).expect("delete");
    assert!(f.objects().is_empty(), "{:?}", f.objects());
}

#[test]
fn missing_container_and_wrong_credentials() {
    let Some(svc) = test_services::swift("swift errors") else {
        return;
    };
    let f = Fixture::new(&svc, |o| o.create_container_on_put = false);
    match add_to(&f.store, "x", &mut &b"data"[..], Some(4)) {
        Err(Error::Store(m)) => {
            assert!(m.contains(&f.container), "{m}");
            assert!(m.contains("swift_store_create_container_on_put"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(f.objects().is_empty());

    let bad = Fixture::new(&svc, |o| o.key = Some("WRONG-KEY-123".into()));
    match add_to(&bad.store, "x", &mut &b"data"[..], Some(4)) {
        Err(Error::Store(m)) => {
            assert!(m.contains("swift_store_key"), "{m}");
            assert!(!m.contains("WRONG-KEY-123"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // A location carrying a wrong key is not served with the configured one.
    let data = pattern(100);
    let g = f_with_container(&svc);
    let stored = add_to(&g.store, "y", &mut &data[..], None).expect("add");
    let forged = stored.location.replace(":testing@", ":forged@");
    assert_ne!(
        forged, stored.location,
        "the test relies on the default key"
    );
    let loc = Location::parse(&forged).expect("loc");
    match f.store.get(&loc) {
        Err(Error::Store(m)) => assert!(m.contains("authentication failed"), "{m}"),
        other => panic!("{other:?}"),
    }

    // Nothing listening: 503-style error.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let gone = Fixture::new(&svc, |o| {
        o.auth_address = Some(format!("http://127.0.0.1:{port}/auth/v1.0"));
    });
    match add_to(&gone.store, "x", &mut &b"data"[..], Some(4)) {
        Err(Error::Unavailable(m)) => assert!(m.contains("unreachable"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A fixture with create-on-put (for the forged-location check above).
fn f_with_container(svc: &Services) -> Fixture {
    Fixture::new(svc, |_| {})
}

/// A fake Keystone v3: answers `POST /v3/auth/tokens` for `project:user`/`key` with a
/// token and a catalog whose object-store endpoint is the real Swift account, the token
/// being a real Swift token (from auth v1.0). Returns its auth URL.
fn fake_keystone(svc: &Services) -> String {
    let conn = Conn::new(Auth {
        url: svc.auth_url.clone(),
        user: svc.user.clone(),
        key: svc.key.clone(),
        version: SwiftAuthVersion::V1,
        user_domain_id: "default".into(),
        project_domain_id: "default".into(),
        region: None,
        interface: "public",
        snet: false,
    });
    let session = conn.session(false).expect("swift auth");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let req: Value = serde_json::from_slice(&body).unwrap_or_default();
            let pw = &req["auth"]["identity"]["password"]["user"];
            let ok = line.starts_with("POST /v3/auth/tokens")
                && pw["name"] == "glance"
                && pw["password"] == "v3-secret"
                && pw["domain"]["id"] == "default"
                && req["auth"]["scope"]["project"]["name"] == "service";
            let reply = if ok {
                let doc = json!({"token": {
                    "expires_at": "2999-01-01T00:00:00.000000Z",
                    "catalog": [{"type": "object-store", "endpoints": [
                        {"interface": "public", "region_id": "RegionOne",
                         "url": session.storage_url},
                    ]}],
                }})
                .to_string();
                format!(
                    "HTTP/1.1 201 Created\r\nX-Subject-Token: {}\r\nContent-Type: \
                     application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}",
                    session.token,
                    doc.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}/v3")
}

#[test]
fn keystone_v3_auth() {
    let Some(svc) = test_services::swift("swift keystone v3") else {
        return;
    };
    let auth_url = fake_keystone(&svc);
    let v3 = |key: &str| {
        let key = key.to_string();
        let url = auth_url.clone();
        Fixture::new(&svc, move |o| {
            o.auth_address = Some(url);
            o.auth_version = SwiftAuthVersion::V3;
            o.user = Some("service:glance".into());
            o.key = Some(key);
            o.region = Some("RegionOne".into());
        })
    };
    let f = v3("v3-secret");
    let data = pattern(5000);
    let stored = add_to(&f.store, "k", &mut &data[..], Some(5000)).expect("add via v3");
    assert!(
        stored
            .location
            .starts_with("swift+http://service:glance:v3-secret@127.0.0.1:")
    );
    assert_eq!(read_all(f.store.get(&f.loc(&stored)).expect("get")), data);
    f.store.delete(&f.loc(&stored)).expect("delete");

    let bad = v3("wrong");
    match add_to(&bad.store, "k", &mut &data[..], Some(5000)) {
        Err(Error::Store(m)) => assert!(m.contains("Keystone refused"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The fixtures' Drop cleans up through the v3 connection of `f`.
    drop(bad);
}
