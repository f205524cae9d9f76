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

/// Property-based tests of the head reader (quick and long runs: see `crate::props`).
mod props {
    use super::*;
    use crate::props::{edits, mutate, nasty_bytes, props};
    use proptest::prelude::*;

    /// The statuses a refused head may get: client errors, plus the two the RFCs assign to
    /// what we do not implement (501 unknown transfer coding, 505 HTTP version) — never a
    /// 500.
    const REFUSALS: [u16; 6] = [400, 414, 417, 431, 501, 505];

    fn small_limits() -> Limits {
        Limits {
            request_line: 256,
            header_bytes: 1024,
            headers: 16,
            deadline: Instant::now() + Duration::from_secs(600),
        }
    }

    /// Reads `raw` and checks that a refusal, and the framing of an accepted head, have an
    /// allowed status.
    fn check(raw: &[u8]) -> Result<(), TestCaseError> {
        match read_head(&mut Cursor::new(raw), &small_limits()) {
            Ok(head) => {
                if let Err(r) = head.framing() {
                    prop_assert!(REFUSALS.contains(&r.status), "{}", r.status);
                }
                prop_assert!(head.target.len() <= raw.len());
            }
            Err(HeadError::Gone) => {}
            Err(HeadError::Refuse(r)) => {
                prop_assert!(REFUSALS.contains(&r.status), "{}", r.status);
                prop_assert!(!r.message.is_empty());
            }
        }
        Ok(())
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}"
    }

    /// A field value as httparse returns it: no leading or trailing whitespace.
    fn field_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[!-~]([ -~\t]{0,30}[!-~])?",
            "[!-~é€]{1,8}( [!-~é€]{1,8}){0,3}",
        ]
    }

    fn target() -> impl Strategy<Value = String> {
        "/[A-Za-z0-9._~%/=&+:@!$'()*,;-]{0,40}(\\?[A-Za-z0-9._~%/=&+-]{0,20})?"
    }

    /// A well-formed head and what it holds.
    fn valid_head() -> impl Strategy<Value = (String, String, bool, Vec<(String, String)>)> {
        (
            token(),
            target(),
            any::<bool>(),
            proptest::collection::vec((token(), field_value()), 0..10),
        )
    }

    fn render(method: &str, target: &str, http10: bool, headers: &[(String, String)]) -> String {
        let version = if http10 { "1.0" } else { "1.1" };
        let mut raw = format!("{method} {target} HTTP/{version}\r\n");
        for (n, v) in headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        raw
    }

    props! {
        cases = 3000;

        /// Random bytes: never a panic, only allowed refusals.
        fn prop_head_random_bytes(raw in nasty_bytes(600)) {
            check(&raw)?;
        }

        /// Random bytes after a plausible request line reach the header parser.
        fn prop_head_random_header_block(
            line in "(GET|PUT|POST) /[a-z]{0,8} HTTP/1\\.[01]\r\n",
            rest in nasty_bytes(600),
        ) {
            let mut raw = line.into_bytes();
            raw.extend(rest);
            check(&raw)?;
        }

        /// A well-formed head parses to what was sent: method, target, version, header
        /// names as sent and values.
        fn prop_head_round_trip((method, target, http10, headers) in valid_head()) {
            let raw = render(&method, &target, http10, &headers);
            let head = read_head(&mut Cursor::new(raw.as_bytes()), &small_limits());
            let head = match head {
                Ok(h) => h,
                Err(e) => return Err(TestCaseError::fail(format!("{e:?} for {raw:?}"))),
            };
            prop_assert_eq!(&head.method, &method);
            prop_assert_eq!(&head.target, &target);
            prop_assert_eq!(head.http10, http10);
            let got: Vec<(String, String)> = head
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            prop_assert_eq!(got, headers);
        }

        /// Limits hold: a head over any of them is refused with 414 or 431, one within
        /// them all is accepted.
        fn prop_head_limits(
            (method, target, http10, headers) in valid_head(),
            line_max in 1usize..80,
            bytes_max in 0usize..300,
            count_max in 0usize..12,
        ) {
            let raw = render(&method, &target, http10, &headers);
            let limits = Limits {
                request_line: line_max,
                header_bytes: bytes_max,
                headers: count_max,
                deadline: Instant::now() + Duration::from_secs(600),
            };
            let line_len = raw.find("\r\n").unwrap_or(0);
            let header_bytes = raw.len() - line_len - 4;
            let within = line_len <= line_max
                && header_bytes <= bytes_max
                && headers.len() <= count_max;
            match read_head(&mut Cursor::new(raw.as_bytes()), &limits) {
                Ok(_) => prop_assert!(within, "accepted over the limits: {:?}", raw),
                Err(HeadError::Refuse(r)) => {
                    prop_assert!(!within, "{} within the limits: {:?}", r.status, raw);
                    prop_assert!([414, 431].contains(&r.status), "{}", r.status);
                }
                Err(HeadError::Gone) => return Err(TestCaseError::fail("gone")),
            }
        }

        /// Near-valid heads (a well-formed one with a few bytes changed).
        fn prop_head_mutated((method, target, http10, headers) in valid_head(), e in edits()) {
            let raw = render(&method, &target, http10, &headers);
            check(&mutate(raw.into_bytes(), &e))?;
        }
    }
}
