//! Connection mixes against the real glance-api on loopback (issue 13): thousands of idle and
//! keep-alive connections, slowloris heads, trickling uploads, a download nobody reads,
//! connection limits, transfers that fill the data workers, and SIGTERM with all of these.
//! Each test asserts that a normal client is still answered promptly and that misbehaving
//! clients are cut at their deadline, not before and not much after.
//!
//! Deadlines are configured short (`client_header_timeout = 2`, `min_rate_window = 2`, ...)
//! so that the whole file runs in well under a minute. The tests run one at a time (a
//! process-wide lock): they measure latencies, and two of them at once on a 2-core machine
//! would measure each other.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Server};

/// glance-api with the embedded SQLite registry and the file store in the test's temp dir;
/// each test appends `workers` and the connection options it exercises.
const BASE_CONF: &str = "[DEFAULT]
bind_host = 127.0.0.1
bind_port = 0
default_store = file
filesystem_store_datadir = {dir}/images
sql_connection = sqlite:///{dir}/api.sqlite
db_auto_create = True
";

/// Connection counts high enough that the limits never get in the way of the tests that
/// are not about them (all test connections come from 127.0.0.1).
const NO_LIMITS: &str = "max_connections = 10000\nmax_connections_per_client = 10000\n";

/// What "answered promptly" means for a normal client.
const PROMPT: Duration = Duration::from_secs(1);

/// How long any single read or connect of a normal client may take before the test gives
/// up on it (the assertion on PROMPT then fails with the observed error).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time (see the module comment).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Raises this process's soft open-file limit (inherited by the glance-api it starts) and
/// returns how many of the `wanted` client connections fit under it. On CI the soft limit
/// is often 1024 with a higher hard limit.
fn fd_budget(wanted: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let hard = lim.maximum.unwrap_or(u64::MAX);
    let soft = lim.current.unwrap_or(u64::MAX);
    let want = (wanted as u64 + 1024).max(16_384).min(hard);
    if soft < want {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: lim.maximum,
            },
        );
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let fit = usize::try_from(soft.saturating_sub(512)).unwrap_or(usize::MAX);
    if fit < wanted {
        eprintln!("open-file limit {soft}: {fit} connections instead of {wanted}");
    }
    wanted.min(fit)
}

/// glance-api on `BASE_CONF` plus `extra`.
fn start(extra: &str) -> Server {
    Server::start("glance-api", &format!("{BASE_CONF}{extra}"), false)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let _ = s.set_nodelay(true);
    s
}

/// Position of the end of the response head (after the blank line) in `buf`.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The status code of a response head ("HTTP/1.1 200 OK..."), 0 if there is none.
fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A header's value in a response head (case-insensitive name).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads one response from a keep-alive connection: its head and (unless `head_only`) a
/// body of `Content-Length` bytes. Returns the status and the head.
fn read_response(s: &mut TcpStream, head_only: bool) -> io::Result<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("closed after {} bytes", buf.len()),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = status_of(&head);
    let len: usize = if head_only {
        0
    } else {
        header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut have = buf.len() - end;
    while have < len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(ErrorKind::UnexpectedEof, "body cut short"));
        }
        have += n;
    }
    Ok((status, head))
}

/// Sends `METHOD path` on a keep-alive connection and reads the response.
fn request_on(s: &mut TcpStream, method: &str, path: &str) -> io::Result<(u16, String)> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    read_response(s, method == "HEAD")
}

/// A normal client's request on a new connection (`Connection: close`).
#[derive(Debug)]
struct Probe {
    status: u16,
    elapsed: Duration,
    head: String,
    error: Option<String>,
}

