//! The `glance` tool logging in to a real Keystone by itself (issue 18): a `glance-api` under
//! `auth_strategy = keystone`, and the real `glance` binary with only an openrc-style
//! environment, with `OS_CLOUD` and a clouds.yaml, with an application credential, and with
//! the image endpoint taken from the catalog; wrong and missing credentials.
//!
//! Needs the Keystone of `tests/services/keystone.sh` (or `KEYSTONE_URL`), seeded with the
//! users of `tests/services/keystone_seed.py`; without it the tests are skipped with a
//! printed reason, unless `GLANCE_TEST_REQUIRE_SERVICES=1`, which makes them fail. Each
//! `glance` runs with a cleared environment (no `OS_*` of the caller), its home and working
//! directory in a temp dir. Whatever a test creates in Keystone (a region and endpoint, an
//! application credential) has a unique name and is deleted when the test ends.
//!
//! The tests run one at a time: they write to Keystone (failed logins are counted in the
//! user's row, a later good login resets the count, regions, endpoints and credentials come
//! and go), and the test Keystone's SQLite refuses concurrent writers ("database is locked",
//! which reached the client as a dropped connection when these tests ran in parallel).

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use common::Server;
use common::keystone::env_or;
use serde_json::{Value, json};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Keystone

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the other tests of this file off until the caller's guard drops.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// The test Keystone, reached with ureq.
struct Keystone {
    /// Without `/v3`.
    url: String,
    agent: ureq::Agent,
}

/// The Keystone to test against, or `None` (test skipped, reason printed) when it cannot be
/// reached and `GLANCE_TEST_REQUIRE_SERVICES` is not `1`.
fn keystone() -> Option<Keystone> {
    let (url, agent) = common::keystone::reach()?;
    Some(Keystone { url, agent })
}

/// A project-scoped token and what Keystone said about it.
struct Token {
    token: String,
    user_id: String,
    project_id: String,
}

impl Keystone {
    fn token(&self, user: &str, password: &str, project: &str) -> Token {
        let (token, v) =
            common::keystone::password_token(&self.url, &self.agent, user, password, project);
        let s = |p: &str| common::keystone::token_field(&v, p);
        Token {
            token,
            user_id: s("/token/user/id"),
            project_id: s("/token/project/id"),
        }
    }

    fn admin(&self) -> Token {
        self.token(
            "admin",
            &env_or("KEYSTONE_ADMIN_PASSWORD", "admin"),
            "admin",
        )
    }

    /// `method path` with `token`; returns status and JSON body.
    fn call(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}/v3{path}", self.url))
            .header("X-Auth-Token", token)
            .header("Content-Type", "application/json")
            .body(body.map(|b| b.to_string()).unwrap_or_default().into_bytes())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let mut r = self
            .agent
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (
            r.status().as_u16(),
            serde_json::from_str(&text).unwrap_or_default(),
        )
    }
}

/// Things made in Keystone for one test, deleted on drop (as `admin`, or as their owner).
struct Cleanup<'a> {
    ks: &'a Keystone,
    /// `(token, path)` to DELETE, in order.
    deletes: Vec<(String, String)>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for (token, path) in &self.deletes {
            let (status, _) = self.ks.call(token, "DELETE", path, None);
            if status != 204 {
                eprintln!("cleanup: DELETE {path}: {status}");
            }
        }
    }
}

/// glance-api under `auth_strategy = keystone` (embedded registry, file store).
fn api(ks: &Keystone) -> Server {
    let conf = format!(
        "{}auth_strategy = keystone\n[keystone_authtoken]\nwww_authenticate_uri = {url}/v3\n\
         auth_url = {url}\nusername = {}\npassword = {}\nproject_name = {}\n",
        common::EMBEDDED_API_CONF,
        env_or("KEYSTONE_SERVICE_USER", "glance"),
        env_or("KEYSTONE_SERVICE_PASSWORD", "glance"),
        env_or("KEYSTONE_SERVICE_PROJECT", "service"),
        url = ks.url,
    );
    Server::start("glance-api", &conf, false)
}

// ---------------------------------------------------------------------------------------------
// The glance binary

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Run {
        assert_eq!(self.code, 0, "glance failed: {self:#?}");
        self
    }
}

/// A user's working place: a temp dir that is `glance`'s home and working directory.
struct Desk {
    dir: TempDir,
}

