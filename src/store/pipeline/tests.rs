use std::io::Read;

use super::super::tests::{md5_hex, sha512_hex};
use super::*;

#[test]
fn parts_hash_and_count() {
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let mut r = &data[..];
    let mut s = ImageBody::new(&mut r, Some(1000), u64::MAX);
    let mut out = Vec::new();
    for _ in 0..3 {
        s.part(400, false).read_to_end(&mut out).unwrap();
    }
    assert_eq!(out, data);
    s.finish().unwrap();
    assert_eq!(s.total(), 1000);
    assert_eq!(s.checksum().ok(), Some(md5_hex(&data)));
}

#[test]
fn peeking_does_not_lose_bytes() {
    let data = b"abcdef".to_vec();
    let mut r = &data[..];
    let mut s = ImageBody::new(&mut r, None, u64::MAX);
    assert!(!s.at_eof().unwrap());
    assert!(!s.at_eof().unwrap());
    let mut out = Vec::new();
    s.part(3, true).read_to_end(&mut out).unwrap();
    assert!(!s.at_eof().unwrap());
    s.part(10, false).read_to_end(&mut out).unwrap();
    assert!(s.at_eof().unwrap());
    assert_eq!(out, data);
    assert_eq!(s.checksum().ok(), Some(md5_hex(&data)));
}

