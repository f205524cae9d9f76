//! Image safety (issue 16): `glance-api` inspects every upload. Real images made by
//! `qemu-img`, `xorriso` and `sfdisk`, and hand-crafted hostile headers
//! (`tests/common/images.rs`), are uploaded through `POST /v1/images`:
//!
//! - an accepted image is `active` with `virtual_size` (JSON and
//!   `x-image-meta-virtual_size`) equal to what `qemu-img info` reports, and its data is in
//!   the store;
//! - a refused one gets a 400 naming the reason, ends `killed`, and the store keeps nothing
//!   of it (no file, no temp file, no object, no segment).
//!
//! Each case runs with the file store (`file_store::<case>`), and all of them again with
//! Swift and with its S3 API (`swift_store`, `s3_store`; these need
//! `tests/services/swift-s3.sh` and are skipped with a printed reason without it, unless
//! `GLANCE_TEST_REQUIRE_SERVICES=1`). `generator_builds_every_image` checks the images
//! themselves against `qemu-img info`.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::images::{self, qemu_info, qemu_info_result};
use common::objstore::{ObjectStore, StoreKind};
use common::{Client, Reply, Server};

/// What glance-api must do with an upload.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    /// 201, `active`, `virtual_size` as `qemu-img info [-f FORMAT]` reports it.
    Accept(Option<&'static str>),
    /// 400 whose body contains one of these phrases (case-insensitive), `killed`, nothing
    /// stored.
    Refuse(&'static [&'static str]),
}

use Verdict::{Accept, Refuse};

/// One upload.
struct Case {
    name: &'static str,
    /// Makes the file to upload in a directory.
    build: fn(&Path) -> PathBuf,
    /// `x-image-meta-disk_format`.
    declared: &'static str,
    /// The format `qemu-img info` (no `-f`) reports; `None` when it refuses the file.
    qemu: Option<&'static str>,
    verdict: Verdict,
}

const MISMATCH: Verdict = Refuse(&["does not match"]);

/// Declares [`CASES`] and one file-store test per case (`file_store::<name>`).
macro_rules! cases {
    ($($name:ident: $declared:literal, $build:path, $qemu:expr, $verdict:expr;)*) => {
        const CASES: &[Case] = &[$(Case {
            name: stringify!($name),
            build: $build,
            declared: $declared,
            qemu: $qemu,
            verdict: $verdict,
        },)*];

        /// Every case against glance-api with the file store.
        mod file_store {
            $(#[test]
            fn $name() {
                super::file_store(stringify!($name));
            })*
        }
    };
}

