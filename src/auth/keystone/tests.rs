//! Tests of the `keystone` context source against a scripted fake Keystone on loopback (the
//! real one is exercised by `tests/keystone.rs`), and of the token cache with a driven clock.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::config::{KeystoneOptions, Secret};
use crate::timeutil;

/// A user token the fake knows.
#[derive(Clone)]
struct FakeToken {
    user: &'static str,
    project: Option<&'static str>,
    roles: Vec<&'static str>,
    expires_at: SystemTime,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, FakeToken>,
    /// Service tokens issued so far ("svc-1", "svc-2", ...); only the last one is accepted.
    issued: usize,
    /// Lifetime of the next service tokens.
    service_lifetime: Option<Duration>,
    validations: usize,
    /// Answer every validation with this status instead.
    fail_with: Option<u16>,
    /// Refuse the service password.
    bad_password: bool,
}

struct FakeKeystone {
    url: String,
    state: Arc<Mutex<State>>,
}

impl FakeKeystone {
    fn start() -> FakeKeystone {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            service_lifetime: Some(Duration::from_secs(3600)),
            ..State::default()
        }));
        let st = Arc::clone(&state);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = Arc::clone(&st);
                thread::spawn(move || serve(conn, &st));
            }
        });
        FakeKeystone { url, state }
    }

    fn add(&self, token: &str, t: FakeToken) {
        self.state.lock().unwrap().tokens.insert(token.into(), t);
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap_or(0);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap_or(());
    let (status, extra, reply) = answer(&method, &target, &headers, &body, state);
    let mut out = conn;
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n",
        reply.len()
    );
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(reply.as_bytes());
}

fn iso(t: SystemTime) -> String {
    format!("{}Z", timeutil::format_stored(t))
}

fn answer(
    method: &str,
    target: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
    state: &Mutex<State>,
) -> (u16, String, String) {
    let mut st = state.lock().unwrap();
    assert_eq!(target, "/v3/auth/tokens?nocatalog", "unexpected target");
    match method {
        "POST" => {
            let v: Value = serde_json::from_slice(body).unwrap();
            let user = &v["auth"]["identity"]["password"]["user"];
            assert_eq!(user["name"], "glance");
            assert_eq!(user["domain"]["name"], "Default");
            assert_eq!(v["auth"]["scope"]["project"]["name"], "service");
            if st.bad_password || user["password"] != "s3cret" {
                return (401, String::new(), "{}".into());
            }
            st.issued += 1;
            let token = format!("svc-{}", st.issued);
            let exp = SystemTime::now() + st.service_lifetime.unwrap_or(Duration::from_secs(60));
            let reply = json!({"token": {"expires_at": iso(exp)}}).to_string();
            (201, format!("X-Subject-Token: {token}\r\n"), reply)
        }
        "GET" => {
            st.validations += 1;
            let current = format!("svc-{}", st.issued);
            if headers.get("x-auth-token") != Some(&current) {
                return (401, String::new(), "{}".into());
            }
            if let Some(code) = st.fail_with {
                return (code, String::new(), "{}".into());
            }
            let subject = headers.get("x-subject-token").cloned().unwrap_or_default();
            match st.tokens.get(&subject) {
                None => (404, String::new(), "{}".into()),
                Some(t) => {
                    let mut token = json!({
                        "user": {"id": t.user, "name": t.user, "domain": {"id": "default"}},
                        "roles": t.roles.iter().map(|r| json!({"id": r, "name": r}))
                            .collect::<Vec<_>>(),
                        "expires_at": iso(t.expires_at),
                    });
                    if let Some(p) = t.project {
                        token["project"] = json!({"id": p, "name": p});
                    }
                    (200, String::new(), json!({ "token": token }).to_string())
                }
            }
        }
        _ => (405, String::new(), "{}".into()),
    }
}

fn options(url: &str) -> KeystoneOptions {
    KeystoneOptions {
        auth_url: Some(format!("{url}/v3")),
        username: Some("glance".into()),
        password: Some(Secret::new("s3cret")),
        project_name: Some("service".into()),
        www_authenticate_uri: Some("http://keystone.example:5000".into()),
        http_connect_timeout: Duration::from_secs(2),
        http_request_timeout: Duration::from_secs(3),
        ..KeystoneOptions::default()
    }
}

fn source(opts: KeystoneOptions, anonymous: bool) -> Keystone {
    Keystone::new(opts, AuthOptions::default(), anonymous)
}

fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

fn member(user: &'static str, project: &'static str) -> FakeToken {
    FakeToken {
        user,
        project: Some(project),
        roles: vec!["member", "reader"],
        expires_at: in_an_hour(),
    }
}

