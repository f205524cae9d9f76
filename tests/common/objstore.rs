//! The object stores the API suite runs against: the real Swift (with its S3 API) started
//! by `tests/services/swift-s3.sh`, a fresh container or bucket per test, and a direct
//! Swift client to look at what glance-api left there.
//!
//! The endpoint and credentials come from the script's `env.sh` variables (`SWIFT_AUTH_URL`,
//! `SWIFT_USER`, `SWIFT_KEY`, `S3_ENDPOINT`, `S3_ACCESS_KEY`, `S3_SECRET_KEY`, `S3_REGION`),
//! defaulting to the script's values. An S3 bucket of Swift's `s3api` is a Swift container
//! of the same account (its multipart parts live in `<bucket>+segments`), so one Swift
//! client checks both stores.
//!
//! When Swift does not answer, tests that need it print why and pass without running,
//! unless `GLANCE_TEST_REQUIRE_SERVICES=1` (set by `.ci/run`), which makes them fail.

use std::time::Duration;

// The probe and endpoints of the test Swift, shared with the crate's unit tests.
#[path = "../../src/store/test_services.rs"]
mod probe;

pub(crate) use probe::Services;

impl Services {
    /// `host:port` of the Swift proxy (for the cutting proxy of the failure tests).
    pub fn proxy_addr(&self) -> String {
        let rest = self
            .auth_url
            .split_once("://")
            .map_or(self.auth_url.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest).to_string()
    }
}

/// The test Swift, if it answers; else `None` after printing why (a panic under
/// `GLANCE_TEST_REQUIRE_SERVICES=1`).
pub fn services(test: &str) -> Option<Services> {
    probe::swift(test)
}

fn agent(secs: u64) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(secs)))
        .build()
        .into()
}

/// A direct Swift client (auth v1.0) for checks and cleanup.
pub struct SwiftAdmin {
    agent: ureq::Agent,
    storage_url: String,
    token: String,
}

impl SwiftAdmin {
    /// Authenticates as the test user.
    pub fn connect(svc: &Services) -> SwiftAdmin {
        let agent = agent(120);
        let resp = agent
            .get(&svc.auth_url)
            .header("X-Auth-User", &svc.user)
            .header("X-Auth-Key", &svc.key)
            .call()
            .unwrap_or_else(|e| panic!("swift auth: {e}"));
        let h = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("swift auth reply lacks {n}"))
                .to_string()
        };
        SwiftAdmin {
            storage_url: h("x-storage-url"),
            token: h("x-auth-token"),
            agent,
        }
    }

    fn url(&self, container: &str, object: Option<&str>) -> String {
        let enc = |s: &str| glance_rs::http::percent_encode(s);
        match object {
            Some(o) => format!("{}/{}/{}", self.storage_url, enc(container), enc(o)),
            None => format!("{}/{}", self.storage_url, enc(container)),
        }
    }

    /// Object names and sizes in a container (empty when it does not exist).
    pub fn list(&self, container: &str) -> Vec<(String, u64)> {
        let mut resp = self
            .agent
            .get(format!(
                "{}?format=json&limit=10000",
                self.url(container, None)
            ))
            .header("X-Auth-Token", &self.token)
            .call()
            .unwrap_or_else(|e| panic!("listing {container}: {e}"));
        let status = resp.status().as_u16();
        if status == 404 || status == 204 {
            return Vec::new();
        }
        assert_eq!(status, 200, "listing {container}");
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|o| {
                        (
                            o["name"].as_str().unwrap_or("").to_string(),
                            o["bytes"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when the container exists.
    pub fn container_exists(&self, container: &str) -> bool {
        let resp = self
            .agent
            .head(self.url(container, None))
            .header("X-Auth-Token", &self.token)
            .call()
            .unwrap_or_else(|e| panic!("HEAD {container}: {e}"));
        resp.status().is_success()
    }

    /// Headers of an object (without following a manifest), if it exists.
    pub fn head(&self, container: &str, object: &str) -> Option<Vec<(String, String)>> {
        let resp = self
            .agent
            .head(format!(
                "{}?multipart-manifest=get",
                self.url(container, Some(object))
            ))
            .header("X-Auth-Token", &self.token)
            .call()
            .unwrap_or_else(|e| panic!("HEAD {container}/{object}: {e}"));
        if resp.status().as_u16() == 404 {
            return None;
        }
        Some(
            resp.headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        v.to_str().unwrap_or("").to_string(),
                    )
                })
                .collect(),
        )
    }

    /// Deletes one object (no error when missing).
    pub fn delete(&self, container: &str, object: &str) {
        let _ = self
            .agent
            .delete(self.url(container, Some(object)))
            .header("X-Auth-Token", &self.token)
            .call();
    }

    /// Deletes a container and everything in it (no error when missing).
    pub fn remove_container(&self, container: &str) {
        for _ in 0..10 {
            let objects = self.list(container);
            if objects.is_empty() {
                break;
            }
            for (name, _) in objects {
                self.delete(container, &name);
            }
        }
        let _ = self
            .agent
            .delete(self.url(container, None))
            .header("X-Auth-Token", &self.token)
            .call();
    }
}

