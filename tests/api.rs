//! `glance-api` end to end: the real binary (embedded SQLite registry, and a remote
//! `glance-registry`), every route, status transition and error of spec §4–§6.
//!
//! Each scenario runs in both registry modes with the file store (`embedded` and `remote`
//! test names), and with the embedded registry against Swift and its S3 API as the default
//! store (`swift` and `s3`; these need `tests/services/swift-s3.sh` and are skipped with a
//! printed reason without it, unless `GLANCE_TEST_REQUIRE_SERVICES=1`).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use common::objstore::{ObjectStore, StoreKind};
use common::{Client, Reply, Server};
use md5::{Digest, Md5};
use serde_json::{Value, json};

/// Registry mode and default store of one run of a scenario.
#[derive(Clone, Copy, Debug)]
struct Mode {
    /// A remote glance-registry instead of the embedded one.
    remote: bool,
    /// The default store.
    store: StoreKind,
}

const EMBEDDED: Mode = Mode {
    remote: false,
    store: StoreKind::File,
};

struct Env {
    api: Server,
    _registry: Option<Server>,
    c: Client,
    datadir: PathBuf,
    /// The container/bucket of a Swift or S3 run.
    store: Option<ObjectStore>,
}

const API_CONF: &str = "[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
workers = 8
filesystem_store_datadir = {dir}/images
location_allowed_hosts = 127.0.0.1
";

fn env(mode: Mode, extra: &str) -> Env {
    let store = match mode.store {
        StoreKind::File => None,
        kind => Some(ObjectStore::new(
            kind,
            common::objstore::Services::from_env(),
        )),
    };
    let store_conf = match &store {
        Some(s) => s.config(None),
        None => "default_store = file\n".to_string(),
    };
    env_with(mode, store, &format!("{store_conf}{extra}"))
}

/// [`env`] with the store and its configuration given.
fn env_with(mode: Mode, store: Option<ObjectStore>, extra: &str) -> Env {
    let (registry, reg_line) = common::registry_for_api(mode.remote, "");
    let api = Server::start("glance-api", &format!("{API_CONF}{reg_line}{extra}"), false);
    let c = Client::new(&api.base);
    let datadir = api.dir.join("images");
    Env {
        api,
        _registry: registry,
        c,
        datadir,
        store,
    }
}

impl Env {
    /// What the default store holds: file names, or object names (S3: with unfinished
    /// multipart parts as `+segments/...`).
    fn stored(&self) -> Vec<String> {
        match &self.store {
            None => files_in(&self.datadir),
            Some(s) => s.objects(),
        }
    }

    /// True when the default store holds data for image `id`.
    fn has_data(&self, id: &str) -> bool {
        match &self.store {
            None => self.datadir.join(id).exists(),
            Some(s) => s.objects().iter().any(|o| o == id),
        }
    }

    /// Removes image `id`'s data behind glance-api's back.
    fn remove_data(&self, id: &str) {
        match &self.store {
            None => {
                std::fs::remove_file(self.datadir.join(id)).ok();
            }
            Some(s) => s.admin.delete(&s.name, id),
        }
    }

    /// How locations written by the default store begin.
    fn location_prefix(&self) -> &'static str {
        match self.store.as_ref().map(|s| s.kind) {
            None | Some(StoreKind::File) => "file://",
            Some(StoreKind::Swift) => "swift+http://",
            Some(StoreKind::S3) => "s3://",
        }
    }

    /// The store options for glance-scrubber.conf (without `default_store`).
    fn scrubber_store_conf(&self) -> String {
        match &self.store {
            None => "filesystem_store_datadir = {dir}/images\n".to_string(),
            Some(s) => s
                .config(None)
                .lines()
                .filter(|l| !l.starts_with("default_store"))
                .map(|l| format!("{l}\n"))
                .collect(),
        }
    }

    /// Fails if a reply shows the store's secret.
    fn assert_no_secret(&self, text: &str) {
        if let Some(s) = &self.store {
            assert!(!text.contains(s.secret()), "secret leaked: {text}");
        }
    }
}

/// Runs a scenario against Swift or S3 (embedded registry), if the test Swift is up.
fn run_on(name: &str, store: StoreKind, scenario: fn(Mode)) {
    if common::objstore::services(&format!("{name} ({store:?})")).is_none() {
        return;
    }
    scenario(Mode {
        remote: false,
        store,
    })
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::common::objstore::StoreKind;
            #[test]
            fn embedded() {
                super::$name(super::EMBEDDED)
            }
            #[test]
            fn remote() {
                super::$name(super::Mode { remote: true, store: StoreKind::File })
            }
            #[test]
            fn swift() {
                super::run_on(stringify!($name), StoreKind::Swift, super::$name)
            }
            #[test]
            fn s3() {
                super::run_on(stringify!($name), StoreKind::S3, super::$name)
            }
        }
    )*};
}

scenarios!(
    versions_and_negotiation,
    create_queued_then_upload,
    create_with_data_and_download,
    chunked_upload,
    upload_errors_kill_the_image,
    register_external_location,
    refused_locations,
    properties_purge_and_merge,
    listing_through_the_api,
    members_through_the_api,
    delete_removes_data,
    delayed_delete_and_scrubber,
    aborted_upload_leaves_nothing,
    status_rules,
    upload_limits_and_store_errors,
    racing_uploads_one_wins,
    location_changes_only_while_queued,
    bad_chunks_kill_the_upload,
    virtual_size_is_read_only,
    ranged_downloads,
    os_hash_of_uploads,
    hashing_algorithm_sha256,
);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5_hex(data: &[u8]) -> String {
    let mut h = Md5::new();
    h.update(data);
    hex(&h.finalize())
}

/// The SHA-512 of `data`, lower-case hex, from RustCrypto's `sha2`: independent of the
/// OpenSSL that glance-api uses.
fn sha512_hex(data: &[u8]) -> String {
    hex(&<sha2::Sha512 as sha2::Digest>::digest(data))
}

fn upload_headers<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![("Content-Type", "application/octet-stream")];
    h.extend_from_slice(extra);
    h
}

fn post_image(c: &Client, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    c.request("POST", "/v1/images", headers, body)
}