fn ctx_for(ks: &Keystone, headers: &[(&str, &str)]) -> Result<Context> {
    ks.context(&Request::fake("GET", "/v1/images", headers, b""))
}

fn status(r: &Result<Context>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.status(),
    }
}

#[test]
fn valid_token_gives_keystone_identity_and_is_cached() {
    let ks_fake = FakeKeystone::start();
    ks_fake.add("tok-a", member("u-demo", "p-demo"));
    ks_fake.add(
        "tok-admin",
        FakeToken {
            roles: vec!["Admin"],
            ..member("u-admin", "p-admin")
        },
    );
    let ks = source(options(&ks_fake.url), false);
    // Identity headers sent by the client are ignored.
    let ctx = ctx_for(
        &ks,
        &[
            ("X-Auth-Token", "tok-a"),
            ("X-Identity-Status", "Confirmed"),
            ("X-Tenant", "p-admin"),
            ("X-Roles", "admin"),
        ],
    )
    .unwrap();
    assert_eq!(ctx.user.as_deref(), Some("u-demo"));
    assert_eq!(ctx.tenant.as_deref(), Some("p-demo"));
    assert_eq!(ctx.roles, ["member", "reader"]);
    assert!(!ctx.is_admin && !ctx.read_only);
    assert_eq!(ctx.auth_token.as_deref(), Some("tok-a"));
    // Cached: no second validation.
    for _ in 0..3 {
        assert_eq!(ctx_for(&ks, &[("X-Auth-Token", "tok-a")]).unwrap(), ctx);
    }
    assert_eq!(ks_fake.with(|s| s.validations), 1);
    assert_eq!(ks_fake.with(|s| s.issued), 1, "one service token");
    // admin_role is compared case-insensitively.
    let admin = ctx_for(&ks, &[("X-Auth-Token", "tok-admin")]).unwrap();
    assert!(admin.is_admin);
    // X-Storage-Token works too (as in Diablo).
    let st = ctx_for(&ks, &[("X-Storage-Token", "tok-a")]).unwrap();
    assert_eq!(st.tenant.as_deref(), Some("p-demo"));
}

#[test]
fn missing_and_invalid_tokens_are_401_with_the_challenge() {
    let ks_fake = FakeKeystone::start();
    let ks = source(options(&ks_fake.url), false);
    for headers in [
        vec![],
        vec![("X-Identity-Status", "Confirmed"), ("X-Tenant", "t")],
        vec![("X-Auth-Token", "  ")],
    ] {
        match ctx_for(&ks, &headers) {
            Err(Error::AuthRequired { uri, .. }) => {
                assert_eq!(uri, "http://keystone.example:5000")
            }
            other => panic!("expected 401, got {other:?}"),
        }
    }
    assert_eq!(ks_fake.with(|s| s.validations), 0);
    // Invalid tokens: 401, never cached, and the token is not in the message.
    for _ in 0..2 {
        let r = ctx_for(&ks, &[("X-Auth-Token", "bogus-token-xyz")]);
        assert_eq!(status(&r), 401);
        let msg = r.err().map(|e| e.message()).unwrap_or_default();
        assert!(!msg.contains("bogus-token-xyz"), "{msg}");
    }
    assert_eq!(ks_fake.with(|s| s.validations), 2);
    // Oversized or non-printable tokens are refused without asking.
    let long = "x".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", &long)])), 401);
    assert_eq!(ks_fake.with(|s| s.validations), 2);
}

#[test]
fn challenge_defaults_to_auth_url() {
    let mut o = options("http://127.0.0.1:1");
    o.www_authenticate_uri = None;
    let ks = source(o, false);
    match ctx_for(&ks, &[]) {
        Err(Error::AuthRequired { uri, .. }) => assert_eq!(uri, "http://127.0.0.1:1/v3"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn anonymous_access_is_read_only() {
    let ks_fake = FakeKeystone::start();
    let ks = source(options(&ks_fake.url), true);
    let ctx = ctx_for(
        &ks,
        &[("X-Identity-Status", "Confirmed"), ("X-Roles", "admin")],
    )
    .unwrap();
    assert!(ctx.read_only && !ctx.is_admin);
    assert_eq!((ctx.tenant, ctx.user, ctx.auth_token), (None, None, None));
    // A bad token is still 401 (anonymous access is for requests without one).
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "nope")])), 401);
}

#[test]
fn expired_tokens_are_refused_and_cache_stops_at_expiry() {
    let ks_fake = FakeKeystone::start();
    ks_fake.add(
        "old",
        FakeToken {
            expires_at: SystemTime::now() - Duration::from_secs(5),
            ..member("u", "p")
        },
    );
    ks_fake.add(
        "short",
        FakeToken {
            expires_at: SystemTime::now() + Duration::from_millis(1500),
            ..member("u", "p")
        },
    );
    let ks = source(options(&ks_fake.url), false);
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "old")])), 401);
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "short")])), 200);
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "short")])), 200);
    assert_eq!(ks_fake.with(|s| s.validations), 2, "second use was cached");
    thread::sleep(Duration::from_millis(1700));
    // Past its expiry the cache no longer answers: Keystone is asked (and here still says
    // 200 with the past expires_at, which is refused).
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "short")])), 401);
    assert_eq!(ks_fake.with(|s| s.validations), 3);
}