/// The store an API test uploads to by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The filesystem store (no service needed).
    File,
    /// Swift (auth v1.0).
    Swift,
    /// Swift's S3 API.
    S3,
}

/// A fresh container (Swift) or bucket (S3) for one test; removed with its content on drop.
pub struct ObjectStore {
    pub kind: StoreKind,
    pub svc: Services,
    pub admin: SwiftAdmin,
    /// The container or bucket name.
    pub name: String,
}

impl ObjectStore {
    /// A fresh container/bucket name on the test Swift (created by glance-api on its first
    /// upload: create-on-put is on in [`ObjectStore::config`]).
    pub fn new(kind: StoreKind, svc: Services) -> ObjectStore {
        assert_ne!(kind, StoreKind::File);
        let name = format!("glance-test-{}", uuid::Uuid::new_v4().simple());
        ObjectStore {
            kind,
            admin: SwiftAdmin::connect(&svc),
            svc,
            name,
        }
    }

    /// glance-api.conf lines making this the default store. `endpoint` replaces the auth
    /// address (Swift) or host (S3), e.g. to go through a proxy.
    pub fn config(&self, endpoint: Option<&str>) -> String {
        let s = &self.svc;
        match self.kind {
            StoreKind::Swift => format!(
                "default_store = swift\n\
                 swift_store_auth_address = {}\n\
                 swift_store_user = {}\n\
                 swift_store_key = {}\n\
                 swift_store_container = {}\n\
                 swift_store_create_container_on_put = True\n",
                endpoint.unwrap_or(&s.auth_url),
                s.user,
                s.key,
                self.name
            ),
            StoreKind::S3 => format!(
                "default_store = s3\n\
                 s3_store_host = {}\n\
                 s3_store_access_key = {}\n\
                 s3_store_secret_key = {}\n\
                 s3_store_bucket = {}\n\
                 s3_store_create_bucket_on_put = True\n\
                 s3_store_bucket_url_format = path\n\
                 s3_store_region_name = {}\n",
                endpoint.unwrap_or(&s.s3_endpoint),
                s.s3_access,
                s.s3_secret,
                self.name,
                s.s3_region
            ),
            StoreKind::File => String::new(),
        }
    }

    /// Everything in the container/bucket, plus (S3) the parts of unfinished multipart
    /// uploads, listed as `+segments/<name>`.
    pub fn objects(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .admin
            .list(&self.name)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        if self.kind == StoreKind::S3 {
            v.extend(
                self.admin
                    .list(&format!("{}+segments", self.name))
                    .into_iter()
                    .map(|(n, _)| format!("+segments/{n}")),
            );
        }
        v.sort();
        v
    }

    /// The secret that must never show in replies or logs.
    pub fn secret(&self) -> &str {
        match self.kind {
            StoreKind::S3 => &self.svc.s3_secret,
            _ => &self.svc.key,
        }
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        self.admin.remove_container(&self.name);
        if self.kind == StoreKind::S3 {
            self.admin
                .remove_container(&format!("{}+segments", self.name));
        }
    }
}
