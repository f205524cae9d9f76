use super::*;

fn bad(uri: &str) -> String {
    match Location::parse(uri) {
        Err(Error::BadRequest(m)) => m,
        other => panic!("{uri}: expected BadRequest, got {other:?}"),
    }
}

fn ok(uri: &str) -> Location {
    Location::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
}

#[test]
fn file_locations() {
    let l = ok("file:///var/lib/glance/images/1");
    assert_eq!(l.scheme(), "file");
    assert_eq!(l.store_name(), "file");
    assert_eq!(l.uri(), "file:///var/lib/glance/images/1");
    assert_eq!(l.redacted(), l.uri());
    match &l {
        Location::File(f) => assert_eq!(f.path(), Path::new("/var/lib/glance/images/1")),
        other => panic!("{other:?}"),
    }
    let l = ok("filesystem:///srv/images/a b");
    assert_eq!(l.scheme(), "filesystem");
    assert_eq!(l.uri(), "filesystem:///srv/images/a b");
    assert_eq!(ok("FILE:///x").scheme(), "file");
    assert!(bad("file://").contains("no path"));
    assert!(bad("file://relative/x").contains("absolute"));
    assert!(bad("file:///x\n").contains("control"));
}

#[test]
fn http_locations() {
    let l = ok("http://example.com/images/x.img");
    assert_eq!(l.scheme(), "http");
    assert_eq!(l.store_name(), "http");
    assert_eq!(l.uri(), "http://example.com/images/x.img");
    assert_eq!(l.redacted(), l.uri());

    let l = ok("https://user:s3cr%40t@example.com:8443/a/b?x=1#frag");
    assert_eq!(l.scheme(), "https");
    assert_eq!(l.uri(), "https://user:s3cr%40t@example.com:8443/a/b?x=1");
    assert_eq!(l.redacted(), "https://example.com:8443/a/b?x=1");
    match &l {
        Location::Http(h) => {
            assert_eq!(h.url(), "https://example.com:8443/a/b?x=1");
            assert_eq!(
                h.basic_auth(),
                Some(("user".to_string(), "s3cr@t".to_string()))
            );
        }
        other => panic!("{other:?}"),
    }
    // A raw '@' in the password: the last '@' ends the user-info.
    let l = ok("http://u:p@ss@host/x");
    assert_eq!(l.redacted(), "http://host/x");
    // No path, IPv6 literal, '@' only in the query.
    assert_eq!(ok("http://host").redacted(), "http://host");
    if let Location::Http(h) = ok("http://host") {
        assert_eq!(h.url(), "http://host/");
    }
    assert_eq!(ok("http://[::1]:80/x").redacted(), "http://[::1]:80/x");
    assert_eq!(ok("http://host/x?m=a@b").redacted(), "http://host/x?m=a@b");
    // Empty password is allowed (user:), a bare user is not.
    assert_eq!(ok("http://user:@host/x").redacted(), "http://host/x");
    assert!(bad("http://user@host/x").contains("user:password"));
    assert!(bad("http://:pw@host/x").contains("user:password"));
    assert!(bad("http:///x").contains("no host"));
    assert!(bad("http://user:secret@/x").contains("no host"));
    assert!(bad("http://host:abc/x").contains("port"));
    assert!(bad("http://host:99999/x").contains("port"));
    assert!(bad("http://host:/x").contains("port"));
    assert!(bad("http://ho st/x").contains("whitespace"));
    assert!(bad("http://[::1/x").contains("host"));
    assert!(bad("http://host\r\nX: y/x").contains("control"));
    assert!(bad("http://host/\u{e4}").contains("percent-encoded"));
    assert!(bad("http://host/a|b").contains("percent-encoded"));
    assert!(bad("http://host/a?b=<c>").contains("percent-encoded"));
    assert_eq!(ok("http://host/%C3%A4").redacted(), "http://host/%C3%A4");
}

