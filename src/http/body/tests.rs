use super::*;
use std::io::Cursor;

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut h = Headers::default();
    for (n, v) in pairs {
        h.push(*n, *v);
    }
    h
}

fn status_of(pairs: &[(&str, &str)]) -> u16 {
    match framing(&headers(pairs), false) {
        Ok(_) => 200,
        Err(r) => r.status,
    }
}

#[test]
fn content_length_forms() {
    assert_eq!(framing(&headers(&[]), false), Ok(Framing::None));
    let ok = |v| framing(&headers(&[("Content-Length", v)]), false);
    assert_eq!(ok("0"), Ok(Framing::None));
    assert_eq!(ok("5"), Ok(Framing::Length(5)));
    assert_eq!(ok(" 5 "), Ok(Framing::Length(5)));
    assert_eq!(ok("5, 5"), Ok(Framing::Length(5)));
    for bad in [
        "+5",
        "-1",
        "abc",
        "",
        "5 5",
        "0x10",
        "99999999999999999999999",
    ] {
        assert_eq!(status_of(&[("Content-Length", bad)]), 400, "{bad:?}");
    }
    let two = [("Content-Length", "5"), ("content-length", "6")];
    assert_eq!(status_of(&two), 400);
    let same = [("Content-Length", "5"), ("content-length", "5")];
    assert_eq!(framing(&headers(&same), false), Ok(Framing::Length(5)));
    assert_eq!(status_of(&[("Content_Length", "5")]), 400);
}

#[test]
fn transfer_encoding_forms() {
    let te = |v| framing(&headers(&[("Transfer-Encoding", v)]), false);
    assert_eq!(te("chunked"), Ok(Framing::Chunked));
    assert_eq!(te("Chunked"), Ok(Framing::Chunked));
    assert_eq!(status_of(&[("Transfer-Encoding", "gzip")]), 501);
    assert_eq!(status_of(&[("Transfer-Encoding", "gzip, chunked")]), 501);
    assert_eq!(status_of(&[("Transfer-Encoding", "chunked, chunked")]), 400);
    assert_eq!(status_of(&[("Transfer-Encoding", "")]), 400);
    let both = [("Transfer-Encoding", "chunked"), ("Content-Length", "5")];
    assert_eq!(status_of(&both), 400);
    let h10 = framing(&headers(&[("Transfer-Encoding", "chunked")]), true);
    assert_eq!(h10.map_err(|r| r.status), Err(400));
}

fn read_all(input: &[u8], framing: Framing) -> (io::Result<Vec<u8>>, BodyState, Vec<u8>) {
    let mut src = Cursor::new(input.to_vec());
    let mut out = Vec::new();
    let mut state = BodyState::new(framing, true, 1024);
    let mut body = Vec::new();
    let r = BodyReader::new(&mut src, &mut out, &mut state).read_to_end(&mut body);
    (r.map(|_| body), state, out)
}

#[test]
fn length_body_and_cut_off() {
    let (r, st, out) = read_all(b"hello, and more", Framing::Length(5));
    assert_eq!(r.unwrap(), b"hello");
    assert!(st.is_done());
    assert_eq!(out, CONTINUE);
    let (r, st, _) = read_all(b"hel", Framing::Length(5));
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    assert!(st.is_failed());
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let wire =
        b"5;name=v\r\nhello\r\n6 ; x\r\n world\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    let mut src = Cursor::new(wire.to_vec());
    let mut out = Vec::new();
    let mut state = BodyState::new(Framing::Chunked, false, 1024);
    let mut body = Vec::new();
    BodyReader::new(&mut src, &mut out, &mut state)
        .read_to_end(&mut body)
        .unwrap();
    assert_eq!(body, b"hello world0123456789");
    assert!(state.is_done());
    assert!(out.is_empty());
    let mut rest = String::new();
    src.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "NEXT");
}

#[test]
fn bad_chunks_are_invalid_data() {
    for wire in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"5x\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"11111111111111111\r\n",
    ] {
        let (r, st, _) = read_all(wire, Framing::Chunked);
        let kind = r.unwrap_err().kind();
        assert_eq!(kind, io::ErrorKind::InvalidData, "{wire:?}");
        assert!(st.is_failed());
    }
    let (r, _, _) = read_all(b"5\r\nhel", Framing::Chunked);
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    let long_trailer = format!("0\r\nX: {}\r\n\r\n", "a".repeat(2000));
    let (r, _, _) = read_all(long_trailer.as_bytes(), Framing::Chunked);
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidData);
}

#[test]
fn continue_is_sent_only_on_first_read() {
    let mut src = Cursor::new(b"abcdef".to_vec());
    let mut out = Vec::new();
    let mut state = BodyState::new(Framing::Length(6), true, 64);
    assert!(state.continue_pending());
    {
        let mut r = BodyReader::new(&mut src, &mut out, &mut state);
        let mut b = [0u8; 3];
        r.read_exact(&mut b).unwrap();
        r.read_exact(&mut b).unwrap();
    }
    assert_eq!(out, CONTINUE);
    assert!(!state.continue_pending());
    let none = BodyState::new(Framing::None, true, 64);
    assert!(!none.continue_pending());
}

#[test]
fn drain_respects_limit() {
    let run = |wire: &[u8], framing, limit| {
        let mut src = Cursor::new(wire.to_vec());
        let mut out = Vec::new();
        let mut state = BodyState::new(framing, false, 64);
        BodyReader::new(&mut src, &mut out, &mut state).drain(limit)
    };
    assert!(run(b"hello", Framing::Length(5), 5));
    assert!(!run(b"hel", Framing::Length(5), 5));
    assert!(run(b"5\r\nhello\r\n0\r\n\r\n", Framing::Chunked, 5));
    assert!(!run(
        b"5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n",
        Framing::Chunked,
        5
    ));
}

