use super::*;
use std::borrow::Cow;
use std::time::Duration;

fn head_bytes(
    status: u16,
    headers: &[(String, String)],
    frame: Frame,
    keep_alive: bool,
    http10: bool,
) -> Vec<u8> {
    let mut resp = Response::empty(status);
    resp.headers = headers
        .iter()
        .map(|(k, v)| (Cow::Owned(k.clone()), v.clone()))
        .collect();
    let mut h = Vec::new();
    write_head(&mut h, status, &resp, frame, keep_alive, http10);
    h
}

#[test]
fn shared_headers_are_sent_first_and_checked_like_the_others() {
    let shared: crate::http::SharedHeaders = vec![
        (Cow::Borrowed("x-image-meta-name"), "a\r\nb".to_string()),
        (Cow::Borrowed("Content-Length"), "99".to_string()),
        (Cow::Borrowed("bad name"), "x".to_string()),
    ]
    .into();
    let resp = Response::empty(200)
        .with_shared_headers(shared)
        .with_header("ETag", "abc");
    assert_eq!(resp.header("X-Image-Meta-Name"), Some("a\r\nb"));
    let mut h = Vec::new();
    write_head(&mut h, 200, &resp, Frame::Length(0), true, false);
    let text = String::from_utf8(h).unwrap();
    let name = text.find("x-image-meta-name: a  b\r\n").expect(&text);
    assert!(name < text.find("ETag: abc\r\n").expect(&text), "{text}");
    assert!(!text.contains("99") && !text.contains("bad name"), "{text}");
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
}

#[test]
fn the_head_buffer_is_reused_unless_it_grew_large() {
    {
        let mut a = HeadBuf::take();
        a.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    }
    let b = HeadBuf::take();
    assert!(b.is_empty() && b.capacity() > 0, "kept, and emptied");
    drop(b);
    {
        let mut big = HeadBuf::take();
        big.resize(KEPT_HEAD_BUF * 2, b'x');
    }
    assert_eq!(HeadBuf::take().capacity(), 0, "a large buffer is not kept");
}

#[test]
fn http_dates() {
    let at = |s| http_date(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(at(1_735_689_599), "Tue, 31 Dec 2024 23:59:59 GMT");
}

#[test]
fn head_is_sanitised_and_framed() {
    let headers = vec![
        (
            "X-Image-Meta-Property-os_distro".to_string(),
            "a\r\nSet-Cookie: x".to_string(),
        ),
        ("Content-Length".to_string(), "999".to_string()),
        ("Bad Name".to_string(), "v".to_string()),
    ];
    let h = head_bytes(200, &headers, Frame::Length(5), false, false);
    let text = String::from_utf8(h).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "));
    assert!(text.contains("\r\nX-Image-Meta-Property-os_distro: a  Set-Cookie: x\r\n"));
    assert!(text.contains("\r\nContent-Length: 5\r\n"));
    assert!(!text.contains("999"));
    assert!(!text.contains("Bad Name"));
    assert!(text.ends_with("Connection: close\r\n\r\n"));
    let h10 = head_bytes(204, &[], Frame::Bodyless, true, true);
    let text = String::from_utf8(h10).unwrap();
    assert!(text.ends_with("Connection: keep-alive\r\n\r\n"));
    assert!(!text.contains("Content-Length"));
}

#[test]
fn odd_statuses_become_500() {
    assert_eq!(checked_status(0), 500);
    assert_eq!(checked_status(1000), 500);
    assert_eq!(checked_status(404), 404);
}

use std::io::{Seek, SeekFrom};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

/// A connected loopback pair: (server side, client side).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (server, client)
}

fn plan(min_rate: u64, window_ms: u64, sendfile: bool, file_buffer_size: usize) -> Plan {
    Plan {
        http10: false,
        head_request: false,
        keep_alive: true,
        buffer_size: 64 * 1024,
        min_rate,
        rate_window: Duration::from_millis(window_ms),
        sendfile,
        file_buffer_size,
    }
}

fn assert_rate_cut((sent, result): Sent, len: u64) {
    let err = result.expect_err("the body should have been cut");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("response body slower than 1000000 bytes/s over 0.2 s ("),
        "{msg}"
    );
    assert!(sent < len);
}

/// A large sparse file: reads as zeros, costs no disk.
fn sparse_file(len: u64) -> File {
    let file = tempfile::tempfile().unwrap();
    file.set_len(len).unwrap();
    file
}