#[test]
fn swift_locations() {
    let l = ok("swift://jdoe:a8685secret@127.0.0.1:8080/v1.0/glance/42");
    assert_eq!(l.scheme(), "swift");
    assert_eq!(l.store_name(), "swift");
    assert_eq!(
        l.uri(),
        "swift://jdoe:a8685secret@127.0.0.1:8080/v1.0/glance/42"
    );
    assert_eq!(l.redacted(), "swift://127.0.0.1:8080/v1.0/glance/42");
    match &l {
        Location::Swift(s) => {
            assert_eq!(s.auth_url(), "https://127.0.0.1:8080/v1.0");
            assert_eq!(s.user(), "jdoe");
            assert_eq!(s.key(), "a8685secret");
            assert_eq!(s.container(), "glance");
            assert_eq!(s.object(), "42");
        }
        other => panic!("{other:?}"),
    }
    // account:user:key
    match ok("swift+http://acct:jdoe:k3y@auth.example.com/v1/cont/obj") {
        Location::Swift(s) => {
            assert_eq!(s.user(), "acct:jdoe");
            assert_eq!(s.key(), "k3y");
            assert_eq!(s.auth_url(), "http://auth.example.com/v1");
            assert_eq!(s.scheme, "swift+http");
        }
        other => panic!("{other:?}"),
    }
    // Shortest form: auth host, container, object.
    match ok("swift+https://u:k@authhost/c/o") {
        Location::Swift(s) => {
            assert_eq!(s.auth_url(), "https://authhost");
            assert_eq!((s.container(), s.object()), ("c", "o"));
        }
        other => panic!("{other:?}"),
    }

    let m = bad("swift://user:secretkey@http://authurl.com/v1/container/obj");
    assert!(
        m.contains("more than one '://'") && m.contains("swift+http"),
        "{m}"
    );
    assert!(bad("swift://authurl.com/v1/container/obj").contains("user:key"));
    assert!(bad("swift://user@authurl.com/v1/container/obj").contains("user:key"));
    assert!(bad("swift://:secretkey@authurl.com/v1/container/obj").contains("user:key"));
    assert!(bad("swift://a:b:c:secretkey@authurl.com/c/o").contains("user:key"));
    assert!(bad("swift://u:secretkey@authurl.com/obj").contains("container"));
    assert!(bad("swift://u:secretkey@authurl.com").contains("container"));
    assert!(bad("swift://u:secretkey@authurl.com/c/").contains("container"));
    assert!(bad("swift://u:secretkey@/c/o").contains("no host"));
    assert!(bad("swift://u:secret@key@host/c/o").contains("'@'"));
}

#[test]
fn s3_locations() {
    let l = ok("s3://AKIA:se/cr+et@s3.amazonaws.com/bucket/key-id");
    assert_eq!(l.scheme(), "s3");
    assert_eq!(l.store_name(), "s3");
    assert_eq!(l.uri(), "s3://AKIA:se/cr+et@s3.amazonaws.com/bucket/key-id");
    assert_eq!(l.redacted(), "s3://s3.amazonaws.com/bucket/key-id");
    match &l {
        Location::S3(s) => {
            assert_eq!(s.service_url(), "http://s3.amazonaws.com");
            assert_eq!(s.credentials(), Some(("AKIA", "se/cr+et")));
            assert_eq!((s.bucket(), s.key()), ("bucket", "key-id"));
        }
        other => panic!("{other:?}"),
    }
    match ok("s3+https://a:b@host:9000/some/path/bkt/k") {
        Location::S3(s) => {
            assert_eq!(s.service_url(), "https://host:9000/some/path");
            assert_eq!((s.bucket(), s.key()), ("bkt", "k"));
        }
        other => panic!("{other:?}"),
    }
    match ok("s3+http://a:b@host/bkt/k") {
        Location::S3(s) => assert_eq!(s.service_url(), "http://host"),
        other => panic!("{other:?}"),
    }
    // Glance accepted S3 URIs without credentials.
    match ok("s3://host/bkt/k") {
        Location::S3(s) => assert_eq!(s.credentials(), None),
        other => panic!("{other:?}"),
    }

    let m = bad("s3://accesskey:secretkey@https://s3.amazonaws.com/bucket/key-id");
    assert!(m.contains("more than one '://'"), "{m}");
    assert!(bad("s3://accesskey:secretkey@s3.amazonaws.com/key-id").contains("bucket"));
    assert!(bad("s3://accesskey:secretkey@bucket").contains("bucket"));
    assert!(bad("s3://accesskey@s3.amazonaws.com/b/k").contains("access_key:secret_key"));
    assert!(bad("s3://a:sec@ret@host/b/k").contains("'@'"));
    assert!(bad("s3://a:secret@/b/k").contains("service"));
}

#[test]
fn unknown_and_malformed_uris() {
    assert!(bad("ftp://host/x").contains("unknown scheme 'ftp'"));
    assert!(bad("GOPHER://host/x").contains("unknown scheme 'gopher'"));
    assert!(bad("").contains("not a URI"));
    assert!(bad("just-a-name").contains("not a URI"));
    assert!(bad("://host/x").contains("not a URI"));
    assert!(bad("user:secret@host/x").contains("not a URI"));
    assert!(bad("1http://host/x").contains("not a URI"));
    assert!(bad(&format!("http://host/{}", "a".repeat(5000))).contains("longer"));
}

