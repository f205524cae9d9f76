//! Real OpenStack clients against the real `glance-api` (embedded SQLite registry, file
//! store): python-glanceclient (`glance --os-image-api-version 1`), python-openstackclient
//! 5.1 (`openstack --os-image-api-version 1 image ...`) and openstacksdk's image v1 proxy
//! (`tests/clients/sdk_v1.py`), all in their no-Keystone modes.
//!
//! The clients come from the venv made by `tests/clients/setup-venv.sh` (pinned in
//! `tests/clients/requirements.txt`), found at `$GLANCE_TEST_VENV` or
//! `/var/tmp/glance-test-venv`. Without it every test prints why and passes, unless
//! `GLANCE_TEST_REQUIRE_SERVICES=1` (then it fails).
//!
//! Every client talks to the server through [`Wire`], a small relay in this file that
//! records each request head and how its body was framed, so the tests can assert what the
//! clients really send (`X-Auth-Token` always, `x-image-meta-disk_format` with underscores,
//! `x-glance-registry-purge-props: false`, chunked uploads), and can optionally add the
//! identity headers a Keystone auth middleware in front of Glance would add.

mod common;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Reply, Server};
use md5::{Digest, Md5};
use serde_json::Value;

// --- The venv ----------------------------------------------------------------------------

/// The client venv, or `None` (after printing why) when the test must be skipped.
fn venv(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("GLANCE_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/glance-test-venv"));
    let missing: Vec<&str> = ["bin/python", "bin/glance", "bin/openstack"]
        .into_iter()
        .filter(|p| !dir.join(p).exists())
        .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    let why = format!(
        "client venv {} lacks {} (run tests/clients/setup-venv.sh and export GLANCE_TEST_VENV)",
        dir.display(),
        missing.join(", ")
    );
    if std::env::var("GLANCE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{why}");
    }
    // Straight to stderr, past the test harness's capture, so the reason shows in CI logs.
    let _ = writeln!(io::stderr(), "\nSKIPPED {test}: {why}");
    None
}

