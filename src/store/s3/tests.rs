//! S3 store tests: option handling offline, then everything else against the S3 API of
//! the real Swift of `tests/services/swift-s3.sh` (skipped with a printed reason when it
//! is not running).

use std::io;
use std::net::TcpListener;

use super::super::Stored;
use super::super::test_services::{self, Services};
use super::super::tests::FailingReader;
use super::super::tests::add_to;
use super::super::tests::md5_hex;
use super::super::tests::{exercise_store, read_all};
use super::*;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 13 + i / 509) % 256) as u8).collect()
}

/// A store on a fresh bucket (created on the first upload); emptied and removed on drop.
struct Fixture {
    store: S3Store,
    bucket: String,
    svc: Services,
}

impl Fixture {
    fn new(svc: &Services, tweak: impl FnOnce(&mut S3Options)) -> Fixture {
        let bucket = test_services::unique("glance-unit");
        let mut s3 = S3Options {
            host: Some(svc.s3_endpoint.clone()),
            access_key: Some(svc.s3_access.clone()),
            secret_key: Some(svc.s3_secret.clone()),
            bucket: Some(bucket.clone()),
            create_bucket_on_put: true,
            bucket_url_format: BucketUrlFormat::Path,
            region_name: svc.s3_region.clone(),
            ..S3Options::default()
        };
        tweak(&mut s3);
        let store = S3Store::new(&StoreOptions {
            s3,
            ..StoreOptions::default()
        });
        Fixture {
            store,
            bucket,
            svc: svc.clone(),
        }
    }

    /// A handle on the fixture's bucket with the test credentials.
    fn handle(&self, svc: &Services) -> Box<Bucket> {
        let t = Target {
            endpoint: svc.s3_endpoint.clone(),
            access: svc.s3_access.clone(),
            secret: svc.s3_secret.clone(),
            bucket: self.bucket.clone(),
        };
        self.store.bucket(&t).expect("bucket")
    }

