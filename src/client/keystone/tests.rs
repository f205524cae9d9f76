use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use super::*;

fn name(s: &str) -> Named {
    Named::Name(s.into())
}

fn id(s: &str) -> Named {
    Named::Id(s.into())
}

fn password_creds(auth_url: &str) -> Credentials {
    Credentials {
        auth_url: auth_url.into(),
        method: Method::Password {
            user: Ref {
                named: name("demo"),
                domain: id("default"),
            },
            password: Secret::new("pw"),
        },
        project: Some(Ref {
            named: name("demo"),
            domain: name("Default"),
        }),
        region: None,
        interface: Interface::Public,
        cacert: None,
        image_endpoint_override: None,
    }
}

#[test]
fn token_urls() {
    for (given, want) in [
        ("http://ks:5000", "http://ks:5000/v3/auth/tokens"),
        ("http://ks:5000/", "http://ks:5000/v3/auth/tokens"),
        ("http://ks:5000/v3", "http://ks:5000/v3/auth/tokens"),
        ("http://ks/identity", "http://ks/identity/v3/auth/tokens"),
        (
            "http://ks/identity/v2.0/",
            "http://ks/identity/v3/auth/tokens",
        ),
        ("https://ks/v3.14", "https://ks/v3.14/auth/tokens"),
        // A host named like a version is no version.
        ("http://v2", "http://v2/v3/auth/tokens"),
        ("HTTPS://KS", "HTTPS://KS/v3/auth/tokens"),
    ] {
        assert_eq!(tokens_url(given).ok().as_deref(), Some(want), "{given}");
    }
    let e = tokens_url("keystone:5000").err().map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("OS_AUTH_URL 'keystone:5000' is not an http(s) URL")
    );
}

#[test]
fn image_urls_lose_their_version_and_gain_a_port() {
    for (given, want) in [
        ("http://g:9292", "http://g:9292"),
        ("http://g:9292/", "http://g:9292"),
        ("http://g:9292/v1", "http://g:9292"),
        ("http://g:9292/v2/", "http://g:9292"),
        ("http://g:9292/v2.1", "http://g:9292"),
        ("https://cloud/image/v2", "https://cloud/image"),
        ("https://cloud/image", "https://cloud/image"),
        ("http://v1", "http://v1"),
    ] {
        assert_eq!(api_root(given), want, "{given}");
    }
    assert_eq!(explicit_port("http://cloud/image"), "http://cloud:80/image");
    assert_eq!(explicit_port("https://cloud"), "https://cloud:443");
    assert_eq!(explicit_port("http://[::1]/x"), "http://[::1]:80/x");
    assert_eq!(explicit_port("http://[::1]:9292"), "http://[::1]:9292");
}

#[test]
fn password_body_names_user_domain_and_project() {
    let body = auth_body(&password_creds("http://ks"));
    assert_eq!(
        body,
        json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "demo", "domain": {"id": "default"}, "password": "pw"}}},
            "scope": {"project": {"name": "demo", "domain": {"name": "Default"}}}
        }})
    );
    let mut c = password_creds("http://ks");
    c.method = Method::Password {
        user: Ref {
            named: id("u1"),
            domain: id("ignored"),
        },
        password: Secret::new("pw"),
    };
    c.project = Some(Ref {
        named: id("p1"),
        domain: id("ignored"),
    });
    let body = auth_body(&c);
    assert_eq!(
        body["auth"]["identity"]["password"]["user"],
        json!({"id": "u1", "password": "pw"})
    );
    assert_eq!(body["auth"]["scope"], json!({"project": {"id": "p1"}}));
    c.project = None;
    assert!(auth_body(&c)["auth"].get("scope").is_none());
}

