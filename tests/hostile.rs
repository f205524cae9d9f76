//! The location policy against hostile servers: the real glance-api binary, and small fake
//! servers on loopback addresses that record every request (tests/common/hostile.rs).
//!
//! All of 127.0.0.0/8 is loopback on Linux, so one fake server can be allowed
//! (`location_allowed_hosts = 127.0.0.2`) while another, on 127.0.0.3, is forbidden like
//! any private address: it must never receive a request. Expected everywhere: a clean
//! 4xx/5xx with a fixed text, glance-api alive and serving afterwards, the detail in its log.

mod common;

use std::time::{Duration, Instant};

use common::hostile::{Answer, FakeServer, Recorded};
use common::{Client, Reply, Server};

/// The fixed texts of the replies.
const UNUSABLE: &str = "The image location could not be used";
const BAD_ANSWER: &str = "The image location answered with an error or an invalid reply";

/// glance-api with the embedded registry, Swift known (for client-supplied Swift
/// locations; the configured account is never contacted), a debug log in `{dir}/api.log`.
fn api(extra: &str) -> (Server, Client) {
    let conf = format!(
        "[DEFAULT]\nbind_host = 127.0.0.1\nbind_port = 0\nworkers = 4\n\
         sql_connection = sqlite:///{{dir}}/api.sqlite\ndb_auto_create = True\n\
         filesystem_store_datadir = {{dir}}/images\n\
         debug = True\nlog_file = {{dir}}/api.log\n\
         known_stores = file, http, swift, s3\n{extra}"
    );
    let api = Server::start("glance-api", &conf, false);
    let c = Client::new(&api.base);
    (api, c)
}

fn log(api: &Server) -> String {
    std::fs::read_to_string(api.dir.join("api.log")).unwrap_or_default()
}

/// Registers `location` (with a declared size when given, which skips sizing it).
fn register(c: &Client, location: &str, size: Option<&str>) -> Reply {
    let mut headers = vec![
        ("x-image-meta-name", "hostile"),
        ("x-image-meta-location", location),
    ];
    if let Some(s) = size {
        headers.push(("x-image-meta-size", s));
    }
    c.request("POST", "/v1/images", &headers, None)
}

fn image_id(r: &Reply) -> String {
    r.json()["image"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {}", r.text()))
        .to_string()
}

/// glance-api still answers, and the reply body is the fixed text without the remote's.
fn assert_alive(c: &Client) {
    assert_status!(c.get("/v1/images"), 200);
}

fn assert_fixed(r: &Reply, status: u16, text: &str, leaks: &[&str]) {
    assert_status!(r, status);
    let body = r.text();
    assert!(body.contains(text), "{body}");
    for leak in leaks {
        assert!(!body.contains(leak), "reply leaks {leak:?}: {body}");
    }
}

/// Sends a GET over a plain socket and counts the bytes until glance-api closes the
/// connection (a download cut off midway cannot be read with the test client), within
/// 30 s.
fn raw_get(api: &Server, path: &str) -> usize {
    use std::io::{Read, Write};
    let addr = api.base.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut total = 0;
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("GET {path}: {e} after {total} bytes"),
        }
    }
}

/// A Swift v1 auth server handing out `storage_url`, which answers nothing else.
fn swift_auth(ip: &str, storage_url: impl Fn() -> String + Send + Sync + 'static) -> FakeServer {
    FakeServer::start(ip, move |req: &Recorded| {
        if req.path.starts_with("/auth/") {
            let url = storage_url();
            Answer::reply(
                "200 OK",
                &[("X-Storage-Url", &url), ("X-Auth-Token", "AUTH_tk_hostile")],
                b"",
            )
        } else {
            Answer::reply("404 Not Found", &[], b"")
        }
    })
}

