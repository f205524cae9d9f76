//! `glance-api` with Swift and S3 as the default store, beyond the shared API suite in
//! `tests/api.rs`: large objects (segments / multipart) with flat memory, create-on-put
//! off, wrong credentials, the store breaking mid-upload and mid-download (through a TCP
//! proxy the test cuts), and secrets staying out of replies and logs.
//!
//! Needs the Swift of `tests/services/swift-s3.sh`; skipped with a printed reason without
//! it, unless `GLANCE_TEST_REQUIRE_SERVICES=1`.

mod common;

use std::io::{self, Read};
use std::thread;
use std::time::{Duration, Instant};

use common::objstore::{ObjectStore, Services, StoreKind};
use common::proxy::CutProxy;
use common::{Client, Server};
use md5::{Digest, Md5};
use serde_json::Value;

const MB: u64 = 1024 * 1024;

/// The large-object settings of these tests: segments/parts from 5 MB on, of 5 MB.
const LARGE: &str = "swift_store_large_object_size = 5
swift_store_large_object_chunk_size = 5
s3_store_large_object_size = 5
s3_store_large_object_chunk_size = 5
";

struct Env {
    api: Server,
    c: Client,
    store: ObjectStore,
}

/// glance-api (embedded registry, debug log in `{dir}/api.log`) with `kind` as the
/// default store; `endpoint` replaces the store's address (a proxy), `extra` adds options.
fn env(kind: StoreKind, svc: &Services, endpoint: Option<&str>, extra: &str) -> Env {
    let store = ObjectStore::new(kind, svc.clone());
    let conf = format!(
        "[DEFAULT]\nbind_host = 127.0.0.1\nbind_port = 0\nworkers = 4\n\
         sql_connection = sqlite:///{{dir}}/api.sqlite\ndb_auto_create = True\n\
         debug = True\nlog_file = {{dir}}/api.log\n{}{extra}",
        store.config(endpoint)
    );
    let api = Server::start("glance-api", &conf, false);
    let c = Client::new(&api.base);
    Env { api, c, store }
}

impl Env {
    fn log(&self) -> String {
        std::fs::read_to_string(self.api.dir.join("api.log")).unwrap_or_default()
    }