impl Desk {
    fn new() -> Desk {
        Desk {
            dir: common::tempdir(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `glance ARGS…` with only `env` (plus `HOME`), stdin from `stdin` or nothing.
    fn glance(&self, env: &[(&str, &str)], args: &[&str], stdin: Option<&Path>) -> Run {
        let mut cmd = Command::new(common::bin("glance"));
        cmd.env_clear()
            .env("HOME", self.dir.path())
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match stdin {
            Some(p) => cmd.stdin(File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))),
            None => cmd.stdin(Stdio::null()),
        };
        let out = cmd.output().unwrap_or_else(|e| panic!("glance: {e}"));
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Writes `size` bytes of a pattern to `name`; returns them.
    fn image_file(&self, name: &str, size: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(self.path(name), &data).unwrap_or_else(|e| panic!("{name}: {e}"));
        data
    }
}

/// An openrc for `user` (password = user name, project = user name, as seeded).
fn openrc(ks: &Keystone, user: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("OS_AUTH_URL", format!("{}/v3", ks.url)),
        ("OS_USERNAME", user.to_string()),
        ("OS_PASSWORD", user.to_string()),
        ("OS_PROJECT_NAME", user.to_string()),
        ("OS_USER_DOMAIN_NAME", "Default".to_string()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".to_string()),
    ]
}

fn refs<'a>(env: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn with<'a>(env: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .copied()
        .collect();
    v.extend(extra.iter().filter(|(_, val)| !val.is_empty()).copied());
    v
}

fn added_id(r: &Run) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Added new image with ID: "))
        .unwrap_or_else(|| panic!("no ID in {r:#?}"))
        .trim()
        .to_string()
}

/// add (from stdin), index, show, download with `env`; the image must belong to `project`.
fn journey(desk: &Desk, env: &[(&str, &str)], name: &str, project: &str) {
    let data = desk.image_file("disk.raw", 256 * 1024 + 3);
    let add = desk.glance(
        env,
        &[
            "add",
            &format!("name={name}"),
            "disk_format=raw",
            "container_format=bare",
        ],
        Some(&desk.path("disk.raw")),
    );
    let id = added_id(add.ok());
    let index = desk.glance(env, &["index"], None);
    assert!(index.ok().stdout.contains(&id), "{index:#?}");
    let show = desk.glance(env, &["show", &id], None);
    assert!(
        show.ok().stdout.contains(&format!("Name: {name}")),
        "{show:#?}"
    );
    assert!(
        show.stdout.contains(&format!("Owner: {project}")),
        "the image belongs to the logged-in project: {show:#?}"
    );
    let copy = desk.path("copy.raw");
    let copy_s = copy.display().to_string();
    desk.glance(env, &["download", &id, "--file", &copy_s], None)
        .ok();
    let got = std::fs::read(&copy).unwrap_or_else(|e| panic!("copy: {e}"));
    assert!(got == data, "downloaded bytes differ");
    desk.glance(env, &["delete", "-f", &id], None).ok();
}

// ---------------------------------------------------------------------------------------------
// Journeys

#[test]
fn openrc_environment_logs_in_by_itself() {
    let _one = one_at_a_time();
    let Some(ks) = keystone() else { return };
    let api = api(&ks);
    let demo = ks.token("demo", "demo", "demo");
    let desk = Desk::new();
    let rc = openrc(&ks, "demo");
    let env = with(&refs(&rc), &[("OS_IMAGE_URL", &api.base)]);
    journey(&desk, &env, "openrc-image", &demo.project_id);
    // -H/-p name the server instead of OS_IMAGE_URL.
    let port = api.port().to_string();
    let r = desk.glance(&refs(&rc), &["-H", "127.0.0.1", "-p", &port, "index"], None);
    r.ok();
    // Without the openrc the server wants a token: the login above is what let us in.
    let r = desk.glance(&[], &["-H", "127.0.0.1", "-p", &port, "index"], None);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(r.stderr.contains("Not authorized"), "{r:#?}");
    // A token given with -A is used as it is: no login (a wrong password does not matter).
    let env = with(
        &env,
        &[("OS_PASSWORD", "wrong"), ("OS_AUTH_TOKEN", &demo.token)],
    );
    desk.glance(&env, &["index"], None).ok();
}

#[test]
fn clouds_yaml_with_secure_yaml() {
    let _one = one_at_a_time();
    let Some(ks) = keystone() else { return };
    let api = api(&ks);
    let alt = ks.token("alt_demo", "alt_demo", "alt_demo");
    let desk = Desk::new();
    let clouds = format!(
        "clouds:\n  testcloud:\n    auth:\n      auth_url: {}\n      username: alt_demo\n      \
         project_name: alt_demo\n      user_domain_name: Default\n      \
         project_domain_name: Default\n    region_name: RegionOne\n    interface: public\n",
        ks.url
    );
    let conf = desk.path("conf");
    std::fs::create_dir(&conf).unwrap_or_else(|e| panic!("mkdir: {e}"));
    std::fs::write(conf.join("clouds.yaml"), &clouds).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        conf.join("secure.yaml"),
        "clouds:\n  testcloud:\n    auth:\n      password: alt_demo\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = conf.join("clouds.yaml").display().to_string();
    let env = [
        ("OS_CLOUD", "testcloud"),
        ("OS_CLIENT_CONFIG_FILE", file.as_str()),
        ("OS_IMAGE_URL", api.base.as_str()),
    ];
    journey(&desk, &env, "cloud-image", &alt.project_id);
    // The user's ~/.config/openstack/clouds.yaml, named with --os-cloud.
    let user_conf = desk.path(".config/openstack");
    std::fs::create_dir_all(&user_conf).unwrap_or_else(|e| panic!("mkdir: {e}"));
    for f in ["clouds.yaml", "secure.yaml"] {
        std::fs::copy(conf.join(f), user_conf.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let r = desk.glance(
        &[("OS_IMAGE_URL", api.base.as_str())],
        &["--os-cloud", "testcloud", "index"],
        None,
    );
    r.ok();
    // The environment beats clouds.yaml: a wrong OS_PASSWORD is used, and refused.
    let r = desk.glance(&with(&env, &[("OS_PASSWORD", "not-it")]), &["index"], None);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr
            .starts_with("glance: Keystone refused the credentials (401)"),
        "{r:#?}"
    );
    // A cloud that is not there names the file.
    let r = desk.glance(&with(&env, &[("OS_CLOUD", "other")]), &["index"], None);
    assert_eq!(r.code, 1, "{r:#?}");
    assert_eq!(
        r.stderr,
        format!("glance: cloud 'other' (OS_CLOUD) is not in {file} (clouds there: testcloud)\n")
    );
}

#[test]
fn wrong_or_missing_credentials_are_clear_errors() {
    let _one = one_at_a_time();
    let Some(ks) = keystone() else { return };
    let desk = Desk::new();
    let rc = openrc(&ks, "demo");
    let base = refs(&rc);
    // Port 1: nothing may be contacted after a failed login.
    let down = [("OS_IMAGE_URL", "http://127.0.0.1:1")];
    let secret = "Wr0ng-Passw0rd";
    let wrong = with(&with(&base, &down), &[("OS_PASSWORD", secret)]);
    for args in [&["index"][..], &["-d", "index"], &["-v", "show", "x"]] {
        let r = desk.glance(&wrong, args, None);
        assert_eq!(r.code, 1, "{args:?}: {r:#?}");
        assert_eq!(
            r.stderr.lines().next(),
            Some(
                "glance: Keystone refused the credentials (401): The request you have made \
                 requires authentication."
            ),
            "{args:?}"
        );
        assert!(
            !r.stderr.contains(secret) && !r.stdout.contains(secret),
            "{r:#?}"
        );
    }
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("OS_PASSWORD", "")], "glance: OS_PASSWORD is not set\n"),
        (
            &[("OS_AUTH_URL", "")],
            "glance: OS_AUTH_URL is not set: set OS_AUTH_URL or use -A\n",
        ),
        (
            &[("OS_USERNAME", "")],
            "glance: OS_USERNAME is not set (nor OS_USER_ID)\n",
        ),
        (
            &[("OS_INTERFACE", "private")],
            "glance: OS_INTERFACE: interface 'private' is not public, internal or admin\n",
        ),
    ];
    for (change, want) in cases {
        let r = desk.glance(&with(&with(&base, &down), change), &["index"], None);
        assert_eq!((r.code, r.stderr.as_str()), (1, want), "{change:?}");
    }
    // Keystone that is not there.
    let r = desk.glance(
        &with(
            &with(&base, &down),
            &[("OS_AUTH_URL", "http://127.0.0.1:1/v3")],
        ),
        &["index"],
        None,
    );
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr
            .starts_with("glance: Failed to connect to Keystone at 127.0.0.1:1 (OS_AUTH_URL)"),
        "{r:#?}"
    );
    // Help and dry runs need no login.
    desk.glance(&wrong, &["help", "index"], None).ok();
    let r = desk.glance(&wrong, &["--dry-run", "add", "name=x"], None);
    assert!(r.ok().stdout.starts_with("Dry run."), "{r:#?}");
}

