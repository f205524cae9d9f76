//! Identity, ownership, visibility and sharing end to end (spec §5.8, §7; issue 5).
//!
//! One visibility suite runs twice over: with `auth_strategy = noauth` and identity headers
//! (no Keystone needed), and with `auth_strategy = keystone` against a real Keystone with
//! real tokens of two projects and an admin. The Keystone tests need the Keystone of
//! `tests/services/keystone.sh` (or `KEYSTONE_URL`); without it they are skipped with a
//! printed reason, unless `GLANCE_TEST_REQUIRE_SERVICES=1`, which makes them fail.
//!
//! Keystone is never stopped here (other tests may share it): "Keystone down" is a
//! glance-api whose `auth_url` points at a proxy that the test closes, or at a port that
//! accepts and never answers.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::keystone::env_or;
use common::{Client, Reply, Server};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Servers

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registry {
    /// glance-api's embedded SQLite registry.
    Embedded,
    /// A remote glance-registry with the same auth_strategy as the API.
    Same,
    /// A remote glance-registry under noauth, trusting the identity glance-api forwards.
    Noauth,
}

struct Env {
    _api: Server,
    _registry: Option<Server>,
    c: Client,
}

const API_CONF: &str = "[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
workers = 4
default_store = file
filesystem_store_datadir = {dir}/images
";

/// Starts glance-api with `auth` (lines added to [DEFAULT] and after it) and a registry.
fn env(registry: Registry, auth: &str) -> Env {
    let (reg, reg_line) = match registry {
        Registry::Embedded => (
            None,
            "sql_connection = sqlite:///{dir}/api.sqlite\ndb_auto_create = True\n".to_string(),
        ),
        Registry::Same | Registry::Noauth => {
            let reg_auth = if registry == Registry::Same { auth } else { "" };
            let conf = format!("{}{reg_auth}", common::REGISTRY_CONF);
            let reg = Server::start("glance-registry", &conf, true);
            let line = format!(
                "registry_host = 127.0.0.1\nregistry_port = {}\n",
                reg.port()
            );
            (Some(reg), line)
        }
    };
    // `auth` may open other sections, so the registry line goes before it.
    let api = Server::start("glance-api", &format!("{API_CONF}{reg_line}{auth}"), false);
    let c = Client::new(&api.base);
    Env {
        _api: api,
        _registry: reg,
        c,
    }
}

type Headers = Vec<(String, String)>;

