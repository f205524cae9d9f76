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
