use super::*;
use crate::http::Body;
use std::io::{BufReader, Cursor, Seek, Write};
use std::sync::mpsc::RecvTimeoutError;

/// Upper bound of every wait in these tests.
const WAIT: Duration = Duration::from_secs(5);

struct TestServer {
    addr: SocketAddr,
    handle: ShutdownHandle,
    done: mpsc::Receiver<io::Result<()>>,
}

impl TestServer {
    fn start(config: ServerConfig) -> TestServer {
        let server = Server::bind("127.0.0.1:0", config).unwrap();
        let addr = server.local_addr().unwrap();
        let handle = server.shutdown_handle();
        let (tx, done) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(server.run(Arc::new(route)));
        });
        TestServer { addr, handle, done }
    }

    fn connect(&self) -> Client {
        Client::new(self.addr)
    }

    /// Stops the server and checks that `run` returns Ok within the deadline.
    fn stop(&self) {
        self.handle.shutdown();
        match self.done.recv_timeout(WAIT) {
            Ok(r) => r.unwrap(),
            Err(RecvTimeoutError::Timeout) => panic!("run did not return"),
            Err(e) => panic!("server thread died: {e}"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        workers: 4,
        backlog: 8,
        read_timeout: WAIT,
        write_timeout: WAIT,
        keepalive_timeout: WAIT,
        ..ServerConfig::default()
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// The handler behind every test server.
fn route(req: &mut Request<'_>) -> Response {
    match req.path.as_str() {
        "/hello" => Response::text(200, "hello"),
        "/echo" => match req.read_body_limited(1 << 20) {
            Ok(b) => Response::empty(200).with_body(Body::Bytes(b)),
            Err(e) => Response::text(400, format!("{:?}", e.kind())),
        },
        "/sink" => match io::copy(req.body(), &mut io::sink()) {
            Ok(n) => Response::text(200, n.to_string()),
            Err(e) => Response::text(400, format!("{:?}", e.kind())),
        },
        "/read5" => {
            let mut five = [0u8; 5];
            let _ = req.body().read_exact(&mut five);
            Response::text(200, "read 5")
        }
        "/reject" => Response::text(403, "no"),
        "/headers" => {
            let lines: Vec<String> = req
                .headers
                .iter()
                .map(|(n, v)| format!("{n}: {v}\n"))
                .collect();
            Response::text(200, lines.concat())
        }
        "/has-body" => Response::text(
            200,
            format!("{} {:?}", req.has_body(), req.content_length()),
        ),
        "/stream" => Response::stream(200, Box::new(Cursor::new(pattern(100_000))), None),
        "/short" => Response::stream(200, Box::new(Cursor::new(vec![7u8; 10])), Some(1000)),
        "/file" => {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(&pattern(300_000)).unwrap();
            f.rewind().unwrap();
            Response::empty(200).with_body(Body::File(f, 300_000))
        }
        "/no-content" => Response::text(204, "ignored"),
        "/panic" => panic!("deliberate test panic"),
        "/slow" => {
            thread::sleep(Duration::from_millis(600));
            Response::text(200, "done")
        }
        _ => Response::text(404, "not found"),
    }
}

/// A raw HTTP client over one socket.
struct Client {
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        let s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        Client {
            reader: BufReader::new(s),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    fn head(&mut self) -> (u16, Vec<(String, String)>) {
        let status_line = self.line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        for _ in 0..200 {
            let line = self.line();
            let line = line.trim_end();
            if line.is_empty() {
                return (status, headers);
            }
            let (n, v) = line.split_once(':').unwrap();
            headers.push((n.to_string(), v.trim().to_string()));
        }
        panic!("endless header block");
    }

    fn reply(&mut self) -> Reply {
        self.reply_to("GET")
    }

    fn reply_to(&mut self, method: &str) -> Reply {
        let (status, headers) = self.head();
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" || status == 204 || status == 304 || status < 200 {
            return reply;
        }
        if reply.header("transfer-encoding") == Some("chunked") {
            reply.body = self.chunked_body();
        } else if let Some(len) = reply.header("content-length") {
            let mut body = vec![0u8; len.parse().unwrap()];
            self.reader.read_exact(&mut body).unwrap();
            reply.body = body;
        } else {
            self.reader.read_to_end(&mut reply.body).unwrap();
        }
        reply
    }

    fn chunked_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        for _ in 0..100_000 {
            let size = usize::from_str_radix(self.line().trim_end(), 16).unwrap();
            if size == 0 {
                assert_eq!(self.line(), "\r\n");
                return body;
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..]).unwrap();
            assert_eq!(self.line(), "\r\n");
        }
        panic!("endless chunked body");
    }

    fn get(&mut self, path: &str) -> Reply {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.reply()
    }

    /// True when the server has closed the connection (EOF or reset) within `WAIT`.
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
        false
    }
}