/// What a client program printed.
struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self, what: &str) -> Run {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

/// How a client program gets its standard input.
enum Stdin {
    /// `/dev/null`.
    Null,
    /// A pseudo-terminal, as when a person types the command. glanceclient takes any
    /// non-TTY stdin for image data (`image-update` of an active image then refuses to run),
    /// and a closed one crashes it (`sys.stdin` is `None`), so its CLI gets a TTY.
    Tty,
    /// A pipe carrying these bytes (`cat file | glance image-create …`).
    Pipe(Vec<u8>),
}

/// Gives the child a pseudo-terminal as stdin, keeping stdout and stderr as they are.
const WITH_TTY: &str = "import os, pty, subprocess, sys\n\
                        master, slave = pty.openpty()\n\
                        sys.exit(subprocess.call(sys.argv[1:], stdin=slave))";

/// How long one client invocation may take (they take 1–5 s, more on a loaded machine).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `$VENV/bin/<program> args…` with a clean environment (no `OS_*`, no proxies).
fn run(venv: &Path, program: &str, args: &[&str], stdin: Stdin) -> Run {
    let exe = venv.join("bin").join(program);
    let mut cmd = if matches!(stdin, Stdin::Tty) {
        let mut c = Command::new(venv.join("bin/python"));
        c.arg("-c").arg(WITH_TTY).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if matches!(stdin, Stdin::Pipe(_)) {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("OS_") || k.to_ascii_lowercase().ends_with("_proxy") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONWARNINGS", "ignore")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
    let feeder = match (stdin, child.stdin.take()) {
        (Stdin::Pipe(bytes), Some(mut pipe)) => Some(thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < CLIENT_TIMEOUT => {
                thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{program} {} did not finish within {CLIENT_TIMEOUT:?}",
                    args.join(" ")
                );
            }
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    eprintln!(
        "[{:.1}s] {program} {}",
        started.elapsed().as_secs_f64(),
        args.join(" ")
    );
    Run {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

// --- The server and its helpers ------------------------------------------------------------

fn glance_api() -> (Server, Client) {
    let api = common::embedded_api();
    let c = Client::new(&api.base);
    (api, c)
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `len` reproducible pseudo-random bytes (xorshift), different per `seed`.
/// [`image_bytes`] that are a qcow2 image (a valid empty qcow2 header in front), for
/// uploads declared `qcow2`: glance-api inspects every upload.
fn qcow2_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = image_bytes(len, seed);
    common::images::qcow2_over(&mut data, 1 << 30);
    data
}

fn image_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// HEAD /v1/images/<id> with no token (the anonymous admin).
fn head(c: &Client, id: &str) -> Reply {
    c.request("HEAD", &format!("/v1/images/{id}"), &[], None)
}

/// The `x-image-meta-*` headers of a HEAD reply, keyed without the prefix.
fn meta(r: &Reply) -> BTreeMap<String, String> {
    assert_eq!(r.status, 200, "HEAD: {}", r.status);
    r.headers
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("x-image-meta-")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect()
}

/// A tiny HTTP server holding `body` (GET and HEAD), for images registered by location.
fn serve_remote_image(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(s) = stream else { continue };
            let body = body.clone();
            thread::spawn(move || {
                let mut r = BufReader::new(&s);
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                let is_head = line.starts_with("HEAD");
                loop {
                    let mut h = String::new();
                    match r.read_line(&mut h) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if h.trim().is_empty() => break,
                        Ok(_) => {}
                    }
                }
                let mut w = &s;
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if !is_head {
                    let _ = w.write_all(&body);
                }
            });
        }
    });
    format!("http://127.0.0.1:{port}/images/remote.img")
}

// --- Wire: a recording relay in front of glance-api ---------------------------------------

/// How a request body was framed on the wire.
#[derive(Clone, Debug, PartialEq)]
enum Framing {
    None,
    Length(u64),
    /// Chunked: number of data chunks and total data bytes.
    Chunked {
        chunks: u64,
        bytes: u64,
    },
}

/// One request as the client sent it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    /// Header names exactly as sent.
    headers: Vec<(String, String)>,
    framing: Framing,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request line and headers, for failure messages.
    fn show(&self) -> String {
        let mut s = format!("{} {} [{:?}]", self.method, self.target, self.framing);
        for (k, v) in &self.headers {
            s.push_str(&format!("\n    {k}: {v}"));
        }
        s
    }
}

/// What a relay recorded, and how many requests it is forwarding right now.
#[derive(Default)]
struct Log {
    seen: Mutex<Vec<Seen>>,
    busy: AtomicUsize,
}

/// Counts a request as in flight until dropped.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(n: &'a AtomicUsize) -> Busy<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A relay on its own port that forwards to glance-api, records every request, and adds
/// `inject` headers to each request head.
struct Wire {
    base: String,
    log: Arc<Log>,
}

impl Wire {
    fn start(upstream: SocketAddr, inject: &[(&str, &str)]) -> Wire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let log = Arc::new(Log::default());
        let inject: Vec<String> = inject
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let l = Arc::clone(&log);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (l, inject) = (Arc::clone(&l), inject.clone());
                thread::spawn(move || {
                    if let Err(e) = relay(client, upstream, &inject, &l) {
                        eprintln!("wire relay: {e}");
                    }
                });
            }
        });
        Wire {
            base: format!("http://{addr}"),
            log,
        }
    }

    /// Takes the requests recorded so far (after any request still being forwarded).
    fn take(&self) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log.busy.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        std::mem::take(&mut *self.log.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Reads one line (through `\n`); `None` at end of stream.
fn line(r: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    Ok((r.read_until(b'\n', &mut buf)? > 0).then_some(buf))
}

fn relay(client: TcpStream, upstream: SocketAddr, inject: &[String], log: &Log) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    let (mut from_server, mut to_client) = (server.try_clone()?, client.try_clone()?);
    let back = thread::spawn(move || {
        let _ = io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut r = BufReader::new(client);
    let mut w = server;
    'requests: loop {
        // The head, forwarded byte for byte (plus the injected headers before its end).
        let mut raw: Vec<Vec<u8>> = Vec::new();
        loop {
            let Some(l) = line(&mut r)? else {
                break 'requests;
            };
            if l.trim_ascii().is_empty() {
                if raw.is_empty() {
                    continue; // stray CRLF between requests
                }
                break;
            }
            raw.push(l);
        }
        let _busy = Busy::new(&log.busy);
        let text: Vec<String> = raw
            .iter()
            .map(|l| String::from_utf8_lossy(l.trim_ascii_end()).into_owned())
            .collect();
        let mut parts = text[0].split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = text[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        let mut head: Vec<u8> = raw.concat();
        for h in inject {
            head.extend_from_slice(h.as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        w.write_all(&head)?;
        let find = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let framing = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let (mut chunks, mut bytes) = (0, 0);
            loop {
                let Some(size_line) = line(&mut r)? else {
                    break 'requests;
                };
                w.write_all(&size_line)?;
                let text = String::from_utf8_lossy(&size_line);
                let hex = text.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(hex, 16)
                    .map_err(|e| io::Error::other(format!("chunk size {text:?}: {e}")))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let Some(t) = line(&mut r)? else {
                            break 'requests;
                        };
                        w.write_all(&t)?;
                        if t.trim_ascii().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                chunks += 1;
                bytes += size;
                // The data and its CRLF.
                io::copy(&mut (&mut r).take(size + 2), &mut w)?;
            }
            Framing::Chunked { chunks, bytes }
        } else if let Some(n) = find("content-length").and_then(|v| v.parse::<u64>().ok()) {
            io::copy(&mut (&mut r).take(n), &mut w)?;
            Framing::Length(n)
        } else {
            Framing::None
        };
        log.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Seen {
                method,
                target,
                headers,
                framing,
            });
    }
    let _ = w.shutdown(Shutdown::Write);
    let _ = back.join();
    Ok(())
}

/// Every recorded request carries an `X-Auth-Token`.
fn assert_token_everywhere(seen: &[Seen], token: Option<&str>) {
    assert!(!seen.is_empty(), "no request recorded");
    for s in seen {
        let t = s.header("x-auth-token");
        assert!(t.is_some(), "request without X-Auth-Token:\n{}", s.show());
        if let Some(token) = token {
            assert_eq!(t, Some(token), "{}", s.show());
        }
    }
}

/// The one request matching `method` and a path ending.
fn find<'a>(seen: &'a [Seen], method: &str, path_end: &str) -> &'a Seen {
    let all: Vec<&Seen> = seen
        .iter()
        .filter(|s| {
            s.method == method && s.target.split('?').next().unwrap_or("").ends_with(path_end)
        })
        .collect();
    assert!(
        !all.is_empty(),
        "no {method} …{path_end} among:\n{}",
        seen.iter().map(Seen::show).collect::<Vec<_>>().join("\n")
    );
    all[all.len() - 1]
}