fn image_id(r: &Reply) -> String {
    r.json()["image"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn files_in(dir: &PathBuf) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn versions_and_negotiation(mode: Mode) {
    let e = env(mode, "");
    // The versions document lists v2 first (CURRENT), then v1.1 and v1.0 (SUPPORTED);
    // `/versions` answers it with 200, as current Glance does.
    for path in [
        "/",
        "/versions",
        "/v1.1/images",
        "/v9/images",
        "/V1/images",
        "/images",
    ] {
        let r = e.c.get(path);
        assert_status!(r, if path == "/versions" { 200 } else { 300 });
        let versions = r.json()["versions"].as_array().cloned().unwrap_or_default();
        let ids: Vec<&str> = versions.iter().filter_map(|v| v["id"].as_str()).collect();
        assert_eq!(ids.first(), Some(&"v2.7"), "{path}");
        assert_eq!(
            ids[ids.len().saturating_sub(2)..],
            ["v1.1", "v1.0"],
            "{path}"
        );
    }
    let r = e.c.get("/versions");
    let versions = r.json()["versions"].as_array().cloned().unwrap_or_default();
    let v1 = versions
        .iter()
        .find(|v| v["id"] == "v1.0")
        .cloned()
        .unwrap_or_default();
    assert_eq!(v1["status"], "SUPPORTED");
    let href = v1["links"][0]["href"].clone();
    assert_eq!(href, format!("http://127.0.0.1:{}/v1/", e.api.port()));
    for path in ["/v1/images", "/v1.0/images", "/v1/", "/v1", "/v1abc/images"] {
        let r = e.c.get(path);
        assert_status!(r, 200);
        assert_eq!(r.json(), json!({"images": []}), "{path}");
    }
    let r = e.c.request(
        "GET",
        "/images",
        &[("Accept", "application/vnd.openstack.images-v1")],
        None,
    );
    assert_status!(r, 200);
    assert_status!(e.c.get("/v1/versions"), 404);
    assert_status!(e.c.request("PATCH", "/v1/images", &[], None), 404);
    assert_status!(e.c.request("POST", "/v1/images/x", &[], None), 404);
}

fn create_queued_then_upload(mode: Mode) {
    let e = env(mode, "");
    let r = post_image(
        &e.c,
        &[
            ("X-Image-Meta-Name", "queued"),
            ("x-image-meta-disk_format", "raw"),
            ("x-image-meta-container_format", "bare"),
            ("x-image-meta-status", "active"),
            ("Content-Length", "0"),
        ],
        None,
    );
    assert_status!(r, 201);
    let img = r.json()["image"].clone();
    assert_eq!(img["status"], "queued", "client status ignored on create");
    assert_eq!(img["size"], 0);
    assert_eq!(img["checksum"], Value::Null);
    assert_eq!(img["updated_at"], Value::Null);
    let id = image_id(&r);
    let loc = r.header("location").unwrap_or_default().to_string();
    assert_eq!(loc, format!("http://{}/v1/images/{id}", e.api.addr));
    assert!(r.header("etag").is_none(), "no ETag without checksum");

    // A queued image cannot be downloaded.
    assert_status!(e.c.get(&format!("/v1/images/{id}")), 404);

    // Upload into it with PUT.
    let data = b"some image bytes".to_vec();
    let r = e.c.request(
        "PUT",
        &format!("/v1/images/{id}"),
        &upload_headers(&[]),
        Some(&data),
    );
    assert_status!(r, 200);
    let img = r.json()["image"].clone();
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], data.len());
    assert_eq!(img["checksum"], md5_hex(&data));
    assert_eq!(img["name"], "queued");
    let r = e.c.get(&format!("/v1/images/{id}"));
    assert_status!(r, 200);
    assert_eq!(r.body, data);

    // A second upload is a conflict.
    let r = e.c.request(
        "PUT",
        &format!("/v1/images/{id}"),
        &upload_headers(&[]),
        Some(b"again"),
    );
    assert_status!(r, 409);
}

fn create_with_data_and_download(mode: Mode) {
    let e = env(mode, "");
    let mut data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    // Declared qcow2, the data must be qcow2 (the upload is inspected).
    common::images::qcow2_over(&mut data, 1 << 30);
    let sum = md5_hex(&data);
    let size = data.len().to_string();
    let r = post_image(
        &e.c,
        &upload_headers(&[
            ("X-Image-Meta-Name", "with-data"),
            ("x-image-meta-disk_format", "qcow2"),
            ("x-image-meta-container_format", "bare"),
            ("x-image-meta-is_public", "True"),
            ("x-image-meta-size", &size),
            ("x-image-meta-checksum", &sum),
            ("x-image-meta-property-os_distro", "debian"),
            ("X-Image-Meta-Property-Kernel-Id", "k-1"),
            ("x-image-meta-min_ram", "256"),
        ]),
        Some(&data),
    );
    assert_status!(r, 201);
    let img = r.json()["image"].clone();
    let id = image_id(&r);
    assert_eq!(img["status"], "active");
    assert_eq!(img["checksum"], sum.as_str());
    assert_eq!(img["size"], data.len());
    assert_eq!(img["is_public"], true);
    assert_eq!(img["min_ram"], 256);
    assert_eq!(img["properties"]["os_distro"], "debian");
    assert_eq!(img["properties"]["kernel_id"], "k-1");
    assert!(
        img["location"]
            .as_str()
            .is_some_and(|l| l.starts_with(e.location_prefix())),
        "{img}"
    );
    e.assert_no_secret(&r.text());
    assert_eq!(r.header("etag"), Some(sum.as_str()));
    assert!(e.has_data(&id));

    let r = e.c.get(&format!("/v1/images/{id}"));
    assert_status!(r, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("content-length"), Some(size.as_str()));
    assert_eq!(r.header("x-image-meta-checksum"), Some(sum.as_str()));
    assert_eq!(md5_hex(&r.body), sum);

    let h = e.c.request("HEAD", &format!("/v1/images/{id}"), &[], None);
    assert_status!(h, 200);
    for (k, v) in [
        ("x-image-meta-id", id.as_str()),
        ("x-image-meta-name", "with-data"),
        ("x-image-meta-status", "active"),
        ("x-image-meta-size", size.as_str()),
        ("x-image-meta-disk_format", "qcow2"),
        ("x-image-meta-container_format", "bare"),
        ("x-image-meta-is_public", "True"),
        ("x-image-meta-deleted", "False"),
        ("x-image-meta-min_ram", "256"),
        ("x-image-meta-min_disk", "0"),
        ("x-image-meta-property-os_distro", "debian"),
        ("x-image-meta-deleted_at", ""),
    ] {
        assert_eq!(h.header(k), Some(v), "{k}");
    }
    assert!(h.header("x-image-meta-created_at").is_some());
    let location = h.header("x-image-meta-location").unwrap_or_default();
    assert!(location.starts_with(e.location_prefix()), "{location}");
    assert!(!location.contains('@'), "no credentials: {location}");
    e.assert_no_secret(location);
    assert_eq!(h.header("etag"), Some(sum.as_str()));

    // Index brief, detail without location.
    let list = e.c.get("/v1/images").json();
    assert_eq!(list["images"][0]["id"], id.as_str());
    assert!(list["images"][0].get("status").is_none());
    let detail = e.c.get("/v1/images/detail").json();
    assert!(detail["images"][0].get("location").is_none());
    assert_eq!(detail["images"][0]["properties"]["kernel_id"], "k-1");
}