#[test]
fn get_and_keep_alive_for_two_requests() {
    let srv = TestServer::start(config());
    let mut c = srv.connect();
    let r = c.get("/hello");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    assert_eq!(r.header("content-length"), Some("5"));
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert!(r.header("connection").is_none());
    let r = c.get("/nothing");
    assert_eq!(r.status, 404);
    c.send(b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n");
    let r = c.reply();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    srv.stop();
}

#[test]
fn http10_closes_unless_asked_to_keep_alive() {
    let srv = TestServer::start(config());
    let mut c = srv.connect();
    c.send(b"GET /hello HTTP/1.0\r\n\r\n");
    let r = c.reply();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(c.closed());
    let mut c = srv.connect();
    c.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.reply().header("connection"), Some("keep-alive"));
    c.send(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.reply();
    assert!(r.header("transfer-encoding").is_none());
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.body, pattern(100_000));
}

#[test]
fn request_line_too_long_is_414() {
    let srv = TestServer::start(ServerConfig {
        max_request_line: 100,
        ..config()
    });
    let mut c = srv.connect();
    c.send(format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(200)).as_bytes());
    assert_eq!(c.reply().status, 414);
    let mut c = srv.connect();
    c.send(format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(80)).as_bytes());
    assert_eq!(c.reply().status, 404);
}