#[test]
fn no_cache_when_token_cache_time_is_zero() {
    let ks_fake = FakeKeystone::start();
    ks_fake.add("t", member("u", "p"));
    let mut o = options(&ks_fake.url);
    o.token_cache_time = Duration::ZERO;
    let ks = source(o, false);
    for _ in 0..3 {
        assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "t")])), 200);
    }
    assert_eq!(ks_fake.with(|s| s.validations), 3);
    // Revocation shows at once without a cache.
    ks_fake.with(|s| s.tokens.remove("t"));
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "t")])), 401);
}

#[test]
fn service_token_is_renewed_before_expiry_and_when_rejected() {
    let ks_fake = FakeKeystone::start();
    for t in ["a", "b", "c", "d"] {
        ks_fake.add(t, member("u", "p"));
    }
    // Service tokens living 2 s are renewed after 1 s.
    ks_fake.with(|s| s.service_lifetime = Some(Duration::from_secs(2)));
    let ks = source(options(&ks_fake.url), false);
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "a")])), 200);
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "b")])), 200);
    assert_eq!(ks_fake.with(|s| s.issued), 1);
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "c")])), 200);
    assert_eq!(ks_fake.with(|s| s.issued), 2, "renewed before expiry");
    // Keystone forgets the service token (it only accepts the latest): one retry with a
    // fresh service token.
    ks_fake.with(|s| {
        s.issued += 1;
        s.service_lifetime = Some(Duration::from_secs(3600));
    });
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "d")])), 200);
    assert_eq!(ks_fake.with(|s| s.issued), 4);
}

#[test]
fn keystone_failures_are_503_never_an_open_door() {
    // Nothing listens on port 1.
    let ks = source(options("http://127.0.0.1:1"), true);
    let r = ctx_for(&ks, &[("X-Auth-Token", "t")]);
    assert_eq!(status(&r), 503);
    // Still anonymous without a token when allowed.
    assert!(ctx_for(&ks, &[]).is_ok_and(|c| c.read_only));

    let ks_fake = FakeKeystone::start();
    ks_fake.add("t", member("u", "p"));
    // Wrong service password: 503 (and the password is in no message).
    ks_fake.with(|s| s.bad_password = true);
    let ks = source(options(&ks_fake.url), false);
    let r = ctx_for(&ks, &[("X-Auth-Token", "t")]);
    assert_eq!(status(&r), 503);
    assert!(
        !r.err()
            .map(|e| e.message())
            .unwrap_or_default()
            .contains("s3cret")
    );
    ks_fake.with(|s| s.bad_password = false);
    // Keystone errors and refusals of the service user: 503, not cached.
    for code in [500, 403, 400] {
        ks_fake.with(|s| s.fail_with = Some(code));
        assert_eq!(
            status(&ctx_for(&ks, &[("X-Auth-Token", "t")])),
            503,
            "{code}"
        );
    }
    ks_fake.with(|s| s.fail_with = None);
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "t")])), 200);

    // A Keystone that accepts connections and never answers: 503 after the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut o = options(&format!("http://{}", silent.local_addr().unwrap()));
    o.http_request_timeout = Duration::from_secs(1);
    let ks = source(o, false);
    let t0 = Instant::now();
    assert_eq!(status(&ctx_for(&ks, &[("X-Auth-Token", "t")])), 503);
    assert!(t0.elapsed() < Duration::from_secs(5));
    drop(silent);
}

#[test]
fn auth_url_forms() {
    for (given, want) in [
        ("http://k:5000", "http://k:5000/v3/auth/tokens"),
        ("http://k:5000/v3", "http://k:5000/v3/auth/tokens"),
        ("http://k/identity/v3", "http://k/identity/v3/auth/tokens"),
        ("http://k/identity", "http://k/identity/v3/auth/tokens"),
    ] {
        let mut o = options("x");
        o.auth_url = Some(given.into());
        assert_eq!(source(o, false).tokens_url, want);
    }
}

fn ident(user: &str) -> Identity {
    Identity {
        user_id: user.into(),
        project_id: Some("p".into()),
        roles: vec![],
        expires_at: None,
    }
}

