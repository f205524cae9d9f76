//! The image cache (issue 17), end to end: the real glance-api with `image_cache_enabled`,
//! the real `glance` tool and the real `glance-cache-*` programs, on ephemeral ports.
//!
//! Hits and misses with the file, Swift and S3 stores (Swift and S3 need the service of
//! `tests/services/swift-s3.sh`; skipped with a printed reason without it, unless
//! `GLANCE_TEST_REQUIRE_SERVICES=1`), concurrent first downloads, a corrupted cache file,
//! deleted images, the maintenance programs, the CLI, the bounds and a restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;

use common::objstore::{ObjectStore, Services, StoreKind};
use common::{Client, Reply, Server};
use md5::{Digest, Md5};
use serde_json::Value;

const MB: usize = 1024 * 1024;

/// glance-api with the cache on, an embedded registry and a debug log in `{dir}/api.log`;
/// the default store is the file store unless `store` says otherwise.
struct Env {
    api: Server,
    c: Client,
    _store: Option<ObjectStore>,
}

const BASE_CONF: &str = "[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
workers = 8
filesystem_store_datadir = {dir}/images
sql_connection = sqlite:///{dir}/api.sqlite
db_auto_create = True
debug = True
log_file = {dir}/api.log
image_cache_enabled = True
image_cache_datadir = {dir}/cache
";

fn conf(store: Option<&ObjectStore>, extra: &str) -> String {
    let store = store.map(|s| s.config(None)).unwrap_or_default();
    format!(
        "{BASE_CONF}{store}swift_store_large_object_size = 5\nswift_store_large_object_chunk_size = 5\n{extra}"
    )
}

fn env(extra: &str) -> Env {
    let api = Server::start("glance-api", &conf(None, extra), false);
    let c = Client::new(&api.base);
    Env {
        api,
        c,
        _store: None,
    }
}

fn env_with(kind: StoreKind, svc: &Services, extra: &str) -> Env {
    let store = ObjectStore::new(kind, svc.clone());
    let api = Server::start("glance-api", &conf(Some(&store), extra), false);
    let c = Client::new(&api.base);
    Env {
        api,
        c,
        _store: Some(store),
    }
}

