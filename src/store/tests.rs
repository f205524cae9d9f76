use std::io::{self, Read, Write};
use std::path::Path;

use super::*;

/// The MD5 of `data`, lower-case hex, from RustCrypto's `md-5`: an implementation independent
/// of the OpenSSL one under test.
pub(crate) fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The SHA-512 of `data`, lower-case hex, from RustCrypto's `sha2` (independent of OpenSSL).
pub(crate) fn sha512_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha512};
    Sha512::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Stores `data` in `store` the way [`Stores::add`] does, without a size cap.
pub(crate) fn add_to(
    store: &dyn Store,
    id: &str,
    data: &mut dyn Read,
    expected: Option<u64>,
) -> Result<Stored> {
    add_capped(store, id, data, expected, u64::MAX)
}

/// [`add_to`] with `image_size_cap = cap`.
pub(crate) fn add_capped(
    store: &dyn Store,
    id: &str,
    data: &mut dyn Read,
    expected: Option<u64>,
    cap: u64,
) -> Result<Stored> {
    add_verified(
        store,
        cap,
        HashAlgorithm::Sha512,
        &ImageId::parse(id)?,
        data,
        expected,
        Rules::default(),
    )
}

/// The old `copy_and_hash` in terms of [`ImageBody::copy_to`]: byte count and MD5.
fn copy_and_hash<W: Write + ?Sized>(
    reader: &mut dyn Read,
    writer: &mut W,
    buf_size: usize,
    cap: u64,
) -> Result<(u64, String)> {
    let mut body = ImageBody::new(reader, None, cap);
    let n = body.copy_to(writer, buf_size)?;
    Ok((n, body.checksum()?))
}

fn ok(uri: &str) -> Location {
    Location::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

#[test]
fn md5_of_known_strings() {
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        md5_hex(b"The quick brown fox jumps over the lazy dog"),
        "9e107d9d372bb6826bd81d3542a419d6"
    );
    let mut out = Vec::new();
    let (n, sum) = copy_and_hash(
        &mut &b"The quick brown fox jumps over the lazy dog"[..],
        &mut out,
        0,
        u64::MAX,
    )
    .expect("copy");
    assert_eq!(n, 43);
    assert_eq!(sum, "9e107d9d372bb6826bd81d3542a419d6");
    assert_eq!(out, b"The quick brown fox jumps over the lazy dog");
}

/// Yields `good` bytes, then fails with `kind`.
pub(crate) struct FailingReader {
    pub(crate) good: usize,
    pub(crate) kind: io::ErrorKind,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.good == 0 {
            return Err(io::Error::new(self.kind, "boom"));
        }
        let n = buf.len().min(self.good);
        buf[..n].fill(b'x');
        self.good -= n;
        Ok(n)
    }
}

#[test]
fn copy_and_hash_writes_whole_aligned_buffers() {
    // A reader that trickles (as a socket does) still yields whole buffers, each starting on
    // an aligned address: what the file store's direct writes need.
    struct Trickle(usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0).min(1000);
            buf[..n].fill(b'z');
            self.0 -= n;
            Ok(n)
        }
    }
    #[derive(Default)]
    struct Record(Vec<(usize, bool)>);
    impl Write for Record {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let aligned = buf.as_ptr().align_offset(super::BUFFER_ALIGN) == 0;
            self.0.push((buf.len(), aligned));
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut out = Record::default();
    let (n, sum) =
        copy_and_hash(&mut Trickle(3 * 8192 + 5), &mut out, 8192, u64::MAX).expect("copy");
    assert_eq!(n, 3 * 8192 + 5);
    assert_eq!(sum, md5_hex(&vec![b'z'; 3 * 8192 + 5]));
    assert_eq!(out.0, [(8192, true), (8192, true), (8192, true), (5, true)]);
}