#[test]
fn cache_expires_entries_by_the_given_clock() {
    let t0 = Instant::now();
    let mut c = TokenCache::new(10);
    let k = token_key("a");
    c.insert(k, ident("a"), t0 + Duration::from_secs(300), t0);
    assert_eq!(c.get(&k, t0 + Duration::from_secs(299)), Some(ident("a")));
    assert_eq!(c.get(&k, t0 + Duration::from_secs(300)), None);
    assert!(c.is_empty(), "expired entry dropped on lookup");
    // A deadline not after now is not stored.
    c.insert(k, ident("a"), t0, t0);
    assert!(c.is_empty());
    // Re-inserting replaces.
    c.insert(k, ident("a"), t0 + Duration::from_secs(1), t0);
    c.insert(k, ident("b"), t0 + Duration::from_secs(9), t0);
    assert_eq!(c.len(), 1);
    assert_eq!(c.get(&k, t0 + Duration::from_secs(5)), Some(ident("b")));
    assert_ne!(token_key("a"), token_key("b"));
}

#[test]
fn cache_is_bounded_and_evicts_expired_then_oldest() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(100);
    let mut c = TokenCache::new(3);
    let keys: Vec<TokenKey> = (0..6).map(|i| token_key(&i.to_string())).collect();
    c.insert(keys[0], ident("0"), later, t0);
    c.insert(keys[1], ident("1"), t0 + Duration::from_secs(1), t0); // expires soon
    c.insert(keys[2], ident("2"), later, t0);
    let t1 = t0 + Duration::from_secs(2);
    // Full: the expired entry goes first, the oldest live one stays.
    c.insert(keys[3], ident("3"), later, t1);
    assert_eq!(c.len(), 3);
    assert!(c.get(&keys[0], t1).is_some());
    assert!(c.get(&keys[1], t1).is_none());
    // Full again, nothing expired: the oldest goes.
    c.insert(keys[4], ident("4"), later, t1);
    assert_eq!(c.len(), 3);
    assert!(c.get(&keys[0], t1).is_none());
    for k in &keys[2..5] {
        assert!(c.get(k, t1).is_some());
    }
    // Many inserts never grow past the capacity.
    let mut big = TokenCache::new(CACHE_CAPACITY);
    for i in 0..CACHE_CAPACITY + 500 {
        big.insert(token_key(&format!("t{i}")), ident("x"), later, t0);
    }
    assert_eq!(big.len(), CACHE_CAPACITY);
    assert!(big.get(&token_key("t0"), t0).is_none());
    let last = format!("t{}", CACHE_CAPACITY + 499);
    assert!(big.get(&token_key(&last), t0).is_some());
}

#[test]
fn cache_deadline_is_the_earlier_of_cache_time_and_expiry() {
    let now = Instant::now();
    let wall = SystemTime::now();
    let five_min = Duration::from_secs(300);
    assert_eq!(cache_deadline(now, wall, five_min, None), now + five_min);
    let soon = wall + Duration::from_secs(10);
    assert_eq!(
        cache_deadline(now, wall, five_min, Some(soon)),
        now + Duration::from_secs(10)
    );
    let past = wall - Duration::from_secs(10);
    assert_eq!(cache_deadline(now, wall, five_min, Some(past)), now);
    assert_eq!(
        renew_after(Duration::from_secs(3600)),
        Duration::from_secs(3480)
    );
    assert_eq!(renew_after(Duration::from_secs(2)), Duration::from_secs(1));
    assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
}

#[test]
fn identity_from_reply() {
    let v = json!({"token": {
        "user": {"id": "u1", "name": "demo"},
        "project": {"id": "p1", "name": "demo"},
        "roles": [{"id": "r1", "name": "member"}, {"id": "r2", "name": "reader"}],
        "expires_at": "2030-01-02T03:04:05.000000Z",
    }});
    let i = Identity::from_reply(&v).unwrap();
    assert_eq!(i.user_id, "u1");
    assert_eq!(i.project_id.as_deref(), Some("p1"));
    assert_eq!(i.roles, ["member", "reader"]);
    assert_eq!(i.expires_at, timeutil::parse("2030-01-02T03:04:05Z"));
    // Unscoped: no project.
    let v = json!({"token": {"user": {"id": "u1"}, "roles": []}});
    assert_eq!(Identity::from_reply(&v).unwrap().project_id, None);
    assert!(Identity::from_reply(&json!({"token": {}})).is_none());
}

/// An `https` Keystone goes through native-tls: a server that does not speak TLS is a 503
/// (Keystone unavailable), never a panic of the worker.
#[test]
fn https_keystone_fails_cleanly() {
    let url = crate::tls::tests::not_tls_server();
    let ks = source(options(url.trim_end_matches('/')), false);
    let r = ctx_for(&ks, &[("X-Auth-Token", "tok")]);
    assert_eq!(status(&r), 503, "{:?}", r.err());
}
