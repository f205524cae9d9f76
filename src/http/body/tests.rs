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

/// Property-based tests of the chunked decoder (quick and long runs: see `crate::props`).
mod props {
    use super::*;
    use crate::props::{edits, mutate, nasty_bytes, props};
    use proptest::prelude::*;
    use std::io::BufReader;

    /// Decodes `wire` through a `BufReader` of `cap` bytes, reading `step` bytes at a time,
    /// so that lines and chunks straddle buffer boundaries. Returns the payload (or error),
    /// the state, and what is left of the input.
    fn decode(wire: &[u8], cap: usize, step: usize) -> (io::Result<Vec<u8>>, BodyState, Vec<u8>) {
        let mut src = BufReader::with_capacity(cap, Cursor::new(wire.to_vec()));
        let mut state = BodyState::new(Framing::Chunked, false, 256);
        let mut body = Vec::new();
        let mut buf = vec![0u8; step];
        let mut sink = io::sink();
        let result = {
            let mut reader = BodyReader::new(&mut src, &mut sink, &mut state);
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break Ok(body),
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                    Err(e) => break Err(e),
                }
            }
        };
        let mut rest = Vec::new();
        src.read_to_end(&mut rest).ok();
        (result, state, rest)
    }

    /// Any outcome is a payload no longer than the input or a client-side error (the
    /// upload path and the registry map both kinds to 400), and the state agrees.
    fn check(wire: &[u8], cap: usize, step: usize) -> Result<(), TestCaseError> {
        let (r, state, _) = decode(wire, cap, step);
        match r {
            Ok(body) => {
                prop_assert!(body.len() <= wire.len());
                prop_assert!(state.is_done());
            }
            Err(e) => {
                let kind = e.kind();
                prop_assert!(
                    matches!(
                        kind,
                        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                    ),
                    "{:?}: {}",
                    kind,
                    e
                );
                prop_assert!(state.is_failed());
            }
        }
        Ok(())
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,8}"
    }

    /// A quoted-string: qdtext and quoted-pairs, high bytes included.
    fn quoted() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            (0x23u8..=0x5b).prop_map(|b| vec![b]),
            (0x5du8..=0x7e).prop_map(|b| vec![b]),
            proptest::sample::select(vec![b' ', b'\t', b'!', 0x80, 0xff]).prop_map(|b| vec![b]),
            (0x21u8..=0x7e).prop_map(|b| vec![b'\\', b]),
        ];
        proptest::collection::vec(piece, 0..6).prop_map(|pieces| {
            let mut q = vec![b'"'];
            q.extend(pieces.concat());
            q.push(b'"');
            q
        })
    }

    fn bws() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec!["", "", " ", "\t", " \t "])
    }

    /// One `;name[=value]` extension with optional whitespace around its parts.
    fn extension() -> impl Strategy<Value = Vec<u8>> {
        let value = prop_oneof![token().prop_map(String::into_bytes), quoted()];
        (
            bws(),
            bws(),
            token(),
            proptest::option::of((bws(), bws(), value)),
        )
            .prop_map(|(w1, w2, name, value)| {
                let mut e = format!("{w1};{w2}{name}").into_bytes();
                if let Some((w3, w4, v)) = value {
                    e.extend_from_slice(format!("{w3}={w4}").as_bytes());
                    e.extend(v);
                }
                e
            })
    }

    fn extensions() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(extension(), 0..3).prop_map(|e| e.concat())
    }

    fn trailers() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec((token(), "[ -~]{0,12}"), 0..3).prop_map(|fields| {
            fields
                .into_iter()
                .flat_map(|(n, v)| format!("{n}: {v}\r\n").into_bytes())
                .collect()
        })
    }

    /// A payload, cut into chunks at random points, encoded with random extensions,
    /// size spellings (case, leading zeros) and trailers.
    fn encoded() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::collection::vec(
                (any::<usize>(), extensions(), any::<bool>(), 0usize..3),
                0..8,
            ),
            extensions(),
            trailers(),
        )
            .prop_map(|(data, cuts, last_ext, trailers)| {
                let mut points: Vec<usize> =
                    cuts.iter().map(|(c, ..)| c % (data.len() + 1)).collect();
                points.push(data.len());
                points.sort_unstable();
                points.dedup();
                let mut wire = Vec::new();
                let mut from = 0;
                for (i, &to) in points.iter().enumerate() {
                    if to == from {
                        continue; // a zero size would end the body
                    }
                    let (_, ext, upper, zeros) = &cuts.get(i).cloned().unwrap_or_default();
                    let size = format!("{}{:x}", "0".repeat(*zeros), to - from);
                    let size = if *upper { size.to_uppercase() } else { size };
                    wire.extend(size.into_bytes());
                    wire.extend(ext);
                    wire.extend(b"\r\n");
                    wire.extend(&data[from..to]);
                    wire.extend(b"\r\n");
                    from = to;
                }
                wire.extend(b"0");
                wire.extend(last_ext);
                wire.extend(b"\r\n");
                wire.extend(trailers);
                wire.extend(b"\r\n");
                (data, wire)
            })
    }

    props! {
        cases = 2000;

        /// Random bytes: never a panic, never a server-side error.
        fn prop_chunked_random_bytes(wire in nasty_bytes(400), cap in 1usize..64, step in 1usize..64) {
            check(&wire, cap, step)?;
        }

        /// Encode then decode gives the payload back, whatever the chunking, extensions,
        /// trailers and read sizes, and stops exactly at the end of the body.
        fn prop_chunked_round_trip((data, wire) in encoded(), cap in 1usize..64, step in 1usize..700) {
            let mut input = wire.clone();
            input.extend_from_slice(b"NEXT");
            let (r, state, rest) = decode(&input, cap, step);
            match r {
                Ok(body) => prop_assert_eq!(body, data),
                Err(e) => {
                    return Err(TestCaseError::fail(format!(
                        "{e} for {:?}",
                        String::from_utf8_lossy(&wire)
                    )))
                }
            }
            prop_assert!(state.is_done());
            prop_assert_eq!(rest, b"NEXT".to_vec());
        }

        /// Draining (what the worker does with a body the handler left unread) reaches
        /// the end exactly when the payload is within the limit, and stops there.
        fn prop_chunked_drain((data, wire) in encoded(), limit in 0u64..700, cap in 1usize..64) {
            let mut input = wire;
            input.extend_from_slice(b"NEXT");
            let mut src = BufReader::with_capacity(cap, Cursor::new(input));
            let mut state = BodyState::new(Framing::Chunked, false, 256);
            let mut sink = io::sink();
            let done = BodyReader::new(&mut src, &mut sink, &mut state).drain(limit);
            prop_assert_eq!(done, data.len() as u64 <= limit);
            if done {
                let mut rest = Vec::new();
                src.read_to_end(&mut rest).ok();
                prop_assert_eq!(rest, b"NEXT".to_vec());
            }
        }

        /// Near-valid bodies (a few bytes changed): never a panic, never a server error.
        fn prop_chunked_mutated((_data, wire) in encoded(), e in edits(), cap in 1usize..64) {
            check(&mutate(wire, &e), cap, 17)?;
        }

        /// The chunk-size line parser agrees with a plain reading of its hex digits.
        fn prop_chunk_size_line(line in nasty_bytes(40)) {
            if let Ok(n) = parse_chunk_size(&line) {
                let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                let hex = String::from_utf8_lossy(&line[..digits]).into_owned();
                prop_assert_eq!(u64::from_str_radix(&hex, 16).ok(), Some(n));
                prop_assert!(!line.contains(&b'\r') && !line.contains(&b'\n'));
            }
        }
    }
}

