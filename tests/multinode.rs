//! Several glance-api nodes on one registry database (issue 15), end to end: real
//! glance-api and glance-scrubber processes over one PostgreSQL or MariaDB database and
//! one Swift container, on ephemeral ports.
//!
//! - an image created on one node is read, downloaded and deleted through another;
//! - uploads racing into one image through different nodes: exactly one wins, no stray data;
//! - a node killed (SIGKILL) mid-upload: its lease lapses and another node kills the image;
//! - scrubbers on every node at once: each image scrubbed exactly once;
//! - the database restarted mid-traffic (a private PostgreSQL): 503 while it is down, then
//!   recovery by itself, and no acknowledged image lost.
//!
//! Needs the servers of `tests/services/sql.sh` and the Swift of
//! `tests/services/swift-s3.sh`; skipped with a printed reason without them, unless
//! `GLANCE_TEST_REQUIRE_SERVICES=1`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::objstore::{ObjectStore, StoreKind, services};
use common::sqldb::{Backend, PrivatePg, ScratchDb};
use common::{Client, Reply, Server, bin, tempdir, write_config};

/// One node's glance-api.conf: the shared database and store, short leases.
fn node_conf(url: &str, store: &str, extra: &str) -> String {
    format!(
        "[DEFAULT]\n\
         bind_host = 127.0.0.1\n\
         bind_port = 0\n\
         workers = 8\n\
         sql_connection = {url}\n\
         filesystem_store_datadir = {{dir}}/images\n\
         upload_lease_timeout = 3\n\
         sql_connect_timeout = 2\n\
         sql_statement_timeout = 5\n\
         log_file = {{dir}}/api.log\n\
         debug = True\n\
         {store}{extra}"
    )
}

