//! The real Swift (with its S3 API) that the object-store tests run against, as started
//! by `tests/services/swift-s3.sh` (see tests/services/README.md). The integration tests
//! include this same file (`tests/common/objstore.rs`), so it uses nothing of the crate.
//!
//! The endpoint and credentials come from the variables that script writes to its
//! `env.sh` (`SWIFT_AUTH_URL`, `SWIFT_USER`, `SWIFT_KEY`, `S3_ENDPOINT`, `S3_ACCESS_KEY`,
//! `S3_SECRET_KEY`, `S3_REGION`), defaulting to the script's own values. When Swift does not
//! answer, a test prints why and passes without running, unless
//! `GLANCE_TEST_REQUIRE_SERVICES=1` (CI), which makes it fail.

use std::time::Duration;

/// Where the test Swift and its S3 API are, and who to be there.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    pub auth_url: String,
    pub user: String,
    pub key: String,
    pub s3_endpoint: String,
    pub s3_access: String,
    pub s3_secret: String,
    pub s3_region: String,
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

impl Services {
    /// The configured endpoints (not checked).
    pub(crate) fn from_env() -> Services {
        Services {
            auth_url: var("SWIFT_AUTH_URL", "http://127.0.0.1:8080/auth/v1.0"),
            user: var("SWIFT_USER", "test:tester"),
            key: var("SWIFT_KEY", "testing"),
            s3_endpoint: var("S3_ENDPOINT", "http://127.0.0.1:8080"),
            s3_access: var("S3_ACCESS_KEY", "test:tester"),
            s3_secret: var("S3_SECRET_KEY", "testing"),
            s3_region: var("S3_REGION", "us-east-1"),
        }
    }
}

/// The test Swift, if it answers an auth request; else `None` after printing why (or a
/// panic under `GLANCE_TEST_REQUIRE_SERVICES=1`).
pub(crate) fn swift(test: &str) -> Option<Services> {
    let s = Services::from_env();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let problem = match agent
        .get(&s.auth_url)
        .header("X-Auth-User", &s.user)
        .header("X-Auth-Key", &s.key)
        .call()
    {
        Ok(r) if r.status().is_success() => return Some(s),
        Ok(r) => format!("auth at {} answered {}", s.auth_url, r.status()),
        Err(e) => format!("{} is unreachable: {e}", s.auth_url),
    };
    let required = std::env::var("GLANCE_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: Swift is required (GLANCE_TEST_REQUIRE_SERVICES=1) but {problem}; start it \
         with `bash tests/services/swift-s3.sh`"
    );
    eprintln!(
        "SKIPPED {test}: {problem} (start it with `bash tests/services/swift-s3.sh`; set \
         GLANCE_TEST_REQUIRE_SERVICES=1 to make this a failure)"
    );
    None
}

/// A name no other test run uses (containers and buckets): lower-case, DNS-safe.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