/// A client that sends one byte per read, each after `delay`, and then nothing: once its
/// data runs out a read waits `delay` and fails with `WouldBlock`, as a socket read does
/// when `SO_RCVTIMEO` runs out.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    delay: std::time::Duration,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::thread::sleep(self.delay);
        match (self.data.get(self.pos), buf.first_mut()) {
            (Some(&b), Some(slot)) => {
                *slot = b;
                self.pos += 1;
                Ok(1)
            }
            (Some(_), None) => Ok(0),
            (None, _) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

fn trickle(data: Vec<u8>, delay_ms: u64) -> io::BufReader<Trickle> {
    let delay = std::time::Duration::from_millis(delay_ms);
    io::BufReader::with_capacity(
        1,
        Trickle {
            data,
            pos: 0,
            delay,
        },
    )
}

/// Reads a body off `src` under a 1 MB/s minimum over `window_ms`: the bytes read, and
/// the error that ended it.
fn read_rated(
    src: &mut (dyn BufRead + Send),
    framing: Framing,
    window_ms: u64,
) -> (Vec<u8>, Option<io::Error>, BodyState) {
    let window = std::time::Duration::from_millis(window_ms);
    let mut state = BodyState::new(framing, false, 64).with_min_rate(1_000_000, window);
    let mut out = Vec::new();
    let mut body = Vec::new();
    let mut reader = BodyReader::new(src, &mut out, &mut state);
    let err = reader.read_to_end(&mut body).err();
    (body, err, state)
}

fn assert_rate_cut(err: Option<io::Error>, state: &BodyState) {
    let err = err.expect("the body should have been cut");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("request body slower than 1000000 bytes/s over 0.2 s ("),
        "{msg}"
    );
    assert!(state.is_failed());
}

