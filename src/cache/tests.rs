//! Tests of the cache on a real directory, with in-memory "stores".

use std::fs::{self, File};
use std::io::{self, Cursor, Read, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::image::{Image, Status};
use crate::store::Md5Sum;

struct Setup {
    _dir: tempfile::TempDir,
    cache: Arc<ImageCache>,
    opts: CacheOptions,
}

fn setup(max_size: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let opts = CacheOptions {
        enabled: true,
        datadir: dir.path().join("cache"),
        max_size,
        ..CacheOptions::default()
    };
    let cache = ImageCache::open(&opts).unwrap_or_else(|e| panic!("{e}"));
    Setup {
        _dir: dir,
        cache,
        opts,
    }
}

fn md5(data: &[u8]) -> String {
    let mut m = Md5Sum::new();
    m.update(data);
    m.hex().unwrap_or_default()
}

fn data_of(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn image(id: &str, data: &[u8]) -> Image {
    let mut i = Image::new(id.to_string());
    i.name = Some(format!("name of {id}"));
    i.size = data.len() as u64;
    i.checksum = Some(md5(data));
    i.status = Status::Active;
    i
}

fn stream(data: &[u8]) -> Result<ImageData> {
    let len = data.len() as u64;
    Ok(ImageData::Stream(
        Box::new(Cursor::new(data.to_vec())),
        Some(len),
    ))
}

fn read_all(d: ImageData) -> Vec<u8> {
    let mut out = Vec::new();
    let r = match d {
        ImageData::File(f, len) => f.take(len).read_to_end(&mut out),
        ImageData::Stream(mut r, _) => r.read_to_end(&mut out),
    };
    r.unwrap_or_else(|e| panic!("{e}"));
    out
}

fn is_file(d: &ImageData) -> bool {
    matches!(d, ImageData::File(..))
}

/// Serves `img` (whose store holds `data`) once and returns what the client got and
/// whether it came from the cache.
fn get(c: &Arc<ImageCache>, img: &Image, data: &[u8]) -> (Vec<u8>, bool) {
    let d = c
        .serve_or_fill(img, || stream(data))
        .unwrap_or_else(|e| panic!("{e}"));
    let hit = is_file(&d);
    (read_all(d), hit)
}

fn listed(c: &ImageCache, which: Which) -> Vec<Listed> {
    c.list(which).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_miss_fills_and_the_next_get_is_a_hit() {
    let s = setup(1 << 20);
    let data = data_of(100_000, 1);
    let img = image("img-1", &data);
    assert_eq!(get(&s.cache, &img, &data), (data.clone(), false));
    assert_eq!(get(&s.cache, &img, &data), (data.clone(), true));
    assert_eq!(get(&s.cache, &img, &data), (data.clone(), true));
    let l = listed(&s.cache, Which::Cached);
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].size, l[0].expected_size, l[0].hits),
        (100_000, 100_000, Some(2))
    );
    assert_eq!(l[0].name, "name of img-1");
    assert!(l[0].path.ends_with("/cache/img-1"), "{}", l[0].path);
    assert_eq!(fs::read(s.opts.datadir.join("img-1")).ok(), Some(data));
    assert!(listed(&s.cache, Which::Incomplete).is_empty());
}

#[test]
fn a_hit_serves_ranges_from_the_file() {
    let s = setup(1 << 20);
    let data = data_of(5000, 2);
    let img = image("ranged", &data);
    get(&s.cache, &img, &data);
    let d = download(Some(&s.cache), &img, false, || stream(&data)).ok();
    let part = d.and_then(|d| d.range(100, 50).ok()).map(read_all);
    assert_eq!(part.as_deref(), Some(&data[100..150]));
}

#[test]
fn a_ranged_miss_does_not_fill() {
    let s = setup(1 << 20);
    let data = data_of(5000, 3);
    let img = image("r", &data);
    let d = download(Some(&s.cache), &img, false, || stream(&data));
    let got = d.ok().and_then(|d| d.range(10, 10).ok()).map(read_all);
    assert_eq!(got.as_deref(), Some(&data[10..20]));
    assert!(listed(&s.cache, Which::Cached).is_empty());
    assert!(listed(&s.cache, Which::Incomplete).is_empty());
}