fn chunked_upload(mode: Mode) {
    let e = env(mode, "");
    // Raw socket: a chunked body in three chunks.
    let mut s = TcpStream::connect(e.api.addr).unwrap_or_else(|err| panic!("{err}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let head = "POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
                x-image-meta-name: chunky\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let body = "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n";
    s.write_all(head.as_bytes()).ok();
    s.write_all(body.as_bytes()).ok();
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok();
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let json_start = reply.find("\r\n\r\n").map(|i| i + 4).unwrap_or(0);
    let v: Value = serde_json::from_str(reply[json_start..].trim()).unwrap_or_default();
    assert_eq!(v["image"]["size"], 11);
    assert_eq!(v["image"]["checksum"], md5_hex(b"hello world"));
    let id = v["image"]["id"].as_str().unwrap_or_default();
    assert_eq!(e.c.get(&format!("/v1/images/{id}")).body, b"hello world");
}

fn upload_errors_kill_the_image(mode: Mode) {
    let e = env(mode, "");
    let status_of = |id: &str| {
        e.c.request("HEAD", &format!("/v1/images/{id}"), &[], None)
            .header("x-image-meta-status")
            .unwrap_or_default()
            .to_string()
    };

    // Wrong Content-Type: killed first, then 400.
    let r = post_image(
        &e.c,
        &[
            ("Content-Type", "text/plain"),
            ("x-image-meta-name", "wrong-type"),
        ],
        Some(b"data"),
    );
    assert_status!(r, 400);
    assert!(
        r.text()
            .contains("Content-Type must be application/octet-stream")
    );
    let killed = e.c.get("/v1/images/detail?is_public=none").json();
    assert_eq!(killed["images"], json!([]), "killed images are not listed");

    // Checksum mismatch: 400, killed, no data left.
    let r = post_image(
        &e.c,
        &upload_headers(&[
            ("x-image-meta-name", "bad-sum"),
            ("x-image-meta-checksum", "0123456789abcdef0123456789abcdef"),
        ]),
        Some(b"data"),
    );
    assert_status!(r, 400);
    assert!(r.text().contains("Checksum"), "{}", r.text());
    assert!(e.stored().is_empty(), "{:?}", e.stored());

    // Declared size ≠ Content-Length: refused before anything is reserved.
    let r = post_image(
        &e.c,
        &upload_headers(&[("x-image-meta-size", "99")]),
        Some(b"data"),
    );
    assert_status!(r, 400);
    assert!(r.text().contains("x-image-meta-size"));

    // Unknown store: 400 and no orphan record.
    let before = e.c.get("/v1/images?is_public=none").json();
    let r = post_image(
        &e.c,
        &upload_headers(&[("x-image-meta-store", "tape")]),
        Some(b"data"),
    );
    assert_status!(r, 400);
    assert!(r.text().contains("tape"));
    assert_eq!(e.c.get("/v1/images?is_public=none").json(), before);

    // The killed wrong-type image is still visible with HEAD.
    let r = post_image(
        &e.c,
        &[
            ("Content-Type", "application/json"),
            ("x-image-meta-id", "kill-me"),
        ],
        Some(b"{}"),
    );
    assert_status!(r, 400);
    assert_eq!(status_of("kill-me"), "killed");
    // Killed images cannot be uploaded to, nor downloaded.
    let r = e.c.request(
        "PUT",
        "/v1/images/kill-me",
        &upload_headers(&[]),
        Some(b"x"),
    );
    assert_status!(r, 409);
    assert_status!(e.c.get("/v1/images/kill-me"), 404);

    // Bad header values.
    for (h, v) in [
        ("x-image-meta-size", "-1"),
        ("x-image-meta-size", "abc"),
        ("x-image-meta-min_disk", "1.5"),
        ("x-image-meta-id", "bad/id"),
        ("x-image-meta-disk_format", "floppy"),
    ] {
        let r = post_image(&e.c, &[(h, v)], None);
        assert_status!(r, 400);
    }
    // Duplicate id.
    assert_status!(post_image(&e.c, &[("x-image-meta-id", "dup")], None), 201);
    let r = post_image(&e.c, &[("x-image-meta-id", "dup")], None);
    assert_status!(r, 409);
    assert!(r.text().contains("already exists"));
}

/// A tiny HTTP server holding `body`, answering GET and HEAD; returns its port.
fn serve_remote_image(body: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).ok();
            if !req.starts_with("HEAD") {
                s.write_all(&body).ok();
            }
        }
    });
    port
}

fn register_external_location(mode: Mode) {
    let e = env(mode, "");
    let data = b"remote image data".to_vec();
    let port = serve_remote_image(data.clone());
    // User-info and a presigned URL's signature are both credentials.
    let loc = format!(
        "http://user:s3cret@127.0.0.1:{port}/images/remote.img?temp_url_sig=s3cret&temp_url_expires=9"
    );
    let r = post_image(
        &e.c,
        &[
            ("x-image-meta-name", "remote"),
            ("x-image-meta-location", &loc),
        ],
        None,
    );
    assert_status!(r, 201);
    assert!(!r.text().contains("s3cret"), "{}", r.text());
    let img = r.json()["image"].clone();
    assert_eq!(
        img["status"], "active",
        "registered images are active at once"
    );
    assert_eq!(img["size"], data.len(), "size learned with HEAD");
    let id = image_id(&r);
    let g = e.c.get(&format!("/v1/images/{id}"));
    assert_status!(g, 200);
    assert_eq!(g.body, data);
    let h = e.c.request("HEAD", &format!("/v1/images/{id}"), &[], None);
    assert_eq!(
        h.header("x-image-meta-location"),
        Some(
            format!(
                "http://127.0.0.1:{port}/images/remote.img?temp_url_sig=***&temp_url_expires=9"
            )
            .as_str()
        )
    );
    let detail = e.c.get("/v1/images/detail");
    assert!(!detail.text().contains("s3cret"), "{}", detail.text());
    // Uploading to it is refused; deleting leaves the remote alone.
    let r = e.c.request(
        "PUT",
        &format!("/v1/images/{id}"),
        &upload_headers(&[]),
        Some(b"x"),
    );
    assert_status!(r, 409);
    let r =
        e.c.request("DELETE", &format!("/v1/images/{id}"), &[], None);
    assert_status!(r, 200);
    assert_status!(
        e.c.request("HEAD", &format!("/v1/images/{id}"), &[], None),
        404
    );

    // A queued image given a location by PUT becomes active (later Glance v1; glanceclient's
    // `image-update --location` relies on it).
    let r = post_image(&e.c, &[("x-image-meta-name", "later")], None);
    let id = image_id(&r);
    let put_loc = format!("http://127.0.0.1:{port}/images/remote.img");
    let r = e.c.request(
        "PUT",
        &format!("/v1/images/{id}"),
        &[("x-image-meta-location", &put_loc)],
        None,
    );
    assert_status!(r, 200);
    assert_eq!(r.json()["image"]["status"], "active");
    assert_eq!(r.json()["image"]["size"], data.len());
    assert_eq!(e.c.get(&format!("/v1/images/{id}")).body, data);
}

fn refused_locations(mode: Mode) {
    let e = env(mode, "");
    let inside = format!("file://{}/x", e.datadir.display());
    for loc in [
        "file:///etc/passwd",
        inside.as_str(),
        "filesystem:///etc/passwd",
        "gopher://host/x",
        "not a uri",
        "http://user@host/x",
        "http:///nohost",
        // The location policy: only 127.0.0.1 is allowed among the special addresses.
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x",
        "http://[::1]/x",
        "http://127.0.0.2/x",
        "http://[::ffff:127.0.0.2]/x",
        "swift+http://u:k@127.0.0.2:8080/auth/v1.0/c/o",
    ] {
        let r = post_image(&e.c, &[("x-image-meta-location", loc)], None);
        assert_status!(r, 400);
    }
    assert_eq!(
        e.c.get("/v1/images?is_public=none").json(),
        json!({"images": []}),
        "nothing reserved"
    );
    // Nor through PUT.
    let r = post_image(&e.c, &[("x-image-meta-name", "q")], None);
    let id = image_id(&r);
    let r = e.c.request(
        "PUT",
        &format!("/v1/images/{id}"),
        &[("x-image-meta-location", "file:///etc/shadow")],
        None,
    );
    assert_status!(r, 400);
    // Data and a location at once.
    let r = post_image(
        &e.c,
        &upload_headers(&[("x-image-meta-location", "http://127.0.0.1:1/x")]),
        Some(b"data"),
    );
    assert_status!(r, 400);
}

