use std::io::Read;

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
    assert_eq!(s.checksum().ok(), Some(super::super::tests::md5_hex(&data)));
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
    assert_eq!(s.checksum().ok(), Some(super::super::tests::md5_hex(&data)));
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
    let mut s = ImageBody::with_rules(&mut r, Some(data.len() as u64), u64::MAX, rules);
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
    let mut s = ImageBody::with_rules(&mut r, None, u64::MAX, Rules::default());
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
    let mut s = ImageBody::with_rules(&mut r, None, u64::MAX, Rules::default());
    let mut out = Vec::new();
    s.copy_to(&mut out, 4096).unwrap();
    s.finish().unwrap();
    let e = s.inspection().unwrap_err();
    assert!(
        matches!(&e, Error::ImageRefused(m) if m.contains("truncated")),
        "{e:?}"
    );
}