#[test]
fn wrong_data_is_invalid_and_never_served() {
    let s = setup(1 << 20);
    let data = data_of(4096, 4);
    let img = image("bad", &data);
    let mut other = data.clone();
    other[1000] ^= 0x01;
    // The client gets what the store sends (the registry's checksum is its concern)...
    assert_eq!(get(&s.cache, &img, &other), (other.clone(), false));
    // ...but the cache does not keep it.
    assert!(listed(&s.cache, Which::Cached).is_empty());
    let inv = listed(&s.cache, Which::Invalid);
    assert_eq!(inv.len(), 1);
    assert!(
        inv[0].error.as_deref().is_some_and(|e| e.contains("MD5")),
        "{inv:?}"
    );
    assert!(s.opts.datadir.join("invalid/bad").is_file());
    // A stream that ends early too.
    let img2 = image("short", &data);
    let short = || -> Result<ImageData> {
        let r = Cursor::new(data[..100].to_vec());
        Ok(ImageData::Stream(Box::new(r), Some(data.len() as u64)))
    };
    let got = s.cache.serve_or_fill(&img2, short).ok().map(read_all);
    assert_eq!(got.as_deref(), Some(&data[..100]));
    let inv = listed(&s.cache, Which::Invalid);
    assert!(
        inv.iter().any(|e| e.id == "short" && e.size == 100),
        "{inv:?}"
    );
    // The next download with the right data fills it.
    assert_eq!(get(&s.cache, &img, &data), (data.clone(), false));
    assert_eq!(get(&s.cache, &img, &data), (data, true));
}

#[test]
fn a_flipped_byte_in_a_cached_file_is_detected() {
    let s = setup(1 << 20);
    let data = data_of(10_000, 5);
    let img = image("flip", &data);
    get(&s.cache, &img, &data);
    let path = s.opts.datadir.join("flip");
    let mut bytes = fs::read(&path).unwrap_or_default();
    bytes[5000] ^= 0x80;
    // Rewritten in place, with its modification time put back.
    let mtime = fs::metadata(&path).and_then(|m| m.modified()).ok();
    let mut f = fs::OpenOptions::new().write(true).open(&path).ok();
    f.as_mut().map(|f| f.write_all(&bytes));
    if let (Some(f), Some(t)) = (&f, mtime) {
        f.set_modified(t).ok();
    }
    drop(f);
    let (got, hit) = get(&s.cache, &img, &data);
    assert!(!hit, "a changed file must not be served");
    assert_eq!(got, data);
    let inv = listed(&s.cache, Which::Invalid);
    assert_eq!(inv.len(), 1, "{inv:?}");
    assert!(
        inv[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("changed on disk")
    );
    // The miss above refilled it from the store.
    assert_eq!(get(&s.cache, &img, &data), (data, true));
}

#[test]
fn one_fill_per_image_at_a_time() {
    let s = setup(1 << 20);
    let data = data_of(50_000, 6);
    let img = image("twice", &data);
    let first = s.cache.serve_or_fill(&img, || stream(&data)).ok();
    let second = s.cache.serve_or_fill(&img, || stream(&data)).ok();
    assert_eq!(listed(&s.cache, Which::Incomplete).len(), 1);
    // The second reader finishes first: no fill of its own, nothing committed.
    assert_eq!(second.map(read_all).as_deref(), Some(&data[..]));
    assert!(listed(&s.cache, Which::Cached).is_empty());
    assert_eq!(first.map(read_all).as_deref(), Some(&data[..]));
    assert_eq!(listed(&s.cache, Which::Cached).len(), 1);
}

#[test]
fn an_abandoned_download_leaves_nothing() {
    let s = setup(1 << 20);
    let data = data_of(50_000, 7);
    let img = image("gone", &data);
    let d = s.cache.serve_or_fill(&img, || stream(&data)).ok();
    if let Some(ImageData::Stream(mut r, _)) = d {
        let mut buf = [0u8; 100];
        r.read_exact(&mut buf).ok();
    }
    assert!(listed(&s.cache, Which::Incomplete).is_empty());
    assert!(listed(&s.cache, Which::Cached).is_empty());
    assert!(!s.opts.datadir.join("incomplete/gone").exists());
}

#[test]
fn a_full_disk_drops_the_fill_and_still_serves() {
    let s = setup(1 << 20);
    let data = data_of(50_000, 8);
    let img = image("full", &data);
    let Some(key) = Key::of(&img) else {
        panic!("cacheable")
    };
    let Some(fill) = s.cache.begin_fill(key) else {
        panic!("a fill")
    };
    let Ok(dev_full) = fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full here
    };
    let served = fill
        .writing_to(dev_full)
        .tee(stream(&data).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(
        read_all(served),
        data,
        "the client is served from the store"
    );
    assert!(listed(&s.cache, Which::Incomplete).is_empty());
    assert!(listed(&s.cache, Which::Cached).is_empty());
    assert!(!s.opts.datadir.join("incomplete/full").exists());
}

#[test]
fn the_cache_stays_within_its_maximum() {
    let s = setup(25_000);
    let a = data_of(10_000, 9);
    let b = data_of(10_000, 10);
    let c = data_of(10_000, 11);
    let big = data_of(30_000, 12);
    let (ia, ib, ic, ibig) = (
        image("a", &a),
        image("b", &b),
        image("c", &c),
        image("big", &big),
    );
    get(&s.cache, &ia, &a);
    get(&s.cache, &ib, &b);
    assert!(get(&s.cache, &ia, &a).1); // b is now the least recently used
    get(&s.cache, &ic, &c);
    let ids: Vec<String> = listed(&s.cache, Which::Cached)
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["a", "c"]);
    assert!(!s.opts.datadir.join("b").exists());
    assert!(s.cache.used().unwrap_or(u64::MAX) <= 25_000);
    // Larger than the whole cache: served, never cached.
    assert_eq!(get(&s.cache, &ibig, &big), (big, false));
    assert_eq!(listed(&s.cache, Which::Cached).len(), 2);
}