fn refs(h: &Headers) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn with(h: &Headers, extra: &[(&str, &str)]) -> Headers {
    let mut v = h.clone();
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

impl Env {
    fn req(&self, method: &str, path: &str, who: &Headers, body: Option<&[u8]>) -> Reply {
        self.c.request(method, path, &refs(who), body)
    }

    fn create(&self, who: &Headers, extra: &[(&str, &str)]) -> Reply {
        self.req("POST", "/v1/images", &with(who, extra), None)
    }

    fn listed(&self, who: &Headers, query: &str) -> Vec<String> {
        let r = self.req("GET", &format!("/v1/images{query}"), who, None);
        assert_status!(r, 200);
        r.json()["images"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| i["id"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn head(&self, who: &Headers, id: &str) -> u16 {
        self.req("HEAD", &format!("/v1/images/{id}"), who, None)
            .status
    }

    fn members(&self, who: &Headers, id: &str) -> Value {
        let r = self.req("GET", &format!("/v1/images/{id}/members"), who, None);
        assert_status!(r, 200);
        r.json()
    }

    fn put_json(&self, who: &Headers, path: &str, body: &Value) -> Reply {
        let bytes = body.to_string();
        self.req(
            "PUT",
            path,
            &with(who, &[("Content-Type", "application/json")]),
            Some(bytes.as_bytes()),
        )
    }
}

fn id_of(r: &Reply) -> String {
    assert_eq!(r.status, 201, "create failed: {}", r.text());
    r.json()["image"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The visibility suite, shared by both strategies

/// Three callers: two ordinary users of two projects, and an admin of a third project.
struct Who {
    demo: Headers,
    demo_project: String,
    alt: Headers,
    alt_project: String,
    admin: Headers,
    admin_project: String,
}

/// Spec §7.2–7.3 and §5.8 through glance-api, for any way of naming the callers.
fn visibility_suite(e: &Env, w: &Who) {
    // Ownership on create: non-admins own what they create; x-image-meta-owner is ignored.
    let r = e.create(
        &w.demo,
        &[
            ("x-image-meta-name", "demo-private"),
            ("x-image-meta-owner", "x"),
        ],
    );
    let private = id_of(&r);
    assert_eq!(r.json()["image"]["owner"], w.demo_project.as_str());
    assert_eq!(r.json()["image"]["is_public"], false);
    let public = id_of(&e.create(
        &w.alt,
        &[
            ("x-image-meta-name", "alt-public"),
            ("x-image-meta-is_public", "true"),
        ],
    ));
    // Admins choose the owner; empty means none.
    let r = e.create(
        &w.admin,
        &[
            ("x-image-meta-name", "no-owner"),
            ("x-image-meta-owner", ""),
        ],
    );
    let nobody = id_of(&r);
    assert_eq!(r.json()["image"]["owner"], Value::Null);
    let r = e.create(&w.admin, &[("x-image-meta-name", "admins")]);
    let admins = id_of(&r);
    assert_eq!(r.json()["image"]["owner"], w.admin_project.as_str());

    // Private images: invisible to the other project (404, never 403), also for members
    // routes, updates and deletes.
    assert_eq!(e.head(&w.demo, &private), 200);
    assert_eq!(e.head(&w.alt, &private), 404);
    let r = e.req("GET", &format!("/v1/images/{private}"), &w.alt, None);
    assert_status!(r, 404);
    let r = e.req(
        "GET",
        &format!("/v1/images/{private}/members"),
        &w.alt,
        None,
    );
    assert_status!(r, 404);
    let r = e.req(
        "PUT",
        &format!("/v1/images/{private}"),
        &with(&w.alt, &[("x-image-meta-name", "hijack")]),
        None,
    );
    assert_status!(r, 404);
    assert_status!(
        e.req("DELETE", &format!("/v1/images/{private}"), &w.alt, None),
        404
    );
    let r = e.req(
        "PUT",
        &format!("/v1/images/{private}/members/{}", w.alt_project),
        &w.alt,
        None,
    );
    assert_status!(r, 404);
    // Public images: visible to all, mutable by their owner only.
    assert_eq!(e.head(&w.demo, &public), 200);
    let r = e.req(
        "PUT",
        &format!("/v1/images/{public}"),
        &with(&w.demo, &[("x-image-meta-name", "hijack")]),
        None,
    );
    assert_status!(r, 404);
    // Null-owner images: anyone reads them by id, nobody but admins changes them, and the
    // listing leaves them out.
    assert_eq!(e.head(&w.demo, &nobody), 200);
    assert_eq!(e.head(&w.alt, &nobody), 200);
    assert_status!(
        e.req("DELETE", &format!("/v1/images/{nobody}"), &w.demo, None),
        404
    );

    // Listings: own + public + shared; non-admin is_public is ignored.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let s = |ids: &[&String]| sorted(ids.iter().map(|s| s.to_string()).collect());
    assert_eq!(sorted(e.listed(&w.demo, "")), s(&[&private, &public]));
    assert_eq!(sorted(e.listed(&w.alt, "")), s(&[&public]));
    assert_eq!(sorted(e.listed(&w.alt, "?is_public=false")), s(&[&public]));
    assert_eq!(sorted(e.listed(&w.alt, "?is_public=none")), s(&[&public]));
    // Admin: default = the same rule as a tenant; is_public=false every private image;
    // none everything.
    assert_eq!(sorted(e.listed(&w.admin, "")), s(&[&public, &admins]));
    assert_eq!(
        sorted(e.listed(&w.admin, "?is_public=false")),
        s(&[&private, &nobody, &admins])
    );
    assert_eq!(
        sorted(e.listed(&w.admin, "?is_public=none")),
        s(&[&private, &public, &nobody, &admins])
    );
    assert_status!(
        e.req("GET", "/v1/images?is_public=maybe", &w.admin, None),
        400
    );
    assert_eq!(e.head(&w.admin, &private), 200);

    // Only admins change the owner; for others it is silently ignored.
    let r = e.req(
        "PUT",
        &format!("/v1/images/{private}"),
        &with(&w.demo, &[("x-image-meta-owner", &w.alt_project)]),
        None,
    );
    assert_status!(r, 200);
    assert_eq!(r.json()["image"]["owner"], w.demo_project.as_str());

    // Sharing: demo shares with alt's project; alt now sees and lists it.
    let members_path = format!("/v1/images/{private}/members");
    let alt_member = format!("{members_path}/{}", w.alt_project);
    assert_status!(e.req("PUT", &alt_member, &w.demo, None), 204);
    assert_eq!(e.head(&w.alt, &private), 200);
    assert_eq!(sorted(e.listed(&w.alt, "")), s(&[&private, &public]));
    assert_eq!(
        e.members(&w.alt, &private),
        json!({"members": [{"member_id": w.alt_project, "can_share": false}]})
    );
    // Shared images are listed for the member itself (and admins), hidden from others.
    let shared_path = format!("/v1/shared-images/{}", w.alt_project);
    let shared = e.req("GET", &shared_path, &w.alt, None);
    assert_eq!(
        shared.json(),
        json!({"shared_images": [{"image_id": private, "can_share": false}]})
    );
    assert_status!(e.req("GET", &shared_path, &w.admin, None), 200);
    assert_status!(e.req("GET", &shared_path, &w.demo, None), 404);
    // A member may read but not change or delete the image.
    let r = e.req(
        "PUT",
        &format!("/v1/images/{private}"),
        &with(&w.alt, &[("x-image-meta-name", "hijack")]),
        None,
    );
    assert_status!(r, 404);
    // Without can_share a member cannot share further (404, not 403).
    let third = format!("{members_path}/third-project");
    assert_status!(e.req("PUT", &third, &w.alt, None), 404);
    assert_status!(e.req("DELETE", &alt_member, &w.alt, None), 404);
    // can_share delegation: re-adding with can_share=true lets alt share on.
    let r = e.put_json(
        &w.demo,
        &alt_member,
        &json!({"member": {"can_share": true}}),
    );
    assert_status!(r, 204);
    assert_status!(e.req("PUT", &third, &w.alt, None), 204);
    // Re-adding without a body keeps can_share.
    assert_status!(e.req("PUT", &alt_member, &w.demo, None), 204);
    let mut m = e.members(&w.demo, &private)["members"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    m.sort_by_key(|v| v["member_id"].as_str().unwrap_or("").to_string());
    let mut want = vec![
        json!({"member_id": w.alt_project, "can_share": true}),
        json!({"member_id": "third-project", "can_share": false}),
    ];
    want.sort_by_key(|v| v["member_id"].as_str().unwrap_or("").to_string());
    assert_eq!(m, want);
    // Removing, then re-adding without a body revives the membership.
    assert_status!(e.req("DELETE", &third, &w.demo, None), 204);
    assert_status!(e.req("DELETE", &third, &w.demo, None), 204);
    assert_status!(e.req("PUT", &third, &w.alt, None), 204);
    assert_eq!(
        e.members(&w.demo, &private)["members"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Replace-all, both body forms: alt (can_share) replaces the list with itself only.
    let r = e.put_json(
        &w.alt,
        &members_path,
        &json!({"memberships": [{"member_id": w.alt_project, "can_share": true}]}),
    );
    assert_status!(r, 204);
    assert_eq!(
        e.members(&w.demo, &private)["members"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let r = e.put_json(
        &w.demo,
        &members_path,
        &json!([{"member_id": w.alt_project}, {"member_id": "fourth", "can_share": false}]),
    );
    assert_status!(r, 204);
    let m = e.members(&w.demo, &private);
    assert_eq!(m["members"].as_array().map(Vec::len), Some(2));
    assert!(
        m["members"]
            .as_array()
            .is_some_and(|a| a.contains(&json!({"member_id": w.alt_project, "can_share": true}))),
        "an existing member listed without can_share keeps it: {m}"
    );
    // Unshared again: invisible again.
    let r = e.put_json(&w.demo, &members_path, &json!({"memberships": []}));
    assert_status!(r, 204);
    assert_eq!(e.head(&w.alt, &private), 404);
    assert_status!(e.req("PUT", &third, &w.alt, None), 404);
    // The admin sets the owner to alt's project: now alt owns it and demo cannot see it.
    let r = e.req(
        "PUT",
        &format!("/v1/images/{private}"),
        &with(&w.admin, &[("x-image-meta-owner", &w.alt_project)]),
        None,
    );
    assert_status!(r, 200);
    assert_eq!(r.json()["image"]["owner"], w.alt_project.as_str());
    assert_eq!(e.head(&w.demo, &private), 404);
    assert_eq!(e.head(&w.alt, &private), 200);
    // ... and clears it.
    let r = e.req(
        "PUT",
        &format!("/v1/images/{private}"),
        &with(&w.admin, &[("x-image-meta-owner", "")]),
        None,
    );
    assert_eq!(r.json()["image"]["owner"], Value::Null);
    assert_eq!(
        e.head(&w.demo, &private),
        200,
        "null owner: readable by all"
    );
    assert!(!e.listed(&w.demo, "").contains(&private));
    // Owners delete their own images.
    assert_status!(
        e.req("DELETE", &format!("/v1/images/{public}"), &w.alt, None),
        200
    );
    assert_eq!(e.head(&w.demo, &public), 404);
}

// ---------------------------------------------------------------------------------------------
// noauth

fn noauth_who() -> Who {
    let h = |tenant: &str, user: &str, roles: &str| -> Headers {
        [
            ("X-Auth-Token", "anything"),
            ("X-Identity-Status", "Confirmed"),
            ("X-Tenant", tenant),
            ("X-User", user),
            ("X-Roles", roles),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    Who {
        demo: h("demo-p", "demo-u", "member"),
        demo_project: "demo-p".into(),
        alt: h("alt-p", "alt-u", "Member"),
        alt_project: "alt-p".into(),
        admin: h("admin-p", "admin-u", "Admin"),
        admin_project: "admin-p".into(),
    }
}

#[test]
fn noauth_visibility_embedded() {
    visibility_suite(&env(Registry::Embedded, ""), &noauth_who());
}

#[test]
fn noauth_visibility_remote_registry() {
    visibility_suite(&env(Registry::Same, ""), &noauth_who());
}

/// The Diablo header rules of spec §7.1 and DECISIONS, through the API (and a remote
/// registry, which must see the same identity).
fn noauth_header_rules(registry: Registry) {
    let e = env(registry, "admin_role = operator\n");
    let none: Headers = vec![];
    // No token: admin without tenant; it creates null-owner images and cannot share (401).
    let r = e.create(&none, &[("x-image-meta-name", "a")]);
    let id = id_of(&r);
    assert_eq!(r.json()["image"]["owner"], Value::Null);
    let r = e.req("PUT", &format!("/v1/images/{id}/members/x"), &none, None);
    assert_status!(r, 401);
    // A token without Confirmed is ignored (still admin, no tenant).
    let unconfirmed: Headers = vec![
        ("X-Auth-Token".into(), "t".into()),
        ("X-Tenant".into(), "t1".into()),
    ];
    let r = e.create(&unconfirmed, &[("x-image-meta-name", "b")]);
    assert_eq!(r.json()["image"]["owner"], Value::Null);
    assert_eq!(
        e.listed(&unconfirmed, "?is_public=none").len(),
        2,
        "admin lists all"
    );
    // Confirmed: old names (X-User/X-Tenant/X-Role) and new ones (X-User-Id/X-Project-Id/
    // X-Roles); admin_role (here "operator") decides admin, case-insensitively.
    let old: Headers = [
        ("X-Auth-Token", "t"),
        ("X-Identity-Status", "Confirmed"),
        ("X-User", "u1"),
        ("X-Tenant", "t1"),
        ("X-Role", "member, admin"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = e.create(&old, &[("x-image-meta-name", "c")]);
    let c = id_of(&r);
    assert_eq!(r.json()["image"]["owner"], "t1");
    assert_eq!(e.head(&old, &id), 200, "null owner readable");
    assert!(
        e.listed(&old, "?is_public=none") == vec![c.clone()],
        "admin role is not admin_role"
    );
    let new: Headers = [
        ("X-Auth-Token", "t"),
        ("X-Identity-Status", "confirmed"),
        ("X-User-Id", "u2"),
        ("X-Project-Id", "p2"),
        ("X-Roles", "OPERATOR"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = e.create(&new, &[("x-image-meta-name", "d")]);
    assert_eq!(r.json()["image"]["owner"], "p2");
    assert_eq!(
        e.listed(&new, "?is_public=none").len(),
        4,
        "OPERATOR is admin"
    );
    // owner_is_tenant = False: the user owns.
    let e2 = env(registry, "owner_is_tenant = False\n");
    let r = e2.create(&old, &[("x-image-meta-name", "e")]);
    assert_eq!(r.json()["image"]["owner"], "u1");
}

#[test]
fn noauth_header_rules_embedded() {
    noauth_header_rules(Registry::Embedded);
}

#[test]
fn noauth_header_rules_remote_registry() {
    noauth_header_rules(Registry::Same);
}

// ---------------------------------------------------------------------------------------------
// Keystone

/// The test Keystone: its URL and the service credentials glance uses.
struct Keystone {
    url: String,
    service_user: String,
    service_password: String,
    service_project: String,
    agent: ureq::Agent,
}

/// A user's token and project id.
struct Token {
    token: String,
    project: String,
}

/// The Keystone to test against, or `None` (test skipped, reason printed) when it cannot be
/// reached and `GLANCE_TEST_REQUIRE_SERVICES` is not `1`.
fn keystone() -> Option<Keystone> {
    let (url, agent) = common::keystone::reach()?;
    Some(Keystone {
        url,
        service_user: env_or("KEYSTONE_SERVICE_USER", "glance"),
        service_password: env_or("KEYSTONE_SERVICE_PASSWORD", "glance"),
        service_project: env_or("KEYSTONE_SERVICE_PROJECT", "service"),
        agent,
    })
}

impl Keystone {
    /// A project-scoped password token (users of tests/services/keystone_seed.py).
    fn token(&self, user: &str, password: &str, project: &str) -> Token {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
        // The test Keystone (uWSGI over SQLite) sometimes drops a connection while another
        // request holds its database lock: a transport error is retried a few times.
        let mut attempt = 0;
        let mut r = loop {
            let sent = self
                .agent
                .post(&format!("{}/v3/auth/tokens?nocatalog", self.url))
                .header("Content-Type", "application/json")
                .send(body.to_string());
            match sent {
                Ok(r) => break r,
                Err(e) if attempt < 4 => {
                    attempt += 1;
                    eprintln!("token for {user}: {e}; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(200 * attempt));
                }
                Err(e) => panic!("token for {user}: {e}"),
            }
        };
        assert_eq!(r.status(), 201, "token for {user}");
        let token = r
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
            .unwrap_or_default();
        Token {
            token,
            project: v["token"]["project"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// Revokes a token (the user revokes its own).
    fn revoke(&self, token: &str) {
        let r = self
            .agent
            .delete(&format!("{}/v3/auth/tokens", self.url))
            .header("X-Auth-Token", token)
            .header("X-Subject-Token", token)
            .call()
            .unwrap_or_else(|e| panic!("revoke: {e}"));
        assert_eq!(r.status(), 204, "revoke");
    }

    /// glance config lines for `auth_strategy = keystone` against `auth_url`.
    fn conf(&self, auth_url: &str, extra_default: &str, extra_section: &str) -> String {
        format!(
            "auth_strategy = keystone\n{extra_default}\n[keystone_authtoken]\n\
             www_authenticate_uri = {}/v3\nauth_url = {auth_url}\nusername = {}\n\
             password = {}\nproject_name = {}\nhttp_request_timeout = 3\n{extra_section}",
            self.url, self.service_user, self.service_password, self.service_project
        )
    }

    fn who(&self) -> Who {
        let h = |t: &Token| vec![("X-Auth-Token".to_string(), t.token.clone())];
        let demo = self.token("demo", "demo", "demo");
        let alt = self.token("alt_demo", "alt_demo", "alt_demo");
        let admin = self.token(
            "admin",
            &env_or("KEYSTONE_ADMIN_PASSWORD", "admin"),
            "admin",
        );
        Who {
            demo: h(&demo),
            demo_project: demo.project,
            alt: h(&alt),
            alt_project: alt.project,
            admin: h(&admin),
            admin_project: admin.project,
        }
    }
}

fn token_headers(t: &Token) -> Headers {
    vec![("X-Auth-Token".to_string(), t.token.clone())]
}

fn keystone_visibility(registry: Registry) {
    let Some(ks) = keystone() else { return };
    let e = env(registry, &ks.conf(&ks.url, "", ""));
    let w = ks.who();
    visibility_suite(&e, &w);

    // Identity headers from clients are ignored: alt claiming demo's project and admin
    // gains nothing.
    let r = e.create(&w.demo, &[("x-image-meta-name", "mine")]);
    let mine = id_of(&r);
    let spoof = with(
        &w.alt,
        &[
            ("X-Identity-Status", "Confirmed"),
            ("X-Tenant", &w.demo_project),
            ("X-Project-Id", &w.demo_project),
            ("X-Roles", "admin"),
        ],
    );
    assert_eq!(e.head(&spoof, &mine), 404);
    let r = e.create(&spoof, &[("x-image-meta-name", "spoofed")]);
    assert_eq!(r.json()["image"]["owner"], w.alt_project.as_str());
    // ... nor do headers without a token.
    let no_token: Headers = vec![
        ("X-Identity-Status".into(), "Confirmed".into()),
        ("X-Tenant".into(), w.demo_project.clone()),
    ];
    assert_status!(e.req("GET", "/v1/images", &no_token, None), 401);
}

#[test]
fn keystone_visibility_embedded() {
    keystone_visibility(Registry::Embedded);
}

/// The remote registry validates the forwarded token itself.
#[test]
fn keystone_visibility_remote_keystone_registry() {
    keystone_visibility(Registry::Same);
}

/// The remote registry (noauth) trusts the identity glance-api resolved.
#[test]
fn keystone_visibility_remote_noauth_registry() {
    keystone_visibility(Registry::Noauth);
}

fn challenge(r: &Reply) -> Option<&str> {
    r.header("www-authenticate")
}

#[test]
fn keystone_missing_invalid_and_revoked_tokens_are_401() {
    let Some(ks) = keystone() else { return };
    let e = env(Registry::Embedded, &ks.conf(&ks.url, "", ""));
    let want = format!("Keystone uri=\"{}/v3\"", ks.url);
    for path in ["/v1/images", "/v1/images/detail", "/v1/shared-images/x"] {
        let r = e.c.get(path);
        assert_status!(r, 401);
        assert_eq!(challenge(&r), Some(want.as_str()), "{path}");
    }
    let r =
        e.c.request("POST", "/v1/images", &[("x-image-meta-name", "x")], None);
    assert_status!(r, 401);
    let bogus = [("X-Auth-Token", "gAAAAABnotarealtoken")];
    let r = e.c.request("GET", "/v1/images", &bogus, None);
    assert_status!(r, 401);
    assert_eq!(challenge(&r), Some(want.as_str()));
    assert!(!r.text().contains("notarealtoken"), "{}", r.text());

    // Revoked before first use: 401 at once.
    let t = ks.token("demo", "demo", "demo");
    ks.revoke(&t.token);
    assert_status!(e.req("GET", "/v1/images", &token_headers(&t), None), 401);

    // With the cache off, revocation shows on the next request.
    let nocache = env(
        Registry::Embedded,
        &ks.conf(&ks.url, "", "token_cache_time = -1\n"),
    );
    let t = ks.token("demo", "demo", "demo");
    assert_status!(
        nocache.req("GET", "/v1/images", &token_headers(&t), None),
        200
    );
    ks.revoke(&t.token);
    assert_status!(
        nocache.req("GET", "/v1/images", &token_headers(&t), None),
        401
    );

    // With the cache on, a validated token is trusted for token_cache_time (as with
    // keystonemiddleware): still 200 right after revocation.
    let t = ks.token("demo", "demo", "demo");
    assert_status!(e.req("GET", "/v1/images", &token_headers(&t), None), 200);
    ks.revoke(&t.token);
    assert_status!(e.req("GET", "/v1/images", &token_headers(&t), None), 200);
}

/// The registry under keystone answers 401 without a token too (direct callers).
#[test]
fn keystone_registry_requires_a_token() {
    let Some(ks) = keystone() else { return };
    let conf = format!("{}{}", common::REGISTRY_CONF, ks.conf(&ks.url, "", ""));
    let reg = Server::start("glance-registry", &conf, true);
    let c = Client::new(&reg.base);
    let r = c.get("/images");
    assert_status!(r, 401);
    assert!(challenge(&r).is_some_and(|h| h.starts_with("Keystone uri=")));
    let t = ks.token("demo", "demo", "demo");
    let r = c.request("GET", "/images", &[("X-Auth-Token", &t.token)], None);
    assert_status!(r, 200);
    let r = c.request("GET", "/images", &[("X-Auth-Token", "bogus")], None);
    assert_status!(r, 401);
}

fn anonymous_access(registry: Registry) {
    let Some(ks) = keystone() else { return };
    let e = env(
        registry,
        &ks.conf(&ks.url, "allow_anonymous_access = True", ""),
    );
    let w = ks.who();
    let public = id_of(&e.create(
        &w.demo,
        &[
            ("x-image-meta-name", "pub"),
            ("x-image-meta-is_public", "true"),
        ],
    ));
    let private = id_of(&e.create(&w.demo, &[("x-image-meta-name", "priv")]));
    let nobody = id_of(&e.create(
        &w.admin,
        &[("x-image-meta-name", "nobody"), ("x-image-meta-owner", "")],
    ));
    let anon: Headers = vec![];
    // Reads: public and null-owner images by id; listings show public ones only.
    assert_eq!(e.listed(&anon, ""), vec![public.clone()]);
    assert_eq!(e.listed(&anon, "?is_public=none"), vec![public.clone()]);
    assert_eq!(
        e.listed(&anon, "/detail?is_public=false"),
        vec![public.clone()]
    );
    assert_eq!(e.head(&anon, &public), 200);
    assert_eq!(e.head(&anon, &nobody), 200);
    assert_eq!(e.head(&anon, &private), 404);
    assert_status!(
        e.req("GET", &format!("/v1/images/{public}/members"), &anon, None),
        200
    );
    assert_status!(
        e.req("GET", &format!("/v1/images/{private}/members"), &anon, None),
        404
    );
    // Claiming an identity without a token changes nothing.
    let spoof: Headers = vec![
        ("X-Identity-Status".into(), "Confirmed".into()),
        ("X-Tenant".into(), w.demo_project.clone()),
        ("X-Roles".into(), "admin".into()),
    ];
    assert_eq!(e.head(&spoof, &private), 404);
    // Every write: 403.
    assert_status!(e.create(&anon, &[("x-image-meta-name", "x")]), 403);
    let r = e.req(
        "PUT",
        &format!("/v1/images/{public}"),
        &with(&anon, &[("x-image-meta-name", "x")]),
        None,
    );
    assert_status!(r, 403);
    assert_status!(
        e.req("DELETE", &format!("/v1/images/{public}"), &anon, None),
        403
    );
    assert_status!(
        e.req("DELETE", &format!("/v1/images/{nobody}"), &anon, None),
        403
    );
    let m = format!("/v1/images/{public}/members/someone");
    assert_status!(e.req("PUT", &m, &anon, None), 403);
    assert_status!(e.req("DELETE", &m, &anon, None), 403);
    let r = e.put_json(&anon, &format!("/v1/images/{public}/members"), &json!([]));
    assert_status!(r, 403);
    // A bad token is still 401; a good one still works.
    let bogus: Headers = vec![("X-Auth-Token".into(), "bogus".into())];
    assert_status!(e.req("GET", "/v1/images", &bogus, None), 401);
    assert_eq!(e.head(&w.demo, &private), 200);
    assert!(e.head(&anon, &public) == 200 && e.listed(&w.demo, "").len() == 2);
}

#[test]
fn keystone_anonymous_access_embedded() {
    anonymous_access(Registry::Embedded);
}

#[test]
fn keystone_anonymous_access_remote_keystone_registry() {
    anonymous_access(Registry::Same);
}

/// glance-api forwards an anonymous caller as anonymous: a noauth registry must not take
/// it for its no-token admin.
#[test]
fn keystone_anonymous_access_remote_noauth_registry() {
    anonymous_access(Registry::Noauth);
}

/// A TCP proxy to Keystone that the test can close (so "Keystone down" never stops the
/// shared Keystone).
struct Proxy {
    url: String,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let accept = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(&upstream) {
                            pipe(client, server);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener is dropped here: the port now refuses connections.
        });
        Proxy {
            url,
            stop,
            accept: Some(accept),
        }
    }

    /// Closes the listening socket (connections then fail as with a stopped Keystone).
    fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.close();
    }
}

fn pipe(a: TcpStream, b: TcpStream) {
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        thread::spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    };
    if let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) {
        copy(a, b2);
        copy(b, a2);
    }
}

#[test]
fn keystone_unreachable_is_503_never_an_open_door() {
    let Some(ks) = keystone() else { return };
    let mut proxy = Proxy::start(&ks.url);
    let e = env(Registry::Embedded, &ks.conf(&proxy.url, "", ""));
    let demo = ks.token("demo", "demo", "demo");
    let alt = ks.token("alt_demo", "alt_demo", "alt_demo");
    assert_status!(e.req("GET", "/v1/images", &token_headers(&demo), None), 200);
    proxy.close();
    // A token not validated before: 503, whatever the client claims.
    let r = e.req(
        "GET",
        "/v1/images",
        &with(
            &token_headers(&alt),
            &[("X-Identity-Status", "Confirmed"), ("X-Roles", "admin")],
        ),
        None,
    );
    assert_status!(r, 503);
    let r = e.req("POST", "/v1/images", &token_headers(&alt), None);
    assert_status!(r, 503);
    assert_status!(
        e.req(
            "GET",
            "/v1/images",
            &vec![("X-Auth-Token".into(), "junk".into())],
            None
        ),
        503
    );
    // No token: still 401 (nothing to ask Keystone).
    assert_status!(e.c.get("/v1/images"), 401);
    // A token validated within token_cache_time keeps working (as with keystonemiddleware).
    assert_status!(e.req("GET", "/v1/images", &token_headers(&demo), None), 200);

    // Keystone accepting connections but never answering: 503 after http_request_timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let silent_url = format!(
        "http://{}",
        silent.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let e2 = env(Registry::Embedded, &ks.conf(&silent_url, "", ""));
    let t0 = Instant::now();
    assert_status!(
        e2.req("GET", "/v1/images", &token_headers(&demo), None),
        503
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    drop(silent);

    // Wrong service password: 503 too (and the password is never shown).
    let conf = ks.conf(&ks.url, "", "").replace(
        &format!("password = {}", ks.service_password),
        "password = wrong-secret",
    );
    let e3 = env(Registry::Embedded, &conf);
    let r = e3.req("GET", "/v1/images", &token_headers(&demo), None);
    assert_status!(r, 503);
    assert!(!r.text().contains("wrong-secret"));
}

#[test]
fn keystone_config_errors_stop_the_server() {
    let dir = common::tempdir();
    let conf = common::write_config(
        dir.path(),
        "glance-api",
        &format!(
            "{API_CONF}auth_strategy = keystone\n[keystone_authtoken]\nauth_url = http://127.0.0.1:5000\n"
        ),
    );
    match Server::spawn("glance-api", dir.path(), &conf) {
        Ok(_) => panic!("glance-api started without Keystone credentials"),
        Err((_, stderr)) => {
            assert!(
                stderr.contains("auth_strategy = keystone needs username, password, project_name"),
                "{stderr}"
            );
        }
    }
}