fn probe(addr: SocketAddr, method: &str, path: &str) -> Probe {
    let t0 = Instant::now();
    let result = (|| -> io::Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut all = Vec::new();
        s.read_to_end(&mut all)?;
        let end = head_end(&all).unwrap_or(all.len());
        let head = String::from_utf8_lossy(&all[..end]).into_owned();
        Ok((status_of(&head), head))
    })();
    let elapsed = t0.elapsed();
    match result {
        Ok((status, head)) => Probe {
            status,
            elapsed,
            head,
            error: None,
        },
        Err(e) => Probe {
            status: 0,
            elapsed,
            head: String::new(),
            error: Some(e.to_string()),
        },
    }
}

/// Asserts that a new client's `METHOD path` gets `status` within [`PROMPT`].
fn assert_prompt(addr: SocketAddr, method: &str, path: &str, status: u16, what: &str) {
    let p = probe(addr, method, path);
    assert!(
        p.status == status && p.elapsed < PROMPT,
        "{what}: {method} {path} expected {status} within {PROMPT:?}, got {} after {:?} ({}): {p:?}",
        p.status,
        p.elapsed,
        p.error.as_deref().unwrap_or("no error")
    );
}

/// A normal client's requests, a few times over: HEAD of an image and the public listing.
fn assert_normal_client_served(addr: SocketAddr, image: &str, what: &str) {
    for _ in 0..3 {
        assert_prompt(addr, "HEAD", &format!("/v1/images/{image}"), 200, what);
        assert_prompt(addr, "GET", "/v1/images", 200, what);
        assert_prompt(addr, "GET", "/v1/images/detail", 200, what);
    }
}

/// Creates an active image with `data` and returns its id.
fn create_image(addr: SocketAddr, data: &[u8]) -> String {
    let c = Client::new(&format!("http://{addr}"));
    let r = c.request(
        "POST",
        "/v1/images",
        &[
            ("Content-Type", "application/octet-stream"),
            ("x-image-meta-name", "connections"),
            ("x-image-meta-disk_format", "raw"),
            ("x-image-meta-container_format", "bare"),
        ],
        Some(data),
    );
    assert_status!(r, 201);
    r.json()["image"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {}", r.text()))
        .to_string()
}

/// `n` connections that send nothing, with the time each was opened.
fn open_idle(addr: SocketAddr, n: usize) -> Vec<(TcpStream, Instant)> {
    (0..n)
        .map(|i| {
            let t = Instant::now();
            let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("idle connection {i} of {n}: {e}"));
            (s, t)
        })
        .collect()
}

/// `n` keep-alive connections that each made one request (GET /versions or HEAD of
/// `image`, alternately), all answered, then left open; with the time of each answer.
fn open_keepalive(addr: SocketAddr, n: usize, image: &str) -> Vec<(TcpStream, Instant)> {
    let head_path = format!("/v1/images/{image}");
    (0..n)
        .map(|i| {
            let mut s = connect(addr);
            let (method, path, want) = if i % 2 == 0 {
                ("GET", "/versions", 200)
            } else {
                ("HEAD", head_path.as_str(), 200)
            };
            let t0 = Instant::now();
            let r = request_on(&mut s, method, path);
            match r {
                Ok((status, _)) if status == want => {}
                other => panic!(
                    "keep-alive connection {i} of {n}: {method} {path} after {:?}: {other:?}",
                    t0.elapsed()
                ),
            }
            (s, Instant::now())
        })
        .collect()
}

/// What a connection looks like from the client side right now.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// Nothing to read and not closed.
    Open,
    /// End of stream (or reset) without a byte.
    Closed,
    /// The server sent something (a 408 or 503 before closing, say): its first bytes.
    Data(String),
}