/// The error message of decoding `wire` as a chunked body (which must fail).
fn chunked_error(wire: &[u8]) -> (io::ErrorKind, String) {
    let (r, st, _) = read_all(wire, Framing::Chunked);
    assert!(
        st.is_failed(),
        "{:?} not failed",
        String::from_utf8_lossy(wire)
    );
    match r {
        Ok(body) => panic!("{:?} decoded to {body:?}", String::from_utf8_lossy(wire)),
        Err(e) => (e.kind(), e.to_string()),
    }
}

#[test]
fn bare_lf_is_refused_everywhere() {
    for (wire, says) in [
        (
            &b"5\nhello\r\n0\r\n\r\n"[..],
            "chunk-size line must end with CRLF",
        ),
        (b"5\r\nhello\n0\r\n\r\n", "followed by CRLF, not a bare LF"),
        (
            b"5\r\nhello\r\n0\n\r\n",
            "chunk-size line must end with CRLF",
        ),
        (b"0\r\nX: 1\n\r\n", "trailer line must end with CRLF"),
        (b"0\r\n\n", "trailer line must end with CRLF"),
        (
            b"5;a=b\nhello\r\n0\r\n\r\n",
            "chunk-size line must end with CRLF",
        ),
    ] {
        let (kind, msg) = chunked_error(wire);
        assert_eq!(kind, io::ErrorKind::InvalidData, "{wire:?}");
        assert!(msg.contains(says), "{wire:?}: {msg}");
    }
}

#[test]
fn chunk_extensions_are_checked() {
    for ok in [
        "5;a",
        "5;a=b",
        "5 ; a = b",
        "5;a=\"quoted \\\" string\";b;c=d",
        "5;a=\"\"",
        "5\t;\ta\t=\t\"x\"",
        "5;!#$%&'*+-.^_`|~09azAZ=!#$%&'*+-.^_`|~",
    ] {
        assert_eq!(parse_chunk_size(ok.as_bytes()), Ok(5), "{ok:?}");
    }
    for bad in [
        "5;",
        "5;=b",
        "5;a=",
        "5;a=\"unterminated",
        "5;a=\"bad\\\u{1}\"",
        "5;a=\"ctl\u{1}\"",
        "5;a b",
        "5;a=b c",
        "5;a=\"x\"y",
        "5;a=(b)",
        "5;a@b",
        "5 x",
        "5;a;",
        "5\u{0}",
        "5\r",
    ] {
        let r = parse_chunk_size(bad.as_bytes());
        assert!(r.is_err(), "{bad:?} accepted");
    }
}

#[test]
fn chunk_sizes_are_plain_bounded_hex() {
    assert_eq!(parse_chunk_size(b"ffffffffffffffff"), Ok(u64::MAX));
    assert_eq!(parse_chunk_size(b"0000000000000010"), Ok(16));
    assert_eq!(parse_chunk_size(b"aB"), Ok(0xab));
    for bad in [
        &b""[..],
        b"+5",
        b"-5",
        b"0x5",
        b" 5",
        b"10000000000000000",
        b"00000000000000005",
        b"\xef\xbc\x95",
    ] {
        assert!(parse_chunk_size(bad).is_err(), "{bad:?} accepted");
    }
    let (kind, msg) = chunked_error(b"00000000000000000000005\r\nhello\r\n0\r\n\r\n");
    assert_eq!(kind, io::ErrorKind::InvalidData);
    assert!(msg.contains("more than 16 hexadecimal digits"), "{msg}");
}

#[test]
fn chunk_lines_and_trailers_are_bounded() {
    let long = format!("5;a={}\r\nhello\r\n0\r\n\r\n", "b".repeat(MAX_CHUNK_LINE));
    let (_, msg) = chunked_error(long.as_bytes());
    assert_eq!(msg, "chunk-size line too long");
    let many: String = (0..=MAX_TRAILER_FIELDS)
        .map(|i| format!("T{i}:\r\n"))
        .collect();
    let mut state = BodyState::new(Framing::Chunked, false, 1 << 20);
    let wire = format!("0\r\n{many}\r\n");
    let mut src = Cursor::new(wire.into_bytes());
    let mut body = Vec::new();
    let e = BodyReader::new(&mut src, &mut Vec::new(), &mut state)
        .read_to_end(&mut body)
        .unwrap_err();
    assert_eq!(e.to_string(), "too many chunked trailer fields");
    for bad in [
        "0\r\nno colon\r\n\r\n",
        "0\r\n folded: x\r\n\r\n",
        "0\r\nX: a\u{1}b\r\n\r\n",
    ] {
        let (_, msg) = chunked_error(bad.as_bytes());
        assert!(
            msg.starts_with("invalid chunked trailer field"),
            "{bad:?}: {msg}"
        );
    }
    let (r, st, _) = read_all(b"0\r\nX-A: 1\r\nX-B:\r\n\r\n", Framing::Chunked);
    assert_eq!(r.unwrap(), b"");
    assert!(st.is_done());
}

#[test]
fn data_longer_than_its_size_is_named() {
    let (_, msg) = chunked_error(b"3\r\nhello\r\n0\r\n\r\n");
    assert!(msg.contains("longer than its chunk size"), "{msg}");
    let (kind, _) = chunked_error(b"5\r\nhello\r");
    assert_eq!(kind, io::ErrorKind::UnexpectedEof);
}
