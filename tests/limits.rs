//! Limits and small holes, end to end on the real binaries: property and member quotas
//! (through glance-api with the embedded and with a remote registry, and on the registry API
//! directly), who may list `/shared-images/MEMBER`, creating without a project, `Location`
//! headers from `public_endpoint` or the bound address (never `Host`), and what the registry
//! API checks and hides (locations, statuses, credentials in listings, loopback by default).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, REGISTRY_CONF, Reply, Server};
use serde_json::{Value, json};

const API_CONF: &str = "[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
workers = 4
default_store = file
filesystem_store_datadir = {dir}/images
";

const QUOTAS: &str = "image_property_quota = 3\nimage_member_quota = 2\n";

/// glance-api with `extra` options, on the embedded registry or on a remote glance-registry
/// that gets `registry_extra`.
struct Env {
    api: Server,
    _registry: Option<Server>,
    c: Client,
}

fn env(remote: bool, extra: &str, registry_extra: &str) -> Env {
    let (registry, line) = common::registry_for_api(remote, registry_extra);
    let api = Server::start("glance-api", &format!("{API_CONF}{line}{extra}"), false);
    let c = Client::new(&api.base);
    Env {
        api,
        _registry: registry,
        c,
    }
}

/// Identity headers of a noauth caller of project `tenant` (None: no project).
fn who(tenant: Option<&str>, roles: &str) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("X-Auth-Token", "tok".to_string()),
        ("X-Identity-Status", "Confirmed".to_string()),
        ("X-User-Id", "user".to_string()),
        ("X-Roles", roles.to_string()),
    ];
    if let Some(t) = tenant {
        h.push(("X-Tenant", t.to_string()));
    }
    h
}