#[test]
fn copy_and_hash_limits_and_errors() {
    // Exactly at the limit is fine; one more byte is TooLarge, and nothing past the
    // limit was written.
    let data = vec![7u8; 10_000];
    let mut out = Vec::new();
    let (n, _) = copy_and_hash(&mut &data[..], &mut out, 4096, 10_000).expect("at limit");
    assert_eq!(n, 10_000);
    let mut out = Vec::new();
    match copy_and_hash(&mut &data[..], &mut out, 4096, 9_999) {
        Err(Error::TooLarge(m)) => assert!(m.contains("9999"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(out.len() <= 9_999);

    for (kind, word) in [
        (io::ErrorKind::UnexpectedEof, "disconnected"),
        (io::ErrorKind::ConnectionReset, "disconnected"),
        (io::ErrorKind::TimedOut, "Timed out"),
        (io::ErrorKind::InvalidData, "Error reading"),
    ] {
        let mut r = FailingReader { good: 5000, kind };
        match copy_and_hash(&mut r, &mut io::sink(), 4096, u64::MAX) {
            Err(Error::BadRequest(m)) => {
                assert!(m.contains(word) && m.contains("5000"), "{kind:?}: {m}")
            }
            other => panic!("{kind:?}: {other:?}"),
        }
    }

    struct Denied;
    impl Write for Denied {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::PermissionDenied.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    assert!(matches!(
        copy_and_hash(&mut &b"abc"[..], &mut Denied, 4096, 10),
        Err(Error::Forbidden(_))
    ));
}

fn stores_in(dir: &Path) -> Stores {
    Stores::new(&StoreOptions {
        filesystem_store_datadir: dir.join("images"),
        ..StoreOptions::default()
    })
    .expect("stores")
}

#[test]
fn store_selection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stores = stores_in(tmp.path());
    assert_eq!(stores.default_store(), "file");
    assert_eq!(stores.for_upload(None).expect("default").name(), "file");
    assert_eq!(stores.for_upload(Some("")).expect("default").name(), "file");
    assert_eq!(
        stores.for_upload(Some("file")).expect("file").name(),
        "file"
    );
    assert_eq!(
        stores.for_upload(Some("filesystem")).expect("file").name(),
        "file"
    );
    // Swift and S3 are not known unless configured (or listed in known_stores).
    for name in ["swift", "swift+https", "s3"] {
        match stores.for_upload(Some(name)) {
            Err(Error::BadRequest(m)) => assert!(m.contains("not available"), "{m}"),
            Err(e) => panic!("{name}: {e:?}"),
            Ok(s) => panic!("{name}: got {}", s.name()),
        }
    }
    // Listed but unconfigured, they are registered and refuse uploads naming the options to
    // set (as Glance's add_disabled did).
    let listed = Stores::new(&StoreOptions {
        filesystem_store_datadir: tmp.path().join("images"),
        known_stores: Some(vec!["file".into(), "swift".into(), "s3".into()]),
        ..StoreOptions::default()
    })
    .expect("stores");
    for (name, store) in [("swift", "swift"), ("swift+https", "swift"), ("s3", "s3")] {
        let s = listed.for_upload(Some(name)).expect(name);
        assert_eq!(s.name(), store);
        match add_to(s, "x", &mut &b"data"[..], Some(4)) {
            Err(Error::Store(m)) => assert!(m.contains(&format!("{store}_store_")), "{m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(
        listed.for_upload(Some("http")).is_err(),
        "http is not listed"
    );
    for name in ["bogus", "tape"] {
        match stores.for_upload(Some(name)) {
            Err(Error::BadRequest(m)) => assert_eq!(
                m,
                format!("Requested store {name} not available on this Glance server")
            ),
            Err(e) => panic!("{name}: {e:?}"),
            Ok(s) => panic!("{name}: got {}", s.name()),
        }
    }
    match stores.for_upload(Some("http")) {
        Err(Error::BadRequest(m)) => assert!(m.contains("read-only"), "{m}"),
        Err(e) => panic!("{e:?}"),
        Ok(s) => panic!("got {}", s.name()),
    }

    let stores = Stores::new(&StoreOptions {
        filesystem_store_datadir: tmp.path().join("images"),
        known_stores: Some(vec![
            "file".into(),
            "http".into(),
            "swift".into(),
            "s3".into(),
        ]),
        ..StoreOptions::default()
    })
    .expect("stores");
    let by = |uri: &str| stores.for_location(&ok(uri)).map(|s| s.name());
    assert_eq!(by("file:///x/y").expect("file"), "file");
    assert_eq!(by("filesystem:///x/y").expect("file"), "file");
    assert_eq!(by("http://h/x").expect("http"), "http");
    assert_eq!(by("https://h/x").expect("http"), "http");
    assert_eq!(by("swift://u:k@h/c/o").expect("swift"), "swift");
    assert_eq!(by("swift+http://u:k@h/c/o").expect("swift"), "swift");
    assert_eq!(by("s3://h/b/k").expect("s3"), "s3");
    assert_eq!(by("s3+https://a:s@h/b/k").expect("s3"), "s3");

    // A broken stored location is the server's problem, and its secret stays hidden.
    match stores.get("swift://u:TOPSECRET@host/o") {
        Err(Error::Store(m)) => assert!(!m.contains("TOPSECRET"), "{m}"),
        other => panic!("{other:?}"),
    }
}

fn backend(name: &str) -> Backend {
    Backend::parse(name).unwrap_or_else(|| panic!("{name} is no store"))
}

#[test]
fn default_store_must_be_writable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert_eq!(Backend::parse("nope"), None);
    assert_eq!(Backend::parse(" Swift+HTTPS"), Some(Backend::Swift));
    let r = Stores::new(&StoreOptions {
        default_store: Backend::Http,
        filesystem_store_datadir: tmp.path().join("images"),
        ..StoreOptions::default()
    });
    match r {
        Err(Error::Config(m)) => assert!(m.contains("default_store"), "{m}"),
        other => panic!("http: {other:?}"),
    }
    let s = Stores::new(&StoreOptions {
        default_store: backend("filesystem"),
        filesystem_store_datadir: tmp.path().join("images"),
        ..StoreOptions::default()
    })
    .expect("filesystem is the file store");
    assert_eq!(s.default_store(), "file");
    // An unconfigured swift or s3 is not known, so it cannot be the default; listed in
    // known_stores it may be (uploads then fail with a clear error).
    for name in ["swift", "s3"] {
        let unknown = Stores::new(&StoreOptions {
            default_store: backend(name),
            filesystem_store_datadir: tmp.path().join("images"),
            ..StoreOptions::default()
        });
        assert!(matches!(unknown, Err(Error::Config(_))), "{name}");
        let s = Stores::new(&StoreOptions {
            default_store: backend(name),
            filesystem_store_datadir: tmp.path().join("images"),
            known_stores: Some(vec!["file".into(), name.into()]),
            ..StoreOptions::default()
        })
        .expect(name);
        assert_eq!(s.default_store(), name);
    }
    // Configured, they are known by default.
    let mut opts = StoreOptions {
        default_store: Backend::Swift,
        filesystem_store_datadir: tmp.path().join("images"),
        ..StoreOptions::default()
    };
    opts.swift.auth_address = Some("http://127.0.0.1:1/auth/v1.0".into());
    opts.s3.host = Some("http://127.0.0.1:1".into());
    assert_eq!(opts.default_known_stores(), ["file", "http", "swift", "s3"]);
    assert_eq!(Stores::new(&opts).expect("swift").default_store(), "swift");
    // An unknown store name is a configuration error.
    let bad = Stores::new(&StoreOptions {
        filesystem_store_datadir: tmp.path().join("images"),
        known_stores: Some(vec!["file".into(), "tape".into()]),
        ..StoreOptions::default()
    });
    match bad {
        Err(Error::Config(m)) => assert!(m.contains("known_stores") && m.contains("tape"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_locations() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stores = stores_in(tmp.path());
    let datadir = tmp.path().join("images");
    let refuse = |uri: &str| match stores.check_client_location(uri) {
        Err(Error::BadRequest(m)) => m,
        other => panic!("{uri}: expected 400, got {other:?}"),
    };
    assert!(refuse("file:///etc/passwd").contains("file://"));
    assert!(refuse("filesystem:///etc/passwd").contains("filesystem://"));
    let inside = format!("file://{}/some-image", datadir.display());
    assert!(refuse(&inside).contains("cannot be registered"));
    assert!(refuse("ftp://host/x").contains("unknown scheme"));
    assert!(refuse("not a uri").contains("not a URI"));
    assert!(refuse("http://user@host/x").contains("user:password"));
    assert!(refuse("http:///x").contains("no host"));
    // Swift and S3 are not known here: their locations are refused.
    for uri in ["swift://u:k@1.2.3.4/c/o", "s3://a:b@1.2.3.4/b/k"] {
        assert!(refuse(uri).contains("not available"), "{uri}");
    }

    let l = stores
        .check_client_location("http://user:pw@1.2.3.4/img")
        .expect("http is fine");
    assert_eq!(l.redacted(), "http://1.2.3.4/img");
    stores
        .check_client_location("https://[2a00:1450::1]/img")
        .expect("https is fine");
}

#[test]
fn client_locations_pass_the_location_policy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = StoreOptions {
        filesystem_store_datadir: tmp.path().join("images"),
        ..StoreOptions::default()
    };
    // The operator's own Swift and S3 on loopback are trusted.
    opts.swift.auth_address = Some("http://127.0.0.1:8080/auth/v1.0".into());
    opts.s3.host = Some("http://127.0.0.1:8080".into());
    let stores = Stores::new(&opts).expect("stores");
    for uri in [
        "swift+http://other:key@127.0.0.1:8080/auth/v1.0/c/o",
        "s3://a:b@127.0.0.1:8080/bucket/key",
        "swift+https://u:k@1.2.3.4/auth/v1.0/c/o",
        "s3+https://a:b@1.2.3.4/bucket/key",
    ] {
        stores.check_client_location(uri).expect(uri);
    }
    for uri in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x",
        "http://10.0.0.1/x",
        "http://[::ffff:127.0.0.1]:9292/x",
        "http://localhost/x",
        "https://127.0.0.2/x",
        "swift+http://u:k@127.0.0.1:8081/auth/v1.0/c/o",
        "swift+http://u:k@192.168.0.1/auth/v1.0/c/o",
        "s3://a:b@127.0.0.1:9000/bucket/key",
        "s3://a:b@[fd00::1]/bucket/key",
    ] {
        match stores.check_client_location(uri) {
            Err(e @ Error::BadLocation(_)) => {
                let text =
                    String::from_utf8(crate::rest::error_response(e).into_bytes().expect("body"))
                        .expect("utf-8");
                assert!(
                    text.contains("The image location could not be used"),
                    "{text}"
                );
                assert!(!text.contains("127.0.0") && !text.contains("::1"), "{text}");
            }
            other => panic!("{uri}: expected the policy's 400, got {other:?}"),
        }
    }
    // Listed, loopback servers may be used.
    opts.location_allowed_hosts =
        Arc::new(netguard::AddressPolicy::parse(&["127.0.0.1", "localhost"]).expect("policy"));
    let allowed = Stores::new(&opts).expect("stores");
    for uri in [
        "http://127.0.0.1:1234/x",
        "http://localhost/x",
        "swift+http://u:k@127.0.0.1:8081/auth/v1.0/c/o",
        "s3://a:b@127.0.0.1:9000/bucket/key",
    ] {
        allowed.check_client_location(uri).expect(uri);
    }
    assert!(matches!(
        allowed.check_client_location("http://127.0.0.2/x"),
        Err(Error::BadLocation(_))
    ));
}

#[test]
fn image_data_into_body() {
    let data = ImageData::Stream(Box::new(io::Cursor::new(b"abc".to_vec())), Some(3));
    assert_eq!(data.len(), Some(3));
    match data.into_body() {
        crate::http::Body::Reader(_, len) => assert_eq!(len, Some(3)),
        _ => panic!("expected a reader body"),
    }
    let tmp = tempfile::tempfile().expect("tempfile");
    match ImageData::File(tmp, 0).into_body() {
        crate::http::Body::File(_, len) => assert_eq!(len, 0),
        _ => panic!("expected a file body"),
    }
}

/// The conformance test every store must pass: add, read back, checksum and multihash,
/// size, duplicate, delete, and the not-found answers after delete.
pub(crate) fn exercise_store(store: &dyn Store) {
    let id = format!("conformance-{}", uuid::Uuid::new_v4().simple());
    // Larger than one buffer and not a multiple of it.
    let data: Vec<u8> = (0..200_003u32).map(|i| (i % 251) as u8).collect();
    let len = data.len() as u64;

    let stored = add_to(store, &id, &mut &data[..], Some(len)).expect("add succeeds");
    assert_eq!(stored.size, len);
    assert_eq!(stored.checksum, md5_hex(&data));
    assert_eq!(stored.os_hash_algo, HashAlgorithm::Sha512);
    assert_eq!(stored.os_hash_value, sha512_hex(&data));

    let loc = Location::parse(&stored.location).expect("store returns a parseable location");
    assert!(store.schemes().contains(&loc.scheme()));
    assert_eq!(store.size(&loc).expect("size"), len);

    let got = store.get(&loc).expect("get");
    assert_eq!(got.len(), Some(len));
    assert_eq!(read_all(got), data);

    match add_to(store, &id, &mut &b"other"[..], Some(5)) {
        Err(Error::Duplicate(msg)) => assert!(msg.contains(&id), "{msg}"),
        other => panic!("duplicate add: {other:?}"),
    }
    // The first image is intact after the refused duplicate.
    assert_eq!(read_all(store.get(&loc).expect("get")), data);

    // An empty image is an image too.
    let empty_id = format!("{id}-empty");
    let empty = add_to(store, &empty_id, &mut io::empty(), None).expect("add empty");
    assert_eq!(empty.size, 0);
    assert_eq!(empty.checksum, "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(empty.os_hash_value, sha512_hex(b""));
    let empty_loc = Location::parse(&empty.location).expect("location");
    assert!(read_all(store.get(&empty_loc).expect("get empty")).is_empty());
    store.delete(&empty_loc).expect("delete empty");

    store.delete(&loc).expect("delete");
    assert!(matches!(store.get(&loc), Err(Error::NotFound(_))));
    assert!(matches!(store.size(&loc), Err(Error::NotFound(_))));
    assert!(matches!(store.delete(&loc), Err(Error::NotFound(_))));
}

/// Reads image data whole (tests only).
pub(crate) fn read_all(data: ImageData) -> Vec<u8> {
    let mut out = Vec::new();
    match data {
        ImageData::File(f, len) => f.take(len).read_to_end(&mut out),
        ImageData::Stream(mut r, _) => r.read_to_end(&mut out),
    }
    .expect("read image data");
    out
}