#[test]
fn application_credential_bodies_are_unscoped() {
    let mut c = password_creds("http://ks");
    c.project = None;
    c.method = Method::ApplicationCredential {
        credential: id("ac"),
        user: None,
        secret: Secret::new("s"),
    };
    assert_eq!(
        auth_body(&c),
        json!({"auth": {"identity": {"methods": ["application_credential"],
            "application_credential": {"id": "ac", "secret": "s"}}}})
    );
    c.method = Method::ApplicationCredential {
        credential: name("ci"),
        user: Some(Ref {
            named: name("demo"),
            domain: name("Default"),
        }),
        secret: Secret::new("s"),
    };
    assert_eq!(
        auth_body(&c)["auth"]["identity"]["application_credential"],
        json!({"name": "ci", "secret": "s", "user": {"name": "demo", "domain": {"name": "Default"}}})
    );
}

fn catalog_json() -> Value {
    json!({"token": {"project": {"id": "p"}, "catalog": [
        {"type": "identity", "endpoints": [
            {"interface": "public", "region_id": "RegionOne", "url": "http://ks:5000/v3"}]},
        {"type": "image", "name": "glance", "endpoints": [
            {"interface": "internal", "region_id": "RegionOne", "url": "http://10.0.0.1:9292"},
            {"interface": "public", "region_id": "RegionOne", "url": "https://img.example/v2"},
            {"interface": "public", "region": "RegionTwo", "url": "http://two:9292/v1/"},
            {"interface": "admin", "url": "http://admin:9292"},
            {"interface": "public"}]},
    ]}})
}

#[test]
fn catalog_selection_by_interface_and_region() {
    let catalog = parse_catalog(&catalog_json());
    assert_eq!(catalog.len(), 5, "{catalog:?}");
    let url = |i, r| select_endpoint(&catalog, "image", i, r).map(|e| e.url.clone());
    assert_eq!(
        url(Interface::Public, None).ok().as_deref(),
        Some("https://img.example/v2")
    );
    assert_eq!(
        url(Interface::Public, Some("RegionTwo")).ok().as_deref(),
        Some("http://two:9292/v1/")
    );
    assert_eq!(
        url(Interface::Internal, Some("RegionOne")).ok().as_deref(),
        Some("http://10.0.0.1:9292")
    );
    assert_eq!(
        url(Interface::Admin, None).ok().as_deref(),
        Some("http://admin:9292")
    );
    let e = url(Interface::Internal, Some("RegionTwo"))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some(
            "the service catalog has no image endpoint with interface internal in region \
             RegionTwo (it has: internal in RegionOne, public in RegionOne, public in \
             RegionTwo, admin in no region): set OS_REGION_NAME or OS_INTERFACE, or OS_IMAGE_URL"
        )
    );
    let e = select_endpoint(&catalog, "volume", Interface::Public, None)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some(
            "the service catalog has no volume service (wanted interface public): set \
             OS_IMAGE_URL or use -H and -p"
        )
    );
}

#[test]
fn sessions_give_the_image_api_root() {
    let body = catalog_json();
    let session = |interface, region: Option<&str>, scoped| Session {
        token: Secret::new("tok"),
        catalog: parse_catalog(&body),
        interface,
        region: region.map(str::to_string),
        scoped,
    };
    let s = session(Interface::Public, None, true);
    assert_eq!(
        s.image_url().ok().as_deref(),
        Some("https://img.example:443")
    );
    assert!(!format!("{s:?}").contains("tok\""), "{s:?}");
    let s = session(Interface::Public, Some("RegionTwo"), true);
    assert_eq!(s.image_url().ok().as_deref(), Some("http://two:9292"));
    let unscoped = Session {
        catalog: Vec::new(),
        ..session(Interface::Public, None, false)
    };
    let e = unscoped.image_url().err().map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|m| m.contains("not scoped to a project")),
        "{e:?}"
    );
}

/// What the fake Keystone received.
struct Received {
    head: String,
    body: String,
}

/// A one-shot HTTP server on loopback: answers the first request with `reply` and sends
/// what it received.
fn fake_keystone(reply: String) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let mut conn = conn;
        conn.write_all(reply.as_bytes()).unwrap();
        let _ = tx.send(Received {
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    });
    (url, rx)
}