#[test]
fn too_many_or_too_large_headers_are_431() {
    let srv = TestServer::start(ServerConfig {
        max_headers: 5,
        max_header_bytes: 200,
        ..config()
    });
    let mut c = srv.connect();
    let many: String = (0..10).map(|i| format!("X-{i}: v\r\n")).collect();
    c.send(format!("GET /hello HTTP/1.1\r\n{many}\r\n").as_bytes());
    assert_eq!(c.reply().status, 431);
    let mut c = srv.connect();
    c.send(format!("GET /hello HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(300)).as_bytes());
    assert_eq!(c.reply().status, 431);
    let mut c = srv.connect();
    let five: String = (0..5).map(|i| format!("X-{i}: v\r\n")).collect();
    c.send(format!("GET /hello HTTP/1.1\r\n{five}\r\n").as_bytes());
    assert_eq!(c.reply().status, 200);
}

#[test]
fn malformed_requests_are_400() {
    let srv = TestServer::start(config());
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n",
    ] {
        let mut c = srv.connect();
        c.send(raw);
        assert_eq!(c.reply().status, 400, "{raw:?}");
    }
    let mut c = srv.connect();
    c.send(b"GET / HTTP/2.0\r\n\r\n");
    assert_eq!(c.reply().status, 505);
    let mut c = srv.connect();
    c.send(b"PUT /echo HTTP/1.1\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(c.reply().status, 417);
}

#[test]
fn bad_framing_headers_are_refused() {
    let srv = TestServer::start(config());
    for (headers, status) in [
        ("Content-Length: +5", 400),
        ("Content-Length: -1", 400),
        ("Content-Length: abc", 400),
        ("Content-Length: 5\r\nContent-Length: 6", 400),
        ("Transfer-Encoding: chunked\r\nContent-Length: 5", 400),
        ("Transfer-Encoding: gzip", 501),
    ] {
        let mut c = srv.connect();
        c.send(format!("POST /echo HTTP/1.1\r\n{headers}\r\n\r\nhello").as_bytes());
        let r = c.reply();
        assert_eq!(r.status, status, "{headers}");
        assert_eq!(r.header("connection"), Some("close"));
    }
}

#[test]
fn has_body_follows_the_framing() {
    let srv = TestServer::start(config());
    let mut c = srv.connect();
    c.send(b"POST /has-body HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.reply().text(), "false Some(0)");
    c.send(b"POST /has-body HTTP/1.1\r\n\r\n");
    assert_eq!(c.reply().text(), "false None");
    c.send(b"POST /has-body HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(c.reply().text(), "true Some(3)");
    c.send(b"POST /has-body HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(c.reply().text(), "true None");
}

#[test]
fn chunked_upload_is_echoed() {
    let srv = TestServer::start(config());
    let mut c = srv.connect();
    c.send(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(b"5;name=val\r\nhello\r\n6 ; x\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
    let r = c.reply();
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    // The trailers were consumed: the same connection carries the next request.
    assert_eq!(c.get("/hello").text(), "hello");
}

#[test]
fn bad_chunk_size_closes_and_server_lives() {
    let srv = TestServer::start(config());
    let mut c = srv.connect();
    c.send(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
    let r = c.reply();
    assert_eq!((r.status, r.text().as_str()), (400, "InvalidData"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    assert_eq!(srv.connect().get("/hello").status, 200);
}

#[test]
fn expect_continue_only_when_the_handler_reads() {
    let srv = TestServer::start(config());
    let mut c = srv.connect();
    c.send(b"PUT /echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.line(), "HTTP/1.1 100 Continue\r\n");
    assert_eq!(c.line(), "\r\n");
    c.send(b"hello");
    let r = c.reply();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    c.send(b"PUT /reject HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let r = c.reply();
    assert_eq!(r.status, 403);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
}

#[test]
fn huge_declared_length_then_hang_up_does_not_hurt() {
    let srv = TestServer::start(config());
    for path in ["/sink", "/reject", "/read5"] {
        let mut c = srv.connect();
        c.send(format!("PUT {path} HTTP/1.1\r\nContent-Length: 10000000000\r\n\r\nabc").as_bytes());
        drop(c);
    }
    let mut c = srv.connect();
    c.send(b"PUT /sink HTTP/1.1\r\nContent-Length: 10000000000\r\n\r\nabc");
    c.reader.get_ref().shutdown(Shutdown::Write).unwrap();
    let r = c.reply();
    assert_eq!((r.status, r.text().as_str()), (400, "UnexpectedEof"));
    assert_eq!(srv.connect().get("/hello").status, 200);
    srv.stop();
}

#[test]
fn unread_bodies_are_drained_or_close_the_connection() {
    let srv = TestServer::start(ServerConfig {
        max_drain: 1000,
        ..config()
    });
    let mut c = srv.connect();
    c.send(b"PUT /read5 HTTP/1.1\r\nContent-Length: 20\r\n\r\n01234567890123456789");
    let r = c.reply();
    assert_eq!(r.status, 200);
    assert!(r.header("connection").is_none());
    assert_eq!(c.get("/hello").text(), "hello");
    c.send(b"PUT /reject HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n");
    c.send(&[b'x'; 1000]);
    let r = c.reply();
    assert_eq!((r.status, r.header("connection")), (403, Some("close")));
    assert!(c.closed());
}

#[test]
fn underscore_header_names_reach_the_handler() {
    let srv = TestServer::start(config());
    let mut c = srv.connect();
    c.send(b"GET /headers HTTP/1.1\r\nx-image-meta-disk_format: raw\r\nX-Image-Meta-Property-os_distro: ubuntu\r\n\r\n");
    let text = c.reply().text();
    assert!(text.contains("x-image-meta-disk_format: raw\n"), "{text}");
    assert!(
        text.contains("X-Image-Meta-Property-os_distro: ubuntu\n"),
        "{text}"
    );
}

#[test]
fn streamed_bodies() {
    let srv = TestServer::start(ServerConfig {
        buffer_size: 4096,
        ..config()
    });
    let mut c = srv.connect();
    let r = c.get("/stream");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.header("content-length").is_none());
    assert_eq!(r.body, pattern(100_000));
    let r = c.get("/file");
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_eq!(r.body, pattern(300_000));
    let r = c.get("/no-content");
    assert_eq!(r.status, 204);
    assert!(r.header("content-length").is_none());
    // A reader shorter than its declared length: the client sees a short body and EOF.
    c.send(b"GET /short HTTP/1.1\r\n\r\n");
    let (status, headers) = c.head();
    assert_eq!(status, 200);
    assert!(headers.contains(&("Content-Length".into(), "1000".into())));
    let mut body = Vec::new();
    c.reader.read_to_end(&mut body).unwrap();
    assert_eq!(body, vec![7u8; 10]);
}

#[test]
fn head_has_headers_but_no_body() {
    let srv = TestServer::start(config());
    let mut c = srv.connect();
    c.send(b"HEAD /file HTTP/1.1\r\n\r\n");
    let r = c.reply_to("HEAD");
    assert_eq!(r.header("content-length"), Some("300000"));
    c.send(b"HEAD /hello HTTP/1.1\r\n\r\n");
    assert_eq!(c.reply_to("HEAD").header("content-length"), Some("5"));
    // Had any body bytes been sent, this reply would not parse.
    assert_eq!(c.get("/hello").text(), "hello");
}

#[test]
fn handler_panic_is_a_500_and_the_worker_lives() {
    let srv = TestServer::start(ServerConfig {
        workers: 1,
        ..config()
    });
    let mut c = srv.connect();
    let r = c.get("/panic");
    assert_eq!(r.status, 500);
    assert_eq!(c.get("/hello").status, 200);
    // The one worker is free again once `c` goes.
    drop(c);
    assert_eq!(srv.connect().get("/hello").status, 200);
}

#[test]
fn connections_over_the_limits_get_503_without_a_worker() {
    let srv = TestServer::start(ServerConfig {
        workers: 1,
        max_connections_per_client: 2,
        ..config()
    });
    let mut a = srv.connect();
    assert_eq!(a.get("/hello").status, 200);
    // `a` is idle and `b` has sent nothing: neither holds the only worker.
    let mut b = srv.connect();
    let mut c = srv.connect();
    let r = c.reply();
    assert_eq!((r.status, r.header("connection")), (503, Some("close")));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(b.get("/hello").status, 200);
    assert_eq!(a.get("/hello").status, 200);
}

#[test]
fn a_new_client_takes_the_place_of_the_oldest_idle_one() {
    let srv = TestServer::start(ServerConfig {
        workers: 1,
        max_connections: 2,
        ..config()
    });
    let mut a = srv.connect();
    assert_eq!(a.get("/hello").status, 200);
    let mut b = srv.connect();
    assert_eq!(b.get("/hello").status, 200);
    // Both idle at the limit: the oldest idle one (`a`) is closed for `c`.
    let mut c = srv.connect();
    assert_eq!(c.get("/hello").status, 200);
    assert!(a.closed());
    assert_eq!(b.get("/hello").status, 200);
}

#[test]
fn a_head_sent_byte_by_byte_holds_no_worker_and_gets_408() {
    let srv = TestServer::start(ServerConfig {
        workers: 1,
        client_header_timeout: Duration::from_millis(600),
        ..config()
    });
    let mut slow = srv.connect();
    slow.send(b"GET /hel");
    let started = Instant::now();
    // The only worker is free for others while the slow head dribbles in.
    let mut other = srv.connect();
    assert_eq!(other.get("/hello").status, 200);
    let r = slow.reply();
    assert_eq!(r.status, 408);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(500), "cut after {waited:?}");
    assert!(waited < Duration::from_secs(3), "cut after {waited:?}");
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let srv = TestServer::start(ServerConfig {
        keepalive_timeout: Duration::from_millis(300),
        ..config()
    });
    let mut c = srv.connect();
    assert_eq!(c.get("/hello").status, 200);
    let started = Instant::now();
    assert!(c.closed());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn shutdown_finishes_in_flight_requests() {
    let srv = TestServer::start(ServerConfig {
        keepalive_timeout: Duration::from_secs(60),
        ..config()
    });
    let mut idle = srv.connect();
    assert_eq!(idle.get("/hello").status, 200);
    let mut slow = srv.connect();
    slow.send(b"GET /slow HTTP/1.1\r\n\r\n");
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    srv.stop();
    assert!(started.elapsed() < Duration::from_secs(3));
    let r = slow.reply();
    assert_eq!((r.status, r.text().as_str()), (200, "done"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(idle.closed());
    assert!(TcpStream::connect_timeout(&srv.addr, WAIT).is_err());
}

#[test]
fn transfers_block_at_most_one_rate_window() {
    let s = Duration::from_secs;
    // The rate is checked at least once a window: a longer socket timeout is shortened.
    assert_eq!(within_window(s(60), 1024, s(30)), s(30));
    assert_eq!(within_window(s(10), 1024, s(30)), s(10));
    // No socket timeout (0) still gets the window, so a stalled client is checked.
    assert_eq!(within_window(s(0), 1024, s(30)), s(30));
    // Without a minimum rate the configured timeout stands.
    assert_eq!(within_window(s(60), 0, s(30)), s(60));
    assert_eq!(within_window(s(60), 1024, s(0)), s(60));
}

#[test]
fn a_worker_waits_only_briefly_for_a_clients_next_request() {
    // One worker: if it held a keep-alive connection, nobody else would be served.
    let srv = TestServer::start(ServerConfig {
        workers: 1,
        metadata_workers: 0,
        ..config()
    });
    let mut a = srv.connect();
    assert_eq!(a.get("/hello").status, 200);
    // A's connection stays open and quiet: B is served at once all the same.
    let started = Instant::now();
    let mut b = srv.connect();
    assert_eq!(b.get("/hello").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // A's next request, sent at once after its answer, then in two pieces with a pause
    // longer than the wait: the first half goes to the poller, which completes it.
    assert_eq!(a.get("/hello").status, 200);
    a.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n");
    thread::sleep(Duration::from_millis(50));
    a.send(b"\r\n");
    let r = a.reply();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    srv.stop();
}
