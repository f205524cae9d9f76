//! The test Keystone (`tests/services/keystone.sh`), shared by the tests that need one.

use std::time::Duration;

/// An environment variable, or `default` when unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The Keystone to test against (`KEYSTONE_URL`, default `http://127.0.0.1:5000`, without
/// `/v3`) and an agent for it, or `None` (test skipped, reason printed) when it cannot be
/// reached and `GLANCE_TEST_REQUIRE_SERVICES` is not `1` (then the test fails).
pub fn reach() -> Option<(String, ureq::Agent)> {
    let url = env_or("KEYSTONE_URL", "http://127.0.0.1:5000");
    let url = url
        .trim_end_matches('/')
        .trim_end_matches("/v3")
        .to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .timeout_connect(Some(Duration::from_secs(3)))
        .build()
        .into();
    let probe = match agent.get(&format!("{url}/v3")).call() {
        Ok(r) if r.status() == 200 => Ok(()),
        Ok(r) => Err(format!("status {}", r.status())),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = probe {
        let why = format!(
            "Keystone at {url} is unreachable ({e}); start it with \
             `bash tests/services/keystone.sh` (or set KEYSTONE_URL)"
        );
        if std::env::var("GLANCE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{why} (GLANCE_TEST_REQUIRE_SERVICES=1)");
        }
        eprintln!("SKIPPED: {why}");
        return None;
    }
    Some((url, agent))
}

/// A project-scoped token for `user` (domain `default`) by password: the token and the
/// token body Keystone returned (`/token/project/id`, `/token/user/id` …). Panics unless
/// Keystone answers 201.
pub fn password_token(
    url: &str,
    agent: &ureq::Agent,
    user: &str,
    password: &str,
    project: &str,
) -> (String, serde_json::Value) {
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
    let mut r = agent
        .post(&format!("{url}/v3/auth/tokens?nocatalog"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("token for {user}: {e}"));
    assert_eq!(r.status(), 201, "token for {user}");
    let token = r
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let v = serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
        .unwrap_or_default();
    (token, v)
}

/// A string at a JSON pointer of a token body, or "".
pub fn token_field(body: &serde_json::Value, pointer: &str) -> String {
    body.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string()
}