    /// Every key in the bucket (empty when the bucket does not exist).
    fn keys(&self, svc: &Services) -> Vec<String> {
        match self.handle(svc).list(String::new(), None) {
            Ok(pages) => pages
                .into_iter()
                .flat_map(|p| p.contents.into_iter().map(|o| o.key))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Multipart uploads in progress in the bucket.
    fn uploads(&self, svc: &Services) -> usize {
        match self.handle(svc).list_multiparts_uploads(None, None) {
            Ok(pages) => pages.iter().map(|p| p.uploads.len()).sum(),
            Err(_) => 0,
        }
    }

    fn loc(&self, stored: &Stored) -> Location {
        Location::parse(&stored.location).expect("location parses")
    }
}

/// Removes the bucket with everything in it (also after a failed assertion).
impl Drop for Fixture {
    fn drop(&mut self) {
        let b = self.handle(&self.svc);
        if let Ok(pages) = b.list_multiparts_uploads(None, None) {
            for u in pages.iter().flat_map(|p| p.uploads.iter()) {
                let _ = b.abort_upload(&format!("/{}", u.key), &u.id);
            }
        }
        for key in self.keys(&self.svc) {
            let _ = b.delete_object(format!("/{key}"));
        }
        let _ = b.delete();
    }
}

#[test]
fn options_hosts_and_styles() {
    assert_eq!(BucketUrlFormat::parse("Path"), Some(BucketUrlFormat::Path));
    assert_eq!(BucketUrlFormat::parse("x"), None);
    assert_eq!(
        split_host("http://127.0.0.1:8080/").expect("http"),
        (
            "s3",
            "http://127.0.0.1:8080".into(),
            "127.0.0.1:8080".into()
        )
    );
    assert_eq!(
        split_host("https://s3.example.com").expect("https"),
        (
            "s3+https",
            "https://s3.example.com".into(),
            "s3.example.com".into()
        )
    );
    assert_eq!(
        split_host("s3.example.com").expect("bare host"),
        (
            "s3+https",
            "https://s3.example.com".into(),
            "s3.example.com".into()
        )
    );
    assert!(split_host("ftp://x").is_err());
    assert!(split_host("http://host/path").is_err());

    assert!(path_style(
        BucketUrlFormat::Auto,
        "http://127.0.0.1:8080",
        "glance"
    ));
    assert!(path_style(
        BucketUrlFormat::Auto,
        "http://localhost:9000",
        "glance"
    ));
    assert!(path_style(
        BucketUrlFormat::Auto,
        "https://s3.example.com",
        "Not_DNS"
    ));
    assert!(!path_style(
        BucketUrlFormat::Auto,
        "https://s3.example.com",
        "glance"
    ));
    assert!(path_style(
        BucketUrlFormat::Path,
        "https://s3.example.com",
        "glance"
    ));
    assert!(!path_style(
        BucketUrlFormat::Virtual,
        "http://127.0.0.1",
        "glance"
    ));

    assert_eq!(part_size(10 * MB, 100 * MB).expect("small"), 10 * MB);
    assert_eq!(part_size(MB, 20 * MB).expect("min"), MIN_PART);
    let huge = 50_000 * MB;
    assert_eq!(part_size(10 * MB, huge).expect("huge"), 50 * MB);
    assert!(part_size(10 * MB, MAX_PARTS * MAX_PART + 1).is_err());
    assert!(next_number(999).is_ok());
    assert!(next_number(1000).is_err());

    let (code, msg) = s3_code("<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>");
    assert_eq!((code.as_str(), msg.as_str()), ("NoSuchKey", "gone"));

    let store = S3Store::new(&StoreOptions::default());
    match add_to(&store, "x", &mut &b"x"[..], Some(1)) {
        Err(Error::Store(m)) => {
            for opt in [
                "s3_store_host",
                "s3_store_access_key",
                "s3_store_secret_key",
                "s3_store_bucket",
            ] {
                assert!(m.contains(opt), "{m}");
            }
        }
        other => panic!("{other:?}"),
    }
    let opts = S3Options {
        secret_key: Some("TOPSECRET".into()),
        ..S3Options::default()
    };
    assert!(!format!("{opts:?}").contains("TOPSECRET"));
}

#[test]
fn location_form() {
    let store = S3Store::new(&StoreOptions {
        s3: S3Options {
            host: Some("http://127.0.0.1:8080".into()),
            access_key: Some("test:tester".into()),
            secret_key: Some("se/cr+et".into()),
            bucket: Some("glance".into()),
            ..S3Options::default()
        },
        ..StoreOptions::default()
    });
    let uri = format!("{}/glance/img", store.location_prefix);
    assert_eq!(
        uri,
        "s3://test%3Atester:se%2Fcr%2Bet@127.0.0.1:8080/glance/img"
    );
    let loc = Location::parse(&uri).expect("parses");
    assert_eq!(loc.redacted(), "s3://127.0.0.1:8080/glance/img");
    let Location::S3(l) = &loc else {
        panic!("{loc:?}")
    };
    let t = store.target_for(l).expect("target");
    assert_eq!(t.endpoint, "http://127.0.0.1:8080");
    assert_eq!(
        (t.access.as_str(), t.secret.as_str()),
        ("test:tester", "se/cr+et")
    );
    // A location without credentials never borrows the configured ones.
    let Location::S3(bare) = Location::parse("s3://127.0.0.1:8080/glance/img").expect("loc") else {
        panic!()
    };
    assert!(matches!(store.target_for(&bare), Err(Error::Store(_))));
}

#[test]
fn conformance() {
    let Some(svc) = test_services::swift("s3 conformance") else {
        return;
    };
    let f = Fixture::new(&svc, |_| {});
    exercise_store(&f.store);
    assert!(f.keys(&svc).is_empty(), "{:?}", f.keys(&svc));
}

#[test]
fn multipart_known_and_unknown_size() {
    let Some(svc) = test_services::swift("s3 multipart") else {
        return;
    };
    let f = Fixture::new(&svc, |o| {
        o.large_object_size = MB;
        o.large_object_chunk_size = 5 * MB;
    });
    let len = 11 * MB as usize + 12_345;
    let data = pattern(len);
    for (id, declared) in [("known", Some(len as u64)), ("unknown", None)] {
        let stored = add_to(&f.store, id, &mut &data[..], declared).expect(id);
        assert_eq!(stored.size, len as u64);
        assert_eq!(stored.checksum, md5_hex(&data));
        let loc = f.loc(&stored);
        assert_eq!(f.store.size(&loc).expect("size"), len as u64);
        let got = f.store.get(&loc).expect("get");
        assert_eq!(got.len(), Some(len as u64));
        assert!(read_all(got) == data, "{id}: data differs");
    }
    // Small unknown size: one PUT from the buffer.
    let small = pattern(1000);
    let stored = add_to(&f.store, "small", &mut &small[..], None).expect("small");
    assert_eq!(read_all(f.store.get(&f.loc(&stored)).expect("get")), small);
    let mut keys = f.keys(&svc);
    keys.sort();
    assert_eq!(keys, ["known", "small", "unknown"]);
    assert_eq!(f.uploads(&svc), 0);
    for id in ["known", "unknown", "small"] {
        let loc = Location::parse(&format!("{}/{}/{id}", f.store.location_prefix, f.bucket))
            .expect("loc");
        f.store.delete(&loc).expect(id);
        assert!(matches!(f.store.delete(&loc), Err(Error::NotFound(_))));
    }
    assert!(f.keys(&svc).is_empty());
}

#[test]
fn failed_uploads_leave_nothing() {
    let Some(svc) = test_services::swift("s3 failed uploads") else {
        return;
    };
    let f = Fixture::new(&svc, |o| {
        o.large_object_size = MB;
        o.large_object_chunk_size = 5 * MB;
    });
    // The client disconnects in the third part, with and without a declared size.
    for declared in [Some(20 * MB), None] {
        let mut r = FailingReader {
            good: 12 * MB as usize,
            kind: io::ErrorKind::ConnectionReset,
        };
        match add_to(&f.store, "cut", &mut r, declared) {
            Err(Error::BadRequest(m)) => assert!(m.contains("disconnected"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(f.keys(&svc).is_empty(), "{:?}", f.keys(&svc));
        assert_eq!(f.uploads(&svc), 0, "multipart upload aborted");
    }
    for (declared, len) in [
        (10u64, 5usize),
        (10, 15),
        (11 * MB, 10 * MB as usize),
        (6 * MB, 7 * MB as usize),
    ] {
        let data = pattern(len);
        match add_to(&f.store, "size", &mut &data[..], Some(declared)) {
            Err(Error::BadRequest(m)) => assert!(m.contains("Size mismatch"), "{m}"),
            other => panic!("{declared}/{len}: {other:?}"),
        }
        assert!(
            f.keys(&svc).is_empty(),
            "{declared}/{len}: {:?}",
            f.keys(&svc)
        );
        assert_eq!(f.uploads(&svc), 0);
    }
    let data = pattern(100);
    let stored = add_to(&f.store, "dup", &mut &data[..], None).expect("first");
    assert!(matches!(
        add_to(&f.store, "dup", &mut &data[..], Some(100)),
        Err(Error::Duplicate(_))
    ));
    assert_eq!(read_all(f.store.get(&f.loc(&stored)).expect("get")), data);
}

#[test]
fn missing_bucket_wrong_credentials_unreachable() {
    let Some(svc) = test_services::swift("s3 errors") else {
        return;
    };
    let f = Fixture::new(&svc, |o| o.create_bucket_on_put = false);
    match add_to(&f.store, "x", &mut &b"data"[..], Some(4)) {
        Err(Error::Store(m)) => {
            assert!(m.contains(&f.bucket), "{m}");
            assert!(m.contains("s3_store_create_bucket_on_put"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let bad = Fixture::new(&svc, |o| o.secret_key = Some("WRONG-SECRET-123".into()));
    match add_to(&bad.store, "x", &mut &b"data"[..], Some(4)) {
        Err(Error::Store(m)) => {
            assert!(m.contains("s3_store_secret_key"), "{m}");
            assert!(!m.contains("WRONG-SECRET-123"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let gone = Fixture::new(&svc, |o| o.host = Some(format!("http://127.0.0.1:{port}")));
    match add_to(&gone.store, "x", &mut &b"data"[..], Some(4)) {
        Err(Error::Unavailable(m)) => assert!(m.contains("unreachable"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Reading a missing key of an existing bucket is a 404.
    let g = Fixture::new(&svc, |_| {});
    let stored = add_to(&g.store, "y", &mut &b"data"[..], None).expect("add");
    let missing = Location::parse(&stored.location.replace("/y", "/nope")).expect("loc");
    assert!(matches!(g.store.get(&missing), Err(Error::NotFound(_))));
    assert!(matches!(g.store.size(&missing), Err(Error::NotFound(_))));
}