#[test]
fn the_image_endpoint_comes_from_the_catalog() {
    let _one = one_at_a_time();
    let Some(ks) = keystone() else { return };
    let api = api(&ks);
    let admin = ks.admin();
    let (status, services) = ks.call(&admin.token, "GET", "/services?type=image", None);
    assert_eq!(status, 200, "{services}");
    let service = services["services"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no image service seeded: {services}"))
        .to_string();
    // A region of our own, whose public image endpoint is this test's glance-api.
    let region = format!("glance-test-{}", uuid::Uuid::new_v4().simple());
    let mut cleanup = Cleanup {
        ks: &ks,
        deletes: Vec::new(),
    };
    let (status, r) = ks.call(
        &admin.token,
        "POST",
        "/regions",
        Some(json!({"region": {"id": region}})),
    );
    assert_eq!(status, 201, "{r}");
    cleanup
        .deletes
        .push((admin.token.clone(), format!("/regions/{region}")));
    let (status, e) = ks.call(
        &admin.token,
        "POST",
        "/endpoints",
        Some(
            json!({"endpoint": {"service_id": service, "interface": "public",
                     "region_id": region, "url": format!("{}/v2", api.base)}}),
        ),
    );
    assert_eq!(status, 201, "{e}");
    let endpoint = e["endpoint"]["id"].as_str().unwrap_or_default().to_string();
    // The endpoint goes before its region.
    cleanup
        .deletes
        .insert(0, (admin.token.clone(), format!("/endpoints/{endpoint}")));

    let demo = ks.token("demo", "demo", "demo");
    let desk = Desk::new();
    let rc = openrc(&ks, "demo");
    let env = with(&refs(&rc), &[("OS_REGION_NAME", &region)]);
    journey(&desk, &env, "catalog-image", &demo.project_id);
    // publicURL is public; there is no internal endpoint in the region: the error says what
    // the catalog has.
    let r = desk.glance(
        &with(&env, &[("OS_INTERFACE", "publicURL")]),
        &["index"],
        None,
    );
    r.ok();
    let r = desk.glance(
        &with(&env, &[("OS_INTERFACE", "internal")]),
        &["index"],
        None,
    );
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr.starts_with(&format!(
            "glance: the service catalog has no image endpoint with interface internal in \
             region {region} (it has: "
        )),
        "{r:#?}"
    );
    assert!(r.stderr.contains(&format!("public in {region}")), "{r:#?}");

    // The library: the seeded endpoint of RegionOne, as registered by keystone.sh.
    let creds = glance_rs::client::credentials::Credentials::discover(
        &[("region_name", "RegionOne".to_string())],
        &|k: &str| rc.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()),
    );
    let session = creds
        .ok()
        .flatten()
        .map(|c| glance_rs::client::keystone::login(&c));
    let url = match session {
        Some(Ok(s)) => s.image_url().map_err(|e| e.to_string()),
        other => panic!("login: {other:?}"),
    };
    let seeded = env_or("KEYSTONE_IMAGE_URL", "http://127.0.0.1:9292");
    assert_eq!(url, Ok(glance_rs::client::keystone::explicit_port(&seeded)));
    drop(cleanup);
}