cases! {
    // Safe images: accepted.
    raw_plain: "raw", images::raw_plain, Some("raw"), Accept(None);
    raw_gpt: "raw", images::raw_gpt, Some("raw"), Accept(None);
    raw_mbr: "raw", images::raw_mbr, Some("raw"), Accept(None);
    qcow2_v2: "qcow2", images::qcow2_v2, Some("qcow2"), Accept(None);
    qcow2_v3: "qcow2", images::qcow2_v3, Some("qcow2"), Accept(None);
    qcow2_compressed: "qcow2", images::qcow2_compressed, Some("qcow2"), Accept(None);
    vmdk_monolithic_sparse: "vmdk", images::vmdk_monolithic_sparse, Some("vmdk"), Accept(None);
    vmdk_stream_optimized: "vmdk", images::vmdk_stream_optimized, Some("vmdk"), Accept(None);
    vhd_dynamic: "vhd", images::vhd_dynamic, Some("vpc"), Accept(None);
    // qemu-img probes a fixed VHD as raw (the footer is only at the end); glance-rs reads
    // the footer, so the virtual size to match is that of `qemu-img info -f vpc`.
    vhd_fixed: "vhd", images::vhd_fixed, Some("raw"), Accept(Some("vpc"));
    vhdx: "vhdx", images::vhdx, Some("vhdx"), Accept(None);
    vdi: "vdi", images::vdi, Some("vdi"), Accept(None);
    iso: "iso", images::iso, Some("raw"), Accept(None);
    iso_hybrid_gpt: "iso", images::iso_hybrid_gpt, Some("raw"), Accept(None);

    // Images that make a reader open other files, or carry features nobody checked.
    qcow2_backing_file: "qcow2", images::qcow2_backing_file, Some("qcow2"),
        Refuse(&["backing file"]);
    qcow2_data_file: "qcow2", images::qcow2_data_file, Some("qcow2"), Refuse(&["data file"]);
    qcow2_data_file_raw: "qcow2", images::qcow2_data_file_raw, Some("qcow2"),
        Refuse(&["data file"]);
    qcow2_data_file_bit: "qcow2", images::qcow2_data_file_bit, Some("qcow2"), Refuse(&["data file"]);
    qcow2_unknown_incompatible: "qcow2", images::qcow2_unknown_incompatible, None,
        Refuse(&["unknown incompatible feature"]);
    vmdk_monolithic_flat: "vmdk", images::vmdk_monolithic_flat, Some("vmdk"),
        Refuse(&["create type", "extent"]);
    vmdk_two_gb_sparse: "vmdk", images::vmdk_two_gb_sparse, Some("vmdk"),
        Refuse(&["create type", "extent"]);
    vmdk_embedded_extent: "vmdk", images::vmdk_embedded_extent, Some("vmdk"),
        Refuse(&["extent"]);
    vmdk_embedded_flat_no_capacity: "vmdk", images::vmdk_embedded_flat_no_capacity,
        Some("vmdk"), Refuse(&["extent", "create type"]);
    vmdk_descriptor_passwd: "vmdk", images::vmdk_descriptor_passwd, Some("vmdk"),
        Refuse(&["extent", "create type"]);

    // Broken headers.
    qcow2_truncated_header: "qcow2", images::qcow2_truncated_header, None,
        Refuse(&["truncated"]);
    qcow2_invalid_size: "qcow2", images::qcow2_invalid_size, None, Refuse(&["invalid"]);
    qcow2_extension_overrun: "qcow2", images::qcow2_extension_overrun, None,
        Refuse(&["invalid"]);
    vhdx_truncated: "vhdx", images::vhdx_truncated, None, Refuse(&["truncated"]);
    vdi_truncated: "vdi", images::vdi_truncated, Some("vdi"), Refuse(&["truncated"]);

    // The content is not the declared format (`mismatch_<declared>_is_<content>`).
    mismatch_raw_is_qcow2: "raw", images::qcow2_v3, Some("qcow2"), MISMATCH;
    mismatch_raw_is_vmdk: "raw", images::vmdk_monolithic_sparse, Some("vmdk"), MISMATCH;
    mismatch_raw_is_vhd: "raw", images::vhd_dynamic, Some("vpc"), MISMATCH;
    mismatch_raw_is_vhdx: "raw", images::vhdx, Some("vhdx"), MISMATCH;
    mismatch_raw_is_vdi: "raw", images::vdi, Some("vdi"), MISMATCH;
    mismatch_qcow2_is_vmdk: "qcow2", images::vmdk_monolithic_sparse, Some("vmdk"), MISMATCH;
    mismatch_vmdk_is_raw: "vmdk", images::raw_plain, Some("raw"), MISMATCH;
    mismatch_iso_is_raw: "iso", images::raw_plain, Some("raw"), MISMATCH;
}

fn case(name: &str) -> &'static Case {
    CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

/// Where glance-api keeps image data, and what of it mentions an image id.
enum Store<'a> {
    /// The file store's data directory.
    File(PathBuf),
    Object(&'a ObjectStore),
}

impl Store<'_> {
    /// Entries (files, temp files, objects, segments, parts) whose name contains `id`, with
    /// their size for files.
    fn holding(&self, id: &str) -> Vec<(String, Option<u64>)> {
        match self {
            Store::File(dir) => fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().contains(id))
                        .map(|e| {
                            let len = e.metadata().ok().map(|m| m.len());
                            (e.file_name().to_string_lossy().into_owned(), len)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Store::Object(store) => store
                .objects()
                .into_iter()
                .filter(|o| o.contains(id))
                .map(|o| (o, None))
                .collect(),
        }
    }
}