/// The v1 auth answer of a fake Swift that is its own storage server (`None` for other
/// requests).
fn self_storage_auth(req: &Recorded) -> Option<Answer> {
    if !req.path.starts_with("/auth/") {
        return None;
    }
    let host = req.header("host").unwrap_or("127.0.0.2").to_string();
    Some(Answer::reply(
        "200 OK",
        &[
            ("X-Storage-Url", &format!("http://{host}/v1/AUTH_x")),
            ("X-Auth-Token", "tk"),
        ],
        b"",
    ))
}

/// A server that must never be contacted.
fn forbidden() -> FakeServer {
    FakeServer::start("127.0.0.3", |_| {
        Answer::reply("200 OK", &[], b"this must never be served")
    })
}

/// (a) A client's Swift auth server (allowed) hands out a storage URL on a forbidden
/// address: registering and reading are refused, the forbidden server gets nothing.
#[test]
fn swift_storage_url_on_a_forbidden_address() {
    let target = forbidden();
    let url = format!("http://{}/v1/AUTH_victim", target.host());
    let auth = swift_auth("127.0.0.2", move || url.clone());
    let (api, c) = api("location_allowed_hosts = 127.0.0.2\n");
    let location = format!(
        "swift+http://acct:user:KEY-SECRET-1@{}/auth/v1.0/images/obj",
        auth.host()
    );
    let r = register(&c, &location, None);
    assert_fixed(&r, 400, UNUSABLE, &["127.0.0.3", "KEY-SECRET-1"]);
    // With a declared size it is registered (no request needed), but cannot be read.
    let r = register(&c, &location, Some("10"));
    assert_status!(r, 201);
    let id = image_id(&r);
    let g = c.get(&format!("/v1/images/{id}"));
    assert_fixed(
        &g,
        400,
        UNUSABLE,
        &["127.0.0.3", &target.addr.port().to_string()],
    );
    // Deleting the image (which would DELETE the object) does not reach it either.
    let d = c.request("DELETE", &format!("/v1/images/{id}"), &[], None);
    assert!(d.status < 500 || d.status == 502, "{}", d.status);
    assert!(!auth.requests().is_empty(), "the auth server was asked");
    assert!(
        target.requests().is_empty(),
        "the forbidden server got {:?}",
        target.requests()
    );
    assert_alive(&c);
    let log = log(&api);
    assert!(log.contains("127.0.0.3"), "the log has the detail");
    assert!(!log.contains("KEY-SECRET-1"), "the log has the key");
}

/// (b) A Swift announcing 2^50 segments: a clean 400/502, and glance-api stays up.
#[test]
fn swift_announcing_two_to_the_fifty_segments() {
    let swift = FakeServer::start("127.0.0.2", |req: &Recorded| {
        if let Some(auth) = self_storage_auth(req) {
            return auth;
        }
        if req.path.contains("format=json") {
            return Answer::reply("200 OK", &[("Content-Type", "application/json")], b"[]");
        }
        Answer::reply(
            "200 OK",
            &[
                ("X-Object-Manifest", "images/obj-"),
                ("X-Object-Meta-Glance-Segments", "1125899906842624"),
            ],
            b"",
        )
    });
    let (api, c) = api("location_allowed_hosts = 127.0.0.2\n");
    let location = format!(
        "swift+http://acct:user:key@{}/auth/v1.0/images/obj",
        swift.host()
    );
    let r = register(&c, &location, None);
    assert_fixed(&r, 400, UNUSABLE, &["1125899906842624"]);
    let r = register(&c, &location, Some("10"));
    assert_status!(r, 201);
    let g = c.get(&format!("/v1/images/{}", image_id(&r)));
    assert_fixed(&g, 502, BAD_ANSWER, &["1125899906842624"]);
    assert_alive(&c);
    assert!(
        log(&api).contains("1125899906842624"),
        "the log has the detail"
    );
}

