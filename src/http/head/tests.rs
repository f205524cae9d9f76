use super::*;
use std::io::Cursor;
use std::time::Duration;

fn limits() -> Limits {
    Limits {
        request_line: 64,
        header_bytes: 128,
        headers: 4,
        deadline: Instant::now() + Duration::from_secs(60),
    }
}

fn read(raw: &str) -> Result<Head, HeadError> {
    read_head(&mut Cursor::new(raw.as_bytes().to_vec()), &limits())
}

fn status(raw: &str) -> u16 {
    match read(raw) {
        Ok(_) => 200,
        Err(HeadError::Refuse(r)) => r.status,
        Err(HeadError::Gone) => 0,
    }
}

#[test]
fn parses_a_head_and_keeps_names_as_sent() {
    let head = read(
        "\r\nPUT /v1/images/x?a=1 HTTP/1.1\r\nx-image-meta-disk_format: raw\r\nHost: h\r\n\r\nBODY",
    )
    .unwrap();
    assert_eq!(
        (head.method.as_str(), head.target.as_str()),
        ("PUT", "/v1/images/x?a=1")
    );
    assert!(!head.http10);
    assert_eq!(head.log_path(), "/v1/images/x");
    let names: Vec<&str> = head.headers.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["x-image-meta-disk_format", "Host"]);
}

#[test]
fn limits_and_malformed_heads() {
    assert_eq!(
        status(&format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70))),
        414
    );
    assert_eq!(
        status(&format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(40))),
        200
    );
    assert_eq!(
        status("GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n"),
        431
    );
    assert_eq!(
        status("GET / HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n"),
        200
    );
    assert_eq!(
        status(&format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "x".repeat(130))),
        431
    );
    assert_eq!(status("GARBAGE\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nNo colon\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/3.0\r\n\r\n"), 505);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: h\r\n"), 0);
    assert_eq!(status(""), 0);
}

#[test]
fn keep_alive_and_expect_rules() {
    let head = |raw: &str| read(raw).unwrap();
    assert!(head("GET / HTTP/1.1\r\n\r\n").wants_keep_alive());
    assert!(!head("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").wants_keep_alive());
    assert!(!head("GET / HTTP/1.0\r\n\r\n").wants_keep_alive());
    assert!(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").wants_keep_alive());
    let put = head("PUT / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n");
    assert_eq!(put.framing(), Ok((Framing::Length(3), true)));
    let empty = head("PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(empty.framing(), Ok((Framing::None, false)));
    let odd = head("PUT / HTTP/1.1\r\nExpect: magic\r\n\r\n");
    assert_eq!(odd.framing().map_err(|r| r.status), Err(417));
}

#[test]
fn absolute_targets_become_paths() {
    assert_eq!(origin_form("/v1/images?a=1"), "/v1/images?a=1");
    assert_eq!(origin_form("http://h:9292/v1/images"), "/v1/images");
    assert_eq!(origin_form("HTTPS://h/x?y"), "/x?y");
    assert_eq!(origin_form("http://h?q=1"), "/?q=1");
    assert_eq!(origin_form("http://h"), "/");
    assert_eq!(origin_form("*"), "*");
}