    fn status(&self, id: &str) -> String {
        self.c
            .request("HEAD", &format!("/v1/images/{id}"), &[], None)
            .header("x-image-meta-status")
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (bounded) until image `id` has status `want`.
    fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = String::new();
        while Instant::now() < deadline {
            got = self.status(id);
            if got == want {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("image {id}: status {got:?}, expected {want:?}");
    }

    /// Neither the secret nor the location's user-info appear in the log.
    fn assert_log_clean(&self) {
        let log = self.log();
        assert!(!log.is_empty(), "debug log expected");
        assert!(
            !log.contains(self.store.secret()),
            "secret in the log:\n{log}"
        );
    }

    /// Peak resident memory of glance-api, in bytes (Linux `VmHWM`).
    fn peak_rss(&self) -> u64 {
        let pid = self.api.pid().unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

/// Runs `f` against each object store, if the test Swift is up.
fn each_store(test: &str, f: fn(StoreKind, &Services)) {
    let Some(svc) = common::objstore::services(test) else {
        return;
    };
    for kind in [StoreKind::Swift, StoreKind::S3] {
        f(kind, &svc);
    }
}

/// A deterministic stream of `left` bytes, hashed as it is generated.
struct Pattern {
    left: u64,
    hash: Md5,
}

impl Pattern {
    fn new(len: u64) -> Pattern {
        Pattern {
            left: len,
            hash: Md5::new(),
        }
    }

    fn md5(self) -> String {
        hex(&self.hash.finalize())
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ((self.left as usize + i) % 251) as u8;
        }
        self.hash.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

/// Uploads `len` pattern bytes as a new image (`Content-Length`, or chunked when
/// `declared` is false). Returns the reply (status, body) or the transport error text,
/// and the MD5 of what was sent.
fn upload(e: &Env, id: &str, len: u64, declared: bool) -> (Result<(u16, String), String>, String) {
    let mut p = Pattern::new(len);
    let mut req = agent()
        .post(format!("{}/v1/images", e.c.base))
        .header("Content-Type", "application/octet-stream")
        .header("x-image-meta-id", id)
        .header("x-image-meta-name", id);
    if declared {
        req = req.header("Content-Length", len.to_string());
    }
    let result = req
        .send(ureq::SendBody::from_reader(&mut p))
        .map(|mut r| {
            let status = r.status().as_u16();
            (status, r.body_mut().read_to_string().unwrap_or_default())
        })
        .map_err(|err| err.to_string());
    (result, p.md5())
}

/// Downloads image `id`, returning (status, Content-Length, bytes read, MD5).
fn download(e: &Env, id: &str) -> (u16, Option<u64>, u64, String) {
    let mut resp = agent()
        .get(format!("{}/v1/images/{id}", e.c.base))
        .call()
        .unwrap_or_else(|err| panic!("download {id}: {err}"));
    let status = resp.status().as_u16();
    let len = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut hash = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                hash.update(&buf[..n]);
                total += n as u64;
            }
        }
    }
    (status, len, total, hex(&hash.finalize()))
}

// ---------------------------------------------------------------------------------------

#[test]
fn large_object_image() {
    each_store("large_object_image", |kind, svc| {
        let e = env(kind, svc, None, LARGE);
        const SIZE: u64 = 64 * MB;
        for (id, declared) in [("big-known", true), ("big-chunked", false)] {
            let (reply, sent) = upload(&e, id, SIZE, declared);
            let (status, body) = reply.unwrap_or_else(|err| panic!("{kind:?} {id}: {err}"));
            assert_eq!(status, 201, "{kind:?} {id}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            assert_eq!(v["image"]["size"], SIZE, "{kind:?} {id}");
            assert_eq!(v["image"]["checksum"], sent.as_str(), "{kind:?} {id}");
            assert!(!body.contains(e.store.secret()), "{body}");

            let (status, len, got, md5) = download(&e, id);
            assert_eq!(status, 200);
            assert_eq!(len, Some(SIZE), "{kind:?} {id}: Content-Length");
            assert_eq!(got, SIZE, "{kind:?} {id}: bytes");
            assert_eq!(md5, sent, "{kind:?} {id}: data");
        }
        // Stored as segments + manifest (Swift: 13 segments of 5 MB) or as a multipart
        // object (S3: one object, no parts left over).
        let objects = e.store.objects();
        match kind {
            StoreKind::Swift => {
                for id in ["big-known", "big-chunked"] {
                    let segments = objects
                        .iter()
                        .filter(|o| o.starts_with(&format!("{id}-")))
                        .count();
                    assert_eq!(segments, 13, "{id}: {objects:?}");
                    let head = e.store.admin.head(&e.store.name, id).unwrap_or_default();
                    assert!(
                        head.iter().any(|(k, v)| k == "x-object-manifest"
                            && *v == format!("{}/{id}-", e.store.name)),
                        "{head:?}"
                    );
                }
            }
            _ => {
                let mut want = vec!["big-chunked".to_string(), "big-known".to_string()];
                want.sort();
                let top: Vec<String> = objects
                    .iter()
                    .filter(|o| !o.starts_with("+segments/"))
                    .cloned()
                    .collect();
                assert_eq!(top, want);
            }
        }
        // Nothing held a whole image (64 MB) in memory: the peak stays far below it (S3's
        // chunked upload holds one 5 MB part).
        let peak = e.peak_rss();
        eprintln!(
            "{kind:?}: glance-api peak RSS after 2 x 64 MB up and down: {} MB",
            peak / MB
        );
        assert!(
            peak > 0 && peak < 48 * MB,
            "{kind:?}: peak RSS {} MB",
            peak / MB
        );

        for id in ["big-known", "big-chunked"] {
            let r =
                e.c.request("DELETE", &format!("/v1/images/{id}"), &[], None);
            assert_status!(r, 200);
        }
        assert!(e.store.objects().is_empty(), "{:?}", e.store.objects());
        e.assert_log_clean();
    });
}

#[test]
fn create_on_put_off() {
    each_store("create_on_put_off", |kind, svc| {
        let off = match kind {
            StoreKind::Swift => "swift_store_create_container_on_put = False\n",
            _ => "s3_store_create_bucket_on_put = False\n",
        };
        let e = env(kind, svc, None, off);
        let r = e.c.request(
            "POST",
            "/v1/images",
            &[
                ("Content-Type", "application/octet-stream"),
                ("x-image-meta-id", "nowhere"),
            ],
            Some(b"data"),
        );
        assert_eq!(r.status, 500, "{kind:?}: {}", r.text());
        let option = off.split(' ').next().unwrap_or_default();
        assert!(r.text().contains(option), "{kind:?}: {}", r.text());
        assert!(r.text().contains(&e.store.name), "{kind:?}: {}", r.text());
        assert_eq!(e.status("nowhere"), "killed");
        assert!(e.store.objects().is_empty());
        assert!(
            !e.store.admin.container_exists(&e.store.name),
            "no container/bucket was created"
        );
        // With the option on (the default of these tests) the same upload works.
        let on = env(kind, svc, None, "");
        let r = on.c.request(
            "POST",
            "/v1/images",
            &[("Content-Type", "application/octet-stream")],
            Some(b"data"),
        );
        assert_status!(r, 201);
        e.assert_log_clean();
    });
}

#[test]
fn wrong_credentials() {
    each_store("wrong_credentials", |kind, svc| {
        let (wrong, option) = match kind {
            StoreKind::Swift => ("swift_store_key = WRONG-KEY-4711\n", "swift_store_key"),
            _ => (
                "s3_store_secret_key = WRONG-KEY-4711\n",
                "s3_store_secret_key",
            ),
        };
        // The later (wrong) value wins over the one config() wrote.
        let e = env(kind, svc, None, wrong);
        let r = e.c.request(
            "POST",
            "/v1/images",
            &[
                ("Content-Type", "application/octet-stream"),
                ("x-image-meta-id", "denied"),
            ],
            Some(b"data"),
        );
        assert_eq!(r.status, 500, "{kind:?}: {}", r.text());
        assert!(r.text().contains(option), "{kind:?}: {}", r.text());
        assert!(!r.text().contains("WRONG-KEY-4711"), "{}", r.text());
        assert_eq!(e.status("denied"), "killed");
        assert!(!e.log().contains("WRONG-KEY-4711"), "{}", e.log());
    });
}

/// Uploads 64 MB through a proxy that cuts the store off after 20 MB. With `gone`, the
/// store stays unreachable (cleanup must fail and be reported); else it is reachable again
/// at once (cleanup must succeed).
fn cut_mid_upload(kind: StoreKind, svc: &Services, gone: bool) {
    let upstream = match kind {
        StoreKind::Swift => svc.proxy_addr(),
        _ => svc
            .s3_endpoint
            .split_once("://")
            .map_or(svc.s3_endpoint.clone(), |(_, h)| h.to_string()),
    };
    let proxy = CutProxy::start(&upstream);
    let endpoint = match kind {
        StoreKind::Swift => {
            let path = svc
                .auth_url
                .split_once("://")
                .and_then(|(_, r)| r.split_once('/'))
                .map_or("auth/v1.0", |(_, p)| p);
            format!("http://{}/{path}", proxy.addr)
        }
        _ => format!("http://{}", proxy.addr),
    };
    let e = env(kind, svc, Some(&endpoint), LARGE);
    // A first image goes through the proxy fine.
    let (reply, _) = upload(&e, "before", 1000, true);
    assert_eq!(reply.map(|r| r.0), Ok(201));

    proxy.cut_after(20 * MB, gone);
    let (reply, _) = upload(&e, "cut", 64 * MB, true);
    // glance-api answers (a 5xx naming the store) unless the client is still sending when
    // it closes the connection; either way the image ends killed.
    if let Ok((status, body)) = &reply {
        assert!(*status >= 500, "{kind:?}: {status} {body}");
        assert!(!body.contains(e.store.secret()), "{body}");
    }
    assert_eq!(proxy.cuts(), 1, "the proxy cut the store off");
    e.wait_status("cut", "killed");
    // The API still answers, and the first image is intact.
    assert_status!(e.c.get("/v1/images"), 200);

    let leftovers: Vec<String> = e
        .store
        .objects()
        .into_iter()
        .filter(|o| o != "before")
        .collect();
    let log = e.log();
    // The failure is logged as a store error naming the request that broke.
    let store_error = match kind {
        StoreKind::Swift => "Swift is unreachable (PUT",
        _ => "S3 is unreachable (PUT",
    };
    assert!(
        log.contains(store_error),
        "{kind:?}: log lacks {store_error:?}:\n{log}"
    );
    if gone {
        // Cleanup could not reach the store: what is left is reported in the log.
        let reported = match kind {
            StoreKind::Swift => "could not be removed",
            _ => "could not abort",
        };
        assert!(
            log.contains(reported),
            "{kind:?}: log lacks {reported:?}:\n{log}"
        );
        assert!(!leftovers.is_empty(), "{kind:?}: expected leftovers");
        // The store comes back: uploads work again.
        proxy.restore();
    } else {
        assert!(
            leftovers.is_empty(),
            "{kind:?}: not cleaned up: {leftovers:?}"
        );
    }
    let (reply, _) = upload(&e, "after", 6 * MB, false);
    assert_eq!(reply.map(|r| r.0), Ok(201), "{kind:?}");
    let (status, _, got, _) = download(&e, "before");
    assert_eq!((status, got), (200, 1000));
    e.assert_log_clean();
}

#[test]
fn store_cut_mid_upload() {
    each_store("store_cut_mid_upload", |kind, svc| {
        cut_mid_upload(kind, svc, false)
    });
}

#[test]
fn store_stopped_mid_upload() {
    each_store("store_stopped_mid_upload", |kind, svc| {
        cut_mid_upload(kind, svc, true)
    });
}

#[test]
fn store_stopped_mid_download() {
    each_store("store_stopped_mid_download", |kind, svc| {
        let proxy = CutProxy::start(&svc.proxy_addr());
        let endpoint = match kind {
            StoreKind::Swift => format!("http://{}/auth/v1.0", proxy.addr),
            _ => format!("http://{}", proxy.addr),
        };
        let e = env(kind, svc, Some(&endpoint), LARGE);
        let (reply, _) = upload(&e, "img", 24 * MB, true);
        assert_eq!(reply.map(|r| r.0), Ok(201));
        // Cut the store off a third into the download.
        proxy.cut_after(8 * MB, true);
        let (status, len, got, _) = download(&e, "img");
        assert_eq!(status, 200);
        assert_eq!(len, Some(24 * MB));
        assert!(
            got < 24 * MB,
            "{kind:?}: the download must break off, got {got}"
        );
        // The API still answers; a download with the store gone is an error, not a hang.
        assert_status!(e.c.get("/v1/images"), 200);
        let r = e.c.get("/v1/images/img");
        assert!(r.status == 503 || r.status == 500, "{kind:?}: {}", r.status);
        proxy.restore();
        let (status, _, got, _) = download(&e, "img");
        assert_eq!((status, got), (200, 24 * MB));
        e.assert_log_clean();
    });
}