/// Deterministic data that is no disk format's magic.
fn data_of(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Env {
    fn dir(&self) -> &Path {
        &self.api.dir
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("api.log")).unwrap_or_default()
    }

    fn conf_path(&self) -> PathBuf {
        self.dir().join("glance-api.conf")
    }

    /// Uploads `data` as a new raw image and returns its id.
    fn upload(&self, name: &str, data: &[u8]) -> String {
        let r = self.c.request(
            "POST",
            "/v1/images",
            &[
                ("Content-Type", "application/octet-stream"),
                ("x-image-meta-name", name),
                ("x-image-meta-disk_format", "raw"),
                ("x-image-meta-container_format", "bare"),
                ("x-image-meta-is_public", "true"),
            ],
            Some(data),
        );
        assert_status!(r, 201);
        let v = r.json();
        assert_eq!(
            v["image"]["checksum"].as_str(),
            Some(md5_hex(data).as_str())
        );
        v["image"]["id"].as_str().unwrap_or_default().to_string()
    }

    fn get(&self, id: &str) -> Reply {
        self.c.get(&format!("/v1/images/{id}"))
    }

    /// Downloads image `id` and checks that the bytes are `data`.
    fn download_ok(&self, id: &str, data: &[u8]) {
        let r = self.get(id);
        assert_status!(r, 200);
        assert_eq!(r.body.len(), data.len(), "image {id}: length");
        assert!(r.body == data, "image {id}: wrong bytes");
    }

    /// The cache listing (`status` = None, invalid, incomplete, prefetching).
    fn listing(&self, status: Option<&str>) -> Vec<Value> {
        let path = match status {
            Some(s) => format!("/v1/cached_images?status={s}"),
            None => "/v1/cached_images".to_string(),
        };
        let r = self.c.get(&path);
        assert_status!(r, 200);
        r.json()["cached_images"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The hits of image `id` in the cache listing; `None` when it is not cached.
    fn hits(&self, id: &str) -> Option<u64> {
        self.listing(None)
            .iter()
            .find(|e| e["id"] == id)
            .and_then(|e| e["hits"].as_u64())
    }

    fn cache_file(&self, id: &str) -> PathBuf {
        self.dir().join("cache").join(id)
    }

    /// How many fills of image `id` completed, by the log.
    fn fills(&self, id: &str) -> usize {
        self.log().matches(&format!("image {id}: cached (")).count()
    }

    /// Runs a cache program on this API's config (plus `extra` lines) and checks it
    /// succeeded.
    fn run_tool(&self, program: &str, extra: &str) -> String {
        let conf = if extra.is_empty() {
            self.conf_path()
        } else {
            let text = std::fs::read_to_string(self.conf_path()).unwrap_or_default();
            let path = self.dir().join(format!("{program}.conf"));
            std::fs::write(&path, format!("{text}{extra}")).unwrap_or_else(|e| panic!("{e}"));
            path
        };
        let log = self.dir().join(format!("{program}.log"));
        let out = Command::new(tool_bin(program))
            .arg("--config-file")
            .arg(&conf)
            .args(["-v", "--log-file"])
            .arg(&log)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            out.status.success(),
            "{program} failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
}

fn tool_bin(program: &str) -> PathBuf {
    PathBuf::from(match program {
        "glance-cache-prefetcher" => env!("CARGO_BIN_EXE_glance-cache-prefetcher"),
        "glance-cache-pruner" => env!("CARGO_BIN_EXE_glance-cache-pruner"),
        "glance-cache-reaper" => env!("CARGO_BIN_EXE_glance-cache-reaper"),
        other => panic!("unknown program {other}"),
    })
}

/// The scenario every store runs: a miss fills, the next GET is a hit (also ranged).
fn hit_and_miss(e: &Env, len: usize) {
    let data = data_of(len, 1);
    let id = e.upload("cached", &data);
    assert!(!e.cache_file(&id).exists(), "nothing is cached on upload");
    e.download_ok(&id, &data);
    assert_eq!(e.hits(&id), Some(0), "the first download fills the cache");
    assert_eq!(
        std::fs::read(e.cache_file(&id)).ok().as_deref(),
        Some(&data[..])
    );
    e.download_ok(&id, &data);
    assert_eq!(e.hits(&id), Some(1), "the second download is a hit");
    let r = e.c.request(
        "GET",
        &format!("/v1/images/{id}"),
        &[("Range", "bytes=1000-1999")],
        None,
    );
    assert_status!(r, 206);
    assert!(r.body == data[1000..2000], "ranged hit");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 1000-1999/{len}").as_str())
    );
    assert_eq!(e.hits(&id), Some(2));
    assert_eq!(e.fills(&id), 1);
    let entry = e.listing(None).into_iter().find(|x| x["id"] == id.as_str());
    let entry = entry.unwrap_or_default();
    assert_eq!(entry["size"].as_u64(), Some(len as u64));
    assert_eq!(entry["expected_size"].as_u64(), Some(len as u64));
    assert_eq!(entry["name"], "cached");
}

#[test]
fn hit_and_miss_with_the_file_store() {
    let e = env("");
    hit_and_miss(&e, 3 * MB + 17);
}

#[test]
fn hit_and_miss_with_swift_and_s3() {
    let Some(svc) = common::objstore::services("hit_and_miss_with_swift_and_s3") else {
        return;
    };
    for kind in [StoreKind::Swift, StoreKind::S3] {
        let e = env_with(kind, &svc, "");
        // 12 MiB: Swift segments of 5 MiB.
        hit_and_miss(&e, 12 * MB + 5);
        assert!(!e.log().contains(&svc.key), "secret in the log");
    }
}

#[test]
fn a_ranged_first_download_does_not_fill() {
    let e = env("");
    let data = data_of(MB, 2);
    let id = e.upload("r", &data);
    let r = e.c.request(
        "GET",
        &format!("/v1/images/{id}"),
        &[("Range", "bytes=-100")],
        None,
    );
    assert_status!(r, 206);
    assert!(r.body == data[MB - 100..]);
    assert!(e.listing(None).is_empty());
    e.download_ok(&id, &data);
    assert_eq!(e.hits(&id), Some(0));
}

/// Concurrent first downloads of one image from `e`: every client gets the right bytes
/// and the cache is filled once.
fn concurrent_first_downloads(e: &Env, len: usize) {
    let data = Arc::new(data_of(len, 3));
    let id = e.upload("popular", &data);
    let clients = 6;
    let barrier = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (base, id, data, barrier) = (
                e.api.base.clone(),
                id.clone(),
                data.clone(),
                barrier.clone(),
            );
            thread::spawn(move || {
                let c = Client::new(&base);
                barrier.wait();
                let r = c.get(&format!("/v1/images/{id}"));
                r.status == 200 && r.body == *data
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap_or(false), "a client got wrong bytes");
    }
    assert_eq!(e.fills(&id), 1, "one fill:\n{}", e.log());
    assert!(e.listing(Some("incomplete")).is_empty());
    e.download_ok(&id, &data);
    assert!(e.hits(&id).is_some_and(|h| h >= 1));
}

#[test]
fn concurrent_first_downloads_fill_once() {
    let e = env("");
    concurrent_first_downloads(&e, 24 * MB);
    if let Some(svc) = common::objstore::services("concurrent_first_downloads_fill_once") {
        let e = env_with(StoreKind::Swift, &svc, "");
        concurrent_first_downloads(&e, 16 * MB);
    }
}

#[test]
fn a_corrupted_cache_file_is_never_served() {
    let e = env("");
    let data = data_of(2 * MB, 4);
    let id = e.upload("fragile", &data);
    e.download_ok(&id, &data);
    let path = e.cache_file(&id);
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    bytes[MB] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap_or_else(|err| panic!("{err}"));
    // Served from the store, not from the changed file.
    e.download_ok(&id, &data);
    let invalid = e.listing(Some("invalid"));
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(invalid[0]["id"], id.as_str());
    assert!(
        invalid[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("changed on disk")
    );
    assert!(e.log().contains("cached copy is invalid"), "logged");
    // That miss refilled the cache with good bytes.
    assert_eq!(std::fs::read(&path).ok().as_deref(), Some(&data[..]));
    e.download_ok(&id, &data);
    assert_eq!(e.hits(&id), Some(1));
}

#[test]
fn deleted_images_are_never_served_and_the_pruner_removes_them() {
    let e = env("");
    let data = data_of(MB, 5);
    let id = e.upload("doomed", &data);
    let keep = e.upload("kept", &data_of(MB, 6));
    e.download_ok(&id, &data);
    e.download_ok(&keep, &data_of(MB, 6));
    assert_status!(
        e.c.request("DELETE", &format!("/v1/images/{id}"), &[], None),
        200
    );
    assert_status!(e.get(&id), 404);
    assert!(e.cache_file(&id).exists(), "still on disk until pruned");
    let log = e.run_tool("glance-cache-pruner", "");
    assert!(
        log.contains(&format!("image {id}: no longer active")),
        "{log}"
    );
    assert!(!e.cache_file(&id).exists());
    let ids: Vec<String> = e
        .listing(None)
        .iter()
        .map(|x| x["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids, [keep]);
}

#[test]
fn prefetch_prune_and_reap() {
    let e = env("");
    let datas: Vec<Vec<u8>> = (0..3).map(|i| data_of(MB + i, 10 + i as u32)).collect();
    let ids: Vec<String> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| e.upload(&format!("p{i}"), d))
        .collect();
    for id in &ids[..2] {
        assert_status!(
            e.c.request("PUT", &format!("/v1/cached_images/{id}"), &[], None),
            200
        );
    }
    let r =
        e.c.request("PUT", &format!("/v1/cached_images/{}", ids[0]), &[], None);
    assert_status!(r, 400);
    let queued = e.listing(Some("prefetching"));
    assert_eq!(queued.len(), 2);
    assert!(queued.iter().all(|q| q["status"] == "queued"));
    assert_status!(
        e.c.request("PUT", "/v1/cached_images/no-such-image", &[], None),
        404
    );

    let log = e.run_tool("glance-cache-prefetcher", "");
    assert!(log.contains("prefetched 2 images"), "{log}");
    assert!(e.listing(Some("prefetching")).is_empty());
    let cached: Vec<String> = e
        .listing(None)
        .iter()
        .map(|x| x["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(cached.len(), 2);
    assert!(cached.contains(&ids[0]) && cached.contains(&ids[1]));
    let r =
        e.c.request("PUT", &format!("/v1/cached_images/{}", ids[0]), &[], None);
    assert_status!(r, 400); // already cached
    e.download_ok(&ids[0], &datas[0]);
    assert_eq!(e.hits(&ids[0]), Some(1));

    // Prune to a maximum of 1.5 images: the least recently used (ids[1]) goes.
    e.download_ok(&ids[2], &datas[2]);
    e.download_ok(&ids[0], &datas[0]);
    let max = format!(
        "image_cache_max_size_bytes = {}\nimage_cache_percent_extra_to_free = 0\n",
        2 * MB + MB / 2
    );
    e.run_tool("glance-cache-pruner", &max);
    let left: Vec<String> = e
        .listing(None)
        .iter()
        .map(|x| x["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        left,
        [ids[2].clone(), ids[0].clone()],
        "least recently used first"
    );
    assert!(!e.cache_file(&ids[1]).exists());

    // Reap: an invalid entry stays for the grace period, then goes.
    let path = e.cache_file(&ids[2]);
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    bytes[7] ^= 1;
    std::fs::write(&path, &bytes).ok();
    // Make the next download a miss that cannot fill (the corrupted copy is quarantined,
    // and a ranged GET does not fill).
    let r = e.c.request(
        "GET",
        &format!("/v1/images/{}", ids[2]),
        &[("Range", "bytes=0-9")],
        None,
    );
    assert_status!(r, 206);
    assert!(r.body == datas[2][..10]);
    assert_eq!(e.listing(Some("invalid")).len(), 1);
    e.run_tool("glance-cache-reaper", "");
    assert_eq!(
        e.listing(Some("invalid")).len(),
        1,
        "within the grace period"
    );
    let log = e.run_tool(
        "glance-cache-reaper",
        "image_cache_invalid_entry_grace_period = 0\n",
    );
    assert!(log.contains("reaped 1 invalid cache entries"), "{log}");
    assert!(e.listing(Some("invalid")).is_empty());
    assert!(!e.dir().join("cache/invalid").join(&ids[2]).exists());
}

#[test]
fn the_cache_stays_within_its_maximum() {
    let e = env(&format!("image_cache_max_size_bytes = {}\n", 3 * MB));
    let datas: Vec<Vec<u8>> = (0..4).map(|i| data_of(MB, 20 + i)).collect();
    let ids: Vec<String> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| e.upload(&format!("b{i}"), d))
        .collect();
    for (id, d) in ids.iter().zip(&datas) {
        e.download_ok(id, d);
        let total: u64 = e
            .listing(None)
            .iter()
            .filter_map(|x| x["size"].as_u64())
            .sum();
        assert!(total <= 3 * MB as u64, "{total} bytes cached");
    }
    let cached: Vec<String> = e
        .listing(None)
        .iter()
        .map(|x| x["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(cached, ids[1..].to_vec(), "the oldest was evicted");
    // An image larger than the cache is served, never cached.
    let big = data_of(4 * MB, 30);
    let bid = e.upload("big", &big);
    e.download_ok(&bid, &big);
    assert_eq!(e.hits(&bid), None);
    assert!(e.log().contains("do not fit in the cache"));
}

#[test]
fn a_restart_keeps_the_cache_warm() {
    let e = env("");
    let data = data_of(2 * MB, 40);
    let id = e.upload("warm", &data);
    e.download_ok(&id, &data);
    let dir = e.dir().to_path_buf();
    let Env { mut api, .. } = e;
    api.stop();
    let api2 = Server::spawn("glance-api", &dir, &dir.join("glance-api.conf"))
        .unwrap_or_else(|(s, err)| panic!("restart failed ({s:?}): {err}"));
    let e2 = Env {
        c: Client::new(&api2.base),
        api: api2,
        _store: None,
    };
    e2.download_ok(&id, &data);
    assert_eq!(
        e2.hits(&id),
        Some(1),
        "served from the cache after the restart"
    );
    drop(api);
}

#[test]
fn the_cache_api_is_for_admins_and_only_with_the_cache_on() {
    let e = env("");
    let member = [
        ("X-Auth-Token", "t"),
        ("X-Identity-Status", "Confirmed"),
        ("X-Tenant", "t1"),
        ("X-Roles", "member"),
    ];
    let r = e.c.request("GET", "/v1/cached_images", &member, None);
    assert_status!(r, 403);
    let r = e.c.request("DELETE", "/v1/cached_images", &member, None);
    assert_status!(r, 403);
    let r =
        e.c.request("GET", "/v1/cached_images?status=bogus", &[], None);
    assert_status!(r, 400);
    let r = e.c.request("DELETE", "/v1/cached_images", &[], None);
    assert_status!(r, 200);
    assert_eq!(r.json(), serde_json::json!({"num_purged": 0}));
    for s in ["invalid", "incomplete"] {
        let r = e.c.request(
            "DELETE",
            &format!("/v1/cached_images?status={s}"),
            &[],
            None,
        );
        assert_eq!(r.json(), serde_json::json!({"num_reaped": 0}));
    }
    let r =
        e.c.request("DELETE", "/v1/cached_images/anything", &[], None);
    assert_status!(r, 200);
    assert_eq!(r.text(), "null");

    let off = Server::start("glance-api", common::EMBEDDED_API_CONF, false);
    let r = Client::new(&off.base).get("/v1/cached_images");
    assert_status!(r, 404);
}

/// Runs the real `glance` against `port`.
fn glance(port: u16, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glance"));
    common::without_login(&mut cmd)
        .env_remove("GLANCE_HOST")
        .env_remove("GLANCE_PORT")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null());
    let out = cmd.output().unwrap_or_else(|e| panic!("glance: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_glance_cache_commands() {
    let e = env("");
    let port = e.api.port();
    let ok = |args: &[&str]| -> String {
        let (code, out, err) = glance(port, args);
        assert_eq!(code, 0, "glance {args:?}: {out}{err}");
        out
    };
    assert_eq!(ok(&["cache-index"]), "No cached images.\n");
    assert_eq!(ok(&["cache-invalid"]), "No invalid cached images.\n");
    assert_eq!(ok(&["cache-incomplete"]), "No incomplete cached images.\n");
    assert_eq!(ok(&["cache-prefetching"]), "No images being prefetched.\n");

    let data = data_of(MB, 50);
    let id = e.upload("cli-image", &data);
    let other = e.upload("queued-image", &data_of(1000, 51));
    e.download_ok(&id, &data);
    e.download_ok(&id, &data);
    let out = ok(&["cache-index"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Found 1 cached images...");
    assert!(lines[1].starts_with("ID                                   Name                           Last Accessed (UTC)"), "{out}");
    assert!(lines[2].starts_with(&"-".repeat(36)));
    assert!(
        lines[3].starts_with(&format!("{id:<36} {:<30} ", "cli-image")),
        "{out}"
    );
    assert!(
        lines[3].ends_with(&format!("{:>14} {:>10}", MB, 1)),
        "{out}"
    );

    assert_eq!(ok(&["cache-prefetch", &other]), "");
    let out = ok(&["cache-prefetching"]);
    assert!(
        out.starts_with("Found 1 images being prefetched...\n"),
        "{out}"
    );
    assert!(
        out.contains(&other) && out.trim_end().ends_with("queued"),
        "{out}"
    );
    let (code, out, _) = glance(port, &["cache-prefetch", "no-such-image"]);
    assert_eq!(
        (code, out.as_str()),
        (3, "No image with ID no-such-image was found\n")
    );

    // Confirmation is needed (stdin is not a terminal): refused without -f.
    let (code, _, err) = glance(port, &["cache-clear"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(ok(&["cache-purge", "-f", &id]), "");
    assert_eq!(ok(&["cache-index"]), "No cached images.\n");
    e.download_ok(&id, &data);
    assert_eq!(
        ok(&["cache-clear", "-f", "-v"]).lines().next(),
        Some("Purged 1 cached images")
    );
    assert_eq!(
        ok(&["cache-reap-invalid", "-f", "-v"]).lines().next(),
        Some("Reaped 0 invalid cached images")
    );
    assert_eq!(
        ok(&["cache-reap-stalled", "-f", "-v"]).lines().next(),
        Some("Reaped 0 stalled cached images")
    );
    assert!(ok(&["cache-purge", "--dry-run", &id]).contains(&format!("Purge cached image {id}")));

    // An invalid entry, as cache-invalid shows it.
    e.download_ok(&id, &data);
    let path = e.cache_file(&id);
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    bytes[0] ^= 1;
    std::fs::write(&path, &bytes).ok();
    let r = e.c.request(
        "GET",
        &format!("/v1/images/{id}"),
        &[("Range", "bytes=0-0")],
        None,
    );
    assert_status!(r, 206);
    let out = ok(&["cache-invalid"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Found 1 invalid cached images...");
    assert!(
        lines[1].contains("Error")
            && lines[1].contains("Expected Size")
            && lines[1].trim_end().ends_with("% Done")
    );
    assert!(
        lines[3].starts_with(&id) && lines[3].contains("the file changed on disk"),
        "{out}"
    );
    assert!(
        lines[3].ends_with(&format!("{:>14} {:>14} {:>7}", MB, MB, 100)),
        "{out}"
    );

    // Not an admin: refused. A server without the cache: said so.
    let (code, _, err) = glance(
        port,
        &["cache-index", "--tenant", "t1", "--roles", "member"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("Not authorized"), "{err}");
    let off = Server::start("glance-api", common::EMBEDDED_API_CONF, false);
    let (code, _, err) = glance(off.port(), &["cache-index"]);
    assert_eq!(code, 1);
    assert!(err.contains("image_cache_enabled"), "{err}");
    let (code, out, _) = glance(port, &["help", "cache-prefetch"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Usage: glance cache-prefetch ID..."),
        "{out}"
    );
}

/// A small tmpfs mounted for one test (root only), unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: &Path, bytes: usize) -> Option<SmallFs> {
        std::fs::create_dir_all(dir).ok()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        out.status.success().then(|| SmallFs(dir.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_drops_the_copy_and_still_serves_the_client() {
    let tmp = common::tempdir();
    let cache_dir = tmp.path().join("small");
    let Some(_fs) = SmallFs::mount(&cache_dir, 3 * MB) else {
        eprintln!(
            "SKIPPED a_full_disk_drops_the_copy_and_still_serves_the_client: cannot mount a tmpfs (needs root)"
        );
        return;
    };
    let extra = format!(
        "image_cache_datadir = {}\nimage_cache_max_size_bytes = {}\n",
        cache_dir.display(),
        64 * MB
    );
    // The later line wins: the cache lives on the 3 MiB tmpfs.
    let e = env(&extra);
    let big = data_of(5 * MB, 60);
    let id = e.upload("too-big-for-the-disk", &big);
    e.download_ok(&id, &big);
    assert!(e.listing(None).is_empty());
    assert!(e.listing(Some("incomplete")).is_empty());
    let left = std::fs::read_dir(cache_dir.join("incomplete"))
        .map(|d| d.count())
        .ok();
    assert_eq!(left, Some(0));
    assert!(
        e.log().contains("not cached: writing the cache file"),
        "{}",
        e.log()
    );
    // Something that fits is still cached.
    let small = data_of(MB, 61);
    let sid = e.upload("fits", &small);
    e.download_ok(&sid, &small);
    e.download_ok(&sid, &small);
    assert_eq!(e.hits(&sid), Some(1));
    drop(e);
}

#[test]
fn the_v2_download_route_uses_the_same_cache() {
    let e = env("");
    let data = data_of(2 * MB, 70);
    let id = e.upload("both-apis", &data);
    // A v2 download fills the cache, a v1 download hits it, and the other way round.
    let r = e.c.get(&format!("/v2/images/{id}/file"));
    assert_status!(r, 200);
    assert!(r.body == data);
    assert_eq!(e.hits(&id), Some(0));
    e.download_ok(&id, &data);
    assert_eq!(e.hits(&id), Some(1));
    let r = e.c.request(
        "GET",
        &format!("/v2/images/{id}/file"),
        &[("Range", "bytes=10-19")],
        None,
    );
    assert_status!(r, 206);
    assert!(r.body == data[10..20]);
    assert_eq!(e.hits(&id), Some(2));
}