fn look(s: &mut TcpStream) -> Seen {
    let _ = s.set_nonblocking(true);
    let mut buf = [0u8; 512];
    let seen = match s.read(&mut buf) {
        Ok(0) => Seen::Closed,
        Ok(n) => Seen::Data(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Seen::Open,
        Err(_) => Seen::Closed,
    };
    let _ = s.set_nonblocking(false);
    seen
}

/// Watches `conns` until each has been closed or answered, or until `deadline`; returns,
/// per connection, when that was first seen and what was seen (None: still open), and when
/// the first look was (a close seen then may have happened any time before).
fn watch_until_closed(
    conns: &mut [(TcpStream, Instant)],
    deadline: Instant,
) -> (Vec<Option<(Instant, Seen)>>, Instant) {
    let mut out: Vec<Option<(Instant, Seen)>> = vec![None; conns.len()];
    for (s, _) in conns.iter_mut() {
        let _ = s.set_nonblocking(true);
    }
    let first = Instant::now();
    loop {
        let now = Instant::now();
        for (i, (s, _)) in conns.iter_mut().enumerate() {
            if out[i].is_some() {
                continue;
            }
            let mut buf = [0u8; 512];
            let seen = match s.read(&mut buf) {
                Ok(0) => Seen::Closed,
                Ok(n) => Seen::Data(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(_) => Seen::Closed,
            };
            out[i] = Some((now, seen));
        }
        if out.iter().all(Option::is_some) || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    for (s, _) in conns.iter_mut() {
        let _ = s.set_nonblocking(false);
    }
    (out, first)
}

/// Asserts that every connection of `conns` was closed (or answered with `allowed` data)
/// between `after` and `before` past its own start time (the upper bound is not checked for
/// a close already seen at the first look of a watch that began after it).
fn assert_cut_between(
    what: &str,
    conns: &[(TcpStream, Instant)],
    (seen, first): &(Vec<Option<(Instant, Seen)>>, Instant),
    after: Duration,
    before: Duration,
    allowed: &[&str],
) {
    for (i, ((_, start), seen)) in conns.iter().zip(seen).enumerate() {
        let Some((at, what_seen)) = seen else {
            panic!("{what}: connection {i} still open {before:?} after it started");
        };
        let t = at.duration_since(*start);
        let late_look = at == first && first.duration_since(*start) > before;
        assert!(
            t >= after && (t <= before || late_look),
            "{what}: connection {i} cut after {t:?}, expected between {after:?} and {before:?} ({what_seen:?})"
        );
        if let Seen::Data(d) = what_seen {
            assert!(
                allowed.iter().any(|a| d.starts_with(a)),
                "{what}: connection {i} got {d:?}; allowed: nothing or {allowed:?}"
            );
        }
    }
}

/// The entries of the store directory (data files and temporary files).
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// One client that trickles bytes and reports when the server cut it.
struct Trickler {
    handle: thread::JoinHandle<(Option<Duration>, String)>,
}

impl Trickler {
    /// Connects, sends `head` (may be empty), then one byte of `rest` every `every` until the
    /// server answers or closes, or `give_up` passes. The time reported counts from just
    /// before the connect.
    fn start(
        addr: SocketAddr,
        head: String,
        rest: Vec<u8>,
        every: Duration,
        give_up: Duration,
    ) -> Trickler {
        let handle = thread::spawn(move || {
            let t0 = Instant::now();
            let Ok(mut s) = TcpStream::connect_timeout(&addr, IO_TIMEOUT) else {
                return (Some(t0.elapsed()), "connect failed".to_string());
            };
            let _ = s.set_nodelay(true);
            if !head.is_empty() && s.write_all(head.as_bytes()).is_err() {
                return (Some(t0.elapsed()), "write failed".to_string());
            }
            let _ = s.set_read_timeout(Some(every));
            let mut buf = [0u8; 512];
            for byte in rest.iter().cycle() {
                if t0.elapsed() >= give_up {
                    return (None, String::new());
                }
                if s.write_all(&[*byte]).is_err() {
                    return (Some(t0.elapsed()), String::new());
                }
                match s.read(&mut buf) {
                    Ok(0) => return (Some(t0.elapsed()), String::new()),
                    Ok(n) => {
                        return (
                            Some(t0.elapsed()),
                            String::from_utf8_lossy(&buf[..n]).into_owned(),
                        );
                    }
                    Err(e)
                        if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    }
                    Err(_) => return (Some(t0.elapsed()), String::new()),
                }
            }
            (None, String::new())
        });
        Trickler { handle }
    }

    fn join(self) -> (Option<Duration>, String) {
        self.handle
            .join()
            .unwrap_or_else(|_| panic!("trickling client panicked"))
    }
}

/// 2,000 connections that send nothing do not keep a new client from being answered at
/// once, and each of them is closed at `client_header_timeout` after it was opened.
#[test]
fn idle_connections_do_not_lock_out_a_new_client() {
    let _serial = serial();
    let n = fd_budget(2000);
    let api = start(&format!(
        "workers = 8\nmetadata_workers = 2\nclient_header_timeout = 5\nkeepalive_timeout = 3\n{NO_LIMITS}"
    ));
    let image = create_image(api.addr, b"idle");
    let t0 = Instant::now();
    let mut idle = open_idle(api.addr, n);
    eprintln!("{n} idle connections opened in {:?}", t0.elapsed());
    assert_normal_client_served(api.addr, &image, &format!("{n} idle connections open"));
    // Still there (not refused, not answered): they were parked, not turned away.
    if t0.elapsed() < Duration::from_secs(4) {
        let gone: Vec<(usize, Seen)> = idle
            .iter_mut()
            .enumerate()
            .map(|(i, (s, _))| (i, look(s)))
            .filter(|(_, seen)| *seen != Seen::Open)
            .collect();
        assert!(gone.is_empty(), "idle connections closed early: {gone:?}");
    }
    // Cut at the head deadline, counted from the accept: 408 or a plain close.
    let seen = watch_until_closed(&mut idle, Instant::now() + Duration::from_secs(10));
    assert_cut_between(
        "idle connection",
        &idle,
        &seen,
        Duration::from_millis(4900),
        Duration::from_secs(8),
        &["HTTP/1.1 408"],
    );
    assert_prompt(api.addr, "GET", "/v1/images", 200, "after the idle ones");
}

/// 2,000 keep-alive connections that each made one request are all answered and stay open;
/// a new client is answered at once, and the parked connections serve a second request.
#[test]
fn parked_keepalive_connections_are_all_answered() {
    let _serial = serial();
    let n = fd_budget(2000);
    let api = start(&format!(
        "workers = 8\nmetadata_workers = 2\nclient_header_timeout = 5\nkeepalive_timeout = 60\n{NO_LIMITS}"
    ));
    let image = create_image(api.addr, b"keep-alive");
    let t0 = Instant::now();
    let mut conns = open_keepalive(api.addr, n, &image);
    eprintln!("{n} keep-alive connections answered in {:?}", t0.elapsed());
    assert_normal_client_served(api.addr, &image, &format!("{n} keep-alive connections"));
    let step = (n / 20).max(1);
    for (i, (s, _)) in conns.iter_mut().enumerate().step_by(step) {
        let t = Instant::now();
        let r = request_on(s, "HEAD", &format!("/v1/images/{image}"));
        assert!(
            matches!(r, Ok((200, _))) && t.elapsed() < PROMPT,
            "second request on parked connection {i}: {r:?} after {:?}",
            t.elapsed()
        );
    }
    let closed = conns
        .iter_mut()
        .map(|(s, _)| look(s))
        .filter(|s| *s != Seen::Open)
        .count();
    assert_eq!(closed, 0, "parked keep-alive connections closed early");
}

/// A parked keep-alive connection is closed (no bytes, end of stream) at
/// `keepalive_timeout`, not before.
#[test]
fn keepalive_timeout_closes_parked_connections() {
    let _serial = serial();
    let api = start(&format!(
        "workers = 4\nmetadata_workers = 1\nclient_header_timeout = 10\nkeepalive_timeout = 3\n{NO_LIMITS}"
    ));
    let image = create_image(api.addr, b"timeout");
    let mut conns = open_keepalive(api.addr, 40, &image);
    let seen = watch_until_closed(&mut conns, Instant::now() + Duration::from_secs(8));
    assert_cut_between(
        "parked keep-alive connection",
        &conns,
        &seen,
        Duration::from_millis(2900),
        Duration::from_secs(5),
        &[],
    );
}

/// 200 connections sending a request head one byte at a time: a normal client is answered
/// at once, and each slow head gets 408 (or a close) at `client_header_timeout`.
#[test]
fn slowloris_heads_are_cut_at_the_header_timeout() {
    let _serial = serial();
    let n = fd_budget(200);
    let api = start(&format!(
        "workers = 8\nmetadata_workers = 2\nclient_header_timeout = 2\nkeepalive_timeout = 3\n{NO_LIMITS}"
    ));
    let image = create_image(api.addr, b"slowloris");
    // 150 bytes at 5 bytes/s: never complete within the 12 s the clients hold on.
    let head = format!(
        "GET /v1/images/{image} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris{}\r\n\r\n",
        "-".repeat(60)
    )
    .into_bytes();
    let clients: Vec<Trickler> = (0..n)
        .map(|_| {
            Trickler::start(
                api.addr,
                String::new(),
                head.clone(),
                Duration::from_millis(200),
                Duration::from_secs(12),
            )
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    assert_normal_client_served(api.addr, &image, &format!("{n} slowloris heads"));
    for (i, c) in clients.into_iter().enumerate() {
        let (cut, data) = c.join();
        let cut = cut.unwrap_or_else(|| panic!("slowloris {i} never cut (12 s)"));
        assert!(
            cut >= Duration::from_millis(1900) && cut <= Duration::from_millis(4500),
            "slowloris {i} cut after {cut:?}, expected about 2 s; got {data:?}"
        );
        assert!(
            data.is_empty() || data.starts_with("HTTP/1.1 408"),
            "slowloris {i}: {data:?}"
        );
    }
    assert_prompt(api.addr, "GET", "/v1/images", 200, "after the slowloris");
}

/// 50 uploads trickling one byte a second, with `client_body_min_rate = 1024` over 2 s: a
/// normal client is answered, each upload is cut after about the window, its image ends
/// `killed` (or was never created), and no data or temporary file is left in the store.
#[test]
fn trickling_uploads_are_cut_and_leave_nothing() {
    let _serial = serial();
    let n = fd_budget(50);
    let api = start(&format!(
        "workers = 64\nmetadata_workers = 4\nclient_header_timeout = 5\nkeepalive_timeout = 3\n\
         client_body_min_rate = 1024\nmin_rate_window = 2\n{NO_LIMITS}"
    ));
    let image = create_image(api.addr, b"trickle");
    let store = api.dir.join("images");
    let before = files_in(&store);
    let ids: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let clients: Vec<Trickler> = ids
        .iter()
        .map(|id| {
            let head = format!(
                "POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Content-Type: application/octet-stream\r\nx-image-meta-id: {id}\r\n\
                 x-image-meta-name: trickle\r\nx-image-meta-disk_format: raw\r\n\
                 x-image-meta-container_format: bare\r\nContent-Length: 10000000\r\n\r\n"
            );
            Trickler::start(
                api.addr,
                head,
                vec![b'x'],
                Duration::from_secs(1),
                Duration::from_secs(12),
            )
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    assert_normal_client_served(api.addr, &image, &format!("{n} trickling uploads"));
    for (i, c) in clients.into_iter().enumerate() {
        let (cut, data) = c.join();
        let cut = cut.unwrap_or_else(|| panic!("trickling upload {i} never cut (12 s)"));
        // The window starts when the body does, after the image is reserved: 50 reservations
        // take turns on SQLite's one writer, each commit on disk, which on a loaded CI host
        // has delayed the last ones by 4 s. The bound still tells a cut from the trickle's
        // own end (12 s).
        assert!(
            cut >= Duration::from_millis(1800) && cut <= Duration::from_secs(9),
            "trickling upload {i} cut after {cut:?}, expected about 2 s; got {data:?}"
        );
        assert!(
            !data.starts_with("HTTP/1.1 2"),
            "trickling upload {i} succeeded? {data:?}"
        );
    }
    // Every image they created ends killed; no file of theirs is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in &ids {
        loop {
            let p = probe(api.addr, "HEAD", &format!("/v1/images/{id}"));
            let status = header(&p.head, "x-image-meta-status").unwrap_or_default();
            if p.status == 404 || (p.status == 200 && status == "killed") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "image {id} of a cut upload: HEAD {} status {status:?}",
                p.status
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
    loop {
        let now = files_in(&store);
        if now.len() == before.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "store has {now:?}, before the uploads {before:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_prompt(api.addr, "GET", "/v1/images", 200, "after the uploads");
}

/// Starts `GET /v1/images/<image>` on a new connection, reads the response head (and what
/// came with it), then reads no more. Returns the connection and the body bytes read.
fn stalled_download(addr: SocketAddr, image: &str) -> (TcpStream, usize) {
    let mut s = connect(addr);
    s.set_read_timeout(Some(IO_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    write!(
        s,
        "GET /v1/images/{image} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("download request: {e}"));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        let n = s
            .read(&mut chunk)
            .unwrap_or_else(|e| panic!("download head: {e}"));
        assert!(n > 0, "download closed before its head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert_eq!(status_of(&head), 200, "download: {head}");
    (s, buf.len() - end)
}

/// 64 MiB of data for the downloads (not all zeros, in case anything compresses).
fn big_image() -> Vec<u8> {
    (0..64u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// A client that requests a 64 MiB image and never reads is cut once the send rate falls
/// under `send_min_rate` over `min_rate_window`; a client that reads gets all of it.
#[test]
fn download_to_a_reader_that_stalls_is_cut() {
    stalled_download_is_cut(false);
}

/// The same with `sendfile = True`: a blocking sendfile(2) would wait several socket
/// timeouts against a full socket, so it runs on a non-blocking socket with `poll`.
#[test]
fn download_with_sendfile_to_a_reader_that_stalls_is_cut() {
    stalled_download_is_cut(true);
}

fn stalled_download_is_cut(sendfile: bool) {
    let _serial = serial();
    let sendfile = if sendfile { "True" } else { "False" };
    let api = start(&format!(
        "workers = 8\nmetadata_workers = 2\nclient_header_timeout = 5\nkeepalive_timeout = 3\n\
         send_min_rate = 1024\nmin_rate_window = 2\nsendfile = {sendfile}\n{NO_LIMITS}"
    ));
    let data = big_image();
    let size = data.len();
    let image = create_image(api.addr, &data);
    drop(data);
    let (mut s, mut got) = stalled_download(api.addr, &image);
    thread::sleep(Duration::from_millis(500));
    assert_normal_client_served(api.addr, &image, "a stalled download");
    // The socket buffers fill within milliseconds; then nothing moves for the rest of the
    // stall: two windows and some slack.
    thread::sleep(Duration::from_secs(6));
    let t = Instant::now();
    let mut chunk = vec![0u8; 1 << 20];
    let end = loop {
        match s.read(&mut chunk) {
            Ok(0) => break "end of stream".to_string(),
            Ok(n) => got += n,
            Err(e) => break e.to_string(),
        }
    };
    assert!(
        got < size,
        "a download stalled for 6 s (min_rate_window 2 s) was not cut: all {got} bytes arrived"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3) && end != "timed out" && !end.contains("would block"),
        "after the stall: {end} after {:?} ({got} of {size} bytes)",
        t.elapsed()
    );
    // A reader that keeps up is not cut.
    let c = Client::new(&api.base);
    let r = c.get(&format!("/v1/images/{image}"));
    assert_status!(r, 200);
    assert_eq!(r.body.len(), size, "full download");
}

/// `max_connections_per_client = 20`: with 20 idle connections from 127.0.0.1 open, the 21st
/// gets `503` with `Retry-After` and is closed at once; once one of the 20 goes, a new one is
/// served again.
#[test]
fn connections_over_the_per_client_limit_get_503() {
    let _serial = serial();
    fd_budget(100);
    let api = start(
        "workers = 4\nmetadata_workers = 1\nclient_header_timeout = 10\nkeepalive_timeout = 10\n\
         max_connections = 50\nmax_connections_per_client = 20\n",
    );
    let mut idle = open_idle(api.addr, 20);
    thread::sleep(Duration::from_millis(300));
    let p = probe(api.addr, "GET", "/v1/images");
    assert!(
        p.status == 503 && p.elapsed < PROMPT,
        "21st connection from 127.0.0.1: {p:?}"
    );
    assert!(
        header(&p.head, "retry-after").is_some(),
        "503 without Retry-After: {}",
        p.head
    );
    // The 20 are untouched.
    for (i, (s, _)) in idle.iter_mut().enumerate() {
        assert_eq!(look(s), Seen::Open, "idle connection {i}");
    }
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let p = probe(api.addr, "GET", "/v1/images");
        if p.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "one of the 20 closed, still refused: {p:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// `max_connections = 50`: with 50 connections in the middle of their request head (which
/// cannot be evicted like idle keep-alive ones), the 51st gets `503` with `Retry-After` and is
/// closed at once, and the 50 are still open.
#[test]
fn connections_over_max_connections_get_503() {
    let _serial = serial();
    fd_budget(100);
    let api = start(
        "workers = 4\nmetadata_workers = 1\nclient_header_timeout = 10\nkeepalive_timeout = 10\n\
         max_connections = 50\nmax_connections_per_client = 1000\n",
    );
    let mut partial: Vec<(TcpStream, Instant)> = (0..50)
        .map(|i| {
            let mut s = connect(api.addr);
            s.write_all(b"GET /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap_or_else(|e| panic!("partial head {i}: {e}"));
            (s, Instant::now())
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let p = probe(api.addr, "GET", "/v1/images");
    assert!(
        p.status == 503 && p.elapsed < PROMPT,
        "51st connection over max_connections = 50: {p:?}"
    );
    assert!(
        header(&p.head, "retry-after").is_some(),
        "503 without Retry-After: {}",
        p.head
    );
    for (i, (s, _)) in partial.iter_mut().enumerate() {
        assert_eq!(look(s), Seen::Open, "partial head {i}");
    }
    // Completing one of the heads gets it answered: the connections were held, not dropped.
    let (s, _) = &mut partial[0];
    s.set_read_timeout(Some(IO_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    s.write_all(b"\r\n").unwrap_or_else(|e| panic!("{e}"));
    let r = read_response(s, false);
    assert!(matches!(r, Ok((200, _))), "completed head: {r:?}");
}

/// `workers = 4`, `metadata_workers = 1`: 3 downloads stalled by their clients and 2 uploads
/// trickling in hold every worker that may move image data, and a HEAD or a listing is still
/// answered at once.
#[test]
fn metadata_requests_are_served_while_transfers_fill_the_data_workers() {
    let _serial = serial();
    let api = start(&format!(
        "workers = 4\nmetadata_workers = 1\nclient_header_timeout = 5\nkeepalive_timeout = 5\n\
         send_min_rate = 0\nclient_body_min_rate = 0\n{NO_LIMITS}"
    ));
    let image = create_image(api.addr, &big_image());
    let downloads: Vec<(TcpStream, usize)> =
        (0..3).map(|_| stalled_download(api.addr, &image)).collect();
    let uploads: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut s = connect(api.addr);
            write!(
                s,
                "POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Content-Type: application/octet-stream\r\nx-image-meta-name: held-{i}\r\n\
                 Content-Length: 10000000\r\n\r\nsome bytes"
            )
            .unwrap_or_else(|e| panic!("upload {i}: {e}"));
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    assert_normal_client_served(
        api.addr,
        &image,
        "3 stalled downloads and 2 held uploads, workers 4, metadata_workers 1",
    );
    // A metadata update moves no image data either.
    let c = Client::new(&api.base);
    let t = Instant::now();
    let r = c.request(
        "PUT",
        &format!("/v1/images/{image}"),
        &[("x-image-meta-property-checked", "yes")],
        None,
    );
    assert_status!(r, 200);
    assert!(
        t.elapsed() < PROMPT,
        "metadata update took {:?}",
        t.elapsed()
    );
    drop(downloads);
    drop(uploads);
}

/// SIGTERM: parked connections (idle keep-alive ones and ones that sent nothing) are closed at
/// once, an upload in flight still completes with its 201, and the process exits 0.
#[test]
fn sigterm_closes_parked_connections_and_drains_uploads() {
    let _serial = serial();
    let mut api = start(&format!(
        "workers = 4\nmetadata_workers = 1\nclient_header_timeout = 10\nkeepalive_timeout = 30\n\
         client_body_min_rate = 0\n{NO_LIMITS}"
    ));
    let image = create_image(api.addr, b"drain");
    // The upload: 4 MiB declared, 1 MiB sent before the signal.
    let total = 4 * 1024 * 1024;
    let id = uuid::Uuid::new_v4().to_string();
    let mut up = connect(api.addr);
    write!(
        up,
        "POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nx-image-meta-id: {id}\r\n\
         x-image-meta-name: drained\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("upload head: {e}"));
    up.write_all(&vec![b'd'; total / 4])
        .unwrap_or_else(|e| panic!("upload body: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = probe(api.addr, "HEAD", &format!("/v1/images/{id}"));
        if header(&p.head, "x-image-meta-status") == Some("saving") {
            break;
        }
        assert!(Instant::now() < deadline, "upload never saving: {p:?}");
        thread::sleep(Duration::from_millis(50));
    }
    let mut keepalive = open_keepalive(api.addr, 50, &image);
    let mut silent = open_idle(api.addr, 20);
    thread::sleep(Duration::from_millis(200));

    let pid = api.pid().unwrap_or_else(|| panic!("no pid"));
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(term.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    let signalled = Instant::now();
    for (_, t) in keepalive.iter_mut().chain(silent.iter_mut()) {
        *t = signalled;
    }
    let seen = watch_until_closed(&mut keepalive, signalled + Duration::from_secs(5));
    assert_cut_between(
        "parked keep-alive connection after SIGTERM",
        &keepalive,
        &seen,
        Duration::ZERO,
        Duration::from_secs(2),
        &[],
    );
    let seen = watch_until_closed(&mut silent, signalled + Duration::from_secs(5));
    assert_cut_between(
        "connection that sent nothing, after SIGTERM",
        &silent,
        &seen,
        Duration::ZERO,
        Duration::from_secs(2),
        &["HTTP/1.1 503", "HTTP/1.1 408"],
    );

    // The upload in flight completes.
    up.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap_or_else(|e| panic!("{e}"));
    up.write_all(&vec![b'd'; total - total / 4])
        .unwrap_or_else(|e| panic!("upload body after SIGTERM: {e}"));
    let mut reply = Vec::new();
    let r = up.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        r.is_ok() && text.starts_with("HTTP/1.1 201"),
        "upload in flight at SIGTERM: {r:?}: {text}"
    );
    let status = common::wait_for_exit(&mut api, Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
    assert_eq!(
        files_in(&api.dir.join("images"))
            .iter()
            .filter(|f| f.starts_with('.'))
            .count(),
        0,
        "temporary files left: {:?}",
        files_in(&api.dir.join("images"))
    );
    assert!(
        api.dir.join("images").join(&id).is_file(),
        "the drained upload's data"
    );
}