#[test]
fn short_exact_part_is_a_size_mismatch() {
    let mut r = &b"abc"[..];
    let mut s = ImageBody::new(&mut r, Some(10), u64::MAX);
    let mut out = Vec::new();
    assert!(s.part(10, true).read_to_end(&mut out).is_err());
    match s.take_failure() {
        Some(Error::BadRequest(m)) => assert!(m.contains("Size mismatch"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn too_much_data_and_cap() {
    let mut r = &b"abcdef"[..];
    let mut s = ImageBody::new(&mut r, Some(3), u64::MAX);
    let mut out = Vec::new();
    s.part(3, true).read_to_end(&mut out).unwrap();
    assert!(matches!(s.finish(), Err(Error::BadRequest(_))));

    let mut r = &b"abcdef"[..];
    let mut s = ImageBody::new(&mut r, None, 4);
    let mut buf = [0u8; 16];
    assert!(matches!(s.fill(&mut buf), Err(Error::TooLarge(_))));

    let mut r = &b"ab"[..];
    let mut s = ImageBody::new(&mut r, Some(3), u64::MAX);
    let mut buf = [0u8; 16];
    assert_eq!(s.fill(&mut buf).unwrap(), 2);
    assert!(matches!(s.finish(), Err(Error::BadRequest(_))));
}

/// 4 MiB whose first bytes are a qcow2 header naming a backing file.
fn backed_qcow2() -> Vec<u8> {
    let mut data = vec![0u8; 4 << 20];
    data[..4].copy_from_slice(b"QFI\xfb");
    data[4..8].copy_from_slice(&3u32.to_be_bytes());
    data[8..16].copy_from_slice(&512u64.to_be_bytes()); // backing file offset
    data
}

/// Counts what a reader handed out.
struct Counting<'a> {
    data: &'a [u8],
    read: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.read).min(64 * 1024);
        buf[..n].copy_from_slice(&self.data[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

#[test]
fn a_refusal_stops_the_copy_early_and_the_rest_is_discarded() {
    let data = backed_qcow2();
    let mut r = Counting {
        data: &data,
        read: 0,
    };
    let rules = Rules {
        disk_format: Some("qcow2".into()),
        ..Rules::default()
    };
    let mut s = ImageBody::with_rules(
        &mut r,
        Some(data.len() as u64),
        u64::MAX,
        rules,
        HashAlgorithm::Sha512,
    );
    let mut out = Vec::new();
    let err = s.copy_to(&mut out, 1 << 20).unwrap_err();
    assert!(
        matches!(&err, Error::ImageRefused(m) if m.contains("backing file")),
        "{err:?}"
    );
    // Nothing was written: the head (64 KiB) is seen before the first buffer is written.
    assert!(out.is_empty(), "{} bytes written", out.len());
    assert!(s.refused());
    s.discard_rest();
    assert_eq!(
        r.read,
        data.len(),
        "the rest of the body is read and dropped"
    );
}

#[test]
fn parts_stop_at_a_refusal_too() {
    let data = backed_qcow2();
    let mut r = &data[..];
    let mut s = ImageBody::with_rules(
        &mut r,
        None,
        u64::MAX,
        Rules::default(),
        HashAlgorithm::Sha512,
    );
    let mut out = Vec::new();
    let e = s.part(1 << 20, false).read_to_end(&mut out).unwrap_err();
    assert!(e.to_string().contains("backing file"), "{e}");
    assert!(out.len() < 128 * 1024, "{} bytes handed out", out.len());
    assert!(matches!(s.take_failure(), Some(Error::ImageRefused(_))));
}

#[test]
fn the_verdict_comes_with_the_end() {
    let mut data = vec![0u8; 300_000];
    data[..4].copy_from_slice(b"QFI\xfb"); // a header cut short further on is still qcow2
    data.truncate(50);
    let mut r = &data[..];
    let mut s = ImageBody::with_rules(
        &mut r,
        None,
        u64::MAX,
        Rules::default(),
        HashAlgorithm::Sha512,
    );
    let mut out = Vec::new();
    s.copy_to(&mut out, 4096).unwrap();
    s.finish().unwrap();
    let e = s.inspection().unwrap_err();
    assert!(
        matches!(&e, Error::ImageRefused(m) if m.contains("truncated")),
        "{e:?}"
    );
}

/// Every byte reaches both hashes (MD5 and SHA-512, checked against RustCrypto's) through
/// the copy pipeline, whatever the buffer size: more buffers than the pipeline holds, a
/// trickling reader, a last buffer cut short, and an empty body.
#[test]
fn copy_to_hashes_md5_and_sha512() {
    let data: Vec<u8> = (0..(9 * 4096 + 123) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (len, buf_size) in [
        (data.len(), 4096),
        (data.len(), 1 << 20),
        (4096, 4096),
        (0, 4096),
    ] {
        let data = &data[..len];
        let mut r = Counting { data, read: 0 };
        let mut s = ImageBody::new(&mut r, Some(len as u64), u64::MAX);
        let mut out = Vec::new();
        assert_eq!(s.copy_to(&mut out, buf_size).unwrap(), len as u64);
        s.finish().unwrap();
        assert_eq!(out, data);
        assert_eq!(s.checksum().ok(), Some(md5_hex(data)), "{len}/{buf_size}");
        assert_eq!(s.os_hash_algo(), HashAlgorithm::Sha512);
        assert_eq!(
            s.os_hash_value().ok(),
            Some(sha512_hex(data)),
            "{len}/{buf_size}"
        );
    }
}

/// The SHA-512 of nothing, for an empty upload through either path.
#[test]
fn an_empty_body_has_the_hash_of_the_empty_string() {
    const EMPTY_SHA512: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
                                47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";
    let mut r = &b""[..];
    let mut s = ImageBody::new(&mut r, None, u64::MAX);
    assert_eq!(s.copy_to(&mut Vec::new(), 4096).unwrap(), 0);
    s.finish().unwrap();
    assert_eq!(s.os_hash_value().ok().as_deref(), Some(EMPTY_SHA512));
    let mut r = &b""[..];
    let mut s = ImageBody::new(&mut r, Some(0), u64::MAX);
    assert!(s.at_eof().unwrap());
    s.finish().unwrap();
    assert_eq!(s.os_hash_value().ok().as_deref(), Some(EMPTY_SHA512));
    assert_eq!(s.checksum().ok(), Some(md5_hex(b"")));
}

/// Parts (read inline) and fills (small: inline; 1 MiB and more: the second hash on its
/// own thread) in any mix, with a byte peeked between them, give both hashes of the data.
#[test]
fn parts_and_fills_hash_md5_and_sha512() {
    let len = 3 * PARALLEL_FILL_MIN + 777;
    let data: Vec<u8> = (0..len as u32).map(|i| (i % 253) as u8).collect();
    let mut r = Counting {
        data: &data,
        read: 0,
    };
    let mut s = ImageBody::new(&mut r, Some(len as u64), u64::MAX);
    let mut out = Vec::new();
    s.part(1000, true).read_to_end(&mut out).unwrap();
    assert!(!s.at_eof().unwrap());
    let mut small = vec![0u8; 5000];
    let n = s.fill(&mut small).unwrap();
    out.extend_from_slice(&small[..n]);
    let mut big = vec![0u8; PARALLEL_FILL_MIN + 1];
    for _ in 0..2 {
        let n = s.fill(&mut big).unwrap();
        assert_eq!(n, big.len());
        out.extend_from_slice(&big[..n]);
    }
    s.part(u64::MAX, false).read_to_end(&mut out).unwrap();
    s.finish().unwrap();
    assert_eq!(out, data);
    assert_eq!(s.checksum().ok(), Some(md5_hex(&data)));
    assert_eq!(s.os_hash_value().ok(), Some(sha512_hex(&data)));
    // A fill at the end of the body, large enough for the thread: nothing more, same hashes.
    assert_eq!(s.fill(&mut big).unwrap(), 0);
    assert_eq!(s.os_hash_value().ok(), Some(sha512_hex(&data)));
}

/// `hashing_algorithm` reaches the hash: SHA-256 and SHA-384 of the same data.
#[test]
fn the_configured_algorithm_is_used() {
    use sha2::{Digest, Sha256, Sha384};
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let data = vec![42u8; 100_000];
    for (algorithm, want) in [
        (HashAlgorithm::Sha256, hex(&Sha256::digest(&data))),
        (HashAlgorithm::Sha384, hex(&Sha384::digest(&data))),
    ] {
        let mut r = &data[..];
        let mut s = ImageBody::with_rules(&mut r, None, u64::MAX, Rules::default(), algorithm);
        s.copy_to(&mut Vec::new(), 8192).unwrap();
        assert_eq!(s.os_hash_algo(), algorithm);
        assert_eq!(s.os_hash_value().ok(), Some(want.clone()), "{algorithm:?}");
        let mut r = &data[..];
        let mut s = ImageBody::with_rules(&mut r, None, u64::MAX, Rules::default(), algorithm);
        s.part(u64::MAX, false)
            .read_to_end(&mut Vec::new())
            .unwrap();
        assert_eq!(s.os_hash_value().ok(), Some(want), "{algorithm:?}");
    }
}

/// A read error part-way through a parallel fill is the client's, and the body stays
/// usable for the error report.
#[test]
fn a_failing_parallel_fill_reports_the_client() {
    let mut r = super::super::tests::FailingReader {
        good: PARALLEL_FILL_MIN / 2,
        kind: std::io::ErrorKind::ConnectionReset,
    };
    let mut s = ImageBody::new(&mut r, None, u64::MAX);
    let mut big = vec![0u8; PARALLEL_FILL_MIN];
    match s.fill(&mut big) {
        Err(Error::BadRequest(m)) => assert!(m.contains("disconnected"), "{m}"),
        other => panic!("{other:?}"),
    }
}