fn refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn send(
    c: &Client,
    method: &str,
    path: &str,
    h: &[(&'static str, String)],
    extra: &[(&str, &str)],
) -> Reply {
    let mut all = refs(h);
    all.extend_from_slice(extra);
    c.request(method, path, &all, None)
}

fn send_json(
    c: &Client,
    method: &str,
    path: &str,
    h: &[(&'static str, String)],
    body: &Value,
) -> Reply {
    let mut all = refs(h);
    all.push(("Content-Type", "application/json"));
    let bytes = body.to_string();
    c.request(method, path, &all, Some(bytes.as_bytes()))
}

/// The detail line of an error reply (the last non-empty line of the text body).
fn detail(r: &Reply) -> String {
    r.text()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn quotas_through_the_api(remote: bool) {
    // With a remote registry, the registry's quotas are the ones that apply.
    let (api_extra, reg_extra) = if remote { ("", QUOTAS) } else { (QUOTAS, "") };
    let e = env(remote, api_extra, reg_extra);
    let a = who(Some("A"), "member");
    let props = |n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("x-image-meta-property-p{i}"), "v".to_string()))
            .collect()
    };
    let create = |n: usize| {
        let p = props(n);
        let extra: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        send(&e.c, "POST", "/v1/images", &a, &extra)
    };
    let r = create(4);
    assert_status!(r, 413);
    assert!(
        detail(&r).contains("Too many image properties: 4 given, image_property_quota is 3"),
        "{}",
        r.text()
    );
    let r = create(3);
    assert_status!(r, 201);
    let id = r.json()["image"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = format!("/v1/images/{id}");
    // A merging PUT is counted after the merge.
    let r = send(
        &e.c,
        "PUT",
        &path,
        &a,
        &[
            ("x-glance-registry-purge-props", "false"),
            ("x-image-meta-property-extra", "1"),
        ],
    );
    assert_status!(r, 413);
    assert!(
        detail(&r).contains("image_property_quota is 3"),
        "{}",
        r.text()
    );
    // Overwriting existing ones in a merge, or replacing the set, is fine.
    let r = send(
        &e.c,
        "PUT",
        &path,
        &a,
        &[
            ("x-glance-registry-purge-props", "false"),
            ("x-image-meta-property-p0", "changed"),
        ],
    );
    assert_status!(r, 200);
    let r = send(
        &e.c,
        "PUT",
        &path,
        &a,
        &[("x-image-meta-property-only", "1")],
    );
    assert_status!(r, 200);
    assert_eq!(r.json()["image"]["properties"], json!({"only": "1"}));

    // Members: replace and add.
    let members = format!("{path}/members");
    let body = |ids: &[&str]| json!({"memberships": ids.iter().map(|m| json!({"member_id": m})).collect::<Vec<_>>()});
    let r = send_json(&e.c, "PUT", &members, &a, &body(&["B", "C", "D"]));
    assert_status!(r, 413);
    assert!(
        detail(&r).contains("Too many image members: 3 given, image_member_quota is 2"),
        "{}",
        r.text()
    );
    assert_status!(
        send_json(&e.c, "PUT", &members, &a, &body(&["B", "C"])),
        204
    );
    let r = send(&e.c, "PUT", &format!("{members}/D"), &a, &[]);
    assert_status!(r, 413);
    assert!(
        detail(&r).contains("image_member_quota is 2"),
        "{}",
        r.text()
    );
    assert_status!(send(&e.c, "PUT", &format!("{members}/B"), &a, &[]), 204);
    let r = send(&e.c, "GET", &members, &a, &[]);
    assert_eq!(r.json()["members"].as_array().map(Vec::len), Some(2));
}

#[test]
fn quotas_embedded() {
    quotas_through_the_api(false);
}

#[test]
fn quotas_remote_registry() {
    quotas_through_the_api(true);
}

fn shared_images_access(remote: bool) {
    let e = env(remote, "", "");
    let a = who(Some("A"), "member");
    let b = who(Some("B"), "member");
    let c = who(Some("C"), "member");
    let admin = who(Some("ops"), "admin");
    let r = send(
        &e.c,
        "POST",
        "/v1/images",
        &a,
        &[("x-image-meta-name", "s")],
    );
    assert_status!(r, 201);
    let id = r.json()["image"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_status!(
        send(&e.c, "PUT", &format!("/v1/images/{id}/members/B"), &a, &[]),
        204
    );
    let listed = json!({"shared_images": [{"image_id": id, "can_share": false}]});
    let r = send(&e.c, "GET", "/v1/shared-images/B", &b, &[]);
    assert_status!(r, 200);
    assert_eq!(r.json(), listed);
    assert_eq!(
        send(&e.c, "GET", "/v1/shared-images/B", &admin, &[]).json(),
        listed
    );
    assert_eq!(
        e.c.get("/v1/shared-images/B").json(),
        listed,
        "noauth admin"
    );
    // Anyone else: hidden like an invisible image.
    for other in [&c, &a] {
        assert_status!(send(&e.c, "GET", "/v1/shared-images/B", other, &[]), 404);
    }
    assert_status!(send(&e.c, "HEAD", "/v1/shared-images/B", &b, &[]), 200);
    for method in ["POST", "PUT", "DELETE"] {
        let r = send(&e.c, method, "/v1/shared-images/B", &b, &[]);
        assert_status!(r, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
}

#[test]
fn shared_images_access_embedded() {
    shared_images_access(false);
}

#[test]
fn shared_images_access_remote_registry() {
    shared_images_access(true);
}

fn creating_needs_a_project(remote: bool) {
    let e = env(remote, "", "");
    let r = send(&e.c, "POST", "/v1/images", &who(None, "member"), &[]);
    assert_status!(r, 403);
    assert!(
        detail(&r).contains("Creating images requires a project-scoped token"),
        "{}",
        r.text()
    );
    assert_eq!(
        e.c.get("/v1/images/detail?is_public=none").json(),
        json!({"images": []})
    );
    // Admins may (their images may have no owner), as may anyone with a project.
    assert_status!(
        send(&e.c, "POST", "/v1/images", &who(None, "admin"), &[]),
        201
    );
    assert_status!(
        send(&e.c, "POST", "/v1/images", &who(Some("A"), "member"), &[]),
        201
    );
}

#[test]
fn creating_needs_a_project_embedded() {
    creating_needs_a_project(false);
}

#[test]
fn creating_needs_a_project_remote_registry() {
    creating_needs_a_project(true);
}

/// Sends one raw HTTP/1.1 request with the given `Host` and returns the reply's `Location`
/// header and body.
fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    host: &str,
) -> (Option<String>, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    (location, body.to_string())
}

#[test]
fn location_header_never_comes_from_host() {
    let e = env(false, "", "");
    let (loc, _) = raw(e.api.addr, "POST", "/v1/images", "evil.example:666");
    let loc = loc.unwrap_or_default();
    assert!(
        loc.starts_with(&format!("http://{}/v1/images/", e.api.addr)),
        "{loc}"
    );
    let id = loc.rsplit('/').next().unwrap_or_default().to_string();
    let (head_loc, _) = raw(
        e.api.addr,
        "HEAD",
        &format!("/v1/images/{id}"),
        "evil.example",
    );
    assert_eq!(head_loc.as_deref(), Some(loc.as_str()));
    let (_, versions) = raw(e.api.addr, "GET", "/versions", "evil.example");
    assert!(!versions.contains("evil"), "{versions}");
    assert!(
        versions.contains(&format!("http://{}/v1/", e.api.addr)),
        "{versions}"
    );
}

#[test]
fn location_header_from_public_endpoint() {
    let e = env(
        false,
        "public_endpoint = https://images.example.com:9292/\n",
        "",
    );
    let (loc, _) = raw(e.api.addr, "POST", "/v1/images", "evil.example");
    let loc = loc.unwrap_or_default();
    assert!(
        loc.starts_with("https://images.example.com:9292/v1/images/"),
        "{loc}"
    );
    let id = loc.rsplit('/').next().unwrap_or_default().to_string();
    let r = e.c.request("HEAD", &format!("/v1/images/{id}"), &[], None);
    assert_eq!(r.header("location"), Some(loc.as_str()));
    let r = e.c.request(
        "PUT",
        &format!("/v1/images/{id}"),
        &[("x-image-meta-name", "n")],
        None,
    );
    assert_eq!(r.header("location"), Some(loc.as_str()));
    let v = e.c.get("/versions").json();
    let hrefs: Vec<&str> = v["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["links"][0]["href"].as_str())
        .collect();
    assert_eq!(hrefs.first(), Some(&"https://images.example.com:9292/v2/"));
    assert_eq!(hrefs.last(), Some(&"https://images.example.com:9292/v1/"));
}

#[test]
fn invalid_public_endpoint_stops_the_api() {
    let dir = common::tempdir();
    let conf = common::write_config(
        dir.path(),
        "glance-api",
        &format!("{API_CONF}public_endpoint = https://u:secret@images.example.com\n"),
    );
    match Server::spawn("glance-api", dir.path(), &conf) {
        Ok(_) => panic!("glance-api started with user-info in public_endpoint"),
        Err((_, stderr)) => {
            assert!(stderr.contains("public_endpoint"), "{stderr}");
            assert!(stderr.contains("user-info"), "{stderr}");
            assert!(!stderr.contains("secret"), "{stderr}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The registry API directly

fn registry(extra: &str) -> (Server, Client) {
    let server = Server::start("glance-registry", &format!("{REGISTRY_CONF}{extra}"), true);
    let client = Client::new(&server.base);
    (server, client)
}

#[test]
fn registry_binds_loopback_by_default() {
    let server = Server::start(
        "glance-registry",
        "[DEFAULT]\nbind_port = 0\nsql_connection = sqlite:///{dir}/r.sqlite\n",
        true,
    );
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
}

#[test]
fn registry_enforces_quotas_and_sizes() {
    let (_s, c) = registry(QUOTAS);
    let a = who(Some("A"), "member");
    let r = send_json(
        &c,
        "POST",
        "/images",
        &a,
        &json!({"image": {"id": "q-1", "properties": {"a": "1", "b": "2", "c": "3", "d": "4"}}}),
    );
    assert_status!(r, 413);
    assert!(
        detail(&r).contains("image_property_quota is 3"),
        "{}",
        r.text()
    );
    let r = send_json(
        &c,
        "POST",
        "/images",
        &a,
        &json!({"image": {"id": "q-1", "properties": {"a": "1", "b": "2", "c": "3"}}}),
    );
    assert_status!(r, 200);
    // Merge (no purge header) past the quota.
    let r = send_json(
        &c,
        "PUT",
        "/images/q-1",
        &a,
        &json!({"image": {"properties": {"d": "4"}}}),
    );
    assert_status!(r, 413);
    let big = "v".repeat(65537);
    let r = send_json(
        &c,
        "PUT",
        "/images/q-1",
        &a,
        &json!({"image": {"properties": {"a": big}}}),
    );
    assert_status!(r, 400);
    assert!(detail(&r).contains("property 'a'"), "{}", r.text());
    let r = send_json(
        &c,
        "PUT",
        "/images/q-1",
        &a,
        &json!({"image": {"properties": {"k".repeat(256): "v"}}}),
    );
    assert_status!(r, 400);
    let r = send_json(
        &c,
        "PUT",
        "/images/q-1/members",
        &a,
        &json!({"memberships": [{"member_id": "B"}, {"member_id": "C"}, {"member_id": "D"}]}),
    );
    assert_status!(r, 413);
    assert!(
        detail(&r).contains("image_member_quota is 2"),
        "{}",
        r.text()
    );
}

#[test]
fn registry_shared_images_access() {
    let (_s, c) = registry("");
    let a = who(Some("A"), "member");
    let r = send_json(&c, "POST", "/images", &a, &json!({"image": {"id": "sh-1"}}));
    assert_status!(r, 200);
    assert_status!(send(&c, "PUT", "/images/sh-1/members/B", &a, &[]), 204);
    let r = send(
        &c,
        "GET",
        "/shared-images/B",
        &who(Some("B"), "member"),
        &[],
    );
    assert_eq!(r.json()["shared_images"][0]["image_id"], "sh-1");
    assert_status!(send(&c, "GET", "/shared-images/B", &a, &[]), 404);
    assert_status!(c.get("/shared-images/B"), 200);
    let r = c.request("DELETE", "/shared-images/B", &[], None);
    assert_status!(r, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn registry_validates_locations_and_statuses() {
    let (_s, c) = registry("");
    let post = |image: Value| c.json("POST", "/images", &json!({ "image": image }));
    for bad in ["bogus://x/y", "not a uri", ""] {
        let r = post(json!({"location": bad}));
        assert_status!(r, 400);
        assert!(
            detail(&r).to_lowercase().contains("location"),
            "{bad}: {}",
            r.text()
        );
    }
    for status in ["saving", "killed", "deleted", "pending_delete"] {
        let r = post(json!({"status": status}));
        assert_status!(r, 400);
        assert!(detail(&r).contains("'status'"), "{status}: {}", r.text());
    }
    // What glance-api sends: queued, or active with a location.
    let r = post(json!({"id": "st-1", "status": "queued"}));
    assert_status!(r, 200);
    let r = post(json!({"id": "st-2", "status": "active", "location": "http://example.com/img"}));
    assert_status!(r, 200);
    let put = |id: &str, image: Value| {
        c.json("PUT", &format!("/images/{id}"), &json!({ "image": image }))
    };
    let r = put("st-2", json!({"status": "queued"}));
    assert_status!(r, 400);
    assert!(
        detail(&r).contains("cannot go from 'active' to 'queued'"),
        "{}",
        r.text()
    );
    assert_status!(put("st-1", json!({"location": "swift:/nope"})), 400);
    for next in ["saving", "active", "deleted", "pending_delete"] {
        assert_status!(put("st-1", json!({"status": next})), 200);
    }
    assert_status!(put("st-1", json!({"status": "active"})), 400);
}

#[test]
fn registry_listings_hide_store_credentials() {
    let (_s, c) = registry("");
    let uri = "swift://acct:user:s3cret@auth.example.com/v1/container/obj-1";
    let r = c.json(
        "POST",
        "/images",
        &json!({"image": {"id": "cred-1", "location": uri, "is_public": true}}),
    );
    assert_status!(r, 200);
    // GET /images/<id> (what glance-api reads before touching data) has the full location.
    assert_eq!(c.get("/images/cred-1").json()["image"]["location"], uri);
    let detail = c.get("/images/detail").json();
    let shown = detail["images"][0]["location"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !shown.contains("s3cret") && !shown.contains("acct"),
        "{shown}"
    );
    assert!(shown.starts_with("swift://auth.example.com/"), "{shown}");
    assert!(!c.get("/images").text().contains("s3cret"));
}