/// (c) An http location redirecting to a forbidden address: the redirect is not followed.
#[test]
fn http_redirect_to_a_forbidden_address() {
    let target = forbidden();
    let to = format!("http://{}/secret", target.host());
    let redirector = FakeServer::start("127.0.0.2", move |req: &Recorded| {
        let to = if req.path.starts_with("/metadata") {
            "http://169.254.169.254/latest/meta-data/".to_string()
        } else {
            to.clone()
        };
        Answer::reply("302 Found", &[("Location", &to)], b"")
    });
    let (_api, c) = api("location_allowed_hosts = 127.0.0.2\n");
    for path in ["/image", "/metadata"] {
        let location = format!("http://{}{path}", redirector.host());
        let r = register(&c, &location, None);
        assert_fixed(&r, 400, UNUSABLE, &["169.254", "127.0.0.3"]);
        let r = register(&c, &location, Some("10"));
        assert_status!(r, 201);
        let g = c.get(&format!("/v1/images/{}", image_id(&r)));
        assert_fixed(&g, 502, BAD_ANSWER, &["169.254", "127.0.0.3", "302"]);
    }
    assert_eq!(redirector.requests().len(), 4, "HEAD and GET, twice");
    assert!(target.requests().is_empty(), "{:?}", target.requests());
    assert_alive(&c);
}