/// Migrates the shared database the way an operator does, once, before the nodes start.
fn db_sync(url: &str) {
    let dir = tempdir();
    let conf = write_config(
        dir.path(),
        "glance-registry",
        &format!("[DEFAULT]\nsql_connection = {url}\n"),
    );
    let out = Command::new(bin("glance-manage"))
        .arg("--config-file")
        .arg(&conf)
        .arg("db_sync")
        .output()
        .unwrap_or_else(|e| panic!("glance-manage: {e}"));
    assert!(
        out.status.success(),
        "db_sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nodes(n: usize, url: &str, store: &str, extra: &str) -> Vec<Server> {
    db_sync(url);
    (0..n)
        .map(|_| Server::start("glance-api", &node_conf(url, store, extra), false))
        .collect()
}

fn create(c: &Client, name: &str) -> String {
    let r = c.request(
        "POST",
        "/v1/images",
        &[
            ("x-image-meta-name", name),
            ("x-image-meta-disk_format", "raw"),
            ("x-image-meta-container_format", "bare"),
            ("x-image-meta-is_public", "true"),
        ],
        None,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["image"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {}", r.text()))
        .to_string()
}

fn upload(c: &Client, id: &str, data: &[u8]) -> Reply {
    c.request(
        "PUT",
        &format!("/v1/images/{id}"),
        &[("Content-Type", "application/octet-stream")],
        Some(data),
    )
}

fn status(c: &Client, id: &str) -> String {
    c.request("HEAD", &format!("/v1/images/{id}"), &[], None)
        .header("x-image-meta-status")
        .unwrap_or("")
        .to_string()
}

fn data_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The Swift container of a test, or a skip.
fn swift(test: &str) -> Option<ObjectStore> {
    services(test).map(|svc| ObjectStore::new(StoreKind::Swift, svc))
}

fn shared_images(backend: Backend) {
    let test = "shared_images";
    let Some(db) = ScratchDb::create(backend, test) else {
        return;
    };
    let Some(store) = swift(test) else { return };
    let n = nodes(2, &db.url, &store.config(None), "");
    let (a, b) = (Client::new(&n[0].base), Client::new(&n[1].base));
    let id = create(&a, "shared");
    let data = data_of(1 << 20, 7);
    assert_eq!(upload(&a, &id, &data).status, 200);
    let got = b.get(&format!("/v1/images/{id}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.body, data, "node b serves node a's upload");
    let listed = b.get("/v1/images/detail").json();
    assert!(
        listed["images"]
            .as_array()
            .is_some_and(|l| l.iter().any(|i| i["id"] == id.as_str())),
        "{listed}"
    );
    // v2 on the other node sees it too.
    assert_eq!(
        b.get(&format!("/v2/images/{id}")).json()["status"],
        "active"
    );
    let del = b.request("DELETE", &format!("/v1/images/{id}"), &[], None);
    assert_eq!(del.status, 200, "{}", del.text());
    assert_eq!(
        a.request("HEAD", &format!("/v1/images/{id}"), &[], None)
            .status,
        404
    );
    assert!(store.objects().is_empty(), "{:?}", store.objects());
}

#[test]
fn shared_images_postgres() {
    shared_images(Backend::Postgres);
}

#[test]
fn shared_images_mariadb() {
    shared_images(Backend::Mysql);
}

fn racing_uploads(backend: Backend) {
    let test = "racing_uploads";
    let Some(db) = ScratchDb::create(backend, test) else {
        return;
    };
    let Some(store) = swift(test) else { return };
    let n = nodes(3, &db.url, &store.config(None), "");
    for round in 0..3u8 {
        let id = create(&Client::new(&n[0].base), "race");
        let barrier = Arc::new(Barrier::new(n.len()));
        let results: Vec<(u16, Vec<u8>)> = thread::scope(|s| {
            let handles: Vec<_> = n
                .iter()
                .enumerate()
                .map(|(i, node)| {
                    let (barrier, id) = (Arc::clone(&barrier), id.clone());
                    s.spawn(move || {
                        let data = data_of(2 << 20, round * 10 + i as u8);
                        let c = Client::new(&node.base);
                        barrier.wait();
                        // A loser may be answered 409 and cut off before its whole body
                        // is sent: the client then sees a broken pipe (status 0 here).
                        let send = std::panic::AssertUnwindSafe(|| upload(&c, &id, &data).status);
                        let status = std::panic::catch_unwind(send).unwrap_or(0);
                        (status, data)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| panic!("uploader panicked")))
                .collect()
        });
        let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
        let winners: Vec<&Vec<u8>> = results
            .iter()
            .filter(|r| r.0 == 200)
            .map(|r| &r.1)
            .collect();
        assert_eq!(winners.len(), 1, "exactly one upload wins: {statuses:?}");
        assert!(
            statuses.iter().all(|s| [200, 409, 0].contains(s)),
            "the others are told 409 (or cut off after it): {statuses:?}"
        );
        for node in &n {
            let got = Client::new(&node.base).get(&format!("/v1/images/{id}"));
            assert_eq!(got.status, 200);
            assert!(
                got.body == *winners[0],
                "every node serves the winner's data"
            );
        }
        let objects: Vec<String> = store
            .objects()
            .into_iter()
            .filter(|o| o.contains(&id))
            .collect();
        assert_eq!(objects.len(), 1, "no stray data: {objects:?}");
    }
}

#[test]
fn racing_uploads_postgres() {
    racing_uploads(Backend::Postgres);
}

#[test]
fn racing_uploads_mariadb() {
    racing_uploads(Backend::Mysql);
}

#[test]
fn killed_node_upload_lease_expires() {
    let test = "killed_node_upload_lease_expires";
    let Some(db) = ScratchDb::create(Backend::Postgres, test) else {
        return;
    };
    let Some(store) = swift(test) else { return };
    let mut n = nodes(2, &db.url, &store.config(None), "");
    let b = Client::new(&n[1].base);
    let id = create(&b, "doomed");
    // Half an upload through node a, which then dies without a word.
    let mut s = TcpStream::connect(n[0].addr).unwrap_or_else(|e| panic!("{e}"));
    let len = 8 << 20;
    write!(
        s,
        "PUT /v1/images/{id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("{e}"));
    s.write_all(&data_of(1 << 20, 3))
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&b, &id) != "saving" {
        assert!(Instant::now() < deadline, "the upload never started");
        thread::sleep(Duration::from_millis(50));
    }
    let pid = n[0].pid().unwrap_or_else(|| panic!("no pid"));
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    n[0].stop();
    let started = Instant::now();
    // Lease 3 s, checked every 1.5 s by node b.
    while status(&b, &id) != "killed" {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "image still {} after {:?}",
            status(&b, &id),
            started.elapsed()
        );
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("killed after {:?}", started.elapsed());
    assert!(
        store.objects().iter().all(|o| !o.contains(&id)),
        "partial data removed: {:?}",
        store.objects()
    );
    let log = std::fs::read_to_string(n[1].dir.join("api.log")).unwrap_or_default();
    assert!(log.contains("lease lapsed"), "{log}");
}

#[test]
fn scrubbers_on_every_node_scrub_each_image_once() {
    let test = "scrubbers_on_every_node_scrub_each_image_once";
    let Some(db) = ScratchDb::create(Backend::Postgres, test) else {
        return;
    };
    let Some(store) = swift(test) else { return };
    let n = nodes(2, &db.url, &store.config(None), "delayed_delete = True\n");
    let c = Client::new(&n[0].base);
    let ids: Vec<String> = (0..12)
        .map(|i| {
            let id = create(&c, "scrub-me");
            assert_eq!(upload(&c, &id, &data_of(4096, i)).status, 200);
            assert_eq!(
                Client::new(&n[1].base)
                    .request("DELETE", &format!("/v1/images/{id}"), &[], None)
                    .status,
                200
            );
            id
        })
        .collect();
    assert_eq!(store.objects().len(), 12, "delayed delete keeps the data");
    let dirs: Vec<_> = (0..3).map(|_| tempdir()).collect();
    let confs: Vec<_> = dirs
        .iter()
        .map(|d| {
            write_config(
                d.path(),
                "glance-scrubber",
                &format!(
                    "[DEFAULT]\nsql_connection = {}\nscrub_time = 0\nverbose = True\nlog_file = {{dir}}/scrubber.log\n\
                     filesystem_store_datadir = {{dir}}/images\n{}",
                    db.url,
                    store.config(None)
                ),
            )
        })
        .collect();
    let children: Vec<_> = confs
        .iter()
        .map(|conf| {
            Command::new(bin("glance-scrubber"))
                .arg("--config-file")
                .arg(conf)
                .spawn()
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap_or_else(|e| panic!("{e}")).success());
    }
    let mut scrubbed: Vec<String> = Vec::new();
    let mut logs = String::new();
    for d in &dirs {
        let log = std::fs::read_to_string(d.path().join("scrubber.log")).unwrap_or_default();
        logs.push_str(&log);
        scrubbed.extend(
            log.lines()
                .filter_map(|l| l.split("image ").nth(1))
                .filter_map(|l| l.strip_suffix(" scrubbed"))
                .map(str::to_string),
        );
    }
    scrubbed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(scrubbed, want, "each image scrubbed exactly once: {logs}");
    assert!(store.objects().is_empty(), "{:?}", store.objects());
    let statuses = db.column("SELECT DISTINCT status FROM images");
    assert_eq!(statuses, vec!["deleted".to_string()]);
}

#[test]
fn database_restart_mid_traffic() {
    let test = "database_restart_mid_traffic";
    let Some(pg) = PrivatePg::start(test) else {
        return;
    };
    let n = nodes(2, &pg.url(), "", "");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // (status, seconds taken, id when created, message)
    type Outcome = (u16, f64, Option<String>, String);
    let outcomes: Arc<Mutex<Vec<(Instant, Outcome)>>> = Arc::default();
    let traffic: Vec<_> = n
        .iter()
        .map(|node| {
            let (stop, outcomes, base) =
                (Arc::clone(&stop), Arc::clone(&outcomes), node.base.clone());
            thread::spawn(move || {
                let c = Client::new(&base);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = c.request(
                        "POST",
                        "/v1/images",
                        &[("x-image-meta-name", "during-outage")],
                        None,
                    );
                    let id = (r.status == 201)
                        .then(|| r.json()["image"]["id"].as_str().map(str::to_string))
                        .flatten();
                    let o = (r.status, t.elapsed().as_secs_f64(), id, r.text());
                    if let Ok(mut v) = outcomes.lock() {
                        v.push((t, o));
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    pg.stop();
    let down = Instant::now();
    thread::sleep(Duration::from_secs(4));
    pg.start_again();
    let up = Instant::now();
    thread::sleep(Duration::from_secs(6));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in traffic {
        let _ = t.join();
    }
    let all = outcomes.lock().map(|v| v.clone()).unwrap_or_default();
    let during: Vec<_> = all.iter().filter(|(t, _)| *t > down && *t < up).collect();
    assert!(!during.is_empty());
    for (_, (status, secs, _, text)) in &all {
        assert!(
            *status == 201 || *status == 503,
            "only 201 or 503, got {status}: {text}"
        );
        assert!(*secs < 12.0, "a request took {secs} s");
        if *status == 503 {
            assert!(text.contains("database"), "a clear message: {text}");
        }
    }
    assert!(
        during.iter().any(|(_, o)| o.0 == 503),
        "the outage was seen"
    );
    // Recovered by itself: everything from 2 s after the restart succeeded.
    let late: Vec<_> = all
        .iter()
        .filter(|(t, _)| *t > up + Duration::from_secs(2))
        .collect();
    assert!(!late.is_empty());
    assert!(
        late.iter().all(|(_, o)| o.0 == 201),
        "{:?}",
        late.iter().map(|(_, o)| o.0).collect::<Vec<_>>()
    );
    // No acknowledged image lost.
    let c = Client::new(&n[1].base);
    for (_, (_, _, id, _)) in &all {
        if let Some(id) = id {
            assert_eq!(
                c.request("HEAD", &format!("/v1/images/{id}"), &[], None)
                    .status,
                200,
                "image {id} acknowledged before the restart is still there"
            );
        }
    }
}