#[test]
fn application_credentials_log_in_too() {
    let _one = one_at_a_time();
    let Some(ks) = keystone() else { return };
    let api = api(&ks);
    let demo = ks.token("demo", "demo", "demo");
    let name = format!("glance-test-{}", uuid::Uuid::new_v4().simple());
    let (status, made) = ks.call(
        &demo.token,
        "POST",
        &format!("/users/{}/application_credentials", demo.user_id),
        Some(json!({"application_credential": {"name": name}})),
    );
    assert_eq!(status, 201, "{made}");
    let id = made["application_credential"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let secret = made["application_credential"]["secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let _cleanup = Cleanup {
        ks: &ks,
        deletes: vec![(
            demo.token.clone(),
            format!("/users/{}/application_credentials/{id}", demo.user_id),
        )],
    };
    let desk = Desk::new();
    let auth_url = format!("{}/v3", ks.url);
    let by_id = [
        ("OS_AUTH_URL", auth_url.as_str()),
        ("OS_AUTH_TYPE", "v3applicationcredential"),
        ("OS_APPLICATION_CREDENTIAL_ID", id.as_str()),
        ("OS_APPLICATION_CREDENTIAL_SECRET", secret.as_str()),
        ("OS_IMAGE_URL", api.base.as_str()),
    ];
    journey(&desk, &by_id, "appcred-image", &demo.project_id);
    // By name with its user, the type inferred.
    let by_name = [
        ("OS_AUTH_URL", auth_url.as_str()),
        ("OS_APPLICATION_CREDENTIAL_NAME", name.as_str()),
        ("OS_APPLICATION_CREDENTIAL_SECRET", secret.as_str()),
        ("OS_USERNAME", "demo"),
        ("OS_USER_DOMAIN_NAME", "Default"),
        ("OS_IMAGE_URL", api.base.as_str()),
    ];
    desk.glance(&by_name, &["index"], None).ok();
    let r = desk.glance(
        &with(&by_id, &[("OS_APPLICATION_CREDENTIAL_SECRET", "nope")]),
        &["index"],
        None,
    );
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr
            .starts_with("glance: Keystone refused the credentials (401)"),
        "{r:#?}"
    );
}