#[test]
fn a_trickling_body_is_cut_after_the_window() {
    let started = std::time::Instant::now();
    let mut src = trickle(vec![b'x'; 100_000], 2);
    let (body, err, state) = read_rated(&mut src, Framing::Length(100_000), 200);
    assert_rate_cut(err, &state);
    // About a window's worth of 2 ms reads got through.
    assert!((50..=110).contains(&body.len()), "{}", body.len());
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    // Later reads fail at once.
    let mut out = Vec::new();
    let mut state = state;
    let mut reader = BodyReader::new(&mut src, &mut out, &mut state);
    assert!(reader.read(&mut [0u8; 8]).is_err());
}

#[test]
fn a_trickling_chunked_body_is_cut_too() {
    let mut wire = b"186a0\r\n".to_vec();
    wire.extend(std::iter::repeat_n(b'x', 100_000));
    let mut src = trickle(wire, 2);
    let (body, err, state) = read_rated(&mut src, Framing::Chunked, 200);
    assert_rate_cut(err, &state);
    assert!(body.len() < 110, "{}", body.len());
}

#[test]
fn a_stall_is_cut_with_the_rate_when_it_spans_the_window() {
    // The read times out (`WouldBlock` after 250 ms, past the 200 ms window): the guard
    // names the rate instead of the bare timeout.
    let mut src = trickle(Vec::new(), 250);
    let (body, err, state) = read_rated(&mut src, Framing::Length(10), 200);
    assert!(body.is_empty());
    assert_rate_cut(err, &state);
    // Without a minimum rate the timeout fails the body as it always did.
    let mut src = trickle(Vec::new(), 10);
    let mut state = BodyState::new(Framing::Length(10), false, 64);
    let mut out = Vec::new();
    let err = BodyReader::new(&mut src, &mut out, &mut state)
        .read_to_end(&mut Vec::new())
        .err();
    assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::WouldBlock));
    assert!(state.is_failed());
}

#[test]
fn a_fast_body_is_not_cut() {
    // 4 MB from memory take milliseconds of reading: far above 1 MB/s over 1 s.
    let data = vec![7u8; 4_000_000];
    let mut src = io::BufReader::new(Cursor::new(data.clone()));
    let window = std::time::Duration::from_secs(1);
    let mut state =
        BodyState::new(Framing::Length(4_000_000), false, 64).with_min_rate(1_000_000, window);
    let mut out = Vec::new();
    let mut body = Vec::new();
    BodyReader::new(&mut src, &mut out, &mut state)
        .read_to_end(&mut body)
        .unwrap();
    assert!(body == data);
    assert!(state.is_done());
}

#[test]
fn the_drain_is_rate_checked() {
    let mut src = trickle(vec![b'x'; 10_000], 2);
    let window = std::time::Duration::from_millis(100);
    let mut state =
        BodyState::new(Framing::Length(10_000), false, 64).with_min_rate(1_000_000, window);
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    assert!(!BodyReader::new(&mut src, &mut out, &mut state).drain(10_000));
    assert!(state.is_failed());
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}