fn http_reply(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn login_posts_the_credentials_and_keeps_token_and_catalog() {
    let body = catalog_json().to_string();
    let (url, rx) = fake_keystone(http_reply(
        "201 Created",
        "X-Subject-Token: gAAAA-token\r\n",
        &body,
    ));
    let session = login(&password_creds(&url)).unwrap();
    assert_eq!(session.token(), "gAAAA-token");
    assert_eq!(session.catalog().len(), 5);
    assert_eq!(
        session.image_url().ok().as_deref(),
        Some("https://img.example:443")
    );
    let got = rx.recv().unwrap();
    assert!(
        got.head.starts_with("POST /v3/auth/tokens HTTP/1.1\r\n"),
        "{}",
        got.head
    );
    let sent: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(sent, auth_body(&password_creds(&url)));
}

#[test]
fn refused_credentials_say_so_without_the_password() {
    let body = r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#;
    let (url, _rx) = fake_keystone(http_reply("401 Unauthorized", "", body));
    let e = login(&password_creds(&url)).err().map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some(
            "Keystone refused the credentials (401): The request you have made requires authentication."
        )
    );
    let (url, _rx) = fake_keystone(http_reply("404 Not Found", "", "nothing here"));
    let e = login(&password_creds(&url)).err().map(|e| e.to_string());
    assert_eq!(
        e,
        Some(format!(
            "Keystone at {url}/v3/auth/tokens answered 404 (is OS_AUTH_URL right?): nothing here"
        ))
    );
    let (url, _rx) = fake_keystone(http_reply("201 Created", "", "{}"));
    let e = login(&password_creds(&url)).err();
    assert!(matches!(e, Some(Error::InvalidResponse(_))), "{e:?}");
}

#[test]
fn an_unreachable_keystone_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = login(&password_creds(&format!("http://{addr}/v3"))).err();
    assert!(
        matches!(&e, Some(Error::Connect { addr: a, .. }) if *a == addr.to_string()),
        "{e:?}"
    );
    let mut c = password_creds("http://127.0.0.1:1");
    c.cacert = Some("/nonexistent/ca.pem".into());
    let e = login(&c).err().map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|m| m.starts_with("cannot read the CA bundle")),
        "{e:?}"
    );
}

/// A self-signed certificate for 127.0.0.1 and its key.
fn self_signed() -> (
    openssl::x509::X509,
    openssl::pkey::PKey<openssl::pkey::Private>,
) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509, X509NameBuilder};

    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "127.0.0.1").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

/// A one-shot https server on loopback with `cert`: answers `reply` to each of `n`
/// connections (a refused handshake counts).
fn fake_tls_keystone(
    cert: &openssl::x509::X509,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    reply: String,
    n: usize,
) -> String {
    use openssl::ssl::{SslAcceptor, SslMethod};

    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key(key).unwrap();
    acceptor.set_certificate(cert).unwrap();
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for _ in 0..n {
            let (conn, _) = listener.accept().unwrap();
            let Ok(tls) = acceptor.accept(conn) else {
                continue;
            };
            let mut reader = BufReader::new(tls);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let mut tls = reader.into_inner();
            let _ = tls.write_all(reply.as_bytes());
            let _ = tls.shutdown();
        }
    });
    url
}

#[test]
fn https_keystone_is_checked_against_the_ca_bundle() {
    let (cert, key) = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.to_pem().unwrap()).unwrap();
    let body = catalog_json().to_string();
    let reply = http_reply("201 Created", "X-Subject-Token: tls-token\r\n", &body);
    let url = fake_tls_keystone(&cert, &key, reply, 2);
    // With the bundle (OS_CACERT): the certificate is trusted.
    let mut creds = password_creds(&format!("{url}/v3"));
    creds.cacert = Some(ca);
    let session = login(&creds);
    assert_eq!(
        session.as_ref().map(Session::token).ok(),
        Some("tls-token"),
        "{session:?}"
    );
    // With the system's certificates: refused, an error and not a panic.
    creds.cacert = None;
    let e = login(&creds).err();
    assert!(
        matches!(&e, Some(Error::Transport(m)) if m.contains("certificate")),
        "{e:?}"
    );
}