/// `POST /v1/images` with `headers` and `body` on a fresh connection. The body is written
/// by a second thread while this one reads the reply: glance-api may refuse an image after
/// its first bytes and close, and a client that only reads once it has sent everything
/// would then see a broken pipe instead of the 400.
fn upload(addr: SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap_or_else(|e| panic!("socket: {e}"));
    let mut head = format!(
        "POST /v1/images HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = Vec::new();
    thread::scope(|s| {
        let mut out = conn.try_clone().unwrap_or_else(|e| panic!("socket: {e}"));
        s.spawn(move || {
            // A write error is the server closing after an early reply: read that reply.
            let _ = out
                .write_all(head.as_bytes())
                .and_then(|()| out.write_all(body));
        });
        // What arrived before an error (a reset after the reply) is kept.
        let _ = conn.read_to_end(&mut raw);
    });
    parse_reply(&raw)
}

/// A whole HTTP/1.1 reply (its body delimited by `Content-Length` or the connection's end).
fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete reply head: {text:?}"));
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        assert!(body.len() >= len, "reply body cut short: {text:?}");
        body.truncate(len);
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// Uploads `file` as `case` and checks the verdict, the image status, the virtual size and
/// what the store holds. `label` names the store in messages.
fn check(addr: SocketAddr, store: &Store, label: &str, case: &Case, file: &Path) {
    let c = Client::new(&format!("http://{addr}"));
    let bytes = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let id = uuid::Uuid::new_v4().to_string();
    let what = format!(
        "{label} {} ({} bytes declared {})",
        case.name,
        bytes.len(),
        case.declared
    );
    let r = upload(
        addr,
        &[
            ("Content-Type", "application/octet-stream"),
            ("x-image-meta-id", &id),
            ("x-image-meta-name", case.name),
            ("x-image-meta-disk_format", case.declared),
            ("x-image-meta-container_format", "bare"),
        ],
        &bytes,
    );
    let head = c.request("HEAD", &format!("/v1/images/{id}"), &[], None);
    let status = head.header("x-image-meta-status").unwrap_or("").to_string();
    let held = store.holding(&id);
    match case.verdict {
        Accept(format) => {
            let (_, want) = qemu_info(file, format);
            assert_eq!(
                r.status,
                201,
                "{what}: must be accepted; reply: {}",
                r.text()
            );
            let v = r.json();
            let image = &v["image"];
            assert_eq!(image["status"], "active", "{what}: {v}");
            assert_eq!(image["size"].as_u64(), Some(bytes.len() as u64), "{what}");
            assert_eq!(
                image["virtual_size"].as_u64(),
                Some(want),
                "{what}: virtual_size in the reply, qemu-img says {want}: {v}"
            );
            assert_eq!(status, "active", "{what}: status after HEAD");
            assert_eq!(
                head.header("x-image-meta-virtual_size"),
                Some(want.to_string().as_str()),
                "{what}: x-image-meta-virtual_size, qemu-img says {want}"
            );
            match store {
                Store::File(_) => assert_eq!(
                    held,
                    vec![(id.clone(), Some(bytes.len() as u64))],
                    "{what}: the file store must hold exactly the image"
                ),
                Store::Object(_) => assert!(
                    held.iter().any(|(name, _)| *name == id),
                    "{what}: no object {id}: {held:?}"
                ),
            }
        }
        Refuse(phrases) => {
            let text = r.text();
            assert_eq!(r.status, 400, "{what}: must be refused; reply: {text}");
            let lower = text.to_lowercase();
            assert!(
                phrases.iter().any(|p| lower.contains(p)),
                "{what}: the reason must contain one of {phrases:?}: {text}"
            );
            assert_eq!(status, "killed", "{what}: status after the refusal");
            assert!(
                held.is_empty(),
                "{what}: the store kept data of a refused image: {held:?}"
            );
        }
    }
}

/// One case against glance-api with the file store.
fn file_store(name: &str) {
    if !images::tools_present(name) {
        return;
    }
    let case = case(name);
    let tmp = common::tempdir();
    let file = (case.build)(tmp.path());
    let api = common::embedded_api();
    let store = Store::File(api.dir.join("images"));
    check(api.addr, &store, "file", case, &file);
}

/// Every case against glance-api with `kind` as the default store (one server, one upload
/// after another).
fn object_store(test: &str, kind: StoreKind) {
    if !images::tools_present(test) {
        return;
    }
    let Some(svc) = common::objstore::services(test) else {
        return;
    };
    let store = ObjectStore::new(kind, svc);
    let conf = format!(
        "[DEFAULT]\nbind_host = 127.0.0.1\nbind_port = 0\nworkers = 4\n\
         sql_connection = sqlite:///{{dir}}/api.sqlite\ndb_auto_create = True\n{}",
        store.config(None)
    );
    let api = Server::start("glance-api", &conf, false);
    let tmp = common::tempdir();
    let label = format!("{kind:?}");
    for case in CASES {
        let file = (case.build)(tmp.path());
        check(api.addr, &Store::Object(&store), &label, case, &file);
    }
}

#[test]
fn swift_store() {
    object_store("swift_store", StoreKind::Swift);
}

#[test]
fn s3_store() {
    object_store("s3_store", StoreKind::S3);
}

/// The generator itself: every image builds, and `qemu-img info` reads it as the table
/// says (or refuses it); accepted images have a virtual size qemu-img can tell.
#[test]
fn generator_builds_every_image() {
    if !images::tools_present("generator_builds_every_image") {
        return;
    }
    let tmp = common::tempdir();
    let mut wrong = Vec::new();
    for case in CASES {
        let file = (case.build)(tmp.path());
        let len = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let got = qemu_info_result(&file, None);
        eprintln!("{:32} {len:>9} bytes  qemu-img: {got:?}", case.name);
        match (case.qemu, &got) {
            (Some(want), Ok((fmt, _))) if fmt == want => {}
            (None, Err(_)) => {}
            _ => wrong.push(format!(
                "{}: expected {:?}, got {got:?}",
                case.name, case.qemu
            )),
        }
        if let Accept(format) = case.verdict {
            match qemu_info_result(&file, format) {
                Ok((_, size)) if size > 0 => {}
                other => wrong.push(format!("{}: no virtual size: {other:?}", case.name)),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "qemu-img disagrees:\n{}",
        wrong.join("\n")
    );
}

/// The inspector itself (the library, no server) on the real images: the verdict of every
/// case is the same whatever the sizes of the reads the data arrives in, and is the
/// verdict the table expects. The splits are random (proptest), over images built once.
mod splits {
    use std::sync::OnceLock;

    use glance_rs::format::{Inspection, Inspector, OnMismatch, Refusal, Rules};
    use proptest::prelude::*;

    use super::{Accept, CASES, common, fs, images};

    /// A case's name, declared format, whether it is accepted, and its bytes.
    type Built = (&'static str, &'static str, bool, Vec<u8>);

    /// Every case's bytes and declared format, built once for all the property cases.
    fn corpus() -> &'static [Built] {
        static CORPUS: OnceLock<Vec<Built>> = OnceLock::new();
        CORPUS.get_or_init(|| {
            if !images::tools_present("splits") {
                return Vec::new();
            }
            let tmp = common::tempdir();
            let built = CASES
                .iter()
                .map(|c| {
                    let file = (c.build)(tmp.path());
                    let bytes = fs::read(&file).unwrap_or_default();
                    let accept = matches!(c.verdict, Accept(_));
                    (c.name, c.declared, accept, bytes)
                })
                .collect();
            // The temp dir goes; the bytes stay in memory.
            drop(tmp);
            built
        })
    }

    fn inspect(data: &[u8], declared: &str, reads: &[usize]) -> Result<Inspection, Refusal> {
        let mut inspector = Inspector::new(Rules {
            disk_format: Some(declared.into()),
            container_format: Some("bare".into()),
            on_mismatch: OnMismatch::Reject,
        });
        let mut rest = data;
        let mut k = 0;
        while !rest.is_empty() {
            let n = reads
                .get(k % reads.len().max(1))
                .copied()
                .unwrap_or(rest.len());
            let n = n.clamp(1, rest.len());
            inspector.feed(&rest[..n]);
            rest = &rest[n..];
            k += 1;
        }
        inspector.finish()
    }

    #[test]
    fn whole_reads_give_the_expected_verdicts() {
        for (name, declared, accept, data) in corpus() {
            let got = inspect(data, declared, &[]);
            assert_eq!(got.is_ok(), *accept, "{name}: {got:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn random_reads_give_the_same_verdict(
            reads in proptest::collection::vec(prop_oneof![1usize..600, 1usize..70_000,
                                                           1usize..2_000_000], 1..10)) {
            for (name, declared, _, data) in corpus() {
                let whole = inspect(data, declared, &[]);
                let split = inspect(data, declared, &reads);
                prop_assert_eq!(&whole, &split, "{}", name);
            }
        }
    }
}
