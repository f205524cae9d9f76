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