#[test]
fn uncacheable_images_go_to_the_store() {
    let s = setup(1 << 20);
    let data = data_of(100, 13);
    let mut no_sum = image("nosum", &data);
    no_sum.checksum = None;
    let reserved = image("incomplete", &data);
    for img in [no_sum, reserved] {
        assert!(!get(&s.cache, &img, &data).1);
        assert!(!get(&s.cache, &img, &data).1);
    }
    assert!(listed(&s.cache, Which::Cached).is_empty());
}

#[test]
fn a_stale_copy_is_dropped_when_the_registry_changed() {
    let s = setup(1 << 20);
    let data = data_of(1000, 14);
    let img = image("same-id", &data);
    get(&s.cache, &img, &data);
    let newer = data_of(1200, 15);
    let img2 = image("same-id", &newer);
    assert_eq!(get(&s.cache, &img2, &newer), (newer.clone(), false));
    assert_eq!(get(&s.cache, &img2, &newer), (newer, true));
}

#[test]
fn the_cache_survives_a_restart() {
    let s = setup(1 << 20);
    let data = data_of(3000, 16);
    let img = image("warm", &data);
    get(&s.cache, &img, &data);
    let reopened = ImageCache::open(&s.opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get(&reopened, &img, &data), (data, true));
}

#[test]
fn purge_clear_and_reaping() {
    let s = setup(1 << 20);
    let (a, b) = (data_of(100, 17), data_of(200, 18));
    get(&s.cache, &image("a", &a), &a);
    get(&s.cache, &image("b", &b), &b);
    assert_eq!(s.cache.purge("a").ok(), Some(true));
    assert_eq!(s.cache.purge("a").ok(), Some(false));
    assert_eq!(s.cache.clear().ok(), Some(1));
    assert!(listed(&s.cache, Which::Cached).is_empty());

    // Invalid entries: kept for the grace period, removed after it (or at once).
    get(&s.cache, &image("x", &a), &b[..100]);
    assert_eq!(
        s.cache.reap_invalid(Some(Duration::from_secs(60))).ok(),
        Some(0)
    );
    let old = SystemTime::now() - Duration::from_secs(120);
    File::options()
        .write(true)
        .open(s.opts.datadir.join("invalid/x"))
        .and_then(|f| f.set_modified(old))
        .ok();
    assert_eq!(
        s.cache.reap_invalid(Some(Duration::from_secs(60))).ok(),
        Some(1)
    );
    assert!(listed(&s.cache, Which::Invalid).is_empty());
    get(&s.cache, &image("y", &a), &b[..100]);
    assert_eq!(s.cache.reap_invalid(None).ok(), Some(1));

    // Stalled fills: a live one is kept; a dead one past the stall timeout goes.
    let stall = ImageCache::open(&CacheOptions {
        stall_timeout: Duration::from_secs(60),
        ..s.opts.clone()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let live = s
        .cache
        .serve_or_fill(&image("live", &b), || stream(&b))
        .ok();
    let path = s.opts.datadir.join("incomplete/live");
    let set_old = |p: &std::path::Path| {
        File::options()
            .write(true)
            .open(p)
            .and_then(|f| f.set_modified(old))
            .ok();
    };
    set_old(&path);
    assert_eq!(stall.reap_stalled().ok(), Some(0), "the fill is alive");
    drop(live);
    stall
        .with_index(|ix| ix.claim("dead", None, 5, "x", u64::MAX))
        .ok();
    let dead = s.opts.datadir.join("incomplete/dead");
    fs::write(&dead, b"dead").ok();
    assert_eq!(stall.reap_stalled().ok(), Some(0), "not stalled yet");
    set_old(&dead);
    assert_eq!(stall.reap_stalled().ok(), Some(1));
    assert!(!dead.exists());
    assert!(listed(&s.cache, Which::Incomplete).is_empty());
}

#[test]
fn a_dead_fill_is_recovered_and_taken_over() {
    let s = setup(1 << 20);
    let data = data_of(2000, 19);
    // A claim and an incomplete file with no live filler, as a killed glance-api leaves.
    s.cache
        .with_index(|ix| ix.claim("dead", None, 2000, &md5(&data), u64::MAX))
        .ok();
    fs::write(s.opts.datadir.join("incomplete/dead"), b"partial").ok();
    assert_eq!(listed(&s.cache, Which::Incomplete).len(), 1);
    // The next download takes the fill over.
    let img = image("dead", &data);
    assert_eq!(get(&s.cache, &img, &data), (data.clone(), false));
    assert_eq!(get(&s.cache, &img, &data), (data, true));
    // At start-up, dead fills are removed.
    s.cache
        .with_index(|ix| ix.claim("dead2", None, 10, "x", u64::MAX))
        .ok();
    fs::write(s.opts.datadir.join("incomplete/dead2"), b"p").ok();
    assert_eq!(s.cache.recover().ok(), Some(1));
    assert!(!s.opts.datadir.join("incomplete/dead2").exists());
    assert!(listed(&s.cache, Which::Incomplete).is_empty());
}

#[test]
fn prune_removes_deleted_images_then_the_least_recently_used() {
    let s = setup(1 << 20);
    let imgs: Vec<(Image, Vec<u8>)> = (0..4u8)
        .map(|i| {
            let d = data_of(1000, 20 + i);
            (image(&format!("p{i}"), &d), d)
        })
        .collect();
    for (img, d) in &imgs {
        get(&s.cache, img, d);
    }
    // p1 was deleted from the registry.
    assert_eq!(s.cache.prune(|id, _| id != "p1").ok(), Some(1));
    let ids = |c: &ImageCache| -> Vec<String> {
        listed(c, Which::Cached).into_iter().map(|e| e.id).collect()
    };
    assert_eq!(ids(&s.cache), ["p0", "p2", "p3"]);
    // Over a smaller maximum: 3000 > 2000 → 1000 over + 10% of 2000 → two entries go.
    let small = ImageCache::open(&CacheOptions {
        max_size: 2000,
        extra_to_free: 0.1,
        ..s.opts.clone()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(small.prune(|_, _| true).ok(), Some(2));
    assert_eq!(ids(&small), ["p3"]);
}

#[test]
fn prefetch_queue_and_prefetch() {
    let s = setup(1 << 20);
    let data = data_of(4000, 30);
    let img = image("pf", &data);
    assert!(s.cache.queue_prefetch(&img).is_ok());
    let again = s.cache.queue_prefetch(&img).err().map(|e| e.status());
    assert_eq!(again, Some(400));
    let q = listed(&s.cache, Which::Prefetching);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].status.as_deref(), Some("queued"));
    assert_eq!(
        s.cache.next_prefetch().ok().flatten().as_deref(),
        Some("pf")
    );
    let q = listed(&s.cache, Which::Prefetching);
    assert_eq!(q[0].status.as_deref(), Some("in-progress"));
    let done = s.cache.prefetch_one(&img, || stream(&data)).ok();
    assert_eq!(done, Some(Prefetched::Filled(Outcome::Committed)));
    s.cache.dequeue("pf").ok();
    assert!(listed(&s.cache, Which::Prefetching).is_empty());
    assert_eq!(get(&s.cache, &img, &data), (data.clone(), true));
    let cached = s.cache.queue_prefetch(&img).err().map(|e| e.message());
    assert!(cached.is_some_and(|m| m.contains("already cached")));
    let skipped = s.cache.prefetch_one(&img, || stream(&data)).ok();
    assert!(matches!(skipped, Some(Prefetched::Skipped(_))));
    // A store failure mid-way is an invalid entry.
    let img2 = image("pf2", &data);
    let broken = || -> Result<ImageData> {
        let r = Cursor::new(data[..10].to_vec()).chain(Failing);
        Ok(ImageData::Stream(Box::new(r), Some(data.len() as u64)))
    };
    let got = s.cache.prefetch_one(&img2, broken).ok();
    assert!(
        matches!(&got, Some(Prefetched::Filled(Outcome::Invalid(why))) if why.contains("store failed")),
        "{got:?}"
    );
}

/// A reader that fails.
struct Failing;

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("connection reset"))
    }
}