fn properties_purge_and_merge(mode: Mode) {
    let e = env(mode, "");
    let r = post_image(
        &e.c,
        &[
            ("x-image-meta-name", "props"),
            ("x-image-meta-property-a", "1"),
            ("x-image-meta-property-b", "2"),
        ],
        None,
    );
    let id = image_id(&r);
    let path = format!("/v1/images/{id}");
    // python-glanceclient style: merge.
    let r = e.c.request(
        "PUT",
        &path,
        &[
            ("x-image-meta-property-c", "3"),
            ("x-glance-registry-purge-props", "false"),
        ],
        None,
    );
    assert_status!(r, 200);
    assert_eq!(
        r.json()["image"]["properties"],
        json!({"a": "1", "b": "2", "c": "3"})
    );
    // Diablo default: every PUT replaces the whole set.
    let r =
        e.c.request("PUT", &path, &[("x-image-meta-is_public", "true")], None);
    assert_status!(r, 200);
    assert_eq!(r.json()["image"]["properties"], json!({}));
    assert_eq!(r.json()["image"]["is_public"], true);
    // PUT on an unknown image.
    let r = e.c.request(
        "PUT",
        "/v1/images/nope",
        &[("x-image-meta-name", "x")],
        None,
    );
    assert_status!(r, 404);
}