/// (d) An S3 endpoint (and a Swift listing) streaming without end: bounded time and memory.
#[test]
fn endless_bodies() {
    let s3 = FakeServer::start("127.0.0.2", |req: &Recorded| {
        if req.path.contains("/error/") {
            Answer::Endless("HTTP/1.1 500 Internal Server Error".into())
        } else {
            Answer::Endless("HTTP/1.1 200 OK".into())
        }
    });
    let swift = FakeServer::start("127.0.0.2", |req: &Recorded| {
        if let Some(auth) = self_storage_auth(req) {
            return auth;
        }
        if req.path.contains("format=json") {
            // A listing that never ends.
            return Answer::Endless("HTTP/1.1 200 OK\r\nContent-Type: application/json".into());
        }
        Answer::reply("200 OK", &[("X-Object-Manifest", "images/obj-")], b"")
    });
    let (api, c) = api("location_allowed_hosts = 127.0.0.2\nimage_size_cap = 1048576\n");
    let started = Instant::now();
    // S3: an error page without end is a 502 at once.
    let err_loc = format!("s3://AKEY:SSECRET@{}/bucket/error/obj", s3.host());
    let r = register(&c, &err_loc, Some("10"));
    assert_status!(r, 201);
    let g = c.get(&format!("/v1/images/{}", image_id(&r)));
    assert_fixed(&g, 502, BAD_ANSWER, &["xxxx", "SSECRET"]);
    // S3: data without end is cut off at image_size_cap.
    let data_loc = format!("s3://AKEY:SSECRET@{}/bucket/data/obj", s3.host());
    let r = register(&c, &data_loc, Some("10"));
    assert_status!(r, 201);
    let id = image_id(&r);
    let got = raw_get(&api, &format!("/v1/images/{id}"));
    assert!(got <= (1 << 20) + 4096, "{got} bytes");
    // Swift: a listing without end is refused when sizing (400) and reading (502).
    let location = format!("swift+http://a:u:k@{}/auth/v1.0/images/obj", swift.host());
    assert_fixed(&register(&c, &location, None), 400, UNUSABLE, &["xxxx"]);
    let r = register(&c, &location, Some("10"));
    let g = c.get(&format!("/v1/images/{}", image_id(&r)));
    assert_fixed(&g, 502, BAD_ANSWER, &["xxxx"]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_alive(&c);
    assert!(!log(&api).contains("SSECRET"), "the log has the secret");
}

/// (e) Special addresses and names resolving to them are refused with 400 without any
/// connection when `location_allowed_hosts` does not list them.
#[test]
fn special_addresses_refused_without_a_connection() {
    let local = FakeServer::start("127.0.0.1", |_| Answer::reply("200 OK", &[], b"data"));
    let port = local.addr.port();
    let (_api, c) = api("");
    for location in [
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]/x".to_string(),
        "http://10.0.0.1/x".to_string(),
        "http://192.168.1.1/x".to_string(),
        "http://100.64.0.1/x".to_string(),
        "http://0.0.0.0/x".to_string(),
        format!("http://127.0.0.1:{port}/x"),
        format!("http://localhost:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://[::ffff:7f00:1]:{port}/x"),
        format!("swift+http://a:u:k@127.0.0.1:{port}/auth/v1.0/c/o"),
        format!("s3://a:s@127.0.0.1:{port}/bucket/key"),
    ] {
        for size in [None, Some("10")] {
            let r = register(&c, &location, size);
            assert_fixed(&r, 400, UNUSABLE, &[&port.to_string()]);
        }
    }
    // The same through an update of a queued image.
    let r = c.request("POST", "/v1/images", &[("x-image-meta-name", "q")], None);
    let id = image_id(&r);
    let u = c.request(
        "PUT",
        &format!("/v1/images/{id}"),
        &[(
            "x-image-meta-location",
            &format!("http://127.0.0.1:{port}/x"),
        )],
        None,
    );
    assert_fixed(&u, 400, UNUSABLE, &[]);
    assert!(local.requests().is_empty(), "{:?}", local.requests());
    // An unknown store is refused too.
    let (_api2, c2) = {
        let conf = "known_stores = file, http\n";
        let conf = format!(
            "[DEFAULT]\nbind_host = 127.0.0.1\nbind_port = 0\n\
             sql_connection = sqlite:///{{dir}}/api.sqlite\ndb_auto_create = True\n\
             filesystem_store_datadir = {{dir}}/images\n{conf}"
        );
        let s = Server::start("glance-api", &conf, false);
        let c = Client::new(&s.base);
        (s, c)
    };
    let r = register(&c2, "swift://a:u:k@1.2.3.4/auth/v1.0/c/o", Some("1"));
    assert_status!(r, 400);
    let up = c2.request(
        "POST",
        "/v1/images",
        &[
            ("x-image-meta-name", "u"),
            ("x-image-meta-store", "s3"),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(b"data"),
    );
    assert_status!(up, 400);
    assert_alive(&c);
}

/// (f) A remote's error text and port never reach the client; the log has them.
#[test]
fn remote_error_text_stays_in_the_log() {
    let remote = FakeServer::start("127.0.0.2", |_| {
        Answer::reply(
            "500 Internal Server Error",
            &[],
            b"REMOTE-BODY-7731 internal details",
        )
    });
    let (api, c) = api("location_allowed_hosts = 127.0.0.2\n");
    let port = remote.addr.port().to_string();
    let location = format!("http://user:PASS-SECRET-2@{}/img", remote.host());
    let r = register(&c, &location, None);
    assert_fixed(
        &r,
        400,
        UNUSABLE,
        &["REMOTE-BODY-7731", &port, "PASS-SECRET-2"],
    );
    let r = register(&c, &location, Some("10"));
    assert_status!(r, 201);
    let g = c.get(&format!("/v1/images/{}", image_id(&r)));
    assert_fixed(
        &g,
        502,
        BAD_ANSWER,
        &["REMOTE-BODY-7731", &port, "500", "PASS-SECRET-2"],
    );
    // A closed port: the same fixed text, no "connection refused".
    let closed = std::net::TcpListener::bind("127.0.0.2:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let r = register(&c, &format!("http://{closed}/img"), Some("10"));
    let g = c.get(&format!("/v1/images/{}", image_id(&r)));
    assert_fixed(
        &g,
        502,
        BAD_ANSWER,
        &["refused", &closed.port().to_string()],
    );
    assert_alive(&c);
    let log = log(&api);
    assert!(
        log.contains("REMOTE-BODY-7731"),
        "the log has the remote's answer"
    );
    assert!(!log.contains("PASS-SECRET-2"), "the log has the password");
}
