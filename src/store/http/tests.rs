use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use super::super::tests::add_to;
use super::super::tests::read_all;
use super::*;

const BODY: &[u8] = b"remote image bytes, not very many of them";
/// `user:p@ss` as sent in the `Authorization` header.
const AUTH: &str = "Basic dXNlcjpwQHNz";

/// Answers one request: `/image` 200 with BODY, `/private` 200 only with AUTH (else
/// 401), `/chunked` 200 without a length, `/nolength` HEAD without Content-Length,
/// `/error` 500, anything else 404.
fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut auth = None;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case("authorization")
        {
            auth = Some(v.trim().to_string());
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let head = method == "HEAD";
    let (status, body, length): (&str, &[u8], bool) = match path {
        "/image" => ("200 OK", BODY, true),
        "/private" if auth.as_deref() == Some(AUTH) => ("200 OK", BODY, true),
        "/private" => ("401 Unauthorized", b"no", true),
        "/chunked" => ("200 OK", BODY, false),
        "/nolength" => ("200 OK", b"", false),
        "/error" => ("500 Internal Server Error", b"oops", true),
        _ => ("404 Not Found", b"not here", true),
    };
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    if length {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    } else if path == "/chunked" {
        out.push_str("Transfer-Encoding: chunked\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if !head {
        if path == "/chunked" {
            for piece in body.chunks(10) {
                stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                stream.write_all(piece)?;
                stream.write_all(b"\r\n")?;
            }
            stream.write_all(b"0\r\n\r\n")?;
        } else {
            stream.write_all(body)?;
        }
    }
    stream.flush()
}

/// A tiny HTTP server on loopback that answers up to 50 connections.
fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for _ in 0..50 {
            match listener.accept() {
                Ok((s, _)) => {
                    let _ = answer(s);
                }
                Err(_) => return,
            }
        }
    });
    addr
}

fn loc(s: &str) -> Location {
    Location::parse(s).expect("location")
}

fn store() -> HttpStore {
    HttpStore::new(&StoreOptions::default())
}

#[test]
fn get_and_size() {
    let addr = serve();
    let store = store();
    let l = loc(&format!("http://{addr}/image"));
    let data = store.get(&l).expect("get");
    assert_eq!(data.len(), Some(BODY.len() as u64));
    assert_eq!(read_all(data), BODY);
    assert_eq!(store.size(&l).expect("size"), BODY.len() as u64);

    let chunked = store
        .get(&loc(&format!("http://{addr}/chunked")))
        .expect("get chunked");
    assert_eq!(chunked.len(), None);
    assert_eq!(read_all(chunked), BODY);

    match store.size(&loc(&format!("http://{addr}/nolength"))) {
        Err(Error::Store(m)) => assert!(m.contains("Content-Length"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn basic_auth_from_the_location() {
    let addr = serve();
    let store = store();
    let with = loc(&format!("http://user:p%40ss@{addr}/private"));
    assert_eq!(read_all(store.get(&with).expect("get with auth")), BODY);
    let wrong = loc(&format!("http://user:WRONGPASS@{addr}/private"));
    match store.get(&wrong) {
        Err(Error::Store(m)) => {
            assert!(m.contains("401"), "{m}");
            assert!(!m.contains("WRONGPASS") && !m.contains("user"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn remote_errors() {
    let addr = serve();
    let store = store();
    let missing = loc(&format!("http://user:SECRETPW@{addr}/missing"));
    match store.get(&missing) {
        Err(Error::NotFound(m)) => assert!(!m.contains("SECRETPW"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(store.size(&missing), Err(Error::NotFound(_))));
    assert!(matches!(
        store.get(&loc(&format!("http://{addr}/error"))),
        Err(Error::Store(_))
    ));

    // A closed port: connection refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let refused = loc(&format!("http://user:SECRETPW@{closed}/image"));
    match store.get(&refused) {
        Err(Error::Store(m)) => {
            assert!(m.contains(&format!("http://{closed}/image")), "{m}");
            assert!(!m.contains("SECRETPW") && !m.contains("user"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn read_only() {
    let store = store();
    assert!(!store.writable());
    assert_eq!(store.name(), "http");
    match add_to(&store, "x", &mut &b"abc"[..], None) {
        Err(Error::BadRequest(m)) => assert!(m.contains("the http store is read-only")),
        other => panic!("{other:?}"),
    }
    // Delete leaves remote data alone and succeeds, without any request.
    store
        .delete(&loc("http://user:pw@127.0.0.1:1/x"))
        .expect("delete is a no-op");
    assert!(matches!(
        store.get(&loc("file:///x")),
        Err(Error::BadRequest(_))
    ));
}

#[test]
fn base64_encoding() {
    for (plain, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
        ("user:p@ss", "dXNlcjpwQHNz"),
    ] {
        assert_eq!(base64(plain.as_bytes()), enc, "{plain}");
    }
}