#[test]
fn a_peer_that_stops_reading_is_cut() {
    // Nobody reads the client side: once the socket buffers are full, a write waits out
    // its 300 ms timeout, a stall longer than the 200 ms window.
    let len = 256 << 20;
    for sendfile in [false, true] {
        let started = Instant::now();
        let (server, _client) = pair();
        server
            .set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let plan = plan(1_000_000, 200, sendfile, 1 << 20);
        let sent = stream_file(&mut Sink::new(&server, &plan), sparse_file(len), len, &plan);
        assert_rate_cut(sent, len);
        assert!(started.elapsed() < Duration::from_secs(3), "{sendfile}");
    }
}

#[test]
fn a_peer_reading_below_the_rate_is_cut() {
    // The client reads about 200 KB/s, the minimum is 1 MB/s: the writes progress, slowly.
    // The kernel wakes a blocked writer only once half its send buffer is free, so against
    // a slow reader a write returns a partial count when its timeout runs out: the guard
    // looks at the rate that often.
    let started = Instant::now();
    let (server, mut client) = pair();
    server
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reading = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) && matches!(client.read(&mut buf), Ok(1..)) {
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let len = 1 << 30;
    let plan = plan(1_000_000, 200, true, 1 << 20);
    let body: Box<dyn Read + Send> = Box::new(io::repeat(b'x').take(len));
    let sent = stream_reader(
        &mut Sink::new(&server, &plan),
        body,
        Frame::Length(len),
        &plan,
    );
    stop.store(true, Ordering::Relaxed);
    drop(server);
    reading.join().unwrap();
    assert_rate_cut(sent, len);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_cut_response_closes_the_connection() {
    let (server, _client) = pair();
    server
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let len = 256 << 20;
    let resp = Response::stream(200, Box::new(io::repeat(0).take(len)), Some(len));
    let outcome = send(&server, resp, &plan(1_000_000, 200, true, 1 << 20));
    assert!(!outcome.keep_alive);
    assert!(outcome.body_bytes < len);
}

/// The whole response to a file body sent with `plan`, read by a client until the server
/// closes: (head, body).
fn fetch_file(file: File, len: u64, plan: &Plan) -> (String, Vec<u8>) {
    let (server, mut client) = pair();
    let reading = thread::spawn(move || {
        let mut wire = Vec::new();
        client.read_to_end(&mut wire).unwrap();
        wire
    });
    let resp = Response::empty(200).with_body(Body::File(file, len));
    let outcome = send(
        &server,
        resp,
        &Plan {
            keep_alive: false,
            ..*plan
        },
    );
    assert_eq!(outcome.body_bytes, len);
    drop(server);
    let wire = reading.join().unwrap();
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(wire[..end].to_vec()).unwrap();
    (head, wire[end..].to_vec())
}

#[test]
fn sendfile_and_the_buffered_copy_send_the_same_bytes() {
    let data: Vec<u8> = (0..5_000_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&data).unwrap();
    // A file body starts at the file's position: send all but the first and last 1000.
    let (from, len) = (1000usize, data.len() as u64 - 2000);
    let expected = &data[from..from + len as usize];
    // A zero buffer size means the default (1 MiB), not a byte at a time.
    for (sendfile, buffer) in [(true, 0), (false, 1 << 20), (false, 100_000), (false, 0)] {
        let mut f = file.try_clone().unwrap();
        f.seek(SeekFrom::Start(from as u64)).unwrap();
        let (head, body) = fetch_file(f, len, &plan(1024, 30_000, sendfile, buffer));
        assert!(
            head.contains(&format!("\r\nContent-Length: {len}\r\n")),
            "{head}"
        );
        assert!(body == expected, "sendfile {sendfile}, buffer {buffer}");
    }
}

#[test]
fn a_file_shorter_than_its_length_is_a_short_body() {
    for sendfile in [true, false] {
        let (server, _client) = pair();
        let plan = plan(0, 0, sendfile, 4096);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[1u8; 10_000]).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let (sent, result) = stream_file(&mut Sink::new(&server, &plan), file, 20_000, &plan);
        assert_eq!(sent, 10_000);
        let kind = result.err().map(|e| e.kind());
        assert_eq!(kind, Some(io::ErrorKind::UnexpectedEof));
    }
}

#[test]
fn sendfile_pieces_follow_the_client() {
    let ms = Duration::from_millis;
    // A client taking 8 MiB in a millisecond gets the largest pieces.
    assert_eq!(next_piece(MAX_PIECE, ms(1)), MAX_PIECE);
    assert_eq!(next_piece(1, Duration::ZERO), MAX_PIECE);
    // One taking 1 MiB a second gets what it reads in a quarter of a second.
    assert_eq!(next_piece(1 << 20, ms(1000)), 1 << 18);
    // A trickle still gets the smallest piece.
    assert_eq!(next_piece(100, ms(5000)), MIN_PIECE);
    assert_eq!(next_piece(0, ms(5000)), MIN_PIECE);
}