// --- Output parsing -----------------------------------------------------------------------

/// The rows of the tables glanceclient printed (PrettyTable), as trimmed cells; a row whose
/// first cell is empty continues the previous row's last cell (wrapped values).
fn table(out: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for line in out.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        match rows.last_mut() {
            Some(prev) if cells[0].is_empty() && cells.len() == prev.len() => {
                if let Some(last) = prev.last_mut() {
                    last.push_str(&cells[cells.len() - 1]);
                }
            }
            _ => rows.push(cells),
        }
    }
    rows
}

/// glanceclient's `Property | Value` table as a map (`Property 'k'` rows for properties).
fn shown(out: &str) -> BTreeMap<String, String> {
    table(out)
        .into_iter()
        .filter(|r| r.len() == 2 && r[0] != "Property")
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path.display().to_string()
}

/// Asserts a header was sent under exactly this (lower-case, underscore) name.
fn assert_sent_as(s: &Seen, name: &str, value: &str) {
    let hit = s.headers.iter().find(|(n, _)| n == name);
    assert_eq!(
        hit.map(|(_, v)| v.as_str()),
        Some(value),
        "expected header {name}: {value} as sent:\n{}",
        s.show()
    );
}

fn assert_gone(c: &Client, id: &str) {
    assert_eq!(head(c, id).status, 404, "image {id} still there");
}

// --- python-glanceclient ------------------------------------------------------------------