fn listing_through_the_api(mode: Mode) {
    let e = env(mode, "");
    let mut ids = Vec::new();
    for (name, size) in [("Image1", "19"), ("ASDF", "2"), ("XYZ", "5")] {
        let r = post_image(
            &e.c,
            &[
                ("x-image-meta-name", name),
                ("x-image-meta-size", size),
                ("x-image-meta-is_public", "true"),
                (
                    "x-image-meta-property-tier",
                    if name == "XYZ" { "gold" } else { "lead" },
                ),
            ],
            None,
        );
        ids.push(image_id(&r));
    }
    let list_ids = |q: &str| -> Vec<String> {
        let r = e.c.get(&format!("/v1/images{q}"));
        assert_status!(r, 200);
        r.json()["images"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| i["id"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        list_ids(""),
        vec![ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(list_ids("?limit=2"), vec![ids[2].clone(), ids[1].clone()]);
    assert_eq!(
        list_ids(&format!("?marker={}", ids[2])),
        vec![ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(
        list_ids("?sort_key=size&sort_dir=asc"),
        vec![ids[1].clone(), ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(list_ids("?name=ASDF"), vec![ids[1].clone()]);
    assert_eq!(
        list_ids("?size_min=5&size_max=19"),
        vec![ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(list_ids("?property-tier=gold"), vec![ids[2].clone()]);
    assert_eq!(list_ids("/detail?status=queued").len(), 3);
    for q in [
        "?sort_key=bogus",
        "?sort_dir=up",
        "?limit=x",
        "?marker=unknown",
    ] {
        assert_status!(e.c.get(&format!("/v1/images{q}")), 400);
    }
}

fn members_through_the_api(mode: Mode) {
    let e = env(mode, "");
    let a: Vec<(&str, &str)> = vec![
        ("X-Auth-Token", "t"),
        ("X-Identity-Status", "Confirmed"),
        ("X-Tenant", "A"),
        ("X-Roles", "member"),
    ];
    let b: Vec<(&str, &str)> = vec![
        ("X-Auth-Token", "t"),
        ("X-Identity-Status", "Confirmed"),
        ("X-Tenant", "B"),
        ("X-Roles", "member"),
    ];
    let mut h = a.clone();
    h.push(("x-image-meta-name", "private"));
    let r = post_image(&e.c, &h, None);
    assert_status!(r, 201);
    assert_eq!(r.json()["image"]["owner"], "A");
    let id = image_id(&r);
    assert_status!(
        e.c.request("HEAD", &format!("/v1/images/{id}"), &b, None),
        404
    );
    let r =
        e.c.request("PUT", &format!("/v1/images/{id}/members/B"), &a, None);
    assert_status!(r, 204);
    assert_status!(
        e.c.request("HEAD", &format!("/v1/images/{id}"), &b, None),
        200
    );
    let m =
        e.c.request("GET", &format!("/v1/images/{id}/members"), &a, None);
    assert_eq!(
        m.json(),
        json!({"members": [{"member_id": "B", "can_share": false}]})
    );
    let s = e.c.get("/v1/shared-images/B");
    assert_eq!(s.json()["shared_images"][0]["image_id"], id.as_str());
    // B may not share further: 404, never 403.
    let r =
        e.c.request("PUT", &format!("/v1/images/{id}/members/C"), &b, None);
    assert_status!(r, 404);
    // No tenant: 401.
    let r =
        e.c.request("PUT", &format!("/v1/images/{id}/members/C"), &[], None);
    assert_status!(r, 401);
    // Replace and delete.
    let body = json!({"memberships": [{"member_id": "C", "can_share": true}]}).to_string();
    let mut hj = a.clone();
    hj.push(("Content-Type", "application/json"));
    let r = e.c.request(
        "PUT",
        &format!("/v1/images/{id}/members"),
        &hj,
        Some(body.as_bytes()),
    );
    assert_status!(r, 204);
    let r =
        e.c.request("DELETE", &format!("/v1/images/{id}/members/C"), &a, None);
    assert_status!(r, 204);
    let m =
        e.c.request("GET", &format!("/v1/images/{id}/members"), &a, None);
    assert_eq!(m.json(), json!({"members": []}));
    // B cannot delete A's image.
    assert_status!(
        e.c.request("DELETE", &format!("/v1/images/{id}"), &b, None),
        404
    );
}

fn delete_removes_data(mode: Mode) {
    let e = env(mode, "");
    let r = post_image(
        &e.c,
        &upload_headers(&[("x-image-meta-name", "d")]),
        Some(b"bytes"),
    );
    let id = image_id(&r);
    assert!(e.has_data(&id));
    let r =
        e.c.request("DELETE", &format!("/v1/images/{id}"), &[], None);
    assert_status!(r, 200);
    assert_eq!(r.text(), "null");
    assert!(!e.has_data(&id), "data removed");
    for m in ["HEAD", "GET", "DELETE"] {
        assert_status!(e.c.request(m, &format!("/v1/images/{id}"), &[], None), 404);
    }
    // A queued image (no data) deletes too.
    let r = post_image(&e.c, &[("x-image-meta-name", "q")], None);
    let id = image_id(&r);
    assert_status!(
        e.c.request("DELETE", &format!("/v1/images/{id}"), &[], None),
        200
    );
    // Missing data file: still deletes the metadata.
    let r = post_image(&e.c, &upload_headers(&[]), Some(b"x"));
    let id = image_id(&r);
    e.remove_data(&id);
    assert_status!(e.c.get(&format!("/v1/images/{id}")), 404);
    assert_status!(
        e.c.request("DELETE", &format!("/v1/images/{id}"), &[], None),
        200
    );
}

fn delayed_delete_and_scrubber(mode: Mode) {
    let e = env(mode, "delayed_delete = True\n");
    let r = post_image(&e.c, &upload_headers(&[]), Some(b"later"));
    let id = image_id(&r);
    assert_status!(
        e.c.request("DELETE", &format!("/v1/images/{id}"), &[], None),
        200
    );
    assert_status!(
        e.c.request("HEAD", &format!("/v1/images/{id}"), &[], None),
        404
    );
    assert!(e.has_data(&id), "data kept for the scrubber");
    if !mode.remote {
        let conf = common::write_config(
            &e.api.dir,
            "glance-scrubber",
            &format!(
                "[DEFAULT]\nsql_connection = sqlite:///{{dir}}/api.sqlite\nscrub_time = 0\n{}",
                e.scrubber_store_conf()
            ),
        );
        let out = std::process::Command::new(common::bin("glance-scrubber"))
            .arg("--config-file")
            .arg(&conf)
            .output()
            .unwrap_or_else(|err| panic!("scrubber: {err}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!e.has_data(&id), "scrubber removed the data");
    }
}

fn aborted_upload_leaves_nothing(mode: Mode) {
    let e = env(mode, "");
    let mut s = TcpStream::connect(e.api.addr).unwrap_or_else(|err| panic!("{err}"));
    let head = "POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
                x-image-meta-id: aborted\r\nContent-Length: 10000000\r\n\r\n";
    s.write_all(head.as_bytes()).ok();
    s.write_all(&[7u8; 100_000]).ok();
    drop(s);
    // The image ends killed and no file (final or temporary) remains.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = String::new();
    while Instant::now() < deadline {
        let r = e.c.request("HEAD", "/v1/images/aborted", &[], None);
        status = r
            .header("x-image-meta-status")
            .unwrap_or_default()
            .to_string();
        if status == "killed" {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, "killed");
    assert!(e.stored().is_empty(), "{:?}", e.stored());
    // The server still serves.
    assert_status!(e.c.get("/v1/images"), 200);
}

fn status_rules(mode: Mode) {
    let e = env(mode, "");
    let r = post_image(&e.c, &upload_headers(&[]), Some(b"x"));
    let id = image_id(&r);
    let path = format!("/v1/images/{id}");
    // active → queued is not a transition the service allows.
    let r =
        e.c.request("PUT", &path, &[("x-image-meta-status", "queued")], None);
    assert_status!(r, 400);
    // Read-only fields are ignored.
    let r = e.c.request(
        "PUT",
        &path,
        &[
            ("x-image-meta-created_at", "2000-01-01T00:00:00"),
            ("x-image-meta-deleted", "true"),
        ],
        None,
    );
    assert_status!(r, 200);
    assert_eq!(r.json()["image"]["deleted"], false);
    assert_ne!(r.json()["image"]["created_at"], "2000-01-01T00:00:00");
    assert!(r.json()["image"]["updated_at"].is_string());
}

const VSIZE_READ_ONLY: &str =
    "x-image-meta-virtual_size is read-only: glance computes it from the image data";

/// `virtual_size` is shown (unknown: an empty header, JSON null) but never taken from a
/// client: POST and PUT that send it are 400 and change nothing.
fn virtual_size_is_read_only(mode: Mode) {
    let e = env(mode, "");
    let r = post_image(
        &e.c,
        &[
            ("x-image-meta-name", "vsize"),
            ("x-image-meta-is_public", "True"),
            ("x-image-meta-disk_format", "vhdx"),
            ("x-image-meta-container_format", "bare"),
        ],
        None,
    );
    assert_status!(r, 201);
    assert_eq!(r.json()["image"]["virtual_size"], Value::Null);
    assert_eq!(
        r.json()["image"]["disk_format"],
        "vhdx",
        "vhdx known by default"
    );
    let id = image_id(&r);
    let path = format!("/v1/images/{id}");
    let head = |e: &Env| e.c.request("HEAD", &path, &[], None);
    let h = head(&e);
    assert_status!(h, 200);
    assert_eq!(h.header("x-image-meta-virtual_size"), Some(""));
    let detail = e.c.get("/v1/images/detail?status=queued").json();
    assert_eq!(detail["images"][0]["id"], id.as_str(), "{detail}");
    assert_eq!(detail["images"][0]["virtual_size"], Value::Null);

    for (name, value) in [
        ("x-image-meta-virtual_size", "1073741824"),
        ("X-Image-Meta-Virtual-Size", ""),
    ] {
        let sent = [("x-image-meta-name", "changed"), (name, value)];
        let r = post_image(&e.c, &sent, None);
        assert_status!(r, 400);
        assert!(r.text().contains(VSIZE_READ_ONLY), "{}", r.text());
        let r = e.c.request("PUT", &path, &sent, None);
        assert_status!(r, 400);
        assert!(r.text().contains(VSIZE_READ_ONLY), "{}", r.text());
    }
    let list = e.c.get("/v1/images/detail?status=queued").json();
    assert_eq!(list["images"].as_array().map(Vec::len), Some(1), "{list}");
    let h = head(&e);
    assert_eq!(h.header("x-image-meta-name"), Some("vsize"));
    assert_eq!(h.header("x-image-meta-virtual_size"), Some(""));
    assert!(h.header("x-image-meta-property-virtual_size").is_none());
}

#[test]
fn disk_formats_narrow_what_clients_declare() {
    let e = env(EMBEDDED, "disk_formats = raw,qcow2\n");
    let refused = "Invalid disk format 'vmdk' for image. Valid values: raw, qcow2";
    let vmdk = [
        ("x-image-meta-id", "vm-1"),
        ("x-image-meta-name", "vm"),
        ("x-image-meta-disk_format", "vmdk"),
        ("x-image-meta-container_format", "bare"),
    ];
    let r = post_image(&e.c, &upload_headers(&vmdk), Some(b"data"));
    assert_status!(r, 400);
    assert!(r.text().contains(refused), "{}", r.text());
    // Refused before anything is reserved or stored.
    assert_status!(e.c.request("HEAD", "/v1/images/vm-1", &[], None), 404);
    assert!(e.stored().is_empty(), "{:?}", e.stored());

    let r = post_image(&e.c, &[("x-image-meta-disk_format", "qcow2")], None);
    assert_status!(r, 201);
    let path = format!("/v1/images/{}", image_id(&r));
    let r = e.c.request("PUT", &path, &vmdk, None);
    assert_status!(r, 400);
    assert!(r.text().contains(refused), "{}", r.text());
    let h = e.c.request("HEAD", &path, &[], None);
    assert_eq!(h.header("x-image-meta-disk_format"), Some("qcow2"));
    assert_eq!(h.header("x-image-meta-name"), Some(""));
    let r =
        e.c.request("PUT", &path, &[("x-image-meta-disk_format", "raw")], None);
    assert_status!(r, 200);
    assert_eq!(r.json()["image"]["disk_format"], "raw");
}

/// Data whose hash no shortcut gets right: every byte differs from its neighbours.
fn hash_test_data(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

/// `os_hash_algo` and `os_hash_value` of a public image: the JSON reply's, HEAD's headers'
/// and the detailed listing's must agree; returns them.
fn os_hash_everywhere(e: &Env, reply: &Value) -> (String, String) {
    let img = &reply["image"];
    let id = img["id"].as_str().unwrap_or_default();
    let algo = img["os_hash_algo"].as_str().unwrap_or_default().to_string();
    let value = img["os_hash_value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let h = e.c.request("HEAD", &format!("/v1/images/{id}"), &[], None);
    assert_status!(h, 200);
    assert_eq!(h.header("x-image-meta-os_hash_algo"), Some(algo.as_str()));
    assert_eq!(h.header("x-image-meta-os_hash_value"), Some(value.as_str()));
    let detail = e.c.get("/v1/images/detail?status=active").json();
    let listed = detail["images"].as_array().cloned().unwrap_or_default();
    let listed = listed.iter().find(|i| i["id"] == id);
    let listed = listed.unwrap_or_else(|| panic!("{id} not in {detail}"));
    assert_eq!(listed["os_hash_algo"], algo.as_str());
    assert_eq!(listed["os_hash_value"], value.as_str());
    (algo, value)
}

/// Every upload gets the SHA-512 of its data beside the MD5, whatever the way in (declared
/// size, chunked, into a queued image): in the JSON, as `x-image-meta-os_hash_*` headers
/// and in listings; unknown (null, empty header) until data arrives; never set by clients.
fn os_hash_of_uploads(mode: Mode) {
    let e = env(mode, "");
    let sha512 = |data: &[u8]| ("sha512".to_string(), sha512_hex(data));

    // A declared size: the file store's copy pipeline, or parts read inline.
    let data = hash_test_data((5 << 20) / 2 + 1);
    let size = data.len().to_string();
    let sent = [
        ("x-image-meta-name", "hashed"),
        ("x-image-meta-is_public", "True"),
        ("x-image-meta-size", &size),
    ];
    let r = post_image(&e.c, &upload_headers(&sent), Some(&data));
    assert_status!(r, 201);
    let v = r.json();
    assert_eq!(v["image"]["checksum"], md5_hex(&data).as_str());
    assert_eq!(os_hash_everywhere(&e, &v), sha512(&data));

    // Chunked, size unknown (S3: a part filled into its buffer, hashed on a second thread).
    let data = hash_test_data(3 << 19);
    let chunks: Vec<&[u8]> = data.chunks(64 * 1024).collect();
    let extra = "x-image-meta-name: chunked-hash\r\nx-image-meta-is_public: True\r\n";
    let reply = raw_chunked_post(&e, extra, &chunks);
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let json_start = reply.find("\r\n\r\n").map_or(0, |i| i + 4);
    let v: Value = serde_json::from_str(reply[json_start..].trim()).unwrap_or_default();
    assert_eq!(v["image"]["size"], data.len());
    assert_eq!(os_hash_everywhere(&e, &v), sha512(&data));

    // Queued: unknown until the data comes with a PUT.
    let later = [
        ("x-image-meta-name", "later"),
        ("x-image-meta-is_public", "True"),
    ];
    let r = post_image(&e.c, &later, None);
    assert_status!(r, 201);
    assert_eq!(r.json()["image"]["os_hash_algo"], Value::Null);
    assert_eq!(r.json()["image"]["os_hash_value"], Value::Null);
    let path = format!("/v1/images/{}", image_id(&r));
    let h = e.c.request("HEAD", &path, &[], None);
    assert_eq!(h.header("x-image-meta-os_hash_algo"), Some(""));
    assert_eq!(h.header("x-image-meta-os_hash_value"), Some(""));
    let data = b"The quick brown fox jumps over the lazy dog".to_vec();
    let r = e.c.request("PUT", &path, &upload_headers(&[]), Some(&data));
    assert_status!(r, 200);
    assert_eq!(os_hash_everywhere(&e, &r.json()), sha512(&data));

    // Read-only: a request naming either field is refused and changes nothing.
    for (name, value) in [
        ("x-image-meta-os_hash_algo", "sha256"),
        ("X-Image-Meta-Os-Hash-Value", "00"),
    ] {
        let field = name.to_ascii_lowercase().replace('-', "_");
        let field = field.trim_start_matches("x_image_meta_");
        let want = format!("x-image-meta-{field} is read-only");
        let r = post_image(&e.c, &[("x-image-meta-name", "no"), (name, value)], None);
        assert_status!(r, 400);
        assert!(r.text().contains(&want), "{}", r.text());
        let r = e.c.request("PUT", &path, &[(name, value)], None);
        assert_status!(r, 400);
        assert!(r.text().contains(&want), "{}", r.text());
    }
    let h = e.c.request("HEAD", &path, &[], None);
    let known = sha512_hex(&data);
    assert_eq!(h.header("x-image-meta-os_hash_algo"), Some("sha512"));
    assert_eq!(h.header("x-image-meta-os_hash_value"), Some(known.as_str()));
}

/// `hashing_algorithm = SHA256` (any case): uploads get a SHA-256.
fn hashing_algorithm_sha256(mode: Mode) {
    let e = env(mode, "hashing_algorithm = SHA256\n");
    let data = hash_test_data(100_000);
    let r = post_image(
        &e.c,
        &upload_headers(&[
            ("x-image-meta-name", "sha256"),
            ("x-image-meta-is_public", "True"),
        ]),
        Some(&data),
    );
    assert_status!(r, 201);
    let want = hex(&<sha2::Sha256 as sha2::Digest>::digest(&data));
    assert_eq!(os_hash_everywhere(&e, &r.json()), ("sha256".into(), want));
}

/// Sends a raw chunked upload and returns the reply text.
fn raw_chunked_post(e: &Env, extra_headers: &str, chunks: &[&[u8]]) -> String {
    let mut body = Vec::new();
    for c in chunks {
        body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        body.extend_from_slice(c);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    raw_chunked_post_wire(e, extra_headers, &body)
}

/// Sends a chunked upload whose body is `wire` exactly (framing included) and returns the
/// reply text.
fn raw_chunked_post_wire(e: &Env, extra_headers: &str, wire: &[u8]) -> String {
    let mut s = TcpStream::connect(e.api.addr).unwrap_or_else(|err| panic!("{err}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let head = format!(
        "POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         {extra_headers}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).ok();
    s.write_all(wire).ok();
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok();
    reply
}

/// A malformed chunked body (bare LF, bad extension, signed size) is the client's fault: a
/// 400 naming the problem, the image killed and no data left behind (issue 12).
fn bad_chunks_kill_the_upload(mode: Mode) {
    let e = env(mode, "");
    for (id, wire, says) in [
        (
            "bare-lf",
            &b"5\r\nhello\r\n6\n world\r\n0\r\n\r\n"[..],
            "chunk-size line must end with CRLF",
        ),
        (
            "bad-ext",
            b"5;a=(b)\r\nhello\r\n0\r\n\r\n",
            "invalid chunk extension",
        ),
        ("signed", b"+5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        (
            "overlong",
            b"5\r\nhello world\r\n0\r\n\r\n",
            "not followed by CRLF",
        ),
    ] {
        let reply = raw_chunked_post_wire(&e, &format!("x-image-meta-id: {id}\r\n"), wire);
        assert!(reply.starts_with("HTTP/1.1 400"), "{id}: {reply}");
        assert!(reply.contains(says), "{id}: {reply}");
        let h = e.c.request("HEAD", &format!("/v1/images/{id}"), &[], None);
        assert_eq!(h.header("x-image-meta-status"), Some("killed"), "{id}");
        assert!(!e.has_data(id), "{id}: {:?}", e.stored());
    }
    assert!(e.stored().is_empty(), "{:?}", e.stored());
}

fn upload_limits_and_store_errors(mode: Mode) {
    let e = env(mode, "image_size_cap = 1000\n");
    // Declared too large: 413 before anything is reserved.
    let big = vec![1u8; 2000];
    let r = post_image(
        &e.c,
        &upload_headers(&[("x-image-meta-name", "big")]),
        Some(&big),
    );
    assert_status!(r, 413);
    assert_eq!(
        e.c.get("/v1/images?is_public=none").json(),
        json!({"images": []})
    );
    // Chunked past the cap: 413, image killed, no data left.
    let reply = raw_chunked_post(
        &e,
        "x-image-meta-id: too-big\r\n",
        &[&big[..600], &big[..600]],
    );
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    let h = e.c.request("HEAD", "/v1/images/too-big", &[], None);
    assert_eq!(h.header("x-image-meta-status"), Some("killed"));
    assert!(e.stored().is_empty(), "{:?}", e.stored());
    // Chunked with a declared size that the data does not match: 400, killed, nothing left.
    let reply = raw_chunked_post(
        &e,
        "x-image-meta-id: short\r\nx-image-meta-size: 5\r\n",
        &[b"hello world"],
    );
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let h = e.c.request("HEAD", "/v1/images/short", &[], None);
    assert_eq!(h.header("x-image-meta-status"), Some("killed"));
    assert!(e.stored().is_empty(), "{:?}", e.stored());
    // The read-only http store cannot take uploads.
    let r = post_image(
        &e.c,
        &upload_headers(&[("x-image-meta-store", "http")]),
        Some(b"x"),
    );
    assert_status!(r, 400);
    // An empty chunked body makes an active 0-byte image.
    let reply = raw_chunked_post(&e, "x-image-meta-id: empty\r\n", &[]);
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let h = e.c.request("HEAD", "/v1/images/empty", &[], None);
    assert_eq!(h.header("x-image-meta-status"), Some("active"));
    assert_eq!(h.header("x-image-meta-size"), Some("0"));
    assert_eq!(e.c.get("/v1/images/empty").body, b"");
}

#[test]
fn out_of_range_changes_since_is_400() {
    // Once a panic (a 500): the year overflowed SystemTime (issue 12).
    let e = env(EMBEDDED, "");
    for q in [
        "changes-since=300000000000-01-01",
        "changes-since=9999-12-32",
        "changes-since=0000-01-01",
    ] {
        for path in ["/v1/images/detail", "/v1/images"] {
            let r = e.c.get(&format!("{path}?{q}"));
            assert_status!(r, 400);
            assert!(r.text().contains("changes-since"), "{q}: {}", r.text());
        }
    }
    let r =
        e.c.get("/v1/images/detail?changes-since=9999-12-31T23:59:59");
    assert_status!(r, 200);
}

#[test]
fn unusable_datadir_is_a_clear_error() {
    // The data dir cannot be created (a regular file is in the way): the server starts,
    // uploads fail with a message naming the option, and the image is killed.
    let dir = common::tempdir();
    std::fs::write(dir.path().join("blocker"), b"").ok();
    let conf = format!(
        "{API_CONF}default_store = file\nsql_connection = sqlite:///{{dir}}/api.sqlite\ndb_auto_create = True\nfilesystem_store_datadir = {{dir}}/blocker/images\n"
    );
    let api = Server::start_in("glance-api", dir.path(), &conf, false);
    let c = Client::new(&api.base);
    let r = post_image(
        &c,
        &upload_headers(&[("x-image-meta-id", "nowhere")]),
        Some(b"data"),
    );
    assert!(r.status >= 400, "{}", r.status);
    assert!(
        r.text().contains("filesystem_store_datadir"),
        "{}",
        r.text()
    );
    let h = c.request("HEAD", "/v1/images/nowhere", &[], None);
    assert_eq!(h.header("x-image-meta-status"), Some("killed"));
}

#[test]
fn start_up_removes_temp_files_of_interrupted_uploads() {
    // What a glance-api killed mid-upload leaves behind: an hour-old temp file. The next
    // start removes it, and leaves a fresh one (another node's upload in progress) and
    // anything the store did not name.
    let dir = common::tempdir();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).expect("mkdir");
    let stale = images.join(".crashed.tmp-0123456789abcdef0123456789abcdef");
    let fresh = images.join(".running.tmp-fedcba9876543210fedcba9876543210");
    let foreign = images.join(".mine.tmp-x");
    for path in [&stale, &fresh, &foreign] {
        std::fs::write(path, b"partial image").expect("write");
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .and_then(|f| f.set_modified(two_hours_ago))
        .expect("set mtime");
    let _api = Server::start_in("glance-api", dir.path(), common::EMBEDDED_API_CONF, false);
    assert!(!stale.exists(), "stale temp file kept");
    assert!(
        fresh.exists() && foreign.exists(),
        "a file that is not stale was removed"
    );
}

#[test]
fn one_gib_round_trip() {
    let e = env(EMBEDDED, "");
    const SIZE: u64 = 1 << 30;
    // A deterministic stream, hashed while it is generated: nothing holds the image.
    struct Pattern {
        left: u64,
        hash: Md5,
    }
    impl Read for Pattern {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.left as usize);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = ((self.left as usize + i) % 253) as u8;
            }
            self.hash.update(&buf[..n]);
            self.left -= n as u64;
            Ok(n)
        }
    }
    let mut pattern = Pattern {
        left: SIZE,
        hash: Md5::new(),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .post(format!("{}/v1/images", e.c.base))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", SIZE.to_string())
        .header("x-image-meta-name", "big")
        .send(ureq::SendBody::from_reader(&mut pattern))
        .unwrap_or_else(|err| panic!("upload: {err}"));
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(resp.status().as_u16(), 201, "{text}");
    let sent = hex(&pattern.hash.finalize());
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(v["image"]["checksum"], sent.as_str());
    assert_eq!(v["image"]["size"], SIZE);
    let id = v["image"]["id"].as_str().unwrap_or_default();

    let mut resp = agent
        .get(format!("{}/v1/images/{id}", e.c.base))
        .call()
        .unwrap_or_else(|err| panic!("download: {err}"));
    assert_eq!(resp.status().as_u16(), 200);
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut hash = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    assert_eq!(total, SIZE);
    assert_eq!(hex(&hash.finalize()), sent);
}

/// 16 clients upload different data into one queued image at once (a client retrying after
/// a timeout is enough to race): exactly one wins, the others get 409 and touch nothing.
fn racing_uploads_one_wins(mode: Mode) {
    const RACERS: usize = 16;
    let e = env(mode, "");
    let r = post_image(&e.c, &[("x-image-meta-name", "raced")], None);
    assert_status!(r, 201);
    let id = image_id(&r);
    let path = format!("/v1/images/{id}");
    let start = std::sync::Barrier::new(RACERS);
    let outcomes: Vec<(u16, Vec<u8>, String)> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..RACERS)
            .map(|n| {
                let (c, path, start) = (Client::new(&e.c.base), &path, &start);
                scope.spawn(move || {
                    let data = vec![b'a' + n as u8; 256 * 1024 + n];
                    start.wait();
                    let r = c.request("PUT", path, &upload_headers(&[]), Some(&data));
                    (r.status, data, r.text())
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|h| h.join().expect("racer"))
            .collect()
    });
    let winners: Vec<_> = outcomes.iter().filter(|(s, _, _)| *s == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        outcomes.iter().map(|o| o.0).collect::<Vec<_>>()
    );
    for (status, _, text) in &outcomes {
        assert!(*status == 200 || *status == 409, "{status}: {text}");
    }
    let winner = &winners[0].1;
    let r = e.c.get(&path);
    assert_status!(r, 200);
    assert_eq!(r.header("x-image-meta-status"), Some("active"));
    assert_eq!(
        r.header("x-image-meta-checksum"),
        Some(md5_hex(winner).as_str())
    );
    assert_eq!(&r.body, winner);
    // Only the winner's data is stored: no loser's object, segment or temp file.
    assert_eq!(e.stored(), vec![id.clone()], "stray data in the store");
}

/// A location can be set only while the image is queued: the data of an active image, which
/// others may be using, cannot be swapped.
fn location_changes_only_while_queued(mode: Mode) {
    let e = env(mode, "");
    let r = post_image(&e.c, &upload_headers(&[]), Some(b"original"));
    assert_status!(r, 201);
    let id = image_id(&r);
    let path = format!("/v1/images/{id}");
    let before = e.c.request("HEAD", &path, &[], None);
    let r = e.c.request(
        "PUT",
        &path,
        &[("x-image-meta-location", "http://example.com/other.img")],
        None,
    );
    assert_status!(r, 400);
    assert!(r.text().contains("queued"), "{}", r.text());
    let after = e.c.request("HEAD", &path, &[], None);
    for h in [
        "x-image-meta-location",
        "x-image-meta-checksum",
        "x-image-meta-size",
    ] {
        assert_eq!(before.header(h), after.header(h), "{h}");
    }
    assert_eq!(e.c.get(&path).body, b"original");
}

/// Starts an upload of 10 MB into image `id` on a raw connection, sends 2 MB of it and waits
/// until the image is `saving`; the connection is returned open (the upload in flight).
fn upload_in_flight(api: &Server, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(api.addr).unwrap_or_else(|err| panic!("{err}"));
    let head = format!(
        "POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Connection: close\r\nx-image-meta-id: {id}\r\nContent-Length: 10000000\r\n\r\n"
    );
    s.write_all(head.as_bytes())
        .unwrap_or_else(|err| panic!("{err}"));
    s.write_all(&[7u8; 2_000_000])
        .unwrap_or_else(|err| panic!("{err}"));
    let c = Client::new(&api.base);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let r = c.request("HEAD", &format!("/v1/images/{id}"), &[], None);
        if r.header("x-image-meta-status") == Some("saving") {
            return s;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("image {id} never became saving");
}

fn integrity_check(db: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{e}"));
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// kill -9 during an upload, restart: the image is `killed`, no partial data is left, and
/// the store and the database pass an integrity check.
#[test]
fn kill_9_during_upload_is_reconciled_at_restart() {
    let tmp = common::tempdir();
    let dir = tmp.path();
    let mut api = Server::start_in("glance-api", dir, common::EMBEDDED_API_CONF, false);
    let c = Client::new(&api.base);
    let r = post_image(
        &c,
        &upload_headers(&[("x-image-meta-id", "kept")]),
        Some(b"kept"),
    );
    assert_status!(r, 201);
    let conn = upload_in_flight(&api, "cut");
    let images = dir.join("images");
    // The image is `saving` in the registry a moment before the store opens its temp file.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !files_in(&images).iter().any(|f| f.starts_with(".cut.tmp-")) {
        assert!(
            Instant::now() < deadline,
            "no temp file: {:?}",
            files_in(&images)
        );
        thread::sleep(Duration::from_millis(20));
    }
    let pid = api.pid().unwrap_or_else(|| panic!("no pid")).to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    api.stop();
    drop(conn);

    let api = Server::start_in("glance-api", dir, common::EMBEDDED_API_CONF, false);
    let c = Client::new(&api.base);
    let r = c.request("HEAD", "/v1/images/cut", &[], None);
    assert_eq!(r.header("x-image-meta-status"), Some("killed"));
    assert_eq!(
        files_in(&images),
        vec!["kept".to_string()],
        "partial data left"
    );
    assert_eq!(c.get("/v1/images/kept").body, b"kept");
    assert_eq!(integrity_check(&dir.join("api.sqlite")), "ok");
    // A killed image stays killed: it cannot be uploaded to again.
    let r = c.request("PUT", "/v1/images/cut", &upload_headers(&[]), Some(b"x"));
    assert_status!(r, 409);
}

/// A second glance-api on the same embedded database does not take the first one's running
/// upload for an interrupted one.
#[test]
fn second_api_on_one_database_leaves_running_uploads_alone() {
    let tmp = common::tempdir();
    let dir = tmp.path();
    let first = Server::start_in("glance-api", dir, common::EMBEDDED_API_CONF, false);
    let mut conn = upload_in_flight(&first, "running");
    let second = Server::start_in("glance-api", dir, common::EMBEDDED_API_CONF, false);
    let c = Client::new(&second.base);
    let r = c.request("HEAD", "/v1/images/running", &[], None);
    assert_eq!(r.header("x-image-meta-status"), Some("saving"));
    // The upload completes on the first one.
    conn.write_all(&vec![7u8; 8_000_000])
        .unwrap_or_else(|err| panic!("{err}"));
    let mut reply = String::new();
    conn.read_to_string(&mut reply).ok();
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let r = c.request("HEAD", "/v1/images/running", &[], None);
    assert_eq!(r.header("x-image-meta-status"), Some("active"));
}

/// Ids that look like the file store's temp files (or any hidden file) are refused when a
/// client chooses them, and name no image in a path.
#[test]
fn temp_file_look_alike_ids_are_refused() {
    let api = common::embedded_api();
    let c = Client::new(&api.base);
    let temp_like = format!(".x.tmp-{}", "0".repeat(32));
    for id in [temp_like.as_str(), ".hidden", "."] {
        let r = post_image(
            &c,
            &upload_headers(&[("x-image-meta-id", id)]),
            Some(b"data"),
        );
        assert_status!(r, 400);
        assert!(r.text().contains("start with a dot"), "{}", r.text());
        let r = c.request("HEAD", &format!("/v1/images/{id}"), &[], None);
        assert_eq!(r.status, 404, "{id}");
    }
    assert!(files_in(&api.dir.join("images")).is_empty());
}

/// `Range` on GET /v1/images/<id>: one range gets 206 with `Content-Range` and exactly those
/// bytes (from a file by seeking, from Swift/S3 by skipping); a range past the end gets 416;
/// a header the server does not serve (several ranges, another unit, garbage) gets the
/// whole image with 200. Every answer says `Accept-Ranges: bytes`.
fn ranged_downloads(mode: Mode) {
    check_ranges(&env(mode, ""));
}

/// The same through a buffer (`sendfile = False`; the default sends a file with
/// sendfile(2) from its position).
#[test]
fn ranged_downloads_through_a_buffer() {
    check_ranges(&env(EMBEDDED, "sendfile = False\n"));
}

fn check_ranges(e: &Env) {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let r = post_image(
        &e.c,
        &upload_headers(&[("x-image-meta-name", "ranged")]),
        Some(&data),
    );
    assert_status!(r, 201);
    let path = format!("/v1/images/{}", image_id(&r));
    let get = |range: &str| e.c.request("GET", &path, &[("Range", range)], None);
    for (range, start, end) in [
        ("bytes=0-0", 0usize, 0usize),
        ("bytes=100-1099", 100, 1099),
        ("bytes=199990-", 199_990, 199_999),
        ("bytes=-10", 199_990, 199_999),
        ("bytes=150000-999999", 150_000, 199_999),
    ] {
        let r = get(range);
        assert_status!(r, 206);
        assert_eq!(r.body, &data[start..=end], "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/200000").as_str()),
            "{range}"
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("x-image-meta-size"), Some("200000"), "{range}");
    }
    for range in ["bytes=200000-", "bytes=-0"] {
        let r = get(range);
        assert_status!(r, 416);
        assert_eq!(r.header("content-range"), Some("bytes */200000"), "{range}");
    }
    for range in ["bytes=0-1,5-6", "items=0-5", "bytes=9-2", "nonsense"] {
        let r = get(range);
        assert_status!(r, 200);
        assert_eq!(r.body, data, "{range}");
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
    }
}
