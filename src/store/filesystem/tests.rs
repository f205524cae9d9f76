use std::io::Read;

use super::super::Stores;
use super::super::tests::FailingReader;
use super::super::tests::add_to;
use super::super::tests::md5_hex;
use super::super::tests::{exercise_store, read_all};
use super::*;
use crate::format::Rules;

fn opts(dir: &Path) -> StoreOptions {
    StoreOptions {
        filesystem_store_datadir: dir.to_path_buf(),
        buffer_size: 4096,
        ..StoreOptions::default()
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn loc(s: &str) -> Location {
    Location::parse(s).expect("location")
}

#[test]
fn conformance() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::new(&opts(tmp.path()));
    exercise_store(&store);
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

#[test]
fn location_form_and_nested_datadir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a/b/images/");
    let store = FilesystemStore::new(&opts(&dir));
    assert!(dir.is_dir(), "datadir created at start-up");
    let stored = add_to(&store, "img-1", &mut &b"hello"[..], Some(5)).expect("add");
    assert_eq!(
        stored.location,
        format!("file://{}", dir.join("img-1").display())
    );
    assert_eq!(stored.checksum, md5_hex(b"hello"));
    assert_eq!(fs::read(dir.join("img-1")).expect("read"), b"hello");
    assert_eq!(entries(&dir), ["img-1"]);
}

#[test]
fn size_mismatch_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::new(&opts(tmp.path()));
    let data = vec![1u8; 10_000];
    match add_to(&store, "short", &mut &data[..], Some(10_001)) {
        Err(Error::BadRequest(m)) => assert_eq!(
            m,
            "Size mismatch: x-image-meta-size/Content-Length said 10001 bytes, got 10000"
        ),
        other => panic!("{other:?}"),
    }
    match add_to(&store, "long", &mut &data[..], Some(9_999)) {
        Err(Error::BadRequest(m)) => {
            assert!(m.contains("said 9999 bytes, got more than 9999"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
    // Without a declared size any length is fine.
    add_to(&store, "any", &mut &data[..], None).expect("add");
    assert_eq!(entries(tmp.path()), ["any"]);
}

#[test]
fn failing_reader_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::new(&opts(tmp.path()));
    let mut r = FailingReader {
        good: 50_000,
        kind: io::ErrorKind::UnexpectedEof,
    };
    match add_to(&store, "cut", &mut r, Some(100_000)) {
        Err(Error::BadRequest(m)) => assert!(m.contains("disconnected"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut r = FailingReader {
        good: 10,
        kind: io::ErrorKind::ConnectionReset,
    };
    assert!(matches!(
        add_to(&store, "cut", &mut r, None),
        Err(Error::BadRequest(_))
    ));
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

/// Hands out at most `step` bytes per read, as a socket does.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Bytes that differ from block to block, so a block written at the wrong offset shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
        .collect()
}

fn direct_opts(dir: &Path) -> StoreOptions {
    StoreOptions {
        buffer_size: DIRECT_IO_MIN_BUFFER,
        ..opts(dir)
    }
}

#[test]
fn direct_io_only_with_large_buffers_and_when_enabled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(FilesystemStore::new(&direct_opts(tmp.path())).direct_io);
    assert!(!FilesystemStore::new(&opts(tmp.path())).direct_io);
    let off = StoreOptions {
        direct_io: false,
        ..direct_opts(tmp.path())
    };
    assert!(!FilesystemStore::new(&off).direct_io);
}

#[test]
fn direct_io_uploads_of_every_tail_length() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::new(&direct_opts(tmp.path()));
    let b = DIRECT_IO_MIN_BUFFER;
    let lengths = [0, 1, 4095, 4096, 4097, b - 1, b, b + 1, 3 * b + 12_345];
    for (i, len) in lengths.into_iter().enumerate() {
        let data = pattern(len);
        let mut src = Trickle {
            data: &data,
            step: 1000 + 7 * i,
        };
        let id = format!("img-{i}");
        let stored = add_to(&store, &id, &mut src, Some(len as u64)).expect("add");
        assert_eq!(stored.size, len as u64, "{len}");
        assert_eq!(stored.checksum, md5_hex(&data), "{len}");
        assert!(
            fs::read(tmp.path().join(&id)).expect("read") == data,
            "{len}"
        );
    }
    assert_eq!(entries(tmp.path()).len(), lengths.len());
}

#[test]
fn direct_io_failures_leave_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::new(&direct_opts(tmp.path()));
    let mut r = FailingReader {
        good: 3 * DIRECT_IO_MIN_BUFFER + 10,
        kind: io::ErrorKind::UnexpectedEof,
    };
    match add_to(&store, "cut", &mut r, None) {
        Err(Error::BadRequest(m)) => assert!(m.contains("disconnected"), "{m}"),
        other => panic!("{other:?}"),
    }
    let data = pattern(2 * DIRECT_IO_MIN_BUFFER);
    match add_to(
        &store,
        "long",
        &mut &data[..],
        Some(DIRECT_IO_MIN_BUFFER as u64 + 1),
    ) {
        Err(Error::BadRequest(m)) => assert!(m.contains("got more than"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

#[test]
fn direct_writer_takes_whole_aligned_blocks_and_the_rest_buffered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("f");
    let file = File::create(&path).expect("create");
    let Some(direct) = open_direct(&path) else {
        eprintln!(
            "no O_DIRECT on the filesystem of {}; nothing to test",
            path.display()
        );
        return;
    };
    let data = pattern(4 * BUFFER_ALIGN + 100);
    let mut buf = super::super::pipeline::AlignedBuf::new(data.len());
    buf.as_mut_slice().copy_from_slice(&data);
    let mut w = DirectWriter::new(&direct, &file);
    // An aligned buffer: its whole blocks go direct, the 100-byte tail through the cache.
    w.write_all(&buf.as_slice()[..3 * BUFFER_ALIGN + 100])
        .expect("write");
    assert_eq!((w.offset, w.direct_bytes), (3 * 4096 + 100, 3 * 4096));
    // After the tail the offset is unaligned: the rest goes through the cache too.
    w.write_all(&buf.as_slice()[3 * BUFFER_ALIGN + 100..])
        .expect("write");
    assert_eq!((w.offset, w.direct_bytes), (data.len() as u64, 3 * 4096));
    assert!(fs::read(&path).expect("read") == data);

    // An unaligned start never goes direct.
    let path2 = tmp.path().join("g");
    let file2 = File::create(&path2).expect("create");
    let direct2 = open_direct(&path2).expect("O_DIRECT worked on this filesystem before");
    let mut w = DirectWriter::new(&direct2, &file2);
    w.write_all(&buf.as_slice()[1..2 * BUFFER_ALIGN + 1])
        .expect("write");
    assert_eq!(w.direct_bytes, 0);
    assert!(fs::read(&path2).expect("read") == data[1..2 * BUFFER_ALIGN + 1]);
}

#[test]
fn without_direct_io_support_uploads_use_the_page_cache() {
    // tmpfs refuses O_DIRECT: the store must fall back, not fail.
    let shm = Path::new("/dev/shm");
    let Ok(tmp) = tempfile::tempdir_in(shm) else {
        eprintln!("no writable /dev/shm; nothing to test");
        return;
    };
    let store = FilesystemStore::new(&direct_opts(tmp.path()));
    let data = pattern(2 * DIRECT_IO_MIN_BUFFER + 3);
    let stored = add_to(&store, "img", &mut &data[..], Some(data.len() as u64)).expect("add");
    assert_eq!(stored.checksum, md5_hex(&data));
    assert!(fs::read(tmp.path().join("img")).expect("read") == data);
}

#[test]
fn temp_names() {
    let uuid = "0123456789abcdef0123456789ABCDEF";
    assert!(is_temp_name(&format!(".img-1.tmp-{uuid}")));
    assert!(is_temp_name(&format!(".a.tmp-b.tmp-{uuid}")));
    assert!(is_temp_name(&format!(".probe-{uuid}")));
    for name in [
        "img-1".to_string(),
        format!("img-1.tmp-{uuid}"),
        format!("..tmp-{uuid}"),
        format!(".img-1.tmp-{}", &uuid[1..]),
        format!(".img-1.tmp-{uuid}x"),
        ".img-1.tmp-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz".to_string(),
        ".bashrc".to_string(),
    ] {
        assert!(!is_temp_name(&name), "{name}");
    }
}

#[test]
fn stale_temp_files_are_removed_at_start_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::new(&opts(tmp.path()));
    add_to(&store, "kept", &mut &b"data"[..], Some(4)).expect("add");
    let stale = format!(".kept.tmp-{}", uuid::Uuid::new_v4().simple());
    let other = ".not-ours.tmp-x";
    for name in [stale.as_str(), other, "notes.txt"] {
        fs::write(tmp.path().join(name), b"partial").expect("write");
    }
    // Fresh temp files belong to uploads in progress: kept.
    store.remove_stale_temps(Duration::from_secs(3600));
    assert_eq!(entries(tmp.path()).len(), 4);
    // Idle ones are leftovers: removed; files the store did not name are never touched.
    store.remove_stale_temps(Duration::ZERO);
    assert_eq!(entries(tmp.path()), [other, "kept", "notes.txt"]);
    assert_eq!(fs::read(tmp.path().join("kept")).expect("read"), b"data");
}

#[test]
fn size_cap() {
    // The cap is checked by the one door (Stores::add), for every backend alike.
    let tmp = tempfile::tempdir().expect("tempdir");
    let stores = Stores::new(&StoreOptions {
        size_cap: 10,
        ..opts(tmp.path())
    })
    .expect("stores");
    let id = |s: &str| ImageId::parse(s).expect("id");
    let data = [0u8; 11];
    assert!(matches!(
        stores.add(None, &id("big"), &mut &data[..], None, Rules::default()),
        Err(Error::TooLarge(_))
    ));
    // A declared size above the cap is refused before reading anything.
    let mut never = FailingReader {
        good: 0,
        kind: io::ErrorKind::Other,
    };
    match stores.add(None, &id("big"), &mut never, Some(11), Rules::default()) {
        Err(Error::TooLarge(m)) => assert!(m.contains("image_size_cap"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(entries(tmp.path()).is_empty());
    stores
        .add(
            None,
            &id("fits"),
            &mut &data[..10],
            Some(10),
            Rules::default(),
        )
        .expect("at the cap");
    assert_eq!(entries(tmp.path()), ["fits"]);
}

#[test]
fn duplicates_are_refused_even_at_link_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::new(&opts(tmp.path()));
    fs::write(tmp.path().join("taken"), b"original").expect("write");
    assert!(matches!(
        add_to(&store, "taken", &mut &b"new"[..], None),
        Err(Error::Duplicate(_))
    ));
    // The race: the final name appears after the first check.
    let t = tmp.path().join(".taken.tmp-x");
    fs::write(&t, b"new").expect("write");
    assert!(matches!(
        link_into_place(&t, &tmp.path().join("taken"), "taken"),
        Err(Error::Duplicate(_))
    ));
    assert_eq!(
        fs::read(tmp.path().join("taken")).expect("read"),
        b"original"
    );
}

#[test]
fn ids_cannot_escape_the_datadir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("images");
    let store = FilesystemStore::new(&opts(&dir));
    for id in ["../x", "a/b", "..", ".", "", "/etc/x", "a\0b"] {
        assert!(
            matches!(
                add_to(&store, id, &mut &b"x"[..], None),
                Err(Error::BadRequest(_))
            ),
            "{id:?}"
        );
    }
    assert_eq!(entries(tmp.path()), ["images"]);
    assert!(entries(&dir).is_empty());

    let outside = tmp.path().join("secret");
    fs::write(&outside, b"do not touch").expect("write");
    for uri in [
        format!("file://{}", outside.display()),
        format!("file://{}/../secret", dir.display()),
        format!("file://{}/..", dir.display()),
        "file:///etc/passwd".to_string(),
        "filesystem:///".to_string(),
    ] {
        let l = loc(&uri);
        assert!(matches!(store.get(&l), Err(Error::Forbidden(_))), "{uri}");
        assert!(matches!(store.size(&l), Err(Error::Forbidden(_))), "{uri}");
        assert!(
            matches!(store.delete(&l), Err(Error::Forbidden(_))),
            "{uri}"
        );
    }
    assert_eq!(fs::read(&outside).expect("still there"), b"do not touch");
    assert!(matches!(
        store.get(&loc("http://host/x")),
        Err(Error::BadRequest(_))
    ));
}

#[test]
fn datadir_through_a_symlink() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let real = tmp.path().join("real");
    let store = FilesystemStore::new(&opts(&real));
    add_to(&store, "img", &mut &b"abc"[..], None).expect("add");
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let l = loc(&format!("file://{}/img", link.display()));
    assert_eq!(read_all(store.get(&l).expect("get via symlink")), b"abc");
    // `filesystem://` names the same store.
    let l = loc(&format!("filesystem://{}/img", real.display()));
    assert_eq!(store.size(&l).expect("size"), 3);
}

#[test]
fn uncreatable_datadir_disables_add_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"").expect("write");
    let dir = file.join("images");
    // The registry still builds: the store stays registered.
    let stores = Stores::new(&opts(&dir)).expect("stores build anyway");
    let store = stores.for_upload(None).expect("file store registered");
    match add_to(store, "x", &mut &b"abc"[..], None) {
        Err(Error::Store(m)) => {
            assert!(m.contains(&dir.display().to_string()), "{m}");
            assert!(m.contains("filesystem_store_datadir"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unwritable_datadir() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("ro");
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).expect("chmod");
    let store = FilesystemStore::new(&opts(&dir));
    if store.probe_writable().is_ok() {
        eprintln!("skipping unwritable_datadir: this user (root?) can write anyway");
        return;
    }
    match add_to(&store, "x", &mut &b"abc"[..], None) {
        Err(Error::Store(m)) => {
            assert!(m.contains(&dir.display().to_string()), "{m}");
            assert!(m.contains("filesystem_store_datadir"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod back");
    // Fixed without a restart.
    add_to(&store, "x", &mut &b"abc"[..], None).expect("add after fix");
}

#[test]
fn missing_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FilesystemStore::new(&opts(tmp.path()));
    let l = loc(&format!("file://{}/gone", tmp.path().display()));
    assert!(matches!(store.get(&l), Err(Error::NotFound(_))));
    assert!(matches!(store.size(&l), Err(Error::NotFound(_))));
    assert!(matches!(store.delete(&l), Err(Error::NotFound(_))));
    // A directory where the image should be is not image data.
    fs::create_dir(tmp.path().join("dir")).expect("mkdir");
    let l = loc(&format!("file://{}/dir", tmp.path().display()));
    assert!(matches!(store.get(&l), Err(Error::Store(_))));
}