/// `glance --os-image-api-version 1 --os-image-url URL --os-auth-token TOKEN …` through every
/// v1 command: create (file, pipe, reserve + upload, location), list with paging, show,
/// update (merge and purge), download, members, delete.
#[test]
fn glanceclient_v1_commands() {
    let Some(venv) = venv("glanceclient_v1_commands") else {
        return;
    };
    let (api, c) = glance_api();
    let wire = Wire::start(api.addr, &[]);
    // A Keystone auth middleware in front of Glance would add these; members need a tenant.
    let keystone = Wire::start(
        api.addr,
        &[
            ("X-Identity-Status", "Confirmed"),
            ("X-Tenant", "tenant-a"),
            ("X-User", "alice"),
            ("X-Roles", "admin"),
        ],
    );
    let tmp = common::tempdir();
    let data = qcow2_bytes(3 * 1024 * 1024 + 123, 1);
    let file = write_file(tmp.path(), "image.qcow2", &data);
    let g = |via: &Wire, args: &[&str], stdin: Stdin| {
        let mut all = vec![
            "--os-image-api-version",
            "1",
            "--os-image-url",
            via.base.as_str(),
            "--os-auth-token",
            "gc-token",
        ];
        all.extend_from_slice(args);
        run(&venv, "glance", &all, stdin)
    };

    // Create from a file: chunked, with the size announced, underscore header names.
    let out = g(
        &wire,
        &[
            "image-create",
            "--name",
            "gc-img",
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--is-public",
            "True",
            "--min-disk",
            "1",
            "--property",
            "os_distro=cirros",
            "--property",
            "hw_disk_bus=virtio",
            "--file",
            &file,
        ],
        Stdin::Tty,
    )
    .ok("image-create --file");
    let img = shown(&out.stdout);
    let id = img["id"].clone();
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], data.len().to_string());
    assert_eq!(img["checksum"], md5_hex(&data));
    assert_eq!(img["Property 'os_distro'"], "cirros");
    let seen = wire.take();
    assert_token_everywhere(&seen, Some("gc-token"));
    let post = find(&seen, "POST", "/v1/images");
    assert_sent_as(post, "x-image-meta-disk_format", "qcow2");
    assert_sent_as(post, "x-image-meta-container_format", "bare");
    assert_sent_as(post, "x-image-meta-min_disk", "1");
    assert_sent_as(post, "x-image-meta-is_public", "True");
    assert_sent_as(post, "x-image-meta-property-os_distro", "cirros");
    assert_sent_as(post, "x-image-meta-size", &data.len().to_string());
    assert_sent_as(post, "Content-Type", "application/octet-stream");
    assert!(
        matches!(post.framing, Framing::Chunked { bytes, .. } if bytes == data.len() as u64),
        "{}",
        post.show()
    );
    let m = meta(&head(&c, &id));
    assert_eq!(m["status"], "active");
    assert_eq!(m["disk_format"], "qcow2");
    assert_eq!(m["container_format"], "bare");
    assert_eq!(m["min_disk"], "1");
    assert_eq!(m["is_public"], "True");
    assert_eq!(m["checksum"], md5_hex(&data));
    assert_eq!(m["property-os_distro"], "cirros");
    assert_eq!(m["property-hw_disk_bus"], "virtio");

    // List: glanceclient pages through /v1/images/detail by name with markers.
    let mut names = vec!["gc-img".to_string()];
    for i in 0..6 {
        let name = format!("gc-page-{i}");
        let r = c.request(
            "POST",
            "/v1/images",
            &[
                ("x-image-meta-name", &name),
                ("x-image-meta-is_public", "True"),
            ],
            None,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        names.push(name);
    }
    let out = g(&wire, &["image-list", "--page-size", "3"], Stdin::Tty).ok("image-list");
    let rows = table(&out.stdout);
    assert_eq!(rows[0][..2], ["ID", "Name"], "{}", out.stdout);
    let listed: Vec<String> = rows[1..].iter().map(|r| r[1].clone()).collect();
    assert_eq!(listed, names, "{}", out.stdout);
    assert!(
        rows.iter()
            .any(|r| r[0] == id && r.last().is_some_and(|s| s == "active"))
    );
    let seen = wire.take();
    let pages: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.target.starts_with("/v1/images/detail?"))
        .collect();
    assert!(pages.len() >= 3, "expected paging, got {}", pages.len());
    assert!(pages[1].target.contains("marker="), "{}", pages[1].show());
    assert!(
        pages[0].target.contains("sort_key=name"),
        "{}",
        pages[0].show()
    );

    // Show.
    let out = g(&wire, &["image-show", &id], Stdin::Tty).ok("image-show");
    let img = shown(&out.stdout);
    assert_eq!(img["name"], "gc-img");
    assert_eq!(img["Property 'hw_disk_bus'"], "virtio");
    assert_eq!(find(&wire.take(), "HEAD", &id).framing, Framing::None);

    // Update: properties merge (x-glance-registry-purge-props: false).
    g(
        &wire,
        &[
            "image-update",
            &id,
            "--name",
            "gc-img-renamed",
            "--min-ram",
            "512",
            "--property",
            "os_version=0.6",
        ],
        Stdin::Tty,
    )
    .ok("image-update");
    let seen = wire.take();
    let put = find(&seen, "PUT", &id);
    assert_sent_as(put, "x-glance-registry-purge-props", "false");
    assert_sent_as(put, "x-image-meta-min_ram", "512");
    assert_sent_as(put, "x-image-meta-property-os_version", "0.6");
    assert!(put.header("x-image-meta-property-os_distro").is_none());
    let m = meta(&head(&c, &id));
    assert_eq!(m["name"], "gc-img-renamed");
    assert_eq!(m["min_ram"], "512");
    assert_eq!(m["min_disk"], "1");
    assert_eq!(m["property-os_distro"], "cirros", "merged, not purged");
    assert_eq!(m["property-hw_disk_bus"], "virtio");
    assert_eq!(m["property-os_version"], "0.6");

    // Update with --purge-props: only the properties sent remain.
    g(
        &wire,
        &[
            "image-update",
            &id,
            "--purge-props",
            "--property",
            "only=this",
        ],
        Stdin::Tty,
    )
    .ok("image-update --purge-props");
    assert_sent_as(
        find(&wire.take(), "PUT", &id),
        "x-glance-registry-purge-props",
        "true",
    );
    let props: Vec<String> = meta(&head(&c, &id))
        .into_iter()
        .filter(|(k, _)| k.starts_with("property-"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(props, ["property-only=this"]);

    // Download (glanceclient verifies the MD5 against x-image-meta-checksum too).
    let saved = tmp.path().join("downloaded");
    g(
        &wire,
        &[
            "image-download",
            &id,
            "--file",
            &saved.display().to_string(),
        ],
        Stdin::Tty,
    )
    .ok("image-download");
    let got = std::fs::read(&saved).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), data.len());
    assert_eq!(md5_hex(&got), md5_hex(&data));

    // Reserve (no data: queued), then upload with image-update --file.
    let out = g(
        &wire,
        &[
            "image-create",
            "--name",
            "gc-queued",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--property",
            "stage=reserved",
            "--property",
            "keep=yes",
        ],
        Stdin::Tty,
    )
    .ok("image-create (reserve)");
    let queued = shown(&out.stdout);
    let id2 = queued["id"].clone();
    assert_eq!(queued["status"], "queued");
    assert!(!matches!(
        find(&wire.take(), "POST", "/v1/images").framing,
        Framing::Chunked { .. }
    ));
    let data2 = image_bytes(1024 * 1024 + 7, 2);
    let file2 = write_file(tmp.path(), "second.raw", &data2);
    g(
        &wire,
        &[
            "image-update",
            &id2,
            "--file",
            &file2,
            "--property",
            "stage=uploaded",
        ],
        Stdin::Tty,
    )
    .ok("image-update --file");
    let seen = wire.take();
    let put = find(&seen, "PUT", &id2);
    assert_sent_as(put, "x-glance-registry-purge-props", "false");
    assert!(
        matches!(put.framing, Framing::Chunked { .. }),
        "{}",
        put.show()
    );
    let m = meta(&head(&c, &id2));
    assert_eq!(m["status"], "active");
    assert_eq!(m["size"], data2.len().to_string());
    assert_eq!(m["checksum"], md5_hex(&data2));
    assert_eq!(m["property-stage"], "uploaded");
    assert_eq!(m["property-keep"], "yes");

    // Create from a pipe: chunked, size unknown to the client.
    let data3 = image_bytes(512 * 1024 + 1, 3);
    let out = g(
        &wire,
        &[
            "image-create",
            "--name",
            "gc-piped",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
        ],
        Stdin::Pipe(data3.clone()),
    )
    .ok("image-create < pipe");
    let piped = shown(&out.stdout);
    let id3 = piped["id"].clone();
    assert_eq!(piped["status"], "active");
    assert_eq!(piped["size"], data3.len().to_string());
    assert_eq!(piped["checksum"], md5_hex(&data3));
    let seen = wire.take();
    let post = find(&seen, "POST", "/v1/images");
    assert!(
        post.header("x-image-meta-size").is_none(),
        "{}",
        post.show()
    );
    assert!(
        matches!(post.framing, Framing::Chunked { .. }),
        "{}",
        post.show()
    );

    // Register an http location.
    let remote = image_bytes(100_000, 4);
    let url = serve_remote_image(remote.clone());
    let out = g(
        &wire,
        &[
            "image-create",
            "--name",
            "gc-remote",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--location",
            &url,
        ],
        Stdin::Tty,
    )
    .ok("image-create --location");
    let reg = shown(&out.stdout);
    let id4 = reg["id"].clone();
    assert_eq!(reg["status"], "active");
    assert_eq!(reg["size"], remote.len().to_string());
    assert_sent_as(
        find(&wire.take(), "POST", "/v1/images"),
        "x-image-meta-location",
        &url,
    );
    let r = c.get(&format!("/v1/images/{id4}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, remote);

    // Members. Token only, no tenant: Glance refuses to share (401), the client says so.
    let out = g(&wire, &["member-create", &id, "tenant-b"], Stdin::Tty);
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("Invalid OpenStack Identity credentials"),
        "{}",
        out.stderr
    );
    wire.take();
    // Behind an auth middleware (identity headers added), as tenant-a, an admin.
    g(
        &keystone,
        &["member-create", "--can-share", &id, "tenant-b"],
        Stdin::Tty,
    )
    .ok("member-create --can-share");
    g(&keystone, &["member-create", &id, "tenant-c"], Stdin::Tty).ok("member-create");
    let out = g(&keystone, &["member-list", "--image-id", &id], Stdin::Tty).ok("member-list");
    let rows = table(&out.stdout);
    assert_eq!(rows[0], ["Image ID", "Member ID", "Can Share"]);
    assert_eq!(
        rows[1..],
        [
            vec![id.clone(), "tenant-b".into(), "True".into()],
            // glanceclient prints a false can_share as an empty cell.
            vec![id.clone(), "tenant-c".into(), String::new()],
        ]
    );
    let out = g(
        &wire,
        &["member-list", "--tenant-id", "tenant-b"],
        Stdin::Tty,
    )
    .ok("member-list --tenant-id");
    assert_eq!(
        table(&out.stdout)[1..],
        [vec![id.clone(), "tenant-b".into(), "True".into()]]
    );
    g(&keystone, &["member-delete", &id, "tenant-c"], Stdin::Tty).ok("member-delete");
    let seen = keystone.take();
    assert_token_everywhere(&seen, Some("gc-token"));
    let add = find(&seen, "PUT", "/members/tenant-b");
    assert!(
        matches!(add.framing, Framing::Length(n) if n > 0),
        "{}",
        add.show()
    );
    find(&seen, "DELETE", "/members/tenant-c");
    let r = c.get(&format!("/v1/images/{id}/members"));
    assert_eq!(
        r.json(),
        serde_json::json!({"members": [{"member_id": "tenant-b", "can_share": true}]})
    );

    // Delete several at once.
    g(&wire, &["image-delete", &id, &id2, &id3, &id4], Stdin::Tty).ok("image-delete");
    let seen = wire.take();
    assert_token_everywhere(&seen, Some("gc-token"));
    for i in [&id, &id2, &id3, &id4] {
        find(&seen, "DELETE", i);
        assert_gone(&c, i);
    }
    assert_eq!(
        std::fs::read_dir(api.dir.join("images"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

// --- python-openstackclient 5.1 -----------------------------------------------------------

/// `openstack --os-auth-type none --os-endpoint URL --os-image-api-version 1 image …`: the
/// six v1 image commands OSC 5.1 has (create, list, show, set, save, delete; it has no v1
/// member commands), plus one call in token mode (`--os-auth-type admin_token`).
#[test]
fn openstackclient_5_1_image_v1_commands() {
    let Some(venv) = venv("openstackclient_5_1_image_v1_commands") else {
        return;
    };
    let (api, c) = glance_api();
    let wire = Wire::start(api.addr, &[]);
    let tmp = common::tempdir();
    let data = qcow2_bytes(2 * 1024 * 1024 + 321, 5);
    let file = write_file(tmp.path(), "image.qcow2", &data);
    let o = |args: &[&str]| {
        let mut all = vec![
            "--os-auth-type",
            "none",
            "--os-endpoint",
            wire.base.as_str(),
            "--os-image-api-version",
            "1",
        ];
        all.extend_from_slice(args);
        run(&venv, "openstack", &all, Stdin::Tty)
    };

    // Create from a file.
    let out = o(&[
        "image",
        "create",
        "--file",
        &file,
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--public",
        "--min-disk",
        "2",
        "--property",
        "os_distro=cirros",
        "--property",
        "hw_disk_bus=virtio",
        "-f",
        "json",
        "osc-img",
    ])
    .ok("image create --file");
    let img = out.json();
    let id = img["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], data.len());
    assert_eq!(img["checksum"], md5_hex(&data).as_str());
    assert_eq!(img["properties"]["os_distro"], "cirros");
    let seen = wire.take();
    // keystoneauth's "none" plugin still sends a token: "notused".
    assert_token_everywhere(&seen, Some("notused"));
    let post = find(&seen, "POST", "/v1/images");
    assert_sent_as(post, "x-image-meta-disk_format", "qcow2");
    assert_sent_as(post, "x-image-meta-container_format", "bare");
    assert_sent_as(post, "x-image-meta-min_disk", "2");
    assert_sent_as(post, "x-image-meta-is_public", "True");
    assert_sent_as(post, "x-image-meta-property-hw_disk_bus", "virtio");
    assert_sent_as(post, "x-image-meta-size", &data.len().to_string());
    assert!(
        matches!(post.framing, Framing::Chunked { bytes, .. } if bytes == data.len() as u64),
        "{}",
        post.show()
    );
    let m = meta(&head(&c, &id));
    assert_eq!(m["status"], "active");
    assert_eq!(m["disk_format"], "qcow2");
    assert_eq!(m["min_disk"], "2");
    assert_eq!(m["checksum"], md5_hex(&data));
    assert_eq!(m["property-os_distro"], "cirros");
    assert_eq!(m["property-hw_disk_bus"], "virtio");

    // List and show.
    let out = o(&["image", "list", "-f", "json"]).ok("image list");
    assert_eq!(
        out.json(),
        serde_json::json!([{"ID": id, "Name": "osc-img", "Status": "active"}])
    );
    let out = o(&["image", "show", "-f", "json", "osc-img"]).ok("image show (by name)");
    let img = out.json();
    assert_eq!(img["id"], id.as_str());
    assert_eq!(img["properties"]["hw_disk_bus"], "virtio");

    // Set: OSC merges the properties itself and also sends purge-props false.
    o(&[
        "image",
        "set",
        "--name",
        "osc-img-2",
        "--min-ram",
        "128",
        "--property",
        "os_version=1",
        &id,
    ])
    .ok("image set");
    let seen = wire.take();
    let put = find(&seen, "PUT", &id);
    assert_sent_as(put, "x-glance-registry-purge-props", "false");
    assert_sent_as(put, "x-image-meta-min_ram", "128");
    assert_sent_as(put, "x-image-meta-property-os_version", "1");
    let m = meta(&head(&c, &id));
    assert_eq!(m["name"], "osc-img-2");
    assert_eq!(m["min_ram"], "128");
    assert_eq!(m["property-os_distro"], "cirros");
    assert_eq!(m["property-os_version"], "1");

    // Save.
    let saved = tmp.path().join("saved");
    o(&["image", "save", "--file", &saved.display().to_string(), &id]).ok("image save");
    let got = std::fs::read(&saved).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(md5_hex(&got), md5_hex(&data));
    assert_eq!(got.len(), data.len());

    // Register an http location.
    let remote = image_bytes(70_000, 6);
    let url = serve_remote_image(remote.clone());
    let out = o(&[
        "image",
        "create",
        "--location",
        &url,
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--public",
        "-f",
        "json",
        "osc-remote",
    ])
    .ok("image create --location");
    let reg = out.json();
    let id2 = reg["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(reg["status"], "active");
    assert_eq!(reg["size"], remote.len());
    assert_eq!(c.get(&format!("/v1/images/{id2}")).body, remote);

    // Token mode: the token given is the one sent.
    wire.take();
    let out = run(
        &venv,
        "openstack",
        &[
            "--os-auth-type",
            "admin_token",
            "--os-token",
            "osc-secret",
            "--os-endpoint",
            &wire.base,
            "--os-image-api-version",
            "1",
            "image",
            "show",
            "-f",
            "json",
            &id2,
        ],
        Stdin::Tty,
    )
    .ok("image show (admin_token)");
    assert_eq!(out.json()["name"], "osc-remote");
    assert_token_everywhere(&wire.take(), Some("osc-secret"));

    // Delete both.
    o(&["image", "delete", &id, &id2]).ok("image delete");
    let seen = wire.take();
    assert_token_everywhere(&seen, Some("notused"));
    for i in [&id, &id2] {
        find(&seen, "DELETE", i);
        assert_gone(&c, i);
    }
}

// --- openstacksdk ----------------------------------------------------------------------------

/// openstacksdk's image v1 proxy (`auth_type='none'` + `image_endpoint_override`), through
/// `tests/clients/sdk_v1.py`: what works, and how the server answers the proxy calls that
/// cannot work against any Glance v1 (the script's "quirks").
#[test]
fn openstacksdk_image_v1_proxy() {
    let Some(venv) = venv("openstacksdk_image_v1_proxy") else {
        return;
    };
    // openstacksdk 0.62's v1 proxy finds its endpoint by version discovery and takes the
    // newest API the server lists: against a glance-api that also serves v2 it would talk
    // v2 (as against a Glance that served both). A site keeping this client serves v1 only.
    let api = Server::start(
        "glance-api",
        &format!("{}enable_v2_api = False\n", common::EMBEDDED_API_CONF),
        false,
    );
    let wire = Wire::start(api.addr, &[]);
    let tmp = common::tempdir();
    let data = qcow2_bytes(3 * 1024 * 1024 + 5, 7);
    let file = write_file(tmp.path(), "image.qcow2", &data);
    let remote = image_bytes(50_000, 8);
    let url = serve_remote_image(remote.clone());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sdk_v1.py");
    let script = script.display().to_string();
    let out = run(
        &venv,
        "python",
        &[&script, &wire.base, &file, &url],
        Stdin::Null,
    )
    .ok("sdk_v1.py");
    let r = out.json();
    let id = r["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(r["proxy"], "openstack.image.v1._proxy");

    // The working flow.
    assert_eq!(r["reserved_status"], "queued");
    assert_eq!(
        r["uploaded"],
        serde_json::json!({"status": "active", "size": data.len(), "checksum": md5_hex(&data)})
    );
    assert_eq!(r["listed"]["name"], "sdk-img");
    assert_eq!(r["listed"]["properties"]["os_distro"], "cirros");
    assert_eq!(r["found_by_name"], id.as_str());
    let h = &r["head"];
    assert_eq!(h["x-image-meta-name"], "sdk-img-2");
    assert_eq!(h["x-image-meta-min_ram"], "256");
    assert_eq!(h["x-image-meta-disk_format"], "qcow2");
    assert_eq!(h["x-image-meta-property-os_distro"], "cirros", "merged");
    assert_eq!(h["x-image-meta-property-os_version"], "2");
    assert_eq!(
        r["download"],
        serde_json::json!({"md5": md5_hex(&data), "size": data.len(), "checksum_header": md5_hex(&data)})
    );
    assert_eq!(r["remote"]["status"], "active");
    assert_eq!(r["remote"]["size"], remote.len());

    // The quirks, answered as Glance answers them.
    let q = &r["quirks"];
    // create_image POSTs its metadata as JSON: a body that is not octet-stream → 400.
    assert_eq!(q["create_image"]["status"], 400, "{q}");
    // update_image PUTs JSON: an upload to an active image → 409.
    assert_eq!(q["update_image"]["status"], 409, "{q}");
    // get_image GETs the image data and finds no JSON in it: an Image without a name.
    assert_eq!(q["get_image"], serde_json::json!({"value": null}), "{q}");
    // download_image asks for the v2 path /images/<id>/file → 404, handed back as is.
    assert_eq!(
        q["download_image"],
        serde_json::json!({"value": 404}),
        "{q}"
    );
    // update_image_properties sends x-image-meta-os_type (not a v1 property header) and no
    // purge-props header: the existing property is purged, nothing is added.
    assert_eq!(
        q["update_image_properties"],
        serde_json::json!({"value": true}),
        "{q}"
    );
    assert_eq!(r["quirk_properties_after"], serde_json::json!([]), "{r}");

    // What went over the wire.
    let seen = wire.take();
    // Version discovery (GET /) is the only request without a token.
    let (discovery, rest): (Vec<&Seen>, Vec<&Seen>) = seen.iter().partition(|s| s.target == "/");
    assert!(discovery.iter().all(|s| s.header("x-auth-token").is_none()));
    let rest: Vec<Seen> = rest.into_iter().cloned().collect();
    assert_token_everywhere(&rest, Some("notused"));
    let upload = rest
        .iter()
        .find(|s| {
            s.method == "PUT"
                && s.target.ends_with(&id)
                && s.header("x-image-meta-checksum").is_some()
        })
        .unwrap_or_else(|| panic!("no upload PUT"));
    assert_sent_as(upload, "x-glance-registry-purge-props", "false");
    assert_eq!(
        upload.framing,
        Framing::Length(data.len() as u64),
        "{}",
        upload.show()
    );
    let quirk_id = r["quirk_id"].as_str().unwrap_or_default();
    let json_create = rest
        .iter()
        .find(|s| s.method == "POST" && s.header("content-type") == Some("application/json"))
        .unwrap_or_else(|| panic!("no JSON POST from create_image"));
    assert!(matches!(json_create.framing, Framing::Length(n) if n > 0));
    let props = rest
        .iter()
        .filter(|s| s.method == "PUT" && s.target.ends_with(quirk_id))
        .find(|s| s.header("x-image-meta-os_type").is_some())
        .unwrap_or_else(|| panic!("no update_image_properties PUT"));
    assert!(
        props.header("x-glance-registry-purge-props").is_none(),
        "{}",
        props.show()
    );
    find(&rest, "GET", &format!("{quirk_id}/file"));

    // delete_image removed all three.
    for i in r["deleted"].as_array().into_iter().flatten() {
        assert_gone(&Client::new(&api.base), i.as_str().unwrap_or_default());
    }
}

// --- Later-Glance behaviour clients rely on ---------------------------------------------------------------------------

/// `glance image-create` (no data: queued), then `glance image-update ID --location URL`.
/// glanceclient's help says `--location` "only works for images in 'queued' status", and
/// later Glance v1 activates the image (`activating = orig_status == 'queued' and (location
/// or image_data)` in its `update`). Diablo (spec §5.5 step 4) left the image `queued` with
/// size 0; glance-rs activates it, so that this client works unchanged.
#[test]
fn glanceclient_location_update_activates_a_queued_image() {
    let Some(venv) = venv("glanceclient_location_update_activates_a_queued_image") else {
        return;
    };
    let (api, c) = glance_api();
    let wire = Wire::start(api.addr, &[]);
    let remote = image_bytes(30_000, 9);
    let url = serve_remote_image(remote.clone());
    let g = |args: &[&str]| {
        let mut all = vec![
            "--os-image-api-version",
            "1",
            "--os-image-url",
            wire.base.as_str(),
            "--os-auth-token",
            "gc-token",
        ];
        all.extend_from_slice(args);
        run(&venv, "glance", &all, Stdin::Tty)
    };
    let out = g(&[
        "image-create",
        "--name",
        "later",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
    ])
    .ok("image-create (reserve)");
    let id = shown(&out.stdout)["id"].clone();
    let out = g(&["image-update", &id, "--location", &url]).ok("image-update --location");
    let put = find(&wire.take(), "PUT", &id).clone();
    assert_sent_as(&put, "x-image-meta-location", &url);
    assert_eq!(put.framing, Framing::Length(0), "{}", put.show());
    assert_eq!(shown(&out.stdout)["status"], "active", "{}", out.stdout);
    let r = c.get(&format!("/v1/images/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, remote);
}