/// No way of handling a location with credentials lets the secret out: not the redacted
/// form, not `Debug`/`Display`, not the parse error of a malformed variant.
#[test]
fn secret_in_the_port_position_is_masked() {
    // No '@': the parser refuses it, and the fallback must not show the secret.
    assert_eq!(
        redact_uri("http://user:s3cret/path"),
        "http://user:***/path"
    );
    assert_eq!(
        redact_uri("swift+http://user:s3cret/c/o"),
        "swift+http://user:***/c/o"
    );
    assert_eq!(redact_uri("http://h:8080/x y"), "http://h:8080/x y");
    assert_eq!(redact_uri("http://[::1]/x y"), "http://[::1]/x y");
    assert_eq!(redact_uri("http://[::1]:99/x y"), "http://[::1]:99/x y");
}

#[test]
fn presigned_url_secrets_are_masked() {
    let cases = [
        (
            "https://host/c/o?temp_url_sig=TOPSECRET&temp_url_expires=1700000000",
            "https://host/c/o?temp_url_sig=***&temp_url_expires=1700000000",
        ),
        (
            "https://b.s3.example/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=TOPSECRET\
             &X-Amz-Signature=TOPSECRET&X-Amz-Security-Token=TOPSECRET&X-Amz-Expires=60",
            "https://b.s3.example/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***\
             &X-Amz-Signature=***&X-Amz-Security-Token=***&X-Amz-Expires=60",
        ),
        (
            "http://host/x?sv=2020&sig=TOPSECRET&access_token=TOPSECRET&apikey=TOPSECRET&v=1",
            "http://host/x?sv=2020&sig=***&access_token=***&apikey=***&v=1",
        ),
        (
            "http://host/x?password=TOPSECRET",
            "http://host/x?password=***",
        ),
        ("http://host/x?a=1&b&c=", "http://host/x?a=1&b&c="),
        ("http://host/x", "http://host/x"),
    ];
    for (uri, shown) in cases {
        let l = ok(uri);
        assert_eq!(l.uri(), uri, "the registry keeps the whole URL");
        assert_eq!(l.redacted(), shown);
        assert_eq!(redact_uri(uri), shown);
        assert!(!format!("{l:?}").contains("TOP"), "{l:?}");
        if let Location::Http(h) = &l {
            assert_eq!(h.url(), uri, "the download fetches the whole URL");
        }
    }
    // Unparsable locations are masked as well.
    assert!(!redact_uri("http://host:bad/x?sig=TOPSECRET").contains("TOP"));
}

#[test]
fn secrets_never_escape() {
    let good = [
        "swift://user:TOPSECRET@host/v1/c/o",
        "swift+https://acct:user:TOPSECRET@host/v1/c/o",
        "s3://access:TOPSECRET@host/b/k",
        "s3+https://access:TOP/SECRET@host/b/k",
        "http://user:TOPSECRET@host/x",
        "https://user:TOPSECRET@host:443/x?y=1",
    ];
    for uri in good {
        let l = ok(uri);
        assert!(l.uri().contains("TOP"));
        // The full URI parses back to the same location (it is what the registry keeps).
        assert_eq!(ok(&l.uri()), l, "{uri}");
        assert_eq!(l.uri(), uri);
        for shown in [
            l.redacted(),
            format!("{l}"),
            format!("{l:?}"),
            redact_uri(uri),
        ] {
            assert!(!shown.contains("TOP"), "{uri} shown as {shown}");
            assert!(!shown.contains("user"), "{uri} shown as {shown}");
        }
    }
    let malformed = [
        "swift://user:TOPSECRET@http://host/v1/c/o",
        "swift://user:TOPSECRET@host/o",
        "swift://a:b:c:TOPSECRET@host/c/o",
        "swift://user:TOP@SECRET@host/c/o",
        "s3://access:TOPSECRET@https://host/b/k",
        "s3://access:TOPSECRET@host/k",
        "s3://access:TOP@SECRET@host/b/k",
        "http://TOPSECRET@host/x",
        "http://user:TOP/SECRET@host/x",
        "http://user:TOPSECRET@/x",
        "http://user:TOPSECRET@host:bad/x",
        "ftp://user:TOPSECRET@host/x",
        "user:TOPSECRET@host/x",
        "http://user:TOPSECRET@host/x\n",
    ];
    for uri in malformed {
        let e = Location::parse(uri).expect_err(uri);
        assert!(!e.message().contains("TOP"), "{uri}: {e}");
        assert!(!e.message().contains("SECRET"), "{uri}: {e}");
        let r = redact_uri(uri);
        assert!(!r.contains("TOP") && !r.contains("SECRET"), "{uri} → {r}");
    }
    assert_eq!(
        redact_uri("swift://user:TOPSECRET@http://host/v1/c/o"),
        "swift://http://host/v1/c/o"
    );
    assert_eq!(redact_uri("user:TOPSECRET@host/x"), MALFORMED);
    assert_eq!(redact_uri("http://h/x\ny"), "http://h/x?y");
    assert_eq!(
        redact_uri("file:///var/lib/glance/images/1"),
        "file:///var/lib/glance/images/1"
    );
}

/// Property-based tests (quick and long runs: see `crate::props`).
mod props;
